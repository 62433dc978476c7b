//! Time-stamp token verification (RFC 3161 §2.4.2, RFC 5652 §5, RFC 5816).

use cms::cert::IssuerAndSerialNumber;
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{EncapsulatedContentInfo, SignerIdentifier, SignerInfo};
use der::asn1::{Int, ObjectIdentifier, OctetString};
use der::{Decode, DecodeOwned, Encode, Tag, Tagged};
use serde::{Deserialize, Serialize};
use x509_cert::attr::Attribute;
use x509_cert::ext::pkix::name::GeneralName;

use super::asn1::{oid, IssuerSerial, SigningCertificate, SigningCertificateV2, Tlv, TstInfo};
use super::chain::{verify_chain, ParsedCert, TsaRoots};
use super::crypto::{self, HashAlg, SigFailure};
use super::time::parse_generalized_time;
use super::MAX_TOKEN_SIZE;
use crate::error::TimestampError;

/// What a verified token states.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifiedTimestamp {
    /// TSTInfo.genTime, Unix seconds (any fraction dropped).
    pub gen_time: i64,
    /// TSTInfo.genTime as RFC 3339 UTC, fractional seconds kept as given.
    pub gen_time_rfc3339: String,
    /// TSTInfo.serialNumber, lowercase hex without leading zero bytes.
    pub serial_hex: String,
    /// TSTInfo.policy, dotted OID.
    pub policy: String,
    /// Subject of the signer certificate, RFC 4514 style.
    pub tsa_subject: String,
    /// TSTInfo.nonce; `None` if absent, or if it does not fit a u64 and none was expected.
    pub nonce: Option<u64>,
    /// Hash algorithm of the message imprint: `sha256`, `sha384` or `sha512`.
    pub imprint_algorithm: String,
    /// Subjects of the verified chain, from the signer certificate to the trusted root.
    pub chain: Vec<String>,
}

fn malformed(what: impl std::fmt::Display) -> TimestampError {
    TimestampError::Malformed(what.to_string())
}

fn der_err(what: &'static str) -> impl Fn(der::Error) -> TimestampError {
    move |e| TimestampError::Malformed(format!("{what}: {e}"))
}

/// Verifies a token (DER ContentInfo, id-signedData) as a time-stamp of `message`.
///
/// Checks, in order: the size limit; the CMS structure (RFC 5652 §3, §5.1, §5.2) with
/// eContentType id-ct-TSTInfo and exactly one SignerInfo (RFC 3161 §2.4.2); the signed
/// attributes (content-type, message-digest, ESS signing-certificate or -v2) and the
/// signature over them; the TSTInfo (version, imprint, nonce, tsa name); the signer
/// certificate's usage and validity at genTime; and its chain to `roots`.
pub fn verify_token(
    token: &[u8],
    message: &[u8],
    expected_nonce: Option<u64>,
    roots: &TsaRoots,
) -> Result<VerifiedTimestamp, TimestampError> {
    if token.len() > MAX_TOKEN_SIZE {
        return Err(TimestampError::TooLarge);
    }
    let parts = Parts::parse(token)?;
    let signer = parts.find_signer(roots)?;
    parts.check_signed_attributes(&signer)?;
    parts.check_signature(&signer)?;

    let tst = TstInfo::from_der(parts.tst_info_der).map_err(der_err("TSTInfo"))?;
    // RFC 3161 §2.4.2: version v1(1).
    if tst.version.as_bytes() != [1] {
        return Err(malformed(format!(
            "TSTInfo version is {}, only v1 (1) exists",
            int_text(&tst.version)
        )));
    }
    let imprint_alg = check_imprint(&tst, message)?;
    let nonce = check_nonce(&tst, expected_nonce)?;
    if tst.gen_time.tag() != Tag::GeneralizedTime {
        return Err(malformed("TSTInfo genTime is not a GeneralizedTime"));
    }
    let gen_time = parse_generalized_time(tst.gen_time.value())?;
    check_tsa_name(&tst, &signer)?;

    // RFC 3161 §2.3 / RFC 5280 §6: the signer is a time-stamping certificate, valid when
    // it signed, issued through a chain of CAs valid then too, up to a trusted root.
    signer.check_timestamping()?;
    signer.check_valid_at(&gen_time)?;
    let chain = verify_chain(&signer, &parts.certs, roots, &gen_time)?;

    Ok(VerifiedTimestamp {
        gen_time: gen_time.secs,
        gen_time_rfc3339: gen_time.rfc3339,
        serial_hex: serial_hex(&tst.serial_number),
        policy: tst.policy.to_string(),
        tsa_subject: signer.subject(),
        nonce,
        imprint_algorithm: imprint_alg.name().to_string(),
        chain,
    })
}

/// The pieces of a token, with the exact bytes that are hashed and signed.
struct Parts<'a> {
    /// The eContent: the DER TSTInfo (RFC 5652 §5.2).
    tst_info_der: &'a [u8],
    /// The certificates of the SignedData (RFC 5652 §10.2.3; only X.509 ones).
    certs: Vec<ParsedCert>,
    /// Why certificates of the SignedData could not be parsed.
    unparsed: Vec<String>,
    signer_info: SignerInfo,
    /// The signed attributes re-tagged as `SET OF` (RFC 5652 §5.4): the signed bytes.
    signed_attrs_der: Vec<u8>,
    digest: HashAlg,
}

impl<'a> Parts<'a> {
    fn parse(token: &'a [u8]) -> Result<Self, TimestampError> {
        // RFC 5652 §3: ContentInfo ::= SEQUENCE { contentType, [0] EXPLICIT content }.
        let info = Tlv::parse(token).map_err(der_err("token is not one DER element"))?;
        ContentInfo::from_der(token)
            .map_err(der_err("token ContentInfo"))
            .and_then(|ci| {
                // RFC 3161 §2.4.2: the token is a ContentInfo of type id-signedData.
                if ci.content_type == oid::SIGNED_DATA {
                    Ok(())
                } else {
                    Err(malformed(format!(
                        "token content type is {}, expected id-signedData",
                        crypto::oid_name(&ci.content_type)
                    )))
                }
            })?;
        let content = info
            .children()
            .map_err(der_err("token ContentInfo"))?
            .get(1)
            .and_then(|explicit| explicit.children().ok())
            .and_then(|inner| inner.first().copied())
            .ok_or_else(|| malformed("token ContentInfo has no content"))?;

        // RFC 5652 §5.1: SignedData ::= SEQUENCE { version, digestAlgorithms,
        // encapContentInfo, [0] certificates OPTIONAL, [1] crls OPTIONAL, signerInfos }.
        let fields = content.children().map_err(der_err("SignedData"))?;
        if content.tag != Tag::Sequence || fields.len() < 4 {
            return Err(malformed(
                "SignedData is not a SEQUENCE of at least 4 elements",
            ));
        }
        // RFC 5652 §5.1: version 3 when eContentType is not id-data (4 and 5 with other
        // certificate or CRL formats).
        let version = u8::from_der(fields[0].full).map_err(der_err("SignedData version"))?;
        if !(3..=5).contains(&version) {
            return Err(malformed(format!(
                "SignedData version is {version}; RFC 5652 §5.1 requires 3 (or 4, 5) for TSTInfo content"
            )));
        }
        let digest_algorithms =
            der::asn1::SetOfVec::<spki::AlgorithmIdentifierOwned>::from_der(fields[1].full)
                .map_err(der_err("SignedData digestAlgorithms"))?;
        let encap = EncapsulatedContentInfo::from_der(fields[2].full)
            .map_err(der_err("SignedData encapContentInfo"))?;
        if encap.econtent_type != oid::TST_INFO {
            return Err(malformed(format!(
                "eContentType is {}, expected id-ct-TSTInfo (RFC 3161 §2.4.2)",
                crypto::oid_name(&encap.econtent_type)
            )));
        }
        // The eContent, [0] EXPLICIT OCTET STRING, holds the DER TSTInfo.
        let tst_info_der = Tlv::parse(fields[2].full)
            .and_then(|t| t.children())
            .ok()
            .and_then(|c| c.get(1).copied())
            .filter(|explicit| {
                explicit.tag
                    == Tag::ContextSpecific {
                        constructed: true,
                        number: der::TagNumber::N0,
                    }
            })
            .and_then(|explicit| explicit.children().ok())
            .and_then(|c| c.first().copied())
            .filter(|octets| octets.tag == Tag::OctetString)
            .map(|octets| octets.value)
            .ok_or_else(|| malformed("encapContentInfo has no eContent OCTET STRING"))?;

        let (mut certs, mut unparsed) = (Vec::new(), Vec::new());
        for f in &fields[3..fields.len() - 1] {
            match f.tag {
                Tag::ContextSpecific { number, .. } if number == der::TagNumber::N0 => {
                    for c in f.children().map_err(der_err("SignedData certificates"))? {
                        // Other CertificateChoices (attribute certificates, [1]..[3]) are
                        // not used to verify a time-stamp.
                        // A certificate this parser refuses cannot be in the chain; it is
                        // skipped (and reported if the signer is then not found).
                        if c.tag == Tag::Sequence {
                            match ParsedCert::parse(c.full) {
                                Ok(cert) => certs.push(cert),
                                Err(e) => unparsed.push(e.to_string()),
                            }
                        }
                    }
                }
                Tag::ContextSpecific { number, .. } if number == der::TagNumber::N1 => {}
                other => return Err(malformed(format!("unexpected {other} in SignedData"))),
            }
        }

        let signer_infos = fields[fields.len() - 1];
        if signer_infos.tag != Tag::Set {
            return Err(malformed("SignedData signerInfos is not a SET"));
        }
        let infos = signer_infos.children().map_err(der_err("signerInfos"))?;
        // RFC 3161 §2.4.2: the token MUST NOT contain any signature other than the TSA's.
        let [info] = infos.as_slice() else {
            return Err(malformed(format!(
                "token has {} SignerInfos, RFC 3161 §2.4.2 allows exactly one",
                infos.len()
            )));
        };
        let signer_info = SignerInfo::from_der(info.full).map_err(der_err("SignerInfo"))?;
        let signed_attrs_der = info
            .children()
            .map_err(der_err("SignerInfo"))?
            .into_iter()
            .find(|c| {
                c.tag
                    == Tag::ContextSpecific {
                        constructed: true,
                        number: der::TagNumber::N0,
                    }
            })
            .map(|c| {
                // RFC 5652 §5.4: the digest is over the EXPLICIT SET OF encoding, i.e. the
                // [0] IMPLICIT tag replaced by the universal SET tag.
                let mut v = c.full.to_vec();
                v[0] = 0x31;
                v
            })
            // RFC 5652 §5.3: signedAttrs MUST be present when the content is not id-data.
            .ok_or_else(|| malformed("SignerInfo has no signed attributes (RFC 5652 §5.3)"))?;
        let digest =
            crypto::digest_algorithm(&signer_info.digest_alg, "SignerInfo digestAlgorithm")?;
        // RFC 5652 §5.1: digestAlgorithms lists the digest algorithms of the signers.
        if !digest_algorithms
            .iter()
            .any(|a| a.oid == signer_info.digest_alg.oid)
        {
            return Err(malformed(format!(
                "SignedData digestAlgorithms does not list the signer's {}",
                digest.name()
            )));
        }
        // RFC 5652 §5.3: SignerInfo version 1 with issuerAndSerialNumber, 3 with
        // subjectKeyIdentifier.
        let expected = match signer_info.sid {
            SignerIdentifier::IssuerAndSerialNumber(_) => CmsVersion::V1,
            SignerIdentifier::SubjectKeyIdentifier(_) => CmsVersion::V3,
        };
        if signer_info.version != expected {
            return Err(malformed(format!(
                "SignerInfo version is {:?}, its sid requires {expected:?} (RFC 5652 §5.3)",
                signer_info.version
            )));
        }
        Ok(Parts {
            tst_info_der,
            certs,
            unparsed,
            signer_info,
            signed_attrs_der,
            digest,
        })
    }

    /// The certificate named by the SignerInfo's sid (RFC 5652 §5.3), looked up in the
    /// token's certificates, then among the roots (a token may omit a certificate the
    /// relying party already has).
    fn find_signer(&self, roots: &TsaRoots) -> Result<ParsedCert, TimestampError> {
        let matches = |c: &ParsedCert| match &self.signer_info.sid {
            SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
                issuer,
                serial_number,
            }) => {
                issuer.to_der().ok().as_deref() == Some(c.issuer_der())
                    && serial_number.as_bytes() == c.serial()
            }
            SignerIdentifier::SubjectKeyIdentifier(ski) => {
                c.subject_key_id().as_deref() == Some(ski.0.as_bytes())
            }
        };
        self.certs
            .iter()
            .chain(roots.certs())
            .find(|c| matches(c))
            .cloned()
            .ok_or_else(|| {
                let skipped = if self.unparsed.is_empty() {
                    String::new()
                } else {
                    format!(
                        " ({} certificate(s) of the token could not be parsed: {})",
                        self.unparsed.len(),
                        self.unparsed.join("; ")
                    )
                };
                let what = match &self.signer_info.sid {
                    SignerIdentifier::IssuerAndSerialNumber(i) => format!(
                        "issuer {} serial {} is neither in the token nor a trusted root",
                        i.issuer,
                        hex(i.serial_number.as_bytes())
                    ),
                    SignerIdentifier::SubjectKeyIdentifier(s) => format!(
                        "subjectKeyIdentifier {} is neither in the token nor a trusted root",
                        hex(s.0.as_bytes())
                    ),
                };
                TimestampError::SignerNotFound(format!("{what}{skipped}"))
            })
    }

    fn check_signed_attributes(&self, signer: &ParsedCert) -> Result<(), TimestampError> {
        let attrs = self
            .signer_info
            .signed_attrs
            .as_ref()
            .ok_or_else(|| malformed("SignerInfo has no signed attributes"))?;

        // RFC 5652 §11.1: content-type equals the eContentType.
        let ct: ObjectIdentifier =
            single_value(attrs.iter(), oid::CONTENT_TYPE, "content-type")?
                .ok_or_else(|| malformed("signed attributes lack content-type (RFC 5652 §11.1)"))?;
        if ct != oid::TST_INFO {
            return Err(malformed(format!(
                "content-type attribute is {}, expected id-ct-TSTInfo",
                crypto::oid_name(&ct)
            )));
        }

        // RFC 5652 §11.2: message-digest is the digest of the eContent's value octets.
        let md: OctetString = single_value(attrs.iter(), oid::MESSAGE_DIGEST, "message-digest")?
            .ok_or_else(|| malformed("signed attributes lack message-digest (RFC 5652 §11.2)"))?;
        if md.as_bytes() != self.digest.digest(self.tst_info_der) {
            return Err(TimestampError::BadSignature);
        }

        // RFC 3161 §2.4.1 / RFC 5816 §2.2.1: the signer certificate is bound by an ESS
        // signing-certificate (SHA-1) or signing-certificate-v2 attribute whose first
        // ESSCertID identifies it.
        let v1: Option<SigningCertificate> = single_value(
            attrs.iter(),
            oid::SIGNING_CERTIFICATE,
            "signing-certificate",
        )?;
        let v2: Option<SigningCertificateV2> = single_value(
            attrs.iter(),
            oid::SIGNING_CERTIFICATE_V2,
            "signing-certificate-v2",
        )?;
        if v1.is_none() && v2.is_none() {
            return Err(malformed(
                "signed attributes have neither ESS signing-certificate nor signing-certificate-v2 (RFC 3161 §2.4.1, RFC 5816)",
            ));
        }
        if let Some(v1) = v1 {
            let first = v1
                .certs
                .first()
                .ok_or_else(|| malformed("signing-certificate lists no certificate"))?;
            check_cert_id(
                signer,
                HashAlg::Sha1,
                &first.cert_hash,
                first.issuer_serial.as_ref(),
            )?;
        }
        if let Some(v2) = v2 {
            let first = v2
                .certs
                .first()
                .ok_or_else(|| malformed("signing-certificate-v2 lists no certificate"))?;
            let hash = match &first.hash_algorithm {
                None => HashAlg::Sha256, // DEFAULT id-sha256 (RFC 5035 §4)
                Some(alg) => crypto::digest_algorithm(alg, "ESSCertIDv2 hashAlgorithm")?,
            };
            check_cert_id(signer, hash, &first.cert_hash, first.issuer_serial.as_ref())?;
        }
        Ok(())
    }

    /// RFC 5652 §5.6: the signature over the DER signed attributes, with the signer's key.
    fn check_signature(&self, signer: &ParsedCert) -> Result<(), TimestampError> {
        crypto::verify_signature(
            &signer.cert.tbs_certificate.subject_public_key_info,
            &self.signer_info.signature_algorithm,
            Some(self.digest),
            &self.signed_attrs_der,
            self.signer_info.signature.as_bytes(),
        )
        .map_err(|f| match f {
            SigFailure::Unusable(e) => e,
            SigFailure::Invalid => TimestampError::BadSignature,
        })
    }
}

/// The single value of the attribute `id`, if present. RFC 5652 §5.3 / §11: these
/// attributes MUST NOT appear twice and MUST have exactly one value.
fn single_value<'a, T: DecodeOwned>(
    mut attrs: impl Iterator<Item = &'a Attribute>,
    id: ObjectIdentifier,
    name: &str,
) -> Result<Option<T>, TimestampError> {
    let Some(attr) = attrs.find(|a| a.oid == id) else {
        return Ok(None);
    };
    if attrs.any(|a| a.oid == id) {
        return Err(malformed(format!("{name} attribute appears twice")));
    }
    let [value] = attr.values.as_slice() else {
        return Err(malformed(format!(
            "{name} attribute has {} values, expected one",
            attr.values.len()
        )));
    };
    value
        .to_der()
        .and_then(|der| T::from_der(&der))
        .map(Some)
        .map_err(|e| malformed(format!("{name} attribute: {e}")))
}

/// An ESSCertID(v2) identifies `signer`: its certHash is the hash of the whole signer
/// certificate, and its issuerSerial, if present, names the signer's issuer and serial
/// (RFC 2634 §5.4.1, RFC 5035 §4).
fn check_cert_id(
    signer: &ParsedCert,
    hash: HashAlg,
    cert_hash: &OctetString,
    issuer_serial: Option<&IssuerSerial>,
) -> Result<(), TimestampError> {
    if cert_hash.as_bytes() != hash.digest(&signer.der) {
        return Err(TimestampError::SigningCertificateMismatch(format!(
            "the {} certHash is not the hash of {}",
            hash.name(),
            signer.subject()
        )));
    }
    if let Some(is) = issuer_serial {
        let names_issuer = is.issuer.iter().any(|n| match n {
            GeneralName::DirectoryName(name) => {
                name.to_der().ok().as_deref() == Some(signer.issuer_der())
            }
            _ => false,
        });
        if !names_issuer || is.serial_number.as_bytes() != signer.serial() {
            return Err(TimestampError::SigningCertificateMismatch(format!(
                "issuerSerial does not name {} (issuer {}, serial {})",
                signer.subject(),
                signer.issuer(),
                hex(signer.serial())
            )));
        }
    }
    Ok(())
}

/// RFC 3161 §2.4.2: the messageImprint is the hash of the time-stamped data. SHA-256 is
/// what this crate requests; SHA-384/512 tokens from other requesters are accepted too.
fn check_imprint(tst: &TstInfo, message: &[u8]) -> Result<HashAlg, TimestampError> {
    let alg = crypto::digest_algorithm(
        &spki::AlgorithmIdentifierOwned {
            oid: tst.message_imprint.hash_algorithm.oid,
            parameters: tst.message_imprint.hash_algorithm.parameters.clone(),
        },
        "messageImprint hashAlgorithm",
    )?;
    if tst.message_imprint.hashed_message.as_bytes() != alg.digest(message) {
        return Err(TimestampError::ImprintMismatch);
    }
    Ok(alg)
}

/// RFC 3161 §2.4.2: the nonce MUST be present, with the same value, when the request had
/// one. A nonce that does not fit a u64 cannot be ours; without an expectation it is
/// reported as absent.
fn check_nonce(tst: &TstInfo, expected: Option<u64>) -> Result<Option<u64>, TimestampError> {
    let got = tst.nonce.as_ref().and_then(int_to_u64);
    match (expected, &tst.nonce) {
        (None, _) => Ok(got),
        (Some(e), None) => Err(TimestampError::MissingNonce { expected: e }),
        (Some(e), Some(_)) if got == Some(e) => Ok(got),
        (Some(e), Some(n)) => Err(TimestampError::NonceMismatch {
            expected: e,
            got: int_text(n),
        }),
    }
}

/// RFC 3161 §2.4.2: when present, `tsa` MUST correspond to one of the subject names of the
/// certificate used to verify the token: its subject, or an entry of its subjectAltName.
fn check_tsa_name(tst: &TstInfo, signer: &ParsedCert) -> Result<(), TimestampError> {
    let Some(tsa) = &tst.tsa else {
        return Ok(());
    };
    if let GeneralName::DirectoryName(name) = tsa {
        if name.to_der().ok().as_deref() == Some(signer.subject_der()) {
            return Ok(());
        }
    }
    let in_san = signer
        .cert
        .tbs_certificate
        .extensions
        .as_deref()
        .unwrap_or(&[])
        .iter()
        .filter(|e| e.extn_id == oid::SUBJECT_ALT_NAME)
        .filter_map(|e| {
            x509_cert::ext::pkix::SubjectAltName::from_der(e.extn_value.as_bytes()).ok()
        })
        .any(|san| san.0.contains(tsa));
    if in_san {
        return Ok(());
    }
    Err(TimestampError::TsaNameMismatch {
        tsa: match tsa {
            GeneralName::DirectoryName(n) => n.to_string(),
            other => format!("{other:?}"),
        },
        subject: signer.subject(),
    })
}

fn int_to_u64(n: &Int) -> Option<u64> {
    let b = n.as_bytes();
    if b.first().is_some_and(|x| x & 0x80 != 0) {
        return None; // negative
    }
    let b = strip_zeros(b);
    if b.len() > 8 {
        return None;
    }
    Some(b.iter().fold(0u64, |acc, x| (acc << 8) | u64::from(*x)))
}

/// An INTEGER for messages: decimal when it fits a u64, else hex.
fn int_text(n: &Int) -> String {
    match int_to_u64(n) {
        Some(v) => v.to_string(),
        None => format!("0x{}", hex(n.as_bytes())),
    }
}

/// A positive serial number as lowercase hex without leading zero bytes (`00` for zero).
fn serial_hex(n: &Int) -> String {
    let s = hex(strip_zeros(n.as_bytes()));
    if s.is_empty() {
        "00".into()
    } else {
        s
    }
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|x| *x != 0).unwrap_or(b.len());
    &b[start..]
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
