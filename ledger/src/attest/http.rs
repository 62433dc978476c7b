//! Serving attestations (specs/api.md, "Attestations"): the latest or a given size's
//! cosigned checkpoint and tokens, the cosigned checkpoint as a plain note for tlog tools,
//! and attested inclusion proofs for `?wait=attested` and `tlog-proof?attested`.

use super::record::Attestation;
use super::Attestor;
use crate::api_error::ApiError;
use crate::http::{note_str, B64List};
use crate::log::Log;
use axum::http::StatusCode;
use base64::prelude::*;
use ledger_client::tlog_proof::TlogProof;
use tlog_tiles::Hash;

/// The JSON form of an attestation.
#[derive(serde::Serialize)]
pub struct AttestationAnswer<'a> {
    pub tree_size: u64,
    pub checkpoint: &'a str,
    pub cosigners: &'a [String],
    /// DER TimeStampTokens, standard base64.
    pub timestamps: Vec<String>,
}

impl<'a> AttestationAnswer<'a> {
    pub fn new(a: &'a Attestation) -> Self {
        Self {
            tree_size: a.size,
            checkpoint: note_str(&a.checkpoint),
            cosigners: &a.cosigners,
            timestamps: a
                .timestamps
                .iter()
                .map(|t| BASE64_STANDARD.encode(t))
                .collect(),
        }
    }
}

fn disabled() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_attested",
        "this ledger attests no checkpoints (start it with --witness-policy or a time-stamping authority)",
    )
}

/// The latest attestation, or a 404 naming why there is none.
pub fn latest(att: &Attestor) -> Result<std::sync::Arc<Attestation>, ApiError> {
    if !att.enabled() {
        return Err(disabled());
    }
    att.latest()
        .ok_or_else(|| ApiError::not_found("no checkpoint of this log has been attested yet"))
}

pub fn at(att: &Attestor, size: u64) -> Result<Attestation, ApiError> {
    if !att.enabled() && att.latest().is_none() {
        return Err(disabled());
    }
    att.at(size)
        .map_err(|e| ApiError::from(crate::log::LogError::Store(e)))?
        .ok_or_else(|| ApiError::not_found(format!("no attested checkpoint at tree size {size}")))
}

/// The attested tlog-proof of entry `index`: the inclusion proof against the attested
/// tree, the cosigned checkpoint, and the tokens as the `extra` data (concatenated DER).
pub fn tlog_proof(
    log: &Log,
    index: u64,
    a: &Attestation,
) -> Result<(Vec<Hash>, Vec<u8>), ApiError> {
    if index >= a.size {
        return Err(ApiError::invalid(format!(
            "entry {index} is not in the attested tree of size {}",
            a.size
        )));
    }
    // A fresh snapshot: the attestation may be newer than one the caller took earlier, and
    // attested sizes never exceed the published size.
    let proof = log.inclusion_proof(&log.snapshot(), index, a.size)?;
    let extra = (!a.timestamps.is_empty()).then(|| a.timestamps_concatenated());
    let file = TlogProof {
        extra,
        index,
        inclusion_proof: proof.clone(),
        checkpoint: a.checkpoint.to_vec(),
    }
    .to_bytes();
    Ok((proof, file))
}

/// The answer to `add?wait=attested`.
#[derive(serde::Serialize)]
pub(crate) struct AttestedAdd<'a> {
    pub(crate) index: u64,
    pub(crate) leaf_hash: crate::http::B64<'a>,
    pub(crate) duplicate: bool,
    pub(crate) tree_size: u64,
    pub(crate) inclusion_proof: B64List<'a>,
    pub(crate) tlog_proof: &'a str,
    pub(crate) checkpoint: &'a str,
    pub(crate) cosigners: &'a [String],
    pub(crate) timestamps: Vec<String>,
}

/// A submission that asked to wait for an attestation and did not get one in time. The
/// entry is durable; only the attested receipt is missing.
pub fn wait_timeout(index: u64, waited: std::time::Duration) -> ApiError {
    ApiError::new(
        StatusCode::GATEWAY_TIMEOUT,
        "not_attested_in_time",
        format!(
            "entry {index} is logged, but no cosigned checkpoint covered it within {waited:?}; fetch /proof/tlog-proof?index={index}&attested=true later"
        ),
    )
}

pub fn require_enabled(att: &Attestor) -> Result<(), ApiError> {
    if att.enabled() {
        Ok(())
    } else {
        Err(disabled())
    }
}
