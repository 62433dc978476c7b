//! The authority proper: answers a DER `TimeStampReq` with a DER `TimeStampResp`
//! (RFC 3161 §2.4), signing tokens with ECDSA P-256 / SHA-256.

use anyhow::{bail, Context, Result};
use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use der::asn1::{BitString, GeneralizedTime, Int, OctetString, SetOfVec};
use der::{Any, Decode, Encode, Tag};
use ledger_client::timestamp::asn1::{
    fail_info, oid, status, EssCertIdV2, IssuerSerial, PkiStatusInfo, PolicyOid,
    SigningCertificateV2, TimeStampReq, TimeStampResp, TstInfo,
};
use ledger_client::timestamp::{verify_token, TimestampRequest, TsaRoots};
use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::DecodePrivateKey;
use sha2::{Digest, Sha256};
use spki::AlgorithmIdentifierOwned;
use std::path::Path;
use std::time::SystemTime;
use x509_cert::attr::Attribute;
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::Certificate;

use super::certs::{ecdsa_sha256, pem, random_serial, spki_of};

/// The default TSA policy (RFC 3161 §2.4.2 `policy`): an OID under the UUID arc 2.25
/// (ITU-T X.667 lets anyone derive one from a random UUID; this one is
/// cc564f81-1d69-4754-9b01-d743cc0882fd). It names this ledger's policy: genTime from
/// the host's clock, in UTC, to the millisecond, no accuracy claimed.
pub const DEFAULT_POLICY: &str = "2.25.271610661209850825415088078611341148925";

/// Largest request [`Authority::respond`] parses; real requests are under 200 bytes.
pub const MAX_REQUEST_SIZE: usize = 16 * 1024;

/// An RFC 3161 time-stamping authority: a P-256 key and its certificate chain.
pub struct Authority {
    key: SigningKey,
    /// DER certificates: the signer first, then its issuers (as loaded).
    chain: Vec<Vec<u8>>,
    signer: Certificate,
    policy: PolicyOid,
    /// The signed attribute binding the signer certificate (RFC 5816 §2.2.1), the same in
    /// every token.
    signing_certificate: Attribute,
}

/// Why a request is refused: a PKIFailureInfo bit and a statusString (RFC 3161 §2.4.2).
struct Refusal {
    bit: usize,
    text: String,
}

fn refuse(bit: usize, text: impl Into<String>) -> Refusal {
    Refusal {
        bit,
        text: text.into(),
    }
}

impl Authority {
    /// Loads a PKCS#8 PEM P-256 private key (which must be mode 0600) and a PEM chain
    /// (the TSA certificate first, then its issuers up to and including the root).
    ///
    /// Refuses, at load rather than at the first request: a certificate whose
    /// extendedKeyUsage is not exactly a critical id-kp-timeStamping (RFC 3161 §2.3), a
    /// certificate whose public key is not the key's, and a chain that does not verify now
    /// up to its last certificate (checked by time-stamping a test message and verifying
    /// the token as a client would).
    pub fn from_files(key_pem: &Path, chain_pem: &Path) -> Result<Self> {
        let key_text = crate::keys::read_private(key_pem, "TSA private key")?;
        let chain_text = std::fs::read(chain_pem)
            .with_context(|| format!("reading TSA certificate chain {}", chain_pem.display()))?;
        Self::from_pem(&key_text, &chain_text).with_context(|| {
            format!(
                "TSA key {} and chain {}",
                key_pem.display(),
                chain_pem.display()
            )
        })
    }

    /// [`Authority::from_files`] on PEM text already read.
    pub fn from_pem(key_pem: &str, chain_pem: &[u8]) -> Result<Self> {
        let authority = Self::from_pem_unchecked(key_pem, chain_pem).context("loading the TSA")?;
        authority.self_test()?;
        Ok(authority)
    }

    /// [`Authority::from_parts_unchecked`] on PEM text: a PKCS#8 P-256 key and a chain.
    #[doc(hidden)]
    pub fn from_pem_unchecked(key_pem: &str, chain_pem: &[u8]) -> Result<Self> {
        let key = p256::SecretKey::from_pkcs8_pem(key_pem)
            .map(SigningKey::from)
            .map_err(|e| anyhow::anyhow!("not a PKCS#8 PEM P-256 private key: {e}"))?;
        let chain = ledger_client::timestamp::certificates_from_pem(chain_pem)
            .map_err(|e| anyhow::anyhow!("certificate chain: {e}"))?;
        Self::from_parts_unchecked(key, chain)
    }

    /// An authority without the load-time checks of [`Authority::from_files`] (beyond the
    /// key matching the certificate): tests use it to issue tokens from expired or
    /// non-time-stamping certificates, which verifiers must refuse.
    #[doc(hidden)]
    pub fn from_parts_unchecked(key: SigningKey, chain: Vec<Vec<u8>>) -> Result<Self> {
        let Some(first) = chain.first() else {
            bail!("the TSA certificate chain has no certificate");
        };
        let signer = Certificate::from_der(first).context("TSA certificate")?;
        if signer.tbs_certificate.subject_public_key_info != spki_of(&key)? {
            bail!(
                "the TSA certificate ({}) is not for this key: its public key differs",
                signer.tbs_certificate.subject
            );
        }
        let cert_hash = Sha256::digest(first);
        let ess = SigningCertificateV2 {
            certs: vec![EssCertIdV2 {
                hash_algorithm: None, // DEFAULT id-sha256 (RFC 5035 §4): omitted in DER
                cert_hash: OctetString::new(cert_hash.to_vec())?,
                issuer_serial: Some(IssuerSerial {
                    issuer: vec![GeneralName::DirectoryName(
                        signer.tbs_certificate.issuer.clone(),
                    )],
                    serial_number: Int::new(signer.tbs_certificate.serial_number.as_bytes())?,
                }),
            }],
            policies: None,
        };
        let signing_certificate = attribute(oid::SIGNING_CERTIFICATE_V2, &ess)?;
        Ok(Authority {
            key,
            chain,
            signer,
            policy: DEFAULT_POLICY.parse().map_err(anyhow::Error::msg)?,
            signing_certificate,
        })
    }

    /// Uses `policy` (dotted OID) instead of [`DEFAULT_POLICY`].
    pub fn with_policy(mut self, policy: &str) -> Result<Self> {
        self.policy = policy
            .parse()
            .map_err(|e| anyhow::anyhow!("TSA policy: {e}"))?;
        Ok(self)
    }

    /// The policy OID, dotted.
    pub fn policy(&self) -> String {
        self.policy.to_string()
    }

    /// Subject of the TSA certificate.
    pub fn subject(&self) -> String {
        self.signer.tbs_certificate.subject.to_string()
    }

    /// The certificate chain as PEM, TSA certificate first.
    pub fn chain_pem(&self) -> Result<String> {
        self.chain.iter().map(|c| pem(c)).collect()
    }

    /// Time-stamps a test message and verifies the token against the chain's last
    /// certificate, now: whatever a client would refuse is refused at load.
    fn self_test(&self) -> Result<()> {
        let root = self.chain.last().cloned().into_iter().collect::<Vec<_>>();
        let roots = TsaRoots::from_der(&root).map_err(|e| anyhow::anyhow!("{e}"))?;
        let message = b"ledger TSA self-test";
        let req = TimestampRequest::new(message, 1);
        let resp = self.respond(&req.der, SystemTime::now());
        let token = ledger_client::timestamp::token_from_response(&resp)
            .map_err(|e| anyhow::anyhow!("self-test request refused: {e}"))?;
        verify_token(&token, message, Some(1), &roots).map_err(|e| {
            anyhow::anyhow!("the TSA's tokens would not verify against its own chain: {e}")
        })?;
        Ok(())
    }

    /// Answers a DER `TimeStampReq` with a DER `TimeStampResp` (RFC 3161 §2.4.2): granted
    /// with a token, or a rejection whose failInfo says why:
    ///
    /// * badDataFormat: not a DER TimeStampReq, or larger than [`MAX_REQUEST_SIZE`];
    /// * badRequest: a version other than v1;
    /// * badAlg: an imprint algorithm other than SHA-256/384/512, or an imprint of the
    ///   wrong length for it;
    /// * unacceptedPolicy: a reqPolicy other than ours;
    /// * unacceptedExtension: any request extension (we support none);
    /// * systemFailure: the token could not be encoded (or the clock is before 1970).
    pub fn respond(&self, request_der: &[u8], now: SystemTime) -> Vec<u8> {
        let resp = match self.grant(request_der, now) {
            Ok(token) => TimeStampResp {
                status: PkiStatusInfo {
                    status: status::GRANTED,
                    status_string: None,
                    fail_info: None,
                },
                time_stamp_token: Some(token),
            },
            Err(r) => {
                let (unused, bytes) = fail_info::encode(r.bit);
                TimeStampResp {
                    status: PkiStatusInfo {
                        status: status::REJECTION,
                        status_string: Some(vec![r.text]),
                        fail_info: BitString::new(unused, bytes).ok(),
                    },
                    time_stamp_token: None,
                }
            }
        };
        // Every part is valid by construction; should encoding ever fail, answer with the
        // smallest valid rejection rather than nothing: SEQUENCE { SEQUENCE { 2 } }.
        resp.to_der()
            .unwrap_or_else(|_| vec![0x30, 0x05, 0x30, 0x03, 0x02, 0x01, 0x02])
    }

    fn grant(&self, request_der: &[u8], now: SystemTime) -> Result<Any, Refusal> {
        use fail_info::*;
        if request_der.len() > MAX_REQUEST_SIZE {
            return Err(refuse(
                BAD_DATA_FORMAT,
                format!("the request is larger than {MAX_REQUEST_SIZE} bytes"),
            ));
        }
        let req = TimeStampReq::from_der(request_der).map_err(|e| {
            refuse(
                BAD_DATA_FORMAT,
                format!("the request is not a DER TimeStampReq: {e}"),
            )
        })?;
        if req.version.as_bytes() != [1] {
            return Err(refuse(
                BAD_REQUEST,
                "only TimeStampReq version 1 exists (RFC 3161 §2.4.1)",
            ));
        }
        // RFC 3161 §2.4.1: "the server SHALL respond with unacceptedExtension" for an
        // extension it does not recognize; this authority recognizes none.
        if req.extensions.as_ref().is_some_and(|e| !e.is_empty()) {
            return Err(refuse(
                UNACCEPTED_EXTENSION,
                "this authority supports no request extensions",
            ));
        }
        if let Some(p) = &req.req_policy {
            if *p != self.policy {
                return Err(refuse(
                    UNACCEPTED_POLICY,
                    format!("the only policy of this authority is {}", self.policy),
                ));
            }
        }
        let imprint = &req.message_imprint;
        let expected_len = match imprint.hash_algorithm.oid {
            oid::SHA256 => 32,
            oid::SHA384 => 48,
            oid::SHA512 => 64,
            other => {
                return Err(refuse(
                    BAD_ALG,
                    format!("imprint algorithm {other} is not SHA-256, SHA-384 or SHA-512"),
                ))
            }
        };
        if imprint
            .hash_algorithm
            .parameters
            .as_ref()
            .is_some_and(|p| !p.is_null())
        {
            return Err(refuse(
                BAD_ALG,
                "imprint algorithm parameters must be absent or NULL",
            ));
        }
        let got_len = imprint.hashed_message.as_bytes().len();
        if got_len != expected_len {
            return Err(refuse(
                BAD_ALG,
                format!("the imprint is {got_len} bytes, its algorithm makes {expected_len}"),
            ));
        }
        let gen_time =
            gen_time(now).ok_or_else(|| refuse(SYSTEM_FAILURE, "the clock is unusable"))?;
        self.token(&req, gen_time)
            .map_err(|e| refuse(SYSTEM_FAILURE, format!("could not encode the token: {e}")))
    }

    /// The token: CMS SignedData (RFC 5652 §5) over the TSTInfo (RFC 3161 §2.4.2), signed
    /// attributes content-type, message-digest and ESS signing-certificate-v2 (RFC 5816),
    /// the certificate chain included when asked for (RFC 3161 §2.4.1 certReq).
    fn token(&self, req: &TimeStampReq, gen_time: Any) -> der::Result<Any> {
        use p256::ecdsa::signature::Signer;
        let serial = random_serial();
        let tst = TstInfo {
            version: Int::new(&[1])?,
            policy: self.policy.clone(),
            // RFC 3161 §2.4.2: "MUST have the same value as the similar field in
            // TimeStampReq".
            message_imprint: req.message_imprint.clone(),
            serial_number: Int::new(&serial)?,
            gen_time,
            accuracy: None,
            ordering: false,
            nonce: req.nonce.clone(),
            tsa: None,
            extensions: None,
        };
        let tst_der = tst.to_der()?;
        let signed_attrs: SetOfVec<Attribute> = SetOfVec::try_from(vec![
            attribute(oid::CONTENT_TYPE, &oid::TST_INFO)?,
            attribute(
                oid::MESSAGE_DIGEST,
                &OctetString::new(Sha256::digest(&tst_der).to_vec())?,
            )?,
            self.signing_certificate.clone(),
        ])?;
        // RFC 5652 §5.4: the signature covers the DER encoding of the SET OF attributes.
        let signature: DerSignature = self.key.sign(&signed_attrs.to_der()?);
        let sha256 = AlgorithmIdentifierOwned {
            oid: oid::SHA256,
            parameters: None,
        };
        let signer_info = SignerInfo {
            version: CmsVersion::V1,
            sid: SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
                issuer: self.signer.tbs_certificate.issuer.clone(),
                serial_number: self.signer.tbs_certificate.serial_number.clone(),
            }),
            digest_alg: sha256.clone(),
            signed_attrs: Some(signed_attrs),
            signature_algorithm: ecdsa_sha256(),
            signature: OctetString::new(signature.as_bytes())?,
            unsigned_attrs: None,
        };
        let certificates = if req.cert_req {
            let certs = self
                .chain
                .iter()
                .map(|c| Certificate::from_der(c).map(CertificateChoices::Certificate))
                .collect::<der::Result<Vec<_>>>()?;
            Some(CertificateSet::try_from(certs)?)
        } else {
            None
        };
        let signed_data = SignedData {
            version: CmsVersion::V3,
            digest_algorithms: SetOfVec::try_from(vec![sha256])?,
            encap_content_info: EncapsulatedContentInfo {
                econtent_type: oid::TST_INFO,
                econtent: Some(Any::new(Tag::OctetString, tst_der)?),
            },
            certificates,
            crls: None,
            signer_infos: SignerInfos::try_from(vec![signer_info])?,
        };
        let content_info = ContentInfo {
            content_type: oid::SIGNED_DATA,
            content: Any::from_der(&signed_data.to_der()?)?,
        };
        Any::from_der(&content_info.to_der()?)
    }
}

/// A signed attribute with one value.
fn attribute(id: der::asn1::ObjectIdentifier, value: &impl Encode) -> der::Result<Attribute> {
    Ok(Attribute {
        oid: id,
        values: SetOfVec::try_from(vec![Any::from_der(&value.to_der()?)?])?,
    })
}

/// genTime (RFC 3161 §2.4.2): UTC `YYYYMMDDhhmmss[.fff]Z` to the millisecond, the
/// fraction without trailing zeros and omitted when zero, as DER requires.
fn gen_time(now: SystemTime) -> Option<Any> {
    let since = now.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    let whole =
        GeneralizedTime::from_unix_duration(std::time::Duration::from_secs(since.as_secs()))
            .ok()?;
    let der = whole.to_der().ok()?;
    // The value of a DER GeneralizedTime from `der` is exactly `YYYYMMDDhhmmssZ`.
    let digits = der.get(2..16)?;
    let mut text = digits.to_vec();
    let millis = since.subsec_millis();
    if millis != 0 {
        let fraction = format!("{millis:03}");
        text.push(b'.');
        text.extend_from_slice(fraction.trim_end_matches('0').as_bytes());
    }
    text.push(b'Z');
    Any::new(Tag::GeneralizedTime, text).ok()
}
