//! CI verification end to end: `ledgerctl bundle` fetches an artifact version's bundle from
//! the real `ledger` (embedded RFC 3161 authority), the ledger is stopped, and `ledgerctl
//! verify --artifact --bundle` checks it offline, with one exit code per failed check.

use ledger_client::bundle::Bundle;
use ledger_e2e::{agent, Ledger};
use serde_json::json;
use std::path::Path;

use ledger_e2e::ledgerctl;

use ledger_e2e::registry_write as registry;

fn publish(l: &Ledger, version: &str, bytes: &[u8]) -> u64 {
    let d = ledger_e2e::upload_blob(l, "models/m", bytes).to_string();
    registry(
        l,
        "publish",
        json!({"name": "models/m", "version": version, "kind": "model", "digest": d, "actor": "ci"}),
    )["index"]
        .as_u64()
        .unwrap()
}

/// Waits until the latest attested checkpoint covers `index`.
fn attested(l: &Ledger, index: u64) {
    for _ in 0..300 {
        let r = ledger_e2e::get(&agent(), &l.url("/artifacts/attestation")).unwrap();
        if r.status == 200 && r.json()["tree_size"].as_u64().unwrap() > index {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("no attestation covers entry {index}");
}

fn bundle(l: &Ledger, dir: &Path, version: &str, out: &str) {
    let vkey = dir.join("log.vkey");
    let (code, stdout, err) = ledgerctl(&[
        "bundle",
        "--server",
        &l.url(""),
        "--vkey",
        vkey.to_str().unwrap(),
        "--name",
        "models/m",
        "--version",
        version,
        "--out",
        dir.join(out).to_str().unwrap(),
        "--tlog-proof",
        dir.join(format!("{out}.tlog-proof")).to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}{err}");
}

#[test]
fn a_ci_job_verifies_an_artifact_offline_and_each_failure_has_its_own_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("ledger");
    let l = Ledger::start(&data, &["--attest-interval-ms", "100"]);
    std::fs::write(d.join("log.vkey"), format!("{}\n", l.vkey("artifacts"))).unwrap();
    std::fs::copy(data.join("tsa/tsa-root.pem"), d.join("tsa-root.pem")).unwrap();
    let weights = b"the weights of model m, version 1".to_vec();
    std::fs::write(d.join("model.bin"), &weights).unwrap();
    publish(&l, "1", &weights);
    let approved = registry(
        &l,
        "lifecycle",
        json!({"name": "models/m", "version": "1", "to": "approved", "actor": "reviewer"}),
    )["index"]
        .as_u64()
        .unwrap();
    publish(&l, "2", b"version 2");
    let revoked = registry(
        &l,
        "lifecycle",
        json!({"name": "models/m", "version": "2", "to": "revoked", "actor": "security", "reason": "CVE"}),
    )["index"]
        .as_u64()
        .unwrap();
    // Version 3 is signed by the release key.
    let (skey, vkey) = signed_note::generate_key(&mut rand::rngs::OsRng, "release.example/ci");
    let (_, other) = signed_note::generate_key(&mut rand::rngs::OsRng, "other.example/ci");
    std::fs::write(d.join("release.vkey"), format!("{vkey}\n")).unwrap();
    std::fs::write(d.join("other.vkey"), format!("{other}\n")).unwrap();
    std::fs::write(d.join("v3.bin"), b"version 3").unwrap();
    ledger_e2e::publish_signed(&l, "models/m", "3", b"version 3", &skey, None);
    let approved3 = registry(
        &l,
        "lifecycle",
        json!({"name": "models/m", "version": "3", "to": "approved", "actor": "reviewer"}),
    )["index"]
        .as_u64()
        .unwrap();
    attested(&l, approved.max(revoked).max(approved3));
    bundle(&l, d, "1", "m1.json");
    bundle(&l, d, "2", "m2.json");
    bundle(&l, d, "3", "m3.json");
    drop(l); // everything below is offline

    let p = |f: &str| d.join(f).to_str().unwrap().to_string();
    let verify = |artifact: &str, bundle: &str, extra: &[&str]| {
        let mut args = vec![
            "verify".to_string(),
            "--artifact".into(),
            p(artifact),
            "--bundle".into(),
            p(bundle),
            "--vkey".into(),
            p("log.vkey"),
            "--tsa-roots".into(),
            p("tsa-root.pem"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        ledgerctl(&refs)
    };
    let (code, out, err) = verify("model.bin", "m1.json", &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("models/m@1") && out.contains("approved"),
        "{out}"
    );
    assert!(out.contains("time-stamped"), "{out}");
    let (code, out, _) = verify("model.bin", "m1.json", &["--json"]);
    assert_eq!(code, 0);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["stage"], "approved");

    // 16: not signed by a trusted publisher key (unsigned, or another key's).
    let (code, out, err) = verify(
        "v3.bin",
        "m3.json",
        &["--publisher-key", &p("release.vkey")],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("valid signature by release.example/ci+"),
        "{out}"
    );
    let (code, _, err) = verify("v3.bin", "m3.json", &["--publisher-key", &p("other.vkey")]);
    assert_eq!(code, 16, "{err}");
    assert!(err.contains("not a trusted publisher key"), "{err}");
    let (code, _, err) = verify(
        "model.bin",
        "m1.json",
        &["--publisher-key", &p("release.vkey")],
    );
    assert_eq!(code, 16, "{err}");
    assert!(err.contains("unsigned"), "{err}");
    let (code, _, err) = verify(
        "v3.bin",
        "m3.json",
        &["--publisher-key", &p("tsa-root.pem")],
    );
    assert_eq!(code, 2, "{err}");

    // 10: another file.
    std::fs::write(d.join("other.bin"), b"not the weights").unwrap();
    let (code, _, err) = verify("other.bin", "m1.json", &[]);
    assert_eq!(code, 10, "{err}");
    assert!(err.contains("was published as"), "{err}");
    // 11: a key that is not the log's.
    let (_, other_vkey) = signed_note::generate_key(&mut rand::rngs::OsRng, "localhost/artifacts");
    std::fs::write(d.join("other.vkey"), format!("{other_vkey}\n")).unwrap();
    let (code, _, err) = ledgerctl(&[
        "verify",
        "--artifact",
        &p("model.bin"),
        "--bundle",
        &p("m1.json"),
        "--vkey",
        &p("other.vkey"),
        "--tsa-roots",
        &p("tsa-root.pem"),
    ]);
    assert_eq!(code, 11, "{err}");
    // 12: a trust policy whose witness never cosigned.
    let witness = ledger_e2e::witness::keygen(&d.join("w"), "witness.example/w1");
    std::fs::write(
        d.join("trust.policy"),
        format!(
            "log {}\nwitness w1 {}\nquorum w1\n",
            std::fs::read_to_string(d.join("log.vkey")).unwrap().trim(),
            witness.trim()
        ),
    )
    .unwrap();
    let (code, _, err) = verify("model.bin", "m1.json", &["--policy", &p("trust.policy")]);
    assert_eq!(code, 12, "{err}");
    // 13: too old, or an authority that is not trusted.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (code, _, err) = verify("model.bin", "m1.json", &["--max-age", "0"]);
    assert_eq!(code, 13, "{err}");
    assert!(err.contains("fetch a fresh bundle"), "{err}");
    let (code, _, _) = verify("model.bin", "m1.json", &["--max-age", "3600"]);
    assert_eq!(code, 0);
    // 14: an inclusion proof that does not hold, or an event left out of the chain.
    let original: Bundle = Bundle::parse(&std::fs::read(d.join("m1.json")).unwrap()).unwrap();
    let mut bad = original.clone();
    let h = &mut bad.entries[0].inclusion_proof[0];
    *h = if h.starts_with('A') {
        h.replacen('A', "B", 1)
    } else {
        format!("A{}", &h[1..])
    };
    std::fs::write(d.join("bad.json"), bad.to_bytes()).unwrap();
    let (code, _, err) = verify("model.bin", "bad.json", &[]);
    assert_eq!(code, 14, "{err}");
    // ...and an event out of place (here the publication twice) breaks the chain.
    let mut bad = original.clone();
    bad.entries.insert(1, original.entries[0].clone());
    std::fs::write(d.join("bad.json"), bad.to_bytes()).unwrap();
    let (code, _, err) = verify("model.bin", "bad.json", &[]);
    assert_eq!(code, 14, "{err}");
    // 15: not an allowed stage: approved is not released; revoked never is.
    let (code, _, err) = verify("model.bin", "m1.json", &["--require-stage", "released"]);
    assert_eq!(code, 15, "{err}");
    assert!(err.contains("is approved"), "{err}");
    std::fs::write(d.join("v2.bin"), b"version 2").unwrap();
    let (code, _, err) = verify("v2.bin", "m2.json", &[]);
    assert_eq!(code, 15, "{err}");
    assert!(err.contains("is revoked"), "{err}");
    // 2: not a bundle.
    for garbage in [&b"{"[..], b"", b"{\"format\": \"other\"}", &[0xff; 64]] {
        std::fs::write(d.join("bad.json"), garbage).unwrap();
        let (code, _, err) = verify("model.bin", "bad.json", &[]);
        assert_eq!(code, 2, "{garbage:?}: {err}");
    }

    // The standard tlog-proof of the publication verifies too, with its time-stamp.
    let published = base64::Engine::decode(
        &base64::prelude::BASE64_STANDARD,
        &original.entries[0].entry,
    )
    .unwrap();
    std::fs::write(d.join("published.entry"), &published).unwrap();
    let (code, out, err) = ledgerctl(&[
        "verify",
        "--proof",
        &p("m1.json.tlog-proof"),
        "--entry",
        &p("published.entry"),
        "--vkey",
        &p("log.vkey"),
        "--tsa-roots",
        &p("tsa-root.pem"),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("time-stamped"), "{out}");
}
