//! RocksDB backend: one database per process, one set of column families per log.

use super::{tile_key, u64_key, Commit, LogStore, Result, StoreError};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompressionType, Direction, IteratorMode,
    MergeOperands, Options, WriteBatch, WriteOptions, DB,
};
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

const CF_KINDS: [&str; 5] = ["checkpoint", "tile", "bundle", "tail", "dedup"];

/// Column families derived from a log rather than part of it (rebuilt by `ledger reindex`).
pub const DERIVED_KINDS: [&str; 1] = ["catalog"];

/// Column families of other parties' statements about a log (witness cosignatures,
/// time-stamp tokens): kept beside it, never rebuilt.
pub const ATTACHED_KINDS: [&str; 1] = ["attest"];

/// Column families of the process rather than of one log (access-control state).
pub const PROCESS_FAMILIES: [&str; 3] = ["access/tokens", "access/grants", "keys/rotations"];

fn cf_name(log: &str, kind: &str) -> String {
    format!("{log}/{kind}")
}

fn io(e: rocksdb::Error) -> StoreError {
    StoreError::Io(e.to_string())
}

/// Dedup buckets only ever grow by appending packed records: concatenation is associative,
/// so RocksDB can combine operands during compaction without reading the bucket first.
fn concat_merge(_key: &[u8], existing: Option<&[u8]>, operands: &MergeOperands) -> Option<Vec<u8>> {
    let extra: usize = operands.iter().map(|o| o.len()).sum();
    let mut out = Vec::with_capacity(existing.map_or(0, |e| e.len()) + extra);
    if let Some(e) = existing {
        out.extend_from_slice(e);
    }
    for op in operands {
        out.extend_from_slice(op);
    }
    Some(out)
}

fn cf_options(kind: &str, cache: &Cache) -> Options {
    let mut o = Options::default();
    let mut t = BlockBasedOptions::default();
    t.set_block_cache(cache);
    match kind {
        // Hashes do not compress; spare the CPU.
        "tile" | "dedup" => {
            o.set_compression_type(DBCompressionType::None);
            t.set_block_size(16 * 1024);
        }
        _ => o.set_compression_type(DBCompressionType::Lz4),
    }
    if kind == "dedup" {
        o.set_merge_operator_associative("concat", concat_merge);
        // One merge operand per appended entry, to a random one of the 2^16 buckets. In a
        // skiplist memtable each is an insertion at a random place (RecomputeSpliceLevels
        // was 6-8% of the server's CPU); a hash of linked lists keyed by the whole 2-byte
        // key puts the newest operand at the head of its bucket's list, O(1). Iterating the
        // whole family then needs `total_order_seek` (see `scan_dedup`).
        o.set_prefix_extractor(rocksdb::SliceTransform::create_fixed_prefix(2));
        o.set_memtable_factory(rocksdb::MemtableFactory::HashLinkList {
            bucket_count: 1 << 16,
        });
        // A small memtable keeps each bucket's operand list short for lookups.
        o.set_write_buffer_size(8 << 20);
        // Every flush touches buckets all over the key space, so leveled compaction would
        // rewrite the whole index on each one: tiered (universal) compaction keeps the write
        // amplification from growing with the log (BENCHMARKS.md, append rate at 10M).
        o.set_compaction_style(rocksdb::DBCompactionStyle::Universal);
    }
    o.set_block_based_table_factory(&t);
    o
}

/// Write-ahead log kept before the memtables it covers are flushed (`--max-wal-bytes`).
pub const DEFAULT_MAX_WAL_BYTES: u64 = 256 << 20;

/// Sizes an operator may tune.
#[derive(Debug, Clone, Copy)]
pub struct DbTuning {
    /// The block cache shared by every column family.
    pub cache_bytes: usize,
    /// RocksDB's `max_total_wal_size`.
    pub max_wal_bytes: u64,
}

/// The process-wide database.
pub struct RocksDb {
    db: Arc<DB>,
}

impl RocksDb {
    /// Opens (or creates) the database with column families for `logs`.
    pub fn open(path: &Path, logs: &[String], cache_bytes: usize) -> Result<Self> {
        let tuning = DbTuning {
            cache_bytes,
            max_wal_bytes: DEFAULT_MAX_WAL_BYTES,
        };
        Self::open_tuned(path, logs, tuning)
    }

    /// [`RocksDb::open`] with every tunable size given.
    pub fn open_tuned(path: &Path, logs: &[String], tuning: DbTuning) -> Result<Self> {
        let cache = Cache::new_lru_cache(tuning.cache_bytes);
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
        opts.set_bytes_per_sync(1 << 20);
        // Every batch ends in an fdatasync of the write-ahead log. Appending to a fresh WAL
        // grows the file, so each sync also writes the inode (on ext4 a second, serial
        // I/O); a recycled WAL is overwritten in place. Measured: 455 µs per synced batch
        // before the first WAL is recycled, 280-320 µs after (BENCHMARKS.md).
        opts.set_recycle_log_file_num(4);
        // Column families that see few writes (checkpoints, the catalog) would otherwise
        // pin old WALs for gigabytes, none would be free to recycle, and a restart after
        // kill -9 would replay all of them. This flushes such families instead.
        opts.set_max_total_wal_size(tuning.max_wal_bytes);
        // Required by the dedup family's hash memtable; the sequencer is the only writer
        // on the hot path, so concurrent memtable inserts gained nothing.
        opts.set_allow_concurrent_memtable_write(false);
        let mut names: Vec<String> = DB::list_cf(&opts, path).unwrap_or_default();
        for n in PROCESS_FAMILIES {
            if !names.iter().any(|x| x == n) {
                names.push(n.to_string());
            }
        }
        for log in logs {
            for kind in CF_KINDS.iter().chain(&DERIVED_KINDS).chain(&ATTACHED_KINDS) {
                let n = cf_name(log, kind);
                if !names.contains(&n) {
                    names.push(n);
                }
            }
        }
        let descriptors = names.iter().map(|n| {
            let kind = n.rsplit('/').next().unwrap_or("");
            ColumnFamilyDescriptor::new(n, cf_options(kind, &cache))
        });
        let db = DB::open_cf_descriptors(&opts, path, descriptors).map_err(io)?;
        Ok(Self { db: Arc::new(db) })
    }

    /// The database and the name of one of a log's derived or attached column families.
    pub fn derived(&self, log: &str, kind: &str) -> (Arc<DB>, String) {
        (self.db.clone(), cf_name(log, kind))
    }

    /// The database and one of the process's own column families ([`PROCESS_FAMILIES`]).
    pub fn process_family(&self, name: &'static str) -> (Arc<DB>, String) {
        debug_assert!(PROCESS_FAMILIES.contains(&name));
        (self.db.clone(), name.to_string())
    }

    pub fn log_store(&self, log: &str) -> RocksLogStore {
        RocksLogStore {
            db: self.db.clone(),
            cf_names: CF_KINDS.iter().map(|k| cf_name(log, k)).collect(),
        }
    }
}

pub struct RocksLogStore {
    db: Arc<DB>,
    /// Column family names in `CF_KINDS` order, formatted once.
    cf_names: Vec<String>,
}

impl RocksLogStore {
    fn cf(&self, kind: &str) -> Result<&rocksdb::ColumnFamily> {
        let n = CF_KINDS
            .iter()
            .position(|k| *k == kind)
            .map(|i| &self.cf_names[i])
            .ok_or_else(|| StoreError::Io(format!("no column family kind {kind}")))?;
        self.db
            .cf_handle(n)
            .ok_or_else(|| StoreError::Io(format!("missing column family {n}")))
    }

    fn get(&self, kind: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db.get_cf(self.cf(kind)?, key).map_err(io)
    }

    /// Bytes of settled SST files per column family kind.
    pub fn sizes_by_kind(&self) -> Result<Vec<(&'static str, u64)>> {
        CF_KINDS
            .iter()
            .map(|k| {
                let cf = self.cf(k)?;
                let b = self
                    .db
                    .property_int_value_cf(cf, "rocksdb.total-sst-files-size")
                    .map_err(io)?
                    .unwrap_or(0);
                Ok((*k, b))
            })
            .collect()
    }

    /// Flushes memtables and compacts, so that `storage_bytes` measures settled SST files.
    pub fn settle(&self) -> Result<()> {
        for kind in CF_KINDS {
            let cf = self.cf(kind)?;
            self.db.flush_cf(cf).map_err(io)?;
            self.db.compact_range_cf::<&[u8], &[u8]>(cf, None, None);
        }
        Ok(())
    }
}

impl LogStore for RocksLogStore {
    fn latest_checkpoint(&self) -> Result<Option<(u64, Vec<u8>)>> {
        let mut it = self
            .db
            .iterator_cf(self.cf("checkpoint")?, IteratorMode::End);
        match it.next() {
            None => Ok(None),
            Some(Err(e)) => Err(io(e)),
            Some(Ok((k, v))) => {
                let k: [u8; 8] = k
                    .as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("checkpoint key is not 8 bytes".into()))?;
                Ok(Some((u64::from_be_bytes(k), v.to_vec())))
            }
        }
    }

    fn checkpoint_at(&self, size: u64) -> Result<Option<Vec<u8>>> {
        self.get("checkpoint", &u64_key(size))
    }

    fn scan_checkpoints(&self, visit: &mut dyn FnMut(u64, &[u8]) -> bool) -> Result<()> {
        for item in self
            .db
            .iterator_cf(self.cf("checkpoint")?, IteratorMode::Start)
        {
            let (k, v) = item.map_err(io)?;
            let k: [u8; 8] = k
                .as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt("checkpoint key is not 8 bytes".into()))?;
            if !visit(u64::from_be_bytes(k), &v) {
                break;
            }
        }
        Ok(())
    }

    fn tile(&self, level: u8, index: u64) -> Result<Option<Vec<u8>>> {
        self.get("tile", &tile_key(level, index))
    }

    fn with_tile(&self, level: u8, index: u64, visit: &mut dyn FnMut(&[u8])) -> Result<bool> {
        let pinned = self
            .db
            .get_pinned_cf(self.cf("tile")?, tile_key(level, index))
            .map_err(io)?;
        Ok(pinned.map(|d| visit(&d)).is_some())
    }

    fn bundle(&self, index: u64) -> Result<Option<Vec<u8>>> {
        self.get("bundle", &u64_key(index))
    }

    fn tail_entries(&self, range: Range<u64>) -> Result<Vec<bytes::Bytes>> {
        let start = u64_key(range.start);
        let it = self.db.iterator_cf(
            self.cf("tail")?,
            IteratorMode::From(&start, Direction::Forward),
        );
        let mut out = Vec::with_capacity((range.end - range.start) as usize);
        for (expected, item) in range.clone().zip(it) {
            let (k, v) = item.map_err(io)?;
            if k.as_ref() != u64_key(expected) {
                return Err(StoreError::Corrupt(format!(
                    "tail entry {expected} is missing"
                )));
            }
            out.push(bytes::Bytes::from(v.into_vec()));
        }
        if out.len() as u64 != range.end - range.start {
            return Err(StoreError::Corrupt(format!(
                "tail entries {}..{} are incomplete",
                range.start, range.end
            )));
        }
        Ok(out)
    }

    fn dedup_bucket(&self, bucket: u16) -> Result<Vec<u8>> {
        Ok(self
            .get("dedup", &bucket.to_be_bytes())?
            .unwrap_or_default())
    }

    fn scan_dedup(&self, visit: &mut dyn FnMut(u16, &[u8])) -> Result<()> {
        // The family has a prefix extractor: without total order an iterator may stop at
        // the end of one bucket.
        let mut ro = rocksdb::ReadOptions::default();
        ro.set_total_order_seek(true);
        for item in self
            .db
            .iterator_cf_opt(self.cf("dedup")?, ro, IteratorMode::Start)
        {
            let (k, v) = item.map_err(io)?;
            let k: [u8; 2] = k
                .as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt("dedup key is not 2 bytes".into()))?;
            visit(u16::from_be_bytes(k), &v);
        }
        Ok(())
    }

    fn write(&self, c: &Commit) -> Result<()> {
        self.write_batch(c, false)
    }

    fn sync(&self) -> Result<()> {
        // FlushWAL(sync = true): fsyncs the write-ahead log, covering every write so far.
        self.db.flush_wal(true).map_err(io)
    }

    fn commit(&self, c: &Commit) -> Result<()> {
        // One write that RocksDB syncs itself: the batch is on stable storage before any
        // submitter hears of it.
        self.write_batch(c, true)
    }

    fn storage_bytes(&self) -> u64 {
        self.storage_bytes_of_cfs()
    }
}

impl RocksLogStore {
    fn write_batch(&self, c: &Commit, sync: bool) -> Result<()> {
        let mut b = WriteBatch::default();
        let tail = self.cf("tail")?;
        for (i, e) in &c.tail_puts {
            b.put_cf(tail, u64_key(*i), e);
        }
        for r in &c.tail_deletes {
            b.delete_range_cf(tail, u64_key(r.start), u64_key(r.end));
        }
        let bundle = self.cf("bundle")?;
        for (i, data) in &c.bundles {
            b.put_cf(bundle, u64_key(*i), data);
        }
        let tile = self.cf("tile")?;
        for (l, i, data) in &c.tiles {
            b.put_cf(tile, tile_key(*l, *i), data);
        }
        let dedup = self.cf("dedup")?;
        for (bucket, recs) in &c.dedup {
            b.merge_cf(dedup, bucket.to_be_bytes(), recs);
        }
        b.put_cf(
            self.cf("checkpoint")?,
            u64_key(c.checkpoint.0),
            &c.checkpoint.1,
        );
        let mut wo = WriteOptions::default();
        wo.set_sync(sync);
        self.db.write_opt(b, &wo).map_err(io)
    }

    fn storage_bytes_of_cfs(&self) -> u64 {
        CF_KINDS
            .iter()
            .filter_map(|k| self.cf(k).ok())
            .map(|cf| {
                let sst = self
                    .db
                    .property_int_value_cf(cf, "rocksdb.total-sst-files-size")
                    .ok()
                    .flatten()
                    .unwrap_or(0);
                let mem = self
                    .db
                    .property_int_value_cf(cf, "rocksdb.cur-size-all-mem-tables")
                    .ok()
                    .flatten()
                    .unwrap_or(0);
                sst + mem
            })
            .sum()
    }
}
