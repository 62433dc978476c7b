//! The embedded default backend: objects as files under one directory.
//!
//! Key `a/b/<name>` lives at `dir/a/b/<first two characters of name>/<name>` (so
//! `sha256/<hex>` is `dir/sha256/<2 hex>/<hex>`), which keeps directories small. Writes go to
//! a randomly named file in `dir/tmp/`, are fsynced, then hard-linked into place and the
//! directory fsynced: a crash leaves at most a stray temp file, never a partial object
//! under its key, and linking (unlike rename) fails rather than replaces when the key
//! already exists, so a commit onto an existing key keeps the existing file. One process
//! owns the directory (specs/design.md): `open` deletes every temp file as stale.

use super::{BlobError, BlobStore, ByteStream, ObjectWriter, Result};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use rand::RngCore;
use std::io;
use std::io::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const TMP: &str = "tmp";
const READ_CHUNK: usize = 1 << 20;
/// Keys are content addresses and a few prefixes; anything longer is hostile.
const MAX_KEY: usize = 256;

#[derive(Clone, Debug)]
pub struct FsStore {
    root: Arc<Path>,
}

impl FsStore {
    pub fn open(dir: &Path) -> Result<FsStore> {
        let tmp = dir.join(TMP);
        std::fs::create_dir_all(&tmp)?;
        for entry in std::fs::read_dir(&tmp)? {
            let path = entry?.path();
            // A temp file left by a crash; a directory here was not made by us.
            if path.is_file() {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(FsStore { root: dir.into() })
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        object_path(&self.root, key)
    }
}

/// Where `key` lives, or an error for a key that could name anything else: only
/// `[a-z0-9/]` (so no `.` or `..`), no empty segment (so no leading, trailing or double
/// `/`), a last segment of at least two characters, nothing under `tmp/`.
fn object_path(root: &Path, key: &str) -> Result<PathBuf> {
    let bad = |why: &str| {
        let shown: String = key.chars().take(80).collect();
        BlobError::Io(format!("invalid object key {shown:?}: {why}"))
    };
    if key.is_empty() || key.len() > MAX_KEY {
        return Err(bad("empty or too long"));
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'/')
    {
        return Err(bad("only a-z, 0-9 and / are allowed"));
    }
    let segments: Vec<&str> = key.split('/').collect();
    if segments.iter().any(|s| s.is_empty()) {
        return Err(bad("empty path segment"));
    }
    if segments[0] == TMP {
        return Err(bad("tmp/ is reserved"));
    }
    let (name, dirs) = segments.split_last().expect("split yields a segment");
    if name.len() < 2 {
        return Err(bad("the last segment needs at least two characters"));
    }
    let mut path = root.to_path_buf();
    path.extend(dirs);
    path.push(&name[..2]);
    path.push(name);
    Ok(path)
}

fn not_found_is_none<T>(r: io::Result<T>) -> io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[async_trait]
impl BlobStore for FsStore {
    fn kind(&self) -> &'static str {
        "fs"
    }

    async fn begin(&self, key_hint: Option<&str>) -> Result<Box<dyn ObjectWriter>> {
        if let Some(key) = key_hint {
            self.path(key)?;
        }
        let mut name = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut name);
        let tmp = self.root.join(TMP).join(hex::encode(name));
        let (file, direct) = direct::create(&tmp)?;
        // The file is written by a blocking thread of its own, fed the chunks themselves
        // (no blocking-pool hop per chunk).
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(WRITE_QUEUE);
        let done = tokio::task::spawn_blocking(move || -> io::Result<()> {
            if direct {
                direct::write_all(file, rx)
            } else {
                write_buffered(file, rx)
            }
        });
        Ok(Box::new(FsWriter {
            root: self.root.clone(),
            tx: Some(tx),
            done: Some(done),
            tmp,
            published: false,
        }))
    }

    async fn read(&self, key: &str, range: Option<Range<u64>>) -> Result<Option<ByteStream>> {
        let path = self.path(key)?;
        // Absent objects are told apart here; the reader thread opens the file again
        // (for direct reads), and a delete in between ends its stream with an error.
        let Some(meta) = not_found_is_none(tokio::fs::metadata(&path).await)? else {
            return Ok(None);
        };
        Ok(Some(read_ahead(path, range, meta.len() >= DIRECT_READ_MIN)))
    }

    async fn size(&self, key: &str) -> Result<Option<u64>> {
        let path = self.path(key)?;
        let meta = not_found_is_none(tokio::fs::metadata(&path).await)?;
        Ok(meta.filter(|m| m.is_file()).map(|m| m.len()))
    }

    async fn list(&self) -> Result<Vec<(String, u64)>> {
        let root = self.root.clone();
        let mut objects = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            walk(&root, &root, &mut Vec::new(), &mut out).map(|()| out)
        })
        .await
        .map_err(|e| BlobError::Io(e.to_string()))??;
        objects.sort();
        Ok(objects)
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        let path = self.path(key)?;
        Ok(not_found_is_none(tokio::fs::remove_file(&path).await)?.is_some())
    }
}

/// Objects at least this large are read with O_DIRECT; smaller ones (metadata documents,
/// attestations) through the page cache, where the ones read often stay.
const DIRECT_READ_MIN: u64 = 8 << 20;

/// Buffers a reader reads into: chunks in flight to the consumer, at most.
const READ_BUFFERS: usize = 4;
/// Reads a reader keeps in flight.
const READ_DEPTH: usize = 2;

/// A chunk of a file read into a pooled buffer; dropping it hands the buffer back to its
/// reader.
struct Pooled {
    buf: Vec<u8>,
    at: Range<usize>,
    back: tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buf[self.at.clone()]
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let _ = self.back.send(std::mem::take(&mut self.buf));
    }
}

/// Streams `range` of the file at `path` (all of it by default), read up to
/// [`READ_BUFFERS`] chunks ahead of the consumer, so the disk works while the consumer
/// hashes and sends. Each read runs on the blocking pool; between reads the reader is a
/// task, so a slow client holds no thread. It stops when the stream is dropped.
///
/// With `try_direct`, where the file system allows, it reads with O_DIRECT, at aligned
/// offsets into aligned buffers that are reused: a blob just uploaded is not in the page
/// cache (its writes bypassed it), and reading a cold 4 GiB file here ran at 0.6 GB/s
/// through the page cache against 1.4–2.5 GB/s direct (BENCHMARKS.md). Reusing buffers
/// matters too: reading into a fresh allocation per chunk ran at half the speed.
fn read_ahead(path: PathBuf, range: Option<Range<u64>>, try_direct: bool) -> ByteStream {
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(READ_BUFFERS);
    tokio::spawn(async move {
        let joined = |e: tokio::task::JoinError| io::Error::other(e.to_string());
        let opened = tokio::task::spawn_blocking(move || {
            let (file, direct) = direct::open_read(&path, try_direct)?;
            advise_sequential(&file);
            Ok::<_, io::Error>((file, direct))
        })
        .await
        .map_err(joined)
        .and_then(|r| r);
        let (file, mut direct) = match opened {
            Ok(f) => f,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        let file = Arc::new(file);
        let (start, end) = range.map_or((0, u64::MAX), |r| (r.start, r.end));
        if start >= end {
            return;
        }
        // Direct reads start at an aligned offset; bytes outside [start, end) are cut off.
        let mut next = start - start % direct::ALIGN as u64;
        let (back, mut free) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
        let mut fresh = READ_BUFFERS;
        // Reads in flight while a chunk is handed over, so the disk never waits for the
        // consumer's turn (direct reads get no kernel readahead).
        let mut reads = std::collections::VecDeque::new();
        let mut at_end = false;
        loop {
            while !at_end && reads.len() < READ_DEPTH && next < end {
                let buf = if fresh > 0 {
                    fresh -= 1;
                    vec![0u8; READ_CHUNK + direct::ALIGN]
                } else if let Ok(b) = free.try_recv() {
                    b
                } else if !reads.is_empty() {
                    break;
                } else {
                    // Every buffer is with the consumer: one comes back when it is done.
                    tokio::select! {
                        b = free.recv() => match b { Some(b) => b, None => return },
                        _ = tx.closed() => return,
                    }
                };
                let (f, offset, d) = (file.clone(), next, direct);
                reads.push_back(tokio::task::spawn_blocking(move || {
                    let (mut buf, mut d) = (buf, d);
                    let base = buf.as_ptr().align_offset(direct::ALIGN);
                    let r = direct::read_at(&f, &mut buf[base..base + READ_CHUNK], offset, &mut d);
                    (buf, base, offset, r, d)
                }));
                next += READ_CHUNK as u64;
            }
            let Some(read) = reads.pop_front() else {
                return;
            };
            let (buf, base, offset, n) = match read.await {
                Ok((buf, base, offset, Ok(n), d)) => {
                    direct &= d;
                    (buf, base, offset, n)
                }
                Ok((_, _, _, Err(e), _)) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
                Err(e) => {
                    let _ = tx.send(Err(joined(e))).await;
                    return;
                }
            };
            // A short read is the end of the file; reads queued past it find nothing.
            if n < READ_CHUNK {
                at_end = true;
                reads.clear();
            }
            let from = start.max(offset) - offset;
            let to = end.min(offset + n as u64).saturating_sub(offset);
            if from >= to {
                return;
            }
            let chunk = Bytes::from_owner(Pooled {
                buf,
                at: base + from as usize..base + to as usize,
                back: back.clone(),
            });
            if tx.send(Ok(chunk)).await.is_err() || (at_end && reads.is_empty()) {
                return;
            }
        }
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) }).boxed()
}

/// Tells the kernel the file is read front to back, which widens its readahead.
#[cfg(target_os = "linux")]
fn advise_sequential(file: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open for the duration of the call; advice has no effect on
    // memory safety, and a failure only means no advice.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL);
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_sequential(_file: &std::fs::File) {}

/// Collects (key, size) below `dir`, reversing `object_path`; files that no key maps to
/// are not objects and are skipped.
fn walk(
    root: &Path,
    dir: &Path,
    segments: &mut Vec<String>,
    out: &mut Vec<(String, u64)>,
) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let kind = entry.file_type()?;
        if kind.is_dir() {
            if segments.is_empty() && name == TMP {
                continue;
            }
            segments.push(name);
            walk(root, &entry.path(), segments, out)?;
            segments.pop();
        } else if kind.is_file() {
            // The file's own directory is the fan-out, not part of the key.
            let Some((_fan, dirs)) = segments.split_last() else {
                continue;
            };
            let mut key = dirs.join("/");
            if !key.is_empty() {
                key.push('/');
            }
            key.push_str(&name);
            if !object_path(root, &key).is_ok_and(|p| p == entry.path()) {
                continue;
            }
            // A concurrent delete may remove it between listing and stat.
            if let Some(meta) = not_found_is_none(entry.metadata())? {
                out.push((key, meta.len()));
            }
        }
    }
    Ok(())
}

/// Chunks queued for a writer's thread.
const WRITE_QUEUE: usize = 32;

/// Writes through the page cache, then fsyncs: for file systems without O_DIRECT.
fn write_buffered(
    mut file: std::fs::File,
    mut rx: tokio::sync::mpsc::Receiver<Bytes>,
) -> io::Result<()> {
    let (mut written, mut flushed) = (0u64, 0u64);
    while let Some(chunk) = rx.blocking_recv() {
        file.write_all(&chunk)?;
        written += chunk.len() as u64;
        if written - flushed >= WRITEBACK_STEP {
            start_writeback(&file, flushed, written - flushed);
            flushed = written;
        }
    }
    file.sync_all()
}

/// Blobs are written with O_DIRECT where the file system allows it: straight from an
/// aligned buffer to the device, past the page cache. Buffered writes of a large blob
/// cost the kernel more CPU than hashing it (page allocation, copying, writeback
/// throttling: `dd` of 4 GiB here took 5–10 s of system time buffered, 0.3–0.5 s direct,
/// and ran 2.3–4.7x slower; BENCHMARKS.md), and a blob is not read back soon enough for
/// the cache to pay off.
#[cfg(target_os = "linux")]
mod direct {
    use super::*;
    use std::os::unix::fs::OpenOptionsExt;

    /// Offsets, lengths and buffer addresses of O_DIRECT reads and writes are multiples
    /// of this (the largest logical block size of common devices).
    pub const ALIGN: usize = 4096;

    /// Opens a file for reading, direct if asked and the file system supports it.
    pub fn open_read(path: &Path, try_direct: bool) -> io::Result<(std::fs::File, bool)> {
        let open = |flags| {
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(flags)
                .open(path)
        };
        if !try_direct {
            return Ok((open(0)?, false));
        }
        match open(libc::O_DIRECT) {
            Ok(f) => Ok((f, true)),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok((open(0)?, false)),
            Err(e) => Err(e),
        }
    }

    /// Reads into `buf` (aligned, a multiple of [`ALIGN`] long) from `offset` (aligned)
    /// until it is full or the file ends; returns the bytes read. A refused direct read
    /// (EINVAL: stricter alignment needs) drops O_DIRECT and reads through the cache.
    pub fn read_at(
        file: &std::fs::File,
        buf: &mut [u8],
        offset: u64,
        direct: &mut bool,
    ) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let mut n = 0;
        while n < buf.len() {
            match file.read_at(&mut buf[n..], offset + n as u64) {
                Ok(0) => break,
                // A short direct read ends at the end of the file, or leaves the next
                // offset aligned.
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if *direct && e.raw_os_error() == Some(libc::EINVAL) => {
                    clear_direct(file, e)?;
                    *direct = false;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }

    /// Turns O_DIRECT off on `file`; `e` is returned if that fails.
    fn clear_direct(file: &std::fs::File, e: io::Error) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let fd = file.as_raw_fd();
        // SAFETY: fcntl on a descriptor the caller borrows open; F_GETFL and F_SETFL read
        // and set its status flags only.
        let cleared = unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_DIRECT) == 0
        };
        if cleared {
            Ok(())
        } else {
            Err(e)
        }
    }
    /// Bytes gathered before each write.
    const BUFFER: usize = 4 << 20;

    /// A new temp file, opened for direct writes if the file system supports them.
    pub fn create(path: &Path) -> io::Result<(std::fs::File, bool)> {
        let open = |flags| {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(flags)
                .open(path)
        };
        match open(libc::O_DIRECT) {
            Ok(f) => Ok((f, true)),
            // tmpfs and some others refuse O_DIRECT at open.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok((open(0)?, false)),
            Err(e) => Err(e),
        }
    }

    /// Blocks in rotation: one filling while the others are written.
    const BLOCKS: usize = 3;

    /// An aligned block of `BUFFER` bytes inside its allocation.
    struct Block {
        memory: Vec<u8>,
        start: usize,
    }

    impl Block {
        fn new() -> Block {
            let memory = vec![0u8; BUFFER + ALIGN];
            let start = memory.as_ptr().align_offset(ALIGN);
            Block { memory, start }
        }
        fn bytes(&mut self) -> &mut [u8] {
            &mut self.memory[self.start..self.start + BUFFER]
        }
    }

    /// Gathers the chunks into aligned blocks, which a second thread writes while the next
    /// block fills: a direct write waits for the device, and without the overlap the
    /// upload stalled while it did (the CPU sat ~45% idle). The last block is padded with
    /// zeros and the file cut back to its length. Then fsyncs (for the length, and the
    /// device's own cache).
    pub fn write_all(
        file: std::fs::File,
        mut rx: tokio::sync::mpsc::Receiver<Bytes>,
    ) -> io::Result<()> {
        // (block, bytes of it to write, offset) to the writing thread; blocks come back.
        let (to_disk, from_filler) = std::sync::mpsc::sync_channel::<(Block, usize, u64)>(BLOCKS);
        let (back, free) = std::sync::mpsc::channel::<Block>();
        std::thread::scope(|scope| {
            let file = &file;
            let writer = scope.spawn(move || -> io::Result<()> {
                let mut direct = true;
                for (mut block, len, offset) in from_filler {
                    write_block(file, &block.bytes()[..len], offset, &mut direct)?;
                    let _ = back.send(block);
                }
                Ok(())
            });
            let mut spare = BLOCKS;
            let mut next_block = || -> Option<Block> {
                if spare > 0 {
                    spare -= 1;
                    return Some(Block::new());
                }
                // None: the writing thread stopped (its error is reported below).
                free.recv().ok()
            };
            let filled_ok = (|| -> Option<u64> {
                let mut block = next_block()?;
                let (mut filled, mut length) = (0usize, 0u64);
                while let Some(chunk) = rx.blocking_recv() {
                    let mut rest = &chunk[..];
                    while !rest.is_empty() {
                        let n = rest.len().min(BUFFER - filled);
                        block.bytes()[filled..filled + n].copy_from_slice(&rest[..n]);
                        (filled, rest) = (filled + n, &rest[n..]);
                        if filled == BUFFER {
                            to_disk.send((block, BUFFER, length)).ok()?;
                            length += BUFFER as u64;
                            (block, filled) = (next_block()?, 0);
                        }
                    }
                }
                if filled > 0 {
                    let padded = filled.next_multiple_of(ALIGN);
                    block.bytes()[filled..padded].fill(0);
                    to_disk.send((block, padded, length)).ok()?;
                    length += filled as u64;
                }
                Some(length)
            })();
            drop(to_disk);
            let wrote = writer
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the blob writing thread panicked")));
            wrote?;
            let length = filled_ok
                .ok_or_else(|| io::Error::other("the blob writing thread stopped early"))?;
            file.set_len(length)?;
            file.sync_all()
        })
    }

    /// Writes one block at `offset` (positioned, so a retry cannot land elsewhere). A
    /// device whose alignment needs are stricter than [`ALIGN`] refuses it with EINVAL:
    /// then the descriptor drops O_DIRECT and this write and the rest go through the page
    /// cache.
    fn write_block(
        file: &std::fs::File,
        block: &[u8],
        offset: u64,
        direct: &mut bool,
    ) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        match file.write_all_at(block, offset) {
            Err(e) if *direct && e.raw_os_error() == Some(libc::EINVAL) => {
                clear_direct(file, e)?;
                *direct = false;
                file.write_all_at(block, offset)
            }
            r => r,
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod direct {
    use super::*;
    pub fn create(path: &Path) -> io::Result<(std::fs::File, bool)> {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)?;
        Ok((f, false))
    }
    pub fn write_all(
        file: std::fs::File,
        rx: tokio::sync::mpsc::Receiver<Bytes>,
    ) -> io::Result<()> {
        write_buffered(file, rx)
    }
    pub const ALIGN: usize = 4096;
    pub fn open_read(path: &Path, _try_direct: bool) -> io::Result<(std::fs::File, bool)> {
        Ok((std::fs::File::open(path)?, false))
    }
    pub fn read_at(
        file: &std::fs::File,
        buf: &mut [u8],
        offset: u64,
        _direct: &mut bool,
    ) -> io::Result<usize> {
        use std::io::{Read as _, Seek as _};
        let mut f = file;
        f.seek(std::io::SeekFrom::Start(offset))?;
        let mut n = 0;
        while n < buf.len() {
            match f.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }
}

/// Written bytes are handed to the disk in steps of this size while a blob streams in,
/// so the fsync at the end waits for the last step only, not for gigabytes of dirty
/// pages (RocksDB's `bytes_per_sync` does the same for its files).
const WRITEBACK_STEP: u64 = 16 << 20;

/// Starts writing back a byte range of `file` without waiting for it (Linux
/// sync_file_range(2), SYNC_FILE_RANGE_WRITE). Only an optimisation: durability still
/// comes from the fsync at commit, so failures are ignored.
#[cfg(target_os = "linux")]
fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open for the duration of the call; the call only reads it.
    unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &std::fs::File, _offset: u64, _len: u64) {}

struct FsWriter {
    root: Arc<Path>,
    /// Chunks to the writing thread; dropped to tell it the object is complete.
    tx: Option<tokio::sync::mpsc::Sender<Bytes>>,
    /// The writing thread: writes, then fsyncs, and reports how that went.
    done: Option<tokio::task::JoinHandle<io::Result<()>>>,
    tmp: PathBuf,
    published: bool,
}

impl FsWriter {
    /// Ends the writing thread and returns its outcome.
    async fn finish(&mut self) -> Result<()> {
        self.tx.take();
        match self.done.take() {
            Some(done) => done.await.map_err(|e| BlobError::Io(e.to_string()))??,
            None => return Err(BlobError::Io("the writer was already finished".into())),
        }
        Ok(())
    }
}

#[async_trait]
impl ObjectWriter for FsWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<()> {
        let sent = match &self.tx {
            Some(tx) => tx.send(chunk).await.is_ok(),
            None => false,
        };
        if !sent {
            // The thread stopped early: its error says why.
            self.finish().await?;
            return Err(BlobError::Io("the blob writer stopped".into()));
        }
        Ok(())
    }

    async fn commit(mut self: Box<Self>, key: &str) -> Result<()> {
        let dest = object_path(&self.root, key)?;
        self.finish().await?;
        let (root, tmp) = (self.root.clone(), self.tmp.clone());
        tokio::task::spawn_blocking(move || publish(&root, &tmp, &dest))
            .await
            .map_err(|e| BlobError::Io(e.to_string()))??;
        self.published = true;
        Ok(())
    }

    async fn abort(self: Box<Self>) {
        // Drop removes the temp file.
    }
}

impl Drop for FsWriter {
    fn drop(&mut self) {
        if !self.published {
            // The thread may still hold the file open; removing the name is enough on
            // Unix, and the thread ends when it sees the channel closed.
            self.tx.take();
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Makes the synced temp file `tmp` visible as `dest`, durably, keeping an existing `dest`.
fn publish(root: &Path, tmp: &Path, dest: &Path) -> io::Result<()> {
    let parent = dest.parent().expect("objects live below the root");
    create_dirs_synced(root, parent)?;
    match std::fs::hard_link(tmp, dest) {
        Ok(()) => sync_dir(parent)?,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        // A filesystem without hard links: check, then rename. Two writers racing here
        // both hold the key's content, so whichever rename lands last is still correct.
        Err(_) if dest.exists() => {}
        Err(_) => {
            std::fs::rename(tmp, dest)?;
            return sync_dir(parent);
        }
    }
    std::fs::remove_file(tmp)
}

/// `create_dir_all`, fsyncing each parent that gains a directory, so the path to a
/// committed object survives a crash too.
fn create_dirs_synced(root: &Path, dir: &Path) -> io::Result<()> {
    let rel = dir.strip_prefix(root).expect("objects live below the root");
    let mut path = root.to_path_buf();
    for component in rel.components() {
        let parent = path.clone();
        path.push(component);
        match std::fs::create_dir(&path) {
            Ok(()) => sync_dir(&parent)?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blob::{conformance, Blobs, Digest, Expect};

    fn tmp_files(dir: &Path) -> Vec<PathBuf> {
        let entries = std::fs::read_dir(dir.join(TMP)).unwrap();
        entries.map(|e| e.unwrap().path()).collect()
    }

    #[tokio::test]
    async fn the_fs_store_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        conformance::run(Arc::new(FsStore::open(dir.path()).unwrap())).await;
        assert!(tmp_files(dir.path()).is_empty(), "temp files left behind");
    }

    #[tokio::test]
    async fn objects_live_under_a_two_character_fan_out() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::new(Arc::new(FsStore::open(dir.path()).unwrap()), None);
        let body = futures::stream::iter([Ok(Bytes::from_static(b"weights"))]).boxed();
        let put = blobs.put(body, Expect::default()).await.unwrap();
        let hex = put.digest.hex();
        let path = dir.path().join("sha256").join(&hex[..2]).join(&hex);
        assert_eq!(std::fs::read(path).unwrap(), b"weights");
    }

    #[tokio::test]
    async fn hostile_keys_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(&dir.path().join("store")).unwrap();
        std::fs::write(dir.path().join("secret"), b"outside").unwrap();
        let long = "a".repeat(10_000);
        for key in [
            "../x",
            "/etc/passwd",
            "sha256/../../x",
            "sha256/../../../secret",
            "",
            long.as_str(),
            "sha256//ab",
            "sha256/ab/",
            "sha256/a",
            "sha256/.ab",
            "SHA256/AB",
            "sha256\\..\\ab",
            "sha256/ab\0",
            "tmp/abcd",
        ] {
            assert!(store.begin(Some(key)).await.is_err(), "begin {key:?}");
            assert!(store.read(key, None).await.is_err(), "read {key:?}");
            assert!(store.size(key).await.is_err(), "size {key:?}");
            assert!(store.delete(key).await.is_err(), "delete {key:?}");
            let mut w = store.begin(None).await.unwrap();
            w.write(Bytes::from_static(b"evil")).await.unwrap();
            assert!(w.commit(key).await.is_err(), "commit {key:?}");
        }
        assert_eq!(
            std::fs::read(dir.path().join("secret")).unwrap(),
            b"outside"
        );
        assert!(store.list().await.unwrap().is_empty());
        assert!(tmp_files(&dir.path().join("store")).is_empty());
    }

    #[tokio::test]
    async fn stale_temp_files_are_removed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        // What a crash leaves: temp files whose writers never finished or cleaned up.
        drop(store);
        std::fs::write(
            dir.path()
                .join(TMP)
                .join("0123456789abcdef0123456789abcdef"),
            b"partial",
        )
        .unwrap();
        std::fs::write(dir.path().join(TMP).join("leftover"), b"x").unwrap();
        assert_eq!(tmp_files(dir.path()).len(), 2);
        let reopened = FsStore::open(dir.path()).unwrap();
        assert!(tmp_files(dir.path()).is_empty());
        assert!(reopened.list().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_interrupted_write_leaves_no_partial_object_and_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        let key = format!("sha256/{}", Digest::of(b"full").hex());
        let mut w = store.begin(Some(&key)).await.unwrap();
        w.write(Bytes::from_static(b"parti")).await.unwrap();
        assert_eq!(store.size(&key).await.unwrap(), None);
        drop(w);
        assert_eq!(store.size(&key).await.unwrap(), None);
        assert!(tmp_files(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn a_commit_onto_an_existing_key_keeps_the_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        for bytes in [&b"first"[..], b"second"] {
            let mut w = store.begin(None).await.unwrap();
            w.write(Bytes::copy_from_slice(bytes)).await.unwrap();
            w.commit("sha256/abcd").await.unwrap();
        }
        let path = dir.path().join("sha256/ab/abcd");
        assert_eq!(std::fs::read(path).unwrap(), b"first");
        assert!(tmp_files(dir.path()).is_empty());
    }

    /// Deterministic bytes that differ at every position of a block.
    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 4093) as u8).collect()
    }

    async fn write_in_chunks(store: &FsStore, data: &[u8], chunk: usize, key: &str) {
        let mut w = store.begin(None).await.unwrap();
        for c in data.chunks(chunk.max(1)) {
            w.write(Bytes::copy_from_slice(c)).await.unwrap();
        }
        w.commit(key).await.unwrap();
    }

    async fn read_range(store: &FsStore, key: &str, range: Option<Range<u64>>) -> Vec<u8> {
        let mut s = store.read(key, range).await.unwrap().unwrap();
        let mut out = vec![];
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn direct_writes_keep_every_length_and_byte_around_block_and_buffer_edges() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        const B: usize = 4 << 20;
        let lengths = [0, 1, 4095, 4096, 4097, B - 1, B, B + 1, 2 * B + 5000];
        for (i, &n) in lengths.iter().enumerate() {
            let data = pattern(n);
            // Chunk sizes that straddle block and buffer edges.
            for (j, chunk) in [1000, 65_537, B + 3].into_iter().enumerate() {
                if n > 100_000 && chunk == 1000 {
                    continue;
                }
                let key = format!("sha256/k{i}x{j}");
                write_in_chunks(&store, &data, chunk, &key).await;
                assert_eq!(
                    store.size(&key).await.unwrap(),
                    Some(n as u64),
                    "{n} by {chunk}"
                );
                assert!(
                    read_range(&store, &key, None).await == data,
                    "{n} by {chunk}"
                );
            }
        }
        assert!(tmp_files(dir.path()).is_empty());
    }

    #[tokio::test]
    async fn reads_ahead_return_exact_ranges_across_chunk_edges() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        let n = DIRECT_READ_MIN as usize + 3 * READ_CHUNK + 777;
        let data = pattern(n);
        write_in_chunks(&store, &data, 1 << 20, "sha256/ranged").await;
        // A small object too, read through the page cache rather than direct.
        write_in_chunks(&store, &data[..5000], 999, "sha256/small").await;
        assert!(read_range(&store, "sha256/small", None).await == data[..5000]);
        assert!(read_range(&store, "sha256/small", Some(4095..4999)).await == data[4095..4999]);
        let (c, n) = (READ_CHUNK as u64, n as u64);
        for r in [
            0..1,
            0..c,
            c - 1..c + 1,
            4097..2 * c + 13,
            5..n,
            n - 777..n,
            n - 1..n,
            7..7,
        ] {
            let got = read_range(&store, "sha256/ranged", Some(r.clone())).await;
            assert!(got == data[r.start as usize..r.end as usize], "{r:?}");
        }
        // More buffers' worth than the pool holds, read after a pause: the reader thread
        // waits for returned buffers and then goes on.
        let mut s = store.read("sha256/ranged", None).await.unwrap().unwrap();
        let first = s.next().await.unwrap().unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let mut all = first.to_vec();
        drop(first);
        while let Some(c) = s.next().await {
            all.extend_from_slice(&c.unwrap());
        }
        assert!(all == data);
        // A stream dropped mid-way ends its reader (nothing hangs on it).
        let mut s = store.read("sha256/ranged", None).await.unwrap().unwrap();
        let held = s.next().await.unwrap().unwrap();
        drop(s);
        drop(held);
    }

    #[test]
    fn the_buffered_fallback_writes_what_it_is_given() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = std::fs::File::create(&path).unwrap();
        let data = pattern(WRITEBACK_STEP as usize + 12_345);
        let (tx, rx) = tokio::sync::mpsc::channel(data.len() / 65_536 + 1);
        for c in data.chunks(65_536) {
            tx.try_send(Bytes::copy_from_slice(c)).unwrap();
        }
        drop(tx);
        write_buffered(file, rx).unwrap();
        assert!(std::fs::read(&path).unwrap() == data);
    }

    #[tokio::test]
    async fn files_that_are_not_objects_are_not_listed() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsStore::open(dir.path()).unwrap();
        let mut w = store.begin(None).await.unwrap();
        w.write(Bytes::from_static(b"x")).await.unwrap();
        w.commit("sha256/abcd").await.unwrap();
        for stray in ["sha256/ab/zzzz", "sha256/ab/.abcd", "sha256/abcd", "README"] {
            std::fs::write(dir.path().join(stray), b"stray").unwrap();
        }
        let listed = store.list().await.unwrap();
        assert_eq!(listed, vec![("sha256/abcd".to_string(), 1)]);
    }
}
