//! Rotating a log's checkpoint key (specs/keys.md, "Rotation"), on a stopped ledger.
//!
//! `ledger rotate-key --log NAME --reason TEXT` logs a `ledger.key-rotation/v1` statement
//! (format and verification in [`ledger_client::rotation`]) signed by the old and the new
//! key, in a batch of its own whose checkpoint both keys sign; from the next tree on the
//! new key alone signs. The steps, and what a crash between them leaves:
//!
//! 1. the new private key is written to `keys/<log>.key.next` (a crash: an unused file,
//!    replaced by the next attempt);
//! 2. the statement is committed with the checkpoint both keys sign (atomic: the rotation
//!    is logged or not);
//! 3. the key files are swapped (`<log>.key` → `<log>.key.retired-<N>`, `.next` →
//!    `<log>.key`, `<log>.vkey` rewritten) and the rotation's index is recorded in the
//!    `keys/rotations` column family.
//!
//! A logged but unfinished rotation is detected at start (the last entry is a rotation not
//! recorded) and the server refuses to sign with the old key; running the command again
//! finishes it. At every start the recorded rotations are re-verified from the log, and
//! the configured key must be the one in force.

use crate::keys;
use crate::log::{read_entries, Log, Snapshot};
use crate::signer::CheckpointSigner;
use crate::store::LogStore;
use anyhow::{bail, Context, Result};
use ledger_client::rotation::{self, HistoryFile, KeyHistory, Rotation};
use rocksdb::{WriteOptions, DB};
use std::path::Path;
use std::sync::Arc;

/// The column family recording, per log, the indexes of its finished rotations.
pub const FAMILY: &str = "keys/rotations";

/// Where each log's finished rotations sit (`log name` → JSON list of entry indexes).
pub struct Recorded {
    db: Arc<DB>,
    cf: String,
}

impl Recorded {
    pub fn new(db: Arc<DB>, cf: String) -> Self {
        Self { db, cf }
    }

    fn cf(&self) -> Result<&rocksdb::ColumnFamily> {
        self.db
            .cf_handle(&self.cf)
            .with_context(|| format!("no column family {}", self.cf))
    }

    pub fn get(&self, log: &str) -> Result<Vec<u64>> {
        match self.db.get_cf(self.cf()?, log.as_bytes())? {
            None => Ok(vec![]),
            Some(v) => serde_json::from_slice(&v)
                .with_context(|| format!("the recorded key rotations of log {log} are corrupt")),
        }
    }

    fn add(&self, log: &str, index: u64) -> Result<()> {
        let mut all = self.get(log)?;
        if !all.contains(&index) {
            all.push(index);
            all.sort_unstable();
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db
            .put_cf_opt(self.cf()?, log.as_bytes(), serde_json::to_vec(&all)?, &wo)?;
        Ok(())
    }
}

/// A log's verified key history and where its rotations sit.
pub struct LogKeys {
    pub history: KeyHistory,
    pub rotations: Vec<u64>,
}

/// What the rotation code reads of a log: its storage at one durable snapshot.
struct View<'a> {
    name: &'a str,
    origin: &'a str,
    store: &'a dyn LogStore,
    snap: &'a Snapshot,
}

impl View<'_> {
    fn entry(&self, index: u64) -> Result<bytes::Bytes> {
        let mut e = read_entries(self.store, self.snap, index..index + 1)
            .with_context(|| format!("reading entry {index} of log {}", self.name))?;
        e.pop()
            .with_context(|| format!("entry {index} of log {} is missing", self.name))
    }

    /// A rotation logged as the last entry but not recorded as finished.
    fn pending(&self, recorded: &[u64]) -> Result<Option<(u64, Rotation)>> {
        let Some(last) = self.snap.size().checked_sub(1) else {
            return Ok(None);
        };
        if recorded.contains(&last) {
            return Ok(None);
        }
        let e = self.entry(last)?;
        if !Rotation::is_candidate(&e) {
            return Ok(None);
        }
        // Anyone may append text that looks like a rotation; only one both keys signed,
        // for this log and this index, is one.
        Ok(Rotation::verify_entry(&e, last)
            .ok()
            .filter(|r| r.origin == self.origin)
            .map(|r| (last, r)))
    }

    /// Re-verifies the recorded rotations from the log and returns the history they
    /// make; without any, the history of `current` alone.
    fn history(&self, recorded: &[u64], current: &str) -> Result<KeyHistory> {
        let mut h: Option<KeyHistory> = None;
        for &index in recorded {
            let e = self.entry(index)?;
            let r = Rotation::verify_entry(&e, index)
                .with_context(|| format!("log {}: recorded key rotation", self.name))?;
            let h = match &mut h {
                Some(h) => h,
                None => h.insert(KeyHistory::new(&r.old)?),
            };
            h.apply(&r)
                .with_context(|| format!("log {}: recorded key rotation", self.name))?;
        }
        match h {
            Some(h) => Ok(h),
            None => Ok(KeyHistory::new(current)?),
        }
    }
}

/// At start: no rotation is half done, the recorded ones verify and chain, and the
/// configured key is the one in force.
pub fn check_at_start(log: &Log, recorded: &[u64]) -> Result<LogKeys> {
    let snap = log.snapshot();
    let view = View {
        name: &log.name,
        origin: &log.origin,
        store: log.store.as_ref(),
        snap: &snap,
    };
    if let Some((index, r)) = view.pending(recorded)? {
        bail!(
            "log {}: a rotation of its key to {} was logged at index {index} but not finished; \
             run `ledger rotate-key --log {}` again (server stopped) to finish it",
            log.name,
            r.new,
            log.name
        );
    }
    let history = view.history(recorded, &log.vkey)?;
    if history.current() != log.vkey {
        let from = history.periods.last().map_or(0, |p| p.from_size);
        bail!(
            "log {}: its key was rotated to {} from tree size {from}, but the configured key is {}; \
             a retired key must not sign again: configure the key in force",
            log.name,
            history.current(),
            log.vkey
        );
    }
    Ok(LogKeys {
        history,
        rotations: recorded.to_vec(),
    })
}

/// `GET <log>/key-history`: every rotation with the checkpoint both keys signed and the
/// entry's inclusion proof in it.
pub fn history_file(log: &Log, keys: &LogKeys) -> Result<HistoryFile> {
    let snap = log.snapshot();
    let mut rotations = Vec::with_capacity(keys.rotations.len());
    for &index in &keys.rotations {
        let entry = read_entries(log.store.as_ref(), &snap, index..index + 1)?
            .pop()
            .with_context(|| format!("entry {index} is missing"))?;
        let checkpoint = log
            .checkpoint_at(index + 1)?
            .with_context(|| format!("no stored checkpoint of size {}", index + 1))?;
        let proof = log.inclusion_proof(&snap, index, index + 1)?;
        rotations.push(rotation::logged(index, &entry, &checkpoint, &proof));
    }
    Ok(HistoryFile {
        origin: log.origin.clone(),
        genesis: keys.history.periods[0].vkey.clone(),
        rotations,
    })
}

/// The key a log started with, read from its first recorded rotation (`None` without
/// rotations: the current key is the first).
pub fn first_key(
    store: &dyn crate::store::LogStore,
    origin: &str,
    recorded: &[u64],
) -> Result<Option<String>> {
    let Some(&first) = recorded.first() else {
        return Ok(None);
    };
    let snap = crate::log::recover(store, origin)?.context("the log has no checkpoint")?;
    let e = read_entries(store, &snap, first..first + 1)?;
    let e = e.first().context("the first rotation's entry is missing")?;
    Ok(Some(Rotation::verify_entry(e, first)?.old))
}

/// What `ledger rotate-key` did.
pub struct Rotated {
    pub index: u64,
    pub rotation: Rotation,
    /// False when it only finished a rotation logged earlier.
    pub logged_now: bool,
}

/// Where a log's keys live, for `ledger rotate-key`.
pub enum KeySource {
    /// `keys/<log>.key` in the data directory; the new key is generated beside it.
    Files,
    /// A PKCS#11 token: the key in force and the new one (made by `ledger hsm-keygen`),
    /// by label. After the rotation the server is started with `--hsm-key LOG=<new>`.
    Hsm {
        token: crate::hsm::HsmConfig,
        old_label: String,
        new_label: String,
    },
}

/// `ledger rotate-key`: rotates the key of log `name` in the (stopped) ledger at
/// `data_dir`, or finishes a rotation a crash interrupted.
pub fn rotate(data_dir: &Path, name: &str, reason: &str, source: KeySource) -> Result<Rotated> {
    // Checked before anything is touched.
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        bail!("--log {name:?}: a log name is 1-64 characters of [a-z0-9_-]");
    }
    if reason.trim().is_empty()
        || reason.len() > rotation::MAX_REASON_BYTES
        || reason.chars().any(char::is_control)
    {
        bail!(
            "--reason must be 1-{} bytes of printable text: it is logged",
            rotation::MAX_REASON_BYTES
        );
    }
    let key_dir = data_dir.join("keys");
    let db_path = data_dir.join("db");
    if !db_path.exists() {
        bail!("no database at {}: nothing to rotate", db_path.display());
    }
    let db = crate::store::rocks::RocksDb::open(&db_path, &[name.to_string()], 16 << 20)
        .with_context(|| {
            format!(
                "opening {} (is the server still running? stop it first)",
                db_path.display()
            )
        })?;
    let (rdb, rcf) = db.process_family(FAMILY);
    let recorded_store = Recorded::new(rdb, rcf);
    let recorded = recorded_store.get(name)?;
    let store = Arc::new(db.log_store(name));
    let Some((_, latest)) = store.latest_checkpoint()? else {
        bail!("log {name} has no checkpoint yet: start the ledger once before rotating its key");
    };
    // The origin is the checkpoint's first line (c2sp.org/tlog-checkpoint).
    let origin = std::str::from_utf8(&latest)
        .ok()
        .and_then(|t| t.lines().next())
        .context("the latest checkpoint has no origin line")?
        .to_string();
    let snap =
        crate::log::recover(store.as_ref(), &origin)?.context("the log has no checkpoint")?;
    let view = View {
        name,
        origin: &origin,
        store: store.as_ref(),
        snap: &snap,
    };

    // A rotation logged but not finished: finish it.
    if let Some((index, r)) = view.pending(&recorded)? {
        if let KeySource::Files = source {
            finish(&key_dir, name, &origin, &r)?;
        }
        recorded_store.add(name, index)?;
        return Ok(Rotated {
            index,
            rotation: r,
            logged_now: false,
        });
    }
    let size = snap.size();
    match source {
        KeySource::Files => {
            let (skey_path, _) = keys::key_paths(&key_dir, name);
            let next_path = key_dir.join(format!("{name}.key.next"));
            // A crash between the two renames of `finish` leaves the key in force in
            // `.next`.
            let old_path = if !skey_path.exists() && next_path.exists() {
                &next_path
            } else {
                &skey_path
            };
            let old = keys::load(old_path, &origin)?;
            let h = view.history(&recorded, &old.vkey)?;
            if h.current() != old.vkey {
                // Logged and recorded, files not swapped: finish that.
                if let Some(&index) = recorded.last() {
                    let r = Rotation::verify_entry(&view.entry(index)?, index)?;
                    if r.new == h.current() {
                        finish(&key_dir, name, &origin, &r)?;
                        return Ok(Rotated {
                            index,
                            rotation: r,
                            logged_now: false,
                        });
                    }
                }
                bail!(
                    "log {name}: the key file holds {} but the key in force is {}",
                    old.vkey,
                    h.current()
                );
            }
            let what = format!("key file {}", old_path.display());
            crate::signer::check_key_signed_log(store.as_ref(), name, &origin, &old.vkey, &what)?;
            // 1. The new key, beside the old one.
            if next_path.exists() {
                // Left by an attempt that logged nothing (else `pending` found it).
                std::fs::remove_file(&next_path)?;
            }
            let (skey, new_vkey) = signed_note::generate_key(&mut rand::rngs::OsRng, &origin);
            keys::write_private(&next_path, "private key", &format!("{skey}\n"))?;
            sync_dir(&key_dir)?;
            let new = signed_note::StandardSigner::new(&skey)
                .map_err(|e| anyhow::anyhow!("the new key: {e}"))?;
            // 2. The statement, under a checkpoint both keys sign.
            let r = statement(&origin, &old.vkey, &new_vkey, size, reason)?;
            let entry = signed_statement(&r, &old.signer, &new)?;
            let signer = CheckpointSigner::new(old.signer, what).with_cosigner(new);
            commit(store.clone(), name, &r, entry, signer)?;
            fault("after-commit");
            // 3. Swap the key files and record the rotation.
            finish(&key_dir, name, &origin, &r)?;
            recorded_store.add(name, size)?;
            Ok(Rotated {
                index: size,
                rotation: r,
                logged_now: true,
            })
        }
        KeySource::Hsm {
            token,
            old_label,
            new_label,
        } => {
            let t = crate::hsm::Token::open(&token).with_context(|| {
                format!(
                    "opening PKCS#11 token {:?} in {}",
                    token.token,
                    token.module.display()
                )
            })?;
            let open = |label: &str| {
                crate::hsm::Pkcs11Signer::open(t.clone(), label, &origin)
                    .with_context(|| format!("PKCS#11 key {label:?}"))
            };
            let (old, new) = (open(&old_label)?, open(&new_label)?);
            let (old_vkey, new_vkey) = (old.vkey().to_string(), new.vkey().to_string());
            if old_vkey == new_vkey {
                bail!("--hsm-key and --new-hsm-key name the same key");
            }
            let h = view.history(&recorded, &old_vkey)?;
            if h.current() != old_vkey {
                bail!(
                    "log {name}: the key in force is {}, not {old_vkey} (PKCS#11 key {old_label:?})",
                    h.current()
                );
            }
            let what = old.describe();
            crate::signer::check_key_signed_log(store.as_ref(), name, &origin, &old_vkey, &what)?;
            let r = statement(&origin, &old_vkey, &new_vkey, size, reason)?;
            let entry = signed_statement(&r, &old, &new)?;
            commit(
                store.clone(),
                name,
                &r,
                entry,
                CheckpointSigner::from(old).with_cosigner(new),
            )?;
            fault("after-commit");
            recorded_store.add(name, size)?;
            Ok(Rotated {
                index: size,
                rotation: r,
                logged_now: true,
            })
        }
    }
}

fn statement(origin: &str, old: &str, new: &str, size: u64, reason: &str) -> Result<Rotation> {
    let r = Rotation {
        origin: origin.to_string(),
        old: old.to_string(),
        new: new.to_string(),
        size: size + 1,
        time: crate::access::tokens::now(),
        reason: reason.to_string(),
    };
    r.check()?;
    Ok(r)
}

/// The statement as an entry: a signed note, signed by the old key and the new one.
fn signed_statement(
    r: &Rotation,
    old: &dyn signed_note::Signer,
    new: &dyn signed_note::Signer,
) -> Result<bytes::Bytes> {
    let mut note = signed_note::Note::new(&r.text(), &[])
        .map_err(|e| anyhow::anyhow!("rotation statement: {e}"))?;
    note.add_sigs(&[old, new])
        .map_err(|e| anyhow::anyhow!("signing the rotation statement: {e}"))?;
    Ok(bytes::Bytes::from(note.to_bytes()))
}

/// Commits the statement alone, under a checkpoint `signer` signs (the old key with the
/// new one beside it): one atomic write.
fn commit(
    store: Arc<crate::store::rocks::RocksLogStore>,
    name: &str,
    r: &Rotation,
    entry: bytes::Bytes,
    signer: CheckpointSigner,
) -> Result<()> {
    let log = Log::open(name, &r.origin, signer, r.old.clone(), store)?;
    let pool = crate::sequencer::start(log, Default::default())?;
    let leaf = ledger_client::merkle::leaf_hash(&entry);
    let reply = pool
        .submit(vec![(entry, leaf)])?
        .blocking_recv()
        .context("the sequencer stopped")??;
    pool.shutdown();
    let seq = &reply.entries[0];
    if seq.duplicate || seq.index + 1 != r.size {
        bail!(
            "the rotation statement landed at index {} (duplicate: {}), not {}",
            seq.index,
            seq.duplicate,
            r.size - 1
        );
    }
    Ok(())
}

/// Makes `keys/<log>.key` the rotation's new key (idempotent).
fn finish(key_dir: &Path, name: &str, origin: &str, r: &Rotation) -> Result<()> {
    let (skey_path, vkey_path) = keys::key_paths(key_dir, name);
    let next_path = key_dir.join(format!("{name}.key.next"));
    let in_file = match keys::load(&skey_path, origin) {
        Ok(k) => Some(k.vkey),
        Err(_) if !skey_path.exists() => None,
        Err(e) => return Err(e),
    };
    if in_file.as_deref() != Some(r.new.as_str()) {
        let next = keys::load(&next_path, origin).with_context(|| {
            format!(
                "the private key of {} should be in {}",
                r.new,
                next_path.display()
            )
        })?;
        if next.vkey != r.new {
            bail!(
                "{} holds {}, not the rotation's new key {}",
                next_path.display(),
                next.vkey,
                r.new
            );
        }
        if in_file.is_some() {
            let retired = key_dir.join(format!("{name}.key.retired-{}", r.size));
            std::fs::rename(&skey_path, &retired)?;
            fault("mid-swap");
        }
        std::fs::rename(&next_path, &skey_path)?;
    }
    let tmp = key_dir.join(format!("{name}.vkey.tmp"));
    std::fs::write(&tmp, format!("{}\n", r.new))?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, &vkey_path)?;
    sync_dir(key_dir)
}

/// Crash injection for the end-to-end tests: `LEDGER_FAULT_ROTATE=<point>` kills the
/// process at that point, as a power cut would (no unwinding, no cleanup).
fn fault(point: &str) {
    if std::env::var("LEDGER_FAULT_ROTATE").is_ok_and(|p| p == point) {
        eprintln!("injected fault: crash at {point}");
        std::process::abort();
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}
