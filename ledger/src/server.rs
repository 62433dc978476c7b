//! Process wiring: open storage, recover every log, start sequencers, serve HTTP or HTTPS.

use crate::attest::record::AttestStore;
use crate::attest::timestamps::TsaSource;
use crate::attest::{AttestConfig, Attestor};
use crate::blob::fs::FsStore;
use crate::blob::s3::{S3Config, S3Store};
use crate::blob::seal::MasterKey;
use crate::blob::{BlobStore, Blobs};
use crate::http::{self, AppState, LogHandle};
use crate::keys;
use crate::log::Log;
use crate::registry::catalog::Catalog;
use crate::registry::service::Registry as ArtifactRegistry;
use crate::registry::uploads::Uploads;
use crate::sequencer::{self, PoolConfig};
use crate::signer::CheckpointSigner;
use crate::store::rocks::{DbTuning, RocksDb};
use crate::tls::{Peer, TlsListener};
use crate::tsa::Authority;
use anyhow::{bail, Context, Result};
use ledger_client::policy::Policy;
use ledger_client::timestamp::TsaRoots;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct LogSpec {
    pub name: String,
    pub origin: String,
}

impl LogSpec {
    /// Parses `name` or `name=origin`; the default origin is `<public_host>/<name>`.
    pub fn parse(s: &str, public_host: &str) -> Result<Self> {
        let (name, origin) = match s.split_once('=') {
            Some((n, o)) => (n.to_string(), o.to_string()),
            None => (s.to_string(), format!("{public_host}/{s}")),
        };
        if name.is_empty()
            || name.len() > 32
            || !name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            bail!("log name {name:?} must be 1-32 characters of [a-z0-9-]");
        }
        if matches!(
            name.as_str(),
            "metrics" | "healthz" | "readyz" | "logs" | "v2" | "registry" | "access" | "tsa"
        ) {
            bail!("log name {name:?} is reserved for an operations endpoint");
        }
        if !signed_note::is_key_name_valid(&origin) {
            bail!("origin {origin:?} must be non-empty with no spaces or '+'");
        }
        Ok(Self { name, origin })
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub logs: Vec<LogSpec>,
    pub pool: PoolConfig,
    pub max_batch_bytes: usize,
    /// Requests in progress at once (503 beyond).
    pub max_concurrent_requests: usize,
    pub cache_bytes: usize,
    /// RocksDB `max_total_wal_size` (see `store::rocks::DbTuning`).
    pub max_wal_bytes: u64,
    pub blobs: BlobConfig,
    pub attest: AttestSettings,
    /// Checkpoint keys in a PKCS#11 token; logs without one use key files.
    pub hsm: Option<HsmSettings>,
    /// Access control configuration (`--access-config`); everything is open without it.
    pub access_config: Option<PathBuf>,
    /// The access audit log's name (one of `logs`), set with `access_config`. Only the
    /// ledger appends to it.
    pub audit_log: Option<String>,
    /// HTTPS (and optionally mutual TLS); plain HTTP without it.
    pub tls: Option<crate::tls::TlsSettings>,
}

/// A PKCS#11 token and the key each of some logs signs with.
#[derive(Debug, Clone)]
pub struct HsmSettings {
    pub token: crate::hsm::HsmConfig,
    /// (log name, key label).
    pub keys: Vec<(String, String)>,
}

impl HsmSettings {
    /// The key label of each log, checked against the hosted logs.
    fn labels(&self, logs: &[LogSpec]) -> Result<HashMap<String, String>> {
        let mut labels = HashMap::new();
        for (log, label) in &self.keys {
            if !logs.iter().any(|l| &l.name == log) {
                bail!("--hsm-key names log {log:?}, which this ledger does not host");
            }
            if labels.insert(log.clone(), label.clone()).is_some() {
                bail!("--hsm-key gives log {log:?} two keys");
            }
        }
        Ok(labels)
    }
}

/// Witnesses and time-stamping authorities (see `attest`).
#[derive(Debug, Clone)]
pub struct AttestSettings {
    /// c2sp.org/tlog-policy file naming the witnesses and the quorum.
    pub witness_policy: Option<PathBuf>,
    /// External RFC 3161 authorities; when given, the embedded one does not date our
    /// checkpoints.
    pub tsa_urls: Vec<String>,
    /// PEM roots for the external authorities' tokens.
    pub tsa_roots: Option<PathBuf>,
    /// Run the embedded authority (key and certificate under `<data-dir>/tsa`).
    pub embedded_tsa: bool,
    pub interval: std::time::Duration,
    /// Longest a `?wait=attested` submission waits.
    pub wait: std::time::Duration,
}

impl AttestSettings {
    /// No witnesses and no authorities: nothing is attested.
    pub fn none() -> Self {
        Self {
            witness_policy: None,
            tsa_urls: vec![],
            tsa_roots: None,
            embedded_tsa: false,
            interval: std::time::Duration::from_secs(1),
            wait: std::time::Duration::from_secs(30),
        }
    }
}

/// The embedded authority's files, created on first start.
fn embedded_tsa(data_dir: &std::path::Path) -> Result<(Arc<Authority>, TsaRoots)> {
    let dir = data_dir.join("tsa");
    let (key, chain, root) = (
        dir.join("tsa.key"),
        dir.join("tsa.pem"),
        dir.join("tsa-root.pem"),
    );
    if !key.exists() {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        crate::tsa::generate(&dir, "ledger embedded time-stamping authority", 3650)
            .with_context(|| format!("creating the embedded authority in {}", dir.display()))?;
    }
    let authority = Authority::from_files(&key, &chain)
        .with_context(|| format!("loading the embedded authority from {}", dir.display()))?;
    let pem = std::fs::read(&root).with_context(|| format!("reading {}", root.display()))?;
    let roots = TsaRoots::from_pem(&pem).map_err(|e| anyhow::anyhow!("{}: {e}", root.display()))?;
    Ok((Arc::new(authority), roots))
}

/// Everything attestation needs, resolved from the settings.
fn attest_config(config: &ServerConfig) -> Result<(AttestConfig, Option<Arc<Authority>>)> {
    let s = &config.attest;
    let policy = match &s.witness_policy {
        Some(p) => {
            Some(Arc::new(Policy::read_file(p).with_context(|| {
                format!("witness policy {}", p.display())
            })?))
        }
        None => None,
    };
    let mut tsas = vec![];
    let mut served = None;
    if s.embedded_tsa {
        let (authority, roots) = embedded_tsa(&config.data_dir)?;
        if s.tsa_urls.is_empty() {
            tsas.push(Arc::new(TsaSource::Embedded {
                authority: authority.clone(),
                roots: Arc::new(roots),
            }));
        }
        served = Some(authority);
    }
    if !s.tsa_urls.is_empty() {
        let path = s
            .tsa_roots
            .as_ref()
            .context("--tsa-url needs --tsa-roots: tokens are verified before they are kept")?;
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let roots = Arc::new(
            TsaRoots::from_pem(&pem).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
        );
        for url in &s.tsa_urls {
            tsas.push(Arc::new(TsaSource::Remote {
                url: url.clone(),
                roots: roots.clone(),
            }));
        }
    }
    Ok((
        AttestConfig {
            policy,
            tsas,
            interval: s.interval,
            peer_timeout: std::time::Duration::from_secs(10),
        },
        served,
    ))
}

/// Where artifact bytes live.
#[derive(Debug, Clone)]
pub enum BlobBackend {
    /// A local directory (the embedded default: `<data-dir>/blobs`).
    Fs(PathBuf),
    /// An S3-compatible object store.
    S3(S3Config),
}

#[derive(Debug, Clone)]
pub struct BlobConfig {
    pub backend: BlobBackend,
    /// Master key file: when set, blobs are sealed at rest (see `blob::seal`).
    pub seal_key: Option<PathBuf>,
    /// Largest accepted blob.
    pub max_bytes: u64,
}

impl BlobConfig {
    pub fn local(data_dir: &std::path::Path) -> Self {
        Self {
            backend: BlobBackend::Fs(data_dir.join("blobs")),
            seal_key: None,
            max_bytes: 1 << 40,
        }
    }
}

/// Idle upload sessions are dropped after this long.
const UPLOAD_EXPIRY: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

async fn open_blobs(config: &ServerConfig) -> Result<Arc<Uploads>> {
    let b = &config.blobs;
    let backend: Arc<dyn BlobStore> = match &b.backend {
        BlobBackend::Fs(dir) => Arc::new(
            FsStore::open(dir)
                .with_context(|| format!("opening blob directory {}", dir.display()))?,
        ),
        BlobBackend::S3(cfg) => {
            Arc::new(S3Store::new(cfg.clone()).context("configuring S3 blob store")?)
        }
    };
    let seal = match &b.seal_key {
        Some(p) => Some(
            MasterKey::load(p)
                .with_context(|| format!("loading blob master key {}", p.display()))?,
        ),
        None => None,
    };
    let blobs = Arc::new(Blobs::new(backend, seal));
    let uploads = Uploads::open(
        &config.data_dir.join("uploads"),
        blobs,
        b.max_bytes,
        UPLOAD_EXPIRY,
    )
    .context("opening upload sessions")?;
    Ok(Arc::new(uploads))
}

pub struct Server {
    pub state: Arc<AppState>,
    /// (name, origin, vkey, tree size) of each log, for the start-up banner.
    pub banner: Vec<(String, String, String, u64)>,
    /// How checkpoints are attested, one line each, for the banner.
    pub attest_banner: Vec<String>,
}

pub async fn build(config: &ServerConfig) -> Result<Server> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    let names: Vec<String> = config.logs.iter().map(|l| l.name.clone()).collect();
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    if unique.len() != names.len() {
        bail!("a log name is given twice");
    }
    let tuning = DbTuning {
        cache_bytes: config.cache_bytes,
        max_wal_bytes: config.max_wal_bytes,
    };
    let db = RocksDb::open_tuned(&config.data_dir.join("db"), &names, tuning)
        .context("opening RocksDB")?;
    let key_dir = config.data_dir.join("keys");
    let (attest, tsa) = attest_config(config)?;
    let mut attest_banner = vec![];
    if let Some(p) = &attest.policy {
        attest_banner.push(format!(
            "witnesses: {} (quorum {})",
            p.witnesses().len(),
            p.describe_quorum()
        ));
    }
    for t in &attest.tsas {
        attest_banner.push(format!("time-stamping: {}", t.describe()));
    }
    if tsa.is_some() {
        attest_banner.push(format!(
            "embedded time-stamping authority at POST /tsa (root certificate {})",
            config.data_dir.join("tsa").join("tsa-root.pem").display()
        ));
    }
    let mut registry = prometheus_client::registry::Registry::default();
    let mut logs = HashMap::new();
    let mut banner = vec![];
    let hsm = match &config.hsm {
        Some(h) => {
            let labels = h.labels(&config.logs)?;
            let token = crate::hsm::Token::open(&h.token).with_context(|| {
                format!(
                    "opening PKCS#11 token {:?} in {}",
                    h.token.token,
                    h.token.module.display()
                )
            })?;
            Some((token, labels))
        }
        None => None,
    };
    for spec in &config.logs {
        let store = Arc::new(db.log_store(&spec.name));
        // A key rotation interrupted by a crash leaves the new key beside the old one:
        // neither may sign until `ledger rotate-key` has finished it.
        let next = key_dir.join(format!("{}.key.next", spec.name));
        if next.exists() {
            anyhow::bail!(
                "log {}: a rotation of its key was started and not finished ({} exists); \
                 run `ledger rotate-key --log {}` again (server stopped) to finish it",
                spec.name,
                next.display(),
                spec.name
            );
        }
        let (signer, vkey) = match hsm
            .as_ref()
            .and_then(|(t, l)| Some((t, l.get(&spec.name)?)))
        {
            Some((token, label)) => {
                let s = crate::hsm::Pkcs11Signer::open(token.clone(), label, &spec.origin)
                    .with_context(|| format!("log {}: PKCS#11 key {label:?}", spec.name))?;
                let vkey = s.vkey().to_string();
                (CheckpointSigner::from(s), vkey)
            }
            None => {
                // A key is generated only for a log that has signed nothing yet: a missing
                // key file of a live log is an error, not a reason to start a new identity.
                let skey = keys::key_paths(&key_dir, &spec.name).0;
                if !skey.exists()
                    && crate::store::LogStore::latest_checkpoint(store.as_ref())?.is_some()
                {
                    anyhow::bail!(
                        "log {}: its key file {} is missing but the log has signed checkpoints; \
                         restore the key (or configure its HSM key) rather than start a new one",
                        spec.name,
                        skey.display()
                    );
                }
                let (kp, _created) = keys::load_or_generate(&key_dir, &spec.name, &spec.origin)?;
                let what = format!(
                    "key file {}",
                    keys::key_paths(&key_dir, &spec.name).0.display()
                );
                (CheckpointSigner::new(kp.signer, what), kp.vkey)
            }
        };
        crate::signer::check_key_signed_log(
            store.as_ref(),
            &spec.name,
            &spec.origin,
            &vkey,
            signer.describe(),
        )?;
        let log = Log::open(&spec.name, &spec.origin, signer, vkey.clone(), store)
            .with_context(|| format!("recovering log {}", spec.name))?;
        // Before anything is signed: no half-done key rotation, and the configured key is
        // the one in force (a retired key must not sign again).
        let (rdb, rcf) = db.process_family(crate::rotation::FAMILY);
        let keys = crate::rotation::check_at_start(
            &log,
            &crate::rotation::Recorded::new(rdb, rcf).get(&spec.name)?,
        )?;
        log.metrics.register(&mut registry, &spec.name);
        let pool = sequencer::start(log.clone(), config.pool.clone())?;
        let (adb, acf) = db.derived(&spec.name, "attest");
        let attestor = Attestor::open(log.clone(), &attest, AttestStore::new(adb, acf))
            .with_context(|| format!("opening attestations of log {}", spec.name))?;
        attestor.metrics.register(&mut registry, &spec.name);
        tokio::spawn(attestor.clone().run());
        banner.push((
            spec.name.clone(),
            spec.origin.clone(),
            vkey,
            log.snapshot().size(),
        ));
        logs.insert(
            spec.name.clone(),
            LogHandle {
                log,
                pool,
                attest: attestor,
                writable: config.audit_log.as_deref() != Some(spec.name.as_str()),
                keys: Arc::new(keys),
            },
        );
    }
    let guard = match &config.access_config {
        Some(path) => {
            let (tdb, tcf) = db.process_family("access/tokens");
            let (gdb, gcf) = db.process_family("access/grants");
            let grants =
                crate::access::grants::GrantStore::open(gdb, gcf, crate::access::tokens::now())
                    .context("loading access grants")?;
            let access = crate::access::config::Access::load(
                path,
                &key_dir,
                crate::access::tokens::TokenStore::new(tdb, tcf),
                grants,
            )
            .with_context(|| format!("access control ({})", path.display()))?;
            if access.tokens.is_empty().unwrap_or(false) {
                tracing::warn!("access control is on and no API token exists: create one with `ledger token create` while the server is stopped");
            }
            attest_banner.push(format!(
                "access control: on (policy {})",
                access.policy().digest()
            ));
            let audit_name = config
                .audit_log
                .as_deref()
                .context("access control needs an audit log")?;
            let a = logs
                .get(audit_name)
                .with_context(|| format!("the audit log {audit_name} is not hosted"))?;
            let audit = crate::access::audit::AuditLog::new(a.log.clone(), a.pool.clone());
            // The policy in force from this start on, before any decision under it.
            let policy = access.policy();
            let (schema, policies) = policy.texts();
            audit
                .policy_in_force("startup", policy.digest(), schema, policies)
                .await
                .context("logging the policy in force to the audit log")?;
            Some(Arc::new(crate::access::http::Guard {
                access: Arc::new(access),
                audit,
                reloading: tokio::sync::Mutex::new(()),
                client_certs: config.tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
                logs: config
                    .logs
                    .iter()
                    .map(|l| (l.name.clone(), l.origin.clone()))
                    .collect(),
            }))
        }
        None => None,
    };
    let uploads = open_blobs(config).await?;
    // The registry's events go to the first log (by default `artifacts`).
    let first = &config.logs.first().context("no log configured")?.name;
    let h = &logs[first];
    let (cdb, cf) = db.derived(first, "catalog");
    let catalog = Arc::new(Catalog::open(cdb, cf).context("opening the catalog")?);
    let artifacts = Arc::new(
        ArtifactRegistry::new(
            h.log.clone(),
            h.pool.clone(),
            catalog,
            uploads.blobs().clone(),
        )
        .with_attestations(h.attest.clone()),
    );
    tokio::spawn(artifacts.clone().follow());
    Ok(Server {
        state: Arc::new(AppState {
            logs,
            registry,
            max_batch_bytes: config.max_batch_bytes,
            uploads,
            artifacts,
            attest_wait: config.attest.wait,
            tsa,
            guard,
            in_flight: Arc::new(tokio::sync::Semaphore::new(config.max_concurrent_requests)),
        }),
        banner,
        attest_banner,
    })
}

pub async fn serve(config: ServerConfig) -> Result<()> {
    // TLS files first: a bad certificate or key is named before anything is opened.
    let tls = config
        .tls
        .as_ref()
        .map(crate::tls::server_config)
        .transpose()?;
    let server = build(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    for (name, origin, vkey, size) in &server.banner {
        println!("log {name}: origin {origin}, {size} entries");
        println!("  vkey {vkey}");
        println!("  prefix {scheme}://{addr}/{name}");
    }
    for line in &server.attest_banner {
        println!("{line}");
    }
    if let Some(t) = &config.tls {
        println!(
            "TLS: certificate {}{}",
            t.cert.display(),
            match (&t.client_ca, t.require_client_cert) {
                (Some(ca), true) => format!(", client certificates required ({})", ca.display()),
                (Some(ca), false) => format!(", client certificates accepted ({})", ca.display()),
                (None, _) => String::new(),
            }
        );
    }
    // Tests and scripts wait for this exact line.
    println!("ledger listening on {scheme}://{addr}");
    let app = http::router(server.state.clone());
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    // `Peer` (the address, and the verified client certificate if any) feeds the access
    // layer: source_ip, audit records, mTLS principals.
    match tls {
        None => {
            axum::serve(listener, app.into_make_service_with_connect_info::<Peer>())
                .with_graceful_shutdown(shutdown)
                .await?
        }
        Some(tls) => {
            let listener = TlsListener::new(listener, tls, crate::tls::HANDSHAKE_TIMEOUT)?;
            axum::serve(listener, app.into_make_service_with_connect_info::<Peer>())
                .with_graceful_shutdown(shutdown)
                .await?
        }
    }
    // Let each sequencer finish the batch it holds; its answers are already durable.
    for h in server.state.logs.values() {
        h.pool.shutdown();
    }
    // The catalog writes its progress over runs of opaque entries lazily; record it.
    if let Err(e) = server.state.artifacts.catalog.flush() {
        tracing::warn!(error = %e, "could not record the catalog's progress");
    }
    Ok(())
}
