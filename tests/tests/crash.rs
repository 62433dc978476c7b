//! Durability: the real server is killed with SIGKILL under concurrent load, many times.
//! After each restart every acknowledged entry must be at the index it was given, and every
//! checkpoint the log ever handed out must be consistent with the recovered tree.

use ledger_client::checkpoint::{verify_checkpoint, VerifiedCheckpoint};
use ledger_client::merkle::{
    hash_from_base64, leaf_hash, root_from_leaves, verify_consistency, Hash,
};
use ledger_client::tiles::{decode_bundle, TileKind, TilePath};
use ledger_e2e::{agent, get, post, Ledger};
use rand::Rng;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const OCTET: &str = "application/octet-stream";
const CYCLES: usize = 12;
const WRITERS: usize = 8;
/// A write-ahead log this small is flushed and recycled several times a cycle, so the kills
/// land on recycled WALs (overwritten in place, stale records from their last use beyond
/// the new ones) as well as on fresh ones. The default keeps 256 MiB.
const SERVER_ARGS: [&str; 2] = ["--max-wal-bytes", "262144"];

#[derive(Default)]
struct Acked {
    /// index → entry bytes, for every acknowledged entry.
    entries: BTreeMap<u64, Vec<u8>>,
    /// Every checkpoint note a client was given, by tree size.
    checkpoints: BTreeMap<u64, Vec<u8>>,
}

fn writer(base: String, id: String, stop: Arc<AtomicBool>, acked: Arc<Mutex<Acked>>) {
    let a = agent();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let batch = n.is_multiple_of(5);
        let entries: Vec<Vec<u8>> = if batch {
            (0..50)
                .map(|k| format!("{id}-{n}-{k}").into_bytes())
                .collect()
        } else {
            vec![format!("{id}-{n}").into_bytes()]
        };
        let r = if batch {
            let mut body = vec![];
            for e in &entries {
                body.extend_from_slice(&(e.len() as u16).to_be_bytes());
                body.extend_from_slice(e);
            }
            post(&a, &format!("{base}/artifacts/add-batch"), OCTET, &body)
        } else {
            post(&a, &format!("{base}/artifacts/add"), OCTET, &entries[0])
        };
        let Ok(r) = r else { return }; // the server died mid-request: not acknowledged
        if r.status != 200 {
            continue;
        }
        let j = r.json();
        let mut acked = acked.lock().unwrap();
        let note = j["checkpoint"].as_str().unwrap().as_bytes().to_vec();
        let size = note_size(&note);
        if let Some(prev) = acked.checkpoints.insert(size, note.clone()) {
            assert_eq!(
                prev, note,
                "two different checkpoints were issued at size {size}"
            );
        }
        let indexes: Vec<u64> = if batch {
            j["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["index"].as_u64().unwrap())
                .collect()
        } else {
            vec![j["index"].as_u64().unwrap()]
        };
        for (i, e) in indexes.into_iter().zip(entries) {
            if let Some(prev) = acked.entries.insert(i, e.clone()) {
                assert_eq!(prev, e, "index {i} acknowledged for two different entries");
            }
        }
    }
}

/// Whether RocksDB's info logs (the current one and those of earlier starts) hold `what`.
fn rocksdb_logged(data_dir: &std::path::Path, what: &str) -> bool {
    std::fs::read_dir(data_dir.join("db"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("LOG"))
        .any(|e| std::fs::read_to_string(e.path()).is_ok_and(|text| text.contains(what)))
}

fn note_size(note: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(note);
    text.lines()
        .nth(1)
        .and_then(|l| l.parse().ok())
        .expect("checkpoint size line")
}

fn fetch_all_entries(l: &Ledger, size: u64) -> Vec<Vec<u8>> {
    let a = agent();
    let mut out = vec![];
    let full = size / 256;
    for n in 0..=full {
        let width = if n < full { 256 } else { (size % 256) as u16 };
        if width == 0 {
            break;
        }
        let path = TilePath {
            kind: TileKind::Entries,
            index: n,
            width,
        }
        .to_path();
        let r = get(&a, &l.url(&format!("/artifacts/{path}"))).unwrap();
        assert_eq!(r.status, 200, "{path}");
        out.extend(
            decode_bundle(&r.body)
                .unwrap()
                .into_iter()
                .map(|e| e.to_vec()),
        );
    }
    out
}

#[test]
fn acknowledged_entries_and_issued_checkpoints_survive_kill_9_under_load() {
    let dir = tempfile::tempdir().unwrap();
    let acked = Arc::new(Mutex::new(Acked::default()));
    let mut rng = rand::thread_rng();
    let mut vkey = String::new();
    for cycle in 0..CYCLES {
        let mut l = Ledger::start(dir.path(), &SERVER_ARGS);
        if vkey.is_empty() {
            vkey = l.vkey("artifacts").to_string();
        }
        assert_eq!(l.vkey("artifacts"), vkey);
        verify_everything(&l, &vkey, &acked.lock().unwrap());

        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (base, stop, acked) = (l.base.clone(), stop.clone(), acked.clone());
                std::thread::spawn(move || writer(base, format!("c{cycle}w{w}"), stop, acked))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.gen_range(150..900)));
        l.kill9();
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            t.join().unwrap();
        }
    }
    let l = Ledger::start(dir.path(), &SERVER_ARGS);
    let acked = acked.lock().unwrap();
    assert!(
        acked.entries.len() > 100,
        "the load should have acknowledged entries"
    );
    assert!(
        rocksdb_logged(dir.path(), "from recycle list"),
        "the test should have run on recycled WALs"
    );
    verify_everything(&l, &vkey, &acked);
    drop(l);

    // The auditor's offline check agrees: every entry re-hashed, every tile rebuilt, every
    // checkpoint issued across all the crashes verified against the stored tree.
    let vkey_file = dir.path().join("published.vkey");
    std::fs::write(&vkey_file, &vkey).unwrap();
    let out = std::process::Command::new(ledger_e2e::binary("ledger"))
        .arg("fsck")
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--vkey")
        .arg(&vkey_file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "fsck failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(": OK"), "{stdout}");
}

fn verify_everything(l: &Ledger, vkey: &str, acked: &Acked) {
    let a = agent();
    let current: VerifiedCheckpoint = verify_checkpoint(
        &get(&a, &l.url("/artifacts/checkpoint")).unwrap().body,
        &[vkey],
        None,
    )
    .unwrap();
    let entries = fetch_all_entries(l, current.size);
    assert_eq!(entries.len() as u64, current.size);
    let leaves: Vec<Hash> = entries.iter().map(|e| leaf_hash(e)).collect();
    assert_eq!(
        root_from_leaves(&leaves),
        current.root,
        "served entries hash to the signed root"
    );
    for (i, e) in &acked.entries {
        assert!(
            *i < current.size,
            "acknowledged index {i} lost (size {})",
            current.size
        );
        assert_eq!(
            &entries[*i as usize], e,
            "entry at acknowledged index {i} changed"
        );
    }
    for note in acked.checkpoints.values() {
        let old = verify_checkpoint(note, &[vkey], None).unwrap();
        assert!(
            old.size <= current.size,
            "an issued checkpoint is ahead of the recovered tree"
        );
        let j = get(
            &a,
            &l.url(&format!("/artifacts/proof/consistency?from={}", old.size)),
        )
        .unwrap()
        .json();
        let proof: Vec<Hash> = j["consistency_proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| hash_from_base64(h.as_str().unwrap()).unwrap())
            .collect();
        verify_consistency(old.size, &old.root, current.size, &current.root, &proof)
            .unwrap_or_else(|e| panic!("checkpoint at {} is not consistent: {e}", old.size));
    }
}
