//! What attestation produces and keeps: per tree size, the checkpoint with its witness
//! cosignatures and the time-stamp tokens that date it.
//!
//! Records live in the log's `attest` column family, keyed by big-endian tree size, each
//! written with sync before it is published. Unlike the catalog they cannot be rebuilt
//! from the log (they are other parties' statements), so `fsck` and `reindex` never
//! touch them.

use crate::store::StoreError;
use bytes::Bytes;
use rocksdb::{IteratorMode, WriteOptions, DB};
use std::sync::Arc;

/// A checkpoint cosigned by a quorum of witnesses and dated by time-stamping authorities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attestation {
    pub size: u64,
    /// The log's signed checkpoint followed by the witnesses' cosignature lines.
    pub checkpoint: Bytes,
    /// Policy names of the witnesses whose cosignatures the checkpoint carries.
    pub cosigners: Vec<String>,
    /// DER RFC 3161 TimeStampTokens over SHA-256 of the checkpoint's note text.
    pub timestamps: Vec<Vec<u8>>,
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    out.extend_from_slice(&(n as u32).to_be_bytes());
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn len(&mut self) -> Option<usize> {
        let b = self.take(4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
    fn chunk(&mut self) -> Option<&'a [u8]> {
        let n = self.len()?;
        self.take(n)
    }
}

impl Attestation {
    /// `u32 len || checkpoint`, `u32 count || (u32 len || name)*`, `u32 count || (u32 len
    /// || token)*`, all big-endian.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            self.checkpoint.len() + self.timestamps.iter().map(|t| t.len() + 4).sum::<usize>() + 64,
        );
        put_len(&mut out, self.checkpoint.len());
        out.extend_from_slice(&self.checkpoint);
        put_len(&mut out, self.cosigners.len());
        for c in &self.cosigners {
            put_len(&mut out, c.len());
            out.extend_from_slice(c.as_bytes());
        }
        put_len(&mut out, self.timestamps.len());
        for t in &self.timestamps {
            put_len(&mut out, t.len());
            out.extend_from_slice(t);
        }
        out
    }

    pub fn decode(size: u64, bytes: &[u8]) -> Option<Self> {
        let mut r = Reader(bytes);
        let checkpoint = Bytes::copy_from_slice(r.chunk()?);
        let n = r.len()?;
        let mut cosigners = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            cosigners.push(String::from_utf8(r.chunk()?.to_vec()).ok()?);
        }
        let n = r.len()?;
        let mut timestamps = Vec::with_capacity(n.min(64));
        for _ in 0..n {
            timestamps.push(r.chunk()?.to_vec());
        }
        if !r.0.is_empty() {
            return None;
        }
        Some(Self {
            size,
            checkpoint,
            cosigners,
            timestamps,
        })
    }

    /// The tokens as a tlog-proof `extra` payload: DER is self-delimiting, so the tokens
    /// are simply concatenated (specs/api.md, "Attested proofs").
    pub fn timestamps_concatenated(&self) -> Vec<u8> {
        self.timestamps.concat()
    }
}

/// The `attest` column family of one log.
pub struct AttestStore {
    db: Arc<DB>,
    cf: String,
}

fn io(e: rocksdb::Error) -> StoreError {
    StoreError::Io(e.to_string())
}

impl AttestStore {
    pub fn new(db: Arc<DB>, cf: String) -> Self {
        Self { db, cf }
    }

    fn cf(&self) -> Result<&rocksdb::ColumnFamily, StoreError> {
        self.db
            .cf_handle(&self.cf)
            .ok_or_else(|| StoreError::Io(format!("no column family {}", self.cf)))
    }

    /// Durably records `a` (synced: it is published, and so answered, only afterwards).
    pub fn put(&self, a: &Attestation) -> Result<(), StoreError> {
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db
            .put_cf_opt(self.cf()?, a.size.to_be_bytes(), a.encode(), &wo)
            .map_err(io)
    }

    pub fn get(&self, size: u64) -> Result<Option<Attestation>, StoreError> {
        let Some(v) = self
            .db
            .get_pinned_cf(self.cf()?, size.to_be_bytes())
            .map_err(io)?
        else {
            return Ok(None);
        };
        Attestation::decode(size, &v)
            .map(Some)
            .ok_or_else(|| StoreError::Corrupt(format!("attestation record at size {size}")))
    }

    /// The record of the largest size.
    pub fn latest(&self) -> Result<Option<Attestation>, StoreError> {
        let mut it = self.db.iterator_cf(self.cf()?, IteratorMode::End);
        match it.next() {
            None => Ok(None),
            Some(Err(e)) => Err(io(e)),
            Some(Ok((k, v))) => {
                let size = <[u8; 8]>::try_from(&k[..])
                    .map(u64::from_be_bytes)
                    .map_err(|_| StoreError::Corrupt("attestation key is not 8 bytes".into()))?;
                Attestation::decode(size, &v).map(Some).ok_or_else(|| {
                    StoreError::Corrupt(format!("attestation record at size {size}"))
                })
            }
        }
    }

    /// The smallest attested size at or above `size` (the first record covering an entry
    /// `size - 1`), if any.
    pub fn first_at_or_after(&self, size: u64) -> Result<Option<Attestation>, StoreError> {
        let key = size.to_be_bytes();
        let mut it = self.db.iterator_cf(
            self.cf()?,
            IteratorMode::From(&key, rocksdb::Direction::Forward),
        );
        match it.next() {
            None => Ok(None),
            Some(Err(e)) => Err(io(e)),
            Some(Ok((k, v))) => {
                let s = <[u8; 8]>::try_from(&k[..])
                    .map(u64::from_be_bytes)
                    .map_err(|_| StoreError::Corrupt("attestation key is not 8 bytes".into()))?;
                Attestation::decode(s, &v)
                    .map(Some)
                    .ok_or_else(|| StoreError::Corrupt(format!("attestation record at size {s}")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_reject_truncation() {
        let a = Attestation {
            size: 7,
            checkpoint: Bytes::from_static(b"o\n7\nroot\n\n\xe2\x80\x94 o sig\n"),
            cosigners: vec!["w1".into(), "w2".into()],
            timestamps: vec![vec![0x30, 0x03, 1, 2, 3], vec![0x30, 0]],
        };
        let e = a.encode();
        assert_eq!(Attestation::decode(7, &e), Some(a.clone()));
        for cut in 0..e.len() {
            assert_eq!(Attestation::decode(7, &e[..cut]), None, "cut at {cut}");
        }
        let mut longer = e.clone();
        longer.push(0);
        assert_eq!(Attestation::decode(7, &longer), None);
        assert_eq!(
            a.timestamps_concatenated(),
            vec![0x30, 0x03, 1, 2, 3, 0x30, 0]
        );
    }
}
