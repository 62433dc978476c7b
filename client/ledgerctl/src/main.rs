//! `ledgerctl`: submit entries to a ledger log, fetch its checkpoints and proofs, and verify
//! everything the log says before believing it (specs/api.md, C2SP tlog specs). The registry
//! commands (push, pull, show, history, lineage, promote, alias) live in `registry.rs`.
//!
//! Exit codes: 0 success, 1 verification failed (bad signature, bad proof, inconsistent or
//! rolled-back log), 2 usage or input error, 3 network or server error. The reason is
//! always printed on stderr; with `--json` a JSON object is printed on stdout as well.

mod attest;
mod audit;
mod bundle;
mod export;
mod failure;
mod http;
mod keys;
mod policy;
mod registry;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgGroup, Args, Parser, Subcommand};
use ledger_client::checkpoint::{
    read_vkey_file, verify_checkpoint, CheckpointError, VerifiedCheckpoint,
};
use ledger_client::merkle::{
    hash_from_base64, hash_to_base64, leaf_hash, parse_hash, verify_consistency, verify_inclusion,
    Hash,
};
use ledger_client::tiles::{
    decode_bundle, encode_bundle, partial_width, TileKind, TilePath, MAX_ENTRY_SIZE,
};
use ledger_client::tlog_proof::{TlogProof, MAX_TLOG_PROOF_SIZE};
use ledger_client::trust::{Advance, TrustError, TrustStore};
use serde::Deserialize;
use serde_json::{json, Value};

use failure::{Failure, Result};
use http::Client;

/// Most entries in one add-batch request (specs/api.md, add-batch).
const MAX_BATCH_ENTRIES: usize = 65_536;

#[derive(Parser)]
#[command(
    name = "ledgerctl",
    version,
    about = "Submit to a ledger log and verify its checkpoints and proofs; push, pull and \
             manage registry artifacts",
    after_help = "Exit codes: 0 success, 1 verification failed, 2 usage or input error, \
                  3 network or server error, 4 refused by the ledger's policy (policy check). \
                  Errors are explained on stderr."
)]
struct Cli {
    /// Print a JSON object on stdout instead of human-readable text.
    #[arg(long, global = true)]
    json: bool,

    /// Timeout for each HTTP exchange, in seconds.
    #[arg(long, global = true, default_value_t = 30, value_name = "SECS")]
    timeout: u64,

    /// File holding the bearer credential (API token, session or identity token) for a
    /// ledger with access control; else the LEDGER_TOKEN environment variable is used.
    #[arg(long, global = true, value_name = "FILE")]
    token_file: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Add an entry (or a batch) to the log and verify the log's answer offline.
    Submit(SubmitArgs),
    /// Fetch and verify the log's checkpoint, and check it against the last one seen.
    Checkpoint(CheckpointArgs),
    /// Fetch a tlog-proof for an entry and verify it.
    Prove(ProveArgs),
    /// Verify a tlog-proof file offline.
    Verify(VerifyArgs),
    /// Check that the log's current checkpoint extends a saved one.
    Consistency(ConsistencyArgs),
    /// Upload an artifact (chunked, resumable) and publish it as NAME@VERSION.
    Push(registry::PushArgs),
    /// Download a published artifact version, checked against its logged digest.
    Pull(registry::PullArgs),
    /// Show one version of an artifact, or all its versions and aliases.
    Show(registry::ShowArgs),
    /// List the entries about a version or an alias, checking their hash chain.
    History(registry::HistoryArgs),
    /// Print the lineage graph around a version.
    Lineage(registry::LineageArgs),
    /// Move a version to another lifecycle stage.
    Promote(registry::PromoteArgs),
    /// Point an alias at a version, or remove it.
    Alias(registry::AliasArgs),
    /// Ask the ledger whether the policy in force would allow a change, without making it.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Fetch or read a log's key history (its logged key rotations), verify it from the
    /// log's first key, and save it for `--key-history`.
    KeyHistory(keys::KeyHistoryArgs),
    /// Fetch an artifact version's verification bundle (its events, their inclusion proofs,
    /// the cosigned checkpoint and its time-stamps) for `verify --artifact --bundle`.
    Bundle(bundle::BundleArgs),
    /// Export part of a log for compliance: entries with proofs, the cosigned checkpoint
    /// and its time-stamps, a CSV summary, optionally the blobs; the export is logged.
    Export(export::ExportArgs),
    /// Verify an export offline.
    VerifyExport(export::VerifyExportArgs),
    /// Auditor's checks: consistency between checkpoints; replay of the registry.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
}

#[derive(Args)]
struct LogArgs {
    /// Log prefix URL, e.g. http://127.0.0.1:8080/artifacts.
    #[arg(long, value_name = "URL")]
    log: String,
    /// File holding the log's verifier key (one vkey line).
    #[arg(long, value_name = "FILE")]
    vkey: PathBuf,
    /// Require this checkpoint origin (default: whatever the key's name is).
    #[arg(long, value_name = "ORIGIN")]
    origin: Option<String>,
}

#[derive(Args)]
struct SubmitArgs {
    #[command(flatten)]
    log: LogArgs,
    /// The entry to add ("-" for stdin). With --batch, a file with one entry per line.
    #[arg(value_name = "FILE|-", default_value = "-")]
    input: String,
    /// Treat the input as one entry per line (\n or \r\n endings) and use add-batch.
    #[arg(long)]
    batch: bool,
    /// Write the tlog-proof here. With --batch, a directory for <index>.tlog-proof files.
    #[arg(long, value_name = "PATH")]
    out: Option<PathBuf>,
    /// Wait until a cosigned, time-stamped checkpoint covers the entry and get the proof
    /// against it (not with --batch).
    #[arg(long, conflicts_with = "batch")]
    wait_attested: bool,
    #[command(flatten)]
    attest: attest::AttestArgs,
}

#[derive(Args)]
struct CheckpointArgs {
    #[command(flatten)]
    log: LogArgs,
    /// Trust-store directory [default: $HOME/.config/ledgerctl/state].
    #[arg(long, value_name = "DIR", conflicts_with = "no_state")]
    state: Option<PathBuf>,
    /// Only verify the signature; do not compare with or update the trust store.
    #[arg(long)]
    no_state: bool,
    /// Save the verified checkpoint to this file.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Fetch the latest cosigned checkpoint instead, and require the quorum of this trust
    /// policy (c2sp.org/tlog-policy).
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// The log's key history (`ledgerctl key-history --out`): `--vkey` is then the log's
    /// first key, and the checkpoint must be signed by the key valid at its size.
    #[arg(long, value_name = "FILE")]
    key_history: Option<PathBuf>,
}

#[derive(Args)]
#[command(group(ArgGroup::new("which").required(true).args(["index", "leaf_hash", "entry"])))]
struct ProveArgs {
    #[command(flatten)]
    log: LogArgs,
    /// Index of the entry.
    #[arg(long, value_name = "N")]
    index: Option<u64>,
    /// Leaf hash of the entry (base64 or hex).
    #[arg(long, value_name = "HASH")]
    leaf_hash: Option<String>,
    /// The entry itself ("-" for stdin); its leaf hash is looked up.
    #[arg(long, value_name = "FILE")]
    entry: Option<String>,
    /// Prove against the checkpoint of this tree size (default: the current one).
    #[arg(long, value_name = "S", conflicts_with = "attested")]
    tree_size: Option<u64>,
    /// Prove against the earliest attested (cosigned, time-stamped) checkpoint that holds
    /// the entry.
    #[arg(long)]
    attested: bool,
    #[command(flatten)]
    attest: attest::AttestArgs,
    /// Write the proof here (default: stdout, unless --json).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Args)]
#[command(group(ArgGroup::new("what").required(true).args(["proof", "bundle"])))]
struct VerifyArgs {
    /// File holding the log's verifier key (one vkey line); optional when --policy lists
    /// the log.
    #[arg(long, value_name = "FILE", required_unless_present = "policy")]
    vkey: Option<PathBuf>,
    /// The .tlog-proof file ("-" for stdin), with --entry or --leaf-hash.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["bundle", "artifact"])]
    proof: Option<String>,
    /// An artifact verification bundle (`ledgerctl bundle`), with --artifact: exit 10 the
    /// file is not the logged one, 11 log signature, 12 witness quorum, 13 time-stamp (or
    /// too old), 14 not in the log, 15 lifecycle state not allowed, 16 not signed by a
    /// --publisher-key, 2 unusable input.
    #[arg(long, value_name = "FILE", requires = "artifact")]
    bundle: Option<String>,
    /// The artifact file a bundle is about.
    #[arg(long, value_name = "FILE", requires = "bundle")]
    artifact: Option<PathBuf>,
    /// With --bundle: the stages the version may be in as of the bundle's checkpoint.
    #[arg(
        long,
        value_name = "STAGES",
        default_value = "approved,released",
        requires = "bundle"
    )]
    require_stage: String,
    /// With --bundle: the newest time-stamp must be at most this old (needs --tsa-roots).
    #[arg(long, value_name = "SECS", requires = "bundle")]
    max_age: Option<u64>,
    /// With --bundle: a trusted publisher's vkey file (repeatable); the publication must
    /// carry a valid signature by one of them (specs/entries.md, "Publisher signatures").
    #[arg(long = "publisher-key", value_name = "FILE", requires = "bundle")]
    publisher_keys: Vec<PathBuf>,
    /// The entry the proof is about ("-" for stdin).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["leaf_hash", "bundle"])]
    entry: Option<String>,
    /// Leaf hash of the entry (base64 or hex), instead of the entry.
    #[arg(long, value_name = "HASH", conflicts_with = "bundle")]
    leaf_hash: Option<String>,
    /// Require this checkpoint origin.
    #[arg(long, value_name = "ORIGIN")]
    origin: Option<String>,
    /// The log's key history: `--vkey` is then the log's first key, and the proof's
    /// checkpoint must be signed by the key valid at its size.
    #[arg(long, value_name = "FILE", requires = "vkey")]
    key_history: Option<PathBuf>,
    #[command(flatten)]
    attest: attest::AttestArgs,
}

#[derive(Args)]
struct ConsistencyArgs {
    #[command(flatten)]
    log: LogArgs,
    /// A checkpoint saved earlier (e.g. with `checkpoint --out`).
    #[arg(long, value_name = "FILE")]
    checkpoint: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let json_out = cli.json;
    let result = run(cli);
    match result {
        Ok(out) => {
            if json_out {
                let mut obj = out.json;
                if let Value::Object(m) = &mut obj {
                    m.insert("ok".into(), Value::Bool(true));
                }
                println!("{obj}");
            } else if !out.human.is_empty() {
                println!("{}", out.human);
            }
            ExitCode::SUCCESS
        }
        Err(f) => {
            eprintln!("ledgerctl: {}", f.message);
            if json_out {
                println!(
                    "{}",
                    json!({"ok": false, "error": {"kind": f.kind.name(), "message": f.message}})
                );
            }
            ExitCode::from(f.kind.exit_code())
        }
    }
}

/// What a successful command reports.
pub(crate) struct Output {
    pub(crate) human: String,
    pub(crate) json: Value,
}

fn run(cli: Cli) -> Result<Output> {
    let timeout = Duration::from_secs(cli.timeout.max(1));
    if let Some(token) = load_token(cli.token_file.as_deref())? {
        http::set_token(token);
    }
    match cli.command {
        Command::Submit(a) => submit(a, timeout),
        Command::Checkpoint(a) => checkpoint(a, timeout),
        Command::Prove(a) => prove(a, timeout, cli.json),
        Command::Verify(a) => verify(a),
        Command::Consistency(a) => consistency(a, timeout),
        Command::Push(a) => registry::push(a, timeout, cli.json),
        Command::Pull(a) => registry::pull(a, timeout, cli.json),
        Command::Show(a) => registry::show(a, timeout),
        Command::History(a) => registry::history(a, timeout),
        Command::Lineage(a) => registry::lineage(a, timeout),
        Command::Promote(a) => registry::promote(a, timeout),
        Command::Alias(a) => registry::alias(a, timeout),
        Command::Policy(policy::PolicyCommand::Check(a)) => policy::check(a, timeout),
        Command::KeyHistory(a) => keys::run(a, timeout),
        Command::Bundle(a) => bundle::make(a, timeout),
        Command::Audit(a) => audit::run(a, timeout),
        Command::Export(a) => export::export(a, timeout),
        Command::VerifyExport(a) => export::verify_export(a),
    }
}

/// The bearer credential from `--token-file` or `LEDGER_TOKEN`, checked to be one line of
/// printable ASCII (RFC 6750 §2.1 b64token characters are a subset).
fn load_token(file: Option<&Path>) -> Result<Option<String>> {
    let (raw, what) = match file {
        Some(p) => (
            String::from_utf8(read_input(&p.to_string_lossy(), 16 * 1024, "token file")?)
                .map_err(|_| Failure::input(format!("token file {} is not UTF-8", p.display())))?,
            format!("token file {}", p.display()),
        ),
        None => match std::env::var("LEDGER_TOKEN") {
            Ok(t) if !t.trim().is_empty() => (t, "LEDGER_TOKEN".to_string()),
            _ => return Ok(None),
        },
    };
    let token = raw.trim();
    if token.is_empty() || token.len() > 16 * 1024 || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Failure::input(format!(
            "{what} must hold one credential: printable ASCII without spaces, at most 16 KiB"
        )));
    }
    Ok(Some(token.to_string()))
}

// ---------------------------------------------------------------- input helpers

pub(crate) fn load_vkey(path: &Path) -> Result<String> {
    read_vkey_file(path).map_err(|e| Failure::input(e.to_string()))
}

/// Reads a file, or stdin for "-", refusing more than `limit` bytes.
pub(crate) fn read_input(name: &str, limit: usize, what: &str) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    let res = if name == "-" {
        std::io::stdin()
            .lock()
            .take(limit as u64 + 1)
            .read_to_end(&mut buf)
    } else {
        std::fs::File::open(name).and_then(|f| f.take(limit as u64 + 1).read_to_end(&mut buf))
    };
    res.map_err(|e| Failure::input(format!("cannot read {what} {name}: {e}")))?;
    if buf.len() > limit {
        return Err(Failure::input(format!(
            "{what} {name} is larger than {limit} bytes"
        )));
    }
    Ok(buf)
}

pub(crate) fn write_file(path: &Path, data: &[u8]) -> Result<()> {
    std::fs::write(path, data)
        .map_err(|e| Failure::input(format!("cannot write {}: {e}", path.display())))
}

fn parse_user_hash(s: &str) -> Result<Hash> {
    parse_hash(s).map_err(|e| Failure::input(format!("--leaf-hash: {e}")))
}

fn entry_leaf(name: &str) -> Result<Hash> {
    let data = read_input(name, MAX_ENTRY_SIZE, "entry")?;
    if data.is_empty() {
        return Err(Failure::input(format!("entry {name} is empty")));
    }
    Ok(leaf_hash(&data))
}

/// Maps a checkpoint problem to an exit class: a checkpoint the user gave us that is
/// malformed is an input error, one the server sent is a server error; a failed signature
/// or origin check is a verification failure either way.
pub(crate) fn checkpoint_failure(e: CheckpointError, from_server: bool, what: &str) -> Failure {
    let msg = format!("{what}: {e}");
    if e.is_malformed() {
        if from_server && !matches!(e, CheckpointError::BadVkey { .. } | CheckpointError::NoKeys) {
            Failure::server(msg)
        } else {
            Failure::input(msg)
        }
    } else {
        Failure::verification(msg)
    }
}

fn verify_server_checkpoint(
    note: &[u8],
    vkey: &str,
    origin: Option<&str>,
) -> Result<VerifiedCheckpoint> {
    verify_checkpoint(note, &[vkey], origin)
        .map_err(|e| checkpoint_failure(e, true, "checkpoint from the log"))
}

fn parse_server_hashes(list: &[String], what: &str) -> Result<Vec<Hash>> {
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            hash_from_base64(s)
                .map_err(|e| Failure::server(format!("{what} hash #{i} from the log: {e}")))
        })
        .collect()
}

pub(crate) fn parse_json<T: for<'de> Deserialize<'de>>(body: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| {
        Failure::server(format!(
            "the log's {what} answer is not the expected JSON: {e}"
        ))
    })
}

fn checkpoint_json(cp: &VerifiedCheckpoint) -> Value {
    json!({"origin": cp.origin, "tree_size": cp.size, "root": cp.root_base64()})
}

// ---------------------------------------------------------------- submit

#[derive(Deserialize)]
struct AddResponse {
    index: u64,
    leaf_hash: String,
    duplicate: bool,
    tree_size: u64,
    inclusion_proof: Vec<String>,
    checkpoint: String,
    tlog_proof: String,
}

#[derive(Deserialize)]
struct BatchResponse {
    tree_size: u64,
    checkpoint: String,
    entries: Vec<BatchEntry>,
}

#[derive(Deserialize)]
struct BatchEntry {
    index: u64,
    leaf_hash: String,
    duplicate: bool,
    #[serde(default)]
    inclusion_proof: Option<Vec<String>>,
}

fn submit(a: SubmitArgs, timeout: Duration) -> Result<Output> {
    let vkey = load_vkey(&a.log.vkey)?;
    let client = Client::new(&a.log.log, timeout)?;
    if a.batch {
        return submit_batch(a, &vkey, &client);
    }
    let entry = read_input(&a.input, MAX_ENTRY_SIZE, "entry")?;
    if entry.is_empty() {
        return Err(Failure::input(format!("entry {} is empty", a.input)));
    }
    let leaf = leaf_hash(&entry);
    let required = a.attest.load()?;
    let mut query: Vec<(&str, String)> = vec![];
    if a.wait_attested {
        query.push(("wait", "attested".to_string()));
    }
    let body = client.post("add", &query, &entry)?;
    let r: AddResponse = parse_json(&body, "add")?;

    // Believe nothing the log says until it is proven.
    let claimed = hash_from_base64(&r.leaf_hash)
        .map_err(|e| Failure::server(format!("leaf_hash from the log: {e}")))?;
    if claimed != leaf {
        return Err(Failure::verification(format!(
            "the log reports leaf hash {} but the entry hashes to {}",
            r.leaf_hash,
            hash_to_base64(&leaf)
        )));
    }
    let cp = verify_server_checkpoint(r.checkpoint.as_bytes(), &vkey, a.log.origin.as_deref())?;
    if cp.size != r.tree_size {
        return Err(Failure::verification(format!(
            "the log says tree_size {} but its checkpoint is for size {}",
            r.tree_size, cp.size
        )));
    }
    let proof = parse_server_hashes(&r.inclusion_proof, "inclusion proof")?;
    verify_inclusion(&leaf, r.index, cp.size, &proof, &cp.root).map_err(|e| {
        Failure::verification(format!(
            "inclusion proof for index {} in tree size {} does not verify: {e}",
            r.index, cp.size
        ))
    })?;
    let tp = TlogProof::parse(r.tlog_proof.as_bytes())
        .map_err(|e| Failure::server(format!("tlog_proof from the log: {e}")))?;
    if tp.index != r.index {
        return Err(Failure::verification(format!(
            "the log's tlog_proof is for index {}, not {}",
            tp.index, r.index
        )));
    }
    let attested = required.verify(
        &tp,
        &leaf,
        &[&vkey],
        Some(&cp.origin),
        true,
        "tlog_proof from the log",
    )?;
    let (extra_human, _) = attest::report(&attested);
    if let Some(out) = &a.out {
        write_file(out, r.tlog_proof.as_bytes())?;
    }
    Ok(Output {
        human: format!(
            "{} entry at index {} (leaf hash {}); verified in {} at tree size {}{extra_human}{}",
            if r.duplicate {
                "already logged:"
            } else {
                "logged:"
            },
            r.index,
            hash_to_base64(&leaf),
            cp.origin,
            cp.size,
            a.out
                .as_ref()
                .map(|p| format!("; proof written to {}", p.display()))
                .unwrap_or_default()
        ),
        json: json!({
            "index": r.index,
            "leaf_hash": hash_to_base64(&leaf),
            "duplicate": r.duplicate,
            "checkpoint": checkpoint_json(&cp),
            "tlog_proof": r.tlog_proof,
        }),
    })
}

/// Splits a batch file into entries: one per line, `\n` or `\r\n` endings, a final line
/// ending optional. Empty lines are refused (the log refuses empty entries).
fn batch_entries(data: &[u8]) -> Result<Vec<&[u8]>> {
    let mut out = Vec::new();
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    if body.is_empty() {
        return Err(Failure::input("batch input has no entries"));
    }
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return Err(Failure::input(format!(
                "batch line {} is empty; entries must be 1..=65535 bytes",
                i + 1
            )));
        }
        if line.len() > MAX_ENTRY_SIZE {
            return Err(Failure::input(format!(
                "batch line {} is {} bytes; entries must be at most 65535 bytes",
                i + 1,
                line.len()
            )));
        }
        out.push(line);
    }
    if out.len() > MAX_BATCH_ENTRIES {
        return Err(Failure::input(format!(
            "batch has {} entries; at most {MAX_BATCH_ENTRIES} per request",
            out.len()
        )));
    }
    Ok(out)
}

fn submit_batch(a: SubmitArgs, vkey: &str, client: &Client) -> Result<Output> {
    let data = read_input(&a.input, 64 * 1024 * 1024, "batch file")?;
    let entries = batch_entries(&data)?;
    let bundle =
        encode_bundle(entries.iter().copied()).map_err(|e| Failure::input(e.to_string()))?;
    let body = client.post("add-batch", &[("proofs", "true".into())], &bundle)?;
    let r: BatchResponse = parse_json(&body, "add-batch")?;
    let cp = verify_server_checkpoint(r.checkpoint.as_bytes(), vkey, a.log.origin.as_deref())?;
    if cp.size != r.tree_size {
        return Err(Failure::verification(format!(
            "the log says tree_size {} but its checkpoint is for size {}",
            r.tree_size, cp.size
        )));
    }
    if r.entries.len() != entries.len() {
        return Err(Failure::verification(format!(
            "sent {} entries but the log answered for {}",
            entries.len(),
            r.entries.len()
        )));
    }
    if let Some(dir) = &a.out {
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure::input(format!("cannot create {}: {e}", dir.display())))?;
    }
    let mut results = Vec::with_capacity(entries.len());
    let mut human = Vec::with_capacity(entries.len() + 1);
    for (i, (entry, got)) in entries.iter().zip(&r.entries).enumerate() {
        let leaf = leaf_hash(entry);
        let claimed = hash_from_base64(&got.leaf_hash)
            .map_err(|e| Failure::server(format!("leaf_hash of batch entry {i}: {e}")))?;
        if claimed != leaf {
            return Err(Failure::verification(format!(
                "batch entry {i}: the log reports leaf hash {} but the entry hashes to {}",
                got.leaf_hash,
                hash_to_base64(&leaf)
            )));
        }
        let list = got.inclusion_proof.as_ref().ok_or_else(|| {
            Failure::server(format!("batch entry {i}: the log sent no inclusion_proof"))
        })?;
        let proof = parse_server_hashes(list, "inclusion proof")?;
        verify_inclusion(&leaf, got.index, cp.size, &proof, &cp.root).map_err(|e| {
            Failure::verification(format!(
                "batch entry {i} (index {}): inclusion proof does not verify: {e}",
                got.index
            ))
        })?;
        if let Some(dir) = &a.out {
            let tp = TlogProof {
                extra: None,
                index: got.index,
                inclusion_proof: proof,
                checkpoint: cp.note.clone(),
            };
            write_file(
                &dir.join(format!("{}.tlog-proof", got.index)),
                &tp.to_bytes(),
            )?;
        }
        human.push(format!(
            "{}\t{}{}",
            got.index,
            hash_to_base64(&leaf),
            if got.duplicate { "\t(duplicate)" } else { "" }
        ));
        results.push(json!({
            "index": got.index,
            "leaf_hash": hash_to_base64(&leaf),
            "duplicate": got.duplicate,
        }));
    }
    human.push(format!(
        "{} entries verified in {} at tree size {}",
        entries.len(),
        cp.origin,
        cp.size
    ));
    Ok(Output {
        human: human.join("\n"),
        json: json!({"checkpoint": checkpoint_json(&cp), "entries": results}),
    })
}

// ---------------------------------------------------------------- checkpoint

#[derive(Deserialize)]
struct ConsistencyResponse {
    from: u64,
    to: u64,
    consistency_proof: Vec<String>,
}

/// Fetches the consistency proof between two sizes, checking the answer is for them.
pub(crate) fn fetch_consistency(client: &Client, from: u64, to: u64) -> Result<Vec<Hash>> {
    if from == 0 || from == to {
        return Ok(Vec::new());
    }
    let body = client.get(
        "proof/consistency",
        &[("from", from.to_string()), ("to", to.to_string())],
    )?;
    let r: ConsistencyResponse = parse_json(&body, "proof/consistency")?;
    if (r.from, r.to) != (from, to) {
        return Err(Failure::server(format!(
            "asked for a consistency proof {from} -> {to}, got {} -> {}",
            r.from, r.to
        )));
    }
    parse_server_hashes(&r.consistency_proof, "consistency proof")
}

fn default_state_dir() -> Result<PathBuf> {
    match std::env::var_os("HOME") {
        Some(home) if !home.is_empty() => Ok(PathBuf::from(home).join(".config/ledgerctl/state")),
        _ => Err(Failure::input(
            "HOME is not set: give the trust store with --state DIR (or use --no-state)",
        )),
    }
}

fn trust_failure(e: TrustError) -> Failure {
    match e {
        TrustError::Io { .. } | TrustError::Corrupt { .. } => Failure::input(e.to_string()),
        TrustError::StoredCheckpoint { .. }
        | TrustError::Rollback { .. }
        | TrustError::Fork { .. }
        | TrustError::Inconsistent { .. } => Failure::verification(e.to_string()),
    }
}

fn checkpoint(a: CheckpointArgs, timeout: Duration) -> Result<Output> {
    let vkey = load_vkey(&a.log.vkey)?;
    let client = Client::new(&a.log.log, timeout)?;
    let required = attest::AttestArgs {
        policy: a.policy.clone(),
        tsa_roots: None,
    }
    .load()?;
    let note = client.get(
        if a.policy.is_some() {
            "cosigned-checkpoint"
        } else {
            "checkpoint"
        },
        &[],
    )?;
    let history = a
        .key_history
        .as_deref()
        .map(|p| keys::load(p, &vkey))
        .transpose()?;
    let (cp, signing_keys, all_keys) = match &history {
        Some(h) => {
            let cp = keys::verify_checkpoint(h, &note, "checkpoint from the log")?;
            if let Some(o) = a.log.origin.as_deref().filter(|o| *o != cp.origin) {
                return Err(Failure::verification(format!(
                    "checkpoint origin is {:?}, expected {o:?}",
                    cp.origin
                )));
            }
            let at = h.keys_at(cp.size);
            (cp, at, h.all_keys())
        }
        None => (
            verify_server_checkpoint(&note, &vkey, a.log.origin.as_deref())?,
            vec![vkey.as_str()],
            vec![vkey.as_str()],
        ),
    };
    let cosigners = required.verify_checkpoint_quorum(&note, &signing_keys)?;

    let mut state_json = Value::Null;
    let mut state_human = String::new();
    if !a.no_state {
        let dir = match a.state {
            Some(d) => d,
            None => default_state_dir()?,
        };
        let store = TrustStore::open(&dir).map_err(trust_failure)?;
        // A checkpoint saved before a rotation is signed by an older key of the log.
        let previous = store.latest(&cp.origin, &all_keys).map_err(trust_failure)?;
        let proof = match &previous {
            Some(old) if old.size < cp.size => fetch_consistency(&client, old.size, cp.size)?,
            _ => Vec::new(),
        };
        let adv = store.advance(&cp, &proof).map_err(trust_failure)?;
        (state_json, state_human) = match adv {
            Advance::FirstUse { .. } => (
                json!({"result": "first_use", "dir": dir}),
                format!(
                    "first checkpoint seen for this log: trusted on first use ({})",
                    dir.display()
                ),
            ),
            Advance::Unchanged { .. } => (
                json!({"result": "unchanged", "dir": dir}),
                "unchanged since last check".to_string(),
            ),
            Advance::Advanced { from, to } => (
                json!({"result": "advanced", "from": from, "to": to, "dir": dir}),
                format!("consistent with the last checkpoint seen (size {from} -> {to})"),
            ),
        };
    }
    if let Some(out) = &a.out {
        write_file(out, &cp.note)?;
    }
    let mut human = format!(
        "verified checkpoint of {}: tree size {}, root {}",
        cp.origin,
        cp.size,
        cp.root_base64()
    );
    if a.policy.is_some() {
        let names: Vec<&str> = cosigners.iter().map(|(n, _)| n.as_str()).collect();
        human.push_str(&format!(
            "\nwitness quorum met: cosigned by {}",
            if names.is_empty() {
                "nobody (the policy needs none)".to_string()
            } else {
                names.join(", ")
            }
        ));
    }
    if !state_human.is_empty() {
        human.push('\n');
        human.push_str(&state_human);
    }
    Ok(Output {
        human,
        json: json!({
            "checkpoint": checkpoint_json(&cp),
            "note": String::from_utf8_lossy(&cp.note),
            "state": state_json,
            "cosigners": cosigners.iter().map(|(n, t)| json!({"witness": n, "time": t})).collect::<Vec<_>>(),
        }),
    })
}

// ---------------------------------------------------------------- prove

/// The entry bundle holding `index` in a tree of `size` leaves (c2sp.org/tlog-tiles#log-entries):
/// full when the tree covers the whole bundle, else the partial bundle of that size.
fn bundle_for(index: u64, size: u64) -> TilePath {
    let n = index / 256;
    let full_end = (n + 1).saturating_mul(256);
    if full_end <= size {
        TilePath::full(TileKind::Entries, n)
    } else {
        TilePath {
            kind: TileKind::Entries,
            index: n,
            width: partial_width(size, 0),
        }
    }
}

/// Visits entries `range` (clipped to `size`) of the log at `prefix` (a path under
/// `client`'s base), in order, reading its tlog-tiles entry bundles for a tree of `size`
/// entries. A bundle that does not decode, or holds other than its width, is reported
/// through `bad` (the caller decides whose fault that is).
pub(crate) fn for_each_entry(
    client: &Client,
    prefix: &str,
    size: u64,
    range: std::ops::Range<u64>,
    bad: fn(String) -> Failure,
    mut visit: impl FnMut(u64, &[u8]) -> Result<()>,
) -> Result<()> {
    let end = range.end.min(size);
    let mut b = range.start / 256;
    while b * 256 < end {
        let width = (size - b * 256).min(256) as u16;
        let path = TilePath {
            kind: TileKind::Entries,
            index: b,
            width,
        };
        let rel = format!("{prefix}/{}", path.to_path());
        let bytes = client.get(&rel, &[])?;
        let entries = decode_bundle(&bytes).map_err(|e| bad(format!("{rel}: {e}")))?;
        if entries.len() != usize::from(width) {
            return Err(bad(format!(
                "{rel} holds {} entries, not {width}",
                entries.len()
            )));
        }
        for (k, e) in entries.iter().enumerate() {
            let index = b * 256 + k as u64;
            if range.contains(&index) {
                visit(index, e)?;
            }
        }
        b += 1;
    }
    Ok(())
}

/// Fetches entry `index` from the log's entry bundles, for a tree of `size` leaves. The
/// entry is not trusted: the inclusion proof checked afterwards authenticates it.
fn fetch_entry(client: &Client, index: u64, size: u64) -> Result<Vec<u8>> {
    let tile = bundle_for(index, size);
    let data = match client.get_optional(&tile.to_path())? {
        Some(d) => d,
        // c2sp.org/tlog-tiles#partial-tiles: a partial tile may be gone once the full tile
        // exists; the full one is the fallback.
        None if tile.is_partial() => {
            let full = TilePath::full(TileKind::Entries, tile.index);
            client.get_optional(&full.to_path())?.ok_or_else(|| {
                Failure::server(format!("entry bundle {} not found (404)", full.to_path()))
            })?
        }
        None => {
            return Err(Failure::server(format!(
                "entry bundle {} not found (404)",
                tile.to_path()
            )))
        }
    };
    let entries = decode_bundle(&data)
        .map_err(|e| Failure::server(format!("entry bundle {}: {e}", tile.to_path())))?;
    let pos = (index % 256) as usize;
    entries.get(pos).map(|e| e.to_vec()).ok_or_else(|| {
        Failure::server(format!(
            "entry bundle {} has {} entries, no entry {pos}",
            tile.to_path(),
            entries.len()
        ))
    })
}

fn prove(a: ProveArgs, timeout: Duration, json_mode: bool) -> Result<Output> {
    let vkey = load_vkey(&a.log.vkey)?;
    let client = Client::new(&a.log.log, timeout)?;
    let mut leaf = match (&a.leaf_hash, &a.entry) {
        (Some(h), _) => Some(parse_user_hash(h)?),
        (None, Some(e)) => Some(entry_leaf(e)?),
        (None, None) => None,
    };
    let mut query = Vec::new();
    match (a.index, &leaf) {
        (Some(i), _) => query.push(("index", i.to_string())),
        // Hex needs no URL escaping (base64 has '+', '/' and '='); the API takes both.
        (None, Some(h)) => query.push(("leaf_hash", ledger_client::merkle::hash_to_hex(h))),
        (None, None) => return Err(Failure::input("give --index, --leaf-hash or --entry")),
    }
    if let Some(s) = a.tree_size {
        query.push(("tree_size", s.to_string()));
    }
    if a.attested {
        query.push(("attested", "true".to_string()));
    }
    let required = a.attest.load()?;
    let body = client.get("proof/tlog-proof", &query)?;
    if body.len() > MAX_TLOG_PROOF_SIZE {
        return Err(Failure::server("the log's tlog-proof is too large"));
    }
    let tp = TlogProof::parse(&body)
        .map_err(|e| Failure::server(format!("tlog-proof from the log: {e}")))?;
    let cp = verify_server_checkpoint(&tp.checkpoint, &vkey, a.log.origin.as_deref())?;
    if let Some(i) = a.index {
        if tp.index != i {
            return Err(Failure::verification(format!(
                "asked for index {i}, the log proved index {}",
                tp.index
            )));
        }
    }
    if let Some(s) = a.tree_size {
        if cp.size != s {
            return Err(Failure::verification(format!(
                "asked for tree size {s}, the log's checkpoint is for size {}",
                cp.size
            )));
        }
    }
    if tp.index >= cp.size {
        return Err(Failure::verification(format!(
            "the proof's index {} is not inside the checkpoint's tree of size {}",
            tp.index, cp.size
        )));
    }
    if leaf.is_none() {
        let entry = fetch_entry(&client, tp.index, cp.size)?;
        leaf = Some(leaf_hash(&entry));
    }
    let leaf = leaf.unwrap_or_default();
    let attested = required.verify(
        &tp,
        &leaf,
        &[&vkey],
        Some(&cp.origin),
        true,
        "tlog-proof from the log",
    )?;
    let (extra_human, extra_json) = attest::report(&attested);
    let text = String::from_utf8_lossy(&body).into_owned();
    let mut human = String::new();
    match &a.out {
        Some(out) => {
            write_file(out, &body)?;
            human = format!(
                "verified: entry {} ({}) is in {} at tree size {}{extra_human}; proof written to {}",
                tp.index,
                hash_to_base64(&leaf),
                cp.origin,
                cp.size,
                out.display()
            );
        }
        None if !json_mode => {
            // The proof itself goes to stdout so it can be redirected; the summary to stderr.
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(&body)
                .and_then(|_| stdout.flush())
                .map_err(|e| Failure::input(format!("cannot write the proof to stdout: {e}")))?;
            eprintln!(
                "verified: entry {} is in {} at tree size {}{extra_human}",
                tp.index, cp.origin, cp.size
            );
        }
        None => {}
    }
    Ok(Output {
        human,
        json: json!({
            "index": tp.index,
            "leaf_hash": hash_to_base64(&leaf),
            "checkpoint": checkpoint_json(&cp),
            "tlog_proof": text,
            "attestation": extra_json,
        }),
    })
}

// ---------------------------------------------------------------- verify (offline)

fn verify(a: VerifyArgs) -> Result<Output> {
    let vkey = a.vkey.as_deref().map(load_vkey).transpose()?;
    let required = a.attest.load()?;
    if let (Some(bundle_file), Some(artifact)) = (&a.bundle, &a.artifact) {
        let stages = a
            .require_stage
            .split(',')
            .map(|s| {
                registry::parse_stage(s.trim())
                    .map_err(|e| Failure::input(format!("--require-stage {s:?}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        if a.max_age.is_some() && required.roots.is_none() {
            return Err(Failure::input(
                "--max-age needs --tsa-roots to date the checkpoint",
            ));
        }
        return bundle::verify(bundle::VerifyBundle {
            artifact,
            bundle: bundle_file,
            vkey,
            loaded: &required,
            stages,
            max_age: a.max_age,
            publisher_keys: &a.publisher_keys,
        });
    }
    let proof_file = a.proof.clone().ok_or_else(|| {
        Failure::input("give --proof (with --entry or --leaf-hash) or --bundle with --artifact")
    })?;
    let bytes = read_input(&proof_file, MAX_TLOG_PROOF_SIZE, "proof file")?;
    let tp = TlogProof::parse(&bytes)
        .map_err(|e| Failure::input(format!("proof file {proof_file}: {e}")))?;
    let history = match (&a.key_history, &vkey) {
        (Some(p), Some(v)) => Some(keys::load(p, v)?),
        _ => None,
    };
    // With a key history, only the keys valid at the proof's tree size count.
    let vkeys: Vec<&str> = match &history {
        Some(h) => {
            let cp = keys::verify_checkpoint(
                h,
                &tp.checkpoint,
                &format!("proof file {proof_file}: checkpoint"),
            )?;
            h.keys_at(cp.size)
        }
        None => vkey.iter().map(String::as_str).collect(),
    };
    let leaf = match (&a.entry, &a.leaf_hash) {
        (Some(e), _) => entry_leaf(e)?,
        (None, Some(h)) => parse_user_hash(h)?,
        (None, None) => return Err(Failure::input("give --entry or --leaf-hash")),
    };
    let attested = required.verify(
        &tp,
        &leaf,
        &vkeys,
        a.origin.as_deref(),
        false,
        &format!("proof file {proof_file}"),
    )?;
    let cp = &attested.checkpoint;
    let (extra_human, extra_json) = attest::report(&attested);
    Ok(Output {
        human: format!(
            "verified: entry {} ({}) is in {} at tree size {} (root {}){extra_human}",
            tp.index,
            hash_to_base64(&leaf),
            cp.origin,
            cp.size,
            cp.root_base64()
        ),
        json: json!({
            "verified": true,
            "index": tp.index,
            "leaf_hash": hash_to_base64(&leaf),
            "checkpoint": checkpoint_json(cp),
            "attestation": extra_json,
        }),
    })
}

// ---------------------------------------------------------------- consistency

fn consistency(a: ConsistencyArgs, timeout: Duration) -> Result<Output> {
    let vkey = load_vkey(&a.log.vkey)?;
    let saved_bytes = std::fs::read(&a.checkpoint)
        .map_err(|e| Failure::input(format!("cannot read {}: {e}", a.checkpoint.display())))?;
    let saved =
        verify_checkpoint(&saved_bytes, &[&vkey], a.log.origin.as_deref()).map_err(|e| {
            checkpoint_failure(
                e,
                false,
                &format!("saved checkpoint {}", a.checkpoint.display()),
            )
        })?;
    let client = Client::new(&a.log.log, timeout)?;
    let note = client.get("checkpoint", &[])?;
    let current = verify_server_checkpoint(&note, &vkey, Some(&saved.origin))?;
    if current.size < saved.size {
        return Err(Failure::verification(format!(
            "rollback: the log's checkpoint has tree size {}, smaller than the saved {}",
            current.size, saved.size
        )));
    }
    let proof = fetch_consistency(&client, saved.size, current.size)?;
    verify_consistency(saved.size, &saved.root, current.size, &current.root, &proof).map_err(
        |e| {
            Failure::verification(format!(
                "inconsistent: tree size {} -> {}: {e}",
                saved.size, current.size
            ))
        },
    )?;
    Ok(Output {
        human: format!(
            "consistent: {} grew from tree size {} to {} (root {})",
            current.origin,
            saved.size,
            current.size,
            current.root_base64()
        ),
        json: json!({
            "consistent": true,
            "from": checkpoint_json(&saved),
            "to": checkpoint_json(&current),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_lines() {
        assert_eq!(
            batch_entries(b"a\nbc\r\nd").unwrap(),
            vec![&b"a"[..], b"bc", b"d"]
        );
        assert_eq!(batch_entries(b"a\n").unwrap(), vec![&b"a"[..]]);
        assert!(batch_entries(b"").is_err());
        assert!(batch_entries(b"\n").is_err());
        assert!(batch_entries(b"a\n\nb").is_err());
        assert!(batch_entries(b"a\r\n\r\n").is_err());
    }

    #[test]
    fn bundle_paths() {
        assert_eq!(bundle_for(0, 1).to_path(), "tile/entries/000.p/1");
        assert_eq!(bundle_for(255, 256).to_path(), "tile/entries/000");
        assert_eq!(bundle_for(256, 300).to_path(), "tile/entries/001.p/44");
        assert_eq!(bundle_for(3, 70_000).to_path(), "tile/entries/000");
        assert_eq!(
            bundle_for(69_999, 70_000).to_path(),
            "tile/entries/273.p/112"
        );
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
