use anyhow::Result;
use clap::{Parser, Subcommand};
use ledger_witness::server::{serve, ServeConfig};
use std::net::SocketAddr;
use std::path::PathBuf;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "ledger-witness",
    version,
    about = "A C2SP tlog-witness: cosigns consistent checkpoints of the logs it follows"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a new Ed25519 cosigning key pair: `<out>/witness.key` (mode 0600, never
    /// overwritten) and `<out>/witness.vkey`.
    Keygen {
        /// The witness's name, also its key name (e.g. `witness.example.com/w1`).
        #[arg(long)]
        name: String,
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Serve the witness.
    Serve {
        /// The private key file.
        #[arg(long)]
        key: PathBuf,
        /// The witnessed logs: C2SP tlog-policy `log <vkey> [<url>]` lines.
        #[arg(long)]
        logs: PathBuf,
        /// State directory (RocksDB under db/); created on first start.
        #[arg(long, default_value = "./witness-data")]
        data_dir: PathBuf,
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: SocketAddr,
        /// Submission prefix: add-checkpoint is served at `<prefix>/add-checkpoint`.
        #[arg(long, default_value = "/")]
        prefix: String,
        /// Monitoring prefix (default: the submission prefix).
        #[arg(long)]
        monitoring_prefix: Option<String>,
        /// Least time between the starts of two synced state writes, in microseconds;
        /// requests arriving meanwhile are made durable together (0: no wait).
        #[arg(long, default_value_t = ledger_witness::witness::DEFAULT_COMMIT_INTERVAL_US)]
        commit_interval_us: u64,
        /// HTTP threads, each with its own single-threaded runtime, given accepted connections
        /// in turn (0: one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Keygen { name, out } => {
            let (path, vkey) = ledger_witness::keys::generate(&out, &name)?;
            println!("{vkey}");
            eprintln!(
                "wrote {} (mode 0600) and {}",
                path.display(),
                out.join(ledger_witness::keys::VKEY_FILE).display()
            );
            Ok(())
        }
        Command::Serve {
            key,
            logs,
            data_dir,
            listen,
            prefix,
            monitoring_prefix,
            commit_interval_us,
            threads,
        } => {
            let config = ServeConfig {
                key,
                logs,
                data_dir,
                listen,
                monitoring_prefix: monitoring_prefix.unwrap_or_else(|| prefix.clone()),
                prefix,
                options: ledger_witness::witness::Options {
                    commit_interval: std::time::Duration::from_micros(commit_interval_us),
                },
                threads,
            };
            serve(config)
        }
    }
}
