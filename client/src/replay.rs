//! Replaying the registry from the log alone (`ledgerctl audit replay`): the state every
//! artifact version and alias is in after a log's entries, derived here independently of
//! the ledger's catalog so that the two can be compared.
//!
//! The rules are those of specs/entries.md: a version is published once; every later
//! event about it names the chain's head as `prev`; a transition goes from the current
//! stage to one it may reach; an approval is for such a stage; a tombstone names the
//! published digest and ends the chain; an alias's first entry has no `prev`, later ones
//! name its head, and it points at a published version. An entry breaking a rule changes
//! nothing (the catalog records it as rejected); entries that are not registry events are
//! opaque.

use crate::digest::Digest;
use crate::event::{Event, Prev, Stage};
use std::collections::BTreeMap;

/// One version, as the log says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub digest: Digest,
    pub size: u64,
    pub stage: Stage,
    pub tombstoned: bool,
    pub head: Prev,
}

/// One alias, as the log says (`None`: removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    pub version: Option<String>,
    pub head: Prev,
}

#[derive(Debug, Default, Clone)]
pub struct Registry {
    pub versions: BTreeMap<(String, String), Version>,
    pub aliases: BTreeMap<(String, String), Alias>,
    /// Entries that broke a rule: (index, why).
    pub rejected: Vec<(u64, String)>,
    /// Entries that are not registry events.
    pub opaque: u64,
}

impl Registry {
    /// Applies the entry at `index` (entries must come in log order).
    pub fn apply(&mut self, index: u64, bytes: &[u8]) {
        let Ok(event) = Event::decode(bytes) else {
            self.opaque += 1;
            return;
        };
        if let Err(why) = self.apply_event(index, bytes, &event) {
            self.rejected.push((index, why));
        }
    }

    fn apply_event(&mut self, index: u64, bytes: &[u8], e: &Event) -> Result<(), String> {
        let here = Prev::of(index, bytes);
        if let Event::AliasMoved(a) = e {
            let key = (a.name.clone(), a.alias.clone());
            match (self.aliases.get(&key), &a.prev) {
                (None, None) => {}
                (Some(cur), Some(p)) if cur.head == *p => {}
                (None, Some(_)) => return Err("prev on a new alias".into()),
                (Some(_), _) => return Err("prev is not the alias's head".into()),
            }
            if let Some(v) = &a.to {
                match self.versions.get(&(a.name.clone(), v.clone())) {
                    Some(s) if !s.tombstoned => {}
                    _ => return Err(format!("{}@{v} is not a live version", a.name)),
                }
            }
            self.aliases.insert(
                key,
                Alias {
                    version: a.to.clone(),
                    head: here,
                },
            );
            return Ok(());
        }
        let (name, version) = match e.subject() {
            crate::event::Subject::Version { name, version } => (name, version),
            crate::event::Subject::Alias { .. } => return Err("unexpected subject".into()),
        };
        let key = (name, version);
        if let Event::Published(p) = e {
            if self.versions.contains_key(&key) {
                return Err("already published".into());
            }
            self.versions.insert(
                key,
                Version {
                    digest: p.digest,
                    size: p.size,
                    stage: Stage::INITIAL,
                    tombstoned: false,
                    head: here,
                },
            );
            return Ok(());
        }
        let v = self
            .versions
            .get_mut(&key)
            .ok_or_else(|| "not published".to_string())?;
        if v.tombstoned {
            return Err("tombstoned".into());
        }
        if e.prev() != Some(&v.head) {
            return Err("prev is not the chain's head".into());
        }
        match e {
            Event::Lifecycle(l) => {
                if l.from != v.stage || !v.stage.can_transition_to(l.to) {
                    return Err(format!(
                        "{} cannot move from {} to {}",
                        v.stage, l.from, l.to
                    ));
                }
                v.stage = l.to;
            }
            Event::Approval(a) if !v.stage.can_transition_to(a.to) => {
                return Err(format!("{} cannot move to {}", v.stage, a.to));
            }
            Event::Tombstone(t) => {
                if t.digest != v.digest {
                    return Err("the tombstone names another digest".into());
                }
                v.tombstoned = true;
            }
            _ => {}
        }
        v.head = here;
        Ok(())
    }
}
