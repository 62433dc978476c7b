//! `ledgerctl key-history`: fetch (or read) a log's key history, verify it from the key
//! the caller trusts from the start, and save it; `--key-history FILE` on `checkpoint` and
//! `verify` then accepts a checkpoint only from a key valid at its tree size
//! (specs/keys.md, "Rotation").

use crate::failure::{Failure, Result};
use crate::http::Client;
use crate::{load_vkey, read_input, write_file, Output};
use clap::{ArgGroup, Args};
use ledger_client::checkpoint::VerifiedCheckpoint;
use ledger_client::rotation::{HistoryFile, KeyHistory, RotationError};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A key-history file beyond this is refused (1,024 rotations fit easily).
const MAX_HISTORY_FILE: usize = 4 << 20;

#[derive(Args)]
#[command(group(ArgGroup::new("source").required(true).args(["log", "file"])))]
pub struct KeyHistoryArgs {
    /// Log prefix URL: fetch `<URL>/key-history`.
    #[arg(long, value_name = "URL")]
    log: Option<String>,
    /// Verify a saved key-history file instead (no network).
    #[arg(long, value_name = "FILE")]
    file: Option<String>,
    /// The log's first key, trusted from the start (one vkey line).
    #[arg(long, value_name = "FILE")]
    vkey: PathBuf,
    /// Save the verified history here.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

fn rotation_failure(e: RotationError, what: &str) -> Failure {
    match e {
        RotationError::Malformed(_) => Failure::input(format!("{what}: {e}")),
        _ => Failure::verification(format!("{what}: {e}")),
    }
}

/// Parses and verifies a key-history file from the trusted first key.
fn verify_bytes(bytes: &[u8], genesis: &str, what: &str) -> Result<KeyHistory> {
    let file: HistoryFile = serde_json::from_slice(bytes)
        .map_err(|e| Failure::input(format!("{what} is not a key history: {e}")))?;
    file.verify(genesis).map_err(|e| rotation_failure(e, what))
}

/// `--key-history FILE` of other commands, checked from the `--vkey` key.
pub fn load(path: &Path, genesis: &str) -> Result<KeyHistory> {
    let name = path.to_string_lossy();
    let bytes = read_input(&name, MAX_HISTORY_FILE, "key history")?;
    verify_bytes(&bytes, genesis, &format!("key history {name}"))
}

/// A checkpoint verified under the key valid at its size.
pub fn verify_checkpoint(h: &KeyHistory, note: &[u8], what: &str) -> Result<VerifiedCheckpoint> {
    h.verify_checkpoint(note)
        .map_err(|e| rotation_failure(e, what))
}

pub fn run(a: KeyHistoryArgs, timeout: Duration) -> Result<Output> {
    let genesis = load_vkey(&a.vkey)?;
    let (bytes, what) = match (&a.log, &a.file) {
        (Some(url), _) => (
            Client::new(url, timeout)?.get("key-history", &[])?,
            format!("the key history of {url}"),
        ),
        (None, Some(f)) => (
            read_input(f, MAX_HISTORY_FILE, "key history")?,
            format!("key history {f}"),
        ),
        (None, None) => return Err(Failure::input("give --log or --file")),
    };
    let h = verify_bytes(&bytes, &genesis, &what)?;
    if let Some(out) = &a.out {
        write_file(out, &bytes)?;
    }
    let mut human = vec![format!(
        "verified the key history of {}: {} rotation(s)",
        h.origin,
        h.periods.len() - 1
    )];
    for p in &h.periods {
        human.push(format!(
            "  {}: tree sizes {}..{}",
            p.vkey,
            p.from_size,
            p.until_size.map_or("".to_string(), |u| u.to_string())
        ));
    }
    Ok(Output {
        human: human.join("\n"),
        json: json!({"origin": h.origin, "current": h.current(), "periods": h.periods}),
    })
}
