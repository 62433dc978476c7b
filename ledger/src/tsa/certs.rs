//! Certificates for our own authority: a one-shot root CA and the TSA certificate it
//! issues (RFC 5280 profile, ECDSA P-256 with SHA-256).

use anyhow::{bail, Context, Result};
use der::asn1::{BitString, GeneralizedTime, OctetString, UtcTime};
use der::flagset::FlagSet;
use der::{Decode, Encode};
use ledger_client::timestamp::asn1::oid;
use p256::ecdsa::{DerSignature, SigningKey};
use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use rand::RngCore;
use sha2::Digest;
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime};
use x509_cert::certificate::{TbsCertificate, Version};
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages,
    SubjectKeyIdentifier,
};
use x509_cert::ext::Extension;
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};
use x509_cert::Certificate;

/// File names [`generate`] writes.
pub const ROOT_FILE: &str = "tsa-root.pem";
pub const CHAIN_FILE: &str = "tsa.pem";
pub const KEY_FILE: &str = "tsa.key";

/// What [`generate`] wrote.
#[derive(Debug, Clone)]
pub struct GeneratedTsa {
    /// `tsa-root.pem`: the self-signed root; relying parties configure it as a trust anchor.
    pub root_pem: PathBuf,
    /// `tsa.pem`: the TSA certificate followed by the root.
    pub chain_pem: PathBuf,
    /// `tsa.key`: the TSA's PKCS#8 private key, mode 0600.
    pub key: PathBuf,
    /// SHA-256 of the root certificate (DER), lowercase hex, to publish alongside it.
    pub root_sha256: String,
    /// End of validity of both certificates.
    pub not_after: SystemTime,
}

/// ecdsa-with-SHA256 (RFC 5758 §3.2: parameters absent).
pub(crate) fn ecdsa_sha256() -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid: oid::ECDSA_WITH_SHA256,
        parameters: None,
    }
}

pub(crate) fn spki_of(key: &SigningKey) -> Result<SubjectPublicKeyInfoOwned> {
    let doc = key
        .verifying_key()
        .to_public_key_der()
        .context("encoding the public key")?;
    SubjectPublicKeyInfoOwned::from_der(doc.as_bytes()).context("encoding the public key")
}

/// Key identifier (RFC 5280 §4.2.1.2) by RFC 7093 §2 method 1: the leftmost 160 bits of
/// the SHA-256 of the subjectPublicKey bits.
fn key_id(spki: &SubjectPublicKeyInfoOwned) -> Result<OctetString> {
    let id = sha2::Sha256::digest(spki.subject_public_key.raw_bytes());
    Ok(OctetString::new(id[..20].to_vec())?)
}

/// RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050.
fn x509_time(t: SystemTime) -> Result<Time> {
    let g = GeneralizedTime::from_system_time(t).context("certificate time out of range")?;
    let date = g.to_date_time();
    Ok(if date.year() <= 2049 {
        Time::UtcTime(UtcTime::from_date_time(date)?)
    } else {
        Time::GeneralTime(g)
    })
}

fn extension(
    id: der::asn1::ObjectIdentifier,
    critical: bool,
    value: &impl Encode,
) -> Result<Extension> {
    Ok(Extension {
        extn_id: id,
        critical,
        extn_value: OctetString::new(value.to_der()?)?,
    })
}

/// A random positive 16-byte serial number (RFC 5280 §4.1.2.2: unique, positive, at most
/// 20 octets; random so that no state is needed to keep it unique).
pub(crate) fn random_serial() -> [u8; 16] {
    let mut s = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut s);
    // Top bit clear (positive), next bit set (no leading zero byte to strip): always
    // exactly 16 content octets.
    s[0] = (s[0] & 0x7f) | 0x40;
    s
}

/// What a certificate is for.
enum Profile<'a> {
    Root,
    Tsa { issuer: &'a Certificate },
}

/// Builds and signs a certificate for `subject_key`, signed by `signer`.
fn build(
    profile: Profile<'_>,
    subject: Name,
    subject_key: &SigningKey,
    signer: &SigningKey,
    not_before: SystemTime,
    not_after: SystemTime,
) -> Result<Certificate> {
    use p256::ecdsa::signature::Signer;
    let spki = spki_of(subject_key)?;
    let mut exts = vec![extension(
        oid::SUBJECT_KEY_IDENTIFIER,
        false,
        &SubjectKeyIdentifier(key_id(&spki)?),
    )?];
    let issuer = match profile {
        Profile::Root => {
            // RFC 5280 §4.2.1.9: critical in CA certificates; §4.2.1.3: keyCertSign.
            exts.push(extension(
                oid::BASIC_CONSTRAINTS,
                true,
                &BasicConstraints {
                    ca: true,
                    path_len_constraint: Some(0),
                },
            )?);
            let ku: FlagSet<KeyUsages> = KeyUsages::KeyCertSign | KeyUsages::CRLSign;
            exts.push(extension(oid::KEY_USAGE, true, &KeyUsage(ku))?);
            subject.clone()
        }
        Profile::Tsa { issuer } => {
            let issuer_spki = &issuer.tbs_certificate.subject_public_key_info;
            exts.push(extension(
                oid::AUTHORITY_KEY_IDENTIFIER,
                false,
                &AuthorityKeyIdentifier {
                    key_identifier: Some(key_id(issuer_spki)?),
                    authority_cert_issuer: None,
                    authority_cert_serial_number: None,
                },
            )?);
            exts.push(extension(
                oid::KEY_USAGE,
                true,
                &KeyUsage(KeyUsages::DigitalSignature.into()),
            )?);
            // RFC 3161 §2.3: exactly one KeyPurposeId, id-kp-timeStamping, critical.
            exts.push(extension(
                oid::EXT_KEY_USAGE,
                true,
                &ExtendedKeyUsage(vec![oid::KP_TIME_STAMPING]),
            )?);
            issuer.tbs_certificate.subject.clone()
        }
    };
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: SerialNumber::new(&random_serial())?,
        signature: ecdsa_sha256(),
        issuer,
        validity: Validity {
            not_before: x509_time(not_before)?,
            not_after: x509_time(not_after)?,
        },
        subject,
        subject_public_key_info: spki,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(exts),
    };
    let sig: DerSignature = signer.sign(&tbs.to_der()?);
    Ok(Certificate {
        tbs_certificate: tbs,
        signature_algorithm: ecdsa_sha256(),
        signature: BitString::from_bytes(sig.as_bytes())?,
    })
}

/// A distinguished name with one CN; characters RFC 4514 would need escaped are refused.
fn name_with_cn(cn: &str) -> Result<Name> {
    if cn.is_empty()
        || cn.len() > 64
        || cn
            .chars()
            .any(|c| ",+\"\\<>;=#".contains(c) || c.is_control())
    {
        bail!("common name {cn:?} must be 1-64 characters without , + \" \\ < > ; = # or controls");
    }
    Name::from_str(&format!("CN={cn}")).with_context(|| format!("common name {cn:?}"))
}

pub(crate) fn pem(der: &[u8]) -> Result<String> {
    der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, der)
        .map_err(|e| anyhow::anyhow!("PEM-encoding a certificate: {e}"))
}

/// Creates a time-stamping authority in `dir` (which may exist; the three files must not):
///
/// * `tsa-root.pem`: a self-signed ECDSA P-256 root CA named `<common_name> Root`
///   (basicConstraints critical cA, pathLenConstraint 0; keyUsage keyCertSign, cRLSign);
/// * `tsa.pem`: the chain, TSA certificate first, then the root. The TSA certificate has
///   extendedKeyUsage critical id-kp-timeStamping, keyUsage critical digitalSignature, and
///   subject/authority key identifiers;
/// * `tsa.key`: the TSA's PKCS#8 PEM private key, mode 0600.
///
/// The root is a one-shot CA: its private key signs the TSA certificate and is then
/// dropped, never written anywhere. Nobody can issue another certificate under it, so the
/// root vouches for exactly this one authority; a new TSA key means a new root.
///
/// Both certificates are valid from an hour ago (clock skew) for `valid_for_days` days.
pub fn generate(dir: &Path, common_name: &str, valid_for_days: u32) -> Result<GeneratedTsa> {
    if valid_for_days == 0 {
        bail!("a certificate valid for 0 days would be useless");
    }
    let (root_path, chain_path, key_path) = (
        dir.join(ROOT_FILE),
        dir.join(CHAIN_FILE),
        dir.join(KEY_FILE),
    );
    for p in [&root_path, &chain_path, &key_path] {
        if p.exists() {
            bail!(
                "{} already exists; refusing to replace an authority",
                p.display()
            );
        }
    }
    let leaf_name = name_with_cn(common_name)?;
    let root_name = name_with_cn(&format!("{common_name} Root"))?;
    let now = SystemTime::now();
    let not_before = now - Duration::from_secs(3600);
    let not_after = now + Duration::from_secs(u64::from(valid_for_days) * 86_400);

    let root_key = SigningKey::random(&mut rand::rngs::OsRng);
    let tsa_key = SigningKey::random(&mut rand::rngs::OsRng);
    let root = build(
        Profile::Root,
        root_name,
        &root_key,
        &root_key,
        not_before,
        not_after,
    )?;
    let tsa = build(
        Profile::Tsa { issuer: &root },
        leaf_name,
        &tsa_key,
        &root_key,
        not_before,
        not_after,
    )?;
    drop(root_key);
    let root_der = root.to_der()?;
    let tsa_der = tsa.to_der()?;

    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let key_pem = p256::SecretKey::from(&tsa_key)
        .to_pkcs8_pem(LineEnding::LF)
        .context("encoding the TSA key")?;
    crate::keys::write_private(&key_path, "TSA private key", &key_pem)?;
    std::fs::write(
        &chain_path,
        format!("{}{}", pem(&tsa_der)?, pem(&root_der)?),
    )
    .with_context(|| format!("writing {}", chain_path.display()))?;
    std::fs::write(&root_path, pem(&root_der)?)
        .with_context(|| format!("writing {}", root_path.display()))?;
    Ok(GeneratedTsa {
        root_pem: root_path,
        chain_pem: chain_path,
        key: key_path,
        root_sha256: hex::encode(sha2::Sha256::digest(&root_der)),
        not_after,
    })
}

/// A self-signed CA certificate for `key_pem`'s key: a certificate that matches the key
/// but is no time-stamping certificate.
#[cfg(test)]
pub(crate) fn self_signed_ca_for_tests(key_pem: &str, cn: &str) -> Vec<u8> {
    use p256::pkcs8::DecodePrivateKey;
    let key = SigningKey::from(p256::SecretKey::from_pkcs8_pem(key_pem).unwrap());
    let now = SystemTime::now();
    let (nb, na) = (
        now - Duration::from_secs(3600),
        now + Duration::from_secs(86_400),
    );
    build(Profile::Root, name_with_cn(cn).unwrap(), &key, &key, nb, na)
        .unwrap()
        .to_der()
        .unwrap()
}
