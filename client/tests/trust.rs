//! The monotonic trust store: trust on first use, consistent growth only.

mod common;

use common::MemTree;
use ledger_client::checkpoint::{sign_checkpoint, verify_checkpoint, VerifiedCheckpoint};
use ledger_client::trust::{Advance, TrustError, TrustStore};

const ORIGIN: &str = "example.com/artifacts";

struct Log {
    skey: String,
    vkey: String,
    tree: MemTree,
}

impl Log {
    fn new(size: u64) -> Self {
        let (skey, vkey) = signed_note::generate_key(&mut rand::rngs::OsRng, ORIGIN);
        Log {
            skey,
            vkey,
            tree: MemTree::with_entries(size),
        }
    }

    fn checkpoint(&self, size: u64) -> VerifiedCheckpoint {
        let note = sign_checkpoint(&self.skey, ORIGIN, size, &self.tree.root(size), &[]).unwrap();
        verify_checkpoint(&note, &[&self.vkey], Some(ORIGIN)).unwrap()
    }

    /// The same log key signing a different history after `common` entries (a fork).
    fn forked(&self, common: u64, size: u64) -> (MemTree, VerifiedCheckpoint) {
        let mut t = MemTree::with_entries(common);
        for i in common..size {
            t.push(format!("forked entry {i}").as_bytes());
        }
        let note = sign_checkpoint(&self.skey, ORIGIN, size, &t.root(size), &[]).unwrap();
        let cp = verify_checkpoint(&note, &[&self.vkey], Some(ORIGIN)).unwrap();
        (t, cp)
    }
}

#[test]
fn trust_on_first_use_then_consistent_growth() {
    let dir = tempfile::tempdir().unwrap();
    let store = TrustStore::open(dir.path().join("state")).unwrap();
    let log = Log::new(100);
    assert!(store.latest(ORIGIN, &[&log.vkey]).unwrap().is_none());

    let c10 = log.checkpoint(10);
    assert_eq!(
        store.advance(&c10, &[]).unwrap(),
        Advance::FirstUse { size: 10 }
    );
    assert_eq!(
        store.latest(ORIGIN, &[&log.vkey]).unwrap(),
        Some(c10.clone())
    );

    assert_eq!(
        store.advance(&c10, &[]).unwrap(),
        Advance::Unchanged { size: 10 }
    );

    let c57 = log.checkpoint(57);
    let proof = log.tree.prove_consistency(10, 57);
    assert_eq!(
        store.advance(&c57, &proof).unwrap(),
        Advance::Advanced { from: 10, to: 57 }
    );
    assert_eq!(
        store.latest(ORIGIN, &[&log.vkey]).unwrap(),
        Some(c57.clone())
    );

    // A larger checkpoint without (or with the wrong) proof is refused and changes nothing.
    let c100 = log.checkpoint(100);
    assert!(matches!(
        store.advance(&c100, &[]),
        Err(TrustError::Inconsistent {
            old_size: 57,
            new_size: 100,
            ..
        })
    ));
    assert!(matches!(
        store.advance(&c100, &log.tree.prove_consistency(10, 100)),
        Err(TrustError::Inconsistent { .. })
    ));
    assert_eq!(store.latest(ORIGIN, &[&log.vkey]).unwrap(), Some(c57));
    store
        .advance(&c100, &log.tree.prove_consistency(57, 100))
        .unwrap();
}

#[test]
fn rollback_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = TrustStore::open(dir.path()).unwrap();
    let log = Log::new(20);
    store.advance(&log.checkpoint(20), &[]).unwrap();
    match store.advance(&log.checkpoint(19), &[]) {
        Err(TrustError::Rollback {
            stored_size: 20,
            offered_size: 19,
            ..
        }) => {}
        other => panic!("expected Rollback, got {other:?}"),
    }
    // Even with a (valid) proof that 19 -> 20 is consistent: the store never goes back.
    assert!(matches!(
        store.advance(&log.checkpoint(19), &log.tree.prove_consistency(19, 20)),
        Err(TrustError::Rollback { .. })
    ));
    assert_eq!(
        store.latest(ORIGIN, &[&log.vkey]).unwrap().unwrap().size,
        20
    );
}

#[test]
fn forks_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = TrustStore::open(dir.path()).unwrap();
    let log = Log::new(40);
    store.advance(&log.checkpoint(30), &[]).unwrap();

    // Same size, different root.
    let (_, fork30) = log.forked(25, 30);
    assert!(matches!(
        store.advance(&fork30, &[]),
        Err(TrustError::Fork { size: 30, .. })
    ));
    // Larger, but not an extension of what we saw: the fork's own consistency proof from
    // its 30-leaf tree does not start from our stored root.
    let (fork_tree, fork40) = log.forked(25, 40);
    assert!(matches!(
        store.advance(&fork40, &fork_tree.prove_consistency(30, 40)),
        Err(TrustError::Inconsistent { .. })
    ));
    assert!(matches!(
        store.advance(&fork40, &log.tree.prove_consistency(30, 40)),
        Err(TrustError::Inconsistent { .. })
    ));
    assert_eq!(
        store.latest(ORIGIN, &[&log.vkey]).unwrap().unwrap(),
        log.checkpoint(30)
    );
}

#[test]
fn state_survives_reopen_and_is_per_origin() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::new(12);
    {
        let store = TrustStore::open(dir.path()).unwrap();
        store.advance(&log.checkpoint(12), &[]).unwrap();
    }
    let store = TrustStore::open(dir.path()).unwrap();
    let got = store.latest(ORIGIN, &[&log.vkey]).unwrap().unwrap();
    assert_eq!(got.size, 12);
    assert!(matches!(
        store.advance(&log.checkpoint(11), &[]),
        Err(TrustError::Rollback { .. })
    ));

    // Another origin is independent.
    let other = "example.org/other-log";
    let (skey, vkey) = signed_note::generate_key(&mut rand::rngs::OsRng, other);
    let t = MemTree::with_entries(3);
    let note = sign_checkpoint(&skey, other, 3, &t.root(3), &[]).unwrap();
    let cp = verify_checkpoint(&note, &[&vkey], None).unwrap();
    assert_eq!(
        store.advance(&cp, &[]).unwrap(),
        Advance::FirstUse { size: 3 }
    );
    assert_ne!(store.path_for(ORIGIN), store.path_for(other));
    // Files are named by a fixed-length hash, whatever the origin looks like.
    let name = store
        .path_for("a/../../b c")
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert_eq!(name.len(), 64 + ".checkpoint".len());
    // No temporary files are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn stored_state_is_reverified() {
    let dir = tempfile::tempdir().unwrap();
    let store = TrustStore::open(dir.path()).unwrap();
    let log = Log::new(5);
    store.advance(&log.checkpoint(5), &[]).unwrap();
    // A different key for the same origin does not vouch for the stored note.
    let (_, other_vkey) = signed_note::generate_key(&mut rand::rngs::OsRng, ORIGIN);
    assert!(matches!(
        store.latest(ORIGIN, &[&other_vkey]),
        Err(TrustError::StoredCheckpoint { .. })
    ));
    // Tampering with the file is detected.
    let path = store.path_for(ORIGIN);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("\n5\n", "\n6\n", 1)).unwrap();
    assert!(matches!(
        store.latest(ORIGIN, &[&log.vkey]),
        Err(TrustError::StoredCheckpoint { .. })
    ));
    // Garbage is reported as corrupt by advance.
    std::fs::write(&path, b"\xff\xfe").unwrap();
    assert!(matches!(
        store.advance(&log.checkpoint(5), &[]),
        Err(TrustError::Corrupt { .. })
    ));
}

#[test]
fn open_refuses_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("file");
    std::fs::write(&f, b"x").unwrap();
    assert!(matches!(TrustStore::open(&f), Err(TrustError::Io { .. })));
}
