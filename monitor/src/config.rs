//! `ledger-monitor --config FILE` (JSON; paths relative to the file; specs/monitor.md).

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where each log's verified state is kept (created if missing).
    pub state_dir: PathBuf,
    /// Pause between two rounds over the logs, in milliseconds.
    #[serde(default = "default_interval")]
    pub interval_ms: u64,
    pub logs: Vec<LogConfig>,
    /// Witnesses whose view of each log is compared with the monitor's (split view).
    #[serde(default)]
    pub witnesses: Vec<WitnessConfig>,
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
}

fn default_interval() -> u64 {
    1000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// The log's tlog-tiles prefix URL (`<url>/checkpoint`, `<url>/tile/...`).
    pub url: String,
    /// File holding the log's first key (one vkey line).
    pub vkey: PathBuf,
    /// Optional key history (`ledgerctl key-history --out`), verified from `vkey`.
    #[serde(default)]
    pub key_history: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WitnessConfig {
    pub name: String,
    /// The witness's monitoring prefix: `<url>/<hex SHA-256 of origin>/checkpoint`
    /// (c2sp.org/tlog-witness, "Monitor retrieval mechanism").
    pub url: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Alerts are POSTed here as JSON.
    pub url: String,
    /// Attempts per alert before it is given up (and counted as failed).
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
}

fn default_attempts() -> u32 {
    5
}

impl Config {
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read(path)
            .with_context(|| format!("reading monitor configuration {}", path.display()))?;
        if text.len() > 1 << 20 {
            bail!(
                "monitor configuration {} is larger than 1 MiB",
                path.display()
            );
        }
        let mut c: Config = serde_json::from_slice(&text)
            .with_context(|| format!("parsing monitor configuration {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        c.state_dir = base.join(&c.state_dir);
        for l in &mut c.logs {
            l.vkey = base.join(&l.vkey);
            if let Some(h) = &mut l.key_history {
                *h = base.join(&*h);
            }
            if !(l.url.starts_with("http://") || l.url.starts_with("https://")) {
                bail!("log url {:?} must be http:// or https://", l.url);
            }
            l.url = l.url.trim_end_matches('/').to_string();
        }
        for w in &mut c.witnesses {
            if !(w.url.starts_with("http://") || w.url.starts_with("https://")) {
                bail!("witness url {:?} must be http:// or https://", w.url);
            }
            w.url = w.url.trim_end_matches('/').to_string();
        }
        if c.logs.is_empty() {
            bail!("the configuration names no log to monitor");
        }
        if let Some(w) = &c.webhook {
            if w.max_attempts == 0 || w.max_attempts > 100 {
                bail!("webhook.max_attempts must be 1 to 100");
            }
        }
        Ok(c)
    }
}
