//! The S3 blob backend against a real SeaweedFS on loopback (see `ledger_e2e::seaweed`).
//!
//! Each test starts its own server: a shared one could not be stopped at the end of the
//! test binary (statics are never dropped), and would leak a process.

use bytes::Bytes;
use futures::TryStreamExt;
use ledger::blob::s3::{S3Store, PART_SIZE};
use ledger::blob::{BlobStore, ObjectWriter};
use ledger_e2e::seaweed::SeaweedFs;
use object_store::ObjectStore;
use std::ops::Range;
use std::time::{Duration, Instant};

/// Deterministic bytes that differ at every offset within a part, so a range read from the
/// wrong place, or parts stitched in the wrong order, cannot compare equal.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes `data` in chunks of `chunk` bytes (not a divisor of the part size, so parts are
/// cut across chunks) and returns the uncommitted writer.
async fn write(
    store: &dyn BlobStore,
    hint: Option<&str>,
    data: &[u8],
    chunk: usize,
) -> Box<dyn ObjectWriter> {
    let mut w = store.begin(hint).await.unwrap();
    for c in data.chunks(chunk) {
        w.write(Bytes::copy_from_slice(c)).await.unwrap();
    }
    w
}

async fn put(store: &dyn BlobStore, hint: Option<&str>, key: &str, data: &[u8]) {
    write(store, hint, data, 1_000_003)
        .await
        .commit(key)
        .await
        .unwrap();
}

async fn read(store: &dyn BlobStore, key: &str, range: Option<Range<u64>>) -> Option<Vec<u8>> {
    let stream = store.read(key, range).await.unwrap()?;
    let chunks: Vec<Bytes> = stream.try_collect().await.unwrap();
    Some(chunks.concat())
}

/// Waits (bounded) until SeaweedFS holds no unfinished multipart upload: aborts of dropped
/// writers are sent in the background, so they land shortly after the drop.
async fn assert_no_pending_uploads(sw: &SeaweedFs) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let pending = sw.pending_multipart_uploads();
        if pending.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "multipart uploads never aborted: {pending:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Nothing left in the staging area, as SeaweedFS's filer sees it (the backend's own
/// `list` hides staging, so it cannot tell).
fn assert_no_staging(sw: &SeaweedFs, prefix: &str) {
    let dir = match prefix {
        "" => format!("/buckets/{}/staging/", sw.bucket),
        p => format!("/buckets/{}/{p}/staging/", sw.bucket),
    };
    let staged = sw.filer_list(&dir);
    assert!(staged.is_empty(), "staging objects left behind: {staged:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_objects_round_trip_with_ranges() {
    let sw = SeaweedFs::start();
    let store = S3Store::new(sw.config("mp")).unwrap();
    // 12 MiB and a bit: one full part and a partial last one, whatever PART_SIZE is.
    let len = 12 * 1024 * 1024 + 12_345;
    assert!(len > PART_SIZE && len % PART_SIZE != 0);
    let data = pattern(len, 1);

    // With a hint the upload goes straight to the key; without, through staging and a copy.
    let mut w = write(&store, Some("sha256/direct"), &data, 1_000_003).await;
    assert_eq!(
        store.size("sha256/direct").await.unwrap(),
        None,
        "visible before commit"
    );
    assert_eq!(store.list().await.unwrap(), vec![], "listed before commit");
    w.write(Bytes::new()).await.unwrap();
    w.commit("sha256/direct").await.unwrap();
    put(&store, None, "sha256/staged", &data).await;

    for key in ["sha256/direct", "sha256/staged"] {
        assert_eq!(store.size(key).await.unwrap(), Some(len as u64), "{key}");
        let got = read(&store, key, None).await.unwrap();
        assert!(got == data, "{key}: full read differs");
        let p = PART_SIZE as u64;
        let n = len as u64;
        for r in [
            0..1,
            0..n,
            p - 10..p + 10,
            p..p + 1,
            n - 1..n,
            5..5,
            n..n,
            1_000..4_000_000,
        ] {
            let got = read(&store, key, Some(r.clone())).await.unwrap();
            assert!(
                got == data[r.start as usize..r.end as usize],
                "{key}: range {r:?} differs ({} bytes)",
                got.len()
            );
        }
    }
    assert_eq!(
        store.list().await.unwrap(),
        vec![
            ("sha256/direct".to_string(), len as u64),
            ("sha256/staged".to_string(), len as u64)
        ]
    );
    assert_no_pending_uploads(&sw).await;
    assert_no_staging(&sw, "mp");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_or_aborted_writers_leave_nothing() {
    let sw = SeaweedFs::start();
    let store = S3Store::new(sw.config("drop")).unwrap();
    let big = pattern(PART_SIZE + PART_SIZE / 2, 2);

    // Each of these has sent at least one part, so a multipart upload exists on the server.
    let hinted = write(&store, Some("k/hinted"), &big, 700_001).await;
    let staged = write(&store, None, &big, 700_001).await;
    let aborted = write(&store, Some("k/aborted"), &big, 700_001).await;
    // And these never left memory.
    let small = write(&store, Some("k/small"), b"small", 3).await;
    let small_staged = write(&store, None, b"small", 3).await;
    assert!(
        sw.pending_multipart_uploads().len() >= 3,
        "the large writers should have started multipart uploads: {:?}",
        sw.pending_multipart_uploads()
    );

    // SeaweedFS keeps pending uploads under the bucket's `.uploads` directory: not objects,
    // even to a store at the bucket's root.
    let root = S3Store::new(sw.config("")).unwrap();
    assert_eq!(root.list().await.unwrap(), vec![], "pending uploads listed");

    drop(hinted);
    drop(staged);
    aborted.abort().await;
    drop(small);
    drop(small_staged);

    assert_no_pending_uploads(&sw).await;
    for key in ["k/hinted", "k/aborted", "k/small"] {
        assert_eq!(store.size(key).await.unwrap(), None, "{key}");
        assert!(store.read(key, None).await.unwrap().is_none(), "{key}");
    }
    assert_eq!(store.list().await.unwrap(), vec![]);
    assert_no_staging(&sw, "drop");
    // Nothing at all under the prefix, in SeaweedFS's own view either.
    let entries = sw.filer_list(&format!("/buckets/{}/drop/", sw.bucket));
    assert!(entries.is_empty(), "{entries:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_onto_an_existing_key_keeps_it() {
    let sw = SeaweedFs::start();
    // Once with a HEAD before each write, once with SeaweedFS doing copy-if-not-exists
    // itself (UploadPartCopy completed with If-None-Match).
    for (prefix, copy_mode) in [("head", None), ("cine", Some("multipart"))] {
        let mut cfg = sw.config(prefix);
        cfg.copy_if_not_exists = copy_mode.map(str::to_string);
        let store = S3Store::new(cfg).unwrap();
        let first = pattern(1_000, 3);
        put(&store, Some("k"), "k", &first).await;
        let big_first = pattern(PART_SIZE + 5, 4);
        put(&store, None, "big", &big_first).await;

        // Different bytes under the same key stand in for a second upload of the same
        // content, so that an overwrite would show.
        let small_other = pattern(1_000, 5);
        let big_other = pattern(PART_SIZE + 5, 6);
        for (hint, data) in [
            (Some("k"), &small_other),
            (None, &small_other),
            (Some("k"), &big_other),
            (None, &big_other),
        ] {
            put(&store, hint, "k", data).await;
            let got = read(&store, "k", None).await.unwrap();
            assert!(
                got == first,
                "{prefix}: commit (hint {hint:?}, {} bytes) replaced the existing object",
                data.len()
            );
        }
        // The large existing object too (it was itself committed through staging).
        put(&store, None, "big", &big_other).await;
        assert!(
            read(&store, "big", None).await.unwrap() == big_first,
            "{prefix}: big replaced"
        );
        assert_eq!(
            store.list().await.unwrap(),
            vec![
                ("big".to_string(), big_first.len() as u64),
                ("k".to_string(), 1_000)
            ],
            "{prefix}"
        );
        assert_no_pending_uploads(&sw).await;
        assert_no_staging(&sw, prefix);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_objects_listing_deletion_and_prefixes() {
    let sw = SeaweedFs::start();
    let a = S3Store::new(sw.config("tenant-a/blobs")).unwrap();
    let b = S3Store::new(sw.config("/tenant-b/")).unwrap();

    put(&a, Some("sha256/empty"), "sha256/empty", b"").await;
    put(&a, None, "sha256/empty-staged", b"").await;
    put(&a, None, "sha256/b", b"bee").await;
    put(&a, Some("sha256/a"), "sha256/a", b"ay").await;
    put(&b, None, "sha256/a", b"other tenant").await;
    for key in ["sha256/empty", "sha256/empty-staged"] {
        assert_eq!(a.size(key).await.unwrap(), Some(0));
        assert_eq!(read(&a, key, None).await.unwrap(), b"");
        assert_eq!(read(&a, key, Some(0..0)).await.unwrap(), b"");
    }
    assert_eq!(read(&a, "sha256/b", Some(1..3)).await.unwrap(), b"ee");
    assert_eq!(read(&a, "sha256/missing", None).await, None);
    assert_eq!(read(&a, "sha256/missing", Some(0..0)).await, None);
    assert_eq!(a.size("sha256/missing").await.unwrap(), None);

    // Key order, sizes, and only this prefix's objects.
    let listed = |v: &[(&str, u64)]| {
        v.iter()
            .map(|(k, s)| (k.to_string(), *s))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        a.list().await.unwrap(),
        listed(&[
            ("sha256/a", 2),
            ("sha256/b", 3),
            ("sha256/empty", 0),
            ("sha256/empty-staged", 0)
        ])
    );
    assert_eq!(b.list().await.unwrap(), listed(&[("sha256/a", 12)]));

    // Neither an upload in progress nor a staging object (as a commit interrupted
    // between its copy and its clean-up leaves) is an object.
    let mut w = a.begin(None).await.unwrap();
    w.write(Bytes::from(pattern(PART_SIZE, 7))).await.unwrap();
    sw.raw_store()
        .put(
            &"tenant-a/blobs/staging/leftover".into(),
            b"left"[..].into(),
        )
        .await
        .unwrap();
    assert_eq!(a.list().await.unwrap().len(), 4, "staging listed");
    w.abort().await;
    assert!(
        a.begin(Some("staging/x")).await.is_err(),
        "reserved key accepted"
    );
    assert!(a.size("staging/x").await.is_err(), "reserved key accepted");

    assert!(a.delete("sha256/a").await.unwrap());
    assert!(
        !a.delete("sha256/a").await.unwrap(),
        "second delete found it"
    );
    assert!(!a.delete("sha256/never").await.unwrap());
    assert_eq!(a.size("sha256/a").await.unwrap(), None);
    assert_eq!(read(&b, "sha256/a", None).await.unwrap(), b"other tenant");

    // A hint is a promise about the key: committing elsewhere fails and publishes nothing.
    let w = write(&a, Some("sha256/promised"), b"data", 4).await;
    assert!(w.commit("sha256/elsewhere").await.is_err());
    assert_eq!(a.size("sha256/promised").await.unwrap(), None);
    assert_eq!(a.size("sha256/elsewhere").await.unwrap(), None);
    assert_no_pending_uploads(&sw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_signed_and_checked() {
    let sw = SeaweedFs::start();
    let good = S3Store::new(sw.config("")).unwrap();
    put(&good, Some("x"), "x", b"x").await;
    assert_eq!(good.size("x").await.unwrap(), Some(1));

    // A wrong secret must be an error, not "no such object": the harness's identities
    // are in force, as in a real deployment.
    let mut cfg = sw.config("");
    cfg.secret_access_key = "wrong".into();
    let bad = S3Store::new(cfg).unwrap();
    assert!(bad.size("x").await.is_err());
    assert!(bad.list().await.is_err());
    assert!(bad.read("x", None).await.is_err());
}

#[test]
fn config_deserialises_with_defaults_and_hides_the_secret() {
    let cfg: ledger::blob::s3::S3Config = serde_json::from_value(serde_json::json!({
        "endpoint": "http://127.0.0.1:8333",
        "bucket": "b",
        "access_key_id": "id",
        "secret_access_key": "hunter2",
        "allow_http": true,
    }))
    .unwrap();
    assert_eq!(cfg.region, "us-east-1");
    assert_eq!(cfg.prefix, "");
    assert!(!format!("{cfg:?}").contains("hunter2"));
    assert!(S3Store::new(cfg).is_ok());
    let unknown = serde_json::from_value::<ledger::blob::s3::S3Config>(serde_json::json!({
        "bucket": "b", "access_key_id": "id", "secret_access_key": "s", "buckte": "typo",
    }));
    assert!(unknown.is_err(), "a misspelt field was ignored");
}

/// The suite every backend must pass, against SeaweedFS: once under a key prefix with
/// HEAD-before-write, once at the bucket's root with server-side copy-if-not-exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance() {
    let sw = SeaweedFs::start();
    for (prefix, copy_mode) in [("ledger/blobs", None), ("", Some("multipart"))] {
        let mut cfg = sw.config(prefix);
        cfg.copy_if_not_exists = copy_mode.map(str::to_string);
        ledger::blob::conformance::run(std::sync::Arc::new(S3Store::new(cfg).unwrap())).await;
        assert_no_pending_uploads(&sw).await;
        assert_no_staging(&sw, prefix);
    }
}
