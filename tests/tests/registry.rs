//! The artifact registry through the real `ledger` binary: blob uploads in the OCI
//! distribution shape (chunked, resumable, monolithic), downloads with ranges, typed events
//! with receipts, the catalog's answers, and `ledger reindex` rebuilding the same catalog.

use base64::prelude::*;
use ledger_client::digest::Digest;
use ledger_client::event::Event;
use ledger_e2e::{agent, binary, get, post, request, Ledger, Resp};
use serde_json::{json, Value};
use std::io::{Read, Write};

fn call(a: &ureq::Agent, method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    request(a, method, url, headers, body).unwrap_or_else(|e| panic!("{method} {url}: {e}"))
}

fn start(args: &[&str]) -> (tempfile::TempDir, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::start(dir.path(), args);
    (dir, l)
}

fn random(n: usize) -> Vec<u8> {
    use rand::RngCore;
    let mut v = vec![0u8; n];
    rand::thread_rng().fill_bytes(&mut v);
    v
}

fn oci_error(r: &Resp, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.json()["errors"][0]["code"], code, "{}", r.text());
}

fn upload(a: &ureq::Agent, l: &Ledger, bytes: &[u8]) -> Digest {
    let d = Digest::of(bytes);
    let r = call(
        a,
        "POST",
        &l.url(&format!("/v2/models/x/blobs/uploads/?digest={d}")),
        &[("content-type", "application/octet-stream")],
        bytes,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    d
}

fn write(a: &ureq::Agent, l: &Ledger, what: &str, body: Value) -> Resp {
    post(
        a,
        &l.url(&format!("/registry/v1/{what}")),
        "application/json",
        body.to_string().as_bytes(),
    )
    .unwrap()
}

/// Checks a write's receipt offline: signed checkpoint, inclusion of the entry's leaf, and
/// that the entry is the event the answer describes.
fn verified(l: &Ledger, r: &Resp) -> (u64, Event) {
    assert!(
        r.status == 201 || r.status == 200,
        "{} {}",
        r.status,
        r.text()
    );
    ledger_e2e::verified_receipt(l, r)
}

#[test]
fn a_chunked_upload_follows_the_distribution_spec_and_checks_the_digest() {
    let (_d, l) = start(&[]);
    let a = agent();
    let blob = random(300_000);
    let d = Digest::of(&blob);
    let r = call(
        &a,
        "POST",
        &l.url("/v2/models/llama/blobs/uploads/"),
        &[],
        b"",
    );
    assert_eq!(r.status, 202);
    let loc = l.url(r.header("location").unwrap());
    assert_eq!(r.header("upload-offset"), Some("0"));

    let r = call(
        &a,
        "PATCH",
        &loc,
        &[
            ("content-range", "0-99999"),
            ("content-type", "application/octet-stream"),
        ],
        &blob[..100_000],
    );
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.header("range"), Some("0-99999"));
    assert_eq!(r.header("upload-offset"), Some("100000"));
    // A chunk that does not start at the offset is refused with where to resume.
    let r = call(
        &a,
        "PATCH",
        &loc,
        &[("content-range", "200000-299999")],
        &blob[200_000..],
    );
    oci_error(&r, 416, "BLOB_UPLOAD_INVALID");
    assert_eq!(r.header("upload-offset"), Some("100000"));
    // A range that disagrees with the body length is refused.
    let r = call(
        &a,
        "PATCH",
        &loc,
        &[("content-range", "100000-100009")],
        &blob[100_000..100_005],
    );
    oci_error(&r, 400, "SIZE_INVALID");
    let r = call(&a, "GET", &loc, &[], b"");
    assert_eq!((r.status, r.header("upload-offset")), (204, Some("100000")));
    // A chunk without Content-Range appends; the last chunk may come with the PUT.
    let r = call(&a, "PATCH", &loc, &[], &blob[100_000..200_000]);
    assert_eq!(r.header("upload-offset"), Some("200000"));
    // A wrong digest ends the session and keeps nothing.
    let wrong = Digest::of(b"other");
    let r = call(
        &a,
        "PUT",
        &format!("{loc}?digest={wrong}"),
        &[],
        &blob[200_000..],
    );
    oci_error(&r, 400, "DIGEST_INVALID");
    assert_eq!(call(&a, "GET", &loc, &[], b"").status, 404);
    assert_eq!(
        call(
            &a,
            "HEAD",
            &l.url(&format!("/v2/models/llama/blobs/{wrong}")),
            &[],
            b""
        )
        .status,
        404
    );
    assert_eq!(
        call(
            &a,
            "HEAD",
            &l.url(&format!("/v2/models/llama/blobs/{d}")),
            &[],
            b""
        )
        .status,
        404
    );

    // Again, completed properly.
    let loc = l.url(
        call(
            &a,
            "POST",
            &l.url("/v2/models/llama/blobs/uploads/"),
            &[],
            b"",
        )
        .header("location")
        .unwrap(),
    );
    call(&a, "PATCH", &loc, &[], &blob[..150_000]);
    let r = call(
        &a,
        "PUT",
        &format!("{loc}?digest={d}"),
        &[],
        &blob[150_000..],
    );
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        r.header("docker-content-digest"),
        Some(d.to_string().as_str())
    );
    assert_eq!(
        r.header("location"),
        Some(format!("/v2/models/llama/blobs/{d}").as_str())
    );

    // Downloads: whole, ranges, conditional; any name finds the blob.
    let url = l.url(&format!("/v2/datasets/other/blobs/{d}"));
    let r = call(&a, "GET", &url, &[], b"");
    assert_eq!((r.status, r.body == blob), (200, true));
    assert_eq!(r.header("etag"), Some(format!("\"{d}\"").as_str()));
    let r = call(&a, "HEAD", &url, &[], b"");
    assert_eq!(
        (r.status, r.header("content-length")),
        (200, Some("300000"))
    );
    let r = call(&a, "GET", &url, &[("range", "bytes=1000-1999")], b"");
    assert_eq!(r.status, 206);
    assert_eq!(r.body, &blob[1000..2000]);
    assert_eq!(r.header("content-range"), Some("bytes 1000-1999/300000"));
    let r = call(&a, "GET", &url, &[("range", "bytes=-10")], b"");
    assert_eq!(r.body, &blob[299_990..]);
    let r = call(&a, "GET", &url, &[("range", "bytes=300000-")], b"");
    assert_eq!(r.status, 416);
    assert_eq!(r.header("content-range"), Some("bytes */300000"));
    let r = call(
        &a,
        "GET",
        &url,
        &[("if-none-match", &format!("\"{d}\""))],
        b"",
    );
    assert_eq!((r.status, r.body.len()), (304, 0));
    // Bytes leave only through a logged tombstone.
    oci_error(&call(&a, "DELETE", &url, &[], b""), 405, "UNSUPPORTED");
}

#[test]
fn an_upload_resumes_where_it_stopped_after_the_server_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = Ledger::start(dir.path(), &[]);
    let a = agent();
    let blob = random(1 << 20);
    let loc = call(&a, "POST", &l.url("/v2/m/blobs/uploads/"), &[], b"")
        .header("location")
        .unwrap()
        .to_string();
    let r = call(
        &a,
        "PATCH",
        &l.url(&loc),
        &[("content-range", "0-399999")],
        &blob[..400_000],
    );
    assert_eq!(r.status, 202);
    l.kill9();
    let l = Ledger::start(dir.path(), &[]);
    let r = call(&a, "GET", &l.url(&loc), &[], b"");
    assert_eq!((r.status, r.header("upload-offset")), (204, Some("400000")));
    call(
        &a,
        "PATCH",
        &l.url(&loc),
        &[("content-range", &format!("400000-{}", blob.len() - 1))],
        &blob[400_000..],
    );
    let d = Digest::of(&blob);
    assert_eq!(
        call(&a, "PUT", &l.url(&format!("{loc}?digest={d}")), &[], b"").status,
        201
    );
    assert_eq!(
        call(&a, "GET", &l.url(&format!("/v2/m/blobs/{d}")), &[], b"").body,
        blob
    );
}

/// Speaks HTTP/1.1 by hand, to send headers that promise a body which never comes.
fn raw_request(l: &Ledger, head: &str) -> String {
    let addr = l.base.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn a_blob_already_stored_is_acknowledged_without_its_body() {
    let (_d, l) = start(&[]);
    let a = agent();
    let d = upload(&a, &l, b"weights");
    // The client announces 10 MB and sends none of it: the answer comes from the existence
    // check alone (with `Expect: 100-continue`, the client would never send the body).
    let answer = raw_request(
        &l,
        &format!("POST /v2/m/blobs/uploads/?digest={d} HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\ncontent-length: 10000000\r\nexpect: 100-continue\r\n\r\n"),
    );
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    // The same for a cross-repository mount.
    let r = call(
        &a,
        "POST",
        &l.url(&format!("/v2/other/blobs/uploads/?mount={d}&from=m")),
        &[],
        b"",
    );
    assert_eq!(r.status, 201);
}

#[test]
fn uploads_that_do_not_match_their_declaration_keep_nothing() {
    let (_d, l) = start(&["--max-blob-bytes", "100000"]);
    let a = agent();
    let blob = random(5000);
    let wrong = Digest::of(b"not these bytes");
    let r = call(
        &a,
        "POST",
        &l.url(&format!("/v2/m/blobs/uploads/?digest={wrong}")),
        &[],
        &blob,
    );
    oci_error(&r, 400, "DIGEST_INVALID");
    assert_eq!(
        call(
            &a,
            "HEAD",
            &l.url(&format!("/v2/m/blobs/{}", Digest::of(&blob))),
            &[],
            b""
        )
        .status,
        404
    );
    // Over the size limit: refused by the declared length, and by counting when chunked.
    let big = random(100_001);
    let r = call(
        &a,
        "POST",
        &l.url(&format!("/v2/m/blobs/uploads/?digest={}", Digest::of(&big))),
        &[],
        &big,
    );
    oci_error(&r, 413, "SIZE_INVALID");
    let loc = l.url(
        call(&a, "POST", &l.url("/v2/m/blobs/uploads/"), &[], b"")
            .header("location")
            .unwrap(),
    );
    assert_eq!(call(&a, "PATCH", &loc, &[], &big[..90_000]).status, 202);
    oci_error(
        &call(&a, "PATCH", &loc, &[], &big[90_000..]),
        413,
        "SIZE_INVALID",
    );
    // Hostile paths and parameters.
    for (m, p, status, code) in [
        ("POST", "/v2/UPPER/blobs/uploads/", 400, "NAME_INVALID"),
        ("POST", "/v2/a/../b/blobs/uploads/", 400, "NAME_INVALID"),
        ("GET", "/v2/m/blobs/sha256:xyz", 400, "DIGEST_INVALID"),
        (
            "GET",
            "/v2/m/blobs/uploads/../../etc",
            404,
            "BLOB_UPLOAD_UNKNOWN",
        ),
        (
            "GET",
            "/v2/m/blobs/uploads/0123456789abcdef0123456789abcdef",
            404,
            "BLOB_UPLOAD_UNKNOWN",
        ),
        (
            "PUT",
            "/v2/m/blobs/uploads/0123456789abcdef0123456789abcdef",
            400,
            "DIGEST_INVALID",
        ),
        (
            "POST",
            "/v2/m/blobs/uploads/?digest=md5:abc",
            400,
            "DIGEST_INVALID",
        ),
        ("GET", "/v2/m/manifests/latest", 404, "UNSUPPORTED"),
    ] {
        let r = call(&a, m, &l.url(p), &[], b"");
        assert_eq!(r.status, status, "{m} {p}: {}", r.text());
        assert_eq!(r.json()["errors"][0]["code"], code, "{m} {p}");
    }
    assert_eq!(get(&a, &l.url("/v2/")).unwrap().status, 200);
}

#[test]
fn a_version_binds_to_one_digest_forever_and_every_change_is_a_verified_receipt() {
    let (_d, l) = start(&[]);
    let a = agent();
    let data = upload(&a, &l, b"the training set");
    let model = upload(&a, &l, b"model weights v1");
    let other = upload(&a, &l, b"model weights, different");

    let (i0, _) = verified(
        &l,
        &write(
            &a,
            &l,
            "publish",
            json!({"name": "datasets/corpus", "version": "2026-01", "kind": "dataset", "digest": data, "actor": "carol", "meta": {"licence": "CC-BY-4.0"}}),
        ),
    );
    let r = write(
        &a,
        &l,
        "publish",
        json!({"name": "models/demo", "version": "1.0", "kind": "model", "digest": model, "size": 16, "actor": "alice"}),
    );
    assert_eq!(r.status, 201);
    let (i1, ev) = verified(&l, &r);
    assert_eq!(ev.type_name(), "published");
    // The same bytes again: the original receipt. Different bytes: 409, nothing logged.
    let r = write(
        &a,
        &l,
        "publish",
        json!({"name": "models/demo", "version": "1.0", "kind": "model", "digest": model, "actor": "alice"}),
    );
    assert_eq!(
        (r.status, r.json()["existing"].as_bool()),
        (200, Some(true))
    );
    assert_eq!(verified(&l, &r).0, i1);
    let size_before = get(&a, &l.url("/artifacts/checkpoint")).unwrap().text();
    let r = write(
        &a,
        &l,
        "publish",
        json!({"name": "models/demo", "version": "1.0", "kind": "model", "digest": other, "actor": "mallory"}),
    );
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "conflict");
    assert_eq!(
        get(&a, &l.url("/artifacts/checkpoint")).unwrap().text(),
        size_before
    );
    // A blob that was never uploaded, or a size that lies.
    let r = write(
        &a,
        &l,
        "publish",
        json!({"name": "models/demo", "version": "2.0", "kind": "model", "digest": Digest::of(b"nope"), "actor": "alice"}),
    );
    assert_eq!(r.status, 422);
    let r = write(
        &a,
        &l,
        "publish",
        json!({"name": "models/demo", "version": "2.0", "kind": "model", "digest": model, "size": 17, "actor": "alice"}),
    );
    assert_eq!(r.status, 422);

    // Lifecycle follows the state machine; each step names the previous entry.
    let r = write(
        &a,
        &l,
        "lifecycle",
        json!({"name": "models/demo", "version": "1.0", "to": "released", "actor": "bob"}),
    );
    assert_eq!(r.status, 409, "{}", r.text());
    let (i2, ev) = verified(
        &l,
        &write(
            &a,
            &l,
            "lifecycle",
            json!({"name": "models/demo", "version": "1.0", "to": "approved", "actor": "bob", "reason": "eval passed"}),
        ),
    );
    assert_eq!(ev.prev().unwrap().index, i1);
    let (i3, _) = verified(
        &l,
        &write(
            &a,
            &l,
            "lineage",
            json!({"name": "models/demo", "version": "1.0", "actor": "ci", "links": [
        {"rel": "trained_from", "artifact": {"name": "datasets/corpus", "version": "2026-01", "digest": data}},
        {"rel": "code_commit", "uri": "https://git.example/repo/commit/0123abcd"}]}),
        ),
    );
    let r = write(
        &a,
        &l,
        "lineage",
        json!({"name": "models/demo", "version": "1.0", "actor": "ci", "links": [
        {"rel": "base_model", "artifact": {"name": "datasets/corpus", "version": "2026-01", "digest": model}}]}),
    );
    assert_eq!(
        r.status,
        422,
        "a link whose digest is not the target's: {}",
        r.text()
    );
    let (i4, _) = verified(
        &l,
        &write(
            &a,
            &l,
            "alias",
            json!({"name": "models/demo", "alias": "production", "version": "1.0", "actor": "bob"}),
        ),
    );
    let (_i5, _) = verified(
        &l,
        &write(
            &a,
            &l,
            "metadata",
            json!({"name": "models/demo", "version": "1.0", "meta": {"accuracy": "0.91"}, "actor": "ci"}),
        ),
    );

    // The catalog's answers.
    let v = get(
        &a,
        &l.url("/registry/v1/version?name=models/demo&version=1.0"),
    )
    .unwrap()
    .json();
    assert_eq!(v["version"]["stage"], "approved");
    assert_eq!(v["version"]["digest"], model.to_string());
    assert_eq!(v["version"]["meta"]["accuracy"], "0.91");
    assert_eq!(v["aliases"], json!(["production"]));
    // As of an earlier tree: before the approval, the version was a draft with no alias.
    let v = get(
        &a,
        &l.url(&format!(
            "/registry/v1/version?name=models/demo&version=1.0&as_of={i2}"
        )),
    )
    .unwrap()
    .json();
    assert_eq!(
        (
            v["version"]["stage"].as_str(),
            v["aliases"].as_array().unwrap().len()
        ),
        (Some("draft"), 0)
    );
    assert_eq!(
        get(
            &a,
            &l.url(&format!(
                "/registry/v1/version?name=models/demo&version=1.0&as_of={i1}"
            ))
        )
        .unwrap()
        .status,
        404
    );
    let h = get(
        &a,
        &l.url("/registry/v1/history?name=models/demo&version=1.0"),
    )
    .unwrap()
    .json();
    let idx: Vec<u64> = h["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    assert_eq!(&idx[..3], &[i1, i2, i3]);
    let found = get(&a, &l.url(&format!("/registry/v1/digest/{model}")))
        .unwrap()
        .json();
    assert_eq!(
        found["versions"],
        json!([{"name": "models/demo", "version": "1.0"}])
    );
    let g = get(
        &a,
        &l.url("/registry/v1/graph?name=datasets/corpus&version=2026-01"),
    )
    .unwrap()
    .json();
    assert!(g["edges"].as_array().unwrap().contains(&json!({"from": "models/demo@1.0", "to": "datasets/corpus@2026-01", "rel": "trained_from"})), "{g}");
    let g = get(
        &a,
        &l.url("/registry/v1/graph?name=models/demo&version=1.0"),
    )
    .unwrap()
    .json();
    assert_eq!(g["nodes"].as_array().unwrap().len(), 2, "{g}");
    let al = get(
        &a,
        &l.url("/registry/v1/history?name=models/demo&alias=production"),
    )
    .unwrap()
    .json();
    assert_eq!(al["entries"][0]["index"].as_u64(), Some(i4));
    let _ = i0;

    // A tombstone purges the bytes and ends the chain; the log keeps digest and reason.
    let (_, ev) = verified(
        &l,
        &write(
            &a,
            &l,
            "tombstone",
            json!({"name": "models/demo", "version": "1.0", "reason": "licence withdrawn", "actor": "legal"}),
        ),
    );
    assert_eq!(ev.type_name(), "tombstone");
    assert_eq!(
        call(
            &a,
            "HEAD",
            &l.url(&format!("/v2/m/blobs/{model}")),
            &[],
            b""
        )
        .status,
        404
    );
    let r = write(
        &a,
        &l,
        "lifecycle",
        json!({"name": "models/demo", "version": "1.0", "to": "released", "actor": "bob"}),
    );
    assert_eq!(r.status, 409);
    let v = get(
        &a,
        &l.url("/registry/v1/version?name=models/demo&version=1.0"),
    )
    .unwrap()
    .json();
    assert_eq!(v["version"]["tombstone"]["reason"], "licence withdrawn");
}

#[test]
fn bad_registry_requests_get_clear_errors() {
    let (_d, l) = start(&[]);
    let a = agent();
    let d = upload(&a, &l, b"x");
    let ok = json!({"name": "m", "version": "1", "kind": "model", "digest": d, "actor": "a"});
    let url = l.url("/registry/v1/publish");
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("application/json", b"{".to_vec(), 400),
        ("application/json", b"[]".to_vec(), 400),
        ("text/plain", ok.to_string().into_bytes(), 415),
        ("application/json", json!({"name": "m", "version": "1", "kind": "model", "digest": d, "actor": "a", "extra": 1}).to_string().into_bytes(), 400),
        ("application/json", json!({"name": "m", "version": "1", "kind": "weights", "digest": d, "actor": "a"}).to_string().into_bytes(), 400),
        ("application/json", json!({"name": "m", "version": "1", "kind": "model", "digest": "sha256:00", "actor": "a"}).to_string().into_bytes(), 400),
        ("application/json", json!({"name": "../etc", "version": "1", "kind": "model", "digest": d, "actor": "a"}).to_string().into_bytes(), 422),
        ("application/json", json!({"name": "m", "version": "", "kind": "model", "digest": d, "actor": "a"}).to_string().into_bytes(), 422),
        ("application/json", json!({"name": "m", "version": "1", "kind": "model", "digest": d, "actor": "a\u{0}b"}).to_string().into_bytes(), 422),
        ("application/json", vec![b' '; 300_000], 413),
    ];
    for (ct, body, status) in cases {
        let r = post(&a, &url, ct, &body).unwrap();
        assert_eq!(r.status, status, "{}", r.text());
        assert!(r.json()["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    for (p, status) in [
        ("/registry/v1/version?name=m", 400),
        ("/registry/v1/version?name=m&version=9", 404),
        ("/registry/v1/versions?name=m&as_of=999", 422),
        ("/registry/v1/history?name=m&version=1&alias=x", 400),
        ("/registry/v1/entry/abc", 400),
        ("/registry/v1/entry/99", 404),
        ("/registry/v1/digest/nope", 400),
    ] {
        assert_eq!(get(&a, &l.url(p)).unwrap().status, status, "{p}");
    }
    assert_eq!(write(&a, &l, "publish", ok).status, 201);
}

fn status(a: &ureq::Agent, l: &Ledger) -> (u64, u64) {
    let s = get(a, &l.url("/registry/v1/status")).unwrap().json();
    (
        s["tree_size"].as_u64().unwrap(),
        s["catalog_applied"].as_u64().unwrap(),
    )
}

#[test]
fn reindex_rebuilds_a_catalog_identical_to_the_live_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut l = Ledger::start(dir.path(), &[]);
    let a = agent();
    for i in 0..20 {
        let d = upload(&a, &l, format!("blob {i}").as_bytes());
        let name = format!("models/m{}", i % 3);
        assert_eq!(write(&a, &l, "publish", json!({"name": name, "version": format!("{i}"), "kind": "model", "digest": d, "actor": "ci"})).status, 201);
        if i % 2 == 0 {
            write(
                &a,
                &l,
                "lifecycle",
                json!({"name": name, "version": format!("{i}"), "to": "approved", "actor": "qa"}),
            );
        }
        if i % 5 == 0 {
            write(
                &a,
                &l,
                "alias",
                json!({"name": name, "alias": "production", "version": format!("{i}"), "actor": "ops"}),
            );
        }
        // Opaque entries and a forged event with a stale prev share the log.
        post(
            &a,
            &l.url("/artifacts/add"),
            "application/octet-stream",
            format!("opaque {i}").as_bytes(),
        )
        .unwrap();
    }
    let v = get(&a, &l.url("/registry/v1/version?name=models/m0&version=0"))
        .unwrap()
        .json();
    let stale = Event::Lifecycle(ledger_client::event::Lifecycle {
        name: "models/m0".into(),
        version: "0".into(),
        from: ledger_client::event::Stage::Draft,
        to: ledger_client::event::Stage::Approved,
        reason: None,
        prev: serde_json::from_value(json!({"i": v["version"]["published"]["index"], "h": BASE64_STANDARD.encode([0u8; 32])})).unwrap(),
        actor: "mallory".into(),
        time: 1,
    });
    let r = post(
        &a,
        &l.url("/artifacts/add"),
        "application/octet-stream",
        &stale.encode(),
    )
    .unwrap();
    let forged = r.json()["index"].as_u64().unwrap();
    for _ in 0..100 {
        let (size, applied) = status(&a, &l);
        if size == applied {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let e = get(&a, &l.url(&format!("/registry/v1/entry/{forged}")))
        .unwrap()
        .json();
    assert!(
        e["rejected"].as_str().is_some_and(|r| r.contains("prev")),
        "{e}"
    );
    // Stop gracefully (SIGINT), then rebuild from the log alone.
    unsafe { libc::kill(l.child.id() as i32, libc::SIGINT) };
    let _ = l.child.wait();
    let out = std::process::Command::new(binary("ledger"))
        .args(["reindex", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("identical"), "{stdout}");
    assert!(
        stdout.contains("1 rejected") && stdout.contains("20 other"),
        "{stdout}"
    );
    // The rebuilt catalog serves the same answers.
    let l2 = Ledger::start(dir.path(), &[]);
    let v2 = get(&a, &l2.url("/registry/v1/version?name=models/m0&version=0"))
        .unwrap()
        .json();
    assert_eq!(v, v2);
    drop(l);
}

#[test]
fn an_attestation_must_be_an_in_toto_statement_about_the_version() {
    let (_d, l) = start(&[]);
    let a = agent();
    let model = upload(&a, &l, b"model weights to attest");
    let other = upload(&a, &l, b"some other bytes");
    assert_eq!(
        write(
            &a,
            &l,
            "publish",
            json!({"name": "m", "version": "1", "kind": "model", "digest": model, "actor": "ci"})
        )
        .status,
        201
    );
    let statement = |d: &Digest, predicate: &str| {
        json!({"_type": "https://in-toto.io/Statement/v1",
               "subject": [{"name": "model.bin", "digest": {"sha256": d.hex()}}],
               "predicateType": predicate, "predicate": {"accuracy": 0.91}})
        .to_string()
    };
    let eval = "https://example.com/evaluation/v1";
    let attest = |s: &Digest, predicate: &str| {
        write(
            &a,
            &l,
            "attestation",
            json!({"name": "m", "version": "1", "statement": s, "predicate_type": predicate, "actor": "ci"}),
        )
    };

    let good = upload(&a, &l, statement(&model, eval).as_bytes());
    let (_, ev) = verified(&l, &attest(&good, eval));
    let Event::Attestation(at) = ev else {
        panic!("not an attestation")
    };
    assert_eq!(at.media_type, "application/vnd.in-toto+json");
    // The same statement in a DSSE envelope.
    let env = json!({"payloadType": "application/vnd.in-toto+json",
                     "payload": BASE64_STANDARD.encode(statement(&model, eval)),
                     "signatures": [{"keyid": "ci", "sig": BASE64_STANDARD.encode(b"sig")}]});
    let enveloped = upload(&a, &l, env.to_string().as_bytes());
    let (_, ev) = verified(&l, &attest(&enveloped, eval));
    let Event::Attestation(at) = ev else {
        panic!("not an attestation")
    };
    assert_eq!(at.media_type, "application/vnd.dsse.envelope.v1+json");

    // About other bytes, under another predicate type, not a statement, or not stored.
    let about_other = upload(&a, &l, statement(&other, eval).as_bytes());
    for (s, p) in [
        (about_other, eval),
        (good, "https://slsa.dev/provenance/v1"),
        (other, eval),
    ] {
        let r = attest(&s, p);
        assert_eq!(r.status, 422, "{}", r.text());
    }
    assert_eq!(attest(&Digest::of(b"never uploaded"), eval).status, 422);
    let v = get(&a, &l.url("/registry/v1/version?name=m&version=1"))
        .unwrap()
        .json();
    assert_eq!(v["version"]["attestations"].as_array().unwrap().len(), 2);
}
