//! Client certificates as credentials (mutual TLS, `ledger serve --tls-client-ca`).
//!
//! rustls has already verified the chain against the configured roots during the handshake
//! (RFC 8446 §4.4.2.4, RFC 5280 §6 path validation by webpki); here the verified end-entity
//! certificate is turned into a principal. The rule, one and only one:
//!
//! - the principal id is the subject's CommonName (RFC 5280 §4.1.2.6, OID 2.5.4.3) when the
//!   subject has exactly one;
//! - a subject without CommonName falls back to the first `dNSName` or
//!   `uniformResourceIdentifier` of the subjectAltName extension (RFC 5280 §4.2.1.6), in
//!   certificate order (e.g. a SPIFFE ID `spiffe://example.org/ci`);
//! - a subject with several CommonNames is ambiguous and refused, as is a name that is not
//!   a valid principal name (`[a-z0-9._@:/#-]`, at most 128 bytes).
//!
//! Roles come only from the access configuration (`"mtls": {"roles": [...]}`), by name.

use super::principal::{valid_name, AuthMethod, Principal};
use anyhow::{bail, Result};
use der::{Decode, Tag, Tagged};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use x509_cert::ext::pkix::name::GeneralName;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::Certificate;

/// A role granted to the certificate whose resolved name is `subject`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertRoleRule {
    pub role: String,
    pub subject: String,
}

/// The `mtls` section of the access configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MtlsConfig {
    #[serde(default)]
    pub roles: Vec<CertRoleRule>,
}

impl MtlsConfig {
    /// Refuses rules that could never match or would put unsafe names into policies.
    pub fn check(&self) -> Result<()> {
        for r in &self.roles {
            if !valid_name(&r.role) {
                bail!(
                    "mtls role rule: {:?} is not a valid role name ([a-z0-9._@:/#-], 1-128 bytes)",
                    r.role
                );
            }
            if !valid_name(&r.subject) {
                bail!(
                    "mtls role rule for role {:?}: subject {:?} can never match a certificate's name ([a-z0-9._@:/#-], 1-128 bytes)",
                    r.role,
                    r.subject
                );
            }
        }
        Ok(())
    }

    /// The principal a verified client certificate (DER) names, or why it names none.
    pub fn authenticate(&self, der: &[u8]) -> Result<Principal, String> {
        let id = certificate_name(der)?;
        let fingerprint = hex::encode(Sha256::digest(der));
        let roles: BTreeSet<String> = self
            .roles
            .iter()
            .filter(|r| r.subject == id)
            .map(|r| r.role.clone())
            .collect();
        Ok(Principal {
            id,
            method: AuthMethod::ClientCertificate {
                fingerprint: fingerprint.clone(),
            },
            roles,
            // Lets a policy pin one certificate, not only a name any certificate from the
            // CA could carry.
            attributes: BTreeMap::from([("cert_sha256".to_string(), fingerprint)]),
            mfa: false,
        })
    }
}

/// A directory string's text, for the string types RFC 5280 §4.1.2.4 lets CAs use that
/// are Unicode or ASCII (UTF8String, PrintableString; IA5String for old CAs).
fn directory_string(any: &der::Any) -> Result<String, String> {
    let bytes = any.value();
    let text = match any.tag() {
        Tag::Utf8String => std::str::from_utf8(bytes).ok(),
        Tag::PrintableString | Tag::Ia5String => {
            std::str::from_utf8(bytes).ok().filter(|s| s.is_ascii())
        }
        other => {
            return Err(format!(
                "the certificate's CommonName is a {other}, not a UTF8String or PrintableString"
            ))
        }
    };
    text.map(str::to_string)
        .ok_or_else(|| "the certificate's CommonName is not valid text".to_string())
}

/// The principal name of a certificate, by the rule in the module documentation.
pub fn certificate_name(der: &[u8]) -> Result<String, String> {
    let cert = Certificate::from_der(der)
        .map_err(|e| format!("the client certificate does not parse: {e}"))?;
    let tbs = &cert.tbs_certificate;
    let cns: Vec<&der::Any> = tbs
        .subject
        .0
        .iter()
        .flat_map(|rdn| rdn.0.iter())
        .filter(|atv| atv.oid == const_oid::db::rfc4519::CN)
        .map(|atv| &atv.value)
        .collect();
    let name = match cns.as_slice() {
        [cn] => directory_string(cn)?,
        [] => first_san(&cert)?.ok_or(
            "the client certificate names no one: no subject CommonName and no DNS or URI subjectAltName",
        )?,
        _ => {
            return Err(format!(
                "the client certificate's subject has {} CommonNames; exactly one is needed",
                cns.len()
            ))
        }
    };
    if !valid_name(&name) {
        return Err(format!(
            "the client certificate's name {:?} is not a valid principal name ([a-z0-9._@:/#-], 1-128 bytes)",
            name.chars().take(160).collect::<String>()
        ));
    }
    Ok(name)
}

/// The first DNS or URI subjectAltName, if the certificate has the extension.
fn first_san(cert: &Certificate) -> Result<Option<String>, String> {
    let Some(exts) = &cert.tbs_certificate.extensions else {
        return Ok(None);
    };
    let Some(ext) = exts
        .iter()
        .find(|e| e.extn_id == const_oid::db::rfc5280::ID_CE_SUBJECT_ALT_NAME)
    else {
        return Ok(None);
    };
    let san = SubjectAltName::from_der(ext.extn_value.as_bytes())
        .map_err(|e| format!("the client certificate's subjectAltName does not parse: {e}"))?;
    Ok(san.0.iter().find_map(|n| match n {
        GeneralName::DnsName(s) | GeneralName::UniformResourceIdentifier(s) => Some(s.to_string()),
        _ => None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_rules_with_unusable_names_are_refused() {
        let bad = |role: &str, subject: &str| MtlsConfig {
            roles: vec![CertRoleRule {
                role: role.into(),
                subject: subject.into(),
            }],
        };
        assert!(bad("publisher", "ci-runner-1").check().is_ok());
        assert!(bad("Publisher", "ci-runner-1").check().is_err());
        assert!(bad("publisher", "CI Runner").check().is_err());
        assert!(bad("publisher", "").check().is_err());
    }

    #[test]
    fn garbage_is_not_a_certificate() {
        let m = MtlsConfig::default();
        for der in [&b""[..], b"\x30\x00", b"hello", &[0x30, 0x82, 0xff, 0xff]] {
            let err = m.authenticate(der).unwrap_err();
            assert!(err.contains("does not parse"), "{err}");
        }
    }
}
