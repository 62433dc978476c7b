//! `TimeStampReq` construction and `TimeStampResp` unwrapping (RFC 3161 §2.4.1, §2.4.2).

use der::asn1::{Int, OctetString, Uint};
use der::{Any, Decode, Encode, Tag};
use sha2::{Digest, Sha256};
use spki::AlgorithmIdentifier;

use super::asn1::{fail_info, oid, status, MessageImprint, PkiStatusInfo, TimeStampReq, Tlv};
use super::MAX_TOKEN_SIZE;
use crate::error::TimestampError;

/// A DER `TimeStampReq` ready to POST, with what the answer must echo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimestampRequest {
    /// DER `TimeStampReq`, sent as `application/timestamp-query` (RFC 3161 §3.4).
    pub der: Vec<u8>,
    /// The nonce the token must carry (RFC 3161 §2.4.2).
    pub nonce: u64,
    /// SHA-256 of the message: the token's messageImprint.
    pub imprint: [u8; 32],
}

impl TimestampRequest {
    /// DER TimeStampReq (RFC 3161 §2.4.1): version 1, SHA-256 imprint of `message`, the
    /// nonce, certReq TRUE (so the token carries the certificates needed to verify it), no
    /// reqPolicy (the authority's default policy) and no extensions.
    pub fn new(message: &[u8], nonce: u64) -> Self {
        let imprint: [u8; 32] = Sha256::digest(message).into();
        // Every field is fixed-size and valid, so encoding cannot fail; an empty request
        // (which any authority refuses) would be the visible result if it ever did.
        let der = encode_request(&imprint, nonce).unwrap_or_default();
        TimestampRequest {
            der,
            nonce,
            imprint,
        }
    }
}

fn encode_request(imprint: &[u8; 32], nonce: u64) -> der::Result<Vec<u8>> {
    TimeStampReq {
        version: Int::new(&[1])?,
        message_imprint: MessageImprint {
            // NULL parameters, as OpenSSL sends them: RFC 5754 §2 has verifiers accept both
            // NULL and absent, and some older authorities know only NULL.
            hash_algorithm: AlgorithmIdentifier {
                oid: oid::SHA256,
                parameters: Some(Any::null()),
            },
            hashed_message: OctetString::new(imprint.as_slice())?,
        },
        req_policy: None,
        nonce: Some(positive_int(nonce)?),
        cert_req: true,
        extensions: None,
    }
    .to_der()
}

/// A non-negative `INTEGER` (a leading zero byte is added when the top bit is set).
pub fn positive_int(n: u64) -> der::Result<Int> {
    Ok(Int::from(Uint::new(&n.to_be_bytes())?))
}

/// Parses a DER TimeStampResp (RFC 3161 §2.4.2) and returns the timeStampToken (a DER
/// ContentInfo, byte for byte as received) when the status is granted or grantedWithMods;
/// otherwise an error naming the status, failInfo and statusString.
///
/// The token itself is not verified here: pass it to [`super::verify_token`].
pub fn token_from_response(der: &[u8]) -> Result<Vec<u8>, TimestampError> {
    if der.len() > MAX_TOKEN_SIZE {
        return Err(TimestampError::TooLarge);
    }
    let malformed =
        |what: &str, e: der::Error| TimestampError::Malformed(format!("TimeStampResp {what}: {e}"));
    let resp = Tlv::parse(der).map_err(|e| malformed("is not one DER element", e))?;
    if resp.tag != Tag::Sequence {
        return Err(TimestampError::Malformed(format!(
            "TimeStampResp must be a SEQUENCE, found {}",
            resp.tag
        )));
    }
    let parts = resp.children().map_err(|e| malformed("contents", e))?;
    let (status_tlv, token) = match parts.as_slice() {
        [s] => (s, None),
        [s, t] => (s, Some(t)),
        _ => {
            return Err(TimestampError::Malformed(format!(
                "TimeStampResp has {} elements, expected status and an optional token",
                parts.len()
            )))
        }
    };
    let info = PkiStatusInfo::from_der(status_tlv.full).map_err(|e| malformed("status", e))?;
    match (info.status, token) {
        (status::GRANTED | status::GRANTED_WITH_MODS, Some(t)) => {
            if t.tag != Tag::Sequence {
                return Err(TimestampError::Malformed(
                    "timeStampToken is not a ContentInfo SEQUENCE".into(),
                ));
            }
            Ok(t.full.to_vec())
        }
        (status::GRANTED | status::GRANTED_WITH_MODS, None) => Err(TimestampError::Malformed(
            "status is granted but the response carries no timeStampToken (RFC 3161 §2.4.2)".into(),
        )),
        (s, _) => Err(TimestampError::Rejected {
            status: format!("{} ({s})", status::name(s)),
            fail_info: fail_info_names(info.fail_info.as_ref()),
            text: info.status_string.unwrap_or_default().join("; "),
        }),
    }
}

/// Names of the bits set in a `PKIFailureInfo`, e.g. `badAlg, unacceptedPolicy`.
fn fail_info_names(bits: Option<&der::asn1::BitString>) -> String {
    let Some(bits) = bits else {
        return "absent".into();
    };
    let names: Vec<String> = bits
        .bits()
        .enumerate()
        .filter(|(_, set)| *set)
        .map(|(i, _)| {
            fail_info::name(i)
                .map(str::to_string)
                .unwrap_or_else(|| format!("bit {i}"))
        })
        .collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}
