//! Known-answer tests: the Certificate Transparency reference leaves and tree heads
//! (RFC 6962 test data, as published with the CT / transparency-dev Merkle libraries).

mod common;

use common::{hex, unhex};
use ledger_client::merkle::{
    consistency_proof, inclusion_proof, leaf_hash, node_hash, root_from_leaves, verify_consistency,
    verify_inclusion, EMPTY_ROOT,
};

const LEAVES: [&[u8]; 8] = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
];

/// Root of the tree of the first `i` leaves, i = 0..=8.
const ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

fn leaf_hashes() -> Vec<ledger_client::Hash> {
    LEAVES.iter().map(|l| leaf_hash(l)).collect()
}

#[test]
fn empty_tree_root_is_sha256_of_empty_string() {
    assert_eq!(hex(&EMPTY_ROOT), ROOTS[0]);
    assert_eq!(hex(&root_from_leaves(&[])), ROOTS[0]);
}

#[test]
fn size_8_root() {
    assert_eq!(
        hex(&root_from_leaves(&leaf_hashes())),
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
    );
}

#[test]
fn roots_for_sizes_1_to_8() {
    let leaves = leaf_hashes();
    for n in 0..=8 {
        assert_eq!(hex(&root_from_leaves(&leaves[..n])), ROOTS[n], "size {n}");
    }
    // The one-leaf tree's root is the leaf hash, and the two-leaf root is one node hash.
    assert_eq!(hex(&leaf_hash(b"")), ROOTS[1]);
    assert_eq!(hex(&node_hash(&leaves[0], &leaves[1])), ROOTS[2]);
}

#[test]
fn roots_match_tlog_tiles_tree() {
    let mut t = common::MemTree::new();
    for l in LEAVES {
        t.push(l);
    }
    for n in 1..=8u64 {
        assert_eq!(hex(&t.root(n)), ROOTS[n as usize], "size {n}");
    }
}

#[test]
fn inclusion_vectors() {
    let leaves = leaf_hashes();
    let cases: &[(u64, u64, &[&str])] = &[
        (0, 1, &[]),
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            0,
            5,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    for &(index, size, want) in cases {
        let want: Vec<_> = want.iter().map(|h| unhex(h)).collect();
        let got = inclusion_proof(&leaves[..size as usize], index).unwrap();
        assert_eq!(got, want, "reference proof {index}/{size}");
        let root = unhex(ROOTS[size as usize]);
        verify_inclusion(&leaves[index as usize], index, size, &want, &root)
            .unwrap_or_else(|e| panic!("{index}/{size}: {e}"));
    }
}

#[test]
fn consistency_vectors() {
    let leaves = leaf_hashes();
    let cases: &[(u64, u64, &[&str])] = &[
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            2,
            8,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
    ];
    for &(old, new, want) in cases {
        let want: Vec<_> = want.iter().map(|h| unhex(h)).collect();
        let got = consistency_proof(&leaves[..new as usize], old).unwrap();
        assert_eq!(got, want, "reference proof {old}->{new}");
        verify_consistency(
            old,
            &unhex(ROOTS[old as usize]),
            new,
            &unhex(ROOTS[new as usize]),
            &want,
        )
        .unwrap_or_else(|e| panic!("{old}->{new}: {e}"));
    }
}
