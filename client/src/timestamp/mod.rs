//! RFC 3161 time-stamps: build a request, unwrap a response, and verify a time-stamp token
//! offline against configured root certificates.
//!
//! A time-stamp token (RFC 3161 §2.4.2) is a CMS `SignedData` (RFC 5652 §5) whose signed
//! content is a `TSTInfo`: the authority's statement that a given hash (the message imprint)
//! existed at `genTime`. [`verify_token`] checks everything a relying party must check
//! before believing that statement:
//!
//! * the CMS structure, the signed attributes (content-type, message-digest, and the ESS
//!   signing-certificate of RFC 2634 / RFC 5816 that binds the signer certificate), and the
//!   signature over them (RSA PKCS#1 v1.5 with SHA-256/384/512, ECDSA P-256/P-384);
//! * the `TSTInfo`: version 1, the imprint equal to the hash of the message, the nonce;
//! * the signer certificate: a chain through the token's certificates up to one of the
//!   [`TsaRoots`], every certificate valid at `genTime`, CA certificates marked as such, and
//!   the signer's extended key usage being exactly a critical id-kp-timeStamping
//!   (RFC 3161 §2.3).
//!
//! Everything here works on bytes the caller already has: fetching a token over HTTP is the
//! ledger's job. Hostile input never panics; every rejection says what is wrong.
//!
//! ```
//! use ledger_client::timestamp::{token_from_response, TimestampRequest};
//!
//! let req = TimestampRequest::new(b"checkpoint note text\n", 7);
//! assert_eq!(req.nonce, 7);
//! // POST req.der with `Content-Type: application/timestamp-query`, then:
//! // let token = token_from_response(&body)?;
//! // let ts = verify_token(&token, b"checkpoint note text\n", Some(7), &roots)?;
//! assert!(token_from_response(b"not DER").is_err());
//! ```

pub mod asn1;
mod chain;
mod crypto;
mod request;
mod time;
mod verify;

#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;

pub use crate::error::TimestampError;
pub use chain::{certificates_from_pem, TsaRoots};
pub use request::{token_from_response, TimestampRequest};
pub use verify::{verify_token, VerifiedTimestamp};

/// Largest time-stamp token or response accepted, in bytes; larger input is refused before
/// any parsing. Real tokens are 1-8 kB (the bulk is the certificate chain); 64 KiB leaves
/// room for long RSA chains while bounding memory and work.
pub const MAX_TOKEN_SIZE: usize = 64 * 1024;

/// Longest certificate chain followed from the signer to a root, certificates included.
pub const MAX_CHAIN_DEPTH: usize = 8;

/// Media type of a DER `TimeStampReq` (RFC 3161 §3.4).
pub const QUERY_CONTENT_TYPE: &str = "application/timestamp-query";

/// Media type of a DER `TimeStampResp` (RFC 3161 §3.4).
pub const REPLY_CONTENT_TYPE: &str = "application/timestamp-reply";
