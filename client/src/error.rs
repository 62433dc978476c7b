//! Error types of every parser and verifier in this crate.
//!
//! Each variant names the problem precisely enough that a CLI can print it as is and a
//! server can turn it into a 400 message: hostile input must never panic, and "malformed"
//! alone does not tell an operator what to fix.

use std::path::PathBuf;
use thiserror::Error;

/// A hash given as text (base64 or hex) that is not a 32-byte SHA-256 value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HashParseError {
    /// The text is not valid standard base64 (RFC 4648 §4, padded, canonical).
    #[error("hash is not valid base64 (RFC 4648 §4): {0}")]
    Base64(String),
    /// The text is not 64 lowercase or uppercase hex digits.
    #[error("hash is not valid hex: {0}")]
    Hex(String),
    /// The decoded value has the wrong length.
    #[error("hash must be 32 bytes, got {0}")]
    Length(usize),
}

/// Why an inclusion or consistency proof was rejected (RFC 9162 §2.1.3.2, §2.1.4.2).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProofError {
    /// The leaf index is not inside the tree.
    #[error("leaf index {index} is not inside a tree of size {tree_size}")]
    IndexOutOfRange { index: u64, tree_size: u64 },
    /// The proof does not have the number of hashes the tree shape requires.
    #[error("proof has {got} hashes, a tree of this shape needs exactly {expected}")]
    WrongLength { expected: usize, got: usize },
    /// The proof hashes up to a different root than the one given.
    #[error("proof does not lead to the expected root hash")]
    RootMismatch,
    /// A consistency proof recomputed a different old root than the one given.
    #[error("consistency proof does not reproduce the old root hash")]
    OldRootMismatch,
    /// A consistency proof recomputed a different new root than the one given.
    #[error("consistency proof does not reproduce the new root hash")]
    NewRootMismatch,
    /// The old tree is larger than the new one: this is a rollback, not an extension.
    #[error("old tree size {old_size} is larger than new tree size {new_size}")]
    OldLargerThanNew { old_size: u64, new_size: u64 },
    /// Two trees of the same size must have the same root (and need no proof hashes).
    #[error("trees of equal size {size} have different root hashes")]
    SameSizeDifferentRoots { size: u64 },
    /// The empty tree's root is fixed (SHA-256 of the empty string, RFC 9162 §2.1.1).
    #[error("the root given for the empty tree is not SHA-256(\"\")")]
    BadEmptyRoot,
}

/// A malformed C2SP tlog-tiles resource path.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TilePathError {
    #[error("tile path is empty")]
    Empty,
    #[error("tile path must start with \"tile/\"")]
    MissingTilePrefix,
    #[error("tile path has an empty path element")]
    EmptyElement,
    #[error("tile level {0:?} is not a decimal integer without leading zeroes")]
    BadLevel(String),
    #[error("tile level {0} is larger than 63")]
    LevelTooLarge(u64),
    #[error("tile path has no index <N>")]
    MissingIndex,
    #[error("tile index element {element:?}: {reason}")]
    BadIndexElement {
        element: String,
        reason: &'static str,
    },
    #[error("tile index does not fit in 64 bits")]
    IndexOverflow,
    #[error("tile index is not canonically encoded (expected {expected:?})")]
    NonCanonicalIndex { expected: String },
    #[error("partial tile width {0:?} is not a decimal integer without leading zeroes")]
    BadWidth(String),
    #[error("partial tile width {0} is not between 1 and 255")]
    WidthOutOfRange(u64),
    #[error("partial tile path has no width after \".p/\"")]
    MissingWidth,
    #[error("tile path has extra elements after the tile index")]
    TrailingElements,
}

/// A malformed or unencodable tlog-tiles entry bundle.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BundleError {
    /// Entries are 1..=65535 bytes: the length prefix is a big-endian uint16, and empty
    /// entries are refused by the log's write API.
    #[error("entry {index} is empty; entries must be 1..=65535 bytes")]
    EmptyEntry { index: usize },
    #[error("entry {index} is {len} bytes; entries must be at most 65535 bytes")]
    EntryTooLarge { index: usize, len: usize },
    #[error("bundle truncated in the length prefix at offset {offset}")]
    TruncatedLength { offset: usize },
    #[error(
        "bundle entry at offset {offset} declares {declared} bytes but only {available} remain"
    )]
    TruncatedEntry {
        offset: usize,
        declared: usize,
        available: usize,
    },
    #[error("bundle entry at offset {offset} has length zero")]
    ZeroLength { offset: usize },
}

/// A verifier key (vkey) that cannot be used.
#[derive(Debug, Error)]
pub enum VkeyError {
    #[error("verifier key is empty")]
    Empty,
    #[error("verifier key must be <name>+<hex key id>+<base64 key>, got {0} part(s)")]
    Parts(usize),
    #[error("verifier key name {0:?} is empty or contains spaces or '+'")]
    BadName(String),
    #[error("verifier key id {0:?} is not 8 hex digits")]
    BadId(String),
    #[error("verifier key material is not valid base64: {0}")]
    BadBase64(String),
    #[error("verifier key algorithm byte {0:#04x} is not Ed25519 (0x01)")]
    UnsupportedAlgorithm(u8),
    #[error("Ed25519 verifier key must be 1+32 bytes, got {0}")]
    BadKeyLength(usize),
    #[error("verifier key id {given:08x} does not match the key (expected {computed:08x})")]
    IdMismatch { given: u32, computed: u32 },
    #[error("verifier key is not a valid Ed25519 public key")]
    BadPublicKey,
    #[error("vkey file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("vkey file {path} must hold exactly one vkey line, found {lines}")]
    FileLines { path: PathBuf, lines: usize },
    #[error("vkey file {path} is larger than {limit} bytes")]
    FileTooLarge { path: PathBuf, limit: u64 },
    #[error("vkey file {path}: {source}")]
    InFile {
        path: PathBuf,
        #[source]
        source: Box<VkeyError>,
    },
}

/// Why a signed checkpoint was rejected (c2sp.org/signed-note, c2sp.org/tlog-checkpoint).
#[derive(Debug, Error)]
pub enum CheckpointError {
    #[error("checkpoint note is {size} bytes, more than the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("no verifier keys were given")]
    NoKeys,
    #[error("verifier key #{index}: {source}")]
    BadVkey {
        index: usize,
        #[source]
        source: VkeyError,
    },
    #[error("two verifier keys have the same name and id {name}+{id:08x}")]
    DuplicateKey { name: String, id: u32 },
    /// The signed-note framing is wrong (c2sp.org/signed-note#format).
    #[error("malformed signed note: {0}")]
    MalformedNote(String),
    /// The note text is not a checkpoint (c2sp.org/tlog-checkpoint#note-text).
    #[error("malformed checkpoint body: {0}")]
    MalformedBody(String),
    /// No signature from any of the given keys (c2sp.org/signed-note#signatures: MUST reject).
    #[error("no signature by a trusted key (note is signed by: {signers})")]
    NoTrustedSignature { signers: String },
    /// A signature that claims to be from a given key does not verify.
    #[error("signature by {name}+{id:08x} does not verify")]
    BadSignature { name: String, id: u32 },
    /// The log's key name must be the checkpoint origin (c2sp.org/tlog-checkpoint#signatures).
    #[error("checkpoint origin {origin:?} is not signed by a trusted key of that name (verified: {verified})")]
    OriginKeyMismatch { origin: String, verified: String },
    #[error("checkpoint origin is {got:?}, expected {expected:?}")]
    WrongOrigin { expected: String, got: String },
    /// Signing a checkpoint failed (bad signing key or checkpoint fields).
    #[error("cannot sign checkpoint: {0}")]
    Signing(String),
}

impl CheckpointError {
    /// True when the problem is the data's shape (or the caller's keys), false when it is a
    /// failed cryptographic or policy check. The CLI maps these to different exit codes.
    pub fn is_malformed(&self) -> bool {
        matches!(
            self,
            CheckpointError::TooLarge { .. }
                | CheckpointError::NoKeys
                | CheckpointError::BadVkey { .. }
                | CheckpointError::DuplicateKey { .. }
                | CheckpointError::MalformedNote(_)
                | CheckpointError::MalformedBody(_)
                | CheckpointError::Signing(_)
        )
    }
}

/// Why a c2sp.org/tlog-proof@v1 file was rejected.
#[derive(Debug, Error)]
pub enum TlogProofError {
    #[error("tlog-proof is {size} bytes, more than the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("tlog-proof must start with the line \"c2sp.org/tlog-proof@v1\"")]
    BadHeader,
    #[error("tlog-proof line {line}: {reason}")]
    BadLine { line: usize, reason: String },
    #[error("tlog-proof has no \"index\" line")]
    MissingIndex,
    #[error("tlog-proof has more than {max} inclusion proof hashes")]
    TooManyHashes { max: usize },
    #[error("tlog-proof has no empty line before the checkpoint")]
    MissingBlankLine,
    #[error("tlog-proof has no checkpoint after the empty line")]
    MissingCheckpoint,
    #[error("tlog-proof checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error("tlog-proof inclusion proof: {0}")]
    Inclusion(#[from] ProofError),
}

impl TlogProofError {
    /// True for problems of form (including a malformed embedded checkpoint), false for a
    /// failed signature, origin or inclusion check.
    pub fn is_malformed(&self) -> bool {
        match self {
            TlogProofError::Checkpoint(e) => e.is_malformed(),
            TlogProofError::Inclusion(_) => false,
            _ => true,
        }
    }
}

/// Why the trust store refused to advance, or could not be read or written.
#[derive(Debug, Error)]
pub enum TrustError {
    #[error("trust store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("trust store file {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
    #[error("stored checkpoint for {origin:?} no longer verifies: {source}")]
    StoredCheckpoint {
        origin: String,
        #[source]
        source: CheckpointError,
    },
    /// The offered checkpoint is older than one already trusted: a log never shrinks.
    #[error("rollback: {origin:?} was already seen at tree size {stored_size}, offered size {offered_size}")]
    Rollback {
        origin: String,
        stored_size: u64,
        offered_size: u64,
    },
    /// Same size, different root: the log has shown two different trees (a fork).
    #[error("fork: {origin:?} at tree size {size} has root {offered_root}, but {stored_root} was seen before")]
    Fork {
        origin: String,
        size: u64,
        stored_root: String,
        offered_root: String,
    },
    /// The consistency proof from the stored tree to the offered one does not verify.
    #[error("inconsistent: {origin:?} tree size {old_size} -> {new_size}: {source}")]
    Inconsistent {
        origin: String,
        old_size: u64,
        new_size: u64,
        #[source]
        source: ProofError,
    },
}

/// Why an RFC 3161 time-stamp response or token was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TimestampError {
    /// Refused before parsing (`timestamp::MAX_TOKEN_SIZE`).
    #[error("time-stamp token or response is larger than the 65536-byte limit")]
    TooLarge,
    /// Not DER, or not the structure RFC 3161 / RFC 5652 prescribe; says which part.
    #[error("malformed time-stamp: {0}")]
    Malformed(String),
    /// The authority answered with a failure status (RFC 3161 §2.4.2).
    #[error("time-stamp request refused: status {status}, failInfo {fail_info}, text {text:?}")]
    Rejected {
        status: String,
        fail_info: String,
        text: String,
    },
    /// A digest, signature or key algorithm this verifier does not accept.
    #[error("unsupported algorithm: {0}")]
    UnsupportedAlgorithm(String),
    /// The CMS signature over the signed attributes does not verify (RFC 5652 §5.6).
    #[error("the time-stamp token's signature does not verify")]
    BadSignature,
    /// No certificate in the token (or the roots) matches the SignerInfo's sid.
    #[error("signer certificate not found: {0}")]
    SignerNotFound(String),
    /// The ESS signing-certificate attribute does not identify the signer certificate
    /// (RFC 3161 §2.4.1, RFC 5816 §2.2.1).
    #[error("signing-certificate attribute does not match the signer certificate: {0}")]
    SigningCertificateMismatch(String),
    /// The token time-stamps another message (RFC 3161 §2.4.2 messageImprint).
    #[error("the token's message imprint is not the hash of the given message")]
    ImprintMismatch,
    /// The token answers another request (RFC 3161 §2.4.2 nonce).
    #[error("nonce mismatch: expected {expected}, the token has {got}")]
    NonceMismatch { expected: u64, got: String },
    /// A nonce was sent but the token has none: it could be a replayed older token.
    #[error("the token has no nonce, expected {expected}")]
    MissingNonce { expected: u64 },
    /// The signer certificate does not chain up to a trusted root (RFC 5280 §6).
    #[error("untrusted certificate chain: {0}")]
    UntrustedChain(String),
    /// A certificate of the chain was not valid at genTime (RFC 5280 §4.1.2.5).
    #[error("certificate {subject} was not valid at the token's time {gen_time} (valid {not_before} to {not_after})")]
    CertificateNotValidAt {
        subject: String,
        gen_time: String,
        not_before: String,
        not_after: String,
    },
    /// The signer certificate is not a time-stamping certificate (RFC 3161 §2.3).
    #[error("not a time-stamping certificate: {0}")]
    NotTimestampingCertificate(String),
    /// TSTInfo.tsa names someone other than the signer (RFC 3161 §2.4.2).
    #[error("the token names the authority {tsa} but is signed by {subject}")]
    TsaNameMismatch { tsa: String, subject: String },
}

impl TimestampError {
    /// True when the problem is the data's shape or an algorithm this verifier does not
    /// support, false for a failed cryptographic, binding or trust check, or a refusal.
    pub fn is_malformed(&self) -> bool {
        matches!(
            self,
            TimestampError::TooLarge
                | TimestampError::Malformed(_)
                | TimestampError::UnsupportedAlgorithm(_)
        )
    }
}
