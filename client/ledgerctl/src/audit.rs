//! `ledgerctl audit`: an auditor's checks. `consistency` proves a log never rewrote
//! history between two checkpoints (saved ones, or a saved one and the live one);
//! `replay` rebuilds the registry from the log's entries alone and compares it with what
//! the ledger's catalog answers.

use crate::failure::{Failure, Result};
use crate::http::Client;
use crate::{checkpoint_failure, fetch_consistency, load_vkey, parse_json, Output};
use clap::{Args, Subcommand};
use ledger_client::checkpoint::{verify_checkpoint, VerifiedCheckpoint};
use ledger_client::merkle::{hash_to_base64, leaf_hash, root_from_leaves, verify_consistency};
use ledger_client::replay::Registry;
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Prove two checkpoints of a log consistent: `--from` a saved checkpoint `--to`
    /// another saved one, or to the log's current checkpoint.
    Consistency(ConsistencyArgs),
    /// Rebuild the registry from the log's entries alone and compare it with the ledger's
    /// catalog, as of the log's current checkpoint.
    Replay(ReplayArgs),
    /// Check a stopped ledger's data directory (or a copy of it) offline: re-hash every
    /// entry, rebuild every tile and compare it with the stored one, and verify every
    /// checkpoint the log ever issued against the key valid at its size.
    #[cfg(feature = "fsck")]
    Fsck(FsckArgs),
}

#[cfg(feature = "fsck")]
#[derive(Args)]
pub struct FsckArgs {
    /// The data directory (the ledger must be stopped, or this a copy).
    #[arg(long, value_name = "DIR")]
    data_dir: PathBuf,
    /// The log's name in that directory.
    #[arg(long, default_value = "artifacts")]
    log: String,
    /// The key the log started with (what the operator published). Without it, the key
    /// files in the data directory are believed, which an auditor should not do.
    #[arg(long, value_name = "FILE")]
    vkey: Option<PathBuf>,
}

#[derive(Args)]
pub struct ConsistencyArgs {
    /// Log prefix URL (for the consistency proof, and the current checkpoint).
    #[arg(long, value_name = "URL")]
    log: String,
    #[arg(long, value_name = "FILE")]
    vkey: PathBuf,
    /// A checkpoint saved earlier (`ledgerctl checkpoint --out`).
    #[arg(long, value_name = "FILE")]
    from: PathBuf,
    /// A later saved checkpoint; default: the log's current one.
    #[arg(long, value_name = "FILE")]
    to: Option<PathBuf>,
}

#[derive(Args)]
pub struct ReplayArgs {
    /// Ledger base URL, e.g. http://127.0.0.1:8080.
    #[arg(long, value_name = "URL")]
    server: String,
    /// The registry's log.
    #[arg(long, value_name = "NAME", default_value = "artifacts")]
    log: String,
    #[arg(long, value_name = "FILE")]
    vkey: PathBuf,
}

pub fn run(c: AuditCommand, timeout: Duration) -> Result<Output> {
    match c {
        AuditCommand::Consistency(a) => consistency(a, timeout),
        AuditCommand::Replay(a) => replay(a, timeout),
        #[cfg(feature = "fsck")]
        AuditCommand::Fsck(a) => fsck(a),
    }
}

#[cfg(feature = "fsck")]
fn fsck(a: FsckArgs) -> Result<Output> {
    use ledger::fsck::{check_data_dir, DataDirError};
    let r =
        check_data_dir(&a.data_dir, &a.log, a.vkey.as_deref(), false, |_, _| {}).map_err(|e| {
            match e {
                DataDirError::Unusable(e) => Failure::input(format!("{e:#}")),
                DataDirError::Failed(m) => Failure::verification(format!("fsck {}: {m}", a.log)),
            }
        })?;
    let f = &r.report;
    Ok(Output {
        human: r.to_string(),
        json: json!({
            "ok": true,
            "log": r.log,
            "tree_size": f.tree_size,
            "entry_bytes": f.entry_bytes,
            "tiles_checked": f.tiles_checked,
            "checkpoints_checked": f.checkpoints_checked,
            "rotations": f.rotations,
            "seconds": r.seconds,
        }),
    })
}

fn saved(path: &Path, vkey: &str) -> Result<VerifiedCheckpoint> {
    let bytes = std::fs::read(path)
        .map_err(|e| Failure::input(format!("cannot read {}: {e}", path.display())))?;
    verify_checkpoint(&bytes, &[vkey], None)
        .map_err(|e| checkpoint_failure(e, false, &format!("saved checkpoint {}", path.display())))
}

fn consistency(a: ConsistencyArgs, timeout: Duration) -> Result<Output> {
    let vkey = load_vkey(&a.vkey)?;
    let from = saved(&a.from, &vkey)?;
    let client = Client::new(&a.log, timeout)?;
    let to = match &a.to {
        Some(p) => saved(p, &vkey)?,
        None => verify_checkpoint(
            &client.get("checkpoint", &[])?,
            &[&vkey],
            Some(&from.origin),
        )
        .map_err(|e| checkpoint_failure(e, true, "checkpoint from the log"))?,
    };
    if to.origin != from.origin {
        return Err(Failure::input(format!(
            "the checkpoints are of {:?} and {:?}",
            from.origin, to.origin
        )));
    }
    let (old, new) = if from.size <= to.size {
        (&from, &to)
    } else {
        (&to, &from)
    };
    let proof = fetch_consistency(&client, old.size, new.size)?;
    verify_consistency(old.size, &old.root, new.size, &new.root, &proof).map_err(|e| {
        Failure::verification(format!(
            "inconsistent: tree size {} ({}) and {} ({}) are not the same history: {e}",
            old.size,
            old.root_base64(),
            new.size,
            new.root_base64()
        ))
    })?;
    Ok(Output {
        human: format!(
            "consistent: {} at tree size {} is a prefix of tree size {}",
            old.origin, old.size, new.size
        ),
        json: json!({"consistent": true, "from": old.size, "to": new.size}),
    })
}

#[derive(Deserialize)]
struct VersionAnswer {
    version: CatalogVersion,
}
#[derive(Deserialize)]
struct CatalogVersion {
    digest: String,
    stage: String,
    #[serde(default)]
    tombstone: Option<serde_json::Value>,
    head: CatalogPrev,
}
#[derive(Deserialize)]
struct CatalogPrev {
    i: u64,
}
#[derive(Deserialize)]
struct VersionsAnswer {
    versions: Vec<serde_json::Value>,
}
#[derive(Deserialize)]
struct AliasesAnswer {
    aliases: Vec<CatalogAlias>,
}
#[derive(Deserialize)]
struct CatalogAlias {
    alias: String,
    #[serde(default)]
    version: Option<String>,
}

fn replay(a: ReplayArgs, timeout: Duration) -> Result<Output> {
    let vkey = load_vkey(&a.vkey)?;
    let server = Client::new(&a.server, timeout)?;
    let note = server.get(&format!("{}/checkpoint", a.log), &[])?;
    let cp = verify_checkpoint(&note, &[&vkey], None)
        .map_err(|e| checkpoint_failure(e, true, "checkpoint from the log"))?;
    // Every entry, from the tlog-tiles bundles; the tree they make must be the signed one.
    let mut leaves = Vec::with_capacity(cp.size as usize);
    let mut registry = Registry::default();
    crate::for_each_entry(
        &server,
        &a.log,
        cp.size,
        0..cp.size,
        Failure::verification,
        |index, e| {
            leaves.push(leaf_hash(e));
            registry.apply(index, e);
            Ok(())
        },
    )?;
    let root = root_from_leaves(&leaves);
    if root != cp.root {
        return Err(Failure::verification(format!(
            "the log's entries hash to {} but its checkpoint at tree size {} says {}",
            hash_to_base64(&root),
            cp.size,
            cp.root_base64()
        )));
    }
    // The catalog's current answers (what clients are told), not `as_of`, which the
    // ledger recomputes from the log: they must agree with the replay as long as the log
    // does not grow meanwhile (checked below).
    let mut differences: Vec<String> = vec![];
    let names: BTreeSet<&String> = registry
        .versions
        .keys()
        .map(|(n, _)| n)
        .chain(registry.aliases.keys().map(|(n, _)| n))
        .collect();
    for ((name, version), v) in &registry.versions {
        let answer: VersionAnswer = parse_json(
            &server.get(
                "registry/v1/version",
                &[("name", name.clone()), ("version", version.clone())],
            )?,
            "version",
        )?;
        let c = answer.version;
        let mut diff = |what: &str, log: String, catalog: String| {
            if log != catalog {
                differences.push(format!(
                    "{name}@{version} {what}: the log says {log}, the catalog {catalog}"
                ));
            }
        };
        diff("digest", v.digest.to_string(), c.digest);
        diff("stage", v.stage.to_string(), c.stage);
        diff(
            "tombstoned",
            v.tombstoned.to_string(),
            c.tombstone.is_some().to_string(),
        );
        diff("head", v.head.index.to_string(), c.head.i.to_string());
    }
    for name in &names {
        let versions: VersionsAnswer = parse_json(
            &server.get("registry/v1/versions", &[("name", (*name).clone())])?,
            "versions",
        )?;
        let in_log = registry.versions.keys().filter(|(n, _)| n == *name).count();
        if versions.versions.len() != in_log {
            differences.push(format!(
                "{name}: the log has {in_log} versions, the catalog {}",
                versions.versions.len()
            ));
        }
        let aliases: AliasesAnswer = parse_json(
            &server.get("registry/v1/aliases", &[("name", (*name).clone())])?,
            "aliases",
        )?;
        let in_log: Vec<(String, Option<String>)> = registry
            .aliases
            .iter()
            // A removed alias is listed too, pointing at nothing.
            .filter(|((n, _), _)| n == *name)
            .map(|((_, al), a)| (al.clone(), a.version.clone()))
            .collect();
        let mut in_catalog: Vec<(String, Option<String>)> = aliases
            .aliases
            .into_iter()
            .map(|a| (a.alias, a.version))
            .collect();
        in_catalog.sort();
        if in_log != in_catalog {
            differences.push(format!(
                "{name} aliases: the log says {in_log:?}, the catalog {in_catalog:?}"
            ));
        }
    }
    let summary = format!(
        "replayed {} entries of {} ({} rejected, {} opaque): {} versions, {} aliases",
        cp.size,
        cp.origin,
        registry.rejected.len(),
        registry.opaque,
        registry.versions.len(),
        registry
            .aliases
            .values()
            .filter(|a| a.version.is_some())
            .count()
    );
    if !differences.is_empty() {
        let now = verify_checkpoint(
            &server.get(&format!("{}/checkpoint", a.log), &[])?,
            &[&vkey],
            None,
        )
        .map_err(|e| checkpoint_failure(e, true, "checkpoint from the log"))?;
        if now.size != cp.size {
            return Err(Failure::server(format!(
                "the log grew from {} to {} entries during the replay; run it again",
                cp.size, now.size
            )));
        }
        return Err(Failure::verification(format!(
            "{summary}; the catalog differs from the log:\n  {}",
            differences.join("\n  ")
        )));
    }
    Ok(Output {
        human: format!(
            "{summary}; the catalog agrees with the log at tree size {}",
            cp.size
        ),
        json: json!({"tree_size": cp.size, "versions": registry.versions.len(),
                     "aliases": registry.aliases.len(), "rejected": registry.rejected.len(),
                     "opaque": registry.opaque, "agrees": true}),
    })
}
