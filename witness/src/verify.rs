//! Checkpoint verification with keys parsed once at start-up.
//!
//! `ledger_client::checkpoint::verify_checkpoint` takes vkeys as text and parses them on
//! every call; decompressing the Ed25519 point alone was ~6% of the witness's CPU under
//! load. [`LogKeys`] holds the parsed keys of one origin and verifies with
//! `verify_checkpoint_with_keys`, the same checks without the parsing.

use ledger_client::checkpoint::{
    verify_checkpoint_with_keys, CheckpointError, VerifiedCheckpoint, VerifierKey,
};

/// The trusted keys of one origin.
pub struct LogKeys {
    origin: String,
    keys: Vec<VerifierKey>,
}

impl LogKeys {
    /// Keys parsed by `ledger_client::checkpoint::parse_vkey`; every key is named `origin`
    /// (c2sp.org/tlog-checkpoint#signatures), as the logs file guarantees.
    pub fn new(origin: &str, keys: &[VerifierKey]) -> Self {
        debug_assert!(keys.iter().all(|k| k.name() == origin));
        Self {
            origin: origin.to_string(),
            keys: keys.to_vec(),
        }
    }

    /// Whether `id` is the ID of one of this origin's keys.
    pub fn has_key_id(&self, id: u32) -> bool {
        self.keys.iter().any(|k| k.key_id() == id)
    }

    /// `verify_checkpoint(note, <these keys>, Some(origin))`.
    pub fn verify(&self, note: &[u8]) -> Result<VerifiedCheckpoint, CheckpointError> {
        verify_checkpoint_with_keys(note, &self.keys, Some(&self.origin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::prelude::*;
    use ledger_client::checkpoint::{parse_vkey, sign_checkpoint, MAX_NOTE_SIZE};
    use ledger_client::merkle::leaf_hash;
    use rand::{Rng, SeedableRng};
    use signed_note::Note;

    #[test]
    fn no_mutated_or_hostile_note_verifies_as_another_checkpoint() {
        let origin = "example.com/log";
        let (sk1, vk1) = signed_note::generate_key(&mut rand::rngs::OsRng, origin);
        let (_sk2, vk2) = signed_note::generate_key(&mut rand::rngs::OsRng, origin);
        let (other_sk, _) = signed_note::generate_key(&mut rand::rngs::OsRng, "other.example");
        let (impostor_sk, _) = signed_note::generate_key(&mut rand::rngs::OsRng, origin);
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
        let want = keys.verify(&good).unwrap();
        assert_eq!((want.size, want.root), (42, root));
        for n in &corpus[1..] {
            // A mutation may leave the signed text intact (e.g. add an unknown signature
            // line); then it is the same checkpoint. Anything else must be refused.
            if let Ok(v) = keys.verify(n) {
                assert_eq!(
                    (v.origin.as_str(), v.size, v.root),
                    (origin, want.size, want.root),
                    "{:?}",
                    String::from_utf8_lossy(n)
                );
                assert!(v.note.starts_with(text), "{:?}", String::from_utf8_lossy(n));
            }
        }
        // The specific refusals a witness turns into status codes.
        let bad_sig = &corpus[9];
        assert!(matches!(
            keys.verify(bad_sig),
            Err(CheckpointError::BadSignature { .. })
        ));
        assert!(matches!(
            keys.verify(&corpus[10]),
            Err(CheckpointError::NoTrustedSignature { .. })
        ));
        assert!(matches!(
            keys.verify(&corpus[11]),
            Err(CheckpointError::TooLarge { .. })
        ));
    }
}
