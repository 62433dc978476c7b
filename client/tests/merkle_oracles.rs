//! Differential tests: for every tree size 1..=300, the proofs `tlog_tiles` makes (what the
//! server sends) must be accepted by our independent verifier, and roots and proofs must be
//! identical to those of two unrelated Merkle libraries.
//!
//! * `ct-merkle` implements RFC 6962 directly. Its leaves are `AsRef<[u8]>` values hashed as
//!   SHA-256(0x00 || bytes), so with raw entry bytes as leaves its leaf hashes are exactly
//!   RFC 6962's, and its roots and proof bytes can be compared as is.
//! * `rs_merkle` is not RFC 6962 by default: its stock SHA-256 hasher has no 0x00/0x01
//!   domain separation. We give it the RFC's node hash and feed it RFC leaf hashes. It builds
//!   the tree bottom-up, pairing neighbours and promoting a lone last node unchanged to the
//!   next level; that is the same tree as RFC 9162's "split at the largest power of two
//!   below n" (both make every left subtree a complete tree of the largest possible power
//!   of two), so with those two changes its roots and single-leaf proofs are RFC 6962's for
//!   every size, which this test checks rather than assumes.

mod common;

use common::{entry, MemTree};
use ct_merkle::mem_backed_tree::MemoryBackedTree;
use ledger_client::merkle::{
    consistency_proof, inclusion_proof, node_hash, root_from_leaves, verify_consistency,
    verify_inclusion, Hash,
};

const MAX: u64 = 300;

#[derive(Clone)]
struct Rfc6962Hasher;

impl rs_merkle::Hasher for Rfc6962Hasher {
    type Hash = [u8; 32];

    fn hash(data: &[u8]) -> [u8; 32] {
        use sha2::Digest;
        sha2::Sha256::digest(data).into()
    }

    fn concat_and_hash(left: &[u8; 32], right: Option<&[u8; 32]>) -> [u8; 32] {
        match right {
            Some(r) => node_hash(&Hash(*left), &Hash(*r)).0,
            // RFC 9162 §2.1.1: a node without a right sibling is carried up unchanged.
            None => *left,
        }
    }
}

fn concat(hashes: &[Hash]) -> Vec<u8> {
    hashes.iter().flat_map(|h| h.0).collect()
}

struct Trees {
    tlog: MemTree,
    ct: MemoryBackedTree<sha2_011::Sha256, Vec<u8>>,
    /// roots[n] = root of the first n leaves.
    roots: Vec<Hash>,
}

fn grow(t: &mut Trees, n: u64) {
    let e = entry(n - 1);
    t.tlog.push(&e);
    t.ct.push(e);
    assert_eq!(t.tlog.size(), n);
    assert_eq!(t.ct.len(), n);
    let root = t.tlog.root(n);
    t.roots.push(root);
}

#[test]
fn roots_agree_for_every_size() {
    let mut t = Trees {
        tlog: MemTree::new(),
        ct: MemoryBackedTree::new(),
        roots: vec![ledger_client::merkle::EMPTY_ROOT],
    };
    assert_eq!(t.ct.root().as_bytes().as_slice(), &t.roots[0].0);
    for n in 1..=MAX {
        grow(&mut t, n);
        let root = t.roots[n as usize];
        assert_eq!(root_from_leaves(&t.tlog.leaves), root, "our MTH, size {n}");
        assert_eq!(
            t.ct.root().as_bytes().as_slice(),
            &root.0,
            "ct-merkle, size {n}"
        );
        let leaves: Vec<[u8; 32]> = t.tlog.leaves.iter().map(|h| h.0).collect();
        let rs = rs_merkle::MerkleTree::<Rfc6962Hasher>::from_leaves(&leaves);
        assert_eq!(rs.root(), Some(root.0), "rs_merkle, size {n}");
    }
}

#[test]
fn every_inclusion_proof_of_every_size() {
    let mut t = Trees {
        tlog: MemTree::new(),
        ct: MemoryBackedTree::new(),
        roots: vec![ledger_client::merkle::EMPTY_ROOT],
    };
    let mut checked = 0u64;
    for n in 1..=MAX {
        grow(&mut t, n);
        let root = t.roots[n as usize];
        let leaves_arr: Vec<[u8; 32]> = t.tlog.leaves.iter().map(|h| h.0).collect();
        let rs = rs_merkle::MerkleTree::<Rfc6962Hasher>::from_leaves(&leaves_arr);
        for i in 0..n {
            let proof = t.tlog.prove_inclusion(i, n);
            let leaf = t.tlog.leaves[i as usize];
            verify_inclusion(&leaf, i, n, &proof, &root)
                .unwrap_or_else(|e| panic!("tlog_tiles proof {i}/{n} rejected: {e}"));
            assert_eq!(
                t.ct.prove_inclusion(i as usize).as_bytes(),
                concat(&proof).as_slice(),
                "ct-merkle proof {i}/{n}"
            );
            let rs_proof: Vec<Hash> = rs
                .proof(&[i as usize])
                .proof_hashes()
                .iter()
                .map(|h| Hash(*h))
                .collect();
            assert_eq!(rs_proof, proof, "rs_merkle proof {i}/{n}");
            if n <= 100 {
                assert_eq!(
                    inclusion_proof(&t.tlog.leaves, i).unwrap(),
                    proof,
                    "reference proof {i}/{n}"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, MAX * (MAX + 1) / 2);
}

#[test]
fn every_consistency_proof_of_every_pair() {
    let mut t = Trees {
        tlog: MemTree::new(),
        ct: MemoryBackedTree::new(),
        roots: vec![ledger_client::merkle::EMPTY_ROOT],
    };
    let mut checked = 0u64;
    for n in 1..=MAX {
        grow(&mut t, n);
        let new_root = t.roots[n as usize];
        for m in 0..=n {
            let proof = t.tlog.prove_consistency(m, n);
            let old_root = t.roots[m as usize];
            verify_consistency(m, &old_root, n, &new_root, &proof)
                .unwrap_or_else(|e| panic!("tlog_tiles proof {m}->{n} rejected: {e}"));
            if m > 0 {
                assert_eq!(
                    t.ct.prove_consistency((n - m) as usize).as_bytes(),
                    concat(&proof).as_slice(),
                    "ct-merkle proof {m}->{n}"
                );
            }
            if n <= 100 || [255, 256, 257, 300].contains(&n) {
                assert_eq!(
                    consistency_proof(&t.tlog.leaves, m).unwrap(),
                    proof,
                    "reference proof {m}->{n}"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, (MAX + 1) * (MAX + 2) / 2 - 1);
}
