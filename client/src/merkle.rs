//! RFC 6962 / RFC 9162 Merkle tree hashing and proof verification.
//!
//! The verifiers here are written from the RFC text on purpose: the server builds its proofs
//! with `tlog_tiles`, and a verifier that reused `tlog_tiles::check_record`/`check_tree`
//! would share any bug with the prover and so could never catch it. The tests cross-check
//! this module against `tlog_tiles`, `ct-merkle` and `rs_merkle`.

use base64::prelude::*;
use sha2::{Digest, Sha256};

pub use crate::error::{HashParseError, ProofError};
pub use tlog_tiles::Hash;

/// Size of a SHA-256 hash in bytes.
pub const HASH_SIZE: usize = 32;

/// The root of the empty tree: SHA-256 of the empty string (RFC 9162 §2.1.1).
pub const EMPTY_ROOT: Hash = Hash([
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
]);

/// Leaf hash of an entry: SHA-256(0x00 || entry) (RFC 6962 §2.1; the 0x00 prefix gives
/// second-preimage resistance against interior nodes, which use 0x01).
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(entry);
    Hash(h.finalize().into())
}

/// Interior node hash: SHA-256(0x01 || left || right) (RFC 6962 §2.1).
pub fn node_hash(l: &Hash, r: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(l.0);
    h.update(r.0);
    Hash(h.finalize().into())
}

/// The largest power of two strictly smaller than `n` (the split point `k` of RFC 9162
/// §2.1.1). Requires `n >= 2`.
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// Number of significant bits of `x` (0 for 0).
fn bit_length(x: u64) -> u32 {
    64 - x.leading_zeros()
}

/// Merkle Tree Hash of a list of leaf hashes, MTH(D[n]) of RFC 9162 §2.1.1.
///
/// This is a reference implementation (linear in the number of leaves) for tests and for
/// checking entry bundles against tiles; logs use stored subtree hashes instead.
pub fn root_from_leaves(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => EMPTY_ROOT,
        1 => leaves[0],
        n => {
            let k = split_point(n as u64) as usize;
            node_hash(
                &root_from_leaves(&leaves[..k]),
                &root_from_leaves(&leaves[k..]),
            )
        }
    }
}

/// Inclusion proof PATH(m, D[n]) of RFC 9162 §2.1.3.1, computed from all leaves.
///
/// Reference implementation for tests and small trees; `None` if `index` is out of range.
pub fn inclusion_proof(leaves: &[Hash], index: u64) -> Option<Vec<Hash>> {
    let index = usize::try_from(index).ok()?;
    if index >= leaves.len() {
        return None;
    }
    fn path(leaves: &[Hash], m: usize, out: &mut Vec<Hash>) {
        let n = leaves.len();
        if n <= 1 {
            return;
        }
        let k = split_point(n as u64) as usize;
        if m < k {
            path(&leaves[..k], m, out);
            out.push(root_from_leaves(&leaves[k..]));
        } else {
            path(&leaves[k..], m - k, out);
            out.push(root_from_leaves(&leaves[..k]));
        }
    }
    let mut out = Vec::new();
    path(leaves, index, &mut out);
    Some(out)
}

/// Consistency proof PROOF(m, D[n]) of RFC 9162 §2.1.4.1 between the first `old_size`
/// leaves and all of `leaves`.
///
/// Reference implementation for tests; `None` unless `old_size <= leaves.len()`. The
/// proof is empty when `old_size` is 0 or equal to the number of leaves.
pub fn consistency_proof(leaves: &[Hash], old_size: u64) -> Option<Vec<Hash>> {
    let m = usize::try_from(old_size).ok()?;
    if m > leaves.len() {
        return None;
    }
    if m == 0 || m == leaves.len() {
        return Some(Vec::new());
    }
    // SUBPROOF(m, D[n], b) of RFC 9162 §2.1.4.1; `b` is true while the subtree is
    // still the one the old tree's root was computed over.
    fn subproof(m: usize, leaves: &[Hash], b: bool, out: &mut Vec<Hash>) {
        let n = leaves.len();
        if m == n {
            if !b {
                out.push(root_from_leaves(leaves));
            }
            return;
        }
        let k = split_point(n as u64) as usize;
        if m <= k {
            subproof(m, &leaves[..k], b, out);
            out.push(root_from_leaves(&leaves[k..]));
        } else {
            subproof(m - k, &leaves[k..], false, out);
            out.push(root_from_leaves(&leaves[..k]));
        }
    }
    let mut out = Vec::new();
    subproof(m, leaves, true, &mut out);
    Some(out)
}

/// The number of hashes in a valid inclusion proof for `index` in a tree of `tree_size`
/// (`index < tree_size`).
///
/// Below the level where the paths to `index` and to the last leaf `tree_size - 1` meet,
/// every ancestor of the leaf has a sibling; above it the ancestor lies on the tree's right
/// border and has a sibling only where it is a right child, i.e. where `index` has a 1 bit.
fn inclusion_proof_len(index: u64, tree_size: u64) -> usize {
    let inner = bit_length(index ^ (tree_size - 1));
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner + border) as usize
}

/// Verifies that `proof` proves `leaf` is entry `index` of the tree of `tree_size` leaves
/// whose root is `root`, following RFC 9162 §2.1.3.2 step by step.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    tree_size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    // RFC 9162 §2.1.3.2 step 1: leaf_index must be smaller than tree_size.
    if index >= tree_size {
        return Err(ProofError::IndexOutOfRange { index, tree_size });
    }
    // The algorithm below also rejects wrong lengths (sn != 0 at the end, or sn == 0 too
    // early), but checking first gives a precise error and bounds the work by 64 hashes.
    let expected = inclusion_proof_len(index, tree_size);
    if proof.len() != expected {
        return Err(ProofError::WrongLength {
            expected,
            got: proof.len(),
        });
    }
    // Step 2: fn = leaf_index, sn = tree_size - 1, r = leaf_hash.
    let mut f_n = index;
    let mut s_n = tree_size - 1;
    let mut r = *leaf;
    // Step 3: for each p in the inclusion path.
    for p in proof {
        // 3a: a proof longer than the path fails.
        if s_n == 0 {
            return Err(ProofError::WrongLength {
                expected,
                got: proof.len(),
            });
        }
        // 3b: p is a left sibling when fn is odd (a right child), or when fn == sn (the
        // node is the last one of its level and was promoted, so the next proof hash is the
        // left sibling of an ancestor).
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                // Skip the levels where the node has no right sibling (promoted).
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        // 3c.
        f_n >>= 1;
        s_n >>= 1;
    }
    // Step 4: sn must be 0 and r must equal the root.
    if s_n != 0 {
        return Err(ProofError::WrongLength {
            expected,
            got: proof.len(),
        });
    }
    if r != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// The number of hashes in a valid consistency proof for `0 < old_size < new_size`.
///
/// The proof is the inclusion path of the old tree's last leaf `old_size - 1` in the new
/// tree, started at the level of the largest complete subtree that ends at `old_size`
/// (height `trailing_zeros(old_size)`), plus that subtree's hash unless it is the whole
/// old tree (`old_size` a power of two), RFC 9162 §2.1.4.1.
fn consistency_proof_len(old_size: u64, new_size: u64) -> usize {
    let last = old_size - 1;
    let inner = bit_length(last ^ (new_size - 1));
    let shift = old_size.trailing_zeros();
    let border = last.checked_shr(inner).unwrap_or(0).count_ones();
    let seed = usize::from(!old_size.is_power_of_two());
    // inner > shift whenever old_size < new_size: the low `shift` bits of `last` are all
    // ones, so the two indexes must differ above them.
    seed + (inner.saturating_sub(shift) + border) as usize
}

/// Verifies that the tree of `new_size` leaves with root `new_root` extends the tree of
/// `old_size` leaves with root `old_root`, following RFC 9162 §2.1.4.2.
///
/// Equal sizes need an empty proof and equal roots; `old_size == 0` needs an empty proof
/// and the empty-tree root; `old_size > new_size` is always an error.
pub fn verify_consistency(
    old_size: u64,
    old_root: &Hash,
    new_size: u64,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::OldLargerThanNew { old_size, new_size });
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength {
                expected: 0,
                got: proof.len(),
            });
        }
        if old_root != new_root {
            return Err(ProofError::SameSizeDifferentRoots { size: old_size });
        }
        if old_size == 0 && *old_root != EMPTY_ROOT {
            return Err(ProofError::BadEmptyRoot);
        }
        return Ok(());
    }
    if old_size == 0 {
        // Every tree extends the empty tree; there is nothing to prove (RFC 9162 §2.1.4
        // defines proofs for 0 < m < n only).
        if !proof.is_empty() {
            return Err(ProofError::WrongLength {
                expected: 0,
                got: proof.len(),
            });
        }
        if *old_root != EMPTY_ROOT {
            return Err(ProofError::BadEmptyRoot);
        }
        return Ok(());
    }
    let expected = consistency_proof_len(old_size, new_size);
    let wrong_length = ProofError::WrongLength {
        expected,
        got: proof.len(),
    };
    if proof.len() != expected {
        return Err(wrong_length);
    }
    // RFC 9162 §2.1.4.2 step 1: an empty path fails (0 < old < new always needs a hash).
    if proof.is_empty() {
        return Err(wrong_length);
    }
    // Step 2: when the old tree is a complete subtree its root starts the path.
    let (seed, rest) = if old_size.is_power_of_two() {
        (*old_root, proof)
    } else {
        (proof[0], &proof[1..])
    };
    // Step 3.
    let mut f_n = old_size - 1;
    let mut s_n = new_size - 1;
    // Step 4: skip the levels inside the seed subtree (fn's trailing ones).
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    // Step 5.
    let mut fr = seed;
    let mut sr = seed;
    // Step 6.
    for c in rest {
        // 6a.
        if s_n == 0 {
            return Err(wrong_length);
        }
        // 6b.
        if f_n & 1 == 1 || f_n == s_n {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        // 6c.
        f_n >>= 1;
        s_n >>= 1;
    }
    // Step 7.
    if s_n != 0 {
        return Err(wrong_length);
    }
    if fr != *old_root {
        return Err(ProofError::OldRootMismatch);
    }
    if sr != *new_root {
        return Err(ProofError::NewRootMismatch);
    }
    Ok(())
}

/// Parses a hash in standard, padded, canonical base64 (RFC 4648 §4), as checkpoints and
/// the JSON API carry them.
pub fn hash_from_base64(s: &str) -> Result<Hash, HashParseError> {
    let bytes = BASE64_STANDARD
        .decode(s)
        .map_err(|e| HashParseError::Base64(e.to_string()))?;
    let arr: [u8; HASH_SIZE] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| HashParseError::Length(bytes.len()))?;
    Ok(Hash(arr))
}

/// Standard padded base64 of a hash (RFC 4648 §4).
pub fn hash_to_base64(h: &Hash) -> String {
    BASE64_STANDARD.encode(h.0)
}

/// Parses a hash written as 64 hex digits (either case).
pub fn hash_from_hex(s: &str) -> Result<Hash, HashParseError> {
    if s.len() != 2 * HASH_SIZE {
        if s.len() & 1 == 0 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(HashParseError::Length(s.len() / 2));
        }
        return Err(HashParseError::Hex(format!(
            "expected 64 hex digits, got {} characters",
            s.len()
        )));
    }
    let mut out = [0u8; HASH_SIZE];
    for (i, pair) in s.as_bytes().chunks_exact(2).enumerate() {
        let hi = hex_val(pair[0]);
        let lo = hex_val(pair[1]);
        match (hi, lo) {
            (Some(hi), Some(lo)) => out[i] = hi << 4 | lo,
            _ => {
                return Err(HashParseError::Hex(format!(
                    "non-hex character at position {}",
                    2 * i + usize::from(hi.is_some())
                )))
            }
        }
    }
    Ok(Hash(out))
}

/// Lowercase hex of a hash.
pub fn hash_to_hex(h: &Hash) -> String {
    h.0.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses a hash given either as 64 hex digits or as base64, the two forms the HTTP API
/// accepts for `leaf_hash`.
pub fn parse_hash(s: &str) -> Result<Hash, HashParseError> {
    if s.len() == 2 * HASH_SIZE && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        hash_from_hex(s)
    } else {
        hash_from_base64(s)
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        assert_eq!(EMPTY_ROOT, Hash(Sha256::digest(b"").into()));
        assert_eq!(root_from_leaves(&[]), EMPTY_ROOT);
        assert_eq!(EMPTY_ROOT, tlog_tiles::EMPTY_HASH);
    }

    #[test]
    fn split_point_is_largest_power_below() {
        for (n, k) in [
            (2u64, 1u64),
            (3, 2),
            (4, 2),
            (5, 4),
            (8, 4),
            (9, 8),
            (u64::MAX, 1 << 63),
        ] {
            assert_eq!(split_point(n), k, "n={n}");
        }
    }

    #[test]
    fn expected_lengths_match_reference_generators() {
        let leaves: Vec<Hash> = (0u32..70).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        for n in 1..=leaves.len() {
            for i in 0..n {
                let p = inclusion_proof(&leaves[..n], i as u64).unwrap();
                assert_eq!(
                    p.len(),
                    inclusion_proof_len(i as u64, n as u64),
                    "incl {i}/{n}"
                );
            }
            for m in 1..n {
                let p = consistency_proof(&leaves[..n], m as u64).unwrap();
                assert_eq!(
                    p.len(),
                    consistency_proof_len(m as u64, n as u64),
                    "cons {m}/{n}"
                );
            }
        }
    }

    #[test]
    fn huge_sizes_do_not_overflow() {
        let h = leaf_hash(b"x");
        // A proof for the last leaf of the largest tree: 64 levels, no panic on shifts.
        assert!(verify_inclusion(&h, u64::MAX - 1, u64::MAX, &[h; 64], &h).is_err());
        assert!(verify_inclusion(&h, 0, u64::MAX, &[], &h).is_err());
        assert!(verify_inclusion(&h, u64::MAX, u64::MAX, &[], &h).is_err());
        assert!(verify_consistency(u64::MAX - 1, &h, u64::MAX, &h, &[h; 3]).is_err());
        assert!(verify_consistency(1, &h, u64::MAX, &h, &[h; 64]).is_err());
        assert!(verify_consistency(1 << 63, &h, u64::MAX, &h, &[h; 63]).is_err());
        assert!(verify_consistency(u64::MAX, &h, 1, &h, &[]).is_err());
    }

    #[test]
    fn hash_text_forms() {
        let h = leaf_hash(b"abc");
        assert_eq!(hash_from_base64(&hash_to_base64(&h)).unwrap(), h);
        assert_eq!(hash_from_hex(&hash_to_hex(&h)).unwrap(), h);
        assert_eq!(parse_hash(&hash_to_hex(&h).to_uppercase()).unwrap(), h);
        assert_eq!(parse_hash(&hash_to_base64(&h)).unwrap(), h);
        assert!(matches!(
            hash_from_base64("AAAA"),
            Err(HashParseError::Length(3))
        ));
        assert!(matches!(
            hash_from_base64("!!!"),
            Err(HashParseError::Base64(_))
        ));
        // Unpadded base64 is not the canonical form checkpoints use.
        let unpadded = hash_to_base64(&h).trim_end_matches('=').to_string();
        assert!(hash_from_base64(&unpadded).is_err());
        assert!(matches!(hash_from_hex("zz"), Err(HashParseError::Hex(_))));
        assert!(matches!(
            hash_from_hex("00"),
            Err(HashParseError::Length(1))
        ));
        let mut bad = hash_to_hex(&h);
        bad.replace_range(10..11, "g");
        assert!(matches!(hash_from_hex(&bad), Err(HashParseError::Hex(_))));
    }
}
