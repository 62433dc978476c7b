//! The access-control configuration file (`--access-config`, JSON) and the state built
//! from it.

use super::authz::PolicyEngine;
use super::governance::GovernanceConfig;
use super::grants::{GrantStore, GrantsConfig};
use super::limits::{LimitsConfig, RateLimiter};
use super::mtls::MtlsConfig;
use super::oidc::{IssuerConfig, Oidc};
use super::principal::Principal;
use super::session::SessionKeys;
use super::tokens::{TokenStore, PREFIX};
use anyhow::{Context, Result};
use parking_lot::RwLock;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// `--access-config` file contents. Paths are relative to the file's directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessConfig {
    /// Cedar schema; the shipped one (`ledger/access/schema.cedarschema`) if absent.
    #[serde(default)]
    pub schema: Option<PathBuf>,
    /// Cedar policies; the shipped defaults (`ledger/access/policies.cedar`) if absent.
    #[serde(default)]
    pub policies: Option<PathBuf>,
    /// Lifetime of minted sessions, at most 900 seconds.
    #[serde(default = "default_ttl")]
    pub session_ttl_seconds: u64,
    /// Trusted OIDC issuers.
    #[serde(default)]
    pub oidc: Vec<IssuerConfig>,
    /// Per-principal request rates (specs/access.md, "Abuse limits").
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Rules on what changes must carry (specs/access.md, "Governance").
    #[serde(default)]
    pub governance: GovernanceConfig,
    /// Short-lived grants (specs/access.md, "Grants").
    #[serde(default)]
    pub grants: GrantsConfig,
    /// Roles of client certificates (mutual TLS, `--tls-client-ca`), by certificate name.
    #[serde(default)]
    pub mtls: MtlsConfig,
}

fn default_ttl() -> u64 {
    super::session::MAX_SESSION_SECS
}

/// Everything a request is checked against.
pub struct Access {
    pub tokens: TokenStore,
    pub grants: GrantStore,
    pub sessions: SessionKeys,
    pub oidc: Oidc,
    /// One bucket per authenticated principal...
    pub principal_limits: RateLimiter,
    /// ...and one per source address whose credential is missing or refused.
    pub unauthenticated_limits: RateLimiter,
    policy: RwLock<Arc<PolicyEngine>>,
    config: AccessConfig,
    base: PathBuf,
}

/// Reads the config file (at most 1 MiB).
fn read_config(path: &Path) -> Result<AccessConfig> {
    let text = std::fs::read(path)
        .with_context(|| format!("reading access configuration {}", path.display()))?;
    if text.len() > 1 << 20 {
        anyhow::bail!(
            "access configuration {} is larger than 1 MiB",
            path.display()
        );
    }
    serde_json::from_slice(&text)
        .with_context(|| format!("parsing access configuration {}", path.display()))
}

fn load_policy(config: &AccessConfig, base: &Path) -> Result<PolicyEngine> {
    match (&config.schema, &config.policies) {
        (None, None) => PolicyEngine::default_set(),
        (schema, policies) => {
            let schema_text = match schema {
                Some(p) => std::fs::read_to_string(base.join(p))
                    .with_context(|| format!("reading Cedar schema {}", base.join(p).display()))?,
                None => super::authz::DEFAULT_SCHEMA.to_string(),
            };
            let policy_text = match policies {
                Some(p) => std::fs::read_to_string(base.join(p)).with_context(|| {
                    format!("reading Cedar policies {}", base.join(p).display())
                })?,
                None => super::authz::DEFAULT_POLICIES.to_string(),
            };
            PolicyEngine::new(&schema_text, &policy_text)
        }
    }
}

impl Access {
    /// Loads the configuration, the policies (refusing a set that does not validate), the
    /// OIDC issuers' keys and the session key.
    pub fn load(
        path: &Path,
        key_dir: &Path,
        tokens: TokenStore,
        grants: GrantStore,
    ) -> Result<Self> {
        let config = read_config(path)?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        config
            .limits
            .check()
            .map_err(|e| anyhow::anyhow!("access configuration {}: {e}", path.display()))?;
        config
            .governance
            .check()
            .map_err(|e| anyhow::anyhow!("access configuration {}: {e}", path.display()))?;
        config
            .grants
            .check()
            .map_err(|e| anyhow::anyhow!("access configuration {}: {e}", path.display()))?;
        let policy = load_policy(&config, &base)?;
        config.mtls.check()?;
        let oidc = Oidc::load(&config.oidc, &base)?;
        let sessions = SessionKeys::load_or_generate(key_dir, config.session_ttl_seconds)?;
        Ok(Self {
            tokens,
            grants,
            sessions,
            oidc,
            principal_limits: RateLimiter::new(
                config.limits.requests_per_second,
                config.limits.burst,
            ),
            unauthenticated_limits: RateLimiter::new(
                config.limits.unauthenticated_per_second,
                config.limits.unauthenticated_burst,
            ),
            policy: RwLock::new(Arc::new(policy)),
            config,
            base,
        })
    }

    /// The governance rules.
    pub fn governance(&self) -> &GovernanceConfig {
        &self.config.governance
    }

    /// The grant rules.
    pub fn grants_config(&self) -> &GrantsConfig {
        &self.config.grants
    }

    /// The policy set in force.
    pub fn policy(&self) -> Arc<PolicyEngine> {
        self.policy.read().clone()
    }

    /// Re-reads the schema and policy files. An invalid set is refused and the set in
    /// force stays in force. Returns the digest in force afterwards.
    pub fn reload_policy(&self) -> Result<Arc<PolicyEngine>> {
        let engine = Arc::new(load_policy(&self.config, &self.base)?);
        *self.policy.write() = engine.clone();
        Ok(engine)
    }

    /// The principal a client certificate names; rustls verified its chain during the
    /// handshake.
    pub fn authenticate_certificate(&self, der: &[u8]) -> Result<Principal, String> {
        self.config.mtls.authenticate(der)
    }

    /// The principal a bearer credential proves, or why it proves nothing.
    pub fn authenticate(&self, bearer: &str) -> Result<Principal, String> {
        if bearer.starts_with(PREFIX) {
            return self.tokens.authenticate(bearer).map_err(|e| e.to_string());
        }
        if !super::session::looks_like_jwt(bearer) {
            return Err("the bearer credential is neither an API token nor a JWT".into());
        }
        // Our own sessions first (a local signature check); then the configured issuers.
        match self.sessions.verify(bearer) {
            Ok(p) => Ok(p),
            Err(session_err) if self.oidc.is_empty() => Err(session_err),
            Err(_) => self.oidc.authenticate(bearer),
        }
    }
}
