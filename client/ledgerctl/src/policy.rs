//! `ledgerctl policy check`: would the ledger's policy in force allow this change, for the
//! caller's credential, now? Nothing is written (`POST /registry/v1/check`, specs/api.md).
//! For pre-commit hooks and CI gates: exit 0 when allowed, 4 when refused, with reasons.

use std::time::Duration;

use clap::{Args, Subcommand};
use ledger_client::event::{self, Kind, Metadata, Stage};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::failure::{Failure, Result};
use crate::registry::{parse_kind, parse_stage, Server, ServerArg};
use crate::Output;

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Dry-run a publish, transition, alias move, annotation or tombstone against the policy.
    Check(CheckArgs),
}

#[derive(Args)]
pub struct CheckArgs {
    #[command(flatten)]
    server: ServerArg,
    /// publish, annotate, transition, approve, alias, tombstone, or download (the
    /// version's bytes: a restricted one needs a grant in force).
    #[arg(long, value_parser = ["publish", "annotate", "transition", "approve", "alias", "tombstone", "download"])]
    action: String,
    #[arg(long, value_name = "N")]
    name: String,
    #[arg(long, value_name = "V")]
    version: String,
    /// The kind of a version to publish.
    #[arg(long, value_parser = parse_kind, value_name = "KIND")]
    kind: Option<Kind>,
    /// Metadata of a version to publish (or new metadata), as key=value; repeatable.
    #[arg(long = "meta", value_name = "KEY=VALUE")]
    meta: Vec<String>,
    /// The stage a transition (or an approval) goes to.
    #[arg(long, value_parser = parse_stage, value_name = "STAGE")]
    to: Option<Stage>,
}

#[derive(Deserialize)]
struct Answer {
    allowed: bool,
    access_control: bool,
    #[serde(default)]
    principal: Option<String>,
    #[serde(default)]
    policy_digest: Option<String>,
    #[serde(default)]
    checks: Vec<Step>,
    #[serde(default)]
    problems: Vec<String>,
}

#[derive(Deserialize)]
struct Step {
    check: String,
    allowed: bool,
    #[serde(default)]
    resource: Option<String>,
    #[serde(default)]
    policies: Vec<String>,
    #[serde(default)]
    reason: Option<String>,
}

fn parse_meta(pairs: &[String]) -> Result<Option<Metadata>> {
    if pairs.is_empty() {
        return Ok(None);
    }
    let mut m = Metadata::new();
    for p in pairs {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| Failure::input(format!("--meta {p:?}: expected KEY=VALUE")))?;
        event::validate_meta_key(k).map_err(|e| Failure::input(format!("--meta {k:?}: {e}")))?;
        if m.insert(k.to_string(), v.to_string()).is_some() {
            return Err(Failure::input(format!("--meta {k:?} is given twice")));
        }
    }
    Ok(Some(m))
}

pub fn check(a: CheckArgs, timeout: Duration) -> Result<Output> {
    event::validate_name(&a.name).map_err(|e| Failure::input(format!("--name: {e}")))?;
    event::validate_version(&a.version).map_err(|e| Failure::input(format!("--version: {e}")))?;
    if a.action == "publish" && a.kind.is_none() {
        return Err(Failure::input("--action publish needs --kind"));
    }
    if (a.action == "transition" || a.action == "approve") && a.to.is_none() {
        return Err(Failure::input(format!("--action {} needs --to", a.action)));
    }
    let mut body = json!({"action": a.action, "name": a.name, "version": a.version});
    if let Some(k) = a.kind {
        body["kind"] = json!(k);
    }
    if let Some(m) = parse_meta(&a.meta)? {
        body["meta"] = json!(m);
    }
    if let Some(t) = a.to {
        body["to"] = json!(t);
    }
    let server = Server::new(&a.server.server, timeout)?;
    let raw: Value = server.post_json("/registry/v1/check", &body)?;
    let answer: Answer = serde_json::from_value(raw.clone())
        .map_err(|e| Failure::server(format!("the check answer is malformed: {e}")))?;
    let subject = format!("{} {}@{}", a.action, a.name, a.version);
    if !answer.access_control {
        return Ok(Output {
            human: format!("{subject}: allowed (the ledger runs without access control)"),
            json: raw,
        });
    }
    let who = answer.principal.as_deref().unwrap_or("?");
    let mut lines = vec![];
    for s in &answer.checks {
        let mut line = format!(
            "  {} {}: {}",
            s.check,
            s.resource.as_deref().unwrap_or(""),
            if s.allowed { "allowed" } else { "denied" }
        );
        if !s.policies.is_empty() {
            line.push_str(&format!(" by {}", s.policies.join(", ")));
        }
        if let Some(r) = &s.reason {
            line.push_str(&format!(" ({r})"));
        }
        lines.push(line);
    }
    for p in &answer.problems {
        lines.push(format!("  problem: {p}"));
    }
    let digest = answer.policy_digest.as_deref().unwrap_or("?");
    if answer.allowed {
        Ok(Output {
            human: format!(
                "{subject} by {who}: allowed under policy {digest}\n{}",
                lines.join("\n")
            ),
            json: raw,
        })
    } else {
        Err(Failure::denied(format!(
            "{subject} by {who} would be refused under policy {digest}:\n{}",
            lines.join("\n")
        )))
    }
}
