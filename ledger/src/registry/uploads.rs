//! Resumable uploads, in the shape of the OCI distribution spec's chunked upload
//! (distribution-spec §"Pushing a blob in chunks"): start a session, append chunks at
//! explicit offsets, ask for progress, complete with the digest.
//!
//! A session is a directory under `uploads/` holding the bytes received so far. Every
//! acknowledged chunk is fsynced before the answer, so after a crash or restart the session
//! resumes at exactly the offset it last acknowledged (or further, if an unacknowledged
//! chunk landed). Nothing is visible in the blob store until `complete` has checked the
//! digest.

use crate::blob::{BlobError, Blobs, ByteStream, Digest, Expect, Put};
use futures::StreamExt;
use parking_lot::Mutex;
use rand::RngCore;
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::AsyncWriteExt;

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("no upload session {0:?}")]
    UnknownSession(String),
    /// The chunk does not start where the session stands (distribution-spec: 416).
    #[error("the chunk starts at byte {start} but the upload has {have} bytes")]
    OutOfOrder { start: u64, have: u64 },
    #[error("the upload would exceed the {limit}-byte blob limit")]
    TooLarge { limit: u64 },
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error("upload storage: {0}")]
    Io(#[from] io::Error),
}

pub type Result<T> = std::result::Result<T, UploadError>;

pub struct Uploads {
    dir: PathBuf,
    blobs: Arc<Blobs>,
    max_bytes: u64,
    /// One writer per session at a time: chunks of one upload never interleave.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// Session ids are 128 random bits in hex: knowing one is the capability to write to it.
fn valid_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Uploads {
    /// Opens the session directory, dropping sessions idle for longer than `expire`.
    pub fn open(dir: &Path, blobs: Arc<Blobs>, max_bytes: u64, expire: Duration) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let now = SystemTime::now();
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let idle = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .unwrap_or_default();
            let name = e.file_name();
            let keep = name.to_str().is_some_and(valid_id) && idle < expire;
            if !keep {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            blobs,
            max_bytes,
            locks: Mutex::new(HashMap::new()),
        })
    }

    pub fn blobs(&self) -> &Arc<Blobs> {
        &self.blobs
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    fn data_path(&self, id: &str) -> Result<PathBuf> {
        if !valid_id(id) {
            return Err(UploadError::UnknownSession(id.chars().take(64).collect()));
        }
        Ok(self.dir.join(id).join("data"))
    }

    fn lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks.lock().entry(id.to_string()).or_default().clone()
    }

    fn forget(&self, id: &str) {
        self.locks.lock().remove(id);
    }

    /// Creates a session and returns its id.
    pub async fn start(&self) -> Result<String> {
        let mut raw = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut raw);
        let id = hex::encode(raw);
        let session = self.dir.join(&id);
        tokio::fs::create_dir(&session).await?;
        let f = tokio::fs::File::create(session.join("data")).await?;
        f.sync_all().await?;
        sync_dir(&session).await?;
        sync_dir(&self.dir).await?;
        Ok(id)
    }

    /// Bytes received so far.
    pub async fn progress(&self, id: &str) -> Result<u64> {
        let path = self.data_path(id)?;
        match tokio::fs::metadata(&path).await {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(UploadError::UnknownSession(id.to_string()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Appends a chunk that must start at `start` (if given) and returns the new length.
    /// Bytes that arrived before a broken body are kept: the client asks for progress and
    /// resumes from there.
    pub async fn append(&self, id: &str, start: Option<u64>, body: ByteStream) -> Result<u64> {
        let lock = self.lock(id);
        let _guard = lock.lock().await;
        self.append_locked(id, start, body).await
    }

    async fn append_locked(
        &self,
        id: &str,
        start: Option<u64>,
        mut body: ByteStream,
    ) -> Result<u64> {
        let have = self.progress(id).await?;
        if let Some(start) = start {
            if start != have {
                return Err(UploadError::OutOfOrder { start, have });
            }
        }
        let mut f = tokio::fs::OpenOptions::new()
            .append(true)
            .open(self.data_path(id)?)
            .await?;
        let mut len = have;
        let mut failure = None;
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(c) => {
                    if len + c.len() as u64 > self.max_bytes {
                        failure = Some(UploadError::TooLarge {
                            limit: self.max_bytes,
                        });
                        break;
                    }
                    f.write_all(&c).await?;
                    len += c.len() as u64;
                }
                Err(e) => {
                    failure = Some(BlobError::Body(e.to_string()).into());
                    break;
                }
            }
        }
        f.flush().await?;
        f.sync_data().await?;
        match failure {
            Some(e) => Err(e),
            None => Ok(len),
        }
    }

    /// Appends the final chunk (if any), then moves the bytes into the blob store under
    /// their digest, which must be `digest`. The session ends either way, except when the
    /// final chunk itself was refused (the client may retry it).
    pub async fn complete(
        &self,
        id: &str,
        digest: Digest,
        last: Option<ByteStream>,
    ) -> Result<Put> {
        let lock = self.lock(id);
        let _guard = lock.lock().await;
        if let Some(body) = last {
            self.append_locked(id, None, body).await?;
        }
        let path = self.data_path(id)?;
        let size = self.progress(id).await?;
        let file = tokio::fs::File::open(&path).await?;
        let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024).boxed();
        let result = self
            .blobs
            .put(
                stream,
                Expect {
                    digest: Some(digest),
                    size: Some(size),
                },
            )
            .await;
        match result {
            // A storage failure leaves the session for a retry; a wrong digest ends it.
            Err(BlobError::Io(e)) => Err(BlobError::Io(e).into()),
            other => {
                self.remove(id).await?;
                Ok(other?)
            }
        }
    }

    pub async fn cancel(&self, id: &str) -> Result<()> {
        let lock = self.lock(id);
        let _guard = lock.lock().await;
        self.progress(id).await?;
        self.remove(id).await
    }

    async fn remove(&self, id: &str) -> Result<()> {
        self.data_path(id)?;
        tokio::fs::remove_dir_all(self.dir.join(id)).await?;
        self.forget(id);
        Ok(())
    }
}

async fn sync_dir(dir: &Path) -> io::Result<()> {
    let d = dir.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::File::open(&d)?.sync_all())
        .await
        .map_err(io::Error::other)?
}
