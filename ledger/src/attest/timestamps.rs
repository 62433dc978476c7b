//! Getting RFC 3161 time-stamp tokens for checkpoints.
//!
//! The message imprint is SHA-256 of the checkpoint's note text (the body, without
//! signatures), so one token dates the checkpoint however many cosignatures it gathers.
//! Every token is verified against the configured roots, with our nonce, before it is
//! kept: a misconfigured or hostile authority cannot put an unverifiable token in a
//! receipt.

use super::net::HttpClient;
use crate::tsa::Authority;
use ledger_client::timestamp::{token_from_response, verify_token, TimestampRequest, TsaRoots};
use std::sync::Arc;

/// Where tokens come from.
pub enum TsaSource {
    /// An authority reached over HTTP (RFC 3161 §3.4, `application/timestamp-query`).
    Remote { url: String, roots: Arc<TsaRoots> },
    /// The authority built into this process (`ledger serve`'s embedded default).
    Embedded {
        authority: Arc<Authority>,
        roots: Arc<TsaRoots>,
    },
}

impl TsaSource {
    pub fn describe(&self) -> String {
        match self {
            TsaSource::Remote { url, .. } => url.clone(),
            TsaSource::Embedded { .. } => "embedded".into(),
        }
    }

    /// A verified token dating `note_text`.
    pub async fn timestamp(
        &self,
        client: &HttpClient,
        note_text: &[u8],
    ) -> Result<Vec<u8>, String> {
        let nonce: u64 = rand::random::<u64>() >> 1;
        let req = TimestampRequest::new(note_text, nonce);
        let (reply, roots) = match self {
            TsaSource::Remote { url, roots } => {
                let a = client
                    .post(url, "application/timestamp-query", req.der.clone())
                    .await?;
                if a.status != 200 {
                    return Err(format!("{url} answered {}", a.status));
                }
                // RFC 3161 §3.4: the answer is application/timestamp-reply.
                if !a.content_type.starts_with("application/timestamp-reply") {
                    return Err(format!(
                        "{url} answered with Content-Type {:?}, not application/timestamp-reply",
                        a.content_type
                    ));
                }
                (a.body.to_vec(), roots)
            }
            TsaSource::Embedded { authority, roots } => (
                authority.respond(&req.der, std::time::SystemTime::now()),
                roots,
            ),
        };
        let token = token_from_response(&reply).map_err(|e| format!("{}: {e}", self.describe()))?;
        verify_token(&token, note_text, Some(nonce), roots)
            .map_err(|e| format!("{}: its token does not verify: {e}", self.describe()))?;
        Ok(token)
    }
}
