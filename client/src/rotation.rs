//! Log key rotation (specs/keys.md, "Rotation"): a logged statement that a log's
//! checkpoint key changes at a tree size, and the history of which key was valid when.
//!
//! A rotation is an entry of the log itself: a c2sp.org/signed-note whose text is
//!
//! ```text
//! ledger.key-rotation/v1
//! origin <origin>
//! old <vkey>
//! new <vkey>
//! size <N>
//! time <unix seconds>
//! reason <text>
//! ```
//!
//! signed by both keys (the old one authorizes the change, the new one proves it is held),
//! and logged at index `N - 1`. The checkpoint of size `N`, the first to include it, is
//! signed by both keys; smaller trees by the old key only, larger ones by the new key only.
//! c2sp.org/tlog-checkpoint#signatures: "clients MUST ignore unknown signatures. This
//! enables, for example, log key rotation": a client that only knows either key accepts the
//! size-`N` checkpoint, and sees the rotation entry in it.
//!
//! A [`KeyHistory`] starts from the key a verifier trusts from the start (the genesis key)
//! and follows the rotations, each of which must be signed by the key it retires; it then
//! accepts a checkpoint only when signed by a key valid *at that checkpoint's size*. So a
//! retired key, stolen or not, can no longer sign a larger tree that this verifier accepts.

use crate::checkpoint::{parse_vkey, verify_checkpoint, verify_note, VerifiedCheckpoint};
use crate::merkle::{hash_from_base64, hash_to_base64, leaf_hash, verify_inclusion, Hash};
use base64::prelude::*;
use serde::{Deserialize, Serialize};

/// First line of a rotation statement.
pub const HEADER: &str = "ledger.key-rotation/v1";
/// Longest reason a rotation carries.
pub const MAX_REASON_BYTES: usize = 512;
/// Most rotations a history file may hold (a bound on work, not a policy).
pub const MAX_ROTATIONS: usize = 1024;

/// Why a rotation or a key history is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RotationError {
    #[error("not a key rotation statement: {0}")]
    Malformed(String),
    #[error("rotation at index {index}: {problem}")]
    Invalid { index: u64, problem: String },
    #[error(
        "checkpoint of size {size} is not signed by a key valid at that size ({keys}): {problem}"
    )]
    NotValidAtSize {
        size: u64,
        keys: String,
        problem: String,
    },
    #[error("key history: {0}")]
    History(String),
}

/// One rotation statement (the note text above).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    pub origin: String,
    /// The retiring key (vkey).
    pub old: String,
    /// The key from `size` on (vkey).
    pub new: String,
    /// The first tree size whose checkpoint the new key signs (the rotation entry's index
    /// plus one).
    pub size: u64,
    pub time: u64,
    pub reason: String,
}

impl Rotation {
    /// The note text: what both keys sign.
    pub fn text(&self) -> Vec<u8> {
        format!(
            "{HEADER}\norigin {}\nold {}\nnew {}\nsize {}\ntime {}\nreason {}\n",
            self.origin, self.old, self.new, self.size, self.time, self.reason
        )
        .into_bytes()
    }

    /// Checks the fields a statement must have to be written (and that [`Rotation::parse_text`]
    /// accepts back).
    pub fn check(&self) -> Result<(), RotationError> {
        let bad = |m: String| Err(RotationError::Malformed(m));
        let old =
            parse_vkey(&self.old).map_err(|e| RotationError::Malformed(format!("old: {e}")))?;
        let new =
            parse_vkey(&self.new).map_err(|e| RotationError::Malformed(format!("new: {e}")))?;
        if old.name() != self.origin || new.name() != self.origin {
            return bad(format!(
                "both keys must be named after the origin {:?} (old {:?}, new {:?})",
                self.origin,
                old.name(),
                new.name()
            ));
        }
        if self.old == self.new {
            return bad("the new key is the old key".into());
        }
        if self.size == 0 {
            return bad("size 0: a rotation is an entry, so it ends a tree of size >= 1".into());
        }
        if self.reason.trim().is_empty()
            || self.reason.len() > MAX_REASON_BYTES
            || self.reason.chars().any(char::is_control)
        {
            return bad(format!(
                "the reason must be 1-{MAX_REASON_BYTES} bytes of printable text"
            ));
        }
        Ok(())
    }

    /// Parses the note text (exactly the lines [`Rotation::text`] writes, in order).
    pub fn parse_text(text: &[u8]) -> Result<Rotation, RotationError> {
        let bad = |m: &str| RotationError::Malformed(m.to_string());
        let s = std::str::from_utf8(text).map_err(|_| bad("not UTF-8"))?;
        let body = s
            .strip_suffix('\n')
            .ok_or_else(|| bad("no final newline"))?;
        let lines: Vec<&str> = body.split('\n').collect();
        if lines.first() != Some(&HEADER) {
            return Err(bad("the first line is not ledger.key-rotation/v1"));
        }
        if lines.len() != 7 {
            return Err(RotationError::Malformed(format!(
                "{} lines, a rotation has 7",
                lines.len()
            )));
        }
        let field = |i: usize, name: &str| -> Result<&str, RotationError> {
            lines[i]
                .strip_prefix(name)
                .and_then(|r| r.strip_prefix(' '))
                .ok_or_else(|| RotationError::Malformed(format!("line {} is not {name:?}", i + 1)))
        };
        let number = |i: usize, name: &str| -> Result<u64, RotationError> {
            let v = field(i, name)?;
            if v.is_empty()
                || !v.bytes().all(|b| b.is_ascii_digit())
                || (v.len() > 1 && v.starts_with('0'))
            {
                return Err(RotationError::Malformed(format!(
                    "{name} {v:?} is not a decimal without leading zeroes"
                )));
            }
            v.parse()
                .map_err(|_| RotationError::Malformed(format!("{name} does not fit in 64 bits")))
        };
        let r = Rotation {
            origin: field(1, "origin")?.to_string(),
            old: field(2, "old")?.to_string(),
            new: field(3, "new")?.to_string(),
            size: number(4, "size")?,
            time: number(5, "time")?,
            reason: field(6, "reason")?.to_string(),
        };
        r.check()?;
        Ok(r)
    }

    /// Whether `entry` looks like a rotation at all (its first line), without checking it.
    pub fn is_candidate(entry: &[u8]) -> bool {
        entry.starts_with(HEADER.as_bytes()) && entry.get(HEADER.len()) == Some(&b'\n')
    }

    /// Verifies a logged rotation entry at `index`: a signed note whose statement is well
    /// formed, is signed by both its old and its new key, and names `index + 1` as its size.
    pub fn verify_entry(entry: &[u8], index: u64) -> Result<Rotation, RotationError> {
        let invalid = |problem: String| RotationError::Invalid { index, problem };
        // The text comes from the note: find it without trusting anything yet.
        let pos = entry
            .windows(2)
            .rposition(|w| w == b"\n\n")
            .ok_or_else(|| RotationError::Malformed("not a signed note".into()))?;
        let r = Rotation::parse_text(&entry[..pos + 1])?;
        for (which, key) in [("old", &r.old), ("new", &r.new)] {
            verify_note(entry, &[key.as_str()])
                .map_err(|e| invalid(format!("not signed by its {which} key: {e}")))?;
        }
        if index.checked_add(1) != Some(r.size) {
            return Err(invalid(format!(
                "it names size {} but sits at index {index}: the new key must start with the tree that first includes it",
                r.size
            )));
        }
        Ok(r)
    }
}

/// One key and the tree sizes whose checkpoints it may sign (both ends inclusive).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyPeriod {
    pub vkey: String,
    pub from_size: u64,
    /// `None` for the key in force.
    pub until_size: Option<u64>,
}

impl KeyPeriod {
    fn covers(&self, size: u64) -> bool {
        self.from_size <= size && self.until_size.is_none_or(|u| size <= u)
    }
}

/// The keys of one log over its life, from a trusted genesis key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyHistory {
    pub origin: String,
    pub periods: Vec<KeyPeriod>,
}

impl KeyHistory {
    /// A history with one key, valid from the empty tree on.
    pub fn new(genesis: &str) -> Result<KeyHistory, RotationError> {
        let k =
            parse_vkey(genesis).map_err(|e| RotationError::History(format!("genesis key: {e}")))?;
        Ok(KeyHistory {
            origin: k.name().to_string(),
            periods: vec![KeyPeriod {
                vkey: genesis.to_string(),
                from_size: 0,
                until_size: None,
            }],
        })
    }

    /// The key in force (of the largest trees).
    pub fn current(&self) -> &str {
        &self.periods[self.periods.len() - 1].vkey
    }

    /// Applies a verified rotation: it must be about this log, retire the key in force,
    /// and come after the previous rotation.
    pub fn apply(&mut self, r: &Rotation) -> Result<(), RotationError> {
        let index = r.size - 1;
        let invalid = |problem: String| RotationError::Invalid { index, problem };
        if r.origin != self.origin {
            return Err(invalid(format!(
                "it is about {:?}, not {:?}",
                r.origin, self.origin
            )));
        }
        let last = self.periods.len() - 1;
        if r.old != self.periods[last].vkey {
            return Err(invalid(format!(
                "it retires {} but the key in force is {}",
                r.old, self.periods[last].vkey
            )));
        }
        if r.size <= self.periods[last].from_size {
            return Err(invalid(format!(
                "size {} does not come after the previous rotation (size {})",
                r.size, self.periods[last].from_size
            )));
        }
        if self.periods.iter().any(|p| p.vkey == r.new) {
            return Err(invalid("its new key was used before".into()));
        }
        if self.periods.len() > MAX_ROTATIONS {
            return Err(RotationError::History(format!(
                "more than {MAX_ROTATIONS} rotations"
            )));
        }
        self.periods[last].until_size = Some(r.size);
        self.periods.push(KeyPeriod {
            vkey: r.new.clone(),
            from_size: r.size,
            until_size: None,
        });
        Ok(())
    }

    /// The keys that may sign a checkpoint of `size` (two at a rotation's size).
    pub fn keys_at(&self, size: u64) -> Vec<&str> {
        self.periods
            .iter()
            .filter(|p| p.covers(size))
            .map(|p| p.vkey.as_str())
            .collect()
    }

    /// Every key the log ever used.
    pub fn all_keys(&self) -> Vec<&str> {
        self.periods.iter().map(|p| p.vkey.as_str()).collect()
    }

    /// Verifies a checkpoint of this log: signed by a key valid at its size.
    pub fn verify_checkpoint(&self, note: &[u8]) -> Result<VerifiedCheckpoint, RotationError> {
        // Any key of the log first (this also parses and checks the body and origin)...
        let cp = verify_checkpoint(note, &self.all_keys(), Some(&self.origin)).map_err(|e| {
            RotationError::NotValidAtSize {
                size: 0,
                keys: self.all_keys().join(", "),
                problem: e.to_string(),
            }
        })?;
        // ...then the keys valid at the size it signs: the size is inside the signed text.
        let valid = self.keys_at(cp.size);
        verify_checkpoint(note, &valid, Some(&self.origin)).map_err(|e| {
            RotationError::NotValidAtSize {
                size: cp.size,
                keys: valid.join(", "),
                problem: e.to_string(),
            }
        })
    }
}

/// One rotation as served and stored in a key-history file: the entry, where it is, and
/// the proof that it is in the checkpoint both keys signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggedRotation {
    pub index: u64,
    /// The entry (a signed note), standard base64.
    pub entry: String,
    /// The signed checkpoint of size `index + 1`.
    pub checkpoint: String,
    /// Inclusion proof of the entry in that checkpoint, each hash standard base64.
    pub inclusion_proof: Vec<String>,
}

/// `GET <log>/key-history` and the file `ledgerctl key-history` writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryFile {
    pub origin: String,
    /// The log's first key.
    pub genesis: String,
    pub rotations: Vec<LoggedRotation>,
}

impl HistoryFile {
    /// Verifies every rotation from `trusted` (the genesis key the verifier trusts, which
    /// must be the file's): each entry is a valid rotation of the key then in force, and is
    /// included in the checkpoint of its size, which both keys signed.
    pub fn verify(&self, trusted: &str) -> Result<KeyHistory, RotationError> {
        if self.genesis != trusted {
            return Err(RotationError::History(format!(
                "it starts from {} but the trusted key is {trusted}",
                self.genesis
            )));
        }
        if self.rotations.len() > MAX_ROTATIONS {
            return Err(RotationError::History(format!(
                "more than {MAX_ROTATIONS} rotations"
            )));
        }
        let mut h = KeyHistory::new(trusted)?;
        if h.origin != self.origin {
            return Err(RotationError::History(format!(
                "origin {:?} but the trusted key is named {:?}",
                self.origin, h.origin
            )));
        }
        for lr in &self.rotations {
            let index = lr.index;
            let invalid = |problem: String| RotationError::Invalid { index, problem };
            let entry = BASE64_STANDARD
                .decode(&lr.entry)
                .map_err(|e| invalid(format!("entry: {e}")))?;
            let r = Rotation::verify_entry(&entry, index)?;
            h.apply(&r)?;
            for (which, key) in [("old", &r.old), ("new", &r.new)] {
                let cp =
                    verify_checkpoint(lr.checkpoint.as_bytes(), &[key.as_str()], Some(&h.origin))
                        .map_err(|e| {
                        invalid(format!(
                            "its checkpoint is not signed by the {which} key: {e}"
                        ))
                    })?;
                if cp.size != r.size {
                    return Err(invalid(format!(
                        "its checkpoint has size {}, not {}",
                        cp.size, r.size
                    )));
                }
                let proof: Vec<Hash> = lr
                    .inclusion_proof
                    .iter()
                    .map(|s| hash_from_base64(s))
                    .collect::<Result<_, _>>()
                    .map_err(|e| invalid(format!("inclusion proof: {e}")))?;
                verify_inclusion(&leaf_hash(&entry), index, cp.size, &proof, &cp.root)
                    .map_err(|e| invalid(format!("not included in its checkpoint: {e}")))?;
            }
        }
        Ok(h)
    }
}

/// Builds the served form of one rotation.
pub fn logged(index: u64, entry: &[u8], checkpoint: &[u8], proof: &[Hash]) -> LoggedRotation {
    LoggedRotation {
        index,
        entry: BASE64_STANDARD.encode(entry),
        checkpoint: String::from_utf8_lossy(checkpoint).into_owned(),
        inclusion_proof: proof.iter().map(hash_to_base64).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::sign_checkpoint;
    use crate::merkle::{inclusion_proof, root_from_leaves};
    use signed_note::{Note, StandardSigner};

    const ORIGIN: &str = "example.com/log";

    /// (signing key text, signer, vkey).
    struct K(String, StandardSigner, String);

    fn key() -> K {
        let (skey, vkey) = signed_note::generate_key(&mut rand::rngs::OsRng, ORIGIN);
        K(skey.clone(), StandardSigner::new(&skey).unwrap(), vkey)
    }

    fn sign(text: &[u8], signers: &[&StandardSigner]) -> Vec<u8> {
        let mut n = Note::new(text, &[]).unwrap();
        let s: Vec<&dyn signed_note::Signer> = signers
            .iter()
            .map(|s| *s as &dyn signed_note::Signer)
            .collect();
        n.add_sigs(&s).unwrap();
        n.to_bytes()
    }

    fn rotation(old: &str, new: &str, size: u64) -> Rotation {
        Rotation {
            origin: ORIGIN.into(),
            old: old.into(),
            new: new.into(),
            size,
            time: 1_795_651_200,
            reason: "scheduled yearly rotation".into(),
        }
    }

    /// A log of `before` plain entries, then a rotation from k1 to k2, then `after` more;
    /// returns the entries, the rotation's index and the history file.
    struct Fixture {
        k1: K,
        k2: K,
        leaves: Vec<Hash>,
        file: HistoryFile,
    }

    fn fixture(before: u64) -> Fixture {
        let k1 = key();
        let k2 = key();
        let mut entries: Vec<Vec<u8>> = (0..before).map(|i| format!("e{i}").into_bytes()).collect();
        let r = rotation(&k1.2, &k2.2, before + 1);
        let entry = sign(&r.text(), &[&k1.1, &k2.1]);
        entries.push(entry.clone());
        let leaves: Vec<Hash> = entries.iter().map(|e| leaf_hash(e)).collect();
        let root = root_from_leaves(&leaves);
        let text = signed_note::Note::from_bytes(
            &sign_checkpoint(&k1.0, ORIGIN, before + 1, &root, &[]).unwrap(),
        )
        .unwrap()
        .text()
        .to_vec();
        let cp = sign(&text, &[&k1.1, &k2.1]);
        let proof = inclusion_proof(&leaves, before).unwrap();
        let file = HistoryFile {
            origin: ORIGIN.into(),
            genesis: k1.2.clone(),
            rotations: vec![logged(before, &entry, &cp, &proof)],
        };
        Fixture {
            k1,
            k2,
            leaves,
            file,
        }
    }

    fn checkpoint(k: &K, size: u64) -> Vec<u8> {
        sign_checkpoint(&k.0, ORIGIN, size, &Hash([7u8; 32]), &[]).unwrap()
    }

    #[test]
    fn each_key_signs_only_the_sizes_of_its_period() {
        let f = fixture(5);
        let h = f.file.verify(&f.k1.2).unwrap();
        assert_eq!(h.current(), f.k2.2);
        assert_eq!(h.keys_at(5), [f.k1.2.as_str()]);
        assert_eq!(h.keys_at(6), [f.k1.2.as_str(), f.k2.2.as_str()]);
        assert_eq!(h.keys_at(7), [f.k2.2.as_str()]);
        // Old key: up to and including the rotation's size.
        assert_eq!(h.verify_checkpoint(&checkpoint(&f.k1, 5)).unwrap().size, 5);
        assert_eq!(h.verify_checkpoint(&checkpoint(&f.k1, 6)).unwrap().size, 6);
        let e = h.verify_checkpoint(&checkpoint(&f.k1, 7)).unwrap_err();
        assert!(
            matches!(e, RotationError::NotValidAtSize { size: 7, .. }),
            "{e}"
        );
        // New key: from the rotation's size on, never before.
        assert!(h.verify_checkpoint(&checkpoint(&f.k2, 6)).is_ok());
        assert!(h.verify_checkpoint(&checkpoint(&f.k2, 1_000_000)).is_ok());
        assert!(h.verify_checkpoint(&checkpoint(&f.k2, 5)).is_err());
        // A stranger's key: never.
        assert!(h.verify_checkpoint(&checkpoint(&key(), 6)).is_err());
        assert_eq!(f.leaves.len(), 6);
    }

    #[test]
    fn a_statement_round_trips_and_hostile_ones_are_refused_naming_the_problem() {
        let a = key().2;
        let b = key().2;
        let r = rotation(&a, &b, 3);
        assert_eq!(Rotation::parse_text(&r.text()).unwrap(), r);
        assert!(Rotation::is_candidate(&r.text()));
        let text = String::from_utf8(r.text()).unwrap();
        for (bad, says) in [
            (text.replace("size 3", "size 03"), "leading zeroes"),
            (text.replace("size 3", "size 0"), "size 0"),
            (
                text.replace("size 3", "size 99999999999999999999"),
                "64 bits",
            ),
            (text.replace("origin ", "origin  "), "origin"),
            (text.replace(&b, &a), "the new key is the old key"),
            (
                text.replace("reason scheduled yearly rotation", "reason "),
                "reason",
            ),
            (
                text.replace("ledger.key-rotation/v1", "ledger.key-rotation/v2"),
                "first line",
            ),
            (format!("{text}extra\n"), "8 lines"),
            (text.trim_end().to_string(), "final newline"),
            (text.replace("old ", "new "), "\"old\""),
        ] {
            let e = Rotation::parse_text(bad.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
        // Keys named after another log.
        let (_, foreign) = signed_note::generate_key(&mut rand::rngs::OsRng, "other.example/log");
        let e = Rotation::parse_text(&rotation(&a, &foreign, 3).text()).unwrap_err();
        assert!(e.to_string().contains("named after the origin"), "{e}");
    }

    #[test]
    fn a_rotation_signed_by_only_one_key_or_at_the_wrong_index_is_refused() {
        let k1 = key();
        let k2 = key();
        let r = rotation(&k1.2, &k2.2, 4);
        let both = sign(&r.text(), &[&k1.1, &k2.1]);
        assert_eq!(Rotation::verify_entry(&both, 3).unwrap(), r);
        let e = Rotation::verify_entry(&both, 4).unwrap_err();
        assert!(e.to_string().contains("sits at index 4"), "{e}");
        // Without the old key's consent (a thief of nothing), or without proof the new key
        // is held (someone else's public key).
        for only in [&k1.1, &k2.1] {
            let e = Rotation::verify_entry(&sign(&r.text(), &[only]), 3).unwrap_err();
            assert!(e.to_string().contains("not signed by its"), "{e}");
        }
        assert!(Rotation::verify_entry(b"ledger.key-rotation/v1\n", 0).is_err());
        assert!(Rotation::verify_entry(&[0xff; 64], 0).is_err());
    }

    #[test]
    fn a_history_file_must_start_from_the_trusted_key_and_prove_each_rotation() {
        let f = fixture(2);
        f.file.verify(&f.k1.2).unwrap();
        // Another genesis: refused, even though the file is internally consistent.
        assert!(f.file.verify(&f.k2.2).is_err());
        // A rotation not included in its checkpoint.
        let mut g = f.file.clone();
        g.rotations[0].inclusion_proof.pop();
        assert!(g
            .verify(&f.k1.2)
            .unwrap_err()
            .to_string()
            .contains("not included"));
        // A checkpoint only the old key signed.
        let mut g = f.file.clone();
        let cp = verify_checkpoint(g.rotations[0].checkpoint.as_bytes(), &[&f.k1.2], None).unwrap();
        g.rotations[0].checkpoint =
            String::from_utf8(sign_checkpoint(&f.k1.0, ORIGIN, cp.size, &cp.root, &[]).unwrap())
                .unwrap();
        assert!(g
            .verify(&f.k1.2)
            .unwrap_err()
            .to_string()
            .contains("new key"));
        // The same rotation twice: the second retires a key no longer in force.
        let mut g = f.file.clone();
        g.rotations.push(g.rotations[0].clone());
        assert!(g.verify(&f.k1.2).is_err());
        // Garbage.
        let mut g = f.file.clone();
        g.rotations[0].entry = "!!".into();
        assert!(g.verify(&f.k1.2).is_err());
    }

    #[test]
    fn a_chain_of_rotations_must_retire_the_key_in_force_each_time() {
        let k1 = key();
        let k2 = key();
        let k3 = key();
        let (k1, k2, k3) = (k1.2, k2.2, k3.2);
        let mut h = KeyHistory::new(&k1).unwrap();
        h.apply(&rotation(&k1, &k2, 3)).unwrap();
        // Retiring k1 again (it no longer signs anything), or going back in size: refused.
        assert!(h.apply(&rotation(&k1, &k3, 9)).is_err());
        assert!(h.apply(&rotation(&k2, &k3, 3)).is_err());
        assert!(
            h.apply(&rotation(&k2, &k1, 9)).is_err(),
            "no key comes back"
        );
        h.apply(&rotation(&k2, &k3, 9)).unwrap();
        assert_eq!(h.keys_at(3), [k1.as_str(), k2.as_str()]);
        assert_eq!(h.keys_at(5), [k2.as_str()]);
        assert_eq!(h.keys_at(9), [k2.as_str(), k3.as_str()]);
        assert_eq!(h.keys_at(10), [k3.as_str()]);
    }
}
