//! Attested proofs: a c2sp.org/tlog-proof whose checkpoint carries witness cosignatures
//! (c2sp.org/tlog-cosignature) and whose `extra` data holds RFC 3161 time-stamp tokens
//! over SHA-256 of the checkpoint's note text (specs/api.md, "Attested proofs").
//!
//! The `extra` payload is the tokens' DER encodings concatenated: DER is self-delimiting,
//! so no framing of our own is needed, and a single-token payload is just the token.
//! tlog-proof says the extra data is unauthenticated; the tokens authenticate themselves
//! (each is signed by an authority chaining to the verifier's roots and binds the
//! checkpoint's text), so nothing is trusted because of where it sits.

use crate::checkpoint::VerifiedCheckpoint;
use crate::merkle::Hash;
use crate::policy::{Policy, PolicyError};
use crate::timestamp::{verify_token, TsaRoots, VerifiedTimestamp, MAX_TOKEN_SIZE};
use crate::tlog_proof::TlogProof;

/// Most tokens one proof may carry.
pub const MAX_TOKENS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum AttestationError {
    #[error("{0}")]
    Proof(#[from] crate::error::TlogProofError),
    #[error("{0}")]
    Policy(#[from] PolicyError),
    #[error("the proof's extra data is not a sequence of DER time-stamp tokens: {0}")]
    MalformedTokens(String),
    #[error("the proof carries no time-stamp token, and time-stamping authorities are required")]
    NoTimestamp,
    #[error("time-stamp token #{index}: {message}")]
    BadTimestamp { index: usize, message: String },
}

impl AttestationError {
    /// Whether the input was unusable (as opposed to well-formed but failing verification).
    pub fn is_malformed(&self) -> bool {
        match self {
            AttestationError::Proof(e) => e.is_malformed(),
            AttestationError::MalformedTokens(_) => true,
            _ => false,
        }
    }
}

/// Splits concatenated DER values (each a SEQUENCE with a definite length) without
/// interpreting them.
pub fn split_tokens(mut extra: &[u8]) -> Result<Vec<&[u8]>, AttestationError> {
    let bad = |m: String| AttestationError::MalformedTokens(m);
    let mut out = vec![];
    while !extra.is_empty() {
        if out.len() == MAX_TOKENS {
            return Err(bad(format!("more than {MAX_TOKENS} tokens")));
        }
        if extra[0] != 0x30 {
            return Err(bad(format!(
                "token #{} starts with tag 0x{:02x}, not a SEQUENCE",
                out.len(),
                extra[0]
            )));
        }
        let (len, header) = match extra.get(1).copied() {
            None => return Err(bad("truncated length".into())),
            Some(l) if l < 0x80 => (l as usize, 2),
            Some(0x80) => return Err(bad("indefinite length is not DER".into())),
            Some(l) => {
                let n = (l & 0x7f) as usize;
                if n > 4 {
                    return Err(bad(format!("a {n}-byte length field")));
                }
                let bytes = extra
                    .get(2..2 + n)
                    .ok_or_else(|| bad("truncated length".into()))?;
                let len = bytes.iter().fold(0usize, |acc, &b| (acc << 8) | b as usize);
                (len, 2 + n)
            }
        };
        let total = header + len;
        if total > MAX_TOKEN_SIZE {
            return Err(bad(format!(
                "token #{} is {total} bytes; the limit is {MAX_TOKEN_SIZE}",
                out.len()
            )));
        }
        if extra.len() < total {
            return Err(bad(format!(
                "token #{} claims {total} bytes but only {} remain",
                out.len(),
                extra.len()
            )));
        }
        out.push(&extra[..total]);
        extra = &extra[total..];
    }
    Ok(out)
}

/// What an attested proof was verified to say.
#[derive(Debug, Clone)]
pub struct AttestedProof {
    pub checkpoint: VerifiedCheckpoint,
    /// (witness policy name, cosignature time) of each witness whose cosignature verified.
    pub cosigners: Vec<(String, u64)>,
    /// Every token in the proof, verified.
    pub timestamps: Vec<VerifiedTimestamp>,
}

/// What the verifier requires beyond the inclusion proof and the log's signature.
#[derive(Default, Clone, Copy)]
pub struct Requirements<'a> {
    /// Witness quorum (and accepted logs) per c2sp.org/tlog-policy.
    pub policy: Option<&'a Policy>,
    /// When given, at least one token must be present, and every token must verify.
    pub tsa_roots: Option<&'a TsaRoots>,
}

/// Verifies `proof` for `leaf`: inclusion and the log signature (by one of `log_vkeys`
/// or the policy's logs), then the witness quorum and the time-stamps as required.
pub fn verify_attested_proof(
    proof: &TlogProof,
    leaf: &Hash,
    log_vkeys: &[&str],
    origin: Option<&str>,
    req: Requirements<'_>,
) -> Result<AttestedProof, AttestationError> {
    let mut vkeys: Vec<&str> = log_vkeys.to_vec();
    if let Some(p) = req.policy {
        vkeys.extend(p.logs().iter().map(|l| l.vkey.as_str()));
    }
    let checkpoint = proof.verify(leaf, &vkeys, origin)?;
    let cosigners = match req.policy {
        Some(p) => p.verify_checkpoint(&checkpoint.note, &vkeys)?.cosigners,
        None => vec![],
    };
    let mut timestamps = vec![];
    if let Some(roots) = req.tsa_roots {
        let tokens = match &proof.extra {
            Some(extra) => split_tokens(extra)?,
            None => vec![],
        };
        if tokens.is_empty() {
            return Err(AttestationError::NoTimestamp);
        }
        for (index, t) in tokens.iter().enumerate() {
            let v = verify_token(t, checkpoint.text(), None, roots).map_err(|e| {
                AttestationError::BadTimestamp {
                    index,
                    message: e.to_string(),
                }
            })?;
            timestamps.push(v);
        }
    }
    Ok(AttestedProof {
        checkpoint,
        cosigners,
        timestamps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concatenated_der_splits_and_hostile_framing_is_refused() {
        let a = [0x30, 0x03, 1, 2, 3];
        let mut long = vec![0x30, 0x81, 0x80];
        long.extend(std::iter::repeat_n(7u8, 0x80));
        let joined = [&a[..], &long].concat();
        let parts = split_tokens(&joined).unwrap();
        assert_eq!(parts, vec![&a[..], &long[..]]);
        assert!(split_tokens(&[]).unwrap().is_empty());
        for bad in [
            &[0x31, 0x00][..],                         // not a SEQUENCE
            &[0x30][..],                               // no length
            &[0x30, 0x80, 0, 0][..],                   // indefinite length
            &[0x30, 0x85, 1, 1, 1, 1, 1],              // 5-byte length
            &[0x30, 0x05, 1, 2][..],                   // truncated body
            &[0x30, 0x84, 0xff, 0xff, 0xff, 0xff][..], // beyond the size limit
        ] {
            let e = split_tokens(bad).unwrap_err();
            assert!(e.is_malformed(), "{bad:?}: {e}");
        }
        let many: Vec<u8> = std::iter::repeat_n([0x30u8, 0x00], MAX_TOKENS + 1)
            .flatten()
            .collect();
        assert!(split_tokens(&many)
            .unwrap_err()
            .to_string()
            .contains("more than"));
    }
}
