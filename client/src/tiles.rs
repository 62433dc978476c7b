//! C2SP tlog-tiles resource paths and entry bundles (c2sp.org/tlog-tiles).

use std::fmt;

pub use crate::error::{BundleError, TilePathError};

/// Largest entry an entry bundle can carry: its length prefix is a big-endian uint16
/// (c2sp.org/tlog-tiles#log-entries).
pub const MAX_ENTRY_SIZE: usize = 65535;

/// Number of hashes in a full tile (c2sp.org/tlog-tiles#merkle-tree: "exactly 256 hashes").
pub const TILE_WIDTH: u16 = 256;

/// Highest tile level a path may name (c2sp.org/tlog-tiles#merkle-tree: "between 0 and 63").
pub const MAX_LEVEL: u8 = 63;

/// What a tile holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TileKind {
    /// Merkle tree hashes at `level` (`tile/<L>/...`).
    Hashes { level: u8 },
    /// An entry bundle (`tile/entries/...`), the data behind the level-0 tile.
    Entries,
}

/// A tile or entry bundle path: `tile/<L>/<N>[.p/<W>]` or `tile/entries/<N>[.p/<W>]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TilePath {
    pub kind: TileKind,
    /// The tile's index `N` within its level.
    pub index: u64,
    /// Number of hashes or entries, 1..=256; 256 is a full tile (no `.p/` suffix).
    pub width: u16,
}

impl TilePath {
    /// A full (256-wide) tile.
    pub fn full(kind: TileKind, index: u64) -> Self {
        TilePath {
            kind,
            index,
            width: TILE_WIDTH,
        }
    }

    /// True for a partial tile (width 1..=255).
    pub fn is_partial(&self) -> bool {
        self.width < TILE_WIDTH
    }

    /// Parses the part of a URL after the log prefix, e.g. `tile/0/x001/x234/067`,
    /// `tile/1/000.p/17` or `tile/entries/x001/067.p/3`, strictly per
    /// c2sp.org/tlog-tiles#merkle-tree: no leading zeroes in `L` and `W`, `L <= 63`,
    /// `1 <= W <= 255`, 3-digit `N` elements with `x` on all but the last, and the
    /// canonical (shortest) encoding of `N`.
    pub fn parse(path: &str) -> Result<TilePath, TilePathError> {
        if path.is_empty() {
            return Err(TilePathError::Empty);
        }
        let rest = path
            .strip_prefix("tile/")
            .ok_or(TilePathError::MissingTilePrefix)?;
        let mut elems = rest.split('/');
        let kind_elem = elems.next().unwrap_or("");
        if kind_elem.is_empty() {
            return Err(TilePathError::EmptyElement);
        }
        let kind = if kind_elem == "entries" {
            TileKind::Entries
        } else {
            let level = parse_small_decimal(kind_elem)
                .ok_or_else(|| TilePathError::BadLevel(kind_elem.to_string()))?;
            if level > u64::from(MAX_LEVEL) {
                return Err(TilePathError::LevelTooLarge(level));
            }
            TileKind::Hashes { level: level as u8 }
        };

        // N: zero or more "xDDD" elements, then "DDD" or "DDD.p" (followed by W).
        let mut index: u64 = 0;
        let mut width = TILE_WIDTH;
        let mut saw_last = false;
        let mut n_elems = 0usize;
        while let Some(elem) = elems.next() {
            if elem.is_empty() {
                return Err(TilePathError::EmptyElement);
            }
            n_elems += 1;
            let (digits, is_last, partial) = if let Some(d) = elem.strip_prefix('x') {
                (d, false, false)
            } else if let Some(d) = elem.strip_suffix(".p") {
                (d, true, true)
            } else {
                (elem, true, false)
            };
            if digits.len() != 3 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(TilePathError::BadIndexElement {
                    element: elem.to_string(),
                    reason: if digits.bytes().all(|b| b.is_ascii_digit()) {
                        "must have exactly 3 digits"
                    } else {
                        "must be 3 decimal digits, with an \"x\" prefix on all but the last"
                    },
                });
            }
            let group = u64::from(digits.as_bytes()[0] - b'0') * 100
                + u64::from(digits.as_bytes()[1] - b'0') * 10
                + u64::from(digits.as_bytes()[2] - b'0');
            index = index
                .checked_mul(1000)
                .and_then(|v| v.checked_add(group))
                .ok_or(TilePathError::IndexOverflow)?;
            if is_last {
                saw_last = true;
                if partial {
                    let w = elems.next().ok_or(TilePathError::MissingWidth)?;
                    if w.is_empty() {
                        return Err(TilePathError::MissingWidth);
                    }
                    let w_val = parse_small_decimal(w)
                        .ok_or_else(|| TilePathError::BadWidth(w.to_string()))?;
                    if !(1..=255).contains(&w_val) {
                        return Err(TilePathError::WidthOutOfRange(w_val));
                    }
                    width = w_val as u16;
                }
                break;
            }
        }
        if n_elems == 0 {
            return Err(TilePathError::MissingIndex);
        }
        if !saw_last {
            return Err(TilePathError::BadIndexElement {
                element: rest.rsplit('/').next().unwrap_or("").to_string(),
                reason: "the last index element must not have an \"x\" prefix",
            });
        }
        if elems.next().is_some() {
            return Err(TilePathError::TrailingElements);
        }
        // The encoding of N is a function of N: `x000/067` names the same tile as `067` but
        // is not its path, and accepting both would give one resource two cache keys.
        let canonical = encode_index(index);
        let expected_elems = canonical.split('/').count();
        if n_elems != expected_elems {
            return Err(TilePathError::NonCanonicalIndex {
                expected: canonical,
            });
        }
        Ok(TilePath { kind, index, width })
    }

    /// The canonical path, e.g. `tile/0/x001/x234/067` or `tile/entries/000.p/5`.
    pub fn to_path(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for TilePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            TileKind::Hashes { level } => write!(f, "tile/{level}/")?,
            TileKind::Entries => write!(f, "tile/entries/")?,
        }
        f.write_str(&encode_index(self.index))?;
        if self.width < TILE_WIDTH {
            write!(f, ".p/{}", self.width)?;
        }
        Ok(())
    }
}

impl std::str::FromStr for TilePath {
    type Err = TilePathError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TilePath::parse(s)
    }
}

/// Encodes a tile index as zero-padded 3-digit elements, all but the last prefixed by `x`
/// (c2sp.org/tlog-tiles#merkle-tree: 1234067 is `x001/x234/067`).
fn encode_index(mut n: u64) -> String {
    let mut groups = Vec::with_capacity(7);
    loop {
        groups.push(n % 1000);
        n /= 1000;
        if n == 0 {
            break;
        }
    }
    let mut out = String::with_capacity(groups.len() * 5);
    for (i, g) in groups.iter().rev().enumerate() {
        if i + 1 < groups.len() {
            out.push_str(&format!("x{g:03}/"));
        } else {
            out.push_str(&format!("{g:03}"));
        }
    }
    out
}

/// Parses a decimal without sign or leading zeroes ("0" itself is fine), at most 3 digits
/// (`L <= 63` and `W <= 255` are checked by the caller).
fn parse_small_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 3 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if s.len() > 1 && s.starts_with('0') {
        return None;
    }
    s.parse().ok()
}

/// Width of the partial tile at `level` for a tree of `tree_size` leaves:
/// `floor(s / 256**l) mod 256` (c2sp.org/tlog-tiles#partial-tiles). 0 means there is no
/// partial tile at that level.
pub fn partial_width(tree_size: u64, level: u8) -> u16 {
    let shift = 8 * u32::from(level);
    (tree_size.checked_shr(shift).unwrap_or(0) % 256) as u16
}

/// Number of full tiles at `level` for a tree of `tree_size` leaves:
/// `floor(s / 256**(l+1))`.
pub fn full_tiles(tree_size: u64, level: u8) -> u64 {
    let shift = 8 * (u32::from(level) + 1);
    tree_size.checked_shr(shift).unwrap_or(0)
}

/// Every Merkle tree tile (`tile/<L>/...`) that a tree of `tree_size` leaves exposes: at
/// each level the full tiles, then the partial tile if its width is not zero
/// (c2sp.org/tlog-tiles#partial-tiles). Entry bundles mirror level 0; see
/// [`entry_bundles_for_tree`].
///
/// The list has about `tree_size / 255` elements: meant for tests and small trees.
pub fn tiles_for_tree(tree_size: u64) -> Vec<TilePath> {
    let mut out = Vec::new();
    for level in 0..=MAX_LEVEL {
        let full = full_tiles(tree_size, level);
        let w = partial_width(tree_size, level);
        if full == 0 && w == 0 {
            break;
        }
        let kind = TileKind::Hashes { level };
        out.extend((0..full).map(|n| TilePath::full(kind, n)));
        if w > 0 {
            out.push(TilePath {
                kind,
                index: full,
                width: w,
            });
        }
    }
    out
}

/// Every entry bundle a tree of `tree_size` leaves exposes (the same indexes and widths as
/// its level-0 tiles).
pub fn entry_bundles_for_tree(tree_size: u64) -> Vec<TilePath> {
    let full = full_tiles(tree_size, 0);
    let w = partial_width(tree_size, 0);
    let mut out: Vec<TilePath> = (0..full)
        .map(|n| TilePath::full(TileKind::Entries, n))
        .collect();
    if w > 0 {
        out.push(TilePath {
            kind: TileKind::Entries,
            index: full,
            width: w,
        });
    }
    out
}

/// Encodes entries as an entry bundle: each entry as a big-endian uint16 length followed by
/// its bytes (c2sp.org/tlog-tiles#log-entries). Entries must be 1..=65535 bytes.
pub fn encode_bundle<'a>(
    entries: impl IntoIterator<Item = &'a [u8]>,
) -> Result<Vec<u8>, BundleError> {
    let mut out = Vec::new();
    for (index, e) in entries.into_iter().enumerate() {
        if e.is_empty() {
            return Err(BundleError::EmptyEntry { index });
        }
        let len = u16::try_from(e.len()).map_err(|_| BundleError::EntryTooLarge {
            index,
            len: e.len(),
        })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(e);
    }
    Ok(out)
}

/// Splits an entry bundle into its entries (c2sp.org/tlog-tiles#log-entries). An empty
/// input gives no entries; a zero length, or a length or entry cut short, is an error that
/// names the offset where the broken element starts.
pub fn decode_bundle(bytes: &[u8]) -> Result<Vec<&[u8]>, BundleError> {
    let mut out = Vec::new();
    let mut offset = 0usize;
    while offset < bytes.len() {
        let rest = &bytes[offset..];
        if rest.len() < 2 {
            return Err(BundleError::TruncatedLength { offset });
        }
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        if len == 0 {
            return Err(BundleError::ZeroLength { offset });
        }
        let body = &rest[2..];
        if body.len() < len {
            return Err(BundleError::TruncatedEntry {
                offset,
                declared: len,
                available: body.len(),
            });
        }
        out.push(&body[..len]);
        offset += 2 + len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_encoding() {
        assert_eq!(encode_index(0), "000");
        assert_eq!(encode_index(67), "067");
        assert_eq!(encode_index(1000), "x001/000");
        assert_eq!(encode_index(1234067), "x001/x234/067");
        assert_eq!(encode_index(u64::MAX), "x018/x446/x744/x073/x709/x551/615");
    }

    #[test]
    fn widths() {
        assert_eq!(partial_width(70_000, 0), 112);
        assert_eq!(partial_width(70_000, 1), 17);
        assert_eq!(partial_width(70_000, 2), 1);
        assert_eq!(partial_width(70_000, 3), 0);
        assert_eq!(partial_width(u64::MAX, 7), 255);
        assert_eq!(partial_width(u64::MAX, 8), 0);
        assert_eq!(partial_width(u64::MAX, 63), 0);
        assert_eq!(full_tiles(u64::MAX, 7), 0);
        assert_eq!(full_tiles(u64::MAX, 63), 0);
    }
}
