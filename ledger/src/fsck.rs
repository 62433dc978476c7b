//! `ledger fsck` and `ledgerctl audit fsck`: an auditor's full check of a log's storage,
//! trusting nothing but the vkey.
//!
//! Re-hashes every stored entry, rebuilds every tile and compares it byte for byte with the
//! stored one, and checks that *every* checkpoint the log ever issued is signed by the log's
//! key and has the root of the rebuilt tree at its size — i.e. that all issued checkpoints
//! are consistent with one another and with the stored entries.

use crate::log::LogError;
use crate::store::{LogStore, StoreError};
use crate::tree::{Edge, NewTile, TILE_WIDTH};
use ledger_client::checkpoint::verify_checkpoint;
use ledger_client::rotation::{KeyHistory, Rotation};
use std::path::Path;

#[derive(Debug, Default)]
pub struct FsckReport {
    pub tree_size: u64,
    pub entry_bytes: u64,
    pub tiles_checked: u64,
    pub checkpoints_checked: u64,
    /// Key rotations followed.
    pub rotations: u64,
}

fn corrupt(msg: String) -> LogError {
    LogError::Store(StoreError::Corrupt(msg))
}

/// Checks the log against `genesis`, the key it started with: a logged key rotation
/// (specs/keys.md) signed by the key then in force hands over to its new key, and each
/// checkpoint must be signed by a key valid at its size.
pub fn fsck(
    store: &dyn LogStore,
    origin: &str,
    genesis: &str,
    mut progress: impl FnMut(u64, u64),
) -> Result<FsckReport, LogError> {
    let mut history = KeyHistory::new(genesis)
        .map_err(|e| LogError::Invalid(format!("the log's first key: {e}")))?;
    let Some((size, _)) = store.latest_checkpoint()? else {
        return Ok(FsckReport::default());
    };
    let mut checkpoints = vec![];
    store.scan_checkpoints(&mut |s, note| {
        checkpoints.push((s, note.to_vec()));
        true
    })?;
    let mut next_cp = 0usize;
    let mut report = FsckReport {
        tree_size: size,
        ..Default::default()
    };
    let mut edge = Edge::default();
    let mut tiles: Vec<NewTile> = vec![];

    // Called after every append (and once for the empty tree): checks the checkpoints at
    // this size and the tiles the append completed.
    let mut check =
        |edge: &Edge, tiles: &mut Vec<NewTile>, report: &mut FsckReport, history: &KeyHistory| {
            for t in tiles.drain(..) {
                let stored = store.tile(t.level, t.index)?;
                if stored.as_deref() != Some(t.data.as_slice()) {
                    return Err(corrupt(format!(
                        "stored tile {}/{} differs from the one rebuilt from the entries",
                        t.level, t.index
                    )));
                }
                report.tiles_checked += 1;
            }
            while next_cp < checkpoints.len() && checkpoints[next_cp].0 == edge.size {
                let (s, note) = &checkpoints[next_cp];
                let v =
                    verify_checkpoint(note, &history.keys_at(*s), Some(origin)).map_err(|e| {
                        corrupt(format!(
                            "checkpoint at size {s}: {e} (keys valid at that size: {})",
                            history.keys_at(*s).join(", ")
                        ))
                    })?;
                if v.size != *s || v.root != edge.root() {
                    return Err(corrupt(format!(
                        "checkpoint at size {s} does not match the tree rebuilt from the entries"
                    )));
                }
                report.checkpoints_checked += 1;
                next_cp += 1;
            }
            Ok(())
        };
    check(&edge, &mut tiles, &mut report, &history)?;

    let full_bundles = size / TILE_WIDTH as u64;
    for b in 0..=full_bundles {
        let entries: Vec<Vec<u8>> = if b < full_bundles {
            let data = store
                .bundle(b)?
                .ok_or_else(|| corrupt(format!("entry bundle {b} is missing")))?;
            let es = ledger_client::tiles::decode_bundle(&data)
                .map_err(|e| corrupt(format!("entry bundle {b}: {e}")))?;
            if es.len() != TILE_WIDTH {
                return Err(corrupt(format!(
                    "entry bundle {b} holds {} entries",
                    es.len()
                )));
            }
            es.into_iter().map(|e| e.to_vec()).collect()
        } else {
            store
                .tail_entries(b * TILE_WIDTH as u64..size)?
                .into_iter()
                .map(|e| e.to_vec())
                .collect()
        };
        for e in entries {
            report.entry_bytes += e.len() as u64;
            // A rotation takes effect with the tree that includes it. Text that only looks
            // like one (anyone may append it) is an ordinary entry.
            if Rotation::is_candidate(&e) {
                if let Ok(r) = Rotation::verify_entry(&e, edge.size) {
                    if r.origin == origin && r.old == history.current() {
                        history
                            .apply(&r)
                            .map_err(|e| corrupt(format!("key rotation: {e}")))?;
                        report.rotations += 1;
                    }
                }
            }
            edge.append(tlog_tiles::record_hash(&e), &mut tiles);
            check(&edge, &mut tiles, &mut report, &history)?;
        }
        progress(edge.size, size);
    }
    if next_cp != checkpoints.len() {
        return Err(corrupt(format!(
            "{} stored checkpoints are beyond the stored entries",
            checkpoints.len() - next_cp
        )));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::Log;
    use crate::store::memory::MemoryStore;
    use crate::store::Commit;
    use std::sync::Arc;

    const ORIGIN: &str = "fsck.example/log";

    fn filled() -> (Arc<MemoryStore>, String) {
        let (skey, vkey) = signed_note::generate_key(&mut rand::rngs::OsRng, ORIGIN);
        let signer = signed_note::StandardSigner::new(&skey).unwrap();
        let store = Arc::new(MemoryStore::default());
        let log = Log::open("l", ORIGIN, signer, vkey.clone(), store.clone()).unwrap();
        let pool = crate::sequencer::start(log, Default::default()).unwrap();
        for chunk in (0..1000u32).collect::<Vec<_>>().chunks(97) {
            let batch = chunk
                .iter()
                .map(|i| {
                    let e = bytes::Bytes::from(i.to_be_bytes().to_vec());
                    let h = tlog_tiles::record_hash(&e);
                    (e, h)
                })
                .collect();
            pool.submit(batch)
                .unwrap()
                .blocking_recv()
                .unwrap()
                .unwrap();
        }
        pool.shutdown();
        (store, vkey)
    }

    #[test]
    fn a_healthy_log_passes_with_every_checkpoint_checked() {
        let (store, vkey) = filled();
        let r = fsck(store.as_ref(), ORIGIN, &vkey, |_, _| {}).unwrap();
        assert_eq!(r.tree_size, 1000);
        assert_eq!(r.entry_bytes, 4000);
        // The empty tree plus one checkpoint per batch of 97.
        assert_eq!(r.checkpoints_checked, 1 + 1000_u64.div_ceil(97));
        assert_eq!(r.tiles_checked, 3);
    }

    #[test]
    fn a_rewritten_bundle_is_found() {
        let (store, vkey) = filled();
        let forged =
            ledger_client::tiles::encode_bundle((0..256u32).map(|_| b"forged".as_slice())).unwrap();
        store
            .commit(&Commit {
                bundles: vec![(1, forged)],
                checkpoint: (1000, store.checkpoint_at(1000).unwrap().unwrap()),
                ..Default::default()
            })
            .unwrap();
        let err = fsck(store.as_ref(), ORIGIN, &vkey, |_, _| {}).unwrap_err();
        // The first checkpoint after the forged entries begin (batches of 97: 291) exposes it.
        assert!(err.to_string().contains("checkpoint at size 291"), "{err}");
    }

    #[test]
    fn a_checkpoint_signed_by_another_key_is_found() {
        let (store, _) = filled();
        let (_, other) = signed_note::generate_key(&mut rand::rngs::OsRng, ORIGIN);
        let err = fsck(store.as_ref(), ORIGIN, &other, |_, _| {}).unwrap_err();
        assert!(err.to_string().contains("checkpoint at size 0"), "{err}");
    }
}

/// A stopped ledger's data directory, opened for offline work.
pub struct Offline {
    pub db: crate::store::rocks::RocksDb,
    /// The vkey read from `--vkey` or the data directory, and its name (the origin).
    pub vkey: String,
    pub origin: String,
}

/// Opens `<data_dir>/db` for the log named `log`, with the log's vkey from `vkey` or, by
/// default, `<data_dir>/keys/<log>.vkey`.
pub fn open_offline(data_dir: &Path, log: &str, vkey: Option<&Path>) -> anyhow::Result<Offline> {
    use anyhow::Context;
    let vkey_path = vkey.map_or_else(
        || crate::keys::key_paths(&data_dir.join("keys"), log).1,
        Path::to_path_buf,
    );
    let vkey = ledger_client::checkpoint::read_vkey_file(&vkey_path)
        .with_context(|| format!("reading {}", vkey_path.display()))?;
    let origin = vkey.split('+').next().unwrap_or_default().to_string();
    let db_path = data_dir.join("db");
    if !db_path.exists() {
        anyhow::bail!("no database at {}", db_path.display());
    }
    let db = crate::store::rocks::RocksDb::open(&db_path, &[log.to_string()], 64 << 20)
        .with_context(|| {
            format!(
                "opening {} (is the ledger still running? stop it, or check a copy)",
                db_path.display()
            )
        })?;
    Ok(Offline { db, vkey, origin })
}

/// Why checking a data directory did not pass.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// The directory, its database or the key could not be opened or read.
    #[error("{0:#}")]
    Unusable(anyhow::Error),
    /// The check ran and found the storage wrong (or could not read part of it).
    #[error("{0}")]
    Failed(String),
}

/// What a passed check of a data directory found: the report, and a description of the
/// storage used per entry.
pub struct DataDirReport {
    pub log: String,
    pub report: FsckReport,
    pub seconds: f64,
    /// (kind, bytes) of each kind of stored data.
    pub sizes: Vec<(&'static str, u64)>,
}

impl std::fmt::Display for DataDirReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = &self.report;
        writeln!(
            f,
            "fsck {}: OK — {} entries ({} bytes) re-hashed, {} tiles and {} checkpoints verified, {} key rotation(s) followed, in {:.1}s",
            self.log, r.tree_size, r.entry_bytes, r.tiles_checked, r.checkpoints_checked, r.rotations, self.seconds
        )?;
        let n = r.tree_size.max(1) as f64;
        let get = |k: &str| {
            self.sizes
                .iter()
                .find(|(kind, _)| *kind == k)
                .map_or(0, |(_, b)| *b)
        };
        for (kind, bytes) in &self.sizes {
            writeln!(
                f,
                "  {kind:<10} {bytes:>14} bytes  {:>8.2} bytes/entry",
                *bytes as f64 / n
            )?;
        }
        writeln!(
            f,
            "  merkle overhead (tiles + dedup index): {:.2} bytes/entry; checkpoints: {:.2} bytes/entry",
            (get("tile") + get("dedup")) as f64 / n,
            get("checkpoint") as f64 / n
        )?;
        write!(
            f,
            "  entries: {:.2} bytes/entry stored for {:.2} bytes/entry of data",
            (get("bundle") + get("tail")) as f64 / n,
            r.entry_bytes as f64 / n
        )
    }
}

/// Checks log `log` of a stopped ledger's data directory. With `vkey` (what an auditor
/// passes: the key the log started with), the check starts from that key; without it,
/// from the first key the directory records (the current key file, or the first one a
/// recorded rotation names). `compact` settles storage first so the byte counts are final.
pub fn check_data_dir(
    data_dir: &Path,
    log: &str,
    vkey: Option<&Path>,
    compact: bool,
    progress: impl FnMut(u64, u64),
) -> Result<DataDirReport, DataDirError> {
    let Offline {
        db,
        vkey: key,
        origin,
    } = open_offline(data_dir, log, vkey).map_err(DataDirError::Unusable)?;
    let store = db.log_store(log);
    let genesis = if vkey.is_some() {
        key
    } else {
        let (rdb, rcf) = db.process_family(crate::rotation::FAMILY);
        let failed = |e: anyhow::Error| DataDirError::Failed(format!("{e:#}"));
        let recorded = crate::rotation::Recorded::new(rdb, rcf)
            .get(log)
            .map_err(failed)?;
        crate::rotation::first_key(&store, &origin, &recorded)
            .map_err(failed)?
            .unwrap_or(key)
    };
    let started = std::time::Instant::now();
    let failed = |e: &dyn std::fmt::Display| DataDirError::Failed(e.to_string());
    let report = fsck(&store, &origin, &genesis, progress).map_err(|e| failed(&e))?;
    let seconds = started.elapsed().as_secs_f64();
    if compact {
        store.settle().map_err(|e| failed(&e))?;
    }
    let sizes = store.sizes_by_kind().map_err(|e| failed(&e))?;
    Ok(DataDirReport {
        log: log.to_string(),
        report,
        seconds,
        sizes,
    })
}
