//! The list of witnessed logs, in C2SP tlog-policy syntax restricted to `log` lines:
//!
//! ```text
//! # comments and blank lines are ignored
//! log example.com/log+1a2b3c4d+AQ... https://example.com/log
//! log example.com/log+5e6f7a8b+AQ...          # a second key for the same origin
//! ```
//!
//! c2sp.org/tlog-policy#structure: lines are split on runs of ASCII spaces and tabs only;
//! leading and trailing whitespace is allowed; a line whose first non-whitespace character
//! is `#` is a comment. c2sp.org/tlog-policy#defining-a-log: `log <vkey> [<url>]`, the
//! vkey's key name is the log's origin, and two lines with the same public key (even under
//! different names) are refused. Log keys are Ed25519 signed-note keys (type 0x01,
//! c2sp.org/tlog-checkpoint#signatures). `witness`, `group` and `quorum` lines describe a
//! verifier's policy, not a witness's configuration, and are refused rather than ignored.

use anyhow::{bail, Context, Result};
use base64::prelude::*;
use ledger_client::checkpoint::{parse_vkey, VerifierKey};
use std::collections::HashMap;
use std::path::Path;

/// Largest logs file read.
const MAX_FILE: u64 = 64 << 20;

/// One witnessed log: an origin and the keys trusted to sign its checkpoints.
#[derive(Debug, Clone)]
pub struct LogConfig {
    pub origin: String,
    /// Every key configured for this origin (several are allowed, e.g. during a rotation).
    pub keys: Vec<VerifierKey>,
    /// URLs given on the log lines, for operators; the witness does not contact logs.
    pub urls: Vec<String>,
}

impl LogConfig {
    /// The configured vkeys as strings, as `ledger_client::checkpoint` takes them.
    pub fn vkeys(&self) -> Vec<&str> {
        self.keys.iter().map(VerifierKey::as_str).collect()
    }
}

/// Whitespace of c2sp.org/tlog-policy#structure: ASCII space and tab only.
fn is_ws(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Parses a logs file; logs come out in the order their origin first appears.
pub fn parse_logs(text: &str) -> Result<Vec<LogConfig>> {
    let mut logs: Vec<LogConfig> = Vec::new();
    let mut by_origin: HashMap<String, usize> = HashMap::new();
    // Raw public key (without the type byte) -> line, to refuse duplicates.
    let mut seen_keys: HashMap<Vec<u8>, usize> = HashMap::new();
    for (i, line) in text.split('\n').enumerate() {
        let n = i + 1;
        if line.contains('\r') {
            bail!("line {n}: carriage return; the file must use LF line endings (c2sp.org/tlog-policy#structure)");
        }
        let trimmed = line.trim_matches(is_ws);
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = trimmed.split(is_ws).filter(|f| !f.is_empty()).collect();
        match fields[0] {
            "log" => {}
            kw @ ("witness" | "group" | "quorum") => bail!(
                "line {n}: {kw:?} lines define a verifier's policy; a witness's logs file holds only `log <vkey> [<url>]` lines"
            ),
            kw => bail!("line {n}: unknown keyword {kw:?}; expected `log <vkey> [<url>]`"),
        }
        let (vkey, url) = match fields.as_slice() {
            [_, vkey] => (*vkey, None),
            [_, vkey, url] => (*vkey, Some(*url)),
            [_] => bail!("line {n}: `log` needs a vkey"),
            _ => bail!("line {n}: too many fields; expected `log <vkey> [<url>]`"),
        };
        let key = parse_vkey(vkey).with_context(|| format!("line {n}: log key {vkey:?}"))?;
        let raw = BASE64_STANDARD
            .decode(vkey.splitn(3, '+').nth(2).unwrap_or_default())
            .context("vkey material")?;
        if let Some(first) = seen_keys.insert(raw[1..].to_vec(), n) {
            bail!("line {n}: the same public key as line {first} (c2sp.org/tlog-policy: duplicate logs are not allowed)");
        }
        let origin = key.name().to_string();
        let idx = *by_origin.entry(origin.clone()).or_insert_with(|| {
            logs.push(LogConfig {
                origin,
                keys: vec![],
                urls: vec![],
            });
            logs.len() - 1
        });
        let log = &mut logs[idx];
        if log.keys.iter().any(|k| k.key_id() == key.key_id()) {
            bail!(
                "line {n}: two keys for {:?} share the key ID {:08x}",
                log.origin,
                key.key_id()
            );
        }
        log.keys.push(key);
        if let Some(u) = url {
            log.urls.push(u.to_string());
        }
    }
    if logs.is_empty() {
        bail!("no `log <vkey>` lines: the witness would have nothing to witness");
    }
    Ok(logs)
}

/// Reads and parses a logs file.
pub fn read_logs(path: &Path) -> Result<Vec<LogConfig>> {
    use std::io::Read;
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut buf = String::new();
    f.take(MAX_FILE + 1)
        .read_to_string(&mut buf)
        .with_context(|| format!("reading {} (UTF-8 text)", path.display()))?;
    if buf.len() as u64 > MAX_FILE {
        bail!("{} is larger than {MAX_FILE} bytes", path.display());
    }
    parse_logs(&buf).with_context(|| format!("logs file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vkey(name: &str) -> String {
        signed_note::generate_key(&mut rand::rngs::OsRng, name).1
    }

    #[test]
    fn log_lines_comments_and_whitespace() {
        let (a1, a2, b) = (
            vkey("a.example/log"),
            vkey("a.example/log"),
            vkey("b.example"),
        );
        let text = format!(
            "# witnessed logs\n\n  \t\nlog {a1} https://a.example/log\n\t log\t{b}  \n  # indented comment\nlog {a2}\n"
        );
        let logs = parse_logs(&text).unwrap();
        assert_eq!(logs.len(), 2);
        assert_eq!(logs[0].origin, "a.example/log");
        assert_eq!(logs[0].vkeys(), vec![a1.as_str(), a2.as_str()]);
        assert_eq!(logs[0].urls, vec!["https://a.example/log".to_string()]);
        assert_eq!(logs[1].origin, "b.example");
        assert!(logs[1].urls.is_empty());
        // No final newline is fine too.
        assert_eq!(parse_logs(&format!("log {b}")).unwrap().len(), 1);
    }

    #[test]
    fn bad_files_are_refused_with_the_line() {
        let a = vkey("a.example");
        let (cos_skey, cos) =
            ledger_client::cosignature::generate_cosigner_key(&mut rand::rngs::OsRng, "w.example");
        let _ = cos_skey;
        // The same public key under another name.
        let raw = a.splitn(3, '+').nth(2).unwrap();
        let other_name = {
            let material = BASE64_STANDARD.decode(raw).unwrap();
            format!(
                "z.example+{:08x}+{raw}",
                signed_note::key_id("z.example", &material)
            )
        };
        for (text, want) in [
            (String::new(), "no `log"),
            ("# nothing\n".into(), "no `log"),
            (
                format!("log {a}\nlog {a}\n"),
                "line 2: the same public key as line 1",
            ),
            (
                format!("log {a}\nlog {other_name}\n"),
                "line 2: the same public key",
            ),
            (format!("log {a} url extra\n"), "line 1: too many fields"),
            ("log\n".into(), "needs a vkey"),
            (format!("witness w {cos}\n"), "verifier's policy"),
            ("quorum none\n".into(), "verifier's policy"),
            (format!("logs {a}\n"), "unknown keyword"),
            (format!("log {cos}\n"), "log key"),
            ("log a+00000000+AAAA\n".into(), "log key"),
            (format!("log {a}\r\n"), "carriage return"),
            (format!("log {a}\u{a0}\n"), "log key"),
        ] {
            let e = format!("{:#}", parse_logs(&text).unwrap_err());
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }
}
