//! Digests and signature verification for tokens and certificates: RSA PKCS#1 v1.5 with
//! SHA-256/384/512 and ECDSA on P-256/P-384 (RFC 3370 §3.2, RFC 5754, RFC 5758 §3.2).

use der::asn1::ObjectIdentifier;
use der::Encode;
use sha2::Digest;
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};

use super::asn1::oid;
use crate::error::TimestampError;

/// A digest algorithm this module can compute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HashAlg {
    /// Only for ESS `SigningCertificate` certificate hashes (RFC 2634 §5.4.1), never for
    /// signatures or imprints.
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    /// SHA-2 digest algorithms (RFC 5754 §2); SHA-1 is not accepted here.
    pub fn sha2_from_oid(oid: &ObjectIdentifier) -> Option<Self> {
        match *oid {
            oid::SHA256 => Some(HashAlg::Sha256),
            oid::SHA384 => Some(HashAlg::Sha384),
            oid::SHA512 => Some(HashAlg::Sha512),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            HashAlg::Sha1 => "sha1",
            HashAlg::Sha256 => "sha256",
            HashAlg::Sha384 => "sha384",
            HashAlg::Sha512 => "sha512",
        }
    }

    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            HashAlg::Sha1 => sha1::Sha1::digest(data).to_vec(),
            HashAlg::Sha256 => sha2::Sha256::digest(data).to_vec(),
            HashAlg::Sha384 => sha2::Sha384::digest(data).to_vec(),
            HashAlg::Sha512 => sha2::Sha512::digest(data).to_vec(),
        }
    }
}

/// A digest algorithm identifier given as `AlgorithmIdentifier`: SHA-256/384/512 with
/// absent or NULL parameters (RFC 5754 §2 asks verifiers to accept both).
pub(crate) fn digest_algorithm(
    alg: &AlgorithmIdentifierOwned,
    what: &str,
) -> Result<HashAlg, TimestampError> {
    let hash = HashAlg::sha2_from_oid(&alg.oid).ok_or_else(|| {
        TimestampError::UnsupportedAlgorithm(format!(
            "{what} {} (only SHA-256, SHA-384 and SHA-512 are accepted)",
            oid_name(&alg.oid)
        ))
    })?;
    if alg.parameters.as_ref().is_some_and(|p| !p.is_null()) {
        return Err(TimestampError::Malformed(format!(
            "{what} {} has parameters other than NULL",
            hash.name()
        )));
    }
    Ok(hash)
}

/// A human name for an algorithm OID, falling back to the dotted form.
pub(crate) fn oid_name(oid: &ObjectIdentifier) -> String {
    const_oid::db::DB
        .by_oid(oid)
        .map(|n| format!("{n} ({oid})"))
        .unwrap_or_else(|| oid.to_string())
}

/// The public-key algorithm family a signature algorithm needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    Rsa,
    Ecdsa,
}

/// Resolves a signature algorithm to (key family, digest).
///
/// In a CMS `SignerInfo` (`cms_digest` is `Some`), RSA signatures are commonly labelled
/// plain `rsaEncryption` with the hash given by the SignerInfo's digestAlgorithm
/// (RFC 3370 §3.2; OpenSSL does this), and some signers label ECDSA as `id-ecPublicKey`. A
/// signature algorithm that names a hash must agree with the digestAlgorithm (RFC 5652
/// §5.4 hashes the signed attributes with the latter).
fn resolve(
    sig_alg: &AlgorithmIdentifierOwned,
    cms_digest: Option<HashAlg>,
) -> Result<(Family, HashAlg), TimestampError> {
    let (family, hash, named) = match (sig_alg.oid, cms_digest) {
        (oid::SHA256_WITH_RSA, _) => (Family::Rsa, HashAlg::Sha256, true),
        (oid::SHA384_WITH_RSA, _) => (Family::Rsa, HashAlg::Sha384, true),
        (oid::SHA512_WITH_RSA, _) => (Family::Rsa, HashAlg::Sha512, true),
        (oid::ECDSA_WITH_SHA256, _) => (Family::Ecdsa, HashAlg::Sha256, true),
        (oid::ECDSA_WITH_SHA384, _) => (Family::Ecdsa, HashAlg::Sha384, true),
        (oid::ECDSA_WITH_SHA512, _) => (Family::Ecdsa, HashAlg::Sha512, true),
        (oid::RSA_ENCRYPTION, Some(d)) => (Family::Rsa, d, false),
        (oid::EC_PUBLIC_KEY, Some(d)) => (Family::Ecdsa, d, false),
        _ => {
            return Err(TimestampError::UnsupportedAlgorithm(format!(
            "signature algorithm {} (supported: RSA PKCS#1 v1.5 and ECDSA with SHA-256/384/512)",
            oid_name(&sig_alg.oid)
        )))
        }
    };
    // ECDSA algorithm identifiers have absent parameters (RFC 5758 §3.2), PKCS#1 ones NULL
    // (RFC 4055 §5); absent is tolerated for RSA as many encoders omit it.
    if sig_alg.parameters.as_ref().is_some_and(|p| !p.is_null()) {
        return Err(TimestampError::UnsupportedAlgorithm(format!(
            "signature algorithm {} with parameters",
            oid_name(&sig_alg.oid)
        )));
    }
    if let (true, Some(d)) = (named, cms_digest) {
        if d != hash {
            return Err(TimestampError::Malformed(format!(
                "signature algorithm {} does not match the digest algorithm {}",
                oid_name(&sig_alg.oid),
                d.name()
            )));
        }
    }
    Ok((family, hash))
}

/// Why a signature check failed: the algorithm or key cannot be used, or the signature is
/// simply wrong. Callers map the latter to the error that fits their context.
pub(crate) enum SigFailure {
    Unusable(TimestampError),
    Invalid,
}

impl From<TimestampError> for SigFailure {
    fn from(e: TimestampError) -> Self {
        SigFailure::Unusable(e)
    }
}

/// Verifies `signature` over `message` with the key in `spki`.
pub(crate) fn verify_signature(
    spki: &SubjectPublicKeyInfoOwned,
    sig_alg: &AlgorithmIdentifierOwned,
    cms_digest: Option<HashAlg>,
    message: &[u8],
    signature: &[u8],
) -> Result<(), SigFailure> {
    let (family, hash) = resolve(sig_alg, cms_digest)?;
    let digest = hash.digest(message);
    match (family, spki.algorithm.oid) {
        (Family::Rsa, oid::RSA_ENCRYPTION) => verify_rsa(spki, hash, &digest, signature),
        (Family::Ecdsa, oid::EC_PUBLIC_KEY) => verify_ecdsa(spki, &digest, signature),
        (_, key) => Err(SigFailure::Unusable(TimestampError::UnsupportedAlgorithm(
            format!(
                "signature algorithm {} with a {} key",
                oid_name(&sig_alg.oid),
                oid_name(&key)
            ),
        ))),
    }
}

fn verify_rsa(
    spki: &SubjectPublicKeyInfoOwned,
    hash: HashAlg,
    digest: &[u8],
    signature: &[u8],
) -> Result<(), SigFailure> {
    use rsa::pkcs8::DecodePublicKey;
    let spki_der = spki
        .to_der()
        .map_err(|e| TimestampError::Malformed(format!("RSA public key: {e}")))?;
    // Keys up to 4096 bits (the `rsa` crate's default bound, which also bounds the work a
    // hostile key can cause); public authorities use 2048-4096.
    let key = rsa::RsaPublicKey::from_public_key_der(&spki_der).map_err(|e| {
        TimestampError::UnsupportedAlgorithm(format!("RSA public key not usable: {e}"))
    })?;
    let scheme = match hash {
        HashAlg::Sha256 => rsa::Pkcs1v15Sign::new::<sha2::Sha256>(),
        HashAlg::Sha384 => rsa::Pkcs1v15Sign::new::<sha2::Sha384>(),
        HashAlg::Sha512 => rsa::Pkcs1v15Sign::new::<sha2::Sha512>(),
        HashAlg::Sha1 => {
            return Err(SigFailure::Unusable(TimestampError::UnsupportedAlgorithm(
                "RSA with SHA-1".into(),
            )))
        }
    };
    key.verify(scheme, digest, signature)
        .map_err(|_| SigFailure::Invalid)
}

fn verify_ecdsa(
    spki: &SubjectPublicKeyInfoOwned,
    digest: &[u8],
    signature: &[u8],
) -> Result<(), SigFailure> {
    use ecdsa::signature::hazmat::PrehashVerifier;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.decode_as::<ObjectIdentifier>().ok())
        .ok_or_else(|| {
            TimestampError::UnsupportedAlgorithm(
                "EC public key without a named curve (RFC 5480 §2.1.1)".into(),
            )
        })?;
    let point = spki.subject_public_key.as_bytes().ok_or_else(|| {
        TimestampError::Malformed("EC public key is not a whole number of bytes".into())
    })?;
    let bad_key = |_| {
        SigFailure::Unusable(TimestampError::Malformed(
            "EC public key is not a point on its curve".into(),
        ))
    };
    // CMS (RFC 5753 §7.2) and X.509 (RFC 5758 §3.2) carry ECDSA signatures as DER
    // Ecdsa-Sig-Value; a signature that does not parse is simply not valid.
    match curve {
        oid::P256 => {
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(point).map_err(bad_key)?;
            let sig =
                p256::ecdsa::Signature::from_der(signature).map_err(|_| SigFailure::Invalid)?;
            key.verify_prehash(digest, &sig)
                .map_err(|_| SigFailure::Invalid)
        }
        oid::P384 => {
            let key = p384::ecdsa::VerifyingKey::from_sec1_bytes(point).map_err(bad_key)?;
            let sig =
                p384::ecdsa::Signature::from_der(signature).map_err(|_| SigFailure::Invalid)?;
            key.verify_prehash(digest, &sig)
                .map_err(|_| SigFailure::Invalid)
        }
        other => Err(SigFailure::Unusable(TimestampError::UnsupportedAlgorithm(
            format!("EC curve {} (supported: P-256, P-384)", oid_name(&other)),
        ))),
    }
}
