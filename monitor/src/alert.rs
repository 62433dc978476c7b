//! Alerts: what the monitor found, with the signed evidence, to the log output, a webhook
//! (JSON POST, retried) and the metrics.

use serde::Serialize;
use std::sync::mpsc;
use std::time::Duration;

/// What went wrong. Each kind is a distinct way a log can misbehave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A checkpoint not signed by a key valid for its size.
    BadSignature,
    /// A checkpoint smaller than one the log signed before.
    Rollback,
    /// Two checkpoints of the same size with different roots.
    Fork,
    /// The entries the log serves do not hash to the root it signed (an entry rewritten).
    TreeMismatch,
    /// A hash tile the log serves differs from the one its entries imply.
    TileMismatch,
    /// The log served bytes that are not what tlog-tiles says (bad bundle, wrong width).
    Malformed,
    /// A witness cosigned a checkpoint inconsistent with the monitor's view.
    SplitView,
    /// The log's cosigned checkpoint lacks the trust policy's witness quorum.
    WitnessQuorum,
    /// A user's rule matched a logged event (`evidence.rule` names it).
    Rule,
    /// A logged, non-tombstoned artifact's bytes are not in the blob store.
    BlobMissing,
    /// The blob store's bytes do not hash to the logged digest.
    BlobCorrupt,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::BadSignature => "bad_signature",
            Kind::Rollback => "rollback",
            Kind::Fork => "fork",
            Kind::TreeMismatch => "tree_mismatch",
            Kind::TileMismatch => "tile_mismatch",
            Kind::Malformed => "malformed",
            Kind::SplitView => "split_view",
            Kind::WitnessQuorum => "witness_quorum",
            Kind::Rule => "rule",
            Kind::BlobMissing => "blob_missing",
            Kind::BlobCorrupt => "blob_corrupt",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub kind: Kind,
    /// The log's origin.
    pub log: String,
    pub message: String,
    /// Unix seconds.
    pub time: u64,
    /// Signed notes and other evidence: enough for anyone to check the claim.
    pub evidence: serde_json::Value,
}

/// Sends alerts to a webhook from a thread of its own, retrying with backoff, so a slow
/// receiver never holds up the monitoring.
pub struct Webhook {
    tx: mpsc::SyncSender<Alert>,
}

impl Webhook {
    pub fn start(url: String, max_attempts: u32, metrics: crate::metrics::Metrics) -> Webhook {
        let (tx, rx) = mpsc::sync_channel::<Alert>(1024);
        std::thread::spawn(move || {
            let agent = crate::fetch::agent(Duration::from_secs(10));
            for alert in rx {
                let body = serde_json::to_vec(&alert).unwrap_or_default();
                let mut delay = Duration::from_millis(200);
                let mut sent = false;
                for attempt in 1..=max_attempts {
                    match agent
                        .post(&url)
                        .header("content-type", "application/json")
                        .send(&body[..])
                    {
                        Ok(r) if r.status().is_success() => {
                            sent = true;
                            break;
                        }
                        Ok(r) => tracing::warn!(
                            status = r.status().as_u16(),
                            attempt,
                            "webhook refused an alert"
                        ),
                        Err(e) => tracing::warn!(error = %e, attempt, "webhook unreachable"),
                    }
                    if attempt < max_attempts {
                        std::thread::sleep(delay);
                        delay = (delay * 2).min(Duration::from_secs(30));
                    }
                }
                if !sent {
                    metrics.webhook_failures.inc();
                    tracing::error!(kind = alert.kind.name(), log = %alert.log, "alert not delivered to the webhook");
                }
            }
        });
        Webhook { tx }
    }

    pub fn send(&self, a: Alert) {
        if self.tx.try_send(a).is_err() {
            tracing::error!("webhook queue full: alert dropped from the webhook (it was logged)");
        }
    }
}
