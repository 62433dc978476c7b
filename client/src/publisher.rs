//! Publisher signatures on `published` events (specs/entries.md, "Publisher signatures").
//!
//! A publisher holds an Ed25519 key in the signed-note key formats (`ledger keygen` writes
//! them; c2sp.org/signed-note#verifier-keys). It signs [`Published::signed_payload`], the
//! event without `sig` and `time`, and the entry carries `sig = {alg: "ed25519",
//! keyid: "<key name>+<hex key id>", sig: <64 bytes>}`. Anyone holding the publisher's vkey
//! can then check, offline, that these exact bytes were published by that key: the
//! ledger stores the signature as given and cannot make one.

use crate::checkpoint::{parse_vkey, VerifierKey, VkeyError};
use crate::event::{Published, Signature};
use signed_note::{Signer as _, Verifier as _};

/// The only algorithm defined so far.
pub const ALG: &str = "ed25519";

#[derive(Debug, thiserror::Error)]
pub enum PublisherKeyError {
    #[error(
        "publisher signing key: not a signed-note private key (PRIVATE+KEY+<name>+<id>+<key>)"
    )]
    Signer,
    #[error("publisher signing key: signing failed: {0}")]
    Signing(String),
    #[error("publisher key: {0}")]
    Vkey(#[from] VkeyError),
}

/// `<name>+<hex id>`: how a key is named in `sig.keyid`.
pub fn keyid(name: &str, id: u32) -> String {
    format!("{name}+{id:08x}")
}

/// Signs `p` (its `sig` and `time` are ignored) with a signed-note private key.
pub fn sign(skey: &str, p: &Published) -> Result<Signature, PublisherKeyError> {
    let signer =
        signed_note::StandardSigner::new(skey.trim()).map_err(|_| PublisherKeyError::Signer)?;
    let sig = signer
        .sign(&p.signed_payload())
        .map_err(|e| PublisherKeyError::Signing(e.to_string()))?;
    Ok(Signature {
        alg: ALG.to_string(),
        keyid: keyid(signer.name(), signer.key_id()),
        sig,
    })
}

/// What a set of trusted publisher keys says of a published version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Signed by this trusted key, and the signature holds.
    Signed(String),
    Unsigned,
    /// Signed with an algorithm other than [`ALG`].
    UnknownAlgorithm(String),
    /// Signed by a key that is not among the trusted ones.
    UnknownKey(String),
    /// The key is trusted but the signature does not hold over these bytes: a forgery, or
    /// an entry changed after signing.
    BadSignature(String),
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Signed(k) => write!(f, "signed by publisher key {k}"),
            Verdict::Unsigned => write!(f, "unsigned"),
            Verdict::UnknownAlgorithm(a) => write!(f, "signed with unknown algorithm {a:?}"),
            Verdict::UnknownKey(k) => write!(f, "signed by key {k:?}, not a trusted publisher key"),
            Verdict::BadSignature(k) => write!(
                f,
                "signed, but its signature by trusted key {k} does not verify over the logged event"
            ),
        }
    }
}

/// The publisher keys a verifier trusts.
#[derive(Debug, Default)]
pub struct PublisherKeys(Vec<VerifierKey>);

impl PublisherKeys {
    /// Parses vkeys (`<name>+<hex id>+<base64>`).
    pub fn parse<S: AsRef<str>>(vkeys: &[S]) -> Result<PublisherKeys, PublisherKeyError> {
        vkeys
            .iter()
            .map(|v| parse_vkey(v.as_ref().trim()).map_err(PublisherKeyError::from))
            .collect::<Result<_, _>>()
            .map(PublisherKeys)
    }

    pub fn check(&self, p: &Published) -> Verdict {
        let Some(s) = &p.sig else {
            return Verdict::Unsigned;
        };
        if s.alg != ALG {
            return Verdict::UnknownAlgorithm(s.alg.clone());
        }
        let Some(k) = self
            .0
            .iter()
            .find(|k| keyid(k.name(), k.key_id()) == s.keyid)
        else {
            return Verdict::UnknownKey(s.keyid.clone());
        };
        if k.verifier().verify(&p.signed_payload(), &s.sig) {
            Verdict::Signed(s.keyid.clone())
        } else {
            Verdict::BadSignature(s.keyid.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;
    use crate::event::Kind;
    use rand::rngs::OsRng;

    fn published() -> Published {
        Published {
            name: "models/m".into(),
            version: "1".into(),
            kind: Kind::Model,
            digest: Digest([7; 32]),
            size: 42,
            media_type: "application/octet-stream".into(),
            meta_digest: None,
            meta: None,
            actor: "ci".into(),
            sig: None,
            time: 0,
        }
    }

    #[test]
    fn a_signature_holds_over_the_logged_event_whatever_time_the_ledger_stamps() {
        let (skey, vkey) = signed_note::generate_key(&mut OsRng, "release.example/ci");
        let keys = PublisherKeys::parse(&[&vkey]).unwrap();
        let mut p = published();
        p.sig = Some(sign(&skey, &p).unwrap());
        p.time = 1_800_000_000;
        let id = vkey.splitn(3, '+').take(2).collect::<Vec<_>>().join("+");
        assert_eq!(keys.check(&p), Verdict::Signed(id.clone()));
        // Independently: a raw Ed25519 signature over the payload, by the vkey's key.
        let raw = base64::Engine::decode(
            &base64::engine::general_purpose::STANDARD,
            vkey.splitn(3, '+').nth(2).unwrap(),
        )
        .unwrap();
        let vk = ed25519_dalek::VerifyingKey::from_bytes(raw[1..].try_into().unwrap()).unwrap();
        let sig = ed25519_dalek::Signature::from_slice(&p.sig.as_ref().unwrap().sig).unwrap();
        vk.verify_strict(&p.signed_payload(), &sig).unwrap();

        // Any change of what was signed breaks it.
        for change in [
            (|p: &mut Published| p.digest = Digest([8; 32])) as fn(&mut Published),
            |p| p.size += 1,
            |p| p.actor = "someone else".into(),
            |p| p.version = "2".into(),
        ] {
            let mut q = p.clone();
            change(&mut q);
            assert_eq!(keys.check(&q), Verdict::BadSignature(id.clone()));
        }
    }

    #[test]
    fn unsigned_unknown_keys_and_algorithms_are_told_apart() {
        let (skey, _) = signed_note::generate_key(&mut OsRng, "other.example/ci");
        let (_, trusted) = signed_note::generate_key(&mut OsRng, "release.example/ci");
        let keys = PublisherKeys::parse(&[trusted]).unwrap();
        let mut p = published();
        assert_eq!(keys.check(&p), Verdict::Unsigned);
        let s = sign(&skey, &p).unwrap();
        p.sig = Some(s.clone());
        assert!(
            matches!(keys.check(&p), Verdict::UnknownKey(k) if k.starts_with("other.example/ci+"))
        );
        p.sig = Some(Signature {
            alg: "rsa".into(),
            ..s
        });
        assert_eq!(keys.check(&p), Verdict::UnknownAlgorithm("rsa".into()));
    }

    #[test]
    fn a_forged_signature_under_a_trusted_keyid_is_refused() {
        let (skey, vkey) = signed_note::generate_key(&mut OsRng, "release.example/ci");
        // Another key of the same name: its key id differs, so name it as the trusted one.
        let (other, _) = signed_note::generate_key(&mut OsRng, "release.example/ci");
        let keys = PublisherKeys::parse(&[&vkey]).unwrap();
        let mut p = published();
        let mut forged = sign(&other, &p).unwrap();
        forged.keyid = sign(&skey, &p).unwrap().keyid;
        p.sig = Some(forged);
        assert!(matches!(keys.check(&p), Verdict::BadSignature(_)));
    }

    #[test]
    fn malformed_keys_are_refused() {
        assert!(sign("not a key", &published()).is_err());
        assert!(PublisherKeys::parse(&["nope"]).is_err());
        assert!(PublisherKeys::parse(&["a+00000000+AAAA"]).is_err());
    }
}
