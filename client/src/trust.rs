//! Offline, monotonic client state: the last verified checkpoint of each log.
//!
//! A client that remembers the newest checkpoint it verified can detect a log that forks
//! (shows two different trees of the same size), rolls back (shows an older tree), or
//! rewrites history (a larger tree that does not extend the remembered one, RFC 9162
//! §2.1.4). One file per origin holds the signed note exactly as received.
//!
//! Writes are atomic (temporary file, fsync, rename, fsync of the directory), so a crash
//! leaves either the old or the new checkpoint, never a torn file. The store assumes one
//! writer per directory at a time: two concurrent `advance` calls can each pass their
//! checks and the later rename wins.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::checkpoint::{verify_checkpoint, VerifiedCheckpoint, MAX_NOTE_SIZE};
pub use crate::error::TrustError;
use crate::merkle::{hash_from_base64, hash_to_base64, verify_consistency, Hash};

/// What [`TrustStore::advance`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advance {
    /// Nothing was stored for this origin: the checkpoint is now trusted on first use.
    FirstUse { size: u64 },
    /// The checkpoint has the stored size and root: nothing changed.
    Unchanged { size: u64 },
    /// The log grew consistently from `from` to `to` leaves; the new checkpoint is stored.
    Advanced { from: u64, to: u64 },
}

/// A directory of last-verified checkpoints, one file per log origin.
#[derive(Debug, Clone)]
pub struct TrustStore {
    dir: PathBuf,
}

impl TrustStore {
    /// Opens (creating if needed) a trust store directory.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, TrustError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|source| TrustError::Io {
            path: dir.clone(),
            source,
        })?;
        let meta = fs::metadata(&dir).map_err(|source| TrustError::Io {
            path: dir.clone(),
            source,
        })?;
        if !meta.is_dir() {
            return Err(TrustError::Io {
                path: dir,
                source: std::io::Error::other("not a directory"),
            });
        }
        Ok(TrustStore { dir })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file that holds `origin`'s checkpoint. Origins are arbitrary text (slashes,
    /// dots, any length), so the name is the hex SHA-256 of the origin: always a valid,
    /// fixed-length file name, and lowercase so case-insensitive filesystems cannot merge
    /// two origins. The origin itself is inside the stored note.
    pub fn path_for(&self, origin: &str) -> PathBuf {
        let digest = Sha256::digest(origin.as_bytes());
        let name: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{name}.checkpoint"))
    }

    /// The last checkpoint stored for `origin`, re-verified against `vkeys` (so that a
    /// tampered file, or a key the caller no longer trusts, is noticed), or `None`.
    pub fn latest(
        &self,
        origin: &str,
        vkeys: &[&str],
    ) -> Result<Option<VerifiedCheckpoint>, TrustError> {
        let path = self.path_for(origin);
        let Some(note) = self.read_note(&path)? else {
            return Ok(None);
        };
        let cp = verify_checkpoint(&note, vkeys, Some(origin)).map_err(|source| {
            TrustError::StoredCheckpoint {
                origin: origin.to_string(),
                source,
            }
        })?;
        Ok(Some(cp))
    }

    /// Records `new` (already verified by the caller) if it is consistent with what is
    /// stored for its origin:
    ///
    /// * nothing stored: store it (trust on first use);
    /// * same size: the roots must be equal, else [`TrustError::Fork`];
    /// * smaller: refused with [`TrustError::Rollback`];
    /// * larger: `consistency_proof` must prove stored → new (RFC 9162 §2.1.4.2), else
    ///   [`TrustError::Inconsistent`].
    ///
    /// The stored note is this store's own earlier output, so it is parsed but not
    /// re-verified here (use [`TrustStore::latest`] for that).
    pub fn advance(
        &self,
        new: &VerifiedCheckpoint,
        consistency_proof: &[Hash],
    ) -> Result<Advance, TrustError> {
        let path = self.path_for(&new.origin);
        let Some(note) = self.read_note(&path)? else {
            self.write_atomic(&path, &new.note)?;
            return Ok(Advance::FirstUse { size: new.size });
        };
        let (origin, old_size, old_root) = parse_stored(&path, &note)?;
        if origin != new.origin {
            return Err(TrustError::Corrupt {
                path,
                reason: format!(
                    "holds a checkpoint for origin {origin:?}, expected {:?}",
                    new.origin
                ),
            });
        }
        if new.size == old_size {
            if new.root != old_root {
                return Err(TrustError::Fork {
                    origin,
                    size: old_size,
                    stored_root: hash_to_base64(&old_root),
                    offered_root: hash_to_base64(&new.root),
                });
            }
            return Ok(Advance::Unchanged { size: old_size });
        }
        if new.size < old_size {
            return Err(TrustError::Rollback {
                origin,
                stored_size: old_size,
                offered_size: new.size,
            });
        }
        verify_consistency(old_size, &old_root, new.size, &new.root, consistency_proof).map_err(
            |source| TrustError::Inconsistent {
                origin: origin.clone(),
                old_size,
                new_size: new.size,
                source,
            },
        )?;
        self.write_atomic(&path, &new.note)?;
        Ok(Advance::Advanced {
            from: old_size,
            to: new.size,
        })
    }

    fn read_note(&self, path: &Path) -> Result<Option<Vec<u8>>, TrustError> {
        match fs::metadata(path) {
            Ok(m) if m.len() > MAX_NOTE_SIZE as u64 => {
                return Err(TrustError::Corrupt {
                    path: path.to_path_buf(),
                    reason: format!("larger than {MAX_NOTE_SIZE} bytes"),
                })
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(TrustError::Io {
                    path: path.to_path_buf(),
                    source,
                })
            }
        }
        fs::read(path).map(Some).map_err(|source| TrustError::Io {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Replaces `path` atomically: write a temporary file in the same directory, fsync it,
    /// rename it over `path`, then fsync the directory so the rename itself is durable.
    fn write_atomic(&self, path: &Path, data: &[u8]) -> Result<(), TrustError> {
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |source| TrustError::Io { path: p, source }
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = self
            .dir
            .join(format!(".{file_name}.{}.{nanos}.tmp", std::process::id()));
        let result = (|| {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(io(&tmp))?;
            f.write_all(data).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
            drop(f);
            fs::rename(&tmp, path).map_err(io(path))?;
            Ok(())
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
            return result;
        }
        sync_dir(&self.dir).map_err(io(&self.dir))
    }
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    // Directories cannot be opened for fsync on Windows; rename there is already durable
    // enough through the file system's journal.
    Ok(())
}

/// Origin, size and root of a stored note (its signature was checked when it was stored).
fn parse_stored(path: &Path, note: &[u8]) -> Result<(String, u64, Hash), TrustError> {
    let corrupt = |reason: &str| TrustError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let text = std::str::from_utf8(note).map_err(|_| corrupt("not UTF-8"))?;
    let mut lines = text.split('\n');
    let origin = lines
        .next()
        .filter(|l| !l.is_empty())
        .ok_or_else(|| corrupt("no origin line"))?;
    let size = lines
        .next()
        .and_then(|l| l.parse::<u64>().ok())
        .ok_or_else(|| corrupt("no valid tree size line"))?;
    let root = lines
        .next()
        .and_then(|l| hash_from_base64(l).ok())
        .ok_or_else(|| corrupt("no valid root hash line"))?;
    Ok((origin.to_string(), size, root))
}
