//! Durable storage of one log: what is written, in one atomic and synced commit per batch.
//!
//! Backends implement [`LogStore`]; every backend must pass `conformance::run` (the same suite
//! runs against RocksDB and the in-memory store with injected faults).

pub mod memory;
pub mod rocks;

#[cfg(test)]
mod conformance;

use std::ops::Range;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage I/O: {0}")]
    Io(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Everything one sequenced batch changes. Applied atomically and durably, or not at all.
#[derive(Default, Debug, Clone)]
pub struct Commit {
    /// Entries of the partial bundle, stored one by one until their bundle is full.
    pub tail_puts: Vec<(u64, bytes::Bytes)>,
    /// Entry indexes whose one-by-one copies are dropped because their bundle is now full.
    pub tail_deletes: Vec<Range<u64>>,
    /// Full entry bundles (c2sp.org/tlog-tiles#log-entries encoding), by bundle index.
    pub bundles: Vec<(u64, Vec<u8>)>,
    /// Full tiles: (level, index, stored bytes; see `tree::StoredTile`).
    pub tiles: Vec<(u8, u64, Vec<u8>)>,
    /// Records appended to dedup buckets: bucket → packed `dedup::Record`s.
    pub dedup: Vec<(u16, Vec<u8>)>,
    /// The new signed checkpoint and its tree size.
    pub checkpoint: (u64, Vec<u8>),
}

pub trait LogStore: Send + Sync + 'static {
    /// The signed checkpoint with the largest tree size.
    fn latest_checkpoint(&self) -> Result<Option<(u64, Vec<u8>)>>;
    fn checkpoint_at(&self, size: u64) -> Result<Option<Vec<u8>>>;
    /// Visits every stored checkpoint in increasing tree size (auditing, `ledger fsck`).
    fn scan_checkpoints(&self, visit: &mut dyn FnMut(u64, &[u8]) -> bool) -> Result<()>;
    /// Full tile in stored form, `None` if not (yet) full.
    fn tile(&self, level: u8, index: u64) -> Result<Option<Vec<u8>>>;
    /// Lets `visit` read a full tile's stored bytes in place (the proof path reads a few
    /// hashes of an 8 KiB tile); false if the tile is not (yet) full.
    fn with_tile(&self, level: u8, index: u64, visit: &mut dyn FnMut(&[u8])) -> Result<bool> {
        match self.tile(level, index)? {
            Some(d) => {
                visit(&d);
                Ok(true)
            }
            None => Ok(false),
        }
    }
    /// Full entry bundle, `None` if not (yet) full.
    fn bundle(&self, index: u64) -> Result<Option<Vec<u8>>>;
    /// Entries of the partial bundle, in index order.
    fn tail_entries(&self, range: Range<u64>) -> Result<Vec<bytes::Bytes>>;
    /// All records of one dedup bucket, concatenated.
    fn dedup_bucket(&self, bucket: u16) -> Result<Vec<u8>>;
    /// Visits every dedup bucket (used to rebuild the in-memory filter at start-up).
    fn scan_dedup(&self, visit: &mut dyn FnMut(u16, &[u8])) -> Result<()>;
    /// Applies `c` atomically. It is visible to reads at once but durable only once a
    /// later `sync` returns: the sequencer writes the next batch while one syncs.
    fn write(&self, c: &Commit) -> Result<()>;
    /// Makes everything written before the call durable.
    fn sync(&self) -> Result<()>;
    /// Applies `c` atomically; returns only once it is durable.
    fn commit(&self, c: &Commit) -> Result<()> {
        self.write(c)?;
        self.sync()
    }
    /// Bytes on disk (or in memory) for this log, for metrics and the overhead benchmark.
    fn storage_bytes(&self) -> u64;
}

pub fn u64_key(n: u64) -> [u8; 8] {
    n.to_be_bytes()
}

pub fn tile_key(level: u8, index: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = level;
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}
