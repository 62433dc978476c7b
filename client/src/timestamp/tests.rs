//! Unit tests: tokens from the test issuer (every knob), OpenSSL fixtures (RSA, ESS v1),
//! and hostile input (truncated, bit-flipped, garbage).

use super::asn1::oid;
use super::crypto::HashAlg;
use super::testkit::*;
use super::*;
use der::asn1::ObjectIdentifier;
use rand::{Rng, RngCore};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::KeyUsages;

const MSG: &[u8] = b"origin\n42\nroot hash\n";

fn roots(certs: &[&Issued]) -> TsaRoots {
    TsaRoots::from_der(&certs.iter().map(|c| c.der.clone()).collect::<Vec<_>>()).unwrap()
}

/// A token for MSG with nonce 7, carrying the TSA certificate only.
fn simple() -> (Issued, Issued, Vec<u8>) {
    let (root, tsa) = root_and_tsa();
    let t = token(&tsa, &TokenOpts::new(MSG, Some(7), vec![tsa.der.clone()]));
    (root, tsa, t)
}

#[test]
fn a_token_from_our_test_issuer_verifies_and_reports_its_fields() {
    let (root, _tsa, t) = simple();
    let v = verify_token(&t, MSG, Some(7), &roots(&[&root])).unwrap();
    assert_eq!(v.gen_time, T0);
    assert_eq!(v.gen_time_rfc3339, "2026-11-26T16:20:01Z");
    assert_eq!(v.serial_hex, "012345");
    assert_eq!(v.policy, "1.2.3.4.5");
    assert_eq!(v.tsa_subject, "CN=Test TSA,O=ledger tests");
    assert_eq!(v.nonce, Some(7));
    assert_eq!(v.imprint_algorithm, "sha256");
    assert_eq!(
        v.chain,
        ["CN=Test TSA,O=ledger tests", "CN=Test Root,O=ledger tests"]
    );
    // Without an expected nonce the token's nonce is still reported.
    assert_eq!(
        verify_token(&t, MSG, None, &roots(&[&root])).unwrap().nonce,
        Some(7)
    );
}

#[test]
fn p384_keys_intermediates_and_ski_signer_ids_verify() {
    let root = issue("P384 Root", Key::p384(), None, &CertOpts::ca());
    let mid = issue("Intermediate", Key::p256(), Some(&root), &CertOpts::ca());
    let tsa = issue("P384 TSA", Key::p384(), Some(&mid), &CertOpts::tsa());
    let mut o = TokenOpts::new(MSG, Some(1), vec![tsa.der.clone(), mid.der.clone()]);
    o.sid_ski = true;
    o.ess = Ess::Both;
    o.imprint_alg = HashAlg::Sha512;
    o.gen_time = "20261126162001.125Z".into();
    let v = verify_token(&token(&tsa, &o), MSG, Some(1), &roots(&[&root])).unwrap();
    assert_eq!(v.chain.len(), 3);
    assert_eq!(v.imprint_algorithm, "sha512");
    assert_eq!(v.gen_time, T0);
    assert_eq!(v.gen_time_rfc3339, "2026-11-26T16:20:01.125Z");
    // Trusting the intermediate directly is enough too.
    verify_token(&token(&tsa, &o), MSG, Some(1), &roots(&[&mid])).unwrap();
}

#[test]
fn a_signer_that_is_itself_a_trusted_root_verifies_and_may_be_left_out_of_the_token() {
    let (_root, tsa) = root_and_tsa();
    let t = token(&tsa, &TokenOpts::new(MSG, None, vec![]));
    let v = verify_token(&t, MSG, None, &roots(&[&tsa])).unwrap();
    assert_eq!(v.chain, ["CN=Test TSA,O=ledger tests"]);
}

#[test]
fn a_token_for_other_bytes_is_rejected() {
    let (root, _tsa, t) = simple();
    let err = verify_token(&t, b"other", Some(7), &roots(&[&root])).unwrap_err();
    assert_eq!(err, TimestampError::ImprintMismatch);
}

#[test]
fn nonces_must_match_and_must_be_present_when_expected() {
    let (root, tsa, t) = simple();
    let r = roots(&[&root]);
    assert_eq!(
        verify_token(&t, MSG, Some(8), &r).unwrap_err(),
        TimestampError::NonceMismatch {
            expected: 8,
            got: "7".into()
        }
    );
    let none = token(&tsa, &TokenOpts::new(MSG, None, vec![tsa.der.clone()]));
    assert_eq!(
        verify_token(&none, MSG, Some(8), &r).unwrap_err(),
        TimestampError::MissingNonce { expected: 8 }
    );
    assert_eq!(verify_token(&none, MSG, None, &r).unwrap().nonce, None);
    // A 160-bit nonce (RFC 3161 allows any size) is not a u64.
    let mut o = TokenOpts::new(MSG, None, vec![tsa.der.clone()]);
    o.nonce = Some([0x01; 20].to_vec());
    let big = token(&tsa, &o);
    assert_eq!(verify_token(&big, MSG, None, &r).unwrap().nonce, None);
    let err = verify_token(&big, MSG, Some(1), &r).unwrap_err();
    assert!(
        matches!(err, TimestampError::NonceMismatch { expected: 1, ref got } if got.starts_with("0x0101")),
        "{err}"
    );
}

#[test]
fn an_expired_or_not_yet_valid_tsa_certificate_is_rejected() {
    let root = issue("Root", Key::p256(), None, &CertOpts::ca());
    for (nb, na) in [(T0 - 2 * YEAR, T0 - 1), (T0 + 1, T0 + YEAR)] {
        let mut opts = CertOpts::tsa();
        opts.not_before = nb;
        opts.not_after = na;
        let tsa = issue("TSA", Key::p256(), Some(&root), &opts);
        let t = token(&tsa, &TokenOpts::new(MSG, None, vec![tsa.der.clone()]));
        let err = verify_token(&t, MSG, None, &roots(&[&root])).unwrap_err();
        assert!(
            matches!(err, TimestampError::CertificateNotValidAt { ref gen_time, .. } if gen_time == "2026-11-26T16:20:01Z"),
            "{err}"
        );
    }
    // The last second of validity is still valid; a fraction past it is not.
    let mut opts = CertOpts::tsa();
    opts.not_after = T0;
    let tsa = issue("TSA", Key::p256(), Some(&root), &opts);
    let mut o = TokenOpts::new(MSG, None, vec![tsa.der.clone()]);
    verify_token(&token(&tsa, &o), MSG, None, &roots(&[&root])).unwrap();
    o.gen_time = "20261126162001.5Z".into();
    assert!(verify_token(&token(&tsa, &o), MSG, None, &roots(&[&root])).is_err());
}

#[test]
fn an_expired_root_or_intermediate_is_rejected() {
    let mut old = CertOpts::ca();
    old.not_after = T0 - 1;
    let root = issue("Old Root", Key::p256(), None, &old);
    let tsa = issue("TSA", Key::p256(), Some(&root), &CertOpts::tsa());
    let t = token(&tsa, &TokenOpts::new(MSG, None, vec![tsa.der.clone()]));
    let err = verify_token(&t, MSG, None, &roots(&[&root])).unwrap_err();
    assert!(
        matches!(err, TimestampError::CertificateNotValidAt { ref subject, .. } if subject.contains("Old Root")),
        "{err}"
    );
}

#[test]
fn a_certificate_without_exactly_a_critical_timestamping_usage_is_rejected() {
    let root = issue("Root", Key::p256(), None, &CertOpts::ca());
    type Eku = Option<(bool, Vec<ObjectIdentifier>)>;
    let cases: Vec<(Eku, &str)> = vec![
        (None, "no extendedKeyUsage"),
        (Some((false, vec![oid::KP_TIME_STAMPING])), "not critical"),
        (
            Some((
                true,
                vec![
                    oid::KP_TIME_STAMPING,
                    ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.3"),
                ],
            )),
            "exactly id-kp-timeStamping",
        ),
        (
            Some((
                true,
                vec![ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.1")],
            )),
            "exactly id-kp-timeStamping",
        ),
    ];
    for (eku, why) in cases {
        let mut opts = CertOpts::tsa();
        opts.eku = eku;
        let tsa = issue("TSA", Key::p256(), Some(&root), &opts);
        let t = token(&tsa, &TokenOpts::new(MSG, None, vec![tsa.der.clone()]));
        let err = verify_token(&t, MSG, None, &roots(&[&root])).unwrap_err();
        assert!(
            matches!(err, TimestampError::NotTimestampingCertificate(ref m) if m.contains(why)),
            "{why}: {err}"
        );
    }
    let mut opts = CertOpts::tsa();
    opts.key_usage = Some(KeyUsages::KeyEncipherment.into());
    let tsa = issue("TSA", Key::p256(), Some(&root), &opts);
    let t = token(&tsa, &TokenOpts::new(MSG, None, vec![tsa.der.clone()]));
    assert!(matches!(
        verify_token(&t, MSG, None, &roots(&[&root])),
        Err(TimestampError::NotTimestampingCertificate(_))
    ));
}

#[test]
fn issuers_must_be_cas_and_chains_must_reach_a_trusted_root() {
    let root = issue("Root", Key::p256(), None, &CertOpts::ca());
    let other = issue("Root", Key::p256(), None, &CertOpts::ca());
    let tsa = issue("TSA", Key::p256(), Some(&root), &CertOpts::tsa());
    let t = token(&tsa, &TokenOpts::new(MSG, None, vec![tsa.der.clone()]));
    // Same name, other key: the signature on the TSA certificate does not verify.
    let err = verify_token(&t, MSG, None, &roots(&[&other])).unwrap_err();
    assert!(
        matches!(err, TimestampError::UntrustedChain(ref m) if m.contains("does not verify")),
        "{err}"
    );
    // Both: the right one is found.
    verify_token(&t, MSG, None, &roots(&[&other, &root])).unwrap();
    // Unrelated root.
    let unrelated = issue("Unrelated", Key::p256(), None, &CertOpts::ca());
    let err = verify_token(&t, MSG, None, &roots(&[&unrelated])).unwrap_err();
    assert!(matches!(err, TimestampError::UntrustedChain(_)), "{err}");

    // An intermediate that is not a CA, or may not sign certificates.
    for (bc, ku) in [
        (Some(false), Some(KeyUsages::KeyCertSign.into())),
        (None, Some(KeyUsages::KeyCertSign.into())),
        (Some(true), Some(KeyUsages::DigitalSignature.into())),
    ] {
        let mut opts = CertOpts::ca();
        opts.basic_constraints = bc;
        opts.key_usage = ku;
        let mid = issue("Mid", Key::p256(), Some(&root), &opts);
        let tsa = issue("TSA", Key::p256(), Some(&mid), &CertOpts::tsa());
        let t = token(
            &tsa,
            &TokenOpts::new(MSG, None, vec![tsa.der.clone(), mid.der.clone()]),
        );
        let err = verify_token(&t, MSG, None, &roots(&[&root])).unwrap_err();
        assert!(
            matches!(err, TimestampError::UntrustedChain(ref m) if m.contains("cannot issue")),
            "{err}"
        );
    }

    // pathLenConstraint 0 on the root forbids an intermediate below it.
    let mut opts = CertOpts::ca();
    opts.path_len = Some(0);
    let root0 = issue("Root0", Key::p256(), None, &opts);
    let mid = issue("Mid", Key::p256(), Some(&root0), &CertOpts::ca());
    let tsa = issue("TSA", Key::p256(), Some(&mid), &CertOpts::tsa());
    let t = token(
        &tsa,
        &TokenOpts::new(MSG, None, vec![tsa.der.clone(), mid.der.clone()]),
    );
    let err = verify_token(&t, MSG, None, &roots(&[&root0])).unwrap_err();
    assert!(
        matches!(err, TimestampError::UntrustedChain(ref m) if m.contains("pathLenConstraint")),
        "{err}"
    );
}

#[test]
fn chains_longer_than_the_depth_limit_are_refused() {
    let root = issue("Root", Key::p256(), None, &CertOpts::ca());
    let mut chain = vec![root];
    for i in 0..MAX_CHAIN_DEPTH {
        let next = issue(
            &format!("Mid {i}"),
            Key::p256(),
            chain.last(),
            &CertOpts::ca(),
        );
        chain.push(next);
    }
    let tsa = issue("TSA", Key::p256(), chain.last(), &CertOpts::tsa());
    let mut certs: Vec<Vec<u8>> = chain[1..].iter().map(|c| c.der.clone()).collect();
    certs.push(tsa.der.clone());
    let t = token(&tsa, &TokenOpts::new(MSG, None, certs));
    let err = verify_token(&t, MSG, None, &roots(&[&chain[0]])).unwrap_err();
    assert!(
        matches!(err, TimestampError::UntrustedChain(ref m) if m.contains("within 8")),
        "{err}"
    );
}

#[test]
fn unknown_critical_extensions_are_refused() {
    let root = issue("Root", Key::p256(), None, &CertOpts::ca());
    let mut opts = CertOpts::tsa();
    opts.extra.push(x509_cert::ext::Extension {
        extn_id: ObjectIdentifier::new_unwrap("1.2.3.4.99"),
        critical: true,
        extn_value: der::asn1::OctetString::new(vec![0x05, 0x00]).unwrap(),
    });
    let tsa = issue("TSA", Key::p256(), Some(&root), &opts);
    let t = token(&tsa, &TokenOpts::new(MSG, None, vec![tsa.der.clone()]));
    let err = verify_token(&t, MSG, None, &roots(&[&root])).unwrap_err();
    assert!(
        matches!(err, TimestampError::UntrustedChain(ref m) if m.contains("1.2.3.4.99")),
        "{err}"
    );
}

#[test]
fn signed_attributes_must_bind_the_content_and_the_signer_certificate() {
    let (root, tsa) = root_and_tsa();
    let r = roots(&[&root]);
    let base = || TokenOpts::new(MSG, None, vec![tsa.der.clone()]);

    let mut o = base();
    o.ess = Ess::None;
    let err = verify_token(&token(&tsa, &o), MSG, None, &r).unwrap_err();
    assert!(
        matches!(err, TimestampError::Malformed(ref m) if m.contains("signing-certificate")),
        "{err}"
    );

    for ess in [Ess::V1, Ess::V2] {
        let mut o = base();
        o.ess = ess;
        o.ess_cert = Some(root.der.clone());
        let err = verify_token(&token(&tsa, &o), MSG, None, &r).unwrap_err();
        assert!(
            matches!(err, TimestampError::SigningCertificateMismatch(_)),
            "{err}"
        );
        o.ess_cert = None;
        verify_token(&token(&tsa, &o), MSG, None, &r).unwrap();
    }

    let mut o = base();
    o.content_type_attr = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
    let err = verify_token(&token(&tsa, &o), MSG, None, &r).unwrap_err();
    assert!(
        matches!(err, TimestampError::Malformed(ref m) if m.contains("content-type")),
        "{err}"
    );

    let mut o = base();
    o.econtent_type = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
    let err = verify_token(&token(&tsa, &o), MSG, None, &r).unwrap_err();
    assert!(
        matches!(err, TimestampError::Malformed(ref m) if m.contains("eContentType")),
        "{err}"
    );

    let mut o = base();
    o.wrong_key = Some(Key::p256());
    assert_eq!(
        verify_token(&token(&tsa, &o), MSG, None, &r).unwrap_err(),
        TimestampError::BadSignature
    );

    let mut o = base();
    o.extra_signer = true;
    let err = verify_token(&token(&tsa, &o), MSG, None, &r).unwrap_err();
    assert!(
        matches!(err, TimestampError::Malformed(ref m) if m.contains("exactly one")),
        "{err}"
    );

    let mut o = base();
    o.version = 2;
    let err = verify_token(&token(&tsa, &o), MSG, None, &r).unwrap_err();
    assert!(
        matches!(err, TimestampError::Malformed(ref m) if m.contains("version")),
        "{err}"
    );

    // The tsa field must name the signer.
    let mut o = base();
    o.tsa_name = Some(GeneralName::DirectoryName(
        tsa.cert.tbs_certificate.subject.clone(),
    ));
    verify_token(&token(&tsa, &o), MSG, None, &r).unwrap();
    o.tsa_name = Some(GeneralName::DirectoryName(
        root.cert.tbs_certificate.subject.clone(),
    ));
    let err = verify_token(&token(&tsa, &o), MSG, None, &r).unwrap_err();
    assert!(
        matches!(err, TimestampError::TsaNameMismatch { .. }),
        "{err}"
    );
}

#[test]
fn a_signer_missing_from_token_and_roots_is_reported() {
    let (root, tsa) = root_and_tsa();
    let t = token(&tsa, &TokenOpts::new(MSG, None, vec![]));
    let err = verify_token(&t, MSG, None, &roots(&[&root])).unwrap_err();
    assert!(matches!(err, TimestampError::SignerNotFound(_)), "{err}");
}

#[test]
fn every_flipped_bit_and_every_truncation_is_rejected_without_panicking() {
    let (root, _tsa, t) = simple();
    let r = roots(&[&root]);
    verify_token(&t, MSG, Some(7), &r).unwrap();
    for i in 0..t.len() {
        let mut bad = t.clone();
        bad[i] ^= 1 << (i % 8);
        assert!(
            verify_token(&bad, MSG, Some(7), &r).is_err(),
            "flip at byte {i} accepted"
        );
    }
    for n in 0..t.len() {
        assert!(
            verify_token(&t[..n], MSG, Some(7), &r).is_err(),
            "truncated to {n}"
        );
        assert!(token_from_response(&t[..n]).is_err());
    }
    let mut longer = t.clone();
    longer.push(0);
    assert!(verify_token(&longer, MSG, Some(7), &r).is_err());
}

#[test]
fn garbage_and_oversized_input_is_rejected_without_panicking() {
    let (root, _tsa, t) = simple();
    let r = roots(&[&root]);
    let mut rng = rand::thread_rng();
    for _ in 0..2000 {
        let n = rng.gen_range(0..300);
        let mut g = vec![0u8; n];
        rng.fill_bytes(&mut g);
        if rng.gen_bool(0.5) && n > 4 {
            // A plausible SEQUENCE header makes the parser go deeper.
            g[0] = 0x30;
            g[1] = 0x82;
            g[2] = ((n - 4) >> 8) as u8;
            g[3] = (n - 4) as u8;
        }
        assert!(verify_token(&g, MSG, None, &r).is_err());
        let _ = token_from_response(&g);
        let _ = TsaRoots::from_der(&[g.clone()]);
        let _ = TsaRoots::from_pem(&g);
    }
    // Random multi-byte corruption of a real token.
    for _ in 0..500 {
        let mut bad = t.clone();
        for _ in 0..rng.gen_range(1..8) {
            let i = rng.gen_range(0..bad.len());
            bad[i] = rng.gen();
        }
        let _ = verify_token(&bad, MSG, Some(7), &r);
    }
    let big = vec![0x30; MAX_TOKEN_SIZE + 1];
    assert_eq!(
        verify_token(&big, MSG, None, &r).unwrap_err(),
        TimestampError::TooLarge
    );
    assert_eq!(
        token_from_response(&big).unwrap_err(),
        TimestampError::TooLarge
    );
}

const OPENSSL_MSG: &[u8] = b"openssl fixture message\n";
const OPENSSL_NONCE: u64 = 0xBEF5_ED5E_E9AF_941D;

fn openssl_roots() -> TsaRoots {
    TsaRoots::from_pem(include_bytes!("testdata/openssl-rsa-root.pem")).unwrap()
}

#[test]
fn our_request_is_byte_for_byte_what_openssl_ts_query_sends() {
    let req = TimestampRequest::new(OPENSSL_MSG, OPENSSL_NONCE);
    assert_eq!(req.der, include_bytes!("testdata/openssl-query.tsq"));
    assert_eq!(req.nonce, OPENSSL_NONCE);
    let small = TimestampRequest::new(b"", 0);
    assert!(small.der.len() > 40);
}

#[test]
fn an_openssl_rsa_token_with_ess_v1_verifies() {
    let resp = include_bytes!("testdata/openssl-rsa-response.tsr");
    let token = token_from_response(resp).unwrap();
    let v = verify_token(&token, OPENSSL_MSG, Some(OPENSSL_NONCE), &openssl_roots()).unwrap();
    assert_eq!(v.tsa_subject, "O=ledger tests,CN=Fixture RSA TSA");
    assert_eq!(v.policy, "1.3.6.1.4.1.99999.1");
    assert_eq!(v.nonce, Some(OPENSSL_NONCE));
    assert_eq!(v.serial_hex, "02");
    assert_eq!(v.chain.len(), 2);
    assert_eq!(
        verify_token(&token, b"other", Some(OPENSSL_NONCE), &openssl_roots()).unwrap_err(),
        TimestampError::ImprintMismatch
    );
    // Our own roots do not vouch for OpenSSL's authority.
    let (root, _) = root_and_tsa();
    assert!(matches!(
        verify_token(&token, OPENSSL_MSG, None, &roots(&[&root])),
        Err(TimestampError::UntrustedChain(_))
    ));
    // Trusting the TSA certificate itself works too.
    let tsa_only = TsaRoots::from_pem(include_bytes!("testdata/openssl-rsa-tsa.pem")).unwrap();
    verify_token(&token, OPENSSL_MSG, None, &tsa_only).unwrap();
}

#[test]
fn a_rejection_names_status_failure_and_text() {
    let err = token_from_response(include_bytes!("testdata/openssl-rejection.tsr")).unwrap_err();
    match err {
        TimestampError::Rejected {
            status,
            fail_info,
            text,
        } => {
            assert_eq!(status, "rejection (2)");
            assert_eq!(fail_info, "badAlg");
            assert_eq!(text, "Message digest algorithm is not supported.");
        }
        other => panic!("{other}"),
    }
}

#[test]
fn root_pem_bundles_parse_and_bad_ones_are_refused() {
    let (a, b) = root_and_tsa();
    let pem = format!("junk before\n{}\nbetween\n{}", a.pem(), b.pem());
    assert_eq!(TsaRoots::from_pem(pem.as_bytes()).unwrap().len(), 2);
    assert!(TsaRoots::from_pem(b"").is_err());
    assert!(TsaRoots::from_pem(b"-----BEGIN CERTIFICATE-----\nAAAA\n").is_err());
    assert!(
        TsaRoots::from_pem(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
            .is_err()
    );
    assert!(TsaRoots::from_der(&[]).is_err());
    assert!(TsaRoots::from_der(&[vec![0x30, 0x00]]).is_err());
}

#[test]
fn failure_info_bits_encode_as_der_named_bits() {
    use super::asn1::fail_info;
    assert_eq!(fail_info::encode(fail_info::BAD_ALG), (7, vec![0x80]));
    assert_eq!(
        fail_info::encode(fail_info::BAD_DATA_FORMAT),
        (2, vec![0x04])
    );
    assert_eq!(
        fail_info::encode(fail_info::UNACCEPTED_POLICY),
        (0, vec![0x00, 0x01])
    );
    assert_eq!(
        fail_info::encode(fail_info::SYSTEM_FAILURE),
        (6, vec![0x00, 0x00, 0x00, 0x40])
    );
}

#[test]
fn policy_oids_with_uuid_arcs_round_trip() {
    use super::asn1::PolicyOid;
    use der::{Decode, Encode};
    let text = "2.25.271610661209850825415088078611341148925";
    let p: PolicyOid = text.parse().unwrap();
    assert_eq!(p.to_string(), text);
    let der = p.to_der().unwrap();
    assert_eq!(PolicyOid::from_der(&der).unwrap(), p);
    for s in [
        "1.2.840.113549.1.9.16.1.4",
        "0.0",
        "2.999.1",
        "1.3.6.1.4.1.99999.1",
    ] {
        let p: PolicyOid = s.parse().unwrap();
        assert_eq!(p.to_string(), s);
        if let Ok(o) = ObjectIdentifier::new(s) {
            assert_eq!(p.as_bytes(), o.as_bytes());
        }
    }
    for bad in [
        "",
        "1",
        "3.1",
        "1.40",
        "1..2",
        "1.02",
        "1.x",
        "2.25.340282366920938463463374607431768211456",
    ] {
        assert!(bad.parse::<PolicyOid>().is_err(), "{bad}");
    }
    for bad in [&[][..], &[0x80, 0x01], &[0x2a, 0x86], &[0xff; 20]] {
        assert!(PolicyOid::from_der_value(bad).is_err(), "{bad:?}");
    }
    // A token under such a policy verifies and reports it.
    let (root, tsa) = root_and_tsa();
    let mut o = TokenOpts::new(MSG, None, vec![tsa.der.clone()]);
    o.policy = text.parse().unwrap();
    let v = verify_token(&token(&tsa, &o), MSG, None, &roots(&[&root])).unwrap();
    assert_eq!(v.policy, text);
}
