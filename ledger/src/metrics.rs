//! Prometheus metrics (prometheus-client), one labelled set per log.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone)]
pub struct LogMetrics {
    pub appended: Counter,
    pub duplicates: Counter,
    pub rejected_pool_full: Counter,
    pub batch_entries: Histogram,
    /// Seconds from a submission's arrival at the pool to its durable commit.
    pub sequencing_seconds: Histogram,
    pub commit_seconds: Histogram,
    pub tree_size: Gauge,
    pub storage_bytes: Gauge<u64, AtomicU64>,
    pub commit_failures: Counter,
}

impl LogMetrics {
    pub fn new() -> Self {
        Self {
            appended: Counter::default(),
            duplicates: Counter::default(),
            rejected_pool_full: Counter::default(),
            batch_entries: Histogram::new(exponential_buckets(1.0, 2.0, 18)),
            sequencing_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            commit_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            tree_size: Gauge::default(),
            storage_bytes: Gauge::default(),
            commit_failures: Counter::default(),
        }
    }

    pub fn register(&self, registry: &mut Registry, log: &str) {
        let r = registry.sub_registry_with_label(("log".into(), log.to_string().into()));
        r.register(
            "ledger_entries_appended",
            "Entries appended to the log",
            self.appended.clone(),
        );
        r.register(
            "ledger_entries_duplicate",
            "Submissions answered with an existing entry",
            self.duplicates.clone(),
        );
        r.register(
            "ledger_submissions_rejected_pool_full",
            "Submissions refused with 503 because the sequencing pool was full",
            self.rejected_pool_full.clone(),
        );
        r.register(
            "ledger_batch_entries",
            "Entries per sequenced batch",
            self.batch_entries.clone(),
        );
        r.register(
            "ledger_sequencing_seconds",
            "Time from pool arrival to durable commit",
            self.sequencing_seconds.clone(),
        );
        r.register(
            "ledger_commit_seconds",
            "Time of the atomic synced storage write",
            self.commit_seconds.clone(),
        );
        r.register(
            "ledger_tree_size",
            "Entries in the log",
            self.tree_size.clone(),
        );
        r.register(
            "ledger_storage_bytes",
            "Bytes stored for this log (SST files and memtables)",
            self.storage_bytes.clone(),
        );
        r.register(
            "ledger_commit_failures",
            "Storage commits that failed (the log reloads from storage after each)",
            self.commit_failures.clone(),
        );
    }
}

impl Default for LogMetrics {
    fn default() -> Self {
        Self::new()
    }
}
