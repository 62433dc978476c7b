//! OpenSSL's RFC 3161 authority (`openssl ts -reply`) behind a loopback HTTP wrapper, for
//! interoperability tests: tokens from a widely used implementation, with RSA keys as most
//! public authorities use, checked by our verifier; and helpers to run `openssl ts -verify`
//! on our tokens.
//!
//! Needs the `openssl` command (Debian package `openssl`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Largest query body the wrapper reads.
const MAX_QUERY: usize = 64 * 1024;

/// How the OpenSSL authority is set up.
#[derive(Clone, Debug)]
pub struct OpenSslTsaOptions {
    /// `-days` of the TSA certificate; `-1` makes one that expired before it started
    /// (notAfter before notBefore), so no genTime falls inside its validity.
    pub tsa_days: i32,
    /// `signer_digest` of the `[tsa]` section: the SignerInfo digest algorithm.
    pub signer_digest: &'static str,
    /// `ess_cert_id_alg`: `sha1` makes an ESS signing-certificate (v1) attribute, as most
    /// deployed authorities still do; anything else a signing-certificate-v2 (RFC 5816).
    pub ess_cert_id_alg: &'static str,
    /// The policy OID of the tokens.
    pub policy: &'static str,
}

impl Default for OpenSslTsaOptions {
    fn default() -> Self {
        OpenSslTsaOptions {
            tsa_days: 365,
            signer_digest: "sha256",
            ess_cert_id_alg: "sha1",
            policy: "1.3.6.1.4.1.99999.3161",
        }
    }
}

/// An OpenSSL time-stamping authority on `127.0.0.1`; stopped when dropped.
pub struct OpenSslTsa {
    /// `http://127.0.0.1:PORT/tsa`: POST an `application/timestamp-query` here.
    pub url: String,
    /// The RSA-2048 root CA that issued the TSA certificate (trust anchor for verifiers).
    pub root_pem_path: PathBuf,
    /// The TSA's RSA-2048 certificate (extendedKeyUsage critical timeStamping).
    pub tsa_cert_path: PathBuf,
    pub tsa_key_path: PathBuf,
    /// The `openssl.cnf` with the `[tsa]` section.
    pub config_path: PathBuf,
    /// Number of queries answered so far.
    pub answered: Arc<AtomicUsize>,
    pub dir: tempfile::TempDir,
    stop: Arc<AtomicBool>,
    addr: std::net::SocketAddr,
    thread: Option<JoinHandle<()>>,
}

/// Runs `openssl` with `args` in `dir`; panics with its stderr if it fails.
pub fn openssl(dir: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run `openssl` ({e}); install the Debian package `openssl`")
        });
    assert!(
        out.status.success(),
        "openssl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `openssl ts -verify` with `extra` arguments (e.g. `-data`, `-in`, `-CAfile`), run in
/// `dir`: Ok(stdout) when OpenSSL prints `Verification: OK`, Err(stdout + stderr) if not.
pub fn openssl_ts_verify(dir: &Path, extra: &[&str]) -> Result<String, String> {
    let out = Command::new("openssl")
        .arg("ts")
        .arg("-verify")
        .args(extra)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run `openssl` ({e}); install the Debian package `openssl`")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && text.contains("Verification: OK") {
        Ok(text)
    } else {
        Err(text)
    }
}

const CA_CONFIG: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = OpenSSL Test Root
O = ledger interop tests
[root_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[tsa_ext]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = critical,timeStamping
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[server_ext]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

/// Writes an RSA-2048 root CA (`root.pem`, `root.key`) and `openssl.cnf` into `dir`.
fn make_root(dir: &Path) {
    std::fs::write(dir.join("ca.cnf"), CA_CONFIG).unwrap();
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "root.key",
            "-out",
            "root.pem",
            "-days",
            "3650",
            "-config",
            "ca.cnf",
            "-extensions",
            "root_ext",
        ],
    );
}

/// Issues a certificate under `root.pem` for `key` (a PEM private key file in `dir`) with
/// the extensions section `ext` of `ca.cnf`.
fn issue(dir: &Path, key: &str, cn: &str, ext: &str, days: i32, out: &str) {
    let csr = format!("{out}.csr");
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={cn}/O=ledger interop tests"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "root.pem",
            "-CAkey",
            "root.key",
            "-CAcreateserial",
            "-out",
            out,
            "-days",
            &days.to_string(),
            "-extfile",
            "ca.cnf",
            "-extensions",
            ext,
        ],
    );
}

impl OpenSslTsa {
    /// An authority with a valid RSA TSA certificate, SHA-256 signatures and an ESS
    /// signing-certificate v1 attribute.
    pub fn start() -> OpenSslTsa {
        Self::start_with(OpenSslTsaOptions::default())
    }

    /// An authority whose TSA certificate is expired (see [`OpenSslTsaOptions::tsa_days`]):
    /// `openssl ts -reply` signs with it all the same.
    pub fn start_expired() -> OpenSslTsa {
        Self::start_with(OpenSslTsaOptions {
            tsa_days: -1,
            ..OpenSslTsaOptions::default()
        })
    }

    pub fn start_with(opts: OpenSslTsaOptions) -> OpenSslTsa {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        make_root(d);
        openssl(d, &["genrsa", "-out", "tsa.key", "2048"]);
        issue(
            d,
            "tsa.key",
            "OpenSSL Test TSA",
            "tsa_ext",
            opts.tsa_days,
            "tsa.pem",
        );
        std::fs::write(d.join("serial"), "01\n").unwrap();
        let tsa_section = format!(
            "\n[tsa]\ndefault_tsa = tsa_config\n[tsa_config]\nserial = ./serial\n\
             signer_digest = {}\ndefault_policy = {}\nother_policies = 1.3.6.1.4.1.99999.3162\n\
             digests = sha256, sha384, sha512\naccuracy = secs:1\nordering = no\ntsa_name = no\n\
             ess_cert_id_chain = no\ness_cert_id_alg = {}\n",
            opts.signer_digest, opts.policy, opts.ess_cert_id_alg
        );
        std::fs::write(d.join("openssl.cnf"), format!("{CA_CONFIG}{tsa_section}")).unwrap();

        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicUsize::new(0));
        let thread = {
            let (stop, answered, work) = (stop.clone(), answered.clone(), d.to_path_buf());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(mut conn) = conn {
                        let n = answered.fetch_add(1, Ordering::SeqCst);
                        let _ = serve(&mut conn, &work, n);
                    }
                }
            })
        };
        OpenSslTsa {
            url: format!("http://{addr}/tsa"),
            root_pem_path: d.join("root.pem"),
            tsa_cert_path: d.join("tsa.pem"),
            tsa_key_path: d.join("tsa.key"),
            config_path: d.join("openssl.cnf"),
            answered,
            dir,
            stop,
            addr,
            thread: Some(thread),
        }
    }

    /// The root certificate PEM.
    pub fn root_pem(&self) -> Vec<u8> {
        std::fs::read(&self.root_pem_path).unwrap()
    }
}

impl Drop for OpenSslTsa {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One HTTP/1.1 exchange: `POST` a query, answered with `openssl ts -reply`'s output
/// (200, `application/timestamp-reply`), or 4xx/500 with a text body. `Connection: close`.
fn serve(conn: &mut TcpStream, dir: &Path, n: usize) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.trim().eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(usize::MAX);
            }
        }
    }
    let answer = |conn: &mut TcpStream, status: &str, ct: &str, body: &[u8]| {
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        conn.write_all(head.as_bytes())?;
        conn.write_all(body)?;
        conn.flush()
    };
    if !request_line.starts_with("POST ") {
        return answer(conn, "405 Method Not Allowed", "text/plain", b"POST only\n");
    }
    if length > MAX_QUERY {
        return answer(conn, "413 Payload Too Large", "text/plain", b"too large\n");
    }
    let mut body = vec![0u8; length];
    reader.read_exact(&mut body)?;
    let (q, r) = (format!("query-{n}.tsq"), format!("reply-{n}.tsr"));
    std::fs::write(dir.join(&q), &body)?;
    let out = Command::new("openssl")
        .args([
            "ts",
            "-reply",
            "-config",
            "openssl.cnf",
            "-queryfile",
            &q,
            "-inkey",
            "tsa.key",
            "-signer",
            "tsa.pem",
            "-chain",
            "root.pem",
            "-out",
            &r,
        ])
        .current_dir(dir)
        .output()?;
    match std::fs::read(dir.join(&r)) {
        Ok(reply) if out.status.success() => {
            answer(conn, "200 OK", "application/timestamp-reply", &reply)
        }
        _ => answer(conn, "500 Internal Server Error", "text/plain", &out.stderr),
    }
}

/// An authority of our own (ECDSA P-256) whose certificate, issued by an OpenSSL RSA root,
/// has extendedKeyUsage serverAuth instead of timeStamping. `openssl ts -reply` refuses
/// to sign with such a certificate, so the token comes from `ledger::tsa::Authority`'s
/// unchecked constructor. Returns the authority, the root PEM path, and the directory.
pub fn non_timestamping_authority() -> (ledger::tsa::Authority, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    make_root(d);
    openssl(
        d,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "server.key",
        ],
    );
    issue(
        d,
        "server.key",
        "Not A TSA",
        "server_ext",
        365,
        "server.pem",
    );
    let key = std::fs::read_to_string(d.join("server.key")).unwrap();
    let mut chain = std::fs::read(d.join("server.pem")).unwrap();
    chain.extend(std::fs::read(d.join("root.pem")).unwrap());
    let authority = ledger::tsa::Authority::from_pem_unchecked(&key, &chain).unwrap();
    (authority, d.join("root.pem"), dir)
}
