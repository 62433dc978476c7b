use super::*;
use der::asn1::{Int, OctetString};
use der::{Any, Decode, Encode};
use ledger_client::timestamp::asn1::{oid, MessageImprint, TimeStampReq, TstInfo};
use ledger_client::timestamp::{
    token_from_response, verify_token, TimestampError, TimestampRequest, TsaRoots,
};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

fn make(dir: &Path) -> (Authority, TsaRoots) {
    let g = generate(dir, "Test TSA", 30).unwrap();
    let authority = Authority::from_files(&g.key, &g.chain_pem).unwrap();
    let roots = TsaRoots::from_pem(&std::fs::read(&g.root_pem).unwrap()).unwrap();
    (authority, roots)
}

/// The TSTInfo inside a granted response.
fn tst_info(resp: &[u8]) -> TstInfo {
    let token = token_from_response(resp).unwrap();
    let ci = cms::content_info::ContentInfo::from_der(&token).unwrap();
    let sd: cms::signed_data::SignedData = ci.content.decode_as().unwrap();
    let econtent = sd.encap_content_info.econtent.unwrap();
    TstInfo::from_der(econtent.value()).unwrap()
}

fn request(imprint_oid: der::asn1::ObjectIdentifier, imprint: &[u8]) -> TimeStampReq {
    TimeStampReq {
        version: Int::new(&[1]).unwrap(),
        message_imprint: MessageImprint {
            hash_algorithm: spki::AlgorithmIdentifier {
                oid: imprint_oid,
                parameters: None,
            },
            hashed_message: OctetString::new(imprint).unwrap(),
        },
        req_policy: None,
        nonce: None,
        cert_req: true,
        extensions: None,
    }
}

fn rejection(resp: &[u8]) -> (String, String, String) {
    match token_from_response(resp) {
        Err(TimestampError::Rejected {
            status,
            fail_info,
            text,
        }) => (status, fail_info, text),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[test]
fn our_tokens_verify_with_the_client_and_echo_the_nonce() {
    let d = tempfile::tempdir().unwrap();
    let (authority, roots) = make(d.path());
    let msg = b"checkpoint text\n";
    let nonce = 0xfedc_ba98_7654_3210;
    let req = TimestampRequest::new(msg, nonce);
    let now = SystemTime::now();
    let resp = authority.respond(&req.der, now);
    let token = token_from_response(&resp).unwrap();
    let v = verify_token(&token, msg, Some(nonce), &roots).unwrap();
    assert_eq!(v.nonce, Some(nonce));
    assert_eq!(v.policy, DEFAULT_POLICY);
    assert_eq!(v.tsa_subject, "CN=Test TSA");
    assert_eq!(v.chain, ["CN=Test TSA", "CN=Test TSA Root"]);
    assert_eq!(v.serial_hex.len(), 32, "16-byte serial");
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert_eq!(v.gen_time, secs);
    assert!(verify_token(&token, b"other", Some(nonce), &roots).is_err());
    assert!(verify_token(&token, msg, Some(nonce + 1), &roots).is_err());
}

#[test]
fn serial_numbers_are_unique_and_positive() {
    let d = tempfile::tempdir().unwrap();
    let (authority, _) = make(d.path());
    let req = TimestampRequest::new(b"m", 1);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..200 {
        let tst = tst_info(&authority.respond(&req.der, SystemTime::now()));
        let serial = tst.serial_number.as_bytes().to_vec();
        assert_eq!(serial.len(), 16);
        assert!(serial[0] & 0x80 == 0);
        assert!(seen.insert(serial));
    }
}

#[test]
fn gen_time_is_utc_to_the_millisecond_without_trailing_zeros() {
    let d = tempfile::tempdir().unwrap();
    let (authority, _) = make(d.path());
    let req = TimestampRequest::new(b"m", 1);
    let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_710_001);
    for (extra_ms, text) in [
        (0, "20261126162001Z"),
        (500, "20261126162001.5Z"),
        (120, "20261126162001.12Z"),
        (7, "20261126162001.007Z"),
    ] {
        let tst = tst_info(&authority.respond(&req.der, base + Duration::from_millis(extra_ms)));
        assert_eq!(tst.gen_time.value(), text.as_bytes());
    }
}

#[test]
fn refusals_carry_the_rfc_3161_failure_reason() {
    let d = tempfile::tempdir().unwrap();
    let (authority, _) = make(d.path());
    let now = SystemTime::now();
    let ask = |req: &TimeStampReq| rejection(&authority.respond(&req.to_der().unwrap(), now));

    let (status, fail, text) = rejection(&authority.respond(b"not DER", now));
    assert_eq!(
        (status.as_str(), fail.as_str()),
        ("rejection (2)", "badDataFormat")
    );
    assert!(text.contains("not a DER TimeStampReq"), "{text}");
    let (_, fail, _) = rejection(&authority.respond(&vec![0x30; MAX_REQUEST_SIZE + 1], now));
    assert_eq!(fail, "badDataFormat");

    let sha1 = der::asn1::ObjectIdentifier::new_unwrap("1.3.14.3.2.26");
    assert_eq!(ask(&request(sha1, &[0; 20])).1, "badAlg");
    assert_eq!(ask(&request(oid::SHA256, &[0; 20])).1, "badAlg");
    assert_eq!(ask(&request(oid::SHA512, &[0; 48])).1, "badAlg");
    let mut with_params = request(oid::SHA256, &[0; 32]);
    with_params.message_imprint.hash_algorithm.parameters =
        Some(Any::new(der::Tag::Integer, [1u8]).unwrap());
    assert_eq!(ask(&with_params).1, "badAlg");

    let mut other_policy = request(oid::SHA256, &[0; 32]);
    other_policy.req_policy = Some("1.2.3.4".parse().unwrap());
    let (_, fail, text) = ask(&other_policy);
    assert_eq!(fail, "unacceptedPolicy");
    assert!(text.contains(DEFAULT_POLICY), "{text}");

    let mut v2 = request(oid::SHA256, &[0; 32]);
    v2.version = Int::new(&[2]).unwrap();
    assert_eq!(ask(&v2).1, "badRequest");

    let mut ext = request(oid::SHA256, &[0; 32]);
    ext.extensions = Some(vec![x509_cert::ext::Extension {
        extn_id: der::asn1::ObjectIdentifier::new_unwrap("1.2.3.4.5"),
        critical: false,
        extn_value: OctetString::new(vec![5, 0]).unwrap(),
    }]);
    assert_eq!(ask(&ext).1, "unacceptedExtension");

    // Accepted: our own policy asked for explicitly, SHA-384 and SHA-512 imprints.
    let mut ours = request(oid::SHA384, &[1; 48]);
    ours.req_policy = Some(DEFAULT_POLICY.parse().unwrap());
    token_from_response(&authority.respond(&ours.to_der().unwrap(), now)).unwrap();
    let sha512 = request(oid::SHA512, &[1; 64]);
    token_from_response(&authority.respond(&sha512.to_der().unwrap(), now)).unwrap();
}

#[test]
fn certificates_are_included_only_when_requested() {
    let d = tempfile::tempdir().unwrap();
    let (authority, roots) = make(d.path());
    let msg = b"m";
    let mut req = request(oid::SHA256, &<sha2::Sha256 as sha2::Digest>::digest(msg));
    req.cert_req = false;
    let token =
        token_from_response(&authority.respond(&req.to_der().unwrap(), SystemTime::now())).unwrap();
    let ci = cms::content_info::ContentInfo::from_der(&token).unwrap();
    let sd: cms::signed_data::SignedData = ci.content.decode_as().unwrap();
    assert!(sd.certificates.is_none());
    // Without the certificate in the token, the root alone cannot identify the signer...
    assert!(matches!(
        verify_token(&token, msg, None, &roots),
        Err(TimestampError::SignerNotFound(_))
    ));
    // ...but a relying party that pinned the TSA certificate can.
    let chain = std::fs::read(d.path().join(CHAIN_FILE)).unwrap();
    verify_token(&token, msg, None, &TsaRoots::from_pem(&chain).unwrap()).unwrap();
}

#[test]
fn a_configured_policy_is_used() {
    let d = tempfile::tempdir().unwrap();
    let (authority, roots) = make(d.path());
    let authority = authority.with_policy("1.3.6.1.4.1.99999.7").unwrap();
    assert!(
        make_err(|| Authority::from_files(Path::new("/nonexistent"), Path::new("/x")))
            .contains("/nonexistent")
    );
    let req = TimestampRequest::new(b"m", 3);
    let token = token_from_response(&authority.respond(&req.der, SystemTime::now())).unwrap();
    assert_eq!(
        verify_token(&token, b"m", Some(3), &roots).unwrap().policy,
        "1.3.6.1.4.1.99999.7"
    );
    let again = Authority::from_files(&d.path().join(KEY_FILE), &d.path().join(CHAIN_FILE));
    assert!(again.unwrap().with_policy("not an oid").is_err());
}

fn make_err<T>(f: impl FnOnce() -> anyhow::Result<T>) -> String {
    match f() {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn generate_writes_a_private_key_and_refuses_to_overwrite() {
    let d = tempfile::tempdir().unwrap();
    let g = generate(d.path(), "Gen TSA", 10).unwrap();
    let mode = std::fs::metadata(&g.key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(g.root_sha256.len(), 64);
    let chain = std::fs::read_to_string(&g.chain_pem).unwrap();
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
    assert!(chain.ends_with(&std::fs::read_to_string(&g.root_pem).unwrap()));
    let err = make_err(|| generate(d.path(), "Gen TSA", 10));
    assert!(err.contains("already exists"), "{err}");
    assert!(generate(&d.path().join("a"), "bad,name", 10).is_err());
    assert!(generate(&d.path().join("b"), "ok", 0).is_err());
}

#[test]
fn loading_refuses_readable_keys_mismatched_keys_and_non_tsa_certificates() {
    let d = tempfile::tempdir().unwrap();
    let a = generate(&d.path().join("a"), "A", 10).unwrap();
    let b = generate(&d.path().join("b"), "B", 10).unwrap();
    let err = make_err(|| Authority::from_files(&a.key, &b.chain_pem));
    assert!(err.contains("not for this key"), "{err}");

    // The root certificate is a CA, not a time-stamping certificate.
    let key = std::fs::read_to_string(&a.key).unwrap();
    let root = std::fs::read(&a.root_pem).unwrap();
    let err = make_err(|| Authority::from_pem(&key, &root));
    assert!(err.contains("not for this key"), "{err}");

    let err = make_err(|| Authority::from_pem(&key, b""));
    assert!(err.contains("no certificate"), "{err}");
    let err = make_err(|| Authority::from_pem("garbage", &root));
    assert!(err.contains("PKCS#8"), "{err}");

    std::fs::set_permissions(&a.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = make_err(|| Authority::from_files(&a.key, &a.chain_pem));
    assert!(err.contains("chmod 600"), "{err}");
}

#[test]
fn a_certificate_without_timestamping_usage_is_refused_at_load() {
    // A self-signed CA certificate for the TSA's own key: right key, wrong usage.
    let d = tempfile::tempdir().unwrap();
    let g = generate(d.path(), "T", 10).unwrap();
    let key_pem = std::fs::read_to_string(&g.key).unwrap();
    let cert = certs::self_signed_ca_for_tests(&key_pem, "Not A TSA");
    let chain = certs::pem(&cert).unwrap();
    let err = make_err(|| Authority::from_pem(&key_pem, chain.as_bytes()));
    assert!(err.contains("not a time-stamping certificate"), "{err}");
    // The unchecked constructor still signs with it (tests of verifiers need that).
    let key = {
        use p256::pkcs8::DecodePrivateKey;
        p256::ecdsa::SigningKey::from(p256::SecretKey::from_pkcs8_pem(&key_pem).unwrap())
    };
    let unchecked = Authority::from_parts_unchecked(key, vec![cert.clone()]).unwrap();
    let token = token_from_response(
        &unchecked.respond(&TimestampRequest::new(b"m", 1).der, SystemTime::now()),
    )
    .unwrap();
    let roots = TsaRoots::from_der(&[cert]).unwrap();
    assert!(matches!(
        verify_token(&token, b"m", Some(1), &roots),
        Err(TimestampError::NotTimestampingCertificate(_))
    ));
}

#[tokio::test]
async fn the_router_answers_rfc_3161_over_http() {
    let d = tempfile::tempdir().unwrap();
    let (authority, roots) = make(d.path());
    let app: axum::Router = router(std::sync::Arc::new(authority));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let req = TimestampRequest::new(b"over http", 9);
    let (status, headers, body) = post(addr, "application/timestamp-query", &req.der).await;
    assert_eq!(status, 200);
    assert!(
        headers.contains("content-type: application/timestamp-reply"),
        "{headers}"
    );
    let token = token_from_response(&body).unwrap();
    verify_token(&token, b"over http", Some(9), &roots).unwrap();

    let (status, _, body) = post(addr, "application/timestamp-query", b"junk").await;
    assert_eq!(status, 200, "refusals are TimeStampResp too");
    assert_eq!(rejection(&body).1, "badDataFormat");

    let (status, _, body) = post(addr, "application/octet-stream", &req.der).await;
    assert_eq!(status, 415);
    assert!(String::from_utf8_lossy(&body).contains("application/timestamp-query"));

    let (status, _, _) = post(
        addr,
        "application/timestamp-query",
        &vec![0; MAX_QUERY_BYTES + 1],
    )
    .await;
    assert_eq!(status, 413);
}

/// A minimal HTTP/1.1 client: (status, lowercase headers, body).
async fn post(
    addr: std::net::SocketAddr,
    content_type: &str,
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /tsa HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    // The server may answer (413) before reading the whole body.
    let _ = s.write_all(body).await;
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let headers = String::from_utf8_lossy(&out[..split]).to_lowercase();
    let status = headers[9..12].parse().unwrap();
    let mut body = out[split + 4..].to_vec();
    if headers.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    (status, headers, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&b[..line_end]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&b[line_end + 2..line_end + 2 + size]);
        b = &b[line_end + 4 + size..];
    }
}
