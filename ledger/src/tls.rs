//! HTTPS with rustls (`ledger serve --tls-cert --tls-key`), and optional mutual TLS
//! (`--tls-client-ca`) where a verified client certificate names the principal
//! (specs/access.md, "TLS and mutual TLS").
//!
//! The accept loop hands each TCP connection to its own task for the handshake, bounded by
//! a timeout: a client that connects and sends nothing (or trickles a ClientHello) holds
//! only its own task, never the loop, so it cannot stall anyone else. Completed handshakes
//! are queued to `axum::serve` through the `Listener` trait, which then serves them exactly
//! like plain connections (HTTP/1.1 or HTTP/2, graceful shutdown).

use anyhow::{bail, Context, Result};
use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use rustls::crypto::ring;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Longest a TLS handshake may take before the connection is dropped.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshaken connections waiting for `axum::serve` to take them. Beyond this many, each
/// waits in its own handshake task, so the accept loop itself never waits.
const READY_QUEUE: usize = 128;

/// What `--tls-*` asked for.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    /// PEM certificate chain: the server's certificate first, then its issuers.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, SEC1 or PKCS#1), mode 0600.
    pub key: PathBuf,
    /// PEM roots client certificates must chain to; mutual TLS is off without it.
    pub client_ca: Option<PathBuf>,
    /// Refuse connections without a client certificate (needs `client_ca`).
    pub require_client_cert: bool,
}

/// Every PEM `CERTIFICATE` block of a file, at least one. `what` names the file's role in
/// errors, which always name the file too.
fn read_certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("reading {what} {}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{what} {} is not valid PEM: {e}", path.display()))?;
    if certs.is_empty() {
        bail!("{what} {} holds no PEM CERTIFICATE block", path.display());
    }
    Ok(certs)
}

/// The private key, refused (like every key file of the ledger, see `keys::read_private`)
/// when group or others can read it.
fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let pem = crate::keys::read_private(path, "TLS private key")?;
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| {
        anyhow::anyhow!(
            "TLS private key {} holds no usable PEM private key (PKCS#8, SEC1 or PKCS#1): {e}",
            path.display()
        )
    })
}

/// The rustls configuration `TlsSettings` describe, with everything checked that can be
/// checked before the first client: the files parse, the key matches the certificate, the
/// client roots are usable.
pub fn server_config(s: &TlsSettings) -> Result<Arc<rustls::ServerConfig>> {
    let chain = read_certificates(&s.cert, "TLS certificate chain")?;
    let key = read_private_key(&s.key)?;
    // The provider is named explicitly rather than installed process-wide: the ledger
    // links only `ring`, and nothing here depends on what another crate installs.
    let provider = Arc::new(ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match &s.client_ca {
        None => {
            if s.require_client_cert {
                bail!("--tls-require-client-cert needs --tls-client-ca (the roots client certificates must chain to)");
            }
            builder.with_no_client_auth()
        }
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for (i, c) in read_certificates(path, "TLS client CA file")?
                .into_iter()
                .enumerate()
            {
                roots.add(c).map_err(|e| {
                    anyhow::anyhow!(
                        "TLS client CA file {}: certificate {} is not a usable trust anchor: {e}",
                        path.display(),
                        i + 1
                    )
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            // Without --tls-require-client-cert a client may present no certificate (and
            // then authenticate with a Bearer credential); a certificate it does present
            // must still verify, or the handshake fails (RFC 8446 §4.4.2.4).
            let verifier = if s.require_client_cert {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| anyhow::anyhow!("TLS client CA file {}: {e}", path.display()))?,
            )
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| {
        anyhow::anyhow!(
            "TLS certificate {} and key {} do not form a usable pair: {e}",
            s.cert.display(),
            s.key.display()
        )
    })?;
    // RFC 7301 ALPN, preferred first: HTTP/2 (RFC 9113 §3.2 "h2"), then HTTP/1.1.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A TLS listener for `axum::serve`: accepts TCP connections and yields them once their
/// handshake is complete.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `tcp`. The accept loop stops when the listener is dropped.
    pub fn new(
        tcp: TcpListener,
        config: Arc<rustls::ServerConfig>,
        handshake_timeout: Duration,
    ) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = tokio::select! {
                    accepted = tcp.accept() => match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            accept_error(e).await;
                            continue;
                        }
                    },
                    // `axum::serve` returned (shutdown): stop accepting.
                    _ = tx.closed() => return,
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            // Fails only once the server is shutting down; the connection
                            // is then dropped, as an unaccepted one would be.
                            let _ = tx.send((tls, peer)).await;
                        }
                        // Refused certificates, plain HTTP, scanners: the client learns from
                        // its alert; the operator only needs this when debugging.
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { ready, local })
    }
}

/// As `axum::serve`'s own TCP listener does: errors about one connection are skipped; others
/// (out of file descriptors, say) wait a little, so the loop does not spin.
async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::warn!(error = %e, "accepting a TCP connection failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept loop only ends after the receiver is dropped, so this cannot
            // happen while `self` exists; wait forever rather than invent a connection.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// Who is at the other end of a connection: what the access layer reads with
/// `ConnectInfo<Peer>` (the address for the `source_ip` context and audit records, and the
/// client certificate that names an mTLS principal).
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    /// The client's end-entity certificate (DER), present only when rustls verified it
    /// against `--tls-client-ca` during the handshake.
    pub client_cert: Option<Arc<CertificateDer<'static>>>,
}

impl Connected<IncomingStream<'_, TcpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        Self {
            addr: *stream.remote_addr(),
            client_cert: None,
        }
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        let (_, conn) = stream.io().get_ref();
        // rustls exposes peer certificates only after its verifier accepted them; the
        // first is the end entity (RFC 8446 §4.4.2).
        let client_cert = conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|c| Arc::new(c.clone().into_owned()));
        Self {
            addr: *stream.remote_addr(),
            client_cert,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn settings(dir: &Path) -> TlsSettings {
        TlsSettings {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
            client_ca: None,
            require_client_cert: false,
        }
    }

    fn write(path: &Path, text: &str, mode: u32) {
        std::fs::write(path, text).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn missing_and_garbage_files_are_named_in_the_error() {
        let d = tempfile::tempdir().unwrap();
        let s = settings(d.path());
        let err = format!("{:#}", server_config(&s).unwrap_err());
        assert!(err.contains("cert.pem"), "{err}");

        write(&s.cert, "hello", 0o644);
        let err = format!("{:#}", server_config(&s).unwrap_err());
        assert!(
            err.contains("cert.pem") && err.contains("no PEM CERTIFICATE"),
            "{err}"
        );

        write(
            &s.cert,
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
            0o644,
        );
        let err = format!("{:#}", server_config(&s).unwrap_err());
        assert!(
            err.contains("cert.pem") && err.contains("not valid PEM"),
            "{err}"
        );

        // A certificate block that is base64 but not DER gets as far as the key.
        write(
            &s.cert,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            0o644,
        );
        let err = format!("{:#}", server_config(&s).unwrap_err());
        assert!(err.contains("key.pem"), "{err}");

        write(&s.key, "not a key", 0o644);
        let err = format!("{:#}", server_config(&s).unwrap_err());
        assert!(
            err.contains("key.pem") && err.contains("chmod 600"),
            "{err}"
        );

        write(&s.key, "not a key", 0o600);
        let err = format!("{:#}", server_config(&s).unwrap_err());
        assert!(
            err.contains("key.pem") && err.contains("no usable PEM private key"),
            "{err}"
        );
    }

    #[test]
    fn requiring_client_certificates_needs_roots() {
        let d = tempfile::tempdir().unwrap();
        let mut s = settings(d.path());
        s.require_client_cert = true;
        // Files are read first; give it a well-formed pair of blocks to get past them.
        write(
            &s.cert,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            0o644,
        );
        write(
            &s.key,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            0o600,
        );
        let err = format!("{:#}", server_config(&s).unwrap_err());
        assert!(err.contains("--tls-client-ca"), "{err}");
    }
}
