//! Offline verification for the verifiable artifact ledger: RFC 6962/9162 Merkle proofs,
//! C2SP signed checkpoints, tlog-tiles paths and entry bundles, c2sp.org/tlog-proof files,
//! and a monotonic trust store. No network and no async runtime: everything here works on
//! bytes the caller already has.
//!
//! * [`merkle`]: leaf/node hashing and an independent RFC 9162 §2.1.3.2 / §2.1.4.2 verifier.
//! * [`tiles`]: c2sp.org/tlog-tiles paths (`tile/0/x001/067.p/5`) and entry bundles.
//! * [`checkpoint`]: verify a signed checkpoint against trusted vkeys.
//! * [`tlog_proof`]: parse, write and verify `c2sp.org/tlog-proof@v1` files.
//! * [`rotation`]: logged log-key rotations; accept a checkpoint only from a key valid at its size.
//! * [`trust`]: remember the last verified checkpoint per log; refuse forks and rollbacks.
//!
//! ```
//! use ledger_client::checkpoint::{sign_checkpoint, verify_checkpoint};
//! use ledger_client::merkle::{inclusion_proof, leaf_hash, root_from_leaves, verify_inclusion};
//! use ledger_client::tlog_proof::TlogProof;
//!
//! // A log of three entries, signed by a freshly generated key named after its origin.
//! let origin = "example.com/artifacts";
//! let (skey, vkey) = signed_note::generate_key(&mut rand::rngs::OsRng, origin);
//! let leaves: Vec<_> = [&b"a"[..], b"b", b"c"].iter().map(|e| leaf_hash(e)).collect();
//! let root = root_from_leaves(&leaves);
//! let note = sign_checkpoint(&skey, origin, 3, &root, &[]).unwrap();
//!
//! // A client holding only the vkey checks the checkpoint and an inclusion proof.
//! let cp = verify_checkpoint(&note, &[&vkey], Some(origin)).unwrap();
//! assert_eq!((cp.size, cp.root), (3, root));
//! let proof = inclusion_proof(&leaves, 1).unwrap();
//! verify_inclusion(&leaf_hash(b"b"), 1, cp.size, &proof, &cp.root).unwrap();
//! assert!(verify_inclusion(&leaf_hash(b"x"), 1, cp.size, &proof, &cp.root).is_err());
//!
//! // The same, as a self-contained tlog-proof file.
//! let file = TlogProof { extra: None, index: 1, inclusion_proof: proof, checkpoint: note };
//! let parsed = TlogProof::parse(&file.to_bytes()).unwrap();
//! parsed.verify(&leaf_hash(b"b"), &[&vkey], Some(origin)).unwrap();
//! ```

pub mod attestation;
pub mod bundle;
pub mod checkpoint;
pub mod cosignature;
pub mod digest;
pub mod error;
pub mod event;
pub mod merkle;
pub mod policy;
pub mod publisher;
pub mod replay;
pub mod rotation;
pub mod tiles;
pub mod timestamp;
pub mod tlog_proof;
pub mod trust;
pub mod witness_protocol;

pub use checkpoint::{parse_vkey, read_vkey_file, verify_checkpoint, VerifiedCheckpoint};
pub use merkle::{leaf_hash, node_hash, verify_consistency, verify_inclusion, Hash};
pub use tiles::{TileKind, TilePath};
pub use tlog_proof::TlogProof;
pub use trust::{Advance, TrustStore};
