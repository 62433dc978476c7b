//! One suite every `LogStore` backend must pass (after restic's backend tests).

use super::memory::MemoryStore;
use super::rocks::RocksDb;
use super::{Commit, LogStore};
use bytes::Bytes;

fn commit_at(size: u64) -> Commit {
    Commit {
        checkpoint: (size, format!("checkpoint {size}").into_bytes()),
        ..Default::default()
    }
}

fn run(s: &dyn LogStore) {
    // An empty store has nothing.
    assert!(s.latest_checkpoint().unwrap().is_none());
    assert!(s.tile(0, 0).unwrap().is_none());
    assert!(s.bundle(0).unwrap().is_none());
    assert!(s.dedup_bucket(7).unwrap().is_empty());

    // A commit is visible as a whole.
    let mut c = commit_at(3);
    c.tail_puts = (0..3)
        .map(|i| (i, Bytes::from(vec![i as u8 + 1; 10])))
        .collect();
    c.dedup = vec![(7, vec![1; 9]), (9, vec![2; 9])];
    s.commit(&c).unwrap();
    assert_eq!(s.latest_checkpoint().unwrap().unwrap().0, 3);
    let tail = s.tail_entries(0..3).unwrap();
    assert_eq!(tail.len(), 3);
    assert_eq!(tail[2].as_ref(), &[3u8; 10][..]);
    assert!(
        s.tail_entries(0..4).is_err(),
        "missing tail entries must be an error"
    );

    // A write is visible at once; a sync after it returns without error.
    let c = commit_at(4);
    s.write(&c).unwrap();
    assert_eq!(s.latest_checkpoint().unwrap().unwrap().0, 4);
    s.sync().unwrap();

    // Dedup buckets append.
    let mut c = commit_at(256);
    c.tail_deletes = std::iter::once(0..256).collect();
    c.bundles = vec![(0, b"bundle".to_vec())];
    c.tiles = vec![(0, 0, vec![5; 64]), (1, 2, vec![6; 64])];
    c.dedup = vec![(7, vec![3; 9])];
    s.commit(&c).unwrap();
    let mut want = vec![1; 9];
    want.extend_from_slice(&[3; 9]);
    assert_eq!(s.dedup_bucket(7).unwrap(), want);
    let mut seen = vec![];
    s.scan_dedup(&mut |b, v| seen.push((b, v.len()))).unwrap();
    assert_eq!(seen, vec![(7, 18), (9, 9)]);

    // Deleted tail entries are gone; full bundle and tiles are there.
    assert!(s.tail_entries(0..1).is_err());
    assert_eq!(s.bundle(0).unwrap().unwrap(), b"bundle");
    assert_eq!(s.tile(1, 2).unwrap().unwrap(), vec![6; 64]);
    assert!(s.tile(1, 3).unwrap().is_none());

    // Every checkpoint stays readable; the latest is the largest.
    assert_eq!(s.checkpoint_at(3).unwrap().unwrap(), b"checkpoint 3");
    assert_eq!(s.latest_checkpoint().unwrap().unwrap().0, 256);
    assert!(s.checkpoint_at(5).unwrap().is_none());
    assert!(s.storage_bytes() > 0);
}

#[test]
fn memory_store_conforms() {
    run(&MemoryStore::default());
}

#[test]
fn rocksdb_store_conforms() {
    let d = tempfile::tempdir().unwrap();
    let db = RocksDb::open(d.path(), &["a".into()], 1 << 20).unwrap();
    run(&db.log_store("a"));
}

#[test]
fn rocksdb_logs_are_isolated_and_persist_across_reopen() {
    let d = tempfile::tempdir().unwrap();
    {
        let db = RocksDb::open(d.path(), &["a".into(), "b".into()], 1 << 20).unwrap();
        db.log_store("a").commit(&commit_at(1)).unwrap();
        assert!(db.log_store("b").latest_checkpoint().unwrap().is_none());
    }
    let db = RocksDb::open(d.path(), &["a".into(), "b".into()], 1 << 20).unwrap();
    assert_eq!(db.log_store("a").latest_checkpoint().unwrap().unwrap().0, 1);
    assert!(db.log_store("b").latest_checkpoint().unwrap().is_none());
}
