//! Harness for the witness: starts the real `ledger-witness` binary on a loopback port with
//! its own key, logs file and data directory, and builds add-checkpoint requests.

use crate::binary;
use ledger_client::checkpoint::sign_checkpoint;
use ledger_client::merkle::{consistency_proof, leaf_hash, root_from_leaves, Hash};
use ledger_client::witness_protocol::AddCheckpoint;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A running `ledger-witness serve`.
pub struct Witness {
    pub child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// The witness's cosigner vkey, as printed at start-up.
    pub vkey: String,
    /// Holds `witness.key`, `witness.vkey`, `logs` and `data/`.
    pub dir: PathBuf,
    /// Extra `serve` arguments, kept for restarts.
    pub args: Vec<String>,
}

/// Runs `ledger-witness keygen` into `dir` unless a key is there; returns the vkey.
pub fn keygen(dir: &Path, name: &str) -> String {
    std::fs::create_dir_all(dir).unwrap();
    if !dir.join("witness.key").exists() {
        let out = Command::new(binary("ledger-witness"))
            .args(["keygen", "--name", name, "--out"])
            .arg(dir)
            .output()
            .expect("run ledger-witness keygen");
        assert!(
            out.status.success(),
            "keygen: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    std::fs::read_to_string(dir.join("witness.vkey"))
        .unwrap()
        .trim()
        .to_string()
}

impl Witness {
    /// Generates a key named `name` in `dir` (first time only), writes `logs` (a logs file
    /// text: tlog-policy `log` lines) and starts the witness on an ephemeral port.
    pub fn start(dir: &Path, name: &str, logs: &str, args: &[&str]) -> Witness {
        keygen(dir, name);
        std::fs::write(dir.join("logs"), logs).unwrap();
        let mut w = Witness {
            child: Command::new("true").spawn().unwrap(),
            base: String::new(),
            vkey: String::new(),
            dir: dir.to_path_buf(),
            args: args.iter().map(|s| s.to_string()).collect(),
        };
        let _ = w.child.wait();
        w.spawn("127.0.0.1:0");
        w
    }

    fn spawn(&mut self, listen: &str) {
        let mut child = Command::new(binary("ledger-witness"))
            .arg("serve")
            .arg("--key")
            .arg(self.dir.join("witness.key"))
            .arg("--logs")
            .arg(self.dir.join("logs"))
            .arg("--data-dir")
            .arg(self.dir.join("data"))
            .args(["--listen", listen])
            .args(&self.args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start ledger-witness");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut vkey = String::new();
        let base = loop {
            let line = match lines.next() {
                Some(Ok(l)) => l,
                _ => {
                    let status = child.wait().expect("wait");
                    panic!("ledger-witness exited before listening: {status}");
                }
            };
            if let Some(v) = line.trim().strip_prefix("vkey ") {
                vkey = v.to_string();
            } else if let Some(url) = line.strip_prefix("witness listening on ") {
                break url.to_string();
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        self.child = child;
        self.base = base;
        self.vkey = vkey;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(&mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }

    /// Starts the witness again on the same port with the same files (after `kill9`).
    pub fn restart(&mut self) {
        let listen = self.base.trim_start_matches("http://").to_string();
        // The port may linger for a moment after a kill.
        for _ in 0..50 {
            if std::net::TcpListener::bind(&listen).is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        self.spawn(&listen);
    }
}

impl Drop for Witness {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh Ed25519 log key pair named `origin`: (`PRIVATE+KEY+...`, vkey), signature type
/// 0x01 (c2sp.org/signed-note#signature-types). Made from a freshly generated cosigner key
/// pair, whose seed and public key are the same Ed25519 material under type 0x04.
pub fn log_keypair(origin: &str) -> (String, String) {
    use base64::prelude::*;
    use sha2::{Digest, Sha256};
    let (cskey, cvkey) =
        ledger_client::cosignature::generate_cosigner_key(&mut rand::rngs::OsRng, origin);
    let seed = BASE64_STANDARD
        .decode(cskey.splitn(5, '+').nth(4).unwrap())
        .unwrap();
    let public = BASE64_STANDARD
        .decode(cvkey.splitn(3, '+').nth(2).unwrap())
        .unwrap();
    let mut material = vec![0x01];
    material.extend_from_slice(&public[1..]);
    let mut h = Sha256::new();
    h.update(origin.as_bytes());
    h.update(b"\n");
    h.update(&material);
    let id = h.finalize();
    let id = format!("{:02x}{:02x}{:02x}{:02x}", id[0], id[1], id[2], id[3]);
    let mut private = vec![0x01];
    private.extend_from_slice(&seed[1..]);
    (
        format!(
            "PRIVATE+KEY+{origin}+{id}+{}",
            BASE64_STANDARD.encode(private)
        ),
        format!("{origin}+{id}+{}", BASE64_STANDARD.encode(material)),
    )
}

/// A synthetic log for witness tests: a signing key and leaves, producing signed
/// checkpoints and consistency proofs for any of its sizes.
#[derive(Clone)]
pub struct TestLog {
    pub origin: String,
    pub skey: String,
    pub vkey: String,
    pub leaves: Vec<Hash>,
}

impl TestLog {
    pub fn new(origin: &str, entries: usize) -> Self {
        let (skey, vkey) = log_keypair(origin);
        Self::with_key(origin, &skey, &vkey, entries, "entry")
    }

    /// A log under a given key whose entries are `<tag><i>`: two logs with one key and
    /// different tags are a fork.
    pub fn with_key(origin: &str, skey: &str, vkey: &str, entries: usize, tag: &str) -> Self {
        Self {
            origin: origin.to_string(),
            skey: skey.to_string(),
            vkey: vkey.to_string(),
            leaves: (0..entries)
                .map(|i| leaf_hash(format!("{tag}{i}").as_bytes()))
                .collect(),
        }
    }

    pub fn root(&self, size: u64) -> Hash {
        root_from_leaves(&self.leaves[..size as usize])
    }

    /// The signed checkpoint at `size`.
    pub fn checkpoint(&self, size: u64) -> Vec<u8> {
        sign_checkpoint(&self.skey, &self.origin, size, &self.root(size), &[]).unwrap()
    }

    /// The consistency proof from `old` to `new` (empty from 0).
    pub fn proof(&self, old: u64, new: u64) -> Vec<Hash> {
        consistency_proof(&self.leaves[..new as usize], old).unwrap()
    }

    /// An add-checkpoint body advancing from `old` to `new`, with the right proof.
    pub fn request(&self, old: u64, new: u64) -> Vec<u8> {
        AddCheckpoint {
            old_size: old,
            proof: self.proof(old, new),
            checkpoint: self.checkpoint(new),
        }
        .to_bytes()
    }

    /// The logs-file line of this log.
    pub fn log_line(&self) -> String {
        format!("log {}\n", self.vkey)
    }
}
