//! The access audit log: every decision of the access layer (who, what, on what, allowed or
//! not, under which policy, when, from where) and every policy put in force, appended to a
//! log of its own (own origin, own key, own checkpoints and proofs; specs/access.md).
//!
//! Durability follows what the request does. An allowed request that changes something is
//! let through only once its record is durable, so an acknowledged write always has its
//! audit record. Reads, denials and failed authentications are queued in the audit log's
//! pool before they are answered (a full pool refuses them with 503, so nothing is served
//! unrecorded) and are sequenced with the next batch without being waited for: a crash can
//! lose the records of reads it was answering, never those of acknowledged writes.

use crate::log::{Log, LogError};
use crate::sequencer::{Pool, Reply};
use bytes::Bytes;
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

/// The audit log and its pool.
pub struct AuditLog {
    pub log: Arc<Log>,
    pool: Arc<Pool>,
    nonce: String,
    counter: AtomicU64,
}

/// An audit record queued in the pool; `durable` waits until it is committed.
pub struct Queued(oneshot::Receiver<Reply>);

impl Queued {
    /// Waits for the record's batch to be committed (synced).
    pub async fn durable(self) -> Result<(), LogError> {
        self.logged_at().await.map(drop)
    }

    /// Waits like [`Queued::durable`] and returns the record's index in the audit log.
    pub async fn logged_at(self) -> Result<u64, LogError> {
        match self.0.await {
            Ok(Ok(receipt)) => receipt
                .entries
                .first()
                .map(|e| e.index)
                .ok_or_else(|| LogError::Unavailable("the audit log answered no entry".into())),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(LogError::Unavailable(
                "the audit log's sequencer stopped".into(),
            )),
        }
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl AuditLog {
    pub fn new(log: Arc<Log>, pool: Arc<Pool>) -> Self {
        Self {
            log,
            pool,
            nonce: hex::encode(rand::random::<[u8; 8]>()),
            counter: AtomicU64::new(0),
        }
    }

    /// A fresh record id.
    pub fn next_id(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.nonce)
    }

    /// Queues one record. Refused (with `Unavailable`) when the audit pool is full: the
    /// caller then refuses the request rather than serve it unrecorded.
    pub fn append(&self, record: &impl Serialize) -> Result<Queued, LogError> {
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
        Ok(Queued(rx))
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
        self.append(&record)?.durable().await
    }
}
