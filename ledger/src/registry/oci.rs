//! Blob upload and download in the shape of the OCI distribution spec (v1.1), so that the
//! chunked, resumable upload follows a protocol that existing tools already speak:
//!
//! | request | meaning (distribution-spec section) |
//! |---|---|
//! | `GET /v2/` | API version check ("Determining support") |
//! | `POST /v2/<name>/blobs/uploads/` | start a session (202 + Location) ("Pushing blobs") |
//! | `POST /v2/<name>/blobs/uploads/?digest=<d>` | monolithic upload (201) |
//! | `POST /v2/<name>/blobs/uploads/?mount=<d>` | 201 if the blob is already stored, else a session |
//! | `PATCH <location>` (+ `Content-Range: <start>-<end>`) | append a chunk (202, `Range`) ("Pushing a blob in chunks") |
//! | `GET <location>` | progress (204, `Range`) ("Resuming an upload" is implied by it) |
//! | `PUT <location>?digest=<d>` | complete (201) |
//! | `DELETE <location>` | cancel (204) |
//! | `HEAD`/`GET /v2/<name>/blobs/<d>` | existence / download, with `Range` (RFC 9110 §14) |
//!
//! Blobs are content-addressed across names: `<name>` is checked for syntax only, and a
//! blob pushed under one name is found under any other. Every answer also carries
//! `Upload-Offset` (the byte count, as in tus), because the spec's inclusive `Range: 0-<n-1>`
//! cannot tell an empty upload from a one-byte one.
//!
//! Errors use the spec's body, `{"errors":[{"code","message"}]}` ("Error Codes").

use crate::blob::{BlobError, ByteStream, Digest, Expect};
use crate::registry::caller::Caller;
use crate::registry::service::RegistryError;
use crate::registry::uploads::{UploadError, Uploads};
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::json;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Parsed `/v2/...` path.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Uploads { name: &'a str },
    Upload { name: &'a str, id: &'a str },
    Blob { name: &'a str, digest: &'a str },
}

fn route(rest: &str) -> Option<Route<'_>> {
    if let Some(name) = rest
        .strip_suffix("/blobs/uploads/")
        .or_else(|| rest.strip_suffix("/blobs/uploads"))
    {
        return Some(Route::Uploads { name });
    }
    if let Some((name, id)) = rest.rsplit_once("/blobs/uploads/") {
        return Some(Route::Upload { name, id });
    }
    let (name, digest) = rest.rsplit_once("/blobs/")?;
    Some(Route::Blob { name, digest })
}

/// distribution-spec "Pulling manifests": `<name>` is path components of
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` joined by `/`.
fn valid_name(name: &str) -> bool {
    name.len() <= 255
        && name.split('/').all(|c| {
            let b = c.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|&x| {
                    x.is_ascii_lowercase() || x.is_ascii_digit() || matches!(x, b'.' | b'_' | b'-')
                })
                && !c.contains("..")
                && !c.contains("___")
        })
}

pub struct OciError {
    status: StatusCode,
    code: &'static str,
    message: String,
    headers: Vec<(header::HeaderName, String)>,
}

fn err(status: StatusCode, code: &'static str, message: impl Into<String>) -> OciError {
    OciError {
        status,
        code,
        message: message.into(),
        headers: vec![],
    }
}

impl IntoResponse for OciError {
    fn into_response(self) -> Response {
        let body = json!({"errors": [{"code": self.code, "message": self.message}]});
        let mut r = (self.status, axum::Json(body)).into_response();
        for (k, v) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&v) {
                r.headers_mut().insert(k, v);
            }
        }
        r
    }
}

impl From<BlobError> for OciError {
    fn from(e: BlobError) -> Self {
        let m = e.to_string();
        match e {
            BlobError::NotFound(_) => err(StatusCode::NOT_FOUND, "BLOB_UNKNOWN", m),
            BlobError::DigestMismatch { .. } => err(StatusCode::BAD_REQUEST, "DIGEST_INVALID", m),
            BlobError::SizeMismatch { .. } => err(StatusCode::BAD_REQUEST, "SIZE_INVALID", m),
            BlobError::InvalidRange { size, .. } => OciError {
                headers: vec![(header::CONTENT_RANGE, format!("bytes */{size}"))],
                ..err(StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UNKNOWN", m)
            },
            BlobError::Body(_) => err(StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID", m),
            BlobError::Corrupt { .. } | BlobError::Io(_) => {
                tracing::error!(error = %m, "blob storage failure");
                err(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", m)
            }
        }
    }
}

impl From<UploadError> for OciError {
    fn from(e: UploadError) -> Self {
        let m = e.to_string();
        match e {
            UploadError::UnknownSession(_) => err(StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN", m),
            UploadError::OutOfOrder { have, .. } => OciError {
                headers: progress_headers(have),
                ..err(StatusCode::RANGE_NOT_SATISFIABLE, "BLOB_UPLOAD_INVALID", m)
            },
            UploadError::TooLarge { .. } => err(StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID", m),
            UploadError::Blob(b) => b.into(),
            UploadError::Io(_) => {
                tracing::error!(error = %m, "upload storage failure");
                err(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", m)
            }
        }
    }
}

/// `Range: 0-<last byte>` as distribution-spec writes progress, and the unambiguous count.
fn progress_headers(have: u64) -> Vec<(header::HeaderName, String)> {
    vec![
        (header::RANGE, format!("0-{}", have.saturating_sub(1))),
        (
            header::HeaderName::from_static("upload-offset"),
            have.to_string(),
        ),
    ]
}

/// What the blob routes need: the uploads and blob store, and the registry whose catalog
/// says which artifact versions a blob is (for artifact-level download checks).
#[derive(Clone)]
pub struct Oci {
    pub uploads: Arc<Uploads>,
    pub registry: Arc<crate::registry::service::Registry>,
}

pub async fn base() -> Response {
    (
        [(
            header::HeaderName::from_static("docker-distribution-api-version"),
            "registry/2.0",
        )],
        axum::Json(json!({})),
    )
        .into_response()
}

pub async fn dispatch(
    State(o): State<Oci>,
    caller: Caller,
    method: Method,
    Path(rest): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let declared = headers.contains_key(header::TRANSFER_ENCODING)
        || declared_length(&headers)
            .ok()
            .flatten()
            .is_some_and(|n| n > 0);
    let (body, consumed) = tracked(body);
    let query = q.as_deref().unwrap_or("");
    let gate = DownloadGate {
        caller: &caller,
        registry: &o.registry,
    };
    let mut r = match handle(&o.uploads, gate, method, &rest, query, &headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    // Answered without reading the body the request announced (a blob already stored, a
    // size over the limit, a bad path): the connection cannot carry another request, so
    // say so rather than let the client reuse it and fail.
    if declared && !consumed.load(Ordering::Relaxed) {
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

/// The body, and a flag set once it has been read to its end.
fn tracked(body: Body) -> (Body, Arc<AtomicBool>) {
    let done = Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let mut inner = body.into_data_stream();
    let s = futures::stream::poll_fn(move |cx| {
        let r = inner.poll_next_unpin(cx);
        if let std::task::Poll::Ready(None) = r {
            flag.store(true, Ordering::Relaxed);
        }
        r
    });
    (Body::from_stream(s), done)
}

/// Decides, with access control on, whether the caller may have one blob's bytes.
struct DownloadGate<'a> {
    caller: &'a Caller,
    registry: &'a crate::registry::service::Registry,
}

impl DownloadGate<'_> {
    fn check(&self, d: &Digest) -> Result<(), OciError> {
        self.caller
            .permit_download(self.registry, d)
            .map_err(|e| match e {
                // distribution-spec "Error Codes": DENIED, "requested access to the
                // resource is denied".
                RegistryError::Forbidden(m) => err(StatusCode::FORBIDDEN, "DENIED", m),
                RegistryError::Log(e) => OciError {
                    headers: vec![(header::RETRY_AFTER, "1".into())],
                    ..err(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "UNAVAILABLE",
                        format!("the access audit log cannot record this download now: {e}"),
                    )
                },
                other => {
                    tracing::error!(error = %other, "download check failed");
                    err(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "UNKNOWN",
                        other.to_string(),
                    )
                }
            })
    }
}

async fn handle(
    u: &Uploads,
    gate: DownloadGate<'_>,
    method: Method,
    rest: &str,
    query: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, OciError> {
    let r = route(rest).ok_or_else(|| {
        err(
            StatusCode::NOT_FOUND,
            "UNSUPPORTED",
            "this registry serves blobs only; artifact versions are published through /registry (specs/api.md)",
        )
    })?;
    let name = match &r {
        Route::Uploads { name } | Route::Upload { name, .. } | Route::Blob { name, .. } => *name,
    };
    if !valid_name(name) {
        return Err(err(
            StatusCode::BAD_REQUEST,
            "NAME_INVALID",
            format!(
                "invalid repository name {:?}",
                name.chars().take(80).collect::<String>()
            ),
        ));
    }
    let q: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let param = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let digest_param = |k: &str| -> Result<Option<Digest>, OciError> {
        param(k)
            .map(|v| {
                v.parse::<Digest>()
                    .map_err(|e| err(StatusCode::BAD_REQUEST, "DIGEST_INVALID", e.to_string()))
            })
            .transpose()
    };
    match (r, method) {
        (Route::Uploads { name }, Method::POST) => {
            if let Some(d) = digest_param("mount")? {
                if u.blobs().stat(&d).await?.is_some() {
                    return Ok(created(name, &d));
                }
            }
            if let Some(d) = digest_param("digest")? {
                // Answer a known blob from a cheap existence check: the body is never read,
                // so a client that sent `Expect: 100-continue` never sends it.
                if u.blobs().stat(&d).await?.is_some() {
                    return Ok(created(name, &d));
                }
                let size = declared_length(headers)?;
                check_limit(u, size)?;
                let (stream, over) = limited(body, u.max_bytes());
                let put = u
                    .blobs()
                    .put(
                        stream,
                        Expect {
                            digest: Some(d),
                            size,
                        },
                    )
                    .await;
                if over.load(Ordering::Relaxed) {
                    return Err(UploadError::TooLarge {
                        limit: u.max_bytes(),
                    }
                    .into());
                }
                return Ok(created(name, &put?.digest));
            }
            let id = u.start().await?;
            Ok(session_answer(StatusCode::ACCEPTED, name, &id, 0))
        }
        (Route::Upload { name, id }, Method::PATCH) => {
            let start = content_range_start(headers)?;
            let have = u.append(id, start, stream(body)).await?;
            Ok(session_answer(StatusCode::ACCEPTED, name, id, have))
        }
        (Route::Upload { name, id }, Method::GET) => {
            let have = u.progress(id).await?;
            Ok(session_answer(StatusCode::NO_CONTENT, name, id, have))
        }
        (Route::Upload { name, id }, Method::PUT) => {
            let d = digest_param("digest")?.ok_or_else(|| {
                err(
                    StatusCode::BAD_REQUEST,
                    "DIGEST_INVALID",
                    "completing an upload needs ?digest=sha256:<hex>",
                )
            })?;
            let has_body = declared_length(headers)?.is_none_or(|n| n > 0);
            let put = u.complete(id, d, has_body.then(|| stream(body))).await?;
            Ok(created(name, &put.digest))
        }
        (Route::Upload { id, .. }, Method::DELETE) => {
            u.cancel(id).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        (Route::Blob { digest, .. }, m @ (Method::GET | Method::HEAD)) => {
            let d: Digest = digest
                .parse()
                .map_err(|e: ledger_client::digest::BadDigest| {
                    err(StatusCode::BAD_REQUEST, "DIGEST_INVALID", e.to_string())
                })?;
            gate.check(&d)?;
            download(u, &d, m == Method::HEAD, headers).await
        }
        (Route::Blob { .. }, Method::DELETE) => Err(err(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "blob bytes are removed only by a logged tombstone (specs/api.md)",
        )),
        _ => Err(err(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "method not allowed on this endpoint",
        )),
    }
}

fn stream(body: Body) -> ByteStream {
    body.into_data_stream()
        .map(|r| r.map_err(std::io::Error::other))
        .boxed()
}

/// The body as a stream that fails once it passes `limit` bytes, and a flag that says so.
fn limited(body: Body, limit: u64) -> (ByteStream, Arc<AtomicBool>) {
    let over = Arc::new(AtomicBool::new(false));
    let flag = over.clone();
    let mut seen = 0u64;
    let s = stream(body)
        .map(move |r| {
            let c = r?;
            seen += c.len() as u64;
            if seen > limit {
                flag.store(true, Ordering::Relaxed);
                return Err(std::io::Error::other(format!(
                    "the blob exceeds the {limit}-byte limit"
                )));
            }
            Ok(c)
        })
        .boxed();
    (s, over)
}

fn check_limit(u: &Uploads, size: Option<u64>) -> Result<(), OciError> {
    match size {
        Some(n) if n > u.max_bytes() => Err(UploadError::TooLarge {
            limit: u.max_bytes(),
        }
        .into()),
        _ => Ok(()),
    }
}

fn declared_length(h: &HeaderMap) -> Result<Option<u64>, OciError> {
    h.get(header::CONTENT_LENGTH)
        .map(|v| {
            v.to_str()
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| {
                    err(
                        StatusCode::BAD_REQUEST,
                        "SIZE_INVALID",
                        "Content-Length is not a number",
                    )
                })
        })
        .transpose()
}

/// `Content-Range: <start>-<end>` of a PATCH (distribution-spec uses this form, without
/// the `bytes ` unit of RFC 9110; both are accepted).
fn content_range_start(h: &HeaderMap) -> Result<Option<u64>, OciError> {
    let Some(v) = h.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let bad = || {
        err(
            StatusCode::BAD_REQUEST,
            "BLOB_UPLOAD_INVALID",
            "Content-Range must be <start>-<end>",
        )
    };
    let s = v.to_str().map_err(|_| bad())?.trim();
    let s = s.strip_prefix("bytes ").unwrap_or(s);
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let start: u64 = a.trim().parse().map_err(|_| bad())?;
    let end: u64 = b
        .trim()
        .split('/')
        .next()
        .unwrap_or("")
        .parse()
        .map_err(|_| bad())?;
    if end < start {
        return Err(bad());
    }
    if let Some(n) = declared_length(h)? {
        if n != end - start + 1 {
            return Err(err(
                StatusCode::BAD_REQUEST,
                "SIZE_INVALID",
                format!(
                    "Content-Range {start}-{end} is {} bytes but Content-Length is {n}",
                    end - start + 1
                ),
            ));
        }
    }
    Ok(Some(start))
}

fn session_answer(status: StatusCode, name: &str, id: &str, have: u64) -> Response {
    let mut r = status.into_response();
    let h = r.headers_mut();
    let mut set = |k: header::HeaderName, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    };
    set(header::LOCATION, format!("/v2/{name}/blobs/uploads/{id}"));
    set(
        header::HeaderName::from_static("docker-upload-uuid"),
        id.to_string(),
    );
    for (k, v) in progress_headers(have) {
        set(k, v);
    }
    r
}

fn created(name: &str, d: &Digest) -> Response {
    let mut r = StatusCode::CREATED.into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("/v2/{name}/blobs/{d}")) {
        h.insert(header::LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&d.to_string()) {
        h.insert(header::HeaderName::from_static("docker-content-digest"), v);
    }
    r
}

/// A single `bytes=` range of RFC 9110 §14.1.2, resolved against `size`. `None` means
/// serve the whole blob: no header, several ranges, or a header we do not understand
/// (§14.2 lets a server ignore Range). `Some(Err)` is unsatisfiable (416).
fn requested_range(h: &HeaderMap, size: u64) -> Option<Result<Range<u64>, ()>> {
    let v = h.get(header::RANGE)?.to_str().ok()?.trim();
    let spec = v.strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    let r = if a.is_empty() {
        let n: u64 = b.parse().ok()?;
        if n == 0 {
            return Some(Err(()));
        }
        size.saturating_sub(n)..size
    } else {
        let start: u64 = a.parse().ok()?;
        let end = if b.is_empty() {
            size
        } else {
            let last: u64 = b.parse().ok()?;
            if last < start {
                return None;
            }
            last.saturating_add(1).min(size)
        };
        start..end
    };
    if r.start >= size {
        return Some(Err(()));
    }
    Some(Ok(r))
}

async fn download(
    u: &Uploads,
    d: &Digest,
    head: bool,
    h: &HeaderMap,
) -> Result<Response, OciError> {
    let size = u.blobs().stat(d).await?.ok_or(BlobError::NotFound(*d))?;
    let etag = format!("\"{d}\"");
    let mut r = if h
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let range = match requested_range(h, size) {
            Some(Err(())) => {
                return Err(BlobError::InvalidRange {
                    start: 0,
                    end: 0,
                    size,
                }
                .into());
            }
            Some(Ok(r)) if !(r.start == 0 && r.end == size) => Some(r),
            _ => None,
        };
        let len = range.as_ref().map_or(size, |r| r.end - r.start);
        let mut r = if head {
            Response::new(Body::empty())
        } else {
            let (_, stream) = u.blobs().get(d, range.clone()).await?;
            Response::new(Body::from_stream(stream))
        };
        let hs = r.headers_mut();
        hs.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        hs.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        if let Some(range) = range {
            *r.status_mut() = StatusCode::PARTIAL_CONTENT;
            if let Ok(v) =
                HeaderValue::from_str(&format!("bytes {}-{}/{size}", range.start, range.end - 1))
            {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
        }
        r
    };
    let hs = r.headers_mut();
    hs.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    // A digest names immutable bytes: cache forever.
    hs.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        hs.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&d.to_string()) {
        hs.insert(header::HeaderName::from_static("docker-content-digest"), v);
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_as_the_distribution_spec_lays_them_out() {
        assert_eq!(
            route("models/llama/blobs/uploads/"),
            Some(Route::Uploads {
                name: "models/llama"
            })
        );
        assert_eq!(route("m/blobs/uploads"), Some(Route::Uploads { name: "m" }));
        assert_eq!(
            route("m/blobs/uploads/abc"),
            Some(Route::Upload {
                name: "m",
                id: "abc"
            })
        );
        assert_eq!(
            route("a/b/blobs/sha256:00"),
            Some(Route::Blob {
                name: "a/b",
                digest: "sha256:00"
            })
        );
        assert_eq!(route("m/manifests/latest"), None);
    }

    #[test]
    fn repository_names_follow_the_spec_grammar() {
        for ok in ["m", "models/llama-3", "a.b_c/d__e", "x0/y1"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "M",
            "-a",
            "a-",
            "a//b",
            "/a",
            "a/",
            "a/../b",
            "a b",
            "a%2fb",
            &"a".repeat(256),
        ] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    fn range(v: &str, size: u64) -> Option<Result<Range<u64>, ()>> {
        let mut h = HeaderMap::new();
        h.insert(header::RANGE, HeaderValue::from_str(v).unwrap());
        requested_range(&h, size)
    }

    #[test]
    fn byte_ranges_resolve_per_rfc_9110() {
        assert_eq!(range("bytes=0-0", 10), Some(Ok(0..1)));
        assert_eq!(range("bytes=2-", 10), Some(Ok(2..10)));
        assert_eq!(range("bytes=-3", 10), Some(Ok(7..10)));
        assert_eq!(range("bytes=-30", 10), Some(Ok(0..10)));
        assert_eq!(range("bytes=5-100", 10), Some(Ok(5..10)));
        assert_eq!(range("bytes=10-", 10), Some(Err(())));
        assert_eq!(range("bytes=-0", 10), Some(Err(())));
        // Ignored, so the whole blob is served.
        assert_eq!(range("bytes=0-1,3-4", 10), None);
        assert_eq!(range("items=0-1", 10), None);
        assert_eq!(range("bytes=5-2", 10), None);
        assert_eq!(range("bytes=x-", 10), None);
    }

    #[test]
    fn a_chunk_range_must_agree_with_its_length() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_RANGE, HeaderValue::from_static("0-9"));
        assert_eq!(content_range_start(&h).ok(), Some(Some(0)));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("9"));
        assert!(content_range_start(&h).is_err());
        h.insert(header::CONTENT_RANGE, HeaderValue::from_static("9-0"));
        assert!(content_range_start(&h).is_err());
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_static("bytes 10-18/*"),
        );
        assert_eq!(content_range_start(&h).ok(), Some(Some(10)));
    }
}
