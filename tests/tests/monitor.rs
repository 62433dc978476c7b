//! `ledger-monitor` against the real `ledger` and `ledger-witness`: it verifies a log through
//! the tlog-tiles read path, resumes after a restart, and raises the right alert when the
//! log's storage is tampered with (a rewritten entry, a changed hash tile) or when the log
//! shows a witness a different tree than the monitor (split view).

use ledger_client::merkle::Hash;
use ledger_client::witness_protocol::AddCheckpoint;
use ledger_e2e::witness::Witness;
use ledger_e2e::{agent, binary, post, Ledger};
use std::path::Path;
use std::process::Command;

fn add_batch(l: &Ledger, from: usize, n: usize) {
    let entries: Vec<Vec<u8>> = (from..from + n)
        .map(|i| format!("monitored entry {i}").into_bytes())
        .collect();
    let body = ledger_client::tiles::encode_bundle(entries.iter().map(|e| e.as_slice())).unwrap();
    let r = post(
        &agent(),
        &l.url("/artifacts/add-batch"),
        "application/octet-stream",
        &body,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Writes a monitor configuration for the ledger's `artifacts` log.
fn config(dir: &Path, l: &Ledger, witnesses: &[(&str, String)]) -> std::path::PathBuf {
    std::fs::write(dir.join("log.vkey"), format!("{}\n", l.vkey("artifacts"))).unwrap();
    let w: Vec<serde_json::Value> = witnesses
        .iter()
        .map(|(n, u)| serde_json::json!({"name": n, "url": u}))
        .collect();
    let c = serde_json::json!({
        "state_dir": "state",
        "logs": [{"url": l.url("/artifacts"), "vkey": "log.vkey"}],
        "witnesses": w,
    });
    let p = dir.join("monitor.json");
    std::fs::write(&p, c.to_string()).unwrap();
    p
}

/// `ledger-monitor --once`: (exit code, stdout, the alerts it printed).
/// Alert kinds and messages, for assertion messages (the evidence is long).
fn kinds(alerts: &[serde_json::Value]) -> Vec<String> {
    alerts
        .iter()
        .map(|a| format!("{}: {}", a["kind"], a["message"]))
        .collect()
}

fn monitor_once(config: &Path) -> (i32, String, Vec<serde_json::Value>) {
    let out = Command::new(binary("ledger-monitor"))
        .arg("--config")
        .arg(config)
        .arg("--once")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let alerts = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("ALERT "))
        .map(|j| serde_json::from_str(j).unwrap())
        .collect();
    (
        out.status.code().unwrap_or(-1),
        stdout + &String::from_utf8_lossy(&out.stderr),
        alerts,
    )
}

#[test]
fn a_healthy_log_verifies_and_a_restarted_monitor_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::start(&dir.path().join("ledger"), &[]);
    add_batch(&l, 0, 600);
    let cfg = config(dir.path(), &l, &[]);
    let (code, out, alerts) = monitor_once(&cfg);
    assert_eq!(code, 0, "{out}");
    assert!(alerts.is_empty(), "{alerts:?}");
    assert!(out.contains("from tree size 0"), "{out}");
    assert!(out.contains("verified tree size 600"), "{out}");
    // The state survives the process: the next run starts at 600 and reads only what is new.
    add_batch(&l, 600, 35_000);
    add_batch(&l, 35_600, 35_000);
    let (code, out, _) = monitor_once(&cfg);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("from tree size 600"), "{out}");
    assert!(out.contains("verified tree size 70600"), "{out}");
    let (code, out, _) = monitor_once(&cfg);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("from tree size 70600"), "{out}");
}

/// Stops the ledger, changes its RocksDB directly, and starts it again.
fn tamper(l: Ledger, data: &Path, change: impl FnOnce(&rocksdb::DB)) -> Ledger {
    drop(l);
    {
        // Opened as the ledger opens it (its column families and their options).
        let rocks =
            ledger::store::rocks::RocksDb::open(&data.join("db"), &["artifacts".into()], 1 << 20)
                .unwrap();
        let (db, _) = rocks.derived("artifacts", "catalog");
        change(&db);
    }
    Ledger::start(data, &[])
}

#[test]
fn a_rewritten_entry_raises_tree_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ledger");
    let l = Ledger::start(&data, &[]);
    add_batch(&l, 0, 300);
    let l = tamper(l, &data, |db| {
        let cf = db.cf_handle("artifacts/bundle").unwrap();

        let stored = db.get_cf(&cf, 0u64.to_be_bytes()).unwrap().unwrap();
        let mut entries: Vec<Vec<u8>> = ledger_client::tiles::decode_bundle(&stored)
            .unwrap()
            .into_iter()
            .map(<[u8]>::to_vec)
            .collect();
        entries[5] = b"monitored entry 5, rewritten".to_vec();
        let again =
            ledger_client::tiles::encode_bundle(entries.iter().map(|e| e.as_slice())).unwrap();
        db.put_cf(&cf, 0u64.to_be_bytes(), again).unwrap();
    });
    let cfg = config(dir.path(), &l, &[]);
    let (code, out, alerts) = monitor_once(&cfg);
    assert_eq!(code, 1, "{out}");
    assert_eq!(alerts.len(), 1, "{:?}", kinds(&alerts));
    assert_eq!(alerts[0]["kind"], "tree_mismatch", "{:?}", kinds(&alerts));
    assert!(alerts[0]["evidence"]["checkpoint"]
        .as_str()
        .unwrap()
        .contains("\n300\n"));
    // Raised once: a second run does not repeat it, and the verified state did not move.
    let (code, out, alerts) = monitor_once(&cfg);
    assert_eq!(code, 0, "{out}");
    assert!(alerts.is_empty());
    assert!(out.contains("verified tree size 0"), "{out}");
}

#[test]
fn a_changed_hash_tile_raises_tile_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ledger");
    let l = Ledger::start(&data, &[]);
    add_batch(&l, 0, 300);
    let l = tamper(l, &data, |db| {
        let cf = db.cf_handle("artifacts/tile").unwrap();
        let key = [0u8, 0, 0, 0, 0, 0, 0, 0, 0];
        let mut stored = db.get_cf(&cf, key).unwrap().unwrap();
        // The first served hash (the leaf hash of entry 0).
        stored[0] ^= 1;
        db.put_cf(&cf, key, stored).unwrap();
    });
    let cfg = config(dir.path(), &l, &[]);
    let (code, out, alerts) = monitor_once(&cfg);
    assert_eq!(code, 1, "{out}");
    assert_eq!(alerts.len(), 1, "{:?}", kinds(&alerts));
    assert_eq!(alerts[0]["kind"], "tile_mismatch", "{:?}", kinds(&alerts));
    assert!(alerts[0]["evidence"]["url"]
        .as_str()
        .unwrap()
        .ends_with("/artifacts/tile/0/000"));
}

#[test]
fn a_log_that_shows_a_witness_another_tree_raises_split_view_with_both_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ledger");
    let l = Ledger::start(&data, &[]);
    add_batch(&l, 0, 10);
    let vkey = l.vkey("artifacts").to_string();
    let w = Witness::start(
        &dir.path().join("w"),
        "witness.example/w1",
        &format!("log {vkey}\n"),
        &[],
    );
    // The log's key holder signs a second tree of the same size and gets the witness to
    // cosign it: the witness has seen nothing of the log, so it has no reason to refuse.
    let skey = std::fs::read_to_string(data.join("keys/artifacts.key")).unwrap();
    let origin = vkey.split('+').next().unwrap();
    let other =
        ledger_client::checkpoint::sign_checkpoint(skey.trim(), origin, 10, &Hash([7; 32]), &[])
            .unwrap();
    let body = AddCheckpoint {
        old_size: 0,
        proof: vec![],
        checkpoint: other.clone(),
    }
    .to_bytes();
    let r = post(&agent(), &w.url("/add-checkpoint"), "text/plain", &body).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());

    let cfg = config(dir.path(), &l, &[("w1", w.url(""))]);
    let (code, out, alerts) = monitor_once(&cfg);
    assert_eq!(code, 1, "{out}");
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    let a = &alerts[0];
    assert_eq!(a["kind"], "split_view", "{a}");
    assert_eq!(a["evidence"]["witness"], "w1");
    // Both signed checkpoints are in the evidence, and each verifies under the log's key.
    for k in ["monitor_checkpoint", "witness_checkpoint"] {
        let note = a["evidence"][k].as_str().unwrap();
        let cp = ledger_client::verify_checkpoint(note.as_bytes(), &[&vkey], None).unwrap();
        assert_eq!(cp.size, 10);
    }
    assert_ne!(
        a["evidence"]["monitor_checkpoint"],
        a["evidence"]["witness_checkpoint"]
    );

    // A witness at a smaller, consistent size is not a split: checked with a consistency
    // proof built from the log's tiles.
    let dir2 = tempfile::tempdir().unwrap();
    let data2 = dir2.path().join("ledger");
    let l2 = Ledger::start(&data2, &[]);
    add_batch(&l2, 0, 300);
    let early = ledger_e2e::get(&agent(), &l2.url("/artifacts/checkpoint"))
        .unwrap()
        .body;
    add_batch(&l2, 300, 400);
    let w2 = Witness::start(
        &dir2.path().join("w"),
        "witness.example/w2",
        &format!("log {}\n", l2.vkey("artifacts")),
        &[],
    );
    let body = AddCheckpoint {
        old_size: 0,
        proof: vec![],
        checkpoint: early,
    }
    .to_bytes();
    let r = post(&agent(), &w2.url("/add-checkpoint"), "text/plain", &body).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let cfg = config(dir2.path(), &l2, &[("w2", w2.url(""))]);
    let (code, out, alerts) = monitor_once(&cfg);
    assert_eq!(code, 0, "{out} {alerts:?}");
}

#[test]
fn a_bad_configuration_or_a_damaged_state_file_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::start(&dir.path().join("ledger"), &[]);
    add_batch(&l, 0, 3);
    let cfg = config(dir.path(), &l, &[]);
    assert_eq!(monitor_once(&cfg).0, 0);
    // The saved state, damaged: refused, not silently restarted from scratch.
    let state = std::fs::read_dir(dir.path().join("state"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut s: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    s["tree"]["size"] = serde_json::json!(2);
    std::fs::write(&state, s.to_string()).unwrap();
    let (code, out, _) = monitor_once(&cfg);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("does not fit size 2") || out.contains("does not match"),
        "{out}"
    );
    for (bad, says) in [
        ("{", "parsing monitor configuration"),
        (r#"{"state_dir": "s", "logs": []}"#, "names no log"),
        (
            r#"{"state_dir": "s", "logs": [{"url": "ftp://x", "vkey": "log.vkey"}]}"#,
            "http",
        ),
        (
            r#"{"state_dir": "s", "logs": [], "extra": 1}"#,
            "unknown field",
        ),
        (
            r#"{"state_dir": "s", "logs": [], "blobs": {"url": "http://x", "rehash": 0}}"#,
            "blobs.rehash must be a number from 1 to 10000",
        ),
        (
            r#"{"state_dir": "s", "logs": [], "blobs": {"url": "http://x", "rehash": "most"}}"#,
            "or \"all\"",
        ),
        (
            r#"{"state_dir": "s", "logs": [], "blobs": {"url": "http://x", "per_round": 3}}"#,
            "unknown field `per_round`",
        ),
        (
            r#"{"state_dir": "s", "logs": [], "rules": [{"name": "keys", "publisher_keys": ["release-2026"]}]}"#,
            "rule \"keys\": publisher key",
        ),
    ] {
        let p = dir.path().join("bad.json");
        std::fs::write(&p, bad).unwrap();
        let (code, out, _) = monitor_once(&p);
        assert_eq!(code, 2, "{bad}: {out}");
        assert!(out.contains(says), "{bad}: {out}");
    }
}

/// A webhook receiver on loopback that refuses the first `refuse` POSTs with 500 and
/// hands every body it accepts to the returned channel.
fn webhook(refuse: usize) -> (String, std::sync::mpsc::Receiver<serde_json::Value>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/alerts", listener.local_addr().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = 0;
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let l = line.to_ascii_lowercase();
                if let Some(v) = l.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            seen += 1;
            let status = if seen <= refuse {
                "500 Internal Server Error"
            } else {
                let _ = tx.send(serde_json::from_slice(&body).unwrap());
                "200 OK"
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    (url, rx)
}

#[test]
fn alerts_reach_a_webhook_that_fails_at_first_and_show_in_the_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ledger");
    let l = Ledger::start(&data, &[]);
    add_batch(&l, 0, 300);
    let l = tamper(l, &data, |db| {
        let cf = db.cf_handle("artifacts/tile").unwrap();
        let key = [0u8; 9];
        let mut stored = db.get_cf(&cf, key).unwrap().unwrap();
        stored[31] ^= 0x80;
        db.put_cf(&cf, key, stored).unwrap();
    });
    let cfg = config(dir.path(), &l, &[]);
    let (url, alerts) = webhook(2);
    let mut c: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
    c["webhook"] = serde_json::json!({"url": url, "max_attempts": 4});
    c["interval_ms"] = serde_json::json!(200);
    std::fs::write(&cfg, c.to_string()).unwrap();

    let (mut child, metrics_url) = spawn_monitor(&cfg);
    // Delivered on the third attempt, once, although the monitor keeps polling.
    let a = alerts
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the alert reached the webhook");
    assert_eq!(a["kind"], "tile_mismatch", "{}", a["message"]);
    assert_eq!(a["log"], "localhost/artifacts");
    assert!(alerts
        .recv_timeout(std::time::Duration::from_secs(2))
        .is_err());
    let m = ledger_e2e::get(&agent(), &metrics_url).unwrap().text();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        m.contains(r#"monitor_alerts_total{log="localhost/artifacts",kind="tile_mismatch"} 1"#),
        "{m}"
    );
    assert!(m.contains("monitor_alert_delay_seconds_count 1"), "{m}");
    assert!(m.contains("monitor_webhook_failures_total 0"), "{m}");
}

/// `ledger-monitor` running (not `--once`) with metrics on loopback: the child and its
/// metrics URL. Its output is drained on a thread.
fn spawn_monitor(cfg: &Path) -> (std::process::Child, String) {
    let mut child = Command::new(binary("ledger-monitor"))
        .arg("--config")
        .arg(cfg)
        .args(["--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let metrics_url = loop {
        let line = lines.next().unwrap().unwrap();
        if let Some(u) = line.strip_prefix("metrics on ") {
            break u.to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, metrics_url)
}

fn registry(l: &Ledger, what: &str, body: serde_json::Value) {
    ledger_e2e::registry_write(l, what, body);
}

fn publish(l: &Ledger, name: &str, version: &str, kind: &str, bytes: &[u8]) -> String {
    let d = ledger_e2e::upload_blob(l, name, bytes).to_string();
    let mut body = serde_json::json!({"name": name, "version": version, "kind": kind,
                                      "digest": d, "actor": "ci"});
    if kind == "dataset" {
        body["meta"] = serde_json::json!({"license": "CC0", "source": "https://x.example"});
    }
    registry(l, "publish", body);
    d
}

/// The blob store's file holding `bytes` (content-addressed: found by its hex digest).
fn blob_file(data: &Path, digest: &str) -> std::path::PathBuf {
    let hex = digest.trim_start_matches("sha256:");
    let mut stack = vec![data.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().and_then(|n| n.to_str()) == Some(hex) {
                return p;
            }
        }
    }
    panic!("no blob file for {digest} under {}", data.display());
}

#[test]
fn rules_fire_on_the_events_they_name_and_blob_checks_find_missing_and_corrupt_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ledger");
    let l = Ledger::start(&data, &[]);
    let m1 = publish(&l, "models/m", "1", "model", b"weights one");
    let m2 = publish(&l, "models/m", "2", "model", b"weights two");
    publish(&l, "datasets/d", "1", "dataset", b"rows");
    let m3 = publish(&l, "models/m", "3", "model", b"weights three");
    // Publisher signatures: one good, one forged under the trusted key's id.
    let (skey, vkey) = signed_note::generate_key(&mut rand::rngs::OsRng, "release.example/ci");
    let (other, _) = signed_note::generate_key(&mut rand::rngs::OsRng, "release.example/ci");
    ledger_e2e::publish_signed(&l, "models/m", "4", b"weights four", &skey, None);
    ledger_e2e::publish_signed(&l, "models/m", "5", b"weights five", &other, Some(&skey));
    for to in ["approved", "released"] {
        registry(
            &l,
            "lifecycle",
            serde_json::json!({"name": "models/m", "version": "1", "to": to, "actor": "r"}),
        );
    }
    registry(
        &l,
        "tombstone",
        serde_json::json!({"name": "datasets/d", "version": "1", "reason": "consent withdrawn",
                           "actor": "legal"}),
    );
    let cfg = config(dir.path(), &l, &[]);
    let mut c: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
    c["rules"] = serde_json::json!([
        {"name": "new-model", "new_version": "models/*"},
        {"name": "signed-releases", "publisher_keys": [vkey]},
        {"name": "two-eyes", "approvals": {"to": "released", "required": 1}},
        {"name": "purges", "tombstone": true}
    ]);
    c["blobs"] = serde_json::json!({"url": l.url(""), "rehash": "all"});
    std::fs::write(&cfg, c.to_string()).unwrap();

    // Healthy bytes first: only the rules speak.
    let (code, out, alerts) = monitor_once(&cfg);
    assert_eq!(code, 1, "{out}");
    let fired = |alerts: &[serde_json::Value], rule: &str| {
        alerts
            .iter()
            .filter(|a| a["kind"] == "rule" && a["evidence"]["rule"] == rule)
            .count()
    };
    assert_eq!(fired(&alerts, "new-model"), 5, "{:?}", kinds(&alerts));
    // Four unsigned, one forged; m@4's signature holds.
    assert_eq!(fired(&alerts, "signed-releases"), 5, "{:?}", kinds(&alerts));
    let says = |needle: &str| {
        alerts
            .iter()
            .any(|a| a["message"].as_str().unwrap().contains(needle))
    };
    assert!(
        says("models/m@5 is signed, but its signature by trusted key release.example/ci+"),
        "{:?}",
        kinds(&alerts)
    );
    assert!(says("models/m@1 is unsigned"), "{:?}", kinds(&alerts));
    assert!(!says("models/m@4 is"), "{:?}", kinds(&alerts));
    assert_eq!(fired(&alerts, "two-eyes"), 1, "{:?}", kinds(&alerts));
    assert_eq!(fired(&alerts, "purges"), 1, "{:?}", kinds(&alerts));
    assert_eq!(alerts.len(), 12, "{:?}", kinds(&alerts));

    // Then the store loses one model's bytes, corrupts another's, and cuts a third short.
    std::fs::remove_file(blob_file(&data, &m1)).unwrap();
    let f = blob_file(&data, &m2);
    let mut bytes = std::fs::read(&f).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&f, bytes).unwrap();
    let f = blob_file(&data, &m3);
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() - 3]).unwrap();
    let (code, out, alerts) = monitor_once(&cfg);
    assert_eq!(code, 1, "{out}");
    let k: Vec<(String, String)> = alerts
        .iter()
        .map(|a| {
            (
                a["kind"].as_str().unwrap().to_string(),
                a["evidence"]["artifact"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert!(
        k.contains(&("blob_missing".into(), "models/m@1".into())),
        "{:?}",
        kinds(&alerts)
    );
    assert!(
        k.contains(&("blob_corrupt".into(), "models/m@2".into())),
        "{:?}",
        kinds(&alerts)
    );
    // The presence sweep finds the short blob by its size alone (HEAD), the re-hash by
    // its bytes.
    let short: Vec<&str> = alerts
        .iter()
        .filter(|a| a["evidence"]["artifact"] == "models/m@3")
        .map(|a| a["message"].as_str().unwrap())
        .collect();
    assert!(
        short
            .iter()
            .any(|m| m.contains("holds 10 bytes") && m.contains("the log says 13")),
        "{short:?}"
    );
    assert_eq!(short.len(), 2, "{short:?}");
    assert_eq!(
        alerts.len(),
        4,
        "rules do not fire twice, nor a missing blob once per check: {:?}",
        kinds(&alerts)
    );
}

#[test]
fn approvals_seen_before_a_restart_still_count_after_it_and_an_idle_round_writes_no_versions() {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::start(&dir.path().join("ledger"), &[]);
    publish(&l, "models/a", "1", "model", b"a");
    publish(&l, "models/b", "1", "model", b"b");
    for actor in ["alice", "bob"] {
        registry(
            &l,
            "approve",
            serde_json::json!({"name": "models/a", "version": "1", "to": "approved", "actor": actor}),
        );
    }
    let cfg = config(dir.path(), &l, &[]);
    let mut c: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
    c["rules"] =
        serde_json::json!([{"name": "two-eyes", "approvals": {"to": "approved", "required": 2}}]);
    std::fs::write(&cfg, c.to_string()).unwrap();
    let (code, out, alerts) = monitor_once(&cfg);
    assert_eq!((code, alerts.len()), (0, 0), "{out}");
    // The versions are saved beside the state file, in its journal (specs/monitor.md).
    let journal = std::fs::read_dir(dir.path().join("state"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".versions.0.log"))
        .expect("a versions journal");
    let lines = std::fs::read_to_string(&journal).unwrap();
    assert_eq!(lines.lines().count(), 2, "{lines}");

    // A restarted monitor still knows a@1's two approvals; b@1 has none.
    for name in ["models/a", "models/b"] {
        registry(
            &l,
            "lifecycle",
            serde_json::json!({"name": name, "version": "1", "to": "approved", "actor": "rm"}),
        );
    }
    let (code, out, alerts) = monitor_once(&cfg);
    assert_eq!(code, 1, "{out}");
    assert_eq!(alerts.len(), 1, "{:?}", kinds(&alerts));
    assert!(
        alerts[0]["message"]
            .as_str()
            .unwrap()
            .contains("models/b@1 moved to approved (by rm) with 0 of the 2"),
        "{:?}",
        kinds(&alerts)
    );
    // a@1's approvals were cleared by its transition: one more line, for a@1 only.
    let after = std::fs::read_to_string(&journal).unwrap();
    assert_eq!(after.lines().count(), 3, "{after}");
    assert!(
        after.lines().last().unwrap().contains("models/a@1"),
        "{after}"
    );

    let (code, out, alerts) = monitor_once(&cfg);
    assert_eq!((code, alerts.len()), (0, 0), "{out}");
    assert_eq!(std::fs::read_to_string(&journal).unwrap(), after);

    // A journal cut short is a damaged state: refused (exit 2), not silently forgotten.
    std::fs::write(&journal, &after.as_bytes()[..after.len() - 5]).unwrap();
    let (code, out, _) = monitor_once(&cfg);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("damaged"), "{out}");
}

#[test]
fn blob_checks_run_on_their_schedule_not_every_round_and_rule_alerts_are_timed_from_their_entry() {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::start(&dir.path().join("ledger"), &[]);
    publish(&l, "models/a", "1", "model", b"a");
    publish(&l, "models/a", "2", "model", b"aa");
    let cfg = config(dir.path(), &l, &[]);
    let mut c: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
    c["interval_ms"] = serde_json::json!(50);
    c["blobs"] = serde_json::json!({"url": l.url(""), "rehash": 1,
        "rehash_every_seconds": 0, "presence_every_seconds": 3600});
    c["rules"] = serde_json::json!([{"name": "new-model", "new_version": "models/*"}]);
    std::fs::write(&cfg, c.to_string()).unwrap();
    let (mut child, metrics_url) = spawn_monitor(&cfg);
    let checked = |check: &str| -> u64 {
        let m = ledger_e2e::get(&agent(), &metrics_url).unwrap().text();
        let prefix =
            format!(r#"monitor_blobs_checked_total{{log="localhost/artifacts",check="{check}"}} "#);
        m.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map_or(0, |v| v.parse().unwrap())
    };
    let wait_for = |what: &dyn Fn() -> bool| {
        for _ in 0..600 {
            if what() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("the monitor did not get there in 30 s");
    };
    // A version published while the monitor runs: once the monitor has verified it and
    // re-hashed in later rounds, the hourly presence sweep has still run only once.
    wait_for(&|| checked("presence") == 2);
    publish(&l, "models/a", "3", "model", b"aaa");
    let rehashed = checked("rehash");
    wait_for(&|| checked("rehash") >= rehashed + 3);
    let presence = checked("presence");
    let m = ledger_e2e::get(&agent(), &metrics_url).unwrap().text();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        presence, 2,
        "the sweep ran once, over the two versions it knew"
    );
    // Each new version's rule alert is timed from its entry's own time.
    assert!(
        m.contains("monitor_event_alert_delay_seconds_count 3"),
        "{m}"
    );
}

#[test]
fn a_ledger_with_access_control_is_monitored_with_a_token_and_refused_without() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ledger");
    drop(Ledger::start(&data, &[]));
    let admin = ledger_e2e::offline_token(&data, "root", "admin");
    let auditor = ledger_e2e::offline_token(&data, "audra", "auditor");
    std::fs::write(dir.path().join("access.json"), "{}").unwrap();
    let acfg = dir.path().join("access.json");
    let l = Ledger::start(&data, &["--access-config", acfg.to_str().unwrap()]);
    let entries: Vec<Vec<u8>> = (0..300).map(|i| format!("e{i}").into_bytes()).collect();
    let body = ledger_client::tiles::encode_bundle(entries.iter().map(|e| e.as_slice())).unwrap();
    let r = ledger_e2e::request(
        &agent(),
        "POST",
        &l.url("/artifacts/add-batch"),
        &[
            ("content-type", "application/octet-stream"),
            ("authorization", &format!("Bearer {admin}")),
        ],
        &body,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let cfg = config(dir.path(), &l, &[]);
    // Without a credential every read is 401: the log is unreadable (exit 3), no alert.
    let (code, out, alerts) = monitor_once(&cfg);
    assert_eq!(code, 3, "{out}");
    assert!(alerts.is_empty());
    std::fs::write(dir.path().join("auditor.token"), format!("{auditor}\n")).unwrap();
    let mut c: serde_json::Value = serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
    c["logs"][0]["token_file"] = serde_json::json!("auditor.token");
    std::fs::write(&cfg, c.to_string()).unwrap();
    let (code, out, _) = monitor_once(&cfg);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("verified tree size 300"), "{out}");
    // A token file that is not one credential is refused at start.
    std::fs::write(dir.path().join("auditor.token"), "two words\n").unwrap();
    let (code, out, _) = monitor_once(&cfg);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("printable ASCII"), "{out}");
}

#[test]
fn a_cosigned_checkpoint_without_the_policys_witness_quorum_raises_an_alert() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("ledger");
    let l = Ledger::start(&data, &["--attest-interval-ms", "100"]);
    add_batch(&l, 0, 10);
    // Wait for an attestation (the embedded authority's time-stamp, no witnesses).
    for _ in 0..300 {
        let r = ledger_e2e::get(&agent(), &l.url("/artifacts/cosigned-checkpoint")).unwrap();
        if r.status == 200 && r.text().contains("\n10\n") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let cfg = config(dir.path(), &l, &[]);
    let vkey = l.vkey("artifacts").to_string();
    let with_policy = |text: String| {
        std::fs::write(dir.path().join("trust.policy"), text).unwrap();
        let mut c: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&cfg).unwrap()).unwrap();
        c["logs"][0]["policy"] = serde_json::json!("trust.policy");
        std::fs::write(&cfg, c.to_string()).unwrap();
    };
    // A policy that needs no witness: fine.
    with_policy(format!("log {vkey}\nquorum none\n"));
    let (code, out, alerts) = monitor_once(&cfg);
    assert_eq!(code, 0, "{out} {:?}", kinds(&alerts));
    // A policy that needs a witness who never cosigned: alert, with the checkpoint.
    let witness = ledger_e2e::witness::keygen(&dir.path().join("w"), "witness.example/w1");
    with_policy(format!(
        "log {vkey}\nwitness w1 {}\nquorum w1\n",
        witness.trim()
    ));
    let (code, out, alerts) = monitor_once(&cfg);
    assert_eq!(code, 1, "{out}");
    assert_eq!(alerts.len(), 1, "{:?}", kinds(&alerts));
    assert_eq!(alerts[0]["kind"], "witness_quorum");
    assert!(alerts[0]["evidence"]["cosigned_checkpoint"]
        .as_str()
        .unwrap()
        .contains("\n10\n"));
}
