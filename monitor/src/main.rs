//! `ledger-monitor --config monitor.json [--listen 127.0.0.1:9464] [--once]`

use anyhow::{Context, Result};
use clap::Parser;
use ledger_monitor::alert::{Alert, Webhook};
use ledger_monitor::config::Config;
use ledger_monitor::follow::{Follower, Sink, Stop};
use ledger_monitor::metrics::{AlertLabel, LogLabel, Metrics};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "ledger-monitor",
    version,
    about = "Follow ledger logs through their tlog-tiles read path, re-verify everything and raise alerts",
    after_help = "Alerts are printed on stdout as `ALERT <json>` lines, POSTed to the webhook if one \
                  is configured, and counted in the metrics. With --once the exit code is 0 if \
                  every log verified, 1 if an alert was raised, 3 if a log could not be read."
)]
struct Cli {
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// One round over the logs, then exit.
    #[arg(long)]
    once: bool,
}

struct Out {
    metrics: Metrics,
    webhook: Option<Webhook>,
    raised: AtomicU64,
}

impl Sink for Out {
    fn alert(&self, a: Alert, seen: Instant) {
        self.raised.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .alerts
            .get_or_create(&AlertLabel {
                log: a.log.clone(),
                kind: a.kind.name().to_string(),
            })
            .inc();
        self.metrics
            .alert_delay
            .observe(seen.elapsed().as_secs_f64());
        let line = serde_json::to_string(&a).unwrap_or_default();
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "ALERT {line}");
        let _ = out.flush();
        tracing::error!(kind = a.kind.name(), log = %a.log, "{}", a.message);
        if let Some(w) = &self.webhook {
            w.send(a);
        }
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

fn serve_metrics(
    addr: SocketAddr,
    registry: Arc<prometheus_client::registry::Registry>,
) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(addr))
        .with_context(|| format!("listening on {addr}"))?;
    println!("metrics on http://{}/metrics", listener.local_addr()?);
    std::thread::spawn(move || {
        rt.block_on(async move {
            let app = axum::Router::new().route(
                "/metrics",
                axum::routing::get(move || {
                    let registry = registry.clone();
                    async move {
                        let mut body = String::new();
                        let _ = prometheus_client::encoding::text::encode(&mut body, &registry);
                        (
                            [(
                                axum::http::header::CONTENT_TYPE,
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            )],
                            body,
                        )
                    }
                }),
            );
            let _ = axum::serve(listener, app).await;
        })
    });
    Ok(())
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run() {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            eprintln!("ledger-monitor: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run() -> Result<u8> {
    let cli = Cli::parse();
    let config = Config::load(&cli.config)?;
    let (metrics, registry) = Metrics::new();
    if let Some(addr) = cli.listen {
        serve_metrics(addr, registry)?;
    }
    let out = Out {
        webhook: config
            .webhook
            .as_ref()
            .map(|w| Webhook::start(w.url.clone(), w.max_attempts, metrics.clone())),
        metrics,
        raised: AtomicU64::new(0),
    };
    let mut followers = config
        .logs
        .iter()
        .map(|l| Follower::open(l, &config.state_dir))
        .collect::<Result<Vec<_>>>()?;
    for f in &followers {
        println!("following {} from tree size {}", f.origin(), f.size());
    }
    loop {
        let mut unreadable = false;
        for f in &mut followers {
            match f.round(
                &out,
                &config.witnesses,
                &config.rules,
                config.blobs.as_ref(),
            ) {
                Ok(()) => {}
                Err(Stop::Alerted) => {}
                Err(Stop::Fetch(e)) => {
                    unreadable = true;
                    out.metrics
                        .fetch_errors
                        .get_or_create(&LogLabel {
                            log: f.origin().to_string(),
                        })
                        .inc();
                    tracing::warn!(log = %f.origin(), error = %e, "read failed; retrying next round");
                }
            }
        }
        if cli.once {
            for f in &mut followers {
                f.flush();
            }
            for f in &followers {
                println!("{}: verified tree size {}", f.origin(), f.size());
            }
            // Let the webhook thread deliver what it holds.
            std::thread::sleep(Duration::from_millis(if out.webhook.is_some() {
                500
            } else {
                0
            }));
            return Ok(if out.raised.load(Ordering::Relaxed) > 0 {
                1
            } else if unreadable {
                3
            } else {
                0
            });
        }
        std::thread::sleep(Duration::from_millis(config.interval_ms));
    }
}
