//! Hostile and broken proofs: every mutation must be rejected, with an error, never a panic.

mod common;

use common::MemTree;
use ledger_client::merkle::{
    leaf_hash, verify_consistency, verify_inclusion, Hash, ProofError, EMPTY_ROOT,
};

const SIZES: &[u64] = &[
    1, 2, 3, 4, 5, 7, 8, 9, 13, 16, 31, 33, 64, 100, 127, 255, 256, 257,
];

fn flip(h: &Hash, bit: usize) -> Hash {
    let mut out = *h;
    out.0[bit / 8] ^= 1 << (bit % 8);
    out
}

/// A few indexes of interest in a tree of `n` leaves.
fn interesting(n: u64) -> Vec<u64> {
    let mut v = vec![0, n / 2, n.saturating_sub(2), n - 1];
    v.sort_unstable();
    v.dedup();
    v
}

#[test]
fn inclusion_every_bit_flip_is_rejected() {
    let t = MemTree::with_entries(257);
    for &n in SIZES {
        let root = t.root(n);
        for i in interesting(n) {
            let leaf = t.leaves[i as usize];
            let proof = t.prove_inclusion(i, n);
            verify_inclusion(&leaf, i, n, &proof, &root).unwrap();
            for k in 0..proof.len() {
                for bit in 0..256 {
                    let mut bad = proof.clone();
                    bad[k] = flip(&bad[k], bit);
                    assert_eq!(
                        verify_inclusion(&leaf, i, n, &bad, &root),
                        Err(ProofError::RootMismatch),
                        "flip hash {k} bit {bit} of {i}/{n}"
                    );
                }
            }
            for bit in 0..256 {
                assert!(verify_inclusion(&flip(&leaf, bit), i, n, &proof, &root).is_err());
                assert!(verify_inclusion(&leaf, i, n, &proof, &flip(&root, bit)).is_err());
            }
        }
    }
}

#[test]
fn inclusion_structural_mutations_are_rejected() {
    let t = MemTree::with_entries(600);
    for &n in SIZES {
        let root = t.root(n);
        for i in interesting(n) {
            let leaf = t.leaves[i as usize];
            let proof = t.prove_inclusion(i, n);
            // Wrong index (every other index of the tree).
            for j in 0..n {
                if j != i {
                    assert!(
                        verify_inclusion(&leaf, j, n, &proof, &root).is_err(),
                        "leaf {i} accepted as {j} in {n}"
                    );
                }
            }
            // Wrong tree size. A path only encodes the tree's shape around the leaf, so
            // sizes with the same shape there (0/3 and 0/4) share proofs; that is why a
            // checkpoint signs size and root together. Sizes whose path for this leaf has
            // a different length must be refused.
            for m in [n - 1, n + 1, n * 2, u64::MAX] {
                let differs = m > 600 || m <= i || t.prove_inclusion(i, m).len() != proof.len();
                if differs {
                    assert!(
                        verify_inclusion(&leaf, i, m, &proof, &root).is_err(),
                        "{i}/{n} accepted with size {m}"
                    );
                }
            }
            // Truncated, extended, duplicated, reversed.
            if !proof.is_empty() {
                let short = &proof[..proof.len() - 1];
                assert!(matches!(
                    verify_inclusion(&leaf, i, n, short, &root),
                    Err(ProofError::WrongLength { .. })
                ));
                assert!(verify_inclusion(&leaf, i, n, &proof[1..], &root).is_err());
                let mut rev = proof.clone();
                rev.reverse();
                if rev != proof {
                    assert!(verify_inclusion(&leaf, i, n, &rev, &root).is_err());
                }
            }
            let mut long = proof.clone();
            long.push(leaf);
            assert!(matches!(
                verify_inclusion(&leaf, i, n, &long, &root),
                Err(ProofError::WrongLength { .. })
            ));
            let mut long0 = proof.clone();
            long0.insert(0, Hash::default());
            assert!(verify_inclusion(&leaf, i, n, &long0, &root).is_err());
            // Index outside the tree.
            for j in [n, n + 1, u64::MAX] {
                assert_eq!(
                    verify_inclusion(&leaf, j, n, &proof, &root),
                    Err(ProofError::IndexOutOfRange {
                        index: j,
                        tree_size: n
                    })
                );
            }
        }
    }
}

#[test]
fn inclusion_degenerate_sizes() {
    let h = leaf_hash(b"a");
    // Size 0 has no leaves at all.
    assert!(matches!(
        verify_inclusion(&h, 0, 0, &[], &EMPTY_ROOT),
        Err(ProofError::IndexOutOfRange { .. })
    ));
    assert!(verify_inclusion(&EMPTY_ROOT, 0, 0, &[], &EMPTY_ROOT).is_err());
    // A one-leaf tree's root is its leaf; any proof hash is one too many.
    verify_inclusion(&h, 0, 1, &[], &h).unwrap();
    assert!(verify_inclusion(&h, 0, 1, &[h], &h).is_err());
    // u64::MAX sizes: a path is at most 64 hashes, anything else is a length error.
    for (i, n) in [
        (0, u64::MAX),
        (u64::MAX - 1, u64::MAX),
        (1 << 63, u64::MAX),
        (5, 1 << 63),
    ] {
        for len in [0usize, 1, 62, 63, 64, 65, 200] {
            let proof = vec![h; len];
            assert!(
                verify_inclusion(&h, i, n, &proof, &h).is_err(),
                "{i}/{n} len {len}"
            );
        }
    }
}

#[test]
fn consistency_every_bit_flip_is_rejected() {
    let t = MemTree::with_entries(257);
    for &n in SIZES {
        let new_root = t.root(n);
        for m in interesting(n).into_iter().filter(|&m| m > 0 && m < n) {
            let old_root = t.root(m);
            let proof = t.prove_consistency(m, n);
            verify_consistency(m, &old_root, n, &new_root, &proof).unwrap();
            for k in 0..proof.len() {
                for bit in 0..256 {
                    let mut bad = proof.clone();
                    bad[k] = flip(&bad[k], bit);
                    assert!(
                        verify_consistency(m, &old_root, n, &new_root, &bad).is_err(),
                        "flip hash {k} bit {bit} of {m}->{n}"
                    );
                }
            }
            for bit in 0..256 {
                assert!(
                    verify_consistency(m, &flip(&old_root, bit), n, &new_root, &proof).is_err()
                );
                assert!(
                    verify_consistency(m, &old_root, n, &flip(&new_root, bit), &proof).is_err()
                );
            }
        }
    }
}

#[test]
fn consistency_structural_mutations_are_rejected() {
    let t = MemTree::with_entries(600);
    for &n in SIZES {
        let new_root = t.root(n);
        for m in 1..n {
            let old_root = t.root(m);
            let proof = t.prove_consistency(m, n);
            // Truncated and extended proofs.
            assert!(
                verify_consistency(m, &old_root, n, &new_root, &proof[..proof.len() - 1]).is_err()
            );
            let mut long = proof.clone();
            long.push(new_root);
            assert!(verify_consistency(m, &old_root, n, &new_root, &long).is_err());
            assert!(verify_consistency(m, &old_root, n, &new_root, &[]).is_err());
            // The same proof claimed for other sizes.
            // (As for inclusion, only size pairs whose proofs differ in length are
            // necessarily refused: 1->3 and 1->4 have the same shape.)
            for (m2, n2) in [(m + 1, n), (m, n + 1), (m - 1, n), (m, n - 1)] {
                if m2 > 0
                    && m2 < n2
                    && (n2 > 600 || t.prove_consistency(m2, n2).len() != proof.len())
                {
                    assert!(
                        verify_consistency(m2, &old_root, n2, &new_root, &proof).is_err(),
                        "{m}->{n} accepted as {m2}->{n2}"
                    );
                }
            }
            // Swapped roots: old and new exchanged.
            assert!(verify_consistency(m, &new_root, n, &old_root, &proof).is_err());
            // A forked history: same old tree, a different new tree.
            let mut fork = MemTree::with_entries(m);
            for i in m..n {
                fork.push(format!("forked {i}").as_bytes());
            }
            assert!(
                verify_consistency(m, &old_root, n, &fork.root(n), &proof).is_err(),
                "fork accepted {m}->{n}"
            );
            let fork_proof = fork.prove_consistency(m, n);
            assert!(
                verify_consistency(m, &old_root, n, &new_root, &fork_proof).is_err()
                    || fork_proof == proof
            );
        }
    }
}

#[test]
fn consistency_degenerate_sizes() {
    let t = MemTree::with_entries(8);
    let r4 = t.root(4);
    let r8 = t.root(8);
    // Equal sizes: empty proof and equal roots only.
    verify_consistency(4, &r4, 4, &r4, &[]).unwrap();
    assert_eq!(
        verify_consistency(4, &r4, 4, &r8, &[]),
        Err(ProofError::SameSizeDifferentRoots { size: 4 })
    );
    assert!(matches!(
        verify_consistency(4, &r4, 4, &r4, &[r4]),
        Err(ProofError::WrongLength {
            expected: 0,
            got: 1
        })
    ));
    // From the empty tree: empty proof, and the old root must be the empty root.
    verify_consistency(0, &EMPTY_ROOT, 8, &r8, &[]).unwrap();
    verify_consistency(0, &EMPTY_ROOT, 0, &EMPTY_ROOT, &[]).unwrap();
    assert_eq!(
        verify_consistency(0, &r4, 8, &r8, &[]),
        Err(ProofError::BadEmptyRoot)
    );
    assert_eq!(
        verify_consistency(0, &r4, 0, &r4, &[]),
        Err(ProofError::BadEmptyRoot)
    );
    assert!(verify_consistency(0, &EMPTY_ROOT, 8, &r8, &[r8]).is_err());
    // Shrinking is never consistent.
    assert_eq!(
        verify_consistency(8, &r8, 4, &r4, &[]),
        Err(ProofError::OldLargerThanNew {
            old_size: 8,
            new_size: 4
        })
    );
    // Huge sizes do not panic.
    let h = r4;
    for (m, n) in [
        (1, u64::MAX),
        (u64::MAX - 1, u64::MAX),
        (1 << 63, u64::MAX),
        ((1 << 63) - 1, 1 << 63),
        (u64::MAX, u64::MAX),
    ] {
        for len in [0usize, 1, 2, 63, 64, 65, 130] {
            let proof = vec![h; len];
            assert!(
                verify_consistency(m, &h, n, &r8, &proof).is_err(),
                "{m}->{n} len {len}"
            );
        }
    }
}
