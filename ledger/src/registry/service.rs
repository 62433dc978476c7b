//! The registry's write and read paths over one log.
//!
//! A write locks its subject (one artifact version, or one alias), waits until the catalog
//! has applied the whole log, builds the event with `prev` = the subject's latest entry,
//! sequences it like any entry, then waits for the catalog to apply it and answers with the
//! catalog's verdict. The catalog decides from the log alone, so an entry that lost a race
//! (say, against a raw `add` of a competing event) is rejected there, and its submitter hears
//! 409, never a receipt for a change that did not happen.

use super::catalog::{Catalog, CatalogError, Verdict};
use super::state::{AliasState, VersionState};
use crate::blob::Blobs;
use crate::log::{Log, LogError, Snapshot};
use crate::sequencer::{Pool, Receipt};
use bytes::Bytes;
use ledger_client::event::{Event, Subject};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    /// name@version rebinding, a lost race, a transition the state does not allow.
    #[error("{0}")]
    Conflict(String),
    /// The access policy refuses this change to this artifact.
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Blob(#[from] crate::blob::BlobError),
}

pub type Result<T> = std::result::Result<T, RegistryError>;

pub struct Registry {
    pub log: Arc<Log>,
    pool: Arc<Pool>,
    pub catalog: Arc<Catalog>,
    pub blobs: Arc<Blobs>,
    /// The log's attestations, for receipts that carry cosignatures and time-stamps.
    pub attest: Option<Arc<crate::attest::Attestor>>,
    locks: Mutex<HashMap<Subject, Arc<tokio::sync::Mutex<()>>>>,
}

/// A write's answer: the logged entry and where it is.
pub struct Written {
    pub event: Event,
    /// The logged entry: the event's encoding.
    pub entry: Bytes,
    pub receipt: Receipt,
}

/// Longest a write waits for the catalog to catch up with the log.
const CATALOG_WAIT: Duration = Duration::from_secs(30);

/// Entries applied per catalog step while catching up.
const APPLY_CHUNK: u64 = 4096;

impl Registry {
    pub fn new(log: Arc<Log>, pool: Arc<Pool>, catalog: Arc<Catalog>, blobs: Arc<Blobs>) -> Self {
        Self {
            log,
            pool,
            catalog,
            blobs,
            attest: None,
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// Receipts name the attestation covering an event once there is one.
    pub fn with_attestations(mut self, attest: Arc<crate::attest::Attestor>) -> Self {
        self.attest = Some(attest);
        self
    }

    /// Keeps the catalog applied up to the log's published size, for as long as the log
    /// lives. Storage errors are logged and retried: the catalog only ever lags.
    pub async fn follow(self: Arc<Self>) {
        let mut sizes = self.log.watch_size();
        loop {
            let size = *sizes.borrow_and_update();
            if self.catalog.applied() < size {
                let me = self.clone();
                let step = tokio::task::spawn_blocking(move || me.catch_up_step()).await;
                match step {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "catalog could not apply log entries; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "catalog task failed; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                continue;
            }
            if sizes.changed().await.is_err() {
                return;
            }
        }
    }

    fn catch_up_step(&self) -> Result<()> {
        let snap = self.log.snapshot();
        let start = self.catalog.applied();
        let end = snap.size().min(start + APPLY_CHUNK);
        if start < end {
            let entries = self.log.entries(&snap, start..end)?;
            self.catalog.apply(start, &entries)?;
        }
        Ok(())
    }

    /// Waits until the catalog has applied the log up to `size`. A catalog that cannot
    /// apply (its storage failing) makes writes fail with 503 rather than hang.
    async fn applied_to(&self, size: u64) -> Result<()> {
        let mut rx = self.catalog.subscribe();
        let wait = async {
            while *rx.borrow_and_update() < size {
                if rx.changed().await.is_err() {
                    break;
                }
            }
        };
        tokio::time::timeout(CATALOG_WAIT, wait)
            .await
            .map_err(|_| {
                LogError::Unavailable(format!(
                    "the catalog has not applied the log up to entry {size} within {}s",
                    CATALOG_WAIT.as_secs()
                ))
            })?;
        Ok(())
    }

    fn lock(&self, s: &Subject) -> Arc<tokio::sync::Mutex<()>> {
        self.locks.lock().entry(s.clone()).or_default().clone()
    }

    /// Logs the event `build` makes from the current catalog, under the subject's lock.
    pub async fn write(
        &self,
        subject: Subject,
        build: impl FnOnce(&Catalog) -> Result<Event>,
    ) -> Result<Written> {
        let lock = self.lock(&subject);
        let _guard = lock.lock().await;
        self.applied_to(self.log.snapshot().size()).await?;
        let mut event = build(&self.catalog)?;
        event.set_time(now());
        event
            .validate()
            .map_err(|e| RegistryError::Invalid(e.to_string()))?;
        debug_assert_eq!(event.subject(), subject);
        let entry = Bytes::from(event.encode());
        let leaf = tlog_tiles::record_hash(&entry);
        let rx = self.pool.submit(vec![(entry.clone(), leaf)])?;
        let receipt = rx
            .await
            .map_err(|_| LogError::Unavailable("sequencer stopped".into()))??;
        let index = receipt.entries[0].index;
        self.applied_to(index + 1).await?;
        if let Some(reason) = self.catalog.rejection(index)? {
            return Err(RegistryError::Conflict(format!(
                "entry {index} was logged but does not apply: {reason}"
            )));
        }
        Ok(Written {
            event,
            entry,
            receipt,
        })
    }

    /// The entry at `index` and the snapshot it was read from.
    pub fn entry(&self, index: u64) -> Result<(Arc<Snapshot>, Bytes)> {
        let snap = self.log.snapshot();
        if index >= snap.size() {
            return Err(RegistryError::NotFound(format!("no entry {index}")));
        }
        let e = self.log.entries(&snap, index..index + 1)?;
        let entry = e
            .into_iter()
            .next()
            .ok_or_else(|| RegistryError::NotFound(format!("no entry {index}")))?;
        Ok((snap, entry))
    }

    fn event_at(&self, index: u64) -> Result<(Event, tlog_tiles::Hash)> {
        let (_, entry) = self.entry(index)?;
        let ev = Event::decode(&entry).map_err(|e| {
            CatalogError::Corrupt(format!(
                "history names entry {index}, which is not an event: {e}"
            ))
        })?;
        Ok((ev, tlog_tiles::record_hash(&entry)))
    }

    /// The version's state after the entries before `as_of` (the current state if `None`).
    pub fn version(
        &self,
        name: &str,
        version: &str,
        as_of: Option<u64>,
    ) -> Result<Option<VersionState>> {
        let current = self.catalog.version(name, version)?;
        let Some(as_of) = as_of else {
            return Ok(current);
        };
        if current.as_ref().is_none_or(|c| c.published.index >= as_of) {
            return Ok(None);
        }
        let subject = Subject::Version {
            name: name.into(),
            version: version.into(),
        };
        let mut state = None;
        for index in self.catalog.history(&subject)? {
            if index >= as_of {
                break;
            }
            let (ev, leaf) = self.event_at(index)?;
            state = Some(
                VersionState::apply(state.as_ref(), &ev, index, leaf)
                    .map_err(|e| CatalogError::Corrupt(format!("replaying entry {index}: {e}")))?,
            );
        }
        Ok(state)
    }

    pub fn versions(&self, name: &str, as_of: Option<u64>) -> Result<Vec<VersionState>> {
        let current = self.catalog.versions(name)?;
        if as_of.is_none() {
            return Ok(current);
        }
        let mut out = vec![];
        for v in current {
            if let Some(s) = self.version(&v.name, &v.version, as_of)? {
                out.push(s);
            }
        }
        Ok(out)
    }

    pub fn aliases(&self, name: &str, as_of: Option<u64>) -> Result<Vec<AliasState>> {
        let current = self.catalog.aliases(name)?;
        let Some(as_of) = as_of else {
            return Ok(current);
        };
        let mut out = vec![];
        for a in current {
            let subject = Subject::Alias {
                name: a.name.clone(),
                alias: a.alias.clone(),
            };
            let mut state = None;
            for index in self.catalog.history(&subject)? {
                if index >= as_of {
                    break;
                }
                let (ev, leaf) = self.event_at(index)?;
                let Event::AliasMoved(m) = &ev else {
                    return Err(CatalogError::Corrupt(format!(
                        "alias history names entry {index}"
                    ))
                    .into());
                };
                state = Some(
                    AliasState::apply(state.as_ref(), m, index, leaf).map_err(|e| {
                        CatalogError::Corrupt(format!("replaying entry {index}: {e}"))
                    })?,
                );
            }
            if let Some(s) = state.filter(|s| s.version.is_some()) {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// The subject's chain: (index, leaf hash, event), oldest first.
    pub fn history(&self, subject: &Subject) -> Result<Vec<(u64, tlog_tiles::Hash, Event)>> {
        self.catalog
            .history(subject)?
            .into_iter()
            .map(|i| self.event_at(i).map(|(ev, leaf)| (i, leaf, ev)))
            .collect()
    }
}

/// What a rebuild found: entries accepted, rejected, and not registry events.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RebuildCounts {
    pub accepted: u64,
    pub rejected: u64,
    pub other: u64,
}

/// Empties `catalog` and applies the log's first `size` entries (`ledger reindex`).
pub fn rebuild(
    catalog: &Catalog,
    log_entries: impl Fn(u64, u64) -> std::result::Result<Vec<Bytes>, LogError>,
    size: u64,
) -> Result<RebuildCounts> {
    catalog.clear()?;
    let mut counts = RebuildCounts::default();
    let mut start = 0;
    while start < size {
        let end = size.min(start + APPLY_CHUNK);
        for v in catalog.apply(start, &log_entries(start, end)?)? {
            match v {
                Verdict::Accepted => counts.accepted += 1,
                Verdict::Rejected(_) => counts.rejected += 1,
                Verdict::Other => counts.other += 1,
            }
        }
        start = end;
    }
    catalog.flush()?;
    Ok(counts)
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
