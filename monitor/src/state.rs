//! A log's verified state, persisted after every verified checkpoint so a restarted
//! monitor resumes where it stopped: the checkpoint, the tree rebuilt up to it, and the
//! alerts already raised (each is raised once). The artifact versions learnt from the
//! entries are saved beside it, incrementally (versions.rs).

use crate::tree::SavedTree;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogState {
    pub origin: String,
    /// The latest checkpoint the monitor verified (signed note), and the tree rebuilt up
    /// to it; none before the first (alerts can be raised before anything verifies).
    pub checkpoint: Option<String>,
    pub tree: Option<SavedTree>,
    /// Keys of the alerts raised (`<kind> <size> <root>`), oldest first.
    #[serde(default)]
    pub raised: Vec<String>,
    /// Where the versions the verified entries told of are saved (versions.rs).
    #[serde(default)]
    pub versions_at: Option<crate::versions::Stored>,
    /// The versions, inline: only in state files written before versions.rs existed.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub versions: crate::facts::Versions,
    /// The last version whose blob was checked (round-robin).
    #[serde(default)]
    pub blob_cursor: String,
}

/// At most this many raised-alert keys are kept (the oldest are forgotten).
pub const MAX_RAISED: usize = 1000;

/// `<dir>/<hex SHA-256 of origin>.json`: one file per log, whatever its origin's spelling.
pub fn path_for(dir: &Path, origin: &str) -> PathBuf {
    dir.join(format!(
        "{}.json",
        hex::encode(Sha256::digest(origin.as_bytes()))
    ))
}

pub fn load(path: &Path) -> Result<Option<LogState>> {
    match std::fs::read(path) {
        Ok(b) => Ok(Some(serde_json::from_slice(&b).with_context(|| {
            format!("monitor state {} is damaged", path.display())
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes the state atomically: a temporary file, synced, renamed over the old one.
pub fn save(path: &Path, s: &LogState) -> Result<()> {
    let dir = path.parent().context("state path has no directory")?;
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&serde_json::to_vec(s)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}
