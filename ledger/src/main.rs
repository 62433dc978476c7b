use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use ledger::sequencer::PoolConfig;
use ledger::server::{AttestSettings, BlobBackend, BlobConfig, HsmSettings, LogSpec, ServerConfig};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "ledger",
    version,
    about = "A verifiable artifact ledger: a tile-based transparency log"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

/// A stopped ledger's data directory and one of its logs.
#[derive(Args)]
struct OfflineArgs {
    #[arg(long, default_value = "./ledger-data")]
    data_dir: PathBuf,
    /// The log's name.
    #[arg(long, default_value = "artifacts")]
    log: String,
    /// The log's vkey file (default: `<data-dir>/keys/<log>.vkey`); an auditor passes the
    /// one the operator published.
    #[arg(long)]
    vkey: Option<PathBuf>,
}

#[derive(Subcommand)]
enum TokenOp {
    /// Create a token for a principal with roles.
    Create {
        #[arg(long)]
        principal: String,
        /// A role (repeatable), e.g. admin, publisher, approver, auditor, reader.
        #[arg(long = "role")]
        roles: Vec<String>,
        #[arg(long, default_value_t = 30)]
        expires_in_days: u64,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by id.
    Revoke { id: String },
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve(Box<ServeArgs>),
    /// Rebuild a stopped ledger's registry catalog from its log alone, and report whether the
    /// rebuilt catalog is identical to the one it replaces.
    Reindex(OfflineArgs),
    /// Manage API tokens of a stopped ledger (the running server manages them at
    /// /access/v1/tokens). `create` prints the token once.
    Token {
        /// The stopped ledger's data directory (created if new: the first admin's token
        /// can be made before the first start).
        #[arg(long, global = true, default_value = "./ledger-data")]
        data_dir: PathBuf,
        #[command(subcommand)]
        op: TokenOp,
    },
    /// Rotate a stopped log's checkpoint key (key files only): log a rotation statement
    /// signed by the old and the new key, under a checkpoint both sign, then make the new
    /// key the log's. Run it again to finish a rotation a crash interrupted.
    RotateKey {
        /// The stopped ledger's data directory.
        #[arg(long, default_value = "./ledger-data")]
        data_dir: PathBuf,
        /// The log whose key rotates (its key files are `<data-dir>/keys/<log>.key|.vkey`).
        #[arg(long)]
        log: String,
        /// Why, logged in the statement (1-512 printable bytes).
        #[arg(long)]
        reason: String,
        /// For a log whose key is in a PKCS#11 token: the module (with --hsm-token,
        /// --hsm-pin-file, --hsm-key and --new-hsm-key).
        #[arg(long, requires_all = ["hsm_token", "hsm_pin_file", "hsm_key", "new_hsm_key"])]
        hsm_module: Option<PathBuf>,
        #[arg(long, requires = "hsm_module")]
        hsm_token: Option<String>,
        #[arg(long, requires = "hsm_module")]
        hsm_pin_file: Option<PathBuf>,
        /// Label of the key in force.
        #[arg(long, requires = "hsm_module")]
        hsm_key: Option<String>,
        /// Label of the new key (made by `ledger hsm-keygen`); restart with
        /// `--hsm-key LOG=<this label>` afterwards.
        #[arg(long, requires = "hsm_module")]
        new_hsm_key: Option<String>,
    },
    /// Write a new master key for sealing blobs at rest (mode 0600; never overwrites).
    SealKeygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Audit a stopped log's storage: re-hash every entry, rebuild every tile, check every
    /// checkpoint ever issued; then report storage use per entry.
    Fsck {
        #[command(flatten)]
        offline: OfflineArgs,
        /// Compact storage first so that the byte counts are settled.
        #[arg(long)]
        compact: bool,
    },
    /// Write a new signed-note key pair for a log origin.
    Keygen {
        /// The log's origin, also the key name (e.g. `ledger.example.com/artifacts`).
        #[arg(long)]
        origin: String,
        /// Where to write `<name>.key` (mode 0600) and `<name>.vkey`.
        #[arg(long, default_value = ".")]
        out_dir: PathBuf,
        /// File stem; the server looks for `<data-dir>/keys/<log name>.key`.
        #[arg(long, default_value = "artifacts")]
        name: String,
    },
    /// Create an RFC 3161 time-stamping authority: `tsa.key` (mode 0600), `tsa.pem` (its
    /// certificate, then the root) and `tsa-root.pem` (the one-shot root CA relying parties
    /// trust; its private key is not kept). Never overwrites.
    TsaKeygen {
        #[arg(long)]
        dir: PathBuf,
        /// Common name of the TSA certificate (the root is named `<NAME> Root`).
        #[arg(long, default_value = "ledger time-stamping authority")]
        name: String,
        /// Validity of both certificates, in days.
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
    /// Run a standalone RFC 3161 time-stamping authority: `POST /tsa` with an
    /// `application/timestamp-query` body.
    Tsa {
        #[arg(long, default_value = "127.0.0.1:3161")]
        listen: SocketAddr,
        /// PKCS#8 PEM P-256 private key (mode 0600), e.g. `tsa.key` from `tsa-keygen`.
        #[arg(long)]
        key: PathBuf,
        /// PEM chain: the TSA certificate first, then its issuers up to the root.
        #[arg(long)]
        cert: PathBuf,
        /// TSA policy OID (default: this ledger's policy under 2.25).
        #[arg(long)]
        policy: Option<String>,
    },
    /// Generate a log's Ed25519 checkpoint key inside a PKCS#11 token (sensitive, never
    /// extractable, sign only) and print its vkey. Refuses a label already in use.
    HsmKeygen {
        /// The PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so.
        #[arg(long)]
        module: PathBuf,
        /// The token's label.
        #[arg(long)]
        token: String,
        /// File holding the user PIN (mode 0600; never given on the command line).
        #[arg(long)]
        pin_file: PathBuf,
        /// CKA_LABEL of the new key pair; `ledger serve --hsm-key LOG=LABEL` names it.
        #[arg(long)]
        label: String,
        /// The log's origin, also the key name (e.g. `ledger.example.com/artifacts`).
        #[arg(long)]
        origin: String,
        /// Also write the vkey to this file (never overwritten).
        #[arg(long)]
        out_vkey: Option<PathBuf>,
    },
}

#[derive(Args, Clone)]
struct ServeArgs {
    /// Data directory (RocksDB under db/, keys under keys/); created on first start.
    #[arg(long, default_value = "./ledger-data")]
    data_dir: PathBuf,
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// A log to host, as `name` or `name=origin`; repeat for several logs.
    #[arg(long = "log", default_value = "artifacts")]
    logs: Vec<String>,
    /// Host part of default origins (`<public-host>/<name>`).
    #[arg(long, default_value = "localhost")]
    public_host: String,
    /// A batch closes at this many entries...
    #[arg(long, default_value_t = PoolConfig::default().max_batch_entries)]
    max_batch_entries: usize,
    /// ...or when its first entry has waited this many microseconds.
    #[arg(long, default_value_t = PoolConfig::default().max_batch_age.as_micros() as u64)]
    max_batch_age_us: u64,
    /// Pool limit in entries; beyond it submissions get 503 + Retry-After.
    #[arg(long, default_value_t = PoolConfig::default().max_pending_entries)]
    max_pending_entries: usize,
    #[arg(long, default_value_t = PoolConfig::default().max_pending_bytes)]
    max_pending_bytes: usize,
    /// Largest add-batch body in bytes.
    #[arg(long, default_value_t = 16 << 20)]
    max_batch_bytes: usize,
    /// Requests handled at once; beyond it the answer is 503 with Retry-After, so a flood
    /// costs bounded memory.
    #[arg(long, default_value_t = 4096)]
    max_concurrent_requests: usize,
    /// RocksDB block cache in bytes.
    #[arg(long, default_value_t = 256 << 20)]
    cache_bytes: usize,
    /// Write-ahead log kept before RocksDB flushes the memtables it covers: bounds what a
    /// restart after a crash replays. Smaller values flush more often.
    #[arg(long, default_value_t = ledger::store::rocks::DEFAULT_MAX_WAL_BYTES,
          value_parser = clap::value_parser!(u64).range(1 << 16..))]
    max_wal_bytes: u64,
    /// Directory of the local blob store (default: <data-dir>/blobs).
    #[arg(long, conflicts_with = "s3_config")]
    blob_dir: Option<PathBuf>,
    /// Keep blobs in an S3-compatible object store, configured by this JSON file
    /// ({"endpoint", "bucket", "region", "access_key_id", "secret_access_key", ...}).
    #[arg(long)]
    s3_config: Option<PathBuf>,
    /// Seal blobs at rest with the master key in this file (`ledger seal-keygen` writes one).
    #[arg(long)]
    seal_key: Option<PathBuf>,
    /// Largest accepted blob in bytes.
    #[arg(long, default_value_t = 1 << 40)]
    max_blob_bytes: u64,
    /// Witnesses to ask for cosignatures and the quorum a published cosigned checkpoint
    /// needs, in c2sp.org/tlog-policy format (every witness line needs its URL).
    #[arg(long)]
    witness_policy: Option<PathBuf>,
    /// An RFC 3161 time-stamping authority to date checkpoints with; repeatable. Needs
    /// --tsa-roots. Replaces the embedded authority.
    #[arg(long = "tsa-url")]
    tsa_urls: Vec<String>,
    /// PEM root certificates the --tsa-url authorities' tokens must chain to.
    #[arg(long)]
    tsa_roots: Option<PathBuf>,
    /// Do not run the embedded time-stamping authority (by default the ledger dates its
    /// checkpoints with its own authority, key and certificate under <data-dir>/tsa, and
    /// serves it at POST /tsa).
    #[arg(long)]
    no_embedded_tsa: bool,
    /// Shortest time between two attestation rounds (cosigning and time-stamping), in ms.
    #[arg(long, default_value_t = 1000)]
    attest_interval_ms: u64,
    /// Longest a `?wait=attested` submission waits, in ms.
    #[arg(long, default_value_t = 30_000)]
    attest_wait_ms: u64,
    /// PKCS#11 module holding checkpoint keys (with --hsm-token, --hsm-pin-file, --hsm-key).
    #[arg(long, requires_all = ["hsm_token", "hsm_pin_file", "hsm_keys"])]
    hsm_module: Option<PathBuf>,
    /// Label of the PKCS#11 token holding the checkpoint keys.
    #[arg(long, requires = "hsm_module")]
    hsm_token: Option<String>,
    /// File holding the token's user PIN (mode 0600).
    #[arg(long, requires = "hsm_module")]
    hsm_pin_file: Option<PathBuf>,
    /// `LOG=KEYLABEL`: log LOG signs its checkpoints with the token's key KEYLABEL (from
    /// `ledger hsm-keygen`); repeatable. Other logs keep their key files.
    #[arg(long = "hsm-key", requires = "hsm_module")]
    hsm_keys: Vec<String>,
    /// Turn on access control with this configuration (JSON; specs/access.md): every
    /// route but /healthz and /readyz then needs a credential (a Bearer credential, or a
    /// client certificate with --tls-client-ca) and a Cedar permit.
    #[arg(long)]
    access_config: Option<PathBuf>,
    /// With access control: the log every access decision is appended to, as `name` or
    /// `name=origin`. It has its own key and checkpoints and only the ledger writes it.
    #[arg(long, default_value = "audit", requires = "access_config")]
    audit_log: String,
    /// Serve HTTPS (TLS 1.2 and 1.3, rustls) instead of plain HTTP, with this PEM
    /// certificate chain: the server's certificate first, then its intermediates. Needs
    /// --tls-key. HTTP/2 and HTTP/1.1 are offered by ALPN; a handshake must finish within
    /// 10 seconds.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert (PKCS#8, SEC1 or PKCS#1). Refused if group or
    /// others may read it (chmod 600).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Mutual TLS: ask clients for a certificate and verify it against these PEM root
    /// certificates; one that does not verify fails the handshake. With --access-config a
    /// verified certificate authenticates a request that has no Bearer credential (a
    /// Bearer credential takes precedence): the principal is the subject's CommonName, or
    /// without one the first DNS or URI subjectAltName, and its roles come from the
    /// configuration's "mtls" section (specs/access.md). Without --access-config the
    /// certificate only gates the connection.
    #[arg(long, requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// With --tls-client-ca: refuse connections that present no client certificate (by
    /// default they may connect and authenticate with a Bearer credential).
    #[arg(long, requires = "tls_client_ca")]
    tls_require_client_cert: bool,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Keygen {
            origin,
            out_dir,
            name,
        }) => {
            let (skey, vkey) = ledger::keys::key_paths(&out_dir, &name);
            let v = ledger::keys::generate(&skey, &vkey, &origin)?;
            println!("{v}");
            eprintln!(
                "wrote {} (mode 0600) and {}",
                skey.display(),
                vkey.display()
            );
            Ok(())
        }
        Some(Command::Serve(a)) => serve(*a),
        Some(Command::Reindex(o)) => reindex(o.data_dir, o.log, o.vkey),
        Some(Command::SealKeygen { out }) => {
            ledger::blob::seal::MasterKey::generate_file(&out)?;
            eprintln!("wrote {} (mode 0600)", out.display());
            Ok(())
        }
        Some(Command::Fsck {
            offline: o,
            compact,
        }) => fsck(o.data_dir, o.log, o.vkey, compact),
        Some(Command::TsaKeygen { dir, name, days }) => {
            let g = ledger::tsa::generate(&dir, &name, days)?;
            println!("{}", g.root_pem.display());
            eprintln!(
                "wrote {} (mode 0600), {} and {}; root certificate SHA-256 {}",
                g.key.display(),
                g.chain_pem.display(),
                g.root_pem.display(),
                g.root_sha256
            );
            Ok(())
        }
        Some(Command::Tsa {
            listen,
            key,
            cert,
            policy,
        }) => tsa(listen, key, cert, policy),
        Some(Command::HsmKeygen {
            module,
            token,
            pin_file,
            label,
            origin,
            out_vkey,
        }) => hsm_keygen(
            ledger::hsm::HsmConfig {
                module,
                token,
                pin_file,
            },
            &label,
            &origin,
            out_vkey,
        ),
        Some(Command::Token { data_dir, op }) => token(&data_dir, op),
        Some(Command::RotateKey {
            data_dir,
            log,
            reason,
            hsm_module,
            hsm_token,
            hsm_pin_file,
            hsm_key,
            new_hsm_key,
        }) => {
            let source = match hsm_module {
                Some(module) => ledger::rotation::KeySource::Hsm {
                    token: ledger::hsm::HsmConfig {
                        module,
                        token: hsm_token.unwrap_or_default(),
                        pin_file: hsm_pin_file.unwrap_or_default(),
                    },
                    old_label: hsm_key.unwrap_or_default(),
                    new_label: new_hsm_key.unwrap_or_default(),
                },
                None => ledger::rotation::KeySource::Files,
            };
            let r = ledger::rotation::rotate(&data_dir, &log, &reason, source)?;
            let what = if r.logged_now {
                "rotated"
            } else {
                "finished the rotation of"
            };
            eprintln!(
                "{what} the key of log {log} at entry {} (checkpoint of size {} signed by both keys);                  the new key signs from there on. Give verifiers the new vkey or the key history                  (GET /{log}/key-history); update witnesses' configuration; destroy                  keys/{log}.key.retired-{} once done.",
                r.index, r.rotation.size, r.rotation.size
            );
            println!("{}", r.rotation.new);
            Ok(())
        }
        None => serve(cli.serve),
    }
}

fn serve(a: ServeArgs) -> Result<()> {
    let logs = a
        .logs
        .iter()
        .map(|s| LogSpec::parse(s, &a.public_host))
        .collect::<Result<Vec<_>>>()?;
    let mut logs = logs;
    let audit_log = match &a.access_config {
        Some(_) => {
            let spec = LogSpec::parse(&a.audit_log, &a.public_host)?;
            if logs
                .iter()
                .any(|l| l.name == spec.name || l.origin == spec.origin)
            {
                anyhow::bail!(
                    "the access audit log {} (--audit-log) must not also be a --log: only the ledger writes it",
                    spec.name
                );
            }
            let name = spec.name.clone();
            logs.push(spec);
            Some(name)
        }
        None => None,
    };
    let hsm = match a.hsm_module {
        Some(module) => Some(HsmSettings {
            token: ledger::hsm::HsmConfig {
                module,
                token: a.hsm_token.unwrap_or_default(),
                pin_file: a.hsm_pin_file.unwrap_or_default(),
            },
            keys: a
                .hsm_keys
                .iter()
                .map(|k| ledger::hsm::parse_key_spec(k))
                .collect::<Result<_>>()?,
        }),
        None => None,
    };
    let backend = match (&a.s3_config, &a.blob_dir) {
        (Some(f), _) => {
            use anyhow::Context;
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("reading S3 configuration {}", f.display()))?;
            BlobBackend::S3(
                serde_json::from_str(&text)
                    .with_context(|| format!("parsing S3 configuration {}", f.display()))?,
            )
        }
        (None, Some(d)) => BlobBackend::Fs(d.clone()),
        (None, None) => BlobBackend::Fs(a.data_dir.join("blobs")),
    };
    let config = ServerConfig {
        blobs: BlobConfig {
            backend,
            seal_key: a.seal_key,
            max_bytes: a.max_blob_bytes,
        },
        data_dir: a.data_dir,
        listen: a.listen,
        logs,
        pool: PoolConfig {
            max_batch_entries: a.max_batch_entries.max(1),
            max_batch_age: Duration::from_micros(a.max_batch_age_us),
            max_pending_entries: a.max_pending_entries,
            max_pending_bytes: a.max_pending_bytes,
        },
        max_batch_bytes: a.max_batch_bytes,
        max_concurrent_requests: a.max_concurrent_requests.max(1),
        cache_bytes: a.cache_bytes,
        max_wal_bytes: a.max_wal_bytes,
        attest: AttestSettings {
            witness_policy: a.witness_policy,
            tsa_urls: a.tsa_urls,
            tsa_roots: a.tsa_roots,
            embedded_tsa: !a.no_embedded_tsa,
            interval: Duration::from_millis(a.attest_interval_ms),
            wait: Duration::from_millis(a.attest_wait_ms),
        },
        hsm,
        access_config: a.access_config,
        audit_log,
        tls: match (a.tls_cert, a.tls_key) {
            (Some(cert), Some(key)) => Some(ledger::tls::TlsSettings {
                cert,
                key,
                client_ca: a.tls_client_ca,
                require_client_cert: a.tls_require_client_cert,
            }),
            // clap's `requires` makes each of the pair need the other.
            _ => None,
        },
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(ledger::server::serve(config))
}

/// `ledger hsm-keygen`: a new checkpoint key inside a PKCS#11 token.
fn hsm_keygen(
    config: ledger::hsm::HsmConfig,
    label: &str,
    origin: &str,
    out_vkey: Option<PathBuf>,
) -> Result<()> {
    use anyhow::Context;
    if !signed_note::is_key_name_valid(origin) {
        anyhow::bail!("origin {origin:?} is not a valid key name (no spaces, no '+', not empty)");
    }
    ledger::hsm::check_key_label(label)?;
    if let Some(p) = out_vkey.as_ref().filter(|p| p.exists()) {
        anyhow::bail!("{} already exists; not overwriting it", p.display());
    }
    let token = ledger::hsm::Token::open(&config).with_context(|| {
        format!(
            "opening PKCS#11 token {:?} in {}",
            config.token,
            config.module.display()
        )
    })?;
    let public = token.generate_ed25519(label)?;
    let vkey = signed_note::new_ed25519_verifier_key(origin, &public);
    // Open it the way the server will: finds it by label and checks a test signature.
    let signer = ledger::hsm::Pkcs11Signer::open(token.clone(), label, origin)?;
    anyhow::ensure!(signer.vkey() == vkey, "the new key reads back differently");
    println!("{vkey}");
    if let Some(p) = &out_vkey {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(p)
            .with_context(|| format!("creating {}", p.display()))?;
        writeln!(f, "{vkey}")?;
    }
    eprintln!(
        "generated Ed25519 key {label:?} on token {:?} (sensitive, not extractable){}",
        config.token,
        out_vkey
            .map(|p| format!("; wrote its vkey to {}", p.display()))
            .unwrap_or_default()
    );
    Ok(())
}

/// The standalone time-stamping authority (`ledger tsa`).
fn tsa(listen: SocketAddr, key: PathBuf, cert: PathBuf, policy: Option<String>) -> Result<()> {
    let mut authority = ledger::tsa::Authority::from_files(&key, &cert)?;
    if let Some(p) = policy {
        authority = authority.with_policy(&p)?;
    }
    eprintln!(
        "time-stamping authority {}, policy {}",
        authority.subject(),
        authority.policy()
    );
    let app: axum::Router = ledger::tsa::router(std::sync::Arc::new(authority));
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            use anyhow::Context;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("binding {listen}"))?;
            // Tests and scripts wait for this exact line; the endpoint is <url>/tsa.
            println!("tsa listening on http://{}", listener.local_addr()?);
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await?;
            Ok(())
        })
}

/// Opens a stopped ledger's database for one log; returns it with the log's vkey and origin.
fn reindex(data_dir: PathBuf, log: String, vkey: Option<PathBuf>) -> Result<()> {
    use anyhow::Context;
    let ledger::fsck::Offline { db, origin, .. } =
        ledger::fsck::open_offline(&data_dir, &log, vkey.as_deref())?;
    let store = db.log_store(&log);
    let snap = ledger::log::recover(&store, &origin)?.context("the log has no checkpoint")?;
    let (cdb, cf) = db.derived(&log, "catalog");
    let catalog = ledger::registry::catalog::Catalog::open(cdb, cf)?;
    let before = catalog.dump()?;
    let applied_before = catalog.applied();
    let started = std::time::Instant::now();
    let counts = ledger::registry::service::rebuild(
        &catalog,
        |a, b| ledger::log::read_entries(&store, &snap, a..b),
        snap.size(),
    )?;
    let after = catalog.dump()?;
    println!(
        "reindex {log}: {} entries in {:.1}s: {} events applied, {} rejected, {} other entries",
        snap.size(),
        started.elapsed().as_secs_f64(),
        counts.accepted,
        counts.rejected,
        counts.other
    );
    if before == after {
        println!("the rebuilt catalog is identical to the one it replaced");
        return Ok(());
    }
    if applied_before < snap.size() {
        // A server stopped (or killed) before its catalog caught up: nothing to compare,
        // the server would have applied the rest at its next start.
        println!(
            "the replaced catalog had applied {applied_before} of {} entries, so it was not compared",
            snap.size()
        );
        return Ok(());
    }
    let differs = before
        .iter()
        .zip(after.iter())
        .find(|(x, y)| x != y)
        .map(|(x, _)| String::from_utf8_lossy(&x.0).into_owned())
        .unwrap_or_else(|| format!("{} keys before, {} after", before.len(), after.len()));
    anyhow::bail!("the rebuilt catalog differs from the one it replaced (first difference at {differs}); the rebuilt one is now in place")
}

fn fsck(data_dir: PathBuf, log: String, vkey: Option<PathBuf>, compact: bool) -> Result<()> {
    let report =
        ledger::fsck::check_data_dir(&data_dir, &log, vkey.as_deref(), compact, |done, total| {
            if done % (1 << 20) < 256 {
                eprintln!("fsck: {done} / {total} entries");
            }
        })?;
    println!("{report}");
    Ok(())
}

/// `ledger token ...` on a stopped ledger's database.
fn token(data_dir: &std::path::Path, op: TokenOp) -> Result<()> {
    use anyhow::Context;
    let db_path = data_dir.join("db");
    let db = ledger::store::rocks::RocksDb::open(&db_path, &[], 16 << 20).with_context(|| {
        format!(
            "opening {} (is the server still running? stop it first, or use /access/v1/tokens)",
            db_path.display()
        )
    })?;
    let (tdb, cf) = db.process_family("access/tokens");
    let store = ledger::access::tokens::TokenStore::new(tdb, cf);
    match op {
        TokenOp::Create {
            principal,
            roles,
            expires_in_days,
        } => {
            let (token, record) = store.create(
                &principal,
                &roles.into_iter().collect(),
                expires_in_days.saturating_mul(86400),
                "offline",
            )?;
            println!("{token}");
            eprintln!(
                "token {} for {} (roles: {}) expires at unix time {}; it is shown only now",
                record.id,
                record.principal,
                record.roles.iter().cloned().collect::<Vec<_>>().join(", "),
                record.expires
            );
        }
        TokenOp::List => {
            for r in store.list()? {
                println!("{}", serde_json::to_string(&r)?);
            }
        }
        TokenOp::Revoke { id } => {
            if !store.revoke(&id)? {
                anyhow::bail!("no token with id {id:?}");
            }
            eprintln!("revoked {id}");
        }
    }
    Ok(())
}
