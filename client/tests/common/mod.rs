//! Test helpers shared by the integration tests: an in-memory log built with `tlog_tiles`
//! (the library the server uses to make proofs), so the verifier is tested against the
//! prover it will meet in production.

#![allow(dead_code)]

use ledger_client::merkle::{leaf_hash, Hash};
use tlog_tiles::HashReader;

/// An append-only tree kept as `tlog_tiles` stored hashes.
#[derive(Default)]
pub struct MemTree {
    stored: Vec<Hash>,
    pub leaves: Vec<Hash>,
}

impl HashReader for MemTree {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&i| {
                self.stored
                    .get(i as usize)
                    .copied()
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

impl MemTree {
    pub fn new() -> Self {
        Self::default()
    }

    /// A tree of `n` entries `entry(0) .. entry(n-1)`.
    pub fn with_entries(n: u64) -> Self {
        let mut t = Self::new();
        for i in 0..n {
            t.push(&entry(i));
        }
        t
    }

    pub fn push(&mut self, data: &[u8]) {
        let n = self.leaves.len() as u64;
        let new = tlog_tiles::stored_hashes(n, data, self).expect("stored_hashes");
        self.stored.extend(new);
        self.leaves.push(leaf_hash(data));
    }

    pub fn size(&self) -> u64 {
        self.leaves.len() as u64
    }

    pub fn root(&self, size: u64) -> Hash {
        tlog_tiles::tree_hash(size, self).expect("tree_hash")
    }

    /// Inclusion proof of leaf `index` in the tree of `size` leaves.
    pub fn prove_inclusion(&self, index: u64, size: u64) -> Vec<Hash> {
        tlog_tiles::prove_record(size, index, self).expect("prove_record")
    }

    /// Consistency proof from `old` to `new` leaves (empty for `old == 0`, which
    /// `tlog_tiles` does not define).
    pub fn prove_consistency(&self, old: u64, new: u64) -> Vec<Hash> {
        if old == 0 {
            return Vec::new();
        }
        tlog_tiles::prove_tree(new, old, self).expect("prove_tree")
    }
}

/// The `i`-th test entry: distinct, variable-length bytes.
pub fn entry(i: u64) -> Vec<u8> {
    format!("entry {i} {}", "x".repeat((i % 7) as usize)).into_bytes()
}

pub fn hex(h: &Hash) -> String {
    ledger_client::merkle::hash_to_hex(h)
}

pub fn unhex(s: &str) -> Hash {
    ledger_client::merkle::hash_from_hex(s).expect("test vector hex")
}
