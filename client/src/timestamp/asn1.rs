//! ASN.1 types and object identifiers of RFC 3161, RFC 5652, RFC 2634 and RFC 5816 that the
//! `x509-tsp` and `cms` crates do not provide (or provide too strictly), plus a raw DER
//! walker.
//!
//! Public so that the ledger's own authority encodes exactly what this module decodes.
//!
//! Why a raw walker: signatures cover exact bytes. `der` sorts a `SET OF` when it decodes
//! one, so re-encoding a decoded `SignedAttributes` or certificate set can differ from what
//! the signer produced; the bytes that are hashed and verified are therefore always taken
//! from the input itself.

use der::asn1::{BitString, Int, ObjectIdentifier, OctetString};
use der::{Any, Decode, Header, Reader, Sequence, SliceReader, Tag};
use spki::AlgorithmIdentifierOwned;
use x509_cert::ext::pkix::name::{GeneralName, GeneralNames};
use x509_cert::ext::Extensions;

pub use x509_tsp::{Accuracy, MessageImprint};

/// Object identifiers used by time-stamping.
pub mod oid {
    use der::asn1::ObjectIdentifier as Oid;

    /// id-signedData (RFC 5652 §5.1).
    pub const SIGNED_DATA: Oid = Oid::new_unwrap("1.2.840.113549.1.7.2");
    /// id-ct-TSTInfo (RFC 3161 §2.4.2).
    pub const TST_INFO: Oid = Oid::new_unwrap("1.2.840.113549.1.9.16.1.4");
    /// id-contentType signed attribute (RFC 5652 §11.1).
    pub const CONTENT_TYPE: Oid = Oid::new_unwrap("1.2.840.113549.1.9.3");
    /// id-messageDigest signed attribute (RFC 5652 §11.2).
    pub const MESSAGE_DIGEST: Oid = Oid::new_unwrap("1.2.840.113549.1.9.4");
    /// id-aa-signingCertificate (RFC 2634 §5.4), SHA-1 certificate hashes.
    pub const SIGNING_CERTIFICATE: Oid = Oid::new_unwrap("1.2.840.113549.1.9.16.2.12");
    /// id-aa-signingCertificateV2 (RFC 5035 §3, RFC 5816 §2.2.1).
    pub const SIGNING_CERTIFICATE_V2: Oid = Oid::new_unwrap("1.2.840.113549.1.9.16.2.47");
    /// id-kp-timeStamping (RFC 5280 §4.2.1.12).
    pub const KP_TIME_STAMPING: Oid = Oid::new_unwrap("1.3.6.1.5.5.7.3.8");

    pub const SHA1: Oid = Oid::new_unwrap("1.3.14.3.2.26");
    pub const SHA256: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.1");
    pub const SHA384: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.2");
    pub const SHA512: Oid = Oid::new_unwrap("2.16.840.1.101.3.4.2.3");

    /// rsaEncryption: an RSA key, or in CMS a PKCS#1 v1.5 signature with the SignerInfo's
    /// digest algorithm (RFC 3370 §3.2).
    pub const RSA_ENCRYPTION: Oid = Oid::new_unwrap("1.2.840.113549.1.1.1");
    pub const SHA256_WITH_RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.11");
    pub const SHA384_WITH_RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.12");
    pub const SHA512_WITH_RSA: Oid = Oid::new_unwrap("1.2.840.113549.1.1.13");
    /// id-ecPublicKey (RFC 5480 §2.1.1).
    pub const EC_PUBLIC_KEY: Oid = Oid::new_unwrap("1.2.840.10045.2.1");
    pub const ECDSA_WITH_SHA256: Oid = Oid::new_unwrap("1.2.840.10045.4.3.2");
    pub const ECDSA_WITH_SHA384: Oid = Oid::new_unwrap("1.2.840.10045.4.3.3");
    pub const ECDSA_WITH_SHA512: Oid = Oid::new_unwrap("1.2.840.10045.4.3.4");
    /// secp256r1 / P-256 (RFC 5480 §2.1.1.1).
    pub const P256: Oid = Oid::new_unwrap("1.2.840.10045.3.1.7");
    /// secp384r1 / P-384.
    pub const P384: Oid = Oid::new_unwrap("1.3.132.0.34");

    /// Certificate extensions (RFC 5280 §4.2).
    pub const SUBJECT_KEY_IDENTIFIER: Oid = Oid::new_unwrap("2.5.29.14");
    pub const KEY_USAGE: Oid = Oid::new_unwrap("2.5.29.15");
    pub const SUBJECT_ALT_NAME: Oid = Oid::new_unwrap("2.5.29.17");
    pub const ISSUER_ALT_NAME: Oid = Oid::new_unwrap("2.5.29.18");
    pub const BASIC_CONSTRAINTS: Oid = Oid::new_unwrap("2.5.29.19");
    pub const CRL_DISTRIBUTION_POINTS: Oid = Oid::new_unwrap("2.5.29.31");
    pub const CERTIFICATE_POLICIES: Oid = Oid::new_unwrap("2.5.29.32");
    pub const AUTHORITY_KEY_IDENTIFIER: Oid = Oid::new_unwrap("2.5.29.35");
    pub const EXT_KEY_USAGE: Oid = Oid::new_unwrap("2.5.29.37");
    pub const AUTHORITY_INFO_ACCESS: Oid = Oid::new_unwrap("1.3.6.1.5.5.7.1.1");
}

/// An OBJECT IDENTIFIER whose arcs may exceed 32 bits, as policy identifiers under the
/// UUID arc `2.25` (ITU-T X.667) do: `const-oid`'s `ObjectIdentifier` is limited to u32
/// arcs. Arcs up to 128 bits are supported; the encoding is kept as given.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PolicyOid(Vec<u8>);

/// Longest accepted OBJECT IDENTIFIER encoding, in bytes.
const MAX_OID_LEN: usize = 64;

impl PolicyOid {
    /// From the content octets of a DER OBJECT IDENTIFIER (X.690 §8.19), validated: every
    /// arc is minimally encoded and fits 128 bits.
    pub fn from_der_value(bytes: &[u8]) -> der::Result<Self> {
        if bytes.is_empty() || bytes.len() > MAX_OID_LEN || bytes[bytes.len() - 1] & 0x80 != 0 {
            return Err(Tag::ObjectIdentifier.value_error());
        }
        let mut start = true;
        let mut arc_bits = 0u32;
        for &b in bytes {
            if start && b == 0x80 {
                return Err(Tag::ObjectIdentifier.value_error()); // not minimal
            }
            arc_bits += 7;
            if arc_bits > 7 * 19 {
                return Err(Tag::ObjectIdentifier.value_error()); // beyond 128 bits
            }
            start = b & 0x80 == 0;
            if start {
                arc_bits = 0;
            }
        }
        let oid = PolicyOid(bytes.to_vec());
        if oid.arcs().is_none() {
            return Err(Tag::ObjectIdentifier.value_error());
        }
        Ok(oid)
    }

    /// The content octets.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The arcs, or None if one exceeds 128 bits.
    fn arcs(&self) -> Option<Vec<u128>> {
        let mut raw = Vec::new();
        let mut acc: u128 = 0;
        for &b in &self.0 {
            acc = acc.checked_mul(128)? | u128::from(b & 0x7f);
            if b & 0x80 == 0 {
                raw.push(acc);
                acc = 0;
            }
        }
        let first = *raw.first()?;
        // X.690 §8.19.4: the first subidentifier is 40 * arc1 + arc2, arc1 <= 2.
        let (a, b) = match first {
            0..=39 => (0, first),
            40..=79 => (1, first - 40),
            _ => (2, first - 80),
        };
        let mut arcs = vec![a, b];
        arcs.extend_from_slice(&raw[1..]);
        Some(arcs)
    }
}

impl std::str::FromStr for PolicyOid {
    type Err = String;

    /// Dotted decimal, e.g. `2.25.271610661209850825415088078611341148925`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a dotted-decimal object identifier");
        let arcs: Vec<u128> = s
            .split('.')
            .map(|a| {
                if a.is_empty() || (a.len() > 1 && a.starts_with('0')) {
                    return None;
                }
                a.parse::<u128>().ok()
            })
            .collect::<Option<_>>()
            .ok_or_else(bad)?;
        let [a, b, rest @ ..] = arcs.as_slice() else {
            return Err(bad());
        };
        if *a > 2 || (*a < 2 && *b > 39) {
            return Err(bad());
        }
        let first = a
            .checked_mul(40)
            .and_then(|x| x.checked_add(*b))
            .ok_or_else(bad)?;
        let mut out = Vec::new();
        for arc in std::iter::once(first).chain(rest.iter().copied()) {
            let mut groups = vec![(arc & 0x7f) as u8];
            let mut v = arc >> 7;
            while v > 0 {
                groups.push((v & 0x7f) as u8 | 0x80);
                v >>= 7;
            }
            out.extend(groups.iter().rev());
        }
        PolicyOid::from_der_value(&out).map_err(|_| bad())
    }
}

impl std::fmt::Display for PolicyOid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.arcs() {
            Some(arcs) => {
                let text: Vec<String> = arcs.iter().map(u128::to_string).collect();
                f.write_str(&text.join("."))
            }
            None => f.write_str("(invalid object identifier)"),
        }
    }
}

impl From<ObjectIdentifier> for PolicyOid {
    fn from(oid: ObjectIdentifier) -> Self {
        PolicyOid(oid.as_bytes().to_vec())
    }
}

impl der::FixedTag for PolicyOid {
    const TAG: Tag = Tag::ObjectIdentifier;
}

impl<'a> der::DecodeValue<'a> for PolicyOid {
    fn decode_value<R: Reader<'a>>(reader: &mut R, header: Header) -> der::Result<Self> {
        let bytes = reader.read_vec(header.length)?;
        PolicyOid::from_der_value(&bytes)
    }
}

impl der::EncodeValue for PolicyOid {
    fn value_len(&self) -> der::Result<der::Length> {
        der::Length::try_from(self.0.len())
    }

    fn encode_value(&self, writer: &mut impl der::Writer) -> der::Result<()> {
        writer.write(&self.0)
    }
}

/// `TimeStampReq` (RFC 3161 §2.4.1), with a [`PolicyOid`] reqPolicy (x509-tsp's refuses
/// arcs over 32 bits, such as this ledger's own policy under 2.25).
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct TimeStampReq {
    /// v1(1); checked by the authority for a precise refusal.
    pub version: Int,
    pub message_imprint: MessageImprint,
    #[asn1(optional = "true")]
    pub req_policy: Option<PolicyOid>,
    #[asn1(optional = "true")]
    pub nonce: Option<Int>,
    #[asn1(default = "Default::default")]
    pub cert_req: bool,
    #[asn1(context_specific = "0", tag_mode = "IMPLICIT", optional = "true")]
    pub extensions: Option<Extensions>,
}

/// `TSTInfo` (RFC 3161 §2.4.2).
///
/// Unlike `x509_tsp::TstInfo`, `gen_time` is kept as the raw `GeneralizedTime` so that the
/// fractional seconds RFC 3161 allows (`YYYYMMDDhhmmss[.s...]Z`) are accepted (the `der`
/// crate's `GeneralizedTime` follows RFC 5280 and refuses them), `version` is a plain
/// integer so that a wrong version gets its own error, and `policy` allows the long arcs
/// of UUID-based OIDs.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct TstInfo {
    pub version: Int,
    pub policy: PolicyOid,
    pub message_imprint: MessageImprint,
    pub serial_number: Int,
    /// A `GeneralizedTime` (tag checked by the verifier).
    pub gen_time: Any,
    #[asn1(optional = "true")]
    pub accuracy: Option<Accuracy>,
    #[asn1(default = "Default::default")]
    pub ordering: bool,
    #[asn1(optional = "true")]
    pub nonce: Option<Int>,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub tsa: Option<GeneralName>,
    #[asn1(context_specific = "1", tag_mode = "IMPLICIT", optional = "true")]
    pub extensions: Option<Extensions>,
}

/// `SigningCertificate` (RFC 2634 §5.4): `certs[0]` identifies the signer certificate.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct SigningCertificate {
    pub certs: Vec<EssCertId>,
    #[asn1(optional = "true")]
    pub policies: Option<Vec<Any>>,
}

/// `ESSCertID` (RFC 2634 §5.4.1): `certHash` is the SHA-1 of the whole certificate.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct EssCertId {
    pub cert_hash: OctetString,
    #[asn1(optional = "true")]
    pub issuer_serial: Option<IssuerSerial>,
}

/// `SigningCertificateV2` (RFC 5035 §3, required form for RFC 3161 by RFC 5816 §2.2.1).
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct SigningCertificateV2 {
    pub certs: Vec<EssCertIdV2>,
    #[asn1(optional = "true")]
    pub policies: Option<Vec<Any>>,
}

/// `ESSCertIDv2` (RFC 5035 §4): `hashAlgorithm` DEFAULT id-sha256, so DER omits SHA-256.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct EssCertIdV2 {
    #[asn1(optional = "true")]
    pub hash_algorithm: Option<AlgorithmIdentifierOwned>,
    pub cert_hash: OctetString,
    #[asn1(optional = "true")]
    pub issuer_serial: Option<IssuerSerial>,
}

/// `IssuerSerial` (RFC 5035 §4): the issuer's name and the certificate's serial number.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct IssuerSerial {
    pub issuer: GeneralNames,
    pub serial_number: Int,
}

/// `PKIStatusInfo` (RFC 3161 §2.4.2, from RFC 4210): `statusString` is a `PKIFreeText`,
/// a `SEQUENCE OF UTF8String`.
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct PkiStatusInfo {
    pub status: u32,
    #[asn1(optional = "true")]
    pub status_string: Option<Vec<String>>,
    #[asn1(optional = "true")]
    pub fail_info: Option<BitString>,
}

/// `TimeStampResp` (RFC 3161 §2.4.2), as an authority encodes it; the token is the DER
/// `ContentInfo`. (Clients read responses with [`super::token_from_response`], which keeps
/// the token's bytes exactly as received.)
#[derive(Clone, Debug, Eq, PartialEq, Sequence)]
pub struct TimeStampResp {
    pub status: PkiStatusInfo,
    #[asn1(optional = "true")]
    pub time_stamp_token: Option<Any>,
}

/// `PKIStatus` values (RFC 3161 §2.4.2).
pub mod status {
    pub const GRANTED: u32 = 0;
    pub const GRANTED_WITH_MODS: u32 = 1;
    pub const REJECTION: u32 = 2;
    pub const WAITING: u32 = 3;
    pub const REVOCATION_WARNING: u32 = 4;
    pub const REVOCATION_NOTIFICATION: u32 = 5;

    /// The RFC's name of a status value.
    pub fn name(status: u32) -> &'static str {
        match status {
            GRANTED => "granted",
            GRANTED_WITH_MODS => "grantedWithMods",
            REJECTION => "rejection",
            WAITING => "waiting",
            REVOCATION_WARNING => "revocationWarning",
            REVOCATION_NOTIFICATION => "revocationNotification",
            _ => "unknown status",
        }
    }
}

/// `PKIFailureInfo` bits (RFC 3161 §2.4.2): named bit numbers of the `failInfo` BIT STRING.
pub mod fail_info {
    pub const BAD_ALG: usize = 0;
    pub const BAD_REQUEST: usize = 2;
    pub const BAD_DATA_FORMAT: usize = 5;
    pub const TIME_NOT_AVAILABLE: usize = 14;
    pub const UNACCEPTED_POLICY: usize = 15;
    pub const UNACCEPTED_EXTENSION: usize = 16;
    pub const ADD_INFO_NOT_AVAILABLE: usize = 17;
    pub const SYSTEM_FAILURE: usize = 25;

    /// The RFC's name of a failure bit.
    pub fn name(bit: usize) -> Option<&'static str> {
        Some(match bit {
            BAD_ALG => "badAlg",
            BAD_REQUEST => "badRequest",
            BAD_DATA_FORMAT => "badDataFormat",
            TIME_NOT_AVAILABLE => "timeNotAvailable",
            UNACCEPTED_POLICY => "unacceptedPolicy",
            UNACCEPTED_EXTENSION => "unacceptedExtension",
            ADD_INFO_NOT_AVAILABLE => "addInfoNotAvailable",
            SYSTEM_FAILURE => "systemFailure",
            _ => return None,
        })
    }

    /// DER `BIT STRING` contents with exactly `bit` set: named bit lists drop trailing zero
    /// bits in DER (X.690 §11.2.2), so the last byte holds the highest set bit.
    pub fn encode(bit: usize) -> (u8, Vec<u8>) {
        let mut bytes = vec![0u8; bit / 8 + 1];
        bytes[bit / 8] = 0x80 >> (bit % 8);
        (7 - (bit % 8) as u8, bytes)
    }
}

/// One DER element as it appears in the input.
#[derive(Clone, Copy, Debug)]
pub struct Tlv<'a> {
    /// The tag.
    pub tag: Tag,
    /// Tag, length and value: the exact encoded bytes.
    pub full: &'a [u8],
    /// The value (contents) bytes.
    pub value: &'a [u8],
}

impl<'a> Tlv<'a> {
    /// Parses exactly one DER element; trailing bytes are an error.
    pub fn parse(der: &'a [u8]) -> der::Result<Self> {
        let mut r = SliceReader::new(der)?;
        let tlv = Self::read(&mut r)?;
        r.finish(tlv)
    }

    fn read(r: &mut SliceReader<'a>) -> der::Result<Self> {
        let full = r.tlv_bytes()?;
        let mut inner = SliceReader::new(full)?;
        let header = Header::decode(&mut inner)?;
        let value = inner.read_slice(header.length)?;
        Ok(Tlv {
            tag: header.tag,
            full,
            value,
        })
    }

    /// The elements inside a constructed element.
    pub fn children(&self) -> der::Result<Vec<Tlv<'a>>> {
        if !self.tag.is_constructed() {
            return Err(self.tag.value_error());
        }
        let mut r = SliceReader::new(self.value)?;
        let mut out = Vec::new();
        while !r.is_finished() {
            out.push(Self::read(&mut r)?);
        }
        Ok(out)
    }
}
