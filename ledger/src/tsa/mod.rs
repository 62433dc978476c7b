//! A small RFC 3161 time-stamping authority, for self-hosted setups and as the ledger's
//! embedded default: [`Authority`] answers `TimeStampReq`s with tokens signed by its own
//! ECDSA P-256 key, [`generate`] creates that key with a one-shot root CA and certificate,
//! and [`router`] serves it over HTTP (`POST /tsa`, RFC 3161 §3.4).
//!
//! Tokens are verified by `ledger_client::timestamp::verify_token` and by
//! `openssl ts -verify` (tested end to end in `tests/tests/timestamps.rs`).

mod authority;
mod certs;
mod http;
#[cfg(test)]
mod tests;

pub use authority::{Authority, DEFAULT_POLICY, MAX_REQUEST_SIZE};
pub use certs::{generate, GeneratedTsa, CHAIN_FILE, KEY_FILE, ROOT_FILE};
pub use http::{router, MAX_QUERY_BYTES};
