//! Signed checkpoints: c2sp.org/signed-note framing and signatures, c2sp.org/tlog-checkpoint
//! body, plus verifier keys (vkeys).
//!
//! Parsing and signature checking are done by `signed_note` and `tlog_tiles`; this module
//! adds the policy a log client needs (size limit, the key name must be the origin, an
//! optional expected origin) and checks the framing first itself so that every rejection
//! says *what* is wrong instead of a bare "malformed note".

use std::path::Path;

use base64::prelude::*;
use signed_note::{Note, NoteError, StandardVerifier, VerificationError, Verifier, Verifiers};

pub use crate::error::{CheckpointError, VkeyError};
use crate::merkle::{hash_from_base64, Hash};

/// Largest signed note accepted, in bytes. c2sp.org/signed-note#format asks verifiers to cap
/// the note size while accepting at least 16 signatures; 64 KiB leaves room for that many
/// post-quantum signatures (about 5 kB each) while bounding memory and work.
pub const MAX_NOTE_SIZE: usize = 64 * 1024;

/// Largest number of signature lines accepted in a note.
pub const MAX_SIGNATURES: usize = 100;

/// Largest vkey file read by [`read_vkey_file`].
const MAX_VKEY_FILE: u64 = 16 * 1024;

/// Ed25519 signature type byte (c2sp.org/signed-note#signature-types).
const ALG_ED25519: u8 = 0x01;

/// A checkpoint whose signature by a trusted log key has been verified.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedCheckpoint {
    /// The origin line, which is also the name of the key that signed it.
    pub origin: String,
    /// Tree size.
    pub size: u64,
    /// Root hash of the tree of `size` leaves.
    pub root: Hash,
    /// The full signed note bytes as received (signatures and extension lines included).
    pub note: Vec<u8>,
}

impl VerifiedCheckpoint {
    /// The note text (the checkpoint body, ending in a newline, without signatures).
    pub fn text(&self) -> &[u8] {
        split_note(&self.note).map(|(t, _)| t).unwrap_or(&[])
    }

    /// The extension lines after the root hash (c2sp.org/tlog-checkpoint#note-text), kept
    /// but not interpreted.
    pub fn extensions(&self) -> Vec<&str> {
        std::str::from_utf8(self.text())
            .map(|t| t.lines().skip(3).collect())
            .unwrap_or_default()
    }

    /// Root hash in standard base64, as it appears in the checkpoint.
    pub fn root_base64(&self) -> String {
        crate::merkle::hash_to_base64(&self.root)
    }
}

/// A parsed, usable verifier key (c2sp.org/signed-note#verifier-keys).
#[derive(Clone)]
pub struct VerifierKey {
    name: String,
    key_id: u32,
    vkey: String,
    verifier: StandardVerifier,
}

impl VerifierKey {
    /// The key name (for a log key, the checkpoint origin).
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The 32-bit key ID.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }
    /// The vkey string it was parsed from.
    pub fn as_str(&self) -> &str {
        &self.vkey
    }
    /// The `signed_note` verifier.
    pub fn verifier(&self) -> &StandardVerifier {
        &self.verifier
    }
}

impl std::fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("VerifierKey").field(&self.vkey).finish()
    }
}

/// c2sp.org/signed-note#format: key names are non-empty with no Unicode spaces and no '+'.
fn key_name_ok(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(char::is_whitespace) && !name.contains('+')
}

/// Parses an Ed25519 vkey `<name>+<hex key id>+<base64(0x01 || public key)>`
/// (c2sp.org/signed-note#verifier-keys), checking that the key ID matches the key.
pub fn parse_vkey(s: &str) -> Result<VerifierKey, VkeyError> {
    if s.is_empty() {
        return Err(VkeyError::Empty);
    }
    // Name and hex ID cannot contain '+', but standard base64 can: split off two parts only.
    let parts: Vec<&str> = s.splitn(3, '+').collect();
    if parts.len() != 3 {
        return Err(VkeyError::Parts(parts.len()));
    }
    let (name, id_hex, key_b64) = (parts[0], parts[1], parts[2]);
    if !key_name_ok(name) {
        return Err(VkeyError::BadName(name.to_string()));
    }
    // c2sp.org/signed-note#conventions-used-in-this-document: fixed-length lowercase hex.
    if id_hex.len() != 8
        || !id_hex
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(VkeyError::BadId(id_hex.to_string()));
    }
    let given =
        u32::from_str_radix(id_hex, 16).map_err(|_| VkeyError::BadId(id_hex.to_string()))?;
    let key = BASE64_STANDARD
        .decode(key_b64)
        .map_err(|e| VkeyError::BadBase64(e.to_string()))?;
    let Some(&alg) = key.first() else {
        return Err(VkeyError::BadKeyLength(0));
    };
    if alg != ALG_ED25519 {
        return Err(VkeyError::UnsupportedAlgorithm(alg));
    }
    if key.len() != 33 {
        return Err(VkeyError::BadKeyLength(key.len()));
    }
    // c2sp.org/signed-note#ed25519-signatures: key ID = SHA-256(name || 0x0A || 0x01 || pk)[:4].
    let computed = signed_note::key_id(name, &key);
    if computed != given {
        return Err(VkeyError::IdMismatch { given, computed });
    }
    let verifier = StandardVerifier::new(s).map_err(|_| VkeyError::BadPublicKey)?;
    Ok(VerifierKey {
        name: name.to_string(),
        key_id: given,
        vkey: s.to_string(),
        verifier,
    })
}

/// Reads a file holding one vkey line (surrounding whitespace ignored), checks that it
/// parses, and returns it.
pub fn read_vkey_file(path: impl AsRef<Path>) -> Result<String, VkeyError> {
    use std::io::Read;
    let path = path.as_ref();
    let io = |source| VkeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::File::open(path).map_err(io)?;
    let mut buf = Vec::new();
    f.take(MAX_VKEY_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(io)?;
    if buf.len() as u64 > MAX_VKEY_FILE {
        return Err(VkeyError::FileTooLarge {
            path: path.to_path_buf(),
            limit: MAX_VKEY_FILE,
        });
    }
    let text = String::from_utf8(buf).map_err(|e| {
        io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not UTF-8: {e}"),
        ))
    })?;
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.len() != 1 {
        return Err(VkeyError::FileLines {
            path: path.to_path_buf(),
            lines: lines.len(),
        });
    }
    let vkey = lines[0];
    parse_vkey(vkey).map_err(|e| VkeyError::InFile {
        path: path.to_path_buf(),
        source: Box::new(e),
    })?;
    Ok(vkey.to_string())
}

/// Splits a note at its last empty line into (text including its final newline,
/// signature block) (c2sp.org/signed-note#format).
fn split_note(note: &[u8]) -> Option<(&[u8], &[u8])> {
    let pos = note.windows(2).rposition(|w| w == b"\n\n")?;
    Some((&note[..pos + 1], &note[pos + 2..]))
}

/// Checks the c2sp.org/signed-note#format framing and names the first problem found.
/// `signed_note::Note::from_bytes` does the real parse afterwards; this exists so that a
/// rejected note says why.
fn check_note_framing(note: &[u8]) -> Result<(), String> {
    let s = std::str::from_utf8(note)
        .map_err(|e| format!("not valid UTF-8 (at byte {})", e.valid_up_to()))?;
    // "MUST NOT contain any ASCII control characters ... other than newline."
    if let Some((i, c)) = s.char_indices().find(|&(_, c)| c < '\u{20}' && c != '\n') {
        return Err(format!(
            "control character U+{:04X} at byte {i}",
            u32::from(c)
        ));
    }
    if !s.ends_with('\n') {
        return Err("does not end with a newline".into());
    }
    let (text, sigs) = split_note(note)
        .ok_or_else(|| "no empty line separating the text from the signatures".to_string())?;
    if text.len() <= 1 {
        return Err("note text is empty".into());
    }
    if sigs.is_empty() {
        return Err("no signature lines after the empty line".into());
    }
    // `sigs` ends with '\n' because the note does.
    let sig_block = &s[text.len() + 1..s.len() - 1];
    let mut count = 0usize;
    for (i, line) in sig_block.split('\n').enumerate() {
        count += 1;
        if count > MAX_SIGNATURES {
            return Err(format!("more than {MAX_SIGNATURES} signature lines"));
        }
        let n = i + 1;
        let rest = line.strip_prefix("\u{2014} ").ok_or_else(|| {
            format!("signature line {n} does not start with an em dash and a space")
        })?;
        // Base64 has no spaces, so the last space ends the key name; splitting there
        // lets a name with a space be reported as such.
        let (name, b64) = rest.rsplit_once(' ').ok_or_else(|| {
            format!("signature line {n} has no space between key name and signature")
        })?;
        if !key_name_ok(name) {
            return Err(format!(
                "signature line {n} has an invalid key name {name:?}"
            ));
        }
        let sig = BASE64_STANDARD
            .decode(b64)
            .map_err(|e| format!("signature line {n} is not valid base64: {e}"))?;
        if sig.len() < 5 {
            return Err(format!(
                "signature line {n} is {} bytes, less than a 4-byte key ID and a signature",
                sig.len()
            ));
        }
    }
    Ok(())
}

/// Checks the c2sp.org/tlog-checkpoint#note-text body and names the first problem.
fn check_body(text: &[u8]) -> Result<(), String> {
    let s = std::str::from_utf8(text).map_err(|_| "not valid UTF-8".to_string())?;
    let body = s
        .strip_suffix('\n')
        .ok_or_else(|| "does not end with a newline".to_string())?;
    let lines: Vec<&str> = body.split('\n').collect();
    if lines.len() < 3 {
        return Err(format!(
            "needs at least 3 lines (origin, tree size, root hash), got {}",
            lines.len()
        ));
    }
    if lines[0].is_empty() {
        return Err("origin line is empty".into());
    }
    let size = lines[1];
    if size.is_empty()
        || !size.bytes().all(|b| b.is_ascii_digit())
        || (size.len() > 1 && size.starts_with('0'))
    {
        return Err(format!(
            "tree size {size:?} is not a decimal without leading zeroes"
        ));
    }
    if size.parse::<u64>().is_err() {
        return Err(format!("tree size {size} does not fit in 64 bits"));
    }
    hash_from_base64(lines[2]).map_err(|e| format!("root hash line: {e}"))?;
    if let Some(i) = lines[3..].iter().position(|l| l.is_empty()) {
        return Err(format!("extension line {} is empty", i + 1));
    }
    Ok(())
}

/// A signed note with at least one verified signature by a trusted key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedNote {
    /// The note text, including its final newline.
    pub text: Vec<u8>,
    /// `(key name, key ID)` of every trusted key whose signature verified.
    pub signers: Vec<(String, u32)>,
}

/// Verifies any signed note (c2sp.org/signed-note): well-formed, at most
/// [`MAX_NOTE_SIZE`] bytes, at least one signature by one of `vkeys` verifies and none by
/// those keys fails. Signatures by unknown keys are ignored, as the spec requires. The text
/// is not interpreted; see [`verify_checkpoint`] for checkpoints.
pub fn verify_note(note: &[u8], vkeys: &[&str]) -> Result<VerifiedNote, CheckpointError> {
    let keys = parse_vkeys(vkeys)?;
    verify_note_with_keys(note, &keys)
}

/// Parses trusted vkeys, dropping exact duplicates and refusing two different keys that
/// share a name and ID.
fn parse_vkeys(vkeys: &[&str]) -> Result<Vec<VerifierKey>, CheckpointError> {
    if vkeys.is_empty() {
        return Err(CheckpointError::NoKeys);
    }
    let mut keys: Vec<VerifierKey> = Vec::with_capacity(vkeys.len());
    for (index, v) in vkeys.iter().enumerate() {
        let k = parse_vkey(v).map_err(|source| CheckpointError::BadVkey { index, source })?;
        if let Some(other) = keys
            .iter()
            .find(|o| o.name == k.name && o.key_id == k.key_id)
        {
            // The same vkey twice is harmless; two keys sharing name and ID are ambiguous.
            if other.vkey == k.vkey {
                continue;
            }
            return Err(CheckpointError::DuplicateKey {
                name: k.name,
                id: k.key_id,
            });
        }
        keys.push(k);
    }
    Ok(keys)
}

/// Trusted keys already parsed, looked up by (name, ID) without allocating: a witness or
/// monitor verifies thousands of notes a second against keys it parsed once.
struct KeySet<'a>(&'a [VerifierKey]);

impl Verifiers for KeySet<'_> {
    fn verifier(&self, name: &str, id: u32) -> Result<&dyn Verifier, VerificationError> {
        let mut found = self.0.iter().filter(|k| k.name == name && k.key_id == id);
        match (found.next(), found.next()) {
            (Some(k), None) => Ok(&k.verifier),
            (Some(_), Some(_)) => Err(VerificationError::AmbiguousKey {
                name: name.to_string(),
                id,
            }),
            (None, _) => Err(VerificationError::UnknownKey {
                name: name.to_string(),
                id,
            }),
        }
    }
}

/// [`verify_note`] with keys parsed once by [`parse_vkey`].
pub fn verify_note_with_keys(
    note: &[u8],
    keys: &[VerifierKey],
) -> Result<VerifiedNote, CheckpointError> {
    if note.len() > MAX_NOTE_SIZE {
        return Err(CheckpointError::TooLarge {
            size: note.len(),
            limit: MAX_NOTE_SIZE,
        });
    }
    if keys.is_empty() {
        return Err(CheckpointError::NoKeys);
    }
    check_note_framing(note).map_err(CheckpointError::MalformedNote)?;
    let parsed = Note::from_bytes(note).map_err(|e| {
        CheckpointError::MalformedNote(format!("rejected by signed-note parser: {e}"))
    })?;
    let (verified, _unknown) = parsed.verify(&KeySet(keys)).map_err(|e| match e {
        NoteError::UnverifiedNote => CheckpointError::NoTrustedSignature {
            signers: signer_list(note),
        },
        NoteError::InvalidSignature { name, id } => CheckpointError::BadSignature { name, id },
        NoteError::VerificationError(VerificationError::AmbiguousKey { name, id }) => {
            CheckpointError::DuplicateKey { name, id }
        }
        other => CheckpointError::MalformedNote(other.to_string()),
    })?;

    Ok(VerifiedNote {
        text: parsed.text().to_vec(),
        signers: verified
            .iter()
            .map(|s| (s.name().to_string(), s.id()))
            .collect(),
    })
}

/// Verifies a signed checkpoint against trusted log keys.
///
/// Accepts the note only if (c2sp.org/signed-note#signatures, c2sp.org/tlog-checkpoint):
/// it is at most [`MAX_NOTE_SIZE`] bytes and well-formed; at least one signature by one of
/// `vkeys` verifies and none by those keys fails; the body is a checkpoint; a verified key's
/// name equals the origin; and the origin equals `expected_origin` when one is given.
/// Signatures by other keys (witnesses, rotated keys) are ignored. Extension lines are
/// accepted and kept in [`VerifiedCheckpoint::note`].
pub fn verify_checkpoint(
    note: &[u8],
    vkeys: &[&str],
    expected_origin: Option<&str>,
) -> Result<VerifiedCheckpoint, CheckpointError> {
    let keys = parse_vkeys(vkeys)?;
    verify_checkpoint_with_keys(note, &keys, expected_origin)
}

/// [`verify_checkpoint`] with keys parsed once by [`parse_vkey`].
pub fn verify_checkpoint_with_keys(
    note: &[u8],
    keys: &[VerifierKey],
    expected_origin: Option<&str>,
) -> Result<VerifiedCheckpoint, CheckpointError> {
    let verified = verify_note_with_keys(note, keys)?;
    let text = verified.text.as_slice();
    check_body(text).map_err(CheckpointError::MalformedBody)?;
    let cp = tlog_tiles::Checkpoint::from_bytes(text).map_err(|e| {
        CheckpointError::MalformedBody(format!("rejected by tlog-checkpoint parser: {e}"))
    })?;

    if let Some(expected) = expected_origin {
        if cp.origin() != expected {
            return Err(CheckpointError::WrongOrigin {
                expected: expected.to_string(),
                got: cp.origin().to_string(),
            });
        }
    }
    // c2sp.org/tlog-checkpoint#signatures: the log's key name matches the origin. A
    // checkpoint "signed" only by some other trusted key (say a witness key passed in the
    // same list) is not the log's statement about its tree.
    if !verified.signers.iter().any(|(name, _)| name == cp.origin()) {
        return Err(CheckpointError::OriginKeyMismatch {
            origin: cp.origin().to_string(),
            verified: verified
                .signers
                .iter()
                .map(|(name, id)| format!("{name}+{id:08x}"))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(VerifiedCheckpoint {
        origin: cp.origin().to_string(),
        size: cp.size(),
        root: *cp.hash(),
        note: note.to_vec(),
    })
}

/// Builds and signs a checkpoint with a signed-note signing key
/// (`PRIVATE+KEY+<name>+<id>+<base64>`), for tests and tools. The key name must be the
/// origin (c2sp.org/tlog-checkpoint#signatures). `extensions` are extra body lines, each
/// non-empty.
pub fn sign_checkpoint(
    skey: &str,
    origin: &str,
    size: u64,
    root: &Hash,
    extensions: &[&str],
) -> Result<Vec<u8>, CheckpointError> {
    let signer = signed_note::StandardSigner::new(skey)
        .map_err(|e| CheckpointError::Signing(format!("bad signing key: {e}")))?;
    if signed_note::Signer::name(&signer) != origin {
        return Err(CheckpointError::Signing(format!(
            "signing key name {:?} is not the origin {origin:?}",
            signed_note::Signer::name(&signer)
        )));
    }
    let ext: String = extensions.iter().map(|l| format!("{l}\n")).collect();
    let cp = tlog_tiles::Checkpoint::new(origin, size, *root, &ext)
        .map_err(|e| CheckpointError::Signing(format!("invalid checkpoint fields: {e}")))?;
    let mut note = Note::new(&cp.to_bytes(), &[])
        .map_err(|e| CheckpointError::Signing(format!("invalid note text: {e}")))?;
    note.add_sigs(&[&signer])
        .map_err(|e| CheckpointError::Signing(e.to_string()))?;
    Ok(note.to_bytes())
}

/// `name+id` of every signature line, for error messages.
fn signer_list(note: &[u8]) -> String {
    let Some((_, sigs)) = split_note(note) else {
        return String::new();
    };
    let sigs = String::from_utf8_lossy(sigs);
    let names: Vec<String> = sigs
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("\u{2014} ")?;
            let (name, b64) = rest.split_once(' ')?;
            let raw = BASE64_STANDARD.decode(b64).ok()?;
            let id = u32::from_be_bytes(raw.get(..4)?.try_into().ok()?);
            Some(format!("{name}+{id:08x}"))
        })
        .collect();
    if names.is_empty() {
        "nobody".into()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_note_uses_last_blank_line() {
        let (t, s) = split_note(b"a\n\nb\n\n- x\n").unwrap();
        assert_eq!(t, b"a\n\nb\n");
        assert_eq!(s, b"- x\n");
        assert!(split_note(b"a\nb\n").is_none());
    }

    #[test]
    fn body_checks_name_problems() {
        let h = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=";
        assert!(check_body(format!("o\n0\n{h}\n").as_bytes()).is_ok());
        assert!(check_body(format!("o\n1\n{h}\next\n").as_bytes()).is_ok());
        let e = check_body(format!("o\n01\n{h}\n").as_bytes()).unwrap_err();
        assert!(e.contains("leading zeroes"), "{e}");
        let e = check_body(format!("o\n18446744073709551616\n{h}\n").as_bytes()).unwrap_err();
        assert!(e.contains("64 bits"), "{e}");
        let e = check_body(b"o\n1\n").unwrap_err();
        assert!(e.contains("at least 3 lines"), "{e}");
        let e = check_body(format!("\n1\n{h}\n").as_bytes()).unwrap_err();
        assert!(e.contains("origin"), "{e}");
        let e = check_body(b"o\n1\nAAAA\n").unwrap_err();
        assert!(e.contains("root hash"), "{e}");
        let e = check_body(format!("o\n1\n{h}\nx\n\ny\n").as_bytes()).unwrap_err();
        assert!(e.contains("extension line 2"), "{e}");
    }
}
