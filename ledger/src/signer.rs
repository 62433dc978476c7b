//! The key that signs a log's checkpoints: a key file ([`crate::keys`]) or a key in a
//! PKCS#11 token ([`crate::hsm`]), behind one `signed_note::Signer`.

use crate::hsm::Pkcs11Signer;
use crate::store::LogStore;
use anyhow::{bail, Result};
use signed_note::{Signer, StandardSigner};

/// Signs checkpoints; knows how to name itself in messages.
pub struct CheckpointSigner {
    inner: Box<dyn Signer + Send + Sync>,
    what: String,
    /// A second key that signs every checkpoint too: only while a key rotation is
    /// committed, so the checkpoint that first includes it carries both signatures
    /// (specs/keys.md, "Rotation").
    cosigner: Option<Box<dyn Signer + Send + Sync>>,
}

impl CheckpointSigner {
    /// Any signer; `what` names the key in messages (e.g. "key file keys/artifacts.key").
    pub fn new(signer: impl Signer + Send + Sync + 'static, what: impl Into<String>) -> Self {
        Self {
            inner: Box::new(signer),
            what: what.into(),
            cosigner: None,
        }
    }

    /// This signer, and `other` beside it on every checkpoint.
    pub fn with_cosigner(mut self, other: impl Signer + Send + Sync + 'static) -> Self {
        self.cosigner = Some(Box::new(other));
        self
    }

    /// Every key that signs a checkpoint: the log's, and a rotation's new key if any.
    pub fn signers(&self) -> Vec<&dyn Signer> {
        let mut v: Vec<&dyn Signer> = vec![self.inner.as_ref()];
        if let Some(c) = &self.cosigner {
            v.push(c.as_ref());
        }
        v
    }

    /// Where the key lives, for messages.
    pub fn describe(&self) -> &str {
        &self.what
    }
}

impl From<StandardSigner> for CheckpointSigner {
    fn from(s: StandardSigner) -> Self {
        Self::new(s, "signing key")
    }
}

impl From<Pkcs11Signer> for CheckpointSigner {
    fn from(s: Pkcs11Signer) -> Self {
        let what = s.describe();
        Self::new(s, what)
    }
}

impl Signer for CheckpointSigner {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn key_id(&self) -> u32 {
        self.inner.key_id()
    }

    fn sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, ed25519_dalek::SignatureError> {
        self.inner.sign(msg)
    }
}

/// Refuses to sign a log with a key other than the one that signed it: the latest stored
/// checkpoint must verify under `vkey`. A log without checkpoints accepts any key.
pub fn check_key_signed_log(
    store: &dyn LogStore,
    log: &str,
    origin: &str,
    vkey: &str,
    what: &str,
) -> Result<()> {
    let Some((size, note)) = store.latest_checkpoint()? else {
        return Ok(());
    };
    if let Err(e) = ledger_client::checkpoint::verify_checkpoint(&note, &[vkey], Some(origin)) {
        let signers = signer_lines(&note);
        bail!(
            "log {log}: its latest checkpoint (tree size {size}) does not verify with the configured {what} \
             (vkey {vkey}): {e}; it is signed by {signers}. Refusing to sign this log with a different key: \
             configure the key that signed it, or start a new log in another data directory"
        );
    }
    Ok(())
}

/// `name+keyid` of each signature line of a note, for messages.
fn signer_lines(note: &[u8]) -> String {
    use base64::prelude::*;
    let text = String::from_utf8_lossy(note);
    let sigs: Vec<String> = text
        .split("\n\n")
        .last()
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("\u{2014} ")?;
            let (name, b64) = rest.split_once(' ')?;
            let raw = BASE64_STANDARD.decode(b64).ok()?;
            let id: [u8; 4] = raw.get(..4)?.try_into().ok()?;
            Some(format!("{name}+{:08x}", u32::from_be_bytes(id)))
        })
        .collect();
    if sigs.is_empty() {
        "no readable signature".to_string()
    } else {
        sigs.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::Log;
    use crate::store::memory::MemoryStore;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    const ORIGIN: &str = "signer.example/log";

    fn key() -> (StandardSigner, String) {
        let (skey, vkey) = signed_note::generate_key(&mut rand::rngs::OsRng, ORIGIN);
        (StandardSigner::new(&skey).unwrap(), vkey)
    }

    #[test]
    fn a_wrapped_signer_signs_exactly_like_the_key_it_wraps() {
        let (s, vkey) = key();
        let wrapped = CheckpointSigner::from(s.clone());
        assert_eq!(wrapped.name(), s.name());
        assert_eq!(wrapped.key_id(), s.key_id());
        let text = crate::log::checkpoint_text(ORIGIN, 0, &tlog_tiles::EMPTY_HASH).unwrap();
        let note = crate::log::sign_checkpoint(&wrapped, &text).unwrap();
        ledger_client::checkpoint::verify_checkpoint(&note, &[&vkey], Some(ORIGIN)).unwrap();
        // Ed25519 is deterministic: the same key signs the same text identically.
        let mut direct = signed_note::Note::new(&text, &[]).unwrap();
        direct.add_sigs(&[&s]).unwrap();
        assert_eq!(note, direct.to_bytes());
    }

    #[test]
    fn a_cosigner_signs_every_checkpoint_beside_the_log_key() {
        let (s, vkey) = key();
        let (c, cvkey) = key();
        let both = CheckpointSigner::from(s).with_cosigner(c);
        let text = crate::log::checkpoint_text(ORIGIN, 0, &tlog_tiles::EMPTY_HASH).unwrap();
        let note = crate::log::sign_checkpoint(&both, &text).unwrap();
        for k in [&vkey, &cvkey] {
            ledger_client::checkpoint::verify_checkpoint(&note, &[k], Some(ORIGIN)).unwrap();
        }
    }

    #[test]
    fn a_log_signed_by_one_key_refuses_another() {
        let store = Arc::new(MemoryStore::default());
        // Nothing stored yet: any key is fine.
        let (a, a_vkey) = key();
        check_key_signed_log(store.as_ref(), "l", ORIGIN, &a_vkey, "key A").unwrap();
        drop(Log::open("l", ORIGIN, a, a_vkey.clone(), store.clone()).unwrap());
        check_key_signed_log(store.as_ref(), "l", ORIGIN, &a_vkey, "key A").unwrap();
        let (_, b_vkey) = key();
        let err = check_key_signed_log(store.as_ref(), "l", ORIGIN, &b_vkey, "key B")
            .unwrap_err()
            .to_string();
        let a_id = a_vkey.split('+').nth(1).unwrap();
        assert!(
            err.contains("does not verify with the configured key B"),
            "{err}"
        );
        assert!(err.contains(&format!("signed by {ORIGIN}+{a_id}")), "{err}");
        assert!(err.contains("tree size 0"), "{err}");
        // Same name, same key ID, different key: still refused.
        // (The base64 may hold '+' itself: it is everything after the second.)
        let [name, id]: [&str; 2] = a_vkey
            .splitn(3, '+')
            .take(2)
            .collect::<Vec<_>>()
            .try_into()
            .unwrap();
        let forged = format!("{name}+{id}+{}", b_vkey.splitn(3, '+').nth(2).unwrap());
        assert!(check_key_signed_log(store.as_ref(), "l", ORIGIN, &forged, "x").is_err());
        // A vkey for another origin does not sign this log either.
        let (_, other) = signed_note::generate_key(&mut rand::rngs::OsRng, "other.example/log");
        assert!(check_key_signed_log(store.as_ref(), "l", ORIGIN, &other, "x").is_err());
    }

    #[test]
    fn signer_lines_of_hostile_notes_do_not_panic() {
        for note in [
            &b""[..],
            b"\n\n",
            b"a\n\n\xe2\x80\x94 \n",
            b"a\n\n\xe2\x80\x94 name !!!\n",
            b"a\n\n\xe2\x80\x94 name AAA=\n",
            b"\xff\xfe\n\n\xe2\x80\x94 n AAAAAAAA\n",
        ] {
            let _ = signer_lines(note);
        }
        assert_eq!(
            signer_lines("t\n\n\u{2014} n AAAAAQ==\n".as_bytes()),
            "n+00000001"
        );
    }

    /// Fails the first `fail` signatures, then signs with the wrapped key.
    struct Flaky {
        key: StandardSigner,
        fail: Arc<AtomicUsize>,
    }

    impl Signer for Flaky {
        fn name(&self) -> &str {
            self.key.name()
        }
        fn key_id(&self) -> u32 {
            self.key.key_id()
        }
        fn sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, ed25519_dalek::SignatureError> {
            let left = self.fail.load(Ordering::SeqCst);
            if left > 0 {
                self.fail.store(left - 1, Ordering::SeqCst);
                return Err(ed25519_dalek::SignatureError::from_source(
                    "token unplugged".to_string(),
                ));
            }
            self.key.sign(msg)
        }
    }

    #[test]
    fn a_signing_failure_fails_its_batch_and_the_next_batch_is_signed() {
        let (key, vkey) = key();
        let fail = Arc::new(AtomicUsize::new(0));
        let signer = CheckpointSigner::new(
            Flaky {
                key,
                fail: fail.clone(),
            },
            "flaky key",
        );
        let store = Arc::new(MemoryStore::default());
        let log = Log::open("l", ORIGIN, signer, vkey.clone(), store.clone()).unwrap();
        let pool = crate::sequencer::start(log.clone(), Default::default()).unwrap();
        let submit = |e: &[u8]| {
            let b = bytes::Bytes::copy_from_slice(e);
            let h = tlog_tiles::record_hash(&b);
            pool.submit(vec![(b, h)]).unwrap().blocking_recv().unwrap()
        };
        fail.store(1, Ordering::SeqCst);
        let err = submit(b"first").err().unwrap().to_string();
        assert!(err.contains("token unplugged"), "{err}");
        assert_eq!(log.snapshot().size(), 0);
        let ok = submit(b"second").unwrap();
        assert_eq!(ok.entries[0].index, 0);
        let cp = ledger_client::checkpoint::verify_checkpoint(
            &ok.snapshot.checkpoint,
            &[&vkey],
            Some(ORIGIN),
        )
        .unwrap();
        assert_eq!(cp.size, 1);
        pool.shutdown();
    }
}
