//! Encryption at rest: blobs sealed with per-blob data keys under one master key.
//!
//! A sealed object is a fixed-size header followed by the plaintext in 64 KiB chunks, each
//! sealed with AES-256-GCM (RFC 5116's AEAD_AES_256_GCM) in the STREAM construction of
//! Hoang, Reyhanitabar, Rogaway and Vizár, "Online Authenticated-Encryption and its
//! Nonce-Reuse Misuse-Resistance" (CRYPTO 2015), as Tink's streaming AEAD and age use it:
//!
//! ```text
//! header  = "LDGRSEAL" || version (1) || wrap nonce (12) || wrapped data key (32 + 16) || nonce prefix (7)
//! chunk i = AES-256-GCM(data key, nonce = prefix || i as u32 BE || last flag, chunk plaintext, aad)
//! aad     = header                (every chunk but the last)
//!         = header || digest      (the last chunk: the plaintext's SHA-256)
//! ```
//!
//! The counter in the nonce makes reordering an error; the last-chunk flag makes truncation
//! and extension an error (a stream cut at a chunk boundary ends in a chunk sealed as not
//! last); a fresh data key per blob makes chunks from another blob an error; the header as
//! AAD makes any header edit an error. Every chunk but the last is exactly 64 KiB, so the
//! object size alone determines the layout and the plaintext size, and a byte range maps
//! to the chunks covering it without reading anything else.
//!
//! The plaintext length is not a header field: uploads need not declare their size and the
//! header is written before the body, so the length is instead authenticated by the
//! last-chunk flag (as in age and Tink). The last chunk's AAD also carries the plaintext
//! digest, which binds the object to its content address: an object copied under another
//! digest's key fails there, even on a ranged read that touches no other chunk.

use super::{BlobError, ByteStream, Digest, Result};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use rand::rngs::OsRng;
use rand::RngCore;
use std::fmt;
use std::ops::{Range, RangeInclusive};
use std::path::Path;

/// Plaintext bytes per chunk.
pub const CHUNK: usize = 64 * 1024;
const TAG: usize = 16;
const SEALED_CHUNK: u64 = (CHUNK + TAG) as u64;
const MAGIC: &[u8; 8] = b"LDGRSEAL";
const VERSION: u8 = 1;
const VERSIONED: usize = MAGIC.len() + 1;
const WRAP_NONCE: usize = 12;
const WRAPPED: usize = 32 + TAG;
const PREFIX: usize = 7;
pub const HEADER_LEN: usize = VERSIONED + WRAP_NONCE + WRAPPED + PREFIX;
/// The counter is 32 bits: at most 2^32 chunks (256 TiB) per blob.
const MAX_CHUNKS: u64 = 1 << 32;
const KEY_FILE_PREFIX: &str = "LEDGER-BLOB-KEY-1:";

/// The key that wraps every blob's data key. Only the AES key schedule is kept.
#[derive(Clone)]
pub struct MasterKey {
    cipher: Aes256Gcm,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    pub fn from_bytes(key: [u8; 32]) -> MasterKey {
        MasterKey {
            cipher: Aes256Gcm::new(&key.into()),
        }
    }

    /// A fresh random key that lives only in memory (tests, the conformance suite).
    pub fn generate() -> MasterKey {
        let mut key = [0u8; 32];
        OsRng.fill_bytes(&mut key);
        MasterKey::from_bytes(key)
    }

    /// Writes a new random key to `path` as `LEDGER-BLOB-KEY-1:<64 hex>`, mode 0600. An
    /// existing file is never overwritten: it may be the only key to existing blobs.
    pub fn generate_file(path: &Path) -> anyhow::Result<MasterKey> {
        let mut key = [0u8; 32];
        OsRng.fill_bytes(&mut key);
        let text = format!("{KEY_FILE_PREFIX}{}\n", hex::encode(key));
        crate::keys::write_private(path, "blob master key", &text)?;
        Ok(MasterKey::from_bytes(key))
    }

    /// Loads a key file, refusing one that group or others can read.
    pub fn load(path: &Path) -> anyhow::Result<MasterKey> {
        let text = crate::keys::read_private(path, "blob master key")?;
        let malformed = || {
            anyhow::anyhow!(
                "{} is not a blob master key (want {KEY_FILE_PREFIX} followed by 64 hex digits)",
                path.display()
            )
        };
        let hex_key = text
            .trim()
            .strip_prefix(KEY_FILE_PREFIX)
            .ok_or_else(malformed)?;
        let mut key = [0u8; 32];
        hex::decode_to_slice(hex_key, &mut key).map_err(|_| malformed())?;
        Ok(MasterKey::from_bytes(key))
    }
}

/// The plaintext size of a sealed object of `object_size` bytes; `None` if no sealed
/// object has that size.
pub fn plaintext_size(object_size: u64) -> Option<u64> {
    layout(object_size).map(|(_, size)| size)
}

/// (chunks, plaintext size). The sealer never emits an empty last chunk after a full one,
/// so every size has at most one layout.
fn layout(object_size: u64) -> Option<(u64, u64)> {
    let body = object_size.checked_sub(HEADER_LEN as u64)?;
    if body < TAG as u64 {
        return None;
    }
    let chunks = body.div_ceil(SEALED_CHUNK);
    let last = body - (chunks - 1) * SEALED_CHUNK;
    if last < TAG as u64 || (last == TAG as u64 && chunks > 1) || chunks > MAX_CHUNKS {
        return None;
    }
    Some((chunks, body - chunks * TAG as u64))
}

fn nonce(header: &[u8; HEADER_LEN], chunk: u64, last: bool) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..PREFIX].copy_from_slice(&header[HEADER_LEN - PREFIX..]);
    // The caller keeps `chunk` below MAX_CHUNKS, so it fits the 4-byte counter.
    n[PREFIX..PREFIX + 4].copy_from_slice(&(chunk as u32).to_be_bytes());
    n[11] = u8::from(last);
    n
}

fn aad(header: &[u8; HEADER_LEN], last: Option<&Digest>) -> Vec<u8> {
    let mut aad = Vec::with_capacity(HEADER_LEN + 32);
    aad.extend_from_slice(header);
    if let Some(d) = last {
        aad.extend_from_slice(&d.0);
    }
    aad
}

/// Seals one blob as it streams: write [`Sealer::header`], then what every
/// [`Sealer::push`] returns, then [`Sealer::finish`].
pub struct Sealer {
    cipher: Aes256Gcm,
    header: [u8; HEADER_LEN],
    next: u64,
    pending: BytesMut,
}

impl Sealer {
    pub fn new(master: &MasterKey) -> Sealer {
        let mut data_key = [0u8; 32];
        OsRng.fill_bytes(&mut data_key);
        let mut header = [0u8; HEADER_LEN];
        header[..MAGIC.len()].copy_from_slice(MAGIC);
        header[MAGIC.len()] = VERSION;
        let mut wrap_nonce = [0u8; WRAP_NONCE];
        // Random 96-bit nonces under one master key: NIST SP 800-38D bounds this at 2^32
        // wraps, far beyond the number of blobs one ledger holds.
        OsRng.fill_bytes(&mut wrap_nonce);
        let wrapped = master
            .cipher
            .encrypt(
                Nonce::from_slice(&wrap_nonce),
                Payload {
                    msg: &data_key,
                    aad: &header[..VERSIONED],
                },
            )
            .expect("AES-GCM seals 32 bytes");
        header[VERSIONED..VERSIONED + WRAP_NONCE].copy_from_slice(&wrap_nonce);
        header[VERSIONED + WRAP_NONCE..HEADER_LEN - PREFIX].copy_from_slice(&wrapped);
        OsRng.fill_bytes(&mut header[HEADER_LEN - PREFIX..]);
        Sealer {
            cipher: Aes256Gcm::new(&data_key.into()),
            header,
            next: 0,
            pending: BytesMut::new(),
        }
    }

    pub fn header(&self) -> Bytes {
        Bytes::copy_from_slice(&self.header)
    }

    /// The sealed chunks that `plaintext` completes. A full chunk is held back until more
    /// plaintext shows that it is not the last.
    pub fn push(&mut self, plaintext: &[u8]) -> Result<Vec<Bytes>> {
        self.pending.extend_from_slice(plaintext);
        let mut sealed = Vec::new();
        while self.pending.len() > CHUNK {
            let chunk = self.pending.split_to(CHUNK);
            sealed.push(self.seal(&chunk, None)?);
        }
        Ok(sealed)
    }

    /// The last chunk, bound to the plaintext's digest.
    pub fn finish(mut self, digest: &Digest) -> Result<Bytes> {
        let chunk = std::mem::take(&mut self.pending);
        self.seal(&chunk, Some(digest))
    }

    fn seal(&mut self, plaintext: &[u8], last: Option<&Digest>) -> Result<Bytes> {
        if self.next >= MAX_CHUNKS {
            return Err(BlobError::Io(
                "blob too large to seal (at most 2^32 chunks of 64 KiB)".into(),
            ));
        }
        let nonce = nonce(&self.header, self.next, last.is_some());
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad(&self.header, last),
                },
            )
            .expect("AES-GCM seals any 64 KiB chunk");
        self.next += 1;
        Ok(sealed.into())
    }
}

/// Opens one sealed object, chunk by chunk.
pub struct Opener {
    cipher: Aes256Gcm,
    header: [u8; HEADER_LEN],
    digest: Digest,
    object_size: u64,
    chunks: u64,
    plaintext_size: u64,
}

impl Opener {
    /// Checks the header and unwraps the data key. `digest` is the content address the
    /// object is read for; the last chunk authenticates only under it.
    pub fn new(
        master: &MasterKey,
        header: &[u8],
        object_size: u64,
        digest: Digest,
    ) -> Result<Opener> {
        let corrupt = |reason: String| BlobError::Corrupt { digest, reason };
        let header: [u8; HEADER_LEN] = header
            .try_into()
            .map_err(|_| corrupt(format!("the sealed header is not {HEADER_LEN} bytes")))?;
        if &header[..MAGIC.len()] != MAGIC {
            return Err(corrupt("not a sealed object (bad magic)".into()));
        }
        if header[MAGIC.len()] != VERSION {
            return Err(corrupt(format!(
                "unknown seal version {}",
                header[MAGIC.len()]
            )));
        }
        let (chunks, plaintext_size) = layout(object_size).ok_or_else(|| {
            corrupt(format!(
                "no sealed object is {object_size} bytes (truncated or extended)"
            ))
        })?;
        let data_key = master
            .cipher
            .decrypt(
                Nonce::from_slice(&header[VERSIONED..VERSIONED + WRAP_NONCE]),
                Payload {
                    msg: &header[VERSIONED + WRAP_NONCE..HEADER_LEN - PREFIX],
                    aad: &header[..VERSIONED],
                },
            )
            .map_err(|_| {
                corrupt("the data key does not unwrap (wrong master key or edited header)".into())
            })?;
        let cipher = Aes256Gcm::new_from_slice(&data_key)
            .map_err(|_| corrupt("the unwrapped data key is not 32 bytes".into()))?;
        Ok(Opener {
            cipher,
            header,
            digest,
            object_size,
            chunks,
            plaintext_size,
        })
    }

    pub fn plaintext_size(&self) -> u64 {
        self.plaintext_size
    }

    pub fn chunks(&self) -> u64 {
        self.chunks
    }

    /// Where chunk `i` lies in the object.
    pub fn chunk_span(&self, i: u64) -> Range<u64> {
        let start = HEADER_LEN as u64 + i * SEALED_CHUNK;
        start..(start + SEALED_CHUNK).min(self.object_size)
    }

    /// The chunks holding the non-empty plaintext range `r` (or the one chunk of an empty
    /// blob).
    pub fn chunks_covering(&self, r: &Range<u64>) -> RangeInclusive<u64> {
        let chunk = CHUNK as u64;
        r.start / chunk..=(r.end.max(1) - 1) / chunk
    }

    /// Authenticates and decrypts chunk `i`.
    pub fn open(&self, i: u64, sealed: &[u8]) -> Result<Bytes> {
        let last = i + 1 == self.chunks;
        let span = self.chunk_span(i);
        let fail = |what: &str| BlobError::Corrupt {
            digest: self.digest,
            reason: format!("sealed chunk {i} of {} {what}", self.chunks),
        };
        if i >= self.chunks || sealed.len() as u64 != span.end - span.start {
            return Err(fail("has the wrong length"));
        }
        let nonce = nonce(&self.header, i, last);
        self.cipher
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: sealed,
                    aad: &aad(&self.header, last.then_some(&self.digest)),
                },
            )
            .map(Bytes::from)
            .map_err(|_| fail("does not authenticate"))
    }

    /// Decrypts `body`, the object bytes of chunks `chunks`, dropping the first `skip`
    /// plaintext bytes and keeping `take`. Holds at most one chunk in memory.
    pub fn stream(
        self,
        chunks: RangeInclusive<u64>,
        body: ByteStream,
        skip: u64,
        take: u64,
    ) -> ByteStream {
        let state = OpenStream {
            next: *chunks.start(),
            last: *chunks.end(),
            opener: self,
            body,
            buf: BytesMut::new(),
            skip,
            left: take,
            done: false,
        };
        futures::stream::unfold(state, |mut st| async move {
            while !st.done && st.next <= st.last {
                match st.step().await {
                    Ok(Some(plaintext)) => return Some((Ok(plaintext), st)),
                    Ok(None) => {}
                    Err(e) => {
                        st.done = true;
                        return Some((Err(e), st));
                    }
                }
            }
            None
        })
        .boxed()
    }
}

struct OpenStream {
    opener: Opener,
    body: ByteStream,
    buf: BytesMut,
    next: u64,
    last: u64,
    skip: u64,
    left: u64,
    done: bool,
}

impl OpenStream {
    /// Opens the next chunk; `None` if none of its plaintext is wanted.
    async fn step(&mut self) -> std::io::Result<Option<Bytes>> {
        let span = self.opener.chunk_span(self.next);
        let need = (span.end - span.start) as usize;
        while self.buf.len() < need {
            match self.body.next().await {
                Some(chunk) => self.buf.extend_from_slice(&chunk?),
                None => {
                    return Err(invalid_data(BlobError::Corrupt {
                        digest: self.opener.digest,
                        reason: format!("the sealed object ends inside chunk {}", self.next),
                    }))
                }
            }
        }
        let sealed = self.buf.split_to(need);
        let plaintext = self.opener.open(self.next, &sealed).map_err(invalid_data)?;
        self.next += 1;
        let skip = std::mem::take(&mut self.skip).min(plaintext.len() as u64);
        let mut plaintext = plaintext.slice(skip as usize..);
        let keep = self.left.min(plaintext.len() as u64);
        plaintext.truncate(keep as usize);
        self.left -= keep;
        Ok((!plaintext.is_empty()).then_some(plaintext))
    }
}

/// Verification failures travel inside byte streams as `InvalidData` errors.
pub(crate) fn invalid_data(e: BlobError) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use std::os::unix::fs::PermissionsExt;

    fn seal_all(master: &MasterKey, plaintext: &[u8]) -> Vec<u8> {
        let mut sealer = Sealer::new(master);
        let mut out = sealer.header().to_vec();
        // Odd piece sizes, so chunk boundaries never line up with pushes.
        for piece in plaintext.chunks(10_007) {
            for chunk in sealer.push(piece).unwrap() {
                out.extend_from_slice(&chunk);
            }
        }
        out.extend_from_slice(&sealer.finish(&Digest::of(plaintext)).unwrap());
        out
    }

    async fn open_range(
        master: &MasterKey,
        object: &[u8],
        digest: Digest,
        range: Range<u64>,
    ) -> Result<Vec<u8>> {
        let header = object.get(..HEADER_LEN).unwrap_or(object);
        let opener = Opener::new(master, header, object.len() as u64, digest)?;
        let chunks = opener.chunks_covering(&range);
        let span = opener.chunk_span(*chunks.start()).start..opener.chunk_span(*chunks.end()).end;
        let body = Bytes::copy_from_slice(&object[span.start as usize..span.end as usize]);
        let skip = range.start - chunks.start() * CHUNK as u64;
        let take = range.end - range.start;
        let body = futures::stream::iter([Ok(body)]).boxed();
        opener
            .stream(chunks, body, skip, take)
            .map_ok(|b| b.to_vec())
            .try_concat()
            .await
            .map_err(|e| BlobError::Io(e.to_string()))
    }

    async fn open_all(master: &MasterKey, object: &[u8], digest: Digest) -> Result<Vec<u8>> {
        let size = plaintext_size(object.len() as u64).ok_or_else(|| BlobError::Corrupt {
            digest,
            reason: "impossible size".into(),
        })?;
        open_range(master, object, digest, 0..size).await
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[tokio::test]
    async fn sealed_bytes_round_trip_at_chunk_boundaries() {
        let master = MasterKey::generate();
        for n in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + 5] {
            let plaintext = pattern(n);
            let object = seal_all(&master, &plaintext);
            assert_eq!(plaintext_size(object.len() as u64), Some(n as u64), "{n}");
            let d = Digest::of(&plaintext);
            assert_eq!(open_all(&master, &object, d).await.unwrap(), plaintext);
        }
    }

    #[tokio::test]
    async fn ranges_decrypt_only_their_chunks() {
        let master = MasterKey::generate();
        let plaintext = pattern(3 * CHUNK + 5);
        let mut object = seal_all(&master, &plaintext);
        // Damage chunk 2: ranges within chunks 0 and 1 must not touch it.
        object[HEADER_LEN + 2 * (CHUNK + TAG) + 9] ^= 1;
        let d = Digest::of(&plaintext);
        let c = CHUNK as u64;
        for r in [0..1, c - 1..c + 1, 5..2 * c] {
            let got = open_range(&master, &object, d, r.clone()).await.unwrap();
            assert_eq!(got, &plaintext[r.start as usize..r.end as usize]);
        }
        assert!(open_range(&master, &object, d, 2 * c..2 * c + 1)
            .await
            .is_err());
    }

    #[tokio::test]
    async fn a_truncated_ciphertext_is_an_error() {
        let master = MasterKey::generate();
        let plaintext = pattern(3 * CHUNK + 5);
        let object = seal_all(&master, &plaintext);
        let d = Digest::of(&plaintext);
        let chunk_end = |i: usize| HEADER_LEN + i * (CHUNK + TAG);
        for len in [
            object.len() - 1,
            object.len() - 5 - TAG, // the whole last chunk gone: ends at a chunk boundary
            chunk_end(2),
            chunk_end(1),
            chunk_end(1) + 100,
            HEADER_LEN + TAG,
            HEADER_LEN,
            10,
            0,
        ] {
            assert!(
                open_all(&master, &object[..len], d).await.is_err(),
                "truncated to {len} bytes"
            );
        }
    }

    #[tokio::test]
    async fn an_extended_ciphertext_is_an_error() {
        let master = MasterKey::generate();
        let plaintext = pattern(CHUNK);
        let d = Digest::of(&plaintext);
        let object = seal_all(&master, &plaintext);
        for extra in [1, TAG, CHUNK + TAG] {
            let mut longer = object.clone();
            longer.extend(std::iter::repeat_n(0u8, extra));
            assert!(open_all(&master, &longer, d).await.is_err(), "{extra}");
        }
        // A full copy of the last chunk appended: a valid-looking layout.
        let mut doubled = object.clone();
        doubled.extend_from_slice(&object[HEADER_LEN..]);
        assert!(open_all(&master, &doubled, d).await.is_err());
    }

    #[tokio::test]
    async fn reordered_chunks_are_an_error() {
        let master = MasterKey::generate();
        let plaintext = pattern(3 * CHUNK);
        let d = Digest::of(&plaintext);
        let object = seal_all(&master, &plaintext);
        let chunk = |i: usize| {
            let start = HEADER_LEN + i * (CHUNK + TAG);
            &object[start..start + CHUNK + TAG]
        };
        let mut swapped = object[..HEADER_LEN].to_vec();
        for i in [1, 0, 2] {
            swapped.extend_from_slice(chunk(i));
        }
        assert_eq!(swapped.len(), object.len());
        assert!(open_all(&master, &swapped, d).await.is_err());
    }

    #[tokio::test]
    async fn a_chunk_from_another_blob_is_an_error() {
        let master = MasterKey::generate();
        let plaintext = pattern(2 * CHUNK + 1);
        let d = Digest::of(&plaintext);
        let object = seal_all(&master, &plaintext);
        // The same plaintext sealed again: only the data key and nonce prefix differ.
        let other = seal_all(&master, &plaintext);
        let first = HEADER_LEN..HEADER_LEN + CHUNK + TAG;
        let mut mixed = object.clone();
        mixed[first.clone()].copy_from_slice(&other[first]);
        assert!(open_all(&master, &mixed, d).await.is_err());
    }

    #[tokio::test]
    async fn an_edited_header_is_an_error() {
        let master = MasterKey::generate();
        let plaintext = pattern(CHUNK + 3);
        let d = Digest::of(&plaintext);
        let object = seal_all(&master, &plaintext);
        for i in 0..HEADER_LEN {
            let mut edited = object.clone();
            edited[i] ^= 0x40;
            assert!(open_all(&master, &edited, d).await.is_err(), "byte {i}");
        }
    }

    #[tokio::test]
    async fn a_flipped_bit_anywhere_is_an_error() {
        let master = MasterKey::generate();
        let plaintext = pattern(2 * CHUNK + 100);
        let d = Digest::of(&plaintext);
        let object = seal_all(&master, &plaintext);
        for pos in (HEADER_LEN..object.len())
            .step_by(4093)
            .chain([object.len() - 1])
        {
            let mut flipped = object.clone();
            flipped[pos] ^= 0x01;
            assert!(open_all(&master, &flipped, d).await.is_err(), "byte {pos}");
        }
    }

    #[tokio::test]
    async fn a_wrong_master_key_is_an_error() {
        let plaintext = pattern(100);
        let d = Digest::of(&plaintext);
        let object = seal_all(&MasterKey::generate(), &plaintext);
        let err = open_all(&MasterKey::generate(), &object, d)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("wrong master key"), "{err}");
    }

    #[tokio::test]
    async fn an_object_sealed_for_another_digest_is_an_error_even_on_a_ranged_read() {
        let master = MasterKey::generate();
        let plaintext = pattern(100);
        let object = seal_all(&master, &plaintext);
        let other = Digest::of(b"something else");
        assert!(open_all(&master, &object, other).await.is_err());
        assert!(open_range(&master, &object, other, 10..20).await.is_err());
    }

    #[test]
    fn the_ciphertext_does_not_contain_the_plaintext() {
        let plaintext = vec![0u8; 1000];
        let object = seal_all(&MasterKey::generate(), &plaintext);
        assert!(!object.windows(32).any(|w| w == &plaintext[..32]));
    }

    #[tokio::test]
    async fn a_generated_key_file_loads_back_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/blob.key");
        let generated = MasterKey::generate_file(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(KEY_FILE_PREFIX), "{text}");
        let loaded = MasterKey::load(&path).unwrap();
        let plaintext = pattern(10);
        let object = seal_all(&generated, &plaintext);
        let opened = open_all(&loaded, &object, Digest::of(&plaintext)).await;
        assert_eq!(opened.unwrap(), plaintext);
    }

    #[test]
    fn a_key_file_is_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob.key");
        MasterKey::generate_file(&path).unwrap();
        let before = std::fs::read(&path).unwrap();
        assert!(MasterKey::generate_file(&path).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), before);
    }

    #[test]
    fn a_key_file_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob.key");
        MasterKey::generate_file(&path).unwrap();
        for mode in [0o640, 0o604, 0o644] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = MasterKey::load(&path).unwrap_err().to_string();
            assert!(err.contains("chmod 600"), "{mode:o}: {err}");
        }
    }

    #[test]
    fn malformed_key_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob.key");
        let good = format!("{KEY_FILE_PREFIX}{}", "ab".repeat(32));
        for text in [
            String::new(),
            "ab".repeat(32),
            format!("{KEY_FILE_PREFIX}{}", "ab".repeat(31)),
            format!("{KEY_FILE_PREFIX}{}", "zz".repeat(32)),
            format!("PRIVATE+KEY+{}", "ab".repeat(32)),
        ] {
            std::fs::write(&path, &text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            assert!(MasterKey::load(&path).is_err(), "{text:?}");
        }
        std::fs::write(&path, good).unwrap();
        assert!(MasterKey::load(&path).is_ok());
    }

    #[test]
    fn only_sealer_output_sizes_have_a_layout() {
        for n in [0u64, 1, CHUNK as u64, CHUNK as u64 + 1, 5 * CHUNK as u64] {
            let chunks = n.div_ceil(CHUNK as u64).max(1);
            let object = HEADER_LEN as u64 + n + chunks * TAG as u64;
            assert_eq!(plaintext_size(object), Some(n));
        }
        // An empty last chunk after a full one, or a last chunk shorter than a tag.
        let full = HEADER_LEN as u64 + SEALED_CHUNK;
        for object in [
            0,
            HEADER_LEN as u64 + TAG as u64 - 1,
            full + TAG as u64,
            full + 3,
        ] {
            assert_eq!(plaintext_size(object), None, "{object}");
        }
    }
}
