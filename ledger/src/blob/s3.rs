//! An S3-compatible backend (AWS S3, SeaweedFS, MinIO, R2, ...) through `object_store`.
//!
//! Objects live at `<prefix>/<key>` in one bucket. Writes stream: bytes are buffered one
//! part at a time ([`PART_SIZE`]) and sent as parts of a multipart upload, so memory stays
//! bounded whatever the object's size. An object smaller than one part never starts a
//! multipart upload: it is sent with a single PUT at commit (one request instead of three,
//! and nothing to clean up if the writer is dropped).
//!
//! S3 has no rename, so where the object lands depends on what is known up front:
//! * with a key hint, the upload goes straight to that key: a multipart upload is invisible
//!   until `CompleteMultipartUpload`, which is only sent on `commit`, and a single PUT is
//!   atomic. Dropping the writer aborts the upload, so nothing ever appears under the key.
//! * without one, the bytes go to `<prefix>/staging/<random>`; `commit` copies them to the
//!   final key (a server-side copy, atomic for readers) and deletes the staging object.
//!   `staging/` is therefore reserved: `list` skips it and no key may start with it.
//!
//! S3 overwrites on PUT, copy and complete, while the contract keeps an existing object on
//! commit. Each commit path therefore checks first: with `copy_if_not_exists` configured
//! the server does it atomically; otherwise a HEAD precedes the write. The remaining race
//! (two writers committing the same key at once) is harmless, because keys are content
//! addresses: both hold the same bytes.

use super::{BlobError, BlobStore, ByteStream, ObjectWriter, Result};
use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, MultipartUpload, ObjectStore, PutPayload};
use serde::Deserialize;
use std::ops::Range;
use std::sync::Arc;

/// Size of each multipart part but the last. S3 requires at least 5 MiB for all parts but
/// the last, and some S3-compatible stores (R2) require them all equal, so every part but
/// the last is exactly this size. With S3's limit of 10,000 parts this caps an object at
/// 80 GiB; it is also the most a writer holds in memory.
pub const PART_SIZE: usize = 8 << 20;
/// Parts uploaded concurrently by one writer (so at most this many parts, plus the one
/// being filled, are in memory).
const PARTS_IN_FLIGHT: usize = 3;

/// S3's limit on the number of parts of one multipart upload.
const MAX_PARTS: usize = 10_000;

/// Where staged (no key hint) uploads go, under the prefix.
const STAGING: &str = "staging";

/// Configuration of the S3 backend, e.g. from the server's configuration file.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// Base URL of an S3-compatible service, e.g. `http://127.0.0.1:8333`; `None` for AWS.
    #[serde(default)]
    pub endpoint: Option<String>,
    pub bucket: String,
    /// AWS region; S3-compatible servers mostly ignore it but it is part of the signature.
    #[serde(default = "default_region")]
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Allow a plain `http://` endpoint. Only for a service on loopback or an otherwise
    /// trusted network: requests are signed, but bodies travel in clear.
    #[serde(default)]
    pub allow_http: bool,
    /// Key prefix inside the bucket (no leading or trailing `/` needed), so that one bucket
    /// can hold several ledgers or other data.
    #[serde(default)]
    pub prefix: String,
    /// How the server does an atomic copy-if-not-exists, in `object_store`'s syntax
    /// (`multipart` for AWS S3; `header: <name>: <value>` for stores with a custom header
    /// such as R2). Unset: a HEAD before the copy.
    #[serde(default)]
    pub copy_if_not_exists: Option<String>,
}

fn default_region() -> String {
    "us-east-1".to_string()
}

// Hand-written so that the secret never reaches a log line.
impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("allow_http", &self.allow_http)
            .field("prefix", &self.prefix)
            .field("copy_if_not_exists", &self.copy_if_not_exists)
            .finish()
    }
}

pub struct S3Store {
    inner: Arc<Inner>,
}

/// Shared with writers, which outlive any borrow of the store (and whose `Drop` may need
/// the client to clean up).
struct Inner {
    store: AmazonS3,
    /// Normalised: no leading or trailing `/`; empty for the bucket's root.
    prefix: String,
}

impl S3Store {
    /// Builds the client; no request is made, so a wrong endpoint or credentials show up
    /// on first use.
    pub fn new(cfg: S3Config) -> Result<Self> {
        if cfg.bucket.is_empty() {
            return Err(BlobError::Io("s3: the bucket name is empty".into()));
        }
        let prefix = cfg.prefix.trim_matches('/').to_string();
        if !prefix.is_empty() {
            Path::parse(&prefix)
                .map_err(|e| BlobError::Io(format!("s3: bad prefix {prefix:?}: {e}")))?;
        }
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&cfg.bucket)
            .with_region(&cfg.region)
            .with_access_key_id(&cfg.access_key_id)
            .with_secret_access_key(&cfg.secret_access_key)
            .with_allow_http(cfg.allow_http);
        if let Some(ep) = &cfg.endpoint {
            // Path-style requests (`endpoint/bucket/key`, object_store's default with a
            // custom endpoint) work with every S3-compatible server without DNS set-up.
            b = b.with_endpoint(ep);
        }
        if let Some(c) = &cfg.copy_if_not_exists {
            b = b.with_config(AmazonS3ConfigKey::CopyIfNotExists, c);
        }
        let store = b
            .build()
            .map_err(|e| BlobError::Io(format!("s3: configuration: {e}")))?;
        Ok(S3Store {
            inner: Arc::new(Inner { store, prefix }),
        })
    }
}

impl Inner {
    /// The object path of a caller's key; keys in the reserved staging area are refused so
    /// that no caller can collide with (or list) in-progress uploads.
    fn path(&self, key: &str) -> Result<Path> {
        if key == STAGING || key.starts_with(&format!("{STAGING}/")) {
            return Err(BlobError::Io(format!(
                "s3: key {key:?} is in the reserved {STAGING}/ area"
            )));
        }
        self.raw_path(key)
    }

    fn raw_path(&self, key: &str) -> Result<Path> {
        if key.is_empty() || key.starts_with('/') || key.ends_with('/') {
            return Err(BlobError::Io(format!("s3: bad key {key:?}")));
        }
        let full = if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        };
        Path::parse(&full).map_err(|e| BlobError::Io(format!("s3: bad key {key:?}: {e}")))
    }

    async fn exists(&self, path: &Path) -> Result<bool> {
        match self.store.head(path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(io("head", path, e)),
        }
    }

    /// Copies `from` to `to` unless `to` exists (then `to` is kept as it is).
    async fn copy_keep_existing(&self, from: &Path, to: &Path) -> Result<()> {
        match self.store.copy_if_not_exists(from, to).await {
            Ok(()) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            // Not configured for this server: no request was made, fall back to HEAD+copy.
            Err(object_store::Error::NotSupported { .. })
            | Err(object_store::Error::NotImplemented) => {
                if !self.exists(to).await? {
                    self.store
                        .copy(from, to)
                        .await
                        .map_err(|e| io("copy", to, e))?;
                }
                Ok(())
            }
            Err(e) => Err(io("copy", to, e)),
        }
    }
}

fn io(op: &str, path: &Path, e: object_store::Error) -> BlobError {
    BlobError::Io(format!("s3 {op} {path}: {e}"))
}

#[async_trait]
impl BlobStore for S3Store {
    fn kind(&self) -> &'static str {
        "s3"
    }

    async fn begin(&self, key_hint: Option<&str>) -> Result<Box<dyn ObjectWriter>> {
        let target = match key_hint {
            Some(key) => Target::Direct {
                key: key.to_string(),
                path: self.inner.path(key)?,
            },
            None => {
                let name = format!("{STAGING}/{}", hex::encode(rand::random::<[u8; 16]>()));
                Target::Staged {
                    path: self.inner.raw_path(&name)?,
                }
            }
        };
        Ok(Box::new(S3Writer {
            inner: self.inner.clone(),
            target,
            buf: Vec::new(),
            buffered: 0,
            upload: None,
            parts: 0,
            in_flight: Default::default(),
            leftover: None,
        }))
    }

    async fn read(&self, key: &str, range: Option<Range<u64>>) -> Result<Option<ByteStream>> {
        let path = self.inner.path(key)?;
        let range = match range {
            // An HTTP range cannot be empty: answer an empty read without asking for bytes.
            Some(r) if r.start >= r.end => {
                return Ok(if self.inner.exists(&path).await? {
                    Some(futures::stream::empty().boxed())
                } else {
                    None
                });
            }
            r => r.map(GetRange::Bounded),
        };
        let opts = GetOptions {
            range,
            ..Default::default()
        };
        match self.inner.store.get_opts(&path, opts).await {
            Ok(got) => Ok(Some(
                got.into_stream().map_err(std::io::Error::other).boxed(),
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(io("get", &path, e)),
        }
    }

    async fn size(&self, key: &str) -> Result<Option<u64>> {
        let path = self.inner.path(key)?;
        match self.inner.store.head(&path).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(io("head", &path, e)),
        }
    }

    async fn list(&self) -> Result<Vec<(String, u64)>> {
        let prefix =
            (!self.inner.prefix.is_empty()).then(|| Path::from(self.inner.prefix.as_str()));
        let strip = if self.inner.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.inner.prefix)
        };
        let staging = format!("{STAGING}/");
        let mut out = Vec::new();
        let mut listing = self.inner.store.list(prefix.as_ref());
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| BlobError::Io(format!("s3 list: {e}")))?;
            let Some(key) = meta.location.as_ref().strip_prefix(&strip) else {
                continue;
            };
            if !key.starts_with(&staging) {
                out.push((key.to_string(), meta.size));
            }
        }
        // S3 lists in UTF-8 byte order already; sorting makes it independent of the server.
        out.sort();
        Ok(out)
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        let path = self.inner.path(key)?;
        // S3 answers DELETE of a missing key with success, so existence is asked first.
        if !self.inner.exists(&path).await? {
            return Ok(false);
        }
        self.inner
            .store
            .delete(&path)
            .await
            .map_err(|e| io("delete", &path, e))?;
        Ok(true)
    }
}

enum Target {
    /// Uploading straight to the key the caller hinted.
    Direct { key: String, path: Path },
    /// Uploading to a staging object, copied to the final key on commit.
    Staged { path: Path },
}

struct S3Writer {
    inner: Arc<Inner>,
    target: Target,
    /// Bytes not yet sent: at most one part.
    buf: Vec<Bytes>,
    buffered: usize,
    /// Started with the first full part; `None` while the object fits in one part.
    upload: Option<Box<dyn MultipartUpload>>,
    parts: usize,
    /// Parts on their way to the server: a round trip per part in turn left the link idle
    /// most of the time (BENCHMARKS.md), so up to `PARTS_IN_FLIGHT` travel at once.
    /// Each is a task of its own, so parts travel while the body is still being read.
    in_flight: std::collections::VecDeque<tokio::task::JoinHandle<object_store::Result<()>>>,
    /// A staging object that may have been completed by a commit that then did not finish
    /// (its future was dropped, or the copy failed): `Drop` deletes it.
    leftover: Option<Path>,
}

impl S3Writer {
    fn target_path(&self) -> &Path {
        match &self.target {
            Target::Direct { path, .. } | Target::Staged { path } => path,
        }
    }

    fn take_payload(&mut self) -> PutPayload {
        self.buffered = 0;
        std::mem::take(&mut self.buf).into_iter().collect()
    }

    /// Sends the buffered bytes as the next part, starting the multipart upload if needed.
    async fn send_part(&mut self) -> Result<()> {
        if self.parts == MAX_PARTS {
            return Err(BlobError::Io(format!(
                "s3: object larger than {MAX_PARTS} parts of {PART_SIZE} bytes"
            )));
        }
        if self.upload.is_none() {
            let path = self.target_path().clone();
            let upload = self
                .inner
                .store
                .put_multipart(&path)
                .await
                .map_err(|e| io("create multipart upload", &path, e))?;
            self.upload = Some(upload);
        }
        let payload = self.take_payload();
        let part = self
            .upload
            .as_mut()
            .expect("started above")
            .put_part(payload);
        self.in_flight.push_back(tokio::spawn(part));
        self.parts += 1;
        while self.in_flight.len() >= PARTS_IN_FLIGHT {
            self.settle_one().await?;
        }
        Ok(())
    }

    /// Waits for the oldest part in flight.
    async fn settle_one(&mut self) -> Result<()> {
        if let Some(task) = self.in_flight.pop_front() {
            task.await
                .map_err(|e| BlobError::Io(format!("s3: part upload task: {e}")))?
                .map_err(|e| io("upload part", self.target_path(), e))?;
        }
        Ok(())
    }

    /// Makes the written bytes an object at the target path: the last part and
    /// `CompleteMultipartUpload`, or a single PUT for a small object.
    async fn finish(&mut self) -> Result<()> {
        let path = self.target_path().clone();
        if self.upload.is_none() {
            let payload = self.take_payload();
            self.inner
                .store
                .put(&path, payload)
                .await
                .map_err(|e| io("put", &path, e))?;
            return Ok(());
        }
        if self.buffered > 0 {
            self.send_part().await?;
        }
        while !self.in_flight.is_empty() {
            self.settle_one().await?;
        }
        // Taken out first: once completion was sent, an abort from `Drop` (should the commit
        // be cancelled) could race it. A completion cut short leaves invisible parts, which
        // the bucket's lifecycle rules reclaim.
        let mut upload = self.upload.take().expect("checked above");
        if let Err(e) = upload.complete().await {
            let _ = upload.abort().await;
            return Err(io("complete multipart upload", &path, e));
        }
        Ok(())
    }

    async fn cancel(&mut self) {
        self.buf.clear();
        self.buffered = 0;
        for task in self.in_flight.drain(..) {
            task.abort();
        }
        if let Some(mut upload) = self.upload.take() {
            let _ = upload.abort().await;
        }
        if let Some(path) = self.leftover.take() {
            let _ = self.inner.store.delete(&path).await;
        }
    }
}

#[async_trait]
impl ObjectWriter for S3Writer {
    async fn write(&mut self, mut chunk: Bytes) -> Result<()> {
        // Cut the stream into parts of exactly PART_SIZE (zero-copy slices of the chunks).
        while !chunk.is_empty() {
            let take = (PART_SIZE - self.buffered).min(chunk.len());
            self.buf.push(chunk.split_to(take));
            self.buffered += take;
            if self.buffered == PART_SIZE {
                self.send_part().await?;
            }
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>, key: &str) -> Result<()> {
        let dest = self.inner.path(key)?;
        match &self.target {
            Target::Direct { key: hint, .. } => {
                if hint != key {
                    // The bytes went to the hinted key; publishing them elsewhere would
                    // need a copy that briefly shows them under the hint, which callers
                    // were promised would not happen.
                    let hint = hint.clone();
                    self.cancel().await;
                    return Err(BlobError::Io(format!(
                        "s3: upload begun for key {hint} cannot be committed as {key}"
                    )));
                }
                if self.inner.exists(&dest).await? {
                    // Same key, same content: keep the stored object, drop the upload.
                    self.cancel().await;
                    return Ok(());
                }
                self.finish().await
            }
            Target::Staged { path } => {
                let staging = path.clone();
                if self.upload.is_none() && self.inner.exists(&dest).await? {
                    // Small and already stored: nothing needs sending at all.
                    self.cancel().await;
                    return Ok(());
                }
                if self.upload.is_none() {
                    // Small: a single PUT to the final key is atomic, so no staging copy.
                    let payload = self.take_payload();
                    return self
                        .inner
                        .store
                        .put(&dest, payload)
                        .await
                        .map(|_| ())
                        .map_err(|e| io("put", &dest, e));
                }
                // Marked first: a commit cancelled or failing from here on may have left a
                // complete staging object, which `Drop` then deletes.
                self.leftover = Some(staging.clone());
                self.finish().await?;
                self.inner.copy_keep_existing(&staging, &dest).await?;
                // Committed. A failed clean-up of the staging copy is not the caller's
                // failure: the object is published, and only some space is leaked.
                self.leftover = None;
                if let Err(e) = self.inner.store.delete(&staging).await {
                    tracing::warn!(staging = %staging, error = %e, "s3: staging object left behind");
                }
                Ok(())
            }
        }
    }

    async fn abort(mut self: Box<Self>) {
        self.cancel().await;
    }
}

impl Drop for S3Writer {
    /// An abandoned writer (a client disconnecting mid-upload, a failed digest check, a
    /// cancelled commit): parts already on the server are invisible but take space until
    /// the upload is aborted, so the abort is sent in the background. Without a runtime
    /// (dropped outside tokio) it cannot be, and the server's lifecycle rules must reclaim
    /// the parts; nothing is visible either way.
    fn drop(&mut self) {
        for task in self.in_flight.drain(..) {
            task.abort();
        }
        let upload = self.upload.take();
        let leftover = self.leftover.take();
        if upload.is_none() && leftover.is_none() {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(path = %self.target_path(), "s3: writer dropped outside a runtime; upload not aborted");
            return;
        };
        let inner = self.inner.clone();
        rt.spawn(async move {
            if let Some(mut upload) = upload {
                if let Err(e) = upload.abort().await {
                    tracing::warn!(error = %e, "s3: aborting an abandoned multipart upload");
                }
            }
            if let Some(path) = leftover {
                if let Err(e) = inner.store.delete(&path).await {
                    tracing::warn!(staging = %path, error = %e, "s3: staging object left behind");
                }
            }
        });
    }
}
