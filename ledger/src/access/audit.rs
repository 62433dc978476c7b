//! The access audit log: every decision of the access layer (who, what, on what, allowed or
//! not, under which policy, when, from where) and every policy put in force, appended to a
//! log of its own (own origin, own key, own checkpoints and proofs; specs/access.md).
//!
//! Decision records are coalesced: records accumulate in one filling entry,
//! `{"type":"decisions","v":1,"records":[...]}`, which a flusher hands to the audit log's
//! pool whenever it holds records, one entry in flight at a time, so entries grow with the
//! load and a busy ledger writes a few hundred audit entries a second rather than one per
//! request. Policy and grant records are entries of their own (their index is cited).
//!
//! Durability follows what the request does. An allowed request that changes something is
//! let through only once the entry holding its record is durable, so an acknowledged write
//! always has its audit record. Reads, denials and failed authentications are answered once
//! their record is in the filling entry (bounded to one entry: when it is full and the pool
//! refuses it, the request gets 503, so nothing is served unrecorded), without waiting for
//! durability: a crash can lose the records of reads it was answering, never those of
//! acknowledged writes.

use crate::log::{Log, LogError};
use crate::sequencer::{Pool, Reply};
use bytes::Bytes;
use parking_lot::Mutex;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::oneshot;

/// Format version of the records below (`"v"`).
pub const RECORD_VERSION: u32 = 1;

/// Policy text beyond this is logged by digest only: an entry holds at most 65,535 bytes.
const MAX_LOGGED_POLICY_TEXT: usize = 48 * 1024;

/// What the access layer decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Authenticated and allowed by the policy.
    Allow,
    /// Authenticated and refused by the policy (403).
    Deny,
    /// No credential, or one that proves nothing (401).
    Unauthenticated,
    /// Over the principal's (or, unauthenticated, the address's) rate (429).
    RateLimited,
}

/// One access decision as logged. Field order is the serialization order: records are
/// deterministic JSON.
#[derive(Debug, Clone, Serialize)]
pub struct DecisionRecord<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub v: u32,
    /// Unique per record (process start nonce and counter), so two identical requests in
    /// the same millisecond are two entries, not one deduplicated.
    pub id: String,
    pub time_ms: u64,
    pub principal: Option<&'a str>,
    pub method: &'a str,
    pub path: &'a str,
    pub action: Option<&'a str>,
    pub resource: Option<String>,
    pub decision: Outcome,
    /// The policies that decided (the permits of an allow, the forbids of a deny).
    pub policies: &'a [String],
    pub policy_digest: &'a str,
    pub source: String,
    /// Why a credential was refused, or why the policy could not decide.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
}

/// A policy put in force: at start and at every successful reload.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyRecord<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub v: u32,
    pub id: String,
    pub time_ms: u64,
    /// `startup`, or the principal that reloaded it.
    pub by: &'a str,
    /// [`crate::access::authz::policy_digest`] of the two texts below.
    pub policy_digest: &'a str,
    pub schema_sha256: String,
    pub policies_sha256: String,
    /// The texts themselves when both fit in one entry, so the log alone proves the rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policies: Option<&'a str>,
}

/// A short-lived grant put in force (`POST /access/v1/grants`). Logged, and durable,
/// before the grant takes effect; its `id` is the grant's.
#[derive(Debug, Clone, Serialize)]
pub struct GrantRecord<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub v: u32,
    pub id: &'a str,
    pub time_ms: u64,
    pub granted_by: &'a str,
    /// Who may now download...
    pub principal: &'a str,
    /// ...which version (`name@version`)...
    pub artifact: &'a str,
    /// ...from and until when (unix seconds, `not_after` exclusive)...
    pub not_before: u64,
    pub not_after: u64,
    /// ...and why.
    pub reason: &'a str,
    /// The policy that allowed the granting.
    pub policy_digest: &'a str,
}

/// A grant ended before its time (`DELETE /access/v1/grants/<id>`).
#[derive(Debug, Clone, Serialize)]
pub struct GrantRevokedRecord<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub v: u32,
    pub id: String,
    pub time_ms: u64,
    pub by: &'a str,
    pub grant: &'a str,
}

/// The audit log, its pool, and the entry being filled with decision records.
pub struct AuditLog {
    pub log: Arc<Log>,
    pool: Arc<Pool>,
    nonce: String,
    counter: AtomicU64,
    /// Decision records not yet handed to the pool (at most one entry's worth).
    filling: Mutex<Filling>,
    /// Wakes the flusher when the first record lands in an empty entry.
    wake: tokio::sync::Notify,
}

/// Format of a coalesced entry: `{"type":"decisions","v":1,"records":[<record>,...]}`.
const DECISIONS_HEAD: &[u8] = b"{\"type\":\"decisions\",\"v\":1,\"records\":[";
const DECISIONS_TAIL: &[u8] = b"]}";

/// One coalesced entry being filled: the records' JSON, comma separated, and who waits for
/// its durability.
#[derive(Default)]
struct Filling {
    records: Vec<u8>,
    waiters: Vec<oneshot::Sender<Durable>>,
}

/// Where a record became durable: the index of the entry that holds it.
type Durable = Result<u64, String>;

/// An audit record accepted (in the filling entry or in the pool); `durable` waits until
/// the entry holding it is committed.
pub struct Queued(oneshot::Receiver<Durable>);

impl Queued {
    /// Waits for the record's entry to be committed (synced).
    pub async fn durable(self) -> Result<(), LogError> {
        self.logged_at().await.map(drop)
    }

    /// Waits like [`Queued::durable`] and returns the index of the entry holding the record.
    pub async fn logged_at(self) -> Result<u64, LogError> {
        match self.0.await {
            Ok(r) => r.map_err(LogError::Unavailable),
            Err(_) => Err(LogError::Unavailable(
                "the audit log's sequencer stopped".into(),
            )),
        }
    }
}

/// The index of the single entry a pool reply is about.
fn index_of(r: Result<Reply, oneshot::error::RecvError>) -> Durable {
    match r {
        Ok(Ok(receipt)) => receipt
            .entries
            .first()
            .map(|e| e.index)
            .ok_or_else(|| "the audit log answered no entry".to_string()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the audit log's sequencer stopped".to_string()),
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl AuditLog {
    /// The audit log, and the task that hands its filled entries to the pool.
    pub fn new(log: Arc<Log>, pool: Arc<Pool>) -> Arc<Self> {
        let a = Arc::new(Self {
            log,
            pool,
            nonce: hex::encode(rand::random::<[u8; 8]>()),
            counter: AtomicU64::new(0),
            filling: Mutex::new(Filling::default()),
            wake: tokio::sync::Notify::new(),
        });
        tokio::spawn(a.clone().flusher());
        a
    }

    /// A fresh record id.
    pub fn next_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.nonce)
    }

    /// Adds a decision record to the entry being filled. Reads and refusals are answered
    /// once this returns (the record is held like any queued entry: bounded, and lost only
    /// with the process); writes await [`Queued::durable`]. Refused (with `Unavailable`)
    /// when the entry is full and the pool cannot take it: the caller then refuses the
    /// request rather than serve it unrecorded.
    pub fn append(&self, record: &impl Serialize) -> Result<Queued, LogError> {
        let bytes = serde_json::to_vec(record)
            .map_err(|e| LogError::Invalid(format!("audit record: {e}")))?;
        let room =
            ledger_client::tiles::MAX_ENTRY_SIZE - DECISIONS_HEAD.len() - DECISIONS_TAIL.len();
        if bytes.len() > room {
            return Err(LogError::Invalid(format!(
                "audit record of {} bytes exceeds the entry limit",
                bytes.len()
            )));
        }
        let (tx, rx) = oneshot::channel();
        let mut f = self.filling.lock();
        if f.records.len() + 1 + bytes.len() > room {
            // Full: hand it over now. If the pool refuses, it stays (its records were
            // answered on) and this record is refused instead.
            let full = std::mem::take(&mut *f);
            if let Err((e, back)) = self.submit(full) {
                *f = back;
                return Err(e);
            }
        }
        let first = f.records.is_empty();
        if !first {
            f.records.push(b',');
        }
        f.records.extend_from_slice(&bytes);
        f.waiters.push(tx);
        drop(f);
        if first {
            self.wake.notify_one();
        }
        Ok(Queued(rx))
    }

    /// Appends one record as an entry of its own (policy and grant records, whose index
    /// is cited), queued in the pool.
    pub fn append_entry(&self, record: &impl Serialize) -> Result<Queued, LogError> {
        let bytes = serde_json::to_vec(record)
            .map_err(|e| LogError::Invalid(format!("audit record: {e}")))?;
        if bytes.len() > ledger_client::tiles::MAX_ENTRY_SIZE {
            return Err(LogError::Invalid(format!(
                "audit record of {} bytes exceeds the entry limit",
                bytes.len()
            )));
        }
        let leaf = ledger_client::merkle::leaf_hash(&bytes);
        let rx = self.pool.submit(vec![(Bytes::from(bytes), leaf)])?;
        let (tx, out) = oneshot::channel();
        tokio::spawn(async move {
            let _ = tx.send(index_of(rx.await));
        });
        Ok(Queued(out))
    }

    /// Hands a filled entry to the pool; its waiters hear when it is durable.
    fn submit(&self, f: Filling) -> Result<(), (LogError, Filling)> {
        let mut entry =
            Vec::with_capacity(DECISIONS_HEAD.len() + f.records.len() + DECISIONS_TAIL.len());
        entry.extend_from_slice(DECISIONS_HEAD);
        entry.extend_from_slice(&f.records);
        entry.extend_from_slice(DECISIONS_TAIL);
        let leaf = ledger_client::merkle::leaf_hash(&entry);
        match self.pool.submit(vec![(Bytes::from(entry), leaf)]) {
            Ok(rx) => {
                tokio::spawn(async move {
                    let r = index_of(rx.await);
                    for w in f.waiters {
                        let _ = w.send(r.clone());
                    }
                });
                Ok(())
            }
            Err(e) => Err((e, f)),
        }
    }

    /// Hands the filling entry to the pool whenever it holds records, one entry in flight
    /// at a time: while one commits, the next fills, so entries grow with the load.
    async fn flusher(self: Arc<Self>) {
        // An entry the pool refused, retried before anything newer: its records were
        // answered on. With it and the filling entry, at most two entries wait here.
        let mut retry: Option<Filling> = None;
        loop {
            let mut f = match retry.take() {
                Some(f) => f,
                None => {
                    let f = std::mem::take(&mut *self.filling.lock());
                    if f.records.is_empty() {
                        self.wake.notified().await;
                        continue;
                    }
                    f
                }
            };
            // A waiter of our own, last: it hears when the entry is committed.
            let (tx, done) = oneshot::channel::<Durable>();
            f.waiters.push(tx);
            match self.submit(f) {
                // The next entry fills while this one commits.
                Ok(()) => drop(done.await),
                Err((e, mut back)) => {
                    back.waiters.pop();
                    tracing::warn!(error = %e, "the audit pool refused an entry; retrying");
                    retry = Some(back);
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
            }
        }
    }

    /// Logs the policy in force and waits until the record is durable.
    pub async fn policy_in_force(
        &self,
        by: &str,
        digest: &str,
        schema: &str,
        policies: &str,
    ) -> Result<(), LogError> {
        let fits = schema.len() + policies.len() <= MAX_LOGGED_POLICY_TEXT;
        let record = PolicyRecord {
            kind: "policy",
            v: RECORD_VERSION,
            id: self.next_id(),
            time_ms: now_ms(),
            by,
            policy_digest: digest,
            schema_sha256: hex::encode(Sha256::digest(schema.as_bytes())),
            policies_sha256: hex::encode(Sha256::digest(policies.as_bytes())),
            schema: fits.then_some(schema),
            policies: fits.then_some(policies),
        };
        self.append_entry(&record)?.durable().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sequencer::PoolConfig;
    use crate::store::memory::MemoryStore;

    const ORIGIN: &str = "audit.example/audit";

    fn audit_log(config: PoolConfig) -> (Arc<Log>, Arc<AuditLog>) {
        let (skey, vkey) = signed_note::generate_key(&mut rand::rngs::OsRng, ORIGIN);
        let signer = signed_note::StandardSigner::new(&skey).unwrap();
        let log = Log::open(
            "audit",
            ORIGIN,
            signer,
            vkey,
            Arc::new(MemoryStore::default()),
        )
        .unwrap();
        let pool = crate::sequencer::start(log.clone(), config).unwrap();
        (log.clone(), AuditLog::new(log, pool))
    }

    fn records_of(log: &Log) -> Vec<(u64, serde_json::Value)> {
        let snap = log.snapshot();
        let entries = log.entries(&snap, 0..snap.size()).unwrap();
        let mut out = vec![];
        for (i, e) in entries.iter().enumerate() {
            assert!(e.len() <= ledger_client::tiles::MAX_ENTRY_SIZE);
            let v: serde_json::Value = serde_json::from_slice(e).unwrap();
            assert_eq!(v["type"], "decisions");
            for r in v["records"].as_array().unwrap() {
                out.push((i as u64, r.clone()));
            }
        }
        out
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn decisions_are_coalesced_in_order_and_each_waiter_learns_its_own_entry() {
        let (log, audit) = audit_log(PoolConfig::default());
        // 3,000 records of ~300 bytes: more than one entry holds, so entries fill up and
        // are handed over full as well as by the flusher.
        let pad = "x".repeat(280);
        let queued: Vec<Queued> = (0..3000)
            .map(|n| {
                audit
                    .append(&serde_json::json!({"type": "decision", "n": n, "pad": pad}))
                    .unwrap()
            })
            .collect();
        let mut at = vec![];
        for q in queued {
            at.push(q.logged_at().await.unwrap());
        }
        let records = records_of(&log);
        assert_eq!(records.len(), 3000, "every record, once");
        for (n, (entry, r)) in records.iter().enumerate() {
            assert_eq!(r["n"], n as u64, "in the order they were accepted");
            assert_eq!(*entry, at[n], "record {n}'s waiter was told its own entry");
        }
        let entries = log.snapshot().size();
        assert!(
            (15..300).contains(&entries),
            "coalesced into a few entries of at most 64 KiB: {entries}"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_record_too_large_for_an_entry_is_refused_and_others_still_go_through() {
        let (log, audit) = audit_log(PoolConfig::default());
        let huge = "x".repeat(ledger_client::tiles::MAX_ENTRY_SIZE);
        let e = audit
            .append(&serde_json::json!({"type": "decision", "pad": huge}))
            .err()
            .unwrap();
        assert!(e.to_string().contains("exceeds the entry limit"), "{e}");
        audit
            .append(&serde_json::json!({"type": "decision", "n": 1}))
            .unwrap()
            .durable()
            .await
            .unwrap();
        assert_eq!(records_of(&log).len(), 1);
    }
}
