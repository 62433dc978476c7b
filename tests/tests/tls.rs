//! HTTPS and mutual TLS end to end (specs/access.md, "TLS and mutual TLS"): the real
//! `ledger` with `--tls-cert`/`--tls-key`, and `--tls-client-ca` with client certificates
//! naming principals. Certificates are made at test time with the `openssl` command line
//! (a P-256 CA, a server certificate for 127.0.0.1, client certificates), independently of
//! the rustls code under test; clients are ureq (rustls) and curl (OpenSSL, for HTTP/2).

use ledger_e2e::{binary, offline_token, request, Ledger, Resp};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the openssl command (Debian package openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A certificate and its key (mode 0600), as files.
#[derive(Clone)]
struct Issued {
    cert: PathBuf,
    key: PathBuf,
}

impl Issued {
    fn der(&self) -> Vec<u8> {
        let pem = std::fs::read(&self.cert).unwrap();
        ureq::tls::Certificate::from_pem(&pem)
            .unwrap()
            .der()
            .to_vec()
    }
}

/// A throwaway certificate authority in a directory.
struct Ca {
    dir: PathBuf,
    name: String,
    issued: Issued,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        let (cert, key) = (format!("{name}.pem"), format!("{name}.key"));
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &cert,
                "-days",
                "2",
                "-subj",
                &format!("/CN={name}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
        let issued = Issued {
            cert: dir.join(cert),
            key: dir.join(key),
        };
        std::fs::set_permissions(&issued.key, std::fs::Permissions::from_mode(0o600)).unwrap();
        Ca {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            issued,
        }
    }

    /// An end-entity certificate `file` with subject `subject` (OpenSSL's `/K=V/...` form)
    /// and the given extension lines.
    fn issue(&self, file: &str, subject: &str, extensions: &str) -> Issued {
        let (cert, key, csr, ext) = (
            format!("{file}.pem"),
            format!("{file}.key"),
            format!("{file}.csr"),
            format!("{file}.ext"),
        );
        openssl(
            &self.dir,
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                subject,
            ],
        );
        std::fs::write(
            self.dir.join(&ext),
            format!(
                "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n{extensions}\n"
            ),
        )
        .unwrap();
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &format!("{}.pem", self.name),
                "-CAkey",
                &format!("{}.key", self.name),
                "-set_serial",
                &format!("{}", rand::random::<u32>()),
                "-days",
                "2",
                "-out",
                &cert,
                "-extfile",
                &ext,
            ],
        );
        let key = self.dir.join(key);
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        Issued {
            cert: self.dir.join(cert),
            key,
        }
    }

    fn server(&self) -> Issued {
        self.issue(
            "server",
            "/CN=ledger.test",
            "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost",
        )
    }

    fn client(&self, file: &str, subject: &str) -> Issued {
        self.issue(file, subject, "extendedKeyUsage=clientAuth")
    }
}

/// A ureq agent (rustls) trusting `roots` (the built-in web roots if `None`) and presenting
/// `client` if given. Non-2xx answers are responses, not errors.
fn agent(roots: Option<&Path>, client: Option<&Issued>) -> ureq::Agent {
    use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};
    let mut tls = TlsConfig::builder();
    if let Some(r) = roots {
        let pem = std::fs::read(r).unwrap();
        tls = tls.root_certs(RootCerts::new_with_certs(&[
            Certificate::from_pem(&pem).unwrap()
        ]));
    }
    if let Some(c) = client {
        let cert = Certificate::from_pem(&std::fs::read(&c.cert).unwrap()).unwrap();
        let key = PrivateKey::from_pem(&std::fs::read(&c.key).unwrap()).unwrap();
        tls = tls.client_cert(Some(ClientCert::new_with_certs(&[cert], key)));
    }
    ureq::Agent::config_builder()
        .tls_config(tls.build())
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

fn call(
    a: &ureq::Agent,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: &[u8],
) -> Result<Resp, String> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = vec![("content-type", "application/octet-stream")];
    if let Some(a) = &auth {
        headers.push(("authorization", a));
    }
    request(a, method, url, &headers, body)
}

fn get(a: &ureq::Agent, url: &str) -> Result<Resp, String> {
    call(a, "GET", url, None, b"")
}

fn tls_args(server: &Issued) -> Vec<&str> {
    vec![
        "--tls-cert",
        server.cert.to_str().unwrap(),
        "--tls-key",
        server.key.to_str().unwrap(),
    ]
}

/// Runs `ledger` expecting it to refuse to start; returns its stderr.
fn start_fails(data: &Path, args: &[&str]) -> String {
    let out = Command::new(binary("ledger"))
        .arg("--data-dir")
        .arg(data)
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "started: {stdout}");
    assert!(
        !stdout.contains("listening"),
        "it must not listen: {stdout}"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn https_serves_checkpoints_that_verify_to_clients_trusting_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "test-ca");
    let server = ca.server();
    let l = Ledger::start(&dir.path().join("data"), &tls_args(&server));
    assert_eq!(l.scheme(), "https", "{}", l.base);
    let a = agent(Some(&ca.issued.cert), None);

    let r = call(&a, "POST", &l.url("/artifacts/add"), None, b"over TLS").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let r = get(&a, &l.url("/artifacts/checkpoint")).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let cp = ledger_client::checkpoint::verify_checkpoint(&r.body, &[l.vkey("artifacts")], None)
        .expect("the checkpoint verifies under the log's key");
    assert_eq!(cp.size, 1);

    // HTTP/2 and HTTP/1.1 by ALPN, to an independent client (curl on OpenSSL).
    for (flag, version) in [("--http2", "2"), ("--http1.1", "1.1")] {
        let out = Command::new("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_version} %{http_code}",
                flag,
            ])
            .arg("--cacert")
            .arg(&ca.issued.cert)
            .arg(l.url("/artifacts/checkpoint"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("{version} 200")
        );
    }
}

#[test]
fn plain_http_and_clients_not_trusting_the_ca_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "test-ca");
    let server = ca.server();
    let l = Ledger::start(&dir.path().join("data"), &tls_args(&server));

    // Plain HTTP to the TLS port: no HTTP answer at all.
    let plain = l
        .url("/artifacts/checkpoint")
        .replace("https://", "http://");
    let r = get(&agent(None, None), &plain);
    assert!(
        r.is_err(),
        "plain HTTP was answered: {:?}",
        r.map(|r| r.status)
    );
    let mut s = TcpStream::connect(l.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.write_all(b"GET /artifacts/checkpoint HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = vec![];
    let _ = s.read_to_end(&mut answer);
    assert!(
        !answer.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );

    // The built-in web roots do not include the test CA; another CA is no better.
    let err = refused(get(&agent(None, None), &l.url("/artifacts/checkpoint")));
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    let other = Ca::new(dir.path(), "other-ca");
    let err = refused(get(
        &agent(Some(&other.issued.cert), None),
        &l.url("/artifacts/checkpoint"),
    ));
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    // And the server still serves those who trust it.
    let r = get(&agent(Some(&ca.issued.cert), None), &l.url("/healthz")).unwrap();
    assert_eq!(r.status, 200);
}

#[test]
fn unusable_tls_files_are_start_errors_that_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "test-ca");
    let server = ca.server();
    let data = dir.path().join("data");
    let cert = server.cert.to_str().unwrap();
    let key = server.key.to_str().unwrap();

    // A key others may read.
    std::fs::set_permissions(&server.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = start_fails(&data, &["--tls-cert", cert, "--tls-key", key]);
    assert!(err.contains(key) && err.contains("chmod 600"), "{err}");
    std::fs::set_permissions(&server.key, std::fs::Permissions::from_mode(0o600)).unwrap();

    let missing = dir.path().join("missing.pem");
    let missing = missing.to_str().unwrap();
    let err = start_fails(&data, &["--tls-cert", missing, "--tls-key", key]);
    assert!(err.contains(missing), "{err}");
    let err = start_fails(&data, &["--tls-cert", cert, "--tls-key", missing]);
    assert!(err.contains(missing), "{err}");

    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, b"\x00\xffnot PEM at all\n").unwrap();
    std::fs::set_permissions(&garbage, std::fs::Permissions::from_mode(0o600)).unwrap();
    let garbage = garbage.to_str().unwrap();
    let err = start_fails(&data, &["--tls-cert", garbage, "--tls-key", key]);
    assert!(
        err.contains(garbage) && err.contains("CERTIFICATE"),
        "{err}"
    );
    let err = start_fails(&data, &["--tls-cert", cert, "--tls-key", garbage]);
    assert!(
        err.contains(garbage) && err.contains("private key"),
        "{err}"
    );
    // The key of another certificate.
    let other = ca.client("other", "/CN=other");
    let err = start_fails(
        &data,
        &["--tls-cert", cert, "--tls-key", other.key.to_str().unwrap()],
    );
    assert!(err.contains("do not form a usable pair"), "{err}");
    // Client roots that are not certificates.
    let err = start_fails(
        &data,
        &[
            "--tls-cert",
            cert,
            "--tls-key",
            key,
            "--tls-client-ca",
            garbage,
        ],
    );
    assert!(err.contains(garbage) && err.contains("client CA"), "{err}");
    // Flags that need one another.
    let err = start_fails(&data, &["--tls-cert", cert]);
    assert!(err.contains("--tls-key"), "{err}");
    let err = start_fails(
        &data,
        &[
            "--tls-cert",
            cert,
            "--tls-key",
            key,
            "--tls-require-client-cert",
        ],
    );
    assert!(err.contains("--tls-client-ca"), "{err}");
    // Nothing was created for a server that never started.
    assert!(!data.join("db").exists());
}

#[test]
fn a_client_that_connects_and_says_nothing_does_not_stall_others() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "test-ca");
    let server = ca.server();
    let l = Ledger::start(&dir.path().join("data"), &tls_args(&server));
    // Silent connections, and one that sends the start of a ClientHello record and stops.
    let mut silent: Vec<TcpStream> = (0..32)
        .map(|_| TcpStream::connect(l.addr()).unwrap())
        .collect();
    let mut partial = TcpStream::connect(l.addr()).unwrap();
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .unwrap();
    silent.push(partial);
    std::thread::sleep(Duration::from_millis(200));

    let a = agent(Some(&ca.issued.cert), None);
    let started = Instant::now();
    for _ in 0..5 {
        let r = get(&a, &l.url("/artifacts/checkpoint")).unwrap();
        assert_eq!(r.status, 200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "served in {:?}, well inside the 10 s handshake timeout",
        started.elapsed()
    );

    // The server gives up on them after its handshake timeout (10 s) and closes them.
    let s = &mut silent[0];
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut buf = [0u8; 64];
    let closed = match s.read(&mut buf) {
        Ok(n) => n == 0,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    };
    let waited = started.elapsed();
    assert!(closed, "the silent connection was closed");
    assert!(
        waited > Duration::from_secs(8) && waited < Duration::from_secs(20),
        "closed after {waited:?}"
    );
}

/// The access audit log's records, from a checkpoint verified under its own key.
fn audit_records(l: &Ledger, a: &ureq::Agent, token: &str) -> Vec<serde_json::Value> {
    let cp = call(a, "GET", &l.url("/audit/checkpoint"), Some(token), b"").unwrap();
    assert_eq!(cp.status, 200, "{}", cp.text());
    let verified = ledger_client::checkpoint::verify_checkpoint(&cp.body, &[l.vkey("audit")], None)
        .expect("the audit checkpoint verifies");
    let size = verified.size;
    assert!(size > 0 && size < 256, "{size}");
    let r = call(
        a,
        "GET",
        &l.url(&format!("/audit/tile/entries/000.p/{size}")),
        Some(token),
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let entries = ledger_client::tiles::decode_bundle(&r.body).unwrap();
    let leaves: Vec<_> = entries
        .iter()
        .map(|e| ledger_client::merkle::leaf_hash(e))
        .collect();
    assert_eq!(
        ledger_client::merkle::root_from_leaves(&leaves),
        verified.root
    );
    entries
        .iter()
        .flat_map(|e| ledger_e2e::audit_entry_records(e))
        .collect()
}

#[test]
fn a_client_certificate_names_the_principal_and_the_configuration_its_roles() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "test-ca");
    let server = ca.server();
    let runner = ca.client("runner", "/O=Example CI/CN=ci-runner-1");
    let stranger = ca.client("stranger", "/CN=stranger");
    // No CommonName: the first DNS or URI subjectAltName names it (a SPIFFE ID here).
    let spiffe = ca.issue(
        "spiffe",
        "/O=Example CI",
        "extendedKeyUsage=clientAuth\nsubjectAltName=URI:spiffe://example.test/ci/runner-2,DNS:runner-2.example.test",
    );
    let shouting = ca.client("shouting", "/CN=CI Runner \"1\"");
    let twice = ca.client("twice", "/CN=ci-runner-1/CN=admin");
    let other_ca = Ca::new(dir.path(), "other-ca");
    let impostor = other_ca.client("impostor", "/CN=ci-runner-1");

    let data = dir.path().join("data");
    drop(Ledger::start(&data, &[]));
    let admin = offline_token(&data, "root", "admin");
    let config = json!({"mtls": {"roles": [
        {"role": "publisher", "subject": "ci-runner-1"},
        {"role": "reader", "subject": "spiffe://example.test/ci/runner-2"},
    ]}});
    let cfg = dir.path().join("access.json");
    std::fs::write(&cfg, config.to_string()).unwrap();
    let mut args = tls_args(&server);
    args.extend([
        "--tls-client-ca",
        ca.issued.cert.to_str().unwrap(),
        "--access-config",
        cfg.to_str().unwrap(),
    ]);
    let l = Ledger::start(&data, &args);
    let roots = Some(ca.issued.cert.as_path());
    let with = |c: &Issued| agent(roots, Some(c));

    // The runner: named by its CommonName, publisher by the configuration.
    let r = get(&with(&runner), &l.url("/access/v1/whoami")).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let p = &r.json()["principal"];
    let fingerprint = hex(&Sha256::digest(runner.der()));
    assert_eq!(p["id"], "ci-runner-1");
    assert_eq!(p["roles"], json!(["publisher"]));
    assert_eq!(
        p["method"],
        json!({"kind": "mtls", "fingerprint": fingerprint})
    );
    assert_eq!(p["attributes"]["cert_sha256"], fingerprint.as_str());
    let r = call(
        &with(&runner),
        "POST",
        &l.url("/artifacts/add"),
        None,
        b"built by CI",
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());

    // A certificate from the trusted CA that the configuration does not map: no role.
    let r = get(&with(&stranger), &l.url("/access/v1/whoami")).unwrap();
    assert_eq!(r.json()["principal"]["roles"], json!([]));
    let r = call(
        &with(&stranger),
        "POST",
        &l.url("/artifacts/add"),
        None,
        b"x",
    )
    .unwrap();
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("stranger may not append"), "{}", r.text());

    // The SAN fallback.
    let r = get(&with(&spiffe), &l.url("/access/v1/whoami")).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["principal"]["id"],
        "spiffe://example.test/ci/runner-2"
    );
    assert_eq!(
        get(&with(&spiffe), &l.url("/artifacts/checkpoint"))
            .unwrap()
            .status,
        200
    );
    let r = call(&with(&spiffe), "POST", &l.url("/artifacts/add"), None, b"x").unwrap();
    assert_eq!(r.status, 403);

    // Names that are not principal names, and ambiguous subjects, authenticate no one.
    let r = get(&with(&shouting), &l.url("/access/v1/whoami")).unwrap();
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(
        r.text().contains("not a valid principal name"),
        "{}",
        r.text()
    );
    let r = get(&with(&twice), &l.url("/access/v1/whoami")).unwrap();
    assert_eq!(r.status, 401, "{}", r.text());
    assert!(r.text().contains("2 CommonNames"), "{}", r.text());

    // Another CA's certificate, even with a mapped name, fails the handshake.
    let err = refused(get(&with(&impostor), &l.url("/access/v1/whoami")));
    assert!(!err.is_empty());

    // Without a certificate: a Bearer token still works; nothing at all is a 401.
    let bare = agent(roots, None);
    let r = get(&bare, &l.url("/artifacts/checkpoint")).unwrap();
    assert_eq!(r.status, 401);
    assert!(r.text().contains("or a client certificate"), "{}", r.text());
    let r = call(&bare, "GET", &l.url("/access/v1/whoami"), Some(&admin), b"").unwrap();
    assert_eq!(r.json()["principal"]["id"], "root");
    // A Bearer credential takes precedence over the certificate, and a bad one is not
    // rescued by it.
    let r = call(
        &with(&stranger),
        "GET",
        &l.url("/access/v1/whoami"),
        Some(&admin),
        b"",
    )
    .unwrap();
    assert_eq!(r.json()["principal"]["id"], "root");
    assert_eq!(r.json()["principal"]["method"]["kind"], "api_token");
    let r = call(
        &with(&runner),
        "POST",
        &l.url("/artifacts/add"),
        Some("ldgr_bad"),
        b"x",
    )
    .unwrap();
    assert_eq!(r.status, 401, "{}", r.text());

    // A certificate can mint a session, which then works on a connection without one.
    let r = call(
        &with(&runner),
        "POST",
        &l.url("/access/v1/session"),
        None,
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let session = r.json()["token"].as_str().unwrap().to_string();
    let r = call(
        &bare,
        "POST",
        &l.url("/artifacts/add"),
        Some(&session),
        b"via session",
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());

    // The audit log names the certificates' principals.
    let records = audit_records(&l, &bare, &admin);
    let adds: Vec<_> = records
        .iter()
        .filter(|r| r["type"] == "decision" && r["path"] == "/artifacts/add")
        .collect();
    let of = |who: &str| {
        adds.iter()
            .filter(|r| r["principal"] == who)
            .map(|r| r["decision"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    // The certificate's append, then the session's (minted from the certificate); the
    // append with a bad Bearer credential is recorded as unauthenticated, naming no one.
    assert_eq!(of("ci-runner-1"), ["allow", "allow"], "{adds:#?}");
    assert_eq!(of("stranger"), ["deny"], "{adds:#?}");
    assert_eq!(
        of("spiffe://example.test/ci/runner-2"),
        ["deny"],
        "{adds:#?}"
    );
    let allowed = adds
        .iter()
        .find(|r| r["principal"] == "ci-runner-1")
        .unwrap();
    assert_eq!(allowed["action"], "append");
    assert!(allowed["source"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    let refused = records
        .iter()
        .find(|r| r["path"] == "/access/v1/whoami" && r["decision"] == "unauthenticated")
        .expect("the refused certificate's request is recorded");
    assert!(
        refused["reason"]
            .as_str()
            .unwrap()
            .contains("principal name"),
        "{refused}"
    );
}

#[test]
fn required_client_certificates_gate_every_connection() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "test-ca");
    let server = ca.server();
    let runner = ca.client("runner", "/CN=ci-runner-1");
    let other_ca = Ca::new(dir.path(), "other-ca");
    let impostor = other_ca.client("impostor", "/CN=ci-runner-1");
    let roots = Some(ca.issued.cert.as_path());
    let ca_path = ca.issued.cert.to_str().unwrap();

    // Accepted but not required, without access control: anyone trusting the server
    // connects, a certificate that does not verify does not.
    let mut args = tls_args(&server);
    args.extend(["--tls-client-ca", ca_path]);
    let l = Ledger::start(&dir.path().join("open"), &args);
    let url = l.url("/artifacts/checkpoint");
    assert_eq!(get(&agent(roots, None), &url).unwrap().status, 200);
    assert_eq!(get(&agent(roots, Some(&runner)), &url).unwrap().status, 200);
    assert!(get(&agent(roots, Some(&impostor)), &url).is_err());
    drop(l);

    // Required: no certificate, no connection.
    args.push("--tls-require-client-cert");
    let l = Ledger::start(&dir.path().join("closed"), &args);
    let url = l.url("/artifacts/checkpoint");
    let err = refused(get(&agent(roots, None), &url));
    assert!(!err.is_empty());
    assert!(get(&agent(roots, Some(&impostor)), &url).is_err());
    let r = get(&agent(roots, Some(&runner)), &url).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    // curl without a certificate is refused as well; with one it is served.
    let curl = |cert: Option<&Issued>| {
        let mut c = Command::new("curl");
        c.args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
            ca_path,
        ]);
        if let Some(i) = cert {
            c.arg("--cert").arg(&i.cert).arg("--key").arg(&i.key);
        }
        c.arg(&url).output().unwrap()
    };
    assert!(!curl(None).status.success());
    let out = curl(Some(&runner));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "200",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The error of a request that must fail (a refused handshake, say).
fn refused(r: Result<Resp, String>) -> String {
    match r {
        Ok(r) => panic!("answered {}: {}", r.status, r.text()),
        Err(e) => e,
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
