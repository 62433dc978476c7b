//! The ledger server: a tile-based RFC 6962/9162 transparency log on RocksDB.
//!
//! The data path, from request to disk and back:
//! [`http`] → [`sequencer`] (pool, batching, one atomic synced [`store`] commit) →
//! [`log`] snapshot published → proofs answered from [`tree`] tiles.

pub mod access;
pub mod api_error;
pub mod attest;
pub mod blob;
pub mod dedup;
pub mod fsck;
pub mod hsm;
pub mod http;
pub mod keys;
pub mod log;
pub mod metrics;
pub mod registry;
pub mod rotation;
pub mod sequencer;
pub mod server;
pub mod signer;
pub mod store;
pub mod tls;
pub mod tree;
pub mod tsa;
