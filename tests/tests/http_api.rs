//! The real `ledger` binary over loopback HTTP: what a client sees, good input and bad.

use base64::prelude::*;
use ledger_client::checkpoint::verify_checkpoint;
use ledger_client::merkle::{
    hash_from_base64, leaf_hash, root_from_leaves, verify_inclusion, Hash,
};
use ledger_client::tiles::{decode_bundle, tiles_for_tree, TileKind};
use ledger_client::tlog_proof::TlogProof;
use ledger_e2e::{agent, get, post, Ledger};

const OCTET: &str = "application/octet-stream";

fn start() -> (tempfile::TempDir, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::start(
        dir.path(),
        &["--log", "artifacts", "--log", "audit=audit.example/log"],
    );
    (dir, l)
}

fn bundle(entries: &[&[u8]]) -> Vec<u8> {
    let mut b = vec![];
    for e in entries {
        b.extend_from_slice(&(e.len() as u16).to_be_bytes());
        b.extend_from_slice(e);
    }
    b
}

fn hashes(v: &serde_json::Value) -> Vec<Hash> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|h| hash_from_base64(h.as_str().unwrap()).unwrap())
        .collect()
}

fn assert_error(r: &ledger_e2e::Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    let j = r.json();
    assert_eq!(j["error"]["code"], code, "{j}");
    assert!(
        j["error"]["message"].as_str().is_some_and(|m| m.len() > 5),
        "error message must say what is wrong: {j}"
    );
}

#[test]
fn an_added_entry_comes_back_with_a_proof_that_verifies_offline() {
    let (_d, l) = start();
    let a = agent();
    let vkey = l.vkey("artifacts").to_string();
    let r = post(&a, &l.url("/artifacts/add"), OCTET, b"model sha256:abc").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["index"], 0);
    assert_eq!(j["duplicate"], false);
    let cp = verify_checkpoint(
        j["checkpoint"].as_str().unwrap().as_bytes(),
        &[&vkey],
        Some("localhost/artifacts"),
    )
    .unwrap();
    assert_eq!(cp.size, 1);
    let leaf = leaf_hash(b"model sha256:abc");
    assert_eq!(j["leaf_hash"], BASE64_STANDARD.encode(leaf.0));
    verify_inclusion(&leaf, 0, cp.size, &hashes(&j["inclusion_proof"]), &cp.root).unwrap();
    let tp = TlogProof::parse(j["tlog_proof"].as_str().unwrap().as_bytes()).unwrap();
    tp.verify(&leaf, &[&vkey], Some("localhost/artifacts"))
        .unwrap();

    // Adding it again appends nothing and returns the same index.
    let again = post(&a, &l.url("/artifacts/add"), OCTET, b"model sha256:abc")
        .unwrap()
        .json();
    assert_eq!(again["index"], 0);
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["tree_size"], 1);
}

#[test]
fn a_batch_keeps_its_order_and_the_tiles_rebuild_the_signed_root() {
    let (_d, l) = start();
    let a = agent();
    let vkey = l.vkey("artifacts").to_string();
    let entries: Vec<Vec<u8>> = (0..700u32)
        .map(|i| format!("dataset-{i}").into_bytes())
        .collect();
    let refs: Vec<&[u8]> = entries.iter().map(|e| e.as_slice()).collect();
    let r = post(
        &a,
        &l.url("/artifacts/add-batch?proofs=true"),
        OCTET,
        &bundle(&refs),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    let cp =
        verify_checkpoint(j["checkpoint"].as_str().unwrap().as_bytes(), &[&vkey], None).unwrap();
    assert_eq!(cp.size, 700);
    for (i, e) in j["entries"].as_array().unwrap().iter().enumerate() {
        assert_eq!(e["index"], i as u64);
        verify_inclusion(
            &leaf_hash(&entries[i]),
            i as u64,
            700,
            &hashes(&e["inclusion_proof"]),
            &cp.root,
        )
        .unwrap();
    }

    // c2sp.org/tlog-tiles: fetch every tile and bundle the checkpoint implies.
    let c = get(&a, &l.url("/artifacts/checkpoint")).unwrap();
    assert_eq!(c.header("content-type"), Some("text/plain; charset=utf-8"));
    assert!(c.header("cache-control").unwrap().contains("max-age=2"));
    let mut leaves = vec![];
    for t in tiles_for_tree(700) {
        let r = get(&a, &l.url(&format!("/artifacts/{}", t.to_path()))).unwrap();
        assert_eq!(r.status, 200, "{}", t.to_path());
        assert_eq!(r.header("content-type"), Some("application/octet-stream"));
        assert!(r.header("cache-control").unwrap().contains("immutable"));
        if let TileKind::Hashes { level: 0 } = t.kind {
            assert_eq!(r.body.len(), usize::from(t.width) * 32);
            leaves.extend(r.body.chunks(32).map(|c| Hash(c.try_into().unwrap())));
        }
    }
    assert_eq!(root_from_leaves(&leaves), cp.root);
    for (n, w) in [(0u64, None), (1, None), (2, Some(188))] {
        let path = match w {
            None => format!("/artifacts/tile/entries/{n:03}"),
            Some(w) => format!("/artifacts/tile/entries/{n:03}.p/{w}"),
        };
        let r = get(&a, &l.url(&path)).unwrap();
        assert_eq!(r.status, 200, "{path}");
        let got = decode_bundle(&r.body).unwrap();
        assert_eq!(got[0], entries[n as usize * 256].as_slice());
    }
    // Partial tiles of older checkpoints stay servable (they are prefixes).
    assert_eq!(
        get(&a, &l.url("/artifacts/tile/0/002.p/10"))
            .unwrap()
            .body
            .len(),
        320
    );
}

#[test]
fn proofs_by_index_by_leaf_hash_and_between_sizes() {
    let (_d, l) = start();
    let a = agent();
    let vkey = l.vkey("artifacts").to_string();
    for i in 0..40u32 {
        post(
            &a,
            &l.url("/artifacts/add"),
            OCTET,
            format!("e{i}").as_bytes(),
        )
        .unwrap();
    }
    let leaf = leaf_hash(b"e17");
    let hex: String = leaf.0.iter().map(|b| format!("{b:02x}")).collect();
    for q in [
        "index=17&tree_size=30".to_string(),
        format!("leaf_hash={hex}&tree_size=30"),
    ] {
        let j = get(&a, &l.url(&format!("/artifacts/proof/inclusion?{q}")))
            .unwrap()
            .json();
        assert_eq!(j["index"], 17);
        let cp = verify_checkpoint(j["checkpoint"].as_str().unwrap().as_bytes(), &[&vkey], None)
            .unwrap();
        assert_eq!(cp.size, 30);
        verify_inclusion(&leaf, 17, 30, &hashes(&j["inclusion_proof"]), &cp.root).unwrap();
    }
    let b64 = BASE64_STANDARD.encode(leaf.0);
    let r = a
        .get(&l.url("/artifacts/proof/tlog-proof"))
        .query("leaf_hash", &b64)
        .call()
        .unwrap()
        .into_body()
        .read_to_vec()
        .unwrap();
    let tp = TlogProof::parse(&r).unwrap();
    assert_eq!(tp.index, 17);
    tp.verify(&leaf, &[&vkey], None).unwrap();

    let old = verify_checkpoint(
        &get(&a, &l.url("/artifacts/checkpoint/12")).unwrap().body,
        &[&vkey],
        None,
    )
    .unwrap();
    let new = verify_checkpoint(
        &get(&a, &l.url("/artifacts/checkpoint")).unwrap().body,
        &[&vkey],
        None,
    )
    .unwrap();
    let j = get(&a, &l.url("/artifacts/proof/consistency?from=12"))
        .unwrap()
        .json();
    assert_eq!(j["to"], 40);
    ledger_client::merkle::verify_consistency(
        12,
        &old.root,
        40,
        &new.root,
        &hashes(&j["consistency_proof"]),
    )
    .unwrap();
}

#[test]
fn logs_in_one_process_are_separate() {
    let (_d, l) = start();
    let a = agent();
    post(&a, &l.url("/artifacts/add"), OCTET, b"x").unwrap();
    let audit = get(&a, &l.url("/audit/checkpoint")).unwrap();
    let cp = verify_checkpoint(&audit.body, &[l.vkey("audit")], Some("audit.example/log")).unwrap();
    assert_eq!(cp.size, 0);
    // The artifacts key does not verify the audit log.
    assert!(verify_checkpoint(&audit.body, &[l.vkey("artifacts")], None).is_err());
    let logs = get(&a, &l.url("/logs")).unwrap().json();
    assert_eq!(logs["logs"].as_array().unwrap().len(), 2);
}

#[test]
fn bad_writes_get_clear_errors_and_change_nothing() {
    let (_d, l) = start();
    let a = agent();
    let add = l.url("/artifacts/add");
    let batch = l.url("/artifacts/add-batch");
    assert_error(
        &post(&a, &add, "text/plain", b"x").unwrap(),
        415,
        "unsupported_media_type",
    );
    assert_error(&post(&a, &add, OCTET, b"").unwrap(), 422, "invalid");
    assert_error(
        &post(&a, &add, OCTET, &vec![1u8; 65_536]).unwrap(),
        413,
        "too_large",
    );
    assert_error(
        &post(&a, &batch, OCTET, &[0, 5, 1, 2]).unwrap(),
        400,
        "bad_bundle",
    );
    assert_error(
        &post(&a, &batch, OCTET, &[0, 0]).unwrap(),
        400,
        "bad_bundle",
    );
    assert_error(&post(&a, &batch, OCTET, &[0]).unwrap(), 400, "bad_bundle");
    assert_error(&post(&a, &batch, OCTET, b"").unwrap(), 422, "invalid");
    // A huge declared body is refused from its headers alone, before it is sent.
    let huge = raw_request(&l, &format!(
        "POST /artifacts/add-batch HTTP/1.1\r\nhost: x\r\ncontent-type: {OCTET}\r\ncontent-length: {}\r\n\r\n",
        1u64 << 34
    ));
    assert!(huge.starts_with("HTTP/1.1 413"), "{huge}");
    assert!(huge.contains("too_large"), "{huge}");
    assert_error(
        &post(&a, &batch, "application/json", &bundle(&[b"a"])).unwrap(),
        415,
        "unsupported_media_type",
    );
    assert_error(
        &post(
            &a,
            &l.url("/artifacts/add-batch?proofs=maybe"),
            OCTET,
            &bundle(&[b"a"]),
        )
        .unwrap(),
        400,
        "bad_request",
    );
    assert_error(
        &post(&a, &l.url("/nolog/add"), OCTET, b"x").unwrap(),
        404,
        "not_found",
    );
    assert_error(&get(&a, &add).unwrap(), 405, "method_not_allowed");
    let many: Vec<&[u8]> = vec![b"a"; 65_537];
    assert_error(
        &post(&a, &batch, OCTET, &bundle(&many)).unwrap(),
        413,
        "too_large",
    );
    // Nothing above was appended.
    let cp = get(&a, &l.url("/artifacts/checkpoint")).unwrap().text();
    assert_eq!(cp.lines().nth(1), Some("0"));
}

#[test]
fn bad_reads_get_clear_errors() {
    let (_d, l) = start();
    let a = agent();
    for i in 0..3u8 {
        post(&a, &l.url("/artifacts/add"), OCTET, &[i + 1]).unwrap();
    }
    for (path, status, code) in [
        ("/artifacts/tile/0/00", 400, "bad_tile_path"),
        ("/artifacts/tile/0/0000", 400, "bad_tile_path"),
        ("/artifacts/tile/00/000", 400, "bad_tile_path"),
        ("/artifacts/tile/64/000", 400, "bad_tile_path"),
        ("/artifacts/tile/0/001/000", 400, "bad_tile_path"),
        ("/artifacts/tile/0/000.p/0", 400, "bad_tile_path"),
        ("/artifacts/tile/0/000.p/256", 400, "bad_tile_path"),
        ("/artifacts/tile/0/000.p/03", 400, "bad_tile_path"),
        ("/artifacts/tile/entries/x999/x999/x999/x999/x999/x999/x999/000", 400, "bad_tile_path"),
        ("/artifacts/tile/0/000", 404, "not_found"),
        ("/artifacts/tile/0/000.p/4", 404, "not_found"),
        ("/artifacts/tile/1/000.p/1", 404, "not_found"),
        ("/artifacts/tile/entries/001.p/1", 404, "not_found"),
        ("/artifacts/checkpoint/99", 404, "not_found"),
        ("/artifacts/checkpoint/-1", 400, "bad_request"),
        ("/artifacts/proof/inclusion", 400, "bad_request"),
        ("/artifacts/proof/inclusion?index=3", 422, "invalid"),
        ("/artifacts/proof/inclusion?index=0&tree_size=4", 422, "invalid"),
        ("/artifacts/proof/inclusion?index=x", 400, "bad_request"),
        ("/artifacts/proof/inclusion?index=99999999999999999999999", 400, "bad_request"),
        ("/artifacts/proof/inclusion?index=1&index=2", 400, "bad_request"),
        ("/artifacts/proof/inclusion?index=1&leaf_hash=AA", 400, "bad_request"),
        ("/artifacts/proof/inclusion?leaf_hash=AA", 400, "bad_request"),
        ("/artifacts/proof/inclusion?leaf_hash=47DEQpj8HBSa%2B%2FTImW%2B5JCeuQeRkm5NMpJWZG3hSuFU%3D", 404, "not_found"),
        ("/artifacts/proof/consistency?from=3&to=2", 422, "invalid"),
        ("/artifacts/proof/consistency?from=1&to=9", 422, "invalid"),
        ("/artifacts/proof/consistency", 400, "bad_request"),
        ("/nolog/checkpoint", 404, "not_found"),
        ("/artifacts/nothing", 404, "not_found"),
    ] {
        let r = get(&a, &l.url(path)).unwrap();
        assert_eq!(r.status, status, "{path}: {}", r.text());
        assert_error(&r, status, code);
    }
    // The partial tile of the current size is served.
    assert_eq!(
        get(&a, &l.url("/artifacts/tile/0/000.p/3"))
            .unwrap()
            .body
            .len(),
        96
    );
}

#[test]
fn operations_endpoints_report_health_and_metrics() {
    let (_d, l) = start();
    let a = agent();
    post(&a, &l.url("/artifacts/add"), OCTET, b"m").unwrap();
    assert_eq!(get(&a, &l.url("/healthz")).unwrap().status, 200);
    assert_eq!(get(&a, &l.url("/readyz")).unwrap().status, 200);
    let m = get(&a, &l.url("/metrics")).unwrap().text();
    for name in [
        "ledger_entries_appended_total{log=\"artifacts\"} 1",
        "ledger_tree_size{log=\"artifacts\"} 1",
        "ledger_batch_entries_bucket",
        "ledger_sequencing_seconds_bucket",
        "ledger_storage_bytes{log=\"artifacts\"}",
    ] {
        assert!(m.contains(name), "metrics lack {name}:\n{m}");
    }
}

#[test]
fn restarting_keeps_entries_keys_and_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let a = agent();
    let (vkey, cp1) = {
        let l = Ledger::start(dir.path(), &[]);
        for i in 0..300u32 {
            post(
                &a,
                &l.url("/artifacts/add"),
                OCTET,
                format!("r{i}").as_bytes(),
            )
            .unwrap();
        }
        (
            l.vkey("artifacts").to_string(),
            get(&a, &l.url("/artifacts/checkpoint")).unwrap().body,
        )
    };
    let l = Ledger::start(dir.path(), &[]);
    assert_eq!(l.vkey("artifacts"), vkey, "the key is kept");
    let cp2 = get(&a, &l.url("/artifacts/checkpoint")).unwrap().body;
    assert_eq!(cp1, cp2, "the latest checkpoint is the same note");
    let j = post(&a, &l.url("/artifacts/add"), OCTET, b"r299")
        .unwrap()
        .json();
    assert_eq!(
        (j["index"].as_u64(), j["duplicate"].as_bool()),
        (Some(299), Some(true))
    );
}

/// Sends raw bytes and returns what the server answers before closing or within 5 s.
fn raw_request(l: &Ledger, request: &str) -> String {
    use std::io::{Read, Write};
    let addr = l.base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn malformed_http_is_answered_not_crashed_on() {
    let (_d, l) = start();
    for req in [
        "GET /artifacts/checkpoint HTTP/1.1\r\nhost: x\r\ncontent-length: abc\r\n\r\n",
        "BREW /artifacts/checkpoint HTTP/1.1\r\nhost: x\r\n\r\n",
        "GET /%ff%fe/checkpoint HTTP/1.1\r\nhost: x\r\n\r\n",
        "GET /artifacts/tile/0/../../etc/passwd HTTP/1.1\r\nhost: x\r\n\r\n",
        "POST /artifacts/add HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",
    ] {
        let answer = raw_request(&l, req);
        assert!(answer.starts_with("HTTP/1.1 4"), "{req:?} -> {answer:?}");
    }
    // The server is still up and unchanged.
    let cp = get(&agent(), &l.url("/artifacts/checkpoint")).unwrap();
    assert_eq!(cp.status, 200);
}

#[test]
fn a_full_pool_answers_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    // A pool that holds nothing refuses every write: the back-pressure path, deterministically.
    let l = Ledger::start(dir.path(), &["--max-pending-entries", "0"]);
    let r = post(&agent(), &l.url("/artifacts/add"), OCTET, b"x").unwrap();
    assert_error(&r, 503, "unavailable");
    assert_eq!(r.header("retry-after"), Some("1"));
    // Reads still work.
    assert_eq!(
        get(&agent(), &l.url("/artifacts/checkpoint"))
            .unwrap()
            .status,
        200
    );
}

#[test]
fn keygen_writes_a_private_key_only_its_owner_can_read_and_never_overwrites_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let run = || {
        std::process::Command::new(ledger_e2e::binary("ledger"))
            .args([
                "keygen",
                "--origin",
                "ledger.example/models",
                "--name",
                "models",
                "--out-dir",
            ])
            .arg(dir.path())
            .output()
            .unwrap()
    };
    let out = run();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let vkey = String::from_utf8(out.stdout).unwrap();
    assert!(vkey.starts_with("ledger.example/models+"), "{vkey}");
    ledger_client::checkpoint::parse_vkey(vkey.trim()).unwrap();
    let key = dir.path().join("models.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let before = std::fs::read(&key).unwrap();
    let again = run();
    assert!(
        !again.status.success(),
        "a second keygen must not overwrite the key"
    );
    assert_eq!(std::fs::read(&key).unwrap(), before);
    // An origin that cannot be a key name is refused with a reason.
    let bad = std::process::Command::new(ledger_e2e::binary("ledger"))
        .args(["keygen", "--origin", "has space", "--out-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a valid key name"));
}

#[test]
fn a_server_refuses_to_start_with_a_world_readable_key_bad_log_names_or_a_bad_wal_limit() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    drop(Ledger::start(dir.path(), &[]));
    let key = dir.path().join("keys/artifacts.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = std::process::Command::new(ledger_e2e::binary("ledger"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
    for bad in ["UPPER", "a/b", "metrics", "x=has space"] {
        let out = std::process::Command::new(ledger_e2e::binary("ledger"))
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--listen", "127.0.0.1:0", "--log", bad])
            .output()
            .unwrap();
        assert!(!out.status.success(), "--log {bad} accepted");
    }
    // A WAL limit below 64 KiB would flush on nearly every write; nonsense is refused too.
    for bad in ["100", "-1", "lots", ""] {
        let out = std::process::Command::new(ledger_e2e::binary("ledger"))
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--listen", "127.0.0.1:0"])
            .arg(format!("--max-wal-bytes={bad}"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "--max-wal-bytes {bad:?} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--max-wal-bytes"), "{err}");
    }
}
