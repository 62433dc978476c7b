//! The catalog: the registry's state, indexed for queries, kept in one RocksDB column
//! family per log. It is a pure function of the log: [`Catalog::apply`] reads entries in
//! log order and nothing else, so `ledger reindex` (clear, then apply every entry) must
//! produce byte-identical contents, and a test checks that it does.
//!
//! Keys (all text parts are validated names, so they never contain NUL):
//!
//! | key | value |
//! |---|---|
//! | `m:applied` | next entry index to apply (u64 BE) |
//! | `m:other` | entries that are not registry events (u64 BE) |
//! | `v:<name>\0<version>` | [`VersionState`] (JSON) |
//! | `a:<name>\0<alias>` | [`AliasState`] (JSON) |
//! | `d:<digest 32 B><name>\0<version>` | versions with this digest |
//! | `h:V<name>\0<version>\0<index BE>`, `h:A<name>\0<alias>\0<index BE>` | a subject's history |
//! | `l:<target>\0<index BE>` | incoming lineage link (JSON [`LinkIn`]); target `V<name>\0<version>` or `U<uri>` |
//! | `x:<index BE>` | why an entry that decodes as an event was rejected |

use super::state::{AliasState, VersionState};
use ledger_client::digest::Digest;
use ledger_client::event::{Event, Relation, Subject, Target};
use rocksdb::{Direction, IteratorMode, WriteBatch, DB};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tlog_tiles::Hash;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog storage: {0}")]
    Io(String),
    #[error("catalog is corrupt: {0}")]
    Corrupt(String),
    #[error("entries must be applied in order: the catalog is at {applied}, not {start}")]
    OutOfOrder { applied: u64, start: u64 },
}

pub type Result<T> = std::result::Result<T, CatalogError>;

fn io(e: rocksdb::Error) -> CatalogError {
    CatalogError::Io(e.to_string())
}

/// A lineage link seen from its target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkIn {
    pub index: u64,
    pub name: String,
    pub version: String,
    pub rel: Relation,
}

/// What one applied entry did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not a registry event (an opaque entry of the log).
    Other,
    Accepted,
    Rejected(String),
}

pub struct Catalog {
    db: Arc<DB>,
    cf: String,
    applied: tokio::sync::watch::Sender<u64>,
    /// Progress not yet written (`m:applied` and `m:other` on disk may lag behind): runs of
    /// opaque entries change nothing else, so they are recorded every `PERSIST_EVERY`
    /// entries, with the next event, or on `flush`. A restart re-reads the lagging run;
    /// counting it again from the persisted counters is exact.
    progress: parking_lot::Mutex<Progress>,
}

#[derive(Default, Clone, Copy)]
struct Progress {
    other: u64,
    persisted: u64,
}

/// Opaque entries applied between two writes of the progress counters.
const PERSIST_EVERY: u64 = 1 << 16;

const APPLIED: &[u8] = b"m:applied";
const OTHER: &[u8] = b"m:other";

fn version_key(name: &str, version: &str) -> Vec<u8> {
    [b"v:", name.as_bytes(), b"\0", version.as_bytes()].concat()
}

fn alias_key(name: &str, alias: &str) -> Vec<u8> {
    [b"a:", name.as_bytes(), b"\0", alias.as_bytes()].concat()
}

fn subject_prefix(s: &Subject) -> Vec<u8> {
    match s {
        Subject::Version { name, version } => {
            [b"h:V", name.as_bytes(), b"\0", version.as_bytes(), b"\0"].concat()
        }
        Subject::Alias { name, alias } => {
            [b"h:A", name.as_bytes(), b"\0", alias.as_bytes(), b"\0"].concat()
        }
    }
}

fn target_prefix(t: &Target) -> Vec<u8> {
    match t {
        Target::Artifact(a) => [
            b"l:V",
            a.name.as_bytes(),
            b"\0",
            a.version.as_bytes(),
            b"\0",
        ]
        .concat(),
        Target::Uri(u) => [b"l:U", u.as_bytes(), b"\0"].concat(),
    }
}

fn json<T: Serialize>(v: &T) -> Vec<u8> {
    // Our own plain structs: serialising them cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

impl Catalog {
    pub fn open(db: Arc<DB>, cf: String) -> Result<Self> {
        if db.cf_handle(&cf).is_none() {
            return Err(CatalogError::Io(format!("missing column family {cf}")));
        }
        let c = Self {
            db,
            cf,
            applied: tokio::sync::watch::channel(0).0,
            progress: Default::default(),
        };
        let applied = c.get_u64(APPLIED)?;
        *c.progress.lock() = Progress {
            other: c.get_u64(OTHER)?,
            persisted: applied,
        };
        c.applied.send_replace(applied);
        Ok(c)
    }

    fn cf(&self) -> Result<&rocksdb::ColumnFamily> {
        self.db
            .cf_handle(&self.cf)
            .ok_or_else(|| CatalogError::Io(format!("missing column family {}", self.cf)))
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db.get_cf(self.cf()?, key).map_err(io)
    }

    fn get_u64(&self, key: &[u8]) -> Result<u64> {
        match self.get(key)? {
            None => Ok(0),
            Some(v) => Ok(u64::from_be_bytes(v.as_slice().try_into().map_err(
                |_| CatalogError::Corrupt(format!("{} is not a u64", String::from_utf8_lossy(key))),
            )?)),
        }
    }

    fn get_json<T: for<'de> Deserialize<'de>>(&self, key: &[u8]) -> Result<Option<T>> {
        self.get(key)?
            .map(|v| {
                serde_json::from_slice(&v).map_err(|e| {
                    CatalogError::Corrupt(format!("{}: {e}", String::from_utf8_lossy(key)))
                })
            })
            .transpose()
    }

    /// Visits every key with `prefix`, in key order.
    fn scan(&self, prefix: &[u8], mut visit: impl FnMut(&[u8], &[u8]) -> Result<()>) -> Result<()> {
        let it = self
            .db
            .iterator_cf(self.cf()?, IteratorMode::From(prefix, Direction::Forward));
        for item in it {
            let (k, v) = item.map_err(io)?;
            if !k.starts_with(prefix) {
                break;
            }
            visit(&k, &v)?;
        }
        Ok(())
    }

    /// The next entry index to apply: everything before it is in the catalog.
    pub fn applied(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Tells when `applied` moves.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.applied.subscribe()
    }

    /// Applies the log's entries `start..start + entries.len()`, in order.
    pub fn apply(&self, start: u64, entries: &[bytes::Bytes]) -> Result<Vec<Verdict>> {
        let applied = self.applied();
        if start != applied {
            return Err(CatalogError::OutOfOrder { applied, start });
        }
        let mut progress = *self.progress.lock();
        let mut verdicts = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            let index = start + i as u64;
            let mut b = WriteBatch::default();
            let verdict = match Event::decode(entry) {
                Err(_) => {
                    progress.other += 1;
                    Verdict::Other
                }
                Ok(ev) => {
                    let leaf = tlog_tiles::record_hash(entry);
                    match self.stage(&mut b, &ev, index, leaf)? {
                        Ok(()) => Verdict::Accepted,
                        Err(reason) => {
                            // Nothing of a rejected entry reaches the state or its history.
                            b = WriteBatch::default();
                            let mut k = b"x:".to_vec();
                            k.extend_from_slice(&index.to_be_bytes());
                            b.put_cf(self.cf()?, k, reason.as_bytes());
                            Verdict::Rejected(reason)
                        }
                    }
                }
            };
            // Opaque entries change nothing but counters: those are written lazily.
            if verdict != Verdict::Other {
                b.put_cf(self.cf()?, APPLIED, (index + 1).to_be_bytes());
                b.put_cf(self.cf()?, OTHER, progress.other.to_be_bytes());
                self.db.write(b).map_err(io)?;
                progress.persisted = index + 1;
            }
            verdicts.push(verdict);
        }
        let end = start + entries.len() as u64;
        if end - progress.persisted >= PERSIST_EVERY {
            self.persist(&mut progress, end)?;
        }
        *self.progress.lock() = progress;
        self.applied.send_replace(start + entries.len() as u64);
        Ok(verdicts)
    }

    fn persist(&self, progress: &mut Progress, applied: u64) -> Result<()> {
        let mut b = WriteBatch::default();
        b.put_cf(self.cf()?, APPLIED, applied.to_be_bytes());
        b.put_cf(self.cf()?, OTHER, progress.other.to_be_bytes());
        self.db.write(b).map_err(io)?;
        progress.persisted = applied;
        Ok(())
    }

    /// Writes the progress counters now (at shutdown, and at the end of a rebuild).
    pub fn flush(&self) -> Result<()> {
        let mut progress = self.progress.lock();
        let applied = self.applied();
        if progress.persisted < applied {
            self.persist(&mut progress, applied)?;
        }
        Ok(())
    }

    /// Adds to `b` what accepting `ev` changes, or says why it does not apply.
    fn stage(
        &self,
        b: &mut WriteBatch,
        ev: &Event,
        index: u64,
        leaf: Hash,
    ) -> Result<std::result::Result<(), String>> {
        let cf = self.cf()?;
        let mut history = subject_prefix(&ev.subject());
        history.extend_from_slice(&index.to_be_bytes());
        b.put_cf(cf, history, b"");
        if let Event::AliasMoved(a) = ev {
            if let Some(to) = &a.to {
                match self.version(&a.name, to)? {
                    None => return Ok(Err(format!("{}@{to} does not exist", a.name))),
                    Some(v) if v.tombstone.is_some() => {
                        return Ok(Err(format!("{}@{to} is tombstoned", a.name)))
                    }
                    Some(_) => {}
                }
            }
            let key = alias_key(&a.name, &a.alias);
            let old: Option<AliasState> = self.get_json(&key)?;
            return Ok(AliasState::apply(old.as_ref(), a, index, leaf).map(|s| {
                b.put_cf(cf, key, json(&s));
            }));
        }
        let Subject::Version { name, version } = ev.subject() else {
            return Ok(Err("not an event about a version".into()));
        };
        if let Event::Lineage(l) = ev {
            for link in &l.links {
                if let Target::Artifact(t) = &link.target {
                    match self.version(&t.name, &t.version)? {
                        Some(v) if v.digest == t.digest => {}
                        Some(v) => {
                            return Ok(Err(format!(
                                "lineage target {}@{} has digest {}, not {}",
                                t.name, t.version, v.digest, t.digest
                            )))
                        }
                        None => {
                            return Ok(Err(format!(
                                "lineage target {}@{} does not exist",
                                t.name, t.version
                            )))
                        }
                    }
                }
                let mut k = target_prefix(&link.target);
                k.extend_from_slice(&index.to_be_bytes());
                let incoming = LinkIn {
                    index,
                    name: name.clone(),
                    version: version.clone(),
                    rel: link.rel,
                };
                b.put_cf(cf, k, json(&incoming));
            }
        }
        let key = version_key(&name, &version);
        let old: Option<VersionState> = self.get_json(&key)?;
        Ok(VersionState::apply(old.as_ref(), ev, index, leaf).map(|s| {
            if let Event::Published(p) = ev {
                let d = [
                    b"d:",
                    &p.digest.0[..],
                    name.as_bytes(),
                    b"\0",
                    version.as_bytes(),
                ]
                .concat();
                b.put_cf(cf, d, b"");
            }
            b.put_cf(cf, key, json(&s));
        }))
    }

    pub fn version(&self, name: &str, version: &str) -> Result<Option<VersionState>> {
        self.get_json(&version_key(name, version))
    }

    /// Every version of `name`, in version-string order.
    pub fn versions(&self, name: &str) -> Result<Vec<VersionState>> {
        self.scan_json(&[b"v:", name.as_bytes(), b"\0"].concat())
    }

    /// Every JSON value under `prefix`, in key order.
    fn scan_json<T: for<'de> Deserialize<'de>>(&self, prefix: &[u8]) -> Result<Vec<T>> {
        let mut out = vec![];
        self.scan(prefix, |k, v| {
            out.push(serde_json::from_slice(v).map_err(|e| {
                CatalogError::Corrupt(format!("{}: {e}", String::from_utf8_lossy(k)))
            })?);
            Ok(())
        })?;
        Ok(out)
    }

    /// (name, version) of every version with these bytes.
    pub fn by_digest(&self, d: &Digest) -> Result<Vec<(String, String)>> {
        let prefix = [b"d:", &d.0[..]].concat();
        let mut out = vec![];
        self.scan(&prefix, |k, _| {
            let rest = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            let (n, v) = rest
                .split_once('\0')
                .ok_or_else(|| CatalogError::Corrupt("digest index key".into()))?;
            out.push((n.to_string(), v.to_string()));
            Ok(())
        })?;
        Ok(out)
    }

    pub fn alias(&self, name: &str, alias: &str) -> Result<Option<AliasState>> {
        self.get_json(&alias_key(name, alias))
    }

    pub fn aliases(&self, name: &str) -> Result<Vec<AliasState>> {
        self.scan_json(&[b"a:", name.as_bytes(), b"\0"].concat())
    }

    /// Indexes of the subject's accepted entries, oldest first: its chain.
    pub fn history(&self, s: &Subject) -> Result<Vec<u64>> {
        let prefix = subject_prefix(s);
        let mut out = vec![];
        self.scan(&prefix, |k, _| {
            let i: [u8; 8] = k[prefix.len()..]
                .try_into()
                .map_err(|_| CatalogError::Corrupt("history key".into()))?;
            out.push(u64::from_be_bytes(i));
            Ok(())
        })?;
        Ok(out)
    }

    /// Links that point at `target`, oldest first.
    pub fn linked_from(&self, target: &Target) -> Result<Vec<LinkIn>> {
        self.scan_json(&target_prefix(target))
    }

    /// Why the entry at `index` was rejected, if it was.
    pub fn rejection(&self, index: u64) -> Result<Option<String>> {
        let mut k = b"x:".to_vec();
        k.extend_from_slice(&index.to_be_bytes());
        Ok(self
            .get(&k)?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Every key and value: what `ledger reindex` must reproduce exactly.
    pub fn dump(&self) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let mut out = vec![];
        self.scan(b"", |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            Ok(())
        })?;
        Ok(out)
    }

    /// Empties the catalog (before a rebuild from the log).
    pub fn clear(&self) -> Result<()> {
        let cf = self.cf()?;
        let mut b = WriteBatch::default();
        for item in self.db.iterator_cf(cf, IteratorMode::Start) {
            let (k, _) = item.map_err(io)?;
            b.delete_cf(cf, k);
        }
        self.db.write(b).map_err(io)?;
        *self.progress.lock() = Progress::default();
        self.applied.send_replace(0);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::rocks::RocksDb;
    use bytes::Bytes;
    use ledger_client::event::{Approval, Kind, Lifecycle, Prev, Published, Stage};

    fn open(dir: &std::path::Path) -> (RocksDb, Catalog) {
        let db = RocksDb::open(dir, &["artifacts".to_string()], 1 << 20).unwrap();
        let (d, cf) = db.derived("artifacts", "catalog");
        let c = Catalog::open(d, cf).unwrap();
        (db, c)
    }

    fn published(version: &str) -> Bytes {
        Bytes::from(
            Event::Published(Published {
                name: "m".into(),
                version: version.into(),
                kind: Kind::Model,
                digest: Digest::of(version.as_bytes()),
                size: 1,
                media_type: "application/octet-stream".into(),
                meta_digest: None,
                meta: None,
                actor: "ci".into(),
                sig: None,
                time: 1,
            })
            .encode(),
        )
    }

    #[test]
    fn progress_over_opaque_entries_is_recorded_lazily_and_recounted_exactly_after_a_crash() {
        let dir = tempfile::tempdir().unwrap();
        let opaque: Vec<Bytes> = (0..10u8).map(|i| Bytes::from(vec![0xff, i])).collect();
        let mut log = opaque.clone();
        log.push(published("1"));
        log.extend(opaque.iter().cloned());
        {
            let (_db, c) = open(dir.path());
            c.apply(0, &log[..10]).unwrap();
            assert_eq!(c.applied(), 10);
            // Nothing written yet: a crash here loses only the count of opaque entries.
        }
        let (db, c) = open(dir.path());
        assert_eq!(
            c.applied(),
            0,
            "a crash rewinds to the last recorded progress"
        );
        let verdicts = c.apply(0, &log).unwrap();
        assert_eq!(verdicts[10], Verdict::Accepted);
        assert_eq!(c.applied(), 21);
        c.flush().unwrap();
        let live = c.dump().unwrap();
        drop((c, db));
        let (_db, c) = open(dir.path());
        assert_eq!(c.applied(), 21, "flush records the progress");
        // The same entries applied from scratch give the same bytes, counters included.
        let entries = log.clone();
        let counts = crate::registry::service::rebuild(
            &c,
            |a, b| Ok(entries[a as usize..b as usize].to_vec()),
            21,
        )
        .unwrap();
        assert_eq!((counts.accepted, counts.other), (1, 20));
        assert_eq!(c.dump().unwrap(), live);
        assert_eq!(c.get_u64(OTHER).unwrap(), 20);
    }

    /// Appends the entry `make` builds from the current head of m@1, applies it, and
    /// returns the catalog's verdict.
    fn next(c: &Catalog, log: &mut Vec<Bytes>, make: impl FnOnce(Prev) -> Event) -> Verdict {
        let head = c.version("m", "1").unwrap().unwrap().head;
        let entry = Bytes::from(make(head).encode());
        log.push(entry.clone());
        c.apply(log.len() as u64 - 1, &[entry])
            .unwrap()
            .pop()
            .unwrap()
    }

    fn approval(actor: &str, to: Stage) -> impl FnOnce(Prev) -> Event {
        let actor = actor.to_string();
        move |prev| {
            Event::Approval(Approval {
                name: "m".into(),
                version: "1".into(),
                to,
                comment: None,
                prev,
                actor,
                time: 2,
            })
        }
    }

    fn rejected(v: Verdict, needle: &str) {
        match v {
            Verdict::Rejected(r) => assert!(r.contains(needle), "{r:?} lacks {needle:?}"),
            other => panic!("{other:?}, want a rejection mentioning {needle:?}"),
        }
    }

    #[test]
    fn approvals_are_kept_until_the_stage_changes_and_the_log_alone_rejects_invalid_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (_db, c) = open(dir.path());
        let mut log = vec![published("1")];
        c.apply(0, &log).unwrap();

        assert_eq!(
            next(&c, &mut log, approval("anna", Stage::Approved)),
            Verdict::Accepted
        );
        // The same approver twice for the same stage: one voice per principal.
        rejected(
            next(&c, &mut log, approval("anna", Stage::Approved)),
            "anna already approved moving m@1 to approved (entry 1)",
        );
        // A stage the version cannot reach next.
        rejected(
            next(&c, &mut log, approval("bob", Stage::Released)),
            "m@1 is draft, which cannot move to released",
        );
        assert_eq!(
            next(&c, &mut log, approval("bob", Stage::Approved)),
            Verdict::Accepted
        );
        // Approvals of different stages are separate (revoked is a successor of draft too).
        assert_eq!(
            next(&c, &mut log, approval("anna", Stage::Revoked)),
            Verdict::Accepted
        );
        let v = c.version("m", "1").unwrap().unwrap();
        let seen: Vec<(&str, Stage, u64)> = v
            .approvals
            .iter()
            .map(|a| (a.at.actor.as_str(), a.to, a.at.index))
            .collect();
        assert_eq!(
            seen,
            [
                ("anna", Stage::Approved, 1),
                ("bob", Stage::Approved, 4),
                ("anna", Stage::Revoked, 5)
            ]
        );
        assert_eq!(v.entries, 4, "rejected entries are not part of the chain");

        // The transition clears them: they approved leaving draft, not what comes next.
        assert_eq!(
            next(&c, &mut log, |prev| Event::Lifecycle(Lifecycle {
                name: "m".into(),
                version: "1".into(),
                from: Stage::Draft,
                to: Stage::Approved,
                reason: None,
                prev,
                actor: "rel".into(),
                time: 3,
            })),
            Verdict::Accepted
        );
        assert!(c.version("m", "1").unwrap().unwrap().approvals.is_empty());
        rejected(
            next(&c, &mut log, approval("anna", Stage::Approved)),
            "m@1 is approved, which cannot move to approved",
        );
        assert_eq!(
            next(&c, &mut log, approval("anna", Stage::Released)),
            Verdict::Accepted
        );

        // A pure function of the log: rebuilding from the entries gives the same bytes.
        c.flush().unwrap();
        let live = c.dump().unwrap();
        let entries = log.clone();
        let n = entries.len() as u64;
        let counts = crate::registry::service::rebuild(
            &c,
            |a, b| Ok(entries[a as usize..b as usize].to_vec()),
            n,
        )
        .unwrap();
        assert_eq!((counts.accepted, counts.rejected), (6, 3));
        assert_eq!(c.dump().unwrap(), live);
    }
}
