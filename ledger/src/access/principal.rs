//! Who is asking: the principal every authenticated request carries, whatever proved it.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// How the principal proved who it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AuthMethod {
    /// A long-lived API token (`ldgr_<id>_<secret>`).
    ApiToken { id: String },
    /// A short-lived session token the ledger minted.
    Session,
    /// An OIDC identity token from a configured issuer (e.g. a CI workload identity).
    Oidc { issuer: String },
    /// A client certificate verified during the TLS handshake (`--tls-client-ca`);
    /// `fingerprint` is the hex SHA-256 of its DER. Named `mtls` like its Cedar `method`.
    #[serde(rename = "mtls")]
    ClientCertificate { fingerprint: String },
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// Stable identifier: the token's principal name, `<issuer>#<subject>` for OIDC, or the
    /// certificate's name (see `mtls`) for a client certificate.
    pub id: String,
    pub method: AuthMethod,
    pub roles: BTreeSet<String>,
    /// Attributes from the credential (e.g. `repository`, `branch` from a CI token).
    pub attributes: BTreeMap<String, String>,
    /// Whether the credential attests multi-factor authentication (OIDC `amr`).
    pub mfa: bool,
}

/// Roles and principal names are `[a-z0-9._@:/-]`, 1..=128 bytes: safe in policies, logs and
/// error messages.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-_@:/#".contains(&b))
}
