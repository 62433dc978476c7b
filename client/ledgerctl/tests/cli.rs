//! End-to-end tests of the built `ledgerctl` binary: the offline `verify` path against files
//! made here, and the network commands against an in-process fake log on 127.0.0.1.
//! Exit codes: 0 ok, 1 verification failed, 2 usage/input error, 3 network/server error.

#[path = "../../tests/common/mod.rs"]
mod common;
mod fake_log;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::MemTree;
use fake_log::{FakeLog, Mode, ORIGIN};
use ledger_client::checkpoint::sign_checkpoint;
use ledger_client::merkle::{hash_to_base64, hash_to_hex, leaf_hash};
use ledger_client::tlog_proof::TlogProof;
use serde_json::Value;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.stdout))
    }
}

fn ledgerctl(args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_ledgerctl"))
        .args(args)
        .env("HOME", std::env::temp_dir().join("ledgerctl-test-no-home"))
        .stdin(Stdio::null())
        .output()
        .expect("run ledgerctl");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[track_caller]
fn expect(r: &Run, code: i32) {
    assert_eq!(
        r.code, code,
        "exit code {} (want {code})\nstdout: {}\nstderr: {}",
        r.code, r.stdout, r.stderr
    );
    if code != 0 {
        assert!(
            !r.stderr.trim().is_empty(),
            "a failure must explain itself on stderr"
        );
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Files for the offline tests: a key, a 10-entry log, a proof for entry 3.
struct Offline {
    dir: tempfile::TempDir,
    vkey: PathBuf,
    entry: PathBuf,
    proof: PathBuf,
    good: TlogProof,
}

fn offline() -> Offline {
    let dir = tempfile::tempdir().unwrap();
    let (skey, vkey) = signed_note::generate_key(&mut rand::rngs::OsRng, "example.com/artifacts");
    let tree = MemTree::with_entries(10);
    let note = sign_checkpoint(&skey, "example.com/artifacts", 10, &tree.root(10), &[]).unwrap();
    let good = TlogProof {
        extra: Some(b"artifact metadata".to_vec()),
        index: 3,
        inclusion_proof: tree.prove_inclusion(3, 10),
        checkpoint: note,
    };
    let vkey_path = dir.path().join("log.vkey");
    std::fs::write(&vkey_path, format!("{vkey}\n")).unwrap();
    let entry = dir.path().join("entry");
    std::fs::write(&entry, common::entry(3)).unwrap();
    let proof = dir.path().join("entry.tlog-proof");
    std::fs::write(&proof, good.to_bytes()).unwrap();
    Offline {
        dir,
        vkey: vkey_path,
        entry,
        proof,
        good,
    }
}

// ------------------------------------------------------------------ offline verify

#[test]
fn verify_good_proof() {
    let o = offline();
    let r = ledgerctl(&[
        "verify",
        "--vkey",
        s(&o.vkey),
        "--proof",
        s(&o.proof),
        "--entry",
        s(&o.entry),
    ]);
    expect(&r, 0);
    assert!(r.stdout.contains("verified"), "{}", r.stdout);

    let leaf = hash_to_base64(&leaf_hash(&common::entry(3)));
    let r = ledgerctl(&[
        "--json",
        "verify",
        "--vkey",
        s(&o.vkey),
        "--proof",
        s(&o.proof),
        "--leaf-hash",
        &leaf,
        "--origin",
        "example.com/artifacts",
    ]);
    expect(&r, 0);
    let j = r.json();
    assert_eq!(j["ok"], true);
    assert_eq!(j["verified"], true);
    assert_eq!(j["index"], 3);
    assert_eq!(j["checkpoint"]["tree_size"], 10);
    assert_eq!(j["leaf_hash"], leaf);
    // Hex leaf hashes work too, and --json may come after the subcommand.
    let hex = hash_to_hex(&leaf_hash(&common::entry(3)));
    let r = ledgerctl(&[
        "verify",
        "--json",
        "--vkey",
        s(&o.vkey),
        "--proof",
        s(&o.proof),
        "--leaf-hash",
        &hex,
    ]);
    expect(&r, 0);
}

#[test]
fn verify_tampered_proofs_exit_1() {
    let o = offline();
    let write = |name: &str, p: &TlogProof| {
        let path = o.dir.path().join(name);
        std::fs::write(&path, p.to_bytes()).unwrap();
        path
    };
    let mut flipped = o.good.clone();
    flipped.inclusion_proof[0].0[5] ^= 0x10;
    let mut moved = o.good.clone();
    moved.index = 4;
    let mut truncated = o.good.clone();
    truncated.inclusion_proof.pop();
    let mut resized = o.good.clone();
    resized.checkpoint = String::from_utf8(resized.checkpoint)
        .unwrap()
        .replacen("\n10\n", "\n11\n", 1)
        .into_bytes();
    for (name, p) in [
        ("flipped", &flipped),
        ("moved", &moved),
        ("truncated", &truncated),
        ("resized", &resized),
    ] {
        let path = write(name, p);
        let r = ledgerctl(&[
            "--json",
            "verify",
            "--vkey",
            s(&o.vkey),
            "--proof",
            s(&path),
            "--entry",
            s(&o.entry),
        ]);
        expect(&r, 1);
        let j = r.json();
        assert_eq!(j["ok"], false, "{name}");
        assert_eq!(j["error"]["kind"], "verification_failed", "{name}");
    }
    // The wrong entry.
    let other = o.dir.path().join("other");
    std::fs::write(&other, b"something else").unwrap();
    expect(
        &ledgerctl(&[
            "verify",
            "--vkey",
            s(&o.vkey),
            "--proof",
            s(&o.proof),
            "--entry",
            s(&other),
        ]),
        1,
    );
    // Another key, and another origin.
    let (_, other_vkey) =
        signed_note::generate_key(&mut rand::rngs::OsRng, "example.com/artifacts");
    let other_key = o.dir.path().join("other.vkey");
    std::fs::write(&other_key, other_vkey).unwrap();
    let r = ledgerctl(&[
        "verify",
        "--vkey",
        s(&other_key),
        "--proof",
        s(&o.proof),
        "--entry",
        s(&o.entry),
    ]);
    expect(&r, 1);
    assert!(
        r.stderr.contains("no signature by a trusted key"),
        "{}",
        r.stderr
    );
    let r = ledgerctl(&[
        "verify",
        "--vkey",
        s(&o.vkey),
        "--proof",
        s(&o.proof),
        "--entry",
        s(&o.entry),
        "--origin",
        "example.com/elsewhere",
    ]);
    expect(&r, 1);
}

#[test]
fn verify_malformed_input_exit_2() {
    let o = offline();
    let good = String::from_utf8(o.good.to_bytes()).unwrap();
    let bad_files = [
        ("empty", String::new()),
        ("header", good.replacen("@v1", "@v9", 1)),
        ("index", good.replacen("index 3", "index 03", 1)),
        ("hash", good.replacen('=', "!", 1)),
        ("no blank line", good.replacen("\n\n", "\n", 1)),
        // A checkpoint whose signed-note framing is broken (an edited but well-formed
        // body is a bad signature instead: exit 1, tested above).
        ("checkpoint note", good.replace('\u{2014}', "-")),
        (
            "checkpoint control char",
            good.replacen("example.com/artifacts", "example.com/\tartifacts", 1),
        ),
    ];
    for (name, content) in bad_files {
        let path = o.dir.path().join(format!("bad-{}", name.replace(' ', "-")));
        std::fs::write(&path, content).unwrap();
        let r = ledgerctl(&[
            "--json",
            "verify",
            "--vkey",
            s(&o.vkey),
            "--proof",
            s(&path),
            "--entry",
            s(&o.entry),
        ]);
        expect(&r, 2);
        assert_eq!(r.json()["error"]["kind"], "input_error", "{name}");
    }
    // Missing files, bad key file, bad leaf hash, empty entry.
    let missing = o.dir.path().join("missing");
    expect(
        &ledgerctl(&[
            "verify",
            "--vkey",
            s(&o.vkey),
            "--proof",
            s(&missing),
            "--entry",
            s(&o.entry),
        ]),
        2,
    );
    expect(
        &ledgerctl(&[
            "verify",
            "--vkey",
            s(&missing),
            "--proof",
            s(&o.proof),
            "--entry",
            s(&o.entry),
        ]),
        2,
    );
    let bad_key = o.dir.path().join("bad.vkey");
    std::fs::write(&bad_key, "not a vkey\n").unwrap();
    let r = ledgerctl(&[
        "verify",
        "--vkey",
        s(&bad_key),
        "--proof",
        s(&o.proof),
        "--entry",
        s(&o.entry),
    ]);
    expect(&r, 2);
    assert!(r.stderr.contains("vkey"), "{}", r.stderr);
    expect(
        &ledgerctl(&[
            "verify",
            "--vkey",
            s(&o.vkey),
            "--proof",
            s(&o.proof),
            "--leaf-hash",
            "xyz",
        ]),
        2,
    );
    let empty = o.dir.path().join("empty-entry");
    std::fs::write(&empty, b"").unwrap();
    expect(
        &ledgerctl(&[
            "verify",
            "--vkey",
            s(&o.vkey),
            "--proof",
            s(&o.proof),
            "--entry",
            s(&empty),
        ]),
        2,
    );
}

#[test]
fn usage_errors_exit_2() {
    let o = offline();
    // Neither --entry nor --leaf-hash; both; unknown subcommand; missing --log.
    expect(
        &ledgerctl(&["verify", "--vkey", s(&o.vkey), "--proof", s(&o.proof)]),
        2,
    );
    expect(
        &ledgerctl(&[
            "verify",
            "--vkey",
            s(&o.vkey),
            "--proof",
            s(&o.proof),
            "--entry",
            s(&o.entry),
            "--leaf-hash",
            "AA==",
        ]),
        2,
    );
    expect(&ledgerctl(&["frobnicate"]), 2);
    expect(&ledgerctl(&["checkpoint", "--vkey", s(&o.vkey)]), 2);
    expect(
        &ledgerctl(&[
            "prove",
            "--log",
            "http://127.0.0.1:1/x",
            "--vkey",
            s(&o.vkey),
        ]),
        2,
    );
    expect(
        &ledgerctl(&[
            "checkpoint",
            "--log",
            "ftp://x/y",
            "--vkey",
            s(&o.vkey),
            "--no-state",
        ]),
        2,
    );
    let r = ledgerctl(&["--help"]);
    expect(&r, 0);
    assert!(r.stdout.contains("Exit codes"), "{}", r.stdout);
}

// ------------------------------------------------------------------ against a fake log

fn vkey_file(dir: &Path, log: &FakeLog) -> PathBuf {
    let p = dir.join("log.vkey");
    std::fs::write(&p, log.vkey()).unwrap();
    p
}

#[test]
fn submit_then_verify_offline() {
    let log = FakeLog::start();
    let dir = tempfile::tempdir().unwrap();
    let vkey = vkey_file(dir.path(), &log);
    for i in 0..5 {
        log.append(format!("seed {i}").as_bytes());
    }
    let entry = dir.path().join("artifact.json");
    std::fs::write(&entry, br#"{"name":"tool","version":"1.2.3"}"#).unwrap();
    let proof = dir.path().join("artifact.tlog-proof");
    let r = ledgerctl(&[
        "--json",
        "submit",
        "--log",
        &log.url,
        "--vkey",
        s(&vkey),
        s(&entry),
        "--out",
        s(&proof),
    ]);
    expect(&r, 0);
    let j = r.json();
    assert_eq!(j["index"], 5);
    assert_eq!(j["duplicate"], false);
    assert_eq!(j["checkpoint"]["origin"], ORIGIN);
    assert_eq!(j["checkpoint"]["tree_size"], 6);
    // The saved proof verifies offline.
    expect(
        &ledgerctl(&[
            "verify",
            "--vkey",
            s(&vkey),
            "--proof",
            s(&proof),
            "--entry",
            s(&entry),
        ]),
        0,
    );
    // Submitting again is a verified duplicate.
    let r = ledgerctl(&[
        "--json",
        "submit",
        "--log",
        &format!("{}/", log.url),
        "--vkey",
        s(&vkey),
        s(&entry),
    ]);
    expect(&r, 0);
    assert_eq!(r.json()["duplicate"], true);
    assert_eq!(r.json()["index"], 5);
}

#[test]
fn submit_refuses_a_lying_log() {
    let log = FakeLog::start();
    let dir = tempfile::tempdir().unwrap();
    let vkey = vkey_file(dir.path(), &log);
    for i in 0..9 {
        log.append(format!("seed {i}").as_bytes());
    }
    let entry = dir.path().join("e");
    std::fs::write(&entry, b"an entry").unwrap();
    log.set_mode(Mode::TamperProofs);
    let r = ledgerctl(&["submit", "--log", &log.url, "--vkey", s(&vkey), s(&entry)]);
    expect(&r, 1);
    assert!(r.stderr.contains("inclusion proof"), "{}", r.stderr);
    log.set_mode(Mode::WrongKey);
    let r = ledgerctl(&["submit", "--log", &log.url, "--vkey", s(&vkey), s(&entry)]);
    expect(&r, 1);
    // Bad local input: an empty entry never reaches the network.
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    expect(
        &ledgerctl(&["submit", "--log", &log.url, "--vkey", s(&vkey), s(&empty)]),
        2,
    );
}

#[test]
fn submit_batch_writes_verifiable_proofs() {
    let log = FakeLog::start();
    let dir = tempfile::tempdir().unwrap();
    let vkey = vkey_file(dir.path(), &log);
    let batch = dir.path().join("batch.txt");
    std::fs::write(&batch, "alpha\nbeta\r\ngamma\n").unwrap();
    let out = dir.path().join("proofs");
    let r = ledgerctl(&[
        "--json",
        "submit",
        "--batch",
        "--log",
        &log.url,
        "--vkey",
        s(&vkey),
        s(&batch),
        "--out",
        s(&out),
    ]);
    expect(&r, 0);
    let j = r.json();
    assert_eq!(j["entries"].as_array().unwrap().len(), 3);
    assert_eq!(j["checkpoint"]["tree_size"], 3);
    let beta = dir.path().join("beta");
    std::fs::write(&beta, b"beta").unwrap();
    let p1 = out.join("1.tlog-proof");
    expect(
        &ledgerctl(&[
            "verify",
            "--vkey",
            s(&vkey),
            "--proof",
            s(&p1),
            "--entry",
            s(&beta),
        ]),
        0,
    );
    // A batch with an empty line is refused locally.
    std::fs::write(&batch, "a\n\nb\n").unwrap();
    expect(
        &ledgerctl(&[
            "submit",
            "--batch",
            "--log",
            &log.url,
            "--vkey",
            s(&vkey),
            s(&batch),
        ]),
        2,
    );
}

#[test]
fn checkpoint_trust_store_detects_forks_and_rollbacks() {
    let log = FakeLog::start();
    let dir = tempfile::tempdir().unwrap();
    let vkey = vkey_file(dir.path(), &log);
    let state = dir.path().join("state");
    for i in 0..20 {
        log.append(format!("e{i}").as_bytes());
    }
    let cp = |extra: &[&str]| {
        let mut args = vec![
            "--json",
            "checkpoint",
            "--log",
            &log.url,
            "--vkey",
            s(&vkey),
            "--state",
            s(&state),
        ];
        args.extend_from_slice(extra);
        ledgerctl(&args)
    };
    let r = cp(&[]);
    expect(&r, 0);
    assert_eq!(r.json()["state"]["result"], "first_use");
    assert_eq!(r.json()["checkpoint"]["tree_size"], 20);
    let r = cp(&[]);
    expect(&r, 0);
    assert_eq!(r.json()["state"]["result"], "unchanged");
    for i in 20..45 {
        log.append(format!("e{i}").as_bytes());
    }
    let saved = dir.path().join("saved.checkpoint");
    let r = cp(&["--out", s(&saved)]);
    expect(&r, 0);
    assert_eq!(r.json()["state"]["result"], "advanced");
    assert_eq!(r.json()["state"]["from"], 20);
    assert_eq!(r.json()["state"]["to"], 45);
    assert!(std::fs::read(&saved)
        .unwrap()
        .starts_with(ORIGIN.as_bytes()));

    // The log rewrites history after entry 30 and grows: inconsistent.
    for i in 45..50 {
        log.append(format!("e{i}").as_bytes());
    }
    log.set_mode(Mode::Fork(30));
    let r = cp(&[]);
    expect(&r, 1);
    assert!(r.stderr.contains("inconsistent"), "{}", r.stderr);
    log.set_mode(Mode::Rollback(40));
    let r = cp(&[]);
    expect(&r, 1);
    assert!(r.stderr.contains("rollback"), "{}", r.stderr);
    log.set_mode(Mode::TamperProofs);
    expect(&cp(&[]), 1);
    log.set_mode(Mode::WrongKey);
    expect(&cp(&[]), 1);
    // Honest again: it advances from the stored 45.
    log.set_mode(Mode::Honest);
    let r = cp(&[]);
    expect(&r, 0);
    assert_eq!(r.json()["state"]["from"], 45);

    // Without state, only the signature is checked.
    log.set_mode(Mode::Rollback(40));
    let r = ledgerctl(&[
        "checkpoint",
        "--log",
        &log.url,
        "--vkey",
        s(&vkey),
        "--no-state",
    ]);
    expect(&r, 0);
    // Without --state and without HOME there is nowhere to keep state: a usage error.
    let out = Command::new(env!("CARGO_BIN_EXE_ledgerctl"))
        .args(["checkpoint", "--log", &log.url, "--vkey", s(&vkey)])
        .env_remove("HOME")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn consistency_against_a_saved_checkpoint() {
    let log = FakeLog::start();
    let dir = tempfile::tempdir().unwrap();
    let vkey = vkey_file(dir.path(), &log);
    for i in 0..7 {
        log.append(format!("e{i}").as_bytes());
    }
    let saved = dir.path().join("saved");
    expect(
        &ledgerctl(&[
            "checkpoint",
            "--log",
            &log.url,
            "--vkey",
            s(&vkey),
            "--no-state",
            "--out",
            s(&saved),
        ]),
        0,
    );
    for i in 7..300 {
        log.append(format!("e{i}").as_bytes());
    }
    let cons = || {
        ledgerctl(&[
            "--json",
            "consistency",
            "--log",
            &log.url,
            "--vkey",
            s(&vkey),
            "--checkpoint",
            s(&saved),
        ])
    };
    let r = cons();
    expect(&r, 0);
    assert_eq!(r.json()["from"]["tree_size"], 7);
    assert_eq!(r.json()["to"]["tree_size"], 300);
    log.set_mode(Mode::Fork(5));
    expect(&cons(), 1);
    log.set_mode(Mode::Rollback(6));
    expect(&cons(), 1);
    log.set_mode(Mode::Honest);
    // A saved checkpoint that was edited: exit 1; one that is garbage: exit 2.
    let text = std::fs::read_to_string(&saved).unwrap();
    std::fs::write(&saved, text.replacen("\n7\n", "\n8\n", 1)).unwrap();
    expect(&cons(), 1);
    std::fs::write(&saved, "garbage").unwrap();
    expect(&cons(), 2);
}

#[test]
fn prove_by_index_leaf_hash_and_entry() {
    let log = FakeLog::start();
    let dir = tempfile::tempdir().unwrap();
    let vkey = vkey_file(dir.path(), &log);
    for i in 0..300 {
        log.append(format!("entry number {i}").as_bytes());
    }
    let out = dir.path().join("p.tlog-proof");
    // By index: the CLI fetches the entry bundle to learn the leaf (partial bundle here).
    let r = ledgerctl(&[
        "--json",
        "prove",
        "--log",
        &log.url,
        "--vkey",
        s(&vkey),
        "--index",
        "257",
        "--out",
        s(&out),
    ]);
    expect(&r, 0);
    assert_eq!(r.json()["index"], 257);
    let e = dir.path().join("e257");
    std::fs::write(&e, b"entry number 257").unwrap();
    expect(
        &ledgerctl(&[
            "verify",
            "--vkey",
            s(&vkey),
            "--proof",
            s(&out),
            "--entry",
            s(&e),
        ]),
        0,
    );
    // Index in a full bundle, against an older tree size.
    let r = ledgerctl(&[
        "--json",
        "prove",
        "--log",
        &log.url,
        "--vkey",
        s(&vkey),
        "--index",
        "10",
        "--tree-size",
        "200",
    ]);
    expect(&r, 0);
    assert_eq!(r.json()["checkpoint"]["tree_size"], 200);
    // By entry and by leaf hash; without --out the proof goes to stdout.
    let r = ledgerctl(&[
        "prove",
        "--log",
        &log.url,
        "--vkey",
        s(&vkey),
        "--entry",
        s(&e),
    ]);
    expect(&r, 0);
    assert!(
        r.stdout.starts_with("c2sp.org/tlog-proof@v1\nindex 257\n"),
        "{}",
        r.stdout
    );
    let lh = hash_to_base64(&leaf_hash(b"entry number 257"));
    expect(
        &ledgerctl(&[
            "prove",
            "--log",
            &log.url,
            "--vkey",
            s(&vkey),
            "--leaf-hash",
            &lh,
        ]),
        0,
    );
    // A tampered proof is refused; an unknown entry is the server's 404.
    log.set_mode(Mode::TamperProofs);
    expect(
        &ledgerctl(&[
            "prove",
            "--log",
            &log.url,
            "--vkey",
            s(&vkey),
            "--index",
            "3",
        ]),
        1,
    );
    log.set_mode(Mode::Honest);
    let unknown = dir.path().join("unknown");
    std::fs::write(&unknown, b"never logged").unwrap();
    let r = ledgerctl(&[
        "prove",
        "--log",
        &log.url,
        "--vkey",
        s(&vkey),
        "--entry",
        s(&unknown),
    ]);
    expect(&r, 3);
    assert!(r.stderr.contains("unknown leaf hash"), "{}", r.stderr);
}

#[test]
fn network_and_server_errors_exit_3() {
    let log = FakeLog::start();
    let dir = tempfile::tempdir().unwrap();
    let vkey = vkey_file(dir.path(), &log);
    // The server's JSON error message is shown.
    let r = ledgerctl(&[
        "--json",
        "checkpoint",
        "--log",
        &format!("{}-nope", log.url),
        "--vkey",
        s(&vkey),
        "--no-state",
    ]);
    expect(&r, 3);
    assert!(r.stderr.contains("unknown log"), "{}", r.stderr);
    assert_eq!(r.json()["error"]["kind"], "server_error");
    // Nothing listening.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let r = ledgerctl(&[
        "--timeout",
        "5",
        "checkpoint",
        "--log",
        &format!("http://127.0.0.1:{port}/artifacts"),
        "--vkey",
        s(&vkey),
        "--no-state",
    ]);
    expect(&r, 3);
}
