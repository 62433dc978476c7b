//! A transparency log witness speaking C2SP tlog-witness (specs/witness.md).
//!
//! The witness follows a configured set of logs (C2SP tlog-policy `log` lines). For each
//! log it remembers the latest checkpoint it cosigned, and it cosigns a new checkpoint
//! (C2SP tlog-cosignature, Ed25519, timestamped) only when the log's signature verifies and
//! a consistency proof shows that the new tree extends the remembered one. It never cosigns
//! a rollback or a fork; a validly signed checkpoint that is inconsistent with what it
//! cosigned is kept as evidence.
//!
//! * [`config`]: the logs file (tlog-policy `log <vkey> [<url>]` lines).
//! * [`keys`]: the witness's cosigning key files.
//! * [`store`]: RocksDB state (latest cosigned checkpoint per origin, fork evidence).
//! * [`verify`]: checkpoint verification on keys parsed once.
//! * [`witness`]: the add-checkpoint checks and the committer that makes them atomic.
//! * [`http`]: the HTTP interface; [`server`]: process wiring.

pub mod config;
pub mod http;
pub mod keys;
pub mod metrics;
pub mod server;
pub mod store;
pub mod verify;
pub mod witness;
