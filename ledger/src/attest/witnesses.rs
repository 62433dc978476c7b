//! Asking witnesses for cosignatures (c2sp.org/tlog-witness §"add-checkpoint").
//!
//! Each witness remembers the last size it cosigned for our origin; we keep our own copy
//! of that number and send the consistency proof from it. After a restart (or if another
//! process of ours advanced the witness) the copy is stale: the witness answers 409 with
//! its size and we retry once from there, exactly as the spec intends.

use super::net::HttpClient;
use crate::log::{Log, Snapshot};
use ledger_client::cosignature::{verify_cosignatures, CosignerKey};
use ledger_client::witness_protocol::{parse_cosignature_lines, parse_size_body, AddCheckpoint};
use std::sync::atomic::{AtomicU64, Ordering};

/// One witness of the policy, with our view of its state.
pub struct Witness {
    /// The policy-local name, for logs and metrics.
    pub name: String,
    pub key: CosignerKey,
    /// `<submission prefix>/add-checkpoint`.
    pub endpoint: String,
    /// The size we believe the witness last cosigned for this log.
    last_size: AtomicU64,
}

/// Why one witness did not cosign this round.
#[derive(Debug, thiserror::Error)]
pub enum WitnessError {
    #[error("witness {name}: {message}")]
    Failed { name: String, message: String },
    /// The witness holds a tree larger than ours: it saw a checkpoint of this origin that
    /// this log never issued, or this log lost entries. Either is an incident.
    #[error("witness {name} has cosigned size {theirs} for this origin, larger than our tree ({ours}): a fork or a rollback")]
    AheadOfUs {
        name: String,
        theirs: u64,
        ours: u64,
    },
}

impl Witness {
    pub fn new(name: String, key: CosignerKey, url: &str) -> Self {
        let endpoint = format!("{}/add-checkpoint", url.trim_end_matches('/'));
        Self {
            name,
            key,
            endpoint,
            last_size: AtomicU64::new(0),
        }
    }

    fn fail(&self, message: impl Into<String>) -> WitnessError {
        WitnessError::Failed {
            name: self.name.clone(),
            message: message.into(),
        }
    }

    /// Gets this witness's cosignature line for `snap`'s checkpoint, verified.
    pub async fn cosign(
        &self,
        client: &HttpClient,
        log: &Log,
        snap: &Snapshot,
    ) -> Result<String, WitnessError> {
        let size = snap.size();
        let mut old = self.last_size.load(Ordering::Relaxed).min(size);
        // One retry after a 409 is enough: the answer names the witness's current size.
        for _attempt in 0..2 {
            let proof = if old == 0 {
                // tlog-witness: "If the old size is zero, the consistency proof MUST be empty".
                vec![]
            } else {
                log.consistency_proof(snap, old, size)
                    .map_err(|e| self.fail(format!("building the proof from {old}: {e}")))?
            };
            let body = AddCheckpoint {
                old_size: old,
                proof,
                checkpoint: snap.checkpoint.to_vec(),
            }
            .to_bytes();
            let answer = client
                .post(&self.endpoint, "text/plain; charset=utf-8", body)
                .await
                .map_err(|e| self.fail(e))?;
            match answer.status {
                200 => {
                    let lines = parse_cosignature_lines(&answer.body)
                        .map_err(|e| self.fail(format!("malformed cosignature answer: {e}")))?;
                    let mut note = snap.checkpoint.to_vec();
                    for l in &lines {
                        note.extend_from_slice(l.as_bytes());
                    }
                    let stamps = verify_cosignatures(&note, std::slice::from_ref(&self.key))
                        .map_err(|e| self.fail(format!("its cosignature does not verify: {e}")))?;
                    if stamps.first().copied().flatten().is_none() {
                        return Err(self.fail("the answer carries no cosignature by its key"));
                    }
                    self.last_size.store(size, Ordering::Relaxed);
                    // Keep only the line(s) made by the configured key; others are noise.
                    let own = lines
                        .into_iter()
                        .filter(|l| self.is_own_line(l))
                        .collect::<String>();
                    return Ok(own);
                }
                // tlog-witness: 409 carries the witness's size as text/x.tlog.size.
                409 => {
                    let theirs = parse_size_body(&answer.body)
                        .map_err(|e| self.fail(format!("409 with an unreadable size: {e}")))?;
                    if theirs > size {
                        return Err(WitnessError::AheadOfUs {
                            name: self.name.clone(),
                            theirs,
                            ours: size,
                        });
                    }
                    self.last_size.store(theirs, Ordering::Relaxed);
                    old = theirs;
                }
                status => {
                    let text = String::from_utf8_lossy(&answer.body[..answer.body.len().min(300)])
                        .trim()
                        .to_string();
                    return Err(self.fail(format!("answered {status}: {text}")));
                }
            }
        }
        Err(self.fail("still answers 409 after retrying from the size it named"))
    }

    fn is_own_line(&self, line: &str) -> bool {
        use base64::prelude::*;
        let Some(rest) = line.strip_prefix("\u{2014} ") else {
            return false;
        };
        let Some((name, b64)) = rest.trim_end().split_once(' ') else {
            return false;
        };
        let id = BASE64_STANDARD.decode(b64).ok().and_then(|raw| {
            raw.get(..4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        });
        name == self.key.name() && id == Some(self.key.key_id())
    }
}
