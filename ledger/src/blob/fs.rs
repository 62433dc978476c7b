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
use std::io::Write as _;
use std::io::{self, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

const TMP: &str = "tmp";
const READ_CHUNK: usize = 256 * 1024;
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
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        // The file is written by a blocking thread of its own, fed the chunks themselves:
        // no copy into an intermediate buffer, no blocking-pool hop per chunk.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(WRITE_QUEUE);
        let done = tokio::task::spawn_blocking(move || -> io::Result<()> {
            let mut file = file;
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
        let Some(mut file) = not_found_is_none(tokio::fs::File::open(&path).await)? else {
            return Ok(None);
        };
        Ok(Some(match range {
            None => ReaderStream::with_capacity(file, READ_CHUNK).boxed(),
            Some(r) => {
                file.seek(SeekFrom::Start(r.start)).await?;
                let len = r.end.saturating_sub(r.start);
                ReaderStream::with_capacity(file.take(len), READ_CHUNK).boxed()
            }
        }))
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
