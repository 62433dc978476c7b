//! `ledgerctl bundle`: fetch an artifact version's verification bundle (specs/bundle.md);
//! `ledgerctl verify --artifact FILE --bundle FILE`: check it offline, with one exit code
//! per failed check.

use crate::failure::{Failure, Result};
use crate::http::Client;
use crate::{load_vkey, parse_json, read_input, write_file, Output};
use clap::Args;
use ledger_client::bundle::{self, Bundle, BundleError, Failure as Check, Requirements};
use ledger_client::digest::Digest;
use ledger_client::event::Stage;
use ledger_client::merkle::{hash_from_base64, Hash};
use ledger_client::tlog_proof::TlogProof;
use serde::Deserialize;
use serde_json::json;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Args)]
pub struct BundleArgs {
    /// Ledger base URL, e.g. http://127.0.0.1:8080.
    #[arg(long, value_name = "URL")]
    server: String,
    /// The registry's log.
    #[arg(long, value_name = "NAME", default_value = "artifacts")]
    log: String,
    /// The log's verifier key: the bundle is checked before it is written.
    #[arg(long, value_name = "FILE")]
    vkey: PathBuf,
    #[arg(long, value_name = "N")]
    name: String,
    #[arg(long, value_name = "V")]
    version: String,
    /// Where to write the bundle.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Also write the publication's standard c2sp.org/tlog-proof (time-stamp tokens in
    /// its extra data) here.
    #[arg(long, value_name = "FILE")]
    tlog_proof: Option<PathBuf>,
    /// Wait up to this many seconds for an attested checkpoint that covers every event of
    /// the version (the ledger attests at its own cadence).
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    wait: u64,
}

#[derive(Deserialize)]
struct History {
    entries: Vec<HistoryItem>,
}
#[derive(Deserialize)]
struct HistoryItem {
    index: u64,
}
#[derive(Deserialize)]
pub(crate) struct Attestation {
    pub(crate) tree_size: u64,
    pub(crate) checkpoint: String,
    #[serde(default)]
    pub(crate) timestamps: Vec<String>,
}
#[derive(Deserialize)]
struct EntryAnswer {
    entry: String,
}
#[derive(Deserialize)]
pub(crate) struct InclusionAnswer {
    pub(crate) inclusion_proof: Vec<String>,
}

pub fn make(a: BundleArgs, timeout: Duration) -> Result<Output> {
    let vkey = load_vkey(&a.vkey)?;
    let server = Client::new(&a.server, timeout)?;
    // The latest attested checkpoint: cosigned and time-stamped. Every entry is proved
    // against this one checkpoint, so the bundle states the version as of it.
    let deadline = std::time::Instant::now() + Duration::from_secs(a.wait);
    let (att, history) = loop {
        let att: Attestation = parse_json(
            &server.get(&format!("{}/attestation", a.log), &[])?,
            "attestation",
        )?;
        let history: History = parse_json(
            &server.get(
                "registry/v1/history",
                &[("name", a.name.clone()), ("version", a.version.clone())],
            )?,
            "history",
        )?;
        let covered = history.entries.iter().all(|i| i.index < att.tree_size);
        if covered || std::time::Instant::now() >= deadline {
            break (att, history);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut entries = vec![];
    for item in history.entries.iter().filter(|i| i.index < att.tree_size) {
        let e: EntryAnswer = parse_json(
            &server.get(&format!("registry/v1/entry/{}", item.index), &[])?,
            "entry",
        )?;
        let p: InclusionAnswer = parse_json(
            &server.get(
                &format!("{}/proof/inclusion", a.log),
                &[
                    ("index", item.index.to_string()),
                    ("tree_size", att.tree_size.to_string()),
                ],
            )?,
            "proof/inclusion",
        )?;
        entries.push(bundle::BundleEntry {
            index: item.index,
            entry: e.entry,
            inclusion_proof: p.inclusion_proof,
        });
    }
    if entries.is_empty() {
        return Err(Failure::server(format!(
            "{}@{} has no entry in the latest attested checkpoint (tree size {}): wait for the next attestation",
            a.name, a.version, att.tree_size
        )));
    }
    let b = Bundle {
        format: bundle::FORMAT.to_string(),
        name: a.name.clone(),
        version: a.version.clone(),
        checkpoint: att.checkpoint,
        timestamps: att.timestamps,
        entries,
    };
    // Check what was fetched before writing it: signature, inclusion, chain. (The file's
    // digest and the stage are the verifier's business.)
    let first = base64_decode(&b.entries[0].entry)?;
    let published = match ledger_client::event::Event::decode(&first) {
        Ok(ledger_client::event::Event::Published(p)) => p,
        _ => {
            return Err(Failure::server(
                "the version's first entry is not its publication",
            ))
        }
    };
    let all_stages = Stage::ALL;
    let v = bundle::verify(
        &b,
        &published.digest,
        published.size,
        &Requirements {
            log_vkeys: &[&vkey],
            policy: None,
            tsa_roots: None,
            allowed_stages: all_stages,
            max_age: None,
            publishers: None,
        },
    )
    .map_err(|e| Failure::server(format!("the fetched bundle does not verify: {e}")))?;
    write_file(&a.out, &b.to_bytes())?;
    if let Some(path) = &a.tlog_proof {
        let e = &b.entries[0];
        let mut extra = vec![];
        for t in &b.timestamps {
            extra.extend(base64_decode(t)?);
        }
        let tp = TlogProof {
            extra: (!extra.is_empty()).then_some(extra),
            index: e.index,
            inclusion_proof: hashes(&e.inclusion_proof)?,
            checkpoint: b.checkpoint.as_bytes().to_vec(),
        };
        write_file(path, &tp.to_bytes())?;
    }
    Ok(Output {
        human: format!(
            "bundle for {}@{} ({} entries, {}) as of tree size {}, written to {}",
            a.name,
            a.version,
            b.entries.len(),
            v.stage,
            v.checkpoint.size,
            a.out.display()
        ),
        json: json!({"name": a.name, "version": a.version, "stage": v.stage.to_string(),
                     "tree_size": v.checkpoint.size, "entries": b.entries.len()}),
    })
}

pub(crate) fn base64_decode(s: &str) -> Result<Vec<u8>> {
    use base64::prelude::*;
    BASE64_STANDARD
        .decode(s)
        .map_err(|e| Failure::server(format!("bad base64 from the server: {e}")))
}

fn hashes(list: &[String]) -> Result<Vec<Hash>> {
    list.iter()
        .map(|h| hash_from_base64(h).map_err(|e| Failure::server(e.to_string())))
        .collect()
}

/// Exit codes of `verify --bundle`, one per check (also in `ledgerctl --help`).
pub fn exit_code(c: Check) -> u8 {
    match c {
        Check::Malformed => 2,
        Check::Digest => 10,
        Check::LogSignature => 11,
        Check::Witnesses => 12,
        Check::Timestamp => 13,
        Check::Inclusion => 14,
        Check::State => 15,
        Check::Publisher => 16,
    }
}

/// SHA-256 and length of a file, streamed.
fn file_digest(path: &Path) -> Result<(Digest, u64)> {
    use sha2::{Digest as _, Sha256};
    let mut f = std::fs::File::open(path)
        .map_err(|e| Failure::input(format!("cannot read --artifact {}: {e}", path.display())))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f
            .read(&mut buf)
            .map_err(|e| Failure::input(format!("reading {}: {e}", path.display())))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((Digest(h.finalize().into()), n))
}

/// `verify --artifact FILE --bundle FILE`.
pub struct VerifyBundle<'a> {
    pub artifact: &'a Path,
    pub bundle: &'a str,
    pub vkey: Option<String>,
    pub loaded: &'a crate::attest::Loaded,
    pub stages: Vec<Stage>,
    pub max_age: Option<u64>,
    /// Publisher vkey files; when any, the publication must be signed by one of them.
    pub publisher_keys: &'a [PathBuf],
}

pub fn verify(v: VerifyBundle<'_>) -> Result<Output> {
    let bytes = read_input(v.bundle, bundle::MAX_BUNDLE_BYTES, "bundle")?;
    let code = |e: BundleError| Failure::code(exit_code(e.failure), e.failure.name(), e.message);
    let b = Bundle::parse(&bytes).map_err(code)?;
    let (digest, size) = file_digest(v.artifact)?;
    let vkeys: Vec<&str> = v.vkey.iter().map(String::as_str).collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let publishers = if v.publisher_keys.is_empty() {
        None
    } else {
        let mut vkeys = vec![];
        for path in v.publisher_keys {
            let text = read_input(&path.to_string_lossy(), 16 * 1024, "publisher key")?;
            vkeys.push(String::from_utf8_lossy(&text).trim().to_string());
        }
        Some(
            ledger_client::publisher::PublisherKeys::parse(&vkeys)
                .map_err(|e| Failure::input(e.to_string()))?,
        )
    };
    let ok = bundle::verify(
        &b,
        &digest,
        size,
        &Requirements {
            log_vkeys: &vkeys,
            policy: v.loaded.policy.as_ref(),
            tsa_roots: v.loaded.roots.as_ref(),
            allowed_stages: &v.stages,
            max_age: v.max_age.map(|m| (now, m)),
            publishers: publishers.as_ref(),
        },
    )
    .map_err(code)?;
    let names: Vec<&str> = ok.cosigners.iter().map(|(n, _)| n.as_str()).collect();
    let mut human = format!(
        "verified: {} is {}@{} ({}), {} as of tree size {} of {}",
        v.artifact.display(),
        b.name,
        b.version,
        ok.digest,
        ok.stage,
        ok.checkpoint.size,
        ok.checkpoint.origin
    );
    if !names.is_empty() {
        human.push_str(&format!("; cosigned by {}", names.join(", ")));
    }
    if let Some(k) = &ok.signed_by {
        human.push_str(&format!("; published with a valid signature by {k}"));
    }
    for t in &ok.timestamps {
        human.push_str(&format!(
            "; time-stamped {} by {}",
            t.gen_time_rfc3339, t.tsa_subject
        ));
    }
    Ok(Output {
        human,
        json: json!({
            "verified": true, "name": b.name, "version": b.version,
            "digest": ok.digest.to_string(), "stage": ok.stage.to_string(),
            "tree_size": ok.checkpoint.size, "published_at": ok.published_at,
            "cosigners": names, "signed_by": ok.signed_by,
            "timestamps": ok.timestamps.iter().map(|t| t.gen_time_rfc3339.clone()).collect::<Vec<_>>(),
        }),
    })
}
