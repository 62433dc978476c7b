//! One log: its immutable snapshots, the reads they answer, and recovery from storage.
//!
//! Writers go through the [`crate::sequencer`]; every committed batch publishes a new
//! [`Snapshot`] (tree edge, tail entries and the signed checkpoint that covers them). Readers
//! take the current snapshot and never see a tree that is not durable and signed.

use crate::dedup;
use crate::metrics::LogMetrics;
use crate::signer::CheckpointSigner;
use crate::store::{LogStore, StoreError};
use crate::tree::{self, Edge, StoredTile, TILE_HEIGHT, TILE_WIDTH};
use bytes::Bytes;
use parking_lot::RwLock;
use signed_note::Note;
use std::collections::HashMap;
use std::sync::Arc;
use tlog_tiles::{Checkpoint, Hash};

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unavailable(String),
}

pub type Result<T> = std::result::Result<T, LogError>;

/// An immutable view of a durable, signed tree.
pub struct Snapshot {
    pub edge: Edge,
    /// Entries of the partial bundle (indexes `size - tail.len() .. size`).
    pub tail: Vec<Bytes>,
    pub root: Hash,
    /// The signed checkpoint note for `edge.size`.
    pub checkpoint: Bytes,
    /// `checkpoint` as the inside of a JSON string, escaped once: every answer to the
    /// batch's submitters carries it twice.
    checkpoint_json: std::sync::OnceLock<Box<[u8]>>,
}

impl Snapshot {
    pub fn new(edge: Edge, tail: Vec<Bytes>, root: Hash, checkpoint: Bytes) -> Self {
        Self {
            edge,
            tail,
            root,
            checkpoint,
            checkpoint_json: std::sync::OnceLock::new(),
        }
    }

    pub fn size(&self) -> u64 {
        self.edge.size
    }

    /// The checkpoint escaped for use inside a JSON string (without the quotes).
    pub fn checkpoint_json(&self) -> &[u8] {
        self.checkpoint_json.get_or_init(|| {
            // Checkpoints are signed notes, UTF-8 by construction (c2sp.org/signed-note).
            let text = std::str::from_utf8(&self.checkpoint).unwrap_or("");
            let quoted = serde_json::to_vec(text).unwrap_or_else(|_| b"\"\"".to_vec());
            quoted[1..quoted.len() - 1].into()
        })
    }
}

pub struct Log {
    pub name: String,
    pub origin: String,
    pub vkey: String,
    pub(crate) signer: CheckpointSigner,
    pub(crate) store: Arc<dyn LogStore>,
    state: RwLock<Arc<Snapshot>>,
    /// The published tree size, for followers of the log (the registry's catalog).
    size: tokio::sync::watch::Sender<u64>,
    upper_tiles: UpperTiles,
    pub metrics: LogMetrics,
}

/// Full tiles above level 0, kept in memory with all their inner nodes. Every proof reads
/// one per level, there are only size/65,536 of them, and a full tile never changes, so
/// this cache needs no invalidation; it stops growing at `MAX_UPPER_TILES`.
#[derive(Default)]
struct UpperTiles(RwLock<HashMap<(u32, u64), Arc<ExpandedTile>>>);

/// 4,096 expanded tiles of 16 KiB: 64 MiB at most, reached by a log of 2^36 entries.
const MAX_UPPER_TILES: usize = 4096;

/// Text of the checkpoint body, c2sp.org/tlog-checkpoint#note-text.
pub fn checkpoint_text(origin: &str, size: u64, root: &Hash) -> Result<Vec<u8>> {
    let cp = Checkpoint::new(origin, size, *root, "")
        .map_err(|_| LogError::Invalid(format!("origin {origin:?} cannot form a checkpoint")))?;
    Ok(cp.to_bytes())
}

pub fn sign_checkpoint(signer: &CheckpointSigner, text: &[u8]) -> Result<Vec<u8>> {
    let mut note =
        Note::new(text, &[]).map_err(|e| LogError::Invalid(format!("checkpoint text: {e}")))?;
    note.add_sigs(&signer.signers())
        .map_err(|e| LogError::Invalid(format!("signing checkpoint: {e}")))?;
    Ok(note.to_bytes())
}

impl Log {
    /// Recovers the log from storage (or initialises an empty one) and checks that the
    /// rebuilt tree has exactly the root of the latest signed checkpoint.
    pub fn open(
        name: &str,
        origin: &str,
        signer: impl Into<CheckpointSigner>,
        vkey: String,
        store: Arc<dyn LogStore>,
    ) -> Result<Arc<Self>> {
        let signer = signer.into();
        let snapshot = match recover(store.as_ref(), origin)? {
            Some(s) => s,
            None => {
                // An empty log still signs its (empty) tree, so clients can start from it.
                let root = tlog_tiles::EMPTY_HASH;
                let note = sign_checkpoint(&signer, &checkpoint_text(origin, 0, &root)?)?;
                store.commit(&crate::store::Commit {
                    checkpoint: (0, note.clone()),
                    ..Default::default()
                })?;
                Snapshot::new(Edge::default(), vec![], root, note.into())
            }
        };
        let metrics = LogMetrics::new();
        metrics.tree_size.set(snapshot.size() as i64);
        let size = tokio::sync::watch::channel(snapshot.size()).0;
        Ok(Arc::new(Self {
            name: name.to_string(),
            origin: origin.to_string(),
            vkey,
            signer,
            store,
            state: RwLock::new(Arc::new(snapshot)),
            size,
            upper_tiles: UpperTiles::default(),
            metrics,
        }))
    }

    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.state.read().clone()
    }

    /// Makes `s` the tree readers see. Only durable snapshots are published.
    pub(crate) fn publish(&self, s: Arc<Snapshot>) {
        let size = s.size();
        self.metrics.tree_size.set(size as i64);
        *self.state.write() = s;
        self.size.send_replace(size);
    }

    /// Tells when the published tree grows.
    pub fn watch_size(&self) -> tokio::sync::watch::Receiver<u64> {
        self.size.subscribe()
    }

    /// The entries `range` of the snapshot's tree.
    pub fn entries(&self, snap: &Snapshot, range: std::ops::Range<u64>) -> Result<Vec<Bytes>> {
        read_entries(self.store.as_ref(), snap, range)
    }

    /// Re-reads the log from storage after a failed commit, which may or may not have
    /// been persisted: storage, not memory, is the truth about what was signed.
    pub(crate) fn reload(&self) -> Result<()> {
        let s = recover(self.store.as_ref(), &self.origin)?
            .ok_or_else(|| LogError::Unavailable("log storage lost its checkpoints".into()))?;
        self.publish(Arc::new(s));
        Ok(())
    }

    pub fn checkpoint_at(&self, size: u64) -> Result<Option<Vec<u8>>> {
        let snap = self.snapshot();
        if size == snap.size() {
            return Ok(Some(snap.checkpoint.to_vec()));
        }
        if size > snap.size() {
            return Ok(None);
        }
        Ok(self.store.checkpoint_at(size)?)
    }

    /// The served bytes of hash tile `level`/`index` with `width` hashes (256 = full).
    pub fn tile(&self, level: u8, index: u64, width: usize) -> Result<Vec<u8>> {
        let snap = self.snapshot();
        let level_u = u32::from(level);
        if level_u * TILE_HEIGHT >= 64 {
            return Err(LogError::NotFound(format!("no tile at level {level}")));
        }
        let edge_index = snap.edge.edge_tile_index(level_u);
        let not_found = || {
            LogError::NotFound(format!(
                "tile {level}/{index} of width {width} is beyond the tree of size {}",
                snap.size()
            ))
        };
        if index < edge_index {
            let data = self
                .store
                .tile(level, index)?
                .ok_or_else(|| StoreError::Corrupt(format!("full tile {level}/{index} missing")))?;
            let t = StoredTile(&data);
            if !t.is_well_formed() {
                return Err(StoreError::Corrupt(format!("tile {level}/{index} malformed")).into());
            }
            return Ok(t.hashes()[..width * tlog_tiles::HASH_SIZE].to_vec());
        }
        if index > edge_index || width == TILE_WIDTH {
            return Err(not_found());
        }
        let edge = snap.edge.levels.get(level as usize).ok_or_else(not_found)?;
        if width > edge.width() {
            return Err(not_found());
        }
        Ok(edge.hashes()[..width].iter().flat_map(|h| h.0).collect())
    }

    /// The entry bundle `index` with `width` entries (256 = full), in bundle encoding.
    pub fn bundle(&self, index: u64, width: usize) -> Result<Vec<u8>> {
        let snap = self.snapshot();
        let edge_index = snap.size() / TILE_WIDTH as u64;
        let not_found = || {
            LogError::NotFound(format!(
                "entry bundle {index} of width {width} is beyond the tree of size {}",
                snap.size()
            ))
        };
        if index < edge_index {
            let data = self
                .store
                .bundle(index)?
                .ok_or_else(|| StoreError::Corrupt(format!("full bundle {index} missing")))?;
            if width == TILE_WIDTH {
                return Ok(data);
            }
            let entries = ledger_client::tiles::decode_bundle(&data)
                .map_err(|e| StoreError::Corrupt(format!("bundle {index}: {e}")))?;
            return encode(entries.into_iter().take(width));
        }
        if index > edge_index || width == TILE_WIDTH || width > snap.tail.len() {
            return Err(not_found());
        }
        encode(snap.tail[..width].iter().map(|b| b.as_ref()))
    }

    /// Index of the entry with this leaf hash, if it is in the snapshot's tree.
    pub fn find_leaf(&self, snap: &Snapshot, leaf: &Hash) -> Result<Option<u64>> {
        let bucket = self.store.dedup_bucket(dedup::bucket(leaf))?;
        let reader = self.reader(snap);
        for candidate in dedup::candidates(leaf, &bucket) {
            if candidate < snap.size() && reader.node(0, candidate)? == *leaf {
                return Ok(Some(candidate));
            }
        }
        Ok(None)
    }

    pub fn inclusion_proof(&self, snap: &Snapshot, index: u64, size: u64) -> Result<Vec<Hash>> {
        Ok(self.leaf_and_inclusion_proof(snap, index, size)?.1)
    }

    /// Inclusion proofs of several entries in the tree of `size`, reading each tile once
    /// for all of them (an `add-batch?proofs=true` answer).
    pub fn inclusion_proofs(
        &self,
        snap: &Snapshot,
        indexes: impl IntoIterator<Item = u64>,
        size: u64,
    ) -> Result<Vec<Vec<Hash>>> {
        let r = self.reader(snap).memoising();
        indexes
            .into_iter()
            .map(|index| {
                check_inclusion_args(snap, index, size)?;
                tlog_tiles::prove_record(size, index, &r).map_err(|e| r.take_error(e))
            })
            .collect()
    }

    /// The leaf hash at `index` and its inclusion proof in the tree of `size`, reading each
    /// tile once for both.
    pub fn leaf_and_inclusion_proof(
        &self,
        snap: &Snapshot,
        index: u64,
        size: u64,
    ) -> Result<(Hash, Vec<Hash>)> {
        check_inclusion_args(snap, index, size)?;
        let r = WithLeaf {
            reader: self.reader(snap),
            index,
            leaf: RwLock::new(None),
        };
        let proof =
            tlog_tiles::prove_record(size, index, &r).map_err(|e| r.reader.take_error(e))?;
        let leaf = r.leaf.read().to_owned();
        match leaf {
            Some(l) => Ok((l, proof)),
            // A tree of one entry has an empty proof, and prove_record read nothing.
            None => Ok((r.reader.node(0, index)?, proof)),
        }
    }

    pub fn consistency_proof(&self, snap: &Snapshot, from: u64, to: u64) -> Result<Vec<Hash>> {
        if to > snap.size() {
            return Err(LogError::Invalid(format!(
                "tree size {to} is larger than the log ({})",
                snap.size()
            )));
        }
        if from > to {
            return Err(LogError::Invalid(format!(
                "from ({from}) is larger than to ({to})"
            )));
        }
        if from == 0 || from == to {
            // RFC 9162 §2.1.4: the empty tree and an identical tree need no proof.
            return Ok(vec![]);
        }
        let r = self.reader(snap);
        tlog_tiles::prove_tree(to, from, &r).map_err(|e| r.take_error(e))
    }

    fn reader<'a>(&'a self, snap: &'a Snapshot) -> NodeReader<'a> {
        let mut r = NodeReader::new(snap, self.store.as_ref());
        r.upper = Some(&self.upper_tiles);
        r
    }
}

/// The entries `range` of a snapshot's tree, read bundle by bundle.
pub fn read_entries(
    store: &dyn LogStore,
    snap: &Snapshot,
    range: std::ops::Range<u64>,
) -> Result<Vec<Bytes>> {
    if range.end > snap.size() || range.start > range.end {
        return Err(LogError::Invalid(format!(
            "entries {}..{} are not in a tree of size {}",
            range.start,
            range.end,
            snap.size()
        )));
    }
    let width = TILE_WIDTH as u64;
    let tail_start = snap.size() - snap.tail.len() as u64;
    let mut out = Vec::with_capacity((range.end - range.start) as usize);
    let mut i = range.start;
    while i < range.end {
        if i >= tail_start {
            let from = (i - tail_start) as usize;
            let to = (range.end - tail_start) as usize;
            out.extend(snap.tail[from..to].iter().cloned());
            break;
        }
        let bundle = i / width;
        let data = store
            .bundle(bundle)?
            .ok_or_else(|| StoreError::Corrupt(format!("full bundle {bundle} missing")))?;
        let entries = ledger_client::tiles::decode_bundle(&data)
            .map_err(|e| StoreError::Corrupt(format!("bundle {bundle}: {e}")))?;
        let first = bundle * width;
        let stop = range.end.min(first + width);
        for j in i..stop {
            let e = entries
                .get((j - first) as usize)
                .ok_or_else(|| StoreError::Corrupt(format!("bundle {bundle} lacks entry {j}")))?;
            out.push(Bytes::copy_from_slice(e));
        }
        i = stop;
    }
    Ok(out)
}

fn check_inclusion_args(snap: &Snapshot, index: u64, size: u64) -> Result<()> {
    if size > snap.size() {
        return Err(LogError::Invalid(format!(
            "tree_size {size} is larger than the log ({})",
            snap.size()
        )));
    }
    if index >= size {
        return Err(LogError::Invalid(format!(
            "index {index} is not in a tree of size {size}"
        )));
    }
    Ok(())
}

fn encode<'a>(entries: impl Iterator<Item = &'a [u8]>) -> Result<Vec<u8>> {
    ledger_client::tiles::encode_bundle(entries)
        .map_err(|e| LogError::Invalid(format!("encoding bundle: {e}")))
}

/// Stored tiles read by one reader, by (level, index) (only when the reader memoises them).
type TileMemo = RwLock<HashMap<(u32, u64), Arc<Vec<u8>>>>;

/// Where one tile's nodes come from while a request reads them.
enum TileView<'t> {
    Edge(&'t tree::EdgeTile),
    Expanded(&'t ExpandedTile),
    Stored(StoredTile<'t>),
}

impl TileView<'_> {
    fn node(&self, height: u32, pos: usize) -> Option<Hash> {
        match self {
            TileView::Edge(t) => t.node(height, pos),
            TileView::Expanded(t) => t.node(height, pos),
            TileView::Stored(t) => (pos < TILE_WIDTH >> height).then(|| t.node(height, pos)),
        }
    }
}

/// Reads any complete node of a snapshot's tree: from the in-memory edge or a stored tile.
/// Implements tlog_tiles' `HashReader` so its proof construction runs over our tiles.
///
/// A proof asks for all its nodes at once; they fall into one tile per level, so each tile
/// is visited once. Level-0 tiles are read from storage in place, without a copy; tiles
/// above level 0 come from the log's shared in-memory set.
pub struct NodeReader<'a> {
    snap: &'a Snapshot,
    store: &'a dyn LogStore,
    /// Keeps stored tiles for the reader's lifetime: for callers that prove many
    /// neighbouring entries (batch answers, dedup checks).
    memo: Option<TileMemo>,
    upper: Option<&'a UpperTiles>,
    error: RwLock<Option<LogError>>,
}

impl<'a> NodeReader<'a> {
    pub fn new(snap: &'a Snapshot, store: &'a dyn LogStore) -> Self {
        Self {
            snap,
            store,
            memo: None,
            upper: None,
            error: RwLock::new(None),
        }
    }

    /// Keeps every stored tile it reads until dropped.
    pub fn memoising(mut self) -> Self {
        self.memo = Some(RwLock::new(HashMap::new()));
        self
    }

    /// The node at RFC 6962 height `k` and position `n`.
    pub fn node(&self, k: u32, n: u64) -> Result<Hash> {
        Ok(self.nodes(&[(k, n)])?[0])
    }

    /// The nodes at (height, position) pairs, visiting each tile they fall in once.
    pub fn nodes(&self, wanted: &[(u32, u64)]) -> Result<Vec<Hash>> {
        let locs: Vec<tree::NodeLocation> =
            wanted.iter().map(|&(k, n)| tree::locate(k, n)).collect();
        let mut out: Vec<Option<Hash>> = vec![None; locs.len()];
        for i in 0..locs.len() {
            if out[i].is_some() {
                continue;
            }
            let (level, tile) = (locs[i].level, locs[i].tile);
            let mut fill = |view: &TileView| {
                for (j, loc) in locs.iter().enumerate().skip(i) {
                    if loc.level == level && loc.tile == tile {
                        out[j] = view.node(loc.height, loc.pos);
                    }
                }
            };
            self.visit_tile(level, tile, &mut fill)?;
            if out[i].is_none() {
                let (k, n) = wanted[i];
                return Err(LogError::Invalid(format!(
                    "node {k}/{n} is not in the tree"
                )));
            }
        }
        // Every slot was filled or reported above.
        Ok(out.into_iter().map(|h| h.unwrap_or_default()).collect())
    }

    fn visit_tile(&self, level: u32, tile: u64, fill: &mut dyn FnMut(&TileView)) -> Result<()> {
        let edge_index = self.snap.edge.edge_tile_index(level);
        if tile == edge_index {
            if let Some(t) = self.snap.edge.levels.get(level as usize) {
                fill(&TileView::Edge(t));
            }
            return Ok(());
        }
        if tile > edge_index {
            return Ok(());
        }
        if level > 0 {
            if let Some(upper) = self.upper {
                let t = upper.get(level, tile, self.store)?;
                fill(&TileView::Expanded(&t));
                return Ok(());
            }
        }
        if let Some(memo) = &self.memo {
            let cached = memo.read().get(&(level, tile)).cloned();
            let data = match cached {
                Some(d) => d,
                None => {
                    let d = Arc::new(read_tile(self.store, level, tile)?);
                    memo.write().insert((level, tile), d.clone());
                    d
                }
            };
            fill(&TileView::Stored(StoredTile(&data)));
            return Ok(());
        }
        let mut malformed = false;
        let found = self.store.with_tile(level as u8, tile, &mut |data| {
            let t = StoredTile(data);
            if t.is_well_formed() {
                fill(&TileView::Stored(t));
            } else {
                malformed = true;
            }
        })?;
        check_tile(found, malformed, level, tile)
    }

    fn take_error(&self, e: tlog_tiles::Error) -> LogError {
        self.error
            .write()
            .take()
            .unwrap_or_else(|| LogError::Invalid(format!("proof: {e}")))
    }
}

fn check_tile(found: bool, malformed: bool, level: u32, tile: u64) -> Result<()> {
    if !found {
        return Err(StoreError::Corrupt(format!("full tile {level}/{tile} missing")).into());
    }
    if malformed {
        return Err(StoreError::Corrupt(format!("tile {level}/{tile} malformed")).into());
    }
    Ok(())
}

/// A full stored tile, checked.
fn read_tile(store: &dyn LogStore, level: u32, tile: u64) -> Result<Vec<u8>> {
    let d = store.tile(level as u8, tile)?;
    let malformed = d
        .as_deref()
        .is_some_and(|d| !StoredTile(d).is_well_formed());
    check_tile(d.is_some(), malformed, level, tile)?;
    Ok(d.unwrap_or_default())
}

/// A full tile with every complete node inside it (heights 0..=8), so proofs through it
/// hash nothing.
pub struct ExpandedTile {
    /// Height h starts at offset `TILE_WIDTH * (2 - 2^(1-h))`: 256 leaves, 128, 64, ..., 1.
    nodes: Vec<Hash>,
}

impl ExpandedTile {
    fn from_stored(t: &StoredTile) -> Self {
        let mut nodes = Vec::with_capacity(2 * TILE_WIDTH - 1);
        for h in 0..=TILE_HEIGHT {
            let stored = h == 0 || tree::STORED_INNER_HEIGHTS.contains(&h);
            let start = Self::offset(h);
            for pos in 0..TILE_WIDTH >> h {
                let node = if stored || h == 0 {
                    t.node(h, pos)
                } else {
                    // Children are already in place one height down.
                    let below = Self::offset(h - 1) + 2 * pos;
                    tree::node_hash(&nodes[below], &nodes[below + 1])
                };
                debug_assert_eq!(nodes.len(), start + pos);
                nodes.push(node);
            }
        }
        Self { nodes }
    }

    fn offset(height: u32) -> usize {
        2 * TILE_WIDTH - ((2 * TILE_WIDTH) >> height)
    }

    fn node(&self, height: u32, pos: usize) -> Option<Hash> {
        if height > TILE_HEIGHT || pos >= TILE_WIDTH >> height {
            return None;
        }
        Some(self.nodes[Self::offset(height) + pos])
    }
}

impl UpperTiles {
    fn get(&self, level: u32, tile: u64, store: &dyn LogStore) -> Result<Arc<ExpandedTile>> {
        if let Some(t) = self.0.read().get(&(level, tile)) {
            return Ok(t.clone());
        }
        let data = read_tile(store, level, tile)?;
        let t = Arc::new(ExpandedTile::from_stored(&StoredTile(&data)));
        let mut memo = self.0.write();
        if memo.len() < MAX_UPPER_TILES {
            memo.insert((level, tile), t.clone());
        }
        Ok(t)
    }
}

/// Reads a proof's nodes and, in the same pass over the tiles, the proven leaf's hash.
struct WithLeaf<'a> {
    reader: NodeReader<'a>,
    index: u64,
    leaf: RwLock<Option<Hash>>,
}

impl tlog_tiles::HashReader for WithLeaf<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> std::result::Result<Vec<Hash>, tlog_tiles::Error> {
        let mut wanted = stored_indexes_to_nodes(indexes);
        wanted.push((0, self.index));
        let mut hashes = self.reader.read_nodes(&wanted)?;
        *self.leaf.write() = hashes.pop();
        Ok(hashes)
    }
}

fn stored_indexes_to_nodes(indexes: &[u64]) -> Vec<(u32, u64)> {
    indexes
        .iter()
        .map(|&i| {
            let (level, n) = tlog_tiles::split_stored_hash_index(i);
            (u32::from(level), n)
        })
        .collect()
}

impl NodeReader<'_> {
    /// `nodes` for tlog_tiles, which only carries its own error type: ours is kept aside
    /// for `take_error`.
    fn read_nodes(
        &self,
        wanted: &[(u32, u64)],
    ) -> std::result::Result<Vec<Hash>, tlog_tiles::Error> {
        self.nodes(wanted).map_err(|e| {
            *self.error.write() = Some(e);
            tlog_tiles::Error::IndexesNotInTree
        })
    }
}

impl tlog_tiles::HashReader for NodeReader<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> std::result::Result<Vec<Hash>, tlog_tiles::Error> {
        self.read_nodes(&stored_indexes_to_nodes(indexes))
    }
}

/// Rebuilds the snapshot of the latest checkpoint from storage: the tail entries give the
/// level-0 edge; the roots of stored full tiles give the edges above it.
pub fn recover(store: &dyn LogStore, origin: &str) -> Result<Option<Snapshot>> {
    let Some((size, note)) = store.latest_checkpoint()? else {
        return Ok(None);
    };
    let text_end = note
        .windows(2)
        .rposition(|w| w == b"\n\n")
        .ok_or_else(|| StoreError::Corrupt("stored checkpoint is not a signed note".into()))?;
    let cp = Checkpoint::from_bytes(&note[..text_end + 1])
        .map_err(|_| StoreError::Corrupt("stored checkpoint body is malformed".into()))?;
    if cp.size() != size || cp.origin() != origin {
        return Err(StoreError::Corrupt(format!(
            "stored checkpoint is for {}@{} but expected {origin}@{size}",
            cp.origin(),
            cp.size()
        ))
        .into());
    }
    let tail_len = size % TILE_WIDTH as u64;
    let tail = store.tail_entries(size - tail_len..size)?;

    let mut edge = Edge {
        size,
        levels: vec![],
    };
    let mut level = 0u32;
    while level * TILE_HEIGHT < 64 && (size >> (TILE_HEIGHT * level)) > 0 {
        let width = ((size >> (TILE_HEIGHT * level)) % TILE_WIDTH as u64) as usize;
        let mut t = tree::EdgeTile::default();
        if level == 0 {
            for e in &tail {
                t.push(tlog_tiles::record_hash(e));
            }
        } else {
            // Hashes of the level's partial tile are the roots of the full tiles below it.
            let first = edge.edge_tile_index(level) * TILE_WIDTH as u64;
            for i in first..first + width as u64 {
                let d = store.tile(level as u8 - 1, i)?.ok_or_else(|| {
                    StoreError::Corrupt(format!("full tile {}/{i} missing", level - 1))
                })?;
                if !StoredTile(&d).is_well_formed() {
                    return Err(
                        StoreError::Corrupt(format!("tile {}/{i} malformed", level - 1)).into(),
                    );
                }
                t.push(StoredTile(&d).root());
            }
        }
        debug_assert_eq!(t.width(), width);
        edge.levels.push(t);
        level += 1;
    }
    let root = edge.root();
    if root != *cp.hash() {
        return Err(StoreError::Corrupt(format!(
            "tree rebuilt from storage has root {} but the checkpoint at size {size} says {}",
            root,
            cp.hash()
        ))
        .into());
    }
    Ok(Some(Snapshot::new(edge, tail, root, note.into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expanded_tile_holds_the_same_nodes_as_the_tile_it_was_built_from() {
        let mut edge = tree::EdgeTile::default();
        for i in 0..TILE_WIDTH as u64 {
            edge.push(tlog_tiles::record_hash(&i.to_be_bytes()));
        }
        let full = edge.clone();
        let (stored, root) = edge.take_full();
        let expanded = ExpandedTile::from_stored(&StoredTile(&stored));
        for h in 0..=TILE_HEIGHT {
            for pos in 0..TILE_WIDTH >> h {
                assert_eq!(
                    expanded.node(h, pos),
                    full.node(h, pos),
                    "height {h} pos {pos}"
                );
                assert_eq!(
                    expanded.node(h, pos),
                    Some(StoredTile(&stored).node(h, pos))
                );
            }
            assert_eq!(expanded.node(h, TILE_WIDTH >> h), None);
        }
        assert_eq!(expanded.node(TILE_HEIGHT, 0), Some(root));
        assert_eq!(expanded.node(TILE_HEIGHT + 1, 0), None);
    }
}
