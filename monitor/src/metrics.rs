//! Prometheus metrics (`--listen ADDR` serves `/metrics`).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LogLabel {
    pub log: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertLabel {
    pub log: String,
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckLabel {
    pub log: String,
    /// `presence` (asked the store for the blob) or `rehash` (read it back and re-hashed).
    pub check: String,
}

#[derive(Clone)]
pub struct Metrics {
    pub tree_size: Family<LogLabel, Gauge>,
    pub entries_verified: Family<LogLabel, Counter>,
    pub checkpoints_verified: Family<LogLabel, Counter>,
    pub alerts: Family<AlertLabel, Counter>,
    /// Seconds from first seeing the checkpoint an alert is about to raising the alert.
    pub alert_delay: Histogram,
    /// Seconds from a rule alert's entry's own time (the ledger's clock) to the alert.
    pub event_alert_delay: Histogram,
    pub webhook_failures: Counter,
    pub fetch_errors: Family<LogLabel, Counter>,
    pub blobs_checked: Family<CheckLabel, Counter>,
}

impl Metrics {
    pub fn new() -> (Metrics, Arc<Registry>) {
        let m = Metrics {
            tree_size: Family::default(),
            entries_verified: Family::default(),
            checkpoints_verified: Family::default(),
            alerts: Family::default(),
            alert_delay: Histogram::new([0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 60.0, 300.0]),
            event_alert_delay: Histogram::new([
                0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0, 86400.0,
            ]),
            webhook_failures: Counter::default(),
            fetch_errors: Family::default(),
            blobs_checked: Family::default(),
        };
        let mut r = Registry::with_prefix("monitor");
        r.register("tree_size", "Verified tree size", m.tree_size.clone());
        r.register(
            "entries_verified",
            "Entries re-hashed into the monitor's own tree",
            m.entries_verified.clone(),
        );
        r.register(
            "checkpoints_verified",
            "Checkpoints whose signature and root the monitor verified",
            m.checkpoints_verified.clone(),
        );
        r.register("alerts", "Alerts raised", m.alerts.clone());
        r.register(
            "alert_delay_seconds",
            "From first seeing a checkpoint to the alert about it",
            m.alert_delay.clone(),
        );
        r.register(
            "event_alert_delay_seconds",
            "From the time a rule alert's entry was logged (its own time field) to the alert",
            m.event_alert_delay.clone(),
        );
        r.register(
            "webhook_failures",
            "Alerts the webhook did not accept after every attempt",
            m.webhook_failures.clone(),
        );
        r.register(
            "fetch_errors",
            "Reads of a log or witness that failed (retried next round)",
            m.fetch_errors.clone(),
        );
        r.register(
            "blobs_checked",
            "Artifact versions whose blob was asked for (presence) or read back (rehash)",
            m.blobs_checked.clone(),
        );
        (m, Arc::new(r))
    }
}
