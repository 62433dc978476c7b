//! Short-lived grants: one principal may download one artifact version's bytes until a
//! stated time, because someone allowed to grant said so, for a stated reason.
//!
//! A grant exists only once its record is durable in the access audit log (`"type":
//! "grant"`, specs/access.md): the log, not this store, is the evidence of who granted what
//! to whom and until when. This store is the lookup the policy context needs on every
//! artifact decision (`context.grant`): an in-memory map, rebuilt at start from the
//! `access/grants` column family, where each grant is written (synced) after its audit
//! record. A crash between the two leaves a logged grant that never took effect: the safe
//! side. Revocation is logged the same way (`"type": "grant_revoked"`) before it takes
//! effect; expiry needs no record, since the grant names its own end.

use parking_lot::RwLock;
use rocksdb::{IteratorMode, WriteOptions, DB};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// Default for `grants.max_seconds`: a working day.
pub const DEFAULT_MAX_SECS: u64 = 8 * 3600;
/// No configuration may allow grants longer than a week: they are meant to be short.
pub const LIMIT_MAX_SECS: u64 = 7 * 24 * 3600;
/// Longest principal id a grant may name.
pub const MAX_PRINCIPAL_BYTES: usize = 256;
/// Longest reason a grant may carry (it is logged).
pub const MAX_REASON_BYTES: usize = 512;

/// `grants` in the access configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantsConfig {
    /// Longest lifetime of one grant, in seconds.
    #[serde(default = "default_max")]
    pub max_seconds: u64,
}

fn default_max() -> u64 {
    DEFAULT_MAX_SECS
}

impl Default for GrantsConfig {
    fn default() -> Self {
        Self {
            max_seconds: DEFAULT_MAX_SECS,
        }
    }
}

impl GrantsConfig {
    pub fn check(&self) -> Result<(), String> {
        if self.max_seconds == 0 || self.max_seconds > LIMIT_MAX_SECS {
            return Err(format!(
                "grants.max_seconds must be 1 to {LIMIT_MAX_SECS} (a week), not {}",
                self.max_seconds
            ));
        }
        Ok(())
    }
}

/// One grant as stored, listed and logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// `g` and 16 hex digits.
    pub id: String,
    /// Who may download.
    pub principal: String,
    /// What: `name@version`.
    pub artifact: String,
    /// Who granted it.
    pub granted_by: String,
    pub reason: String,
    /// Unix seconds: from when...
    pub not_before: u64,
    /// ...until when (exclusive).
    pub not_after: u64,
    /// Index of the grant's record in the access audit log.
    pub audit_index: u64,
}

impl Grant {
    pub fn live_at(&self, now: u64) -> bool {
        self.not_before <= now && now < self.not_after
    }
}

/// Why a grant request is refused.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    #[error("{0}")]
    Invalid(String),
    #[error("grant storage: {0}")]
    Store(String),
}

/// Checks a proposed grant's fields; `max_secs` is `grants.max_seconds`.
pub fn validate(
    principal: &str,
    reason: &str,
    lifetime_secs: u64,
    max_secs: u64,
) -> Result<(), GrantError> {
    // Any principal id the access layer can produce (identity-token subjects included):
    // printable ASCII without spaces.
    if principal.is_empty()
        || principal.len() > MAX_PRINCIPAL_BYTES
        || !principal.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(GrantError::Invalid(format!(
            "principal {:?} must be 1-{MAX_PRINCIPAL_BYTES} printable ASCII characters without spaces",
            principal.chars().take(140).collect::<String>()
        )));
    }
    if reason.trim().is_empty() {
        return Err(GrantError::Invalid(
            "reason is required: the log records why access was granted".into(),
        ));
    }
    if reason.len() > MAX_REASON_BYTES || reason.chars().any(char::is_control) {
        return Err(GrantError::Invalid(format!(
            "reason must be at most {MAX_REASON_BYTES} bytes of printable text"
        )));
    }
    if lifetime_secs == 0 || lifetime_secs > max_secs {
        return Err(GrantError::Invalid(format!(
            "a grant lives 1 to {max_secs} seconds (grants.max_seconds), not {lifetime_secs}"
        )));
    }
    Ok(())
}

/// A fresh grant id.
pub fn new_id() -> String {
    format!("g{}", hex::encode(rand::random::<[u8; 8]>()))
}

/// The grants in force, by (principal, artifact), backed by a column family.
pub struct GrantStore {
    db: Arc<DB>,
    cf: String,
    live: RwLock<HashMap<(String, String), Vec<Grant>>>,
}

impl GrantStore {
    /// Loads the stored grants, dropping those that have expired.
    pub fn open(db: Arc<DB>, cf: String, now: u64) -> Result<Self, GrantError> {
        let s = Self {
            db,
            cf,
            live: RwLock::new(HashMap::new()),
        };
        let mut expired = vec![];
        {
            let mut live = s.live.write();
            for item in s.db.iterator_cf(s.cf()?, IteratorMode::Start) {
                let (k, v) = item.map_err(|e| GrantError::Store(e.to_string()))?;
                let g: Grant = serde_json::from_slice(&v).map_err(|e| {
                    GrantError::Store(format!(
                        "grant record {} is corrupt: {e}",
                        String::from_utf8_lossy(&k)
                    ))
                })?;
                if now >= g.not_after {
                    expired.push(g.id);
                } else {
                    live.entry((g.principal.clone(), g.artifact.clone()))
                        .or_default()
                        .push(g);
                }
            }
        }
        for id in expired {
            s.delete(&id)?;
        }
        Ok(s)
    }

    fn cf(&self) -> Result<&rocksdb::ColumnFamily, GrantError> {
        self.db
            .cf_handle(&self.cf)
            .ok_or_else(|| GrantError::Store(format!("no column family {}", self.cf)))
    }

    fn delete(&self, id: &str) -> Result<(), GrantError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db
            .delete_cf_opt(self.cf()?, id.as_bytes(), &wo)
            .map_err(|e| GrantError::Store(e.to_string()))
    }

    /// Puts a grant in force. Its audit record must already be durable.
    pub fn insert(&self, g: Grant) -> Result<(), GrantError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        let v = serde_json::to_vec(&g).map_err(|e| GrantError::Store(e.to_string()))?;
        self.db
            .put_cf_opt(self.cf()?, g.id.as_bytes(), v, &wo)
            .map_err(|e| GrantError::Store(e.to_string()))?;
        self.live
            .write()
            .entry((g.principal.clone(), g.artifact.clone()))
            .or_default()
            .push(g);
        Ok(())
    }

    /// The grant with this id, if it is still in force.
    pub fn get(&self, id: &str, now: u64) -> Option<Grant> {
        self.live
            .read()
            .values()
            .flatten()
            .find(|g| g.id == id && now < g.not_after)
            .cloned()
    }

    /// Ends a grant. Its revocation record must already be durable.
    pub fn revoke(&self, id: &str) -> Result<bool, GrantError> {
        let mut live = self.live.write();
        let mut found = false;
        live.retain(|_, gs| {
            let before = gs.len();
            gs.retain(|g| g.id != id);
            found |= gs.len() != before;
            !gs.is_empty()
        });
        drop(live);
        if found {
            self.delete(id)?;
        }
        Ok(found)
    }

    /// Whether `principal` holds a grant in force for `artifact` (`name@version`) at `now`.
    pub fn holds(&self, principal: &str, artifact: &str, now: u64) -> bool {
        // Allocation-free lookup would need a borrowed key type; grants are few and this
        // runs only for artifact-level decisions.
        self.live
            .read()
            .get(&(principal.to_string(), artifact.to_string()))
            .is_some_and(|gs| gs.iter().any(|g| g.live_at(now)))
    }

    /// Grants in force at `now` (of one principal, or all), ending soonest first.
    pub fn list(&self, principal: Option<&str>, now: u64) -> Vec<Grant> {
        let mut out: Vec<Grant> = self
            .live
            .read()
            .iter()
            .filter(|((p, _), _)| principal.is_none_or(|want| p == want))
            .flat_map(|(_, gs)| gs.iter().filter(|g| now < g.not_after).cloned())
            .collect();
        out.sort_by(|a, b| a.not_after.cmp(&b.not_after).then(a.id.cmp(&b.id)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &std::path::Path, now: u64) -> GrantStore {
        let db = crate::store::rocks::RocksDb::open(dir, &[], 8 << 20).unwrap();
        let (db, cf) = db.process_family("access/grants");
        GrantStore::open(db, cf, now).unwrap()
    }

    fn grant(id: &str, principal: &str, artifact: &str, from: u64, until: u64) -> Grant {
        Grant {
            id: id.into(),
            principal: principal.into(),
            artifact: artifact.into(),
            granted_by: "root".into(),
            reason: "incident 42".into(),
            not_before: from,
            not_after: until,
            audit_index: 7,
        }
    }

    #[test]
    fn a_grant_holds_for_its_principal_and_artifact_only_until_it_ends() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), 1000);
        s.insert(grant("g1", "ann", "models/m@1", 1000, 1060))
            .unwrap();
        assert!(s.holds("ann", "models/m@1", 1000));
        assert!(s.holds("ann", "models/m@1", 1059));
        assert!(
            !s.holds("ann", "models/m@1", 1060),
            "not_after is exclusive"
        );
        assert!(!s.holds("ann", "models/m@1", 999), "not before it starts");
        assert!(!s.holds("bob", "models/m@1", 1030));
        assert!(!s.holds("ann", "models/m@2", 1030));
        assert!(!s.holds("ann", "models/m", 1030));
    }

    #[test]
    fn grants_survive_a_restart_and_expired_ones_are_dropped_at_load() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = open(dir.path(), 1000);
            s.insert(grant("g1", "ann", "models/m@1", 1000, 1060))
                .unwrap();
            s.insert(grant("g2", "ann", "models/m@1", 1000, 5000))
                .unwrap();
            s.insert(grant("g3", "bob", "data/d@1", 1000, 1100))
                .unwrap();
        }
        let s = open(dir.path(), 1070);
        assert_eq!(
            s.list(None, 1070)
                .iter()
                .map(|g| g.id.as_str())
                .collect::<Vec<_>>(),
            ["g3", "g2"]
        );
        assert_eq!(s.list(Some("bob"), 1070).len(), 1);
        drop(s);
        // g1 was deleted from disk at the previous load, not only skipped.
        let db = crate::store::rocks::RocksDb::open(dir.path(), &[], 8 << 20).unwrap();
        let (db, cf) = db.process_family("access/grants");
        let ids: Vec<String> = db
            .iterator_cf(db.cf_handle(&cf).unwrap(), IteratorMode::Start)
            .map(|kv| String::from_utf8(kv.unwrap().0.to_vec()).unwrap())
            .collect();
        assert_eq!(ids, ["g2", "g3"]);
    }

    #[test]
    fn a_revoked_grant_ends_at_once_and_stays_ended_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = open(dir.path(), 1000);
            s.insert(grant("g1", "ann", "models/m@1", 1000, 5000))
                .unwrap();
            assert!(s.get("g1", 1000).is_some());
            assert!(s.revoke("g1").unwrap());
            assert!(!s.holds("ann", "models/m@1", 1001));
            assert!(!s.revoke("g1").unwrap(), "revoking twice finds nothing");
        }
        let s = open(dir.path(), 1002);
        assert!(!s.holds("ann", "models/m@1", 1002));
        assert!(s.get("g1", 1002).is_none());
    }

    #[test]
    fn bad_grants_are_refused_with_reasons() {
        for (p, reason, life) in [
            ("a nn", "x", 60),
            (&"a".repeat(MAX_PRINCIPAL_BYTES + 1), "x", 60),
            ("", "x", 60),
            ("ann", "", 60),
            ("ann", "   ", 60),
            ("ann", "a\u{1b}[2J", 60),
            ("ann", &"r".repeat(MAX_REASON_BYTES + 1), 60),
            ("ann", "x", 0),
            ("ann", "x", DEFAULT_MAX_SECS + 1),
        ] {
            assert!(
                validate(p, reason, life, DEFAULT_MAX_SECS).is_err(),
                "{p:?} {reason:?} {life}"
            );
        }
        validate("ann", "incident 42", DEFAULT_MAX_SECS, DEFAULT_MAX_SECS).unwrap();
        assert!(GrantsConfig { max_seconds: 0 }.check().is_err());
        assert!(GrantsConfig {
            max_seconds: LIMIT_MAX_SECS + 1
        }
        .check()
        .is_err());
    }
}
