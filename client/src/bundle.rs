//! Artifact verification bundles (specs/bundle.md): everything a CI job needs to check,
//! offline, that a file is an artifact version the log recorded, and in what lifecycle
//! stage, as of one cosigned and time-stamped checkpoint.
//!
//! A bundle holds the version's chain of registry events (its `published` entry and every
//! later entry about it up to the checkpoint, each naming the one before by index and leaf
//! hash), an inclusion proof of each in the checkpoint, the checkpoint with its witness
//! cosignatures, and RFC 3161 tokens over it. [`verify`] checks each of those, and says
//! which check failed ([`Failure`]) so that a CI job can tell a wrong file from a stale
//! bundle from a revoked model.

use crate::attestation::split_tokens;
use crate::checkpoint::{verify_checkpoint, VerifiedCheckpoint};
use crate::digest::Digest;
use crate::event::{Event, Stage};
use crate::merkle::{hash_from_base64, hash_to_base64, leaf_hash, verify_inclusion, Hash};
use crate::policy::Policy;
use crate::timestamp::{verify_token, TsaRoots, VerifiedTimestamp};
use base64::prelude::*;
use serde::{Deserialize, Serialize};

pub const FORMAT: &str = "ledger.artifact-bundle/v1";
/// Largest bundle file accepted.
pub const MAX_BUNDLE_BYTES: usize = 16 << 20;
/// Most entries one bundle may hold.
pub const MAX_ENTRIES: usize = 10_000;

/// One logged entry and its inclusion proof in the bundle's checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleEntry {
    pub index: u64,
    /// The entry (deterministic CBOR, specs/entries.md), standard base64.
    pub entry: String,
    /// Standard base64 hashes.
    pub inclusion_proof: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    pub format: String,
    pub name: String,
    pub version: String,
    /// The signed checkpoint with its witness cosignatures.
    pub checkpoint: String,
    /// DER RFC 3161 tokens over the checkpoint's text, each standard base64.
    #[serde(default)]
    pub timestamps: Vec<String>,
    /// The version's events in log order, the `published` entry first.
    pub entries: Vec<BundleEntry>,
}

/// Which check failed. Each has its own exit code in `ledgerctl verify --bundle`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The bundle is not a bundle (syntax, sizes, encodings).
    Malformed,
    /// The file's SHA-256 (or size) is not what the log recorded.
    Digest,
    /// The checkpoint is not signed by a trusted log key.
    LogSignature,
    /// The checkpoint lacks the witness quorum of the trust policy.
    Witnesses,
    /// A time-stamp token is missing or does not verify, or is too old.
    Timestamp,
    /// An entry is not in the checkpoint's tree, or the events do not form the version's
    /// chain.
    Inclusion,
    /// The version's state as of the checkpoint is not acceptable (stage, tombstone).
    State,
    /// The publication is not signed by a trusted publisher key (unsigned, another key,
    /// or a signature that does not hold).
    Publisher,
}

impl Failure {
    pub fn name(self) -> &'static str {
        match self {
            Failure::Malformed => "malformed_bundle",
            Failure::Digest => "digest_mismatch",
            Failure::LogSignature => "log_signature",
            Failure::Witnesses => "witness_quorum",
            Failure::Timestamp => "timestamp",
            Failure::Inclusion => "not_in_log",
            Failure::State => "lifecycle_state",
            Failure::Publisher => "publisher_signature",
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct BundleError {
    pub failure: Failure,
    pub message: String,
}

fn fail<T>(failure: Failure, message: impl Into<String>) -> Result<T, BundleError> {
    Err(BundleError {
        failure,
        message: message.into(),
    })
}

/// What the verifier requires.
pub struct Requirements<'a> {
    /// Trusted log keys (vkeys); the policy's `log` lines are added.
    pub log_vkeys: &'a [&'a str],
    /// Witness quorum per c2sp.org/tlog-policy.
    pub policy: Option<&'a Policy>,
    /// When given, at least one token, and every token must verify and chain to these.
    pub tsa_roots: Option<&'a TsaRoots>,
    /// Stages the version may be in (as of the checkpoint).
    pub allowed_stages: &'a [Stage],
    /// Oldest acceptable time-stamp: `(now, max age in seconds)`. Needs `tsa_roots`.
    pub max_age: Option<(i64, u64)>,
    /// When given, the publication must carry a valid signature by one of these keys.
    pub publishers: Option<&'a crate::publisher::PublisherKeys>,
}

/// What a verified bundle says.
#[derive(Debug, Clone)]
pub struct Verified {
    pub checkpoint: VerifiedCheckpoint,
    pub digest: Digest,
    pub size: u64,
    pub stage: Stage,
    pub cosigners: Vec<(String, u64)>,
    pub timestamps: Vec<VerifiedTimestamp>,
    /// Index of the `published` entry.
    pub published_at: u64,
    /// The trusted publisher key that signed the publication (with `publishers`).
    pub signed_by: Option<String>,
}

impl Bundle {
    pub fn parse(bytes: &[u8]) -> Result<Bundle, BundleError> {
        if bytes.len() > MAX_BUNDLE_BYTES {
            return fail(
                Failure::Malformed,
                format!("the bundle is larger than {MAX_BUNDLE_BYTES} bytes"),
            );
        }
        let b: Bundle = serde_json::from_slice(bytes).map_err(|e| BundleError {
            failure: Failure::Malformed,
            message: format!("not an artifact bundle: {e}"),
        })?;
        if b.format != FORMAT {
            return fail(
                Failure::Malformed,
                format!("format {:?}, expected {FORMAT:?}", b.format),
            );
        }
        if b.entries.is_empty() || b.entries.len() > MAX_ENTRIES {
            return fail(
                Failure::Malformed,
                format!("a bundle holds 1 to {MAX_ENTRIES} entries"),
            );
        }
        Ok(b)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }
}

/// Verifies a bundle for a file whose SHA-256 is `digest` and length `size`.
pub fn verify(
    b: &Bundle,
    digest: &Digest,
    size: u64,
    req: &Requirements<'_>,
) -> Result<Verified, BundleError> {
    // 1. The checkpoint: the log's signature, then the witnesses, then the time-stamps.
    let mut vkeys: Vec<&str> = req.log_vkeys.to_vec();
    if let Some(p) = req.policy {
        vkeys.extend(p.logs().iter().map(|l| l.vkey.as_str()));
    }
    if vkeys.is_empty() {
        return fail(Failure::Malformed, "no trusted log key was given");
    }
    let note = b.checkpoint.as_bytes();
    let checkpoint = verify_checkpoint(note, &vkeys, None).map_err(|e| BundleError {
        failure: if e.is_malformed() {
            Failure::Malformed
        } else {
            Failure::LogSignature
        },
        message: format!("checkpoint: {e}"),
    })?;
    let cosigners = match req.policy {
        Some(p) => {
            p.verify_checkpoint(note, &vkeys)
                .map_err(|e| BundleError {
                    failure: Failure::Witnesses,
                    message: format!("checkpoint: {e}"),
                })?
                .cosigners
        }
        None => vec![],
    };
    let mut timestamps = vec![];
    if let Some(roots) = req.tsa_roots {
        if b.timestamps.is_empty() {
            return fail(
                Failure::Timestamp,
                "the bundle carries no time-stamp token, and time-stamping authorities are required",
            );
        }
        for (i, t) in b.timestamps.iter().enumerate() {
            let der = BASE64_STANDARD.decode(t).map_err(|e| BundleError {
                failure: Failure::Malformed,
                message: format!("time-stamp token #{i}: {e}"),
            })?;
            split_tokens(&der).map_err(|e| BundleError {
                failure: Failure::Malformed,
                message: format!("time-stamp token #{i}: {e}"),
            })?;
            let v =
                verify_token(&der, checkpoint.text(), None, roots).map_err(|e| BundleError {
                    failure: Failure::Timestamp,
                    message: format!("time-stamp token #{i}: {e}"),
                })?;
            timestamps.push(v);
        }
        if let Some((now, max_age)) = req.max_age {
            let newest = timestamps.iter().map(|t| t.gen_time).max().unwrap_or(0);
            if now.saturating_sub(newest) > max_age as i64 {
                return fail(
                    Failure::Timestamp,
                    format!(
                        "the checkpoint was time-stamped {} s ago, more than the {max_age} s allowed: fetch a fresh bundle",
                        now - newest
                    ),
                );
            }
        }
    } else if req.max_age.is_some() {
        return fail(
            Failure::Malformed,
            "a maximum age needs time-stamping authorities to date the checkpoint",
        );
    }

    // 2. Every entry is in the checkpoint's tree, and they are the version's chain.
    let mut events: Vec<(u64, Vec<u8>, Event)> = Vec::with_capacity(b.entries.len());
    for e in &b.entries {
        let bytes = BASE64_STANDARD
            .decode(&e.entry)
            .map_err(|err| BundleError {
                failure: Failure::Malformed,
                message: format!("entry {}: {err}", e.index),
            })?;
        let proof: Vec<Hash> = e
            .inclusion_proof
            .iter()
            .map(|h| hash_from_base64(h))
            .collect::<Result<_, _>>()
            .map_err(|err| BundleError {
                failure: Failure::Malformed,
                message: format!("entry {}: inclusion proof: {err}", e.index),
            })?;
        verify_inclusion(
            &leaf_hash(&bytes),
            e.index,
            checkpoint.size,
            &proof,
            &checkpoint.root,
        )
        .map_err(|err| BundleError {
            failure: Failure::Inclusion,
            message: format!(
                "entry {} is not in the log at tree size {}: {err}",
                e.index, checkpoint.size
            ),
        })?;
        let event = Event::decode(&bytes).map_err(|err| BundleError {
            failure: Failure::Malformed,
            message: format!("entry {} is not a registry event: {err}", e.index),
        })?;
        events.push((e.index, bytes, event));
    }
    let (first_index, _, first) = &events[0];
    let Event::Published(p) = first else {
        return fail(
            Failure::Inclusion,
            format!(
                "the first entry ({first_index}) is a {} event, not the version's publication",
                first.type_name()
            ),
        );
    };
    if p.name != b.name || p.version != b.version {
        return fail(
            Failure::Inclusion,
            format!(
                "the publication is of {}@{}, not {}@{}",
                p.name, p.version, b.name, b.version
            ),
        );
    }
    for w in events.windows(2) {
        let (prev_index, prev_bytes, _) = &w[0];
        let (index, _, event) = &w[1];
        let prev = event.prev().ok_or_else(|| BundleError {
            failure: Failure::Inclusion,
            message: format!("entry {index} names no previous entry"),
        })?;
        if prev.index != *prev_index {
            return fail(
                Failure::Inclusion,
                format!(
                    "entry {index} follows entry {}, but the bundle gives {prev_index} before it: an event is missing",
                    prev.index
                ),
            );
        }
        event
            .check_prev(*index, prev_bytes)
            .map_err(|err| BundleError {
                failure: Failure::Inclusion,
                message: format!("entry {index}: {err}"),
            })?;
    }

    // 3. The file is the published bytes.
    if p.digest != *digest || p.size != size {
        return fail(
            Failure::Digest,
            format!(
                "the file is {digest} ({size} bytes) but {}@{} was published as {} ({} bytes)",
                p.name, p.version, p.digest, p.size
            ),
        );
    }

    // 4. The state as of the checkpoint.
    let mut stage = Stage::INITIAL;
    for (index, _, e) in &events[1..] {
        match e {
            Event::Lifecycle(l) => stage = l.to,
            Event::Tombstone(t) => {
                return fail(
                    Failure::State,
                    format!(
                        "{}@{} was tombstoned by entry {index}: {}",
                        p.name, p.version, t.reason
                    ),
                )
            }
            _ => {}
        }
    }
    if !req.allowed_stages.contains(&stage) {
        let allowed: Vec<String> = req.allowed_stages.iter().map(|s| s.to_string()).collect();
        return fail(
            Failure::State,
            format!(
                "{}@{} is {stage} as of tree size {}; allowed: {}",
                p.name,
                p.version,
                checkpoint.size,
                allowed.join(", ")
            ),
        );
    }
    // 5. Who published it, when the verifier names the publishers it trusts.
    let signed_by = match req.publishers {
        None => None,
        Some(keys) => match keys.check(p) {
            crate::publisher::Verdict::Signed(k) => Some(k),
            v => {
                return fail(
                    Failure::Publisher,
                    format!("the publication of {}@{} is {v}", p.name, p.version),
                )
            }
        },
    };
    Ok(Verified {
        digest: p.digest,
        size: p.size,
        stage,
        cosigners,
        timestamps,
        published_at: *first_index,
        checkpoint,
        signed_by,
    })
}

/// Builds a bundle's entry.
pub fn entry(index: u64, bytes: &[u8], proof: &[Hash]) -> BundleEntry {
    BundleEntry {
        index,
        entry: BASE64_STANDARD.encode(bytes),
        inclusion_proof: proof.iter().map(hash_to_base64).collect(),
    }
}
