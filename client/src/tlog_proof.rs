//! c2sp.org/tlog-proof@v1: offline-verifiable proof that an entry is in a log.
//!
//! ```text
//! c2sp.org/tlog-proof@v1
//! extra <base64>            (optional)
//! index <decimal>
//! <base64 hash>             (zero or more: the RFC 6962 inclusion proof)
//!
//! <checkpoint, verbatim>
//! ```

use base64::prelude::*;

use crate::checkpoint::{verify_checkpoint, VerifiedCheckpoint, MAX_NOTE_SIZE};
pub use crate::error::TlogProofError;
use crate::merkle::{hash_from_base64, hash_to_base64, verify_inclusion, Hash};

/// The first line of every proof (c2sp.org/tlog-proof#format).
pub const HEADER: &str = "c2sp.org/tlog-proof@v1";

/// Most inclusion proof hashes accepted. A tree of fewer than 2^63 leaves has paths of at
/// most 63 hashes; anything longer cannot be a real proof and only costs work.
pub const MAX_PROOF_HASHES: usize = 63;

/// Largest proof file accepted: a maximal checkpoint plus the header, a few KiB of `extra`
/// and 63 hash lines.
pub const MAX_TLOG_PROOF_SIZE: usize = MAX_NOTE_SIZE + 16 * 1024;

/// A parsed c2sp.org/tlog-proof@v1 file.
#[derive(Debug, Clone, PartialEq)]
pub struct TlogProof {
    /// Opaque, unauthenticated application data (`extra` line); never trust it implicitly.
    pub extra: Option<Vec<u8>>,
    /// Zero-based index of the entry in the log.
    pub index: u64,
    /// RFC 6962 §2.1.1 inclusion proof, from the leaf's sibling up to the root's child.
    pub inclusion_proof: Vec<Hash>,
    /// The checkpoint (signed note), verbatim.
    pub checkpoint: Vec<u8>,
}

/// Splits the proof into '\n'-terminated lines without copying.
struct Lines<'a> {
    bytes: &'a [u8],
    pos: usize,
    line_no: usize,
}

impl<'a> Lines<'a> {
    /// The next line without its '\n', its 1-based number, and whether it had a '\n'
    /// (only the last line of the input can lack one). `None` at the end of the input.
    fn next_line(&mut self) -> Option<(usize, &'a [u8], bool)> {
        if self.pos >= self.bytes.len() {
            return None;
        }
        let rest = &self.bytes[self.pos..];
        self.line_no += 1;
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                self.pos += i + 1;
                Some((self.line_no, &rest[..i], true))
            }
            None => {
                self.pos = self.bytes.len();
                Some((self.line_no, rest, false))
            }
        }
    }
}

fn bad_line(line: usize, reason: impl Into<String>) -> TlogProofError {
    TlogProofError::BadLine {
        line,
        reason: reason.into(),
    }
}

impl TlogProof {
    /// Parses a proof strictly per c2sp.org/tlog-proof#format: exact header line, optional
    /// `extra <base64>`, `index <n>` without leading zeroes, at most 63 hash lines of
    /// base64 SHA-256 hashes, an empty line, then the checkpoint (not yet verified).
    pub fn parse(bytes: &[u8]) -> Result<Self, TlogProofError> {
        if bytes.len() > MAX_TLOG_PROOF_SIZE {
            return Err(TlogProofError::TooLarge {
                size: bytes.len(),
                limit: MAX_TLOG_PROOF_SIZE,
            });
        }
        let mut lines = Lines {
            bytes,
            pos: 0,
            line_no: 0,
        };
        match lines.next_line() {
            Some((_, l, true)) if l == HEADER.as_bytes() => {}
            _ => return Err(TlogProofError::BadHeader),
        }

        let (mut n, mut line, mut terminated) =
            lines.next_line().ok_or(TlogProofError::MissingIndex)?;
        let mut extra = None;
        if line.starts_with(b"extra") {
            let b64 = line
                .strip_prefix(b"extra ")
                .ok_or_else(|| bad_line(n, "\"extra\" must be followed by a space and base64"))?;
            let data = BASE64_STANDARD
                .decode(b64)
                .map_err(|e| bad_line(n, format!("extra data is not valid base64: {e}")))?;
            extra = Some(data);
            if !terminated {
                return Err(TlogProofError::MissingIndex);
            }
            (n, line, terminated) = lines.next_line().ok_or(TlogProofError::MissingIndex)?;
        }

        let digits = line
            .strip_prefix(b"index ")
            .ok_or(if line.starts_with(b"index") {
                bad_line(n, "\"index\" must be followed by a space and a decimal")
            } else {
                TlogProofError::MissingIndex
            })?;
        if digits.is_empty()
            || !digits.iter().all(u8::is_ascii_digit)
            || (digits.len() > 1 && digits[0] == b'0')
        {
            return Err(bad_line(n, "index is not a decimal without leading zeroes"));
        }
        // Only ASCII digits here, so the conversion to str cannot fail.
        let index: u64 = std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| bad_line(n, "index does not fit in 64 bits"))?;
        if !terminated {
            return Err(TlogProofError::MissingBlankLine);
        }

        let mut inclusion_proof = Vec::new();
        loop {
            let (n, line, terminated) =
                lines.next_line().ok_or(TlogProofError::MissingBlankLine)?;
            if !terminated {
                return Err(TlogProofError::MissingBlankLine);
            }
            if line.is_empty() {
                break;
            }
            if inclusion_proof.len() == MAX_PROOF_HASHES {
                return Err(TlogProofError::TooManyHashes {
                    max: MAX_PROOF_HASHES,
                });
            }
            let s = std::str::from_utf8(line)
                .map_err(|_| bad_line(n, "proof hash line is not valid UTF-8"))?;
            let h = hash_from_base64(s).map_err(|e| bad_line(n, format!("proof hash: {e}")))?;
            inclusion_proof.push(h);
        }
        let checkpoint = &bytes[lines.pos..];
        if checkpoint.is_empty() {
            return Err(TlogProofError::MissingCheckpoint);
        }
        Ok(TlogProof {
            extra,
            index,
            inclusion_proof,
            checkpoint: checkpoint.to_vec(),
        })
    }

    /// Serialises the proof (c2sp.org/tlog-proof#format); `parse(to_bytes(p)) == p`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(64 + 45 * self.inclusion_proof.len() + self.checkpoint.len());
        out.extend_from_slice(HEADER.as_bytes());
        out.push(b'\n');
        if let Some(extra) = &self.extra {
            out.extend_from_slice(b"extra ");
            out.extend_from_slice(BASE64_STANDARD.encode(extra).as_bytes());
            out.push(b'\n');
        }
        out.extend_from_slice(format!("index {}\n", self.index).as_bytes());
        for h in &self.inclusion_proof {
            out.extend_from_slice(hash_to_base64(h).as_bytes());
            out.push(b'\n');
        }
        out.push(b'\n');
        out.extend_from_slice(&self.checkpoint);
        out
    }

    /// Verifies the proof for an entry whose leaf hash is `leaf` (c2sp.org/tlog-proof
    /// "Verifying a tlog proof"): first the checkpoint's signature by one of `vkeys` (and
    /// its origin, if `expected_origin` is given), then the inclusion proof against the
    /// checkpoint's root. Witness cosignatures are not checked (no witness policy here).
    pub fn verify(
        &self,
        leaf: &Hash,
        vkeys: &[&str],
        expected_origin: Option<&str>,
    ) -> Result<VerifiedCheckpoint, TlogProofError> {
        let cp = verify_checkpoint(&self.checkpoint, vkeys, expected_origin)?;
        verify_inclusion(leaf, self.index, cp.size, &self.inclusion_proof, &cp.root)?;
        Ok(cp)
    }
}
