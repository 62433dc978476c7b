//! The add-checkpoint checks (c2sp.org/tlog-witness#add-checkpoint) and the committer that
//! makes "check the old size, persist the new checkpoint" atomic.
//!
//! A request is checked on the HTTP worker that received it: parse, log signature,
//! sizes, consistency proof against the latest cosigned checkpoint, then the cosignature is
//! made. The result goes to the single committer thread together with the size it was
//! checked against. The committer is the only writer of the state: it compares that size
//! with the current one (compare-and-swap), writes every accepted checkpoint of the batch
//! it collected in one synced RocksDB write, updates the in-memory heads, and only then
//! lets the answers go. A request that lost a race gets 409 with the winner's size, so the
//! race of c2sp.org/tlog-witness#add-checkpoint (step 5, "rolling back K leaves") cannot
//! happen, and a cosignature is never returned before its checkpoint is durable.
//!
//! The CAS compares sizes only. That is enough because a size identifies one root: the
//! stored checkpoint only ever moves to a larger size through a verified consistency proof,
//! or stays at its size with the same root, so the root a request was checked against is
//! still the root of that size when the committer sees it.

use crate::metrics::Metrics;
use crate::store::{Batch, Evidence, Store};
use crate::verify::LogKeys;
use base64::prelude::*;
use ledger_client::checkpoint::{CheckpointError, VerifiedCheckpoint};
use ledger_client::cosignature::CosignerSigner;
use ledger_client::merkle::{
    hash_from_base64, hash_to_base64, verify_consistency, Hash, EMPTY_ROOT,
};
use ledger_client::witness_protocol::{origin_hash, AddCheckpoint};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::LogConfig;

/// Most requests made durable by one synced write.
const MAX_BATCH: usize = 8192;

/// Evidence records kept per origin; a misbehaving log or a replaying client cannot fill
/// the disk. One record already proves a fork.
pub const MAX_EVIDENCE_PER_ORIGIN: usize = 1000;

/// Evidence kinds (specs/witness.md).
pub const FORK_SAME_SIZE: &str = "same_size_different_root";
pub const FORK_INCONSISTENT_PROOF: &str = "inconsistent_proof";

/// Tuning.
#[derive(Debug, Clone)]
pub struct Options {
    /// Least time between the starts of two synced writes (group commit): requests that
    /// arrive meanwhile join the next write. Zero writes as soon as the previous one ends.
    pub commit_interval: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            commit_interval: Duration::from_micros(DEFAULT_COMMIT_INTERVAL_US),
        }
    }
}

/// Default of [`Options::commit_interval`], in microseconds (measured in BENCHMARKS.md).
pub const DEFAULT_COMMIT_INTERVAL_US: u64 = 1000;

/// The latest cosigned tree of a log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Head {
    pub size: u64,
    pub root: Hash,
}

/// One witnessed log.
pub struct LogState {
    pub origin: String,
    /// Lowercase hex SHA-256 of the origin (c2sp.org/tlog-witness#monitor-retrieval-mechanism).
    pub origin_hash: String,
    keys: LogKeys,
    /// `None` until the first cosignature.
    head: Mutex<Option<Head>>,
}

impl LogState {
    pub fn head(&self) -> Option<Head> {
        *self.head.lock()
    }
}

/// The answer to an add-checkpoint request.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// 200: the cosignature line(s).
    Cosigned(String),
    /// 409: the size of the latest cosigned checkpoint.
    Conflict(u64),
    /// Any other status, with a message saying why.
    Refused { status: u16, message: String },
}

impl Answer {
    pub fn status(&self) -> u16 {
        match self {
            Answer::Cosigned(_) => 200,
            Answer::Conflict(_) => 409,
            Answer::Refused { status, .. } => *status,
        }
    }

    fn refused(status: u16, message: impl Into<String>) -> Self {
        Answer::Refused {
            status,
            message: message.into(),
        }
    }
}

/// Work for the committer.
enum Job {
    Cosign {
        log: Arc<LogState>,
        /// The size the request was checked against.
        old: u64,
        new: Head,
        /// The note to store: checkpoint text, verified log signatures, our cosignature.
        note: Vec<u8>,
        reply: tokio::sync::oneshot::Sender<Result<(), Answer>>,
    },
    Evidence {
        key: Vec<u8>,
        evidence: Box<Evidence>,
        /// Whether the record is new (stored now).
        reply: tokio::sync::oneshot::Sender<bool>,
    },
}

/// What the checks decided before storage is involved.
enum Checked {
    Cosign {
        log: Arc<LogState>,
        old: u64,
        new: Head,
        note: Vec<u8>,
        line: String,
    },
    Evidence {
        key: Vec<u8>,
        evidence: Box<Evidence>,
        answer: Answer,
    },
}

pub struct Witness {
    logs: HashMap<String, Arc<LogState>>,
    /// Origin hash → origin of every log with a stored checkpoint or a configuration.
    by_hash: HashMap<String, String>,
    signer: CosignerSigner,
    store: Arc<Store>,
    tx: Mutex<Option<mpsc::Sender<Job>>>,
    committer: Mutex<Option<std::thread::JoinHandle<()>>>,
    pub metrics: Arc<Metrics>,
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        // c2sp.org/tlog-witness#add-checkpoint: "the timestamp MUST NOT be zero".
        .max(1)
}

/// Origin, size and root of a stored note (the witness's own earlier output).
fn parse_head(note: &[u8]) -> Option<(String, Head)> {
    let text = std::str::from_utf8(note).ok()?;
    let mut lines = text.split('\n');
    let origin = lines.next().filter(|l| !l.is_empty())?;
    let size = lines.next()?.parse::<u64>().ok()?;
    let root = hash_from_base64(lines.next()?).ok()?;
    Some((origin.to_string(), Head { size, root }))
}

/// The signature lines of `note` made by the configured keys of `log`, first per key (the
/// ones signed_note verified; a later duplicate line is not checked by it, so not kept).
fn log_signature_lines<'a>(note: &'a [u8], log: &LogState) -> Vec<&'a [u8]> {
    let Some(pos) = note.windows(2).rposition(|w| w == b"\n\n") else {
        return vec![];
    };
    let mut seen = Vec::new();
    let mut out = Vec::new();
    for line in note[pos + 2..].split_inclusive(|&b| b == b'\n') {
        let Ok(s) = std::str::from_utf8(line) else {
            continue;
        };
        let Some((name, b64)) = s
            .trim_end_matches('\n')
            .strip_prefix("\u{2014} ")
            .and_then(|r| r.split_once(' '))
        else {
            continue;
        };
        if name != log.origin {
            continue;
        }
        let Some(id) = BASE64_STANDARD.decode(b64).ok().and_then(|raw| {
            raw.get(..4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        }) else {
            continue;
        };
        if log.keys.has_key_id(id) && !seen.contains(&id) {
            seen.push(id);
            out.push(line);
        }
    }
    out
}

impl Witness {
    /// Opens the state in `db_path` and starts the committer.
    pub fn open(
        logs: &[LogConfig],
        signer: CosignerSigner,
        db_path: &Path,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Arc<Self>> {
        Self::open_with(logs, signer, db_path, metrics, Options::default())
    }

    /// [`Witness::open`] with tuning options.
    pub fn open_with(
        logs: &[LogConfig],
        signer: CosignerSigner,
        db_path: &Path,
        metrics: Arc<Metrics>,
        options: Options,
    ) -> anyhow::Result<Arc<Self>> {
        let store = Arc::new(Store::open(db_path)?);
        let mut states = HashMap::new();
        let mut by_hash = HashMap::new();
        for l in logs {
            let state = LogState {
                origin: l.origin.clone(),
                origin_hash: origin_hash(&l.origin),
                keys: LogKeys::new(&l.origin, &l.keys),
                head: Mutex::new(None),
            };
            by_hash.insert(state.origin_hash.clone(), l.origin.clone());
            states.insert(l.origin.clone(), Arc::new(state));
        }
        for (origin, note) in store.checkpoints()? {
            let (noted, head) = parse_head(&note).ok_or_else(|| {
                anyhow::anyhow!("the stored checkpoint of {origin:?} is corrupt; refusing to start without it (a witness that forgot a log could cosign a rollback)")
            })?;
            if noted != origin {
                anyhow::bail!("the stored checkpoint under {origin:?} is for {noted:?}");
            }
            by_hash.insert(origin_hash(&origin), origin.clone());
            if let Some(s) = states.get(&origin) {
                *s.head.lock() = Some(head);
            }
        }
        let mut seen = HashSet::new();
        let mut counts: HashMap<String, usize> = HashMap::new();
        for (k, e) in store.evidence()? {
            seen.insert(k);
            *counts.entry(e.origin).or_default() += 1;
        }
        metrics.logs.set(states.len() as i64);
        let (tx, rx) = mpsc::channel();
        let committer = {
            let (store, metrics) = (store.clone(), metrics.clone());
            std::thread::Builder::new()
                .name("witness-committer".into())
                .spawn(move || {
                    run_committer(&store, &rx, &metrics, options.commit_interval, seen, counts)
                })?
        };
        Ok(Arc::new(Self {
            logs: states,
            by_hash,
            signer,
            store,
            tx: Mutex::new(Some(tx)),
            committer: Mutex::new(Some(committer)),
            metrics,
        }))
    }

    /// The witness's vkey.
    pub fn vkey(&self) -> String {
        self.signer.vkey()
    }

    /// The witness's name.
    pub fn name(&self) -> &str {
        self.signer.name()
    }

    pub fn log(&self, origin: &str) -> Option<&Arc<LogState>> {
        self.logs.get(origin)
    }

    pub fn log_count(&self) -> usize {
        self.logs.len()
    }

    /// The latest cosigned checkpoint of the log whose origin hashes to `hash`.
    pub fn checkpoint_by_hash(&self, hash: &str) -> anyhow::Result<Option<Vec<u8>>> {
        let Some(origin) = self.by_hash.get(hash) else {
            return Ok(None);
        };
        self.store.checkpoint(origin)
    }

    /// Every fork evidence record.
    pub fn evidence(&self) -> anyhow::Result<Vec<Evidence>> {
        Ok(self.store.evidence()?.into_iter().map(|(_, e)| e).collect())
    }

    /// Handles one add-checkpoint request body.
    pub async fn add_checkpoint(&self, body: &[u8]) -> Answer {
        let checked = match self.check(body) {
            Ok(c) => c,
            Err(a) => return a,
        };
        match checked {
            Checked::Cosign {
                log,
                old,
                new,
                note,
                line,
            } => {
                let (reply, rx) = tokio::sync::oneshot::channel();
                if !self.send(Job::Cosign {
                    log,
                    old,
                    new,
                    note,
                    reply,
                }) {
                    return Answer::refused(503, "the witness is shutting down");
                }
                match rx.await {
                    Ok(Ok(())) => {
                        self.metrics.cosignatures.inc();
                        Answer::Cosigned(line)
                    }
                    Ok(Err(a)) => a,
                    Err(_) => Answer::refused(500, "the committer stopped"),
                }
            }
            Checked::Evidence {
                key,
                evidence,
                answer,
            } => {
                let origin = evidence.origin.clone();
                let kind = evidence.kind.clone();
                let (reply, rx) = tokio::sync::oneshot::channel();
                if self.send(Job::Evidence {
                    key,
                    evidence,
                    reply,
                }) {
                    if let Ok(true) = rx.await {
                        tracing::warn!(%origin, %kind, "fork evidence: a checkpoint signed by the log is inconsistent with the one this witness cosigned (GET /forks)");
                    }
                }
                answer
            }
        }
    }

    fn send(&self, job: Job) -> bool {
        match &*self.tx.lock() {
            Some(tx) => tx.send(job).is_ok(),
            None => false,
        }
    }

    /// Stops the committer after the jobs already queued.
    pub fn shutdown(&self) {
        self.tx.lock().take();
        if let Some(h) = self.committer.lock().take() {
            let _ = h.join();
        }
    }

    /// The checks of c2sp.org/tlog-witness#add-checkpoint, in the spec's order, and the
    /// cosignature when they pass.
    fn check(&self, body: &[u8]) -> Result<Checked, Answer> {
        // Body layout (old size line, proof lines, empty line, checkpoint): 400.
        let req = AddCheckpoint::parse(body).map_err(|e| Answer::refused(400, e.to_string()))?;
        let first = req
            .checkpoint
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| Answer::refused(400, "the checkpoint has no origin line"))?;
        let origin = std::str::from_utf8(&req.checkpoint[..first])
            .map_err(|_| Answer::refused(400, "the checkpoint's origin line is not UTF-8"))?;
        // "If the checkpoint origin is unknown, the witness MUST respond with a 404".
        let log = self.logs.get(origin).ok_or_else(|| {
            Answer::refused(
                404,
                format!("this witness does not witness the log {origin:?}"),
            )
        })?;
        // "MUST verify the checkpoint signature against the public key(s) it trusts for the
        // checkpoint origin, and it MUST ignore signatures from unknown keys" — 403 when no
        // trusted signature is present or one fails; a malformed note or body is a 400.
        // Same checks as ledger_client::checkpoint::verify_checkpoint, on keys parsed once.
        let cp = log.keys.verify(&req.checkpoint).map_err(|e| match e {
            CheckpointError::NoTrustedSignature { .. }
            | CheckpointError::BadSignature { .. }
            | CheckpointError::OriginKeyMismatch { .. } => Answer::refused(403, e.to_string()),
            CheckpointError::TooLarge { .. }
            | CheckpointError::MalformedNote(_)
            | CheckpointError::MalformedBody(_)
            | CheckpointError::WrongOrigin { .. } => Answer::refused(400, e.to_string()),
            e => Answer::refused(500, format!("verifying the checkpoint: {e}")),
        })?;
        // "The old size MUST be equal to or lower than the checkpoint size. Otherwise ... 400".
        if req.old_size > cp.size {
            return Err(Answer::refused(
                400,
                format!(
                    "old size {} is larger than the checkpoint size {}",
                    req.old_size, cp.size
                ),
            ));
        }
        // "MUST check that the old size matches the size of the latest checkpoint it
        // cosigned ... (or zero ...). If it doesn't match ... 409" with that size.
        let head = log.head();
        let current = head.map_or(0, |h| h.size);
        if req.old_size != current {
            return Err(Answer::Conflict(current));
        }
        // "A checkpoint of size zero MUST have the root hash of the empty tree ... 422".
        if cp.size == 0 && cp.root != EMPTY_ROOT {
            return Err(Answer::refused(
                422,
                "a checkpoint of size 0 must have the empty tree's root, SHA-256(\"\") (RFC 6962 §2.1)",
            ));
        }
        if req.old_size == 0 {
            // "If the old size is zero, the consistency proof MUST be empty ... 422".
            if !req.proof.is_empty() {
                return Err(Answer::refused(
                    422,
                    format!(
                        "old size is 0, so the consistency proof must be empty; it has {} lines",
                        req.proof.len()
                    ),
                ));
            }
        } else {
            let stored = head.expect("a non-zero current size has a head");
            // "If the old size matches the checkpoint size ... the root hashes ... If they
            // don't match ... 422": two signed checkpoints of one size, a proven fork.
            if cp.size == stored.size && cp.root != stored.root {
                return self.fork_evidence(
                    log,
                    &cp,
                    &req,
                    stored,
                    FORK_SAME_SIZE,
                    format!(
                        "the checkpoint has size {} like the one this witness cosigned, but root {} instead of {}",
                        cp.size,
                        hash_to_base64(&cp.root),
                        hash_to_base64(&stored.root)
                    ),
                );
            }
            // "the consistency proof lines MUST encode a Merkle Consistency Proof from the old
            // size to the checkpoint size ... doesn't verify ... 422".
            if let Err(e) =
                verify_consistency(stored.size, &stored.root, cp.size, &cp.root, &req.proof)
            {
                let message = format!(
                    "the consistency proof from size {} to {} does not verify: {e}",
                    stored.size, cp.size
                );
                if cp.size > stored.size {
                    return self.fork_evidence(
                        log,
                        &cp,
                        &req,
                        stored,
                        FORK_INCONSISTENT_PROOF,
                        message,
                    );
                }
                return Err(Answer::refused(422, message));
            }
        }
        // All checks passed: cosign (c2sp.org/tlog-cosignature, timestamp never zero).
        let text = cp.text();
        let line = self.signer.sign(text, now_secs());
        let sigs = log_signature_lines(&cp.note, log);
        let mut note = Vec::with_capacity(
            text.len() + 1 + sigs.iter().map(|s| s.len()).sum::<usize>() + line.len(),
        );
        note.extend_from_slice(text);
        note.push(b'\n');
        for s in sigs {
            note.extend_from_slice(s);
        }
        note.extend_from_slice(line.as_bytes());
        Ok(Checked::Cosign {
            log: log.clone(),
            old: req.old_size,
            new: Head {
                size: cp.size,
                root: cp.root,
            },
            note,
            line,
        })
    }

    /// A validly signed checkpoint inconsistent with the cosigned one: "the witness MAY log
    /// the request ... (but MUST NOT cosign the checkpoint), as it might be proof of log
    /// misbehavior". The answer is 422; the evidence is stored by the committer.
    fn fork_evidence(
        &self,
        log: &LogState,
        cp: &VerifiedCheckpoint,
        req: &AddCheckpoint,
        stored: Head,
        kind: &str,
        reason: String,
    ) -> Result<Checked, Answer> {
        let answer = Answer::refused(422, reason.clone());
        let cosigned = match self.store.checkpoint(&log.origin) {
            Ok(Some(n)) => n,
            Ok(None) => return Err(answer),
            Err(e) => {
                tracing::error!(error = %e, "reading the cosigned checkpoint for fork evidence");
                return Err(answer);
            }
        };
        // The head moved on since this request read it: the request is stale, not evidence.
        match parse_head(&cosigned) {
            Some((_, h)) if h == stored => {}
            Some((_, h)) => return Err(Answer::Conflict(h.size)),
            None => return Err(answer),
        }
        let stored_text = cosigned
            .windows(2)
            .rposition(|w| w == b"\n\n")
            .map_or(&cosigned[..], |p| &cosigned[..p + 1]);
        // One record per (kind, cosigned checkpoint, submitted checkpoint) pair, whatever
        // the proof and signatures: replaying it cannot grow the store.
        let mut h = Sha256::new();
        h.update(b"ledger-witness fork evidence v1\n");
        h.update(kind.as_bytes());
        h.update([0]);
        h.update(stored_text);
        h.update([0]);
        h.update(cp.text());
        let mut key = Sha256::digest(log.origin.as_bytes()).to_vec();
        key.extend_from_slice(&h.finalize());
        let evidence = Evidence {
            origin: log.origin.clone(),
            kind: kind.to_string(),
            cosigned_checkpoint: String::from_utf8_lossy(&cosigned).into_owned(),
            submitted_checkpoint: String::from_utf8_lossy(&cp.note).into_owned(),
            old_size: req.old_size,
            proof: req.proof.iter().map(hash_to_base64).collect(),
            reason,
            detected_at: now_secs(),
        };
        Ok(Checked::Evidence {
            key,
            evidence: Box::new(evidence),
            answer,
        })
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// What the committer decided for one job of a batch.
enum Decision {
    Accepted,
    Conflict(u64),
    NewEvidence,
    KnownEvidence,
}

/// The committer: collects queued jobs, decides each against the current state (CAS on
/// the size), writes the batch with one synced write, publishes the new heads, answers.
fn run_committer(
    store: &Store,
    rx: &mpsc::Receiver<Job>,
    metrics: &Metrics,
    commit_interval: Duration,
    mut seen: HashSet<Vec<u8>>,
    mut counts: HashMap<String, usize>,
) {
    // Start of the previous synced write.
    let mut last_write: Option<Instant> = None;
    while let Ok(first) = rx.recv() {
        // Under load, let the next group gather for what remains of the interval since the
        // previous write started: every synced write costs tens of µs of CPU in the kernel
        // and the hypervisor, and two context switches, which the Ed25519 work needs more
        // (BENCHMARKS.md). After an idle interval the write starts at once.
        if let Some(at) = last_write {
            let wait = (at + commit_interval).saturating_duration_since(Instant::now());
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
        }
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        let mut batch = Batch::default();
        // Heads accepted in this batch, by log (pointer identity), not yet published.
        let mut pending: HashMap<*const LogState, (Arc<LogState>, Head)> = HashMap::new();
        let mut decisions = Vec::with_capacity(jobs.len());
        let mut cosigns = 0u64;
        for job in &jobs {
            let d = match job {
                Job::Cosign {
                    log,
                    old,
                    new,
                    note,
                    ..
                } => {
                    let key = Arc::as_ptr(log);
                    let current = match pending.get(&key) {
                        Some((_, h)) => Some(*h),
                        None => log.head(),
                    };
                    let size = current.map_or(0, |h| h.size);
                    if size != *old || new.size < size {
                        Decision::Conflict(size)
                    } else {
                        batch.put_checkpoint(store, &log.origin, note);
                        pending.insert(key, (log.clone(), *new));
                        cosigns += 1;
                        Decision::Accepted
                    }
                }
                Job::Evidence { key, evidence, .. } => {
                    let count = counts.entry(evidence.origin.clone()).or_default();
                    if seen.contains(key) {
                        Decision::KnownEvidence
                    } else if *count >= MAX_EVIDENCE_PER_ORIGIN {
                        tracing::warn!(origin = %evidence.origin, "fork evidence not stored: {MAX_EVIDENCE_PER_ORIGIN} records are kept per log");
                        Decision::KnownEvidence
                    } else {
                        *count += 1;
                        seen.insert(key.clone());
                        batch.put_evidence(store, key, evidence);
                        Decision::NewEvidence
                    }
                }
            };
            decisions.push(d);
        }
        let result = if batch.is_empty() {
            Ok(())
        } else {
            let start = Instant::now();
            last_write = Some(start);
            let r = store.write(batch);
            metrics
                .commit_seconds
                .observe(start.elapsed().as_secs_f64());
            metrics.commit_batch.observe(cosigns as f64);
            r
        };
        if let Err(e) = &result {
            tracing::error!(error = %e, "storage write failed; nothing in this batch was cosigned");
        } else {
            // Publish before answering: a request that follows an answer sees its head.
            for (_, (log, head)) in pending {
                *log.head.lock() = Some(head);
            }
        }
        for (job, d) in jobs.into_iter().zip(decisions) {
            match job {
                Job::Cosign { reply, .. } => {
                    let r = match (&result, d) {
                        (_, Decision::Conflict(size)) => Err(Answer::Conflict(size)),
                        (Ok(()), _) => Ok(()),
                        (Err(e), _) => Err(Answer::refused(500, format!("storage error: {e}"))),
                    };
                    let _ = reply.send(r);
                }
                Job::Evidence {
                    key,
                    evidence,
                    reply,
                } => {
                    let new = matches!(d, Decision::NewEvidence);
                    if new {
                        if result.is_ok() {
                            metrics.fork(&evidence.kind);
                        } else {
                            seen.remove(&key);
                            if let Some(c) = counts.get_mut(&evidence.origin) {
                                *c -= 1;
                            }
                        }
                    }
                    let _ = reply.send(new && result.is_ok());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_logs;
    use ledger_client::checkpoint::sign_checkpoint;
    use ledger_client::cosignature::{generate_cosigner_key, verify_cosignatures};
    use ledger_client::merkle::{consistency_proof, leaf_hash, root_from_leaves};

    struct Fixture {
        _dir: tempfile::TempDir,
        w: Arc<Witness>,
        skey: String,
        origin: String,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let origin = "example.com/log".to_string();
        let (skey, vkey) = signed_note::generate_key(&mut rand::rngs::OsRng, &origin);
        let logs = parse_logs(&format!("log {vkey}\n")).unwrap();
        let (wskey, _) = generate_cosigner_key(&mut rand::rngs::OsRng, "w.example/w");
        let signer = CosignerSigner::from_skey(&wskey).unwrap();
        let w = Witness::open(
            &logs,
            signer,
            &dir.path().join("db"),
            Arc::new(Metrics::new()),
        )
        .unwrap();
        Fixture {
            _dir: dir,
            w,
            skey,
            origin,
        }
    }

    fn leaves(n: u64, tag: &str) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(format!("{tag}{i}").as_bytes()))
            .collect()
    }

    fn body(f: &Fixture, old: u64, proof: Vec<Hash>, size: u64, root: &Hash) -> Vec<u8> {
        AddCheckpoint {
            old_size: old,
            proof,
            checkpoint: sign_checkpoint(&f.skey, &f.origin, size, root, &[]).unwrap(),
        }
        .to_bytes()
    }

    fn run<T>(fut: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(fut)
    }

    #[test]
    fn cosigns_advances_and_refuses_forks() {
        let f = fixture();
        let l = leaves(10, "a");
        run(async {
            let a =
                f.w.add_checkpoint(&body(&f, 0, vec![], 4, &root_from_leaves(&l[..4])))
                    .await;
            let Answer::Cosigned(line) = a else {
                panic!("{a:?}")
            };
            // The stored note carries the log signature and the cosignature.
            let stored =
                f.w.checkpoint_by_hash(&origin_hash(&f.origin))
                    .unwrap()
                    .unwrap();
            assert!(stored.ends_with(line.as_bytes()));
            let key = f.w.signer.cosigner_key();
            assert!(verify_cosignatures(&stored, &[key]).unwrap()[0].is_some());
            let p = consistency_proof(&l, 4).unwrap();
            let a =
                f.w.add_checkpoint(&body(&f, 4, p, 10, &root_from_leaves(&l)))
                    .await;
            assert_eq!(a.status(), 200, "{a:?}");
            // Stale old size: 409 with the current size.
            let a =
                f.w.add_checkpoint(&body(&f, 4, vec![], 10, &root_from_leaves(&l)))
                    .await;
            assert_eq!(a, Answer::Conflict(10));
            // Same size, other root: a proven fork, recorded once.
            let other = leaves(10, "b");
            for _ in 0..3 {
                let a =
                    f.w.add_checkpoint(&body(&f, 10, vec![], 10, &root_from_leaves(&other)))
                        .await;
                assert_eq!(a.status(), 422, "{a:?}");
            }
            let ev = f.w.evidence().unwrap();
            assert_eq!(ev.len(), 1);
            assert_eq!(ev[0].kind, FORK_SAME_SIZE);
            // A larger tree of the other branch, with its own (inconsistent) proof.
            let other12 = leaves(12, "b");
            let p = consistency_proof(&other12, 10).unwrap();
            let a =
                f.w.add_checkpoint(&body(&f, 10, p, 12, &root_from_leaves(&other12)))
                    .await;
            assert_eq!(a.status(), 422, "{a:?}");
            let ev = f.w.evidence().unwrap();
            assert_eq!(ev.len(), 2);
            assert!(ev.iter().any(|e| e.kind == FORK_INCONSISTENT_PROOF));
            // The head never moved.
            assert_eq!(f.w.log(&f.origin).unwrap().head().unwrap().size, 10);
        });
    }

    #[test]
    fn racing_requests_from_one_size_cosign_once() {
        let f = fixture();
        let l = leaves(40, "a");
        run(async {
            assert_eq!(
                f.w.add_checkpoint(&body(&f, 0, vec![], 8, &root_from_leaves(&l[..8])))
                    .await
                    .status(),
                200
            );
        });
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .build()
            .unwrap();
        let answers: Vec<Answer> = rt.block_on(async {
            let mut tasks = vec![];
            for n in 9..=40u64 {
                let b = body(
                    &f,
                    8,
                    consistency_proof(&l[..n as usize], 8).unwrap(),
                    n,
                    &root_from_leaves(&l[..n as usize]),
                );
                let w = f.w.clone();
                tasks.push(tokio::spawn(async move { w.add_checkpoint(&b).await }));
            }
            let mut out = vec![];
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        });
        let winners: Vec<usize> = answers
            .iter()
            .enumerate()
            .filter(|(_, a)| a.status() == 200)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(winners.len(), 1, "{answers:?}");
        let size = 9 + winners[0] as u64;
        for a in &answers {
            assert!(a.status() == 200 || *a == Answer::Conflict(size), "{a:?}");
        }
        assert_eq!(f.w.log(&f.origin).unwrap().head().unwrap().size, size);
    }

    #[test]
    fn state_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let (skey, vkey) = signed_note::generate_key(&mut rand::rngs::OsRng, "o.example");
        let logs = parse_logs(&format!("log {vkey}\n")).unwrap();
        let (wskey, _) = generate_cosigner_key(&mut rand::rngs::OsRng, "w.example/w");
        let l = leaves(5, "x");
        let root = root_from_leaves(&l);
        let b = AddCheckpoint {
            old_size: 0,
            proof: vec![],
            checkpoint: sign_checkpoint(&skey, "o.example", 5, &root, &[]).unwrap(),
        }
        .to_bytes();
        {
            let w = Witness::open(
                &logs,
                CosignerSigner::from_skey(&wskey).unwrap(),
                dir.path(),
                Arc::new(Metrics::new()),
            )
            .unwrap();
            assert_eq!(run(w.add_checkpoint(&b)).status(), 200);
        }
        let w = Witness::open(
            &logs,
            CosignerSigner::from_skey(&wskey).unwrap(),
            dir.path(),
            Arc::new(Metrics::new()),
        )
        .unwrap();
        assert_eq!(
            w.log("o.example").unwrap().head(),
            Some(Head { size: 5, root })
        );
        assert_eq!(run(w.add_checkpoint(&b)), Answer::Conflict(5));
    }

    #[test]
    fn only_verified_log_signature_lines_are_kept() {
        let f = fixture();
        let root = root_from_leaves(&leaves(3, "a"));
        let mut cp = sign_checkpoint(&f.skey, &f.origin, 3, &root, &[]).unwrap();
        // An unknown key's signature and a second line claiming the log's key.
        let log_line = cp[cp.windows(2).rposition(|w| w == b"\n\n").unwrap() + 2..].to_vec();
        cp.extend_from_slice("\u{2014} other.example AAAAAAAAAAA=\n".as_bytes());
        cp.extend_from_slice(&log_line);
        let b = AddCheckpoint {
            old_size: 0,
            proof: vec![],
            checkpoint: cp,
        }
        .to_bytes();
        let a = run(f.w.add_checkpoint(&b));
        let Answer::Cosigned(line) = a else {
            panic!("{a:?}")
        };
        let stored =
            f.w.checkpoint_by_hash(&origin_hash(&f.origin))
                .unwrap()
                .unwrap();
        let sigs = &stored[stored.windows(2).rposition(|w| w == b"\n\n").unwrap() + 2..];
        assert_eq!(sigs, [log_line.as_slice(), line.as_bytes()].concat());
    }
}
