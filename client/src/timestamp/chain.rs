//! Certificates: parsing that keeps the signed bytes, trust anchors, and path building from
//! the signer certificate to a root (RFC 5280 §6, reduced to what a time-stamp needs).
//!
//! Names are compared by their DER encoding rather than with the full RFC 5280 §7.1
//! matching rules; CAs copy issuer names from their own certificates byte for byte, and
//! a mismatch fails closed (no chain) rather than open.

use der::asn1::ObjectIdentifier;
use der::{Decode, Encode, Tag};
use x509_cert::ext::pkix::{BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages};
use x509_cert::ext::Extension;
use x509_cert::Certificate;

use super::asn1::{oid, Tlv};
use super::crypto::{self, SigFailure};
use super::time::{rfc3339, GenTime};
use super::MAX_CHAIN_DEPTH;
use crate::error::TimestampError;

/// Largest PEM bundle [`TsaRoots::from_pem`] reads.
const MAX_ROOTS_PEM: usize = 1 << 20;

/// A certificate with the exact bytes its issuer signed.
#[derive(Clone, Debug)]
pub(crate) struct ParsedCert {
    /// The whole certificate, as received.
    pub der: Vec<u8>,
    /// The `tbsCertificate` element, as received (RFC 5280 §4.1.1.3: the signed bytes).
    tbs: Vec<u8>,
    pub cert: Certificate,
    subject_der: Vec<u8>,
    issuer_der: Vec<u8>,
}

impl ParsedCert {
    pub fn parse(der: &[u8]) -> Result<Self, TimestampError> {
        let bad = |e: der::Error| TimestampError::Malformed(format!("certificate: {e}"));
        let outer = Tlv::parse(der).map_err(bad)?;
        let tbs = outer
            .children()
            .map_err(bad)?
            .first()
            .filter(|t| t.tag == Tag::Sequence)
            .map(|t| t.full.to_vec())
            .ok_or_else(|| TimestampError::Malformed("certificate has no tbsCertificate".into()))?;
        let cert = Certificate::from_der(der).map_err(bad)?;
        let subject_der = cert.tbs_certificate.subject.to_der().map_err(bad)?;
        let issuer_der = cert.tbs_certificate.issuer.to_der().map_err(bad)?;
        Ok(ParsedCert {
            der: der.to_vec(),
            tbs,
            cert,
            subject_der,
            issuer_der,
        })
    }

    /// The subject as an RFC 4514-style string (`CN=…,O=…`).
    pub fn subject(&self) -> String {
        let s = self.cert.tbs_certificate.subject.to_string();
        if s.is_empty() {
            "(empty subject)".into()
        } else {
            s
        }
    }

    pub fn issuer(&self) -> String {
        self.cert.tbs_certificate.issuer.to_string()
    }

    pub fn subject_der(&self) -> &[u8] {
        &self.subject_der
    }

    pub fn issuer_der(&self) -> &[u8] {
        &self.issuer_der
    }

    pub fn serial(&self) -> &[u8] {
        self.cert.tbs_certificate.serial_number.as_bytes()
    }

    fn extensions(&self) -> &[Extension] {
        self.cert
            .tbs_certificate
            .extensions
            .as_deref()
            .unwrap_or(&[])
    }

    /// The extension with this OID; more than one is malformed (RFC 5280 §4.2).
    fn extension(&self, id: ObjectIdentifier) -> Result<Option<&Extension>, TimestampError> {
        let mut found = self.extensions().iter().filter(|e| e.extn_id == id);
        let first = found.next();
        if found.next().is_some() {
            return Err(TimestampError::Malformed(format!(
                "certificate {} has the extension {id} twice (RFC 5280 §4.2)",
                self.subject()
            )));
        }
        Ok(first)
    }

    fn decode_extension<'a, T: Decode<'a>>(
        &'a self,
        id: ObjectIdentifier,
        what: &str,
    ) -> Result<Option<(bool, T)>, TimestampError> {
        match self.extension(id)? {
            None => Ok(None),
            Some(e) => T::from_der(e.extn_value.as_bytes())
                .map(|v| Some((e.critical, v)))
                .map_err(|err| {
                    TimestampError::Malformed(format!(
                        "certificate {}: {what} extension: {err}",
                        self.subject()
                    ))
                }),
        }
    }

    /// The subjectKeyIdentifier (RFC 5280 §4.2.1.2), if present.
    pub fn subject_key_id(&self) -> Option<Vec<u8>> {
        let e = self.extension(oid::SUBJECT_KEY_IDENTIFIER).ok()??;
        der::asn1::OctetString::from_der(e.extn_value.as_bytes())
            .ok()
            .map(|o| o.as_bytes().to_vec())
    }

    fn not_before(&self) -> i64 {
        secs(self.cert.tbs_certificate.validity.not_before)
    }

    fn not_after(&self) -> i64 {
        secs(self.cert.tbs_certificate.validity.not_after)
    }

    /// RFC 5280 §4.1.2.5: notBefore <= t <= notAfter (a fraction past notAfter is after).
    pub fn check_valid_at(&self, t: &GenTime) -> Result<(), TimestampError> {
        let (nb, na) = (self.not_before(), self.not_after());
        let after_end = t.secs > na || (t.secs == na && t.has_fraction);
        if t.secs < nb || after_end {
            return Err(TimestampError::CertificateNotValidAt {
                subject: self.subject(),
                gen_time: t.rfc3339.clone(),
                not_before: rfc3339(nb),
                not_after: rfc3339(na),
            });
        }
        Ok(())
    }

    /// Refuses a certificate with a critical extension this verifier does not process
    /// (RFC 5280 §4.2: such a certificate MUST be rejected).
    fn check_critical_extensions(&self) -> Result<(), TimestampError> {
        const KNOWN: [ObjectIdentifier; 10] = [
            oid::SUBJECT_KEY_IDENTIFIER,
            oid::KEY_USAGE,
            oid::SUBJECT_ALT_NAME,
            oid::ISSUER_ALT_NAME,
            oid::BASIC_CONSTRAINTS,
            oid::CRL_DISTRIBUTION_POINTS,
            oid::CERTIFICATE_POLICIES,
            oid::AUTHORITY_KEY_IDENTIFIER,
            oid::EXT_KEY_USAGE,
            oid::AUTHORITY_INFO_ACCESS,
        ];
        match self
            .extensions()
            .iter()
            .find(|e| e.critical && !KNOWN.contains(&e.extn_id))
        {
            Some(e) => Err(TimestampError::UntrustedChain(format!(
                "certificate {} has the critical extension {}, which this verifier does not process (RFC 5280 §4.2)",
                self.subject(),
                crypto::oid_name(&e.extn_id)
            ))),
            None => Ok(()),
        }
    }

    /// A certificate that issues others: basicConstraints cA TRUE (RFC 5280 §4.2.1.9) and,
    /// when keyUsage is present, keyCertSign (§4.2.1.3). `below` is the number of
    /// intermediate CA certificates between it and the signer, bounded by pathLenConstraint.
    fn check_ca(&self, below: usize) -> Result<(), TimestampError> {
        let not_ca = |why: String| {
            TimestampError::UntrustedChain(format!(
                "certificate {} cannot issue certificates: {why}",
                self.subject()
            ))
        };
        match self
            .decode_extension::<BasicConstraints>(oid::BASIC_CONSTRAINTS, "basicConstraints")?
        {
            Some((_, bc)) if bc.ca => {
                if let Some(max) = bc.path_len_constraint {
                    if below > usize::from(max) {
                        return Err(not_ca(format!(
                            "pathLenConstraint {max} but {below} CA certificates below it"
                        )));
                    }
                }
            }
            Some(_) => return Err(not_ca("basicConstraints cA is FALSE".into())),
            None => return Err(not_ca("no basicConstraints extension".into())),
        }
        if let Some((_, ku)) = self.decode_extension::<KeyUsage>(oid::KEY_USAGE, "keyUsage")? {
            if !ku.0.contains(KeyUsages::KeyCertSign) {
                return Err(not_ca("keyUsage lacks keyCertSign".into()));
            }
        }
        self.check_critical_extensions()
    }

    /// The signer of a token (RFC 3161 §2.3): extendedKeyUsage present, critical, and
    /// holding exactly one KeyPurposeId, id-kp-timeStamping; keyUsage, when present,
    /// allows signatures (digitalSignature or nonRepudiation, RFC 5280 §4.2.1.3).
    pub fn check_timestamping(&self) -> Result<(), TimestampError> {
        let not_tsa = |why: &str| {
            TimestampError::NotTimestampingCertificate(format!("{}: {why}", self.subject()))
        };
        match self.decode_extension::<ExtendedKeyUsage>(oid::EXT_KEY_USAGE, "extendedKeyUsage")? {
            None => return Err(not_tsa("no extendedKeyUsage extension")),
            Some((false, _)) => return Err(not_tsa("extendedKeyUsage is not critical")),
            Some((true, eku)) if eku.0.as_slice() != [oid::KP_TIME_STAMPING] => {
                let list: Vec<String> = eku.0.iter().map(crypto::oid_name).collect();
                return Err(not_tsa(&format!(
                    "extendedKeyUsage must be exactly id-kp-timeStamping, found [{}]",
                    list.join(", ")
                )));
            }
            Some(_) => {}
        }
        if let Some((_, ku)) = self.decode_extension::<KeyUsage>(oid::KEY_USAGE, "keyUsage")? {
            if !ku.0.contains(KeyUsages::DigitalSignature)
                && !ku.0.contains(KeyUsages::NonRepudiation)
            {
                return Err(not_tsa(
                    "keyUsage allows neither digitalSignature nor nonRepudiation",
                ));
            }
        }
        self.check_critical_extensions()
    }

    /// Verifies that `issuer`'s key signed this certificate (RFC 5280 §6.1.3 (a)(1)).
    fn verify_issued_by(&self, issuer: &ParsedCert) -> Result<(), TimestampError> {
        // RFC 5280 §4.1.1.2: the outer signatureAlgorithm MUST equal tbsCertificate.signature.
        if self.cert.signature_algorithm != self.cert.tbs_certificate.signature {
            return Err(TimestampError::Malformed(format!(
                "certificate {}: signatureAlgorithm differs from tbsCertificate.signature",
                self.subject()
            )));
        }
        let sig = self.cert.signature.as_bytes().ok_or_else(|| {
            TimestampError::Malformed(format!(
                "certificate {}: signature is not a whole number of bytes",
                self.subject()
            ))
        })?;
        crypto::verify_signature(
            &issuer.cert.tbs_certificate.subject_public_key_info,
            &self.cert.signature_algorithm,
            None,
            &self.tbs,
            sig,
        )
        .map_err(|f| match f {
            SigFailure::Unusable(e) => e,
            SigFailure::Invalid => TimestampError::UntrustedChain(format!(
                "the signature on {} by {} does not verify",
                self.subject(),
                issuer.subject()
            )),
        })
    }
}

fn secs(t: x509_cert::time::Time) -> i64 {
    i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
}

/// The DER certificates of every `CERTIFICATE` block of a PEM file, in order (text around
/// the blocks is ignored; other block types are refused). Possibly none.
pub fn certificates_from_pem(pem: &[u8]) -> Result<Vec<Vec<u8>>, TimestampError> {
    if pem.len() > MAX_ROOTS_PEM {
        return Err(TimestampError::Malformed(format!(
            "certificate PEM is larger than {MAX_ROOTS_PEM} bytes"
        )));
    }
    let text = std::str::from_utf8(pem)
        .map_err(|_| TimestampError::Malformed("certificate PEM is not UTF-8 text".into()))?;
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut ders = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let after = &rest[start..];
        let end = after.find(END).ok_or_else(|| {
            TimestampError::Malformed(format!("certificate PEM: {BEGIN} without {END}"))
        })? + END.len();
        let (label, der) = der::pem::decode_vec(&after.as_bytes()[..end]).map_err(|e| {
            TimestampError::Malformed(format!("certificate PEM block {}: {e}", ders.len() + 1))
        })?;
        if label != "CERTIFICATE" {
            return Err(TimestampError::Malformed(format!(
                "unexpected PEM label {label}"
            )));
        }
        ders.push(der);
        rest = &after[end..];
    }
    Ok(ders)
}

/// Trust anchors for time-stamp verification: one or more root certificates.
#[derive(Clone, Debug)]
pub struct TsaRoots {
    certs: Vec<ParsedCert>,
}

impl TsaRoots {
    /// Every `CERTIFICATE` block of a PEM file (text around the blocks is ignored); at
    /// least one.
    pub fn from_pem(pem: &[u8]) -> Result<Self, TimestampError> {
        Self::from_der(&certificates_from_pem(pem)?)
    }

    /// DER certificates; at least one.
    pub fn from_der(certs: &[Vec<u8>]) -> Result<Self, TimestampError> {
        if certs.is_empty() {
            return Err(TimestampError::Malformed(
                "no root certificate given (a PEM file needs a CERTIFICATE block)".into(),
            ));
        }
        let certs = certs
            .iter()
            .enumerate()
            .map(|(i, der)| {
                ParsedCert::parse(der).map_err(|e| {
                    TimestampError::Malformed(format!("root certificate #{}: {e}", i + 1))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TsaRoots { certs })
    }

    /// Number of root certificates.
    pub fn len(&self) -> usize {
        self.certs.len()
    }

    /// Never true for a constructed value (constructors refuse an empty set).
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    /// Subjects of the roots, for messages and diagnostics.
    pub fn subjects(&self) -> Vec<String> {
        self.certs.iter().map(ParsedCert::subject).collect()
    }

    pub(crate) fn certs(&self) -> &[ParsedCert] {
        &self.certs
    }

    fn contains(&self, cert: &ParsedCert) -> bool {
        self.certs.iter().any(|r| r.der == cert.der)
    }
}

/// Most issuer candidates examined while building one chain: with hostile certificate
/// sets (many certificates sharing a name and key) an unbounded search is exponential.
const MAX_CANDIDATES: usize = 64;

/// Builds and checks a chain from `signer` through `intermediates` to one of `roots`, as of
/// `at`: each issuer's name matches, its signature verifies, it is a CA valid at `at`.
/// Returns the subjects from the signer to the root. The signer's own validity and usage
/// are checked by the caller.
pub(crate) fn verify_chain(
    signer: &ParsedCert,
    intermediates: &[ParsedCert],
    roots: &TsaRoots,
    at: &GenTime,
) -> Result<Vec<String>, TimestampError> {
    let mut search = Search {
        intermediates,
        roots,
        at,
        best: None,
        budget: MAX_CANDIDATES,
    };
    let mut path = vec![signer];
    if search.extend(&mut path) {
        return Ok(path.iter().map(|c| c.subject()).collect());
    }
    Err(search.best.unwrap_or_else(|| {
        TimestampError::UntrustedChain(format!(
            "no trusted root or certificate in the token issued {} (its issuer is {}; trusted roots: {})",
            signer.subject(),
            signer.issuer(),
            roots.subjects().join("; ")
        ))
    }))
}

struct Search<'a> {
    intermediates: &'a [ParsedCert],
    roots: &'a TsaRoots,
    at: &'a GenTime,
    /// The last reason a candidate issuer was refused, for the error message.
    best: Option<TimestampError>,
    budget: usize,
}

impl<'a> Search<'a> {
    /// Depth-first search with backtracking: a name can be shared by several certificates
    /// (re-keyed or cross-signed CAs), so a candidate that fails is not the end.
    fn extend(&mut self, path: &mut Vec<&'a ParsedCert>) -> bool {
        let Some(&child) = path.last() else {
            return false;
        };
        // A trusted certificate ends the chain, even the signer itself.
        if self.roots.contains(child) {
            return true;
        }
        let below = path.len() - 1;
        let roots = self.roots.certs();
        for root in roots {
            if root.subject_der() == child.issuer_der() && self.accept(child, root, below) {
                path.push(root);
                return true;
            }
        }
        if path.len() >= MAX_CHAIN_DEPTH {
            self.best = Some(TimestampError::UntrustedChain(format!(
                "no trusted root within {MAX_CHAIN_DEPTH} certificates of the signer"
            )));
            return false;
        }
        let intermediates = self.intermediates;
        for cand in intermediates {
            let fresh = !path.iter().any(|c| c.der == cand.der);
            if fresh && cand.subject_der() == child.issuer_der() && self.accept(child, cand, below)
            {
                path.push(cand);
                if self.extend(path) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }

    fn accept(&mut self, child: &ParsedCert, issuer: &ParsedCert, below: usize) -> bool {
        if self.budget == 0 {
            self.best = Some(TimestampError::UntrustedChain(format!(
                "gave up building the chain after {MAX_CANDIDATES} candidate issuers"
            )));
            return false;
        }
        self.budget -= 1;
        let ok = issuer
            .check_ca(below)
            .and_then(|()| issuer.check_valid_at(self.at))
            .and_then(|()| child.verify_issued_by(issuer));
        match ok {
            Ok(()) => true,
            Err(e) => {
                self.best = Some(e);
                false
            }
        }
    }
}
