//! The log engine without HTTP: sequencing, proofs from tiles, dedup, recovery, faults.
//! Proofs are checked against the independent verifier in `ledger_client` and against the
//! `ct-merkle` and `rs_merkle` oracles.

use bytes::Bytes;
use ledger::log::Log;
use ledger::sequencer::{self, Pool, PoolConfig, Receipt};
use ledger::store::memory::{Fault, MemoryStore};
use ledger::store::rocks::RocksDb;
use ledger::store::LogStore;
use ledger_client::checkpoint::verify_checkpoint;
use ledger_client::merkle::{leaf_hash, verify_consistency, verify_inclusion};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tlog_tiles::Hash;

const ORIGIN: &str = "test.example/log";

fn keys() -> (signed_note::StandardSigner, String) {
    let (skey, vkey) = signed_note::generate_key(&mut rand::rngs::OsRng, ORIGIN);
    (signed_note::StandardSigner::new(&skey).unwrap(), vkey)
}

fn open(
    store: Arc<dyn LogStore>,
    key: &(signed_note::StandardSigner, String),
) -> (Arc<Log>, Arc<Pool>) {
    let log = Log::open("log", ORIGIN, key.0.clone(), key.1.clone(), store).unwrap();
    let pool = sequencer::start(log.clone(), PoolConfig::default()).unwrap();
    (log, pool)
}

fn entry(i: u64) -> Vec<u8> {
    format!("entry number {i}").into_bytes()
}

fn submit(pool: &Pool, entries: &[Vec<u8>]) -> Result<Receipt, ledger::log::LogError> {
    let v = entries
        .iter()
        .map(|e| (Bytes::from(e.clone()), leaf_hash(e)))
        .collect();
    pool.submit(v)?.blocking_recv().expect("sequencer answered")
}

/// RFC 6962 node hashing for rs_merkle: with it, rs_merkle's layer-by-layer tree (odd nodes
/// promoted) is exactly the RFC 6962 left-balanced tree.
#[derive(Clone)]
struct Rfc6962;
impl rs_merkle::Hasher for Rfc6962 {
    type Hash = [u8; 32];
    fn hash(data: &[u8]) -> [u8; 32] {
        Sha256::digest(data).into()
    }
    fn concat_and_hash(left: &[u8; 32], right: Option<&[u8; 32]>) -> [u8; 32] {
        match right {
            Some(r) => {
                let mut h = Sha256::new();
                h.update([1u8]);
                h.update(left);
                h.update(r);
                h.finalize().into()
            }
            None => *left,
        }
    }
}

fn root_of(cp: &[u8], vkey: &str) -> (u64, Hash) {
    let v = verify_checkpoint(cp, &[vkey], Some(ORIGIN)).expect("checkpoint verifies");
    (v.size, v.root)
}

#[test]
fn every_proof_for_every_tree_size_up_to_300_matches_the_oracles() {
    let key = keys();
    let store = Arc::new(MemoryStore::default());
    let (log, pool) = open(store.clone(), &key);
    let mut ct = ct_merkle::mem_backed_tree::MemoryBackedTree::<sha2_011::Sha256, Vec<u8>>::new();
    let mut leaves: Vec<[u8; 32]> = vec![];
    let mut roots = vec![tlog_tiles::EMPTY_HASH];
    for i in 0..300u64 {
        // One entry per batch, so the log signs a checkpoint at every size.
        let r = submit(&pool, &[entry(i)]).unwrap();
        assert_eq!(r.entries[0].index, i);
        ct.push(entry(i));
        leaves.push(leaf_hash(&entry(i)).0);
        let (size, root) = root_of(&r.snapshot.checkpoint, &key.1);
        assert_eq!(size, i + 1);
        assert_eq!(
            root.0.as_slice(),
            ct.root().as_bytes().as_slice(),
            "ct-merkle root at {size}"
        );
        let rs = rs_merkle::MerkleTree::<Rfc6962>::from_leaves(&leaves);
        assert_eq!(Some(root.0), rs.root(), "rs_merkle root at {size}");
        roots.push(root);
    }
    let snap = log.snapshot();
    // Inclusion: every index of every size, against ct-merkle's proof bytes and our verifier.
    let mut ct_sized =
        ct_merkle::mem_backed_tree::MemoryBackedTree::<sha2_011::Sha256, Vec<u8>>::new();
    for size in 1..=300u64 {
        ct_sized.push(entry(size - 1));
        for idx in 0..size {
            let p = log.inclusion_proof(&snap, idx, size).unwrap();
            let want = ct_sized.prove_inclusion(idx as usize);
            let got: Vec<u8> = p.iter().flat_map(|h| h.0).collect();
            assert_eq!(got, want.as_bytes(), "inclusion {idx} in {size}");
            verify_inclusion(
                &leaf_hash(&entry(idx)),
                idx,
                size,
                &p,
                &roots[size as usize],
            )
            .unwrap();
        }
        // Consistency: every older size against this one.
        for old in 1..=size {
            let p = log.consistency_proof(&snap, old, size).unwrap();
            let want = ct_sized.prove_consistency((size - old) as usize);
            let got: Vec<u8> = p.iter().flat_map(|h| h.0).collect();
            assert_eq!(got, want.as_bytes(), "consistency {old} -> {size}");
            verify_consistency(old, &roots[old as usize], size, &roots[size as usize], &p).unwrap();
        }
    }
    // Stored checkpoints are every one the log issued.
    for size in 0..=300u64 {
        let cp = log.checkpoint_at(size).unwrap().expect("checkpoint kept");
        assert_eq!(root_of(&cp, &key.1), (size, roots[size as usize]));
    }
}

#[test]
fn proofs_at_a_large_tree_cross_three_tile_levels() {
    let key = keys();
    let (log, pool) = open(Arc::new(MemoryStore::default()), &key);
    let n = 70_000u64;
    let all: Vec<Vec<u8>> = (0..n).map(entry).collect();
    for chunk in all.chunks(9_999) {
        submit(&pool, chunk).unwrap();
    }
    let snap = log.snapshot();
    assert_eq!(snap.size(), n);
    let leaves: Vec<Hash> = all.iter().map(|e| leaf_hash(e)).collect();
    let root = ledger_client::merkle::root_from_leaves(&leaves);
    assert_eq!(snap.root, root);
    for idx in [0, 1, 255, 256, 65_535, 65_536, 69_999, 12_345] {
        let p = log.inclusion_proof(&snap, idx, n).unwrap();
        verify_inclusion(&leaves[idx as usize], idx, n, &p, &root).unwrap();
    }
    for old in [1, 255, 256, 257, 65_536, 65_537, 69_999] {
        let old_root = ledger_client::merkle::root_from_leaves(&leaves[..old as usize]);
        let p = log.consistency_proof(&snap, old, n).unwrap();
        verify_consistency(old, &old_root, n, &root, &p).unwrap();
    }
    // tlog-tiles: a tree of 70,000 exposes a partial level-0 tile of width 112, etc.
    assert_eq!(log.tile(0, 273, 112).unwrap().len(), 112 * 32);
    assert!(log.tile(0, 273, 113).is_err());
    assert_eq!(log.tile(1, 1, 17).unwrap().len(), 17 * 32);
    assert_eq!(log.tile(2, 0, 1).unwrap().len(), 32);
    assert_eq!(log.tile(1, 0, 256).unwrap().len(), 8192);
    assert!(log.tile(0, 274, 1).is_err());
    let b = log.bundle(273, 112).unwrap();
    let decoded = ledger_client::tiles::decode_bundle(&b).unwrap();
    assert_eq!(decoded.len(), 112);
    assert_eq!(decoded[0], entry(273 * 256).as_slice());
    // A level-0 tile is the leaf hashes of its bundle.
    let t = log.tile(0, 5, 256).unwrap();
    for (i, e) in ledger_client::tiles::decode_bundle(&log.bundle(5, 256).unwrap())
        .unwrap()
        .iter()
        .enumerate()
    {
        assert_eq!(&t[i * 32..i * 32 + 32], leaf_hash(e).0.as_slice());
    }
}

#[test]
fn a_resubmitted_entry_gets_its_original_index_and_appends_nothing() {
    let key = keys();
    let (log, pool) = open(Arc::new(MemoryStore::default()), &key);
    let first = submit(&pool, &(0..600).map(entry).collect::<Vec<_>>()).unwrap();
    assert!(first.entries.iter().all(|e| !e.duplicate));
    // Within one request, across requests, in the full-tile region and in the tail.
    let again = submit(&pool, &[entry(5), entry(599), entry(1000), entry(1000)]).unwrap();
    let got: Vec<(u64, bool)> = again
        .entries
        .iter()
        .map(|e| (e.index, e.duplicate))
        .collect();
    assert_eq!(got, vec![(5, true), (599, true), (600, false), (600, true)]);
    assert_eq!(log.snapshot().size(), 601);
    let only_dups = submit(&pool, &[entry(3)]).unwrap();
    assert_eq!(only_dups.snapshot.size(), 601);
    assert_eq!(
        log.find_leaf(&log.snapshot(), &leaf_hash(&entry(42)))
            .unwrap(),
        Some(42)
    );
    assert_eq!(
        log.find_leaf(&log.snapshot(), &leaf_hash(b"never"))
            .unwrap(),
        None
    );
}

#[test]
fn dedup_survives_a_restart() {
    let key = keys();
    let d = tempfile::tempdir().unwrap();
    {
        let db = RocksDb::open(d.path(), &["log".into()], 1 << 20).unwrap();
        let (_log, pool) = open(Arc::new(db.log_store("log")), &key);
        submit(&pool, &(0..300).map(entry).collect::<Vec<_>>()).unwrap();
        pool.shutdown();
    }
    let db = RocksDb::open(d.path(), &["log".into()], 1 << 20).unwrap();
    let (log, pool) = open(Arc::new(db.log_store("log")), &key);
    assert_eq!(log.snapshot().size(), 300);
    let r = submit(&pool, &[entry(7), entry(299), entry(300)]).unwrap();
    let got: Vec<(u64, bool)> = r.entries.iter().map(|e| (e.index, e.duplicate)).collect();
    assert_eq!(got, vec![(7, true), (299, true), (300, false)]);
}

#[test]
fn recovery_rebuilds_the_same_tree_at_every_size() {
    let key = keys();
    let store = Arc::new(MemoryStore::default());
    let (log, pool) = open(store.clone(), &key);
    let mut batch = 1usize;
    let mut next = 0u64;
    while next < 70_000 {
        let entries: Vec<Vec<u8>> = (next..next + batch as u64).map(entry).collect();
        submit(&pool, &entries).unwrap();
        next += batch as u64;
        batch = batch * 3 % 20_011 + 1;
        let recovered = ledger::log::recover(store.as_ref(), ORIGIN)
            .unwrap()
            .unwrap();
        let live = log.snapshot();
        assert_eq!(recovered.size(), live.size());
        assert_eq!(recovered.root, live.root);
        assert_eq!(recovered.tail, live.tail);
    }
}

#[test]
fn a_failed_write_is_not_acknowledged_and_the_log_goes_on() {
    let key = keys();
    let store = Arc::new(MemoryStore::default());
    let (log, pool) = open(store.clone(), &key);
    submit(&pool, &[entry(0), entry(1)]).unwrap();
    store.inject(Fault::Fail);
    let err = submit(&pool, &[entry(2)]).err().expect("write failed");
    assert!(err.to_string().contains("not sequenced"), "{err}");
    assert_eq!(log.snapshot().size(), 2);
    // The next write succeeds and reuses the index nobody was given.
    let r = submit(&pool, &[entry(3)]).unwrap();
    assert_eq!(r.entries[0].index, 2);
    assert_eq!(log.snapshot().size(), 3);
}

#[test]
fn a_failed_sync_is_reported_and_the_log_goes_on_from_what_storage_holds() {
    let key = keys();
    let store = Arc::new(MemoryStore::default());
    let (log, pool) = open(store.clone(), &key);
    submit(&pool, &[entry(0)]).unwrap();
    // The write lands but its sync fails: whether it is durable is unknown, so its
    // submitter hears of a failure and the log reloads from storage.
    store.fail_next_sync();
    let err = submit(&pool, &[entry(1)]).err().expect("sync failed");
    assert!(err.to_string().contains("not sequenced"), "{err}");
    // Storage kept the write, so the log goes on from it: entry 1 keeps its index, and its
    // resubmission is answered as the duplicate it is.
    let r = submit(&pool, &[entry(2)]).unwrap();
    assert_eq!(r.entries[0].index, 2);
    let again = submit(&pool, &[entry(1)]).unwrap();
    assert_eq!(
        (again.entries[0].index, again.entries[0].duplicate),
        (1, true)
    );
    let recovered = ledger::log::recover(store.as_ref(), ORIGIN)
        .unwrap()
        .unwrap();
    assert_eq!(recovered.root, log.snapshot().root);
}

#[test]
fn a_write_that_failed_but_persisted_is_never_forked() {
    let key = keys();
    let store = Arc::new(MemoryStore::default());
    let (log, pool) = open(store.clone(), &key);
    submit(&pool, &[entry(0)]).unwrap();
    store.inject(Fault::FailButPersist);
    assert!(submit(&pool, &[entry(1)]).is_err());
    // Storage holds size 2 and its signed checkpoint; the log must continue from it rather
    // than sign a different tree of size 2.
    let cp2 = store.checkpoint_at(2).unwrap().expect("persisted");
    let r = submit(&pool, &[entry(2)]).unwrap();
    assert_eq!(r.entries[0].index, 2);
    let (_, root2) = root_of(&cp2, &key.1);
    let (size3, root3) = root_of(&r.snapshot.checkpoint, &key.1);
    let p = log.consistency_proof(&log.snapshot(), 2, size3).unwrap();
    verify_consistency(2, &root2, size3, &root3, &p).unwrap();
    // And the entry whose submitter saw an error is there once; resubmitting finds it.
    let again = submit(&pool, &[entry(1)]).unwrap();
    assert_eq!(
        (again.entries[0].index, again.entries[0].duplicate),
        (1, true)
    );
}

#[test]
fn a_full_pool_refuses_instead_of_growing() {
    let key = keys();
    let log = Log::open(
        "log",
        ORIGIN,
        key.0.clone(),
        key.1.clone(),
        Arc::new(MemoryStore::default()),
    )
    .unwrap();
    let pool = sequencer::start(
        log,
        PoolConfig {
            max_pending_entries: 10,
            ..PoolConfig::default()
        },
    )
    .unwrap();
    let too_many: Vec<(Bytes, Hash)> = (0..11)
        .map(|i| (Bytes::from(entry(i)), leaf_hash(&entry(i))))
        .collect();
    let err = pool.submit(too_many).err().expect("pool full");
    assert!(
        matches!(err, ledger::log::LogError::Unavailable(_)),
        "{err}"
    );
    // Within the limit it is accepted.
    assert!(submit(&pool, &[entry(1)]).is_ok());
}

#[test]
fn a_store_whose_tree_does_not_match_its_checkpoint_is_refused() {
    let key = keys();
    let store = Arc::new(MemoryStore::default());
    let (_log, pool) = open(store.clone(), &key);
    submit(&pool, &(0..10).map(entry).collect::<Vec<_>>()).unwrap();
    // Rewrite history: replace entry 3 in the tail.
    let mut c = ledger::store::Commit {
        tail_puts: vec![(3, Bytes::from_static(b"forged"))],
        ..Default::default()
    };
    c.checkpoint = (10, store.checkpoint_at(10).unwrap().unwrap());
    store.commit(&c).unwrap();
    let err = ledger::log::recover(store.as_ref(), ORIGIN)
        .err()
        .expect("refused");
    assert!(err.to_string().contains("root"), "{err}");
}
