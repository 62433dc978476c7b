//! The HTTP interface (specs/witness.md):
//!
//! * `POST <submission prefix>/add-checkpoint` (c2sp.org/tlog-witness#add-checkpoint);
//! * `GET <monitoring prefix>/<origin hash>/checkpoint`
//!   (c2sp.org/tlog-witness#monitor-retrieval-mechanism);
//! * `GET <submission prefix>/forks`: fork evidence, JSON;
//! * `GET /healthz`, `GET /metrics`.

use crate::witness::{Answer, Witness};
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use http_body_util::BodyExt;
use ledger_client::witness_protocol::{MAX_ADD_CHECKPOINT_SIZE, SIZE_CONTENT_TYPE};
use std::sync::Arc;
use std::time::Instant;

const TEXT: &str = "text/plain; charset=utf-8";

/// A body only this much over the limit is read and discarded before the 413, so that a
/// client that writes its whole body before reading sees the answer.
const DRAIN_LIMIT: usize = 1 << 20;

/// Normalises a URL prefix: "" or "/" → "", "/w/" → "/w".
pub fn normalize_prefix(p: &str) -> String {
    let t = p.trim_matches('/');
    if t.is_empty() {
        String::new()
    } else {
        format!("/{t}")
    }
}

fn text(status: StatusCode, message: impl Into<String>) -> Response {
    let mut m = message.into();
    if !m.ends_with('\n') {
        m.push('\n');
    }
    (status, [(header::CONTENT_TYPE, TEXT)], m).into_response()
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        match self {
            Answer::Cosigned(lines) => {
                (StatusCode::OK, [(header::CONTENT_TYPE, TEXT)], lines).into_response()
            }
            // c2sp.org/tlog-witness#add-checkpoint: "The response body MUST consist of the
            // tree size of the latest cosigned checkpoint in decimal, followed by a newline
            // ... a Content-Type of text/x.tlog.size".
            Answer::Conflict(size) => (
                StatusCode::CONFLICT,
                [(header::CONTENT_TYPE, SIZE_CONTENT_TYPE)],
                format!("{size}\n"),
            )
                .into_response(),
            Answer::Refused { status, message } => text(
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                message,
            ),
        }
    }
}

pub fn router(w: Arc<Witness>, prefix: &str, monitoring_prefix: &str) -> Router {
    let p = normalize_prefix(prefix);
    let m = normalize_prefix(monitoring_prefix);
    Router::new()
        .route(&format!("{p}/add-checkpoint"), post(add_checkpoint))
        .route(&format!("{p}/forks"), get(forks))
        .route(&format!("{m}/{{hash}}/checkpoint"), get(monitor_checkpoint))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            text(
                StatusCode::NOT_FOUND,
                "no such endpoint (see specs/witness.md)",
            )
        })
        .method_not_allowed_fallback(|| async {
            text(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this endpoint",
            )
        })
        .with_state(w)
}

/// Reads a body of at most `limit` bytes; 413 beyond it.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, Response> {
    let too_large = || {
        text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body is larger than {limit} bytes"),
        )
    };
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > limit as u64 {
            if len <= (limit + DRAIN_LIMIT) as u64 {
                let _ = http_body_util::Limited::new(body, limit + DRAIN_LIMIT)
                    .collect()
                    .await;
            }
            return Err(too_large());
        }
    }
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(text(
            StatusCode::BAD_REQUEST,
            format!("reading the body: {e}"),
        )),
    }
}

async fn add_checkpoint(State(w): State<Arc<Witness>>, headers: HeaderMap, body: Body) -> Response {
    let body = match read_body(&headers, body, MAX_ADD_CHECKPOINT_SIZE).await {
        Ok(b) => b,
        Err(r) => {
            w.metrics.request(r.status().as_u16());
            return r;
        }
    };
    let start = Instant::now();
    let answer = w.add_checkpoint(&body).await;
    w.metrics.latency.observe(start.elapsed().as_secs_f64());
    w.metrics.request(answer.status());
    answer.into_response()
}

async fn monitor_checkpoint(State(w): State<Arc<Witness>>, Path(hash): Path<String>) -> Response {
    // The origin hash is lowercase hex SHA-256 (c2sp.org/tlog-witness#monitor-retrieval-mechanism).
    if hash.len() != 64 || !hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return text(
            StatusCode::NOT_FOUND,
            "the origin hash must be 64 lowercase hex digits",
        );
    }
    match w.checkpoint_by_hash(&hash) {
        Ok(Some(note)) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, TEXT),
                // "The witness MAY delay updating the checkpoint": caches may keep it briefly.
                (header::CACHE_CONTROL, "no-cache, max-age=2"),
            ],
            note,
        )
            .into_response(),
        // "If the witness has never cosigned a checkpoint for that log, it MUST respond with
        // a 404 Not Found".
        Ok(None) => text(
            StatusCode::NOT_FOUND,
            "this witness has never cosigned a checkpoint of that log",
        ),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("storage error: {e}"),
        ),
    }
}

async fn forks(State(w): State<Arc<Witness>>) -> Response {
    match w.evidence() {
        Ok(list) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_vec_pretty(&list).unwrap_or_default(),
        )
            .into_response(),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("storage error: {e}"),
        ),
    }
}

async fn metrics(State(w): State<Arc<Witness>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        w.metrics.encode(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_normalised() {
        assert_eq!(normalize_prefix("/"), "");
        assert_eq!(normalize_prefix(""), "");
        assert_eq!(normalize_prefix("/w/"), "/w");
        assert_eq!(normalize_prefix("a/b"), "/a/b");
    }
}
