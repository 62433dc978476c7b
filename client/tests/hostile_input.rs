//! Every parser and verifier takes arbitrary bytes without panicking: valid inputs are
//! mutated at random (bit flips, truncation, insertion, splicing) thousands of times, and
//! each result must be a clean `Ok` or `Err`. A cheap stand-in for per-parser fuzz targets
//! that runs in every `cargo test`.

use ledger_client::checkpoint::{sign_checkpoint, verify_checkpoint};
use ledger_client::merkle::{
    leaf_hash, root_from_leaves, verify_consistency, verify_inclusion, Hash,
};
use ledger_client::tiles::{decode_bundle, encode_bundle, TilePath};
use ledger_client::tlog_proof::TlogProof;
use rand::{Rng, RngCore, SeedableRng};

const ROUNDS: usize = 20_000;

fn mutate(rng: &mut impl RngCore, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..rng.gen_range(1..4) {
        match rng.gen_range(0..6) {
            0 if !v.is_empty() => {
                let i = rng.gen_range(0..v.len());
                v[i] ^= 1 << rng.gen_range(0..8);
            }
            1 => {
                let n = rng.gen_range(0..=v.len());
                v.truncate(n);
            }
            2 => {
                let i = rng.gen_range(0..=v.len());
                let b = [b'\n', b' ', b'+', b'/', b'x', 0xff, 0, b'.', b'-', 0xe2]
                    [rng.gen_range(0..10)];
                v.insert(i, b);
            }
            3 if !v.is_empty() => {
                // Duplicate a slice (e.g. an extra signature or hash line).
                let a = rng.gen_range(0..v.len());
                let b = rng.gen_range(a..=v.len());
                let piece = v[a..b].to_vec();
                let at = rng.gen_range(0..=v.len());
                v.splice(at..at, piece);
            }
            4 if !v.is_empty() => {
                let i = rng.gen_range(0..v.len());
                v.remove(i);
            }
            _ => {
                let mut junk = vec![0u8; rng.gen_range(0..16)];
                rng.fill_bytes(&mut junk);
                v.extend(junk);
            }
        }
    }
    v
}

fn fixture() -> (String, Vec<u8>, Vec<u8>, Hash) {
    let origin = "hostile.example/log";
    let (skey, vkey) = signed_note::generate_key(&mut rand::rngs::OsRng, origin);
    let leaves: Vec<Hash> = (0..13u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let root = root_from_leaves(&leaves);
    let cp = sign_checkpoint(&skey, origin, 13, &root, &[]).unwrap();
    let proof = ledger_client::merkle::inclusion_proof(&leaves, 5).unwrap();
    let tp = TlogProof {
        extra: Some(b"extra".to_vec()),
        index: 5,
        inclusion_proof: proof,
        checkpoint: cp.clone(),
    }
    .to_bytes();
    (vkey, cp, tp, leaves[5])
}

#[test]
fn mutated_checkpoints_and_tlog_proofs_never_panic_and_never_verify_wrongly() {
    let (vkey, cp, tp, leaf) = fixture();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    for _ in 0..ROUNDS {
        let m = mutate(&mut rng, &cp);
        if let Ok(v) = verify_checkpoint(&m, &[&vkey], None) {
            // Only changes outside the signed text (e.g. a duplicated signature line) may pass.
            assert_eq!((v.size, v.origin.as_str()), (13, "hostile.example/log"));
        }
        let m = mutate(&mut rng, &tp);
        if let Ok(p) = TlogProof::parse(&m) {
            if p.verify(&leaf, &[&vkey], None).is_ok() {
                assert_eq!(p.index, 5, "a mutated proof verified for another index");
            }
            let _ = p.to_bytes();
        }
    }
}

#[test]
fn mutated_tile_paths_and_bundles_never_panic() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    let paths = [
        "tile/0/x001/x234/067",
        "tile/entries/000.p/17",
        "tile/63/x999/999.p/255",
    ];
    for _ in 0..ROUNDS {
        let p = paths[rng.gen_range(0..paths.len())];
        let m = mutate(&mut rng, p.as_bytes());
        if let Ok(s) = std::str::from_utf8(&m) {
            if let Ok(t) = TilePath::parse(s) {
                // Canonical: what parses prints back to the same string.
                assert_eq!(t.to_path(), s);
            }
        }
    }
    let entries: Vec<Vec<u8>> = (0..5).map(|i| vec![i as u8; i * 7 + 1]).collect();
    let bundle = encode_bundle(entries.iter().map(|e| e.as_slice())).unwrap();
    for _ in 0..ROUNDS {
        let m = mutate(&mut rng, &bundle);
        if let Ok(es) = decode_bundle(&m) {
            let again = encode_bundle(es.iter().copied()).unwrap();
            assert_eq!(again, m, "decode/encode must round-trip");
        }
    }
}

#[test]
fn random_proofs_never_panic_and_never_verify() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let leaf = leaf_hash(b"x");
    let root = leaf_hash(b"root");
    for _ in 0..ROUNDS {
        let n = rng.gen_range(0..70);
        let proof: Vec<Hash> = (0..n)
            .map(|_| {
                let mut h = [0u8; 32];
                rng.fill_bytes(&mut h);
                Hash(h)
            })
            .collect();
        let size = match rng.gen_range(0..3) {
            0 => rng.gen::<u64>(),
            1 => u64::MAX - rng.gen_range(0..3),
            _ => rng.gen_range(0..1000),
        };
        let index = rng.gen_range(0..=size.saturating_add(1).max(1));
        assert!(verify_inclusion(&leaf, index, size, &proof, &root).is_err());
        let old = rng.gen_range(0..=size);
        assert!(verify_consistency(old, &leaf, size, &root, &proof).is_err());
    }
}
