//! The Merkle tree as tiles: the in-memory right edge and the layout of stored full tiles.
//!
//! The tree is cut into tiles of height 8, exactly as c2sp.org/tlog-tiles#merkle-tree: the
//! `n`-th tile at level `l` holds the hashes of the subtrees
//! `MTH(D[(n*256+i)*256^l : (n*256+i+1)*256^l])` for `i` in `0..256`.
//!
//! Only *full* tiles are stored. The rightmost (partial) tile of each level lives in memory
//! as an [`EdgeTile`], which keeps every complete node inside the tile so that appending is
//! one node hash per entry and the root costs no more than ~64 node hashes. The partial tiles
//! are rebuilt at start-up from the stored tail entries and full tiles (see `log::recover`).
//!
//! A stored full tile is its 256 hashes (the 8,192 bytes served at `tile/<L>/<N>`) followed by
//! the tile's inner nodes at heights 4..=7 (16+8+4+2 = 30 hashes). Those let a proof take any
//! node at height ≥ 4 directly and compute nodes at heights 1..=3 from at most 8 hashes, while
//! adding only 3.75 bytes per entry: storing every inner node would cost 32.

use tlog_tiles::{Hash, HASH_SIZE};

pub const TILE_HEIGHT: u32 = 8;
pub const TILE_WIDTH: usize = 1 << TILE_HEIGHT;
/// Heights inside a tile whose nodes are stored after the tile's hashes.
pub const STORED_INNER_HEIGHTS: std::ops::RangeInclusive<u32> = 4..=7;
/// Number of stored inner nodes: 16 + 8 + 4 + 2.
pub const STORED_INNER_NODES: usize = 30;
pub const TILE_BYTES: usize = TILE_WIDTH * HASH_SIZE;
pub const STORED_TILE_BYTES: usize = TILE_BYTES + STORED_INNER_NODES * HASH_SIZE;

pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    tlog_tiles::node_hash(*left, *right)
}

/// Offset (in hashes) of the first stored inner node of `height` inside a stored tile.
fn inner_offset(height: u32) -> usize {
    debug_assert!(STORED_INNER_HEIGHTS.contains(&height));
    // heights 4,5,6,7 hold 16,8,4,2 nodes.
    let mut off = TILE_WIDTH;
    for h in 4..height {
        off += TILE_WIDTH >> h;
    }
    off
}

fn hash_at(bytes: &[u8], i: usize) -> Hash {
    let mut h = [0u8; HASH_SIZE];
    h.copy_from_slice(&bytes[i * HASH_SIZE..(i + 1) * HASH_SIZE]);
    Hash(h)
}

/// Merkle root of a power-of-two run of hashes (RFC 6962 §2.1 on a complete subtree).
pub fn complete_subtree_root(hashes: &[Hash]) -> Hash {
    debug_assert!(hashes.len().is_power_of_two());
    let mut level: Vec<Hash> = hashes.to_vec();
    while level.len() > 1 {
        level = level
            .chunks_exact(2)
            .map(|p| node_hash(&p[0], &p[1]))
            .collect();
    }
    level[0]
}

/// A full tile as stored: hashes plus selected inner nodes.
pub struct StoredTile<'a>(pub &'a [u8]);

impl StoredTile<'_> {
    pub fn is_well_formed(&self) -> bool {
        self.0.len() == STORED_TILE_BYTES
    }

    /// The complete node at `height` (0..=8) and position `pos` inside the tile.
    pub fn node(&self, height: u32, pos: usize) -> Hash {
        match height {
            0 => hash_at(self.0, pos),
            h if STORED_INNER_HEIGHTS.contains(&h) => hash_at(self.0, inner_offset(h) + pos),
            8 => node_hash(&self.node(7, 0), &self.node(7, 1)),
            h => {
                let span = 1usize << h;
                let start = pos * span;
                let leaves: Vec<Hash> = (start..start + span).map(|i| hash_at(self.0, i)).collect();
                complete_subtree_root(&leaves)
            }
        }
    }

    pub fn root(&self) -> Hash {
        self.node(8, 0)
    }

    /// The served form: the 256 hashes, without the stored inner nodes.
    pub fn hashes(&self) -> &[u8] {
        &self.0[..TILE_BYTES]
    }
}

/// The partial tile at the right edge of one level, with every complete node inside it.
#[derive(Clone, Debug, Default)]
pub struct EdgeTile {
    /// `nodes[h]` are the complete nodes of height `h` inside the tile, left to right;
    /// `nodes[0]` are the tile's hashes themselves.
    nodes: [Vec<Hash>; 9],
}

impl EdgeTile {
    pub fn width(&self) -> usize {
        self.nodes[0].len()
    }

    pub fn hashes(&self) -> &[Hash] {
        &self.nodes[0]
    }

    pub fn node(&self, height: u32, pos: usize) -> Option<Hash> {
        self.nodes[height as usize].get(pos).copied()
    }

    /// Appends one hash, completing the nodes above it. Returns true when the tile is full.
    pub fn push(&mut self, h: Hash) -> bool {
        self.nodes[0].push(h);
        let mut height = 0;
        while self.nodes[height].len().is_multiple_of(2) && height < TILE_HEIGHT as usize {
            let n = self.nodes[height].len();
            let parent = node_hash(&self.nodes[height][n - 2], &self.nodes[height][n - 1]);
            self.nodes[height + 1].push(parent);
            height += 1;
        }
        self.nodes[0].len() == TILE_WIDTH
    }

    /// Serialises a full tile for storage (see module docs) and empties this edge.
    pub fn take_full(&mut self) -> (Vec<u8>, Hash) {
        debug_assert_eq!(self.width(), TILE_WIDTH);
        let mut out = Vec::with_capacity(STORED_TILE_BYTES);
        for h in &self.nodes[0] {
            out.extend_from_slice(&h.0);
        }
        for height in STORED_INNER_HEIGHTS {
            for h in &self.nodes[height as usize] {
                out.extend_from_slice(&h.0);
            }
        }
        let root = self.nodes[8][0];
        for level in self.nodes.iter_mut() {
            level.clear();
        }
        (out, root)
    }

    /// The maximal complete subtrees of this partial tile, left to right, as
    /// (height, hash): the binary decomposition of its width.
    fn decomposition(&self) -> impl Iterator<Item = (u32, Hash)> + '_ {
        let w = self.width();
        (0..TILE_HEIGHT)
            .rev()
            .filter(move |h| w & (1 << h) != 0)
            .map(move |h| {
                // Nodes of height h before this one cover the higher bits of w.
                let pos = (w >> h) - 1;
                (h, self.nodes[h as usize][pos])
            })
    }
}

/// The right edge of the whole tree: one partial tile per level.
#[derive(Clone, Debug, Default)]
pub struct Edge {
    pub size: u64,
    pub levels: Vec<EdgeTile>,
}

/// A full tile produced by an append, to be stored.
pub struct NewTile {
    pub level: u8,
    pub index: u64,
    pub data: Vec<u8>,
}

impl Edge {
    /// Appends a leaf hash; full tiles it completes are pushed to `out`.
    pub fn append(&mut self, leaf: Hash, out: &mut Vec<NewTile>) {
        self.size += 1;
        let mut h = leaf;
        let mut level = 0usize;
        loop {
            if self.levels.len() == level {
                self.levels.push(EdgeTile::default());
            }
            if !self.levels[level].push(h) {
                break;
            }
            let (data, root) = self.levels[level].take_full();
            let index = (self.size >> (TILE_HEIGHT * (level as u32 + 1))) - 1;
            out.push(NewTile {
                level: level as u8,
                index,
                data,
            });
            h = root;
            level += 1;
        }
    }

    /// RFC 6962 Merkle tree hash of the whole tree.
    pub fn root(&self) -> Hash {
        // The maximal complete subtrees of the tree, left to right, are the decompositions of
        // the partial tiles from the top level down; MTH folds them from the right.
        let mut acc: Option<Hash> = None;
        for level in self.levels.iter() {
            for (_, h) in level.decomposition().collect::<Vec<_>>().into_iter().rev() {
                acc = Some(match acc {
                    None => h,
                    Some(right) => node_hash(&h, &right),
                });
            }
        }
        acc.unwrap_or(tlog_tiles::EMPTY_HASH)
    }

    /// The index (at its level) of the partial tile of `level`.
    pub fn edge_tile_index(&self, level: u32) -> u64 {
        self.size >> (TILE_HEIGHT * (level + 1))
    }
}

/// Where the node at RFC 6962 height `k`, position `n` lives in the tiling.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub struct NodeLocation {
    pub level: u32,
    pub tile: u64,
    pub height: u32,
    pub pos: usize,
}

pub fn locate(k: u32, n: u64) -> NodeLocation {
    let level = k / TILE_HEIGHT;
    let height = k % TILE_HEIGHT;
    // The node spans tile-level hashes [n << height, (n+1) << height).
    let first = n << height;
    NodeLocation {
        level,
        tile: first >> TILE_HEIGHT,
        height,
        pos: ((first & (TILE_WIDTH as u64 - 1)) >> height) as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(i: u64) -> Hash {
        tlog_tiles::record_hash(&i.to_be_bytes())
    }

    fn reference_root(leaves: &[Hash]) -> Hash {
        // RFC 6962 §2.1 by its recursive definition.
        match leaves.len() {
            0 => tlog_tiles::EMPTY_HASH,
            1 => leaves[0],
            n => {
                let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
                node_hash(&reference_root(&leaves[..k]), &reference_root(&leaves[k..]))
            }
        }
    }

    #[test]
    fn root_matches_the_recursive_definition_across_tile_boundaries() {
        let mut edge = Edge::default();
        let mut leaves = vec![];
        let mut tiles = vec![];
        for i in 0..70_000u64 {
            let l = leaf(i);
            leaves.push(l);
            edge.append(l, &mut tiles);
            let s = i + 1;
            if s < 600 || s % 9973 == 0 || s == 65_536 || s == 65_537 || s == 70_000 {
                assert_eq!(edge.root(), reference_root(&leaves), "size {s}");
            }
        }
        // tlog-tiles: a tree of 70,000 has 273 full level-0 tiles and one full level-1 tile.
        assert_eq!(tiles.iter().filter(|t| t.level == 0).count(), 273);
        assert_eq!(tiles.iter().filter(|t| t.level == 1).count(), 1);
        assert_eq!(edge.levels[0].width(), 112);
        assert_eq!(edge.levels[1].width(), 17);
        assert_eq!(edge.levels[2].width(), 1);
    }

    #[test]
    fn stored_tile_nodes_equal_recomputed_subtrees() {
        let mut edge = Edge::default();
        let mut tiles = vec![];
        let leaves: Vec<Hash> = (0..256).map(leaf).collect();
        for l in &leaves {
            edge.append(*l, &mut tiles);
        }
        let t = StoredTile(&tiles[0].data);
        assert!(t.is_well_formed());
        for height in 0..=8u32 {
            let span = 1usize << height;
            for pos in 0..(256 >> height) {
                let want = complete_subtree_root(&leaves[pos * span..(pos + 1) * span]);
                assert_eq!(t.node(height, pos), want, "height {height} pos {pos}");
            }
        }
    }

    #[test]
    fn locate_maps_heights_to_tiles() {
        assert_eq!(
            locate(0, 300),
            NodeLocation {
                level: 0,
                tile: 1,
                height: 0,
                pos: 44
            }
        );
        assert_eq!(
            locate(9, 3),
            NodeLocation {
                level: 1,
                tile: 0,
                height: 1,
                pos: 3
            }
        );
        assert_eq!(
            locate(8, 256),
            NodeLocation {
                level: 1,
                tile: 1,
                height: 0,
                pos: 0
            }
        );
    }
}
