//! Short-lived session tokens the ledger mints: a JWT (RFC 7519) signed with the ledger's
//! own Ed25519 session key (EdDSA, RFC 8037), valid for at most 15 minutes.
//!
//! A caller trades a long-lived credential (an API token, a CI identity token) for a
//! session once, and presents the session afterwards: the long-lived secret crosses the
//! network once, and a leaked session expires quickly. The session key lives in
//! `<data-dir>/keys/session.key` (mode 0600); it is separate from every log key, so
//! sessions can never be confused with checkpoints.

use super::principal::{AuthMethod, Principal};
use super::tokens::now;
use anyhow::{Context, Result};
use base64::prelude::*;
use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The longest session the issue allows.
pub const MAX_SESSION_SECS: u64 = 15 * 60;

/// `iss` and `aud` of every session token: they are only ever for this ledger.
const ISSUER: &str = "ledger-session";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    sub: String,
    iat: u64,
    nbf: u64,
    exp: u64,
    roles: BTreeSet<String>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    #[serde(default)]
    mfa: bool,
    /// How the principal authenticated when the session was minted.
    via: AuthMethod,
}

pub struct SessionKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl: u64,
}

/// PKCS#8 v1 wrapping of an Ed25519 seed (RFC 8410 §7): a fixed 16-byte header.
fn pkcs8(seed: &[u8; 32]) -> Vec<u8> {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(seed);
    der
}

impl SessionKeys {
    /// Loads `<dir>/session.key`, creating it on first use.
    pub fn load_or_generate(dir: &Path, ttl_secs: u64) -> Result<Self> {
        let path = dir.join("session.key");
        if !path.exists() {
            let key = SigningKey::generate(&mut rand::rngs::OsRng);
            crate::keys::write_private(
                &path,
                "session key",
                &format!("{}\n", BASE64_STANDARD.encode(key.to_bytes())),
            )?;
        }
        let text = crate::keys::read_private(&path, "session key")?;
        let seed: [u8; 32] = BASE64_STANDARD
            .decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .with_context(|| format!("{} is not a base64 Ed25519 seed", path.display()))?;
        Ok(Self::from_seed(&seed, ttl_secs))
    }

    pub fn from_seed(seed: &[u8; 32], ttl_secs: u64) -> Self {
        let key = SigningKey::from_bytes(seed);
        Self {
            encoding: EncodingKey::from_ed_der(&pkcs8(seed)),
            decoding: DecodingKey::from_ed_der(key.verifying_key().as_bytes()),
            ttl: ttl_secs.clamp(1, MAX_SESSION_SECS),
        }
    }

    pub fn ttl(&self) -> u64 {
        self.ttl
    }

    /// A session token for `p`, and its expiry (unix seconds).
    pub fn mint(&self, p: &Principal) -> Result<(String, u64)> {
        let iat = now();
        let claims = Claims {
            iss: ISSUER.into(),
            aud: ISSUER.into(),
            sub: p.id.clone(),
            iat,
            nbf: iat,
            exp: iat + self.ttl,
            roles: p.roles.clone(),
            attributes: p.attributes.clone(),
            mfa: p.mfa,
            via: p.method.clone(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &self.encoding)
            .context("signing the session token")?;
        Ok((token, claims.exp))
    }

    /// The principal of a session token we minted, if it is valid now.
    pub fn verify(&self, token: &str) -> Result<Principal, String> {
        let mut v = Validation::new(Algorithm::EdDSA);
        v.set_issuer(&[ISSUER]);
        v.set_audience(&[ISSUER]);
        v.validate_nbf = true;
        // Our own clock signed it: no leeway beyond a few seconds of rounding.
        v.leeway = 5;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &v)
            .map_err(|e| format!("session token refused: {e}"))?;
        let c = data.claims;
        // A forged lifetime cannot get past the signature, but a key shared by mistake
        // with another minting program could: hold every session to the limit.
        if c.exp.saturating_sub(c.iat) > MAX_SESSION_SECS {
            return Err("session token lives longer than 15 minutes".into());
        }
        Ok(Principal {
            id: c.sub,
            method: AuthMethod::Session,
            roles: c.roles,
            attributes: c.attributes,
            mfa: c.mfa,
        })
    }
}

/// Whether a bearer credential looks like a JWT (three base64url parts).
pub fn looks_like_jwt(s: &str) -> bool {
    s.split('.').count() == 3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Principal {
        Principal {
            id: "alice".into(),
            method: AuthMethod::ApiToken {
                id: "0123456789abcdef".into(),
            },
            roles: ["publisher".to_string()].into(),
            attributes: [("team".to_string(), "vision".to_string())].into(),
            mfa: true,
        }
    }

    #[test]
    fn a_minted_session_verifies_and_carries_the_principal() {
        let k = SessionKeys::from_seed(&[3; 32], 600);
        let (t, exp) = k.mint(&alice()).unwrap();
        assert!(exp <= now() + 600);
        let p = k.verify(&t).unwrap();
        assert_eq!(p.id, "alice");
        assert_eq!(p.method, AuthMethod::Session);
        assert!(p.mfa);
        assert_eq!(p.attributes["team"], "vision");
    }

    #[test]
    fn sessions_are_capped_at_15_minutes_and_other_keys_are_refused() {
        let k = SessionKeys::from_seed(&[3; 32], 24 * 3600);
        assert_eq!(k.ttl(), MAX_SESSION_SECS);
        let other = SessionKeys::from_seed(&[4; 32], 600);
        let (t, _) = other.mint(&alice()).unwrap();
        assert!(k.verify(&t).is_err());
        // Tampered payload.
        let (t, _) = k.mint(&alice()).unwrap();
        let mut parts: Vec<String> = t.split('.').map(str::to_string).collect();
        parts[1] = BASE64_URL_SAFE_NO_PAD.encode(br#"{"iss":"ledger-session","aud":"ledger-session","sub":"root","iat":1,"nbf":1,"exp":99999999999,"roles":["admin"],"via":{"kind":"session"}}"#);
        assert!(k.verify(&parts.join(".")).is_err());
        for junk in ["", "a.b.c", "..", "x"] {
            assert!(k.verify(junk).is_err(), "{junk:?}");
        }
    }

    #[test]
    fn an_expired_session_is_refused() {
        let k = SessionKeys::from_seed(&[3; 32], 60);
        let claims = Claims {
            iss: ISSUER.into(),
            aud: ISSUER.into(),
            sub: "alice".into(),
            iat: now() - 120,
            nbf: now() - 120,
            exp: now() - 60,
            roles: BTreeSet::new(),
            attributes: BTreeMap::new(),
            mfa: false,
            via: AuthMethod::Session,
        };
        let t = jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &k.encoding).unwrap();
        let e = k.verify(&t).unwrap_err();
        assert!(e.contains("xpired"), "{e}");
    }
}
