//! The registry on an S3-compatible store: the real `ledger` binary with `--s3-config`
//! (and blobs sealed at rest) in front of a real SeaweedFS on loopback. What the conformance
//! suite proves of the backend alone, proved here through the server's whole path.

use futures::TryStreamExt;
use ledger_client::digest::Digest;
use ledger_e2e::seaweed::SeaweedFs;
use ledger_e2e::{agent, binary, get, post, request, Ledger};
use object_store::ObjectStore;
use serde_json::json;

fn objects(sw: &SeaweedFs) -> Vec<(String, u64)> {
    let store = sw.raw_store();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            store
                .list(None)
                .map_ok(|m| (m.location.to_string(), m.size))
                .try_collect::<Vec<_>>()
                .await
                .unwrap()
        })
}

#[test]
fn sealed_blobs_on_s3_go_through_upload_publish_download_and_tombstone() {
    let sw = SeaweedFs::start();
    let dir = tempfile::tempdir().unwrap();
    let s3 = dir.path().join("s3.json");
    std::fs::write(
        &s3,
        json!({"endpoint": sw.endpoint, "bucket": sw.bucket, "region": sw.region,
               "access_key_id": sw.access_key_id, "secret_access_key": sw.secret_access_key,
               "allow_http": true, "prefix": "registry"})
        .to_string(),
    )
    .unwrap();
    let key = dir.path().join("seal.key");
    let out = std::process::Command::new(binary("ledger"))
        .args(["seal-keygen", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let args = [
        "--s3-config",
        s3.to_str().unwrap(),
        "--seal-key",
        key.to_str().unwrap(),
    ];
    let l = Ledger::start(&dir.path().join("data"), &args);
    let a = agent();

    // 20 MiB in three chunks: more than one 8 MiB part, so a multipart upload.
    let blob: Vec<u8> = (0..20u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let d = Digest::of(&blob);
    let r = request(
        &a,
        "POST",
        &l.url("/v2/models/big/blobs/uploads/"),
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 202);
    let loc = l.url(r.header("location").unwrap());
    for (start, end) in [(0, 7 << 20), (7 << 20, 15 << 20)] {
        let range = format!("{start}-{}", end - 1);
        let r = request(
            &a,
            "PATCH",
            &loc,
            &[("content-range", &range)],
            &blob[start..end],
        )
        .unwrap();
        assert_eq!(r.status, 202, "{}", r.text());
    }
    let r = request(
        &a,
        "PUT",
        &format!("{loc}?digest={d}"),
        &[],
        &blob[15 << 20..],
    )
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());

    // Stored sealed, under the prefix, and the bucket never sees the plaintext's first bytes.
    let stored = objects(&sw);
    let sealed = format!("registry/sealed/sha256/{}", d.hex());
    let (_, size) = stored
        .iter()
        .find(|(k, _)| *k == sealed)
        .unwrap_or_else(|| panic!("{sealed} not in {stored:?}"));
    assert!(
        *size > blob.len() as u64,
        "sealed objects carry a header and tags"
    );
    let head = {
        let store = sw.raw_store();
        let path = object_store::path::Path::from(sealed.as_str());
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async { store.get_range(&path, 0..1 << 20).await.unwrap() })
    };
    assert!(
        !head.windows(32).any(|w| w == &blob[..32]),
        "the plaintext is not in the bucket"
    );
    assert!(
        !stored.iter().any(|(k, _)| k.contains("staging")),
        "{stored:?}"
    );

    let publish =
        json!({"name": "models/big", "version": "1", "kind": "model", "digest": d, "actor": "ci"});
    let r = post(
        &a,
        &l.url("/registry/v1/publish"),
        "application/json",
        publish.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());

    let url = l.url(&format!("/v2/models/big/blobs/{d}"));
    let r = get(&a, &url).unwrap();
    assert_eq!((r.status, r.body.len()), (200, blob.len()));
    assert!(r.body == blob, "the download is the upload");
    let r = request(&a, "GET", &url, &[("range", "bytes=8388600-8388700")], b"").unwrap();
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &blob[8_388_600..=8_388_700]);

    // A tombstone purges the bytes from the bucket; the log keeps the digest.
    let tomb =
        json!({"name": "models/big", "version": "1", "reason": "superseded", "actor": "ops"});
    let r = post(
        &a,
        &l.url("/registry/v1/tombstone"),
        "application/json",
        tomb.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(request(&a, "HEAD", &url, &[], b"").unwrap().status, 404);
    assert!(!objects(&sw).iter().any(|(k, _)| *k == sealed));
    let v = get(&a, &l.url("/registry/v1/version?name=models/big&version=1"))
        .unwrap()
        .json();
    assert_eq!(v["version"]["digest"], d.to_string());
    assert_eq!(v["version"]["tombstone"]["reason"], "superseded");
}
