//! Reading a log through its tlog-tiles paths (and witnesses' monitoring paths), with size
//! limits on every answer.

use ledger_client::tiles::{TileKind, TilePath};
use std::io::Read;
use std::time::Duration;

/// An agent for bounded answers (notes, tiles, bundles, webhooks): each phase of an
/// exchange, from connecting to the last byte of the body, must end within `timeout`.
///
/// Phase timeouts rather than `timeout_global`: with a global (or per-call) bound, ureq
/// resolves every request's host on a thread of its own, even an IP literal on a pooled
/// connection; that was a thread spawned per tile during catch-up (BENCHMARKS.md).
pub fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(timeout))
        .timeout_send_request(Some(timeout))
        .timeout_send_body(Some(timeout))
        .timeout_recv_response(Some(timeout))
        .timeout_recv_body(Some(timeout))
        .build()
        .into()
}

/// An agent for streaming blobs back, which may rightly take hours for a large model: no
/// bound on the whole body, but every read must make progress within `timeout`, so a dead
/// connection is still noticed.
pub fn stream_agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(timeout))
        .timeout_send_request(Some(timeout))
        .timeout_recv_response(Some(timeout))
        .timeout_per_read(Some(timeout))
        .build()
        .into()
}

/// Why a read failed: the network or the server (retried next round), or not found.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{url}: {message}")]
    Unavailable { url: String, message: String },
    #[error("{url}: not found")]
    NotFound { url: String },
}

/// GET `url`, at most `limit` bytes of body.
/// An HTTP agent and the bearer credential it presents, if any (a ledger with access
/// control; never sent to witnesses).
#[derive(Clone)]
pub struct Http {
    pub agent: ureq::Agent,
    pub token: Option<String>,
}

impl Http {
    fn request(&self, url: &str) -> ureq::RequestBuilder<ureq::typestate::WithoutBody> {
        self.with_headers(self.agent.get(url))
    }

    fn with_headers(
        &self,
        r: ureq::RequestBuilder<ureq::typestate::WithoutBody>,
    ) -> ureq::RequestBuilder<ureq::typestate::WithoutBody> {
        let r = r
            // Uncompressed: entries are mostly digests and signatures, which do not
            // compress, and inflating them cost the monitor an eighth of its time
            // (BENCHMARKS.md).
            .header("accept-encoding", "identity");
        match &self.token {
            Some(t) => r.header("authorization", format!("Bearer {t}")),
            None => r,
        }
    }
}

pub fn get(http: &Http, url: &str, limit: usize) -> Result<Vec<u8>, FetchError> {
    let unavailable = |message: String| FetchError::Unavailable {
        url: url.to_string(),
        message,
    };
    let mut r = http
        .request(url)
        .call()
        .map_err(|e| unavailable(e.to_string()))?;
    let status = r.status().as_u16();
    if status == 404 {
        return Err(FetchError::NotFound {
            url: url.to_string(),
        });
    }
    if status != 200 {
        return Err(unavailable(format!("HTTP {status}")));
    }
    let mut body = Vec::new();
    r.body_mut()
        .as_reader()
        .take(limit as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| unavailable(e.to_string()))?;
    if body.len() > limit {
        return Err(unavailable(format!("answer larger than {limit} bytes")));
    }
    Ok(body)
}

/// `HEAD url`: the length the server reports (`None` for 404).
pub fn head_size(http: &Http, url: &str) -> Result<Option<u64>, FetchError> {
    let unavailable = |message: String| FetchError::Unavailable {
        url: url.to_string(),
        message,
    };
    let r = http
        .with_headers(http.agent.head(url))
        .call()
        .map_err(|e| unavailable(e.to_string()))?;
    match r.status().as_u16() {
        200 => {}
        404 => return Ok(None),
        s => return Err(unavailable(format!("HTTP {s}"))),
    }
    let length = r
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| unavailable("no content-length in the answer".into()))?;
    Ok(Some(length))
}

/// `<prefix>/tile/...` for a hash tile or an entry bundle.
pub fn tile_url(prefix: &str, kind: TileKind, index: u64, width: usize) -> String {
    let p = TilePath {
        kind,
        index,
        width: width as u16,
    };
    format!("{prefix}/{}", p.to_path())
}

/// Largest entry bundle: 256 entries of at most 65,535 bytes, each with a 2-byte length.
pub const MAX_BUNDLE: usize = 256 * (65_535 + 2);
/// Largest signed checkpoint read.
pub const MAX_NOTE: usize = ledger_client::checkpoint::MAX_NOTE_SIZE;

/// Why reading a blob back failed.
pub enum BlobRead {
    /// Before any byte came: the store or the network (retried next round).
    Fetch(FetchError),
    /// After the answer started: the server broke off.
    Broken(String),
}

/// Streams a blob and returns its SHA-256 (`None` if the store does not have it).
pub fn hash_blob(
    http: &Http,
    url: &str,
) -> Result<Option<ledger_client::digest::Digest>, BlobRead> {
    use sha2::{Digest as _, Sha256};
    let unavailable = |message: String| {
        BlobRead::Fetch(FetchError::Unavailable {
            url: url.to_string(),
            message,
        })
    };
    let mut r = http
        .request(url)
        .call()
        .map_err(|e| unavailable(e.to_string()))?;
    match r.status().as_u16() {
        200 => {}
        404 => return Ok(None),
        s => return Err(unavailable(format!("HTTP {s}"))),
    }
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut body = r.body_mut().with_config().limit(u64::MAX).reader();
    loop {
        match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => h.update(&buf[..n]),
            Err(e) => return Err(BlobRead::Broken(e.to_string())),
        }
    }
    Ok(Some(ledger_client::digest::Digest(h.finalize().into())))
}
