//! What the monitor learns from the entries it verified: registry events about artifact
//! versions (specs/entries.md) and policy records of an access audit log
//! (specs/access.md). They feed the user's rules and the blob health checks.

use ledger_client::digest::Digest;
use ledger_client::event::{Event, Stage};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One entry's meaning, if it has one the monitor cares about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact {
    Published {
        name: String,
        version: String,
        digest: Digest,
        size: u64,
        publisher: String,
        /// The event itself, for publisher signature checks.
        event: Box<ledger_client::event::Published>,
    },
    Lifecycle {
        name: String,
        version: String,
        to: Stage,
        actor: String,
    },
    Approval {
        name: String,
        version: String,
        to: Stage,
        actor: String,
    },
    Tombstone {
        name: String,
        version: String,
        reason: String,
    },
    /// An access-audit `policy` record: a policy set put in force.
    Policy { digest: String, by: String },
}

/// A fact, where in the log it was told, and when the log says it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Told {
    pub index: u64,
    pub fact: Fact,
    /// The entry's own time (Unix milliseconds, the ledger's clock): where rule alerts
    /// measure their delay from.
    pub logged_ms: u64,
}

/// Reads entry `index`. Anything not understood is no fact (opaque entries are legitimate).
pub fn of(index: u64, entry: &[u8]) -> Option<Told> {
    if entry.first() == Some(&b'{') {
        let v: serde_json::Value = serde_json::from_slice(entry).ok()?;
        if v["type"] == "policy" {
            return Some(Told {
                index,
                fact: Fact::Policy {
                    digest: v["policy_digest"].as_str()?.to_string(),
                    by: v["by"].as_str().unwrap_or("").to_string(),
                },
                logged_ms: v["time_ms"].as_u64().unwrap_or(0),
            });
        }
        return None;
    }
    let event = Event::decode(entry).ok()?;
    let logged_ms = event_time(&event).saturating_mul(1000);
    Some(Told {
        index,
        fact: fact(event)?,
        logged_ms,
    })
}

fn event_time(e: &Event) -> u64 {
    match e {
        Event::Published(x) => x.time,
        Event::Lifecycle(x) => x.time,
        Event::Approval(x) => x.time,
        Event::Tombstone(x) => x.time,
        _ => 0,
    }
}

fn fact(event: Event) -> Option<Fact> {
    match event {
        Event::Published(p) => Some(Fact::Published {
            name: p.name.clone(),
            version: p.version.clone(),
            digest: p.digest,
            size: p.size,
            publisher: p.actor.clone(),
            event: Box::new(p),
        }),
        Event::Lifecycle(l) => Some(Fact::Lifecycle {
            name: l.name,
            version: l.version,
            to: l.to,
            actor: l.actor,
        }),
        Event::Approval(a) => Some(Fact::Approval {
            name: a.name,
            version: a.version,
            to: a.to,
            actor: a.actor,
        }),
        Event::Tombstone(t) => Some(Fact::Tombstone {
            name: t.name,
            version: t.version,
            reason: t.reason,
        }),
        _ => None,
    }
}

/// What the monitor keeps about each version (for rules and blob checks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionFacts {
    pub digest: Digest,
    /// The logged length of the bytes (absent in states saved before it was kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    pub tombstoned: bool,
    /// Approvals since the version's stage was last set: (approver, stage).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<(String, Stage)>,
}

/// Versions by `name@version`.
pub type Versions = BTreeMap<String, VersionFacts>;

pub fn key(name: &str, version: &str) -> String {
    format!("{name}@{version}")
}
