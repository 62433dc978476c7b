//! The pool and the sequencer: submissions wait in a bounded pool, a single thread per log
//! takes them in arrival order, assigns indexes, and commits each batch (entries, new full
//! tiles, dedup records and the new signed checkpoint) in one atomic synced write before any
//! submitter is answered.

use crate::dedup::{self, Bloom};
use crate::log::{checkpoint_text, sign_checkpoint, Log, LogError, NodeReader, Snapshot};
use crate::store::Commit;
use crate::tree::{NewTile, TILE_WIDTH};
use bytes::Bytes;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tlog_tiles::Hash;
use tokio::sync::oneshot;

#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// A batch closes when it holds this many entries...
    pub max_batch_entries: usize,
    /// ...or when its first submission has waited this long.
    pub max_batch_age: Duration,
    /// Submissions beyond these many queued entries or bytes get 503.
    pub max_pending_entries: usize,
    pub max_pending_bytes: usize,
}

impl Default for PoolConfig {
    fn default() -> Self {
        // Tuned in BENCHMARKS.md: the synced write dominates, so batches form on their own
        // while one commit is in flight; waiting longer only adds latency.
        Self {
            max_batch_entries: 65_536,
            max_batch_age: Duration::ZERO,
            max_pending_entries: 1 << 20,
            max_pending_bytes: 512 << 20,
        }
    }
}

/// One sequenced entry as answered to its submitter.
#[derive(Debug, Clone, Copy)]
pub struct Sequenced {
    pub index: u64,
    pub leaf: Hash,
    pub duplicate: bool,
}

pub struct Receipt {
    pub entries: Vec<Sequenced>,
    /// The durable snapshot whose checkpoint covers every entry above.
    pub snapshot: Arc<Snapshot>,
}

pub type Reply = Result<Receipt, LogError>;

struct Submission {
    entries: Vec<(Bytes, Hash)>,
    bytes: usize,
    arrived: Instant,
    reply: oneshot::Sender<Reply>,
}

pub struct Pool {
    /// `None` once shut down.
    tx: parking_lot::Mutex<Option<mpsc::Sender<Submission>>>,
    thread: parking_lot::Mutex<Option<std::thread::JoinHandle<()>>>,
    pending_entries: AtomicUsize,
    pending_bytes: AtomicUsize,
    config: PoolConfig,
    failed: AtomicBool,
}

impl Pool {
    /// Queues entries (with their precomputed leaf hashes) for sequencing. Refuses with
    /// `Unavailable` when the pool is full, so memory stays bounded.
    pub fn submit(
        &self,
        entries: Vec<(Bytes, Hash)>,
    ) -> Result<oneshot::Receiver<Reply>, LogError> {
        if self.failed.load(Ordering::Relaxed) {
            return Err(LogError::Unavailable(
                "the log's storage failed; it is not accepting writes".into(),
            ));
        }
        let n = entries.len();
        let bytes: usize = entries.iter().map(|(e, _)| e.len()).sum();
        let prev_n = self.pending_entries.fetch_add(n, Ordering::AcqRel);
        let prev_b = self.pending_bytes.fetch_add(bytes, Ordering::AcqRel);
        if prev_n + n > self.config.max_pending_entries
            || prev_b + bytes > self.config.max_pending_bytes
        {
            self.release(n, bytes);
            return Err(LogError::Unavailable("sequencing pool is full".into()));
        }
        let (reply, rx) = oneshot::channel();
        let sub = Submission {
            entries,
            bytes,
            arrived: Instant::now(),
            reply,
        };
        let sent = match self.tx.lock().as_ref() {
            Some(tx) => tx.send(sub).is_ok(),
            None => false,
        };
        if !sent {
            self.release(n, bytes);
            return Err(LogError::Unavailable("sequencer stopped".into()));
        }
        Ok(rx)
    }

    fn release(&self, n: usize, bytes: usize) {
        self.pending_entries.fetch_sub(n, Ordering::AcqRel);
        self.pending_bytes.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// Starts the sequencer thread of `log` and returns its pool.
pub fn start(log: Arc<Log>, config: PoolConfig) -> Result<Arc<Pool>, LogError> {
    let (tx, rx) = mpsc::channel();
    let pool = Arc::new(Pool {
        tx: parking_lot::Mutex::new(Some(tx)),
        thread: parking_lot::Mutex::new(None),
        pending_entries: AtomicUsize::new(0),
        pending_bytes: AtomicUsize::new(0),
        config,
        failed: AtomicBool::new(false),
    });
    let bloom = build_bloom(&log)?;
    let mut seq = Sequencer {
        log,
        pool: pool.clone(),
        bloom,
    };
    let handle = std::thread::Builder::new()
        .name(format!("sequencer-{}", seq.log.name))
        .spawn(move || seq.run(rx))
        .map_err(|e| LogError::Unavailable(format!("cannot start sequencer: {e}")))?;
    *pool.thread.lock() = Some(handle);
    Ok(pool)
}

fn build_bloom(log: &Log) -> Result<Bloom, LogError> {
    let size = log.snapshot().size();
    let mut bloom = Bloom::with_capacity((size * 2).max(1 << 20));
    log.store
        .scan_dedup(&mut |bucket, value| bloom.insert_bucket(bucket, value))?;
    Ok(bloom)
}

struct Sequencer {
    log: Arc<Log>,
    pool: Arc<Pool>,
    bloom: Bloom,
}

impl Sequencer {
    fn run(&mut self, rx: mpsc::Receiver<Submission>) {
        let cfg = self.pool.config.clone();
        while let Ok(first) = rx.recv() {
            let deadline = first.arrived + cfg.max_batch_age;
            let mut n = first.entries.len();
            let mut batch = vec![first];
            while n < cfg.max_batch_entries {
                let next = match rx.try_recv() {
                    Ok(s) => s,
                    Err(mpsc::TryRecvError::Disconnected) => break,
                    Err(mpsc::TryRecvError::Empty) => {
                        let now = Instant::now();
                        if now >= deadline {
                            break;
                        }
                        match rx.recv_timeout(deadline - now) {
                            Ok(s) => s,
                            Err(_) => break,
                        }
                    }
                };
                n += next.entries.len();
                batch.push(next);
            }
            let bytes: usize = batch.iter().map(|s| s.bytes).sum();
            self.pool.release(n, bytes);
            self.sequence(batch);
        }
    }

    fn sequence(&mut self, batch: Vec<Submission>) {
        let started = Instant::now();
        match self.integrate(&batch) {
            Ok((snapshot, results)) => {
                let m = &self.log.metrics;
                for (sub, entries) in batch.into_iter().zip(results) {
                    m.sequencing_seconds
                        .observe(sub.arrived.elapsed().as_secs_f64());
                    let _ = sub.reply.send(Ok(Receipt {
                        entries,
                        snapshot: snapshot.clone(),
                    }));
                }
            }
            Err(e) => {
                tracing::error!(log = %self.log.name, error = %e, "commit failed; reloading from storage");
                self.log.metrics.commit_failures.inc();
                let msg = format!("entries were not sequenced: {e}");
                for sub in batch {
                    let _ = sub.reply.send(Err(LogError::Unavailable(msg.clone())));
                }
                // The commit may have been persisted even though it reported failure: reload
                // what storage holds, so the next checkpoint extends whatever was signed.
                let recovered = self
                    .log
                    .reload()
                    .and_then(|_| build_bloom(&self.log).map(|b| self.bloom = b));
                if let Err(e) = recovered {
                    tracing::error!(log = %self.log.name, error = %e, "reload failed; refusing writes");
                    self.pool.failed.store(true, Ordering::Relaxed);
                }
            }
        }
        tracing::trace!(elapsed = ?started.elapsed(), "batch sequenced");
    }

    /// Assigns indexes, commits, publishes. Returns the new snapshot and per-submission answers.
    #[allow(clippy::type_complexity)]
    fn integrate(
        &mut self,
        batch: &[Submission],
    ) -> Result<(Arc<Snapshot>, Vec<Vec<Sequenced>>), LogError> {
        let log = self.log.clone();
        let old = log.snapshot();
        let old_size = old.size();
        let mut edge = old.edge.clone();
        let mut tail = old.tail.clone();
        let mut commit = Commit::default();
        let mut new_tiles: Vec<NewTile> = vec![];
        // Keyed by the raw bytes: tlog_tiles::Hash does not implement Hash.
        let mut in_batch: HashMap<[u8; 32], u64> = HashMap::new();
        let mut dedup_records: BTreeMap<u16, Vec<u8>> = BTreeMap::new();
        let reader = NodeReader::new(&old, log.store.as_ref()).memoising();
        let mut results = Vec::with_capacity(batch.len());
        let mut appended = 0u64;
        let mut duplicates = 0u64;

        for sub in batch {
            let mut answers = Vec::with_capacity(sub.entries.len());
            for (entry, leaf) in &sub.entries {
                let existing = match in_batch.get(&leaf.0) {
                    Some(i) => Some(*i),
                    None if self.bloom.may_contain(leaf) => {
                        let bucket = log.store.dedup_bucket(dedup::bucket(leaf))?;
                        let mut found = None;
                        for c in dedup::candidates(leaf, &bucket) {
                            if c < old_size && reader.node(0, c)? == *leaf {
                                found = Some(c);
                                break;
                            }
                        }
                        found
                    }
                    None => None,
                };
                if let Some(index) = existing {
                    duplicates += 1;
                    answers.push(Sequenced {
                        index,
                        leaf: *leaf,
                        duplicate: true,
                    });
                    continue;
                }
                let index = edge.size;
                if index > dedup::MAX_INDEX {
                    return Err(LogError::Unavailable("the log is full".into()));
                }
                edge.append(*leaf, &mut new_tiles);
                tail.push(entry.clone());
                if tail.len() == TILE_WIDTH {
                    let bundle_index = index / TILE_WIDTH as u64;
                    let start = bundle_index * TILE_WIDTH as u64;
                    let data = ledger_client::tiles::encode_bundle(tail.iter().map(|b| b.as_ref()))
                        .map_err(|e| LogError::Invalid(format!("bundle: {e}")))?;
                    commit.bundles.push((bundle_index, data));
                    if start < old_size {
                        // Some of this bundle's entries were stored one by one earlier.
                        commit.tail_deletes.push(start..old_size);
                    }
                    tail.clear();
                }
                in_batch.insert(leaf.0, index);
                dedup::encode_record(
                    leaf,
                    index,
                    dedup_records.entry(dedup::bucket(leaf)).or_default(),
                );
                appended += 1;
                answers.push(Sequenced {
                    index,
                    leaf: *leaf,
                    duplicate: false,
                });
            }
            results.push(answers);
        }
        drop(reader);

        let m = &log.metrics;
        m.duplicates.inc_by(duplicates);
        if appended == 0 {
            // Nothing new: the current checkpoint already covers every answer.
            return Ok((old, results));
        }

        let new_size = edge.size;
        let tail_start = new_size - tail.len() as u64;
        for (i, e) in tail.iter().enumerate() {
            let index = tail_start + i as u64;
            if index >= old_size {
                commit.tail_puts.push((index, e.clone()));
            }
        }
        commit.tiles = new_tiles
            .into_iter()
            .map(|t| (t.level, t.index, t.data))
            .collect();
        commit.dedup = dedup_records.into_iter().collect();
        let root = edge.root();
        let note = sign_checkpoint(&log.signer, &checkpoint_text(&log.origin, new_size, &root)?)?;
        commit.checkpoint = (new_size, note.clone());

        let t = Instant::now();
        log.store.commit(&commit)?;
        m.commit_seconds.observe(t.elapsed().as_secs_f64());
        m.appended.inc_by(appended);
        m.batch_entries.observe(appended as f64);

        let snapshot = Snapshot::new(edge, tail, root, note.into());
        log.publish(Arc::new(snapshot));
        for leaf in in_batch.keys() {
            self.bloom.insert(&Hash(*leaf));
        }
        if self.bloom.is_overfull() {
            // Grow before false positives start costing storage reads on every append. The
            // batch is already durable, so a failure here only costs speed, not correctness.
            match build_bloom(&log) {
                Ok(b) => self.bloom = b,
                Err(e) => tracing::warn!(error = %e, "could not grow the dedup filter"),
            }
        }
        Ok((log.snapshot(), results))
    }
}

impl Pool {
    /// False once the log's storage failed and could not be reloaded.
    pub fn is_accepting(&self) -> bool {
        !self.failed.load(Ordering::Relaxed)
    }

    /// Stops taking submissions, lets the sequencer finish what is queued, and waits for it.
    pub fn shutdown(&self) {
        self.tx.lock().take();
        if let Some(t) = self.thread.lock().take() {
            let _ = t.join();
        }
    }
}
