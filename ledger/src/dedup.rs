//! The persistent leaf-hash index that makes resubmission idempotent.
//!
//! A full `leaf hash → index` map would cost ~45 bytes per entry in RocksDB. Instead the index
//! keeps 2^16 buckets (the first two bytes of the leaf hash) whose values are packed 9-byte
//! records: the next four hash bytes and the index as a 40-bit big-endian integer. A hit is
//! only a *candidate*: the caller confirms it by comparing the full leaf hash stored in the
//! tree, so a fragment collision can never return a wrong index.
//!
//! In front of it sits an in-memory Bloom filter over the same 48 hash bits, so that a new
//! entry (the common case) costs no storage read at all.

use tlog_tiles::Hash;

pub const RECORD_BYTES: usize = 9;
/// 2^40 entries: far beyond what one log will hold, and checked at append time.
pub const MAX_INDEX: u64 = (1 << 40) - 1;

pub fn bucket(h: &Hash) -> u16 {
    u16::from_be_bytes([h.0[0], h.0[1]])
}

fn fragment(h: &Hash) -> [u8; 4] {
    [h.0[2], h.0[3], h.0[4], h.0[5]]
}

/// The 48 bits of the leaf hash that the index keeps, as a Bloom filter key.
fn key48(bucket: u16, frag: &[u8]) -> u64 {
    (u64::from(bucket) << 32) | u64::from(u32::from_be_bytes([frag[0], frag[1], frag[2], frag[3]]))
}

pub fn encode_record(h: &Hash, index: u64, out: &mut Vec<u8>) {
    debug_assert!(index <= MAX_INDEX);
    out.extend_from_slice(&fragment(h));
    out.extend_from_slice(&index.to_be_bytes()[3..]);
}

/// Indexes in a bucket whose records match `h`'s fragment (candidates, to be confirmed).
pub fn candidates<'a>(h: &Hash, bucket_value: &'a [u8]) -> impl Iterator<Item = u64> + 'a {
    let frag = fragment(h);
    bucket_value
        .chunks_exact(RECORD_BYTES)
        .filter(move |r| r[..4] == frag)
        .map(|r| {
            let mut b = [0u8; 8];
            b[3..].copy_from_slice(&r[4..]);
            u64::from_be_bytes(b)
        })
}

/// A Bloom filter over 48-bit keys that are already uniformly random (hash prefixes).
pub struct Bloom {
    bits: Vec<u64>,
    mask: u64,
    items: u64,
    capacity: u64,
}

const PROBES: u32 = 7;

impl Bloom {
    /// Sized for `capacity` items at about 1% false positives (10 bits per item).
    pub fn with_capacity(capacity: u64) -> Self {
        let nbits = (capacity.max(1 << 16) * 10).next_power_of_two();
        Self {
            bits: vec![0; (nbits / 64) as usize],
            mask: nbits - 1,
            items: 0,
            capacity,
        }
    }

    fn probes(key: u64) -> impl Iterator<Item = u64> {
        // Double hashing (Kirsch–Mitzenmacher); the second hash is a splitmix64 finaliser
        // so that probes are independent of the key's own bit pattern.
        let mut z = key.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        let h2 = (z ^ (z >> 31)) | 1;
        (0..PROBES as u64).map(move |i| key.wrapping_add(i.wrapping_mul(h2)))
    }

    fn insert_key(&mut self, key: u64) {
        for p in Self::probes(key) {
            let b = p & self.mask;
            self.bits[(b >> 6) as usize] |= 1 << (b & 63);
        }
        self.items += 1;
    }

    pub fn insert(&mut self, h: &Hash) {
        self.insert_key(key48(bucket(h), &fragment(h)));
    }

    pub fn may_contain(&self, h: &Hash) -> bool {
        Self::probes(key48(bucket(h), &fragment(h))).all(|p| {
            let b = p & self.mask;
            self.bits[(b >> 6) as usize] & (1 << (b & 63)) != 0
        })
    }

    /// True once the filter holds more than it was sized for and should be rebuilt larger.
    pub fn is_overfull(&self) -> bool {
        self.items > self.capacity
    }

    /// Adds every record of a stored bucket (start-up and rebuild).
    pub fn insert_bucket(&mut self, bucket: u16, value: &[u8]) {
        for r in value.chunks_exact(RECORD_BYTES) {
            self.insert_key(key48(bucket, &r[..4]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_match_only_their_fragment() {
        let a = tlog_tiles::record_hash(b"a");
        let b = tlog_tiles::record_hash(b"b");
        let mut v = vec![];
        encode_record(&a, 7, &mut v);
        encode_record(&b, MAX_INDEX, &mut v);
        encode_record(&a, 1 << 33, &mut v);
        assert_eq!(candidates(&a, &v).collect::<Vec<_>>(), vec![7, 1 << 33]);
        assert_eq!(candidates(&b, &v).collect::<Vec<_>>(), vec![MAX_INDEX]);
    }

    #[test]
    fn bloom_has_no_false_negatives_and_few_false_positives() {
        let mut f = Bloom::with_capacity(100_000);
        for i in 0u32..100_000 {
            f.insert(&tlog_tiles::record_hash(&i.to_be_bytes()));
        }
        for i in 0u32..100_000 {
            assert!(f.may_contain(&tlog_tiles::record_hash(&i.to_be_bytes())));
        }
        let fp = (100_000u32..200_000)
            .filter(|i| f.may_contain(&tlog_tiles::record_hash(&i.to_be_bytes())))
            .count();
        assert!(fp < 3_000, "false positive rate too high: {fp}/100000");
    }
}
