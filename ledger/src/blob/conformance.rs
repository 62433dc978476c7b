//! The suite that defines a backend: every [`BlobStore`] must pass [`run`], on its own and
//! under [`Blobs`], plain and sealed. It panics with a message naming the backend and the
//! failed property.
//!
//! Content is random per run and everything written is deleted again, so the suite can run
//! against a shared bucket; runs must not overlap, though, since it checks that failed
//! writes leave the backend's whole listing unchanged.

use super::content::{plain_key, sealed_key};
use super::seal::{self, MasterKey};
use super::{BlobError, BlobStore, Blobs, ByteStream, Digest, Expect, Put};
use bytes::Bytes;
use futures::StreamExt;
use rand::RngCore;
use std::ops::Range;
use std::sync::Arc;

const CHUNK: usize = seal::CHUNK;
/// Upload pieces of a size unrelated to any chunk size.
const PIECE: usize = 10_007;

pub async fn run(backend: Arc<dyn BlobStore>) {
    let run = hex(&random(8));
    raw(&backend, &run).await;
    let plain = Blobs::new(backend.clone(), None);
    content(&backend, Arc::new(plain), "plain").await;
    let sealed = Blobs::new(backend.clone(), Some(MasterKey::generate()));
    content(&backend, Arc::new(sealed), "sealed").await;
}

fn random(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut v);
    v
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

fn body(data: &[u8]) -> ByteStream {
    let pieces: Vec<std::io::Result<Bytes>> = data
        .chunks(PIECE)
        .map(|p| Ok(Bytes::copy_from_slice(p)))
        .collect();
    futures::stream::iter(pieces).boxed()
}

/// A body that must not be read.
fn untouchable() -> ByteStream {
    futures::stream::poll_fn(|_| panic!("the body was polled although the blob was stored")).boxed()
}

/// `first` in one piece, then a panic if polled again.
fn then_untouchable(first: &[u8]) -> ByteStream {
    futures::stream::iter([Ok(Bytes::copy_from_slice(first))])
        .chain(untouchable())
        .boxed()
}

/// `prefix`, then a read error, as when a client disconnects mid-upload.
fn failing(prefix: &[u8]) -> ByteStream {
    body(prefix)
        .chain(futures::stream::iter([Err(std::io::Error::other(
            "client went away",
        ))]))
        .boxed()
}

async fn drain(mut s: ByteStream) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

async fn fetch(blobs: &Blobs, d: &Digest, range: Option<Range<u64>>) -> Result<Vec<u8>, String> {
    let (_, s) = blobs.get(d, range).await.map_err(|e| e.to_string())?;
    drain(s).await.map_err(|e| e.to_string())
}

async fn put_raw(b: &Arc<dyn BlobStore>, key: &str, data: &[u8]) {
    let mut w = b.begin(Some(key)).await.unwrap();
    for piece in data.chunks(PIECE) {
        w.write(Bytes::copy_from_slice(piece)).await.unwrap();
    }
    w.commit(key).await.unwrap();
}

async fn read_raw(b: &Arc<dyn BlobStore>, key: &str, range: Option<Range<u64>>) -> Vec<u8> {
    let s = b.read(key, range).await.unwrap().expect("object exists");
    drain(s).await.unwrap()
}

/// The backend contract itself, on keys under `conformance/<run>/`.
async fn raw(b: &Arc<dyn BlobStore>, run: &str) {
    let kind = b.kind();
    let key = |name: &str| format!("conformance/{run}/{name}");
    let ours = |listing: Vec<(String, u64)>| -> Vec<(String, u64)> {
        let prefix = key("");
        listing
            .into_iter()
            .filter(|(k, _)| k.starts_with(&prefix))
            .collect()
    };
    let mut expected = Vec::new();
    for (name, n) in [
        ("empty", 0),
        ("one", 1),
        ("small", 1000),
        ("large", 300_000),
    ] {
        let (k, data) = (key(name), random(n));
        assert_eq!(
            b.size(&k).await.unwrap(),
            None,
            "{kind}: fresh key {k} exists"
        );
        put_raw(b, &k, &data).await;
        assert_eq!(
            b.size(&k).await.unwrap(),
            Some(n as u64),
            "{kind}: size of {k}"
        );
        assert!(read_raw(b, &k, None).await == data, "{kind}: read back {k}");
        if n > 2 {
            let n = n as u64;
            for r in [0..1, n - 1..n, 1..n - 1, 0..n] {
                let got = read_raw(b, &k, Some(r.clone())).await;
                let want = &data[r.start as usize..r.end as usize];
                assert!(got == want, "{kind}: range {r:?} of {k}");
            }
        }
        expected.push((k, n as u64));
    }
    expected.sort();
    assert_eq!(ours(b.list().await.unwrap()), expected, "{kind}: list");

    let first = key("small");
    put_raw(b, &first, b"other bytes").await;
    assert_eq!(
        b.size(&first).await.unwrap(),
        Some(1000),
        "{kind}: a commit onto an existing key replaced it"
    );

    let missing = key("missing");
    assert!(
        b.read(&missing, None).await.unwrap().is_none(),
        "{kind}: read of a missing key"
    );
    assert_eq!(
        b.size(&missing).await.unwrap(),
        None,
        "{kind}: size of a missing key"
    );
    assert!(
        !b.delete(&missing).await.unwrap(),
        "{kind}: delete of a missing key"
    );

    let before = b.list().await.unwrap();
    let interrupted = key("interrupted");
    let mut w = b.begin(Some(&interrupted)).await.unwrap();
    w.write(Bytes::from(random(100_000))).await.unwrap();
    assert_eq!(
        b.size(&interrupted).await.unwrap(),
        None,
        "{kind}: an object is visible before commit"
    );
    drop(w);
    let mut w = b.begin(Some(&interrupted)).await.unwrap();
    w.write(Bytes::from(random(100))).await.unwrap();
    w.abort().await;
    assert_eq!(
        b.size(&interrupted).await.unwrap(),
        None,
        "{kind}: interrupted write visible"
    );
    assert_eq!(
        b.list().await.unwrap(),
        before,
        "{kind}: an interrupted write changed the listing"
    );

    for (k, _) in &expected {
        assert!(b.delete(k).await.unwrap(), "{kind}: delete {k}");
        assert_eq!(
            b.size(k).await.unwrap(),
            None,
            "{kind}: {k} survived delete"
        );
        assert!(
            b.read(k, None).await.unwrap().is_none(),
            "{kind}: {k} readable after delete"
        );
        assert!(!b.delete(k).await.unwrap(), "{kind}: second delete of {k}");
    }
    assert!(
        ours(b.list().await.unwrap()).is_empty(),
        "{kind}: list after delete"
    );
}

/// Content addressing through [`Blobs`]; `mode` is "plain" or "sealed".
async fn content(b: &Arc<dyn BlobStore>, blobs: Arc<Blobs>, mode: &str) {
    let kind = format!("{} ({mode})", b.kind());
    let sealed = mode == "sealed";
    let key_of = |d: &Digest| if sealed { sealed_key(d) } else { plain_key(d) };

    // The empty blob is the one content that is not unique to this run: clear it first,
    // and leave none behind, since an earlier run may have sealed it with another key.
    let empty = Digest::of(b"");
    blobs.delete(&empty).await.unwrap();
    let put = blobs.put(body(b""), Expect::default()).await.unwrap();
    assert_eq!(
        (put.digest, put.size, put.existed),
        (empty, 0, false),
        "{kind}: empty put"
    );
    assert_eq!(
        blobs.stat(&empty).await.unwrap(),
        Some(0),
        "{kind}: empty stat"
    );
    assert_eq!(
        fetch(&blobs, &empty, None).await.unwrap(),
        b"",
        "{kind}: empty get"
    );
    assert!(
        matches!(
            blobs.get(&empty, Some(0..1)).await,
            Err(BlobError::InvalidRange { .. })
        ),
        "{kind}: a range of the empty blob"
    );
    assert_eq!(
        blobs.verify(&empty).await.unwrap(),
        0,
        "{kind}: verify empty"
    );
    assert!(blobs.delete(&empty).await.unwrap(), "{kind}: delete empty");

    let mut stored = Vec::new();
    for n in [1, 2, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 17] {
        let data = random(n);
        let d = Digest::of(&data);
        let put = blobs.put(body(&data), Expect::default()).await.unwrap();
        let want = Put {
            digest: d,
            size: n as u64,
            existed: false,
        };
        assert_eq!(put, want, "{kind}: put of {n} bytes");
        assert_eq!(
            blobs.stat(&d).await.unwrap(),
            Some(n as u64),
            "{kind}: stat {n}"
        );
        assert!(
            fetch(&blobs, &d, None).await.unwrap() == data,
            "{kind}: get {n}"
        );
        assert_eq!(
            blobs.verify(&d).await.unwrap(),
            n as u64,
            "{kind}: verify {n}"
        );
        let raw = read_raw(b, &key_of(&d), None).await;
        if sealed {
            assert!(
                n < 32 || !raw.windows(32).any(|w| w == &data[..32]),
                "{kind}: plaintext visible in the sealed object"
            );
        } else {
            assert!(raw == data, "{kind}: the plain object is not the blob");
        }
        let again = blobs.put(body(&data), Expect::default()).await.unwrap();
        assert!(
            again.existed,
            "{kind}: second put of {n} bytes not deduplicated"
        );
        let declared = Expect {
            digest: Some(d),
            size: Some(n as u64),
        };
        let again = blobs.put(untouchable(), declared).await.unwrap();
        assert_eq!(
            again,
            Put {
                existed: true,
                ..want
            },
            "{kind}: declared duplicate"
        );
        let wrong_size = Expect {
            size: Some(n as u64 + 1),
            ..declared
        };
        assert!(
            matches!(
                blobs.put(untouchable(), wrong_size).await,
                Err(BlobError::SizeMismatch { .. })
            ),
            "{kind}: a stored digest declared with the wrong size"
        );
        stored.push((d, n as u64, data));
    }

    let listed = blobs.list().await.unwrap();
    for (d, n, _) in &stored {
        assert!(listed.contains(&(*d, *n)), "{kind}: {d} missing from list");
    }

    let (d, n, data) = stored.last().unwrap();
    ranges(&blobs, &kind, d, *n, data).await;
    failed_puts(b, &blobs, &kind).await;
    concurrent_puts(b, &blobs, &kind).await;
    corruption(b, &blobs, &kind, sealed).await;

    for (d, _, _) in &stored {
        assert!(blobs.delete(d).await.unwrap(), "{kind}: delete {d}");
        assert_eq!(
            blobs.stat(d).await.unwrap(),
            None,
            "{kind}: stat after delete"
        );
        assert!(
            matches!(blobs.get(d, None).await, Err(BlobError::NotFound(_))),
            "{kind}: get after delete"
        );
        assert!(
            matches!(blobs.verify(d).await, Err(BlobError::NotFound(_))),
            "{kind}: verify after delete"
        );
        assert!(!blobs.delete(d).await.unwrap(), "{kind}: second delete");
    }
    let listed = blobs.list().await.unwrap();
    for (d, _, _) in &stored {
        assert!(
            !listed.iter().any(|(l, _)| l == d),
            "{kind}: {d} listed after delete"
        );
    }
}

async fn ranges(blobs: &Blobs, kind: &str, d: &Digest, n: u64, data: &[u8]) {
    let c = CHUNK as u64;
    for r in [
        0..1,
        n - 1..n,
        1000..2000,
        c - 10..c + 10,
        c - 1..2 * c + 1,
        c..2 * c,
        2 * c..n,
        0..n,
    ] {
        let (total, s) = blobs.get(d, Some(r.clone())).await.unwrap();
        assert_eq!(total, n, "{kind}: total size with range {r:?}");
        let got = drain(s).await.unwrap();
        assert!(
            got == data[r.start as usize..r.end as usize],
            "{kind}: range {r:?}"
        );
    }
    #[allow(clippy::reversed_empty_ranges)]
    for r in [0..0, 5..5, 10..5, n..n + 1, n - 1..n + 1, 0..u64::MAX] {
        assert!(
            matches!(
                blobs.get(d, Some(r.clone())).await,
                Err(BlobError::InvalidRange { .. })
            ),
            "{kind}: range {r:?} of {n} bytes accepted"
        );
    }
    let missing = Digest::of(&random(16));
    assert!(
        matches!(
            blobs.get(&missing, Some(0..1)).await,
            Err(BlobError::NotFound(_))
        ),
        "{kind}: range of a missing blob"
    );
    assert_eq!(
        blobs.stat(&missing).await.unwrap(),
        None,
        "{kind}: stat of a missing blob"
    );
}

/// Interrupted uploads and declared digests or sizes that do not match keep nothing.
async fn failed_puts(b: &Arc<dyn BlobStore>, blobs: &Blobs, kind: &str) {
    let data = random(3 * CHUNK);
    let d = Digest::of(&data);
    let n = data.len() as u64;
    let before = b.list().await.unwrap();
    let nothing_kept = |what: &str| format!("{kind}: {what} kept something");

    for expect in [
        Expect::default(),
        Expect {
            digest: Some(d),
            size: Some(n),
        },
    ] {
        let r = blobs.put(failing(&data[..100_000]), expect).await;
        assert!(
            matches!(r, Err(BlobError::Body(_))),
            "{kind}: failing body gave {r:?}"
        );
    }
    assert_eq!(
        b.list().await.unwrap(),
        before,
        "{}",
        nothing_kept("a failed body")
    );

    let other = Digest::of(b"not this");
    let wrong = Expect {
        digest: Some(other),
        size: None,
    };
    match blobs.put(body(&data), wrong).await {
        Err(BlobError::DigestMismatch { expected, actual }) => {
            assert_eq!(
                (expected, actual),
                (other, d),
                "{kind}: digest mismatch fields"
            )
        }
        r => panic!("{kind}: a wrong declared digest gave {r:?}"),
    }
    let too_small = Expect {
        digest: None,
        size: Some(n - 1),
    };
    let r = blobs.put(then_untouchable(&data), too_small).await;
    assert!(
        matches!(r, Err(BlobError::SizeMismatch { expected, .. }) if expected == n - 1),
        "{kind}: an oversized body gave {r:?}"
    );
    let too_large = Expect {
        digest: Some(d),
        size: Some(n + 1),
    };
    let r = blobs.put(body(&data), too_large).await;
    assert!(
        matches!(r, Err(BlobError::SizeMismatch { expected, actual }) if expected == n + 1 && actual == n),
        "{kind}: a short body gave {r:?}"
    );
    assert_eq!(
        b.list().await.unwrap(),
        before,
        "{}",
        nothing_kept("a mismatch")
    );
    assert_eq!(
        blobs.stat(&d).await.unwrap(),
        None,
        "{}",
        nothing_kept("a mismatch")
    );
}

/// Eight uploads of one blob at once: all succeed, one object holds it.
async fn concurrent_puts(b: &Arc<dyn BlobStore>, blobs: &Arc<Blobs>, kind: &str) {
    let data = Arc::new(random(2 * CHUNK + 5));
    let d = Digest::of(&data);
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (blobs, data) = (blobs.clone(), data.clone());
            let expect = match i % 2 {
                0 => Expect::default(),
                _ => Expect {
                    digest: Some(d),
                    size: Some(data.len() as u64),
                },
            };
            tokio::spawn(async move { blobs.put(body(&data), expect).await })
        })
        .collect();
    for t in tasks {
        let put = t
            .await
            .unwrap()
            .unwrap_or_else(|e| panic!("{kind}: concurrent put: {e}"));
        assert_eq!(put.digest, d, "{kind}: concurrent put digest");
    }
    let hex = d.hex();
    let copies = b.list().await.unwrap();
    let copies = copies.iter().filter(|(k, _)| k.contains(&hex)).count();
    assert_eq!(copies, 1, "{kind}: concurrent puts left {copies} objects");
    assert!(
        fetch(blobs, &d, None).await.unwrap() == *data,
        "{kind}: concurrent get"
    );
    assert!(blobs.delete(&d).await.unwrap());
}

/// Stored bytes changed behind the store's back are never served as the blob.
async fn corruption(b: &Arc<dyn BlobStore>, blobs: &Blobs, kind: &str, sealed: bool) {
    let data = random(3 * CHUNK + 100);
    let d = Digest::of(&data);
    let key = if sealed {
        sealed_key(&d)
    } else {
        plain_key(&d)
    };
    let c = CHUNK as u64;
    let replace = |bytes: Vec<u8>| {
        let key = key.clone();
        async move {
            b.delete(&key).await.unwrap();
            put_raw(b, &key, &bytes).await;
        }
    };
    let expect_corrupt = |what: String| async move {
        assert!(
            fetch(blobs, &d, None).await.is_err(),
            "{kind}: {what}: full read succeeded"
        );
        assert!(
            blobs.verify(&d).await.is_err(),
            "{kind}: {what}: verify succeeded"
        );
    };
    blobs.put(body(&data), Expect::default()).await.unwrap();
    let original = read_raw(b, &key, None).await;

    // One flipped byte, in the second chunk of plaintext or of ciphertext.
    let at = if sealed {
        seal::HEADER_LEN + CHUNK + 100
    } else {
        CHUNK + 100
    };
    let mut flipped = original.clone();
    flipped[at] ^= 0x01;
    replace(flipped).await;
    expect_corrupt("a flipped byte".into()).await;
    if sealed {
        assert!(
            fetch(blobs, &d, Some(c..c + 1)).await.is_err(),
            "{kind}: a range over a flipped chunk succeeded"
        );
        // Chunks are authenticated independently: untouched ones still read.
        let first = fetch(blobs, &d, Some(0..10)).await.unwrap();
        assert!(first == data[..10], "{kind}: an untouched chunk");
    }

    let mut truncated = original.clone();
    truncated.truncate(original.len() - 100);
    replace(truncated).await;
    expect_corrupt("truncation".into()).await;

    let mut extended = original.clone();
    extended.extend_from_slice(&random(10));
    replace(extended).await;
    expect_corrupt("extension".into()).await;

    // Another blob's object under this digest's key.
    let other = random(data.len());
    let other_put = blobs.put(body(&other), Expect::default()).await.unwrap();
    let other_key = if sealed {
        sealed_key(&other_put.digest)
    } else {
        plain_key(&other_put.digest)
    };
    replace(read_raw(b, &other_key, None).await).await;
    expect_corrupt("a swapped object".into()).await;
    if sealed {
        assert!(
            fetch(blobs, &d, Some(0..10)).await.is_err(),
            "{kind}: a range of a swapped object succeeded"
        );
    }

    assert!(blobs.delete(&d).await.unwrap());
    assert!(blobs.delete(&other_put.digest).await.unwrap());
}
