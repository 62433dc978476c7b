//! `ledgerctl export` and `ledgerctl verify-export` (specs/export.md): a compliance export
//! of part of a log, as a directory, that verifies with no network and no trust in the
//! ledger: every entry with its inclusion proof in one cosigned, time-stamped checkpoint,
//! the entries decoded, a CSV summary for people, optionally the artifacts' bytes, and a
//! manifest of every file's SHA-256. The export is itself logged.

use crate::bundle::{base64_decode, Attestation, InclusionAnswer};
use crate::failure::{Failure, Result};
use crate::http::Client;
use crate::{load_vkey, parse_json, write_file, Output};
use base64::prelude::*;
use clap::Args;
use ledger_client::checkpoint::verify_checkpoint;
use ledger_client::event::{Event, Subject};
use ledger_client::merkle::{hash_from_base64, hash_to_base64, leaf_hash, verify_inclusion, Hash};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const FORMAT: &str = "ledger.export/v1";
/// The receipt of the export's own log entry: outside the manifest (it names the
/// manifest's digest).
pub const RECEIPT: &str = "export-receipt.json";

#[derive(Args)]
pub struct ExportArgs {
    #[arg(long, value_name = "URL")]
    server: String,
    #[arg(long, value_name = "NAME", default_value = "artifacts")]
    log: String,
    /// The log's key: what is fetched is verified before it is written.
    #[arg(long, value_name = "FILE")]
    vkey: PathBuf,
    /// First entry index (default 0).
    #[arg(long, value_name = "N")]
    from_index: Option<u64>,
    /// Entries before this index (default: the latest attested checkpoint's size).
    #[arg(long, value_name = "N")]
    to_index: Option<u64>,
    /// Only registry events at or after this time (unix seconds).
    #[arg(long, value_name = "SECS")]
    since: Option<u64>,
    /// Only registry events before this time (unix seconds).
    #[arg(long, value_name = "SECS")]
    until: Option<u64>,
    /// Only events about these versions (`name@version`); repeatable.
    #[arg(long = "artifact", value_name = "NAME@VERSION")]
    artifacts: Vec<String>,
    /// Include the published artifacts' bytes (`blobs/<hex digest>`).
    #[arg(long)]
    blobs: bool,
    /// Trust files to copy into the export for its readers (`trust/`).
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    #[arg(long, value_name = "FILE")]
    tsa_roots: Option<PathBuf>,
    /// The access audit log whose `policy` records (every policy set put in force) are
    /// exported too, each with its inclusion proof (`policies.jsonl`).
    #[arg(long, value_name = "NAME", requires = "audit_vkey")]
    audit_log: Option<String>,
    /// That audit log's key.
    #[arg(long, value_name = "FILE")]
    audit_vkey: Option<PathBuf>,
    /// The directory to write (must not exist); a name ending in `.tar` writes a tar file
    /// instead.
    #[arg(long, value_name = "DIR|FILE.tar")]
    out: PathBuf,
}

fn is_tar(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == "tar")
}

/// One line of `policies.jsonl`: a policy record of the audit log.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyLine {
    pub index: u64,
    pub entry: String,
    pub inclusion_proof: Vec<String>,
}

/// Every `policy` record of an audit log, proven against its current checkpoint:
/// (checkpoint note, lines).
fn audit_policies(server: &Client, log: &str, vkey: &str) -> Result<(Vec<u8>, Vec<PolicyLine>)> {
    let note = server.get(&format!("{log}/checkpoint"), &[])?;
    let cp = verify_checkpoint(&note, &[vkey], None).map_err(|e| {
        Failure::verification(format!("the audit log's checkpoint does not verify: {e}"))
    })?;
    let mut out = vec![];
    crate::for_each_entry(
        server,
        log,
        cp.size,
        0..cp.size,
        Failure::server,
        |index, e| {
            let is_policy =
                serde_json::from_slice::<serde_json::Value>(e).is_ok_and(|v| v["type"] == "policy");
            if !is_policy {
                return Ok(());
            }
            let p: InclusionAnswer = parse_json(
                &server.get(
                    &format!("{log}/proof/inclusion"),
                    &[
                        ("index", index.to_string()),
                        ("tree_size", cp.size.to_string()),
                    ],
                )?,
                "proof/inclusion",
            )?;
            out.push(PolicyLine {
                index,
                entry: BASE64_STANDARD.encode(e),
                inclusion_proof: p.inclusion_proof,
            });
            Ok(())
        },
    )?;
    Ok((note, out))
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub origin: String,
    pub tree_size: u64,
    pub selection: serde_json::Value,
    pub entries: u64,
    /// Relative path -> hex SHA-256, every file of the export but the manifest and the
    /// receipt.
    pub files: BTreeMap<String, String>,
}

/// One line of `entries.jsonl`.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Line {
    pub index: u64,
    pub entry: String,
    pub inclusion_proof: Vec<String>,
    /// The entry decoded (specs/entries.md), `null` for entries that are not registry
    /// events.
    pub event: serde_json::Value,
}

fn sha256_hex(b: &[u8]) -> String {
    hex_encode(&Sha256::digest(b))
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `summary.csv`: one row per entry, derived from the entries alone (verify-export
/// rebuilds it and compares).
pub fn summary(lines: &[(u64, Option<Event>)]) -> String {
    let mut out = String::from("index,time,type,name,version,detail,actor,digest\n");
    for (index, e) in lines {
        let row: Vec<String> = match e {
            None => vec![index.to_string(), String::new(), "opaque".into()],
            Some(e) => {
                let (name, version) = match e.subject() {
                    Subject::Version { name, version } => (name, version),
                    Subject::Alias { name, alias } => (name, alias),
                };
                let (detail, digest) = match e {
                    Event::Published(p) => (p.kind.to_string(), p.digest.to_string()),
                    Event::Lifecycle(l) => (format!("{} -> {}", l.from, l.to), String::new()),
                    Event::Approval(a) => (format!("approves {}", a.to), String::new()),
                    Event::AliasMoved(a) => (
                        format!("-> {}", a.to.as_deref().unwrap_or("(removed)")),
                        String::new(),
                    ),
                    Event::Tombstone(t) => (t.reason.clone(), t.digest.to_string()),
                    other => (other.type_name().to_string(), String::new()),
                };
                let v = serde_json::to_value(e).unwrap_or_default();
                let time = v["time"]
                    .as_u64()
                    .map(|t| t.to_string())
                    .unwrap_or_default();
                let actor = v["actor"].as_str().unwrap_or_default().to_string();
                vec![
                    index.to_string(),
                    time,
                    e.type_name().into(),
                    name,
                    version,
                    detail,
                    actor,
                    digest,
                ]
            }
        };
        let mut row: Vec<String> = row.iter().map(|f| csv_field(f)).collect();
        row.resize(8, String::new());
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
}

fn event_time(e: &Event) -> Option<u64> {
    serde_json::to_value(e).ok()?["time"].as_u64()
}

fn selected(a: &ExportArgs, e: &Option<Event>) -> bool {
    let has_filter = a.since.is_some() || a.until.is_some() || !a.artifacts.is_empty();
    let Some(e) = e else {
        return !has_filter;
    };
    if let Some(t) = event_time(e) {
        if a.since.is_some_and(|s| t < s) || a.until.is_some_and(|u| t >= u) {
            return false;
        }
    }
    if !a.artifacts.is_empty() {
        let Subject::Version { name, version } = e.subject() else {
            return false;
        };
        return a.artifacts.contains(&format!("{name}@{version}"));
    }
    true
}

pub fn export(mut a: ExportArgs, timeout: Duration) -> Result<Output> {
    if a.out.exists() {
        return Err(Failure::input(format!(
            "{} exists: an export is written to a new directory or file",
            a.out.display()
        )));
    }
    if !is_tar(&a.out) {
        return export_dir(a, timeout);
    }
    // A tar file: the directory is built beside it, packed, then removed.
    let tar_path = a.out.clone();
    let parent = tar_path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let work = tempfile::Builder::new()
        .prefix(".export-")
        .tempdir_in(parent)
        .map_err(|e| {
            Failure::input(format!(
                "cannot create a directory in {}: {e}",
                parent.display()
            ))
        })?;
    a.out = work.path().join("export");
    let mut out = export_dir(a, timeout)?;
    let file = std::fs::File::create(&tar_path)
        .map_err(|e| Failure::input(format!("cannot create {}: {e}", tar_path.display())))?;
    let mut b = tar::Builder::new(file);
    b.append_dir_all(".", work.path().join("export"))
        .and_then(|_| b.into_inner())
        .and_then(|f| f.sync_all())
        .map_err(|e| Failure::input(format!("writing {}: {e}", tar_path.display())))?;
    out.human = out.human.replace(
        &work.path().join("export").display().to_string(),
        &tar_path.display().to_string(),
    );
    out.json["dir"] = json!(tar_path);
    Ok(out)
}

fn export_dir(a: ExportArgs, timeout: Duration) -> Result<Output> {
    let vkey = load_vkey(&a.vkey)?;
    let server = Client::new(&a.server, timeout)?;
    let att: Attestation = parse_json(
        &server.get(&format!("{}/attestation", a.log), &[])?,
        "attestation",
    )?;
    let cp = verify_checkpoint(att.checkpoint.as_bytes(), &[&vkey], None).map_err(|e| {
        Failure::verification(format!("the attested checkpoint does not verify: {e}"))
    })?;
    let to = a.to_index.unwrap_or(cp.size).min(cp.size);
    let from = a.from_index.unwrap_or(0);
    if from > to {
        return Err(Failure::input(format!(
            "--from-index {from} is after --to-index {to}"
        )));
    }
    // Entries from the tlog-tiles bundles; each kept entry gets an inclusion proof.
    let mut kept: Vec<(u64, Vec<u8>, Option<Event>)> = vec![];
    crate::for_each_entry(
        &server,
        &a.log,
        cp.size,
        from..to,
        Failure::server,
        |index, e| {
            let event = Event::decode(e).ok();
            if selected(&a, &event) {
                kept.push((index, e.to_vec(), event));
            }
            Ok(())
        },
    )?;
    let dir = &a.out;
    std::fs::create_dir_all(dir.join("trust"))
        .map_err(|e| Failure::input(format!("cannot create {}: {e}", dir.display())))?;
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    let mut put = |rel: &str, data: &[u8]| -> Result<()> {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Failure::input(format!("cannot create {}: {e}", parent.display())))?;
        }
        write_file(&p, data)?;
        files.insert(rel.to_string(), sha256_hex(data));
        Ok(())
    };
    put("checkpoint.txt", att.checkpoint.as_bytes())?;
    for (i, t) in att.timestamps.iter().enumerate() {
        put(&format!("timestamps/{i}.tst"), &base64_decode(t)?)?;
    }
    put("trust/log.vkey", format!("{vkey}\n").as_bytes())?;
    for (src, name) in [
        (&a.policy, "trust/trust.policy"),
        (&a.tsa_roots, "trust/tsa-roots.pem"),
    ] {
        if let Some(p) = src {
            let data = std::fs::read(p)
                .map_err(|e| Failure::input(format!("cannot read {}: {e}", p.display())))?;
            put(name, &data)?;
        }
    }
    let mut jsonl = String::new();
    let mut rows = vec![];
    let mut digests = std::collections::BTreeSet::new();
    for (index, bytes, event) in &kept {
        let p: InclusionAnswer = parse_json(
            &server.get(
                &format!("{}/proof/inclusion", a.log),
                &[
                    ("index", index.to_string()),
                    ("tree_size", cp.size.to_string()),
                ],
            )?,
            "proof/inclusion",
        )?;
        let proof: Vec<Hash> = p
            .inclusion_proof
            .iter()
            .map(|h| hash_from_base64(h).map_err(|e| Failure::server(e.to_string())))
            .collect::<Result<_>>()?;
        verify_inclusion(&leaf_hash(bytes), *index, cp.size, &proof, &cp.root).map_err(|e| {
            Failure::verification(format!("entry {index}: the ledger's proof fails: {e}"))
        })?;
        if let Some(Event::Published(p)) = event {
            digests.insert(p.digest);
        }
        let line = Line {
            index: *index,
            entry: BASE64_STANDARD.encode(bytes),
            inclusion_proof: p.inclusion_proof,
            event: event
                .as_ref()
                .map(|e| serde_json::to_value(e).unwrap_or_default())
                .unwrap_or(serde_json::Value::Null),
        };
        jsonl.push_str(&serde_json::to_string(&line).unwrap_or_default());
        jsonl.push('\n');
        rows.push((*index, event.clone()));
    }
    put("entries.jsonl", jsonl.as_bytes())?;
    if let (Some(log), Some(vk)) = (&a.audit_log, &a.audit_vkey) {
        let audit_vkey = load_vkey(vk)?;
        let (note, lines) = audit_policies(&server, log, &audit_vkey)?;
        put("policies/audit-checkpoint.txt", &note)?;
        let mut text = String::new();
        for l in &lines {
            text.push_str(&serde_json::to_string(l).unwrap_or_default());
            text.push('\n');
        }
        put("policies/policies.jsonl", text.as_bytes())?;
        put("trust/audit.vkey", format!("{audit_vkey}\n").as_bytes())?;
    }
    put("summary.csv", summary(&rows).as_bytes())?;
    if a.blobs {
        for d in &digests {
            // Any repository name finds a content-addressed blob.
            let url = format!("v2/export/blobs/{d}");
            let bytes = server.get(&url, &[])?;
            if ledger_client::digest::Digest::of(&bytes) != *d {
                return Err(Failure::verification(format!(
                    "the blob store's bytes for {d} do not hash to it"
                )));
            }
            put(
                &format!("blobs/{}", d.to_string().trim_start_matches("sha256:")),
                &bytes,
            )?;
        }
    }
    let selection = json!({"from_index": from, "to_index": to, "since": a.since,
                           "until": a.until, "artifacts": a.artifacts, "blobs": a.blobs,
                           "audit_log": a.audit_log});
    let manifest = Manifest {
        format: FORMAT.into(),
        origin: cp.origin.clone(),
        tree_size: cp.size,
        selection: selection.clone(),
        entries: kept.len() as u64,
        files,
    };
    let manifest_bytes = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
    write_file(&dir.join("manifest.json"), &manifest_bytes)?;
    // The export is itself an entry of the log: who exported what is on the record.
    let record = json!({"type": "export", "format": FORMAT, "manifest_sha256": sha256_hex(&manifest_bytes),
                        "origin": cp.origin, "tree_size": cp.size, "selection": selection,
                        "entries": kept.len()});
    let receipt = server.post(
        &format!("{}/add", a.log),
        &[],
        record.to_string().as_bytes(),
    )?;
    let mut r: serde_json::Value = parse_json(&receipt, "add")?;
    r["record"] = json!(record.to_string());
    write_file(
        &dir.join(RECEIPT),
        serde_json::to_vec_pretty(&r).unwrap_or_default().as_slice(),
    )?;
    Ok(Output {
        human: format!(
            "exported {} entries of {} (tree size {}) to {}; the export is logged at index {}",
            kept.len(),
            cp.origin,
            cp.size,
            dir.display(),
            r["index"]
        ),
        json: json!({"entries": kept.len(), "tree_size": cp.size, "dir": dir, "logged_at": r["index"]}),
    })
}

#[derive(Args)]
pub struct VerifyExportArgs {
    /// The export: a directory, or a tar file.
    #[arg(long, value_name = "DIR|FILE.tar")]
    dir: PathBuf,
    /// The log's key, from the verifier's own trust (not the export's copy).
    #[arg(long, value_name = "FILE")]
    vkey: PathBuf,
    /// The access audit log's key, when the export holds its policy records.
    #[arg(long, value_name = "FILE")]
    audit_vkey: Option<PathBuf>,
    #[command(flatten)]
    attest: crate::attest::AttestArgs,
}

fn bad(m: impl Into<String>) -> Failure {
    Failure::verification(m)
}

fn read(dir: &Path, rel: &str) -> Result<Vec<u8>> {
    std::fs::read(dir.join(rel))
        .map_err(|e| Failure::input(format!("cannot read {rel} in the export: {e}")))
}

/// Every file under `dir`, relative, `/`-separated.
fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) -> Result<()> {
    for e in std::fs::read_dir(dir).map_err(|e| Failure::input(e.to_string()))? {
        let p = e.map_err(|e| Failure::input(e.to_string()))?.path();
        if p.is_dir() {
            walk(&p, base, out)?;
        } else {
            let rel = p
                .strip_prefix(base)
                .unwrap_or(&p)
                .to_string_lossy()
                .replace('\\', "/");
            out.push(rel);
        }
    }
    Ok(())
}

pub fn verify_export(a: VerifyExportArgs) -> Result<Output> {
    let vkey = load_vkey(&a.vkey)?;
    let required = a.attest.load()?;
    // A tar file is unpacked into a private directory first (the tar crate refuses
    // entries that would land outside it).
    let unpacked;
    let dir: &Path = if a.dir.is_file() {
        unpacked = tempfile::tempdir()
            .map_err(|e| Failure::input(format!("cannot create a temporary directory: {e}")))?;
        let f = std::fs::File::open(&a.dir)
            .map_err(|e| Failure::input(format!("cannot read {}: {e}", a.dir.display())))?;
        tar::Archive::new(f).unpack(unpacked.path()).map_err(|e| {
            Failure::input(format!(
                "{} is not a readable tar file: {e}",
                a.dir.display()
            ))
        })?;
        unpacked.path()
    } else {
        &a.dir
    };
    let manifest_bytes = read(dir, "manifest.json")?;
    let m: Manifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| Failure::input(format!("manifest.json: {e}")))?;
    if m.format != FORMAT {
        return Err(Failure::input(format!(
            "manifest.json: format {:?}",
            m.format
        )));
    }
    // 1. Every file is the one the manifest lists, and nothing else is there.
    let mut present = vec![];
    walk(dir, dir, &mut present)?;
    for rel in &present {
        if rel == "manifest.json" || rel == RECEIPT {
            continue;
        }
        let want = m
            .files
            .get(rel)
            .ok_or_else(|| bad(format!("{rel} is not in the manifest")))?;
        if sha256_hex(&read(dir, rel)?) != *want {
            return Err(bad(format!(
                "{rel} does not have the SHA-256 the manifest lists"
            )));
        }
    }
    for rel in m.files.keys() {
        if !present.contains(rel) {
            return Err(bad(format!("{rel} is listed but missing")));
        }
    }
    // 2. The checkpoint: log signature, witnesses, time-stamps (as the verifier requires).
    let note = read(dir, "checkpoint.txt")?;
    let cp = verify_checkpoint(&note, &[&vkey], Some(&m.origin))
        .map_err(|e| bad(format!("checkpoint.txt: {e}")))?;
    if cp.size != m.tree_size {
        return Err(bad("the manifest's tree size is not the checkpoint's"));
    }
    let mut tokens = vec![];
    for rel in m.files.keys().filter(|r| r.starts_with("timestamps/")) {
        tokens.extend(read(dir, rel)?);
    }
    let tp = ledger_client::tlog_proof::TlogProof {
        extra: (!tokens.is_empty()).then_some(tokens),
        index: 0,
        inclusion_proof: vec![],
        checkpoint: note.clone(),
    };
    // The checkpoint-level checks of an attested proof, for the first entry (below) or,
    // with none, on their own.
    let lines_text = String::from_utf8(read(dir, "entries.jsonl")?)
        .map_err(|_| bad("entries.jsonl is not UTF-8"))?;
    let mut rows = vec![];
    let mut checked_attestation = false;
    for (n, l) in lines_text.lines().enumerate() {
        let line: Line = serde_json::from_str(l)
            .map_err(|e| bad(format!("entries.jsonl line {}: {e}", n + 1)))?;
        let bytes = BASE64_STANDARD
            .decode(&line.entry)
            .map_err(|e| bad(format!("entry {}: {e}", line.index)))?;
        let proof: Vec<Hash> = line
            .inclusion_proof
            .iter()
            .map(|h| hash_from_base64(h).map_err(|e| bad(e.to_string())))
            .collect::<Result<_>>()?;
        let leaf = leaf_hash(&bytes);
        if !checked_attestation {
            let mut first = tp.clone();
            first.index = line.index;
            first.inclusion_proof = proof.clone();
            required.verify(
                &first,
                &leaf,
                &[&vkey],
                Some(&m.origin),
                false,
                "checkpoint.txt",
            )?;
            checked_attestation = true;
        }
        verify_inclusion(&leaf, line.index, cp.size, &proof, &cp.root)
            .map_err(|e| bad(format!("entry {}: not in the log: {e}", line.index)))?;
        let event = Event::decode(&bytes).ok();
        let decoded = event
            .as_ref()
            .map(|e| serde_json::to_value(e).unwrap_or_default())
            .unwrap_or(serde_json::Value::Null);
        if decoded != line.event {
            return Err(bad(format!(
                "entry {}: the decoded event in entries.jsonl is not what the entry says",
                line.index
            )));
        }
        rows.push((line.index, event));
    }
    if rows.len() as u64 != m.entries {
        return Err(bad("the manifest's entry count is not entries.jsonl's"));
    }
    // 3. The people's summary says what the entries say.
    if read(dir, "summary.csv")? != summary(&rows).into_bytes() {
        return Err(bad("summary.csv is not the summary of entries.jsonl"));
    }
    // 4. Blobs hash to their names.
    for rel in m.files.keys().filter(|r| r.starts_with("blobs/")) {
        let got = sha256_hex(&read(dir, rel)?);
        if rel.trim_start_matches("blobs/") != got {
            return Err(bad(format!("{rel} does not hash to its name")));
        }
    }
    // 5. The policies in force, when exported: each record is in the audit log.
    let mut policies = 0usize;
    if m.files.contains_key("policies/policies.jsonl") {
        let vk = a.audit_vkey.as_ref().ok_or_else(|| {
            Failure::input("the export holds policy records: give --audit-vkey to verify them")
        })?;
        let audit_vkey = load_vkey(vk)?;
        let acp = verify_checkpoint(
            &read(dir, "policies/audit-checkpoint.txt")?,
            &[&audit_vkey],
            None,
        )
        .map_err(|e| bad(format!("policies/audit-checkpoint.txt: {e}")))?;
        let text = String::from_utf8(read(dir, "policies/policies.jsonl")?)
            .map_err(|_| bad("policies.jsonl is not UTF-8"))?;
        for (n, l) in text.lines().enumerate() {
            let line: PolicyLine = serde_json::from_str(l)
                .map_err(|e| bad(format!("policies.jsonl line {}: {e}", n + 1)))?;
            let bytes = BASE64_STANDARD
                .decode(&line.entry)
                .map_err(|e| bad(format!("policy record {}: {e}", line.index)))?;
            let v: serde_json::Value = serde_json::from_slice(&bytes)
                .map_err(|e| bad(format!("policy record {}: {e}", line.index)))?;
            if v["type"] != "policy" {
                return Err(bad(format!(
                    "audit entry {} is not a policy record",
                    line.index
                )));
            }
            let proof: Vec<Hash> = line
                .inclusion_proof
                .iter()
                .map(|h| hash_from_base64(h).map_err(|e| bad(e.to_string())))
                .collect::<Result<_>>()?;
            verify_inclusion(&leaf_hash(&bytes), line.index, acp.size, &proof, &acp.root).map_err(
                |e| {
                    bad(format!(
                        "policy record {}: not in the audit log: {e}",
                        line.index
                    ))
                },
            )?;
            policies += 1;
        }
    }
    // 6. The export's own log entry, when present: it names this manifest.
    let mut logged = serde_json::Value::Null;
    if present.iter().any(|p| p == RECEIPT) {
        let r: serde_json::Value = serde_json::from_slice(&read(dir, RECEIPT)?)
            .map_err(|e| bad(format!("{RECEIPT}: {e}")))?;
        let record = r["record"].as_str().unwrap_or("");
        let rec: serde_json::Value =
            serde_json::from_str(record).map_err(|e| bad(format!("{RECEIPT}: record: {e}")))?;
        if rec["manifest_sha256"] != sha256_hex(&manifest_bytes) {
            return Err(bad(format!("{RECEIPT} logs another manifest")));
        }
        let rcp = verify_checkpoint(
            r["checkpoint"].as_str().unwrap_or("").as_bytes(),
            &[&vkey],
            Some(&m.origin),
        )
        .map_err(|e| bad(format!("{RECEIPT}: checkpoint: {e}")))?;
        let proof: Vec<Hash> = r["inclusion_proof"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|h| h.as_str().and_then(|s| hash_from_base64(s).ok()))
                    .collect()
            })
            .unwrap_or_default();
        let index = r["index"].as_u64().unwrap_or(u64::MAX);
        verify_inclusion(
            &leaf_hash(record.as_bytes()),
            index,
            rcp.size,
            &proof,
            &rcp.root,
        )
        .map_err(|e| {
            bad(format!(
                "{RECEIPT}: the export's record is not in the log: {e}"
            ))
        })?;
        logged = json!(index);
    }
    Ok(Output {
        human: format!(
            "verified export of {} entries of {} at tree size {} (root {}){}",
            rows.len(),
            cp.origin,
            cp.size,
            hash_to_base64(&cp.root),
            if logged.is_null() {
                String::new()
            } else {
                format!("; the export is logged at index {logged}")
            }
        ) + &if policies > 0 {
            format!("; {policies} policy records proven in the audit log")
        } else {
            String::new()
        },
        json: json!({"verified": true, "entries": rows.len(), "tree_size": cp.size, "logged_at": logged,
                     "policies": policies}),
    })
}
