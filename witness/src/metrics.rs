//! Prometheus metrics (prometheus-client).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

/// The statuses add-checkpoint answers (c2sp.org/tlog-witness#add-checkpoint, plus 413 for
/// an oversized body and 500 for a storage failure).
pub const STATUSES: [u16; 9] = [200, 400, 403, 404, 405, 409, 413, 422, 500];

pub struct Metrics {
    /// One counter per status of [`STATUSES`], resolved once so that counting is one atomic add.
    requests: Vec<(u16, Counter)>,
    requests_family: Family<Labels, Counter>,
    pub cosignatures: Counter,
    pub forks: Family<Labels, Counter>,
    /// Seconds from a complete request body to the answer.
    pub latency: Histogram,
    /// Requests per synced storage write.
    pub commit_batch: Histogram,
    pub commit_seconds: Histogram,
    pub logs: Gauge,
    pub registry: Registry,
}

impl Metrics {
    pub fn new() -> Self {
        let requests_family = Family::<Labels, Counter>::default();
        let requests = STATUSES
            .iter()
            .map(|s| {
                let labels = vec![("status".to_string(), s.to_string())];
                (*s, requests_family.get_or_create(&labels).clone())
            })
            .collect();
        let m = Self {
            requests,
            requests_family,
            cosignatures: Counter::default(),
            forks: Family::default(),
            latency: Histogram::new(exponential_buckets(0.00005, 2.0, 16)),
            commit_batch: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
            commit_seconds: Histogram::new(exponential_buckets(0.00005, 2.0, 16)),
            logs: Gauge::default(),
            registry: Registry::default(),
        };
        let mut registry = Registry::default();
        registry.register(
            "witness_add_checkpoint_requests",
            "add-checkpoint requests by answer status",
            m.requests_family.clone(),
        );
        registry.register(
            "witness_cosignatures_issued",
            "Cosignatures returned by add-checkpoint",
            m.cosignatures.clone(),
        );
        registry.register(
            "witness_forks_detected",
            "Fork evidence records stored, by kind (same_size_different_root, inconsistent_proof)",
            m.forks.clone(),
        );
        registry.register(
            "witness_add_checkpoint_seconds",
            "Time from a complete add-checkpoint body to the answer",
            m.latency.clone(),
        );
        registry.register(
            "witness_commit_batch_requests",
            "Requests made durable by one synced storage write",
            m.commit_batch.clone(),
        );
        registry.register(
            "witness_commit_seconds",
            "Time of one synced storage write",
            m.commit_seconds.clone(),
        );
        registry.register("witness_logs", "Logs witnessed", m.logs.clone());
        Self { registry, ..m }
    }

    /// Counts one add-checkpoint answer.
    pub fn request(&self, status: u16) {
        match self.requests.iter().find(|(s, _)| *s == status) {
            Some((_, c)) => {
                c.inc();
            }
            None => {
                self.requests_family
                    .get_or_create(&vec![("status".to_string(), status.to_string())])
                    .inc();
            }
        }
    }

    /// Counts one stored fork evidence record.
    pub fn fork(&self, kind: &str) {
        self.forks
            .get_or_create(&vec![("kind".to_string(), kind.to_string())])
            .inc();
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
