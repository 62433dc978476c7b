//! OIDC identity tokens from CI and other workload-identity providers.
//!
//! Issuers and their keys are configured (the JWKS comes from a file: verification needs no
//! network). A token is accepted when its signature verifies with a key of the issuer it
//! names, and `iss`, `aud`, `exp` and `nbf` hold with a small leeway. Claims become the
//! principal's attributes (e.g. `repository`, `branch`), `amr` tells whether the identity
//! was proven with multiple factors, and configured rules map claims to roles.

use super::principal::{AuthMethod, Principal};
use anyhow::{bail, Context, Result};
use base64::prelude::*;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Clock skew tolerated on `exp` and `nbf` (seconds).
pub const LEEWAY_SECS: u64 = 60;

/// Largest JWKS file and largest token accepted.
const MAX_JWKS_BYTES: u64 = 1 << 20;
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Signature algorithms accepted from issuers: asymmetric only. `none` and the HMAC
/// family are refused outright (a public key used as an HMAC secret is the classic JWT
/// forgery).
const ACCEPTED: [Algorithm; 7] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// A role granted when every listed claim has the given value.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleRule {
    pub role: String,
    pub claims: BTreeMap<String, String>,
}

/// One trusted issuer, as configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    pub issuer: String,
    pub audience: String,
    pub jwks_file: std::path::PathBuf,
    /// Principal attribute name → claim name.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// `amr` values that count as multi-factor.
    #[serde(default = "default_mfa_amr")]
    pub mfa_amr: Vec<String>,
    #[serde(default)]
    pub roles: Vec<RoleRule>,
}

fn default_mfa_amr() -> Vec<String> {
    vec!["mfa".into(), "hwk".into(), "otp".into()]
}

struct Issuer {
    config: IssuerConfig,
    keys: JwkSet,
}

pub struct Oidc {
    issuers: Vec<Issuer>,
}

/// A claim value as attribute text: strings as they are, other scalars printed.
fn claim_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(_) | Value::Number(_) => Some(v.to_string()),
        _ => None,
    }
}

impl Oidc {
    /// Loads every issuer's JWKS; relative paths are resolved against `base`.
    pub fn load(configs: &[IssuerConfig], base: &Path) -> Result<Self> {
        let mut issuers = vec![];
        for c in configs {
            if issuers.iter().any(|i: &Issuer| i.config.issuer == c.issuer) {
                bail!("OIDC issuer {} is configured twice", c.issuer);
            }
            let path = base.join(&c.jwks_file);
            use std::io::Read;
            let mut buf = vec![];
            std::fs::File::open(&path)
                .with_context(|| format!("opening JWKS {}", path.display()))?
                .take(MAX_JWKS_BYTES + 1)
                .read_to_end(&mut buf)
                .with_context(|| format!("reading JWKS {}", path.display()))?;
            if buf.len() as u64 > MAX_JWKS_BYTES {
                bail!(
                    "JWKS {} is larger than {MAX_JWKS_BYTES} bytes",
                    path.display()
                );
            }
            let keys: JwkSet = serde_json::from_slice(&buf)
                .with_context(|| format!("JWKS {} is not a JSON Web Key Set", path.display()))?;
            if keys.keys.is_empty() {
                bail!("JWKS {} holds no key", path.display());
            }
            for k in &keys.keys {
                DecodingKey::from_jwk(k)
                    .with_context(|| format!("a key in JWKS {} is not usable", path.display()))?;
            }
            for r in &c.roles {
                if !super::principal::valid_name(&r.role) || r.claims.is_empty() {
                    bail!(
                        "OIDC issuer {}: role rule {:?} needs a valid role name and at least one claim",
                        c.issuer,
                        r.role
                    );
                }
            }
            issuers.push(Issuer {
                config: c.clone(),
                keys,
            });
        }
        Ok(Self { issuers })
    }

    pub fn is_empty(&self) -> bool {
        self.issuers.is_empty()
    }

    /// The principal of an identity token, or why it is refused.
    pub fn authenticate(&self, token: &str) -> Result<Principal, String> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err("identity token is too large".into());
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| format!("not a JWT: {e}"))?;
        if !ACCEPTED.contains(&header.alg) {
            return Err(format!(
                "identity token algorithm {:?} is not accepted",
                header.alg
            ));
        }
        // Pick the issuer by the (still unverified) `iss` claim; everything is verified
        // against that issuer's keys below, so a lie here only selects the wrong keys.
        let payload = token.split('.').nth(1).unwrap_or("");
        let unverified: Map<String, Value> = BASE64_URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or("identity token payload is not a JSON object")?;
        let iss = unverified
            .get("iss")
            .and_then(Value::as_str)
            .ok_or("identity token has no iss claim")?;
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.config.issuer == iss)
            .ok_or_else(|| format!("issuer {iss:?} is not trusted"))?;
        let candidates: Vec<_> = issuer
            .keys
            .keys
            .iter()
            .filter(|k| match (&header.kid, &k.common.key_id) {
                (Some(want), Some(have)) => want == have,
                (Some(_), None) => false,
                (None, _) => true,
            })
            .collect();
        if candidates.is_empty() {
            return Err(format!(
                "no key of issuer {iss} has kid {:?}",
                header.kid.as_deref().unwrap_or("")
            ));
        }
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[&issuer.config.issuer]);
        v.set_audience(&[&issuer.config.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        v.validate_nbf = true;
        v.leeway = LEEWAY_SECS;
        let mut last = String::new();
        for k in candidates {
            let Ok(key) = DecodingKey::from_jwk(k) else {
                continue;
            };
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key, &v) {
                Ok(data) => return Ok(principal(&issuer.config, &data.claims)),
                Err(e) => last = e.to_string(),
            }
        }
        Err(format!("identity token refused: {last}"))
    }
}

fn principal(c: &IssuerConfig, claims: &Map<String, Value>) -> Principal {
    let sub = claims.get("sub").and_then(claim_text).unwrap_or_default();
    let attributes: BTreeMap<String, String> = c
        .attributes
        .iter()
        .filter_map(|(attr, claim)| Some((attr.clone(), claims.get(claim).and_then(claim_text)?)))
        .collect();
    let mfa = claims
        .get("amr")
        .and_then(Value::as_array)
        .is_some_and(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .any(|m| c.mfa_amr.iter().any(|x| x == m))
        });
    let roles: BTreeSet<String> = c
        .roles
        .iter()
        .filter(|r| {
            r.claims
                .iter()
                .all(|(k, want)| claims.get(k).and_then(claim_text).as_deref() == Some(want))
        })
        .map(|r| r.role.clone())
        .collect();
    Principal {
        id: format!("{}#{sub}", c.issuer),
        method: AuthMethod::Oidc {
            issuer: c.issuer.clone(),
        },
        roles,
        attributes,
        mfa,
    }
}
