//! RFC 3161 interoperability, end to end: tokens from OpenSSL's authority (`openssl ts
//! -reply`, RSA) verified by our verifier, tokens from our authority (the real `ledger tsa`
//! binary, ECDSA P-256) verified by `openssl ts -verify`, and the refusals both ways:
//! tampered tokens, wrong nonces, other messages, expired and non-time-stamping
//! certificates.

use ledger_client::timestamp::{
    token_from_response, verify_token, TimestampError, TimestampRequest, TsaRoots,
};
use ledger_e2e::openssl_tsa::{
    non_timestamping_authority, openssl, openssl_ts_verify, OpenSslTsa, OpenSslTsaOptions,
};
use ledger_e2e::{agent, binary, get, post, request};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const MSG: &[u8] = b"example.com/artifacts\n42\nq6gVhMA2dyUm4Kr9Wq7OPaSOCk4e6MTtRsAZjdUe4bk=\n";

/// The standalone `ledger tsa`, with a key and chain from `ledger tsa-keygen`.
struct LedgerTsa {
    child: Child,
    /// `http://127.0.0.1:PORT/tsa`
    url: String,
    dir: tempfile::TempDir,
}

impl LedgerTsa {
    fn start() -> LedgerTsa {
        let dir = tempfile::tempdir().unwrap();
        let keygen = Command::new(binary("ledger"))
            .args([
                "tsa-keygen",
                "--name",
                "Interop TSA",
                "--days",
                "30",
                "--dir",
            ])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            keygen.status.success(),
            "ledger tsa-keygen: {}",
            String::from_utf8_lossy(&keygen.stderr)
        );
        let mut child = Command::new(binary("ledger"))
            .args(["tsa", "--listen", "127.0.0.1:0", "--key"])
            .arg(dir.path().join("tsa.key"))
            .arg("--cert")
            .arg(dir.path().join("tsa.pem"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let base = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(url) = line.strip_prefix("tsa listening on ") {
                        break url.to_string();
                    }
                }
                _ => panic!("ledger tsa exited before listening: {:?}", child.wait()),
            }
        };
        std::thread::spawn(move || for _ in lines {});
        LedgerTsa {
            child,
            url: format!("{base}/tsa"),
            dir,
        }
    }

    fn root_pem_path(&self) -> PathBuf {
        self.dir.path().join("tsa-root.pem")
    }

    fn roots(&self) -> TsaRoots {
        TsaRoots::from_pem(&std::fs::read(self.root_pem_path()).unwrap()).unwrap()
    }
}

impl Drop for LedgerTsa {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// POSTs a query, expects 200 `application/timestamp-reply`, returns the response body.
fn ask(url: &str, query: &[u8]) -> Vec<u8> {
    let r = post(&agent(), url, "application/timestamp-query", query).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("application/timestamp-reply")
    );
    r.body
}

fn roots_of(path: &Path) -> TsaRoots {
    TsaRoots::from_pem(&std::fs::read(path).unwrap()).unwrap()
}

/// Writes `bytes` to `dir/name` and returns the name (for `openssl` run in `dir`).
fn put<'a>(dir: &Path, name: &'a str, bytes: &[u8]) -> &'a str {
    std::fs::write(dir.join(name), bytes).unwrap();
    name
}

#[test]
fn openssl_tokens_verify_with_our_verifier() {
    let tsa = OpenSslTsa::start();
    let req = TimestampRequest::new(MSG, 0x0123_4567_89ab_cdef);
    let token = token_from_response(&ask(&tsa.url, &req.der)).unwrap();
    let v = verify_token(&token, MSG, Some(req.nonce), &roots_of(&tsa.root_pem_path)).unwrap();
    assert_eq!(v.nonce, Some(req.nonce));
    assert_eq!(v.policy, "1.3.6.1.4.1.99999.3161");
    assert_eq!(v.imprint_algorithm, "sha256");
    assert_eq!(v.tsa_subject, "O=ledger interop tests,CN=OpenSSL Test TSA");
    assert_eq!(v.chain.len(), 2);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (v.gen_time - now).abs() < 60,
        "genTime {} vs now {now}",
        v.gen_time_rfc3339
    );

    // Signing-certificate-v2 and SHA-384/SHA-512 signer digests work too.
    for digest in ["sha384", "sha512"] {
        let tsa = OpenSslTsa::start_with(OpenSslTsaOptions {
            signer_digest: digest,
            ess_cert_id_alg: "sha256",
            ..OpenSslTsaOptions::default()
        });
        let req = TimestampRequest::new(MSG, 5);
        let token = token_from_response(&ask(&tsa.url, &req.der)).unwrap();
        verify_token(&token, MSG, Some(5), &roots_of(&tsa.root_pem_path))
            .unwrap_or_else(|e| panic!("{digest}: {e}"));
    }
}

#[test]
fn openssl_rejections_are_reported_with_their_reason() {
    let tsa = OpenSslTsa::start();
    let d = tsa.dir.path();
    put(d, "m.txt", MSG);
    // The authority's `digests` list has no SHA-1.
    openssl(
        d,
        &[
            "ts", "-query", "-data", "m.txt", "-sha1", "-out", "sha1.tsq",
        ],
    );
    let query = std::fs::read(d.join("sha1.tsq")).unwrap();
    match token_from_response(&ask(&tsa.url, &query)) {
        Err(TimestampError::Rejected { fail_info, .. }) => assert_eq!(fail_info, "badAlg"),
        other => panic!("expected badAlg, got {other:?}"),
    }
}

#[test]
fn our_tokens_verify_with_openssl_ts_verify() {
    let tsa = LedgerTsa::start();
    let d = tsa.dir.path();
    let req = TimestampRequest::new(MSG, 77);
    let resp = ask(&tsa.url, &req.der);
    put(d, "m.txt", MSG);
    put(d, "resp.tsr", &resp);
    openssl_ts_verify(
        d,
        &[
            "-data",
            "m.txt",
            "-in",
            "resp.tsr",
            "-CAfile",
            "tsa-root.pem",
        ],
    )
    .unwrap_or_else(|e| panic!("openssl ts -verify refused our response: {e}"));
    // The bare token too, checked against the imprint given as hex.
    let token = token_from_response(&resp).unwrap();
    put(d, "token.der", &token);
    let digest: String = req.imprint.iter().map(|b| format!("{b:02x}")).collect();
    openssl_ts_verify(
        d,
        &[
            "-digest",
            &digest,
            "-in",
            "token.der",
            "-token_in",
            "-CAfile",
            "tsa-root.pem",
        ],
    )
    .unwrap_or_else(|e| panic!("openssl ts -verify refused our token: {e}"));
    // And ours agrees.
    verify_token(&token, MSG, Some(77), &tsa.roots()).unwrap();

    // A query made by OpenSSL, answered by us, verified by OpenSSL against that query
    // (imprint, nonce and policy checked by OpenSSL).
    openssl(
        d,
        &[
            "ts", "-query", "-data", "m.txt", "-sha512", "-cert", "-out", "q.tsq",
        ],
    );
    let resp = ask(&tsa.url, &std::fs::read(d.join("q.tsq")).unwrap());
    put(d, "resp2.tsr", &resp);
    openssl_ts_verify(
        d,
        &[
            "-queryfile",
            "q.tsq",
            "-in",
            "resp2.tsr",
            "-CAfile",
            "tsa-root.pem",
        ],
    )
    .unwrap_or_else(|e| panic!("openssl ts -verify -queryfile refused our response: {e}"));
    let text =
        String::from_utf8(openssl(d, &["ts", "-reply", "-in", "resp2.tsr", "-text"])).unwrap();
    assert!(text.contains("Hash Algorithm: sha512"), "{text}");
    assert!(text.contains(ledger::tsa::DEFAULT_POLICY), "{text}");
}

/// Where `needle` starts in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("present")
}

#[test]
fn a_flipped_byte_in_the_token_is_rejected() {
    let ours = LedgerTsa::start();
    let theirs = OpenSslTsa::start();
    let req = TimestampRequest::new(MSG, 11);
    let d = ours.dir.path();
    put(d, "m.txt", MSG);
    let cases = [
        (&ours.url, ours.roots(), ours.dir.path().join("tsa.pem")),
        (
            &theirs.url,
            roots_of(&theirs.root_pem_path),
            theirs.tsa_cert_path.clone(),
        ),
    ];
    for (url, roots, signer_pem) in cases {
        let token = token_from_response(&ask(url, &req.der)).unwrap();
        verify_token(&token, MSG, Some(11), &roots).unwrap();
        let signer =
            ledger_client::timestamp::certificates_from_pem(&std::fs::read(signer_pem).unwrap())
                .unwrap()
                .remove(0);
        let (cert_at, imprint_at) = (find(&token, &signer), find(&token, &req.imprint));
        let n = token.len();
        // The outer structure, the TSTInfo (imprint, then nonce and genTime after it), the
        // signer certificate (body and signature), the signed attributes and signature at
        // the end. (The token's copy of the root is not flipped: verifiers use their own
        // root, so that copy is never read, by us or by OpenSSL.)
        let positions = [
            1,
            4,
            imprint_at + 3,
            imprint_at + 40,
            imprint_at + 52,
            cert_at + 2,
            cert_at + 40,
            cert_at + 200,
            cert_at + signer.len() - 4,
            n - 120,
            n - 60,
            n - 2,
        ];
        for i in positions {
            let mut bad = token.clone();
            bad[i] ^= 0x10;
            assert!(
                verify_token(&bad, MSG, Some(11), &roots).is_err(),
                "{url}: flip at {i} of {n} accepted"
            );
        }
    }
    // OpenSSL refuses our tampered token as well (a flip in the signature value).
    let token = token_from_response(&ask(&ours.url, &req.der)).unwrap();
    let mut bad = token.clone();
    let last = bad.len() - 3;
    bad[last] ^= 0x01;
    put(d, "bad.der", &bad);
    assert!(openssl_ts_verify(
        d,
        &[
            "-data",
            "m.txt",
            "-in",
            "bad.der",
            "-token_in",
            "-CAfile",
            "tsa-root.pem"
        ]
    )
    .is_err());
}

#[test]
fn a_wrong_nonce_is_rejected() {
    let ours = LedgerTsa::start();
    let theirs = OpenSslTsa::start();
    let req = TimestampRequest::new(MSG, 1000);
    for (url, roots) in [
        (&ours.url, ours.roots()),
        (&theirs.url, roots_of(&theirs.root_pem_path)),
    ] {
        let token = token_from_response(&ask(url, &req.der)).unwrap();
        let err = verify_token(&token, MSG, Some(1001), &roots).unwrap_err();
        assert_eq!(
            err,
            TimestampError::NonceMismatch {
                expected: 1001,
                got: "1000".into()
            },
            "{url}"
        );
    }
    // A token without a nonce cannot answer a request that had one (a replay).
    let d = theirs.dir.path();
    put(d, "m.txt", MSG);
    openssl(
        d,
        &[
            "ts",
            "-query",
            "-data",
            "m.txt",
            "-no_nonce",
            "-cert",
            "-out",
            "nn.tsq",
        ],
    );
    let token =
        token_from_response(&ask(&theirs.url, &std::fs::read(d.join("nn.tsq")).unwrap())).unwrap();
    let roots = roots_of(&theirs.root_pem_path);
    assert_eq!(
        verify_token(&token, MSG, Some(5), &roots).unwrap_err(),
        TimestampError::MissingNonce { expected: 5 }
    );
    assert_eq!(verify_token(&token, MSG, None, &roots).unwrap().nonce, None);
}

#[test]
fn a_token_for_other_bytes_is_rejected() {
    let ours = LedgerTsa::start();
    let theirs = OpenSslTsa::start();
    let req = TimestampRequest::new(MSG, 3);
    for (url, roots) in [
        (&ours.url, ours.roots()),
        (&theirs.url, roots_of(&theirs.root_pem_path)),
    ] {
        let token = token_from_response(&ask(url, &req.der)).unwrap();
        let err = verify_token(&token, b"another checkpoint\n", Some(3), &roots).unwrap_err();
        assert_eq!(err, TimestampError::ImprintMismatch, "{url}");
    }
    let d = ours.dir.path();
    put(d, "other.txt", b"another checkpoint\n");
    put(d, "resp.tsr", &ask(&ours.url, &req.der));
    let err = openssl_ts_verify(
        d,
        &[
            "-data",
            "other.txt",
            "-in",
            "resp.tsr",
            "-CAfile",
            "tsa-root.pem",
        ],
    )
    .unwrap_err();
    assert!(err.contains("message imprint mismatch"), "{err}");
}

#[test]
fn tokens_under_another_root_are_rejected() {
    let ours = LedgerTsa::start();
    let theirs = OpenSslTsa::start();
    let req = TimestampRequest::new(MSG, 4);
    let token = token_from_response(&ask(&theirs.url, &req.der)).unwrap();
    let err = verify_token(&token, MSG, Some(4), &ours.roots()).unwrap_err();
    assert!(matches!(err, TimestampError::UntrustedChain(_)), "{err}");
    let token = token_from_response(&ask(&ours.url, &req.der)).unwrap();
    let err = verify_token(&token, MSG, Some(4), &roots_of(&theirs.root_pem_path)).unwrap_err();
    assert!(matches!(err, TimestampError::UntrustedChain(_)), "{err}");
}

#[test]
fn an_expired_tsa_certificate_is_rejected() {
    let tsa = OpenSslTsa::start_expired();
    let req = TimestampRequest::new(MSG, 9);
    let resp = ask(&tsa.url, &req.der);
    let token = token_from_response(&resp).unwrap();
    let err = verify_token(&token, MSG, Some(9), &roots_of(&tsa.root_pem_path)).unwrap_err();
    match &err {
        TimestampError::CertificateNotValidAt { subject, .. } => {
            assert!(subject.contains("OpenSSL Test TSA"), "{err}")
        }
        other => panic!("expected CertificateNotValidAt, got {other}"),
    }
    // OpenSSL agrees.
    let d = tsa.dir.path();
    put(d, "m.txt", MSG);
    put(d, "resp.tsr", &resp);
    assert!(openssl_ts_verify(
        d,
        &["-data", "m.txt", "-in", "resp.tsr", "-CAfile", "root.pem"]
    )
    .is_err());
}

#[test]
fn a_certificate_without_timestamping_usage_is_rejected() {
    let (authority, root_pem, dir) = non_timestamping_authority();
    let req = TimestampRequest::new(MSG, 21);
    let resp = authority.respond(&req.der, std::time::SystemTime::now());
    let token = token_from_response(&resp).unwrap();
    let err = verify_token(&token, MSG, Some(21), &roots_of(&root_pem)).unwrap_err();
    assert!(
        matches!(err, TimestampError::NotTimestampingCertificate(ref m) if m.contains("Not A TSA")),
        "{err}"
    );
    // OpenSSL agrees.
    let d = dir.path();
    put(d, "m.txt", MSG);
    put(d, "resp.tsr", &resp);
    assert!(openssl_ts_verify(
        d,
        &["-data", "m.txt", "-in", "resp.tsr", "-CAfile", "root.pem"]
    )
    .is_err());
    // And our loader refuses such a certificate outright.
    let key = std::fs::read_to_string(d.join("server.key")).unwrap();
    let chain = std::fs::read(d.join("server.pem")).unwrap();
    let err = ledger::tsa::Authority::from_pem(&key, &chain)
        .err()
        .unwrap();
    assert!(
        format!("{err:#}").contains("not a time-stamping certificate"),
        "{err:#}"
    );
}

#[test]
fn the_standalone_ledger_tsa_answers_over_http() {
    use std::os::unix::fs::PermissionsExt;
    let tsa = LedgerTsa::start();
    let mode = std::fs::metadata(tsa.dir.path().join("tsa.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let mut serials = std::collections::HashSet::new();
    for nonce in 1..=5u64 {
        let req = TimestampRequest::new(MSG, nonce);
        let token = token_from_response(&ask(&tsa.url, &req.der)).unwrap();
        let v = verify_token(&token, MSG, Some(nonce), &tsa.roots()).unwrap();
        assert_eq!(v.tsa_subject, "CN=Interop TSA");
        assert_eq!(v.policy, ledger::tsa::DEFAULT_POLICY);
        assert!(serials.insert(v.serial_hex));
    }
    // A second tsa-keygen into the same directory refuses to replace the authority.
    let again = Command::new(binary("ledger"))
        .args(["tsa-keygen", "--dir"])
        .arg(tsa.dir.path())
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    // A key that others can read is refused at start.
    let key = tsa.dir.path().join("tsa.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new(binary("ledger"))
        .args(["tsa", "--listen", "127.0.0.1:0", "--key"])
        .arg(&key)
        .arg("--cert")
        .arg(tsa.dir.path().join("tsa.pem"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("chmod 600"));
}

#[test]
fn malformed_and_oversized_queries_get_clear_answers() {
    let tsa = LedgerTsa::start();
    let a = agent();
    // Not DER: RFC 3161 reports it in a TimeStampResp, over HTTP 200.
    let body = ask(&tsa.url, b"definitely not DER");
    match token_from_response(&body) {
        Err(TimestampError::Rejected {
            status,
            fail_info,
            text,
        }) => {
            assert_eq!(
                (status.as_str(), fail_info.as_str()),
                ("rejection (2)", "badDataFormat")
            );
            assert!(text.contains("not a DER TimeStampReq"), "{text}");
        }
        other => panic!("expected badDataFormat, got {other:?}"),
    }
    // A SHA-1 query from OpenSSL: badAlg.
    let d = tsa.dir.path();
    put(d, "m.txt", MSG);
    openssl(
        d,
        &[
            "ts", "-query", "-data", "m.txt", "-sha1", "-out", "sha1.tsq",
        ],
    );
    match token_from_response(&ask(&tsa.url, &std::fs::read(d.join("sha1.tsq")).unwrap())) {
        Err(TimestampError::Rejected { fail_info, .. }) => assert_eq!(fail_info, "badAlg"),
        other => panic!("expected badAlg, got {other:?}"),
    }
    // A policy we do not offer: unacceptedPolicy.
    openssl(
        d,
        &[
            "ts",
            "-query",
            "-data",
            "m.txt",
            "-tspolicy",
            "1.2.3.4.5",
            "-out",
            "policy.tsq",
        ],
    );
    match token_from_response(&ask(
        &tsa.url,
        &std::fs::read(d.join("policy.tsq")).unwrap(),
    )) {
        Err(TimestampError::Rejected { fail_info, .. }) => {
            assert_eq!(fail_info, "unacceptedPolicy")
        }
        other => panic!("expected unacceptedPolicy, got {other:?}"),
    }
    // Transport errors: wrong media type, too large, wrong method.
    let req = TimestampRequest::new(MSG, 1);
    let r = post(&a, &tsa.url, "application/octet-stream", &req.der).unwrap();
    assert_eq!(r.status, 415);
    assert!(
        r.text().contains("application/timestamp-query"),
        "{}",
        r.text()
    );
    let r = request(
        &a,
        "POST",
        &tsa.url,
        &[("content-type", "application/timestamp-query")],
        &vec![0u8; 20_000],
    )
    .unwrap();
    assert_eq!(r.status, 413);
    assert_eq!(get(&a, &tsa.url).unwrap().status, 405);
}
