//! Compliance export end to end: `ledgerctl export` from the real `ledger` (embedded RFC
//! 3161 authority), then `ledgerctl verify-export` offline; any byte changed anywhere in
//! the export fails verification.

use ledger_e2e::{agent, binary, post, request, Ledger};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;

use ledger_e2e::ledgerctl;

fn registry(l: &Ledger, what: &str, body: serde_json::Value) -> u64 {
    ledger_e2e::registry_write(l, what, body)["index"]
        .as_u64()
        .unwrap()
}

fn publish(l: &Ledger, version: &str, bytes: &[u8]) -> u64 {
    let d = ledger_e2e::upload_blob(l, "models/m", bytes).to_string();
    registry(
        l,
        "publish",
        json!({"name": "models/m", "version": version, "kind": "model", "digest": d, "actor": "ci"}),
    )
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let target = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &target);
        } else {
            std::fs::copy(&p, &target).unwrap();
        }
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn an_export_verifies_offline_and_any_changed_byte_fails_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("ledger");
    let l = Ledger::start(&data, &["--attest-interval-ms", "100"]);
    std::fs::write(d.join("log.vkey"), format!("{}\n", l.vkey("artifacts"))).unwrap();
    std::fs::copy(data.join("tsa/tsa-root.pem"), d.join("tsa-root.pem")).unwrap();
    publish(&l, "1", b"weights one");
    registry(
        &l,
        "lifecycle",
        json!({"name": "models/m", "version": "1", "to": "approved", "actor": "r, \"quoted\""}),
    );
    publish(&l, "2", b"weights two");
    let r = post(
        &agent(),
        &l.url("/artifacts/add"),
        "application/octet-stream",
        b"an opaque entry",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    let last = r.json()["index"].as_u64().unwrap();
    for _ in 0..300 {
        let a = ledger_e2e::get(&agent(), &l.url("/artifacts/attestation")).unwrap();
        if a.status == 200 && a.json()["tree_size"].as_u64().unwrap() > last {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let p = |f: &str| d.join(f).to_str().unwrap().to_string();
    let export = |out: &str, extra: &[&str]| {
        let mut args = vec![
            "export".to_string(),
            "--server".into(),
            l.url(""),
            "--vkey".into(),
            p("log.vkey"),
            "--tsa-roots".into(),
            p("tsa-root.pem"),
            "--out".into(),
            p(out),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        ledgerctl(&refs)
    };
    let (code, out, err) = export("all", &["--blobs"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("exported 4 entries"), "{out}");
    let (code, out, err) = export("m1", &["--artifact", "models/m@1"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("exported 2 entries"), "{out}");
    let (code, _, err) = export("m1", &[]);
    assert_eq!(code, 2, "an existing directory is not overwritten: {err}");
    let (code, out, err) = export("all.tar", &["--blobs"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("all.tar"), "{out}");
    drop(l); // offline from here

    let verify = |dir: &str| {
        ledgerctl(&[
            "verify-export",
            "--dir",
            dir,
            "--vkey",
            &p("log.vkey"),
            "--tsa-roots",
            &p("tsa-root.pem"),
        ])
    };
    for e in ["all", "m1", "all.tar"] {
        let (code, out, err) = verify(&p(e));
        assert_eq!(code, 0, "{e}: {out}{err}");
        assert!(out.contains("the export is logged at index"), "{out}");
    }
    let summary = std::fs::read_to_string(d.join("all/summary.csv")).unwrap();
    assert!(summary.starts_with("index,time,type,name,version,detail,actor,digest\n"));
    assert!(
        summary.contains(",lifecycle,models/m,1,draft -> approved,\"r, \"\"quoted\"\"\","),
        "{summary}"
    );
    assert!(summary.contains("\n3,,opaque,"), "{summary}");
    assert_eq!(
        std::fs::read_dir(d.join("all/blobs")).unwrap().count(),
        2,
        "both published blobs"
    );

    // Any byte changed, in any file, fails verification.
    let all = d.join("all");
    for (n, f) in files(&all).iter().enumerate() {
        let rel = f.strip_prefix(&all).unwrap().to_path_buf();
        let copy = d.join(format!("tampered-{n}"));
        copy_dir(&all, &copy);
        let target = copy.join(&rel);
        let mut bytes = std::fs::read(&target).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x01;
        std::fs::write(&target, bytes).unwrap();
        let (code, out, err) = verify(copy.to_str().unwrap());
        assert_ne!(
            code,
            0,
            "{} changed and still verified: {out}",
            rel.display()
        );
        assert!(code == 1 || code == 2, "{}: {code} {err}", rel.display());
    }
    // Not a tar file.
    std::fs::write(d.join("garbage.tar"), b"not a tar file at all").unwrap();
    assert_eq!(verify(&p("garbage.tar")).0, 2);
    // A file slipped in, or one removed.
    let copy = d.join("extra");
    copy_dir(&all, &copy);
    std::fs::write(copy.join("blobs/extra"), b"x").unwrap();
    assert_eq!(verify(copy.to_str().unwrap()).0, 1);
    let copy = d.join("missing");
    copy_dir(&all, &copy);
    std::fs::remove_file(copy.join("summary.csv")).unwrap();
    assert_ne!(verify(copy.to_str().unwrap()).0, 0);
}

#[test]
fn an_export_of_an_access_controlled_ledger_carries_the_policies_in_force_with_proofs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("ledger");
    drop(Ledger::start(&data, &[]));
    let admin = ledger_e2e::offline_token(&data, "root", "admin");
    std::fs::write(d.join("access.json"), "{}").unwrap();
    let acfg = d.join("access.json");
    let l = Ledger::start(
        &data,
        &[
            "--access-config",
            acfg.to_str().unwrap(),
            "--attest-interval-ms",
            "100",
        ],
    );
    let r = request(
        &agent(),
        "POST",
        &l.url("/artifacts/add"),
        &[
            ("content-type", "application/octet-stream"),
            ("authorization", &format!("Bearer {admin}")),
        ],
        b"an entry",
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    std::fs::write(d.join("log.vkey"), format!("{}\n", l.vkey("artifacts"))).unwrap();
    std::fs::write(d.join("audit.vkey"), format!("{}\n", l.vkey("audit"))).unwrap();
    std::fs::copy(data.join("tsa/tsa-root.pem"), d.join("tsa-root.pem")).unwrap();
    for _ in 0..300 {
        let a = request(
            &agent(),
            "GET",
            &l.url("/artifacts/attestation"),
            &[("authorization", &format!("Bearer {admin}"))],
            b"",
        )
        .unwrap();
        if a.status == 200 && a.json()["tree_size"].as_u64().unwrap() >= 1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let p = |f: &str| d.join(f).to_str().unwrap().to_string();
    let out = Command::new(binary("ledgerctl"))
        .args([
            "export",
            "--server",
            &l.url(""),
            "--vkey",
            &p("log.vkey"),
            "--audit-log",
            "audit",
            "--audit-vkey",
            &p("audit.vkey"),
            "--out",
            &p("ex"),
        ])
        .env("LEDGER_TOKEN", &admin)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(l);
    let lines = std::fs::read_to_string(d.join("ex/policies/policies.jsonl")).unwrap();
    assert!(!lines.is_empty(), "the start-up policy record at least");
    let (code, out, err) = ledgerctl(&[
        "verify-export",
        "--dir",
        &p("ex"),
        "--vkey",
        &p("log.vkey"),
        "--audit-vkey",
        &p("audit.vkey"),
        "--tsa-roots",
        &p("tsa-root.pem"),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("policy records proven in the audit log"),
        "{out}"
    );
    // Without the audit log's key the policy records cannot be checked: refused.
    let (code, _, err) = ledgerctl(&["verify-export", "--dir", &p("ex"), "--vkey", &p("log.vkey")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--audit-vkey"), "{err}");
}
