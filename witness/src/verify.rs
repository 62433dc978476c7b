//! Checkpoint verification with keys parsed once at start-up.
//!
//! `ledger_client::checkpoint::verify_checkpoint` takes vkeys as text and parses them on
//! every call; decompressing the Ed25519 point alone was ~6% of the witness's CPU under
//! load. [`LogKeys::verify`] makes the same checks, in the same order, with the same
//! [`CheckpointError`] for each failure, on keys parsed by
//! `ledger_client::checkpoint::parse_vkey` when the logs file is read. A differential test
//! below holds the two to the same answers on valid, mutated and hostile notes.

use base64::prelude::*;
use ledger_client::checkpoint::{
    CheckpointError, VerifiedCheckpoint, VerifierKey, MAX_NOTE_SIZE, MAX_SIGNATURES,
};
use ledger_client::merkle::hash_from_base64;
use signed_note::{Note, NoteError, StandardVerifier, VerificationError, Verifier, Verifiers};

/// The trusted keys of one origin.
pub struct LogKeys {
    origin: String,
    ids: Vec<u32>,
    verifiers: Vec<StandardVerifier>,
}

impl LogKeys {
    /// Keys parsed by `ledger_client::checkpoint::parse_vkey`; every key is named `origin`
    /// (c2sp.org/tlog-checkpoint#signatures), as the logs file guarantees.
    pub fn new(origin: &str, keys: &[VerifierKey]) -> Self {
        debug_assert!(keys.iter().all(|k| k.name() == origin));
        Self {
            origin: origin.to_string(),
            ids: keys.iter().map(VerifierKey::key_id).collect(),
            verifiers: keys.iter().map(|k| k.verifier().clone()).collect(),
        }
    }

    pub fn key_ids(&self) -> &[u32] {
        &self.ids
    }

    /// `verify_checkpoint(note, <these keys>, Some(origin))`.
    pub fn verify(&self, note: &[u8]) -> Result<VerifiedCheckpoint, CheckpointError> {
        if note.len() > MAX_NOTE_SIZE {
            return Err(CheckpointError::TooLarge {
                size: note.len(),
                limit: MAX_NOTE_SIZE,
            });
        }
        check_note_framing(note).map_err(CheckpointError::MalformedNote)?;
        let parsed = Note::from_bytes(note).map_err(|e| {
            CheckpointError::MalformedNote(format!("rejected by signed-note parser: {e}"))
        })?;
        parsed.verify(self).map_err(|e| match e {
            NoteError::UnverifiedNote => CheckpointError::NoTrustedSignature {
                signers: signer_list(note),
            },
            NoteError::InvalidSignature { name, id } => CheckpointError::BadSignature { name, id },
            other => CheckpointError::MalformedNote(other.to_string()),
        })?;
        let text = parsed.text();
        check_body(text).map_err(CheckpointError::MalformedBody)?;
        let cp = tlog_tiles::Checkpoint::from_bytes(text).map_err(|e| {
            CheckpointError::MalformedBody(format!("rejected by tlog-checkpoint parser: {e}"))
        })?;
        if cp.origin() != self.origin {
            return Err(CheckpointError::WrongOrigin {
                expected: self.origin.clone(),
                got: cp.origin().to_string(),
            });
        }
        // Every key here is named after the origin, so a verified signature is the log's
        // (c2sp.org/tlog-checkpoint#signatures).
        Ok(VerifiedCheckpoint {
            origin: cp.origin().to_string(),
            size: cp.size(),
            root: *cp.hash(),
            note: note.to_vec(),
        })
    }
}

impl Verifiers for LogKeys {
    fn verifier(&self, name: &str, id: u32) -> Result<&dyn Verifier, VerificationError> {
        if name == self.origin {
            if let Some(i) = self.ids.iter().position(|&k| k == id) {
                return Ok(&self.verifiers[i]);
            }
        }
        Err(VerificationError::UnknownKey {
            name: name.to_string(),
            id,
        })
    }
}

/// c2sp.org/signed-note#format: key names are non-empty with no Unicode spaces and no '+'.
fn key_name_ok(name: &str) -> bool {
    !name.is_empty() && !name.chars().any(char::is_whitespace) && !name.contains('+')
}

/// The c2sp.org/signed-note#format framing, naming the first problem (as
/// `ledger_client::checkpoint` does before handing the note to `signed_note`).
fn check_note_framing(note: &[u8]) -> Result<(), String> {
    let s = std::str::from_utf8(note)
        .map_err(|e| format!("not valid UTF-8 (at byte {})", e.valid_up_to()))?;
    if let Some((i, c)) = s.char_indices().find(|&(_, c)| c < '\u{20}' && c != '\n') {
        return Err(format!(
            "control character U+{:04X} at byte {i}",
            u32::from(c)
        ));
    }
    if !s.ends_with('\n') {
        return Err("does not end with a newline".into());
    }
    let pos = s
        .rfind("\n\n")
        .ok_or_else(|| "no empty line separating the text from the signatures".to_string())?;
    if pos == 0 {
        return Err("note text is empty".into());
    }
    if pos + 2 >= s.len() {
        return Err("no signature lines after the empty line".into());
    }
    let sig_block = &s[pos + 2..s.len() - 1];
    for (i, line) in sig_block.split('\n').enumerate() {
        let n = i + 1;
        if n > MAX_SIGNATURES {
            return Err(format!("more than {MAX_SIGNATURES} signature lines"));
        }
        let rest = line.strip_prefix("\u{2014} ").ok_or_else(|| {
            format!("signature line {n} does not start with an em dash and a space")
        })?;
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

/// The c2sp.org/tlog-checkpoint#note-text body, naming the first problem.
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

/// `name+id` of every signature line, for the "no trusted signature" message.
fn signer_list(note: &[u8]) -> String {
    let Some(pos) = note.windows(2).rposition(|w| w == b"\n\n") else {
        return String::new();
    };
    let sigs = String::from_utf8_lossy(&note[pos + 2..]);
    let names: Vec<String> = sigs
        .lines()
        .filter_map(|l| {
            let (name, b64) = l.strip_prefix("\u{2014} ")?.split_once(' ')?;
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
    use ledger_client::checkpoint::{parse_vkey, sign_checkpoint, verify_checkpoint};
    use ledger_client::merkle::leaf_hash;
    use rand::{Rng, SeedableRng};

    /// The same answer as `verify_checkpoint`: equal values, or errors of the same kind.
    fn same(
        a: &Result<VerifiedCheckpoint, CheckpointError>,
        b: &Result<VerifiedCheckpoint, CheckpointError>,
    ) -> bool {
        match (a, b) {
            (Ok(x), Ok(y)) => x == y,
            (Err(x), Err(y)) => std::mem::discriminant(x) == std::mem::discriminant(y),
            _ => false,
        }
    }

    #[test]
    fn agrees_with_verify_checkpoint_on_valid_mutated_and_hostile_notes() {
        let origin = "example.com/log";
        let (sk1, vk1) = signed_note::generate_key(&mut rand::rngs::OsRng, origin);
        let (_sk2, vk2) = signed_note::generate_key(&mut rand::rngs::OsRng, origin);
        let (other_sk, _) = signed_note::generate_key(&mut rand::rngs::OsRng, "other.example");
        let (impostor_sk, _) = signed_note::generate_key(&mut rand::rngs::OsRng, origin);
        let vkeys = [vk1.as_str(), vk2.as_str()];
        let keys = LogKeys::new(
            origin,
            &[parse_vkey(&vk1).unwrap(), parse_vkey(&vk2).unwrap()],
        );
        let root = leaf_hash(b"r");
        let good = sign_checkpoint(&sk1, origin, 42, &root, &["ext line"]).unwrap();
        let sig_line = |skey: &str, name: &str, text: &[u8]| -> Vec<u8> {
            let s = signed_note::StandardSigner::new(skey).unwrap();
            let mut n = Note::new(text, &[]).unwrap();
            n.add_sigs(&[&s]).unwrap();
            let b = n.to_bytes();
            let _ = name;
            b[text.len() + 1..].to_vec()
        };
        let text = &good[..good.windows(2).rposition(|w| w == b"\n\n").unwrap() + 1];
        let mut corpus: Vec<Vec<u8>> = vec![
            good.clone(),
            vec![],
            b"\n".to_vec(),
            b"\n\n".to_vec(),
            text.to_vec(),
            [text, b"\n"].concat(),
            // Unknown keys only; an unknown key beside the log's.
            [text, b"\n", &sig_line(&other_sk, "other.example", text)].concat(),
            [&good[..], &sig_line(&other_sk, "other.example", text)].concat(),
            // The right name, another key (a different ID): unknown, so no trusted signature.
            [text, b"\n", &sig_line(&impostor_sk, origin, text)].concat(),
            // A wrong signature under the log key's ID.
            {
                let mut g = good.clone();
                let n = g.len();
                g[n - 10] = if g[n - 10] == b'A' { b'B' } else { b'A' };
                g
            },
            // Another origin signed by its own key.
            sign_checkpoint(&other_sk, "other.example", 1, &root, &[]).unwrap(),
            vec![b'a'; MAX_NOTE_SIZE + 1],
        ];
        for body in [
            "example.com/log\n01\nAAAA\n".to_string(),
            format!("example.com/log\n01\n{}\n", BASE64_STANDARD.encode(root.0)),
            format!(
                "example.com/log\n18446744073709551616\n{}\n",
                BASE64_STANDARD.encode(root.0)
            ),
            format!(
                "example.com/log\n5\n{}\n\nx\n",
                BASE64_STANDARD.encode(root.0)
            ),
            format!("example.com/log\n5\n{}x\n", BASE64_STANDARD.encode(root.0)),
            "example.com/log\n5\n".to_string(),
            format!("\n5\n{}\n", BASE64_STANDARD.encode(root.0)),
        ] {
            let t = body.as_bytes();
            if Note::new(t, &[]).is_ok() {
                corpus.push([t, b"\n", &sig_line(&sk1, origin, t)].concat());
            }
        }
        // Random truncations and byte changes of the good note.
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for _ in 0..3000 {
            let mut g = good.clone();
            match rng.gen_range(0..4) {
                0 => g.truncate(rng.gen_range(0..good.len())),
                1 => {
                    let i = rng.gen_range(0..g.len());
                    g[i] = rng.gen();
                }
                2 => {
                    let i = rng.gen_range(0..g.len());
                    g[i] = b"\n \x01+-=/A0\xe2"[rng.gen_range(0..10)];
                }
                _ => {
                    let i = rng.gen_range(0..g.len());
                    g.insert(i, b"\n \t+A"[rng.gen_range(0..5)]);
                }
            }
            corpus.push(g);
        }
        let mut oks = 0;
        for n in &corpus {
            let a = keys.verify(n);
            let b = verify_checkpoint(n, &vkeys, Some(origin));
            assert!(
                same(&a, &b),
                "{:?}\nfast: {a:?}\nlibrary: {b:?}",
                String::from_utf8_lossy(n)
            );
            oks += usize::from(a.is_ok());
        }
        assert!(oks >= 1);
    }
}
