//! Registry commands: move artifact bytes through the OCI-shaped blob endpoints, publish and
//! change artifact versions through `/registry/v1`, and check what the ledger answers before
//! believing it (specs/api.md "Blobs" and "Registry", specs/entries.md).
//!
//! Every write answers with a receipt: the logged entry, its inclusion proof and a signed
//! checkpoint. The entry is decoded here and must be the event that was asked for; with
//! `--vkey` the checkpoint's signature and the inclusion proof are checked too, so the
//! event is known to be in the log everyone else sees. Catalog reads (`show`, `lineage`) are
//! the registry's own view and are printed as such; `history` checks the hash chain of the
//! entries it prints, and `pull` checks the downloaded bytes against the logged digest.
//!
//! Uploads survive interruption: the upload session's location is kept next to the input
//! (`FILE.ledger-upload`) and a later `push` continues from the server's offset. Downloads
//! go to a hidden partial file in the target directory, resumed with `Range`, and are
//! renamed to the requested name only once their digest matches.
//!
//! Exit codes as for the other commands. A 4xx answer to a registry request (an unknown
//! version, a version bound to other bytes, a forbidden stage change) is an input error
//! (2): the request as given cannot succeed, however often it is sent.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, IsTerminal, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use base64::prelude::*;
use clap::{ArgGroup, Args};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ledger_client::checkpoint::VerifiedCheckpoint;
use ledger_client::digest::Digest;
use ledger_client::event::{
    self, AliasMoved, Event, Kind, Lifecycle, Metadata, Published, Stage, Subject,
};
use ledger_client::merkle::{
    hash_from_base64, hash_to_base64, leaf_hash, verify_consistency, verify_inclusion, Hash,
};
use ledger_client::tlog_proof::TlogProof;
use ledger_client::trust::{Advance, TrustStore};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use ureq::http::Response;
use ureq::{Agent, Body, SendBody};

use crate::failure::{Failure, Result};
use crate::http;
use crate::Output;

/// Default upload chunk: large enough that per-request overhead (one fsync on the server
/// per chunk) is small, small enough that an interruption loses little.
const DEFAULT_CHUNK: u64 = 8 * 1024 * 1024;

/// Read and write buffer for hashing and downloading: memory stays bounded whatever the
/// artifact's size.
const IO_BUF: usize = 1024 * 1024;

/// Cap on a JSON answer of the registry (a version list with inline metadata can be long).
const MAX_JSON: u64 = 64 * 1024 * 1024;

/// Consecutive failed attempts (a dropped connection, no progress) before a transfer gives
/// up; the bytes already moved are kept for the next run either way.
const MAX_ATTEMPTS: u32 = 3;

/// Suffix of the upload state file kept next to the pushed file.
const STATE_SUFFIX: &str = ".ledger-upload";

// ---------------------------------------------------------------- arguments

#[derive(Args)]
pub struct ServerArg {
    /// Ledger base URL, e.g. http://127.0.0.1:8080.
    #[arg(long, value_name = "URL")]
    pub server: String,
}

#[derive(Args)]
pub struct CheckArgs {
    /// The registry log's verifier key (one vkey line): check the signed checkpoint and the
    /// inclusion proof of every entry relied on. Without it only the entry itself is checked.
    #[arg(long, value_name = "FILE")]
    vkey: Option<PathBuf>,
    /// Require this checkpoint origin (default: whatever the key's name is).
    #[arg(long, value_name = "ORIGIN", requires = "vkey")]
    origin: Option<String>,
    /// Trust store directory (as `ledgerctl checkpoint` keeps it): also refuse a checkpoint
    /// that forks or rolls back the last one seen there, and remember the newest.
    #[arg(long, value_name = "DIR", requires = "vkey")]
    state: Option<PathBuf>,
}

#[derive(Args)]
pub struct PushArgs {
    /// The artifact file.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    #[command(flatten)]
    server: ServerArg,
    /// Artifact name, e.g. acme/resnet.
    #[arg(long, value_name = "N")]
    name: String,
    /// Version to publish; it is bound to this file's digest forever.
    #[arg(long, value_name = "V")]
    version: String,
    /// What the artifact is.
    #[arg(long, value_parser = parse_kind, value_name = "model|dataset|other")]
    kind: Kind,
    /// Who publishes (recorded in the log as given).
    #[arg(long, value_name = "A")]
    actor: String,
    /// Media type of the bytes.
    #[arg(long, value_name = "T", default_value = "application/octet-stream")]
    media_type: String,
    /// Inline metadata, repeatable: --meta framework=pytorch --meta epochs=90.
    #[arg(long = "meta", value_name = "KEY=VALUE")]
    meta: Vec<String>,
    /// Bytes per upload request.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_CHUNK,
          value_parser = clap::value_parser!(u64).range(1..))]
    chunk_size: u64,
    /// Sign the publication with this publisher key (a signed-note private key file, as
    /// `ledger keygen` writes; specs/entries.md, "Publisher signatures"). The signature
    /// covers --actor, which must be the identity the ledger records.
    #[arg(long, value_name = "FILE")]
    sign_key: Option<PathBuf>,
    #[command(flatten)]
    check: CheckArgs,
}

#[derive(Args)]
pub struct PullArgs {
    #[command(flatten)]
    server: ServerArg,
    #[arg(long, value_name = "N")]
    name: String,
    #[arg(long, value_name = "V")]
    version: String,
    /// Where to write the artifact (written only once its digest matches).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: PathBuf,
    #[command(flatten)]
    check: CheckArgs,
}

#[derive(Args)]
pub struct ShowArgs {
    #[command(flatten)]
    server: ServerArg,
    #[arg(long, value_name = "N")]
    name: String,
    /// One version (default: every version and alias of the artifact).
    #[arg(long, value_name = "V")]
    version: Option<String>,
    /// Answer as of the log's first SIZE entries (the tree of a checkpoint of that size).
    #[arg(long, value_name = "SIZE")]
    as_of: Option<u64>,
}

#[derive(Args)]
#[command(group(ArgGroup::new("subject").required(true).args(["version", "alias"])))]
pub struct HistoryArgs {
    #[command(flatten)]
    server: ServerArg,
    #[arg(long, value_name = "N")]
    name: String,
    /// The history of this version ...
    #[arg(long, value_name = "V")]
    version: Option<String>,
    /// ... or of this alias.
    #[arg(long, value_name = "A")]
    alias: Option<String>,
    #[command(flatten)]
    check: CheckArgs,
}

#[derive(Args)]
pub struct LineageArgs {
    #[command(flatten)]
    server: ServerArg,
    #[arg(long, value_name = "N")]
    name: String,
    #[arg(long, value_name = "V")]
    version: String,
    /// How many links to follow in each direction (the server caps it at 20).
    #[arg(long, value_name = "D")]
    depth: Option<u64>,
    /// Print one edge per line (FROM -[rel]-> TO) instead of an indented tree.
    #[arg(long)]
    edges: bool,
}

#[derive(Args)]
pub struct PromoteArgs {
    #[command(flatten)]
    server: ServerArg,
    #[arg(long, value_name = "N")]
    name: String,
    #[arg(long, value_name = "V")]
    version: String,
    /// The new stage: approved, released, deprecated, retired or revoked.
    #[arg(long, value_parser = parse_stage, value_name = "STAGE")]
    to: Stage,
    /// Why (recorded in the log).
    #[arg(long, value_name = "R")]
    reason: Option<String>,
    #[arg(long, value_name = "A")]
    actor: String,
    #[command(flatten)]
    check: CheckArgs,
}

#[derive(Args)]
#[command(group(ArgGroup::new("target").required(true).args(["version", "remove"])))]
pub struct AliasArgs {
    #[command(flatten)]
    server: ServerArg,
    #[arg(long, value_name = "N")]
    name: String,
    /// The alias, e.g. production.
    #[arg(long, value_name = "A")]
    alias: String,
    /// Point the alias at this version ...
    #[arg(long, value_name = "V")]
    version: Option<String>,
    /// ... or remove it.
    #[arg(long)]
    remove: bool,
    #[arg(long, value_name = "A")]
    actor: String,
    #[command(flatten)]
    check: CheckArgs,
}

pub(crate) fn parse_kind(s: &str) -> std::result::Result<Kind, String> {
    Kind::parse(s).ok_or_else(|| "expected model, dataset or other".to_string())
}

pub(crate) fn parse_stage(s: &str) -> std::result::Result<Stage, String> {
    Stage::parse(s).ok_or_else(|| {
        let all: Vec<&str> = Stage::ALL.iter().map(|s| s.as_str()).collect();
        format!("expected one of {}", all.join(", "))
    })
}

// ---------------------------------------------------------------- input checks

fn check_field(flag: &str, r: std::result::Result<(), String>) -> Result<()> {
    r.map_err(|e| Failure::input(format!("{flag}: {e}")))
}

/// The repository-name check of the blob endpoints (distribution-spec grammar, as the
/// server applies it). Registry names are nearly the same language, but a name such as
/// `acme/model-` is a valid artifact name and not a valid repository path: refusing it here
/// says why, instead of a NAME_INVALID answer halfway through a push.
fn check_repository_name(name: &str) -> Result<()> {
    let ok = name.len() <= 255
        && name.split('/').all(|c| {
            let b = c.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && !c.contains("..")
                && !c.contains("___")
        });
    if ok {
        Ok(())
    } else {
        Err(Failure::input(format!(
            "--name: {name:?} cannot be used as an OCI repository path for the upload \
             (every segment must end with a letter or digit)"
        )))
    }
}

/// `KEY=VALUE` pairs into inline metadata; the syntax of keys and values is checked with the
/// rest of the event (`Event::validate`).
fn parse_meta(pairs: &[String]) -> Result<Option<Metadata>> {
    let mut meta = Metadata::new();
    for p in pairs {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| Failure::input(format!("--meta {p:?}: expected KEY=VALUE")))?;
        if meta.insert(k.to_string(), v.to_string()).is_some() {
            return Err(Failure::input(format!("--meta: key {k:?} given twice")));
        }
    }
    Ok((!meta.is_empty()).then_some(meta))
}

/// Text from the server printed for people: control characters are escaped so that a
/// hostile answer cannot rewrite the terminal or forge output lines. (Logged events cannot
/// contain them; catalog answers are not verified, so they are cleaned here.)
fn clean(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian, UTC; Howard Hinnant's
/// days-to-civil algorithm, so no date crate is needed for one format).
fn fmt_time(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn progress(len: u64, what: &'static str, quiet: bool) -> ProgressBar {
    // Progress is for a person watching: never in --json mode, never into a pipe or log.
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:>8} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        pb.set_style(style.progress_chars("=> "));
    }
    pb.set_message(what);
    pb
}

fn warn(msg: &str) {
    eprintln!("ledgerctl: warning: {msg}");
}

// ---------------------------------------------------------------- HTTP

/// The ledger's registry and blob endpoints.
pub(crate) struct Server {
    /// `--server` without a trailing slash.
    base: String,
    /// `scheme://authority`, against which absolute-path `Location`s resolve.
    root: String,
    timeout: Duration,
    /// JSON exchanges: each bounded by the timeout as a whole.
    api: Agent,
    /// Blob transfers: bounded per network read/write, not in total.
    transfer: Agent,
}

/// What a 202 to a PATCH, a 416, or a session query says about an upload.
enum Patch {
    /// The server now holds this many bytes.
    Accepted {
        offset: u64,
        location: Option<String>,
    },
    /// 416: the chunk did not start at the server's offset.
    OutOfOrder,
    /// 404: the session is gone (expired or cancelled).
    Expired,
    /// The exchange failed on the way; the server may or may not have kept the chunk.
    Broken(String),
}

enum Complete {
    Created,
    Expired,
    /// 400 DIGEST_INVALID: the server's bytes hash to something else; the session is gone.
    DigestInvalid(String),
}

/// A failure for an answer the protocol does not allow at this point.
fn refused(url: &str, resp: &mut Response<Body>) -> Failure {
    let status = resp.status();
    let detail = http::error_detail(&http::error_body(resp));
    let msg = format!("server answered {status} for {url}: {detail}");
    // A 4xx refuses the request as given: sending it again cannot succeed, it is the input
    // that must change. Timeouts, rate limits and 5xx are the server's trouble.
    let code = status.as_u16();
    if (400..500).contains(&code) && code != 408 && code != 429 {
        Failure::input(msg)
    } else {
        Failure::server(msg)
    }
}

fn header(resp: &Response<Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The byte count of an upload session answer: `Upload-Offset`, or else the inclusive
/// `Range: 0-<last>` of the distribution spec (which cannot say "nothing yet", so a missing
/// or unparsable header means 0).
fn upload_offset(resp: &Response<Body>) -> Option<u64> {
    if let Some(v) = header(resp, "upload-offset") {
        return v.trim().parse().ok();
    }
    let range = header(resp, "range")?;
    let (start, last) = range.trim().split_once('-')?;
    if start.trim() != "0" {
        return None;
    }
    last.trim().parse::<u64>().ok().map(|l| l + 1)
}

impl Server {
    pub(crate) fn new(url: &str, timeout: Duration) -> Result<Self> {
        let scheme_end = if url.starts_with("http://") {
            7
        } else if url.starts_with("https://") {
            8
        } else {
            return Err(Failure::input(format!(
                "--server must be an http:// or https:// URL, got {url:?}"
            )));
        };
        if url.contains('?') || url.contains('#') {
            return Err(Failure::input(format!(
                "--server must be a base URL without query or fragment, got {url:?}"
            )));
        }
        let base = url.trim_end_matches('/').to_string();
        if base.len() <= scheme_end {
            return Err(Failure::input(format!("--server {url:?} names no host")));
        }
        let root = match base[scheme_end..].find('/') {
            Some(i) => base[..scheme_end + i].to_string(),
            None => base.clone(),
        };
        Ok(Server {
            base,
            root,
            timeout,
            api: http::agent(timeout),
            transfer: http::transfer_agent(timeout),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Resolves an upload `Location` (RFC 9110 §10.2.2: usually an absolute path).
    fn resolve(&self, location: &str) -> Result<String> {
        if location.starts_with("http://") || location.starts_with("https://") {
            Ok(location.to_string())
        } else if location.starts_with('/') {
            Ok(format!("{}{location}", self.root))
        } else {
            Err(Failure::server(format!(
                "the server's upload Location {:?} is neither a URL nor an absolute path",
                clean(location)
            )))
        }
    }

    fn read_json<T: DeserializeOwned>(&self, url: &str, mut resp: Response<Body>) -> Result<T> {
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_JSON)
            .read_to_vec()
            .map_err(|e| Failure::server(format!("reading the answer of {url} failed: {e}")))?;
        serde_json::from_slice(&body).map_err(|e| {
            Failure::server(format!("the answer of {url} is not the expected JSON: {e}"))
        })
    }

    /// GET a JSON resource; `None` for 404.
    fn get_json_optional<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Option<T>> {
        let url = self.url(path);
        let mut req = self.api.get(&url);
        for (k, v) in query {
            req = req.query(*k, v);
        }
        let mut resp = req.call().map_err(|e| http::transport(&url, e))?;
        if resp.status().as_u16() == 404 {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(refused(&url, &mut resp));
        }
        self.read_json(&url, resp).map(Some)
    }

    fn get_json<T: DeserializeOwned>(&self, path: &str, query: &[(&str, String)]) -> Result<T> {
        let url = self.url(path);
        let mut req = self.api.get(&url);
        for (k, v) in query {
            req = req.query(*k, v);
        }
        let mut resp = req.call().map_err(|e| http::transport(&url, e))?;
        if !resp.status().is_success() {
            return Err(refused(&url, &mut resp));
        }
        self.read_json(&url, resp)
    }

    pub(crate) fn post_json<T: DeserializeOwned>(&self, path: &str, body: &Value) -> Result<T> {
        let url = self.url(path);
        let bytes = body.to_string();
        let mut resp = self
            .api
            .post(&url)
            .content_type("application/json")
            .send(bytes.as_str())
            .map_err(|e| http::transport(&url, e))?;
        if !resp.status().is_success() {
            return Err(refused(&url, &mut resp));
        }
        self.read_json(&url, resp)
    }

    fn blob_url(&self, name: &str, digest: &Digest) -> String {
        self.url(&format!("/v2/{name}/blobs/{digest}"))
    }

    /// The stored size of a blob, `None` if the server does not have it.
    fn head_blob(&self, name: &str, digest: &Digest) -> Result<Option<u64>> {
        let url = self.blob_url(name, digest);
        let mut resp = self
            .api
            .head(&url)
            .call()
            .map_err(|e| http::transport(&url, e))?;
        match resp.status().as_u16() {
            200 => header(&resp, "content-length")
                .and_then(|v| v.trim().parse().ok())
                .map(Some)
                .ok_or_else(|| Failure::server(format!("HEAD {url}: no Content-Length"))),
            404 => Ok(None),
            _ => Err(refused(&url, &mut resp)),
        }
    }

    /// Opens an upload session; returns its absolute URL.
    fn start_upload(&self, name: &str) -> Result<String> {
        let url = self.url(&format!("/v2/{name}/blobs/uploads/"));
        let mut resp = self
            .transfer
            .post(&url)
            .send_empty()
            .map_err(|e| http::transport(&url, e))?;
        if resp.status().as_u16() != 202 {
            return Err(refused(&url, &mut resp));
        }
        let loc = header(&resp, "location")
            .ok_or_else(|| Failure::server(format!("POST {url}: 202 without a Location")))?;
        self.resolve(&loc)
    }

    /// How many bytes the session holds (GET on the session); `Expired` on 404.
    fn session(&self, location: &str) -> Result<Patch> {
        let mut resp = self
            .transfer
            .get(location)
            .call()
            .map_err(|e| http::transport(location, e))?;
        match resp.status().as_u16() {
            200 | 204 => {
                let offset = upload_offset(&resp).unwrap_or(0);
                let location = header(&resp, "location")
                    .map(|l| self.resolve(&l))
                    .transpose()?;
                Ok(Patch::Accepted { offset, location })
            }
            404 => Ok(Patch::Expired),
            _ => Err(refused(location, &mut resp)),
        }
    }

    /// Sends bytes `start..start+len` of `file` to the session.
    fn patch(&self, location: &str, file: &File, start: u64, len: u64) -> Result<Patch> {
        let mut f = file
            .try_clone()
            .and_then(|mut f| f.seek(SeekFrom::Start(start)).map(|_| f))
            .map_err(|e| Failure::input(format!("cannot read the file to upload: {e}")))?;
        let mut chunk = (&mut f).take(len);
        let sent = self
            .transfer
            .patch(location)
            .header("content-type", "application/octet-stream")
            .header("content-length", len.to_string())
            .header("content-range", format!("{start}-{}", start + len - 1))
            .send(SendBody::from_reader(&mut chunk));
        let mut resp = match sent {
            Ok(r) => r,
            Err(e) => return Ok(Patch::Broken(e.to_string())),
        };
        match resp.status().as_u16() {
            202 | 204 => {
                let offset = upload_offset(&resp).ok_or_else(|| {
                    Failure::server(format!("PATCH {location}: no Upload-Offset or Range"))
                })?;
                let location = header(&resp, "location")
                    .map(|l| self.resolve(&l))
                    .transpose()?;
                Ok(Patch::Accepted { offset, location })
            }
            416 => Ok(Patch::OutOfOrder),
            404 => Ok(Patch::Expired),
            _ => Err(refused(location, &mut resp)),
        }
    }

    fn complete(&self, location: &str, digest: &Digest) -> Result<Complete> {
        let mut resp = self
            .transfer
            .put(location)
            .query("digest", digest.to_string())
            .header("content-length", "0")
            .send_empty()
            .map_err(|e| http::transport(location, e))?;
        match resp.status().as_u16() {
            201 => Ok(Complete::Created),
            404 => Ok(Complete::Expired),
            400 => {
                let body = http::error_body(&mut resp);
                let detail = http::error_detail(&body);
                if detail.contains("DIGEST_INVALID") {
                    Ok(Complete::DigestInvalid(detail))
                } else {
                    Err(Failure::server(format!(
                        "server answered 400 for PUT {location}: {detail}"
                    )))
                }
            }
            _ => Err(refused(location, &mut resp)),
        }
    }

    /// Best effort: frees a session the server would otherwise keep for days.
    fn cancel(&self, location: &str) {
        let _ = self.api.delete(location).call();
    }

    /// The consistency proof `from -> to` of the registry's log (whose name the registry's
    /// status names), through the log API helper the `checkpoint` command uses.
    fn consistency(&self, from: u64, to: u64) -> Result<Vec<Hash>> {
        #[derive(Deserialize)]
        struct Status {
            log: String,
        }
        let s: Status = self.get_json("/registry/v1/status", &[])?;
        let log = http::Client::new(&format!("{}/{}", self.base, s.log), self.timeout)?;
        crate::fetch_consistency(&log, from, to)
    }
}

// ---------------------------------------------------------------- receipts

/// A write's receipt, or the answer of `GET /registry/v1/entry/<i>` (same fields).
#[derive(Deserialize)]
struct Receipt {
    index: u64,
    leaf_hash: String,
    tree_size: u64,
    inclusion_proof: Vec<String>,
    checkpoint: String,
    tlog_proof: String,
    /// The logged entry, base64: what is checked, rather than the answer's JSON `event`.
    entry: String,
    #[serde(default)]
    existing: bool,
    /// `entry/<i>` only: why the catalog did not apply the entry.
    #[serde(default)]
    rejected: Option<String>,
}

/// A receipt after checking.
struct Checked {
    index: u64,
    leaf: Hash,
    event: Event,
    existing: bool,
    /// The verified checkpoint (with `--vkey`).
    checkpoint: Option<VerifiedCheckpoint>,
    /// What the trust store said (with `--state`).
    trust: Value,
    tlog_proof: String,
}

impl Checked {
    fn json(&self) -> Value {
        json!({
            "index": self.index,
            "leaf_hash": hash_to_base64(&self.leaf),
            "existing": self.existing,
            "log_verified": self.checkpoint.is_some(),
            "checkpoint": self.checkpoint.as_ref().map(crate::checkpoint_json),
            "trust": self.trust,
            "event": self.event,
            "tlog_proof": self.tlog_proof,
        })
    }

    /// How far the receipt was checked, for people.
    fn human(&self) -> String {
        match &self.checkpoint {
            Some(cp) => format!("verified in {} at tree size {}", cp.origin, cp.size),
            None => "log proof NOT checked (no --vkey)".to_string(),
        }
    }
}

struct Verifier {
    vkey: Option<String>,
    origin: Option<String>,
    state: Option<PathBuf>,
}

impl Verifier {
    /// Reads the key first, so a bad key file fails before anything is sent.
    fn new(a: &CheckArgs) -> Result<Self> {
        Ok(Verifier {
            vkey: a.vkey.as_deref().map(crate::load_vkey).transpose()?,
            origin: a.origin.clone(),
            state: a.state.clone(),
        })
    }

    /// Checks that the receipt's entry is what it claims and decodes to an event; with a
    /// key, that the checkpoint is signed and the inclusion proof places the entry at its
    /// index in that tree.
    fn check(&self, server: &Server, r: &Receipt) -> Result<Checked> {
        let entry = BASE64_STANDARD
            .decode(&r.entry)
            .map_err(|e| Failure::server(format!("entry {}: not base64: {e}", r.index)))?;
        let leaf = leaf_hash(&entry);
        let claimed = hash_from_base64(&r.leaf_hash)
            .map_err(|e| Failure::server(format!("leaf_hash of entry {}: {e}", r.index)))?;
        if claimed != leaf {
            return Err(Failure::verification(format!(
                "the server reports leaf hash {} for entry {} but its bytes hash to {}",
                r.leaf_hash,
                r.index,
                hash_to_base64(&leaf)
            )));
        }
        let event = Event::decode(&entry).map_err(|e| {
            Failure::verification(format!("entry {} is not a registry event: {e}", r.index))
        })?;
        let mut checked = Checked {
            index: r.index,
            leaf,
            event,
            existing: r.existing,
            checkpoint: None,
            trust: Value::Null,
            tlog_proof: r.tlog_proof.clone(),
        };
        let Some(vkey) = &self.vkey else {
            return Ok(checked);
        };
        let cp =
            crate::verify_server_checkpoint(r.checkpoint.as_bytes(), vkey, self.origin.as_deref())?;
        if cp.size != r.tree_size {
            return Err(Failure::verification(format!(
                "the server says tree_size {} but its checkpoint is for size {}",
                r.tree_size, cp.size
            )));
        }
        if r.index >= cp.size {
            return Err(Failure::verification(format!(
                "entry {} is not inside the checkpoint's tree of size {}",
                r.index, cp.size
            )));
        }
        let proof = crate::parse_server_hashes(&r.inclusion_proof, "inclusion proof")?;
        verify_inclusion(&leaf, r.index, cp.size, &proof, &cp.root).map_err(|e| {
            Failure::verification(format!(
                "inclusion proof for entry {} in tree size {} does not verify: {e}",
                r.index, cp.size
            ))
        })?;
        // The same proof as a self-contained file, for the caller to keep: it must say the
        // same thing, or keeping it would be keeping a lie.
        let tp = TlogProof::parse(r.tlog_proof.as_bytes())
            .map_err(|e| Failure::server(format!("tlog_proof of entry {}: {e}", r.index)))?;
        if tp.index != r.index {
            return Err(Failure::verification(format!(
                "the tlog_proof is for entry {}, not {}",
                tp.index, r.index
            )));
        }
        tp.verify(&leaf, &[vkey], Some(&cp.origin)).map_err(|e| {
            Failure::verification(format!(
                "the tlog_proof of entry {} does not verify: {e}",
                r.index
            ))
        })?;
        if let Some(dir) = &self.state {
            checked.trust = advance_trust(server, dir, &cp, vkey)?;
        }
        checked.checkpoint = Some(cp);
        Ok(checked)
    }
}

/// Checks `cp` against the newest checkpoint remembered in `dir` and remembers it if newer.
fn advance_trust(
    server: &Server,
    dir: &Path,
    cp: &VerifiedCheckpoint,
    vkey: &str,
) -> Result<Value> {
    let store = TrustStore::open(dir).map_err(crate::trust_failure)?;
    let previous = store
        .latest(&cp.origin, &[vkey])
        .map_err(crate::trust_failure)?;
    if let Some(old) = previous.as_ref().filter(|old| old.size > cp.size) {
        // The answer was built on a tree older than one already seen here (another client
        // wrote meanwhile): no rollback as long as that tree is a prefix of the remembered one.
        let proof = server.consistency(cp.size, old.size)?;
        verify_consistency(cp.size, &cp.root, old.size, &old.root, &proof).map_err(|e| {
            Failure::verification(format!(
                "the receipt's tree of size {} is not a prefix of the tree of size {} seen \
                 before: {e}",
                cp.size, old.size
            ))
        })?;
        return Ok(json!({"result": "older", "stored_size": old.size, "dir": dir}));
    }
    let proof = match &previous {
        Some(old) if old.size < cp.size => server.consistency(old.size, cp.size)?,
        _ => Vec::new(),
    };
    Ok(
        match store.advance(cp, &proof).map_err(crate::trust_failure)? {
            Advance::FirstUse { .. } => json!({"result": "first_use", "dir": dir}),
            Advance::Unchanged { .. } => json!({"result": "unchanged", "dir": dir}),
            Advance::Advanced { from, to } => {
                json!({"result": "advanced", "from": from, "to": to, "dir": dir})
            }
        },
    )
}

/// One line about an event, for people.
fn describe(ev: &Event) -> String {
    match ev {
        Event::Published(p) => format!(
            "published {}@{} {} ({} bytes, {})",
            p.name, p.version, p.digest, p.size, p.kind
        ),
        Event::MetadataChanged(m) => format!("metadata of {}@{} changed", m.name, m.version),
        Event::Lifecycle(l) => format!(
            "{}@{}: {} -> {}{}",
            l.name,
            l.version,
            l.from,
            l.to,
            l.reason
                .as_ref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ),
        Event::AliasMoved(a) => match &a.to {
            Some(v) => format!("alias {} of {} -> {v}", a.alias, a.name),
            None => format!("alias {} of {} removed", a.alias, a.name),
        },
        Event::Lineage(l) => format!(
            "lineage of {}@{}: {} link(s)",
            l.name,
            l.version,
            l.links.len()
        ),
        Event::Attestation(a) => format!(
            "attestation of {}@{}: {} ({})",
            a.name, a.version, a.statement, a.predicate_type
        ),
        Event::Tombstone(t) => format!(
            "tombstone of {}@{} ({}): {}",
            t.name, t.version, t.digest, t.reason
        ),
        Event::Approval(a) => format!(
            "{} approves {}@{} -> {}{}",
            a.actor,
            a.name,
            a.version,
            a.to,
            a.comment
                .as_ref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default()
        ),
    }
}

fn not_the_event(c: &Checked, wanted: &str) -> Failure {
    Failure::verification(format!(
        "the log's entry {} is \"{}\", not {wanted}",
        c.index,
        clean(&describe(&c.event))
    ))
}

/// Prints the warning that goes with an unverified receipt.
fn note_unverified(c: &Checked) {
    if c.checkpoint.is_none() {
        warn(
            "no --vkey given: the entry was decoded and checked, but its checkpoint \
             signature and inclusion proof were not",
        );
    }
}

// ---------------------------------------------------------------- push

/// Where an interrupted upload is remembered: next to the input, so that the same command
/// run again finds it without any other configuration.
fn state_path(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_os_string();
    s.push(STATE_SUFFIX);
    PathBuf::from(s)
}

/// The upload state file. `server`, `digest`, `size` and `mtime` tell whether the session
/// still belongs to these bytes on this server; a mismatch means the bytes changed since.
#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct UploadState {
    server: String,
    /// Absolute URL of the session.
    location: String,
    digest: Digest,
    size: u64,
    /// Modification time of the file, nanoseconds since the Unix epoch.
    mtime: u64,
}

fn mtime_ns(meta: &fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn read_state(path: &Path) -> Option<UploadState> {
    let data = match fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == ErrorKind::NotFound => return None,
        Err(e) => {
            warn(&format!("ignoring {}: {e}", path.display()));
            return None;
        }
    };
    match serde_json::from_slice(&data) {
        Ok(s) => Some(s),
        Err(e) => {
            warn(&format!(
                "ignoring {}: not an upload state file: {e}",
                path.display()
            ));
            None
        }
    }
}

/// Saves the session atomically (a torn file would lose the session). Failing to save only
/// costs resumability, so it is a warning: the upload itself can go on.
fn write_state(path: &Path, s: &UploadState) {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let res = (|| -> std::io::Result<()> {
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        serde_json::to_writer(&mut tmp, s)?;
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    })();
    if let Err(e) = res {
        warn(&format!(
            "cannot save upload state to {}: {e} (an interrupted upload will start over)",
            path.display()
        ));
    }
}

fn remove_state(path: &Path) {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => warn(&format!("cannot remove {}: {e}", path.display())),
    }
}

/// SHA-256 of the whole file, streamed.
fn hash_file(file: &File, size: u64, quiet: bool) -> Result<Digest> {
    let pb = progress(size, "hash", quiet);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; IO_BUF];
    let mut r = file;
    loop {
        let n = r
            .read(&mut buf)
            .map_err(|e| Failure::input(format!("cannot read the file: {e}")))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        pb.inc(n as u64);
    }
    pb.finish_and_clear();
    Ok(Digest(h.finalize().into()))
}

struct Upload {
    /// Bytes were sent by this run (false: the server already had the blob).
    uploaded: bool,
    /// The offset this run continued from, when it resumed an earlier session.
    resumed_from: Option<u64>,
    /// Bytes sent by this run.
    sent: u64,
}

struct Source<'a> {
    file: &'a File,
    display: String,
    digest: Digest,
    size: u64,
    mtime: u64,
    state: PathBuf,
}

/// Finds the saved session for these bytes, if it is still alive; frees one that is not
/// for these bytes any more.
fn saved_session(server: &Server, src: &Source) -> Result<Option<(String, u64)>> {
    let Some(s) = read_state(&src.state) else {
        return Ok(None);
    };
    if s.server != server.base {
        // Another server's session: leave it (it expires there), start afresh here.
        return Ok(None);
    }
    if (s.digest, s.size, s.mtime) != (src.digest, src.size, src.mtime) {
        warn(&format!(
            "{} changed since the interrupted upload; starting over",
            src.display
        ));
        server.cancel(&s.location);
        remove_state(&src.state);
        return Ok(None);
    }
    match server.session(&s.location)? {
        Patch::Accepted { offset, location } if offset <= src.size => {
            Ok(Some((location.unwrap_or(s.location), offset)))
        }
        Patch::Accepted { offset, .. } => {
            warn(&format!(
                "the saved upload session holds {offset} bytes, more than the file's {}; \
                 starting over",
                src.size
            ));
            server.cancel(&s.location);
            Ok(None)
        }
        _ => {
            warn("the saved upload session has expired; starting over");
            remove_state(&src.state);
            Ok(None)
        }
    }
}

/// Uploads `src` with the chunked protocol, resuming a saved session when there is one.
fn upload(server: &Server, name: &str, src: &Source, chunk: u64, quiet: bool) -> Result<Upload> {
    let mut resumed_from = None;
    let mut session = saved_session(server, src)?;
    if let Some((_, offset)) = &session {
        resumed_from = Some(*offset);
    }
    let pb = progress(src.size, "upload", quiet);
    let mut sent = 0u64;
    // A session can expire under us (7 idle days, or a server that lost it); each restart
    // starts from zero, so a few are plenty.
    let mut restarts = 0;
    let result = loop {
        let (location, offset) = match session.take() {
            Some(s) => s,
            None => {
                let location = server.start_upload(name)?;
                write_state(
                    &src.state,
                    &UploadState {
                        server: server.base.clone(),
                        location: location.clone(),
                        digest: src.digest,
                        size: src.size,
                        mtime: src.mtime,
                    },
                );
                (location, 0)
            }
        };
        let done = send_chunks(server, src, location, offset, chunk, &pb, &mut sent)?;
        if let Some(location) = done {
            match server.complete(&location, &src.digest)? {
                Complete::Created => break Ok(()),
                Complete::Expired => {}
                Complete::DigestInvalid(detail) => {
                    remove_state(&src.state);
                    break Err(Failure::input(format!(
                        "the server received bytes that do not hash to {} ({detail}): was {} \
                         modified during the upload? Push again to start over",
                        src.digest, src.display
                    )));
                }
            }
        }
        // The session is gone (during the chunks or before completing it).
        restarts += 1;
        if restarts > 2 {
            break Err(Failure::server(
                "the upload session keeps disappearing on the server; giving up",
            ));
        }
        warn("the upload session expired on the server; starting over");
        remove_state(&src.state);
        resumed_from = None;
    };
    pb.finish_and_clear();
    result?;
    remove_state(&src.state);
    Ok(Upload {
        uploaded: true,
        resumed_from,
        sent,
    })
}

/// Sends the file from `offset` on. Returns the session's (latest) location once the
/// server holds every byte, or `None` if the session expired.
fn send_chunks(
    server: &Server,
    src: &Source,
    mut location: String,
    mut offset: u64,
    chunk: u64,
    pb: &ProgressBar,
    sent: &mut u64,
) -> Result<Option<String>> {
    let mut failures = 0;
    pb.set_position(offset);
    while offset < src.size {
        let len = chunk.min(src.size - offset);
        let answer = server.patch(&location, src.file, offset, len)?;
        let (next, moved) = match answer {
            Patch::Accepted {
                offset: next,
                location: moved,
            } => (Some(next), moved),
            // The server's offset is not ours (another writer, or an answer lost on the
            // way): ask where it is and continue from there.
            Patch::OutOfOrder => (None, None),
            Patch::Expired => return Ok(None),
            Patch::Broken(e) => {
                failures += 1;
                if failures >= MAX_ATTEMPTS {
                    return Err(Failure::server(format!(
                        "upload interrupted at byte {offset} of {}: {e}; run the same push \
                         again to resume",
                        src.size
                    )));
                }
                std::thread::sleep(Duration::from_secs(u64::from(failures)));
                (None, None)
            }
        };
        let (next, moved) = match next {
            Some(n) => (n, moved),
            None => match server.session(&location)? {
                Patch::Accepted {
                    offset: n,
                    location: m,
                } => (n, m),
                _ => return Ok(None),
            },
        };
        if next > src.size {
            return Err(Failure::server(format!(
                "the server says it holds {next} bytes of a {}-byte upload",
                src.size
            )));
        }
        if next <= offset {
            failures += 1;
            if failures >= MAX_ATTEMPTS {
                return Err(Failure::server(format!(
                    "the upload makes no progress at byte {offset}; run the same push again \
                     to resume"
                )));
            }
        } else {
            failures = 0;
            *sent += next - offset;
        }
        if let Some(m) = moved.filter(|m| *m != location) {
            // distribution-spec: the latest Location is the one to use from now on.
            location = m;
            write_state(
                &src.state,
                &UploadState {
                    server: server.base.clone(),
                    location: location.clone(),
                    digest: src.digest,
                    size: src.size,
                    mtime: src.mtime,
                },
            );
        }
        offset = next;
        pb.set_position(offset);
    }
    Ok(Some(location))
}

/// `GET /registry/v1/version`: the parts of a version's state the commands rely on.
#[derive(Deserialize)]
struct VersionAnswer {
    version: VersionState,
    #[serde(default)]
    aliases: Vec<String>,
}

#[derive(Deserialize)]
struct VersionState {
    name: String,
    version: String,
    digest: Digest,
    size: u64,
    stage: Stage,
    published: At,
    #[serde(default)]
    tombstone: Option<TombstoneRef>,
}

#[derive(Deserialize)]
struct At {
    index: u64,
}

#[derive(Deserialize)]
struct TombstoneRef {
    reason: String,
    at: At,
}

pub fn push(a: PushArgs, timeout: Duration, quiet: bool) -> Result<Output> {
    // Everything typed is checked before a byte is read or sent: building the event the
    // server will log (with a placeholder digest) applies every rule of specs/entries.md.
    check_field("--name", event::validate_name(&a.name))?;
    check_repository_name(&a.name)?;
    check_field("--version", event::validate_version(&a.version))?;
    let meta = parse_meta(&a.meta)?;
    let mut unsigned = Published {
        name: a.name.clone(),
        version: a.version.clone(),
        kind: a.kind,
        digest: Digest([0; 32]),
        size: 0,
        media_type: a.media_type.clone(),
        meta_digest: None,
        meta: meta.clone(),
        actor: a.actor.clone(),
        sig: None,
        time: 0,
    };
    Event::Published(unsigned.clone())
        .validate()
        .map_err(|e| Failure::input(format!("cannot publish this: {e}")))?;
    // Read and tried before any byte is sent, so a bad key costs nothing.
    let sign_key = match &a.sign_key {
        Some(path) => {
            // A private key others can read is not private: refused, as the ledger
            // refuses its own.
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = fs::metadata(path)
                    .map_err(|e| Failure::input(format!("signing key {}: {e}", path.display())))?
                    .permissions()
                    .mode();
                if mode & 0o077 != 0 {
                    return Err(Failure::input(format!(
                        "signing key {} has mode {:o}; it must not be readable by group or others (chmod 600)",
                        path.display(),
                        mode & 0o777
                    )));
                }
            }
            let raw = crate::read_input(&path.to_string_lossy(), 16 * 1024, "signing key")?;
            let key = String::from_utf8(raw).map_err(|_| {
                Failure::input(format!("signing key {} is not UTF-8", path.display()))
            })?;
            ledger_client::publisher::sign(&key, &unsigned)
                .map_err(|e| Failure::input(format!("{}: {e}", path.display())))?;
            Some(key)
        }
        None => None,
    };
    let verifier = Verifier::new(&a.check)?;
    let server = Server::new(&a.server.server, timeout)?;

    let display = a.file.display().to_string();
    let file =
        File::open(&a.file).map_err(|e| Failure::input(format!("cannot open {display}: {e}")))?;
    let fmeta = file
        .metadata()
        .map_err(|e| Failure::input(format!("cannot stat {display}: {e}")))?;
    if !fmeta.is_file() {
        return Err(Failure::input(format!("{display} is not a regular file")));
    }
    let size = fmeta.len();
    let digest = hash_file(&file, size, quiet)?;
    let src = Source {
        file: &file,
        display: display.clone(),
        digest,
        size,
        mtime: mtime_ns(&fmeta),
        state: state_path(&a.file),
    };

    let upload = match server.head_blob(&a.name, &digest)? {
        Some(n) if n != size => {
            return Err(Failure::verification(format!(
                "the server stores {n} bytes under {digest}, but {display} has {size}"
            )))
        }
        Some(_) => {
            // Nothing to send; a session left by an earlier interrupted run is useless now.
            if let Some(s) = read_state(&src.state) {
                if s.server == server.base {
                    server.cancel(&s.location);
                }
                remove_state(&src.state);
            }
            Upload {
                uploaded: false,
                resumed_from: None,
                sent: 0,
            }
        }
        None => {
            // The version may already be bound to other bytes: the server would refuse the
            // publication (409) after the whole upload, so ask first. The server's answer
            // stays authoritative; this only saves sending bytes that cannot be used.
            let q = [("name", a.name.clone()), ("version", a.version.clone())];
            if let Some(v) =
                server.get_json_optional::<VersionAnswer>("/registry/v1/version", &q)?
            {
                if v.version.digest != digest {
                    return Err(Failure::input(format!(
                        "{}@{} is bound to {} (entry {}) forever, and {display} is {digest}; \
                         publish a new version",
                        a.name, a.version, v.version.digest, v.version.published.index
                    )));
                }
            }
            upload(&server, &a.name, &src, a.chunk_size, quiet)?
        }
    };

    let mut body = json!({
        "name": a.name,
        "version": a.version,
        "kind": a.kind,
        "digest": digest,
        "size": size,
        "media_type": a.media_type,
        "actor": a.actor,
    });
    if let Some(m) = &meta {
        body["meta"] = json!(m);
    }
    let signature = match &sign_key {
        Some(key) => {
            (unsigned.digest, unsigned.size) = (digest, size);
            let sig = ledger_client::publisher::sign(key, &unsigned)
                .map_err(|e| Failure::input(e.to_string()))?;
            body["sig"] = json!(sig);
            Some(sig)
        }
        None => None,
    };
    let receipt: Receipt = server.post_json("/registry/v1/publish", &body)?;
    let checked = verifier.check(&server, &receipt)?;
    match &checked.event {
        Event::Published(p)
            if p.name == a.name
                && p.version == a.version
                && p.digest == digest
                && p.size == size => {}
        _ => {
            return Err(not_the_event(
                &checked,
                &format!("the publication of {}@{} as {digest}", a.name, a.version),
            ))
        }
    }
    note_unverified(&checked);
    let logged_sig = match &checked.event {
        Event::Published(p) => p.sig.clone(),
        _ => None,
    };
    // A new publication carries the signature sent; an earlier one keeps its own.
    let signed = match (&signature, &logged_sig) {
        (Some(ours), Some(logged)) if ours == logged => format!("; signed by {}", ours.keyid),
        (Some(_), _) if !checked.existing => {
            return Err(Failure::verification(
                "the ledger logged the publication without the signature sent".to_string(),
            ))
        }
        (Some(_), Some(logged)) => format!(
            "; the earlier publication is signed by {}, not with this key",
            logged.keyid
        ),
        (Some(_), None) => "; the earlier publication is unsigned".to_string(),
        (None, _) => String::new(),
    };

    let mut j = checked.json();
    j["name"] = json!(a.name);
    j["version"] = json!(a.version);
    j["digest"] = json!(digest);
    j["size"] = json!(size);
    j["signed_by"] = json!(logged_sig.map(|s| s.keyid));
    j["uploaded"] = json!(upload.uploaded);
    j["uploaded_bytes"] = json!(upload.sent);
    j["resumed_from"] = json!(upload.resumed_from);
    let how = match (upload.uploaded, upload.resumed_from) {
        (false, _) => "bytes already stored".to_string(),
        (true, Some(from)) => format!("upload resumed at byte {from}"),
        (true, None) => format!("{} bytes uploaded", upload.sent),
    };
    Ok(Output {
        human: format!(
            "{} {}@{} {digest} ({size} bytes; {how}{signed}) at index {}; {}",
            if checked.existing {
                "already published:"
            } else {
                "published:"
            },
            a.name,
            a.version,
            checked.index,
            checked.human()
        ),
        json: j,
    })
}

// ---------------------------------------------------------------- pull

/// The hidden file a download goes to, in the target's directory (so the final rename
/// stays on one filesystem and is atomic). Named after the digest, so a partial file is
/// only ever resumed with the same bytes.
fn partial_path(out: &Path, digest: &Digest) -> Result<PathBuf> {
    let name = out
        .file_name()
        .ok_or_else(|| Failure::input(format!("-o {}: not a file name", out.display())))?;
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    Ok(dir.join(format!(
        ".{}.{}.ledger-partial",
        name.to_string_lossy(),
        &digest.hex()[..16]
    )))
}

enum Fetch {
    /// The body ended where it should.
    Complete,
    /// The connection broke; the bytes received so far are in the file.
    Broken(String),
}

struct Download<'a> {
    server: &'a Server,
    url: String,
    digest: Digest,
    size: u64,
    file: File,
    path: PathBuf,
    have: u64,
    hasher: Sha256,
}

impl Download<'_> {
    fn io(&self, e: std::io::Error) -> Failure {
        Failure::input(format!("cannot write {}: {e}", self.path.display()))
    }

    /// Starts over: the partial file is not a prefix of these bytes.
    fn reset(&mut self) -> Result<()> {
        self.file.set_len(0).map_err(|e| self.io(e))?;
        self.file.seek(SeekFrom::Start(0)).map_err(|e| self.io(e))?;
        self.hasher = Sha256::new();
        self.have = 0;
        Ok(())
    }

    /// Hashes what an earlier run left, so the final digest covers every byte of the file.
    fn rehash_partial(&mut self) -> Result<()> {
        let mut buf = vec![0u8; IO_BUF];
        let mut left = self.have;
        self.file.seek(SeekFrom::Start(0)).map_err(|e| self.io(e))?;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = self.file.read(&mut buf[..want]).map_err(|e| self.io(e))?;
            if n == 0 {
                break;
            }
            self.hasher.update(&buf[..n]);
            left -= n as u64;
        }
        self.file
            .seek(SeekFrom::Start(self.have))
            .map_err(|e| self.io(e))?;
        Ok(())
    }

    /// One GET, from `have` on.
    fn fetch(&mut self, pb: &ProgressBar) -> Result<Fetch> {
        let mut req = self
            .server
            .transfer
            .get(&self.url)
            // Ranges and lengths refer to the stored bytes: no content coding in between.
            .header("accept-encoding", "identity");
        if self.have > 0 {
            req = req.header("range", format!("bytes={}-", self.have));
        }
        let mut resp = match req.call() {
            Ok(r) => r,
            Err(e) => return Ok(Fetch::Broken(e.to_string())),
        };
        match resp.status().as_u16() {
            200 => {
                if self.have > 0 {
                    // The server ignored the range (RFC 9110 §14.2 allows it): whole body.
                    self.reset()?;
                    pb.set_position(0);
                }
            }
            206 => {
                let want = format!("bytes {}-", self.have);
                if !header(&resp, "content-range").is_some_and(|v| v.starts_with(&want)) {
                    return Err(Failure::server(format!(
                        "GET {}: asked for bytes {}-, the server sent Content-Range {:?}",
                        self.url,
                        self.have,
                        header(&resp, "content-range").unwrap_or_default()
                    )));
                }
            }
            416 => {
                return Err(Failure::verification(format!(
                    "the server has fewer bytes of {} than the {} the log says it has",
                    self.digest, self.size
                )))
            }
            _ => return Err(refused(&self.url, &mut resp)),
        }
        let mut body = resp.into_body().into_reader();
        let mut buf = vec![0u8; IO_BUF];
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => return Ok(Fetch::Complete),
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Ok(Fetch::Broken(e.to_string())),
            };
            if self.have + n as u64 > self.size {
                return Err(Failure::verification(format!(
                    "the server sends more than the {} bytes the log says {} has",
                    self.size, self.digest
                )));
            }
            self.file.write_all(&buf[..n]).map_err(|e| self.io(e))?;
            self.hasher.update(&buf[..n]);
            self.have += n as u64;
            pb.set_position(self.have);
        }
    }
}

struct Pulled {
    resumed_from: Option<u64>,
    received: u64,
}

/// Downloads the blob into the partial file, then renames it to `out` if the digest
/// matches. On a mismatch (or any verification failure) the partial file is deleted, so
/// nothing of those bytes survives; on a broken connection it is kept for the next run.
fn download(
    server: &Server,
    name: &str,
    digest: Digest,
    size: u64,
    out: &Path,
    quiet: bool,
) -> Result<Pulled> {
    let path = partial_path(out, &digest)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Failure::input(format!("cannot create {}: {e}", path.display())))?;
    let have = file
        .metadata()
        .map_err(|e| Failure::input(format!("cannot stat {}: {e}", path.display())))?
        .len();
    let mut d = Download {
        server,
        url: server.blob_url(name, &digest),
        digest,
        size,
        file,
        path: path.clone(),
        have,
        hasher: Sha256::new(),
    };
    let result = (|| -> Result<Pulled> {
        if d.have > size {
            d.reset()?;
        }
        d.rehash_partial()?;
        let resumed_from = (d.have > 0).then_some(d.have);
        let start = d.have;
        let pb = progress(size, "download", quiet);
        pb.set_position(d.have);
        let mut failures = 0;
        while d.have < size {
            let before = d.have;
            match d.fetch(&pb)? {
                Fetch::Complete if d.have < size => {
                    failures += 1;
                    if failures >= MAX_ATTEMPTS {
                        return Err(Failure::server(format!(
                            "the server ended the download at byte {} of {size}; run the same \
                             pull again to resume",
                            d.have
                        )));
                    }
                }
                Fetch::Complete => {}
                Fetch::Broken(e) => {
                    if d.have > before {
                        failures = 0;
                    }
                    failures += 1;
                    if failures >= MAX_ATTEMPTS {
                        return Err(Failure::server(format!(
                            "download interrupted at byte {} of {size}: {e}; run the same \
                             pull again to resume",
                            d.have
                        )));
                    }
                    std::thread::sleep(Duration::from_secs(u64::from(failures)));
                }
            }
        }
        pb.finish_and_clear();
        Ok(Pulled {
            resumed_from,
            received: d.have.saturating_sub(start),
        })
    })();
    let pulled = match result {
        Ok(p) => p,
        Err(f) => {
            // Bytes that failed verification are worthless; an interruption keeps them.
            if f.kind != crate::failure::Kind::Server {
                let _ = fs::remove_file(&path);
            }
            return Err(f);
        }
    };
    let actual = Digest(std::mem::take(&mut d.hasher).finalize().into());
    if actual != digest {
        drop(d);
        let _ = fs::remove_file(&path);
        return Err(Failure::verification(format!(
            "the downloaded bytes hash to {actual}, not to the logged {digest}: discarded, \
             nothing written to {}",
            out.display()
        )));
    }
    // Durable before visible: a crash after the rename must not leave a file of the right
    // name with bytes still in the page cache only.
    d.file
        .sync_all()
        .map_err(|e| Failure::input(format!("cannot sync {}: {e}", path.display())))?;
    drop(d);
    fs::rename(&path, out).map_err(|e| {
        Failure::input(format!(
            "cannot rename {} to {}: {e}",
            path.display(),
            out.display()
        ))
    })?;
    if let Some(dir) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        if let Ok(f) = File::open(dir) {
            let _ = f.sync_all();
        }
    }
    Ok(pulled)
}

pub fn pull(a: PullArgs, timeout: Duration, quiet: bool) -> Result<Output> {
    check_field("--name", event::validate_name(&a.name))?;
    check_repository_name(&a.name)?;
    check_field("--version", event::validate_version(&a.version))?;
    if a.output.is_dir() {
        return Err(Failure::input(format!(
            "-o {} is a directory; give a file name",
            a.output.display()
        )));
    }
    let verifier = Verifier::new(&a.check)?;
    let server = Server::new(&a.server.server, timeout)?;
    let q = [("name", a.name.clone()), ("version", a.version.clone())];
    let v: VersionAnswer = server
        .get_json_optional("/registry/v1/version", &q)?
        .ok_or_else(|| Failure::input(format!("{}@{} is not published", a.name, a.version)))?;
    let state = v.version;
    if (state.name.as_str(), state.version.as_str()) != (a.name.as_str(), a.version.as_str()) {
        return Err(Failure::server(format!(
            "asked for {}@{}, the server answered about {}@{}",
            a.name,
            a.version,
            clean(&state.name),
            clean(&state.version)
        )));
    }
    if let Some(t) = &state.tombstone {
        return Err(Failure::verification(format!(
            "{}@{} was tombstoned by entry {}: {}; its bytes are gone and must not be used",
            a.name,
            a.version,
            t.at.index,
            clean(&t.reason)
        )));
    }

    // The digest to download comes from the logged entry, not from the catalog's summary.
    let index = state.published.index;
    let receipt: Receipt = server.get_json(&format!("/registry/v1/entry/{index}"), &[])?;
    if receipt.index != index {
        return Err(Failure::server(format!(
            "asked for entry {index}, the server answered with entry {}",
            receipt.index
        )));
    }
    if let Some(why) = &receipt.rejected {
        return Err(Failure::verification(format!(
            "the registry's own catalog rejected entry {index}: {}",
            clean(why)
        )));
    }
    let checked = verifier.check(&server, &receipt)?;
    let published = match &checked.event {
        Event::Published(p) if p.name == a.name && p.version == a.version => p.clone(),
        _ => {
            return Err(not_the_event(
                &checked,
                &format!("the publication of {}@{}", a.name, a.version),
            ))
        }
    };
    if (published.digest, published.size) != (state.digest, state.size) {
        return Err(Failure::verification(format!(
            "the catalog says {}@{} is {} ({} bytes) but the logged entry {index} says {} ({} \
             bytes)",
            a.name, a.version, state.digest, state.size, published.digest, published.size
        )));
    }
    if checked.checkpoint.is_none() {
        warn(
            "no --vkey given: the log proof was NOT checked; only the downloaded bytes are \
             checked against the digest the registry names",
        );
    }
    let mut warnings = Vec::new();
    if matches!(
        state.stage,
        Stage::Revoked | Stage::Retired | Stage::Deprecated
    ) {
        let w = format!("{}@{} is {}", a.name, a.version, state.stage);
        warn(&w);
        warnings.push(w);
    }

    let pulled = download(
        &server,
        &a.name,
        published.digest,
        published.size,
        &a.output,
        quiet,
    )?;
    let mut j = checked.json();
    j["name"] = json!(a.name);
    j["version"] = json!(a.version);
    j["digest"] = json!(published.digest);
    j["size"] = json!(published.size);
    j["kind"] = json!(published.kind);
    j["stage"] = json!(state.stage);
    j["aliases"] = json!(v.aliases);
    j["path"] = json!(a.output);
    j["resumed_from"] = json!(pulled.resumed_from);
    j["downloaded_bytes"] = json!(pulled.received);
    j["warnings"] = json!(warnings);
    Ok(Output {
        human: format!(
            "pulled {}@{} {} ({} bytes, {}) to {}; digest checked; entry {index}: {}",
            a.name,
            a.version,
            published.digest,
            published.size,
            state.stage,
            a.output.display(),
            checked.human()
        ),
        json: j,
    })
}

// ---------------------------------------------------------------- show

fn as_of_query(name: &str, as_of: Option<u64>) -> Vec<(&'static str, String)> {
    let mut q = vec![("name", name.to_string())];
    if let Some(s) = as_of {
        q.push(("as_of", s.to_string()));
    }
    q
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn u(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// `entry N, <time>, by <actor>` for an `At` object of the catalog.
fn at_text(at: &Value) -> String {
    format!(
        "entry {}, {}, by {}",
        u(at, "index"),
        fmt_time(u(at, "time")),
        clean(s(at, "actor"))
    )
}

fn version_text(v: &Value, aliases: &[Value]) -> String {
    let mut out = vec![format!(
        "{}@{}",
        clean(s(v, "name")),
        clean(s(v, "version"))
    )];
    let mut line = |k: &str, val: String| out.push(format!("  {k:<13}{val}"));
    line("kind", clean(s(v, "kind")));
    line("digest", clean(s(v, "digest")));
    line("size", format!("{} bytes", u(v, "size")));
    line("media type", clean(s(v, "media_type")));
    line(
        "stage",
        format!(
            "{} (since {})",
            clean(s(v, "stage")),
            at_text(&v["stage_set"])
        ),
    );
    line("published", at_text(&v["published"]));
    if !aliases.is_empty() {
        let names: Vec<String> = aliases
            .iter()
            .filter_map(Value::as_str)
            .map(clean)
            .collect();
        line("aliases", names.join(", "));
    }
    if let Some(m) = v.get("meta").and_then(Value::as_object) {
        for (k, val) in m {
            line(
                "meta",
                format!("{}={}", clean(k), clean(val.as_str().unwrap_or(""))),
            );
        }
    }
    if let Some(d) = v.get("meta_digest").and_then(Value::as_str) {
        line("meta digest", clean(d));
    }
    for l in v
        .get("lineage")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let link = &l["link"];
        let target = match link.get("artifact") {
            Some(t) => format!(
                "{}@{} ({})",
                clean(s(t, "name")),
                clean(s(t, "version")),
                clean(s(t, "digest"))
            ),
            None => clean(s(link, "uri")),
        };
        line(
            "lineage",
            format!(
                "{} {target} [entry {}]",
                clean(s(link, "rel")),
                u(&l["at"], "index")
            ),
        );
    }
    for a in v
        .get("attestations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        line(
            "attestation",
            format!(
                "{} {} [entry {}]",
                clean(s(a, "predicate_type")),
                clean(s(a, "statement")),
                u(&a["at"], "index")
            ),
        );
    }
    if let Some(t) = v.get("tombstone").filter(|t| !t.is_null()) {
        line(
            "TOMBSTONED",
            format!("{} ({})", clean(s(t, "reason")), at_text(&t["at"])),
        );
    }
    out.join("\n")
}

pub fn show(a: ShowArgs, timeout: Duration) -> Result<Output> {
    check_field("--name", event::validate_name(&a.name))?;
    if let Some(v) = &a.version {
        check_field("--version", event::validate_version(v))?;
    }
    let server = Server::new(&a.server.server, timeout)?;
    let as_of = match a.as_of {
        Some(n) => format!(" as of tree size {n}"),
        None => String::new(),
    };
    if let Some(version) = &a.version {
        let mut q = as_of_query(&a.name, a.as_of);
        q.push(("version", version.clone()));
        let j: Value = server
            .get_json_optional("/registry/v1/version", &q)?
            .ok_or_else(|| {
                Failure::input(format!("{}@{version} is not published{as_of}", a.name))
            })?;
        let aliases = j["aliases"].as_array().cloned().unwrap_or_default();
        return Ok(Output {
            human: version_text(&j["version"], &aliases),
            json: j,
        });
    }
    let q = as_of_query(&a.name, a.as_of);
    let versions: Value = server.get_json("/registry/v1/versions", &q)?;
    let aliases: Value = server.get_json("/registry/v1/aliases", &q)?;
    let list = versions["versions"].as_array().cloned().unwrap_or_default();
    let alias_list = aliases["aliases"].as_array().cloned().unwrap_or_default();
    let mut human = vec![format!(
        "{}: {} version(s){as_of}",
        clean(&a.name),
        list.len()
    )];
    if !list.is_empty() {
        human.push(format!(
            "  {:<20} {:<11} {:>12}  {:<24} {}",
            "VERSION", "STAGE", "SIZE", "DIGEST", "PUBLISHED"
        ));
    }
    for v in &list {
        let digest = clean(s(v, "digest"));
        let short: String = digest.chars().take(23).collect();
        let stage = if v.get("tombstone").is_some_and(|t| !t.is_null()) {
            "tombstoned".to_string()
        } else {
            clean(s(v, "stage"))
        };
        human.push(format!(
            "  {:<20} {:<11} {:>12}  {:<24} entry {}",
            clean(s(v, "version")),
            stage,
            u(v, "size"),
            format!("{short}…"),
            u(&v["published"], "index")
        ));
    }
    if !alias_list.is_empty() {
        human.push("aliases:".to_string());
    }
    for al in &alias_list {
        let to = match al.get("version").and_then(Value::as_str) {
            Some(v) => clean(v),
            None => "(removed)".to_string(),
        };
        human.push(format!(
            "  {} -> {to} (entry {})",
            clean(s(al, "alias")),
            u(&al["moved"], "index")
        ));
    }
    Ok(Output {
        human: human.join("\n"),
        json: json!({
            "name": a.name,
            "as_of": a.as_of,
            "versions": list,
            "aliases": alias_list,
        }),
    })
}

// ---------------------------------------------------------------- history

#[derive(Deserialize)]
struct HistoryAnswer {
    entries: Vec<HistoryItem>,
}

#[derive(Deserialize)]
struct HistoryItem {
    index: u64,
    leaf_hash: String,
    event: Event,
}

/// Checks that `items` is one hash chain about `subject`, oldest first: each entry encodes
/// to its stated leaf hash and names the one before it as `prev` (specs/entries.md,
/// "Subjects and the prev chain"). An omitted, reordered or substituted entry breaks it.
fn check_chain(subject: &Subject, items: &[HistoryItem]) -> Result<Vec<Hash>> {
    let mut leaves = Vec::with_capacity(items.len());
    for (k, it) in items.iter().enumerate() {
        let leaf = it.event.leaf_hash();
        let stated = hash_from_base64(&it.leaf_hash)
            .map_err(|e| Failure::server(format!("history entry {}: leaf_hash: {e}", it.index)))?;
        if stated != leaf {
            return Err(Failure::verification(format!(
                "history entry {}: the event hashes to {}, not the stated {}",
                it.index,
                hash_to_base64(&leaf),
                it.leaf_hash
            )));
        }
        if &it.event.subject() != subject {
            return Err(Failure::verification(format!(
                "history entry {} is about {}, not {subject}",
                it.index,
                clean(&it.event.subject().to_string())
            )));
        }
        match (k, it.event.prev()) {
            (0, None) => {}
            (0, Some(p)) => {
                return Err(Failure::verification(format!(
                    "the history starts at entry {}, which names entry {} before it: the \
                     start of the chain is missing",
                    it.index, p.index
                )))
            }
            (_, None) => {
                return Err(Failure::verification(format!(
                    "history entry {} starts a new chain in the middle of the history",
                    it.index
                )))
            }
            (_, Some(p)) => {
                let before = &items[k - 1];
                if p.index != before.index || p.leaf_hash != leaves[k - 1] {
                    return Err(Failure::verification(format!(
                        "history entry {} names entry {} as its predecessor, but the history \
                         has entry {} before it",
                        it.index, p.index, before.index
                    )));
                }
            }
        }
        leaves.push(leaf);
    }
    Ok(leaves)
}

pub fn history(a: HistoryArgs, timeout: Duration) -> Result<Output> {
    check_field("--name", event::validate_name(&a.name))?;
    let (subject, q) = match (&a.version, &a.alias) {
        (Some(v), None) => {
            check_field("--version", event::validate_version(v))?;
            (
                Subject::Version {
                    name: a.name.clone(),
                    version: v.clone(),
                },
                ("version", v.clone()),
            )
        }
        (None, Some(al)) => {
            check_field("--alias", event::validate_alias(al))?;
            (
                Subject::Alias {
                    name: a.name.clone(),
                    alias: al.clone(),
                },
                ("alias", al.clone()),
            )
        }
        _ => return Err(Failure::input("give exactly one of --version and --alias")),
    };
    let verifier = Verifier::new(&a.check)?;
    let server = Server::new(&a.server.server, timeout)?;
    let h: HistoryAnswer = server
        .get_json_optional("/registry/v1/history", &[("name", a.name.clone()), q])?
        .ok_or_else(|| Failure::input(format!("no entries about {subject}")))?;
    if h.entries.is_empty() {
        return Err(Failure::input(format!("no entries about {subject}")));
    }
    let leaves = check_chain(&subject, &h.entries)?;

    // With a key, proving the newest entry is in the log proves every older one too: each
    // is pinned by the hash its successor names.
    let head = h.entries.last().map(|it| it.index).unwrap_or_default();
    let mut head_proof = Value::Null;
    let mut verified = String::from("hash chain checked; log proof NOT checked (no --vkey)");
    if verifier.vkey.is_some() {
        let r: Receipt = server.get_json(&format!("/registry/v1/entry/{head}"), &[])?;
        let c = verifier.check(&server, &r)?;
        if c.index != head || Some(&c.leaf) != leaves.last() {
            return Err(Failure::verification(format!(
                "the log's entry {} is not the history's newest entry {head}",
                c.index
            )));
        }
        verified = format!("hash chain checked; newest entry {}", c.human());
        head_proof = c.json();
    }
    let mut human = vec![format!(
        "{}: {} entries; {verified}",
        clean(&subject.to_string()),
        h.entries.len()
    )];
    for it in &h.entries {
        human.push(format!(
            "  {:>6}  {}  {:<16} {}  (by {})",
            it.index,
            fmt_time(it.event.time()),
            it.event.type_name(),
            describe(&it.event),
            it.event.actor()
        ));
    }
    let entries: Vec<Value> = h
        .entries
        .iter()
        .map(|it| json!({"index": it.index, "leaf_hash": it.leaf_hash, "event": it.event}))
        .collect();
    Ok(Output {
        human: human.join("\n"),
        json: json!({
            "subject": subject.to_string(),
            "entries": entries,
            "chain_verified": true,
            "log_verified": !head_proof.is_null(),
            "head": head_proof,
        }),
    })
}

// ---------------------------------------------------------------- lineage

/// The graph as an indented tree: first what the root came from (following edges out of a
/// node), then what came from it (edges into a node). A node already on the current path
/// is marked instead of followed, so cycles terminate.
fn lineage_tree(g: &Value) -> String {
    let root = s(g, "root").to_string();
    let nodes: Vec<&Value> = g["nodes"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let edges: Vec<(String, String, String)> = g["edges"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            (
                s(e, "from").to_string(),
                s(e, "to").to_string(),
                s(e, "rel").to_string(),
            )
        })
        .collect();
    let label = |key: &str| -> String {
        match nodes
            .iter()
            .find(|n| format!("{}@{}", s(n, "name"), s(n, "version")) == key)
        {
            Some(n) => {
                let tomb = if n["tombstoned"].as_bool() == Some(true) {
                    ", tombstoned"
                } else {
                    ""
                };
                format!(
                    "{} ({}, {}{tomb})",
                    clean(key),
                    clean(s(n, "kind")),
                    clean(s(n, "stage"))
                )
            }
            None => clean(key),
        }
    };
    fn walk(
        node: &str,
        up: bool,
        depth: usize,
        path: &mut Vec<String>,
        edges: &[(String, String, String)],
        label: &dyn Fn(&str) -> String,
        out: &mut Vec<String>,
    ) {
        for (from, to, rel) in edges {
            let next = match (up, from == node, to == node) {
                (true, true, _) => to,
                (false, _, true) => from,
                _ => continue,
            };
            let indent = "  ".repeat(depth);
            if path.iter().any(|p| p == next) {
                out.push(format!("{indent}{} {} (cycle)", clean(rel), clean(next)));
                continue;
            }
            out.push(format!("{indent}{} {}", clean(rel), label(next)));
            path.push(next.clone());
            walk(next, up, depth + 1, path, edges, label, out);
            path.pop();
        }
    }
    let mut out = vec![label(&root)];
    let mut up = Vec::new();
    walk(
        &root,
        true,
        2,
        &mut vec![root.clone()],
        &edges,
        &label,
        &mut up,
    );
    if !up.is_empty() {
        out.push("  came from:".to_string());
        out.extend(up);
    }
    let mut down = Vec::new();
    walk(
        &root,
        false,
        2,
        &mut vec![root.clone()],
        &edges,
        &label,
        &mut down,
    );
    if !down.is_empty() {
        out.push("  used by:".to_string());
        out.extend(down);
    }
    if edges.is_empty() {
        out.push("  (no lineage recorded)".to_string());
    }
    out.join("\n")
}

pub fn lineage(a: LineageArgs, timeout: Duration) -> Result<Output> {
    check_field("--name", event::validate_name(&a.name))?;
    check_field("--version", event::validate_version(&a.version))?;
    let server = Server::new(&a.server.server, timeout)?;
    let mut q = vec![("name", a.name.clone()), ("version", a.version.clone())];
    if let Some(d) = a.depth {
        q.push(("depth", d.to_string()));
    }
    let g: Value = server
        .get_json_optional("/registry/v1/graph", &q)?
        .ok_or_else(|| Failure::input(format!("{}@{} is not published", a.name, a.version)))?;
    let human = if a.edges {
        g["edges"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| {
                format!(
                    "{} -[{}]-> {}",
                    clean(s(e, "from")),
                    clean(s(e, "rel")),
                    clean(s(e, "to"))
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    } else {
        lineage_tree(&g)
    };
    Ok(Output { human, json: g })
}

// ---------------------------------------------------------------- promote, alias

pub fn promote(a: PromoteArgs, timeout: Duration) -> Result<Output> {
    check_field("--name", event::validate_name(&a.name))?;
    check_field("--version", event::validate_version(&a.version))?;
    check_field(
        "--actor",
        event::validate_text(&a.actor, event::MAX_ACTOR_BYTES),
    )?;
    if let Some(r) = &a.reason {
        check_field("--reason", event::validate_text(r, event::MAX_REASON_BYTES))?;
    }
    if a.to == Stage::INITIAL {
        return Err(Failure::input(
            "--to draft: a version is draft only until its first promotion",
        ));
    }
    let verifier = Verifier::new(&a.check)?;
    let server = Server::new(&a.server.server, timeout)?;
    let mut body = json!({
        "name": a.name, "version": a.version, "to": a.to, "actor": a.actor,
    });
    if let Some(r) = &a.reason {
        body["reason"] = json!(r);
    }
    let receipt: Receipt = server.post_json("/registry/v1/lifecycle", &body)?;
    let checked = verifier.check(&server, &receipt)?;
    let from = match &checked.event {
        Event::Lifecycle(Lifecycle {
            name,
            version,
            to,
            from,
            ..
        }) if *name == a.name && *version == a.version && *to == a.to => *from,
        _ => {
            return Err(not_the_event(
                &checked,
                &format!("the move of {}@{} to {}", a.name, a.version, a.to),
            ))
        }
    };
    note_unverified(&checked);
    let mut j = checked.json();
    j["name"] = json!(a.name);
    j["version"] = json!(a.version);
    j["from"] = json!(from);
    j["to"] = json!(a.to);
    Ok(Output {
        human: format!(
            "{}@{}: {from} -> {} at index {}; {}",
            a.name,
            a.version,
            a.to,
            checked.index,
            checked.human()
        ),
        json: j,
    })
}

pub fn alias(a: AliasArgs, timeout: Duration) -> Result<Output> {
    check_field("--name", event::validate_name(&a.name))?;
    check_field("--alias", event::validate_alias(&a.alias))?;
    if let Some(v) = &a.version {
        check_field("--version", event::validate_version(v))?;
    }
    check_field(
        "--actor",
        event::validate_text(&a.actor, event::MAX_ACTOR_BYTES),
    )?;
    let version = if a.remove { None } else { a.version.clone() };
    let verifier = Verifier::new(&a.check)?;
    let server = Server::new(&a.server.server, timeout)?;
    let body = json!({
        "name": a.name, "alias": a.alias, "version": version, "actor": a.actor,
    });
    let receipt: Receipt = server.post_json("/registry/v1/alias", &body)?;
    let checked = verifier.check(&server, &receipt)?;
    match &checked.event {
        Event::AliasMoved(AliasMoved {
            name, alias, to, ..
        }) if *name == a.name && *alias == a.alias && *to == version => {}
        _ => {
            let what = match &version {
                Some(v) => format!("alias {} of {} moving to {v}", a.alias, a.name),
                None => format!("the removal of alias {} of {}", a.alias, a.name),
            };
            return Err(not_the_event(&checked, &what));
        }
    }
    note_unverified(&checked);
    let mut j = checked.json();
    j["name"] = json!(a.name);
    j["alias"] = json!(a.alias);
    j["version"] = json!(version);
    Ok(Output {
        human: format!(
            "{} at index {}; {}",
            describe(&checked.event),
            checked.index,
            checked.human()
        ),
        json: j,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_pairs_split_at_the_first_equals_sign() {
        let m = parse_meta(&["a=1".into(), "b=x=y".into(), "c=".into()])
            .unwrap()
            .unwrap();
        assert_eq!(m["a"], "1");
        assert_eq!(m["b"], "x=y");
        assert_eq!(m["c"], "");
        assert!(parse_meta(&[]).unwrap().is_none());
        assert!(parse_meta(&["novalue".into()]).is_err());
        assert!(parse_meta(&["a=1".into(), "a=2".into()]).is_err());
    }

    #[test]
    fn repository_names_follow_the_blob_endpoints_grammar() {
        for ok in ["m", "acme/resnet-50", "a.b_c/d__e"] {
            assert!(check_repository_name(ok).is_ok(), "{ok}");
        }
        for bad in ["acme/model-", "a/b.", "a___b", "a/../b"] {
            assert!(check_repository_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn locations_resolve_against_the_server_root() {
        let s = Server::new("http://127.0.0.1:8080/prefix/", Duration::from_secs(1)).unwrap();
        assert_eq!(s.base, "http://127.0.0.1:8080/prefix");
        assert_eq!(
            s.resolve("/v2/m/blobs/uploads/1").unwrap(),
            "http://127.0.0.1:8080/v2/m/blobs/uploads/1"
        );
        assert_eq!(
            s.resolve("https://other/v2/x").unwrap(),
            "https://other/v2/x"
        );
        assert!(s.resolve("v2/relative").is_err());
        for bad in ["ftp://x", "http://", "http://h/?q=1", "127.0.0.1:8080"] {
            assert!(
                Server::new(bad, Duration::from_secs(1)).is_err(),
                "{bad} accepted"
            );
        }
    }

    #[test]
    fn state_file_sits_next_to_the_input_and_round_trips() {
        assert_eq!(
            state_path(Path::new("dir/model.bin")),
            PathBuf::from("dir/model.bin.ledger-upload")
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.bin.ledger-upload");
        let st = UploadState {
            server: "http://h".into(),
            location: "http://h/v2/m/blobs/uploads/abc".into(),
            digest: Digest::of(b"m"),
            size: 1,
            mtime: 1_700_000_000_123_456_789,
        };
        write_state(&p, &st);
        assert_eq!(read_state(&p), Some(st));
        fs::write(&p, b"{not json").unwrap();
        assert_eq!(read_state(&p), None);
        remove_state(&p);
        assert!(!p.exists());
    }

    #[test]
    fn times_print_as_utc() {
        assert_eq!(fmt_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(fmt_time(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(fmt_time(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn control_characters_are_escaped_for_display() {
        assert_eq!(clean("plain é"), "plain é");
        assert_eq!(clean("a\x1b[2Jb\n"), "a\\u{1b}[2Jb\\n");
    }

    fn item(index: u64, ev: Event) -> HistoryItem {
        HistoryItem {
            index,
            leaf_hash: hash_to_base64(&ev.leaf_hash()),
            event: ev,
        }
    }

    #[test]
    fn a_history_must_be_one_unbroken_hash_chain() {
        let p = Event::Published(Published {
            name: "a/b".into(),
            version: "1".into(),
            kind: Kind::Model,
            digest: Digest::of(b"x"),
            size: 1,
            media_type: "application/octet-stream".into(),
            meta_digest: None,
            meta: None,
            actor: "alice".into(),
            sig: None,
            time: 1,
        });
        let step = |from: Stage, to: Stage, prev: &Event, i: u64| {
            Event::Lifecycle(Lifecycle {
                name: "a/b".into(),
                version: "1".into(),
                from,
                to,
                reason: None,
                prev: ledger_client::event::Prev::of(i, &prev.encode()),
                actor: "bob".into(),
                time: 2,
            })
        };
        let l1 = step(Stage::Draft, Stage::Approved, &p, 3);
        let l2 = step(Stage::Approved, Stage::Released, &l1, 5);
        let subject = p.subject();
        let good = vec![item(3, p.clone()), item(5, l1.clone()), item(9, l2.clone())];
        assert_eq!(check_chain(&subject, &good).unwrap().len(), 3);

        // An entry left out breaks the chain.
        let gap = vec![item(3, p.clone()), item(9, l2.clone())];
        assert!(check_chain(&subject, &gap).is_err());
        // The start left out.
        assert!(check_chain(&subject, &[item(5, l1.clone())]).is_err());
        // A wrong stated leaf hash.
        let mut bad = vec![item(3, p.clone()), item(5, l1.clone())];
        bad[1].leaf_hash = hash_to_base64(&p.leaf_hash());
        assert!(check_chain(&subject, &bad).is_err());
        // The right entries at a wrong index.
        let moved = vec![item(4, p.clone()), item(5, l1)];
        assert!(check_chain(&subject, &moved).is_err());
        // About another subject.
        let other = Subject::Version {
            name: "a/b".into(),
            version: "2".into(),
        };
        assert!(check_chain(&other, &[item(3, p)]).is_err());
    }

    #[test]
    fn lineage_prints_both_directions_and_stops_at_cycles() {
        let g = json!({
            "root": "m@2",
            "nodes": [
                {"name": "m", "version": "2", "kind": "model", "stage": "draft", "tombstoned": false},
                {"name": "d", "version": "1", "kind": "dataset", "stage": "released", "tombstoned": false},
                {"name": "m", "version": "3", "kind": "model", "stage": "draft", "tombstoned": true},
            ],
            "edges": [
                {"from": "m@2", "to": "d@1", "rel": "trained_from"},
                {"from": "d@1", "to": "m@2", "rel": "derived_from"},
                {"from": "m@2", "to": "https://ci/run/7", "rel": "pipeline_run"},
                {"from": "m@3", "to": "m@2", "rel": "base_model"},
            ],
        });
        let t = lineage_tree(&g);
        let want = "\
m@2 (model, draft)
  came from:
    trained_from d@1 (dataset, released)
      derived_from m@2 (cycle)
    pipeline_run https://ci/run/7
  used by:
    derived_from d@1 (dataset, released)
      trained_from m@2 (cycle)
    base_model m@3 (model, draft, tombstoned)";
        assert_eq!(t, want);
    }
}
