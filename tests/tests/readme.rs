//! The README's walk-through is executed as written, against the real `ledger` and
//! `ledgerctl`, so that the first thing a newcomer pastes keeps working.

use ledger_e2e::ports::unused_loopback_port;
use ledger_e2e::{binary, Ledger};
use std::process::Command;

/// The shell blocks after each "Terminal 2" line of README.md, in order.
fn walkthrough() -> String {
    // Compiled in, so cargo rebuilds this test whenever the README changes.
    let readme = include_str!("../../README.md");
    let blocks: Vec<&str> = readme
        .match_indices("Terminal 2")
        .map(|(start, _)| {
            let rest = &readme[start..];
            let open = rest.find("```sh\n").expect("shell block") + 6;
            let close = rest[open..].find("```").expect("closed block");
            &rest[open..open + close]
        })
        .collect();
    assert!(
        blocks.len() >= 2,
        "README has the log and the registry walk-throughs"
    );
    blocks.join("\n")
}

#[test]
fn the_readme_walkthrough_runs_as_written() {
    let work = tempfile::tempdir().unwrap();
    let ledger = Ledger::start(&work.path().join("ledger-data"), &[]);
    let script = walkthrough();
    assert!(
        script.contains("ledgerctl verify"),
        "walk-through verifies offline"
    );
    // The build line is for humans; here the binaries are already built. The log URL is
    // the test server's ephemeral port instead of 8080.
    let script: String = script
        .lines()
        .filter(|l| !l.starts_with("cargo build"))
        .map(|l| l.replace("http://127.0.0.1:8080", &ledger.base))
        .collect::<Vec<_>>()
        .join("\n");
    let bin_dir = binary("ledgerctl").parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("bash")
        .arg("-euo")
        .arg("pipefail")
        .arg("-c")
        .arg(&script)
        .current_dir(work.path())
        .env("PATH", path)
        .env("HOME", work.path())
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "walk-through failed: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // And it did what it says: four raw entries, a proof file, a saved checkpoint; then
    // five registry events (two publishes, lineage, approval, alias move; a pull logs
    // nothing) and the pulled copy.
    assert!(work.path().join("entry.tlog-proof").exists());
    assert!(work.path().join("saved.checkpoint").exists());
    let cp = ureq::get(&ledger.url("/artifacts/checkpoint"))
        .call()
        .unwrap()
        .into_body()
        .read_to_string()
        .unwrap();
    assert_eq!(cp.lines().nth(1), Some("9"), "{cp}");
    assert_eq!(
        std::fs::read(work.path().join("pulled.bin")).unwrap(),
        std::fs::read(work.path().join("model.bin")).unwrap()
    );
}

#[test]
fn the_readme_trust_walkthrough_runs_as_written() {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("Trust walk-through")
        .expect("trust walk-through");
    let rest = &readme[start..];
    let open = rest.find("```sh\n").expect("shell block") + 6;
    let close = rest[open..].find("\n```").expect("closed block");
    let mut script = rest[open..open + close].to_string();
    assert!(script.contains("ledgerctl verify") && script.contains("--policy"));
    // The fixed ports of the text become free ones, so parallel tests cannot collide.
    for port in ["7001", "7002", "7003", "8081"] {
        script = script.replace(
            &format!("127.0.0.1:{port}"),
            &format!("127.0.0.1:{}", unused_loopback_port()),
        );
    }
    let work = tempfile::tempdir().unwrap();
    let bin_dir = binary("ledgerctl").parent().unwrap().to_path_buf();
    assert!(bin_dir.join("ledger-witness").exists());
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("timeout")
        .args(["120", "bash", "-euo", "pipefail", "-c", &script])
        .current_dir(work.path())
        .env("PATH", path)
        .env("HOME", work.path())
        .env("RUST_LOG", "error")
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "trust walk-through failed: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("cosigned by w1, w2"), "{stdout}");
    assert!(stdout.contains("time-stamped"), "{stdout}");
    let proof = std::fs::read_to_string(work.path().join("model.tlog-proof")).unwrap();
    assert!(proof.lines().any(|l| l.starts_with("extra ")), "{proof}");
    assert!(
        proof.contains("\u{2014} w1.example ") && proof.contains("\u{2014} w2.example "),
        "{proof}"
    );
}

#[test]
fn the_readme_access_walkthrough_runs_as_written() {
    let readme = include_str!("../../README.md");
    let start = readme
        .find("Access walk-through")
        .expect("access walk-through");
    let rest = &readme[start..];
    let open = rest.find("```sh\n").expect("shell block") + 6;
    let close = rest[open..].find("\n```").expect("closed block");
    let script = rest[open..open + close].replace(
        "127.0.0.1:8082",
        &format!("127.0.0.1:{}", unused_loopback_port()),
    );
    assert!(script.contains("policy check") && script.contains("--access-config"));
    let work = tempfile::tempdir().unwrap();
    let bin_dir = binary("ledgerctl").parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("timeout")
        .args(["120", "bash", "-euo", "pipefail", "-c", &script])
        .current_dir(work.path())
        .env("PATH", path)
        .env("HOME", work.path())
        .env("RUST_LOG", "error")
        .env_remove("LEDGER_TOKEN")
        .output()
        .expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "access walk-through failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // The refusal named its reason and exit code; the complete request was allowed; the
    // audit log's checkpoint verified.
    assert!(stdout.contains("refused with exit code 4"), "{stdout}");
    assert!(stdout.contains("allowed under policy"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("missing: source"), "{stderr}");
    assert!(stdout.contains("localhost/audit"), "{stdout}");
}

/// Runs the first `sh` block after `marker` in the README, with its fixed port `port`
/// replaced by a free one, in a fresh directory with the built binaries first on PATH;
/// returns its stdout, or panics with both streams.
fn run_walkthrough(marker: &str, port: &str) -> String {
    let readme = include_str!("../../README.md");
    let start = readme.find(marker).unwrap_or_else(|| panic!("{marker}"));
    let rest = &readme[start..];
    let open = rest.find("```sh\n").expect("shell block") + 6;
    let close = rest[open..].find("\n```\n").expect("closed block");
    let script = rest[open..open + close].to_string().replace(
        &format!("127.0.0.1:{port}"),
        &format!("127.0.0.1:{}", unused_loopback_port()),
    );
    let work = tempfile::tempdir().unwrap();
    let bin_dir = binary("ledgerctl").parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("timeout")
        .args(["120", "bash", "-euo", "pipefail", "-c", &script])
        .current_dir(work.path())
        .env("PATH", path)
        .env("HOME", work.path())
        .env("RUST_LOG", "error")
        .output()
        .expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{marker} failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn the_readme_monitor_walkthrough_runs_as_written() {
    assert!(binary("ledgerctl")
        .parent()
        .unwrap()
        .join("ledger-monitor")
        .exists());
    let stdout = run_walkthrough("Monitor walk-through", "8083");
    assert!(stdout.contains("verified tree size 3"), "{stdout}");
}

#[test]
fn the_readme_auditor_walkthrough_runs_as_written() {
    let stdout = run_walkthrough("Auditor walk-through", "8084");
    assert!(
        stdout.contains("consistent: localhost/artifacts at tree size 1"),
        "{stdout}"
    );
    assert!(stdout.contains("the catalog agrees"), "{stdout}");
    assert!(stdout.contains("fsck artifacts: OK"), "{stdout}");
}

#[test]
fn the_readme_ci_walkthrough_runs_as_written() {
    let stdout = run_walkthrough("CI walk-through", "8085");
    assert!(
        stdout.contains("verified: resnet50.onnx is models/resnet50@1"),
        "{stdout}"
    );
    assert!(stdout.contains("approved"), "{stdout}");
}
