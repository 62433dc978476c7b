//! In-memory backend with injected faults, for unit tests of the sequencer.
//!
//! Two failure modes matter for a log (after Sunlight's test backend): a commit that fails
//! and leaves nothing behind, and a commit that *reports* failure but was persisted anyway
//! (e.g. fsync returned EIO after the data reached the platter). The log must survive both
//! without ever signing two different trees at one size.

use super::{tile_key, Commit, LogStore, Result, StoreError};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::ops::Range;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The commit fails and nothing is written.
    Fail,
    /// The commit is applied, but the caller is told it failed.
    FailButPersist,
}

#[derive(Default)]
struct Inner {
    checkpoints: BTreeMap<u64, Vec<u8>>,
    tiles: BTreeMap<[u8; 9], Vec<u8>>,
    bundles: BTreeMap<u64, Vec<u8>>,
    tail: BTreeMap<u64, bytes::Bytes>,
    dedup: BTreeMap<u16, Vec<u8>>,
    faults: Vec<Fault>,
    /// Syncs still to fail (the written data stays applied: a sync error leaves it unknown
    /// whether it is durable).
    sync_faults: usize,
}

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    /// Queues a fault for the next commit (faults are consumed in order).
    pub fn inject(&self, f: Fault) {
        self.inner.lock().faults.push(f);
    }

    /// Makes the next `sync` fail.
    pub fn fail_next_sync(&self) {
        self.inner.lock().sync_faults += 1;
    }

    fn apply(inner: &mut Inner, c: &Commit) {
        for (i, e) in &c.tail_puts {
            inner.tail.insert(*i, e.clone());
        }
        for r in &c.tail_deletes {
            let keys: Vec<u64> = inner.tail.range(r.clone()).map(|(k, _)| *k).collect();
            for k in keys {
                inner.tail.remove(&k);
            }
        }
        for (i, d) in &c.bundles {
            inner.bundles.insert(*i, d.clone());
        }
        for (l, i, d) in &c.tiles {
            inner.tiles.insert(tile_key(*l, *i), d.clone());
        }
        for (b, recs) in &c.dedup {
            inner.dedup.entry(*b).or_default().extend_from_slice(recs);
        }
        inner
            .checkpoints
            .insert(c.checkpoint.0, c.checkpoint.1.clone());
    }
}

impl LogStore for MemoryStore {
    fn latest_checkpoint(&self) -> Result<Option<(u64, Vec<u8>)>> {
        Ok(self
            .inner
            .lock()
            .checkpoints
            .iter()
            .next_back()
            .map(|(k, v)| (*k, v.clone())))
    }

    fn checkpoint_at(&self, size: u64) -> Result<Option<Vec<u8>>> {
        Ok(self.inner.lock().checkpoints.get(&size).cloned())
    }

    fn scan_checkpoints(&self, visit: &mut dyn FnMut(u64, &[u8]) -> bool) -> Result<()> {
        let all: Vec<(u64, Vec<u8>)> = self
            .inner
            .lock()
            .checkpoints
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        for (k, v) in all {
            if !visit(k, &v) {
                break;
            }
        }
        Ok(())
    }

    fn tile(&self, level: u8, index: u64) -> Result<Option<Vec<u8>>> {
        Ok(self
            .inner
            .lock()
            .tiles
            .get(&tile_key(level, index))
            .cloned())
    }

    fn bundle(&self, index: u64) -> Result<Option<Vec<u8>>> {
        Ok(self.inner.lock().bundles.get(&index).cloned())
    }

    fn tail_entries(&self, range: Range<u64>) -> Result<Vec<bytes::Bytes>> {
        let inner = self.inner.lock();
        range
            .map(|i| {
                inner
                    .tail
                    .get(&i)
                    .cloned()
                    .ok_or_else(|| StoreError::Corrupt(format!("tail entry {i} is missing")))
            })
            .collect()
    }

    fn dedup_bucket(&self, bucket: u16) -> Result<Vec<u8>> {
        Ok(self
            .inner
            .lock()
            .dedup
            .get(&bucket)
            .cloned()
            .unwrap_or_default())
    }

    fn scan_dedup(&self, visit: &mut dyn FnMut(u16, &[u8])) -> Result<()> {
        for (b, v) in self.inner.lock().dedup.iter() {
            visit(*b, v);
        }
        Ok(())
    }

    fn write(&self, c: &Commit) -> Result<()> {
        let mut inner = self.inner.lock();
        let fault = if inner.faults.is_empty() {
            None
        } else {
            Some(inner.faults.remove(0))
        };
        match fault {
            None => {
                Self::apply(&mut inner, c);
                Ok(())
            }
            Some(Fault::Fail) => Err(StoreError::Io("injected: write failed".into())),
            Some(Fault::FailButPersist) => {
                Self::apply(&mut inner, c);
                Err(StoreError::Io(
                    "injected: write failed but persisted".into(),
                ))
            }
        }
    }

    fn sync(&self) -> Result<()> {
        let mut inner = self.inner.lock();
        if inner.sync_faults > 0 {
            inner.sync_faults -= 1;
            return Err(StoreError::Io("injected: sync failed".into()));
        }
        Ok(())
    }

    fn storage_bytes(&self) -> u64 {
        let i = self.inner.lock();
        let sum = |it: &mut dyn Iterator<Item = usize>| it.sum::<usize>() as u64;
        sum(&mut i.checkpoints.values().map(|v| v.len() + 8))
            + sum(&mut i.tiles.values().map(|v| v.len() + 9))
            + sum(&mut i.bundles.values().map(|v| v.len() + 8))
            + sum(&mut i.tail.values().map(|v| v.len() + 8))
            + sum(&mut i.dedup.values().map(|v| v.len() + 2))
    }
}
