//! Following one log: verify its checkpoint, rebuild the tree from the entry bundles,
//! compare every hash tile, check the root, then compare with what witnesses cosigned.
//! Only the tlog-tiles read path is used (`checkpoint`, `tile/...`), and nothing the log
//! computed is believed: the tree is the monitor's own.

use crate::alert::{Alert, Kind};
use crate::config::{glob, BlobCheck, LogConfig, Rule, WitnessConfig};
use crate::facts::{self, Fact};
use crate::fetch::{get, tile_url, FetchError, Http, MAX_NOTE};
use crate::pipeline;
use crate::state::{self, LogState, MAX_RAISED};
use crate::tree::{ExpectedTile, SavedTree, Tree, TILE_WIDTH};
use anyhow::{Context, Result};
use base64::prelude::*;
use ledger_client::checkpoint::VerifiedCheckpoint;
use ledger_client::merkle::{hash_to_base64, Hash};
use ledger_client::rotation::{HistoryFile, KeyHistory};
use ledger_client::tiles::TileKind;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::time::Instant;

/// Where alerts go (the caller fans them out to log, webhook and metrics).
pub trait Sink {
    fn alert(&self, a: Alert, seen: Instant);
    fn metrics(&self) -> &crate::metrics::Metrics;
}

/// Where the ledger serves the blob of version `key` (`name@version`): the OCI blob path.
fn blob_url(b: &BlobCheck, key: &str, digest: &ledger_client::digest::Digest) -> String {
    let name = key.rsplit_once('@').map_or(key, |(n, _)| n);
    format!("{}/v2/{name}/blobs/{digest}", b.url)
}

/// GETs every URL on up to [`pipeline::FETCHERS`] threads; answers in the order asked.
fn fetch_all(agent: &Http, urls: &[&str], limit: usize) -> Vec<Result<Vec<u8>, FetchError>> {
    pipeline::par_map(urls, |url| get(agent, url, limit))
}

/// A bearer credential from a file: one line of printable ASCII.
fn read_token(p: &std::path::Path) -> Result<String> {
    let t = std::fs::read_to_string(p)
        .with_context(|| format!("reading token file {}", p.display()))?;
    let t = t.trim();
    if t.is_empty() || t.len() > 16 * 1024 || !t.bytes().all(|b| b.is_ascii_graphic()) {
        anyhow::bail!(
            "token file {} must hold one credential: printable ASCII without spaces",
            p.display()
        );
    }
    Ok(t.to_string())
}

pub struct Follower {
    url: String,
    history: KeyHistory,
    /// Reads the log (with its token, if any).
    agent: Http,
    /// For blob health checks: streams of any length, each read bounded.
    blob_agent: Http,
    /// When the last presence sweep and re-hash run ended (none yet: due at once).
    last_presence: Option<Instant>,
    last_rehash: Option<Instant>,
    /// Reads witnesses (never with the log's token).
    witness_agent: Http,
    path: PathBuf,
    /// The last verified checkpoint and the tree that matches it.
    verified: Option<(VerifiedCheckpoint, Tree)>,
    raised: Vec<String>,
    versions: crate::versions::VersionStore,
    blob_cursor: String,
    /// The log's trust policy (witness quorum), if configured.
    policy: Option<ledger_client::policy::Policy>,
    /// Verified progress not yet saved, and when the state was last saved.
    dirty: bool,
    last_save: Instant,
}

/// Longest a verified checkpoint waits before it is saved.
const SAVE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// A round stopped early: the log could not be read (retried), or it misbehaved (the
/// alert is raised and the verified state stays where it was).
pub enum Stop {
    Fetch(FetchError),
    Alerted,
}

impl From<FetchError> for Stop {
    fn from(e: FetchError) -> Self {
        Stop::Fetch(e)
    }
}

fn now() -> u64 {
    now_ms() / 1000
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Follower {
    /// Loads the log's keys and its saved state (re-verified: a damaged or foreign state
    /// file is an error, not a fresh start).
    pub fn open(cfg: &LogConfig, state_dir: &std::path::Path) -> Result<Follower> {
        let vkey = ledger_client::read_vkey_file(&cfg.vkey)
            .with_context(|| format!("the key of log {}", cfg.url))?;
        let history = match &cfg.key_history {
            None => KeyHistory::new(&vkey)?,
            Some(p) => {
                let b = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
                let f: HistoryFile = serde_json::from_slice(&b)
                    .with_context(|| format!("parsing key history {}", p.display()))?;
                f.verify(&vkey)
                    .with_context(|| format!("key history {}", p.display()))?
            }
        };
        let path = state::path_for(state_dir, &history.origin);
        let token = match &cfg.token_file {
            Some(p) => Some(read_token(p)?),
            None => None,
        };
        let mut f = Follower {
            url: cfg.url.clone(),
            history,
            agent: Http {
                agent: crate::fetch::agent(std::time::Duration::from_secs(30)),
                token: token.clone(),
            },
            blob_agent: Http {
                agent: crate::fetch::stream_agent(std::time::Duration::from_secs(30)),
                token,
            },
            last_presence: None,
            last_rehash: None,
            witness_agent: Http {
                agent: crate::fetch::agent(std::time::Duration::from_secs(30)),
                token: None,
            },
            path,
            verified: None,
            raised: vec![],
            versions: Default::default(),
            blob_cursor: String::new(),
            dirty: false,
            last_save: Instant::now(),
            policy: match &cfg.policy {
                Some(p) => Some(
                    ledger_client::policy::Policy::read_file(p)
                        .with_context(|| format!("trust policy {}", p.display()))?,
                ),
                None => None,
            },
        };
        if let Some(s) = state::load(&f.path)? {
            if s.origin != f.history.origin {
                anyhow::bail!("{} is the state of {:?}", f.path.display(), s.origin);
            }
            match (&s.checkpoint, &s.tree) {
                (Some(note), Some(saved)) => {
                    let cp = f
                        .history
                        .verify_checkpoint(note.as_bytes())
                        .with_context(|| format!("the saved checkpoint in {}", f.path.display()))?;
                    let tree = Tree::try_from(saved)
                        .map_err(|e| anyhow::anyhow!("{}: {e}", f.path.display()))?;
                    if tree.size() != cp.size || tree.root() != cp.root {
                        anyhow::bail!(
                            "{}: the saved tree does not match the saved checkpoint",
                            f.path.display()
                        );
                    }
                    f.verified = Some((cp, tree));
                }
                (None, None) => {}
                _ => anyhow::bail!("{}: a checkpoint without its tree", f.path.display()),
            }
            f.raised = s.raised;
            f.versions = crate::versions::VersionStore::load(&f.path, s.versions_at, s.versions)?;
            f.blob_cursor = s.blob_cursor;
        }
        Ok(f)
    }

    pub fn origin(&self) -> &str {
        &self.history.origin
    }

    pub fn size(&self) -> u64 {
        self.verified.as_ref().map_or(0, |(c, _)| c.size)
    }

    /// Raises an alert once per (kind, subject).
    fn raise(
        &mut self,
        sink: &dyn Sink,
        seen: Instant,
        kind: Kind,
        subject: String,
        message: String,
        evidence: serde_json::Value,
    ) -> bool {
        let key = format!("{} {subject}", kind.name());
        if self.raised.contains(&key) {
            return false;
        }
        self.raised.push(key);
        if self.raised.len() > MAX_RAISED {
            self.raised.remove(0);
        }
        sink.alert(
            Alert {
                kind,
                log: self.history.origin.clone(),
                message,
                time: now(),
                evidence,
            },
            seen,
        );
        // Remember it across restarts even though the verified state did not move.
        if let Err(e) = self.save() {
            tracing::error!(error = %format!("{e:#}"), "saving monitor state");
        }
        true
    }

    /// Saves progress at most every [`SAVE_EVERY`]: a save costs three syncs (the versions'
    /// journal, the state file, its directory), more than re-verifying a few seconds of
    /// entries after a crash. Alerts are saved at once.
    fn save_soon(&mut self) {
        self.dirty = true;
        if self.last_save.elapsed() >= SAVE_EVERY {
            self.flush();
        }
    }

    /// Saves now if anything changed since the last save.
    pub fn flush(&mut self) {
        if !self.dirty {
            return;
        }
        match self.save() {
            Ok(()) => {
                self.dirty = false;
                self.last_save = Instant::now();
            }
            Err(e) => tracing::error!(error = %format!("{e:#}"), "saving monitor state"),
        }
    }

    fn save(&mut self) -> Result<()> {
        let versions_at = self.versions.persist(&self.path)?;
        state::save(
            &self.path,
            &LogState {
                origin: self.history.origin.clone(),
                checkpoint: self
                    .verified
                    .as_ref()
                    .map(|(cp, _)| String::from_utf8_lossy(&cp.note).into_owned()),
                tree: self.verified.as_ref().map(|(_, t)| SavedTree::from(t)),
                raised: self.raised.clone(),
                versions_at: Some(versions_at),
                versions: Default::default(),
                blob_cursor: self.blob_cursor.clone(),
            },
        )?;
        self.versions.committed(&self.path, versions_at);
        Ok(())
    }

    /// One round: read the latest checkpoint and verify everything up to it.
    pub fn round(
        &mut self,
        sink: &dyn Sink,
        witnesses: &[WitnessConfig],
        rules: &[Rule],
        blobs: Option<&BlobCheck>,
    ) -> Result<(), Stop> {
        let seen = Instant::now();
        let note = get(&self.agent, &format!("{}/checkpoint", self.url), MAX_NOTE)?;
        let cp = match self.history.verify_checkpoint(&note) {
            Ok(cp) => cp,
            Err(e) => {
                let digest = hex::encode(Sha256::digest(&note));
                self.raise(
                    sink,
                    seen,
                    Kind::BadSignature,
                    digest,
                    format!("the log's checkpoint does not verify: {e}"),
                    json!({"checkpoint": String::from_utf8_lossy(&note)}),
                );
                return Err(Stop::Alerted);
            }
        };
        let (base_size, base_root, base_note) = match &self.verified {
            Some((old, _)) => (old.size, old.root, old.note.clone()),
            None => (0, tlog_tiles::EMPTY_HASH, vec![]),
        };
        if cp.size < base_size {
            self.raise(
                sink,
                seen,
                Kind::Rollback,
                format!("{} {}", cp.size, cp.root_base64()),
                format!("the log went back from tree size {base_size} to {}", cp.size),
                json!({"earlier": String::from_utf8_lossy(&base_note), "later": String::from_utf8_lossy(&note)}),
            );
            return Err(Stop::Alerted);
        }
        if cp.size == base_size {
            if cp.root != base_root && !base_note.is_empty() {
                self.raise(
                    sink,
                    seen,
                    Kind::Fork,
                    format!("{} {}", cp.size, cp.root_base64()),
                    format!("two checkpoints of tree size {} with different roots", cp.size),
                    json!({"a": String::from_utf8_lossy(&base_note), "b": String::from_utf8_lossy(&note)}),
                );
                return Err(Stop::Alerted);
            }
        } else {
            self.catch_up(sink, seen, &cp, rules)?;
        }
        self.check_quorum(sink, seen)?;
        self.compare_witnesses(sink, seen, witnesses);
        if let Some(b) = blobs {
            let due = |last: Option<Instant>, every: u64| {
                last.is_none_or(|t| t.elapsed().as_secs() >= every)
            };
            if due(self.last_presence, b.presence_every_seconds) {
                self.check_presence(sink, seen, b)?;
                self.last_presence = Some(Instant::now());
            }
            if due(self.last_rehash, b.rehash_every_seconds) {
                self.check_blobs(sink, seen, b)?;
                self.last_rehash = Some(Instant::now());
            }
        }
        Ok(())
    }

    /// Rebuilds the tree from the verified size up to `cp`, checking every tile on the way,
    /// and accepts `cp` only if the root matches.
    fn catch_up(
        &mut self,
        sink: &dyn Sink,
        seen: Instant,
        cp: &VerifiedCheckpoint,
        rules: &[Rule],
    ) -> Result<(), Stop> {
        let mut facts: Vec<facts::Told> = vec![];
        let mut tree = self
            .verified
            .as_ref()
            .map(|(_, t)| t.clone())
            .unwrap_or_default();
        let origin_note = String::from_utf8_lossy(&cp.note).into_owned();
        // The first tile that differs: (url, served, expected, subject).
        let mut wrong_tile: Option<(String, Vec<u8>, Vec<u8>, String)> = None;
        let first = tree.size() / TILE_WIDTH as u64;
        let last = (cp.size - 1) / TILE_WIDTH as u64;
        let m = sink.metrics();
        let label = crate::metrics::LogLabel {
            log: self.history.origin.clone(),
        };
        // Bundles and their level-0 tiles are fetched and leaf-hashed ahead by a few
        // threads (pipeline.rs); the tree is built here, in order.
        let mut higher: Vec<ExpectedTile> = vec![];
        let agent = self.agent.clone();
        let url = self.url.clone();
        pipeline::run(&agent, &url, cp.size, first, last, |b, fetched| {
            let f = fetched?;
            let leaves = match f.leaves {
                Ok(l) => l,
                Err(problem) => {
                    self.raise(
                        sink,
                        seen,
                        Kind::Malformed,
                        format!("bundle {b} {}", cp.size),
                        format!("{} {problem}", f.bundle_url),
                        json!({"checkpoint": origin_note, "url": f.bundle_url}),
                    );
                    return Err(Stop::Alerted);
                }
            };
            // The level-0 tile over a bundle is its leaf hashes.
            let expected: Vec<u8> = leaves.iter().flat_map(|h| h.0).collect();
            if wrong_tile.is_none() && f.tile0 != expected {
                let subject = format!("0/{b}/{}", leaves.len());
                wrong_tile = Some((f.tile0_url, f.tile0, expected, subject));
            }
            let skip = (tree.size() - b * TILE_WIDTH as u64) as usize;
            let from = tree.size();
            facts.extend(f.facts.into_iter().filter(|t| t.index >= from));
            for l in &leaves[skip..] {
                higher.extend(tree.push_leaf(*l).into_iter().filter(|t| t.level > 0));
            }
            m.entries_verified
                .get_or_create(&label)
                .inc_by((leaves.len() - skip) as u64);
            Ok(())
        })?;
        self.check_tiles(&higher, &mut wrong_tile)?;
        let partial: Vec<ExpectedTile> = tree
            .partial_tiles()
            .into_iter()
            .filter(|t| t.level > 0)
            .collect();
        self.check_tiles(&partial, &mut wrong_tile)?;
        // Entries first: if they do not hash to the signed root, an entry was rewritten
        // (whatever the tiles say); if they do, a differing tile is the tile's fault.
        let root = tree.root();
        if root != cp.root {
            self.raise(
                sink,
                seen,
                Kind::TreeMismatch,
                format!("{} {}", cp.size, cp.root_base64()),
                format!(
                    "the log's entries hash to {} at tree size {}, but its checkpoint says {}",
                    hash_to_base64(&root),
                    cp.size,
                    cp.root_base64()
                ),
                json!({"checkpoint": origin_note, "computed_root": hash_to_base64(&root)}),
            );
            return Err(Stop::Alerted);
        }
        if let Some((url, served, expected, subject)) = wrong_tile {
            self.raise(
                sink,
                seen,
                Kind::TileMismatch,
                subject,
                format!("{url} differs from the tile the log's entries imply (the entries match the signed root)"),
                json!({
                    "checkpoint": origin_note,
                    "url": url,
                    "served": BASE64_STANDARD.encode(&served),
                    "expected": BASE64_STANDARD.encode(expected),
                }),
            );
            return Err(Stop::Alerted);
        }
        // The entries are verified: what they say counts now.
        for told in facts {
            self.learn(sink, seen, cp, rules, told);
        }
        m.tree_size.get_or_create(&label).set(cp.size as i64);
        m.checkpoints_verified.get_or_create(&label).inc();
        self.verified = Some((cp.clone(), tree));
        self.save_soon();
        Ok(())
    }

    /// Compares tiles with those the log serves; remembers the first that differs.
    #[allow(clippy::type_complexity)]
    fn check_tiles(
        &self,
        tiles: &[ExpectedTile],
        wrong: &mut Option<(String, Vec<u8>, Vec<u8>, String)>,
    ) -> Result<(), Stop> {
        if wrong.is_some() || tiles.is_empty() {
            return Ok(());
        }
        let urls: Vec<String> = tiles
            .iter()
            .map(|t| {
                tile_url(
                    &self.url,
                    TileKind::Hashes { level: t.level },
                    t.index,
                    t.hashes.len(),
                )
            })
            .collect();
        let served = fetch_all(
            &self.agent,
            &urls.iter().map(String::as_str).collect::<Vec<_>>(),
            TILE_WIDTH * 32,
        );
        for ((t, url), served) in tiles.iter().zip(urls).zip(served) {
            let served = served?;
            let expected = t.bytes();
            if served != expected {
                let subject = format!("{}/{}/{}", t.level, t.index, t.hashes.len());
                *wrong = Some((url, served, expected, subject));
                break;
            }
        }
        Ok(())
    }

    /// Applies one verified fact to the versions the monitor knows, and the rules to it.
    fn learn(
        &mut self,
        sink: &dyn Sink,
        seen: Instant,
        cp: &VerifiedCheckpoint,
        rules: &[Rule],
        told: facts::Told,
    ) {
        let index = told.index;
        let mut matched: Vec<(String, String)> = vec![];
        match &told.fact {
            Fact::Published {
                name,
                version,
                digest,
                size,
                publisher,
                event,
            } => {
                self.versions.insert_new(
                    facts::key(name, version),
                    facts::VersionFacts {
                        digest: *digest,
                        size: Some(*size),
                        tombstoned: false,
                        approvals: vec![],
                    },
                );
                for r in rules {
                    if let Some(p) = &r.new_version {
                        if glob(p, name) {
                            matched.push((
                                r.name.clone(),
                                format!("{name}@{version} was published by {publisher}"),
                            ));
                        }
                    }
                    if let Some(keys) = &r.trusted {
                        match keys.check(event) {
                            ledger_client::publisher::Verdict::Signed(_) => {}
                            v => matched.push((r.name.clone(), format!("{name}@{version} is {v}"))),
                        }
                    }
                }
            }
            Fact::Approval {
                name,
                version,
                to,
                actor,
            } => {
                if let Some(v) = self.versions.get_mut(&facts::key(name, version)) {
                    v.approvals.push((actor.clone(), *to));
                }
            }
            Fact::Lifecycle {
                name,
                version,
                to,
                actor,
            } => {
                let key = facts::key(name, version);
                let approvers: std::collections::BTreeSet<String> = self
                    .versions
                    .get(&key)
                    .map(|v| {
                        v.approvals
                            .iter()
                            .filter(|(_, s)| s == to)
                            .map(|(a, _)| a.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                for r in rules {
                    if let Some(a) = &r.approvals {
                        if a.to == *to && approvers.len() < a.required {
                            matched.push((r.name.clone(), format!(
                                "{key} moved to {to} (by {actor}) with {} of the {} approvals required",
                                approvers.len(), a.required
                            )));
                        }
                    }
                }
                // Only a real change is counted (and journalled).
                if self
                    .versions
                    .get(&key)
                    .is_some_and(|v| !v.approvals.is_empty())
                {
                    if let Some(v) = self.versions.get_mut(&key) {
                        v.approvals.clear();
                    }
                }
            }
            Fact::Tombstone {
                name,
                version,
                reason,
            } => {
                if let Some(v) = self.versions.get_mut(&facts::key(name, version)) {
                    v.tombstoned = true;
                }
                for r in rules.iter().filter(|r| r.tombstone) {
                    matched.push((
                        r.name.clone(),
                        format!("{name}@{version} was tombstoned: {reason}"),
                    ));
                }
            }
            Fact::Policy { digest, by } => {
                for r in rules.iter().filter(|r| r.policy_change) {
                    matched.push((
                        r.name.clone(),
                        format!("policy {digest} put in force by {by}"),
                    ));
                }
            }
        }
        for (rule, message) in matched {
            let raised = self.raise(
                sink,
                seen,
                Kind::Rule,
                format!("{rule} {index}"),
                format!("rule {rule}: {message} (entry {index})"),
                json!({"rule": rule, "index": index, "checkpoint": String::from_utf8_lossy(&cp.note)}),
            );
            if raised && told.logged_ms > 0 {
                let delay_ms = now_ms().saturating_sub(told.logged_ms);
                sink.metrics()
                    .event_alert_delay
                    .observe(delay_ms as f64 / 1000.0);
            }
        }
    }

    /// Asks the store for every live version's blob (`HEAD`, on the fetcher threads), and
    /// compares the size it reports with the logged one: a missing or truncated blob is
    /// found without reading any bytes.
    fn check_presence(
        &mut self,
        sink: &dyn Sink,
        seen: Instant,
        b: &BlobCheck,
    ) -> Result<(), Stop> {
        let live: Vec<(String, ledger_client::digest::Digest, Option<u64>)> = self
            .versions
            .after("", usize::MAX, |v| !v.tombstoned)
            .into_iter()
            .map(|(k, v)| (k.clone(), v.digest, v.size))
            .collect();
        let urls: Vec<String> = live
            .iter()
            .map(|(key, digest, _)| blob_url(b, key, digest))
            .collect();
        let found = pipeline::par_map(&urls, |url| crate::fetch::head_size(&self.agent, url));
        sink.metrics()
            .blobs_checked
            .get_or_create(&crate::metrics::CheckLabel {
                log: self.history.origin.clone(),
                check: "presence".into(),
            })
            .inc_by(live.len() as u64);
        for (((key, digest, size), found), url) in live.into_iter().zip(found).zip(urls) {
            let evidence = json!({"artifact": key, "digest": digest.to_string(), "url": url});
            match found.map_err(Stop::Fetch)? {
                None => self.raise(
                    sink,
                    seen,
                    Kind::BlobMissing,
                    key.clone(),
                    format!("{key}: the blob store has no bytes for {digest}"),
                    evidence,
                ),
                Some(stored) if size.is_some_and(|s| s != stored) => self.raise(
                    sink,
                    seen,
                    Kind::BlobCorrupt,
                    format!("{key} size {stored}"),
                    format!(
                        "{key}: the blob store holds {stored} bytes for {digest}, the log says {}",
                        size.unwrap_or(0)
                    ),
                    evidence,
                ),
                Some(_) => false,
            };
        }
        Ok(())
    }

    /// Reads back live versions' bytes (a sample, round-robin, or all) and re-hashes them.
    fn check_blobs(&mut self, sink: &dyn Sink, seen: Instant, b: &BlobCheck) -> Result<(), Stop> {
        let n = match b.rehash {
            crate::config::Rehash::Sample(n) => n,
            crate::config::Rehash::All => usize::MAX,
        };
        let picked: Vec<(String, ledger_client::digest::Digest)> = self
            .versions
            .after(&self.blob_cursor, n, |v| !v.tombstoned)
            .into_iter()
            .map(|(k, v)| (k.clone(), v.digest))
            .collect();
        if picked.is_empty() {
            return Ok(());
        }
        for (key, digest) in picked {
            let url = blob_url(b, &key, &digest);
            let outcome = crate::fetch::hash_blob(&self.blob_agent, &url);
            let evidence = json!({"artifact": key, "digest": digest.to_string(), "url": url});
            match outcome {
                Ok(Some(got)) if got == digest => false,
                Ok(Some(got)) => self.raise(sink, seen, Kind::BlobCorrupt, format!("{key} {got}"),
                    format!("{key}: the blob store's bytes hash to {got}, not the logged {digest}"), evidence),
                Ok(None) => self.raise(sink, seen, Kind::BlobMissing, key.clone(),
                    format!("{key}: the blob store has no bytes for {digest}"), evidence),
                // The ledger re-hashes what it serves and breaks the connection rather than
                // finish a blob that does not match: corrupt, unless it never started.
                Err(crate::fetch::BlobRead::Broken(m)) => self.raise(sink, seen, Kind::BlobCorrupt, format!("{key} broken"),
                    format!("{key}: reading {digest} failed midway ({m}): the stored bytes do not match"), evidence),
                Err(crate::fetch::BlobRead::Fetch(e)) => return Err(Stop::Fetch(e)),
            };
            self.blob_cursor = key;
            sink.metrics()
                .blobs_checked
                .get_or_create(&crate::metrics::CheckLabel {
                    log: self.history.origin.clone(),
                    check: "rehash".into(),
                })
                .inc();
        }
        self.save_soon();
        Ok(())
    }

    /// Split view: every witness's latest cosigned checkpoint of this log must be
    /// consistent with the monitor's (same root at the same size; for a smaller size, a
    /// consistency proof built from the log's tiles, authenticated against the monitor's
    /// verified root, must hold).
    fn compare_witnesses(&mut self, sink: &dyn Sink, seen: Instant, witnesses: &[WitnessConfig]) {
        let Some((mine, _)) = self.verified.clone() else {
            return;
        };
        let hash = hex::encode(Sha256::digest(self.history.origin.as_bytes()));
        for w in witnesses {
            let url = format!("{}/{hash}/checkpoint", w.url);
            let note = match get(&self.witness_agent, &url, MAX_NOTE) {
                Ok(n) => n,
                Err(FetchError::NotFound { .. }) => continue,
                Err(e) => {
                    tracing::warn!(witness = %w.name, error = %e, "witness unreadable");
                    continue;
                }
            };
            let Ok(theirs) = self.history.verify_checkpoint(&note) else {
                tracing::warn!(witness = %w.name, "the witness serves a checkpoint the log's keys did not sign");
                continue;
            };
            let consistent = match self.consistent_with_mine(&theirs, &mine) {
                Ok(Some(c)) => c,
                // The witness is ahead: the next round catches up and compares again.
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(witness = %w.name, error = %e, "cannot build a consistency proof from the tiles");
                    continue;
                }
            };
            if !consistent {
                self.raise(
                    sink,
                    seen,
                    Kind::SplitView,
                    format!("{} {} {}", w.name, theirs.size, theirs.root_base64()),
                    format!(
                        "witness {} cosigned tree size {} with root {}, inconsistent with the monitor's verified tree size {} with root {}",
                        w.name, theirs.size, theirs.root_base64(), mine.size, mine.root_base64()
                    ),
                    json!({
                        "monitor_checkpoint": String::from_utf8_lossy(&mine.note),
                        "witness_checkpoint": String::from_utf8_lossy(&note),
                        "witness": w.name,
                    }),
                );
            }
        }
    }

    /// Whether `theirs` is consistent with the verified checkpoint: the same root at the
    /// same size, or a consistency proof from the tiles at a smaller size. `None` when
    /// `theirs` is larger (the monitor has not caught up with it yet).
    fn consistent_with_mine(
        &self,
        theirs: &VerifiedCheckpoint,
        mine: &VerifiedCheckpoint,
    ) -> Result<Option<bool>, tlog_tiles::Error> {
        if theirs.size == mine.size {
            return Ok(Some(theirs.root == mine.root));
        }
        if theirs.size > mine.size {
            return Ok(None);
        }
        let proof = self.tiles_prove(theirs.size, mine)?;
        Ok(Some(
            tlog_tiles::check_tree(&proof, mine.size, mine.root, theirs.size, theirs.root).is_ok(),
        ))
    }

    /// The log's cosigned checkpoint (`<log>/cosigned-checkpoint`) must carry the witness
    /// quorum of the log's trust policy (c2sp.org/tlog-policy), and be consistent with
    /// the monitor's tree.
    fn check_quorum(&mut self, sink: &dyn Sink, seen: Instant) -> Result<(), Stop> {
        let Some(policy) = self.policy.clone() else {
            return Ok(());
        };
        let Some((mine, _)) = self.verified.clone() else {
            return Ok(());
        };
        let note = match get(
            &self.agent,
            &format!("{}/cosigned-checkpoint", self.url),
            MAX_NOTE,
        ) {
            Ok(n) => n,
            // Nothing attested yet.
            Err(FetchError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(Stop::Fetch(e)),
        };
        let keys = self.history.all_keys();
        let evidence = json!({"cosigned_checkpoint": String::from_utf8_lossy(&note)});
        let theirs = match policy.verify_checkpoint(&note, &keys) {
            Ok(v) => v.checkpoint,
            Err(e) => {
                self.raise(
                    sink,
                    seen,
                    Kind::WitnessQuorum,
                    hex::encode(Sha256::digest(&note)),
                    format!("the log's cosigned checkpoint fails the trust policy: {e}"),
                    evidence,
                );
                return Err(Stop::Alerted);
            }
        };
        if let Ok(Some(false)) = self.consistent_with_mine(&theirs, &mine) {
            self.raise(
                sink,
                seen,
                Kind::SplitView,
                format!("cosigned {} {}", theirs.size, theirs.root_base64()),
                format!(
                    "the log's cosigned checkpoint (tree size {}) is inconsistent with the monitor's verified tree size {}",
                    theirs.size, mine.size
                ),
                json!({"monitor_checkpoint": String::from_utf8_lossy(&mine.note),
                       "witness_checkpoint": String::from_utf8_lossy(&note), "witness": "cosigned-checkpoint"}),
            );
            return Err(Stop::Alerted);
        }
        Ok(())
    }

    /// A consistency proof from `old` to the verified checkpoint, from the log's hash
    /// tiles, each authenticated against the verified root (tlog_tiles::TileHashReader).
    fn tiles_prove(
        &self,
        old: u64,
        mine: &VerifiedCheckpoint,
    ) -> Result<Vec<Hash>, tlog_tiles::Error> {
        let reader = HttpTiles {
            agent: &self.agent,
            url: &self.url,
        };
        let hashes = tlog_tiles::TileHashReader::new(mine.size, mine.root, &reader);
        tlog_tiles::prove_tree(mine.size, old, &hashes)
    }
}

struct HttpTiles<'a> {
    agent: &'a Http,
    url: &'a str,
}

impl tlog_tiles::TileReader for HttpTiles<'_> {
    fn height(&self) -> u8 {
        8
    }

    fn read_tiles(&self, tiles: &[tlog_tiles::Tile]) -> Result<Vec<Vec<u8>>, tlog_tiles::Error> {
        tiles
            .iter()
            .map(|t| {
                let url = tile_url(
                    self.url,
                    TileKind::Hashes { level: t.level() },
                    t.level_index(),
                    t.width() as usize,
                );
                get(self.agent, &url, TILE_WIDTH * 32)
                    .map_err(|e| tlog_tiles::Error::InvalidInput(e.to_string()))
            })
            .collect()
    }

    fn save_tiles(&self, _: &[tlog_tiles::Tile], _: &[Vec<u8>]) {}
}
