//! Blocking HTTP access to one log prefix (specs/api.md), with timeouts, body limits and
//! the server's JSON error messages surfaced to the user.

use std::time::Duration;

use serde::Deserialize;
use ureq::Agent;

use crate::failure::{Failure, Result};

/// Cap on any response body: the largest legitimate answer is an add-batch response with
/// proofs for 65,536 entries, or a full entry bundle (256 entries of up to 64 KiB).
const MAX_BODY: u64 = 128 * 1024 * 1024;

/// Cap on an error body: it is only a message.
const MAX_ERROR_BODY: u64 = 64 * 1024;

pub struct Client {
    agent: Agent,
    base: String,
}

/// `{"error": {"code": "...", "message": "..."}}` (specs/api.md, Errors).
#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

/// `{"errors": [{"code": "...", "message": "..."}]}`: the blob endpoints answer in the OCI
/// distribution spec's shape (specs/api.md, Blobs).
#[derive(Deserialize)]
struct OciErrorBody {
    errors: Vec<ErrorDetail>,
}

/// The bearer credential every request carries (`--token-file` or `LEDGER_TOKEN`), set once
/// at start.
static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Sets the credential for all later requests (RFC 6750 §2.1). The first call wins.
pub fn set_token(token: String) {
    let _ = TOKEN.set(token);
}

/// Adds `Authorization: Bearer` when a credential is set. ureq drops it on redirects
/// (`redirect_auth_headers` defaults to never), so it never leaves the server it was for.
fn bearer(
    mut req: ureq::http::Request<ureq::SendBody>,
    next: ureq::middleware::MiddlewareNext,
) -> std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error> {
    if let Some(t) = TOKEN.get() {
        if let Ok(v) = ureq::http::HeaderValue::from_str(&format!("Bearer {t}")) {
            req.headers_mut()
                .insert(ureq::http::header::AUTHORIZATION, v);
        }
    }
    next.handle(req)
}

/// An agent for JSON exchanges, tiles and bundles: each phase of a request, from connecting
/// to the body's last byte, must end within `timeout`.
///
/// Phase timeouts rather than `timeout_global`: with a global bound, ureq resolves the host
/// of every request on a thread of its own, pooled connection or not, which cost tile walks
/// (`audit replay`, `export`) a thread per tile.
pub fn agent(timeout: Duration) -> Agent {
    Agent::config_builder()
        .middleware(bearer)
        // Error statuses are answers too: read their JSON message instead of failing.
        .http_status_as_error(false)
        .timeout_connect(Some(timeout.min(Duration::from_secs(10))))
        .timeout_send_request(Some(timeout))
        .timeout_send_body(Some(timeout))
        .timeout_recv_response(Some(timeout))
        .timeout_recv_body(Some(timeout))
        .user_agent(concat!("ledgerctl/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// An agent for blob transfers, which may rightly take hours: no bound on the whole
/// exchange, but each network read or write must make progress within `timeout`, so a dead
/// connection is still noticed.
pub fn transfer_agent(timeout: Duration) -> Agent {
    Agent::config_builder()
        .middleware(bearer)
        .http_status_as_error(false)
        .timeout_connect(Some(timeout.min(Duration::from_secs(10))))
        .timeout_per_read(Some(timeout))
        .timeout_per_write(Some(timeout))
        .timeout_recv_response(Some(timeout))
        .user_agent(concat!("ledgerctl/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// The human part of an error answer: the message and code of either error shape, or the
/// start of whatever text the server sent.
pub fn error_detail(body: &[u8]) -> String {
    if let Ok(b) = serde_json::from_slice::<ErrorBody>(body) {
        return format!("{} ({})", b.error.message, b.error.code);
    }
    if let Ok(b) = serde_json::from_slice::<OciErrorBody>(body) {
        if let Some(e) = b.errors.first() {
            return format!("{} ({})", e.message, e.code);
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        "no error message".to_string()
    } else {
        text.chars().take(300).collect()
    }
}

/// Reads at most [`MAX_ERROR_BODY`] bytes of an error answer.
pub fn error_body(resp: &mut ureq::http::Response<ureq::Body>) -> Vec<u8> {
    resp.body_mut()
        .with_config()
        .limit(MAX_ERROR_BODY)
        .read_to_vec()
        .unwrap_or_default()
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

impl Client {
    /// `base` is the log prefix, e.g. `http://127.0.0.1:8080/artifacts`.
    pub fn new(base: &str, timeout: Duration) -> Result<Self> {
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Failure::input(format!(
                "--log must be an http:// or https:// URL, got {base:?}"
            )));
        }
        if base.contains('?') || base.contains('#') {
            return Err(Failure::input(format!(
                "--log must be the log prefix without query or fragment, got {base:?}"
            )));
        }
        Ok(Client {
            agent: agent(timeout),
            base: base.trim_end_matches('/').to_string(),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path)
    }

    pub fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Vec<u8>> {
        let url = self.url(path);
        let mut req = self.agent.get(&url);
        for (k, v) in query {
            req = req.query(*k, v);
        }
        let resp = req.call().map_err(|e| transport(&url, e))?;
        read(&url, resp)
    }

    pub fn post(&self, path: &str, query: &[(&str, String)], body: &[u8]) -> Result<Vec<u8>> {
        let url = self.url(path);
        let mut req = self
            .agent
            .post(&url)
            .content_type("application/octet-stream");
        for (k, v) in query {
            req = req.query(*k, v);
        }
        let resp = req.send(body).map_err(|e| transport(&url, e))?;
        read(&url, resp)
    }

    /// GET returning `None` on 404 (for optional resources such as partial tiles).
    pub fn get_optional(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let url = self.url(path);
        let resp = self
            .agent
            .get(&url)
            .call()
            .map_err(|e| transport(&url, e))?;
        if resp.status().as_u16() == 404 {
            return Ok(None);
        }
        read(&url, resp).map(Some)
    }
}

pub fn transport(url: &str, e: ureq::Error) -> Failure {
    Failure::server(format!("request to {url} failed: {e}"))
}

fn read(url: &str, mut resp: ureq::http::Response<ureq::Body>) -> Result<Vec<u8>> {
    let status = resp.status();
    if status.is_success() {
        return resp
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map_err(|e| Failure::server(format!("reading the answer of {url} failed: {e}")));
    }
    let detail = error_detail(&error_body(&mut resp));
    Err(Failure::server(format!(
        "server answered {} for {url}: {detail}",
        status
    )))
}
