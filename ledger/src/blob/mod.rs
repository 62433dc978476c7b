//! Blob storage: artifact bytes, addressed by the SHA-256 of their plaintext.
//!
//! Two layers, so that each backend stays small and every backend gets the same guarantees:
//! * [`BlobStore`]: what a backend implements. Immutable objects under string keys, written
//!   through an [`ObjectWriter`] that makes them visible atomically (and durably) on
//!   `commit`, or not at all. Backends: [`fs`] (the embedded default), [`s3`] (any
//!   S3-compatible store through `object_store`), [`memory`] (unit tests, fault injection).
//! * [`Blobs`](content::Blobs): content addressing on top of any backend. It hashes while
//!   streaming, checks declared digests and sizes, stores identical content once, verifies
//!   digests on full reads and, optionally, seals objects at rest ([`seal`]).
//!
//! Every backend must pass [`conformance`], the one suite that defines what a backend is.

pub mod conformance;
pub mod content;
pub mod fs;
mod hashing;
pub mod memory;
pub mod s3;
pub mod seal;

pub use content::{Blobs, Expect, Put};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use std::ops::Range;

pub use ledger_client::digest::Digest;

/// A stream of byte chunks; an `Err` item ends it (a read failure, or a verification
/// failure detected at the end of a read).
pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("no blob {0}")]
    NotFound(Digest),
    #[error("the uploaded bytes have digest {actual}, not the declared {expected}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("the upload is {actual} bytes, not the declared {expected}")]
    SizeMismatch { expected: u64, actual: u64 },
    #[error("range {start}..{end} is not within the blob's {size} bytes")]
    InvalidRange { start: u64, end: u64, size: u64 },
    #[error("stored blob {digest} is corrupt: {reason}")]
    Corrupt { digest: Digest, reason: String },
    #[error("reading the upload: {0}")]
    Body(String),
    #[error("blob storage: {0}")]
    Io(String),
}

pub type Result<T> = std::result::Result<T, BlobError>;

impl From<std::io::Error> for BlobError {
    fn from(e: std::io::Error) -> Self {
        BlobError::Io(e.to_string())
    }
}

/// A backend: immutable objects under keys such as `sha256/<hex>`.
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// A short name for logs and metrics ("fs", "s3", "memory").
    fn kind(&self) -> &'static str;
    /// Starts writing a new object. `key_hint` is the key the caller expects to commit
    /// under, when known up front (a backend may write there directly, as long as nothing
    /// is visible under it before `commit`).
    async fn begin(&self, key_hint: Option<&str>) -> Result<Box<dyn ObjectWriter>>;
    /// The object's bytes (a sub-range if given; the caller keeps ranges within the size).
    /// `None` if there is no such object.
    async fn read(&self, key: &str, range: Option<Range<u64>>) -> Result<Option<ByteStream>>;
    /// The object's size, `None` if there is no such object. Cheap: no body is read.
    async fn size(&self, key: &str) -> Result<Option<u64>>;
    /// Every object as (key, size), in key order.
    async fn list(&self) -> Result<Vec<(String, u64)>>;
    /// Removes the object; false if it did not exist.
    async fn delete(&self, key: &str) -> Result<bool>;
}

/// An object being written. Dropping it without `commit` must leave nothing visible
/// (an interrupted upload); `abort` also cleans up at once.
#[async_trait]
pub trait ObjectWriter: Send {
    async fn write(&mut self, chunk: Bytes) -> Result<()>;
    /// Publishes the written bytes under `key`, atomically; once this returns, the object
    /// survives a crash. If `key` already exists, the existing object is kept: keys are
    /// content addresses, so it holds the same bytes.
    async fn commit(self: Box<Self>, key: &str) -> Result<()>;
    async fn abort(self: Box<Self>);
}
