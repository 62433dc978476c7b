//! The real `ledger-witness` over loopback HTTP, held to c2sp.org/tlog-witness: every status
//! code of add-checkpoint, the cosignature (c2sp.org/tlog-cosignature), the monitoring
//! endpoint, durability across kill -9, racing requests, and a forked log.

use base64::prelude::*;
use ledger_client::checkpoint::verify_checkpoint;
use ledger_client::cosignature::{verify_cosignatures, CosignerKey};
use ledger_client::merkle::{hash_from_base64, leaf_hash, Hash, EMPTY_ROOT};
use ledger_client::witness_protocol::{
    monitoring_path, parse_cosignature_lines, parse_size_body, AddCheckpoint,
};
use ledger_e2e::witness::{TestLog, Witness};
use ledger_e2e::{agent, binary, get, post, request, Ledger, Resp};
use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

const TEXT: &str = "text/plain";

fn start(logs: &[&TestLog]) -> (tempfile::TempDir, Witness) {
    let dir = tempfile::tempdir().unwrap();
    let text: String = logs.iter().map(|l| l.log_line()).collect();
    let w = Witness::start(&dir.path().join("w"), "witness.example/w1", &text, &[]);
    (dir, w)
}

fn add(w: &Witness, body: &[u8]) -> Resp {
    post(&agent(), &w.url("/add-checkpoint"), TEXT, body).unwrap()
}

fn assert_status(r: &Resp, status: u16, message: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert!(
        r.text().contains(message),
        "the {status} answer should say {message:?}: {:?}",
        r.text()
    );
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The note text (up to and including the line before the empty line).
fn note_text(note: &[u8]) -> &[u8] {
    let pos = note.windows(2).rposition(|w| w == b"\n\n").unwrap();
    &note[..pos + 1]
}

/// Checks a 200 answer: one cosignature line by the witness on `checkpoint`, verified with
/// `verify_cosignatures` and independently (the signed message rebuilt by hand and checked
/// with ed25519-dalek); returns its timestamp.
fn check_cosignature(w: &Witness, r: &Resp, checkpoint: &[u8]) -> u64 {
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    let lines = parse_cosignature_lines(&r.body).unwrap();
    assert_eq!(lines.len(), 1, "{:?}", r.text());
    let key = CosignerKey::parse(&w.vkey).unwrap();
    let mut note = checkpoint.to_vec();
    note.extend_from_slice(lines[0].as_bytes());
    let ts = verify_cosignatures(&note, std::slice::from_ref(&key)).unwrap()[0]
        .expect("a cosignature by the witness key");
    // Independently: "— <name> base64(key ID || u64 timestamp || Ed25519 signature)" over
    // "cosignature/v1\ntime <ts>\n" || note text (c2sp.org/tlog-cosignature).
    let (name, b64) = lines[0]
        .trim_end()
        .strip_prefix("\u{2014} ")
        .unwrap()
        .split_once(' ')
        .unwrap();
    assert_eq!(name, "witness.example/w1");
    let raw = BASE64_STANDARD.decode(b64).unwrap();
    assert_eq!(raw.len(), 4 + 8 + 64);
    assert_eq!(
        u32::from_be_bytes(raw[..4].try_into().unwrap()),
        key.key_id()
    );
    let stamp = u64::from_be_bytes(raw[4..12].try_into().unwrap());
    assert_eq!(stamp, ts);
    // "The cosignature MUST NOT omit the timestamp, i.e. the timestamp MUST NOT be zero."
    assert!(
        stamp > 0 && stamp.abs_diff(now()) < 300,
        "timestamp {stamp}"
    );
    let mut msg = format!("cosignature/v1\ntime {stamp}\n").into_bytes();
    msg.extend_from_slice(note_text(checkpoint));
    let vk = ed25519_dalek::VerifyingKey::from_bytes(key.public_key()).unwrap();
    vk.verify_strict(
        &msg,
        &ed25519_dalek::Signature::from_bytes(raw[12..].try_into().unwrap()),
    )
    .expect("the cosignature verifies over the tlog-cosignature message");
    ts
}

#[test]
fn status_200_the_first_checkpoint_with_old_size_0_gets_a_timestamped_cosignature() {
    let log = TestLog::new("example.com/log", 10);
    let (_d, w) = start(&[&log]);
    let cp = log.checkpoint(5);
    let r = add(&w, &log.request(0, 5));
    check_cosignature(&w, &r, &cp);
    // The same checkpoint again, from the size now stored: cosigned again.
    let r = add(&w, &log.request(5, 5));
    check_cosignature(&w, &r, &cp);
}

#[test]
fn status_200_a_consistent_larger_checkpoint_with_its_proof_is_cosigned_and_monitors_get_it() {
    let log = TestLog::new("example.com/log", 40);
    let other = TestLog::new("other.example/log", 3);
    let (_d, w) = start(&[&log, &other]);
    let a = agent();
    // "If the witness has never cosigned a checkpoint for that log, it MUST respond with a
    // 404 Not Found" (c2sp.org/tlog-witness#monitor-retrieval-mechanism).
    let monitor = w.url(&format!("/{}", monitoring_path(&log.origin)));
    assert_eq!(get(&a, &monitor).unwrap().status, 404);
    for (old, new) in [(0, 1), (1, 2), (2, 7), (7, 8), (8, 16), (16, 40)] {
        let r = add(&w, &log.request(old, new));
        check_cosignature(&w, &r, &log.checkpoint(new));
        // The monitoring endpoint serves the checkpoint with the log's signature the
        // witness verified and its own cosignature.
        let m = get(&a, &monitor).unwrap();
        assert_eq!(m.status, 200, "{}", m.text());
        let cp = verify_checkpoint(&m.body, &[&log.vkey], Some(&log.origin)).unwrap();
        assert_eq!((cp.size, cp.root), (new, log.root(new)));
        let key = CosignerKey::parse(&w.vkey).unwrap();
        assert!(verify_cosignatures(&m.body, &[key]).unwrap()[0].is_some());
        assert!(m.body.ends_with(&r.body));
    }
    // Other logs are untouched; hashes that are not lowercase hex are no path at all.
    let other_monitor = w.url(&format!("/{}", monitoring_path(&other.origin)));
    assert_eq!(get(&a, &other_monitor).unwrap().status, 404);
    let upper = monitoring_path(&log.origin)
        .to_uppercase()
        .replace("CHECKPOINT", "checkpoint");
    assert_eq!(get(&a, &w.url(&format!("/{upper}"))).unwrap().status, 404);
}

#[test]
fn status_400_when_the_old_size_is_larger_than_the_checkpoint() {
    let log = TestLog::new("example.com/log", 10);
    let (_d, w) = start(&[&log]);
    assert_eq!(add(&w, &log.request(0, 8)).status, 200);
    let body = AddCheckpoint {
        old_size: 8,
        proof: vec![],
        checkpoint: log.checkpoint(5),
    }
    .to_bytes();
    assert_status(&add(&w, &body), 400, "larger than the checkpoint size");
}

#[test]
fn status_400_for_malformed_bodies_with_a_message_that_says_why() {
    let log = TestLog::new("example.com/log", 10);
    let (_d, w) = start(&[&log]);
    let cp = String::from_utf8(log.checkpoint(3)).unwrap();
    let h = BASE64_STANDARD.encode(leaf_hash(b"x").0);
    let too_many: String = (0..64).map(|_| format!("{h}\n")).collect();
    let text = note_text(cp.as_bytes()).to_vec();
    let text = String::from_utf8(text).unwrap();
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "newline"),
        (format!("\n{cp}"), "old <size>"),
        (format!("old 3\n{cp}"), "base64"),
        (format!("old 03\n\n{cp}"), "leading zeroes"),
        (format!("old -1\n\n{cp}"), "leading zeroes"),
        (format!("old 18446744073709551616\n\n{cp}"), "64 bits"),
        (format!("old 1\nAAAA\n\n{cp}"), "base64 SHA-256"),
        (format!("old 1\n{too_many}\n{cp}"), "more than 63"),
        ("old 1\n".to_string(), "no empty line"),
        ("old 0\n\n".to_string(), "no checkpoint"),
        // A checkpoint that is not a signed note.
        (format!("old 0\n\n{text}"), "malformed signed note"),
        (
            format!("old 0\n\nexample.com/log\n3\n{h}\n\n\u{2014} example.com/log !!!!\n"),
            "malformed signed note",
        ),
        // A note whose body is not a checkpoint (size with a leading zero), correctly signed.
        (
            {
                let t = format!("example.com/log\n03\n{h}\n");
                let s = signed_note::StandardSigner::new(&log.skey).unwrap();
                let mut n = signed_note::Note::new(t.as_bytes(), &[]).unwrap();
                n.add_sigs(&[&s]).unwrap();
                format!("old 0\n\n{}", String::from_utf8(n.to_bytes()).unwrap())
            },
            "malformed checkpoint body",
        ),
    ];
    for (body, want) in cases {
        let r = add(&w, body.as_bytes());
        assert_eq!(r.status, 400, "{body:?}: {}", r.text());
        assert!(
            r.text().contains(want),
            "{body:?}: {:?} should say {want:?}",
            r.text()
        );
    }
    // Bytes that are not UTF-8 in the checkpoint.
    let mut raw = b"old 0\n\n".to_vec();
    raw.extend_from_slice(b"example.com/log\xff\n3\nx\n\n\xe2\x80\x94 a AAAAAAA=\n");
    assert_eq!(add(&w, &raw).status, 400);
}

#[test]
fn status_403_when_no_trusted_key_signed_the_checkpoint() {
    let log = TestLog::new("example.com/log", 10);
    let (_d, w) = start(&[&log]);
    // The right origin, signed by another key of that name: unknown keys are ignored, so
    // there is no trusted signature.
    let impostor = TestLog::new("example.com/log", 10);
    assert_status(
        &add(&w, &impostor.request(0, 4)),
        403,
        "no signature by a trusted key",
    );
}

#[test]
fn status_403_when_a_signature_by_a_trusted_key_does_not_verify() {
    let log = TestLog::new("example.com/log", 10);
    let (_d, w) = start(&[&log]);
    let mut cp = log.checkpoint(4);
    // Change one base64 character of the signature (not the key ID).
    let n = cp.len();
    cp[n - 6] = if cp[n - 6] == b'A' { b'B' } else { b'A' };
    let body = AddCheckpoint {
        old_size: 0,
        proof: vec![],
        checkpoint: cp,
    }
    .to_bytes();
    assert_status(&add(&w, &body), 403, "does not verify");
    // Nothing was cosigned.
    assert_eq!(add(&w, &log.request(0, 4)).status, 200);
}

#[test]
fn status_404_for_an_unknown_origin() {
    let log = TestLog::new("example.com/log", 10);
    let (_d, w) = start(&[&log]);
    let stranger = TestLog::new("stranger.example/log", 10);
    assert_status(
        &add(&w, &stranger.request(0, 3)),
        404,
        "stranger.example/log",
    );
}

#[test]
fn status_409_with_the_current_size_as_text_x_tlog_size_when_old_differs() {
    let log = TestLog::new("example.com/log", 20);
    let (_d, w) = start(&[&log]);
    // Never cosigned: the current size is 0.
    let r = add(&w, &log.request(3, 5));
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("text/x.tlog.size"));
    assert_eq!(r.body, b"0\n");
    assert_eq!(add(&w, &log.request(0, 7)).status, 200);
    for old in [0, 5, 8] {
        let r = add(&w, &log.request(old, 12));
        assert_eq!(r.status, 409, "old {old}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("text/x.tlog.size"));
        assert_eq!(parse_size_body(&r.body).unwrap(), 7);
    }
    // A client that learns the size this way can continue from it.
    assert_eq!(add(&w, &log.request(7, 12)).status, 200);
}

#[test]
fn status_413_for_a_body_over_the_limit() {
    let log = TestLog::new("example.com/log", 10);
    let (_d, w) = start(&[&log]);
    let limit = ledger_client::witness_protocol::MAX_ADD_CHECKPOINT_SIZE;
    let mut body = b"old 0\n\n".to_vec();
    body.resize(limit + 1, b'a');
    assert_eq!(add(&w, &body).status, 413);
    // A declared length far over the limit is refused without reading the body: the client
    // sees the 413, or the connection closed under its upload.
    if let Ok(r) = request(
        &agent(),
        "POST",
        &w.url("/add-checkpoint"),
        &[("content-type", TEXT)],
        &vec![b'a'; 4 << 20],
    ) {
        assert_eq!(r.status, 413);
    }
    // The witness is still there.
    assert_eq!(add(&w, &log.request(0, 2)).status, 200);
}

#[test]
fn status_422_when_the_consistency_proof_does_not_verify() {
    let log = TestLog::new("example.com/log", 20);
    let (_d, w) = start(&[&log]);
    assert_eq!(add(&w, &log.request(0, 6)).status, 200);
    let good = log.proof(6, 13);
    for proof in [
        vec![],
        good[..good.len() - 1].to_vec(),
        [good.clone(), vec![leaf_hash(b"extra")]].concat(),
        good.iter().rev().copied().collect(),
        {
            let mut p = good.clone();
            p[0] = leaf_hash(b"wrong");
            p
        },
    ] {
        let body = AddCheckpoint {
            old_size: 6,
            proof,
            checkpoint: log.checkpoint(13),
        }
        .to_bytes();
        assert_status(&add(&w, &body), 422, "consistency proof");
    }
    assert_eq!(add(&w, &log.request(6, 13)).status, 200);
}

#[test]
fn status_422_when_equal_sizes_have_different_roots() {
    let log = TestLog::new("example.com/log", 10);
    let (_d, w) = start(&[&log]);
    assert_eq!(add(&w, &log.request(0, 5)).status, 200);
    let fork = TestLog::with_key(&log.origin, &log.skey, &log.vkey, 10, "fork");
    assert_status(&add(&w, &fork.request(5, 5)), 422, "root");
}

#[test]
fn status_422_when_old_size_is_0_and_the_proof_is_not_empty() {
    let log = TestLog::new("example.com/log", 10);
    let (_d, w) = start(&[&log]);
    let body = AddCheckpoint {
        old_size: 0,
        proof: vec![leaf_hash(b"x")],
        checkpoint: log.checkpoint(4),
    }
    .to_bytes();
    assert_status(&add(&w, &body), 422, "must be empty");
}

#[test]
fn status_422_when_a_size_0_checkpoint_does_not_have_the_empty_tree_root() {
    let log = TestLog::new("example.com/log", 10);
    let (_d, w) = start(&[&log]);
    let bad = ledger_client::checkpoint::sign_checkpoint(
        &log.skey,
        &log.origin,
        0,
        &leaf_hash(b"x"),
        &[],
    )
    .unwrap();
    let body = |cp: Vec<u8>| {
        AddCheckpoint {
            old_size: 0,
            proof: vec![],
            checkpoint: cp,
        }
        .to_bytes()
    };
    assert_status(&add(&w, &body(bad)), 422, "empty tree");
    // With SHA-256("") it is cosigned.
    let empty =
        ledger_client::checkpoint::sign_checkpoint(&log.skey, &log.origin, 0, &EMPTY_ROOT, &[])
            .unwrap();
    let r = add(&w, &body(empty.clone()));
    check_cosignature(&w, &r, &empty);
}

#[test]
fn prefixes_move_the_endpoints() {
    let log = TestLog::new("example.com/log", 10);
    let dir = tempfile::tempdir().unwrap();
    let w = Witness::start(
        &dir.path().join("w"),
        "witness.example/w1",
        &log.log_line(),
        &["--prefix", "/sub/", "--monitoring-prefix", "/mon"],
    );
    let a = agent();
    assert_eq!(
        post(&a, &w.url("/add-checkpoint"), TEXT, &log.request(0, 2))
            .unwrap()
            .status,
        404
    );
    let r = post(&a, &w.url("/sub/add-checkpoint"), TEXT, &log.request(0, 2)).unwrap();
    check_cosignature(&w, &r, &log.checkpoint(2));
    let m = get(
        &a,
        &w.url(&format!("/mon/{}", monitoring_path(&log.origin))),
    )
    .unwrap();
    assert_eq!(m.status, 200);
    assert_eq!(get(&a, &w.url("/sub/forks")).unwrap().status, 200);
    assert_eq!(get(&a, &w.url("/healthz")).unwrap().status, 200);
    let r = get(&a, &w.url("/sub/add-checkpoint")).unwrap();
    assert_eq!(r.status, 405);
}

#[test]
fn every_acknowledged_cosignature_survives_kill_9() {
    let log = TestLog::new("example.com/log", 3000);
    let dir = tempfile::tempdir().unwrap();
    let mut w = Witness::start(
        &dir.path().join("w"),
        "witness.example/w1",
        &log.log_line(),
        &[],
    );
    for round in 0..3 {
        // A client advancing the log as fast as it can, on several connections in turn;
        // the witness is killed under it.
        let url = w.url("/add-checkpoint");
        let start = add(
            &w,
            &AddCheckpoint {
                old_size: 0,
                proof: vec![],
                checkpoint: log.checkpoint(1),
            }
            .to_bytes(),
        );
        let mut size = match start.status {
            200 => 1,
            409 => parse_size_body(&start.body).unwrap(),
            s => panic!("{s}: {}", start.text()),
        };
        let (tx, rx) = std::sync::mpsc::channel::<u64>();
        let client_log = log.clone();
        let client = std::thread::spawn(move || {
            let log = client_log;
            let a = agent();
            while size + 1 < log.leaves.len() as u64 {
                let next = size + 1 + size % 3;
                let next = next.min(log.leaves.len() as u64);
                match post(&a, &url, TEXT, &log.request(size, next)) {
                    Ok(r) if r.status == 200 => {
                        // Acknowledged: it must never be lost.
                        size = next;
                        if tx.send(size).is_err() {
                            return;
                        }
                    }
                    Ok(r) => panic!("{}: {}", r.status, r.text()),
                    Err(_) => return, // killed
                }
            }
        });
        std::thread::sleep(std::time::Duration::from_millis(150 + 100 * round));
        w.kill9();
        client.join().unwrap();
        let acked = rx
            .try_iter()
            .max()
            .expect("some cosignatures before the kill");
        w.restart();
        // Asking with old size 0 reveals the stored size (409) — at least the last one
        // acknowledged, and at most one request further (the one in flight at the kill).
        let r = add(&w, &log.request(0, acked));
        let stored = if r.status == 409 {
            parse_size_body(&r.body).unwrap()
        } else {
            panic!("{}: {}", r.status, r.text())
        };
        assert!(
            stored >= acked,
            "round {round}: acknowledged {acked}, stored {stored} after kill -9"
        );
        assert!(
            stored <= acked + 3,
            "round {round}: acknowledged {acked}, stored {stored}"
        );
        let m = get(
            &agent(),
            &w.url(&format!("/{}", monitoring_path(&log.origin))),
        )
        .unwrap();
        let cp = verify_checkpoint(&m.body, &[&log.vkey], Some(&log.origin)).unwrap();
        assert_eq!(cp.size, stored);
        if stored + 10 >= log.leaves.len() as u64 {
            break;
        }
    }
}

#[test]
fn concurrent_requests_from_the_same_old_size_cosign_exactly_one_and_never_roll_back() {
    let log = std::sync::Arc::new(TestLog::new("example.com/log", 400));
    let (_d, w) = start(&[&log]);
    let url = w.url("/add-checkpoint");
    assert_eq!(add(&w, &log.request(0, 10)).status, 200);
    let mut current = 10u64;
    for round in 0..5 {
        // 16 clients race from the stored size, each to a different new size.
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(16));
        let threads: Vec<_> = (0..16u64)
            .map(|i| {
                let (log, url, barrier) = (log.clone(), url.clone(), barrier.clone());
                let new = current + 1 + i * 2;
                let body = log.request(current, new);
                std::thread::spawn(move || {
                    let a = agent();
                    barrier.wait();
                    let r = post(&a, &url, TEXT, &body).unwrap();
                    (new, r)
                })
            })
            .collect();
        let answers: Vec<(u64, Resp)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        let winners: Vec<u64> = answers
            .iter()
            .filter(|(_, r)| r.status == 200)
            .map(|(n, _)| *n)
            .collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one 200, got {winners:?}"
        );
        let winner = winners[0];
        for (new, r) in &answers {
            if *new == winner {
                check_cosignature(&w, r, &log.checkpoint(winner));
                continue;
            }
            assert_eq!(r.status, 409, "round {round}: {}", r.text());
            assert_eq!(r.header("content-type"), Some("text/x.tlog.size"));
            assert_eq!(parse_size_body(&r.body).unwrap(), winner, "round {round}");
        }
        // The state is the winner's, and it never goes back.
        let m = get(
            &agent(),
            &w.url(&format!("/{}", monitoring_path(&log.origin))),
        )
        .unwrap();
        let cp = verify_checkpoint(&m.body, &[&log.vkey], Some(&log.origin)).unwrap();
        assert_eq!(cp.size, winner);
        assert!(winner > current);
        current = winner;
    }
}

/// A ledger whose key was made before it started, in `data/keys`.
fn ledger_keygen(data: &Path) {
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
}

fn copy_key(from: &Path, to: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(to.join("keys")).unwrap();
    for f in ["artifacts.key", "artifacts.vkey"] {
        std::fs::copy(from.join("keys").join(f), to.join("keys").join(f)).unwrap();
    }
    std::fs::set_permissions(
        to.join("keys/artifacts.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
}

fn ledger_add(l: &Ledger, entry: &str) {
    let r = post(
        &agent(),
        &l.url("/artifacts/add"),
        "application/octet-stream",
        entry.as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
}

/// The ledger's latest checkpoint and the consistency proof to it from `from`.
fn ledger_request(l: &Ledger, from: u64) -> (Vec<u8>, u64) {
    let a = agent();
    let cp = get(&a, &l.url("/artifacts/checkpoint")).unwrap().body;
    let size = verify_checkpoint(&cp, &[l.vkey("artifacts")], None)
        .unwrap()
        .size;
    let proof: Vec<Hash> = if from == 0 || from == size {
        vec![]
    } else {
        let j = get(
            &a,
            &l.url(&format!(
                "/artifacts/proof/consistency?from={from}&to={size}"
            )),
        )
        .unwrap()
        .json();
        j["consistency_proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| hash_from_base64(h.as_str().unwrap()).unwrap())
            .collect()
    };
    (
        AddCheckpoint {
            old_size: from,
            proof,
            checkpoint: cp,
        }
        .to_bytes(),
        size,
    )
}

#[test]
fn a_forked_log_is_refused_and_its_two_checkpoints_are_kept_as_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let (da, db) = (dir.path().join("ledger-a"), dir.path().join("ledger-b"));
    // Two real ledgers sharing one key: the same log identity showing two histories.
    ledger_keygen(&da);
    copy_key(&da, &db);
    let a = Ledger::start(&da, &[]);
    let b = Ledger::start(&db, &[]);
    let vkey = a.vkey("artifacts").to_string();
    assert_eq!(vkey, b.vkey("artifacts"));
    for i in 0..3 {
        ledger_add(&a, &format!("model-a-{i}"));
        ledger_add(&b, &format!("model-b-{i}"));
    }
    let w = Witness::start(
        &dir.path().join("w"),
        "witness.example/w1",
        &format!("log {vkey}\n"),
        &[],
    );
    let (body, size_a) = ledger_request(&a, 0);
    let r = add(&w, &body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(size_a, 3);

    // The second ledger's checkpoint of the same size: validly signed, another root.
    let (fork, size_b) = ledger_request(&b, 3);
    assert_eq!(size_b, 3);
    assert_status(&add(&w, &fork), 422, "root");
    // Submitting it again records nothing new.
    assert_eq!(add(&w, &fork).status, 422);
    // The second ledger grows; its proof from its own size 3 does not reach our size 3.
    ledger_add(&b, "model-b-3");
    let (fork4, _) = ledger_request(&b, 3);
    assert_status(&add(&w, &fork4), 422, "consistency proof");

    let forks = get(&agent(), &w.url("/forks")).unwrap();
    assert_eq!(forks.status, 200);
    assert_eq!(forks.header("content-type"), Some("application/json"));
    let list = forks.json();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    let proven = list
        .iter()
        .find(|e| e["kind"] == "same_size_different_root")
        .expect("a proven fork");
    assert_eq!(proven["origin"], "localhost/artifacts");
    assert_eq!(proven["old_size"], 3);
    // Both checkpoints verify under the log's key and disagree at the same size: anyone
    // can check the evidence with the vkey alone.
    let cosigned = verify_checkpoint(
        proven["cosigned_checkpoint"].as_str().unwrap().as_bytes(),
        &[&vkey],
        None,
    )
    .unwrap();
    let submitted = verify_checkpoint(
        proven["submitted_checkpoint"].as_str().unwrap().as_bytes(),
        &[&vkey],
        None,
    )
    .unwrap();
    assert_eq!((cosigned.size, submitted.size), (3, 3));
    assert_ne!(cosigned.root, submitted.root);
    // The cosigned one carries the witness's cosignature.
    let key = CosignerKey::parse(&w.vkey).unwrap();
    assert!(verify_cosignatures(
        proven["cosigned_checkpoint"].as_str().unwrap().as_bytes(),
        &[key]
    )
    .unwrap()[0]
        .is_some());
    let suspect = list
        .iter()
        .find(|e| e["kind"] == "inconsistent_proof")
        .expect("the failed proof");
    assert_eq!(
        suspect["proof"].as_array().unwrap().len(),
        fork4_proof_len(&fork4)
    );
    assert!(proven["detected_at"].as_u64().unwrap() > 0);

    // Metrics count the fork; the witness still follows the history it cosigned.
    let m = get(&agent(), &w.url("/metrics")).unwrap().text();
    assert!(
        m.lines()
            .any(|l| l
                .starts_with("witness_forks_detected_total{kind=\"same_size_different_root\"} 1")),
        "{m}"
    );
    ledger_add(&a, "model-a-3");
    let (next, _) = ledger_request(&a, 3);
    assert_eq!(add(&w, &next).status, 200);
}

fn fork4_proof_len(body: &[u8]) -> usize {
    AddCheckpoint::parse(body).unwrap().proof.len()
}

#[test]
fn metrics_count_answers_by_status() {
    let log = TestLog::new("example.com/log", 10);
    let (_d, w) = start(&[&log]);
    assert_eq!(add(&w, &log.request(0, 3)).status, 200);
    assert_eq!(add(&w, &log.request(0, 3)).status, 409);
    let m = get(&agent(), &w.url("/metrics")).unwrap().text();
    for want in [
        "witness_add_checkpoint_requests_total{status=\"200\"} 1",
        "witness_add_checkpoint_requests_total{status=\"409\"} 1",
        "witness_cosignatures_issued_total 1",
        "witness_logs 1",
    ] {
        assert!(m.contains(want), "{want}: {m}");
    }
    assert!(m.contains("witness_add_checkpoint_seconds_bucket"));
}

#[test]
fn keygen_refuses_to_overwrite_a_key_and_serve_refuses_a_readable_key() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ledger_e2e::witness::keygen(d, "witness.example/w1");
    let before = std::fs::read(d.join("witness.key")).unwrap();
    assert_eq!(
        std::fs::metadata(d.join("witness.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let out = Command::new(binary("ledger-witness"))
        .args(["keygen", "--name", "witness.example/w1", "--out"])
        .arg(d)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(std::fs::read(d.join("witness.key")).unwrap(), before);
    std::fs::set_permissions(
        d.join("witness.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let log = TestLog::new("example.com/log", 1);
    std::fs::write(d.join("logs"), log.log_line()).unwrap();
    let out = Command::new(binary("ledger-witness"))
        .arg("serve")
        .arg("--key")
        .arg(d.join("witness.key"))
        .arg("--logs")
        .arg(d.join("logs"))
        .arg("--data-dir")
        .arg(d.join("data"))
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
}
