//! Load generator for the ledger's HTTP API. Every run also measures the machine's own limits
//! (SHA-256 throughput and fsync rate) so figures can be read as ratios on a noisy machine.
//!
//! ```text
//! ledger-load --url http://127.0.0.1:8080/artifacts single --clients 64 --seconds 10
//! ledger-load --url ... batch --clients 4 --batch 4096 --seconds 10
//! ledger-load --url ... rate --rate 5000 --seconds 10
//! ledger-load --url ... proofs --clients 64 --seconds 10
//! ledger-load --url ... fill --entries 10000000
//! ledger-load --url ... attested --clients 16 --seconds 10
//! ```

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use rand::{Rng, RngCore, SeedableRng};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Load generator for the ledger HTTP API")]
struct Cli {
    /// Log prefix, e.g. http://127.0.0.1:8080/artifacts
    #[arg(long)]
    url: String,
    /// Entry size in bytes.
    #[arg(long, default_value_t = 256)]
    entry_size: usize,
    /// Directory on the ledger's filesystem for the fsync-rate measurement.
    #[arg(long, default_value = ".")]
    fsync_dir: std::path::PathBuf,
    /// Skip the machine-limit measurements.
    #[arg(long)]
    no_machine: bool,
    /// File holding a bearer credential, sent with every request (a ledger with access
    /// control; measures the cost of authentication, authorization and the audit log).
    #[arg(long)]
    token_file: Option<std::path::PathBuf>,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Closed loop: each client sends one entry per request, waits for the answer.
    Single {
        #[arg(long, default_value_t = 64)]
        clients: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Closed loop through add-batch.
    Batch {
        #[arg(long, default_value_t = 4)]
        clients: usize,
        #[arg(long, default_value_t = 4096)]
        batch: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Open loop at a fixed rate of single-entry submissions; reports latency.
    Rate {
        #[arg(long, default_value_t = 5000)]
        rate: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Connections used (requests beyond this many in flight wait for one).
        #[arg(long, default_value_t = 256)]
        connections: usize,
    },
    /// Closed loop of inclusion-proof requests for random indexes at the current size.
    Proofs {
        #[arg(long, default_value_t = 64)]
        clients: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Closed loop of GET checkpoint: the HTTP ceiling of this machine for this server,
    /// against which the proof rate reads as a ratio.
    Checkpoint {
        #[arg(long, default_value_t = 64)]
        clients: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// One blob of `--mib` MiB through the blob endpoints (`/v2/`, on the URL's host):
    /// upload and download throughput beside single-core SHA-256 over the same bytes, the
    /// time of a duplicate upload, and (with `--server-pid`) the server's peak memory.
    Blobs {
        #[arg(long, default_value_t = 1024)]
        mib: u64,
        /// The ledger's process id, to read its peak resident memory from /proc.
        #[arg(long)]
        server_pid: Option<u32>,
        /// Wait this long between the upload and the download. A store that writes past
        /// the page cache (the filesystem store's O_DIRECT) serves the download from disk;
        /// right after a multi-GiB upload, a virtual disk may still be absorbing it.
        #[arg(long, default_value_t = 0)]
        settle_seconds: u64,
    },
    /// The latency a submitter adds by waiting for an attested (cosigned, time-stamped)
    /// checkpoint: a closed loop of plain `add`, then the same load with `?wait=attested`.
    Attested {
        #[arg(long, default_value_t = 16)]
        clients: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Appends this many entries as fast as possible through add-batch.
    Fill {
        #[arg(long)]
        entries: u64,
        #[arg(long, default_value_t = 16384)]
        batch: usize,
        #[arg(long, default_value_t = 3)]
        clients: usize,
    },
}

struct Target {
    host: String,
    path: String,
    /// `authorization: Bearer ...\r\n`, or empty.
    auth: String,
}

fn parse_url(url: &str) -> Result<Target> {
    let rest = url
        .strip_prefix("http://")
        .context("only http:// URLs are supported")?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    Ok(Target {
        host: host.to_string(),
        path: format!("/{}", path.trim_end_matches('/')),
        auth: String::new(),
    })
}

/// A keep-alive HTTP/1.1 connection spoken directly, as wrk does. The load generator shares
/// the server's two cores, so every microsecond it spends is one the server does not get:
/// with hyper's client it used ~12 µs of CPU per request.
struct Conn {
    stream: tokio::net::TcpStream,
    /// The request being sent, reused.
    req: Vec<u8>,
    /// Bytes read and not yet consumed.
    buf: Vec<u8>,
    /// The server said `connection: close`: reconnect before the next request.
    closed: bool,
}

async fn connect(t: &Target) -> Result<Conn> {
    let stream = tokio::net::TcpStream::connect(&t.host).await?;
    stream.set_nodelay(true)?;
    Ok(Conn {
        stream,
        req: Vec::with_capacity(4096),
        buf: Vec::with_capacity(16384),
        closed: false,
    })
}

async fn request(
    c: &mut Conn,
    t: &Target,
    method: &str,
    path: &str,
    body: Bytes,
) -> Result<(u16, Bytes)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if c.closed {
        *c = connect(t).await?;
    }
    c.req.clear();
    write!(
        c.req,
        "{method} {}{path} HTTP/1.1\r\nhost: {}\r\n{}content-type: application/octet-stream\r\ncontent-length: {}\r\n\r\n",
        t.path,
        t.host,
        t.auth,
        body.len()
    )?;
    c.req.extend_from_slice(&body);
    c.stream.write_all(&c.req).await?;

    let mut searched = 0;
    let head_end = loop {
        if let Some(i) = find(&c.buf[searched..], b"\r\n\r\n") {
            break searched + i + 4;
        }
        searched = c.buf.len().saturating_sub(3);
        c.buf.reserve(16384);
        if c.stream.read_buf(&mut c.buf).await? == 0 {
            bail!("connection closed before the response head");
        }
    };
    let head = std::str::from_utf8(&c.buf[..head_end]).context("response head is not UTF-8")?;
    let status: u16 = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .context("no status code in the response")?;
    let mut length = None;
    for line in head.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().context("bad content-length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            bail!("chunked responses are not supported by the load generator");
        } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
            c.closed = true;
        }
    }
    let end = head_end + length.context("response without content-length")?;
    while c.buf.len() < end {
        c.buf.reserve(end - c.buf.len());
        if c.stream.read_buf(&mut c.buf).await? == 0 {
            bail!("connection closed inside the response body");
        }
    }
    let body = Bytes::copy_from_slice(&c.buf[head_end..end]);
    c.buf.drain(..end);
    Ok((status, body))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn random_entry(rng: &mut impl RngCore, size: usize) -> Bytes {
    let mut e = vec![0u8; size];
    rng.fill_bytes(&mut e);
    Bytes::from(e)
}

fn bundle(rng: &mut impl RngCore, n: usize, size: usize) -> Bytes {
    let mut b = Vec::with_capacity(n * (size + 2));
    for _ in 0..n {
        b.extend_from_slice(&(size as u16).to_be_bytes());
        let start = b.len();
        b.resize(start + size, 0);
        rng.fill_bytes(&mut b[start..]);
    }
    Bytes::from(b)
}

#[derive(Default)]
struct Stats {
    ok: AtomicU64,
    entries: AtomicU64,
    errors: AtomicU64,
    rejected: AtomicU64,
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

fn report_latency(name: &str, mut lat: Vec<u32>) {
    lat.sort_unstable();
    println!(
        "{name} latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}  (n={})",
        percentile(&lat, 0.5),
        percentile(&lat, 0.9),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0),
        lat.len()
    );
}

/// SHA-256 throughput on 256-byte inputs (MB/s and hashes/s) on one core.
fn measure_sha256() -> (f64, f64) {
    let data = [7u8; 256];
    let start = Instant::now();
    let mut n = 0u64;
    let mut acc = [0u8; 32];
    while start.elapsed() < Duration::from_millis(1000) {
        for _ in 0..1000 {
            let mut h = Sha256::new();
            h.update(acc);
            h.update(data);
            acc = h.finalize().into();
        }
        n += 1000;
    }
    let s = start.elapsed().as_secs_f64();
    std::hint::black_box(acc);
    ((n as f64 * 288.0) / s / 1e6, n as f64 / s)
}

/// fdatasync rate for 4 KiB appends in `dir` (what a synced WAL write costs at best).
fn measure_fsync(dir: &std::path::Path) -> Result<f64> {
    let path = dir.join(format!(".ledger-load-fsync-{}", std::process::id()));
    let mut f = std::fs::File::create(&path)?;
    let block = [1u8; 4096];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_millis(1000) {
        f.write_all(&block)?;
        f.sync_data()?;
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    drop(f);
    let _ = std::fs::remove_file(&path);
    Ok(rate)
}

/// Sequential write bandwidth with a final fdatasync (the bound on appending entries, which
/// RocksDB writes twice: WAL, then the flushed table).
fn measure_write_bandwidth(dir: &std::path::Path) -> Result<f64> {
    let path = dir.join(format!(".ledger-load-bw-{}", std::process::id()));
    let mut f = std::fs::File::create(&path)?;
    let block = vec![3u8; 1 << 20];
    let start = Instant::now();
    for _ in 0..128 {
        f.write_all(&block)?;
    }
    f.sync_data()?;
    let mbs = 128.0 * 1.048_576 / start.elapsed().as_secs_f64();
    drop(f);
    let _ = std::fs::remove_file(&path);
    Ok(mbs)
}

async fn tree_size(t: &Target) -> Result<u64> {
    let mut s = connect(t).await?;
    let (status, body) = request(&mut s, t, "GET", "/checkpoint", Bytes::new()).await?;
    if status != 200 {
        bail!("GET checkpoint: {status}");
    }
    let text = String::from_utf8_lossy(&body);
    text.lines()
        .nth(1)
        .and_then(|l| l.parse().ok())
        .context("checkpoint has no size line")
}

/// Builds one request: (method, path under the log prefix, body, entries it carries).
type MakeRequest =
    Arc<dyn Fn(&mut rand::rngs::StdRng) -> (String, String, Bytes, u64) + Send + Sync>;

async fn closed_loop(
    t: Arc<Target>,
    clients: usize,
    seconds: u64,
    make: MakeRequest,
) -> Result<(Arc<Stats>, Vec<u32>, f64)> {
    let stats = Arc::new(Stats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = vec![];
    let start = Instant::now();
    for c in 0..clients {
        let (t, stats, stop, make) = (t.clone(), stats.clone(), stop.clone(), make.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(rand::random::<u64>() ^ c as u64);
            let mut lat = vec![];
            let mut s = match connect(&t).await {
                Ok(s) => s,
                Err(_) => {
                    stats.errors.fetch_add(1, Ordering::Relaxed);
                    return lat;
                }
            };
            while !stop.load(Ordering::Relaxed) {
                let (method, path, body, n) = make(&mut rng);
                let t0 = Instant::now();
                match request(&mut s, &t, &method, &path, body).await {
                    Ok((200, _)) => {
                        lat.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
                        stats.ok.fetch_add(1, Ordering::Relaxed);
                        stats.entries.fetch_add(n, Ordering::Relaxed);
                    }
                    Ok((503, _)) => {
                        stats.rejected.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Ok(_) | Err(_) => {
                        stats.errors.fetch_add(1, Ordering::Relaxed);
                        match connect(&t).await {
                            Ok(n) => s = n,
                            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                        }
                    }
                }
            }
            lat
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut lat = vec![];
    for task in tasks {
        lat.extend(task.await?);
    }
    Ok((stats, lat, start.elapsed().as_secs_f64()))
}

fn print_stats(label: &str, stats: &Stats, secs: f64) {
    let ok = stats.ok.load(Ordering::Relaxed);
    let entries = stats.entries.load(Ordering::Relaxed);
    println!(
        "{label}: {:.0} requests/s, {:.0} entries/s ({ok} requests, {entries} entries in {secs:.1}s; {} rejected 503, {} errors)",
        ok as f64 / secs,
        entries as f64 / secs,
        stats.rejected.load(Ordering::Relaxed),
        stats.errors.load(Ordering::Relaxed),
    );
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let mut target = parse_url(&cli.url)?;
    if let Some(f) = &cli.token_file {
        let token = std::fs::read_to_string(f)
            .with_context(|| format!("reading token file {}", f.display()))?;
        let token = token.trim();
        if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
            bail!(
                "token file {} must hold one credential of printable ASCII",
                f.display()
            );
        }
        target.auth = format!("authorization: Bearer {token}\r\n");
    }
    let t = Arc::new(target);
    let size = cli.entry_size;
    if !(1..=65535).contains(&size) {
        bail!("--entry-size must be 1..=65535");
    }
    if !cli.no_machine {
        let (mbs, hps) = measure_sha256();
        println!("machine: sha256 {mbs:.0} MB/s ({hps:.0} hashes/s of 256 B, one core)");
        match measure_fsync(&cli.fsync_dir) {
            Ok(r) => println!(
                "machine: fsync {r:.0}/s (4 KiB fdatasync, {})",
                cli.fsync_dir.display()
            ),
            Err(e) => println!("machine: fsync not measured: {e}"),
        }
        match measure_write_bandwidth(&cli.fsync_dir) {
            Ok(r) => println!("machine: sequential write {r:.0} MB/s (128 MiB + fdatasync)"),
            Err(e) => println!("machine: write bandwidth not measured: {e}"),
        }
    }
    match cli.mode {
        Mode::Single { clients, seconds } => {
            let make = Arc::new(move |rng: &mut rand::rngs::StdRng| {
                ("POST".into(), "/add".into(), random_entry(rng, size), 1)
            });
            let cpu_before = own_cpu();
            let (stats, lat, secs) = closed_loop(t, clients, seconds, make).await?;
            let cpu = own_cpu().saturating_sub(cpu_before);
            print_stats(
                &format!("single ({clients} clients, {size} B entries)"),
                &stats,
                secs,
            );
            report_latency("single", lat);
            let ok = stats.ok.load(Ordering::Relaxed);
            if ok > 0 {
                // The generator shares the server's cores: what it spends, the server cannot.
                println!(
                    "single load generator: {:.2} us of CPU per request ({:.0}% of a core)",
                    cpu.as_secs_f64() * 1e6 / ok as f64,
                    100.0 * cpu.as_secs_f64() / secs
                );
            }
        }
        Mode::Batch {
            clients,
            batch,
            seconds,
        } => {
            let make = Arc::new(move |rng: &mut rand::rngs::StdRng| {
                (
                    "POST".into(),
                    "/add-batch".into(),
                    bundle(rng, batch, size),
                    batch as u64,
                )
            });
            let (stats, lat, secs) = closed_loop(t, clients, seconds, make).await?;
            print_stats(
                &format!("batch ({clients} clients x {batch} entries of {size} B)"),
                &stats,
                secs,
            );
            report_latency("batch request", lat);
        }
        Mode::Proofs { clients, seconds } => {
            let n = tree_size(&t).await?;
            if n == 0 {
                bail!("the log is empty; fill it first");
            }
            let make = Arc::new(move |rng: &mut rand::rngs::StdRng| {
                let i = rng.gen_range(0..n);
                (
                    "GET".into(),
                    format!("/proof/inclusion?index={i}&tree_size={n}"),
                    Bytes::new(),
                    1,
                )
            });
            let (stats, lat, secs) = closed_loop(t, clients, seconds, make).await?;
            print_stats(
                &format!("proofs ({clients} clients, tree size {n})"),
                &stats,
                secs,
            );
            report_latency("proof", lat);
        }
        Mode::Checkpoint { clients, seconds } => {
            let make = Arc::new(|_: &mut rand::rngs::StdRng| {
                ("GET".into(), "/checkpoint".into(), Bytes::new(), 1)
            });
            let (stats, lat, secs) = closed_loop(t, clients, seconds, make).await?;
            print_stats(
                &format!("checkpoint GETs ({clients} clients)"),
                &stats,
                secs,
            );
            report_latency("checkpoint", lat);
        }
        Mode::Rate {
            rate,
            seconds,
            connections,
        } => {
            // Idle connections wait in a channel; a request takes one and puts it back.
            let (tx, rx) = tokio::sync::mpsc::channel(connections);
            for _ in 0..connections {
                tx.send(connect(&t).await?).await.ok();
            }
            let rx = Arc::new(ConnPool(tokio::sync::Mutex::new(rx)));
            let stats = Arc::new(Stats::default());
            let lats = Arc::new(parking_lot::Mutex::new(Vec::new()));
            let start = Instant::now();
            let total = rate * seconds;
            let mut rng = rand::rngs::StdRng::from_entropy();
            let mut handles = vec![];
            for i in 0..total {
                // Open loop: the schedule does not wait for answers; latency is measured from
                // the scheduled send time, so queueing in the client counts too.
                let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
                tokio::time::sleep_until(due.into()).await;
                let body = random_entry(&mut rng, size);
                let (t, stats, lats, pool_rx, pool_tx) = (
                    t.clone(),
                    stats.clone(),
                    lats.clone(),
                    rx.clone(),
                    tx.clone(),
                );
                handles.push(tokio::spawn(async move {
                    let Ok(mut s) = pool_rx.recv().await else {
                        return;
                    };
                    match request(&mut s, &t, "POST", "/add", body).await {
                        Ok((200, _)) => {
                            lats.lock().push(due.elapsed().as_micros() as u32);
                            stats.ok.fetch_add(1, Ordering::Relaxed);
                            stats.entries.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok((503, _)) => {
                            stats.rejected.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            stats.errors.fetch_add(1, Ordering::Relaxed);
                            if let Ok(n) = connect(&t).await {
                                s = n;
                            }
                        }
                    }
                    let _ = pool_tx.send(s).await;
                }));
            }
            for h in handles {
                h.await?;
            }
            let secs = start.elapsed().as_secs_f64();
            print_stats(&format!("rate (target {rate}/s)"), &stats, secs);
            report_latency("submission-to-proof", std::mem::take(&mut *lats.lock()));
        }
        Mode::Attested { clients, seconds } => {
            for (label, path) in [
                ("plain add", "/add"),
                ("add?wait=attested", "/add?wait=attested"),
            ] {
                let make = Arc::new(move |rng: &mut rand::rngs::StdRng| {
                    ("POST".into(), path.to_string(), random_entry(rng, size), 1)
                });
                let (stats, lat, secs) = closed_loop(t.clone(), clients, seconds, make).await?;
                print_stats(&format!("{label} ({clients} clients)"), &stats, secs);
                report_latency(label, lat);
            }
        }
        Mode::Blobs {
            mib,
            server_pid,
            settle_seconds,
        } => {
            let dir = (!cli.no_machine).then_some(cli.fsync_dir.as_path());
            blob_bench(&t, mib << 20, server_pid, dir, settle_seconds).await?
        }
        Mode::Fill {
            entries,
            batch,
            clients,
        } => {
            let done = Arc::new(AtomicU64::new(0));
            let start = Instant::now();
            let mut tasks = vec![];
            for c in 0..clients {
                let (t, done) = (t.clone(), done.clone());
                tasks.push(tokio::spawn(async move {
                    let mut rng =
                        rand::rngs::StdRng::seed_from_u64(rand::random::<u64>() ^ c as u64);
                    let mut s = connect(&t).await?;
                    loop {
                        let have = done.fetch_add(batch as u64, Ordering::Relaxed);
                        if have >= entries {
                            return anyhow::Ok(());
                        }
                        let n = batch.min((entries - have) as usize);
                        let body = bundle(&mut rng, n, size);
                        loop {
                            match request(&mut s, &t, "POST", "/add-batch", body.clone()).await? {
                                (200, _) => break,
                                (503, _) => tokio::time::sleep(Duration::from_millis(20)).await,
                                (st, b) => {
                                    bail!("add-batch: {st}: {}", String::from_utf8_lossy(&b))
                                }
                            }
                        }
                    }
                }));
            }
            let progress = {
                let done = done.clone();
                tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_secs(10)).await;
                        let d = done.load(Ordering::Relaxed).min(entries);
                        eprintln!(
                            "fill: {d} / {entries} ({:.0}/s)",
                            d as f64 / start.elapsed().as_secs_f64()
                        );
                    }
                })
            };
            for task in tasks {
                task.await??;
            }
            progress.abort();
            let secs = start.elapsed().as_secs_f64();
            println!(
                "fill: {entries} entries in {secs:.1}s ({:.0} entries/s); tree size now {}",
                entries as f64 / secs,
                tree_size(&t).await?
            );
        }
    }
    Ok(())
}

/// Deterministic blob bytes, block by block: a 1 MiB random block varied by a counter.
struct BlobBytes {
    block: Vec<u8>,
    counter: u64,
}

impl BlobBytes {
    fn new() -> Self {
        let mut block = vec![0u8; 1 << 20];
        rand::rngs::StdRng::seed_from_u64(7).fill_bytes(&mut block);
        Self { block, counter: 0 }
    }

    /// The next block, cut to at most `left` bytes.
    fn next(&mut self, left: u64) -> &[u8] {
        self.counter += 1;
        self.block[..8].copy_from_slice(&self.counter.to_be_bytes());
        &self.block[..(self.block.len() as u64).min(left) as usize]
    }
}

/// CPU time (user + system) this process has used so far.
fn own_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

fn peak_rss_mib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 = s
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kib >> 10)
}

/// Sends a request head and reads the answer's status line (the body, if any, is left).
async fn head_only(host: &str, head: String) -> Result<(tokio::net::TcpStream, u16)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(host).await?;
    s.write_all(head.as_bytes()).await?;
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).await?;
    let status = std::str::from_utf8(&buf[..n])
        .ok()
        .and_then(|t| t.get(9..12))
        .and_then(|c| c.parse().ok())
        .context("no status line")?;
    Ok((s, status))
}

/// Sustained write bandwidth of `size` bytes ending in fdatasync (MiB/s).
fn measure_disk_bandwidth(dir: &std::path::Path, size: u64) -> Result<f64> {
    let path = dir.join(format!(".ledger-load-disk-{}", std::process::id()));
    let mut f = std::fs::File::create(&path)?;
    let mut gen = BlobBytes::new();
    let start = Instant::now();
    let mut left = size;
    while left > 0 {
        let b = gen.next(left);
        f.write_all(b)?;
        left -= b.len() as u64;
    }
    f.sync_data()?;
    let secs = start.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(size as f64 / (1 << 20) as f64 / secs)
}

async fn blob_bench(
    t: &Target,
    size: u64,
    pid: Option<u32>,
    fsync_dir: Option<&std::path::Path>,
    settle_seconds: u64,
) -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mib = size as f64 / (1 << 20) as f64;
    // The machine's limit for this work: SHA-256 of the same bytes on one core.
    let mut gen = BlobBytes::new();
    let mut h = Sha256::new();
    let start = Instant::now();
    let mut left = size;
    while left > 0 {
        let b = gen.next(left);
        h.update(b);
        left -= b.len() as u64;
    }
    let sha_secs = start.elapsed().as_secs_f64();
    let digest = format!("sha256:{}", hex::encode(h.finalize()));
    let sha = mib / sha_secs;
    println!("machine: sha256 {sha:.0} MiB/s over this {mib:.0} MiB blob (one core)");
    // The other limit of a durable upload: writing the same amount to this disk, synced.
    if let Some(dir) = fsync_dir {
        let disk = measure_disk_bandwidth(dir, size)?;
        println!(
            "machine: disk {disk:.0} MiB/s writing {mib:.0} MiB + fdatasync in {}",
            dir.display()
        );
    }
    if let Some(p) = pid {
        println!(
            "server peak RSS before: {} MiB",
            peak_rss_mib(p).unwrap_or(0)
        );
    }

    let start = Instant::now();
    let (mut s, status) = {
        let mut s = tokio::net::TcpStream::connect(&t.host).await?;
        let head = format!(
            "POST /v2/bench/blobs/uploads/?digest={digest} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/octet-stream\r\ncontent-length: {size}\r\n\r\n",
            t.host
        );
        s.write_all(head.as_bytes()).await?;
        let mut gen = BlobBytes::new();
        let mut left = size;
        while left > 0 {
            let b = gen.next(left);
            s.write_all(b).await?;
            left -= b.len() as u64;
        }
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).await?;
        let status: u16 = std::str::from_utf8(&buf[..n])
            .ok()
            .and_then(|t| t.get(9..12))
            .and_then(|c| c.parse().ok())
            .context("no status line")?;
        (s, status)
    };
    let up = start.elapsed().as_secs_f64();
    if status != 201 {
        bail!("upload answered {status}");
    }
    println!(
        "upload: {mib:.0} MiB in {up:.2}s = {:.0} MiB/s ({:.2} x single-core SHA-256)",
        mib / up,
        (mib / up) / sha
    );
    if let Some(p) = pid {
        println!(
            "server peak RSS after the upload: {} MiB",
            peak_rss_mib(p).unwrap_or(0)
        );
    }

    if settle_seconds > 0 {
        println!("(waiting {settle_seconds} s before the download)");
        tokio::time::sleep(Duration::from_secs(settle_seconds)).await;
    }
    let start = Instant::now();
    let head = format!(
        "GET /v2/bench/blobs/{digest} HTTP/1.1\r\nhost: {}\r\n\r\n",
        t.host
    );
    s.write_all(head.as_bytes()).await?;
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0u64;
    let mut head_end = None;
    let mut head_buf = Vec::new();
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        match head_end {
            Some(_) => got += n as u64,
            None => {
                head_buf.extend_from_slice(&buf[..n]);
                if let Some(i) = find(&head_buf, b"\r\n\r\n") {
                    head_end = Some(i + 4);
                    got += (head_buf.len() - i - 4) as u64;
                }
            }
        }
        if got >= size {
            break;
        }
    }
    let down = start.elapsed().as_secs_f64();
    if got != size {
        bail!("download ended after {got} of {size} bytes");
    }
    println!(
        "download: {mib:.0} MiB in {down:.2}s = {:.0} MiB/s ({:.2} x single-core SHA-256; the server re-hashes while it streams)",
        mib / down,
        (mib / down) / sha
    );

    // A duplicate: the headers promise the whole blob, the answer comes from the existence
    // check before any of it is sent.
    let start = Instant::now();
    let (_s, status) = head_only(
        &t.host,
        format!(
            "POST /v2/bench/blobs/uploads/?digest={digest} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/octet-stream\r\ncontent-length: {size}\r\nexpect: 100-continue\r\n\r\n",
            t.host
        ),
    )
    .await?;
    let dup = start.elapsed();
    println!(
        "duplicate upload of the same {mib:.0} MiB: answered {status} in {:.2} ms without the body",
        dup.as_secs_f64() * 1e3
    );
    if let Some(p) = pid {
        println!(
            "server peak RSS at the end: {} MiB",
            peak_rss_mib(p).unwrap_or(0)
        );
    }
    Ok(())
}

/// Idle connections shared by the open-loop senders.
struct ConnPool(tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Conn>>);

impl ConnPool {
    async fn recv(&self) -> Result<Conn, ()> {
        self.0.lock().await.recv().await.ok_or(())
    }
}
