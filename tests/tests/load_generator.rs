//! The load generator behind BENCHMARKS.md, run against the real server: the figures it
//! prints are only worth reading if the requests it counts are the entries the log holds.

use ledger_client::checkpoint::verify_checkpoint;
use ledger_e2e::{agent, get, run_binary, Ledger};

fn ledger_load(args: &[&str]) -> (i32, String, String) {
    run_binary("ledger-load", args)
}

/// The number just before `suffix` in `line`, e.g. `12 requests` → 12.
fn number_before(line: &str, suffix: &str) -> f64 {
    let head = line
        .split(suffix)
        .next()
        .unwrap_or_else(|| panic!("{suffix:?} not in {line:?}"));
    head.rsplit([' ', '('])
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number before {suffix:?} in {line:?}"))
}

#[test]
fn single_entry_load_counts_exactly_the_entries_the_log_appended() {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::start(dir.path(), &[]);
    let url = l.url("/artifacts");
    let (code, out, err) = ledger_load(&[
        "--url",
        &url,
        "--no-machine",
        "single",
        "--clients",
        "4",
        "--seconds",
        "1",
    ]);
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");

    let summary = out
        .lines()
        .find(|l| l.starts_with("single (4 clients, 256 B entries): "))
        .unwrap_or_else(|| panic!("no summary line in {out}"));
    let requests = number_before(summary, " requests, ") as u64;
    assert!(requests > 0, "{summary}");
    assert!(summary.contains("0 rejected 503, 0 errors"), "{summary}");

    // Random 256-byte entries never repeat, so each acknowledged request appended one entry.
    let vkey = l.vkey("artifacts").to_string();
    let cp = verify_checkpoint(
        &get(&agent(), &l.url("/artifacts/checkpoint")).unwrap().body,
        &[&vkey],
        None,
    )
    .unwrap();
    assert_eq!(cp.size, requests, "{summary}");

    let latency = out
        .lines()
        .find(|l| l.starts_with("single latency ms: "))
        .unwrap_or_else(|| panic!("no latency line in {out}"));
    assert!(latency.contains(&format!("(n={requests})")), "{latency}");

    // Its own CPU, which it takes from the server's cores: a positive figure per request.
    let cpu = out
        .lines()
        .find(|l| l.starts_with("single load generator: "))
        .unwrap_or_else(|| panic!("no CPU line in {out}"));
    assert!(number_before(cpu, " us of CPU per request") > 0.0, "{cpu}");
}

#[test]
fn load_generator_refuses_what_it_cannot_measure() {
    for (args, message) in [
        (
            vec![
                "--url",
                "https://127.0.0.1:1/artifacts",
                "--no-machine",
                "single",
            ],
            "only http:// URLs are supported",
        ),
        (vec!["--url", "http://127.0.0.1:1/artifacts"], "Usage"),
        (
            vec![
                "--url",
                "http://127.0.0.1:1/a",
                "single",
                "--clients",
                "many",
            ],
            "invalid value 'many'",
        ),
    ] {
        let (code, out, err) = ledger_load(&args);
        assert_ne!(code, 0, "{args:?} was accepted: {out}");
        assert!(err.contains(message), "{args:?}: {err}");
    }
}
