//! Attestation: turning the log's own checkpoints into ones other parties vouch for.
//!
//! At its own cadence (by default at most once a second), and only when the tree grew,
//! each log's [`Attestor`] takes the latest signed checkpoint and, in parallel,
//! * submits it to every witness of the policy (c2sp.org/tlog-witness), collecting
//!   cosignatures (c2sp.org/tlog-cosignature), and
//! * asks every time-stamping authority for an RFC 3161 token over SHA-256 of its text.
//!
//! When the cosignatures satisfy the policy's quorum (c2sp.org/tlog-policy) and at least
//! one token verifies (if authorities are configured), the cosigned checkpoint and its
//! tokens are written durably and published: served at `/<log>/attestation`, used for
//! `?wait=attested` submissions and attested tlog-proofs. The write path never waits for
//! any of this: a slow witness delays attestations, not appends.

pub mod http;
mod net;
pub mod record;
pub mod timestamps;
pub mod witnesses;

use crate::log::{Log, Snapshot};
use crate::store::StoreError;
use ledger_client::policy::Policy;
use net::HttpClient;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use record::{AttestStore, Attestation};
use std::sync::Arc;
use std::time::{Duration, Instant};
use timestamps::TsaSource;
use tokio::sync::watch;
use witnesses::{Witness, WitnessError};

/// Longest pause between rounds after repeated failures.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// How a process attests its logs' checkpoints.
pub struct AttestConfig {
    /// Witnesses and the quorum (`--witness-policy`); `None` asks no witness.
    pub policy: Option<Arc<Policy>>,
    /// Time-stamping authorities, asked in parallel; one verified token is enough.
    pub tsas: Vec<Arc<TsaSource>>,
    /// Shortest time between two rounds.
    pub interval: Duration,
    /// Deadline for one witness or authority call.
    pub peer_timeout: Duration,
}

impl AttestConfig {
    /// Whether there is anything to do at all.
    pub fn enabled(&self) -> bool {
        !self.tsas.is_empty()
            || self
                .policy
                .as_ref()
                .is_some_and(|p| !p.witnesses().is_empty())
    }
}

pub struct AttestMetrics {
    pub rounds: Counter,
    pub published: Counter,
    pub failed_rounds: Counter,
    pub witness_failures: Counter,
    pub timestamp_failures: Counter,
    pub attested_size: Gauge,
    /// Seconds from the start of a round to its publication.
    pub round_seconds: Histogram,
}

impl AttestMetrics {
    fn new() -> Self {
        Self {
            rounds: Counter::default(),
            published: Counter::default(),
            failed_rounds: Counter::default(),
            witness_failures: Counter::default(),
            timestamp_failures: Counter::default(),
            attested_size: Gauge::default(),
            round_seconds: Histogram::new([
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        }
    }

    pub fn register(&self, r: &mut prometheus_client::registry::Registry, log: &str) {
        let r = r.sub_registry_with_label(("log".into(), log.to_string().into()));
        r.register(
            "attest_rounds",
            "Attestation rounds started",
            self.rounds.clone(),
        );
        r.register(
            "attest_published",
            "Cosigned, timestamped checkpoints published",
            self.published.clone(),
        );
        r.register(
            "attest_failed_rounds",
            "Rounds that ended without a publishable attestation",
            self.failed_rounds.clone(),
        );
        r.register(
            "attest_witness_failures",
            "Witness calls that gave no valid cosignature",
            self.witness_failures.clone(),
        );
        r.register(
            "attest_timestamp_failures",
            "Authority calls that gave no valid time-stamp token",
            self.timestamp_failures.clone(),
        );
        r.register(
            "attested_tree_size",
            "Tree size of the latest attested checkpoint",
            self.attested_size.clone(),
        );
        r.register(
            "attest_round_seconds",
            "Time from the start of a round to publication",
            self.round_seconds.clone(),
        );
    }
}

/// Why a round published nothing.
#[derive(Debug, thiserror::Error)]
pub enum RoundError {
    #[error("witness quorum not met ({met}); failures: {failures}")]
    Quorum { met: String, failures: String },
    #[error("no time-stamping authority gave a valid token: {0}")]
    NoTimestamp(String),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
}

/// Attests one log's checkpoints.
pub struct Attestor {
    log: Arc<Log>,
    policy: Option<Arc<Policy>>,
    witnesses: Vec<Witness>,
    tsas: Vec<Arc<TsaSource>>,
    interval: Duration,
    client: HttpClient,
    store: AttestStore,
    latest: watch::Sender<Option<Arc<Attestation>>>,
    pub metrics: AttestMetrics,
    enabled: bool,
}

impl Attestor {
    pub fn open(
        log: Arc<Log>,
        cfg: &AttestConfig,
        store: AttestStore,
    ) -> anyhow::Result<Arc<Self>> {
        let mut witnesses = vec![];
        if let Some(p) = &cfg.policy {
            for w in p.witnesses() {
                let url = w.url.as_deref().ok_or_else(|| {
                    anyhow::anyhow!(
                        "witness {} in the witness policy has no URL: the ledger cannot ask it",
                        w.display_name()
                    )
                })?;
                witnesses.push(Witness::new(w.display_name(), w.key.clone(), url));
            }
        }
        let latest = store.latest()?.map(Arc::new);
        let metrics = AttestMetrics::new();
        if let Some(a) = &latest {
            metrics.attested_size.set(a.size as i64);
        }
        Ok(Arc::new(Self {
            log,
            policy: cfg.policy.clone(),
            witnesses,
            tsas: cfg.tsas.clone(),
            interval: cfg.interval,
            client: HttpClient::new(cfg.peer_timeout),
            store,
            latest: watch::channel(latest).0,
            metrics,
            enabled: cfg.enabled(),
        }))
    }

    /// Whether this process attests checkpoints at all.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The latest published attestation.
    pub fn latest(&self) -> Option<Arc<Attestation>> {
        self.latest.borrow().clone()
    }

    /// The attestation of exactly `size`.
    pub fn at(&self, size: u64) -> Result<Option<Attestation>, StoreError> {
        if let Some(a) = self.latest().filter(|a| a.size == size) {
            return Ok(Some((*a).clone()));
        }
        self.store.get(size)
    }

    /// The earliest attestation whose tree contains entry `index`.
    pub fn covering(&self, index: u64) -> Result<Option<Attestation>, StoreError> {
        self.store.first_at_or_after(index.saturating_add(1))
    }

    /// Waits until a published attestation covers entry `index`, up to `timeout`.
    pub async fn wait_covering(&self, index: u64, timeout: Duration) -> Option<Arc<Attestation>> {
        let mut rx = self.latest.subscribe();
        let wait = async {
            rx.wait_for(|a| a.as_ref().is_some_and(|a| a.size > index))
                .await
                .ok()
                .and_then(|a| a.clone())
        };
        tokio::time::timeout(timeout, wait).await.ok().flatten()
    }

    /// The attestation loop; runs for the life of the process.
    pub async fn run(self: Arc<Self>) {
        if !self.enabled {
            return;
        }
        let mut sizes = self.log.watch_size();
        // Consecutive failed rounds: a witness that is down or refuses us is retried with
        // exponential backoff (up to MAX_BACKOFF), not hammered at the round cadence.
        let mut failures: u32 = 0;
        loop {
            let attested = self.latest().map_or(0, |a| a.size);
            // Wait for growth past what is attested; a log that does not grow costs nothing.
            if sizes.wait_for(|&s| s > attested).await.is_err() {
                return;
            }
            let started = Instant::now();
            let snap = self.log.snapshot();
            self.metrics.rounds.inc();
            match self.round(&snap).await {
                Ok(a) => {
                    self.metrics.published.inc();
                    self.metrics.attested_size.set(a.size as i64);
                    self.metrics
                        .round_seconds
                        .observe(started.elapsed().as_secs_f64());
                    self.latest.send_replace(Some(Arc::new(a)));
                    failures = 0;
                }
                Err(e) => {
                    self.metrics.failed_rounds.inc();
                    failures = failures.saturating_add(1);
                    tracing::warn!(log = %self.log.name, size = snap.size(), failures, error = %e, "attestation round failed");
                }
            }
            let pause = match failures {
                0 => self.interval,
                n => self
                    .interval
                    .saturating_mul(1 << (n - 1).min(16))
                    .min(MAX_BACKOFF.max(self.interval)),
            };
            tokio::time::sleep(pause.saturating_sub(started.elapsed())).await;
        }
    }

    /// One round: cosignatures and tokens for `snap`'s checkpoint, then a durable record.
    pub async fn round(&self, snap: &Snapshot) -> Result<Attestation, RoundError> {
        let text = checkpoint_text(&snap.checkpoint);
        let cosign = futures::future::join_all(
            self.witnesses
                .iter()
                .map(|w| w.cosign(&self.client, &self.log, snap)),
        );
        let stamp =
            futures::future::join_all(self.tsas.iter().map(|t| t.timestamp(&self.client, text)));
        let (cosigned, stamped) = tokio::join!(cosign, stamp);

        let mut note = snap.checkpoint.to_vec();
        let mut got = vec![false; self.witnesses.len()];
        let mut names = vec![];
        let mut failures = vec![];
        for (i, (w, r)) in self.witnesses.iter().zip(cosigned).enumerate() {
            match r {
                Ok(lines) => {
                    note.extend_from_slice(lines.as_bytes());
                    got[i] = true;
                    names.push(w.name.clone());
                }
                Err(e) => {
                    self.metrics.witness_failures.inc();
                    if matches!(e, WitnessError::AheadOfUs { .. }) {
                        tracing::error!(log = %self.log.name, error = %e, "witness is ahead of the log");
                    }
                    failures.push(e.to_string());
                }
            }
        }
        if let Some(p) = &self.policy {
            if !p.quorum_met(&got) {
                return Err(RoundError::Quorum {
                    met: format!(
                        "cosigned by {} of {}, quorum {}",
                        names.len(),
                        self.witnesses.len(),
                        p.describe_quorum()
                    ),
                    failures: failures.join("; "),
                });
            }
        }
        let mut tokens = vec![];
        let mut errors = vec![];
        for r in stamped {
            match r {
                Ok(t) => tokens.push(t),
                Err(e) => {
                    self.metrics.timestamp_failures.inc();
                    errors.push(e);
                }
            }
        }
        if !self.tsas.is_empty() && tokens.is_empty() {
            return Err(RoundError::NoTimestamp(errors.join("; ")));
        }
        for e in &errors {
            tracing::warn!(log = %self.log.name, error = %e, "time-stamping authority failed");
        }
        let a = Attestation {
            size: snap.size(),
            checkpoint: note.into(),
            cosigners: names,
            timestamps: tokens,
        };
        self.store.put(&a)?;
        Ok(a)
    }
}

/// The note text of a signed note: everything up to and including the blank line's
/// preceding newline (c2sp.org/signed-note#format: text, a blank line, signatures).
pub fn checkpoint_text(note: &[u8]) -> &[u8] {
    match note.windows(2).rposition(|w| w == b"\n\n") {
        Some(i) => &note[..i + 1],
        None => note,
    }
}
