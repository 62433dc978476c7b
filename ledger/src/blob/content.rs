//! Content addressing over any [`BlobStore`]: blobs are stored under the SHA-256 of their
//! plaintext (`sha256/<hex>`, or `sealed/sha256/<hex>` when sealed at rest), hashed while
//! they stream in and checked again while they stream out.

use super::hashing::Hashing;
use super::seal::{self, MasterKey, Opener, Sealer};
use super::{BlobError, BlobStore, ByteStream, Digest, ObjectWriter, Result};
use bytes::Bytes;
use futures::{Stream, StreamExt};

use std::collections::BTreeMap;
use std::io;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

pub fn plain_key(d: &Digest) -> String {
    format!("sha256/{}", d.hex())
}

pub fn sealed_key(d: &Digest) -> String {
    format!("sealed/sha256/{}", d.hex())
}

/// (digest, sealed) for a key that holds a blob; other keys are not blobs.
fn parse_key(key: &str) -> Option<(Digest, bool)> {
    let (hex, sealed) = match key.strip_prefix("sealed/") {
        Some(rest) => (rest.strip_prefix("sha256/")?, true),
        None => (key.strip_prefix("sha256/")?, false),
    };
    Some((Digest::from_hex(hex).ok()?, sealed))
}

#[derive(Clone)]
pub struct Blobs {
    backend: Arc<dyn BlobStore>,
    seal: Option<MasterKey>,
}

/// What the uploader declared about the body, checked against what it sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Expect {
    pub digest: Option<Digest>,
    pub size: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Put {
    pub digest: Digest,
    pub size: u64,
    /// The blob was already stored (the body may not have been read at all).
    pub existed: bool,
}

struct Stored {
    key: String,
    sealed: bool,
    object_size: u64,
}

impl Blobs {
    /// New blobs are sealed with `seal` when given; blobs stored before sealing was turned
    /// on stay readable.
    pub fn new(backend: Arc<dyn BlobStore>, seal: Option<MasterKey>) -> Blobs {
        Blobs { backend, seal }
    }

    pub fn backend(&self) -> &Arc<dyn BlobStore> {
        &self.backend
    }

    /// Stores `body`. With a declared digest that is already stored, the body is not polled
    /// at all, so a client that sent `Expect: 100-continue` never uploads it.
    pub async fn put(&self, body: ByteStream, expect: Expect) -> Result<Put> {
        if let Some(d) = expect.digest {
            if let Some(size) = self.stat(&d).await? {
                return match expect.size {
                    Some(declared) if declared != size => Err(BlobError::SizeMismatch {
                        expected: declared,
                        actual: size,
                    }),
                    _ => Ok(Put {
                        digest: d,
                        size,
                        existed: true,
                    }),
                };
            }
        }
        let hint = expect.digest.map(|d| self.key_for_new(&d));
        let mut writer = self.backend.begin(hint.as_deref()).await?;
        let (digest, size) = match self.write_body(&mut writer, body, expect).await {
            Ok(written) => written,
            Err(e) => {
                writer.abort().await;
                return Err(e);
            }
        };
        // Without a declared digest, only now do we know whether the upload was redundant.
        if expect.digest.is_none() {
            match self.stat(&digest).await {
                Ok(None) => {}
                found => {
                    writer.abort().await;
                    found?;
                    return Ok(Put {
                        digest,
                        size,
                        existed: true,
                    });
                }
            }
        }
        writer.commit(&self.key_for_new(&digest)).await?;
        Ok(Put {
            digest,
            size,
            existed: false,
        })
    }

    fn key_for_new(&self, d: &Digest) -> String {
        match self.seal {
            Some(_) => sealed_key(d),
            None => plain_key(d),
        }
    }

    async fn write_body(
        &self,
        writer: &mut Box<dyn ObjectWriter>,
        mut body: ByteStream,
        expect: Expect,
    ) -> Result<(Digest, u64)> {
        let mut hasher = Hashing::default();
        let mut size = 0u64;
        let mut sealer = self.seal.as_ref().map(Sealer::new);
        if let Some(s) = &sealer {
            writer.write(s.header()).await?;
        }
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| BlobError::Body(e.to_string()))?;
            size += chunk.len() as u64;
            match expect.size {
                // Stop at once: `actual` is what arrived so far, not the whole upload.
                Some(declared) if size > declared => {
                    return Err(BlobError::SizeMismatch {
                        expected: declared,
                        actual: size,
                    })
                }
                _ => {}
            }
            hasher.update(&chunk).await;
            self.write_piece(writer, &mut sealer, chunk).await?;
        }
        match expect.size {
            Some(declared) if size != declared => {
                return Err(BlobError::SizeMismatch {
                    expected: declared,
                    actual: size,
                })
            }
            _ => {}
        }
        let digest = hasher
            .finish()
            .await
            .ok_or_else(|| BlobError::Io("the hashing thread failed".into()))?;
        match expect.digest {
            Some(declared) if declared != digest => {
                return Err(BlobError::DigestMismatch {
                    expected: declared,
                    actual: digest,
                })
            }
            _ => {}
        }
        if let Some(s) = sealer {
            writer.write(s.finish(&digest)?).await?;
        }
        Ok((digest, size))
    }

    async fn write_piece(
        &self,
        writer: &mut Box<dyn ObjectWriter>,
        sealer: &mut Option<Sealer>,
        piece: Bytes,
    ) -> Result<()> {
        match sealer {
            Some(s) => {
                for sealed in s.push(&piece)? {
                    writer.write(sealed).await?;
                }
            }
            None => writer.write(piece).await?,
        }
        Ok(())
    }

    /// Where `d` is stored. The preferred kind is looked up first: a store may hold both
    /// after sealing was turned on or off.
    async fn locate(&self, d: &Digest) -> Result<Option<Stored>> {
        let plain = (plain_key(d), false);
        let sealed = (sealed_key(d), true);
        let order = match self.seal {
            Some(_) => [sealed, plain],
            None => [plain, sealed],
        };
        for (key, sealed) in order {
            if let Some(object_size) = self.backend.size(&key).await? {
                return Ok(Some(Stored {
                    key,
                    sealed,
                    object_size,
                }));
            }
        }
        Ok(None)
    }

    /// The plaintext size, without reading the body.
    pub async fn stat(&self, d: &Digest) -> Result<Option<u64>> {
        match self.locate(d).await? {
            None => Ok(None),
            Some(s) => plaintext_size(d, &s).map(Some),
        }
    }

    /// (total plaintext size, the bytes of `range` or of the whole blob). A full read of a
    /// plaintext object is re-hashed and ends with an `Err`, never a clean end, if it does
    /// not match `d`; a sealed object is authenticated chunk by chunk.
    pub async fn get(&self, d: &Digest, range: Option<Range<u64>>) -> Result<(u64, ByteStream)> {
        let stored = self.locate(d).await?.ok_or(BlobError::NotFound(*d))?;
        if stored.sealed {
            return self.get_sealed(d, &stored, range).await;
        }
        let size = stored.object_size;
        let want = check_range(range.clone(), size)?;
        let full = range.is_none();
        let body = self
            .backend
            .read(&stored.key, range)
            .await?
            .ok_or(BlobError::NotFound(*d))?;
        let checked = Checked {
            inner: body,
            digest: *d,
            hasher: full.then(Hashing::default),
            held: None,
            want: want.end - want.start,
            seen: 0,
            done: false,
        };
        Ok((size, checked.boxed()))
    }

    async fn get_sealed(
        &self,
        d: &Digest,
        stored: &Stored,
        range: Option<Range<u64>>,
    ) -> Result<(u64, ByteStream)> {
        let master = self.seal.as_ref().ok_or_else(|| {
            BlobError::Io(format!(
                "blob {d} is sealed at rest and no master key is configured"
            ))
        })?;
        let size = plaintext_size(d, stored)?;
        let want = check_range(range, size)?;
        let header = self
            .read_small(d, &stored.key, 0..seal::HEADER_LEN as u64)
            .await?;
        let opener = Opener::new(master, &header, stored.object_size, *d)?;
        let chunks = opener.chunks_covering(&want);
        let last = opener.chunks() - 1;
        if *chunks.end() != last {
            // The last chunk authenticates the size and the digest the object was sealed
            // for; a ranged read checks it before returning anything.
            let span = opener.chunk_span(last);
            let sealed = self.read_small(d, &stored.key, span).await?;
            opener.open(last, &sealed)?;
        }
        let span = opener.chunk_span(*chunks.start()).start..opener.chunk_span(*chunks.end()).end;
        let body = self
            .backend
            .read(&stored.key, Some(span))
            .await?
            .ok_or(BlobError::NotFound(*d))?;
        let skip = want.start - chunks.start() * seal::CHUNK as u64;
        let stream = opener.stream(chunks, body, skip, want.end - want.start);
        Ok((size, stream))
    }

    async fn read_small(&self, d: &Digest, key: &str, range: Range<u64>) -> Result<Vec<u8>> {
        let len = range.end - range.start;
        let mut body = self
            .backend
            .read(key, Some(range))
            .await?
            .ok_or(BlobError::NotFound(*d))?;
        let mut out = Vec::with_capacity(len as usize);
        while let Some(chunk) = body.next().await {
            out.extend_from_slice(&chunk?);
        }
        if out.len() as u64 != len {
            return Err(BlobError::Corrupt {
                digest: *d,
                reason: format!("a {len}-byte read returned {} bytes", out.len()),
            });
        }
        Ok(out)
    }

    /// Every stored blob with its plaintext size, in digest order.
    pub async fn list(&self) -> Result<Vec<(Digest, u64)>> {
        let mut blobs = BTreeMap::new();
        for (key, object_size) in self.backend.list().await? {
            let Some((d, sealed)) = parse_key(&key) else {
                continue;
            };
            let stored = Stored {
                key,
                sealed,
                object_size,
            };
            blobs.insert(d, plaintext_size(&d, &stored)?);
        }
        Ok(blobs.into_iter().collect())
    }

    /// Removes every stored copy of `d`; false if there was none.
    pub async fn delete(&self, d: &Digest) -> Result<bool> {
        let plain = self.backend.delete(&plain_key(d)).await?;
        let sealed = self.backend.delete(&sealed_key(d)).await?;
        Ok(plain || sealed)
    }

    /// Reads the whole blob and checks it against `d` (for monitors): `Corrupt` if the
    /// stored bytes are not the blob, `Io` if they could not be read.
    pub async fn verify(&self, d: &Digest) -> Result<u64> {
        // A full read of a plain object is already re-hashed by `get`; a sealed one is
        // authenticated chunk by chunk, and hashed here as well.
        let sealed = self.locate(d).await?.is_some_and(|s| s.sealed);
        let (size, mut body) = self.get(d, None).await?;
        let mut hasher = sealed.then(Hashing::default);
        let mut seen = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| stream_error(d, e))?;
            seen += chunk.len() as u64;
            if let Some(h) = &mut hasher {
                h.update(&chunk).await;
            }
        }
        let actual = match hasher {
            Some(h) => h.finish().await,
            None => Some(*d),
        };
        if seen != size || actual != Some(*d) {
            return Err(BlobError::Corrupt {
                digest: *d,
                reason: format!("the stored {seen} bytes do not hash to it"),
            });
        }
        Ok(size)
    }
}

fn plaintext_size(d: &Digest, stored: &Stored) -> Result<u64> {
    if !stored.sealed {
        return Ok(stored.object_size);
    }
    seal::plaintext_size(stored.object_size).ok_or_else(|| BlobError::Corrupt {
        digest: *d,
        reason: format!(
            "no sealed object is {} bytes (truncated or extended)",
            stored.object_size
        ),
    })
}

fn check_range(range: Option<Range<u64>>, size: u64) -> Result<Range<u64>> {
    match range {
        None => Ok(0..size),
        Some(r) if r.start < r.end && r.end <= size => Ok(r),
        Some(r) => Err(BlobError::InvalidRange {
            start: r.start,
            end: r.end,
            size,
        }),
    }
}

/// Recovers the error a verifying stream carried, or classifies a read failure.
fn stream_error(d: &Digest, e: io::Error) -> BlobError {
    if e.kind() != io::ErrorKind::InvalidData {
        return BlobError::Io(e.to_string());
    }
    let reason = e.to_string();
    match e.into_inner().map(|inner| inner.downcast::<BlobError>()) {
        Some(Ok(inner)) => *inner,
        _ => BlobError::Corrupt { digest: *d, reason },
    }
}

/// Passes a plaintext object's bytes through, checking their count and, on full reads,
/// their digest; a mismatch ends the stream with an `Err` instead of a clean end.
struct Checked {
    inner: ByteStream,
    digest: Digest,
    hasher: Option<Hashing>,
    /// A chunk read and counted, waiting for the hasher to take it.
    held: Option<Bytes>,
    want: u64,
    seen: u64,
    done: bool,
}

impl Checked {
    fn corrupt(&mut self, reason: String) -> Poll<Option<io::Result<Bytes>>> {
        self.done = true;
        Poll::Ready(Some(Err(seal::invalid_data(BlobError::Corrupt {
            digest: self.digest,
            reason,
        }))))
    }
}

impl Stream for Checked {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Some(chunk) = self.held.take() {
            let this = &mut *self;
            if let Some(h) = &mut this.hasher {
                if h.poll_update(cx, &chunk).is_pending() {
                    this.held = Some(chunk);
                    return Poll::Pending;
                }
            }
            return Poll::Ready(Some(Ok(chunk)));
        }
        match ready!(self.inner.poll_next_unpin(cx)) {
            Some(Ok(chunk)) => {
                self.seen += chunk.len() as u64;
                if self.seen > self.want {
                    let reason = format!("the stored object is longer than {} bytes", self.want);
                    return self.corrupt(reason);
                }
                self.held = Some(chunk);
                self.poll_next(cx)
            }
            Some(Err(e)) => {
                self.done = true;
                Poll::Ready(Some(Err(e)))
            }
            None if self.seen != self.want => {
                let reason = format!("the read ended after {} of {} bytes", self.seen, self.want);
                self.corrupt(reason)
            }
            None => {
                let actual = match &mut self.hasher {
                    None => None,
                    Some(h) => match ready!(h.poll_finish(cx)) {
                        Some(d) => Some(d),
                        None => return self.corrupt("the hashing thread failed".into()),
                    },
                };
                self.done = true;
                match actual {
                    Some(actual) if actual != self.digest => {
                        self.corrupt(format!("the stored bytes hash to {actual}"))
                    }
                    _ => Poll::Ready(None),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::memory::MemoryStore;

    fn body(data: &[u8]) -> ByteStream {
        futures::stream::iter([Ok(Bytes::copy_from_slice(data))]).boxed()
    }

    async fn read_all(blobs: &Blobs, d: &Digest) -> Vec<u8> {
        let (_, mut s) = blobs.get(d, None).await.unwrap();
        let mut out = Vec::new();
        while let Some(chunk) = s.next().await {
            out.extend_from_slice(&chunk.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn plain_blobs_stay_readable_after_sealing_is_turned_on() {
        let store: Arc<dyn BlobStore> = Arc::new(MemoryStore::new());
        let plain = Blobs::new(store.clone(), None);
        let old = plain.put(body(b"old"), Expect::default()).await.unwrap();
        let sealed = Blobs::new(store.clone(), Some(MasterKey::generate()));
        assert_eq!(read_all(&sealed, &old.digest).await, b"old");
        let again = sealed.put(body(b"old"), Expect::default()).await.unwrap();
        assert!(again.existed, "the plain copy already holds it");
        let new = sealed.put(body(b"new"), Expect::default()).await.unwrap();
        assert_eq!(
            store.size(&sealed_key(&new.digest)).await.unwrap(),
            Some(seal::HEADER_LEN as u64 + 3 + 16)
        );
        let mut both = vec![(old.digest, 3), (new.digest, 3)];
        both.sort();
        assert_eq!(sealed.list().await.unwrap(), both);
    }

    #[tokio::test]
    async fn a_sealed_blob_is_not_served_without_the_master_key() {
        let store: Arc<dyn BlobStore> = Arc::new(MemoryStore::new());
        let sealed = Blobs::new(store.clone(), Some(MasterKey::generate()));
        let put = sealed
            .put(body(b"secret"), Expect::default())
            .await
            .unwrap();
        let plain = Blobs::new(store, None);
        assert_eq!(plain.stat(&put.digest).await.unwrap(), Some(6));
        let err = plain.get(&put.digest, None).await.err().unwrap();
        assert!(err.to_string().contains("no master key"), "{err}");
    }

    #[tokio::test]
    async fn keys_that_are_not_blobs_are_not_listed() {
        let store: Arc<dyn BlobStore> = Arc::new(MemoryStore::new());
        for key in ["sha256/zz", "sha512/ab", "sealed/sha256/", "other"] {
            let mut w = store.begin(None).await.unwrap();
            w.write(Bytes::from_static(b"x")).await.unwrap();
            w.commit(key).await.unwrap();
        }
        assert!(Blobs::new(store, None).list().await.unwrap().is_empty());
    }
}
