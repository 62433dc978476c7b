//! Process wiring: key, logs file, state, HTTP.

use crate::metrics::Metrics;
use crate::witness::Witness;
use crate::{config, http, keys};
use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The private key file (`ledger-witness keygen` writes one).
    pub key: PathBuf,
    /// The logs file (tlog-policy `log` lines).
    pub logs: PathBuf,
    /// RocksDB lives in `<data_dir>/db`.
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub prefix: String,
    pub monitoring_prefix: String,
    pub options: crate::witness::Options,
    /// HTTP threads, each with its own single-threaded runtime and listening socket
    /// (SO_REUSEPORT); 0 = one per core.
    pub threads: usize,
}

/// A listening socket that other threads can bind to the same address (SO_REUSEPORT): the
/// kernel spreads connections over them.
fn reuseport_listener(addr: SocketAddr) -> Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())
        .with_context(|| format!("binding {addr}"))?;
    s.listen(1024)?;
    Ok(s.into())
}

pub fn serve(c: ServeConfig) -> Result<()> {
    let signer = keys::load(&c.key)?;
    let logs = config::read_logs(&c.logs)?;
    std::fs::create_dir_all(&c.data_dir)
        .with_context(|| format!("creating data directory {}", c.data_dir.display()))?;
    let metrics = Arc::new(Metrics::new());
    let w = Witness::open_with(
        &logs,
        signer,
        &c.data_dir.join("db"),
        metrics,
        c.options.clone(),
    )?;
    let threads = if c.threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        c.threads
    };
    let first = reuseport_listener(c.listen)?;
    let addr = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..threads {
        listeners.push(reuseport_listener(addr)?);
    }
    println!("witness {}: {} logs", w.name(), w.log_count());
    println!("  vkey {}", w.vkey());
    println!(
        "  submission prefix http://{addr}{}",
        http::normalize_prefix(&c.prefix)
    );
    println!(
        "  monitoring prefix http://{addr}{}",
        http::normalize_prefix(&c.monitoring_prefix)
    );
    // Tests and scripts wait for this exact line.
    println!("witness listening on http://{addr}");
    let app = http::router(w.clone(), &c.prefix, &c.monitoring_prefix);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut handles = vec![];
    for (i, l) in listeners.into_iter().enumerate() {
        let (app, mut stop) = (app.clone(), stop_rx.clone());
        handles.push(
            std::thread::Builder::new()
                .name(format!("witness-http-{i}"))
                .spawn(move || -> Result<()> {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    rt.block_on(async move {
                        let listener = tokio::net::TcpListener::from_std(l)?;
                        axum::serve(listener, app)
                            .with_graceful_shutdown(async move {
                                let _ = stop.wait_for(|s| *s).await;
                            })
                            .await?;
                        anyhow::Ok(())
                    })
                })?,
        );
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        });
    let _ = stop_tx.send(true);
    for h in handles {
        match h.join() {
            Ok(r) => r?,
            Err(_) => anyhow::bail!("an HTTP thread panicked"),
        }
    }
    // Queued cosignatures are written (and answered) before the process exits.
    w.shutdown();
    Ok(())
}
