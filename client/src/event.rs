//! Typed log entries: the versioned, deterministic schema of registry events
//! (normative text: `specs/entries.md`).
//!
//! Every change to an artifact is one log entry, a CBOR map (RFC 8949) in *core deterministic
//! encoding* (§4.2.1). The log signs bytes, not values, so one value must have exactly one
//! encoding and one encoding exactly one meaning: [`Event::decode`] accepts an entry only if it
//! is the deterministic encoding of the value it decodes to, names no unknown event type or
//! field, and respects every size limit. JSON (serde) is the human/CLI form; CBOR is the
//! logged form.
//!
//! ```
//! use ledger_client::digest::Digest;
//! use ledger_client::event::{Event, Kind, Lifecycle, Prev, Published, Stage, Subject};
//!
//! let published = Event::Published(Published {
//!     name: "acme/resnet".into(),
//!     version: "1.2.0".into(),
//!     kind: Kind::Model,
//!     digest: Digest::of(b"resnet weights"),
//!     size: 1_048_576,
//!     media_type: "application/octet-stream".into(),
//!     meta_digest: None,
//!     meta: None,
//!     actor: "alice@example.com".into(),
//!     sig: None,
//!     time: 1_700_000_000,
//! });
//! let bytes = published.encode();
//! assert_eq!(Event::decode(&bytes).unwrap(), published);
//!
//! // The next entry about acme/resnet 1.2.0 names the previous one by index and leaf hash.
//! let approved = Event::Lifecycle(Lifecycle {
//!     name: "acme/resnet".into(),
//!     version: "1.2.0".into(),
//!     from: Stage::Draft,
//!     to: Stage::Approved,
//!     reason: None,
//!     prev: Prev::of(41, &bytes),
//!     actor: "bob@example.com".into(),
//!     time: 1_700_003_600,
//! });
//! assert_eq!(approved.subject(), published.subject());
//! approved.check_prev(42, &bytes).unwrap();
//! assert!(Event::decode(&[&bytes[..], &[0]].concat()).is_err()); // trailing byte
//! ```

use crate::digest::Digest;
use crate::merkle::{leaf_hash, Hash};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The newest schema version this module reads and writes (the `v` field). Version 2 adds
/// the `approval` type and nothing else; each type is written with the version that
/// introduced it ([`Event::schema_version`]), so every v1 entry stays a v1 entry.
pub const SCHEMA_VERSION: u64 = 2;
/// The log's entry limit: an encoded entry is at most this long.
pub const MAX_ENTRY_BYTES: usize = 65_535;
/// Artifact names, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Versions, in bytes.
pub const MAX_VERSION_BYTES: usize = 128;
/// Aliases, in bytes.
pub const MAX_ALIAS_BYTES: usize = 64;
/// Actor (and publisher) identities, in bytes.
pub const MAX_ACTOR_BYTES: usize = 256;
/// Reasons given for a lifecycle change or a tombstone, in bytes.
pub const MAX_REASON_BYTES: usize = 1024;
/// An approver's comment, in bytes (the same bound as a reason: a sentence or two, not a
/// review; link to the review with a URL).
pub const MAX_COMMENT_BYTES: usize = 1024;
/// Media types, in bytes (RFC 6838 allows 127 + 1 + 127 before parameters).
pub const MAX_MEDIA_TYPE_BYTES: usize = 255;
/// Attestation predicate types (a URI), in bytes.
pub const MAX_PREDICATE_TYPE_BYTES: usize = 256;
/// External references (a URI), in bytes.
pub const MAX_URI_BYTES: usize = 2048;
/// Links in one lineage entry.
pub const MAX_LINKS: usize = 64;
/// Pairs in an inline metadata map.
pub const MAX_META_ENTRIES: usize = 64;
/// Inline metadata keys, in bytes.
pub const MAX_META_KEY_BYTES: usize = 128;
/// Inline metadata values, in bytes.
pub const MAX_META_VALUE_BYTES: usize = 1024;
/// The whole inline metadata map, encoded, in bytes.
pub const MAX_META_BYTES: usize = 16_384;
/// Signature algorithm names, in bytes.
pub const MAX_SIG_ALG_BYTES: usize = 64;
/// Signature key ids, in bytes.
pub const MAX_KEYID_BYTES: usize = 256;
/// Signature values, in bytes (room for ML-DSA-87 and SLH-DSA-128s).
pub const MAX_SIG_BYTES: usize = 8192;
/// CBOR nesting depth accepted by the decoder. The schema needs 3 (entry → links → link →
/// artifact); the bound keeps hostile input from recursing deeply.
const MAX_DEPTH: usize = 8;

/// Inline metadata: a small map of text to text. A `BTreeMap` so that a value has one
/// iteration order; the CBOR encoding sorts keys by their encoded form regardless.
pub type Metadata = BTreeMap<String, String>;

/// A closed set of text values: the CBOR and JSON forms are the same lowercase strings.
macro_rules! text_enum {
    ($(#[$m:meta])* $name:ident, $what:literal { $($(#[$vm:meta])* $var:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$vm])* #[serde(rename = $s)] $var),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$var),+];

            /// The text form used in CBOR and JSON.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$var => $s),+
                }
            }

            /// Parses the text form; `None` for anything else (no case folding).
            pub fn parse(s: &str) -> Option<Self> {
                match s {
                    $($s => Some($name::$var),)+
                    _ => None,
                }
            }

            fn unknown(s: &str) -> String {
                let all: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                format!("unknown {} {} (expected one of {})", $what, quote(s), all.join(", "))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

text_enum! {
    /// What a published artifact is.
    Kind, "kind" {
        Model = "model",
        Dataset = "dataset",
        Other = "other",
    }
}

text_enum! {
    /// Lifecycle stage of one artifact version. A version is `draft` when published; see
    /// [`Stage::can_transition_to`] for the state machine.
    Stage, "stage" {
        Draft = "draft",
        Approved = "approved",
        Released = "released",
        Deprecated = "deprecated",
        Retired = "retired",
        Revoked = "revoked",
    }
}

text_enum! {
    /// How a lineage link's target relates to the entry's artifact version.
    Relation, "relation" {
        /// Trained on this dataset (or from this checkpoint).
        TrainedFrom = "trained_from",
        /// Fine-tuned from this base model.
        BaseModel = "base_model",
        /// Built from this source revision.
        CodeCommit = "code_commit",
        /// Produced by this pipeline / CI run.
        PipelineRun = "pipeline_run",
        /// Evaluated by this artifact or run.
        EvaluatedBy = "evaluated_by",
        /// Otherwise derived from the target.
        DerivedFrom = "derived_from",
    }
}

impl Stage {
    /// The stage of a version right after its `published` entry.
    pub const INITIAL: Stage = Stage::Draft;

    /// The stages this one may move to. Forward only: draft → approved → released →
    /// deprecated → retired, and revoked from every stage but retired. Nothing leaves retired
    /// or revoked (a withdrawn version is replaced by publishing a new version, never revived,
    /// so that a consumer who saw "revoked" can rely on it forever).
    pub fn successors(self) -> &'static [Stage] {
        use Stage::*;
        match self {
            Draft => &[Approved, Revoked],
            Approved => &[Released, Revoked],
            Released => &[Deprecated, Revoked],
            Deprecated => &[Retired, Revoked],
            Retired | Revoked => &[],
        }
    }

    /// Whether a `lifecycle` entry may move a version from `self` to `next`. No
    /// self-transitions: an entry that changes nothing has no reason to exist.
    pub fn can_transition_to(self, next: Stage) -> bool {
        self.successors().contains(&next)
    }

    /// Retired and revoked: no transition leaves them.
    pub fn is_terminal(self) -> bool {
        self.successors().is_empty()
    }
}

/// The previous entry about the same subject: its index in the log and its RFC 6962 leaf
/// hash, so the history of each artifact is a hash chain a verifier can walk with inclusion
/// proofs alone, whatever order concurrent writers were sequenced in.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prev {
    /// Entry index in the log (`i`).
    #[serde(rename = "i")]
    pub index: u64,
    /// Leaf hash of that entry, SHA-256(0x00 ‖ entry) (`h`); base64 in JSON like every hash
    /// in the ledger's API.
    #[serde(rename = "h", with = "hash_base64")]
    pub leaf_hash: Hash,
}

// `tlog_tiles::Hash` only derives `PartialEq`, but byte equality is a total equivalence.
impl Eq for Prev {}

impl std::hash::Hash for Prev {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.index.hash(state);
        self.leaf_hash.0.hash(state);
    }
}

impl Prev {
    /// Points at `entry`, logged at `index`.
    pub fn of(index: u64, entry: &[u8]) -> Prev {
        Prev {
            index,
            leaf_hash: leaf_hash(entry),
        }
    }
}

/// A publisher's signature over [`Published::signed_payload`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    /// Algorithm name, e.g. `ed25519` (`[A-Za-z0-9][A-Za-z0-9._-]*`, ≤ 64 bytes).
    pub alg: String,
    /// Which of the publisher's keys signed (free text, ≤ 256 bytes).
    pub keyid: String,
    /// The signature value; standard base64 in JSON.
    #[serde(with = "bytes_base64")]
    pub sig: Vec<u8>,
}

/// `published`: an artifact version exists. Starts the version's chain (no `prev`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Published {
    pub name: String,
    pub version: String,
    pub kind: Kind,
    /// SHA-256 of the artifact's bytes.
    pub digest: Digest,
    /// Length of the artifact's bytes.
    pub size: u64,
    pub media_type: String,
    /// SHA-256 of the metadata document (itself a blob).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta_digest: Option<Digest>,
    /// Small inline metadata; absent rather than empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Metadata>,
    /// The publisher's identity.
    pub actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sig: Option<Signature>,
    /// Unix seconds, set by the ledger.
    pub time: u64,
}

/// `metadata_changed`: replaces the metadata digest and/or the inline metadata of a version.
/// A field left out keeps its previous value; `meta` replaces the whole inline map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataChanged {
    pub name: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta_digest: Option<Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Metadata>,
    pub prev: Prev,
    pub actor: String,
    pub time: u64,
}

/// `lifecycle`: a version moves from one stage to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lifecycle {
    pub name: String,
    pub version: String,
    pub from: Stage,
    pub to: Stage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub prev: Prev,
    pub actor: String,
    pub time: u64,
}

/// `alias_moved`: a named pointer (`production`, `latest`) of an artifact moves to a version,
/// or is removed (`to` absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AliasMoved {
    pub name: String,
    pub alias: String,
    /// The version the alias now points to; `None` removes the alias.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// The previous entry about this alias; `None` only for the alias's first entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<Prev>,
    pub actor: String,
    pub time: u64,
}

/// A specific version of an artifact in this registry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactRef {
    pub name: String,
    pub version: String,
    pub digest: Digest,
}

/// What a lineage link points at.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// An artifact version in this registry (`artifact`).
    Artifact(ArtifactRef),
    /// Anything else, by URI (`uri`): a git commit URL, a CI run URL.
    Uri(String),
}

/// One lineage link: `{ "rel": ..., "artifact": {...} }` or `{ "rel": ..., "uri": ... }`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "LinkRepr", into = "LinkRepr")]
pub struct Link {
    pub rel: Relation,
    pub target: Target,
}

/// `lineage`: where a version came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lineage {
    pub name: String,
    pub version: String,
    pub links: Vec<Link>,
    pub prev: Prev,
    pub actor: String,
    pub time: u64,
}

/// `attestation`: an in-toto statement (or DSSE envelope) about a version, stored as a blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attestation {
    pub name: String,
    pub version: String,
    /// SHA-256 of the statement blob.
    pub statement: Digest,
    /// The in-toto predicate type, a URI (`https://slsa.dev/provenance/v1`).
    pub predicate_type: String,
    /// Media type of the statement blob.
    pub media_type: String,
    pub prev: Prev,
    pub actor: String,
    pub time: u64,
}

/// `tombstone`: the version's bytes were purged; the log keeps the digest and the reason.
/// Ends the version's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tombstone {
    pub name: String,
    pub version: String,
    pub digest: Digest,
    pub reason: String,
    pub prev: Prev,
    pub actor: String,
    pub time: u64,
}

/// `approval` (schema version 2): `actor` approves moving the version to stage `to`. Part
/// of the version's chain. Governance (specs/access.md) may require a quorum of approvals,
/// recorded since the version's stage was last set, before the transition is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    pub name: String,
    pub version: String,
    /// The stage the approval is for: a successor of the version's current stage.
    pub to: Stage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub prev: Prev,
    /// The approver.
    pub actor: String,
    pub time: u64,
}

/// One registry event: one log entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Published(Published),
    MetadataChanged(MetadataChanged),
    Lifecycle(Lifecycle),
    AliasMoved(AliasMoved),
    Lineage(Lineage),
    Attestation(Attestation),
    Tombstone(Tombstone),
    Approval(Approval),
}

/// What a chain of entries is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    /// One artifact version: every event but `alias_moved`.
    Version { name: String, version: String },
    /// One alias of an artifact: `alias_moved`.
    Alias { name: String, alias: String },
}

/// Why an entry (or an event about to be encoded) was rejected. `field` is a path such as
/// `prev.h`, `links[2].artifact.name` or `meta."framework"`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("entry is {0} bytes, the log accepts at most {MAX_ENTRY_BYTES}")]
    TooLarge(usize),
    /// Not well-formed CBOR, or not in core deterministic encoding, or a CBOR type this
    /// schema never uses.
    #[error("{at}: byte {offset}: {problem}")]
    Cbor {
        at: String,
        offset: usize,
        problem: String,
    },
    #[error("byte {offset}: {count} trailing bytes after the entry")]
    TrailingBytes { offset: usize, count: usize },
    #[error("v: unsupported schema version {0} (this reader knows 1..={SCHEMA_VERSION})")]
    UnsupportedVersion(u64),
    #[error("type: unknown event type {0}")]
    UnknownType(String),
    #[error("{field}: unknown field")]
    UnknownField { field: String },
    #[error("{field}: missing")]
    MissingField { field: String },
    #[error("{field}: expected {expected}, found {found}")]
    WrongType {
        field: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error("{field}: {problem}")]
    Invalid { field: String, problem: String },
    /// Cannot happen for input the decoder accepted (it checks every rule on the way); kept
    /// as the final guard so the two halves of the codec can never disagree silently.
    #[error("entry is not the deterministic encoding of its own value")]
    NotDeterministic,
    /// [`Event::check_prev`]: the named previous entry is not the one given.
    #[error("prev: {0}")]
    Chain(String),
}

// ---------------------------------------------------------------------------------------
// Syntax of names, versions, aliases and other text fields.

/// Artifact names: `/`-separated segments, each `[a-z0-9][a-z0-9._-]*`, no `..`, at most
/// 256 bytes. Lowercase only so one artifact has one spelling; segments start with an
/// alphanumeric so there are no empty, `.` or hidden segments when names become paths.
pub fn validate_name(name: &str) -> Result<(), String> {
    check_len(name, MAX_NAME_BYTES)?;
    if name.contains("..") {
        return Err("contains \"..\"".into());
    }
    for segment in name.split('/') {
        let b = segment.as_bytes();
        match b.first() {
            None => return Err("has an empty segment (leading, trailing or double '/')".into()),
            Some(c) if !(c.is_ascii_lowercase() || c.is_ascii_digit()) => {
                return Err(format!(
                    "segment {} must start with [a-z0-9]",
                    quote(segment)
                ))
            }
            _ => {}
        }
        if let Some(c) = segment
            .chars()
            .find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c)))
        {
            return Err(format!("contains {c:?}; allowed are [a-z0-9._-] and '/'"));
        }
    }
    Ok(())
}

/// Versions: `[A-Za-z0-9][A-Za-z0-9._+-]*`, at most 128 bytes (SemVer with build metadata,
/// PEP 440, dates, git short hashes all fit).
pub fn validate_version(version: &str) -> Result<(), String> {
    check_len(version, MAX_VERSION_BYTES)?;
    if !version.as_bytes()[0].is_ascii_alphanumeric() {
        return Err("must start with [A-Za-z0-9]".into());
    }
    if let Some(c) = version
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || "._+-".contains(c)))
    {
        return Err(format!("contains {c:?}; allowed are [A-Za-z0-9._+-]"));
    }
    Ok(())
}

/// Aliases: `[a-z][a-z0-9._-]*`, at most 64 bytes. They start with a letter so that a short
/// numeric version (`2`) is never mistaken for an alias in prose and tooling.
pub fn validate_alias(alias: &str) -> Result<(), String> {
    check_len(alias, MAX_ALIAS_BYTES)?;
    if !alias.as_bytes()[0].is_ascii_lowercase() {
        return Err("must start with [a-z]".into());
    }
    if let Some(c) = alias
        .chars()
        .find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c)))
    {
        return Err(format!("contains {c:?}; allowed are [a-z0-9._-]"));
    }
    Ok(())
}

/// Media types: `type/subtype` in lowercase RFC 6838 restricted-name characters, then
/// optional parameters (`; charset=utf-8`) in printable ASCII. Lowercase because media types
/// are case-insensitive and one value should have one spelling.
pub fn validate_media_type(media_type: &str) -> Result<(), String> {
    check_len(media_type, MAX_MEDIA_TYPE_BYTES)?;
    if let Some(c) = media_type.chars().find(|c| !(' '..='~').contains(c)) {
        return Err(format!("contains {c:?}; only printable ASCII is allowed"));
    }
    let essence = media_type.split(';').next().unwrap_or("");
    let restricted = |s: &str| {
        let b = s.as_bytes();
        !b.is_empty()
            && b.len() <= 127
            && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
            && b.iter()
                .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"!#$&-^_.+".contains(&c))
    };
    match essence.split_once('/') {
        Some((t, s)) if restricted(t) && restricted(s) => Ok(()),
        _ => Err("must be type/subtype in lowercase RFC 6838 characters".into()),
    }
}

/// URIs (external references, predicate types): a lowercase scheme `[a-z][a-z0-9+.-]*`, a
/// colon, then at least one more character, all printable ASCII without spaces (URIs carry
/// anything else percent-encoded, RFC 3986 §2.1).
pub fn validate_uri(uri: &str, max: usize) -> Result<(), String> {
    check_len(uri, max)?;
    if let Some(c) = uri.chars().find(|c| !('!'..='~').contains(c)) {
        return Err(format!(
            "contains {c:?}; only printable ASCII without spaces is allowed"
        ));
    }
    let ok = match uri.split_once(':') {
        Some((scheme, rest)) => {
            let s = scheme.as_bytes();
            !s.is_empty()
                && s[0].is_ascii_lowercase()
                && s.iter()
                    .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || b"+.-".contains(&c))
                && !rest.is_empty()
        }
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err("is not a URI (want scheme:rest with a lowercase scheme)".into())
    }
}

/// Free text (actors, reasons, key ids, metadata values): UTF-8 (CBOR guarantees it), at
/// most `max` bytes, no control characters, so that printing an entry can never rewrite a
/// terminal or forge a log line.
pub fn validate_text(text: &str, max: usize) -> Result<(), String> {
    check_len(text, max)?;
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        return Err(format!("contains control character {c:?}"));
    }
    Ok(())
}

fn check_len(s: &str, max: usize) -> Result<(), String> {
    if s.is_empty() {
        Err("empty".into())
    } else if s.len() > max {
        Err(format!("{} bytes, at most {max} allowed", s.len()))
    } else {
        Ok(())
    }
}

/// Quotes untrusted text for an error message: escaped, and cut to a readable length.
fn quote(s: &str) -> String {
    let mut q: String = s
        .chars()
        .take(64)
        .collect::<String>()
        .escape_debug()
        .collect();
    if s.chars().count() > 64 {
        q.push('…');
    }
    format!("\"{q}\"")
}

fn invalid(field: impl Into<String>, r: Result<(), String>) -> Result<(), EventError> {
    r.map_err(|problem| EventError::Invalid {
        field: field.into(),
        problem,
    })
}

fn check_meta(field: &str, meta: &Metadata) -> Result<(), EventError> {
    if meta.is_empty() {
        // Absent and empty would be two spellings of "no inline metadata".
        return invalid(field, Err("empty map (leave the field out instead)".into()));
    }
    if meta.len() > MAX_META_ENTRIES {
        return invalid(
            field,
            Err(format!(
                "{} pairs, at most {MAX_META_ENTRIES} allowed",
                meta.len()
            )),
        );
    }
    for (k, v) in meta {
        let at = format!("{field}.{}", quote(k));
        invalid(&at, validate_meta_key(k))?;
        // Values may be empty: "" is a value, unlike an absent key.
        if !v.is_empty() {
            invalid(&at, validate_text(v, MAX_META_VALUE_BYTES))?;
        }
    }
    let encoded = cbor::encode(&meta_value(meta)).len();
    if encoded > MAX_META_BYTES {
        return invalid(
            field,
            Err(format!(
                "{encoded} bytes encoded, at most {MAX_META_BYTES} allowed"
            )),
        );
    }
    Ok(())
}

/// Metadata keys: `[A-Za-z0-9][A-Za-z0-9._/-]*` (room for `org.opencontainers.image.source`
/// and `huggingface/license`), at most 128 bytes.
pub fn validate_meta_key(k: &str) -> Result<(), String> {
    check_len(k, MAX_META_KEY_BYTES).map_err(|p| format!("key {p}"))?;
    if !k.as_bytes()[0].is_ascii_alphanumeric() {
        return Err("key must start with [A-Za-z0-9]".into());
    }
    if let Some(c) = k
        .chars()
        .find(|&c| !(c.is_ascii_alphanumeric() || "._/-".contains(c)))
    {
        return Err(format!("key contains {c:?}; allowed are [A-Za-z0-9._/-]"));
    }
    Ok(())
}

fn check_sig(s: &Signature) -> Result<(), EventError> {
    invalid("sig.alg", {
        check_len(&s.alg, MAX_SIG_ALG_BYTES).and_then(|()| {
            let ok = s.alg.as_bytes()[0].is_ascii_alphanumeric()
                && s.alg
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c));
            ok.then_some(())
                .ok_or_else(|| "must be [A-Za-z0-9][A-Za-z0-9._-]*".to_string())
        })
    })?;
    invalid("sig.keyid", validate_text(&s.keyid, MAX_KEYID_BYTES))?;
    if s.sig.is_empty() || s.sig.len() > MAX_SIG_BYTES {
        return invalid(
            "sig.sig",
            Err(format!("{} bytes, want 1..={MAX_SIG_BYTES}", s.sig.len())),
        );
    }
    Ok(())
}

fn check_subject(name: &str, version: &str) -> Result<(), EventError> {
    invalid("name", validate_name(name))?;
    invalid("version", validate_version(version))
}

fn check_actor(actor: &str) -> Result<(), EventError> {
    invalid("actor", validate_text(actor, MAX_ACTOR_BYTES))
}

// ---------------------------------------------------------------------------------------
// Events.

/// Keys of each event type, as they appear in CBOR and JSON. Decoding rejects any other key
/// before looking at values, so a typo is reported as the unknown field it is.
const PUBLISHED_KEYS: &[&str] = &[
    "v",
    "type",
    "name",
    "version",
    "kind",
    "digest",
    "size",
    "media_type",
    "meta_digest",
    "meta",
    "actor",
    "sig",
    "time",
];
const METADATA_CHANGED_KEYS: &[&str] = &[
    "v",
    "type",
    "name",
    "version",
    "meta_digest",
    "meta",
    "prev",
    "actor",
    "time",
];
const LIFECYCLE_KEYS: &[&str] = &[
    "v", "type", "name", "version", "from", "to", "reason", "prev", "actor", "time",
];
const ALIAS_MOVED_KEYS: &[&str] = &["v", "type", "name", "alias", "to", "prev", "actor", "time"];
const LINEAGE_KEYS: &[&str] = &[
    "v", "type", "name", "version", "links", "prev", "actor", "time",
];
const ATTESTATION_KEYS: &[&str] = &[
    "v",
    "type",
    "name",
    "version",
    "statement",
    "predicate_type",
    "media_type",
    "prev",
    "actor",
    "time",
];
const TOMBSTONE_KEYS: &[&str] = &[
    "v", "type", "name", "version", "digest", "reason", "prev", "actor", "time",
];
const APPROVAL_KEYS: &[&str] = &[
    "v", "type", "name", "version", "to", "comment", "prev", "actor", "time",
];

impl Event {
    /// Every event type, as written in the `type` field.
    pub const TYPES: [&'static str; 8] = [
        "published",
        "metadata_changed",
        "lifecycle",
        "alias_moved",
        "lineage",
        "attestation",
        "tombstone",
        "approval",
    ];

    /// The `v` an entry of this type carries: the schema version that introduced the type
    /// (1 for the original seven, 2 for `approval`). One value per type, so an event still
    /// has exactly one encoding, and a v1-only verifier refuses exactly the entries it
    /// cannot read, by their first field.
    pub fn schema_version(&self) -> u64 {
        type_version(self.type_name())
    }

    /// The `type` field.
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::Published(_) => "published",
            Event::MetadataChanged(_) => "metadata_changed",
            Event::Lifecycle(_) => "lifecycle",
            Event::AliasMoved(_) => "alias_moved",
            Event::Lineage(_) => "lineage",
            Event::Attestation(_) => "attestation",
            Event::Tombstone(_) => "tombstone",
            Event::Approval(_) => "approval",
        }
    }

    /// The artifact name every event carries.
    pub fn name(&self) -> &str {
        match self {
            Event::Published(e) => &e.name,
            Event::MetadataChanged(e) => &e.name,
            Event::Lifecycle(e) => &e.name,
            Event::AliasMoved(e) => &e.name,
            Event::Lineage(e) => &e.name,
            Event::Attestation(e) => &e.name,
            Event::Tombstone(e) => &e.name,
            Event::Approval(e) => &e.name,
        }
    }

    /// The chain this entry belongs to: (name, alias) for `alias_moved`, (name, version) for
    /// every other type.
    pub fn subject(&self) -> Subject {
        let version = |name: &str, version: &str| Subject::Version {
            name: name.to_owned(),
            version: version.to_owned(),
        };
        match self {
            Event::Published(e) => version(&e.name, &e.version),
            Event::MetadataChanged(e) => version(&e.name, &e.version),
            Event::Lifecycle(e) => version(&e.name, &e.version),
            Event::AliasMoved(e) => Subject::Alias {
                name: e.name.clone(),
                alias: e.alias.clone(),
            },
            Event::Lineage(e) => version(&e.name, &e.version),
            Event::Attestation(e) => version(&e.name, &e.version),
            Event::Tombstone(e) => version(&e.name, &e.version),
            Event::Approval(e) => version(&e.name, &e.version),
        }
    }

    /// The previous entry about the same subject: `None` for `published` (which starts a
    /// version's chain) and for the first `alias_moved` of an alias.
    pub fn prev(&self) -> Option<&Prev> {
        match self {
            Event::Published(_) => None,
            Event::MetadataChanged(e) => Some(&e.prev),
            Event::Lifecycle(e) => Some(&e.prev),
            Event::AliasMoved(e) => e.prev.as_ref(),
            Event::Lineage(e) => Some(&e.prev),
            Event::Attestation(e) => Some(&e.prev),
            Event::Tombstone(e) => Some(&e.prev),
            Event::Approval(e) => Some(&e.prev),
        }
    }

    /// Who caused the entry (for `published`, the publisher).
    pub fn actor(&self) -> &str {
        match self {
            Event::Published(e) => &e.actor,
            Event::MetadataChanged(e) => &e.actor,
            Event::Lifecycle(e) => &e.actor,
            Event::AliasMoved(e) => &e.actor,
            Event::Lineage(e) => &e.actor,
            Event::Attestation(e) => &e.actor,
            Event::Tombstone(e) => &e.actor,
            Event::Approval(e) => &e.actor,
        }
    }

    /// Unix seconds, as set by the ledger.
    pub fn time(&self) -> u64 {
        *self.time_ref()
    }

    /// The ledger stamps the time when it accepts an event.
    pub fn set_time(&mut self, time: u64) {
        *self.time_mut() = time;
    }

    fn time_ref(&self) -> &u64 {
        match self {
            Event::Published(e) => &e.time,
            Event::MetadataChanged(e) => &e.time,
            Event::Lifecycle(e) => &e.time,
            Event::AliasMoved(e) => &e.time,
            Event::Lineage(e) => &e.time,
            Event::Attestation(e) => &e.time,
            Event::Tombstone(e) => &e.time,
            Event::Approval(e) => &e.time,
        }
    }

    fn time_mut(&mut self) -> &mut u64 {
        match self {
            Event::Published(e) => &mut e.time,
            Event::MetadataChanged(e) => &mut e.time,
            Event::Lifecycle(e) => &mut e.time,
            Event::AliasMoved(e) => &mut e.time,
            Event::Lineage(e) => &mut e.time,
            Event::Attestation(e) => &mut e.time,
            Event::Tombstone(e) => &mut e.time,
            Event::Approval(e) => &mut e.time,
        }
    }

    /// The logged form: the core deterministic CBOR encoding. Infallible so it can be used to
    /// compute hashes of anything; call [`Event::validate`] first (or decode) to know the log
    /// will accept the bytes: `decode(encode(e))` succeeds exactly when `validate` does.
    pub fn encode(&self) -> Vec<u8> {
        cbor::encode(&self.to_value())
    }

    /// The RFC 6962 leaf hash of [`Event::encode`], what a later entry's `prev.h` names.
    pub fn leaf_hash(&self) -> Hash {
        leaf_hash(&self.encode())
    }

    /// Parses one logged entry. Rejects anything that is not exactly the deterministic
    /// encoding of a valid event of schema version 1.
    pub fn decode(bytes: &[u8]) -> Result<Event, EventError> {
        if bytes.len() > MAX_ENTRY_BYTES {
            return Err(EventError::TooLarge(bytes.len()));
        }
        let value = cbor::decode(bytes)?;
        let event = Event::from_value(value)?;
        event.validate_fields()?;
        // Decode, re-encode, compare: the strict decoder already refused every
        // non-deterministic form, this makes the guarantee independent of its correctness.
        if event.encode() != bytes {
            return Err(EventError::NotDeterministic);
        }
        Ok(event)
    }

    /// Every rule [`Event::decode`] checks on values: syntax of names and other fields, the
    /// size limits, the stage state machine, and the encoded size.
    pub fn validate(&self) -> Result<(), EventError> {
        self.validate_fields()?;
        let len = self.encode().len();
        if len > MAX_ENTRY_BYTES {
            return Err(EventError::TooLarge(len));
        }
        Ok(())
    }

    fn validate_fields(&self) -> Result<(), EventError> {
        match self {
            Event::Published(e) => {
                check_subject(&e.name, &e.version)?;
                invalid("media_type", validate_media_type(&e.media_type))?;
                if let Some(m) = &e.meta {
                    check_meta("meta", m)?;
                }
                check_actor(&e.actor)?;
                if let Some(s) = &e.sig {
                    check_sig(s)?;
                }
            }
            Event::MetadataChanged(e) => {
                check_subject(&e.name, &e.version)?;
                if e.meta_digest.is_none() && e.meta.is_none() {
                    return invalid(
                        "meta",
                        Err("a metadata_changed entry needs meta_digest, meta or both".into()),
                    );
                }
                if let Some(m) = &e.meta {
                    check_meta("meta", m)?;
                }
                check_actor(&e.actor)?;
            }
            Event::Lifecycle(e) => {
                check_subject(&e.name, &e.version)?;
                if !e.from.can_transition_to(e.to) {
                    return invalid(
                        "to",
                        Err(format!("transition {} -> {} is not allowed", e.from, e.to)),
                    );
                }
                if let Some(r) = &e.reason {
                    invalid("reason", validate_text(r, MAX_REASON_BYTES))?;
                }
                check_actor(&e.actor)?;
            }
            Event::AliasMoved(e) => {
                invalid("name", validate_name(&e.name))?;
                invalid("alias", validate_alias(&e.alias))?;
                match (&e.to, &e.prev) {
                    (Some(to), _) => invalid("to", validate_version(to))?,
                    (None, None) => {
                        // Removing an alias that never existed records nothing.
                        return invalid(
                            "to",
                            Err("missing: the first entry of an alias (no prev) must set it".into()),
                        );
                    }
                    (None, Some(_)) => {}
                }
                check_actor(&e.actor)?;
            }
            Event::Lineage(e) => {
                check_subject(&e.name, &e.version)?;
                if e.links.is_empty() || e.links.len() > MAX_LINKS {
                    return invalid(
                        "links",
                        Err(format!("{} links, want 1..={MAX_LINKS}", e.links.len())),
                    );
                }
                for (i, link) in e.links.iter().enumerate() {
                    match &link.target {
                        Target::Artifact(a) => {
                            let at = format!("links[{i}].artifact");
                            invalid(format!("{at}.name"), validate_name(&a.name))?;
                            invalid(format!("{at}.version"), validate_version(&a.version))?;
                            if a.name == e.name && a.version == e.version {
                                return invalid(
                                    at,
                                    Err("a version cannot be its own lineage".into()),
                                );
                            }
                        }
                        Target::Uri(u) => {
                            invalid(format!("links[{i}].uri"), validate_uri(u, MAX_URI_BYTES))?
                        }
                    }
                    if e.links[..i].contains(link) {
                        return invalid(format!("links[{i}]"), Err("duplicate link".into()));
                    }
                }
                check_actor(&e.actor)?;
            }
            Event::Attestation(e) => {
                check_subject(&e.name, &e.version)?;
                invalid(
                    "predicate_type",
                    validate_uri(&e.predicate_type, MAX_PREDICATE_TYPE_BYTES),
                )?;
                invalid("media_type", validate_media_type(&e.media_type))?;
                check_actor(&e.actor)?;
            }
            Event::Tombstone(e) => {
                check_subject(&e.name, &e.version)?;
                invalid("reason", validate_text(&e.reason, MAX_REASON_BYTES))?;
                check_actor(&e.actor)?;
            }
            Event::Approval(e) => {
                check_subject(&e.name, &e.version)?;
                // Whether `to` follows the version's *current* stage needs the chain (the
                // catalog checks it); that no transition ever leads to it does not.
                if !Stage::ALL.iter().any(|s| s.can_transition_to(e.to)) {
                    return invalid(
                        "to",
                        Err(format!(
                            "no transition leads to {}, so none is approved",
                            e.to
                        )),
                    );
                }
                if let Some(c) = &e.comment {
                    invalid("comment", validate_text(c, MAX_COMMENT_BYTES))?;
                }
                check_actor(&e.actor)?;
            }
        }
        Ok(())
    }

    /// The stateless half of the chain rule, for a verifier holding this entry (logged at
    /// `index`) and the bytes of the entry its `prev` names (proved by inclusion): the
    /// previous entry comes earlier, hashes to `prev.h`, is about the same subject, and is not
    /// a tombstone. Whether it is also the *latest* entry about the subject needs the whole
    /// chain (no two entries may name the same `prev`).
    pub fn check_prev(&self, index: u64, prev_entry: &[u8]) -> Result<(), EventError> {
        let chain = |m: String| Err(EventError::Chain(m));
        let Some(prev) = self.prev() else {
            return chain(format!(
                "a {} entry without prev has no previous entry",
                self.type_name()
            ));
        };
        if prev.index >= index {
            return chain(format!(
                "index {} is not before this entry's index {index}",
                prev.index
            ));
        }
        if leaf_hash(prev_entry) != prev.leaf_hash {
            return chain(format!(
                "the entry given for index {} does not have leaf hash {}",
                prev.index, prev.leaf_hash
            ));
        }
        let before = Event::decode(prev_entry)
            .map_err(|e| EventError::Chain(format!("entry {}: {e}", prev.index)))?;
        if before.subject() != self.subject() {
            return chain(format!(
                "entry {} is about {}, not {}",
                prev.index,
                before.subject(),
                self.subject()
            ));
        }
        if let Event::Tombstone(_) = before {
            return chain(format!(
                "entry {} is a tombstone, which ends its chain",
                prev.index
            ));
        }
        Ok(())
    }

    fn to_value(&self) -> Value {
        let mut m = MapBuilder::new(self.schema_version(), self.type_name());
        match self {
            Event::Published(e) => {
                m.text("name", &e.name);
                m.text("version", &e.version);
                m.text("kind", e.kind.as_str());
                m.digest("digest", &e.digest);
                m.put("size", Value::Uint(e.size));
                m.text("media_type", &e.media_type);
                if let Some(d) = &e.meta_digest {
                    m.digest("meta_digest", d);
                }
                if let Some(meta) = &e.meta {
                    m.put("meta", meta_value(meta));
                }
                m.text("actor", &e.actor);
                if let Some(s) = &e.sig {
                    m.put(
                        "sig",
                        Value::Map(vec![
                            ("alg".into(), Value::Text(s.alg.clone())),
                            ("keyid".into(), Value::Text(s.keyid.clone())),
                            ("sig".into(), Value::Bytes(s.sig.clone())),
                        ]),
                    );
                }
                m.put("time", Value::Uint(e.time));
            }
            Event::MetadataChanged(e) => {
                m.text("name", &e.name);
                m.text("version", &e.version);
                if let Some(d) = &e.meta_digest {
                    m.digest("meta_digest", d);
                }
                if let Some(meta) = &e.meta {
                    m.put("meta", meta_value(meta));
                }
                m.common(&e.prev, &e.actor, e.time);
            }
            Event::Lifecycle(e) => {
                m.text("name", &e.name);
                m.text("version", &e.version);
                m.text("from", e.from.as_str());
                m.text("to", e.to.as_str());
                if let Some(r) = &e.reason {
                    m.text("reason", r);
                }
                m.common(&e.prev, &e.actor, e.time);
            }
            Event::AliasMoved(e) => {
                m.text("name", &e.name);
                m.text("alias", &e.alias);
                if let Some(to) = &e.to {
                    m.text("to", to);
                }
                if let Some(p) = &e.prev {
                    m.put("prev", prev_value(p));
                }
                m.text("actor", &e.actor);
                m.put("time", Value::Uint(e.time));
            }
            Event::Lineage(e) => {
                m.text("name", &e.name);
                m.text("version", &e.version);
                let links = e
                    .links
                    .iter()
                    .map(|l| {
                        let target = match &l.target {
                            Target::Artifact(a) => (
                                "artifact".to_string(),
                                Value::Map(vec![
                                    ("name".into(), Value::Text(a.name.clone())),
                                    ("version".into(), Value::Text(a.version.clone())),
                                    ("digest".into(), Value::Bytes(a.digest.0.to_vec())),
                                ]),
                            ),
                            Target::Uri(u) => ("uri".to_string(), Value::Text(u.clone())),
                        };
                        Value::Map(vec![
                            ("rel".into(), Value::Text(l.rel.as_str().into())),
                            target,
                        ])
                    })
                    .collect();
                m.put("links", Value::Array(links));
                m.common(&e.prev, &e.actor, e.time);
            }
            Event::Attestation(e) => {
                m.text("name", &e.name);
                m.text("version", &e.version);
                m.digest("statement", &e.statement);
                m.text("predicate_type", &e.predicate_type);
                m.text("media_type", &e.media_type);
                m.common(&e.prev, &e.actor, e.time);
            }
            Event::Tombstone(e) => {
                m.text("name", &e.name);
                m.text("version", &e.version);
                m.digest("digest", &e.digest);
                m.text("reason", &e.reason);
                m.common(&e.prev, &e.actor, e.time);
            }
            Event::Approval(e) => {
                m.text("name", &e.name);
                m.text("version", &e.version);
                m.text("to", e.to.as_str());
                if let Some(c) = &e.comment {
                    m.text("comment", c);
                }
                m.common(&e.prev, &e.actor, e.time);
            }
        }
        Value::Map(m.0)
    }

    fn from_value(value: Value) -> Result<Event, EventError> {
        let Value::Map(fields) = value else {
            return Err(EventError::WrongType {
                field: "entry".into(),
                expected: "a map",
                found: value.kind(),
            });
        };
        // `v` first: a future version may change anything else, including `type`.
        let v = match fields.iter().find(|(k, _)| k == "v").map(|(_, v)| v) {
            None => return Err(missing("v")),
            Some(Value::Uint(v @ 1..=SCHEMA_VERSION)) => *v,
            Some(Value::Uint(v)) => return Err(EventError::UnsupportedVersion(*v)),
            Some(other) => return Err(wrong("v", "an unsigned integer", other)),
        };
        let ty = match fields.iter().find(|(k, _)| k == "type").map(|(_, v)| v) {
            None => return Err(missing("type")),
            Some(Value::Text(t)) => t.clone(),
            Some(other) => return Err(wrong("type", "a text string", other)),
        };
        let keys = match ty.as_str() {
            "published" => PUBLISHED_KEYS,
            "metadata_changed" => METADATA_CHANGED_KEYS,
            "lifecycle" => LIFECYCLE_KEYS,
            "alias_moved" => ALIAS_MOVED_KEYS,
            "lineage" => LINEAGE_KEYS,
            "attestation" => ATTESTATION_KEYS,
            "tombstone" => TOMBSTONE_KEYS,
            "approval" => APPROVAL_KEYS,
            _ => return Err(EventError::UnknownType(quote(&ty))),
        };
        check_type_version(v, &ty)?;
        let mut o = Obj::new(fields, "", keys)?;
        Ok(match ty.as_str() {
            "published" => Event::Published(Published {
                name: o.text("name")?,
                version: o.text("version")?,
                kind: o.text_enum("kind", Kind::parse, Kind::unknown)?,
                digest: o.digest("digest")?,
                size: o.uint("size")?,
                media_type: o.text("media_type")?,
                meta_digest: o.opt_digest("meta_digest")?,
                meta: o.opt_meta("meta")?,
                actor: o.text("actor")?,
                sig: match o.opt("sig") {
                    None => None,
                    Some(v) => {
                        let mut s = Obj::new(o.map_of(v, "sig")?, "sig", &["alg", "keyid", "sig"])?;
                        Some(Signature {
                            alg: s.text("alg")?,
                            keyid: s.text("keyid")?,
                            sig: s.bytes("sig")?,
                        })
                    }
                },
                time: o.uint("time")?,
            }),
            "metadata_changed" => Event::MetadataChanged(MetadataChanged {
                name: o.text("name")?,
                version: o.text("version")?,
                meta_digest: o.opt_digest("meta_digest")?,
                meta: o.opt_meta("meta")?,
                prev: o.prev()?,
                actor: o.text("actor")?,
                time: o.uint("time")?,
            }),
            "lifecycle" => Event::Lifecycle(Lifecycle {
                name: o.text("name")?,
                version: o.text("version")?,
                from: o.text_enum("from", Stage::parse, Stage::unknown)?,
                to: o.text_enum("to", Stage::parse, Stage::unknown)?,
                reason: o.opt_text("reason")?,
                prev: o.prev()?,
                actor: o.text("actor")?,
                time: o.uint("time")?,
            }),
            "alias_moved" => Event::AliasMoved(AliasMoved {
                name: o.text("name")?,
                alias: o.text("alias")?,
                to: o.opt_text("to")?,
                prev: if o.has("prev") { Some(o.prev()?) } else { None },
                actor: o.text("actor")?,
                time: o.uint("time")?,
            }),
            "lineage" => Event::Lineage(Lineage {
                name: o.text("name")?,
                version: o.text("version")?,
                links: {
                    let items = match o.req("links")? {
                        Value::Array(items) => items,
                        other => return Err(wrong("links", "an array", &other)),
                    };
                    let mut links = Vec::with_capacity(items.len());
                    for (i, item) in items.into_iter().enumerate() {
                        let at = format!("links[{i}]");
                        let mut l =
                            Obj::new(o.map_of(item, &at)?, &at, &["rel", "artifact", "uri"])?;
                        let rel = l.text_enum("rel", Relation::parse, Relation::unknown)?;
                        let target = match (l.opt("artifact"), l.opt("uri")) {
                            (Some(a), None) => {
                                let at = format!("{at}.artifact");
                                let mut a = Obj::new(
                                    o.map_of(a, &at)?,
                                    &at,
                                    &["name", "version", "digest"],
                                )?;
                                Target::Artifact(ArtifactRef {
                                    name: a.text("name")?,
                                    version: a.text("version")?,
                                    digest: a.digest("digest")?,
                                })
                            }
                            (None, Some(u)) => Target::Uri(as_text(u, &format!("{at}.uri"))?),
                            (None, None) => return Err(missing(&format!("{at}.artifact"))),
                            (Some(_), Some(_)) => {
                                return Err(EventError::Invalid {
                                    field: at,
                                    problem: "has both artifact and uri; a link has one target"
                                        .into(),
                                })
                            }
                        };
                        links.push(Link { rel, target });
                    }
                    links
                },
                prev: o.prev()?,
                actor: o.text("actor")?,
                time: o.uint("time")?,
            }),
            "attestation" => Event::Attestation(Attestation {
                name: o.text("name")?,
                version: o.text("version")?,
                statement: o.digest("statement")?,
                predicate_type: o.text("predicate_type")?,
                media_type: o.text("media_type")?,
                prev: o.prev()?,
                actor: o.text("actor")?,
                time: o.uint("time")?,
            }),
            "tombstone" => Event::Tombstone(Tombstone {
                name: o.text("name")?,
                version: o.text("version")?,
                digest: o.digest("digest")?,
                reason: o.text("reason")?,
                prev: o.prev()?,
                actor: o.text("actor")?,
                time: o.uint("time")?,
            }),
            "approval" => Event::Approval(Approval {
                name: o.text("name")?,
                version: o.text("version")?,
                to: o.text_enum("to", Stage::parse, Stage::unknown)?,
                comment: o.opt_text("comment")?,
                prev: o.prev()?,
                actor: o.text("actor")?,
                time: o.uint("time")?,
            }),
            _ => unreachable!("type checked above"),
        })
    }
}

impl Published {
    /// What [`Published::sig`] signs: the deterministic encoding of this entry without `sig`
    /// and `time` (the publisher cannot know the time the ledger will stamp). It is a CBOR map
    /// with `"v": 1` and `"type": "published"` and without `time`, so it can be mistaken
    /// neither for a log entry nor for another event type's payload.
    pub fn signed_payload(&self) -> Vec<u8> {
        let mut unsigned = Event::Published(Published {
            sig: None,
            ..self.clone()
        })
        .to_value();
        if let Value::Map(m) = &mut unsigned {
            m.retain(|(k, _)| k != "time");
        }
        cbor::encode(&unsigned)
    }
}

impl fmt::Display for Subject {
    /// `name@version` for versions, `name:alias` for aliases (neither character can occur in
    /// a name, so the text is unambiguous).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Version { name, version } => write!(f, "{name}@{version}"),
            Subject::Alias { name, alias } => write!(f, "{name}:{alias}"),
        }
    }
}

/// The schema version that introduced event type `ty` (a known type).
fn type_version(ty: &str) -> u64 {
    match ty {
        "approval" => 2,
        _ => 1,
    }
}

/// Each type has one `v`: the version that introduced it. A v1 type under `v: 2` (or an
/// approval under `v: 1`) would be a second encoding of one event.
fn check_type_version(v: u64, ty: &str) -> Result<(), EventError> {
    let want = type_version(ty);
    if v == want {
        return Ok(());
    }
    Err(EventError::Invalid {
        field: "v".into(),
        problem: format!("{} entries carry \"v\": {want}, not {v}", quote(ty)),
    })
}

struct MapBuilder(Vec<(String, Value)>);

impl MapBuilder {
    fn new(v: u64, ty: &str) -> Self {
        MapBuilder(vec![
            ("v".into(), Value::Uint(v)),
            ("type".into(), Value::Text(ty.into())),
        ])
    }
    fn put(&mut self, k: &str, v: Value) {
        self.0.push((k.into(), v));
    }
    fn text(&mut self, k: &str, s: &str) {
        self.put(k, Value::Text(s.into()));
    }
    fn digest(&mut self, k: &str, d: &Digest) {
        self.put(k, Value::Bytes(d.0.to_vec()));
    }
    fn common(&mut self, prev: &Prev, actor: &str, time: u64) {
        self.put("prev", prev_value(prev));
        self.text("actor", actor);
        self.put("time", Value::Uint(time));
    }
}

fn prev_value(p: &Prev) -> Value {
    Value::Map(vec![
        ("i".into(), Value::Uint(p.index)),
        ("h".into(), Value::Bytes(p.leaf_hash.0.to_vec())),
    ])
}

fn meta_value(meta: &Metadata) -> Value {
    Value::Map(
        meta.iter()
            .map(|(k, v)| (k.clone(), Value::Text(v.clone())))
            .collect(),
    )
}

fn missing(field: &str) -> EventError {
    EventError::MissingField {
        field: field.into(),
    }
}

fn wrong(field: &str, expected: &'static str, found: &Value) -> EventError {
    EventError::WrongType {
        field: field.into(),
        expected,
        found: found.kind(),
    }
}

fn as_text(v: Value, field: &str) -> Result<String, EventError> {
    match v {
        Value::Text(s) => Ok(s),
        other => Err(wrong(field, "a text string", &other)),
    }
}

/// One decoded CBOR map with the keys this position allows.
struct Obj {
    path: String,
    fields: Vec<(String, Value)>,
}

impl Obj {
    fn new(fields: Vec<(String, Value)>, path: &str, allowed: &[&str]) -> Result<Obj, EventError> {
        let obj = Obj {
            path: path.into(),
            fields,
        };
        if let Some((k, _)) = obj
            .fields
            .iter()
            .find(|(k, _)| !allowed.contains(&k.as_str()))
        {
            return Err(EventError::UnknownField {
                field: obj.at(&quote_key(k)),
            });
        }
        Ok(obj)
    }
    fn map_of(&self, v: Value, at: &str) -> Result<Vec<(String, Value)>, EventError> {
        match v {
            Value::Map(m) => Ok(m),
            other => Err(wrong(at, "a map", &other)),
        }
    }
    fn at(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.into()
        } else {
            format!("{}.{key}", self.path)
        }
    }
    fn has(&self, key: &str) -> bool {
        self.fields.iter().any(|(k, _)| k == key)
    }
    fn opt(&mut self, key: &str) -> Option<Value> {
        let i = self.fields.iter().position(|(k, _)| k == key)?;
        Some(self.fields.swap_remove(i).1)
    }
    fn req(&mut self, key: &str) -> Result<Value, EventError> {
        self.opt(key).ok_or_else(|| missing(&self.at(key)))
    }
    fn text(&mut self, key: &str) -> Result<String, EventError> {
        let v = self.req(key)?;
        as_text(v, &self.at(key))
    }
    fn opt_text(&mut self, key: &str) -> Result<Option<String>, EventError> {
        match self.opt(key) {
            None => Ok(None),
            Some(v) => as_text(v, &self.at(key)).map(Some),
        }
    }
    fn text_enum<T>(
        &mut self,
        key: &str,
        parse: fn(&str) -> Option<T>,
        unknown: fn(&str) -> String,
    ) -> Result<T, EventError> {
        let s = self.text(key)?;
        parse(&s).ok_or_else(|| EventError::Invalid {
            field: self.at(key),
            problem: unknown(&s),
        })
    }
    fn uint(&mut self, key: &str) -> Result<u64, EventError> {
        match self.req(key)? {
            Value::Uint(n) => Ok(n),
            other => Err(wrong(&self.at(key), "an unsigned integer", &other)),
        }
    }
    fn bytes(&mut self, key: &str) -> Result<Vec<u8>, EventError> {
        match self.req(key)? {
            Value::Bytes(b) => Ok(b),
            other => Err(wrong(&self.at(key), "a byte string", &other)),
        }
    }
    fn hash32(&mut self, key: &str) -> Result<[u8; 32], EventError> {
        let b = self.bytes(key)?;
        b.as_slice().try_into().map_err(|_| EventError::Invalid {
            field: self.at(key),
            problem: format!("{} bytes, want a 32-byte SHA-256 value", b.len()),
        })
    }
    fn digest(&mut self, key: &str) -> Result<Digest, EventError> {
        self.hash32(key).map(Digest)
    }
    fn opt_digest(&mut self, key: &str) -> Result<Option<Digest>, EventError> {
        if self.has(key) {
            self.digest(key).map(Some)
        } else {
            Ok(None)
        }
    }
    fn opt_meta(&mut self, key: &str) -> Result<Option<Metadata>, EventError> {
        let Some(v) = self.opt(key) else {
            return Ok(None);
        };
        let at = self.at(key);
        let pairs = self.map_of(v, &at)?;
        let mut meta = Metadata::new();
        for (k, v) in pairs {
            let value = as_text(v, &format!("{at}.{}", quote(&k)))?;
            // The CBOR decoder refuses duplicate keys, so insert never overwrites.
            meta.insert(k, value);
        }
        Ok(Some(meta))
    }
    fn prev(&mut self) -> Result<Prev, EventError> {
        let at = self.at("prev");
        let v = self.req("prev")?;
        let mut p = Obj::new(self.map_of(v, &at)?, &at, &["i", "h"])?;
        Ok(Prev {
            index: p.uint("i")?,
            leaf_hash: Hash(p.hash32("h")?),
        })
    }
}

fn quote_key(k: &str) -> String {
    if !k.is_empty() && k.len() <= 64 && k.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
        k.into()
    } else {
        quote(k)
    }
}

// ---------------------------------------------------------------------------------------
// JSON (serde) form: the same map with `v` and `type`, digests as `sha256:<hex>`, other byte
// strings as standard base64.

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum TaggedRef<'a> {
    Published(&'a Published),
    MetadataChanged(&'a MetadataChanged),
    Lifecycle(&'a Lifecycle),
    AliasMoved(&'a AliasMoved),
    Lineage(&'a Lineage),
    Attestation(&'a Attestation),
    Tombstone(&'a Tombstone),
    Approval(&'a Approval),
}

#[derive(Serialize)]
struct VersionedRef<'a> {
    v: u64,
    #[serde(flatten)]
    event: TaggedRef<'a>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Tagged {
    Published(Published),
    MetadataChanged(MetadataChanged),
    Lifecycle(Lifecycle),
    AliasMoved(AliasMoved),
    Lineage(Lineage),
    Attestation(Attestation),
    Tombstone(Tombstone),
    Approval(Approval),
}

impl Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let event = match self {
            Event::Published(e) => TaggedRef::Published(e),
            Event::MetadataChanged(e) => TaggedRef::MetadataChanged(e),
            Event::Lifecycle(e) => TaggedRef::Lifecycle(e),
            Event::AliasMoved(e) => TaggedRef::AliasMoved(e),
            Event::Lineage(e) => TaggedRef::Lineage(e),
            Event::Attestation(e) => TaggedRef::Attestation(e),
            Event::Tombstone(e) => TaggedRef::Tombstone(e),
            Event::Approval(e) => TaggedRef::Approval(e),
        };
        VersionedRef {
            v: self.schema_version(),
            event,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Event {
    /// Accepts exactly what [`Event::validate`] accepts, so an event read from JSON (a CLI
    /// argument, an API body) encodes to an entry the log will take.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        let v = match map.remove("v") {
            None => return Err(D::Error::custom("v: missing")),
            Some(v) => match v.as_u64() {
                Some(n @ 1..=SCHEMA_VERSION) => n,
                _ => {
                    return Err(D::Error::custom(format!(
                        "v: unsupported schema version {v} (this reader knows 1..={SCHEMA_VERSION})"
                    )))
                }
            },
        };
        if let Some(ty) = map.get("type").and_then(|t| t.as_str()) {
            if Event::TYPES.contains(&ty) {
                check_type_version(v, ty).map_err(D::Error::custom)?;
            }
        }
        let tagged: Tagged =
            serde_json::from_value(serde_json::Value::Object(map)).map_err(D::Error::custom)?;
        let event = match tagged {
            Tagged::Published(e) => Event::Published(e),
            Tagged::MetadataChanged(e) => Event::MetadataChanged(e),
            Tagged::Lifecycle(e) => Event::Lifecycle(e),
            Tagged::AliasMoved(e) => Event::AliasMoved(e),
            Tagged::Lineage(e) => Event::Lineage(e),
            Tagged::Attestation(e) => Event::Attestation(e),
            Tagged::Tombstone(e) => Event::Tombstone(e),
            Tagged::Approval(e) => Event::Approval(e),
        };
        event.validate().map_err(D::Error::custom)?;
        Ok(event)
    }
}

/// The JSON shape of a link: `rel` plus exactly one of `artifact` and `uri`, as in CBOR.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkRepr {
    rel: Relation,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    artifact: Option<ArtifactRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uri: Option<String>,
}

impl TryFrom<LinkRepr> for Link {
    type Error = &'static str;
    fn try_from(l: LinkRepr) -> Result<Self, Self::Error> {
        let target = match (l.artifact, l.uri) {
            (Some(a), None) => Target::Artifact(a),
            (None, Some(u)) => Target::Uri(u),
            _ => return Err("a link has exactly one of artifact and uri"),
        };
        Ok(Link { rel: l.rel, target })
    }
}

impl From<Link> for LinkRepr {
    fn from(l: Link) -> Self {
        let (artifact, uri) = match l.target {
            Target::Artifact(a) => (Some(a), None),
            Target::Uri(u) => (None, Some(u)),
        };
        LinkRepr {
            rel: l.rel,
            artifact,
            uri,
        }
    }
}

mod hash_base64 {
    use crate::merkle::{hash_from_base64, hash_to_base64, Hash};
    pub fn serialize<S: serde::Serializer>(h: &Hash, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hash_to_base64(h))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Hash, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        hash_from_base64(&text).map_err(serde::de::Error::custom)
    }
}

mod bytes_base64 {
    use base64::prelude::*;
    pub fn serialize<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&BASE64_STANDARD.encode(b))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        BASE64_STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}

// ---------------------------------------------------------------------------------------
// The CBOR subset the schema uses, in core deterministic encoding.

use cbor::Value;

mod cbor {
    //! A strict codec for the subset of CBOR entries use: unsigned integers, byte strings,
    //! text strings, arrays, and maps with text keys. Written here rather than taken from a
    //! general CBOR library because the decoder's job is to *refuse*: every alternative
    //! encoding of a value (long-form integers and lengths, indefinite lengths, unsorted or
    //! duplicate keys) and every type the schema never uses (negative integers, tags, floats,
    //! simple values) is an error that says where and why. Hostile input never allocates more
    //! than its own length or recurses deeper than `MAX_DEPTH`.

    use super::{quote, EventError, MAX_DEPTH};
    use std::cmp::Ordering;

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Value {
        Uint(u64),
        Bytes(Vec<u8>),
        Text(String),
        Array(Vec<Value>),
        /// Pairs in any order; the encoder sorts them.
        Map(Vec<(String, Value)>),
    }

    impl Value {
        pub fn kind(&self) -> &'static str {
            match self {
                Value::Uint(_) => "an unsigned integer",
                Value::Bytes(_) => "a byte string",
                Value::Text(_) => "a text string",
                Value::Array(_) => "an array",
                Value::Map(_) => "a map",
            }
        }
    }

    const UINT: u8 = 0;
    const BYTES: u8 = 2;
    const TEXT: u8 = 3;
    const ARRAY: u8 = 4;
    const MAP: u8 = 5;

    /// RFC 8949 §4.2.1: the argument in the fewest bytes.
    fn head(out: &mut Vec<u8>, major: u8, n: u64) {
        let m = major << 5;
        if n < 24 {
            out.push(m | n as u8);
        } else if n <= 0xff {
            out.extend([m | 24, n as u8]);
        } else if n <= 0xffff {
            out.push(m | 25);
            out.extend((n as u16).to_be_bytes());
        } else if n <= 0xffff_ffff {
            out.push(m | 26);
            out.extend((n as u32).to_be_bytes());
        } else {
            out.push(m | 27);
            out.extend(n.to_be_bytes());
        }
    }

    pub fn encode(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        write(v, &mut out);
        out
    }

    fn write(v: &Value, out: &mut Vec<u8>) {
        match v {
            Value::Uint(n) => head(out, UINT, *n),
            Value::Bytes(b) => {
                head(out, BYTES, b.len() as u64);
                out.extend(b);
            }
            Value::Text(s) => {
                head(out, TEXT, s.len() as u64);
                out.extend(s.as_bytes());
            }
            Value::Array(items) => {
                head(out, ARRAY, items.len() as u64);
                for item in items {
                    write(item, out);
                }
            }
            Value::Map(pairs) => {
                // Keys sorted by the bytewise order of their encodings (§4.2.1), which for
                // text keys means shorter keys first, then bytewise.
                let mut sorted: Vec<(Vec<u8>, &Value)> = pairs
                    .iter()
                    .map(|(k, v)| (encode(&Value::Text(k.clone())), v))
                    .collect();
                sorted.sort_by(|a, b| a.0.cmp(&b.0));
                head(out, MAP, sorted.len() as u64);
                for (k, v) in sorted {
                    out.extend(k);
                    write(v, out);
                }
            }
        }
    }

    /// Where in the value tree the decoder is, for error messages.
    enum Path<'a> {
        Root,
        Key(&'a Path<'a>, &'a str),
        Index(&'a Path<'a>, usize),
        MapKey(&'a Path<'a>),
    }

    impl Path<'_> {
        fn render(&self) -> String {
            match self {
                Path::Root => "entry".into(),
                Path::Key(Path::Root, k) => super::quote_key(k),
                Path::Key(p, k) => format!("{}.{}", p.render(), super::quote_key(k)),
                Path::Index(p, i) => format!("{}[{i}]", p.render()),
                Path::MapKey(p) => format!("{} (a key)", p.render()),
            }
        }
    }

    /// Decodes exactly one item that must span all of `buf`.
    pub fn decode(buf: &[u8]) -> Result<Value, EventError> {
        let mut r = Reader { buf, pos: 0 };
        let v = r.item(&Path::Root, 0)?;
        if r.pos != buf.len() {
            return Err(EventError::TrailingBytes {
                offset: r.pos,
                count: buf.len() - r.pos,
            });
        }
        Ok(v)
    }

    struct Reader<'a> {
        buf: &'a [u8],
        pos: usize,
    }

    impl<'a> Reader<'a> {
        fn err(&self, path: &Path, offset: usize, problem: impl Into<String>) -> EventError {
            EventError::Cbor {
                at: path.render(),
                offset,
                problem: problem.into(),
            }
        }

        fn remaining(&self) -> usize {
            self.buf.len() - self.pos
        }

        fn take(&mut self, n: usize, path: &Path) -> Result<&'a [u8], EventError> {
            if n > self.remaining() {
                return Err(self.err(
                    path,
                    self.pos,
                    format!(
                        "truncated: {n} more bytes needed, {} left",
                        self.remaining()
                    ),
                ));
            }
            let s = &self.buf[self.pos..self.pos + n];
            self.pos += n;
            Ok(s)
        }

        /// Reads an item head: the major type and its argument, which must be in shortest
        /// form. Every major type and additional-information value the schema never uses is
        /// refused here with its name.
        fn head(&mut self, path: &Path) -> Result<(u8, u64), EventError> {
            let start = self.pos;
            let ib = self.take(1, path)?[0];
            let (major, ai) = (ib >> 5, ib & 0x1f);
            let refused = match (major, ai) {
                (_, 28..=30) => {
                    Some("reserved additional information 28..30 (not well-formed CBOR)")
                }
                (1, _) => Some("negative integer (this schema uses unsigned integers only)"),
                (6, _) => Some("tag (this schema uses no tags)"),
                (7, 20 | 21) => Some("boolean (this schema uses no booleans)"),
                (7, 22) => Some("null (leave an optional field out instead)"),
                (7, 23) => Some("undefined (this schema has no undefined values)"),
                (7, 25..=27) => {
                    Some("floating-point number (this schema uses unsigned integers only)")
                }
                (7, 31) => Some("break code outside an indefinite-length item"),
                (7, _) => Some("simple value (this schema uses none)"),
                (_, 31) => {
                    Some("indefinite length (deterministic encoding uses definite lengths only)")
                }
                _ => None,
            };
            if let Some(problem) = refused {
                return Err(self.err(path, start, problem));
            }
            let arg = match ai {
                24 => u64::from(self.take(1, path)?[0]),
                25 => u64::from(u16::from_be_bytes(self.take(2, path)?.try_into().unwrap())),
                26 => u64::from(u32::from_be_bytes(self.take(4, path)?.try_into().unwrap())),
                27 => u64::from_be_bytes(self.take(8, path)?.try_into().unwrap()),
                _ => u64::from(ai),
            };
            let shortest = match ai {
                24 => arg >= 24,
                25 => arg > 0xff,
                26 => arg > 0xffff,
                27 => arg > 0xffff_ffff,
                _ => true,
            };
            if !shortest {
                let what = if major == UINT { "integer" } else { "length" };
                return Err(self.err(
                    path,
                    start,
                    format!(
                        "{what} {arg} not in shortest form ({} bytes where {} suffice)",
                        1 + (1usize << (ai - 24)),
                        self.shortest_len(arg)
                    ),
                ));
            }
            Ok((major, arg))
        }

        fn shortest_len(&self, n: u64) -> usize {
            let mut v = Vec::new();
            head(&mut v, 0, n);
            v.len()
        }

        /// A length that must fit in the rest of the input, each element taking at least
        /// `min_each` bytes: checked before anything is allocated.
        fn len(
            &self,
            path: &Path,
            start: usize,
            n: u64,
            min_each: u64,
        ) -> Result<usize, EventError> {
            if n.saturating_mul(min_each) > self.remaining() as u64 {
                return Err(self.err(
                    path,
                    start,
                    format!(
                        "truncated: length {n} does not fit in the {} bytes left",
                        self.remaining()
                    ),
                ));
            }
            Ok(n as usize)
        }

        fn item(&mut self, path: &Path, depth: usize) -> Result<Value, EventError> {
            let start = self.pos;
            let (major, arg) = self.head(path)?;
            match major {
                UINT => Ok(Value::Uint(arg)),
                BYTES => {
                    let n = self.len(path, start, arg, 1)?;
                    Ok(Value::Bytes(self.take(n, path)?.to_vec()))
                }
                TEXT => {
                    let n = self.len(path, start, arg, 1)?;
                    let b = self.take(n, path)?;
                    match std::str::from_utf8(b) {
                        Ok(s) => Ok(Value::Text(s.to_owned())),
                        Err(_) => Err(self.err(path, start, "text string is not valid UTF-8")),
                    }
                }
                ARRAY | MAP if depth >= MAX_DEPTH => Err(self.err(
                    path,
                    start,
                    format!("nested deeper than {MAX_DEPTH} levels"),
                )),
                ARRAY => {
                    let n = self.len(path, start, arg, 1)?;
                    let mut items = Vec::with_capacity(n);
                    for i in 0..n {
                        items.push(self.item(&Path::Index(path, i), depth + 1)?);
                    }
                    Ok(Value::Array(items))
                }
                MAP => {
                    let n = self.len(path, start, arg, 2)?;
                    let mut pairs: Vec<(String, Value)> = Vec::with_capacity(n);
                    let mut last_key: Option<&'a [u8]> = None;
                    for _ in 0..n {
                        let key_start = self.pos;
                        let key_path = Path::MapKey(path);
                        match self.buf.get(self.pos) {
                            Some(b) if b >> 5 == TEXT => {}
                            Some(_) => return Err(self.err(
                                &key_path,
                                key_start,
                                "map key is not a text string (this schema uses text keys only)",
                            )),
                            None => {
                                return Err(self.err(
                                    &key_path,
                                    key_start,
                                    "truncated: map key missing",
                                ))
                            }
                        }
                        let Value::Text(key) = self.item(&key_path, depth + 1)? else {
                            unreachable!("major type 3 decodes to text")
                        };
                        let encoded = &self.buf[key_start..self.pos];
                        if let Some(last) = last_key {
                            match last.cmp(encoded) {
                                Ordering::Less => {}
                                Ordering::Equal => {
                                    return Err(self.err(
                                        path,
                                        key_start,
                                        format!("duplicate key {}", quote(&key)),
                                    ))
                                }
                                Ordering::Greater => {
                                    return Err(self.err(
                                        path,
                                        key_start,
                                        format!(
                                            "key {} out of order (deterministic encoding sorts keys by their encoded bytes: shorter first)",
                                            quote(&key)
                                        ),
                                    ))
                                }
                            }
                        }
                        last_key = Some(encoded);
                        let value = self.item(&Path::Key(path, &key), depth + 1)?;
                        pairs.push((key, value));
                    }
                    Ok(Value::Map(pairs))
                }
                _ => unreachable!("head refuses major types 1, 6 and 7"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // ---- fixtures ----------------------------------------------------------------------

    /// Hex with `#` comments and any whitespace, as written in specs/entries.md.
    fn hex(annotated: &str) -> Vec<u8> {
        let digits: String = annotated
            .lines()
            .map(|l| l.split('#').next().unwrap())
            .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
            .collect();
        assert!(digits.len().is_multiple_of(2), "odd number of hex digits");
        (0..digits.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).expect("hex digit"))
            .collect()
    }

    fn to_hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// The worked example of specs/entries.md, written by hand from RFC 8949 rather than
    /// produced by the encoder under test.
    const PUBLISHED_HEX: &str = "
        ab                                       # map, 11 pairs
           61 76  01                             # \"v\": 1
           64 6b696e64  65 6d6f64656c            # \"kind\": \"model\"
           64 6d657461  a1                       # \"meta\": map, 1 pair
              69 6672616d65776f726b              #   \"framework\"
              67 7079746f726368                  #   \"pytorch\"
           64 6e616d65                           # \"name\"
           6b 61636d652f7265736e6574             # \"acme/resnet\"
           64 73697a65  1a 00100000              # \"size\": 1048576
           64 74696d65  1a 6553f100              # \"time\": 1700000000
           64 74797065  69 7075626c6973686564    # \"type\": \"published\"
           65 6163746f72                         # \"actor\"
           71 616c696365406578616d706c652e636f6d # \"alice@example.com\"
           66 646967657374  58 20                # \"digest\": bytes, 32
              ea814f3559e6cc3aed57137a596e09a9b7b963ee2a7ee9b0d08e1b7fcd604d2f
           67 76657273696f6e  65 312e322e30      # \"version\": \"1.2.0\"
           6a 6d656469615f74797065               # \"media_type\"
           78 18 6170706c69636174696f6e2f6f637465742d73747265616d
    ";

    const LIFECYCLE_HEX: &str = "
        aa                                       # map, 10 pairs
           61 76  01                             # \"v\": 1
           62 746f  68 617070726f766564          # \"to\": \"approved\"
           64 66726f6d  65 6472616674            # \"from\": \"draft\"
           64 6e616d65                           # \"name\"
           6b 61636d652f7265736e6574             # \"acme/resnet\"
           64 70726576  a2                       # \"prev\": map, 2 pairs
              61 68  58 20                       #   \"h\": bytes, 32
                 e49fca0784a4bb9ea9f2dafbb4b918461d66ce1404f8afad6bd92af8203e7dfa
              61 69  18 29                       #   \"i\": 41
           64 74696d65  1a 6553ff10              # \"time\": 1700003600
           64 74797065  69 6c6966656379636c65    # \"type\": \"lifecycle\"
           65 6163746f72                         # \"actor\"
           6f 626f62406578616d706c652e636f6d     # \"bob@example.com\"
           66 726561736f6e                       # \"reason\"
           6b 6576616c20706173736564             # \"eval passed\"
           67 76657273696f6e  65 312e322e30      # \"version\": \"1.2.0\"
    ";

    /// The approval example of specs/entries.md: the first entry of schema version 2.
    const APPROVAL_HEX: &str = "
        a9                                       # map, 9 pairs
           61 76  02                             # \"v\": 2
           62 746f  68 72656c6561736564          # \"to\": \"released\"
           64 6e616d65                           # \"name\"
           6b 61636d652f7265736e6574             # \"acme/resnet\"
           64 70726576  a2                       # \"prev\": map, 2 pairs
              61 68  58 20                       #   \"h\": bytes, 32
                 a10d5ef4bd7bd91646218c2349bdc9323d73d2bf764df8b8551a6a4042bd0a7e
              61 69  18 2a                       #   \"i\": 42
           64 74696d65  1a 65540d20              # \"time\": 1700007200
           64 74797065  68 617070726f76616c      # \"type\": \"approval\"
           65 6163746f72                         # \"actor\"
           71 6361726f6c406578616d706c652e636f6d # \"carol@example.com\"
           67 636f6d6d656e74                     # \"comment\"
           73 62656e63686d61726b732072657669657765 64 # \"benchmarks reviewed\"
           67 76657273696f6e  65 312e322e30      # \"version\": \"1.2.0\"
    ";

    const SPEC: &str = include_str!("../../specs/entries.md");

    /// The fenced block after `<!-- vector: {name} -->` in the spec.
    fn spec_block(name: &str) -> &'static str {
        let marker = format!("<!-- vector: {name} -->");
        let after = &SPEC[SPEC
            .find(&marker)
            .unwrap_or_else(|| panic!("{marker} missing"))..];
        let open = after.find("```").unwrap();
        let body = &after[open..];
        let body = &body[body.find('\n').unwrap() + 1..];
        &body[..body.find("```").unwrap()]
    }

    fn example_published() -> Event {
        Event::Published(Published {
            name: "acme/resnet".into(),
            version: "1.2.0".into(),
            kind: Kind::Model,
            digest: Digest::of(b"resnet weights"),
            size: 1_048_576,
            media_type: "application/octet-stream".into(),
            meta_digest: None,
            meta: Some(Metadata::from([("framework".into(), "pytorch".into())])),
            actor: "alice@example.com".into(),
            sig: None,
            time: 1_700_000_000,
        })
    }

    fn example_lifecycle() -> Event {
        Event::Lifecycle(Lifecycle {
            name: "acme/resnet".into(),
            version: "1.2.0".into(),
            from: Stage::Draft,
            to: Stage::Approved,
            reason: Some("eval passed".into()),
            prev: Prev::of(41, &hex(PUBLISHED_HEX)),
            actor: "bob@example.com".into(),
            time: 1_700_003_600,
        })
    }

    fn example_approval() -> Event {
        Event::Approval(Approval {
            name: "acme/resnet".into(),
            version: "1.2.0".into(),
            to: Stage::Released,
            comment: Some("benchmarks reviewed".into()),
            prev: Prev::of(42, &hex(LIFECYCLE_HEX)),
            actor: "carol@example.com".into(),
            time: 1_700_007_200,
        })
    }

    fn approval_bytes() -> Vec<u8> {
        hex(APPROVAL_HEX)
    }

    fn prev(i: u64) -> Prev {
        Prev {
            index: i,
            leaf_hash: Hash([i as u8; 32]),
        }
    }

    /// One event of every type, plus variants with every optional field set and left out.
    fn samples() -> Vec<Event> {
        let full_published = Event::Published(Published {
            name: "org.example/vision/detr-xl_v2".into(),
            version: "2.0.0-rc.1+build.7".into(),
            kind: Kind::Dataset,
            digest: Digest::of(b"data"),
            size: u64::MAX,
            media_type: "application/vnd.apache.parquet; charset=binary".into(),
            meta_digest: Some(Digest::of(b"{\"license\":\"cc-by-4.0\"}")),
            meta: Some(Metadata::from([
                ("license".into(), "cc-by-4.0".into()),
                (
                    "org.opencontainers.image.source".into(),
                    "https://example.com/r".into(),
                ),
                ("empty".into(), "".into()),
                (
                    "ünïcode-value".replace('ü', "u").replace('ï', "i"),
                    "naïve ✓".into(),
                ),
            ])),
            actor: "Zoë Ñúñez <zoe@example.com>".into(),
            sig: Some(Signature {
                alg: "ed25519".into(),
                keyid: "zoe-2024".into(),
                sig: vec![7; 64],
            }),
            time: 0,
        });
        vec![
            example_published(),
            full_published,
            Event::MetadataChanged(MetadataChanged {
                name: "m".into(),
                version: "1".into(),
                meta_digest: Some(Digest::of(b"doc")),
                meta: None,
                prev: prev(0),
                actor: "a".into(),
                time: 23,
            }),
            Event::MetadataChanged(MetadataChanged {
                name: "m".into(),
                version: "1".into(),
                meta_digest: Some(Digest::of(b"doc")),
                meta: Some(Metadata::from([("k".into(), "v".into())])),
                prev: prev(24),
                actor: "a".into(),
                time: 24,
            }),
            example_lifecycle(),
            Event::Lifecycle(Lifecycle {
                name: "m".into(),
                version: "1".into(),
                from: Stage::Deprecated,
                to: Stage::Revoked,
                reason: None,
                prev: Prev {
                    index: u64::MAX - 1,
                    leaf_hash: Hash([0xff; 32]),
                },
                actor: "ci".into(),
                time: 255,
            }),
            Event::AliasMoved(AliasMoved {
                name: "acme/resnet".into(),
                alias: "production".into(),
                to: Some("1.2.0".into()),
                prev: None,
                actor: "carol@example.com".into(),
                time: 256,
            }),
            Event::AliasMoved(AliasMoved {
                name: "acme/resnet".into(),
                alias: "production".into(),
                to: None,
                prev: Some(prev(65_535)),
                actor: "carol@example.com".into(),
                time: 65_536,
            }),
            Event::Lineage(Lineage {
                name: "acme/resnet".into(),
                version: "1.2.0".into(),
                links: vec![
                    Link {
                        rel: Relation::TrainedFrom,
                        target: Target::Artifact(ArtifactRef {
                            name: "acme/imagenet-subset".into(),
                            version: "2024-01".into(),
                            digest: Digest::of(b"imagenet"),
                        }),
                    },
                    Link {
                        rel: Relation::CodeCommit,
                        target: Target::Uri("https://github.com/acme/resnet/commit/5f2c0e1".into()),
                    },
                    Link {
                        rel: Relation::PipelineRun,
                        target: Target::Uri("https://ci.example.com/runs/8812".into()),
                    },
                    Link {
                        rel: Relation::BaseModel,
                        target: Target::Artifact(ArtifactRef {
                            name: "acme/resnet".into(),
                            version: "1.1.0".into(),
                            digest: Digest::of(b"base"),
                        }),
                    },
                    Link {
                        rel: Relation::EvaluatedBy,
                        target: Target::Uri("urn:uuid:6e8bc430-9c3a-11d9-9669-0800200c9a66".into()),
                    },
                    Link {
                        rel: Relation::DerivedFrom,
                        target: Target::Uri("s3://bucket/key".into()),
                    },
                ],
                prev: prev(42),
                actor: "pipeline@ci.example.com".into(),
                time: 4_294_967_296,
            }),
            Event::Attestation(Attestation {
                name: "acme/resnet".into(),
                version: "1.2.0".into(),
                statement: Digest::of(b"{\"_type\":\"https://in-toto.io/Statement/v1\"}"),
                predicate_type: "https://slsa.dev/provenance/v1".into(),
                media_type: "application/vnd.in-toto+json".into(),
                prev: prev(43),
                actor: "builder@ci.example.com".into(),
                time: 1_700_000_100,
            }),
            Event::Tombstone(Tombstone {
                name: "acme/resnet".into(),
                version: "1.2.0".into(),
                digest: Digest::of(b"resnet weights"),
                reason: "GDPR erasure request #1234".into(),
                prev: prev(44),
                actor: "dpo@example.com".into(),
                time: 1_800_000_000,
            }),
            example_approval(),
            Event::Approval(Approval {
                name: "m".into(),
                version: "1".into(),
                to: Stage::Revoked,
                comment: None,
                prev: prev(45),
                actor: "https://ci.example.test#repo:org/approvals".into(),
                time: u64::MAX,
            }),
        ]
    }

    /// Replaces the only occurrence of `from` in `bytes` with `to`.
    fn splice(bytes: &[u8], from: &str, to: &str) -> Vec<u8> {
        let (from, to) = (hex(from), hex(to));
        let hits: Vec<usize> = (0..=bytes.len() - from.len())
            .filter(|&i| bytes[i..].starts_with(&from))
            .collect();
        assert_eq!(hits.len(), 1, "{} must occur exactly once", to_hex(&from));
        [&bytes[..hits[0]], &to[..], &bytes[hits[0] + from.len()..]].concat()
    }

    fn lifecycle_bytes() -> Vec<u8> {
        hex(LIFECYCLE_HEX)
    }

    /// Decodes `bytes`, which must be rejected with a message containing every needle.
    fn rejected(bytes: &[u8], needles: &[&str]) -> EventError {
        let err = Event::decode(bytes).expect_err("accepted");
        let msg = err.to_string();
        for n in needles {
            assert!(msg.contains(n), "error {msg:?} does not mention {n:?}");
        }
        err
    }

    // ---- round trips and the spec's vectors ----------------------------------------------

    #[test]
    fn every_event_type_round_trips_and_re_encodes_to_identical_bytes() {
        let samples = samples();
        let mut seen: Vec<&str> = samples.iter().map(|e| e.type_name()).collect();
        seen.dedup();
        assert_eq!(seen, Event::TYPES, "samples cover every type, in order");
        for e in &samples {
            e.validate().unwrap_or_else(|err| panic!("{e:?}: {err}"));
            let bytes = e.encode();
            let back = Event::decode(&bytes).unwrap_or_else(|err| panic!("{e:?}: {err}"));
            assert_eq!(&back, e);
            assert_eq!(back.encode(), bytes);
            assert_eq!(
                &bytes[1..4],
                &[0x61, 0x76, e.schema_version() as u8],
                "\"v\" is the first pair"
            );
            let want = if e.type_name() == "approval" { 2 } else { 1 };
            assert_eq!(e.schema_version(), want, "{}", e.type_name());
            assert_eq!(e.leaf_hash(), leaf_hash(&bytes));
        }
    }

    #[test]
    fn every_event_type_round_trips_through_json() {
        for e in samples() {
            let json = serde_json::to_string(&e).unwrap();
            assert!(json.starts_with(&format!(
                "{{\"v\":{},\"type\":\"{}\"",
                e.schema_version(),
                e.type_name()
            )));
            let back: Event =
                serde_json::from_str(&json).unwrap_or_else(|err| panic!("{json}: {err}"));
            assert_eq!(back, e);
        }
    }

    #[test]
    fn the_published_example_matches_the_spec_byte_for_byte() {
        let vector = hex(PUBLISHED_HEX);
        assert_eq!(
            hex(spec_block("published")),
            vector,
            "spec text and test vector differ"
        );
        assert_eq!(vector.len(), 207);
        assert_eq!(to_hex(&example_published().encode()), to_hex(&vector));
        assert_eq!(Event::decode(&vector).unwrap(), example_published());
    }

    #[test]
    fn the_lifecycle_example_matches_the_spec_and_chains_to_the_published_example() {
        let vector = lifecycle_bytes();
        assert_eq!(
            hex(spec_block("lifecycle")),
            vector,
            "spec text and test vector differ"
        );
        assert_eq!(vector.len(), 170);
        assert_eq!(to_hex(&example_lifecycle().encode()), to_hex(&vector));
        let e = Event::decode(&vector).unwrap();
        assert_eq!(e, example_lifecycle());
        let published = hex(PUBLISHED_HEX);
        // The leaf hash quoted in the spec's prose.
        let h = e.prev().unwrap().leaf_hash;
        assert_eq!(
            to_hex(&h.0),
            "e49fca0784a4bb9ea9f2dafbb4b918461d66ce1404f8afad6bd92af8203e7dfa"
        );
        assert!(SPEC.contains(&crate::merkle::hash_to_base64(&h)));
        e.check_prev(42, &published).unwrap();
        assert_eq!(e.subject(), example_published().subject());
    }

    #[test]
    fn the_approval_example_matches_the_spec_and_chains_to_the_lifecycle_example() {
        let vector = approval_bytes();
        assert_eq!(
            hex(spec_block("approval")),
            vector,
            "spec text and test vector differ"
        );
        assert_eq!(vector.len(), 169);
        assert_eq!(to_hex(&example_approval().encode()), to_hex(&vector));
        let e = Event::decode(&vector).unwrap();
        assert_eq!(e, example_approval());
        assert_eq!(e.schema_version(), 2);
        let h = e.prev().unwrap().leaf_hash;
        assert_eq!(
            to_hex(&h.0),
            "a10d5ef4bd7bd91646218c2349bdc9323d73d2bf764df8b8551a6a4042bd0a7e"
        );
        assert!(SPEC.contains(&crate::merkle::hash_to_base64(&h)));
        e.check_prev(43, &lifecycle_bytes()).unwrap();
        assert_eq!(e.subject(), example_published().subject());
    }

    #[test]
    fn the_json_examples_in_the_spec_are_what_serde_writes_and_reads() {
        for (name, event) in [
            ("published json", example_published()),
            ("lifecycle json", example_lifecycle()),
            ("approval json", example_approval()),
        ] {
            let text = spec_block(name);
            assert_eq!(
                serde_json::to_string_pretty(&event).unwrap(),
                text.trim_end()
            );
            assert_eq!(serde_json::from_str::<Event>(text).unwrap(), event);
        }
    }

    #[test]
    fn map_keys_are_sorted_shorter_first_then_bytewise() {
        // "to" (2 bytes) precedes "from" (4 bytes) although "f" < "t".
        let bytes = lifecycle_bytes();
        let to = bytes
            .windows(3)
            .position(|w| w == [0x62, b't', b'o'])
            .unwrap();
        let from = bytes
            .windows(5)
            .position(|w| w == [0x64, b'f', b'r', b'o', b'm'])
            .unwrap();
        assert!(to < from);
    }

    // ---- non-canonical input --------------------------------------------------------------

    #[test]
    fn unsorted_keys_are_rejected() {
        // "from" before "to": sorted as text, not as encoded bytes.
        let swapped = splice(
            &lifecycle_bytes(),
            "62746f 68617070726f766564 6466726f6d 656472616674",
            "6466726f6d 656472616674 62746f 68617070726f766564",
        );
        rejected(&swapped, &["out of order", "\"to\""]);
        // Inside a nested map: "i" before "h".
        let swapped = splice(
            &lifecycle_bytes(),
            "6168 5820 e49fca0784a4bb9ea9f2dafbb4b918461d66ce1404f8afad6bd92af8203e7dfa 6169 1829",
            "6169 1829 6168 5820 e49fca0784a4bb9ea9f2dafbb4b918461d66ce1404f8afad6bd92af8203e7dfa",
        );
        rejected(&swapped, &["prev", "out of order"]);
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let dup = splice(
            &lifecycle_bytes(),
            "62746f 68617070726f766564",
            "62746f 68617070726f766564 62746f 68617070726f766564",
        );
        let dup = splice(&dup, "aa 6176", "ab 6176");
        rejected(&dup, &["duplicate key \"to\""]);
        // Same key, different value: still a duplicate, whichever value a reader would keep.
        let dup = splice(
            &lifecycle_bytes(),
            "62746f 68617070726f766564",
            "62746f 68617070726f766564 62746f 6472616674",
        );
        rejected(&splice(&dup, "aa 6176", "ab 6176"), &["duplicate key"]);
        // In the inline metadata map.
        let published = hex(PUBLISHED_HEX);
        let dup = splice(
            &published,
            "a1 69 6672616d65776f726b 67 7079746f726368",
            "a2 69 6672616d65776f726b 67 7079746f726368 69 6672616d65776f726b 67 7079746f726368",
        );
        rejected(&dup, &["meta", "duplicate key \"framework\""]);
    }

    #[test]
    fn integers_and_lengths_not_in_shortest_form_are_rejected() {
        let b = lifecycle_bytes();
        for (from, to, needle) in [
            ("6169 1829", "6169 190029", "prev.i"),     // 41 in 2 bytes
            ("6169 1829", "6169 1a00000029", "prev.i"), // 41 in 4 bytes
            ("6169 1829", "6169 1b0000000000000029", "prev.i"), // 41 in 8 bytes
            ("1a6553ff10", "1b000000006553ff10", "time"), // 32-bit value in 8 bytes
            ("6176 01", "6176 1801", "v"),              // 1 in 1 extra byte
            ("aa 6176", "b80a 6176", "entry"),          // map count
            ("62746f 6861", "7802746f 6861", "(a key)"), // key length
            ("5820 e49f", "590020 e49f", "prev.h"),     // byte string length
            ("6b6576616c", "780b6576616c", "reason"),   // text length
        ] {
            rejected(&splice(&b, from, to), &["not in shortest form", needle]);
        }
    }

    #[test]
    fn indefinite_lengths_are_rejected() {
        let b = lifecycle_bytes();
        // Indefinite-length top-level map.
        let mut indefinite = splice(&b, "aa 6176", "bf 6176");
        indefinite.push(0xff);
        rejected(&indefinite, &["indefinite length", "entry"]);
        // Indefinite-length text in chunks: "eval" "passed".
        let chunked = splice(
            &b,
            "6b 6576616c20706173736564",
            "7f 65 6576616c20 66 706173736564 ff",
        );
        rejected(&chunked, &["indefinite length", "reason"]);
        // Indefinite-length byte string and nested map.
        rejected(
            &splice(&b, "5820 e49f", "5f 5820 e49f"),
            &["indefinite length", "prev.h"],
        );
        rejected(
            &splice(&b, "a2 6168", "bf 6168"),
            &["indefinite length", "prev"],
        );
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let b = lifecycle_bytes();
        let err = rejected(&[&b[..], &[0x00]].concat(), &["trailing"]);
        assert_eq!(
            err,
            EventError::TrailingBytes {
                offset: 170,
                count: 1
            }
        );
        rejected(&[&b[..], &b[..]].concat(), &["170 trailing bytes"]);
        rejected(&[&b[..], &[0xff]].concat(), &["trailing"]);
    }

    #[test]
    fn floats_where_integers_are_expected_are_rejected() {
        let b = lifecycle_bytes();
        let double = format!("fb{}", to_hex(&1_700_003_600f64.to_be_bytes()));
        rejected(
            &splice(&b, "1a6553ff10", &double),
            &["time", "floating-point"],
        );
        rejected(
            &splice(&b, "6169 1829", "6169 f95128"),
            &["prev.i", "floating-point"],
        ); // 41.0 half
        rejected(
            &splice(&b, "6176 01", "6176 fa3f800000"),
            &["v", "floating-point"],
        ); // 1.0 single
    }

    #[test]
    fn types_the_schema_never_uses_are_rejected() {
        let b = lifecycle_bytes();
        for (to, needles) in [
            ("6169 20", &["prev.i", "negative integer"][..]),
            ("6169 c11829", &["prev.i", "tag"]),
            ("6169 f6", &["prev.i", "null"]),
            ("6169 f5", &["prev.i", "boolean"]),
            ("6169 f7", &["prev.i", "undefined"]),
            ("6169 f0", &["prev.i", "simple value"]),
            ("6169 ff", &["prev.i", "break"]),
            ("6169 1c", &["prev.i", "reserved"]),
        ] {
            rejected(&splice(&b, "6169 1829", to), needles);
        }
        // A byte-string key.
        rejected(
            &splice(&b, "6176 01", "4176 01"),
            &["key is not a text string"],
        );
        // Text that is not UTF-8.
        rejected(
            &splice(&b, "6b 6576616c20706173736564", "6b 6576616c20706173ff6564"),
            &["reason", "UTF-8"],
        );
    }

    #[test]
    fn unknown_event_types_are_rejected() {
        let b = lifecycle_bytes();
        rejected(
            &splice(&b, "69 6c6966656379636c65", "69 6c6966656379636c66"),
            &["type", "unknown event type \"lifecyclf\""],
        );
        rejected(
            &splice(&b, "69 6c6966656379636c65", "69 4c6966656379636c65"),
            &["unknown event type \"Lifecycle\""],
        );
        rejected(
            &splice(&b, "64 74797065 69 6c6966656379636c65", "64 74797065 18 2a"),
            &["type", "expected a text string"],
        );
    }

    #[test]
    fn unknown_fields_are_rejected_at_every_depth() {
        let b = lifecycle_bytes();
        // "zz": 0 sorts after "to" among 2-byte keys.
        let extra = splice(
            &splice(&b, "aa 6176", "ab 6176"),
            "68617070726f766564",
            "68617070726f766564 627a7a 00",
        );
        let err = rejected(&extra, &["zz: unknown field"]);
        assert_eq!(err, EventError::UnknownField { field: "zz".into() });
        // Reported before anything is missing: a typo names itself.
        let typo = splice(&b, "66 726561736f6e", "66 726561736f6f");
        rejected(&typo, &["reasoo: unknown field"]);
        // Inside prev.
        let extra = splice(
            &splice(&b, "a2 6168", "a3 6168"),
            "6169 1829",
            "6169 1829 6178 00",
        );
        rejected(&extra, &["prev.x: unknown field"]);
        // A field of another event type.
        let extra = splice(
            &splice(&b, "aa 6176", "ab 6176"),
            "656472616674 64 6e616d65",
            "656472616674 64 6b696e64 00 64 6e616d65",
        );
        rejected(&extra, &["kind: unknown field"]);
        // Inside a lineage link.
        let mut lineage = Event::Lineage(Lineage {
            name: "m".into(),
            version: "1".into(),
            links: vec![Link {
                rel: Relation::CodeCommit,
                target: Target::Uri("https://x/1".into()),
            }],
            prev: prev(1),
            actor: "a".into(),
            time: 0,
        })
        .encode();
        lineage = splice(&lineage, "a2 63 72656c", "a3 63 72656c");
        let pos = lineage
            .windows(4)
            .position(|w| w == [0x63, b'r', b'e', b'l'])
            .unwrap();
        lineage.splice(pos..pos, hex("627a7a 00")); // "zz" sorts before "rel"
        rejected(&lineage, &["links[0].zz: unknown field"]);
    }

    #[test]
    fn unsupported_schema_versions_are_rejected() {
        let b = lifecycle_bytes();
        assert_eq!(
            rejected(&splice(&b, "6176 01", "6176 03"), &["v:"]),
            EventError::UnsupportedVersion(3)
        );
        rejected(
            &splice(&b, "6176 01", "6176 1864"),
            &["unsupported schema version 100"],
        );
        rejected(
            &splice(&b, "6176 01", "6176 00"),
            &["unsupported schema version 0"],
        );
        let no_v = splice(&b, "aa 6176 01", "a9");
        assert_eq!(
            rejected(&no_v, &["v: missing"]),
            EventError::MissingField { field: "v".into() }
        );
    }

    #[test]
    fn each_event_type_has_exactly_one_schema_version() {
        // A v1 type under "v": 2 would be a second encoding of the same event.
        let err = rejected(
            &splice(&lifecycle_bytes(), "6176 01", "6176 02"),
            &["v:", "\"lifecycle\" entries carry \"v\": 1, not 2"],
        );
        assert!(matches!(err, EventError::Invalid { ref field, .. } if field == "v"));
        // ...and an approval under "v": 1 is not a v1 entry: v1 has no such type.
        rejected(
            &splice(&approval_bytes(), "6176 02", "6176 01"),
            &["v:", "\"approval\" entries carry \"v\": 2, not 1"],
        );
        // The same in JSON.
        let mut json = serde_json::to_value(example_approval()).unwrap();
        json["v"] = 1.into();
        let err = serde_json::from_value::<Event>(json)
            .unwrap_err()
            .to_string();
        assert!(err.contains("carry \"v\": 2"), "{err}");
        let mut json = serde_json::to_value(example_lifecycle()).unwrap();
        json["v"] = 2.into();
        let err = serde_json::from_value::<Event>(json)
            .unwrap_err()
            .to_string();
        assert!(err.contains("carry \"v\": 1"), "{err}");
    }

    #[test]
    fn hostile_approval_entries_are_rejected_naming_the_field() {
        let b = approval_bytes();
        // A field of another type: "reason" is the lifecycle's word, not the approval's.
        let extra = splice(
            &splice(&b, "a9 6176", "aa 6176"),
            "67 636f6d6d656e74",
            "66 726561736f6e 61 78 67 636f6d6d656e74",
        );
        rejected(&extra, &["reason: unknown field"]);
        // An unknown stage, a stage no transition leads to, the wrong CBOR type.
        rejected(
            &splice(&b, "68 72656c6561736564", "68 72656c6561736573"),
            &["to", "unknown stage \"releases\""],
        );
        rejected(
            &splice(&b, "68 72656c6561736564", "65 6472616674"),
            &["to", "no transition leads to draft"],
        );
        rejected(
            &splice(&b, "68 72656c6561736564", "02"),
            &["to", "expected a text string"],
        );
        rejected(
            &splice(
                &b,
                "73 62656e63686d61726b732072657669657765 64",
                "53 62656e63686d61726b732072657669657765 64",
            ),
            &["comment", "expected a text string"],
        );
        // No prev: an approval is always part of a chain that a publication started.
        let no_prev = splice(
            &splice(&b, "a9 6176", "a8 6176"),
            "64 70726576 a2 6168 5820 a10d5ef4bd7bd91646218c2349bdc9323d73d2bf764df8b8551a6a4042bd0a7e 6169 182a",
            "",
        );
        rejected(&no_prev, &["prev: missing"]);
        // A comment that could rewrite a terminal, an empty one, an oversized one.
        let approval = |comment: Option<String>| {
            let Event::Approval(mut a) = example_approval() else {
                unreachable!()
            };
            a.comment = comment;
            Event::Approval(a)
        };
        invalid_event(
            &approval(Some("ok\u{1b}[2Jforged".into())),
            &["comment", "control character"],
        );
        invalid_event(&approval(Some(String::new())), &["comment", "empty"]);
        invalid_event(
            &approval(Some("x".repeat(MAX_COMMENT_BYTES + 1))),
            &["comment", "1025 bytes"],
        );
        approval(Some("x".repeat(MAX_COMMENT_BYTES)))
            .validate()
            .unwrap();
        let Event::Approval(mut a) = example_approval() else {
            unreachable!()
        };
        a.to = Stage::Draft;
        invalid_event(&Event::Approval(a), &["to", "no transition leads to draft"]);
    }

    #[test]
    fn missing_fields_and_wrong_types_name_the_field() {
        let b = lifecycle_bytes();
        let no_actor = splice(
            &splice(&b, "aa 6176", "a9 6176"),
            "65 6163746f72 6f 626f62406578616d706c652e636f6d",
            "",
        );
        rejected(&no_actor, &["actor: missing"]);
        rejected(
            &splice(&b, "1a6553ff10", "6131"),
            &["time: expected an unsigned integer, found a text string"],
        );
        rejected(
            &splice(
                &b,
                "5820 e49fca0784a4bb9ea9f2dafbb4b918461d66ce1404f8afad6bd92af8203e7dfa",
                "581f e49fca0784a4bb9ea9f2dafbb4b918461d66ce1404f8afad6bd92af8203e7d",
            ),
            &["prev.h", "31 bytes"],
        );
        rejected(
            &splice(&b, "68 617070726f766564", "68 617070726f766573"),
            &["to", "unknown stage \"approves\""],
        );
        rejected(&[0x80], &["entry: expected a map, found an array"]);
        let published = hex(PUBLISHED_HEX);
        rejected(
            &splice(&published, "65 6d6f64656c", "65 6d6f64656d"),
            &["kind", "unknown kind"],
        );
        rejected(
            &splice(&published, "67 7079746f726368", "47 7079746f726368"),
            &["meta.\"framework\"", "expected a text string"],
        );
    }

    #[test]
    fn truncated_input_is_rejected_at_every_length() {
        for e in samples() {
            let b = e.encode();
            for n in 0..b.len() {
                let err = Event::decode(&b[..n]).expect_err("a prefix decoded");
                assert!(err.to_string().contains("truncated"), "{n}: {err}");
            }
        }
    }

    // ---- limits and syntax ------------------------------------------------------------------

    fn with_published(f: impl FnOnce(&mut Published)) -> Event {
        let Event::Published(mut p) = example_published() else {
            unreachable!()
        };
        f(&mut p);
        Event::Published(p)
    }

    /// Both halves reject: `validate` before encoding, `decode` on the logged form.
    fn invalid_event(e: &Event, needles: &[&str]) {
        let err = e.validate().expect_err("validated");
        let msg = err.to_string();
        for n in needles {
            assert!(msg.contains(n), "validate: {msg:?} does not mention {n:?}");
        }
        rejected(&e.encode(), needles);
        let json = serde_json::to_string(e).unwrap();
        assert!(
            serde_json::from_str::<Event>(&json).is_err(),
            "JSON accepted {json}"
        );
    }

    #[test]
    fn oversized_fields_are_rejected() {
        let max_name = format!("{}/{}", "a".repeat(100), "b".repeat(155));
        assert_eq!(max_name.len(), MAX_NAME_BYTES);
        with_published(|p| p.name = max_name.clone())
            .validate()
            .unwrap();
        invalid_event(
            &with_published(|p| p.name = max_name.clone() + "c"),
            &["name", "257 bytes, at most 256"],
        );
        with_published(|p| p.version = "1".repeat(128))
            .validate()
            .unwrap();
        invalid_event(
            &with_published(|p| p.version = "1".repeat(129)),
            &["version", "129 bytes"],
        );
        invalid_event(
            &with_published(|p| p.actor = "x".repeat(257)),
            &["actor", "257 bytes"],
        );
        invalid_event(
            &with_published(|p| p.media_type = format!("application/{}", "x".repeat(128))),
            &["media_type"],
        );
        let many: Metadata = (0..65).map(|i| (format!("k{i}"), "v".into())).collect();
        invalid_event(
            &with_published(|p| p.meta = Some(many)),
            &["meta", "65 pairs, at most 64"],
        );
        let long_value = Metadata::from([("k".into(), "v".repeat(1025))]);
        invalid_event(
            &with_published(|p| p.meta = Some(long_value)),
            &["meta.\"k\"", "1025 bytes"],
        );
        let big: Metadata = (0..20)
            .map(|i| (format!("k{i}"), "v".repeat(1000)))
            .collect();
        invalid_event(
            &with_published(|p| p.meta = Some(big)),
            &["meta", "at most 16384"],
        );
        let long_key = Metadata::from([("k".repeat(129), "v".into())]);
        invalid_event(
            &with_published(|p| p.meta = Some(long_key)),
            &["meta", "key 129 bytes"],
        );
        let big_sig = Signature {
            alg: "ed25519".into(),
            keyid: "k".into(),
            sig: vec![0; MAX_SIG_BYTES + 1],
        };
        invalid_event(
            &with_published(|p| p.sig = Some(big_sig)),
            &["sig.sig", "8193 bytes"],
        );
        let alias = Event::AliasMoved(AliasMoved {
            name: "m".into(),
            alias: "a".repeat(65),
            to: Some("1".into()),
            prev: None,
            actor: "a".into(),
            time: 0,
        });
        invalid_event(&alias, &["alias", "65 bytes"]);
    }

    #[test]
    fn entries_over_65535_bytes_are_rejected_whatever_the_field_limits_allow() {
        let link = |i: usize| Link {
            rel: Relation::DerivedFrom,
            target: Target::Uri(format!("https://example.com/{i}/{}", "x".repeat(2000))),
        };
        let e = Event::Lineage(Lineage {
            name: "m".into(),
            version: "1".into(),
            links: (0..MAX_LINKS).map(link).collect(),
            prev: prev(1),
            actor: "a".into(),
            time: 0,
        });
        let len = e.encode().len();
        assert!(len > MAX_ENTRY_BYTES);
        assert_eq!(e.validate(), Err(EventError::TooLarge(len)));
        assert_eq!(Event::decode(&e.encode()), Err(EventError::TooLarge(len)));
        assert_eq!(
            Event::decode(&vec![0u8; MAX_ENTRY_BYTES + 1]),
            Err(EventError::TooLarge(65_536))
        );
        let too_many = Event::Lineage(Lineage {
            links: (0..MAX_LINKS + 1)
                .map(|i| Link {
                    rel: Relation::DerivedFrom,
                    target: Target::Uri(format!("urn:x:{i}")),
                })
                .collect(),
            ..match e {
                Event::Lineage(l) => l,
                _ => unreachable!(),
            }
        });
        invalid_event(&too_many, &["links", "65 links"]);
    }

    #[test]
    fn artifact_names_are_lowercase_slash_separated_segments() {
        for ok in [
            "m",
            "0",
            "acme/resnet",
            "org.example/vision/detr-xl_v2",
            "a.b-c_d/e",
            "a/b/c/d",
        ] {
            validate_name(ok).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
        }
        for (bad, why) in [
            ("", "empty"),
            ("Acme", "start with"),
            ("acme/resNet", "contains 'N'"),
            ("acme//resnet", "empty segment"),
            ("/acme", "empty segment"),
            ("acme/", "empty segment"),
            ("acme/../etc", "\"..\""),
            ("a..b", "\"..\""),
            ("acme/.hidden", "start with"),
            ("-acme", "start with"),
            ("acme resnet", "contains ' '"),
            ("acme:prod", "contains ':'"),
            ("acme@1", "contains '@'"),
            ("ácme", "start with"),
            ("acme\n", "contains '\\n'"),
        ] {
            let err = validate_name(bad).expect_err(bad);
            assert!(err.contains(why), "{bad:?}: {err:?} does not say {why:?}");
        }
    }

    #[test]
    fn versions_and_aliases_have_their_own_syntax() {
        for ok in [
            "1",
            "1.2.0",
            "2.0.0-rc.1+build.7",
            "v1",
            "2024-01-15",
            "5f2c0e1",
            "1.0_post",
        ] {
            validate_version(ok).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
        }
        for bad in ["", ".1", "-1", "+1", "1 0", "1/0", "1:0", "é"] {
            assert!(validate_version(bad).is_err(), "{bad:?}");
        }
        for ok in [
            "production",
            "latest",
            "staging-eu",
            "v2",
            "canary.1",
            "a_b",
        ] {
            validate_alias(ok).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
        }
        for bad in ["", "Production", "2", "-x", "prod/eu", "prod eu", "prod+1"] {
            assert!(validate_alias(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn media_types_uris_and_free_text_are_checked() {
        for ok in [
            "application/octet-stream",
            "application/vnd.in-toto+json",
            "text/plain; charset=utf-8",
            "application/x-hdf5",
        ] {
            validate_media_type(ok).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
        }
        for bad in [
            "",
            "application",
            "Application/JSON",
            "/json",
            "application/",
            "application/json\r\n",
            "tëxt/plain",
        ] {
            assert!(validate_media_type(bad).is_err(), "{bad:?}");
        }
        for ok in [
            "https://github.com/acme/resnet/commit/5f2c0e1",
            "urn:uuid:6e8b",
            "git+ssh://git@example.com/r.git",
            "s3://b/k",
        ] {
            validate_uri(ok, MAX_URI_BYTES).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
        }
        for bad in [
            "",
            "github.com/acme",
            "HTTPS://x",
            ":x",
            "https:",
            "https://x y",
            "https://é",
            "1http://x",
        ] {
            assert!(validate_uri(bad, MAX_URI_BYTES).is_err(), "{bad:?}");
        }
        assert!(validate_text("Zoë <zoe@example.com>", 256).is_ok());
        for bad in [
            "",
            "a\u{1b}[2Jb",
            "line\nbreak",
            "tab\t",
            "\u{7f}",
            "\u{85}",
        ] {
            assert!(validate_text(bad, 256).is_err(), "{bad:?}");
        }
        invalid_event(
            &with_published(|p| p.actor = "eve\u{1b}[31m".into()),
            &["actor", "control character"],
        );
    }

    #[test]
    fn optional_fields_are_absent_never_empty() {
        invalid_event(
            &with_published(|p| p.meta = Some(Metadata::new())),
            &["meta", "empty map"],
        );
        let neither = Event::MetadataChanged(MetadataChanged {
            name: "m".into(),
            version: "1".into(),
            meta_digest: None,
            meta: None,
            prev: prev(1),
            actor: "a".into(),
            time: 0,
        });
        invalid_event(&neither, &["meta_digest, meta or both"]);
        let removal_without_history = Event::AliasMoved(AliasMoved {
            name: "m".into(),
            alias: "production".into(),
            to: None,
            prev: None,
            actor: "a".into(),
            time: 0,
        });
        invalid_event(&removal_without_history, &["to", "first entry of an alias"]);
        let lineage = |links| {
            Event::Lineage(Lineage {
                name: "m".into(),
                version: "1".into(),
                links,
                prev: prev(1),
                actor: "a".into(),
                time: 0,
            })
        };
        invalid_event(&lineage(vec![]), &["links", "0 links"]);
        let uri = Link {
            rel: Relation::CodeCommit,
            target: Target::Uri("https://x/1".into()),
        };
        invalid_event(
            &lineage(vec![uri.clone(), uri]),
            &["links[1]", "duplicate link"],
        );
        let own = Link {
            rel: Relation::DerivedFrom,
            target: Target::Artifact(ArtifactRef {
                name: "m".into(),
                version: "1".into(),
                digest: Digest::of(b""),
            }),
        };
        invalid_event(
            &lineage(vec![own]),
            &["links[0].artifact", "its own lineage"],
        );
        // A link with both targets or neither.
        let good = lineage(vec![Link {
            rel: Relation::CodeCommit,
            target: Target::Uri("https://x/1".into()),
        }])
        .encode();
        let both = splice(
            &splice(&good, "a2 63 72656c", "a3 63 72656c"),
            "63 757269",
            "63 757269 6a 68747470733a2f2f782f31 68 6172746966616374",
        );
        assert!(Event::decode(&both).is_err());
        let neither = splice(
            &splice(&good, "a2 63 72656c", "a1 63 72656c"),
            "63 757269 6b 68747470733a2f2f782f31",
            "",
        );
        rejected(&neither, &["links[0].artifact: missing"]);
        let json = r#"{"v":1,"type":"lineage","name":"m","version":"1","links":[{"rel":"code_commit"}],"prev":{"i":1,"h":"AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="},"actor":"a","time":0}"#;
        assert!(serde_json::from_str::<Event>(json).is_err());
    }

    #[test]
    fn json_rejects_unknown_fields_and_versions() {
        let json = serde_json::to_value(example_lifecycle()).unwrap();
        let mut extra = json.clone();
        extra["zz"] = 0.into();
        assert!(serde_json::from_value::<Event>(extra)
            .unwrap_err()
            .to_string()
            .contains("zz"));
        let mut nested = json.clone();
        nested["prev"]["x"] = 0.into();
        assert!(serde_json::from_value::<Event>(nested).is_err());
        let mut v3 = json.clone();
        v3["v"] = 3.into();
        assert!(serde_json::from_value::<Event>(v3)
            .unwrap_err()
            .to_string()
            .contains("unsupported schema version 3"));
        let mut no_v = json.clone();
        no_v.as_object_mut().unwrap().remove("v");
        assert!(serde_json::from_value::<Event>(no_v).is_err());
        let mut bad_type = json;
        bad_type["type"] = "renamed".into();
        assert!(serde_json::from_value::<Event>(bad_type).is_err());
    }

    // ---- hostile input ----------------------------------------------------------------------

    /// xorshift64*: deterministic, so a failure reproduces.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// Anything decode accepts is canonical: it re-encodes to the same bytes.
    fn decode_must_not_lie(bytes: &[u8]) {
        if let Ok(e) = Event::decode(bytes) {
            assert_eq!(
                e.encode(),
                bytes,
                "accepted a non-canonical encoding of {e:?}"
            );
            e.validate().unwrap();
        }
    }

    #[test]
    fn random_garbage_never_panics() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..50_000 {
            let len = rng.below(96);
            let mut b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            // Half of them look like a map, to get past the first byte.
            if rng.next() & 1 == 0 && !b.is_empty() {
                b[0] = 0xa0 | (rng.below(16) as u8);
            }
            decode_must_not_lie(&b);
        }
        // Huge declared lengths must not allocate or overflow.
        for b in [
            &[0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff][..],
            &[0x7b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            &[0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            &[0xbb, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
            &[0xba, 0xff, 0xff, 0xff, 0xff],
        ] {
            rejected(b, &["truncated"]);
        }
        // Deep nesting is refused, not recursed into.
        let deep = vec![0x81; 60_000];
        rejected(&deep, &["nested deeper than 8"]);
    }

    #[test]
    fn mutations_of_valid_entries_are_rejected_or_canonical() {
        let mut rng = Rng(0xdead_beef_cafe_f00d);
        for e in samples() {
            let base = e.encode();
            for _ in 0..3_000 {
                let mut b = base.clone();
                for _ in 0..1 + rng.below(3) {
                    let i = rng.below(b.len().max(1));
                    match rng.below(5) {
                        0 if !b.is_empty() => b[i] ^= 1 << rng.below(8),
                        1 if !b.is_empty() => b[i] = rng.next() as u8,
                        2 => b.insert(i.min(b.len()), rng.next() as u8),
                        3 if !b.is_empty() => {
                            b.remove(i);
                        }
                        _ => b.truncate(i),
                    }
                }
                decode_must_not_lie(&b);
            }
        }
    }

    // ---- the state machine, subjects and chains -------------------------------------------

    #[test]
    fn stages_move_forward_only_along_the_documented_state_machine() {
        use Stage::*;
        let allowed = [
            (Draft, Approved),
            (Approved, Released),
            (Released, Deprecated),
            (Deprecated, Retired),
            (Draft, Revoked),
            (Approved, Revoked),
            (Released, Revoked),
            (Deprecated, Revoked),
        ];
        for &from in Stage::ALL {
            for &to in Stage::ALL {
                assert_eq!(
                    from.can_transition_to(to),
                    allowed.contains(&(from, to)),
                    "{from} -> {to}"
                );
            }
        }
        assert_eq!(Stage::INITIAL, Draft);
    }

    #[test]
    fn revoked_is_reachable_from_every_stage_but_retired_and_nothing_leaves_revoked_or_retired() {
        for &s in Stage::ALL {
            assert_eq!(s.can_transition_to(Stage::Revoked), !s.is_terminal(), "{s}");
            assert!(!s.can_transition_to(s), "self-transition {s}");
        }
        assert!(Stage::Retired.is_terminal() && Stage::Revoked.is_terminal());
        assert!(Stage::Retired.successors().is_empty() && Stage::Revoked.successors().is_empty());
    }

    #[test]
    fn lifecycle_entries_with_forbidden_transitions_are_rejected() {
        let with = |from, to| {
            let Event::Lifecycle(mut l) = example_lifecycle() else {
                unreachable!()
            };
            l.from = from;
            l.to = to;
            Event::Lifecycle(l)
        };
        invalid_event(
            &with(Stage::Released, Stage::Draft),
            &["to", "transition released -> draft is not allowed"],
        );
        invalid_event(
            &with(Stage::Approved, Stage::Approved),
            &["approved -> approved"],
        );
        invalid_event(
            &with(Stage::Revoked, Stage::Released),
            &["revoked -> released"],
        );
        invalid_event(
            &with(Stage::Retired, Stage::Revoked),
            &["retired -> revoked"],
        );
        with(Stage::Deprecated, Stage::Retired).validate().unwrap();
    }

    #[test]
    fn subjects_are_name_and_version_or_name_and_alias() {
        for e in samples() {
            match (&e, e.subject()) {
                (Event::AliasMoved(a), Subject::Alias { name, alias }) => {
                    assert_eq!((&name, &alias), (&a.name, &a.alias));
                }
                (Event::AliasMoved(_), s) => panic!("alias event with subject {s:?}"),
                (_, Subject::Version { name, .. }) => assert_eq!(name, e.name()),
                (_, s) => panic!("version event with subject {s:?}"),
            }
            // Only published starts a chain unconditionally.
            assert_eq!(
                e.prev().is_none(),
                matches!(&e, Event::Published(_))
                    || matches!(&e, Event::AliasMoved(a) if a.prev.is_none())
            );
        }
        let s = example_published().subject();
        assert_eq!(s.to_string(), "acme/resnet@1.2.0");
        assert_eq!(samples()[6].subject().to_string(), "acme/resnet:production");
    }

    #[test]
    fn check_prev_follows_one_link_of_a_chain() {
        let published = example_published().encode();
        let approved = example_lifecycle();
        approved.check_prev(42, &published).unwrap();
        // The previous entry must come earlier.
        assert!(approved
            .check_prev(41, &published)
            .unwrap_err()
            .to_string()
            .contains("not before"));
        // Different bytes have a different leaf hash.
        let mut other = published.clone();
        *other.last_mut().unwrap() ^= 1;
        assert!(approved
            .check_prev(42, &other)
            .unwrap_err()
            .to_string()
            .contains("leaf hash"));
        // Same hash chain, other subject.
        let other_version = with_published(|p| p.version = "1.3.0".into()).encode();
        let Event::Lifecycle(mut l) = example_lifecycle() else {
            unreachable!()
        };
        l.prev = Prev::of(41, &other_version);
        assert!(approved.check_prev(42, &other_version).is_err());
        assert!(Event::Lifecycle(l)
            .check_prev(42, &other_version)
            .unwrap_err()
            .to_string()
            .contains("is about"));
        // Nothing follows a tombstone.
        let tomb = Event::Tombstone(Tombstone {
            name: "acme/resnet".into(),
            version: "1.2.0".into(),
            digest: Digest::of(b"resnet weights"),
            reason: "purged".into(),
            prev: Prev::of(41, &published),
            actor: "dpo@example.com".into(),
            time: 1,
        })
        .encode();
        let Event::Lifecycle(mut l) = example_lifecycle() else {
            unreachable!()
        };
        l.prev = Prev::of(50, &tomb);
        assert!(Event::Lifecycle(l)
            .check_prev(51, &tomb)
            .unwrap_err()
            .to_string()
            .contains("tombstone"));
        // A chain start has nothing to check.
        assert!(example_published().check_prev(1, &published).is_err());
    }

    #[test]
    fn the_publisher_signs_the_entry_without_sig_and_time() {
        let signed = with_published(|p| {
            p.sig = Some(Signature {
                alg: "ed25519".into(),
                keyid: "k1".into(),
                sig: vec![1; 64],
            })
        });
        let Event::Published(p) = &signed else {
            unreachable!()
        };
        let payload = p.signed_payload();
        // Stamping a different time or attaching the signature does not change the payload.
        let mut restamped = p.clone();
        restamped.time += 1;
        restamped.sig = None;
        assert_eq!(restamped.signed_payload(), payload);
        // It is a deterministic map with "v" and "type" and no "time": never a valid entry.
        let value = cbor::decode(&payload).unwrap();
        assert_eq!(cbor::encode(&value), payload);
        rejected(&payload, &["time: missing"]);
        let unsigned = with_published(|_| {}).encode();
        assert!(payload.len() < unsigned.len());
    }

    // ---- independent encoders as oracles ----------------------------------------------------

    /// ciborium, an unrelated CBOR implementation, reads every entry and writes it back
    /// unchanged (it keeps map order and writes shortest-form heads), and every map's keys
    /// are strictly increasing by their ciborium encoding.
    #[test]
    fn encodings_agree_with_ciborium() {
        fn keys_sorted(v: &ciborium::Value) {
            match v {
                ciborium::Value::Map(pairs) => {
                    let keys: Vec<Vec<u8>> = pairs
                        .iter()
                        .map(|(k, _)| {
                            let mut out = Vec::new();
                            ciborium::ser::into_writer(k, &mut out).unwrap();
                            out
                        })
                        .collect();
                    assert!(keys.windows(2).all(|w| w[0] < w[1]), "unsorted {keys:?}");
                    pairs.iter().for_each(|(_, v)| keys_sorted(v));
                }
                ciborium::Value::Array(items) => items.iter().for_each(keys_sorted),
                ciborium::Value::Integer(_)
                | ciborium::Value::Bytes(_)
                | ciborium::Value::Text(_) => {}
                other => panic!("unexpected CBOR type {other:?}"),
            }
        }
        for e in samples() {
            let bytes = e.encode();
            let value: ciborium::Value = ciborium::de::from_reader(&bytes[..]).unwrap();
            keys_sorted(&value);
            let mut again = Vec::new();
            ciborium::ser::into_writer(&value, &mut again).unwrap();
            assert_eq!(to_hex(&again), to_hex(&bytes), "{}", e.type_name());
        }
    }

    /// Python's cbor2 with `canonical=True` re-encodes every entry to the same bytes. A
    /// test-time oracle only: skipped (with a message) when python3 or cbor2 is missing.
    #[test]
    fn encodings_agree_with_python_cbor2_canonical() {
        use std::io::Write;
        use std::process::{Command, Stdio};
        const SCRIPT: &str = "import sys\ntry:\n    import cbor2\nexcept ImportError:\n    sys.exit(77)\nfor line in sys.stdin:\n    print(cbor2.dumps(cbor2.loads(bytes.fromhex(line.strip())), canonical=True).hex())\n";
        let child = Command::new("python3")
            .args(["-c", SCRIPT])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn();
        let Ok(mut child) = child else {
            eprintln!("SKIPPED encodings_agree_with_python_cbor2_canonical: python3 not found");
            return;
        };
        let mut inputs: Vec<Vec<u8>> = samples().iter().map(Event::encode).collect();
        inputs.push(
            with_published(|p| {
                p.sig = Some(Signature {
                    alg: "ed25519".into(),
                    keyid: "k".into(),
                    sig: vec![9; 64],
                })
            })
            .encode(),
        );
        let stdin: String = inputs.iter().map(|b| to_hex(b) + "\n").collect();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        if out.status.code() == Some(77) {
            eprintln!("SKIPPED encodings_agree_with_python_cbor2_canonical: `pip install cbor2` to run it");
            return;
        }
        assert!(out.status.success(), "python3 failed: {out:?}");
        let lines: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        assert_eq!(lines.len(), inputs.len());
        for (line, input) in lines.iter().zip(&inputs) {
            assert_eq!(line, &to_hex(input));
        }
    }
}
