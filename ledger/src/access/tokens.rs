//! API tokens: random, shown once, stored only as a hash, scoped to roles, expiring,
//! revocable.
//!
//! A token is `ldgr_<id>_<secret>`: `id` (16 hex digits) finds the record, `secret` (32
//! random bytes, base64url) proves possession. The store keeps SHA-256 of the secret: with
//! 256 bits of entropy a slow password hash adds nothing, and a stolen database yields no
//! usable token. Records live in the process's `access/tokens` column family; every change
//! is a synced write.

use super::principal::{valid_name, AuthMethod, Principal};
use base64::prelude::*;
use rand::RngCore;
use rocksdb::{IteratorMode, WriteOptions, DB};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

pub const PREFIX: &str = "ldgr_";

/// Longest lifetime of an API token.
pub const MAX_LIFETIME_SECS: u64 = 366 * 24 * 3600;

/// A stored token, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: String,
    pub principal: String,
    pub roles: BTreeSet<String>,
    pub created: u64,
    pub expires: u64,
    pub revoked: Option<u64>,
    /// Who created it (a principal id, or `offline` for `ledger token create`).
    pub created_by: String,
    /// Hex SHA-256 of the secret.
    secret_sha256: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("not a ledger API token (expected ldgr_<16 hex>_<secret>)")]
    Malformed,
    #[error("unknown or wrong API token")]
    Unknown,
    #[error("API token {0} has expired")]
    Expired(String),
    #[error("API token {0} was revoked")]
    Revoked(String),
    #[error("{0}")]
    Invalid(String),
    #[error("token storage: {0}")]
    Store(String),
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Splits `ldgr_<id>_<secret>` into its parts, or `None`.
fn parse(token: &str) -> Option<(&str, Vec<u8>)> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    if id.len() != 16
        || !id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        return None;
    }
    let secret = BASE64_URL_SAFE_NO_PAD.decode(secret).ok()?;
    (secret.len() == 32).then_some((id, secret))
}

fn digest_hex(secret: &[u8]) -> String {
    hex::encode(Sha256::digest(secret))
}

/// Equality that takes the same time wherever the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub struct TokenStore {
    db: Arc<DB>,
    cf: String,
    /// Records read since start, by id: every request authenticates, and this process is
    /// the only writer of the column family (an offline `ledger token` needs the server
    /// stopped), so a record changes only through `put`, which updates this first.
    cache: parking_lot::RwLock<std::collections::HashMap<String, TokenRecord>>,
    /// Bumped by every write.
    generation: std::sync::atomic::AtomicU64,
}

/// Most records cached; beyond, the cache starts over (tokens are few in practice).
const MAX_CACHED: usize = 65_536;

impl TokenStore {
    pub fn new(db: Arc<DB>, cf: String) -> Self {
        Self {
            db,
            cf,
            cache: Default::default(),
            generation: Default::default(),
        }
    }

    fn cf(&self) -> Result<&rocksdb::ColumnFamily, TokenError> {
        self.db
            .cf_handle(&self.cf)
            .ok_or_else(|| TokenError::Store(format!("no column family {}", self.cf)))
    }

    fn put(&self, r: &TokenRecord) -> Result<(), TokenError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        let v = serde_json::to_vec(r).map_err(|e| TokenError::Store(e.to_string()))?;
        // Under the cache's lock, with a new generation: a reader that fetched the old
        // record before this write cannot cache it afterwards (see `get`).
        let mut cache = self.cache.write();
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        cache.remove(&r.id);
        self.db
            .put_cf_opt(self.cf()?, r.id.as_bytes(), v, &wo)
            .map_err(|e| TokenError::Store(e.to_string()))
    }

    fn get(&self, id: &str) -> Result<Option<TokenRecord>, TokenError> {
        if let Some(r) = self.cache.read().get(id) {
            return Ok(Some(r.clone()));
        }
        let seen = self.generation.load(std::sync::atomic::Ordering::SeqCst);
        let r = self.read(id)?;
        if let Some(r) = &r {
            let mut cache = self.cache.write();
            // Cached only if no write happened since the read: else it may be stale.
            if self.generation.load(std::sync::atomic::Ordering::SeqCst) == seen {
                if cache.len() >= MAX_CACHED {
                    cache.clear();
                }
                cache.insert(id.to_string(), r.clone());
            }
        }
        Ok(r)
    }

    fn read(&self, id: &str) -> Result<Option<TokenRecord>, TokenError> {
        let Some(v) = self
            .db
            .get_pinned_cf(self.cf()?, id.as_bytes())
            .map_err(|e| TokenError::Store(e.to_string()))?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&v)
            .map(Some)
            .map_err(|e| TokenError::Store(format!("token record {id} is corrupt: {e}")))
    }

    /// Creates a token; the returned string is the only time the secret exists outside
    /// the caller.
    pub fn create(
        &self,
        principal: &str,
        roles: &BTreeSet<String>,
        lifetime_secs: u64,
        created_by: &str,
    ) -> Result<(String, TokenRecord), TokenError> {
        if !valid_name(principal) {
            return Err(TokenError::Invalid(format!(
                "principal {principal:?} must be 1-128 characters of [a-z0-9._@:/#-]"
            )));
        }
        if let Some(r) = roles.iter().find(|r| !valid_name(r)) {
            return Err(TokenError::Invalid(format!(
                "role {r:?} must be 1-128 characters of [a-z0-9._@:/#-]"
            )));
        }
        if lifetime_secs == 0 || lifetime_secs > MAX_LIFETIME_SECS {
            return Err(TokenError::Invalid(format!(
                "a token lives 1 second to {} days",
                MAX_LIFETIME_SECS / 86400
            )));
        }
        let mut rng = rand::rngs::OsRng;
        let mut id = [0u8; 8];
        let mut secret = [0u8; 32];
        rng.fill_bytes(&mut id);
        rng.fill_bytes(&mut secret);
        let id = hex::encode(id);
        let created = now();
        let record = TokenRecord {
            id: id.clone(),
            principal: principal.to_string(),
            roles: roles.clone(),
            created,
            expires: created + lifetime_secs,
            revoked: None,
            created_by: created_by.to_string(),
            secret_sha256: digest_hex(&secret),
        };
        self.put(&record)?;
        let token = format!("{PREFIX}{id}_{}", BASE64_URL_SAFE_NO_PAD.encode(secret));
        Ok((token, record))
    }

    /// The principal a presented token stands for.
    pub fn authenticate(&self, token: &str) -> Result<Principal, TokenError> {
        let (id, secret) = parse(token).ok_or(TokenError::Malformed)?;
        let r = self.get(id)?.ok_or(TokenError::Unknown)?;
        if !constant_time_eq(digest_hex(&secret).as_bytes(), r.secret_sha256.as_bytes()) {
            return Err(TokenError::Unknown);
        }
        if r.revoked.is_some() {
            return Err(TokenError::Revoked(r.id));
        }
        if now() >= r.expires {
            return Err(TokenError::Expired(r.id));
        }
        Ok(Principal {
            id: r.principal,
            method: AuthMethod::ApiToken { id: r.id },
            roles: r.roles,
            attributes: BTreeMap::new(),
            mfa: false,
        })
    }

    /// Revokes a token; revoking twice is harmless. `Ok(false)` if no such token.
    pub fn revoke(&self, id: &str) -> Result<bool, TokenError> {
        let Some(mut r) = self.get(id)? else {
            return Ok(false);
        };
        if r.revoked.is_none() {
            r.revoked = Some(now());
            self.put(&r)?;
        }
        Ok(true)
    }

    /// Every token record (no secrets), oldest first.
    pub fn list(&self) -> Result<Vec<TokenRecord>, TokenError> {
        let mut out = vec![];
        for item in self.db.iterator_cf(self.cf()?, IteratorMode::Start) {
            let (_, v) = item.map_err(|e| TokenError::Store(e.to_string()))?;
            out.push(
                serde_json::from_slice::<TokenRecord>(&v)
                    .map_err(|e| TokenError::Store(format!("corrupt token record: {e}")))?,
            );
        }
        out.sort_by_key(|r| r.created);
        Ok(out)
    }

    pub fn is_empty(&self) -> Result<bool, TokenError> {
        Ok(self
            .db
            .iterator_cf(self.cf()?, IteratorMode::Start)
            .next()
            .is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, TokenStore) {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::store::rocks::RocksDb::open(dir.path(), &[], 8 << 20).unwrap();
        let (db, cf) = db.process_family("access/tokens");
        (dir, TokenStore::new(db, cf))
    }

    fn roles(r: &[&str]) -> BTreeSet<String> {
        r.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_token_works_until_revoked_and_only_its_hash_is_stored() {
        let (_d, s) = store();
        let (token, rec) = s
            .create("alice", &roles(&["publisher"]), 3600, "offline")
            .unwrap();
        let p = s.authenticate(&token).unwrap();
        assert_eq!(p.id, "alice");
        assert_eq!(p.roles, roles(&["publisher"]));
        // `ldgr_<16 hex>_<secret>`: the base64url secret may itself hold '_'.
        let secret = &token[22..];
        let listed = serde_json::to_string(&s.list().unwrap()).unwrap();
        assert!(!listed.contains(secret), "the secret is not stored");
        assert!(s.revoke(&rec.id).unwrap());
        assert_eq!(
            s.authenticate(&token),
            Err(TokenError::Revoked(rec.id.clone()))
        );
        assert!(!s.revoke("0000000000000000").unwrap());
    }

    #[test]
    fn forged_malformed_and_expired_tokens_are_refused() {
        let (_d, s) = store();
        let (token, _) = s
            .create("bob", &roles(&["reader"]), 3600, "offline")
            .unwrap();
        // Same id, another secret.
        let prefix = &token[..21];
        let forged = format!("{prefix}_{}", BASE64_URL_SAFE_NO_PAD.encode([7u8; 32]));
        assert_eq!(s.authenticate(&forged), Err(TokenError::Unknown));
        for bad in [
            "",
            "ldgr_",
            "ldgr_zz_zz",
            "bearer",
            &token[..token.len() - 1],
            &format!("{token}x"),
            &token.to_uppercase(),
            &"ldgr_0123456789abcdef_".repeat(100),
        ] {
            assert!(s.authenticate(bad).is_err(), "{bad:?}");
        }
        // An expired record.
        let (t2, mut r2) = s.create("carol", &roles(&[]), 10, "offline").unwrap();
        r2.expires = now() - 1;
        s.put(&r2).unwrap();
        assert_eq!(s.authenticate(&t2), Err(TokenError::Expired(r2.id)));
    }

    #[test]
    fn bad_names_and_lifetimes_are_refused_with_reasons() {
        let (_d, s) = store();
        for (p, r, life) in [
            ("Alice", vec!["reader"], 60),
            ("a b", vec!["reader"], 60),
            ("alice", vec!["Reader"], 60),
            ("alice", vec!["reader"], 0),
            ("alice", vec!["reader"], MAX_LIFETIME_SECS + 1),
        ] {
            let e = s.create(p, &roles(&r), life, "offline").unwrap_err();
            assert!(matches!(e, TokenError::Invalid(_)), "{e}");
        }
        assert!(s.is_empty().unwrap());
    }
}
