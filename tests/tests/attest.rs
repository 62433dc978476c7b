//! The ledger side of independent trust, end to end with real processes: `ledger` asking
//! real `ledger-witness` servers for cosignatures and a real OpenSSL authority for RFC 3161
//! tokens, and `ledgerctl` verifying the result offline against a tlog-policy.

use ledger_e2e::openssl_tsa::OpenSslTsa;
use ledger_e2e::{agent, binary, get, post, Ledger};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `ledger-witness`.
struct Witness {
    child: Child,
    url: String,
    vkey: String,
}

impl Drop for Witness {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a witness named `name` that follows the logs with the given vkeys.
fn witness(dir: &Path, name: &str, log_vkeys: &[&str]) -> Witness {
    std::fs::create_dir_all(dir).unwrap();
    if !dir.join("witness.key").exists() {
        let out = Command::new(binary("ledger-witness"))
            .args(["keygen", "--name", name, "--out"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let logs: String = log_vkeys.iter().map(|v| format!("log {v}\n")).collect();
    std::fs::write(dir.join("logs"), logs).unwrap();
    let mut child = Command::new(binary("ledger-witness"))
        .arg("serve")
        .arg("--key")
        .arg(dir.join("witness.key"))
        .arg("--logs")
        .arg(dir.join("logs"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("witness exited").unwrap();
        if let Some(u) = line.strip_prefix("witness listening on ") {
            break u.to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let vkey = std::fs::read_to_string(dir.join("witness.vkey"))
        .unwrap()
        .trim()
        .to_string();
    Witness { child, url, vkey }
}

/// A ledger whose key exists before it starts, so witnesses can be told about it.
fn ledger_key(data: &Path) -> String {
    let keys = data.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let out = Command::new(binary("ledger"))
        .args([
            "keygen",
            "--origin",
            "localhost/artifacts",
            "--name",
            "artifacts",
            "--out-dir",
        ])
        .arg(&keys)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(keys.join("artifacts.vkey"))
        .unwrap()
        .trim()
        .to_string()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn ledgerctl(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary("ledgerctl"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn add(ledger: &Ledger, entry: &[u8], query: &str) -> ledger_e2e::Resp {
    post(
        &agent(),
        &ledger.url(&format!("/artifacts/add{query}")),
        "application/octet-stream",
        entry,
    )
    .unwrap()
}

/// Polls until `f` is true or `limit` passes.
fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn a_submitter_waits_for_a_cosigned_timestamped_checkpoint_and_verifies_it_offline() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let data = w.join("ledger");
    let log_vkey = ledger_key(&data);
    let w1 = witness(&w.join("w1"), "w1.example", &[&log_vkey]);
    let w2 = witness(&w.join("w2"), "w2.example", &[&log_vkey]);
    let tsa = OpenSslTsa::start();
    let policy = write(
        w,
        "trust.policy",
        &format!(
            "log {log_vkey}\nwitness w1 {} {}\nwitness w2 {} {}\ngroup both all w1 w2\nquorum both\n",
            w1.vkey, w1.url, w2.vkey, w2.url
        ),
    );
    let ledger = Ledger::start(
        &data,
        &[
            "--witness-policy",
            policy.to_str().unwrap(),
            "--tsa-url",
            &tsa.url,
            "--tsa-roots",
            tsa.root_pem_path.to_str().unwrap(),
            "--attest-interval-ms",
            "100",
        ],
    );
    let vkey_file = write(w, "log.vkey", &format!("{log_vkey}\n"));
    let entry = write(w, "entry.txt", "model.onnx sha256:0123");
    let proof = w.join("entry.tlog-proof");
    let (p, r) = (
        policy.to_str().unwrap(),
        tsa.root_pem_path.to_str().unwrap(),
    );
    let log_url = ledger.url("/artifacts");

    // The submitter asks to wait; the answer is already cosigned and time-stamped.
    let (code, out, err) = ledgerctl(&[
        "submit",
        "--log",
        &log_url,
        "--vkey",
        vkey_file.to_str().unwrap(),
        entry.to_str().unwrap(),
        "--wait-attested",
        "--policy",
        p,
        "--tsa-roots",
        r,
        "--out",
        proof.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("cosigned by w1, w2"), "{out}");
    assert!(out.contains("time-stamped"), "{out}");

    // Offline, with the policy and the authority's root: exit 0.
    let (code, out, err) = ledgerctl(&[
        "verify",
        "--proof",
        proof.to_str().unwrap(),
        "--entry",
        entry.to_str().unwrap(),
        "--policy",
        p,
        "--tsa-roots",
        r,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("cosigned by w1, w2"), "{out}");

    // A stricter policy (a third witness that never cosigned) fails verification: exit 1.
    let (_, w3_vkey) =
        ledger_client::cosignature::generate_cosigner_key(&mut rand::rngs::OsRng, "w3.example");
    let strict = write(
        w,
        "strict.policy",
        &format!(
            "log {log_vkey}\nwitness w1 {}\nwitness w3 {w3_vkey}\ngroup g all w1 w3\nquorum g\n",
            w1.vkey
        ),
    );
    let (code, _, err) = ledgerctl(&[
        "verify",
        "--proof",
        proof.to_str().unwrap(),
        "--entry",
        entry.to_str().unwrap(),
        "--policy",
        strict.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("quorum not met"), "{err}");

    // Roots of another authority: the token does not chain, exit 1.
    let other = OpenSslTsa::start();
    let (code, _, err) = ledgerctl(&[
        "verify",
        "--proof",
        proof.to_str().unwrap(),
        "--entry",
        entry.to_str().unwrap(),
        "--vkey",
        vkey_file.to_str().unwrap(),
        "--tsa-roots",
        other.root_pem_path.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("time-stamp token #0"), "{err}");

    // The token in the proof is OpenSSL's, and it dates SHA-256 of the checkpoint text.
    let tp = ledger_client::TlogProof::parse(&std::fs::read(&proof).unwrap()).unwrap();
    let text_end = tp
        .checkpoint
        .windows(2)
        .rposition(|x| x == b"\n\n")
        .unwrap()
        + 1;
    let roots = ledger_client::timestamp::TsaRoots::from_pem(&tsa.root_pem()).unwrap();
    let tokens = ledger_client::attestation::split_tokens(tp.extra.as_deref().unwrap()).unwrap();
    assert_eq!(tokens.len(), 1);
    ledger_client::timestamp::verify_token(tokens[0], &tp.checkpoint[..text_end], None, &roots)
        .unwrap();

    // The same attestation is served as JSON, as a plain cosigned note, and in attested
    // tlog-proofs; `checkpoint --policy` checks the quorum on the live cosigned checkpoint.
    let a = get(&agent(), &ledger.url("/artifacts/attestation")).unwrap();
    assert_eq!(a.status, 200);
    let j = a.json();
    assert_eq!(j["cosigners"], serde_json::json!(["w1", "w2"]));
    assert_eq!(j["timestamps"].as_array().unwrap().len(), 1);
    let size = j["tree_size"].as_u64().unwrap();
    let at = get(
        &agent(),
        &ledger.url(&format!("/artifacts/attestation/{size}")),
    )
    .unwrap();
    assert_eq!(at.json(), j);
    let note = get(&agent(), &ledger.url("/artifacts/cosigned-checkpoint")).unwrap();
    assert_eq!(note.text(), j["checkpoint"].as_str().unwrap());
    let (code, out, err) = ledgerctl(&[
        "checkpoint",
        "--log",
        &log_url,
        "--vkey",
        vkey_file.to_str().unwrap(),
        "--no-state",
        "--policy",
        p,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("witness quorum met: cosigned by w1, w2"),
        "{out}"
    );
    let (code, out, err) = ledgerctl(&[
        "prove",
        "--log",
        &log_url,
        "--vkey",
        vkey_file.to_str().unwrap(),
        "--index",
        "0",
        "--attested",
        "--policy",
        p,
        "--tsa-roots",
        r,
        "--out",
        w.join("again.tlog-proof").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}{err}");

    // The witnesses serve what they cosigned to monitors (tlog-witness, monitoring).
    let path = ledger_client::witness_protocol::monitoring_path("localhost/artifacts");
    let seen = get(&agent(), &format!("{}/{path}", w1.url)).unwrap();
    assert_eq!(seen.status, 200);
    assert!(
        seen.text().starts_with("localhost/artifacts\n"),
        "{}",
        seen.text()
    );

    // Errors that name the problem.
    let r = add(&ledger, b"x", "?wait=forever");
    assert_eq!(r.status, 400);
    let r = get(&agent(), &ledger.url("/artifacts/attestation/999999")).unwrap();
    assert_eq!(r.status, 404);
    let r = get(&agent(), &ledger.url("/artifacts/attestation/nope")).unwrap();
    assert_eq!(r.status, 400);
}

#[test]
fn without_the_quorum_nothing_is_published_and_a_waiting_submitter_gets_504() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let data = w.join("ledger");
    let log_vkey = ledger_key(&data);
    let w1 = witness(&w.join("w1"), "w1.example", &[&log_vkey]);
    // The second witness is configured but down: nothing listens on its port.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let (_, w2_vkey) =
        ledger_client::cosignature::generate_cosigner_key(&mut rand::rngs::OsRng, "w2.example");
    let policy = write(
        w,
        "all.policy",
        &format!(
            "witness w1 {} {}\nwitness w2 {w2_vkey} {dead_url}\ngroup both all w1 w2\nquorum both\n",
            w1.vkey, w1.url
        ),
    );
    let args = [
        "--witness-policy",
        policy.to_str().unwrap(),
        "--no-embedded-tsa",
        "--attest-interval-ms",
        "100",
        "--attest-wait-ms",
        "1500",
    ];
    let mut ledger = Ledger::start(&data, &args);
    let r = add(&ledger, b"first", "?wait=attested");
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(r.text().contains("entry 0 is logged"), "{}", r.text());
    let r = get(&agent(), &ledger.url("/artifacts/attestation")).unwrap();
    assert_eq!(r.status, 404);
    let m = get(&agent(), &ledger.url("/metrics")).unwrap().text();
    assert!(
        m.lines()
            .any(|l| l.starts_with("attest_failed_rounds_total") && !l.ends_with(" 0")),
        "{m}"
    );
    // The entry itself was logged and is provable the ordinary way.
    let r = get(&agent(), &ledger.url("/artifacts/proof/tlog-proof?index=0")).unwrap();
    assert_eq!(r.status, 200);
    let r = get(
        &agent(),
        &ledger.url("/artifacts/proof/tlog-proof?index=0&attested=true"),
    )
    .unwrap();
    assert_eq!(r.status, 404, "{}", r.text());

    // With a policy one witness can satisfy, the same log is attested.
    ledger.kill9();
    let any = write(
        w,
        "any.policy",
        &format!(
            "witness w1 {} {}\nwitness w2 {w2_vkey} {dead_url}\ngroup either any w1 w2\nquorum either\n",
            w1.vkey, w1.url
        ),
    );
    let mut args2 = args;
    args2[1] = any.to_str().unwrap();
    let ledger = Ledger::start(&data, &args2);
    let r = add(&ledger, b"second", "?wait=attested");
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["cosigners"], serde_json::json!(["w1"]));
    assert_eq!(j["tree_size"], 2);
    assert!(j["timestamps"].as_array().unwrap().is_empty());
    // The answer's proof verifies against the cosigned checkpoint it carries.
    let tp = ledger_client::TlogProof::parse(j["tlog_proof"].as_str().unwrap().as_bytes()).unwrap();
    let any_policy = ledger_client::policy::Policy::parse(&std::fs::read(&any).unwrap()).unwrap();
    ledger_client::attestation::verify_attested_proof(
        &tp,
        &ledger_client::leaf_hash(b"second"),
        &[&log_vkey],
        None,
        ledger_client::attestation::Requirements {
            policy: Some(&any_policy),
            tsa_roots: None,
        },
    )
    .unwrap();
}

#[test]
fn a_restarted_ledger_catches_up_with_witnesses_that_remember_a_larger_size() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let data = w.join("ledger");
    let log_vkey = ledger_key(&data);
    let w1 = witness(&w.join("w1"), "w1.example", &[&log_vkey]);
    let policy = write(
        w,
        "p.policy",
        &format!("witness w1 {} {}\nquorum w1\n", w1.vkey, w1.url),
    );
    let args = [
        "--witness-policy",
        policy.to_str().unwrap(),
        "--no-embedded-tsa",
        "--attest-interval-ms",
        "50",
    ];
    let mut ledger = Ledger::start(&data, &args);
    for i in 0..3 {
        assert_eq!(
            add(&ledger, format!("e{i}").as_bytes(), "?wait=attested").status,
            200
        );
    }
    ledger.kill9();
    // After the restart the ledger believes the witness holds size 0; the witness answers
    // 409 with 3 and the ledger proves consistency from there (tlog-witness, add-checkpoint).
    let ledger = Ledger::start(&data, &args);
    let r = add(&ledger, b"after restart", "?wait=attested");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["tree_size"], 4);
    // Earlier attestations are kept: size 3's record is still served after the restart.
    let old = get(&agent(), &ledger.url("/artifacts/attestation/3")).unwrap();
    assert_eq!(old.status, 200, "{}", old.text());
    // The registry's receipt of an entry names its attested proof.
    let e = get(&agent(), &ledger.url("/registry/v1/entry/3")).unwrap();
    assert_eq!(e.status, 200, "{}", e.text());
    assert_eq!(e.json()["attested"]["tree_size"], 4, "{}", e.text());
}

#[test]
fn a_second_ledger_with_the_same_key_gets_no_cosignature() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let honest = w.join("honest");
    let log_vkey = ledger_key(&honest);
    // The fork: the same key, another data directory, other entries.
    let forked = w.join("forked");
    std::fs::create_dir_all(forked.join("keys")).unwrap();
    for f in ["artifacts.key", "artifacts.vkey"] {
        std::fs::copy(honest.join("keys").join(f), forked.join("keys").join(f)).unwrap();
    }
    let w1 = witness(&w.join("w1"), "w1.example", &[&log_vkey]);
    let policy = write(
        w,
        "p.policy",
        &format!("witness w1 {} {}\nquorum w1\n", w1.vkey, w1.url),
    );
    let args = [
        "--witness-policy",
        policy.to_str().unwrap(),
        "--no-embedded-tsa",
        "--attest-interval-ms",
        "50",
        "--attest-wait-ms",
        "1500",
    ];
    let a = Ledger::start(&honest, &args);
    assert_eq!(add(&a, b"the real entry", "?wait=attested").status, 200);
    let b = Ledger::start(&forked, &args);
    let r = add(&b, b"a different entry", "?wait=attested");
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(eventually(Duration::from_secs(5), || {
        let m = get(&agent(), &b.url("/metrics")).unwrap().text();
        m.lines()
            .any(|l| l.starts_with("attest_witness_failures_total") && !l.ends_with(" 0"))
    }));
    assert_eq!(
        get(&agent(), &b.url("/artifacts/attestation"))
            .unwrap()
            .status,
        404
    );
    // The honest log keeps being cosigned.
    assert_eq!(add(&a, b"more", "?wait=attested").status, 200);
}

#[test]
fn a_default_ledger_dates_its_checkpoints_and_serves_its_authority_to_others() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("ledger");
    let ledger = Ledger::start(&data, &[]);
    let root_pem = std::fs::read(data.join("tsa/tsa-root.pem")).unwrap();
    let roots = ledger_client::timestamp::TsaRoots::from_pem(&root_pem).unwrap();

    // The embedded authority dates the log's own checkpoints...
    let r = add(&ledger, b"dated", "?wait=attested");
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert!(j["cosigners"].as_array().unwrap().is_empty());
    let tp = ledger_client::TlogProof::parse(j["tlog_proof"].as_str().unwrap().as_bytes()).unwrap();
    let att = ledger_client::attestation::verify_attested_proof(
        &tp,
        &ledger_client::leaf_hash(b"dated"),
        &[ledger.vkey("artifacts")],
        None,
        ledger_client::attestation::Requirements {
            policy: None,
            tsa_roots: Some(&roots),
        },
    )
    .unwrap();
    assert_eq!(att.timestamps.len(), 1);

    // ... and answers anyone's RFC 3161 query at POST /tsa (RFC 3161 §3.4).
    let req = ledger_client::timestamp::TimestampRequest::new(b"someone else's bytes", 42);
    let r = post(
        &agent(),
        &ledger.url("/tsa"),
        "application/timestamp-query",
        &req.der,
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("application/timestamp-reply")
    );
    let token = ledger_client::timestamp::token_from_response(&r.body).unwrap();
    let v =
        ledger_client::timestamp::verify_token(&token, b"someone else's bytes", Some(42), &roots)
            .unwrap();
    assert_eq!(v.nonce, Some(42));
    // The wrong content type is refused with a message, not answered with a token.
    let r = post(
        &agent(),
        &ledger.url("/tsa"),
        "application/octet-stream",
        &req.der,
    )
    .unwrap();
    assert_eq!(r.status, 415, "{}", r.text());

    // With --no-embedded-tsa there is no authority and nothing is attested.
    drop(ledger);
    let ledger = Ledger::start(&data, &["--no-embedded-tsa"]);
    let r = post(
        &agent(),
        &ledger.url("/tsa"),
        "application/timestamp-query",
        &req.der,
    )
    .unwrap();
    assert_eq!(r.status, 404);
    let r = add(&ledger, b"undated", "?wait=attested");
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.text().contains("not_attested"), "{}", r.text());
}
