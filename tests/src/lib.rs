//! Harness for end-to-end tests: starts the real `ledger` binary on a loopback port with a
//! fresh data directory, and talks to it over HTTP.

pub mod openssl_tsa;
pub mod ports;
pub mod seaweed;
pub mod softhsm;
pub mod witness;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Path of a workspace binary (`ledger`, `ledgerctl`) built next to the running test.
///
/// `cargo test --workspace` builds every package's binaries before running tests; the test
/// executable lives in `target/<profile>/deps/`, the binaries one level up.
pub fn binary(name: &str) -> PathBuf {
    if let Ok(p) = std::env::var(format!("{}_BIN", name.to_uppercase())) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let p = dir.join(name);
    assert!(
        p.exists(),
        "{} not built; run `cargo build --workspace` (or `cargo test --workspace`) first",
        p.display()
    );
    p
}

pub struct Ledger {
    pub child: Child,
    /// `http://127.0.0.1:PORT`, or `https://127.0.0.1:PORT` when started with `--tls-cert`:
    /// the scheme is the one the ledger announced.
    pub base: String,
    pub data_dir: PathBuf,
    pub args: Vec<String>,
    /// vkey of each hosted log, in start-up order: (name, vkey).
    pub vkeys: Vec<(String, String)>,
}

impl Ledger {
    /// Starts `ledger` on an ephemeral loopback port with `data_dir` and extra args.
    pub fn start(data_dir: &Path, args: &[&str]) -> Ledger {
        Self::start_on(data_dir, "127.0.0.1:0", args)
    }

    pub fn start_on(data_dir: &Path, listen: &str, args: &[&str]) -> Ledger {
        Self::start_with_env(data_dir, listen, &[], args)
    }

    /// `start_on` with extra environment variables for the server (e.g. `SOFTHSM2_CONF`).
    pub fn start_with_env(
        data_dir: &Path,
        listen: &str,
        env: &[(&str, &std::ffi::OsStr)],
        args: &[&str],
    ) -> Ledger {
        let mut cmd = Command::new(binary("ledger"));
        cmd.envs(env.iter().copied());
        cmd.arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg(listen)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("start ledger");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let mut vkeys = vec![];
        let mut current = String::new();
        let base = loop {
            let line = match lines.next() {
                Some(Ok(l)) => l,
                _ => {
                    let status = child.wait().expect("wait");
                    panic!("ledger exited before listening: {status}");
                }
            };
            if let Some(rest) = line.strip_prefix("log ") {
                current = rest.split(':').next().unwrap_or("").to_string();
            } else if let Some(v) = line.trim().strip_prefix("vkey ") {
                vkeys.push((current.clone(), v.to_string()));
            } else if let Some(url) = line.strip_prefix("ledger listening on ") {
                // `http://ADDR`, or `https://ADDR` with TLS.
                assert!(
                    url.starts_with("http://") || url.starts_with("https://"),
                    "unexpected listening line: {line}"
                );
                break url.to_string();
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ledger {
            child,
            base,
            data_dir: data_dir.to_path_buf(),
            args: args.iter().map(|s| s.to_string()).collect(),
            vkeys,
        }
    }

    pub fn vkey(&self, log: &str) -> &str {
        &self
            .vkeys
            .iter()
            .find(|(n, _)| n == log)
            .expect("log hosted")
            .1
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &str {
        self.base.split_once("://").map_or("", |(s, _)| s)
    }

    /// The listening socket address (`127.0.0.1:PORT`), for raw TCP clients.
    pub fn addr(&self) -> std::net::SocketAddr {
        let rest = self.base.split_once("://").map_or("", |(_, r)| r);
        rest.parse()
            .expect("the ledger listens on a socket address")
    }

    /// SIGKILL: no shutdown code runs, as in a crash or power cut of the process.
    pub fn kill9(&mut self) {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP agent that returns non-2xx answers as responses rather than errors.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn collect(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<Resp, String> {
    let mut r = r.map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    let headers = r
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    let body = r
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .map_err(|e| e.to_string())?;
    Ok(Resp {
        status,
        headers,
        body,
    })
}

/// Any method, any headers.
pub fn request(
    a: &ureq::Agent,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Resp, String> {
    let mut b = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b.body(body.to_vec()).map_err(|e| e.to_string())?;
    collect(a.run(req))
}

pub fn get(a: &ureq::Agent, url: &str) -> Result<Resp, String> {
    collect(a.get(url).call())
}

pub fn post(a: &ureq::Agent, url: &str, content_type: &str, body: &[u8]) -> Result<Resp, String> {
    collect(a.post(url).header("content-type", content_type).send(body))
}

/// Checks a registry write's receipt offline, as a client would: the checkpoint verifies
/// under the `artifacts` log's key, the entry's leaf is included in it, and the entry is
/// exactly the event the answer describes. Returns its index and the event.
pub fn verified_receipt(l: &Ledger, r: &Resp) -> (u64, ledger_client::event::Event) {
    use base64::prelude::*;
    use ledger_client::merkle::{hash_from_base64, leaf_hash, verify_inclusion, Hash};
    let j = r.json();
    let entry = BASE64_STANDARD
        .decode(j["entry"].as_str().unwrap())
        .unwrap();
    let cp = ledger_client::checkpoint::verify_checkpoint(
        j["checkpoint"].as_str().unwrap().as_bytes(),
        &[l.vkey("artifacts")],
        None,
    )
    .unwrap();
    let proof: Vec<Hash> = j["inclusion_proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| hash_from_base64(h.as_str().unwrap()).unwrap())
        .collect();
    let index = j["index"].as_u64().unwrap();
    verify_inclusion(&leaf_hash(&entry), index, cp.size, &proof, &cp.root).unwrap();
    let ev = ledger_client::event::Event::decode(&entry).unwrap();
    assert_eq!(serde_json::to_value(&ev).unwrap(), j["event"]);
    (index, ev)
}

/// `ledger token create` on a stopped ledger's data directory: the token it prints.
pub fn offline_token(data: &Path, principal: &str, role: &str) -> String {
    let out = Command::new(binary("ledger"))
        .arg("token")
        .arg("--data-dir")
        .arg(data)
        .args(["create", "--principal", principal, "--role", role])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The records of one access-audit entry: decision records come coalesced,
/// `{"type":"decisions","v":1,"records":[...]}`; policy and grant records alone.
pub fn audit_entry_records(entry: &[u8]) -> Vec<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_slice(entry).expect("audit entries are JSON");
    if v["type"] == "decisions" {
        assert_eq!(v["v"], 1, "{v}");
        let records = v["records"].as_array().expect("records").clone();
        assert!(!records.is_empty(), "an empty decisions entry");
        assert!(records.iter().all(|r| r["type"] == "decision"), "{v}");
        records
    } else {
        vec![v]
    }
}

/// `ledgerctl` with `args`, no ambient credential: (exit code, stdout, stderr).
pub fn ledgerctl(args: &[&str]) -> (i32, String, String) {
    run_binary("ledgerctl", args)
}

/// A workspace binary run to completion with `args` and no `LEDGER_TOKEN` in its
/// environment: (exit code, stdout, stderr).
pub fn run_binary(name: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary(name))
        .args(args)
        .env_remove("LEDGER_TOKEN")
        .output()
        .unwrap_or_else(|e| panic!("run {name}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A registry write without access control (the body names its `actor`); 201 expected.
/// Returns the answer's JSON.
pub fn registry_write(l: &Ledger, what: &str, body: serde_json::Value) -> serde_json::Value {
    let r = request(
        &agent(),
        "POST",
        &l.url(&format!("/registry/v1/{what}")),
        &[("content-type", "application/json")],
        body.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 201, "{what}: {}", r.text());
    r.json()
}

/// Uploads `bytes` as a blob of repository `name` (monolithic, `?digest=`); 201 expected.
pub fn upload_blob(l: &Ledger, name: &str, bytes: &[u8]) -> ledger_client::digest::Digest {
    let d = ledger_client::digest::Digest::of(bytes);
    let r = post(
        &agent(),
        &l.url(&format!("/v2/{name}/blobs/uploads/?digest={d}")),
        "application/octet-stream",
        bytes,
    )
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    d
}

/// Publishes a model signed with `skey` (ledger_client::publisher); with `claim`, the
/// signature is made with `skey` but names `claim`'s key: a forgery. Returns its index.
pub fn publish_signed(
    l: &Ledger,
    name: &str,
    version: &str,
    bytes: &[u8],
    skey: &str,
    claim: Option<&str>,
) -> u64 {
    use ledger_client::event::{Kind, Published};
    let d = upload_blob(l, name, bytes);
    let p = Published {
        name: name.into(),
        version: version.into(),
        kind: Kind::Model,
        digest: d,
        size: bytes.len() as u64,
        media_type: "application/octet-stream".into(),
        meta_digest: None,
        meta: None,
        actor: "ci".into(),
        sig: None,
        time: 0,
    };
    let mut sig = ledger_client::publisher::sign(skey, &p).unwrap();
    if let Some(c) = claim {
        sig.keyid = ledger_client::publisher::sign(c, &p).unwrap().keyid;
    }
    registry_write(
        l,
        "publish",
        serde_json::json!({"name": name, "version": version, "kind": "model",
            "digest": d.to_string(), "actor": "ci", "sig": sig}),
    )["index"]
        .as_u64()
        .unwrap()
}
