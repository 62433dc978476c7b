//! The artifact versions the monitor knows (facts.rs), persisted so that a save costs what
//! changed since the last one, not everything known: a snapshot of every version, plus a
//! journal of the versions changed since, one JSON line each.
//!
//! The state file (state.rs) says which snapshot generation counts and how many journal
//! bytes do, and it is renamed into place only after they are synced. So a save stopped
//! anywhere leaves the last complete state: journal bytes past the committed length are a
//! torn append (cut off before the next one), and a snapshot of a generation the state
//! file does not name is an unfinished compaction (written over by the next).
//!
//! Files, beside the state file `<hex>.json`: `<hex>.versions.<generation>.json` (the
//! snapshot, none for generation 0) and `<hex>.versions.<generation>.log` (the journal).

use crate::facts::{VersionFacts, Versions};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Bound;
use std::path::{Path, PathBuf};

/// Where the persisted versions stand, as recorded in the state file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stored {
    pub generation: u64,
    pub snapshot_bytes: u64,
    pub journal_bytes: u64,
}

/// A journal shorter than this is never compacted: rewriting a small snapshot to save a
/// few lines is not worth it.
const MIN_COMPACTION: u64 = 1 << 20;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    key: String,
    facts: VersionFacts,
}

/// The versions, and which of them changed since the last committed save.
#[derive(Debug, Default)]
pub struct VersionStore {
    map: Versions,
    changed: BTreeSet<String>,
    at: Stored,
}

impl VersionStore {
    pub fn get(&self, key: &str) -> Option<&VersionFacts> {
        self.map.get(key)
    }

    /// The version, counted as changed.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut VersionFacts> {
        let v = self.map.get_mut(key)?;
        self.changed.insert(key.to_string());
        Some(v)
    }

    /// Adds a version unless it is known (a name@version binds one digest forever).
    pub fn insert_new(&mut self, key: String, facts: VersionFacts) {
        if let std::collections::btree_map::Entry::Vacant(e) = self.map.entry(key) {
            self.changed.insert(e.key().clone());
            e.insert(facts);
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Up to `n` versions after `cursor` in key order, wrapping around to the start, each
    /// at most once, that `keep` accepts (round-robin without copying the whole map).
    pub fn after(
        &self,
        cursor: &str,
        n: usize,
        keep: impl Fn(&VersionFacts) -> bool,
    ) -> Vec<(&String, &VersionFacts)> {
        let tail = self
            .map
            .range::<str, _>((Bound::Excluded(cursor), Bound::Unbounded));
        let head = self
            .map
            .range::<str, _>((Bound::Unbounded, Bound::Included(cursor)));
        tail.chain(head).filter(|(_, v)| keep(v)).take(n).collect()
    }

    /// Writes what changed since the last commit: appends it to the journal, or, once the
    /// journal outgrows the snapshot, writes a new snapshot generation. Returns what the
    /// state file must record; nothing counts until [`Self::committed`] is called after
    /// the state file naming it is durable.
    pub fn persist(&self, state_path: &Path) -> Result<Stored> {
        if self.changed.is_empty() {
            return Ok(self.at);
        }
        let mut lines = vec![];
        for key in &self.changed {
            let Some(facts) = self.map.get(key) else {
                continue;
            };
            serde_json::to_writer(
                &mut lines,
                &Line {
                    key: key.clone(),
                    facts: facts.clone(),
                },
            )?;
            lines.push(b'\n');
        }
        if let Some(dir) = state_path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let journal_after = self.at.journal_bytes + lines.len() as u64;
        if journal_after > self.at.snapshot_bytes.max(MIN_COMPACTION) {
            let generation = self.at.generation + 1;
            let snapshot = serde_json::to_vec(&self.map)?;
            let path = file(state_path, generation, "json");
            let tmp = path.with_extension("json.tmp");
            let mut f = std::fs::File::create(&tmp)
                .with_context(|| format!("creating {}", tmp.display()))?;
            f.write_all(&snapshot)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            return Ok(Stored {
                generation,
                snapshot_bytes: snapshot.len() as u64,
                journal_bytes: 0,
            });
        }
        let path = file(state_path, self.at.generation, "log");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        // Whatever lies past the committed length is a torn earlier append.
        f.set_len(self.at.journal_bytes)?;
        f.seek(SeekFrom::End(0))?;
        f.write_all(&lines)?;
        f.sync_data()?;
        Ok(Stored {
            journal_bytes: journal_after,
            ..self.at
        })
    }

    /// The state file recording `at` is durable: the changes are saved, and files of other
    /// generations can go.
    pub fn committed(&mut self, state_path: &Path, at: Stored) {
        let moved = self.at.generation != at.generation;
        self.at = at;
        self.changed.clear();
        if moved {
            // Every other generation's files: the one just replaced, and any an earlier
            // crash left between a compaction and this cleanup.
            let Some(stem) = state_path.file_stem().and_then(|s| s.to_str()) else {
                return;
            };
            let prefix = format!("{stem}.versions.");
            let current = format!("{prefix}{}.", at.generation);
            let dir = match state_path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let name = e.file_name();
                let Some(name) = name.to_str() else { continue };
                if name.starts_with(&prefix) && !name.starts_with(&current) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }

    /// Reads the versions a state file records. `inline` is the map of a state file
    /// written before the journal existed: it is kept, and written out at the next save.
    pub fn load(state_path: &Path, at: Option<Stored>, inline: Versions) -> Result<VersionStore> {
        let Some(at) = at else {
            return Ok(VersionStore {
                changed: inline.keys().cloned().collect(),
                map: inline,
                at: Stored::default(),
            });
        };
        let damaged = |what: String| {
            anyhow::anyhow!("monitor state {} is damaged: {what}", state_path.display())
        };
        let mut map = if at.generation == 0 {
            Versions::new()
        } else {
            let path = file(state_path, at.generation, "json");
            let b = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            if b.len() as u64 != at.snapshot_bytes {
                return Err(damaged(format!(
                    "{} holds {} bytes, the state says {}",
                    path.display(),
                    b.len(),
                    at.snapshot_bytes
                )));
            }
            serde_json::from_slice(&b).map_err(|e| damaged(format!("{}: {e}", path.display())))?
        };
        if at.journal_bytes > 0 {
            let path = file(state_path, at.generation, "log");
            let mut b = vec![];
            std::fs::File::open(&path)
                .with_context(|| format!("reading {}", path.display()))?
                .take(at.journal_bytes)
                .read_to_end(&mut b)?;
            if (b.len() as u64) < at.journal_bytes {
                return Err(damaged(format!(
                    "{} holds {} bytes, the state says {}",
                    path.display(),
                    b.len(),
                    at.journal_bytes
                )));
            }
            if b.last() != Some(&b'\n') {
                bail!(damaged(format!("{} ends mid-line", path.display())));
            }
            for (n, line) in b[..b.len() - 1].split(|&c| c == b'\n').enumerate() {
                let l: Line = serde_json::from_slice(line)
                    .map_err(|e| damaged(format!("{} line {}: {e}", path.display(), n + 1)))?;
                map.insert(l.key, l.facts);
            }
        }
        Ok(VersionStore {
            map,
            changed: BTreeSet::new(),
            at,
        })
    }
}

fn file(state_path: &Path, generation: u64, ext: &str) -> PathBuf {
    state_path.with_extension(format!("versions.{generation}.{ext}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_client::digest::Digest;

    fn facts(i: u8) -> VersionFacts {
        VersionFacts {
            digest: Digest([i; 32]),
            size: Some(u64::from(i)),
            tombstoned: false,
            approvals: vec![],
        }
    }

    /// Saves as the follower does: persist, then the state file, then commit.
    fn save(s: &mut VersionStore, state: &Path) -> Stored {
        let at = s.persist(state).unwrap();
        std::fs::write(state, serde_json::to_vec(&at).unwrap()).unwrap();
        s.committed(state, at);
        at
    }

    fn reload(state: &Path) -> VersionStore {
        let at: Stored = serde_json::from_slice(&std::fs::read(state).unwrap()).unwrap();
        VersionStore::load(state, Some(at), Versions::new()).unwrap()
    }

    #[test]
    fn a_save_writes_only_what_changed_and_a_reload_sees_everything() {
        let d = tempfile::tempdir().unwrap();
        let state = d.path().join("s.json");
        let mut s = VersionStore::default();
        for i in 0..100 {
            s.insert_new(format!("m@{i}"), facts(i));
        }
        let first = save(&mut s, &state);
        s.get_mut("m@7").unwrap().tombstoned = true;
        let second = save(&mut s, &state);
        let one_line = second.journal_bytes - first.journal_bytes;
        assert!(one_line < 200, "{one_line} bytes for one change");
        // Nothing changed: nothing written.
        assert_eq!(save(&mut s, &state), second);
        let back = reload(&state);
        assert_eq!(back.map, s.map);
        assert!(back.get("m@7").unwrap().tombstoned);
    }

    #[test]
    fn the_first_save_creates_the_state_directory() {
        let d = tempfile::tempdir().unwrap();
        let state = d.path().join("not-yet").join("s.json");
        let mut s = VersionStore::default();
        s.insert_new("m@1".into(), facts(1));
        let at = s.persist(&state).unwrap();
        assert!(at.journal_bytes > 0);
    }

    #[test]
    fn a_known_version_is_not_replaced() {
        let mut s = VersionStore::default();
        s.insert_new("m@1".into(), facts(1));
        s.insert_new("m@1".into(), facts(2));
        assert_eq!(s.get("m@1").unwrap().digest, Digest([1; 32]));
    }

    #[test]
    fn a_journal_that_outgrows_its_snapshot_is_compacted_and_old_files_go() {
        let d = tempfile::tempdir().unwrap();
        let state = d.path().join("s.json");
        let mut s = VersionStore::default();
        let mut at = Stored::default();
        let mut i = 0u32;
        while at.generation < 2 {
            s.insert_new(format!("model-{i}@1"), facts(i as u8));
            i += 1;
            if i.is_multiple_of(1000) {
                at = save(&mut s, &state);
            }
        }
        assert_eq!(at.journal_bytes, 0);
        let mut names: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["s.json", "s.versions.2.json"]);
        assert_eq!(reload(&state).map, s.map);
    }

    #[test]
    fn a_torn_append_is_ignored_and_cut_off_by_the_next_save() {
        let d = tempfile::tempdir().unwrap();
        let state = d.path().join("s.json");
        let mut s = VersionStore::default();
        s.insert_new("m@1".into(), facts(1));
        save(&mut s, &state);
        // A crash after the journal append, before the state file named it.
        s.insert_new("m@2".into(), facts(2));
        s.persist(&state).unwrap();
        let journal = file(&state, 0, "log");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&journal)
            .unwrap()
            .write_all(b"{\"key\": \"half")
            .unwrap();
        let mut back = reload(&state);
        assert_eq!(back.len(), 1);
        back.insert_new("m@3".into(), facts(3));
        save(&mut back, &state);
        let again = reload(&state);
        assert_eq!(
            again.map.keys().collect::<Vec<_>>(),
            ["m@1", "m@3"],
            "the torn tail is gone"
        );
    }

    #[test]
    fn an_unfinished_compaction_is_ignored() {
        let d = tempfile::tempdir().unwrap();
        let state = d.path().join("s.json");
        let mut s = VersionStore::default();
        s.insert_new("m@1".into(), facts(1));
        save(&mut s, &state);
        std::fs::write(file(&state, 1, "json"), b"{\"garbage\": 1}").unwrap();
        assert_eq!(reload(&state).map, s.map);
    }

    #[test]
    fn a_shortened_or_damaged_journal_or_snapshot_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let state = d.path().join("s.json");
        let mut s = VersionStore::default();
        s.insert_new("m@1".into(), facts(1));
        let at = save(&mut s, &state);
        let journal = file(&state, 0, "log");
        let good = std::fs::read(&journal).unwrap();
        std::fs::write(&journal, &good[..good.len() - 3]).unwrap();
        let e = VersionStore::load(&state, Some(at), Versions::new()).unwrap_err();
        assert!(format!("{e:#}").contains("damaged"), "{e:#}");
        let mut bad = good.clone();
        bad[2] = b'!';
        std::fs::write(&journal, &bad).unwrap();
        assert!(VersionStore::load(&state, Some(at), Versions::new()).is_err());
        let e = VersionStore::load(
            &state,
            Some(Stored {
                generation: 5,
                snapshot_bytes: 10,
                journal_bytes: 0,
            }),
            Versions::new(),
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("versions.5.json"), "{e:#}");
    }

    #[test]
    fn an_inline_map_of_an_older_state_file_is_kept_and_written_out() {
        let d = tempfile::tempdir().unwrap();
        let state = d.path().join("s.json");
        let mut inline = Versions::new();
        inline.insert("m@1".into(), facts(1));
        let mut s = VersionStore::load(&state, None, inline.clone()).unwrap();
        assert_eq!(s.map, inline);
        save(&mut s, &state);
        assert_eq!(reload(&state).map, inline);
    }

    #[test]
    fn round_robin_wraps_and_skips_what_is_not_kept() {
        let mut s = VersionStore::default();
        for i in 0..5 {
            s.insert_new(format!("m@{i}"), facts(i));
        }
        s.get_mut("m@3").unwrap().tombstoned = true;
        let keys = |v: Vec<(&String, &VersionFacts)>| {
            v.into_iter().map(|(k, _)| k.clone()).collect::<Vec<_>>()
        };
        let live = |v: &VersionFacts| !v.tombstoned;
        assert_eq!(keys(s.after("m@1", 3, live)), ["m@2", "m@4", "m@0"]);
        assert_eq!(keys(s.after("", 10, live)), ["m@0", "m@1", "m@2", "m@4"]);
        assert_eq!(keys(s.after("m@4", 10, live)), ["m@0", "m@1", "m@2", "m@4"]);
    }
}
