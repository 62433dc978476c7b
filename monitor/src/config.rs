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
    /// Alerts on events the user cares about (specs/monitor.md, "Rules").
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Blob health: read artifacts' bytes back and re-hash them.
    #[serde(default)]
    pub blobs: Option<BlobCheck>,
}

/// One rule: a name and exactly one condition.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    /// A version of an artifact whose name matches this pattern (`*` matches any run of
    /// characters) is published.
    #[serde(default)]
    pub new_version: Option<String>,
    /// A version is tombstoned.
    #[serde(default)]
    pub tombstone: bool,
    /// A version is published unsigned, or not with a valid signature by one of these
    /// publisher keys (signed-note vkeys; ledger_client::publisher).
    #[serde(default)]
    pub publisher_keys: Option<Vec<String>>,
    /// `publisher_keys`, parsed when the configuration is read.
    #[serde(skip)]
    pub trusted: Option<std::sync::Arc<ledger_client::publisher::PublisherKeys>>,
    /// A version moves to `to` with fewer than `required` distinct approvers logged since
    /// its stage was last set.
    #[serde(default)]
    pub approvals: Option<ApprovalRule>,
    /// A policy set is put in force (an access audit log's `policy` record).
    #[serde(default)]
    pub policy_change: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalRule {
    pub to: ledger_client::event::Stage,
    pub required: usize,
}

/// `blobs`: where the artifacts' bytes are read (`<url>/v2/<name>/blobs/<digest>`, OCI).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlobCheck {
    /// The ledger's base URL.
    pub url: String,
    /// Versions whose bytes are read back and re-hashed per run: a number (round-robin
    /// over every live version) or `"all"`.
    #[serde(default = "default_rehash")]
    pub rehash: Rehash,
    /// Least time between two re-hash runs (0: every round).
    #[serde(default)]
    pub rehash_every_seconds: u64,
    /// Least time between two presence sweeps, which ask the store for every live
    /// version's blob (`HEAD`) and compare its size with the logged one (0: every round).
    #[serde(default = "default_presence_every")]
    pub presence_every_seconds: u64,
}

/// How many versions a re-hash run reads back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rehash {
    Sample(usize),
    All,
}

impl<'de> Deserialize<'de> for Rehash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(usize),
            Word(String),
        }
        match Raw::deserialize(d)? {
            Raw::N(n) if (1..=10_000).contains(&n) => Ok(Rehash::Sample(n)),
            Raw::Word(w) if w == "all" => Ok(Rehash::All),
            _ => Err(serde::de::Error::custom(
                "blobs.rehash must be a number from 1 to 10000, or \"all\"",
            )),
        }
    }
}

fn default_rehash() -> Rehash {
    Rehash::Sample(16)
}

fn default_presence_every() -> u64 {
    3600
}

impl Rule {
    fn check(&mut self) -> Result<()> {
        if let Some(keys) = &self.publisher_keys {
            if keys.is_empty() {
                bail!("rule {:?}: publisher_keys lists no key", self.name);
            }
            let parsed = ledger_client::publisher::PublisherKeys::parse(keys)
                .with_context(|| format!("rule {:?}", self.name))?;
            self.trusted = Some(std::sync::Arc::new(parsed));
        }
        let n = [
            self.new_version.is_some(),
            self.tombstone,
            self.publisher_keys.is_some(),
            self.approvals.is_some(),
            self.policy_change,
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if n != 1 {
            bail!(
                "rule {:?} must have exactly one condition (new_version, tombstone, publisher_keys, approvals, policy_change), it has {n}",
                self.name
            );
        }
        Ok(())
    }
}

/// `*`-glob matching (no other metacharacters).
pub fn glob(pattern: &str, s: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == s;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !s.starts_with(first) || !s[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &s[first.len()..s.len() - last.len()];
    for p in &parts[1..parts.len() - 1] {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    true
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
    /// A c2sp.org/tlog-policy file: the log's cosigned checkpoint must carry its witness
    /// quorum.
    #[serde(default)]
    pub policy: Option<PathBuf>,
    /// For a ledger with access control: a file holding a bearer credential (e.g. an API
    /// token with the `auditor` role), sent to this log (and its blob store) only.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
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
            if let Some(t) = &mut l.token_file {
                *t = base.join(&*t);
            }
            if let Some(p) = &mut l.policy {
                *p = base.join(&*p);
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
        for r in &mut c.rules {
            r.check()?;
        }
        if let Some(b) = &mut c.blobs {
            if !(b.url.starts_with("http://") || b.url.starts_with("https://")) {
                bail!("blobs.url {:?} must be http:// or https://", b.url);
            }
            b.url = b.url.trim_end_matches('/').to_string();
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

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn globs_match_runs_of_characters() {
        assert!(glob("models/*", "models/resnet"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "aXXbYYc"));
        assert!(glob("exact", "exact"));
        assert!(!glob("exact", "exactly"));
        assert!(!glob("models/*", "datasets/x"));
        assert!(!glob("a*b*c", "aXXcYYb"));
        assert!(!glob("ab*ba", "aba"));
    }
}
