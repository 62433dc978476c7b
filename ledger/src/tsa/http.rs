//! RFC 3161 over HTTP (§3.4): `POST /tsa` with a DER `TimeStampReq` as
//! `application/timestamp-query`, answered `200` with a DER `TimeStampResp` as
//! `application/timestamp-reply`, including refusals, which RFC 3161 reports as a
//! `TimeStampResp` with a failure status. Only transport problems get HTTP errors: a
//! wrong media type (415) or a body over 16 KiB (413), as the ledger's JSON errors.

use super::Authority;
use crate::api_error::ApiError;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use ledger_client::timestamp::{QUERY_CONTENT_TYPE, REPLY_CONTENT_TYPE};
use std::sync::Arc;

/// Largest accepted query body (RFC 3161 requests are under 200 bytes).
pub const MAX_QUERY_BYTES: usize = 16 * 1024;

/// `POST /tsa` answering with `authority`. Generic over the state type so that it merges
/// into a router with any state (`Router<()>` for the standalone `ledger tsa`).
pub fn router<S>(authority: Arc<Authority>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    Router::new()
        .route("/tsa", post(time_stamp))
        .layer(DefaultBodyLimit::max(MAX_QUERY_BYTES))
        .with_state(authority)
}

async fn time_stamp(
    State(authority): State<Arc<Authority>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case(QUERY_CONTENT_TYPE) {
        return ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("Content-Type must be {QUERY_CONTENT_TYPE} (RFC 3161 §3.4), not {ct:?}"),
        )
        .into_response();
    }
    let reply = authority.respond(&body, std::time::SystemTime::now());
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, REPLY_CONTENT_TYPE)],
        reply,
    )
        .into_response()
}
