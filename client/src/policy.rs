//! Trust policies in the c2sp.org/tlog-policy format: which logs are accepted, which
//! witnesses are known, and the quorum of witness cosignatures a checkpoint needs.
//!
//! ```text
//! log example.com/log+0123abcd+AQ...   https://example.com/log
//! witness w1 w1.example+89abcdef+BA... https://w1.example/
//! witness w2 w2.example+76543210+BA...
//! group both all w1 w2
//! quorum both
//! ```
//!
//! Parsing is strict (every rule of tlog-policy §"Policy file syntax and structure" is an
//! error with the line number), because a policy that means something other than its
//! author believes is worse than none. Names are opaque octet strings (§"Character set"),
//! so they are kept as bytes; vkeys and URLs must be UTF-8 to be usable at all.

use std::path::Path;

use base64::prelude::*;

use crate::checkpoint::{parse_vkey, verify_checkpoint, CheckpointError, VerifiedCheckpoint};
use crate::cosignature::{verify_cosignatures, CosignerKey};

/// Largest policy file accepted.
pub const MAX_POLICY_SIZE: usize = 1 << 20;

/// Most logs, witnesses or groups in one policy. tlog-policy §"Implementation limits"
/// recommends supporting at least 32 of each.
pub const MAX_DEFINITIONS: usize = 1024;

/// Why a policy file was refused or a checkpoint does not satisfy it.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy file is {size} bytes; the limit is {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("policy line {line}: {message}")]
    Syntax { line: usize, message: String },
    #[error("policy has no quorum line (tlog-policy: exactly one is required)")]
    NoQuorum,
    #[error("reading policy file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("the policy lists no log, and no log key was given")]
    NoLogKeys,
    #[error("checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    #[error("cosignatures: {0}")]
    Cosignature(String),
    #[error("witness quorum not met: cosigned by {cosigned} of the {known} known witnesses ({names}); the quorum is {quorum}")]
    QuorumNotMet {
        cosigned: usize,
        known: usize,
        names: String,
        quorum: String,
    },
}

/// A log the policy accepts (`log <vkey> [<url>]`).
#[derive(Debug, Clone)]
pub struct PolicyLog {
    /// The vkey as written; its key name is the log's origin.
    pub vkey: String,
    pub origin: String,
    pub url: Option<String>,
}

/// A witness (`witness <name> <vkey> [<url>]`).
#[derive(Debug, Clone)]
pub struct PolicyWitness {
    /// The policy-local name: opaque bytes, meaningful only inside the policy.
    pub name: Vec<u8>,
    pub key: CosignerKey,
    /// The witness's submission prefix (tlog-policy §"Defining a witness").
    pub url: Option<String>,
}

impl PolicyWitness {
    /// The name for messages (non-UTF-8 bytes shown as U+FFFD).
    pub fn display_name(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Member {
    Witness(usize),
    Group(usize),
}

#[derive(Debug, Clone)]
struct Group {
    name: Vec<u8>,
    threshold: usize,
    members: Vec<Member>,
}

#[derive(Debug, Clone)]
enum Quorum {
    /// `quorum none`: no cosignature is required.
    None,
    Of(Member),
}

/// A parsed, internally consistent policy.
#[derive(Debug, Clone)]
pub struct Policy {
    logs: Vec<PolicyLog>,
    witnesses: Vec<PolicyWitness>,
    groups: Vec<Group>,
    quorum: Quorum,
}

/// A checkpoint signed by an accepted log and cosigned by a quorum of witnesses.
#[derive(Debug, Clone)]
pub struct PolicyCheckpoint {
    pub checkpoint: VerifiedCheckpoint,
    /// Each witness whose cosignature verified: (policy name, cosignature timestamp).
    pub cosigners: Vec<(String, u64)>,
}

fn syntax(line: usize, message: impl Into<String>) -> PolicyError {
    PolicyError::Syntax {
        line,
        message: message.into(),
    }
}

fn utf8<'a>(line: usize, what: &str, b: &'a [u8]) -> Result<&'a str, PolicyError> {
    std::str::from_utf8(b).map_err(|_| syntax(line, format!("the {what} is not valid UTF-8")))
}

/// The raw public key inside a vkey (`name+id+base64(type || key)`), for duplicate checks:
/// tlog-policy calls two vkeys duplicates when they wrap the same key under any name.
fn vkey_material(vkey: &str) -> Option<Vec<u8>> {
    // Names hold no '+', but standard base64 may: the key is everything after the second.
    let b64 = vkey.splitn(3, '+').nth(2)?;
    let raw = BASE64_STANDARD.decode(b64).ok()?;
    raw.get(1..).map(<[u8]>::to_vec)
}

impl Policy {
    /// Reads and parses a policy file.
    pub fn read_file(path: impl AsRef<Path>) -> Result<Self, PolicyError> {
        use std::io::Read;
        let path = path.as_ref();
        let io = |source| PolicyError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut buf = Vec::new();
        std::fs::File::open(path)
            .map_err(io)?
            .take(MAX_POLICY_SIZE as u64 + 1)
            .read_to_end(&mut buf)
            .map_err(io)?;
        Self::parse(&buf)
    }

    /// Parses a policy (c2sp.org/tlog-policy).
    pub fn parse(text: &[u8]) -> Result<Self, PolicyError> {
        if text.len() > MAX_POLICY_SIZE {
            return Err(PolicyError::TooLarge {
                size: text.len(),
                limit: MAX_POLICY_SIZE,
            });
        }
        let mut p = Policy {
            logs: vec![],
            witnesses: vec![],
            groups: vec![],
            quorum: Quorum::None,
        };
        let mut quorum_seen = false;
        for (i, raw) in text.split(|&b| b == b'\n').enumerate() {
            let line = i + 1;
            // §"Character set": tab, newline, 0x20-0x7E and 0x80-0xFF only. A carriage return
            // (a file saved with CRLF endings) is the usual offender; name it.
            if let Some(&bad) = raw.iter().find(|&&b| b != b'\t' && (b < 0x20 || b == 0x7f)) {
                let what = if bad == b'\r' {
                    "a carriage return (CRLF line ending?)".to_string()
                } else {
                    format!("control character 0x{bad:02x}")
                };
                return Err(syntax(line, format!("{what} is not allowed")));
            }
            // §"Structure": items are separated by runs of spaces and tabs only.
            let items: Vec<&[u8]> = raw
                .split(|&b| b == b' ' || b == b'\t')
                .filter(|s| !s.is_empty())
                .collect();
            let Some(&keyword) = items.first() else {
                continue;
            };
            if keyword.starts_with(b"#") {
                continue;
            }
            match keyword {
                b"log" => p.parse_log(line, &items[1..])?,
                b"witness" => p.parse_witness(line, &items[1..])?,
                b"group" => p.parse_group(line, &items[1..])?,
                b"quorum" => {
                    if quorum_seen {
                        return Err(syntax(
                            line,
                            "a second quorum line (exactly one is allowed)",
                        ));
                    }
                    quorum_seen = true;
                    let [name] = items[1..] else {
                        return Err(syntax(line, "expected `quorum <name>`"));
                    };
                    p.quorum = if name == b"none" {
                        Quorum::None
                    } else {
                        Quorum::Of(p.lookup(line, name)?)
                    };
                }
                other => {
                    return Err(syntax(
                        line,
                        format!(
                            "unknown keyword {:?} (expected log, witness, group or quorum)",
                            String::from_utf8_lossy(other)
                        ),
                    ))
                }
            }
        }
        if !quorum_seen {
            return Err(PolicyError::NoQuorum);
        }
        Ok(p)
    }

    fn parse_log(&mut self, line: usize, args: &[&[u8]]) -> Result<(), PolicyError> {
        let (vkey, url) = match args {
            [v] => (*v, None),
            [v, u] => (*v, Some(*u)),
            _ => return Err(syntax(line, "expected `log <vkey> [<url>]`")),
        };
        if self.logs.len() >= MAX_DEFINITIONS {
            return Err(syntax(line, format!("more than {MAX_DEFINITIONS} logs")));
        }
        let vkey = utf8(line, "log vkey", vkey)?;
        let key = parse_vkey(vkey).map_err(|e| syntax(line, format!("log vkey: {e}")))?;
        let material = vkey_material(vkey);
        if self.logs.iter().any(|l| vkey_material(&l.vkey) == material) {
            return Err(syntax(
                line,
                "duplicate log: this public key is already listed",
            ));
        }
        let url = url
            .map(|u| utf8(line, "log URL", u).map(str::to_string))
            .transpose()?;
        self.logs.push(PolicyLog {
            vkey: vkey.to_string(),
            origin: key.name().to_string(),
            url,
        });
        Ok(())
    }

    fn parse_witness(&mut self, line: usize, args: &[&[u8]]) -> Result<(), PolicyError> {
        let (name, vkey, url) = match args {
            [n, v] => (*n, *v, None),
            [n, v, u] => (*n, *v, Some(*u)),
            _ => return Err(syntax(line, "expected `witness <name> <vkey> [<url>]`")),
        };
        if self.witnesses.len() >= MAX_DEFINITIONS {
            return Err(syntax(
                line,
                format!("more than {MAX_DEFINITIONS} witnesses"),
            ));
        }
        self.check_new_name(line, name)?;
        let vkey = utf8(line, "witness vkey", vkey)?;
        let key =
            CosignerKey::parse(vkey).map_err(|e| syntax(line, format!("witness vkey: {e}")))?;
        if self
            .witnesses
            .iter()
            .any(|w| w.key.public_key() == key.public_key())
        {
            return Err(syntax(
                line,
                "duplicate witness: this public key is already listed",
            ));
        }
        let url = url
            .map(|u| utf8(line, "witness URL", u).map(str::to_string))
            .transpose()?;
        self.witnesses.push(PolicyWitness {
            name: name.to_vec(),
            key,
            url,
        });
        Ok(())
    }

    fn parse_group(&mut self, line: usize, args: &[&[u8]]) -> Result<(), PolicyError> {
        let [name, threshold, members @ ..] = args else {
            return Err(syntax(
                line,
                "expected `group <name> <all|any|k> <name>...`",
            ));
        };
        if members.is_empty() {
            return Err(syntax(line, "a group needs at least one member"));
        }
        if self.groups.len() >= MAX_DEFINITIONS {
            return Err(syntax(line, format!("more than {MAX_DEFINITIONS} groups")));
        }
        self.check_new_name(line, name)?;
        let n = members.len();
        let threshold = match *threshold {
            b"all" => n,
            b"any" => 1,
            k => {
                // Decimal, 1 <= k <= n (§"Defining a witness group").
                let k = std::str::from_utf8(k)
                    .ok()
                    .filter(|s| s.bytes().all(|b| b.is_ascii_digit()) && !s.is_empty())
                    .and_then(|s| s.parse::<usize>().ok())
                    .ok_or_else(|| {
                        syntax(
                            line,
                            format!(
                                "threshold {:?} is not all, any or a decimal number",
                                String::from_utf8_lossy(k)
                            ),
                        )
                    })?;
                if k == 0 || k > n {
                    return Err(syntax(
                        line,
                        format!("threshold {k} must be between 1 and the {n} members"),
                    ));
                }
                k
            }
        };
        let mut resolved = Vec::with_capacity(n);
        for m in members.iter() {
            let member = self.lookup(line, m)?;
            if resolved.contains(&member) {
                return Err(syntax(
                    line,
                    format!(
                        "{:?} is listed twice in the group",
                        String::from_utf8_lossy(m)
                    ),
                ));
            }
            resolved.push(member);
        }
        self.groups.push(Group {
            name: name.to_vec(),
            threshold,
            members: resolved,
        });
        Ok(())
    }

    /// Witnesses and groups share one namespace, and `none` is predefined.
    fn check_new_name(&self, line: usize, name: &[u8]) -> Result<(), PolicyError> {
        let shown = String::from_utf8_lossy(name);
        if name == b"none" {
            return Err(syntax(line, "`none` is predefined and cannot be redefined"));
        }
        if matches!(name, b"log" | b"witness" | b"group" | b"quorum") || name.starts_with(b"#") {
            return Err(syntax(line, format!("{shown:?} cannot be used as a name")));
        }
        if self.witnesses.iter().any(|w| w.name == name)
            || self.groups.iter().any(|g| g.name == name)
        {
            return Err(syntax(line, format!("{shown:?} is already defined")));
        }
        Ok(())
    }

    /// A name defined on a preceding line (which also rules out cycles).
    fn lookup(&self, line: usize, name: &[u8]) -> Result<Member, PolicyError> {
        if name == b"none" {
            return Err(syntax(line, "`none` cannot be a group member"));
        }
        if let Some(i) = self.witnesses.iter().position(|w| w.name == name) {
            return Ok(Member::Witness(i));
        }
        if let Some(i) = self.groups.iter().position(|g| g.name == name) {
            return Ok(Member::Group(i));
        }
        Err(syntax(
            line,
            format!(
                "{:?} is not a witness or group defined on an earlier line",
                String::from_utf8_lossy(name)
            ),
        ))
    }

    pub fn logs(&self) -> &[PolicyLog] {
        &self.logs
    }

    pub fn witnesses(&self) -> &[PolicyWitness] {
        &self.witnesses
    }

    /// Whether no cosignature is required (`quorum none`).
    pub fn requires_no_cosignatures(&self) -> bool {
        matches!(self.quorum, Quorum::None)
    }

    /// Whether the witnesses marked in `cosigned` (indexed like [`Policy::witnesses`])
    /// satisfy the quorum. Groups only name earlier definitions, so one pass in
    /// definition order evaluates every group.
    pub fn quorum_met(&self, cosigned: &[bool]) -> bool {
        let witnessed = |m: &Member, groups: &[bool]| match *m {
            Member::Witness(i) => cosigned.get(i).copied().unwrap_or(false),
            Member::Group(i) => groups[i],
        };
        let mut groups = Vec::with_capacity(self.groups.len());
        for g in &self.groups {
            let n = g.members.iter().filter(|m| witnessed(m, &groups)).count();
            groups.push(n >= g.threshold);
        }
        match &self.quorum {
            Quorum::None => true,
            Quorum::Of(m) => witnessed(m, &groups),
        }
    }

    /// The quorum rule in words, for messages.
    pub fn describe_quorum(&self) -> String {
        fn member(p: &Policy, m: &Member) -> String {
            match *m {
                Member::Witness(i) => p.witnesses[i].display_name(),
                Member::Group(i) => {
                    let g = &p.groups[i];
                    let inner: Vec<String> = g.members.iter().map(|m| member(p, m)).collect();
                    format!(
                        "{} ({} of {}: {})",
                        String::from_utf8_lossy(&g.name),
                        g.threshold,
                        g.members.len(),
                        inner.join(", ")
                    )
                }
            }
        }
        match &self.quorum {
            Quorum::None => "none".into(),
            Quorum::Of(m) => member(self, m),
        }
    }

    /// Verifies `note` as tlog-proof §"Verification" asks: signed by one of the policy's
    /// logs (or one of `extra_log_vkeys`, for applications that know the log from context),
    /// then cosigned by witnesses satisfying the quorum. Cosignatures by keys the policy
    /// does not list are ignored; a listed key whose cosignature fails is an error.
    pub fn verify_checkpoint(
        &self,
        note: &[u8],
        extra_log_vkeys: &[&str],
    ) -> Result<PolicyCheckpoint, PolicyError> {
        let mut vkeys: Vec<&str> = self.logs.iter().map(|l| l.vkey.as_str()).collect();
        vkeys.extend_from_slice(extra_log_vkeys);
        if vkeys.is_empty() {
            return Err(PolicyError::NoLogKeys);
        }
        let checkpoint = verify_checkpoint(note, &vkeys, None)?;
        let keys: Vec<CosignerKey> = self.witnesses.iter().map(|w| w.key.clone()).collect();
        let stamps = verify_cosignatures(note, &keys)
            .map_err(|e| PolicyError::Cosignature(e.to_string()))?;
        let cosigned: Vec<bool> = stamps.iter().map(Option::is_some).collect();
        let cosigners: Vec<(String, u64)> = self
            .witnesses
            .iter()
            .zip(&stamps)
            .filter_map(|(w, t)| t.map(|t| (w.display_name(), t)))
            .collect();
        if !self.quorum_met(&cosigned) {
            return Err(PolicyError::QuorumNotMet {
                cosigned: cosigners.len(),
                known: self.witnesses.len(),
                names: if cosigners.is_empty() {
                    "none".into()
                } else {
                    cosigners
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                },
                quorum: self.describe_quorum(),
            });
        }
        Ok(PolicyCheckpoint {
            checkpoint,
            cosigners,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::sign_checkpoint;
    use crate::cosignature::{generate_cosigner_key, CosignerSigner};
    use crate::merkle::Hash;
    use rand::rngs::OsRng;

    struct Fixture {
        log_skey: String,
        log_vkey: String,
        witnesses: Vec<(String, String)>, // (skey, vkey)
    }

    fn fixture(n: usize) -> Fixture {
        let (log_skey, log_vkey) = signed_note::generate_key(&mut OsRng, "example.com/log");
        let witnesses = (0..n)
            .map(|i| generate_cosigner_key(&mut OsRng, &format!("w{i}.example")))
            .collect();
        Fixture {
            log_skey,
            log_vkey,
            witnesses,
        }
    }

    /// A checkpoint signed by the log and cosigned by the witnesses in `by`.
    fn note(f: &Fixture, by: &[usize]) -> Vec<u8> {
        let mut note =
            sign_checkpoint(&f.log_skey, "example.com/log", 5, &Hash([7; 32]), &[]).unwrap();
        let text_end = note.windows(2).rposition(|w| w == b"\n\n").unwrap() + 1;
        let text = note[..text_end].to_vec();
        for &i in by {
            let s = CosignerSigner::from_skey(&f.witnesses[i].0).unwrap();
            note.extend_from_slice(s.sign(&text, 1_700_000_000 + i as u64).as_bytes());
        }
        note
    }

    fn two_of_three_and_one(f: &Fixture) -> String {
        let w = &f.witnesses;
        format!(
            "# example\nlog {} http://127.0.0.1:1/log\n\nwitness X1 {}\nwitness X2 {}\n  witness\tX3 {} http://x3/\ngroup X 2 X1 X2 X3\nwitness Y1 {}\ngroup Y any Y1\ngroup XY all X Y\nquorum XY\n",
            f.log_vkey, w[0].1, w[1].1, w[2].1, w[3].1
        )
    }

    #[test]
    fn a_nested_quorum_is_met_only_by_enough_witnesses_of_each_group() {
        let f = fixture(4);
        let p = Policy::parse(two_of_three_and_one(&f).as_bytes()).unwrap();
        assert_eq!(p.logs().len(), 1);
        assert_eq!(p.witnesses().len(), 4);
        assert_eq!(p.witnesses()[2].url.as_deref(), Some("http://x3/"));
        for (by, ok) in [
            (&[0, 1, 3][..], true),
            (&[0, 2, 3][..], true),
            (&[0, 1, 2, 3][..], true),
            (&[0, 1, 2][..], false), // no Y
            (&[0, 3][..], false),    // only one X
            (&[][..], false),
        ] {
            let r = p.verify_checkpoint(&note(&f, by), &[]);
            assert_eq!(r.is_ok(), ok, "{by:?}: {r:?}");
            if let Ok(v) = r {
                assert_eq!(v.cosigners.len(), by.len());
            } else {
                assert!(matches!(r, Err(PolicyError::QuorumNotMet { .. })));
            }
        }
    }

    #[test]
    fn quorum_none_needs_no_cosignature_but_still_the_log_signature() {
        let f = fixture(1);
        let p = Policy::parse(format!("log {}\nquorum none\n", f.log_vkey).as_bytes()).unwrap();
        assert!(p.requires_no_cosignatures());
        p.verify_checkpoint(&note(&f, &[]), &[]).unwrap();
        let other = fixture(0);
        let p2 =
            Policy::parse(format!("log {}\nquorum none\n", other.log_vkey).as_bytes()).unwrap();
        assert!(matches!(
            p2.verify_checkpoint(&note(&f, &[]), &[]),
            Err(PolicyError::Checkpoint(_))
        ));
        // No log in the policy: the caller must name one.
        let p3 = Policy::parse(b"quorum none\n").unwrap();
        assert!(matches!(
            p3.verify_checkpoint(&note(&f, &[]), &[]),
            Err(PolicyError::NoLogKeys)
        ));
        p3.verify_checkpoint(&note(&f, &[]), &[&f.log_vkey])
            .unwrap();
    }

    #[test]
    fn a_forged_cosignature_by_a_listed_witness_is_an_error_not_a_missing_vote() {
        let f = fixture(2);
        let p = Policy::parse(
            format!(
                "witness A {}\nwitness B {}\ngroup G any A B\nquorum G\n",
                f.witnesses[0].1, f.witnesses[1].1
            )
            .as_bytes(),
        )
        .unwrap();
        let mut n = note(&f, &[0, 1]);
        // Flip a bit inside the last signature's base64 payload.
        let pos = n.len() - 10;
        n[pos] = if n[pos] == b'A' { b'B' } else { b'A' };
        assert!(matches!(
            p.verify_checkpoint(&n, &[&f.log_vkey]),
            Err(PolicyError::Cosignature(_))
        ));
    }

    #[test]
    fn logs_whose_keys_hold_a_plus_in_base64_are_told_apart_and_duplicates_still_found() {
        let plus_key = |name: &str| loop {
            let (_, v) = signed_note::generate_key(&mut OsRng, name);
            if v.splitn(3, '+').nth(2).unwrap().contains('+') {
                break v;
            }
        };
        let (a, b) = (plus_key("a.example/log"), plus_key("b.example/log"));
        let two = format!(
            "log {a}
log {b}
quorum none
"
        );
        assert_eq!(Policy::parse(two.as_bytes()).unwrap().logs.len(), 2);
        // The same key under another name is the same log.
        let b64 = a.splitn(3, '+').nth(2).unwrap();
        let raw = BASE64_STANDARD.decode(b64).unwrap();
        use sha2::{Digest, Sha256};
        let id = Sha256::new()
            .chain_update(b"c.example/log\n")
            .chain_update(&raw)
            .finalize();
        let id: String = id[..4].iter().map(|b| format!("{b:02x}")).collect();
        let renamed = format!("c.example/log+{id}+{b64}");
        let dup = format!(
            "log {a}
log {renamed}
quorum none
"
        );
        let e = Policy::parse(dup.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("duplicate log"), "{e}");
    }

    #[test]
    fn malformed_policies_name_the_line_and_the_rule() {
        let f = fixture(2);
        let (a, b) = (&f.witnesses[0].1, &f.witnesses[1].1);
        let cases: Vec<(String, &str)> = vec![
            ("".into(), "no quorum"),
            ("quorum none\nquorum none\n".into(), "second quorum"),
            ("quorum W\n".into(), "earlier line"),
            (format!("quorum A\nwitness A {a}\n"), "earlier line"),
            (
                format!("witness A {a}\nwitness A {b}\nquorum A\n"),
                "already defined",
            ),
            (
                format!("witness A {a}\nwitness B {a}\nquorum A\n"),
                "duplicate witness",
            ),
            (format!("witness none {a}\nquorum none\n"), "predefined"),
            (
                format!("witness A {a}\ngroup G 2 A\nquorum G\n"),
                "between 1 and",
            ),
            (
                format!("witness A {a}\ngroup G 0 A\nquorum G\n"),
                "between 1 and",
            ),
            (
                format!("witness A {a}\ngroup G two A\nquorum G\n"),
                "decimal",
            ),
            (
                format!("witness A {a}\ngroup G any A A\nquorum G\n"),
                "listed twice",
            ),
            (
                format!("witness A {a}\ngroup G any\nquorum G\n"),
                "at least one member",
            ),
            (
                format!("witness A {a}\ngroup G any none\nquorum G\n"),
                "cannot be a group member",
            ),
            (
                format!("witness A {a}\ngroup G any G\nquorum G\n"),
                "earlier line",
            ),
            (
                format!("log {0}\nlog {0}\nquorum none\n", f.log_vkey),
                "duplicate log",
            ),
            (format!("log {}\nquorum none\n", a), "log vkey"),
            (
                format!("witness A {}\nquorum A\n", f.log_vkey),
                "witness vkey",
            ),
            ("quorum none\r\n".into(), "carriage return"),
            ("quorum none\n\x01\n".into(), "control character"),
            ("frobnicate x\nquorum none\n".into(), "unknown keyword"),
            (
                format!("witness A {a} http://a extra\nquorum A\n"),
                "expected `witness",
            ),
            ("quorum none x\n".into(), "expected `quorum"),
        ];
        for (text, want) in cases {
            let e = Policy::parse(text.as_bytes()).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e} (wanted {want:?})");
        }
        let huge = vec![b'#'; MAX_POLICY_SIZE + 1];
        assert!(matches!(
            Policy::parse(&huge),
            Err(PolicyError::TooLarge { .. })
        ));
    }

    #[test]
    fn names_are_opaque_bytes_and_comments_may_hold_anything() {
        let f = fixture(2);
        let text = [
            b"# \xff\xfe comment with non-UTF-8\n".to_vec(),
            format!("witness K {}\n", f.witnesses[0].1).into_bytes(),
            // U+212A KELVIN SIGN is a different name from ASCII K.
            format!("witness \u{212a} {}\n", f.witnesses[1].1).into_bytes(),
            "group both all K \u{212a}\nquorum both\n"
                .as_bytes()
                .to_vec(),
        ]
        .concat();
        let p = Policy::parse(&text).unwrap();
        assert_eq!(p.witnesses().len(), 2);
        assert!(p.quorum_met(&[true, true]));
        assert!(!p.quorum_met(&[true, false]));
        assert!(p.describe_quorum().contains("2 of 2"));
    }
}
