//! The monitor's own copy of a log's tree, rebuilt from the entries alone (RFC 6962 §2.1):
//! the compact range (roots of the perfect subtrees that make up the tree) for the root
//! hash, and the hashes of the tiles not yet full at each level, so that every tile the
//! log serves can be compared with the one the entries imply (c2sp.org/tlog-tiles: a tile
//! at level L holds 256 hashes of subtrees of 256^L leaves).

use ledger_client::merkle::{hash_from_base64, hash_to_base64, leaf_hash, node_hash, Hash};
use serde::{Deserialize, Serialize};

/// Hashes in a full tile.
pub const TILE_WIDTH: usize = 256;

/// A tile the entries completed (or, at the end, the partial tile of the tree's size):
/// the exact bytes the log must serve at `tile/<level>/<index>[.p/<width>]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpectedTile {
    pub level: u8,
    pub index: u64,
    pub hashes: Vec<Hash>,
}

impl ExpectedTile {
    pub fn bytes(&self) -> Vec<u8> {
        self.hashes.iter().flat_map(|h| h.0).collect()
    }
    pub fn is_full(&self) -> bool {
        self.hashes.len() == TILE_WIDTH
    }
}

/// The tree of the first `size` entries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tree {
    size: u64,
    /// (height, hash) of each perfect subtree, largest (leftmost) first.
    range: Vec<(u8, Hash)>,
    /// Per tile level, the hashes of the tile being filled.
    tiles: Vec<Vec<Hash>>,
}

impl Tree {
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends one entry; returns the tiles it completed (none most of the time).
    pub fn push(&mut self, entry: &[u8]) -> Vec<ExpectedTile> {
        self.push_leaf(leaf_hash(entry))
    }

    pub fn push_leaf(&mut self, leaf: Hash) -> Vec<ExpectedTile> {
        let mut done = vec![];
        // The leaf is a level-0 tile hash; every node of height 8k the merges below make
        // is the root of a just completed subtree of 256^k leaves: a level-k tile hash.
        // So tiles cost no hashing of their own.
        self.size += 1;
        self.tile_hash(0, leaf, &mut done);
        let mut h = leaf;
        let mut height = 0u8;
        while let Some(&(top, left)) = self.range.last() {
            if top != height {
                break;
            }
            self.range.pop();
            h = node_hash(&left, &h);
            height += 1;
            if height.is_multiple_of(8) {
                self.tile_hash(usize::from(height / 8), h, &mut done);
            }
        }
        self.range.push((height, h));
        done
    }

    fn tile_hash(&mut self, level: usize, h: Hash, done: &mut Vec<ExpectedTile>) {
        if self.tiles.len() <= level {
            self.tiles.resize(level + 1, vec![]);
        }
        self.tiles[level].push(h);
        if self.tiles[level].len() == TILE_WIDTH {
            // Hashes at level L stand for subtrees of 256^L leaves.
            let index = (self.size >> (8 * level)) / TILE_WIDTH as u64 - 1;
            done.push(ExpectedTile {
                level: level as u8,
                index,
                hashes: std::mem::take(&mut self.tiles[level]),
            });
        }
    }

    /// RFC 6962 root of the tree (the empty tree's is SHA-256 of nothing).
    pub fn root(&self) -> Hash {
        let mut it = self.range.iter().rev();
        let Some(&(_, mut h)) = it.next() else {
            return tlog_tiles::EMPTY_HASH;
        };
        for &(_, left) in it {
            h = node_hash(&left, &h);
        }
        h
    }

    /// The partial tiles of this size, one per level that has one
    /// (c2sp.org/tlog-tiles: `tile/<L>/<N>.p/<W>`).
    pub fn partial_tiles(&self) -> Vec<ExpectedTile> {
        self.tiles
            .iter()
            .enumerate()
            .filter(|(_, hs)| !hs.is_empty())
            .map(|(level, hs)| ExpectedTile {
                level: level as u8,
                index: (self.size >> (8 * level)) / TILE_WIDTH as u64,
                hashes: hs.clone(),
            })
            .collect()
    }
}

/// The persisted form: hashes in standard base64.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedTree {
    pub size: u64,
    pub range: Vec<(u8, String)>,
    pub tiles: Vec<Vec<String>>,
}

impl From<&Tree> for SavedTree {
    fn from(t: &Tree) -> Self {
        SavedTree {
            size: t.size,
            range: t
                .range
                .iter()
                .map(|(h, x)| (*h, hash_to_base64(x)))
                .collect(),
            tiles: t
                .tiles
                .iter()
                .map(|l| l.iter().map(hash_to_base64).collect())
                .collect(),
        }
    }
}

impl TryFrom<&SavedTree> for Tree {
    type Error = String;

    /// Checks that the saved shape is the one its size implies, so a damaged state file
    /// is refused rather than silently believed.
    fn try_from(s: &SavedTree) -> Result<Self, String> {
        let hash = |b: &String| hash_from_base64(b).map_err(|e| e.to_string());
        let range = s
            .range
            .iter()
            .map(|(h, b)| Ok((*h, hash(b)?)))
            .collect::<Result<Vec<_>, String>>()?;
        let tiles = s
            .tiles
            .iter()
            .map(|l| l.iter().map(hash).collect::<Result<Vec<_>, _>>())
            .collect::<Result<Vec<_>, _>>()?;
        let heights: Vec<u8> = (0..64u8).rev().filter(|b| s.size >> b & 1 == 1).collect();
        if range.iter().map(|(h, _)| *h).collect::<Vec<_>>() != heights {
            return Err(format!("the compact range does not fit size {}", s.size));
        }
        for (level, l) in tiles.iter().enumerate() {
            let want = if level >= 8 {
                0
            } else {
                ((s.size >> (8 * level)) % TILE_WIDTH as u64) as usize
            };
            if l.len() != want {
                return Err(format!(
                    "tile level {level} holds {} hashes, size {} implies {want}",
                    l.len(),
                    s.size
                ));
            }
        }
        Ok(Tree {
            size: s.size,
            range,
            tiles,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_client::merkle::root_from_leaves;

    fn entry(i: u64) -> Vec<u8> {
        format!("entry {i}").into_bytes()
    }

    #[test]
    fn the_root_matches_an_independent_computation_at_every_size() {
        let mut t = Tree::default();
        let mut leaves = vec![];
        assert_eq!(t.root(), tlog_tiles::EMPTY_HASH);
        for i in 0..1100 {
            t.push(&entry(i));
            leaves.push(leaf_hash(&entry(i)));
            if i < 300 || i % 97 == 0 {
                assert_eq!(t.root(), root_from_leaves(&leaves), "size {}", i + 1);
            }
        }
    }

    #[test]
    fn completed_and_partial_tiles_are_the_hashes_tlog_tiles_stores() {
        // tlog_tiles (the port of Go's sumdb/tlog) computes stored hashes independently.
        let n: u64 = 256 * 256 + 700;
        let mut t = Tree::default();
        let mut completed = vec![];
        let mut stored: Vec<Hash> = vec![];
        for i in 0..n {
            completed.extend(t.push(&entry(i)));
            let hashes = tlog_tiles::stored_hashes(i, &entry(i), &StoredReader(&stored)).unwrap();
            stored.extend(hashes);
        }
        // Level 0: 256 full tiles, and 2 more from the extra 700 entries; level 1: one.
        let full0 = completed.iter().filter(|c| c.level == 0).count();
        assert_eq!(full0 as u64, n / 256);
        assert_eq!(completed.iter().filter(|c| c.level == 1).count(), 1);
        for c in &completed {
            for (k, h) in c.hashes.iter().enumerate() {
                let level_index = c.index * 256 + k as u64;
                let idx = tlog_tiles::stored_hash_index(8 * c.level, level_index);
                assert_eq!(
                    *h, stored[idx as usize],
                    "tile {}/{} hash {k}",
                    c.level, c.index
                );
            }
        }
        let partial = t.partial_tiles();
        assert_eq!(
            partial
                .iter()
                .map(|p| (p.level, p.index, p.hashes.len()))
                .collect::<Vec<_>>(),
            // Level 2 holds one hash: the root of the first 65,536 entries.
            [(0, n / 256, (n % 256) as usize), (1, 1, 2), (2, 0, 1)]
        );
        let restored = Tree::try_from(&SavedTree::from(&t)).unwrap();
        assert_eq!(restored, t);
    }

    struct StoredReader<'a>(&'a [Hash]);
    impl tlog_tiles::HashReader for StoredReader<'_> {
        fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
            Ok(indexes.iter().map(|&i| self.0[i as usize]).collect())
        }
    }

    #[test]
    fn a_damaged_saved_tree_is_refused() {
        let mut t = Tree::default();
        for i in 0..300 {
            t.push(&entry(i));
        }
        let good = SavedTree::from(&t);
        let mut bad = good.clone();
        bad.size += 1;
        assert!(Tree::try_from(&bad).is_err());
        let mut bad = good.clone();
        bad.tiles[0].pop();
        assert!(Tree::try_from(&bad).is_err());
        let mut bad = good;
        bad.range[0].1 = "not base64!".into();
        assert!(Tree::try_from(&bad).is_err());
    }
}
