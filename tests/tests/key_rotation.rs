//! Log key rotation end to end (specs/keys.md, "Rotation"): `ledger rotate-key` on a
//! stopped ledger, the restarted server signing with the new key, verifiers accepting each
//! key only for the tree sizes it was valid for, and crashes injected between the steps.

use base64::prelude::*;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use ledger_client::rotation::{HistoryFile, Rotation};
use ledger_e2e::{agent, binary, get, post, Ledger};
use std::path::Path;
use std::process::{Command, Stdio};

fn add(l: &Ledger, entry: &[u8]) -> serde_json::Value {
    let r = post(
        &agent(),
        &l.url("/artifacts/add"),
        "application/octet-stream",
        entry,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn checkpoint(l: &Ledger) -> Vec<u8> {
    let r = get(&agent(), &l.url("/artifacts/checkpoint")).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    r.body
}

/// The vkeys among `candidates` whose signature on `note` verifies, checked with
/// ed25519-dalek directly from the c2sp.org/signed-note layout, independently of the
/// `signed_note` crate both the ledger and the client use.
fn signed_by<'a>(note: &[u8], candidates: &[&'a str]) -> Vec<&'a str> {
    let s = std::str::from_utf8(note).unwrap();
    let split = s.rfind("\n\n").unwrap();
    let (text, sigs) = (&s[..split + 1], &s[split + 2..]);
    let mut out = vec![];
    for v in candidates {
        let parts: Vec<&str> = v.splitn(3, '+').collect();
        let key = BASE64_STANDARD.decode(parts[2]).unwrap();
        let id = u32::from_str_radix(parts[1], 16).unwrap().to_be_bytes();
        let vk = VerifyingKey::from_bytes(key[1..].try_into().unwrap()).unwrap();
        for line in sigs.lines() {
            let (name, b64) = line
                .trim_start_matches("\u{2014} ")
                .rsplit_once(' ')
                .unwrap();
            let raw = BASE64_STANDARD.decode(b64).unwrap();
            if name == parts[0] && raw.len() == 68 && raw[..4] == id {
                let sig = Signature::from_bytes(raw[4..].try_into().unwrap());
                if vk.verify(text.as_bytes(), &sig).is_ok() {
                    out.push(*v);
                }
            }
        }
    }
    out
}

/// `ledger rotate-key`, with an optional injected crash: (exit success, stdout, stderr).
fn rotate(data: &Path, fault: Option<&str>) -> (bool, String, String) {
    let mut cmd = Command::new(binary("ledger"));
    cmd.args([
        "rotate-key",
        "--log",
        "artifacts",
        "--reason",
        "yearly rotation",
    ])
    .arg("--data-dir")
    .arg(data)
    .env_remove("LEDGER_FAULT_ROTATE");
    if let Some(f) = fault {
        cmd.env("LEDGER_FAULT_ROTATE", f);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Starts `ledger` expecting it to refuse; returns its stderr.
fn refused_start(data: &Path) -> String {
    let child = Command::new(binary("ledger"))
        .arg("--data-dir")
        .arg(data)
        .args(["--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        !out.status.success(),
        "the ledger should have refused to start"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

use ledger_e2e::ledgerctl;

fn vkey_file(data: &Path) -> String {
    std::fs::read_to_string(data.join("keys/artifacts.vkey"))
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn after_a_rotation_each_key_is_accepted_only_for_the_tree_sizes_it_was_valid_for() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ledger");
    let state = dir.path().join("state");
    let l = Ledger::start(&data, &[]);
    for i in 0..3 {
        add(&l, format!("entry {i}").as_bytes());
    }
    let old = l.vkey("artifacts").to_string();
    std::fs::write(dir.path().join("genesis.vkey"), format!("{old}\n")).unwrap();
    let genesis = dir.path().join("genesis.vkey");
    let url = l.url("/artifacts");
    // A verifier that saw the log before the rotation, trusting the first key.
    let (code, _, err) = ledgerctl(&[
        "checkpoint",
        "--log",
        &url,
        "--vkey",
        genesis.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    drop(l);

    let (ok, out, err) = rotate(&data, None);
    assert!(ok, "{err}");
    let new = out.trim().to_string();
    assert_ne!(new, old);
    assert_eq!(vkey_file(&data), new);
    let retired = data.join("keys/artifacts.key.retired-4");
    assert!(
        retired.exists(),
        "the old key is kept aside until destroyed"
    );
    assert!(!data.join("keys/artifacts.key.next").exists());

    let l = Ledger::start(&data, &[]);
    let url = l.url("/artifacts");
    assert_eq!(l.vkey("artifacts"), new);
    // The checkpoint that first includes the rotation: both keys sign it.
    let at_rotation = checkpoint(&l);
    let cp = ledger_client::verify_checkpoint(&at_rotation, &[&old], None).unwrap();
    assert_eq!(cp.size, 4);
    assert_eq!(
        signed_by(&at_rotation, &[&old, &new]),
        [old.as_str(), new.as_str()]
    );
    // From the next tree on, the new key alone.
    let r = add(&l, b"entry after the rotation");
    let after = checkpoint(&l);
    assert_eq!(signed_by(&after, &[&old, &new]), [new.as_str()]);
    assert!(ledger_client::verify_checkpoint(&after, &[&old], None).is_err());

    // The rotation is an entry of the log, signed by both keys, proven by the history.
    let h = get(&agent(), &l.url("/artifacts/key-history")).unwrap();
    assert_eq!(h.status, 200, "{}", h.text());
    let file: HistoryFile = serde_json::from_slice(&h.body).unwrap();
    assert_eq!(file.rotations.len(), 1);
    assert_eq!(file.rotations[0].index, 3);
    let entry = BASE64_STANDARD.decode(&file.rotations[0].entry).unwrap();
    let rot = Rotation::verify_entry(&entry, 3).unwrap();
    assert_eq!(
        (rot.old.as_str(), rot.new.as_str(), rot.size),
        (old.as_str(), new.as_str(), 4)
    );
    assert_eq!(rot.reason, "yearly rotation");
    assert_eq!(
        signed_by(&entry, &[&old, &new]),
        [old.as_str(), new.as_str()]
    );
    let history = file.verify(&old).unwrap();
    assert!(
        file.verify(&new).is_err(),
        "the history starts from the first key only"
    );
    assert!(history.verify_checkpoint(&after).is_ok());
    assert!(history.verify_checkpoint(&at_rotation).is_ok());

    // The retired key signing a larger tree, as a thief of it would: refused by a verifier
    // with the history, though that key is one the log really used.
    let retired_key = std::fs::read_to_string(&retired).unwrap();
    let forged = ledger_client::checkpoint::sign_checkpoint(
        retired_key.trim(),
        &cp.origin,
        5,
        &ledger_client::merkle::Hash([9; 32]),
        &[],
    )
    .unwrap();
    assert!(ledger_client::verify_checkpoint(&forged, &[&old], None).is_ok());
    let e = history.verify_checkpoint(&forged).unwrap_err().to_string();
    assert!(e.contains("not signed by a key valid at that size"), "{e}");

    // ledgerctl: fetch and verify the history, then verify checkpoints and proofs with it.
    let hist = dir.path().join("history.json");
    let (code, out, err) = ledgerctl(&[
        "key-history",
        "--log",
        &url,
        "--vkey",
        genesis.to_str().unwrap(),
        "--out",
        hist.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 rotation(s)"), "{out}");
    let (code, out, err) = ledgerctl(&[
        "checkpoint",
        "--log",
        &url,
        "--vkey",
        genesis.to_str().unwrap(),
        "--key-history",
        hist.to_str().unwrap(),
        "--state",
        state.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("size 3 -> 5"),
        "the saved pre-rotation checkpoint still counts: {out}"
    );
    // Without the history, the first key alone no longer verifies the log.
    let (code, _, err) = ledgerctl(&[
        "checkpoint",
        "--log",
        &url,
        "--vkey",
        genesis.to_str().unwrap(),
        "--no-state",
    ]);
    assert_eq!(code, 1, "{err}");
    let proof = dir.path().join("e.tlog-proof");
    std::fs::write(&proof, r["tlog_proof"].as_str().unwrap()).unwrap();
    let entry_file = dir.path().join("e");
    std::fs::write(&entry_file, b"entry after the rotation").unwrap();
    let verify = |p: &Path| {
        ledgerctl(&[
            "verify",
            "--proof",
            p.to_str().unwrap(),
            "--entry",
            entry_file.to_str().unwrap(),
            "--vkey",
            genesis.to_str().unwrap(),
            "--key-history",
            hist.to_str().unwrap(),
        ])
    };
    let (code, _, err) = verify(&proof);
    assert_eq!(code, 0, "{err}");
    // The same proof with its checkpoint re-signed by the retired key: refused.
    let text = String::from_utf8(r["tlog_proof"].as_str().unwrap().into()).unwrap();
    let real = ledger_client::TlogProof::parse(text.as_bytes()).unwrap();
    let real_cp = ledger_client::verify_checkpoint(&real.checkpoint, &[&new], None).unwrap();
    let mut fake = real.clone();
    fake.checkpoint = ledger_client::checkpoint::sign_checkpoint(
        retired_key.trim(),
        &cp.origin,
        real_cp.size,
        &real_cp.root,
        &[],
    )
    .unwrap();
    let fake_path = dir.path().join("fake.tlog-proof");
    std::fs::write(&fake_path, fake.to_bytes()).unwrap();
    let (code, _, err) = verify(&fake_path);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("valid at that size"), "{err}");
    // A tampered history file: exit 1 (verification), naming the problem.
    let mut bad = file.clone();
    bad.rotations[0].inclusion_proof.clear();
    let bad_path = dir.path().join("bad-history.json");
    std::fs::write(&bad_path, serde_json::to_vec(&bad).unwrap()).unwrap();
    let (code, _, err) = ledgerctl(&[
        "key-history",
        "--file",
        bad_path.to_str().unwrap(),
        "--vkey",
        genesis.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{err}");
    std::fs::write(&bad_path, b"{not json").unwrap();
    let (code, _, err) = ledgerctl(&[
        "key-history",
        "--file",
        bad_path.to_str().unwrap(),
        "--vkey",
        genesis.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    drop(l);

    // An auditor's fsck follows the rotation: from the first key by default or given, but
    // not from the new key, which signed none of the older checkpoints.
    let fsck = |vkey: Option<&Path>| {
        let mut cmd = Command::new(binary("ledger"));
        cmd.arg("fsck").arg("--data-dir").arg(&data);
        if let Some(v) = vkey {
            cmd.arg("--vkey").arg(v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    for v in [None, Some(genesis.as_path())] {
        let (ok, out) = fsck(v);
        assert!(ok && out.contains("1 key rotation(s) followed"), "{out}");
    }
    let (ok, out) = fsck(Some(&data.join("keys/artifacts.vkey")));
    assert!(!ok && out.contains("checkpoint at size 0"), "{out}");

    // Putting the retired key back: the ledger refuses to sign with it.
    let key = data.join("keys/artifacts.key");
    std::fs::rename(&key, dir.path().join("current.key")).unwrap();
    std::fs::copy(&retired, &key).unwrap();
    std::fs::write(data.join("keys/artifacts.vkey"), format!("{old}\n")).unwrap();
    let err = refused_start(&data);
    assert!(
        err.contains("Refusing to sign this log with a different key"),
        "{err}"
    );
}

#[test]
fn a_rotation_interrupted_by_a_crash_is_refused_at_start_and_finished_by_running_it_again() {
    for fault in ["after-commit", "mid-swap"] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("ledger");
        let l = Ledger::start(&data, &[]);
        add(&l, b"entry 0");
        let old = l.vkey("artifacts").to_string();
        drop(l);

        let (ok, _, err) = rotate(&data, Some(fault));
        assert!(!ok, "{fault}: the injected crash should kill the command");
        assert!(err.contains("injected fault"), "{fault}: {err}");
        // The rotation is logged; the server will not sign with either key until it is
        // finished.
        let err = refused_start(&data);
        assert!(err.contains("not finished"), "{fault}: {err}");

        let (ok, out, err) = rotate(&data, None);
        assert!(ok, "{fault}: {err}");
        assert!(err.contains("finished the rotation"), "{fault}: {err}");
        let new = out.trim().to_string();
        assert_ne!(new, old);
        assert_eq!(vkey_file(&data), new);
        // The latest checkpoint carries both signatures, so it alone cannot tell which key
        // is in force: the recorded rotation does, and the retired key is refused.
        let key = data.join("keys/artifacts.key");
        let aside = dir.path().join("current.key");
        std::fs::rename(&key, &aside).unwrap();
        std::fs::copy(data.join("keys/artifacts.key.retired-2"), &key).unwrap();
        let err = refused_start(&data);
        assert!(
            err.contains("a retired key must not sign again"),
            "{fault}: {err}"
        );
        std::fs::rename(&aside, &key).unwrap();

        let l = Ledger::start(&data, &[]);
        assert_eq!(l.vkey("artifacts"), new, "{fault}");
        let cp = checkpoint(&l);
        assert_eq!(signed_by(&cp, &[&old, &new]), [old.as_str(), new.as_str()]);
        add(&l, b"entry 2");
        assert_eq!(signed_by(&checkpoint(&l), &[&old, &new]), [new.as_str()]);
        // Exactly one rotation was logged, not one per attempt.
        let h = get(&agent(), &l.url("/artifacts/key-history")).unwrap();
        let file: HistoryFile = serde_json::from_slice(&h.body).unwrap();
        assert_eq!(file.rotations.len(), 1, "{fault}");
        file.verify(&old).unwrap();
        drop(l);
        // A second rotation chains from the first.
        let (ok, out, err) = rotate(&data, None);
        assert!(ok, "{err}");
        let third = out.trim().to_string();
        let l = Ledger::start(&data, &[]);
        let h = get(&agent(), &l.url("/artifacts/key-history")).unwrap();
        let file: HistoryFile = serde_json::from_slice(&h.body).unwrap();
        let history = file.verify(&old).unwrap();
        assert_eq!(history.current(), third);
        assert_eq!(history.keys_at(2), [old.as_str(), new.as_str()]);
        assert_eq!(history.keys_at(3), [new.as_str()]);
        assert_eq!(history.keys_at(4), [new.as_str(), third.as_str()]);
    }
}

#[test]
fn rotate_key_refuses_bad_input_and_a_running_server_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ledger");
    let run = |args: &[&str]| {
        let out = Command::new(binary("ledger"))
            .arg("rotate-key")
            .arg("--data-dir")
            .arg(&data)
            .args(args)
            .env_remove("LEDGER_FAULT_ROTATE")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // No such log (nothing there yet).
    let (ok, err) = run(&["--log", "artifacts", "--reason", "x"]);
    assert!(!ok && err.contains("nothing to rotate"), "{err}");
    let l = Ledger::start(&data, &[]);
    add(&l, b"entry 0");
    // The server holds the database.
    let (ok, err) = run(&["--log", "artifacts", "--reason", "x"]);
    assert!(!ok && err.contains("is the server still running"), "{err}");
    drop(l);
    for (reason, says) in [
        ("", "reason"),
        ("a\u{7}b", "reason"),
        (&*"r".repeat(600), "reason"),
    ] {
        let (ok, err) = run(&["--log", "artifacts", "--reason", reason]);
        assert!(!ok && err.contains(says), "{reason:?}: {err}");
    }
    let (ok, err) = run(&["--log", "../etc", "--reason", "x"]);
    assert!(!ok, "{err}");
    // Nothing was logged by the refusals: the key is unchanged and the log still opens.
    let l = Ledger::start(&data, &[]);
    let h = get(&agent(), &l.url("/artifacts/key-history")).unwrap();
    let file: HistoryFile = serde_json::from_slice(&h.body).unwrap();
    assert!(file.rotations.is_empty());
    assert_eq!(file.genesis, l.vkey("artifacts"));
}
