//! What the registry checks of an attestation before logging it: the blob must be an in-toto
//! Statement (in-toto attestation framework, `Statement` layer, v1 or v0.1), bare or inside
//! a DSSE envelope (secure-systems-lab/dsse `envelope.md`), whose subject names the
//! artifact's bytes and whose predicate type is the one the request declares. Signatures on
//! the envelope are kept, not verified here: keys and identities come with access control.

use base64::prelude::*;
use ledger_client::digest::Digest;
use serde::Deserialize;

/// in-toto Statement `_type` values this registry accepts.
const STATEMENT_TYPES: [&str; 2] = [
    "https://in-toto.io/Statement/v1",
    "https://in-toto.io/Statement/v0.1",
];
/// DSSE `payloadType` of an in-toto Statement.
const DSSE_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";
pub const STATEMENT_MEDIA_TYPE: &str = "application/vnd.in-toto+json";
pub const DSSE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
/// Largest statement blob the registry reads to check.
pub const MAX_STATEMENT_BYTES: u64 = 4 << 20;

/// The parts of a statement the registry checks.
#[derive(Debug, PartialEq, Eq)]
pub struct Statement {
    /// How the blob is framed: bare statement or DSSE envelope.
    pub media_type: &'static str,
    pub predicate_type: String,
    /// SHA-256 digests of the statement's subjects.
    pub subjects: Vec<Digest>,
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "payloadType")]
    payload_type: String,
    payload: String,
    signatures: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawStatement {
    #[serde(rename = "_type")]
    kind: String,
    subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    predicate_type: String,
}

#[derive(Deserialize)]
struct Subject {
    #[serde(default)]
    digest: std::collections::BTreeMap<String, String>,
}

pub fn parse(bytes: &[u8]) -> Result<Statement, String> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("the statement is not JSON: {e}"))?;
    let is_envelope = value.get("payloadType").is_some();
    let (media_type, statement) = if is_envelope {
        let env: Envelope =
            serde_json::from_value(value).map_err(|e| format!("not a DSSE envelope: {e}"))?;
        if env.payload_type != DSSE_PAYLOAD_TYPE {
            return Err(format!(
                "the DSSE envelope carries {:?}, not an in-toto statement ({DSSE_PAYLOAD_TYPE})",
                env.payload_type
            ));
        }
        if env.signatures.is_empty() {
            return Err("the DSSE envelope has no signatures".into());
        }
        let payload = BASE64_STANDARD
            .decode(env.payload.as_bytes())
            .or_else(|_| BASE64_URL_SAFE.decode(env.payload.as_bytes()))
            .map_err(|e| format!("the DSSE payload is not base64: {e}"))?;
        let s: RawStatement = serde_json::from_slice(&payload)
            .map_err(|e| format!("the DSSE payload is not an in-toto statement: {e}"))?;
        (DSSE_MEDIA_TYPE, s)
    } else {
        let s: RawStatement =
            serde_json::from_value(value).map_err(|e| format!("not an in-toto statement: {e}"))?;
        (STATEMENT_MEDIA_TYPE, s)
    };
    if !STATEMENT_TYPES.contains(&statement.kind.as_str()) {
        return Err(format!(
            "_type is {:?}, not an in-toto Statement ({})",
            statement.kind,
            STATEMENT_TYPES.join(" or ")
        ));
    }
    if statement.predicate_type.is_empty() {
        return Err("predicateType is empty".into());
    }
    let mut subjects = vec![];
    for (i, s) in statement.subject.iter().enumerate() {
        if let Some(hex) = s.digest.get("sha256") {
            subjects.push(
                Digest::from_hex(&hex.to_ascii_lowercase())
                    .map_err(|_| format!("subject[{i}].digest.sha256 is not 64 hex digits"))?,
            );
        }
    }
    if subjects.is_empty() {
        return Err("no subject has a sha256 digest".into());
    }
    Ok(Statement {
        media_type,
        predicate_type: statement.predicate_type,
        subjects,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn statement(d: &Digest) -> serde_json::Value {
        json!({
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": "model.bin", "digest": {"sha256": d.hex()}}],
            "predicateType": "https://slsa.dev/provenance/v1",
            "predicate": {"buildDefinition": {}}
        })
    }

    #[test]
    fn a_bare_statement_and_an_envelope_give_the_same_claims() {
        let d = Digest::of(b"weights");
        let bare = serde_json::to_vec(&statement(&d)).unwrap();
        let s = parse(&bare).unwrap();
        assert_eq!(s.media_type, STATEMENT_MEDIA_TYPE);
        assert_eq!(s.subjects, vec![d]);
        assert_eq!(s.predicate_type, "https://slsa.dev/provenance/v1");
        let env = json!({"payloadType": DSSE_PAYLOAD_TYPE, "payload": BASE64_STANDARD.encode(&bare),
                         "signatures": [{"keyid": "k", "sig": "c2ln"}]});
        let e = parse(&serde_json::to_vec(&env).unwrap()).unwrap();
        assert_eq!(
            (e.media_type, e.subjects, e.predicate_type),
            (DSSE_MEDIA_TYPE, s.subjects, s.predicate_type)
        );
    }

    #[test]
    fn blobs_that_are_not_in_toto_statements_are_refused() {
        let d = Digest::of(b"weights");
        let mut wrong_type = statement(&d);
        wrong_type["_type"] = json!("https://example.com/Other");
        let mut no_sha = statement(&d);
        no_sha["subject"] = json!([{"name": "x", "digest": {"md5": "00"}}]);
        let mut bad_hex = statement(&d);
        bad_hex["subject"] = json!([{"name": "x", "digest": {"sha256": "xyz"}}]);
        let mut no_pred = statement(&d);
        no_pred["predicateType"] = json!("");
        let payload = BASE64_STANDARD.encode(serde_json::to_vec(&statement(&d)).unwrap());
        let cases: Vec<Vec<u8>> = vec![
            b"not json".to_vec(),
            b"[]".to_vec(),
            b"{}".to_vec(),
            serde_json::to_vec(&wrong_type).unwrap(),
            serde_json::to_vec(&no_sha).unwrap(),
            serde_json::to_vec(&bad_hex).unwrap(),
            serde_json::to_vec(&no_pred).unwrap(),
            serde_json::to_vec(&json!({"payloadType": "text/plain", "payload": payload, "signatures": [{}]})).unwrap(),
            serde_json::to_vec(&json!({"payloadType": DSSE_PAYLOAD_TYPE, "payload": payload, "signatures": []})).unwrap(),
            serde_json::to_vec(&json!({"payloadType": DSSE_PAYLOAD_TYPE, "payload": "%%%", "signatures": [{}]})).unwrap(),
            serde_json::to_vec(&json!({"payloadType": DSSE_PAYLOAD_TYPE, "payload": BASE64_STANDARD.encode("{}"), "signatures": [{}]})).unwrap(),
        ];
        for c in cases {
            assert!(
                parse(&c).is_err(),
                "accepted {}",
                String::from_utf8_lossy(&c)
            );
        }
    }
}
