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
    /// HTTP threads, each with its own single-threaded runtime, given accepted connections
    /// in turn; 0 = one per core.
    pub threads: usize,
}

/// Serves HTTP/1.1 connections handed over by the acceptor on this thread's runtime.
///
/// One single-threaded runtime per core, each given every n-th accepted connection,
/// measured 3-5% more add-checkpoint requests per second than one work-stealing runtime (no
/// cross-thread task handoffs); the price is that a connection stays on the core it was
/// given, so the slowest answers wait longer (BENCHMARKS.md).
async fn serve_connections(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<std::net::TcpStream>,
    app: axum::Router,
) {
    use hyper_util::rt::TokioIo;
    use hyper_util::service::TowerToHyperService;
    while let Some(stream) = rx.recv().await {
        let Ok(stream) = tokio::net::TcpStream::from_std(stream) else {
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended");
            }
        });
    }
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
    let listener =
        std::net::TcpListener::bind(c.listen).with_context(|| format!("binding {}", c.listen))?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
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
    // Each HTTP thread runs its own single-threaded runtime; the acceptor hands
    // connections to them in turn.
    let mut senders = vec![];
    let mut handles = vec![];
    for i in 0..threads {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        senders.push(tx);
        let app = app.clone();
        handles.push(
            std::thread::Builder::new()
                .name(format!("witness-http-{i}"))
                .spawn(move || -> Result<()> {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?
                        .block_on(serve_connections(rx, app));
                    Ok(())
                })?,
        );
    }
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener)?;
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            let mut next = 0usize;
            loop {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => break,
                    _ = term.recv() => break,
                    accepted = listener.accept() => {
                        let stream = match accepted {
                            Ok((s, _)) => s,
                            Err(e) => {
                                // Out of file descriptors and the like: wait, do not spin.
                                tracing::warn!(error = %e, "accept failed");
                                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                                continue;
                            }
                        };
                        let _ = stream.set_nodelay(true);
                        if let Ok(s) = stream.into_std() {
                            let _ = senders[next % senders.len()].send(s);
                            next = next.wrapping_add(1);
                        }
                    }
                }
            }
            // Closing the channels ends each thread's accept loop; connections still open
            // are dropped with their runtime.
            drop(senders);
            anyhow::Ok(())
        })?;
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
