//! The bodies of c2sp.org/tlog-witness: the `add-checkpoint` request, its 409 and 200
//! answers, and the monitoring path. Parsing is strict (the spec's MUSTs are checked, hostile
//! input is bounded and never panics); nothing here does I/O.
//!
//! ```
//! use ledger_client::witness_protocol::{AddCheckpoint, monitoring_path, parse_size_body};
//! let req = AddCheckpoint { old_size: 0, proof: vec![], checkpoint: b"o\n0\nX\n\n\xe2\x80\x94 o AAAAAAA=\n".to_vec() };
//! let body = req.to_bytes();
//! assert!(body.starts_with(b"old 0\n\n"));
//! assert_eq!(AddCheckpoint::parse(&body).unwrap(), req);
//! assert_eq!(parse_size_body(b"42\n").unwrap(), 42);
//! assert!(monitoring_path("example.com/log").ends_with("/checkpoint"));
//! ```

use base64::prelude::*;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::checkpoint::{MAX_NOTE_SIZE, MAX_SIGNATURES};
use crate::merkle::{Hash, HASH_SIZE};

/// Most consistency proof lines in an add-checkpoint request (c2sp.org/tlog-witness#add-checkpoint:
/// "The client MUST NOT send more than 63 consistency proof lines").
pub const MAX_PROOF_LINES: usize = 63;

/// Largest add-checkpoint body: the old size line (`old ` + 20 digits + newline), 63 proof
/// lines of 44 base64 characters and a newline, the empty line, and a checkpoint of at most
/// [`MAX_NOTE_SIZE`] bytes.
pub const MAX_ADD_CHECKPOINT_SIZE: usize = 4 + 20 + 1 + MAX_PROOF_LINES * 45 + 1 + MAX_NOTE_SIZE;

/// Content type of a 409 answer (c2sp.org/tlog-witness#add-checkpoint).
pub const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// The add-checkpoint path below the submission prefix (c2sp.org/tlog-witness#add-checkpoint).
pub const ADD_CHECKPOINT_PATH: &str = "add-checkpoint";

/// Largest 200 answer accepted by [`parse_cosignature_lines`].
pub const MAX_COSIGNATURE_BODY: usize = MAX_NOTE_SIZE;

/// A malformed witness protocol body.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WitnessProtocolError {
    #[error("body is {size} bytes, more than the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("line {line} does not end with a newline")]
    MissingNewline { line: usize },
    #[error(
        "the first line must be \"old <size>\" (c2sp.org/tlog-witness#add-checkpoint), got {0:?}"
    )]
    BadOldLine(String),
    #[error(
        "{what} {value:?} is not an ASCII decimal without leading zeroes that fits in 64 bits"
    )]
    BadNumber { what: &'static str, value: String },
    #[error("consistency proof line {line} is not a base64 SHA-256 hash: {reason}")]
    BadProofLine { line: usize, reason: String },
    #[error("more than {max} consistency proof lines (c2sp.org/tlog-witness#add-checkpoint)")]
    TooManyProofLines { max: usize },
    #[error("no empty line between the consistency proof and the checkpoint")]
    MissingEmptyLine,
    #[error("no checkpoint after the empty line")]
    MissingCheckpoint,
    #[error("checkpoint is {size} bytes, more than the {limit}-byte limit")]
    CheckpointTooLarge { size: usize, limit: usize },
    #[error("the answer has no cosignature lines")]
    NoCosignatures,
    #[error("cosignature line {line} {reason}")]
    BadCosignatureLine { line: usize, reason: String },
    #[error("body is not valid UTF-8 (at byte {0})")]
    NotUtf8(usize),
}

/// Parses an ASCII decimal with no leading zeroes ("0" for zero) that fits in a u64.
fn parse_decimal(what: &'static str, s: &[u8]) -> Result<u64, WitnessProtocolError> {
    let bad = || WitnessProtocolError::BadNumber {
        what,
        value: String::from_utf8_lossy(&s[..s.len().min(64)]).into_owned(),
    };
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) || (s.len() > 1 && s[0] == b'0') {
        return Err(bad());
    }
    std::str::from_utf8(s)
        .ok()
        .and_then(|t| t.parse::<u64>().ok())
        .ok_or_else(bad)
}

/// An add-checkpoint request body (c2sp.org/tlog-witness#add-checkpoint).
#[derive(Debug, Clone, PartialEq)]
pub struct AddCheckpoint {
    /// The size of the latest checkpoint the client believes the witness cosigned.
    pub old_size: u64,
    /// The consistency proof from `old_size` to the checkpoint's size (RFC 6962 §2.1.2).
    pub proof: Vec<Hash>,
    /// The signed checkpoint note, signatures included.
    pub checkpoint: Vec<u8>,
}

impl AddCheckpoint {
    /// Parses a request body: `old <size>\n`, zero to 63 lines of one base64 hash each, an
    /// empty line, then the checkpoint (c2sp.org/tlog-witness#add-checkpoint). The
    /// checkpoint is not verified here, only bounded by [`MAX_NOTE_SIZE`].
    pub fn parse(body: &[u8]) -> Result<Self, WitnessProtocolError> {
        if body.len() > MAX_ADD_CHECKPOINT_SIZE {
            return Err(WitnessProtocolError::TooLarge {
                size: body.len(),
                limit: MAX_ADD_CHECKPOINT_SIZE,
            });
        }
        // "Each line MUST terminate in a newline character (U+000A)."
        let mut rest = body;
        let mut line_no = 0usize;
        let (_, old) = next_line(&mut rest, &mut line_no)?;
        let digits = old.strip_prefix(b"old ").ok_or_else(|| {
            WitnessProtocolError::BadOldLine(
                String::from_utf8_lossy(&old[..old.len().min(64)]).into_owned(),
            )
        })?;
        let old_size = parse_decimal("old size", digits)?;
        let mut proof = Vec::new();
        loop {
            if rest.is_empty() {
                return Err(WitnessProtocolError::MissingEmptyLine);
            }
            let (n, line) = next_line(&mut rest, &mut line_no).map_err(|e| match e {
                WitnessProtocolError::MissingNewline { .. } => {
                    WitnessProtocolError::MissingEmptyLine
                }
                e => e,
            })?;
            if line.is_empty() {
                break;
            }
            if proof.len() == MAX_PROOF_LINES {
                return Err(WitnessProtocolError::TooManyProofLines {
                    max: MAX_PROOF_LINES,
                });
            }
            proof.push(parse_hash_line(n, line)?);
        }
        if rest.is_empty() {
            return Err(WitnessProtocolError::MissingCheckpoint);
        }
        if rest.len() > MAX_NOTE_SIZE {
            return Err(WitnessProtocolError::CheckpointTooLarge {
                size: rest.len(),
                limit: MAX_NOTE_SIZE,
            });
        }
        Ok(AddCheckpoint {
            old_size,
            proof,
            checkpoint: rest.to_vec(),
        })
    }

    /// The request body, in the layout [`AddCheckpoint::parse`] reads.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(26 + self.proof.len() * 45 + 1 + self.checkpoint.len());
        b.extend_from_slice(format!("old {}\n", self.old_size).as_bytes());
        let mut buf = [0u8; 44];
        for h in &self.proof {
            let n = BASE64_STANDARD
                .encode_slice(h.0, &mut buf)
                .expect("44 bytes hold a base64 hash");
            b.extend_from_slice(&buf[..n]);
            b.push(b'\n');
        }
        b.push(b'\n');
        b.extend_from_slice(&self.checkpoint);
        b
    }
}

/// Splits the next newline-terminated line off `rest`, counting lines from 1.
fn next_line<'a>(
    rest: &mut &'a [u8],
    line_no: &mut usize,
) -> Result<(usize, &'a [u8]), WitnessProtocolError> {
    *line_no += 1;
    let i = rest
        .iter()
        .position(|&b| b == b'\n')
        .ok_or(WitnessProtocolError::MissingNewline { line: *line_no })?;
    let line = &rest[..i];
    *rest = &rest[i + 1..];
    Ok((*line_no, line))
}

/// One proof line: standard, padded, canonical base64 of exactly 32 bytes.
fn parse_hash_line(line: usize, s: &[u8]) -> Result<Hash, WitnessProtocolError> {
    let bad = |reason: String| WitnessProtocolError::BadProofLine { line, reason };
    if s.len() != 44 {
        return Err(bad(format!(
            "a base64 SHA-256 hash is 44 characters, got {}",
            s.len()
        )));
    }
    let mut out = [0u8; 48];
    let n = BASE64_STANDARD
        .decode_slice(s, &mut out)
        .map_err(|e| bad(e.to_string()))?;
    if n != HASH_SIZE {
        return Err(bad(format!("decodes to {n} bytes, not 32")));
    }
    let mut h = [0u8; HASH_SIZE];
    h.copy_from_slice(&out[..HASH_SIZE]);
    Ok(Hash(h))
}

/// Parses the body of a 409 answer (`text/x.tlog.size`): the witness's latest cosigned tree
/// size in decimal followed by a newline (c2sp.org/tlog-witness#add-checkpoint).
pub fn parse_size_body(body: &[u8]) -> Result<u64, WitnessProtocolError> {
    // 20 digits and a newline at most.
    if body.len() > 21 {
        return Err(WitnessProtocolError::TooLarge {
            size: body.len(),
            limit: 21,
        });
    }
    let digits = body
        .strip_suffix(b"\n")
        .ok_or(WitnessProtocolError::MissingNewline { line: 1 })?;
    parse_decimal("tree size", digits)
}

/// Parses the body of a 200 answer: one or more note signature lines, each `— <key name>
/// <base64>` and ending in a newline (c2sp.org/tlog-witness#add-checkpoint). Returns the
/// lines, each with its newline, ready to be appended to the checkpoint. Signatures are not
/// verified here (see [`crate::cosignature::verify_cosignatures`]).
pub fn parse_cosignature_lines(body: &[u8]) -> Result<Vec<String>, WitnessProtocolError> {
    if body.len() > MAX_COSIGNATURE_BODY {
        return Err(WitnessProtocolError::TooLarge {
            size: body.len(),
            limit: MAX_COSIGNATURE_BODY,
        });
    }
    let s =
        std::str::from_utf8(body).map_err(|e| WitnessProtocolError::NotUtf8(e.valid_up_to()))?;
    if s.is_empty() {
        return Err(WitnessProtocolError::NoCosignatures);
    }
    let mut lines = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let n = lines.len() + 1;
        let bad = |reason: String| WitnessProtocolError::BadCosignatureLine { line: n, reason };
        if n > MAX_SIGNATURES {
            return Err(bad(format!(
                "is beyond the limit of {MAX_SIGNATURES} lines"
            )));
        }
        let i = rest
            .find('\n')
            .ok_or(WitnessProtocolError::MissingNewline { line: n })?;
        let line = &rest[..i];
        // c2sp.org/signed-note#format: no control characters other than newline.
        if line.bytes().any(|b| b < 0x20) {
            return Err(bad("contains a control character".into()));
        }
        crate::cosignature::parse_signature_line(line).map_err(bad)?;
        lines.push(rest[..=i].to_string());
        rest = &rest[i + 1..];
    }
    Ok(lines)
}

/// The monitoring path of a log below the monitoring prefix: `<lowercase hex SHA-256 of the
/// origin>/checkpoint` (c2sp.org/tlog-witness#monitor-retrieval-mechanism).
pub fn monitoring_path(origin: &str) -> String {
    format!("{}/checkpoint", origin_hash(origin))
}

/// Lowercase hex SHA-256 of an origin, as used in the monitoring path.
pub fn origin_hash(origin: &str) -> String {
    Sha256::digest(origin.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merkle::{hash_to_base64, leaf_hash};

    const CP: &[u8] = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n".as_bytes();

    #[test]
    fn the_spec_example_parses() {
        // c2sp.org/tlog-witness#add-checkpoint, example request body.
        let body = [
            &b"old 20852014\nPlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\njrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=\n/6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=\n\n"[..],
            CP,
        ]
        .concat();
        let r = AddCheckpoint::parse(&body).unwrap();
        assert_eq!(r.old_size, 20852014);
        assert_eq!(r.proof.len(), 4);
        assert_eq!(
            hash_to_base64(&r.proof[3]),
            "/6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0="
        );
        assert_eq!(r.checkpoint, CP);
        assert_eq!(r.to_bytes(), body);
    }

    #[test]
    fn round_trips() {
        for n in [0usize, 1, 5, MAX_PROOF_LINES] {
            let req = AddCheckpoint {
                old_size: n as u64 * 1000,
                proof: (0..n).map(|i| leaf_hash(&[i as u8])).collect(),
                checkpoint: CP.to_vec(),
            };
            assert_eq!(AddCheckpoint::parse(&req.to_bytes()).unwrap(), req);
        }
        let max = AddCheckpoint {
            old_size: u64::MAX,
            proof: vec![],
            checkpoint: CP.to_vec(),
        };
        assert_eq!(AddCheckpoint::parse(&max.to_bytes()).unwrap(), max);
    }

    #[test]
    fn malformed_requests_say_what_is_wrong() {
        let h = hash_to_base64(&leaf_hash(b"x"));
        let cp = std::str::from_utf8(CP).unwrap();
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "newline"),
            ("old 5".into(), "newline"),
            (format!("new 5\n\n{cp}"), "old <size>"),
            (format!("old  5\n\n{cp}"), "leading zeroes"),
            (format!("old 05\n\n{cp}"), "leading zeroes"),
            (format!("old -1\n\n{cp}"), "leading zeroes"),
            (format!("old +1\n\n{cp}"), "leading zeroes"),
            (format!("old 5 \n\n{cp}"), "leading zeroes"),
            (format!("old 0x10\n\n{cp}"), "leading zeroes"),
            (format!("old\n\n{cp}"), "old <size>"),
            (format!("old \n\n{cp}"), "leading zeroes"),
            (format!("old 18446744073709551616\n\n{cp}"), "64 bits"),
            (format!("old 5\r\n\n{cp}"), "leading zeroes"),
            (format!("OLD 5\n\n{cp}"), "old <size>"),
            ("old 5\n".into(), "no empty line"),
            (format!("old 5\n{h}\n"), "no empty line"),
            (format!("old 5\n{h}"), "no empty line"),
            ("old 5\n\n".into(), "no checkpoint"),
            (format!("old 5\n{h}\n\n"), "no checkpoint"),
            (format!("old 5\nAAAA\n\n{cp}"), "44 characters"),
            (format!("old 5\n{h} \n\n{cp}"), "44 characters"),
            (format!("old 5\n {h}\n\n{cp}"), "44 characters"),
            (format!("old 5\n{}\n\n{cp}", &h[..43]), "44 characters"),
            (format!("old 5\n{}!\n\n{cp}", &h[..43]), "base64"),
            // 44 characters that decode to 33 bytes.
            (
                format!("old 5\n{}\n\n{cp}", BASE64_STANDARD.encode([7u8; 33])),
                "33 bytes",
            ),
            // URL-safe alphabet.
            (
                format!("old 5\n{}\n\n{cp}", BASE64_URL_SAFE.encode([0xfbu8; 32])),
                "base64",
            ),
            // Non-canonical trailing bits.
            (
                format!(
                    "old 5\n{}B=\n\n{cp}",
                    &BASE64_STANDARD.encode([0u8; 32])[..42]
                ),
                "base64",
            ),
            (format!("old 5\n{}\n\n{cp}", "\u{e9}".repeat(22)), "base64"),
        ];
        for (body, want) in cases {
            let e = AddCheckpoint::parse(body.as_bytes()).unwrap_err();
            assert!(
                e.to_string().contains(want),
                "{body:?}: {e} (wanted {want:?})"
            );
        }
        let too_many: String = (0..=MAX_PROOF_LINES).map(|_| format!("{h}\n")).collect();
        let e = AddCheckpoint::parse(format!("old 5\n{too_many}\n{cp}").as_bytes()).unwrap_err();
        assert_eq!(e, WitnessProtocolError::TooManyProofLines { max: 63 });
    }

    #[test]
    fn oversized_requests_are_refused_before_parsing() {
        let huge = vec![b'a'; MAX_ADD_CHECKPOINT_SIZE + 1];
        assert!(matches!(
            AddCheckpoint::parse(&huge),
            Err(WitnessProtocolError::TooLarge { .. })
        ));
        let mut body = b"old 1\n\n".to_vec();
        body.extend(std::iter::repeat_n(b'a', MAX_NOTE_SIZE + 1));
        assert!(matches!(
            AddCheckpoint::parse(&body),
            Err(WitnessProtocolError::CheckpointTooLarge { .. })
        ));
        let mut body = b"old 1\n\n".to_vec();
        body.extend(std::iter::repeat_n(b'a', MAX_NOTE_SIZE));
        assert!(AddCheckpoint::parse(&body).is_ok());
    }

    #[test]
    fn hostile_bodies_never_panic() {
        let h = hash_to_base64(&leaf_hash(b"x"));
        let good = [format!("old 5\n{h}\n{h}\n\n").as_bytes(), CP].concat();
        for i in 0..good.len() {
            let _ = AddCheckpoint::parse(&good[..i]);
            for bit in [0x01u8, 0x20, 0x80] {
                let mut f = good.clone();
                f[i] ^= bit;
                let _ = AddCheckpoint::parse(&f);
            }
        }
        for junk in [
            &b"\n"[..],
            b"\n\n",
            b"\xff\xfe",
            b"old 1\n\xff\n\n",
            b"old 1\n\n\n",
        ] {
            let _ = AddCheckpoint::parse(junk);
        }
    }

    #[test]
    fn size_bodies() {
        assert_eq!(parse_size_body(b"0\n").unwrap(), 0);
        assert_eq!(parse_size_body(b"20852163\n").unwrap(), 20852163);
        assert_eq!(
            parse_size_body(b"18446744073709551615\n").unwrap(),
            u64::MAX
        );
        for bad in [
            &b""[..],
            b"\n",
            b"5",
            b"05\n",
            b"5\n\n",
            b" 5\n",
            b"5 \n",
            b"5\r\n",
            b"-5\n",
            b"18446744073709551616\n",
            b"123456789012345678901234\n",
            b"\xff\n",
        ] {
            assert!(parse_size_body(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cosignature_answers() {
        // c2sp.org/tlog-witness#add-checkpoint, example response body.
        let body = "\u{2014} witness.example/w1 CMp+6LWBU0anHGH5aNDTJkH/gj79sG+T6+iP2ThYN5krrDJbR1HDnucjL39QsZTSvVjyQLrdk3DXDqI5G2HgLatVs0pWh6Up69HVOw==\n\u{2014} witness.example/w1 I7rEps0pvK2UqkS2gSpVUDhrhVtQV9lgF6pRrWAvjJHjyWpW7VcE3SiOlVlbQNt64vWhO+DlkL0+UfzuOBMh9ChdMkP1vi/lCAsmlw==\n\u{2014} witness.example/w2 AWui8Sk55XjYLOijihBjhqEH6nS1ndDymE0a+6idX7pLcnoB+dhnz0854aLZgrrKbYKA7nC3HNJhm/kWl7oJlqU3rXXvpysAdyP3wQ==\n";
        let lines = parse_cosignature_lines(body.as_bytes()).unwrap();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines.concat(), body);
        assert!(lines.iter().all(|l| l.ends_with('\n')));
        let many = "\u{2014} w AAAAAAA=\n".repeat(MAX_SIGNATURES + 1);
        for bad in [
            "",
            "\n",
            "\u{2014} w AAAAAAA=",
            "\u{2014} w AAAAAAA=\n\n",
            "- w AAAAAAA=\n",
            "\u{2014} w AAAA\n",
            "\u{2014} w !!!!!!!!\n",
            "\u{2014}  AAAAAAA=\n",
            "\u{2014} wAAAAAAA=\n",
            "\u{2014} w+x AAAAAAA=\n",
            "\u{2014} w AAAAAAA=\r\n",
            "\u{2014} w AAAAAAA=\n\u{2014} w\tx AAAAAAA=\n",
            many.as_str(),
        ] {
            assert!(parse_cosignature_lines(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert!(parse_cosignature_lines(b"\xe2\x80\n").is_err());
        assert!(parse_cosignature_lines(&vec![b'a'; MAX_COSIGNATURE_BODY + 1]).is_err());
    }

    #[test]
    fn monitoring_paths_hash_the_origin() {
        // SHA-256("example.com/behind-the-sofa"), computed independently.
        let p = monitoring_path("example.com/behind-the-sofa");
        let (hex, tail) = p.split_once('/').unwrap();
        assert_eq!(tail, "checkpoint");
        assert_eq!(hex.len(), 64);
        assert!(hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')));
        assert_eq!(
            hex,
            crate::merkle::hash_to_hex(&Hash(
                Sha256::digest(b"example.com/behind-the-sofa").into()
            ))
        );
    }
}
