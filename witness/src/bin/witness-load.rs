//! Load generator for `ledger-witness`: many logs, each advancing one checkpoint per
//! add-checkpoint request, over raw HTTP/1.1 keep-alive connections (as `ledger-load`
//! does: the generator shares the witness's cores, so it must be cheap).
//!
//! ```text
//! witness-load logs --logs 2000 --seed 1 > logs.txt          # the witness's logs file
//! ledger-witness serve --logs logs.txt ...                   # started separately
//! witness-load run --url http://127.0.0.1:8090 --logs 2000 --seed 1 --connections 64 --seconds 10
//! witness-load machine                                       # Ed25519 rates of this machine
//! ```
//!
//! Log keys and checkpoints are derived from the seed, so `logs` and `run` agree without
//! sharing files. Before the timed part, `run` precomputes for every log a chain of signed
//! checkpoints over a synthetic tree (1 to 3 leaves per step) with the consistency proof of
//! each step, so the generator only sends bytes while it is measured.

use anyhow::{bail, Context, Result};
use base64::prelude::*;
use clap::{Parser, Subcommand};
use ledger_client::checkpoint::sign_checkpoint;
use ledger_client::cosignature::{verify_cosignatures, CosignerKey};
use ledger_client::merkle::{leaf_hash, node_hash, Hash};
use ledger_client::witness_protocol::AddCheckpoint;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Load generator for ledger-witness add-checkpoint")]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Print the logs file (tlog-policy `log <vkey>` lines) of the generated logs.
    Logs {
        #[arg(long, default_value_t = 2000)]
        logs: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Drive add-checkpoint requests against a witness configured with `logs`' output and
    /// a fresh data directory.
    Run {
        /// The witness's base URL (submission prefix), e.g. http://127.0.0.1:8090
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 2000)]
        logs: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Checkpoints precomputed per log (the run stops early if a connection runs out).
        #[arg(long, default_value_t = 150)]
        steps: usize,
        #[arg(long, default_value_t = 64)]
        connections: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// The witness's vkey file: after the timed part, the last cosignature of every log
        /// is verified with it.
        #[arg(long)]
        witness_vkey: Option<std::path::PathBuf>,
        /// The witness's process id: its CPU time per request is reported (from /proc).
        #[arg(long)]
        server_pid: Option<u32>,
    },
    /// Ed25519 verify and sign rates of this machine (one core), and the fsync rate of a
    /// directory.
    Machine {
        #[arg(long)]
        fsync_dir: Option<std::path::PathBuf>,
    },
}

fn origin(i: usize) -> String {
    format!("bench.example/log{i}")
}

/// The signed-note private key of log `i`, derived from the seed.
fn log_skey(seed: u64, i: usize) -> (String, String) {
    let mut h = Sha256::new();
    h.update(b"witness-load log key\n");
    h.update(seed.to_be_bytes());
    h.update((i as u64).to_be_bytes());
    let secret: [u8; 32] = h.finalize().into();
    let sk = ed25519_dalek::SigningKey::from_bytes(&secret);
    let name = origin(i);
    let vkey = signed_note::new_ed25519_verifier_key(&name, &sk.verifying_key());
    let id = vkey.split('+').nth(1).unwrap_or_default().to_string();
    let mut private = vec![0x01];
    private.extend_from_slice(&secret);
    (
        format!(
            "PRIVATE+KEY+{name}+{id}+{}",
            BASE64_STANDARD.encode(private)
        ),
        vkey,
    )
}

/// A Merkle tree that keeps every complete aligned subtree hash, so roots and consistency
/// proofs of any prefix cost O(log² n) hashes.
#[derive(Default)]
struct Tree {
    /// levels[h][i]: hash of leaves [i·2^h, (i+1)·2^h).
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    fn len(&self) -> u64 {
        self.levels.first().map_or(0, |l| l.len() as u64)
    }

    fn push(&mut self, leaf: Hash) {
        if self.levels.is_empty() {
            self.levels.push(vec![]);
        }
        self.levels[0].push(leaf);
        let mut h = 0;
        while self.levels[h].len() & 1 == 0 {
            let n = self.levels[h].len();
            let parent = node_hash(&self.levels[h][n - 2], &self.levels[h][n - 1]);
            if self.levels.len() == h + 1 {
                self.levels.push(vec![]);
            }
            self.levels[h + 1].push(parent);
            h += 1;
        }
    }

    /// MTH of leaves [start, end), end > start (RFC 9162 §2.1.1).
    fn hash(&self, start: u64, end: u64) -> Hash {
        let n = end - start;
        if n.is_power_of_two() && start & (n - 1) == 0 {
            let h = n.trailing_zeros() as usize;
            return self.levels[h][(start >> h) as usize];
        }
        let k = 1u64 << (63 - (n - 1).leading_zeros());
        node_hash(&self.hash(start, start + k), &self.hash(start + k, end))
    }

    fn root(&self, size: u64) -> Hash {
        if size == 0 {
            ledger_client::merkle::EMPTY_ROOT
        } else {
            self.hash(0, size)
        }
    }

    /// PROOF(m, D[0:n]) of RFC 9162 §2.1.4.1.
    fn consistency(&self, m: u64, n: u64) -> Vec<Hash> {
        fn sub(t: &Tree, m: u64, start: u64, end: u64, b: bool, out: &mut Vec<Hash>) {
            let n = end - start;
            if m == n {
                if !b {
                    out.push(t.hash(start, end));
                }
                return;
            }
            let k = 1u64 << (63 - (n - 1).leading_zeros());
            if m <= k {
                sub(t, m, start, start + k, b, out);
                out.push(t.hash(start + k, end));
            } else {
                sub(t, m - k, start + k, end, false, out);
                out.push(t.hash(start, start + k));
            }
        }
        let mut out = vec![];
        if m > 0 && m < n {
            sub(self, m, 0, n, true, &mut out);
        }
        out
    }
}

/// The request bodies of one log: step k advances it from its size after step k-1.
fn chain(seed: u64, i: usize, steps: usize) -> Vec<bytes::Bytes> {
    let (skey, _) = log_skey(seed, i);
    let name = origin(i);
    let mut t = Tree::default();
    let mut out = Vec::with_capacity(steps);
    let mut old = 0u64;
    for k in 0..steps {
        let grow = 1 + (i + k) % 3;
        for _ in 0..grow {
            let j = t.len();
            t.push(leaf_hash(format!("{i}/{j}").as_bytes()));
        }
        let size = t.len();
        let req = AddCheckpoint {
            old_size: old,
            proof: t.consistency(old, size),
            checkpoint: sign_checkpoint(&skey, &name, size, &t.root(size), &[])
                .expect("signing a generated checkpoint"),
        };
        out.push(bytes::Bytes::from(req.to_bytes()));
        old = size;
    }
    out
}

struct Conn {
    stream: tokio::net::TcpStream,
    req: Vec<u8>,
    buf: Vec<u8>,
}

async fn connect(host: &str) -> Result<Conn> {
    let stream = tokio::net::TcpStream::connect(host).await?;
    stream.set_nodelay(true)?;
    Ok(Conn {
        stream,
        req: Vec::with_capacity(4096),
        buf: Vec::with_capacity(4096),
    })
}

/// One POST over a keep-alive connection; returns the status and the body.
async fn post(c: &mut Conn, host: &str, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    c.req.clear();
    write!(
        c.req,
        "POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )?;
    c.req.extend_from_slice(body);
    c.stream.write_all(&c.req).await?;
    let mut searched = 0;
    let head_end = loop {
        if let Some(i) = c.buf[searched..].windows(4).position(|w| w == b"\r\n\r\n") {
            break searched + i + 4;
        }
        searched = c.buf.len().saturating_sub(3);
        c.buf.reserve(4096);
        if c.stream.read_buf(&mut c.buf).await? == 0 {
            bail!("connection closed before the response head");
        }
    };
    let head = std::str::from_utf8(&c.buf[..head_end]).context("response head is not UTF-8")?;
    let status: u16 = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .context("no status code")?;
    let length = head
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .context("response without content-length")?;
    let end = head_end + length;
    while c.buf.len() < end {
        c.buf.reserve(end - c.buf.len());
        if c.stream.read_buf(&mut c.buf).await? == 0 {
            bail!("connection closed inside the response body");
        }
    }
    let body = c.buf[head_end..end].to_vec();
    c.buf.drain(..end);
    Ok((status, body))
}

/// User + system CPU seconds of a process, from /proc/<pid>/stat (Linux).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on Linux.
    Some(ticks as f64 / 100.0)
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

/// Single-core Ed25519 verify and sign rates over a checkpoint-sized message.
fn measure_ed25519() -> (f64, f64) {
    let sk = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let vk = sk.verifying_key();
    let msg = b"bench.example/log1\n123456\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n";
    use ed25519_dalek::Signer;
    let sig = sk.sign(msg);
    let rate = |f: &mut dyn FnMut()| {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < Duration::from_millis(1000) {
            for _ in 0..100 {
                f();
            }
            n += 100;
        }
        n as f64 / start.elapsed().as_secs_f64()
    };
    let verify = rate(&mut || {
        std::hint::black_box(vk.verify_strict(std::hint::black_box(msg), &sig).is_ok());
    });
    let sign = rate(&mut || {
        std::hint::black_box(sk.sign(std::hint::black_box(msg)));
    });
    (verify, sign)
}

fn measure_fsync(dir: &std::path::Path) -> Result<f64> {
    let path = dir.join(format!(".witness-load-fsync-{}", std::process::id()));
    let mut f = std::fs::File::create(&path)?;
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_millis(1000) {
        f.write_all(&[0u8; 128])?;
        f.sync_data()?;
        n += 1;
    }
    let r = n as f64 / start.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(r)
}

fn machine(fsync_dir: Option<&std::path::Path>) -> Result<()> {
    let (verify, sign) = measure_ed25519();
    // The same verification through the library path the witness uses (key parsing,
    // note framing and body checks included).
    let (skey, vkey) = log_skey(1, 0);
    let note = sign_checkpoint(&skey, &origin(0), 123456, &leaf_hash(b"x"), &[])?;
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_millis(1000) {
        for _ in 0..100 {
            std::hint::black_box(
                ledger_client::checkpoint::verify_checkpoint(&note, &[&vkey], Some(&origin(0)))
                    .is_ok(),
            );
        }
        n += 100;
    }
    println!(
        "machine: ledger_client::checkpoint::verify_checkpoint {:.0}/s on one core",
        n as f64 / start.elapsed().as_secs_f64()
    );
    let per_request = 1.0 / verify + 1.0 / sign;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "machine: ed25519 verify {verify:.0}/s, sign {sign:.0}/s on one core; one verify + one sign per request bounds a witness at {:.0}/s on {cores} cores",
        cores as f64 / per_request
    );
    if let Some(d) = fsync_dir {
        println!(
            "machine: fdatasync {:.0}/s in {}",
            measure_fsync(d)?,
            d.display()
        );
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn run(
    url: &str,
    logs: usize,
    seed: u64,
    steps: usize,
    connections: usize,
    seconds: u64,
    witness_vkey: Option<&std::path::Path>,
    server_pid: Option<u32>,
) -> Result<()> {
    let rest = url
        .strip_prefix("http://")
        .context("only http:// URLs are supported")?;
    let (host, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let path = format!("/{}/add-checkpoint", prefix.trim_matches('/')).replace("//", "/");
    let host = host.to_string();
    let witness_key = match witness_vkey {
        Some(p) => Some(CosignerKey::parse(std::fs::read_to_string(p)?.trim())?),
        None => None,
    };

    // Precompute every body on all cores, before anything is measured.
    let started = Instant::now();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let bodies: Vec<Vec<bytes::Bytes>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (t..logs)
                        .step_by(threads)
                        .map(|i| (i, chain(seed, i, steps)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<(usize, Vec<bytes::Bytes>)> = handles
            .into_iter()
            .flat_map(|h| h.join().expect("precompute thread"))
            .collect();
        all.sort_by_key(|(i, _)| *i);
        all.into_iter().map(|(_, b)| b).collect()
    });
    let bytes: usize = bodies.iter().flatten().map(|b| b.len()).sum();
    eprintln!(
        "precomputed {} requests ({} logs x {steps} steps, {:.0} B average) in {:.1}s",
        logs * steps,
        logs,
        bytes as f64 / (logs * steps) as f64,
        started.elapsed().as_secs_f64()
    );
    let bodies = Arc::new(bodies);

    let cpu_before = (
        server_pid.and_then(cpu_seconds),
        cpu_seconds(std::process::id()),
    );
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let mut tasks = vec![];
    for c in 0..connections.min(logs) {
        let (bodies, host, path) = (bodies.clone(), host.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            let mut conn = connect(&host).await?;
            let mine: Vec<usize> = (c..bodies.len()).step_by(connections).collect();
            let mut lat = Vec::with_capacity(1 << 16);
            let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
            // The last cosignature of each of this connection's logs: (log, step, line).
            let mut last: Vec<(usize, usize, Vec<u8>)> = vec![];
            let mut errors = 0u64;
            'outer: for k in 0..steps {
                for &i in &mine {
                    if Instant::now() >= deadline {
                        break 'outer;
                    }
                    let t = Instant::now();
                    match post(&mut conn, &host, &path, &bodies[i][k]).await {
                        Ok((status, body)) => {
                            lat.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
                            *statuses.entry(status).or_default() += 1;
                            if status == 200 {
                                match last.iter_mut().find(|(l, _, _)| *l == i) {
                                    Some(e) => *e = (i, k, body),
                                    None => last.push((i, k, body)),
                                }
                            }
                        }
                        Err(_) => {
                            errors += 1;
                            conn = connect(&host).await?;
                        }
                    }
                }
            }
            anyhow::Ok((lat, statuses, last, errors))
        }));
    }
    let mut lat = vec![];
    let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
    let mut last = vec![];
    let mut errors = 0;
    for t in tasks {
        let (l, s, la, e) = t.await??;
        lat.extend(l);
        for (k, v) in s {
            *statuses.entry(k).or_default() += v;
        }
        last.extend(la);
        errors += e;
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu_after = (
        server_pid.and_then(cpu_seconds),
        cpu_seconds(std::process::id()),
    );
    lat.sort_unstable();
    let total: u64 = statuses.values().sum();
    let ok = statuses.get(&200).copied().unwrap_or(0);
    println!(
        "add-checkpoint ({connections} connections, {logs} logs): {total} requests in {secs:.1}s = {:.0} requests/s, {:.0} cosignatures/s",
        total as f64 / secs,
        ok as f64 / secs
    );
    println!(
        "latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.9),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0)
    );
    println!("statuses: {statuses:?}; connection errors: {errors}");
    let per_request = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if total > 0 => Some(((b - a) / total as f64 * 1e6, (b - a) / secs)),
        _ => None,
    };
    if let Some((us, cores)) = per_request(cpu_before.0, cpu_after.0) {
        println!("witness CPU: {us:.1} µs per request ({cores:.2} cores busy)");
    }
    if let Some((us, cores)) = per_request(cpu_before.1, cpu_after.1) {
        println!("load generator CPU: {us:.1} µs per request ({cores:.2} cores busy)");
    }
    if let Some(key) = witness_key {
        // Outside the timed part: every log's last cosignature verifies on its checkpoint.
        let mut checked = 0;
        for (i, k, line) in &last {
            let req = AddCheckpoint::parse(&bodies[*i][*k])?;
            let mut note = req.checkpoint.clone();
            note.extend_from_slice(line);
            if verify_cosignatures(&note, std::slice::from_ref(&key))?[0].is_none() {
                bail!("log {i} step {k}: the answer carries no cosignature by the witness key");
            }
            checked += 1;
        }
        println!("verified the last cosignature of {checked} logs with the witness vkey");
    }
    if ok == 0 {
        bail!("no request was cosigned");
    }
    Ok(())
}

fn main() -> Result<()> {
    match Cli::parse().mode {
        Mode::Logs { logs, seed } => {
            let mut out = std::io::stdout().lock();
            writeln!(out, "# witness-load logs, seed {seed}")?;
            for i in 0..logs {
                writeln!(out, "log {}", log_skey(seed, i).1)?;
            }
            Ok(())
        }
        Mode::Machine { fsync_dir } => machine(fsync_dir.as_deref()),
        Mode::Run {
            url,
            logs,
            seed,
            steps,
            connections,
            seconds,
            witness_vkey,
            server_pid,
        } => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(run(
                &url,
                logs,
                seed,
                steps,
                connections,
                seconds,
                witness_vkey.as_deref(),
                server_pid,
            )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_client::merkle::{consistency_proof, root_from_leaves, verify_consistency};

    #[test]
    fn the_memo_tree_matches_the_reference() {
        let leaves: Vec<Hash> = (0..70u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mut t = Tree::default();
        for (n, l) in leaves.iter().enumerate() {
            t.push(*l);
            let n = n + 1;
            assert_eq!(t.root(n as u64), root_from_leaves(&leaves[..n]));
            for m in 0..=n {
                let p = t.consistency(m as u64, n as u64);
                assert_eq!(
                    p,
                    consistency_proof(&leaves[..n], m as u64).unwrap(),
                    "{m}/{n}"
                );
            }
        }
    }

    #[test]
    fn chains_verify_step_by_step() {
        let (_, vkey) = log_skey(3, 5);
        let mut old = (0u64, ledger_client::merkle::EMPTY_ROOT);
        for b in chain(3, 5, 20) {
            let r = AddCheckpoint::parse(&b).unwrap();
            assert_eq!(r.old_size, old.0);
            let cp = ledger_client::checkpoint::verify_checkpoint(
                &r.checkpoint,
                &[&vkey],
                Some(&origin(5)),
            )
            .unwrap();
            verify_consistency(old.0, &old.1, cp.size, &cp.root, &r.proof).unwrap();
            old = (cp.size, cp.root);
        }
    }
}
