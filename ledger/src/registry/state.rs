//! The state of one subject (an artifact version, or an alias) as a fold over its chain of
//! log entries. Pure functions of the entries: the live catalog, `ledger reindex` and
//! "as of checkpoint N" queries all go through [`VersionState::apply`] and
//! [`AliasState::apply`], so they cannot disagree.
//!
//! Only rules internal to one subject live here (the `prev` chain, the stage machine,
//! nothing after a tombstone). Rules across subjects (an alias must point at a version
//! that exists) are checked by the catalog at the entry's position in the log.

use ledger_client::digest::Digest;
use ledger_client::event::{AliasMoved, Event, Kind, Link, Metadata, Prev, Signature, Stage};
use serde::{Deserialize, Serialize};
use tlog_tiles::Hash;

/// Where in the log something happened, and who did it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct At {
    pub index: u64,
    pub time: u64,
    pub actor: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestationRef {
    pub statement: Digest,
    pub predicate_type: String,
    pub media_type: String,
    pub at: At,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TombstoneRef {
    pub reason: String,
    pub at: At,
}

/// One approval of a transition, recorded since the version's stage was last set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRef {
    /// The stage the approval is for.
    pub to: Stage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The approval's entry, its time and the approver.
    pub at: At,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkRef {
    pub link: Link,
    pub at: At,
}

/// One artifact version, after every entry of its chain up to some point of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionState {
    pub name: String,
    pub version: String,
    pub kind: Kind,
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta_digest: Option<Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Metadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Signature>,
    pub published: At,
    pub stage: Stage,
    /// The entry that set the current stage (the `published` entry for draft).
    pub stage_set: At,
    /// Approvals recorded since `stage_set`, oldest first: a transition clears them, so an
    /// approval of an earlier stage never counts towards a later one. Left out when empty,
    /// which keeps the catalog of versions never approved byte-identical to before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<ApprovalRef>,
    pub lineage: Vec<LinkRef>,
    pub attestations: Vec<AttestationRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tombstone: Option<TombstoneRef>,
    /// The latest entry of the chain: what the next entry must name as `prev`.
    pub head: Prev,
    /// Entries in the chain.
    pub entries: u64,
}

/// One alias of an artifact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasState {
    pub name: String,
    pub alias: String,
    /// `None` once removed.
    pub version: Option<String>,
    pub moved: At,
    pub head: Prev,
}

fn check_prev(head: &Prev, given: &Prev) -> Result<(), String> {
    if head.index != given.index || head.leaf_hash != given.leaf_hash {
        return Err(format!(
            "prev names entry {} but the subject's latest entry is {}",
            given.index, head.index
        ));
    }
    Ok(())
}

fn at(index: u64, ev: &Event) -> At {
    At {
        index,
        time: ev.time(),
        actor: ev.actor().to_string(),
    }
}

impl VersionState {
    /// The state after `ev` (logged at `index` with leaf hash `leaf`), or why `ev` does not
    /// apply to `state`. `ev` must be about this version (the caller looked it up by subject).
    pub fn apply(
        state: Option<&VersionState>,
        ev: &Event,
        index: u64,
        leaf: Hash,
    ) -> Result<VersionState, String> {
        let here = Prev {
            index,
            leaf_hash: leaf,
        };
        let mut s = match (state, ev) {
            (None, Event::Published(p)) => {
                return Ok(VersionState {
                    name: p.name.clone(),
                    version: p.version.clone(),
                    kind: p.kind,
                    digest: p.digest,
                    size: p.size,
                    media_type: p.media_type.clone(),
                    meta_digest: p.meta_digest,
                    meta: p.meta.clone(),
                    signature: p.sig.clone(),
                    published: at(index, ev),
                    stage: Stage::INITIAL,
                    stage_set: at(index, ev),
                    approvals: vec![],
                    lineage: vec![],
                    attestations: vec![],
                    tombstone: None,
                    head: here,
                    entries: 1,
                });
            }
            (Some(s), Event::Published(_)) => {
                return Err(format!(
                    "{}@{} is already published (entry {})",
                    s.name, s.version, s.published.index
                ))
            }
            (None, _) => return Err("the version has not been published".into()),
            (Some(s), _) => s.clone(),
        };
        if let Some(t) = &s.tombstone {
            return Err(format!(
                "the version was tombstoned by entry {}; its chain has ended",
                t.at.index
            ));
        }
        if let Some(p) = ev.prev() {
            check_prev(&s.head, p)?;
        }
        match ev {
            Event::MetadataChanged(m) => {
                if m.meta_digest.is_none() && m.meta.is_none() {
                    return Err("a metadata change must change something".into());
                }
                if m.meta_digest.is_some() {
                    s.meta_digest = m.meta_digest;
                }
                if m.meta.is_some() {
                    s.meta = m.meta.clone();
                }
            }
            Event::Lifecycle(l) => {
                if l.from != s.stage {
                    return Err(format!(
                        "the transition starts from {} but the version is {}",
                        l.from, s.stage
                    ));
                }
                if !s.stage.can_transition_to(l.to) {
                    return Err(format!("{} cannot move to {}", s.stage, l.to));
                }
                s.stage = l.to;
                s.stage_set = at(index, ev);
                s.approvals.clear();
            }
            Event::Approval(a) => {
                // Only a move the version can make next can be approved: approvals are
                // counted for the transition out of the current stage, and cleared by it.
                if !s.stage.can_transition_to(a.to) {
                    return Err(format!(
                        "{}@{} is {}, which cannot move to {}: only a transition it can make \
                         next can be approved",
                        s.name, s.version, s.stage, a.to
                    ));
                }
                // One voice per approver: k approvals must come from k principals.
                if let Some(earlier) = s
                    .approvals
                    .iter()
                    .find(|x| x.to == a.to && x.at.actor == a.actor)
                {
                    return Err(format!(
                        "{} already approved moving {}@{} to {} (entry {})",
                        a.actor, s.name, s.version, a.to, earlier.at.index
                    ));
                }
                s.approvals.push(ApprovalRef {
                    to: a.to,
                    comment: a.comment.clone(),
                    at: at(index, ev),
                });
            }
            Event::Lineage(l) => {
                for link in &l.links {
                    s.lineage.push(LinkRef {
                        link: link.clone(),
                        at: at(index, ev),
                    });
                }
            }
            Event::Attestation(a) => s.attestations.push(AttestationRef {
                statement: a.statement,
                predicate_type: a.predicate_type.clone(),
                media_type: a.media_type.clone(),
                at: at(index, ev),
            }),
            Event::Tombstone(t) => {
                if t.digest != s.digest {
                    return Err(format!(
                        "the tombstone names {} but the version's digest is {}",
                        t.digest, s.digest
                    ));
                }
                s.tombstone = Some(TombstoneRef {
                    reason: t.reason.clone(),
                    at: at(index, ev),
                });
            }
            Event::Published(_) | Event::AliasMoved(_) => {
                return Err("not an event about a version".into())
            }
        }
        s.head = here;
        s.entries += 1;
        Ok(s)
    }
}

impl AliasState {
    pub fn apply(
        state: Option<&AliasState>,
        ev: &AliasMoved,
        index: u64,
        leaf: Hash,
    ) -> Result<AliasState, String> {
        match (state, &ev.prev) {
            (None, None) => {}
            (None, Some(_)) => return Err("prev names an entry but the alias is new".into()),
            (Some(s), None) => {
                return Err(format!(
                    "the alias exists (entry {}); prev must name it",
                    s.head.index
                ))
            }
            (Some(s), Some(p)) => check_prev(&s.head, p)?,
        }
        if state.is_some_and(|s| s.version == ev.to) {
            return Err("the alias already points there".into());
        }
        if state.is_none() && ev.to.is_none() {
            return Err("cannot remove an alias that does not exist".into());
        }
        Ok(AliasState {
            name: ev.name.clone(),
            alias: ev.alias.clone(),
            version: ev.to.clone(),
            moved: At {
                index,
                time: ev.time,
                actor: ev.actor.clone(),
            },
            head: Prev {
                index,
                leaf_hash: leaf,
            },
        })
    }
}
