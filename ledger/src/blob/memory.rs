//! An in-memory backend for unit tests, with fault injection in the style of
//! FiloSottile/sunlight's test backend: a write can fail cleanly, or fail after it
//! persisted (the case that makes callers re-read storage instead of trusting the error),
//! and reads can fail mid-stream.

use super::{BlobStore, ByteStream, ObjectWriter, Result};
use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use parking_lot::Mutex;
use std::collections::{BTreeMap, VecDeque};
use std::ops::Range;
use std::sync::Arc;

/// Reads come in pieces of this size: deliberately unrelated to the seal's chunk size, so
/// readers must reassemble chunks across pieces.
const READ_PIECE: usize = 10_000;

/// How an injected commit failure behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitFault {
    /// "write failed", and nothing is kept.
    Fail,
    /// "write failed", but the object was stored anyway.
    FailButPersist,
}

#[derive(Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Bytes>,
    commit_faults: VecDeque<CommitFault>,
    fail_reads_after: Option<usize>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Queues a fault for the next commit that has none queued before it.
    pub fn fail_next_commit(&self, fault: CommitFault) {
        self.state.lock().commit_faults.push_back(fault);
    }

    /// From now on, every read delivers at most `bytes` bytes and then an error (`None`
    /// heals the store).
    pub fn fail_reads_after(&self, bytes: Option<usize>) {
        self.state.lock().fail_reads_after = bytes;
    }
}

#[async_trait]
impl BlobStore for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    async fn begin(&self, _key_hint: Option<&str>) -> Result<Box<dyn ObjectWriter>> {
        Ok(Box::new(MemoryWriter {
            state: self.state.clone(),
            buf: BytesMut::new(),
        }))
    }

    async fn read(&self, key: &str, range: Option<Range<u64>>) -> Result<Option<ByteStream>> {
        let state = self.state.lock();
        let Some(object) = state.objects.get(key) else {
            return Ok(None);
        };
        let mut bytes = match range {
            Some(r) => {
                let end = (r.end as usize).min(object.len());
                object.slice((r.start as usize).min(end)..end)
            }
            None => object.clone(),
        };
        let mut fail = false;
        if let Some(limit) = state.fail_reads_after {
            if bytes.len() > limit {
                bytes.truncate(limit);
                fail = true;
            }
        }
        let mut pieces: Vec<std::io::Result<Bytes>> = Vec::new();
        while !bytes.is_empty() {
            pieces.push(Ok(bytes.split_to(bytes.len().min(READ_PIECE))));
        }
        if fail {
            pieces.push(Err(std::io::Error::other("read failed")));
        }
        Ok(Some(futures::stream::iter(pieces).boxed()))
    }

    async fn size(&self, key: &str) -> Result<Option<u64>> {
        Ok(self.state.lock().objects.get(key).map(|b| b.len() as u64))
    }

    async fn list(&self) -> Result<Vec<(String, u64)>> {
        let state = self.state.lock();
        Ok(state
            .objects
            .iter()
            .map(|(k, v)| (k.clone(), v.len() as u64))
            .collect())
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        Ok(self.state.lock().objects.remove(key).is_some())
    }
}

struct MemoryWriter {
    state: Arc<Mutex<State>>,
    buf: BytesMut,
}

#[async_trait]
impl ObjectWriter for MemoryWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        self.buf.extend_from_slice(&chunk);
        Ok(())
    }

    async fn commit(self: Box<Self>, key: &str) -> Result<()> {
        let MemoryWriter { state, buf } = *self;
        let mut state = state.lock();
        let fault = state.commit_faults.pop_front();
        if fault != Some(CommitFault::Fail) {
            state
                .objects
                .entry(key.to_string())
                .or_insert_with(|| buf.freeze());
        }
        match fault {
            None => Ok(()),
            Some(_) => Err(super::BlobError::Io("write failed".into())),
        }
    }

    async fn abort(self: Box<Self>) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::{conformance, BlobError, Blobs, Digest, Expect};

    fn body(data: &[u8]) -> ByteStream {
        futures::stream::iter([Ok(Bytes::copy_from_slice(data))]).boxed()
    }

    #[tokio::test]
    async fn the_memory_store_passes_the_conformance_suite() {
        conformance::run(Arc::new(MemoryStore::new())).await;
    }

    #[tokio::test]
    async fn a_failed_commit_keeps_nothing() {
        let store = MemoryStore::new();
        let blobs = Blobs::new(Arc::new(store.clone()), None);
        store.fail_next_commit(CommitFault::Fail);
        let err = blobs.put(body(b"model"), Expect::default()).await;
        assert!(
            matches!(err, Err(BlobError::Io(ref m)) if m == "write failed"),
            "{err:?}"
        );
        assert_eq!(blobs.stat(&Digest::of(b"model")).await.unwrap(), None);
        assert!(store.list().await.unwrap().is_empty());
        // The fault was one-shot: a retry stores the blob.
        let put = blobs.put(body(b"model"), Expect::default()).await.unwrap();
        assert!(!put.existed);
        assert_eq!(blobs.stat(&put.digest).await.unwrap(), Some(5));
    }

    #[tokio::test]
    async fn a_commit_that_fails_after_persisting_leaves_a_readable_blob() {
        let store = MemoryStore::new();
        let blobs = Blobs::new(Arc::new(store.clone()), None);
        store.fail_next_commit(CommitFault::FailButPersist);
        let d = Digest::of(b"dataset");
        let expect = Expect {
            digest: Some(d),
            size: Some(7),
        };
        assert!(blobs.put(body(b"dataset"), expect).await.is_err());
        assert_eq!(blobs.verify(&d).await.unwrap(), 7);
        let retry = blobs.put(body(b"dataset"), expect).await.unwrap();
        assert!(retry.existed);
    }

    #[tokio::test]
    async fn a_read_failing_midway_ends_the_stream_with_an_error() {
        let store = MemoryStore::new();
        let blobs = Blobs::new(Arc::new(store.clone()), None);
        let data = vec![7u8; 3 * READ_PIECE];
        let put = blobs.put(body(&data), Expect::default()).await.unwrap();
        store.fail_reads_after(Some(READ_PIECE + 1));
        let (_, mut stream) = blobs.get(&put.digest, None).await.unwrap();
        let mut got = 0;
        let err = loop {
            match stream.next().await {
                Some(Ok(b)) => got += b.len(),
                Some(Err(e)) => break e,
                None => panic!("a failed read ended cleanly after {got} bytes"),
            }
        };
        assert_eq!(got, READ_PIECE + 1);
        assert_eq!(err.to_string(), "read failed");
        // A failed read is an I/O error, not evidence of corruption.
        assert!(matches!(
            blobs.verify(&put.digest).await,
            Err(BlobError::Io(_))
        ));
        store.fail_reads_after(None);
        assert_eq!(blobs.verify(&put.digest).await.unwrap(), data.len() as u64);
    }
}
