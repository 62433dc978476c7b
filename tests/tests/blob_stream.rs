//! A blob of several GiB goes through the real server while its resident memory is watched:
//! uploads and downloads stream, so the server never holds a blob (issue 3: "a multi-GiB
//! streaming upload with a memory bound checked from the test").

use ledger_client::digest::Digest;
use ledger_e2e::{agent, Ledger};
use sha2::{Digest as _, Sha256};
use std::io::Read;

const GIB: u64 = 1 << 30;
/// The bound the issue sets for the server's resident memory during the transfer.
const MAX_RSS: u64 = 128 << 20;

/// Deterministic bytes of any length, generated as they are read: a 1 MiB random block,
/// varied by a counter so that no two blocks are equal.
struct Generated {
    left: u64,
    block: Vec<u8>,
    pos: usize,
    counter: u64,
    hasher: Option<Sha256>,
}

impl Generated {
    fn new(len: u64, hash: bool) -> Self {
        use rand::{RngCore, SeedableRng};
        let mut block = vec![0u8; 1 << 20];
        rand::rngs::StdRng::seed_from_u64(7).fill_bytes(&mut block);
        Self {
            left: len,
            block,
            pos: 0,
            counter: 0,
            hasher: hash.then(Sha256::new),
        }
    }
}

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        if self.pos == self.block.len() {
            self.pos = 0;
            self.counter += 1;
            self.block[..8].copy_from_slice(&self.counter.to_be_bytes());
        }
        let n = buf
            .len()
            .min(self.block.len() - self.pos)
            .min(self.left as usize);
        buf[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
        if let Some(h) = &mut self.hasher {
            h.update(&buf[..n]);
        }
        self.pos += n;
        self.left -= n as u64;
        Ok(n)
    }
}

/// Peak and current resident set of a process, from /proc (Linux).
fn rss(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    (field("VmHWM:"), field("VmRSS:"))
}

#[test]
fn a_three_gib_blob_streams_in_and_out_in_bounded_memory() {
    let size = 3 * GIB;
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::start(dir.path(), &["--cache-bytes", "16777216"]);
    let pid = l.child.id();
    let a = agent();
    let (peak_at_start, _) = rss(pid);

    // The digest, computed by a first pass over the generator.
    let mut g = Generated::new(size, true);
    std::io::copy(&mut g, &mut std::io::sink()).unwrap();
    let d = Digest(g.hasher.take().unwrap().finalize().into());

    // Resumable path: a session, chunks of 1 GiB each streamed from the generator.
    let r = a
        .post(l.url("/v2/models/big/blobs/uploads/"))
        .send_empty()
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = l.url(r.headers()["location"].to_str().unwrap());
    let mut body = Generated::new(size, false);
    let mut sent = 0;
    while sent < size {
        let n = GIB.min(size - sent);
        let r = a
            .patch(&loc)
            .header("content-range", format!("{sent}-{}", sent + n - 1))
            .header("content-length", n.to_string())
            .send(ureq::SendBody::from_reader(&mut (&mut body).take(n)))
            .unwrap();
        assert_eq!(r.status(), 202);
        sent += n;
        assert_eq!(
            r.headers()["upload-offset"].to_str().unwrap(),
            sent.to_string()
        );
    }
    let r = a.put(format!("{loc}?digest={d}")).send_empty().unwrap();
    assert_eq!(r.status(), 201);
    let (peak_after_upload, _) = rss(pid);

    // Download, hashing as it arrives.
    let mut r = a
        .get(l.url(&format!("/v2/models/big/blobs/{d}")))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut h = Sha256::new();
    let mut reader = r.body_mut().with_config().limit(u64::MAX).reader();
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0u64;
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        got += n as u64;
    }
    assert_eq!(got, size);
    assert_eq!(Digest(h.finalize().into()), d);
    let (peak, _) = rss(pid);
    eprintln!(
        "server peak RSS: {} MiB at start, {} MiB after the upload, {} MiB after the download",
        peak_at_start >> 20,
        peak_after_upload >> 20,
        peak >> 20
    );
    assert!(
        peak < MAX_RSS,
        "the server's peak RSS reached {} MiB",
        peak >> 20
    );
}
