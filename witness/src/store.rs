//! Durable state in one RocksDB database:
//!
//! * column family `checkpoints`: origin → the latest cosigned checkpoint, as a signed note
//!   holding the log signature(s) the witness verified and the witness's cosignature;
//! * column family `forks`: SHA-256(origin) || evidence ID → one fork evidence record (JSON,
//!   [`Evidence`]).
//!
//! Every write is synced (`WriteOptions::set_sync`) before the caller answers.

use anyhow::{Context, Result};
use rocksdb::{ColumnFamilyDescriptor, IteratorMode, Options, WriteBatch, WriteOptions, DB};
use serde::{Deserialize, Serialize};
use std::path::Path;

const CF_CHECKPOINTS: &str = "checkpoints";
const CF_FORKS: &str = "forks";

/// A validly signed checkpoint that is inconsistent with the one the witness had cosigned.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Evidence {
    pub origin: String,
    /// `same_size_different_root`: two checkpoints of one size with different roots, both
    /// signed by the log: a proven fork. `inconsistent_proof`: a larger checkpoint, signed
    /// by the log, whose submitted consistency proof from the cosigned one does not verify.
    pub kind: String,
    /// The checkpoint the witness had cosigned (log signatures and its cosignature).
    pub cosigned_checkpoint: String,
    /// The submitted checkpoint as received.
    pub submitted_checkpoint: String,
    /// The old size of the request (the cosigned checkpoint's size).
    pub old_size: u64,
    /// The submitted consistency proof, base64 hashes.
    pub proof: Vec<String>,
    /// Why the submission was refused.
    pub reason: String,
    /// When the witness first saw it (POSIX seconds).
    pub detected_at: u64,
}

pub struct Store {
    db: DB,
    sync: WriteOptions,
}

fn io(e: rocksdb::Error) -> anyhow::Error {
    anyhow::anyhow!("RocksDB: {e}")
}

impl Store {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
        // The checkpoints family holds one small value per log, overwritten on every
        // cosignature: a small memtable keeps its skiplist cache-resident (with the default
        // 64 MiB, inserting into it was ~4% of the witness's CPU under load), and a flush
        // only writes the live values.
        let mut checkpoints = Options::default();
        checkpoints.set_write_buffer_size(4 << 20);
        let cfs = [
            ColumnFamilyDescriptor::new(CF_CHECKPOINTS, checkpoints),
            ColumnFamilyDescriptor::new(CF_FORKS, Options::default()),
        ];
        let db = DB::open_cf_descriptors(&opts, path, cfs)
            .map_err(io)
            .with_context(|| format!("opening RocksDB at {}", path.display()))?;
        let mut sync = WriteOptions::default();
        sync.set_sync(true);
        Ok(Self { db, sync })
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("column families are created at open")
    }

    /// Every stored (origin, note).
    pub fn checkpoints(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let mut out = vec![];
        for kv in self
            .db
            .iterator_cf(self.cf(CF_CHECKPOINTS), IteratorMode::Start)
        {
            let (k, v) = kv.map_err(io)?;
            let origin = String::from_utf8(k.to_vec()).context("stored origin is not UTF-8")?;
            out.push((origin, v.to_vec()));
        }
        Ok(out)
    }

    /// The latest cosigned checkpoint of `origin`.
    pub fn checkpoint(&self, origin: &str) -> Result<Option<Vec<u8>>> {
        self.db
            .get_cf(self.cf(CF_CHECKPOINTS), origin.as_bytes())
            .map_err(io)
    }

    /// Every stored fork evidence record, keyed.
    pub fn evidence(&self) -> Result<Vec<(Vec<u8>, Evidence)>> {
        let mut out = vec![];
        for kv in self.db.iterator_cf(self.cf(CF_FORKS), IteratorMode::Start) {
            let (k, v) = kv.map_err(io)?;
            let e: Evidence = serde_json::from_slice(&v).context("stored fork evidence")?;
            out.push((k.to_vec(), e));
        }
        Ok(out)
    }

    /// Writes one group of updates in a single synced RocksDB write.
    pub fn write(&self, batch: Batch) -> Result<()> {
        self.db.write_opt(batch.0, &self.sync).map_err(io)
    }
}

/// Updates written together by [`Store::write`].
#[derive(Default)]
pub struct Batch(WriteBatch);

impl Batch {
    pub fn put_checkpoint(&mut self, store: &Store, origin: &str, note: &[u8]) {
        self.0
            .put_cf(store.cf(CF_CHECKPOINTS), origin.as_bytes(), note);
    }

    pub fn put_evidence(&mut self, store: &Store, key: &[u8], e: &Evidence) {
        let v = serde_json::to_vec(e).expect("evidence serialises");
        self.0.put_cf(store.cf(CF_FORKS), key, v);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_survive_reopening() {
        let d = tempfile::tempdir().unwrap();
        let e = Evidence {
            origin: "o".into(),
            kind: "same_size_different_root".into(),
            cosigned_checkpoint: "a".into(),
            submitted_checkpoint: "b".into(),
            old_size: 3,
            proof: vec![],
            reason: "r".into(),
            detected_at: 1,
        };
        {
            let s = Store::open(d.path()).unwrap();
            let mut b = Batch::default();
            assert!(b.is_empty());
            b.put_checkpoint(&s, "o", b"note");
            b.put_evidence(&s, b"k", &e);
            s.write(b).unwrap();
        }
        let s = Store::open(d.path()).unwrap();
        assert_eq!(
            s.checkpoints().unwrap(),
            vec![("o".to_string(), b"note".to_vec())]
        );
        assert_eq!(s.checkpoint("o").unwrap().unwrap(), b"note");
        assert_eq!(s.checkpoint("p").unwrap(), None);
        assert_eq!(s.evidence().unwrap(), vec![(b"k".to_vec(), e)]);
    }
}
