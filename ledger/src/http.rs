//! The HTTP API (specs/api.md): the C2SP tlog-tiles read path, writes, proofs, operations.

use crate::api_error::ApiError;
use crate::log::{Log, Snapshot};
use crate::sequencer::{Pool, Sequenced};
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::prelude::*;
use bytes::Bytes;
use http_body_util::BodyExt;
use ledger_client::tiles::{TileKind, TilePath, MAX_ENTRY_SIZE};
use ledger_client::tlog_proof::TlogProof;
use prometheus_client::registry::Registry;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use tlog_tiles::Hash;

pub struct LogHandle {
    pub log: Arc<Log>,
    pub pool: Arc<Pool>,
    /// Witness cosignatures and time-stamps for this log's checkpoints.
    pub attest: Arc<crate::attest::Attestor>,
    /// Whether `add` and `add-batch` accept entries; not for the access audit log, which
    /// only the ledger writes.
    pub writable: bool,
    /// The log's key history (rotations), verified at start.
    pub keys: Arc<crate::rotation::LogKeys>,
}

pub struct AppState {
    pub logs: HashMap<String, LogHandle>,
    pub registry: Registry,
    /// Largest accepted `add-batch` body.
    pub max_batch_bytes: usize,
    /// Blob uploads and downloads (`/v2/`, registry::oci).
    pub uploads: Arc<crate::registry::uploads::Uploads>,
    /// The artifact registry over the first log (`/registry/v1`, registry::api).
    pub artifacts: Arc<crate::registry::service::Registry>,
    /// Longest a `?wait=attested` submission waits for a cosigned checkpoint.
    pub attest_wait: std::time::Duration,
    /// The embedded RFC 3161 authority, served at `POST /tsa` when enabled.
    pub tsa: Option<Arc<crate::tsa::Authority>>,
    /// Access control (`--access-config`); every route is open when `None`.
    pub guard: Option<Arc<crate::access::http::Guard>>,
    /// Permits for requests in progress (`--max-concurrent-requests`).
    pub in_flight: Arc<tokio::sync::Semaphore>,
}

/// Most entries one `add-batch` request may carry.
pub const MAX_BATCH_ENTRIES: usize = 65_536;

type Shared = Arc<AppState>;

pub fn router(state: Shared) -> Router {
    let guard = state.guard.clone();
    let in_flight = state.in_flight.clone();
    let app = routes(state);
    let app = match guard {
        // The access layer sees every request before any route does (specs/access.md).
        Some(g) => app.layer(axum::middleware::from_fn_with_state(
            g,
            crate::access::http::guard,
        )),
        None => app,
    };
    // Outermost: a request over the limit costs nothing more, not even an audit record.
    app.layer(axum::middleware::from_fn_with_state(in_flight, bounded))
}

/// Sheds load beyond `--max-concurrent-requests` with 503 and Retry-After rather than
/// queueing it: waiting requests would hold memory and connections without bound.
async fn bounded(
    State(in_flight): State<Arc<tokio::sync::Semaphore>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let Ok(_permit) = in_flight.try_acquire() else {
        let mut r = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "the server is handling as many requests as it is configured to; retry shortly",
        )
        .into_response();
        r.headers_mut().insert(
            header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("1"),
        );
        return r;
    };
    // The permit is held until the response head is produced; a streamed body (a blob
    // download) then runs on without it, bounded by its connection.
    next.run(req).await
}

fn routes(state: Shared) -> Router {
    let blobs = Router::new()
        .route("/v2/", get(crate::registry::oci::base))
        .route(
            "/v2/{*rest}",
            axum::routing::any(crate::registry::oci::dispatch),
        )
        .with_state(crate::registry::oci::Oci {
            uploads: state.uploads.clone(),
            registry: state.artifacts.clone(),
        });
    let entries = Router::new()
        .route("/{log}/tile/entries/{*path}", get(entry_bundle))
        // c2sp.org/tlog-tiles#log-entries: "Entry bundles SHOULD be compressed at the HTTP
        // layer". Hash tiles are random bytes, so only bundles go through compression.
        // The fastest level: entries are often incompressible digests and signatures, and a
        // monitor catching up reads every bundle (at the default level deflate took 77% of
        // the server's CPU while serving one; BENCHMARKS.md, the monitor).
        .layer(
            tower_http::compression::CompressionLayer::new()
                .gzip(true)
                .quality(tower_http::CompressionLevel::Fastest),
        );
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/logs", get(list_logs))
        .route("/{log}/checkpoint", get(checkpoint))
        .route("/{log}/checkpoint/{size}", get(checkpoint_at))
        .route("/{log}/tile/{*path}", get(hash_tile))
        .route("/{log}/add", post(add))
        .route("/{log}/add-batch", post(add_batch))
        .route("/{log}/proof/inclusion", get(inclusion))
        .route("/{log}/proof/consistency", get(consistency))
        .route("/{log}/proof/tlog-proof", get(tlog_proof))
        .route("/{log}/attestation", get(attestation_latest))
        .route("/{log}/attestation/{size}", get(attestation_at))
        .route("/{log}/cosigned-checkpoint", get(cosigned_checkpoint))
        .route("/{log}/key-history", get(key_history))
        .merge(entries)
        .merge(blobs)
        .merge(crate::registry::api::router(state.artifacts.clone()))
        .merge(match &state.tsa {
            Some(a) => crate::tsa::router(a.clone()),
            None => Router::new(),
        })
        .merge(match &state.guard {
            Some(g) => crate::access::http::router(g.clone())
                .merge(crate::registry::grants::router(state.artifacts.clone())),
            None => Router::new(),
        })
        .fallback(|| async { ApiError::not_found("no such endpoint (see specs/api.md)") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this endpoint",
            )
        })
        .with_state(state)
}

fn handle<'a>(s: &'a AppState, name: &str) -> Result<&'a LogHandle, ApiError> {
    s.logs
        .get(name)
        .ok_or_else(|| ApiError::not_found(format!("no log named {name:?}")))
}

/// With access control on, registry events reach the registry's log only through
/// `/registry/v1`, where the actor is the principal and governance applies: a raw append
/// of a well-formed event (say, an approval) would bypass both, since the catalog applies
/// any valid event whichever route logged it.
fn refuse_raw_registry_events<'a>(
    s: &AppState,
    log: &str,
    mut entries: impl Iterator<Item = &'a [u8]>,
) -> Result<(), ApiError> {
    if s.guard.is_none() || s.artifacts.log.name != log {
        return Ok(());
    }
    match entries.position(|e| ledger_client::event::Event::decode(e).is_ok()) {
        None => Ok(()),
        Some(i) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "entry {i} is a registry event; with access control on, registry events are \
                 written through /registry/v1 (specs/access.md)"
            ),
        )),
    }
}

/// A log that accepts entries over HTTP.
fn writable_handle<'a>(s: &'a AppState, name: &str) -> Result<&'a LogHandle, ApiError> {
    let h = handle(s, name)?;
    if !h.writable {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("log {name:?} is written only by the ledger itself (the access audit log)"),
        ));
    }
    Ok(h)
}

fn text(body: Vec<u8>, cache: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, cache),
        ],
        body,
    )
        .into_response()
}

// ---- read path: c2sp.org/tlog-tiles ----

async fn checkpoint(
    State(s): State<Shared>,
    Path(log): Path<String>,
) -> Result<Response, ApiError> {
    let h = handle(&s, &log)?;
    // c2sp.org/tlog-tiles#checkpoints: mutable, so "headers SHOULD prevent caching beyond a
    // few seconds".
    Ok(text(
        h.log.snapshot().checkpoint.to_vec(),
        "no-cache, max-age=2",
    ))
}

async fn checkpoint_at(
    State(s): State<Shared>,
    Path((log, size)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let h = handle(&s, &log)?;
    let size = parse_u64("size", &size)?;
    match h.log.checkpoint_at(size)? {
        Some(note) => Ok(text(note, "public, max-age=31536000, immutable")),
        None => Err(ApiError::not_found(format!(
            "the log issued no checkpoint at tree size {size}"
        ))),
    }
}

fn tile_response(data: Vec<u8>) -> Response {
    // c2sp.org/tlog-tiles#merkle-tree: "This endpoint is immutable, so its caching headers
    // SHOULD be long-lived." A partial tile of width W is immutable too.
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        data,
    )
        .into_response()
}

fn parse_tile(path: &str) -> Result<TilePath, ApiError> {
    TilePath::parse(path).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_tile_path",
            format!("{path:?} is not a tlog-tiles path: {e}"),
        )
    })
}

async fn hash_tile(
    State(s): State<Shared>,
    Path((log, path)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let h = handle(&s, &log)?;
    let t = parse_tile(&format!("tile/{path}"))?;
    match t.kind {
        TileKind::Hashes { level } => Ok(tile_response(h.log.tile(
            level,
            t.index,
            usize::from(t.width),
        )?)),
        // Unreachable through routing (entries have their own route), kept for safety.
        TileKind::Entries => Ok(tile_response(h.log.bundle(t.index, usize::from(t.width))?)),
    }
}

async fn entry_bundle(
    State(s): State<Shared>,
    Path((log, path)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let h = handle(&s, &log)?;
    let t = parse_tile(&format!("tile/entries/{path}"))?;
    Ok(tile_response(h.log.bundle(t.index, usize::from(t.width))?))
}

// ---- write path ----

fn require_octet_stream(headers: &HeaderMap) -> Result<(), ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if mime.eq_ignore_ascii_case("application/octet-stream") {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("Content-Type must be application/octet-stream, not {ct:?}"),
        ))
    }
}

const DRAIN_LIMIT: usize = 1 << 20;

/// Reads a body of at most `limit` bytes, answering 413 without reading past the limit.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || ApiError::too_large(format!("body is larger than {limit} bytes"));
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit as u64 {
            // A body only a little too large is drained first, so that clients which
            // write the whole body before reading can see the 413; a huge one is refused
            // without reading it.
            if len <= (limit + DRAIN_LIMIT) as u64 {
                let _ = http_body_util::Limited::new(body, limit + DRAIN_LIMIT)
                    .collect()
                    .await;
            }
            return Err(too_large());
        }
    }
    let limited = http_body_util::Limited::new(body, limit);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(ApiError::bad_request(format!("reading body: {e}"))),
    }
}

async fn sequence(
    h: &LogHandle,
    entries: Vec<(Bytes, Hash)>,
) -> Result<crate::sequencer::Receipt, ApiError> {
    let rx = h.pool.submit(entries).inspect_err(|_| {
        h.log.metrics.rejected_pool_full.inc();
    })?;
    let receipt = rx.await.map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "sequencer stopped",
        )
    })??;
    Ok(receipt)
}

pub(crate) fn b64(h: &Hash) -> String {
    BASE64_STANDARD.encode(h.0)
}

/// A JSON answer serialised into one buffer sized for a proof answer (~1.5 KB), where
/// `axum::Json` starts at 128 bytes and grows it five times on the hot paths.
fn json_answer<T: serde::Serialize>(v: &T) -> Response {
    let mut buf = Vec::with_capacity(2048);
    match serde_json::to_writer(&mut buf, v) {
        Ok(()) => ([(header::CONTENT_TYPE, "application/json")], buf).into_response(),
        Err(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("encoding the answer: {e}"),
        )
        .into_response(),
    }
}

/// A hash as standard base64 in a JSON answer, encoded on the stack: answers carry ~25
/// of them and allocating each was a visible share of the proof path's CPU.
pub(crate) struct B64<'a>(pub &'a Hash);

impl serde::Serialize for B64<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 44];
        let n = BASE64_STANDARD
            .encode_slice(self.0 .0, &mut buf)
            .map_err(serde::ser::Error::custom)?;
        s.serialize_str(std::str::from_utf8(&buf[..n]).map_err(serde::ser::Error::custom)?)
    }
}

pub(crate) struct B64List<'a>(pub &'a [Hash]);

impl serde::Serialize for B64List<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(B64))
    }
}

pub(crate) fn tlog_proof_text(index: u64, proof: Vec<Hash>, checkpoint: &[u8]) -> String {
    let p = TlogProof {
        extra: None,
        index,
        inclusion_proof: proof,
        checkpoint: checkpoint.to_vec(),
    };
    // The proof lines are ASCII and the checkpoint is UTF-8, so this never replaces bytes.
    String::from_utf8(p.to_bytes())
        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

async fn add(
    State(s): State<Shared>,
    Path(log): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let h = writable_handle(&s, &log)?;
    let wait_attested = match q {
        None => false,
        Some(q) => match Query::parse(Some(q))?.0.get("wait").map(String::as_str) {
            None => false,
            Some("attested") => true,
            Some(v) => {
                return Err(ApiError::bad_request(format!(
                    "wait must be \"attested\", not {v:?}"
                )))
            }
        },
    };
    if wait_attested {
        crate::attest::http::require_enabled(&h.attest)?;
    }
    require_octet_stream(&headers)?;
    let entry = read_body(&headers, body, MAX_ENTRY_SIZE).await?;
    if entry.is_empty() {
        return Err(ApiError::invalid(
            "an entry must be 1 to 65535 bytes; this one is empty",
        ));
    }
    refuse_raw_registry_events(&s, &log, std::iter::once(&entry[..]))?;
    let leaf = ledger_client::merkle::leaf_hash(&entry);
    let receipt = sequence(h, vec![(entry, leaf)]).await?;
    let Sequenced {
        index,
        leaf,
        duplicate,
    } = receipt.entries[0];
    if wait_attested {
        return attested_add(&s, h, index, &leaf, duplicate).await;
    }
    let snap = &receipt.snapshot;
    let proof = h.log.inclusion_proof(snap, index, snap.size())?;
    let answer = add_answer(index, &leaf, duplicate, &proof, snap);
    Ok(([(header::CONTENT_TYPE, "application/json")], answer).into_response())
}

/// The JSON answer to `add` (specs/api.md), written by hand because this is the hottest
/// path: through serde each proof hash was base64-encoded twice (the array and the
/// tlog-proof) and the checkpoint escaped twice, per answer. `tlog_proof` holds the file
/// that [`tlog_proof_text`] builds (c2sp.org/tlog-proof#format); a test keeps them equal.
fn add_answer(
    index: u64,
    leaf: &Hash,
    duplicate: bool,
    proof: &[Hash],
    snap: &Snapshot,
) -> Vec<u8> {
    use std::io::Write;
    const B64_HASH: usize = 44;
    let mut hashes = vec![0u8; B64_HASH * (proof.len() + 1)];
    for (h, out) in std::iter::once(leaf)
        .chain(proof)
        .zip(hashes.chunks_exact_mut(B64_HASH))
    {
        // 44 bytes always hold a 32-byte hash in padded base64.
        let _ = BASE64_STANDARD.encode_slice(h.0, out);
    }
    let (leaf_b64, proof_b64) = hashes.split_at(B64_HASH);
    let checkpoint = snap.checkpoint_json();
    let mut out = Vec::with_capacity(192 + 100 * proof.len() + 2 * checkpoint.len());
    // Base64 and decimal digits need no JSON escaping; writes to a Vec cannot fail.
    let _ = write!(out, "{{\"index\":{index},\"leaf_hash\":\"");
    out.extend_from_slice(leaf_b64);
    let _ = write!(
        out,
        "\",\"duplicate\":{duplicate},\"tree_size\":{},\"inclusion_proof\":[",
        snap.size()
    );
    for (i, h) in proof_b64.chunks_exact(B64_HASH).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(h);
        out.push(b'"');
    }
    // The tlog-proof file with its newlines escaped: header, index, one hash per line, an
    // empty line, the checkpoint.
    let _ = write!(
        out,
        "],\"tlog_proof\":\"{}\\nindex {index}\\n",
        ledger_client::tlog_proof::HEADER
    );
    for h in proof_b64.chunks_exact(B64_HASH) {
        out.extend_from_slice(h);
        out.extend_from_slice(b"\\n");
    }
    out.extend_from_slice(b"\\n");
    out.extend_from_slice(checkpoint);
    out.extend_from_slice(b"\",\"checkpoint\":\"");
    out.extend_from_slice(checkpoint);
    out.extend_from_slice(b"\"}");
    out
}

/// Waits for an attestation covering `index`, then answers with the proof against it.
async fn attested_add(
    s: &AppState,
    h: &LogHandle,
    index: u64,
    leaf: &Hash,
    duplicate: bool,
) -> Result<Response, ApiError> {
    use crate::attest::http as ah;
    let a = h
        .attest
        .wait_covering(index, s.attest_wait)
        .await
        .ok_or_else(|| ah::wait_timeout(index, s.attest_wait))?;
    let (proof, file) = ah::tlog_proof(&h.log, index, &a)?;
    let file = String::from_utf8_lossy(&file);
    let answer = ah::AttestationAnswer::new(&a);
    Ok(json_answer(&ah::AttestedAdd {
        index,
        leaf_hash: B64(leaf),
        duplicate,
        tree_size: a.size,
        inclusion_proof: B64List(&proof),
        tlog_proof: &file,
        checkpoint: answer.checkpoint,
        cosigners: answer.cosigners,
        timestamps: answer.timestamps,
    }))
}

#[derive(serde::Serialize)]
struct BatchEntryAnswer<'a> {
    index: u64,
    leaf_hash: B64<'a>,
    duplicate: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    inclusion_proof: Option<B64List<'a>>,
}

#[derive(serde::Serialize)]
struct BatchAnswer<'a> {
    tree_size: u64,
    checkpoint: &'a str,
    entries: Vec<BatchEntryAnswer<'a>>,
}

/// Checkpoints are signed notes, valid UTF-8 by construction (c2sp.org/signed-note#format).
pub(crate) fn note_str(note: &[u8]) -> &str {
    std::str::from_utf8(note).unwrap_or("")
}

async fn add_batch(
    State(s): State<Shared>,
    Path(log): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let h = writable_handle(&s, &log)?;
    let q = Query::parse(q)?;
    let proofs = q.flag("proofs")?;
    require_octet_stream(&headers)?;
    let body = read_body(&headers, body, s.max_batch_bytes).await?;
    let decoded = ledger_client::tiles::decode_bundle(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_bundle",
            format!("body is not a sequence of uint16-length-prefixed entries: {e}"),
        )
    })?;
    if decoded.is_empty() {
        return Err(ApiError::invalid("the batch holds no entries"));
    }
    if decoded.len() > MAX_BATCH_ENTRIES {
        return Err(ApiError::too_large(format!(
            "a batch may hold at most {MAX_BATCH_ENTRIES} entries; this one holds {}",
            decoded.len()
        )));
    }
    refuse_raw_registry_events(&s, &log, decoded.iter().copied())?;
    let entries: Vec<(Bytes, Hash)> = decoded
        .iter()
        .map(|e| {
            // Share the request buffer rather than copying every entry.
            let off = e.as_ptr() as usize - body.as_ptr() as usize;
            (
                body.slice(off..off + e.len()),
                ledger_client::merkle::leaf_hash(e),
            )
        })
        .collect();
    let receipt = sequence(h, entries).await?;
    let snap = &receipt.snapshot;
    let proofs: Vec<Vec<Hash>> = if proofs {
        h.log
            .inclusion_proofs(snap, receipt.entries.iter().map(|e| e.index), snap.size())?
    } else {
        vec![]
    };
    let entries: Vec<BatchEntryAnswer> = receipt
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| BatchEntryAnswer {
            index: e.index,
            leaf_hash: B64(&e.leaf),
            duplicate: e.duplicate,
            inclusion_proof: proofs.get(i).map(|p| B64List(p)),
        })
        .collect();
    Ok(Json(BatchAnswer {
        tree_size: snap.size(),
        checkpoint: note_str(&snap.checkpoint),
        entries,
    })
    .into_response())
}

// ---- proofs ----

pub(crate) struct Query(pub HashMap<String, String>);

impl Query {
    pub(crate) fn parse(raw: Option<String>) -> Result<Self, ApiError> {
        let raw = raw.unwrap_or_default();
        if raw.len() > 4096 {
            return Err(ApiError::bad_request("query string is too long"));
        }
        let mut m = HashMap::new();
        for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
            if m.insert(k.to_string(), v.to_string()).is_some() {
                return Err(ApiError::bad_request(format!(
                    "parameter {k:?} given twice"
                )));
            }
        }
        Ok(Self(m))
    }

    pub(crate) fn u64(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.0.get(name).map(|v| parse_u64(name, v)).transpose()
    }

    pub(crate) fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.0.get(name).map(String::as_str) {
            None | Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") | Some("") => Ok(true),
            Some(v) => Err(ApiError::bad_request(format!(
                "parameter {name} must be true or false, not {v:?}"
            ))),
        }
    }
}

fn parse_u64(name: &str, v: &str) -> Result<u64, ApiError> {
    if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::bad_request(format!(
            "{name} must be a non-negative decimal integer, not {v:?}"
        )));
    }
    v.parse()
        .map_err(|_| ApiError::bad_request(format!("{name} {v:?} does not fit in 64 bits")))
}

fn parse_leaf_hash(v: &str) -> Result<Hash, ApiError> {
    let bytes = if v.len() == 64 {
        hex::decode(v).ok()
    } else {
        BASE64_STANDARD.decode(v).ok()
    };
    match bytes.and_then(|b| <[u8; 32]>::try_from(b).ok()) {
        Some(b) => Ok(Hash(b)),
        None => Err(ApiError::bad_request(format!(
            "leaf_hash must be 32 bytes in base64 or hex, not {v:?}"
        ))),
    }
}

/// Resolves `index=` or `leaf_hash=` and `tree_size=` against a snapshot.
fn locate_entry(h: &LogHandle, snap: &Snapshot, q: &Query) -> Result<(u64, u64), ApiError> {
    let size = q.u64("tree_size")?.unwrap_or(snap.size());
    if size > snap.size() {
        return Err(ApiError::invalid(format!(
            "tree_size {size} is larger than the log ({})",
            snap.size()
        )));
    }
    let index = match (q.u64("index")?, q.0.get("leaf_hash")) {
        (Some(i), None) => i,
        (None, Some(lh)) => {
            let leaf = parse_leaf_hash(lh)?;
            h.log.find_leaf(snap, &leaf)?.ok_or_else(|| {
                ApiError::not_found(format!("no entry with leaf hash {}", b64(&leaf)))
            })?
        }
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of index= or leaf_hash=",
            ))
        }
    };
    if index >= size {
        return Err(ApiError::invalid(format!(
            "entry {index} is not in a tree of size {size}"
        )));
    }
    Ok((index, size))
}

/// The log, snapshot, index and tree size an inclusion request names.
fn entry_request<'a>(
    s: &'a AppState,
    log: &str,
    q: Option<String>,
) -> Result<(&'a LogHandle, Arc<Snapshot>, u64, u64), ApiError> {
    let h = handle(s, log)?;
    let q = Query::parse(q)?;
    let snap = h.log.snapshot();
    let (index, size) = locate_entry(h, &snap, &q)?;
    Ok((h, snap, index, size))
}

async fn inclusion(
    State(s): State<Shared>,
    Path(log): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let (h, snap, index, size) = entry_request(&s, &log, q)?;
    let (leaf, proof) = h.log.leaf_and_inclusion_proof(&snap, index, size)?;
    let cp = h.log.checkpoint_at(size)?;
    Ok(json_answer(&InclusionAnswer {
        index,
        tree_size: size,
        leaf_hash: B64(&leaf),
        inclusion_proof: B64List(&proof),
        checkpoint: cp.as_deref().map(note_str),
    }))
}

#[derive(serde::Serialize)]
struct InclusionAnswer<'a> {
    index: u64,
    tree_size: u64,
    leaf_hash: B64<'a>,
    inclusion_proof: B64List<'a>,
    checkpoint: Option<&'a str>,
}

async fn tlog_proof(
    State(s): State<Shared>,
    Path(log): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let attested = Query::parse(q.clone())?.flag("attested")?;
    let (h, snap, index, size) = entry_request(&s, &log, q)?;
    if attested {
        // The earliest attested tree that holds the entry (a tree_size= is ignored: the
        // attestation decides the size).
        let a = crate::attest::http::latest(&h.attest)?;
        let a = if a.size > index {
            h.attest
                .covering(index)
                .map_err(|e| ApiError::from(crate::log::LogError::Store(e)))?
                .unwrap_or_else(|| (*a).clone())
        } else {
            return Err(ApiError::not_found(format!(
                "entry {index} is not covered by an attested checkpoint yet (latest attested size {})",
                a.size
            )));
        };
        let (_, file) = crate::attest::http::tlog_proof(&h.log, index, &a)?;
        return Ok(text(file, "no-cache"));
    }
    let cp = h.log.checkpoint_at(size)?.ok_or_else(|| {
        ApiError::not_found(format!(
            "the log issued no checkpoint at tree size {size}; a tlog-proof needs one"
        ))
    })?;
    let proof = h.log.inclusion_proof(&snap, index, size)?;
    Ok(text(
        tlog_proof_text(index, proof, &cp).into_bytes(),
        "no-cache",
    ))
}

async fn consistency(
    State(s): State<Shared>,
    Path(log): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let h = handle(&s, &log)?;
    let q = Query::parse(q)?;
    let snap = h.log.snapshot();
    let from = q
        .u64("from")?
        .ok_or_else(|| ApiError::bad_request("from= is required"))?;
    let to = q.u64("to")?.unwrap_or(snap.size());
    let proof = h.log.consistency_proof(&snap, from, to)?;
    let cp = h.log.checkpoint_at(to)?;
    Ok(Json(json!({
        "from": from,
        "to": to,
        "consistency_proof": B64List(&proof),
        "checkpoint": cp.as_deref().map(note_str),
    }))
    .into_response())
}

// ---- attestations ----

async fn attestation_latest(
    State(s): State<Shared>,
    Path(log): Path<String>,
) -> Result<Response, ApiError> {
    let h = handle(&s, &log)?;
    let a = crate::attest::http::latest(&h.attest)?;
    Ok(json_answer(&crate::attest::http::AttestationAnswer::new(
        &a,
    )))
}

async fn attestation_at(
    State(s): State<Shared>,
    Path((log, size)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let h = handle(&s, &log)?;
    let size = parse_u64("size", &size)?;
    let a = crate::attest::http::at(&h.attest, size)?;
    Ok(json_answer(&crate::attest::http::AttestationAnswer::new(
        &a,
    )))
}

/// The latest cosigned checkpoint as a signed note, for tools that speak only
/// c2sp.org/tlog-checkpoint (it changes, so it is cached like the checkpoint).
async fn cosigned_checkpoint(
    State(s): State<Shared>,
    Path(log): Path<String>,
) -> Result<Response, ApiError> {
    let h = handle(&s, &log)?;
    let a = crate::attest::http::latest(&h.attest)?;
    Ok(text(a.checkpoint.to_vec(), "no-cache, max-age=2"))
}

/// The log's key rotations, each with the checkpoint both keys signed and its inclusion
/// proof: what `ledgerctl key-history` verifies from a trusted first key (specs/keys.md).
async fn key_history(
    State(s): State<Shared>,
    Path(log): Path<String>,
) -> Result<Response, ApiError> {
    let h = handle(&s, &log)?;
    let file = crate::rotation::history_file(&h.log, &h.keys).map_err(|e| {
        tracing::error!(error = %format!("{e:#}"), "key history");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "storage",
            format!("{e:#}"),
        )
    })?;
    Ok(Json(file).into_response())
}

// ---- operations ----

async fn readyz(State(s): State<Shared>) -> Response {
    if s.logs.values().all(|h| h.pool.is_accepting()) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "a log's storage failed",
        )
        .into_response()
    }
}

async fn list_logs(State(s): State<Shared>) -> Response {
    let mut logs: Vec<Value> = s
        .logs
        .iter()
        .map(|(name, h)| {
            json!({"name": name, "origin": h.log.origin, "vkey": h.log.vkey,
                   "tree_size": h.log.snapshot().size()})
        })
        .collect();
    logs.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Json(json!({ "logs": logs })).into_response()
}

async fn metrics(State(s): State<Shared>) -> Response {
    for h in s.logs.values() {
        h.log.metrics.storage_bytes.set(h.log.store.storage_bytes());
    }
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &s.registry) {
        return ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "metrics",
            format!("encoding metrics: {e}"),
        )
        .into_response();
    }
    let mut r = out.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Edge;

    /// What `add` answered through serde before [`add_answer`] wrote it by hand.
    #[derive(serde::Serialize)]
    struct ReferenceAddAnswer<'a> {
        index: u64,
        leaf_hash: B64<'a>,
        duplicate: bool,
        tree_size: u64,
        inclusion_proof: B64List<'a>,
        tlog_proof: String,
        checkpoint: &'a str,
    }

    #[test]
    fn the_hand_written_add_answer_is_the_serde_answer_and_holds_the_tlog_proof_file() {
        let checkpoints: [&[u8]; 3] = [
            "example.com/log\n4\nT6ywE4mv2DNat191t+h2VjQKKhwGlurk8G5ac7Orbl8=\n\n\u{2014} example.com/log NhsZlWom=\n".as_bytes(),
            // Characters JSON must escape, should an origin ever contain them.
            b"a \"quoted\\\\ origin\"\t\x01\n1\nAAAA\n",
            b"",
        ];
        for (k, cp) in checkpoints.iter().enumerate() {
            let snap = Snapshot::new(
                Edge::default(),
                vec![],
                tlog_tiles::EMPTY_HASH,
                Bytes::copy_from_slice(cp),
            );
            for n in [0usize, 1, 2, 17, 63] {
                let proof: Vec<Hash> = (0..n)
                    .map(|i| tlog_tiles::record_hash(format!("{k}/{i}").as_bytes()))
                    .collect();
                let leaf = tlog_tiles::record_hash(b"leaf");
                let index = (n as u64) << 33 | 7;
                let ours: Value =
                    serde_json::from_slice(&add_answer(index, &leaf, n % 2 == 0, &proof, &snap))
                        .expect("the answer is JSON");
                let reference = serde_json::to_value(ReferenceAddAnswer {
                    index,
                    leaf_hash: B64(&leaf),
                    duplicate: n % 2 == 0,
                    tree_size: snap.size(),
                    inclusion_proof: B64List(&proof),
                    tlog_proof: tlog_proof_text(index, proof.clone(), cp),
                    checkpoint: std::str::from_utf8(cp).unwrap(),
                })
                .unwrap();
                assert_eq!(ours, reference, "checkpoint {k}, {n} proof hashes");
                if !cp.is_empty() {
                    let file = ours["tlog_proof"].as_str().unwrap();
                    let parsed = TlogProof::parse(file.as_bytes()).expect("a tlog-proof file");
                    assert_eq!((parsed.index, parsed.inclusion_proof), (index, proof));
                }
            }
        }
    }
}
