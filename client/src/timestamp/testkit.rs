//! Test-only issuer of certificates and time-stamp tokens with every knob a negative test
//! needs (the ledger's authority only makes correct ones).

use std::str::FromStr;
use std::time::Duration;

use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use der::asn1::{BitString, GeneralizedTime, Int, ObjectIdentifier, OctetString, SetOfVec};
use der::flagset::FlagSet;
use der::{Any, Decode, Encode, Tag};
use rand::RngCore;
use spki::{AlgorithmIdentifierOwned, EncodePublicKey, SubjectPublicKeyInfoOwned};
use x509_cert::attr::Attribute;
use x509_cert::certificate::{TbsCertificate, Version};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages,
    SubjectKeyIdentifier,
};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};
use x509_cert::Certificate;

use super::asn1::{
    oid, EssCertId, EssCertIdV2, IssuerSerial, MessageImprint, SigningCertificate,
    SigningCertificateV2, TstInfo,
};
use super::crypto::HashAlg;
use super::request::positive_int;

/// 2026-11-26T16:20:01Z, the genTime of test tokens.
pub const T0: i64 = 1_795_710_001;
pub const T0_TEXT: &str = "20261126162001Z";
pub const YEAR: i64 = 365 * 86_400;

pub enum Key {
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
}

impl Key {
    pub fn p256() -> Key {
        Key::P256(p256::ecdsa::SigningKey::random(&mut rand::rngs::OsRng))
    }
    pub fn p384() -> Key {
        Key::P384(p384::ecdsa::SigningKey::random(&mut rand::rngs::OsRng))
    }
    pub fn spki(&self) -> SubjectPublicKeyInfoOwned {
        let doc = match self {
            Key::P256(k) => k.verifying_key().to_public_key_der().unwrap(),
            Key::P384(k) => k.verifying_key().to_public_key_der().unwrap(),
        };
        SubjectPublicKeyInfoOwned::from_der(doc.as_bytes()).unwrap()
    }
    pub fn sig_alg(&self) -> AlgorithmIdentifierOwned {
        AlgorithmIdentifierOwned {
            oid: match self {
                Key::P256(_) => oid::ECDSA_WITH_SHA256,
                Key::P384(_) => oid::ECDSA_WITH_SHA384,
            },
            parameters: None,
        }
    }
    pub fn digest(&self) -> HashAlg {
        match self {
            Key::P256(_) => HashAlg::Sha256,
            Key::P384(_) => HashAlg::Sha384,
        }
    }
    pub fn digest_oid(&self) -> ObjectIdentifier {
        match self {
            Key::P256(_) => oid::SHA256,
            Key::P384(_) => oid::SHA384,
        }
    }
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        use ecdsa::signature::Signer;
        match self {
            Key::P256(k) => {
                let s: p256::ecdsa::DerSignature = k.sign(msg);
                s.as_bytes().to_vec()
            }
            Key::P384(k) => {
                let s: p384::ecdsa::DerSignature = k.sign(msg);
                s.as_bytes().to_vec()
            }
        }
    }
}

/// A certificate with its key.
pub struct Issued {
    pub der: Vec<u8>,
    pub cert: Certificate,
    pub key: Key,
}

impl Issued {
    pub fn pem(&self) -> String {
        der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, &self.der).unwrap()
    }
}

pub struct CertOpts {
    pub not_before: i64,
    pub not_after: i64,
    /// Some(ca) adds basicConstraints (critical when ca).
    pub basic_constraints: Option<bool>,
    pub path_len: Option<u8>,
    pub key_usage: Option<FlagSet<KeyUsages>>,
    /// (critical, purposes)
    pub eku: Option<(bool, Vec<ObjectIdentifier>)>,
    pub extra: Vec<Extension>,
}

impl CertOpts {
    pub fn ca() -> Self {
        CertOpts {
            not_before: T0 - YEAR,
            not_after: T0 + 10 * YEAR,
            basic_constraints: Some(true),
            path_len: None,
            key_usage: Some(KeyUsages::KeyCertSign | KeyUsages::CRLSign),
            eku: None,
            extra: vec![],
        }
    }
    pub fn tsa() -> Self {
        CertOpts {
            not_before: T0 - YEAR,
            not_after: T0 + YEAR,
            basic_constraints: None,
            path_len: None,
            key_usage: Some(KeyUsages::DigitalSignature.into()),
            eku: Some((true, vec![oid::KP_TIME_STAMPING])),
            extra: vec![],
        }
    }
}

fn time(secs: i64) -> Time {
    Time::GeneralTime(
        GeneralizedTime::from_unix_duration(Duration::from_secs(secs as u64)).unwrap(),
    )
}

fn ext(id: ObjectIdentifier, critical: bool, value: &impl Encode) -> Extension {
    Extension {
        extn_id: id,
        critical,
        extn_value: OctetString::new(value.to_der().unwrap()).unwrap(),
    }
}

fn key_id(spki: &SubjectPublicKeyInfoOwned) -> OctetString {
    let bits = spki.subject_public_key.raw_bytes();
    OctetString::new(HashAlg::Sha1.digest(bits)).unwrap()
}

/// Issues a certificate for `key` named `CN=<cn>`, signed by `issuer` (self-signed if None).
pub fn issue(cn: &str, key: Key, issuer: Option<&Issued>, opts: &CertOpts) -> Issued {
    let subject = Name::from_str(&format!("CN={cn},O=ledger tests")).unwrap();
    let spki = key.spki();
    let (issuer_name, issuer_spki, signer) = match issuer {
        Some(i) => (
            i.cert.tbs_certificate.subject.clone(),
            i.cert.tbs_certificate.subject_public_key_info.clone(),
            &i.key,
        ),
        None => (subject.clone(), spki.clone(), &key),
    };
    let mut exts = vec![ext(
        oid::SUBJECT_KEY_IDENTIFIER,
        false,
        &SubjectKeyIdentifier(key_id(&spki)),
    )];
    if issuer.is_some() {
        exts.push(ext(
            oid::AUTHORITY_KEY_IDENTIFIER,
            false,
            &AuthorityKeyIdentifier {
                key_identifier: Some(key_id(&issuer_spki)),
                authority_cert_issuer: None,
                authority_cert_serial_number: None,
            },
        ));
    }
    if let Some(ca) = opts.basic_constraints {
        exts.push(ext(
            oid::BASIC_CONSTRAINTS,
            ca,
            &BasicConstraints {
                ca,
                path_len_constraint: opts.path_len,
            },
        ));
    }
    if let Some(ku) = opts.key_usage {
        exts.push(ext(oid::KEY_USAGE, true, &KeyUsage(ku)));
    }
    if let Some((critical, purposes)) = &opts.eku {
        exts.push(ext(
            oid::EXT_KEY_USAGE,
            *critical,
            &ExtendedKeyUsage(purposes.clone()),
        ));
    }
    exts.extend(opts.extra.iter().cloned());
    let mut serial = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut serial);
    serial[0] = (serial[0] & 0x7f) | 0x01;
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(&serial).unwrap(),
        signature: signer.sig_alg(),
        issuer: issuer_name,
        validity: Validity {
            not_before: time(opts.not_before),
            not_after: time(opts.not_after),
        },
        subject,
        subject_public_key_info: spki,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(exts),
    };
    let sig = signer.sign(&tbs.to_der().unwrap());
    let cert = Certificate {
        tbs_certificate: tbs,
        signature_algorithm: signer.sig_alg(),
        signature: BitString::from_bytes(&sig).unwrap(),
    };
    Issued {
        der: cert.to_der().unwrap(),
        cert,
        key,
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Ess {
    None,
    V1,
    V2,
    Both,
}

pub struct TokenOpts {
    pub message: Vec<u8>,
    pub imprint_alg: HashAlg,
    pub nonce: Option<Vec<u8>>,
    pub version: u8,
    pub gen_time: String,
    pub policy: super::asn1::PolicyOid,
    pub ess: Ess,
    /// Certificate whose hash goes into the ESS attribute (default: the signer's).
    pub ess_cert: Option<Vec<u8>>,
    pub content_type_attr: ObjectIdentifier,
    pub econtent_type: ObjectIdentifier,
    pub sid_ski: bool,
    /// Certificates placed in the token.
    pub certs: Vec<Vec<u8>>,
    pub tsa_name: Option<GeneralName>,
    pub extra_signer: bool,
    /// Sign with this key instead of the certificate's.
    pub wrong_key: Option<Key>,
}

impl TokenOpts {
    pub fn new(message: &[u8], nonce: Option<u64>, certs: Vec<Vec<u8>>) -> Self {
        TokenOpts {
            message: message.to_vec(),
            imprint_alg: HashAlg::Sha256,
            nonce: nonce.map(|n| positive_int(n).unwrap().as_bytes().to_vec()),
            version: 1,
            gen_time: T0_TEXT.into(),
            policy: "1.2.3.4.5".parse().unwrap(),
            ess: Ess::V2,
            ess_cert: None,
            content_type_attr: oid::TST_INFO,
            econtent_type: oid::TST_INFO,
            sid_ski: false,
            certs,
            tsa_name: None,
            extra_signer: false,
            wrong_key: None,
        }
    }
}

fn attr(id: ObjectIdentifier, value: &impl Encode) -> Attribute {
    Attribute {
        oid: id,
        values: SetOfVec::try_from(vec![Any::from_der(&value.to_der().unwrap()).unwrap()]).unwrap(),
    }
}

/// A DER time-stamp token signed by `signer`.
pub fn token(signer: &Issued, o: &TokenOpts) -> Vec<u8> {
    let imprint_oid = match o.imprint_alg {
        HashAlg::Sha1 => oid::SHA1,
        HashAlg::Sha256 => oid::SHA256,
        HashAlg::Sha384 => oid::SHA384,
        HashAlg::Sha512 => oid::SHA512,
    };
    let tst = TstInfo {
        version: Int::new(&[o.version]).unwrap(),
        policy: o.policy.clone(),
        message_imprint: MessageImprint {
            hash_algorithm: spki::AlgorithmIdentifier {
                oid: imprint_oid,
                parameters: None,
            },
            hashed_message: OctetString::new(o.imprint_alg.digest(&o.message)).unwrap(),
        },
        serial_number: Int::new(&[0x01, 0x23, 0x45]).unwrap(),
        gen_time: Any::new(Tag::GeneralizedTime, o.gen_time.as_bytes()).unwrap(),
        accuracy: None,
        ordering: false,
        nonce: o.nonce.as_ref().map(|n| Int::new(n).unwrap()),
        tsa: o.tsa_name.clone(),
        extensions: None,
    };
    let tst_der = tst.to_der().unwrap();
    let key = o.wrong_key.as_ref().unwrap_or(&signer.key);
    let ess_cert = o.ess_cert.as_deref().unwrap_or(&signer.der);
    let issuer_serial = IssuerSerial {
        issuer: vec![GeneralName::DirectoryName(
            signer.cert.tbs_certificate.issuer.clone(),
        )],
        serial_number: Int::new(signer.cert.tbs_certificate.serial_number.as_bytes()).unwrap(),
    };
    let mut attrs = vec![
        attr(oid::CONTENT_TYPE, &o.content_type_attr),
        attr(
            oid::MESSAGE_DIGEST,
            &OctetString::new(key.digest().digest(&tst_der)).unwrap(),
        ),
    ];
    if matches!(o.ess, Ess::V1 | Ess::Both) {
        let v1 = SigningCertificate {
            certs: vec![EssCertId {
                cert_hash: OctetString::new(HashAlg::Sha1.digest(ess_cert)).unwrap(),
                issuer_serial: Some(issuer_serial.clone()),
            }],
            policies: None,
        };
        attrs.push(attr(oid::SIGNING_CERTIFICATE, &v1));
    }
    if matches!(o.ess, Ess::V2 | Ess::Both) {
        let v2 = SigningCertificateV2 {
            certs: vec![EssCertIdV2 {
                hash_algorithm: None,
                cert_hash: OctetString::new(HashAlg::Sha256.digest(ess_cert)).unwrap(),
                issuer_serial: Some(issuer_serial),
            }],
            policies: None,
        };
        attrs.push(attr(oid::SIGNING_CERTIFICATE_V2, &v2));
    }
    let signed_attrs = SetOfVec::try_from(attrs).unwrap();
    let signature = key.sign(&signed_attrs.to_der().unwrap());
    let tbs = &signer.cert.tbs_certificate;
    let (sid, version) = if o.sid_ski {
        let ski = key_id(&tbs.subject_public_key_info);
        (
            SignerIdentifier::SubjectKeyIdentifier(SubjectKeyIdentifier(ski)),
            CmsVersion::V3,
        )
    } else {
        (
            SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
                issuer: tbs.issuer.clone(),
                serial_number: tbs.serial_number.clone(),
            }),
            CmsVersion::V1,
        )
    };
    let digest_alg = AlgorithmIdentifierOwned {
        oid: key.digest_oid(),
        parameters: None,
    };
    let info = SignerInfo {
        version,
        sid,
        digest_alg: digest_alg.clone(),
        signed_attrs: Some(signed_attrs),
        signature_algorithm: key.sig_alg(),
        signature: OctetString::new(signature).unwrap(),
        unsigned_attrs: None,
    };
    let mut infos = vec![info.clone()];
    if o.extra_signer {
        let mut other = info;
        other.signature = OctetString::new(vec![0x30, 0x00]).unwrap();
        infos.push(other);
    }
    let certs: Vec<CertificateChoices> = o
        .certs
        .iter()
        .map(|c| CertificateChoices::Certificate(Certificate::from_der(c).unwrap()))
        .collect();
    let sd = SignedData {
        version: CmsVersion::V3,
        digest_algorithms: SetOfVec::try_from(vec![digest_alg]).unwrap(),
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: o.econtent_type,
            econtent: Some(Any::new(Tag::OctetString, tst_der).unwrap()),
        },
        certificates: if certs.is_empty() {
            None
        } else {
            Some(CertificateSet::try_from(certs).unwrap())
        },
        crls: None,
        signer_infos: SignerInfos::try_from(infos).unwrap(),
    };
    ContentInfo {
        content_type: oid::SIGNED_DATA,
        content: Any::encode_from(&sd).unwrap(),
    }
    .to_der()
    .unwrap()
}

/// A root (P-256) and a TSA certificate (P-256) it issued.
pub fn root_and_tsa() -> (Issued, Issued) {
    let root = issue("Test Root", Key::p256(), None, &CertOpts::ca());
    let tsa = issue("Test TSA", Key::p256(), Some(&root), &CertOpts::tsa());
    (root, tsa)
}
