//! The external sort of tile fragments by `(tile id, layer + spatial key, feature sequence)`.
//!
//! Fragments accumulate in memory (an arena of payload bytes plus a 32-byte index entry each)
//! until the memory budget is reached; then the index is sorted in parallel and the run is
//! written to a temporary file, and the same buffer takes the next run. At the end the runs are
//! merged with a heap, so the tiles come out in tile-id order (the clustered order of the
//! archive) whatever the input size; the runs' read buffers share the budget. A run that fits in
//! memory is never written to disk.
//!
//! Buffers are allocated once and reused (the run, the batches of tiles handed out): memory a
//! buffer frees is memory the allocator may keep, so churning through fresh buffers costs RSS
//! well beyond what is live.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;

use rayon::slice::ParallelSliceMut;

/// (tile id, order, sequence).
type SortKey = (u64, u64, u64);

/// One fragment's place in the sort and in its arena.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FragIdx {
    pub tile_id: u64,
    /// `layer << 48 | spatial key >> 16`: layers in input order, features in spatial order.
    pub order: u64,
    /// The feature's input sequence number: a total, reproducible order for ties.
    pub seq: u64,
    off: u32,
    len: u32,
}

impl FragIdx {
    fn key(&self) -> (u64, u64, u64) {
        (self.tile_id, self.order, self.seq)
    }
}

/// Fragments produced by one worker: payload bytes and their index.
#[derive(Default)]
pub(crate) struct FragBuf {
    pub arena: Vec<u8>,
    pub index: Vec<FragIdx>,
}

/// Arenas are indexed by `u32`; a buffer is flushed well before that.
const ARENA_LIMIT: usize = 3 << 30;
/// Write buffer of a spill file.
const SPILL_WRITE_BUFFER: usize = 256 << 10;
/// Read buffer of each run while merging: the budget divided by the runs, within these.
const MIN_RUN_READ_BUFFER: usize = 16 << 10;
const MAX_RUN_READ_BUFFER: usize = 256 << 10;

impl FragBuf {
    /// Appends a fragment whose payload `write` appends to the arena.
    pub(crate) fn push(
        &mut self,
        tile_id: u64,
        order: u64,
        seq: u64,
        write: impl FnOnce(&mut Vec<u8>),
    ) {
        let start = self.arena.len();
        write(&mut self.arena);
        let (Ok(off), Ok(len)) = (
            u32::try_from(start),
            u32::try_from(self.arena.len() - start),
        ) else {
            // Unreachable with the sorter's flush limit; dropping beats corrupting.
            self.arena.truncate(start);
            return;
        };
        self.index.push(FragIdx {
            tile_id,
            order,
            seq,
            off,
            len,
        });
    }

    /// Empties the buffer, keeping its allocations for the next use.
    pub(crate) fn clear(&mut self) {
        self.arena.clear();
        self.index.clear();
    }

    /// Payload bytes plus index bytes.
    pub(crate) fn bytes(&self) -> usize {
        self.arena.len() + self.index.len() * std::mem::size_of::<FragIdx>()
    }

    fn append(&mut self, other: &FragBuf) {
        let base = self.arena.len();
        self.arena.extend_from_slice(&other.arena);
        self.index.extend(other.index.iter().map(|&f| {
            let mut f = f;
            // `base + off` fits: the sorter spills before the arena reaches ARENA_LIMIT.
            f.off = u32::try_from(base + f.off as usize).unwrap_or(u32::MAX);
            f
        }));
    }

    fn payload(&self, f: &FragIdx) -> &[u8] {
        let s = f.off as usize;
        self.arena.get(s..s + f.len as usize).unwrap_or(&[])
    }
}

/// A fragment handed to tile assembly.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FragRef {
    pub order: u64,
    /// The feature's sequence number: with `order`, the fragment's place in its tile.
    pub seq: u64,
    pub off: usize,
    pub len: usize,
}

/// One tile of a batch: its id, its fragments, and how many consecutive tile ids (from `id`)
/// hold exactly these fragments: 1, or more for a run of tiles that only fills cover.
#[derive(Debug, Clone)]
pub(crate) struct BatchTile {
    pub id: u64,
    pub frags: std::ops::Range<usize>,
    pub run: u64,
}

/// A batch of whole tiles in tile-id order.
#[derive(Default)]
pub(crate) struct TileBatch {
    pub arena: Vec<u8>,
    pub frags: Vec<FragRef>,
    pub tiles: Vec<BatchTile>,
}

impl TileBatch {
    /// Empties the batch, keeping its allocations for the next one.
    pub(crate) fn clear(&mut self) {
        self.arena.clear();
        self.frags.clear();
        self.tiles.clear();
    }

    /// Starts a tile (or a run of `run` identical tiles) at `tile_id`; fragments pushed next
    /// are its own.
    pub(crate) fn start_tile(&mut self, tile_id: u64, run: u64) {
        let at = self.frags.len();
        self.tiles.push(BatchTile {
            id: tile_id,
            frags: at..at,
            run,
        });
    }

    /// Adds a fragment to the last tile started.
    pub(crate) fn push_frag(&mut self, order: u64, seq: u64, payload: &[u8]) {
        let off = self.arena.len();
        self.arena.extend_from_slice(payload);
        self.frags.push(FragRef {
            order,
            seq,
            off,
            len: payload.len(),
        });
        if let Some(t) = self.tiles.last_mut() {
            t.frags.end = self.frags.len();
        }
    }

    pub(crate) fn payload(&self, f: &FragRef) -> &[u8] {
        self.arena.get(f.off..f.off + f.len).unwrap_or(&[])
    }

    pub(crate) fn bytes(&self) -> usize {
        self.arena.len() + self.frags.len() * std::mem::size_of::<FragRef>()
    }
}

/// Sorts fragments under a memory budget.
pub(crate) struct Sorter {
    buf: FragBuf,
    budget: usize,
    tmp_dir: Option<PathBuf>,
    runs: Vec<File>,
    pub spilled_bytes: u64,
    pub fragments: u64,
}

impl Sorter {
    pub(crate) fn new(budget: usize, tmp_dir: Option<PathBuf>) -> Self {
        Sorter {
            buf: FragBuf::default(),
            budget: budget.max(1 << 20),
            tmp_dir,
            runs: Vec::new(),
            spilled_bytes: 0,
            fragments: 0,
        }
    }

    #[cfg(test)]
    pub(crate) fn runs(&self) -> usize {
        self.runs.len()
    }

    /// Payload bytes and index entries of the in-memory run (70% and 30% of the budget).
    fn caps(&self) -> (usize, usize) {
        (
            (self.budget / 10 * 7).min(ARENA_LIMIT),
            (self.budget / 10 * 3).min(ARENA_LIMIT) / std::mem::size_of::<FragIdx>(),
        )
    }

    /// Adds (copies) a worker's fragments. The in-memory run is reserved once at the budget
    /// and spilled before an append would outgrow it: a doubling `Vec` would otherwise hold
    /// twice the budget, and briefly three times while it reallocates.
    pub(crate) fn add(&mut self, b: &FragBuf) -> io::Result<()> {
        self.fragments += b.index.len() as u64;
        let (arena_cap, index_cap) = self.caps();
        if !self.buf.index.is_empty()
            && (self.buf.arena.len() + b.arena.len() > arena_cap
                || self.buf.index.len() + b.index.len() > index_cap)
        {
            self.spill()?;
        }
        if self.buf.index.is_empty() && self.buf.arena.capacity() < arena_cap {
            // Pages are only touched as they fill, so a large budget costs nothing up front.
            // A budget the allocator refuses (`--memory` beyond the address space) is not
            // fatal: the run then grows as needed and still spills at the budget.
            let _ = self
                .buf
                .arena
                .try_reserve_exact(arena_cap.max(b.arena.len()));
            let _ = self
                .buf
                .index
                .try_reserve_exact(index_cap.max(b.index.len()));
        }
        self.buf.append(b);
        Ok(())
    }

    fn sort(buf: &mut FragBuf) {
        buf.index.par_sort_unstable_by_key(FragIdx::key);
    }

    fn spill(&mut self) -> io::Result<()> {
        if self.buf.index.is_empty() {
            return Ok(());
        }
        Self::sort(&mut self.buf);
        let file = match &self.tmp_dir {
            Some(d) => tempfile::tempfile_in(d)?,
            None => tempfile::tempfile()?,
        };
        let mut w = BufWriter::with_capacity(SPILL_WRITE_BUFFER, file);
        let buf = &self.buf;
        for f in &buf.index {
            let p = buf.payload(f);
            w.write_all(&f.tile_id.to_le_bytes())?;
            w.write_all(&f.order.to_le_bytes())?;
            w.write_all(&f.seq.to_le_bytes())?;
            w.write_all(&(p.len() as u32).to_le_bytes())?;
            w.write_all(p)?;
            self.spilled_bytes += 28 + p.len() as u64;
        }
        let mut file = w.into_inner().map_err(|e| e.into_error())?;
        file.seek(SeekFrom::Start(0))?;
        self.runs.push(file);
        // The next run reuses the buffer, unless one oversized append grew it past the budget.
        let (arena_cap, index_cap) = self.caps();
        if self.buf.arena.capacity() > arena_cap || self.buf.index.capacity() > index_cap {
            self.buf = FragBuf::default();
        } else {
            self.buf.clear();
        }
        Ok(())
    }

    /// Finishes the sort; the stream yields batches of whole tiles of about `batch_bytes`.
    pub(crate) fn finish(mut self, batch_bytes: usize) -> io::Result<TileStream> {
        if self.runs.is_empty() {
            let mut buf = std::mem::take(&mut self.buf);
            Self::sort(&mut buf);
            return Ok(TileStream::new(Source::Memory { buf, pos: 0 }, batch_bytes));
        }
        self.spill()?;
        // The run buffer is free now; the runs' read buffers share its budget.
        self.buf = FragBuf::default();
        let read_buffer = run_read_buffer(self.budget, self.runs.len());
        let mut runs = Vec::with_capacity(self.runs.len());
        let mut heap = BinaryHeap::new();
        for (i, f) in self.runs.drain(..).enumerate() {
            let mut r = RunReader {
                r: BufReader::with_capacity(read_buffer, f),
                head: None,
                payload: Vec::new(),
            };
            r.advance()?;
            if let Some(k) = r.head {
                heap.push(Reverse((k, i)));
            }
            runs.push(r);
        }
        Ok(TileStream::new(Source::Runs { runs, heap }, batch_bytes))
    }
}

/// The read buffer of each of `runs` runs while merging: together they take the budget, within
/// 16-256 KiB each.
fn run_read_buffer(budget: usize, runs: usize) -> usize {
    (budget / runs.max(1)).clamp(MIN_RUN_READ_BUFFER, MAX_RUN_READ_BUFFER)
}

struct RunReader {
    r: BufReader<File>,
    head: Option<(u64, u64, u64)>,
    payload: Vec<u8>,
}

impl RunReader {
    fn advance(&mut self) -> io::Result<()> {
        let mut h = [0u8; 28];
        match self.r.read_exact(&mut h[..1]) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                self.head = None;
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        self.r.read_exact(&mut h[1..])?;
        let word = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&h[i..i + 8]);
            u64::from_le_bytes(b)
        };
        let mut lb = [0u8; 4];
        lb.copy_from_slice(&h[24..28]);
        let len = u32::from_le_bytes(lb) as usize;
        self.payload.resize(len, 0);
        self.r.read_exact(&mut self.payload)?;
        self.head = Some((word(0), word(8), word(16)));
        Ok(())
    }
}

enum Source {
    Memory {
        buf: FragBuf,
        pos: usize,
    },
    Runs {
        runs: Vec<RunReader>,
        heap: BinaryHeap<Reverse<(SortKey, usize)>>,
    },
}

impl Source {
    /// The key of the next fragment.
    fn peek(&self) -> Option<SortKey> {
        match self {
            Source::Memory { buf, pos } => buf.index.get(*pos).map(FragIdx::key),
            Source::Runs { heap, .. } => heap.peek().map(|Reverse((k, _))| *k),
        }
    }

    /// Hands the next fragment to `f` and moves past it.
    fn pop<T>(&mut self, f: impl FnOnce(SortKey, &[u8]) -> T) -> io::Result<Option<T>> {
        match self {
            Source::Memory { buf, pos } => {
                let Some(idx) = buf.index.get(*pos) else {
                    return Ok(None);
                };
                *pos += 1;
                Ok(Some(f(idx.key(), buf.payload(idx))))
            }
            Source::Runs { runs, heap } => {
                let Some(Reverse((k, i))) = heap.pop() else {
                    return Ok(None);
                };
                let Some(r) = runs.get_mut(i) else {
                    return Ok(None);
                };
                let out = f(k, &r.payload);
                r.advance()?;
                if let Some(k) = r.head {
                    heap.push(Reverse((k, i)));
                }
                Ok(Some(out))
            }
        }
    }
}

/// A fill being handed out: the feature covers every tile id from its start (already passed)
/// to `end`.
struct ActiveFill {
    end: u64,
    order: u64,
    seq: u64,
    payload: Vec<u8>,
}

/// Sorted fragments, handed out as batches of whole tiles.
///
/// Fills (see `cut`) come out of the sort at the first tile id of their run and stay active
/// until its end. A tile that has fragments of its own gets the active fills too (in
/// fragment order); a stretch of tile ids that only fills cover becomes one run tile per
/// stretch over which the active fills do not change, assembled once.
pub(crate) struct TileStream {
    source: Source,
    batch_bytes: usize,
    /// Fills covering `cur`, in fragment order `(order, seq)`.
    active: Vec<ActiveFill>,
    /// Every tile id below this has been handed out.
    cur: u64,
    /// With `--cluster-distance`: folds each cell's cluster members as they come out.
    fold: Option<super::cluster::Fold>,
}

fn damaged() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "damaged fragment in the sort")
}

impl TileStream {
    fn new(source: Source, batch_bytes: usize) -> Self {
        TileStream {
            source,
            batch_bytes,
            active: Vec::new(),
            cur: 0,
            fold: None,
        }
    }

    /// Folds cluster members from now on (see `cluster`).
    pub(crate) fn set_fold(&mut self, fold: super::cluster::Fold) {
        self.fold = Some(fold);
    }

    /// The fold, with what it made.
    pub(crate) fn take_fold(&mut self) -> Option<super::cluster::Fold> {
        self.fold.take()
    }

    /// Fills `batch` (emptied first; its allocations are reused) with the next whole tiles:
    /// about `batch_bytes`, one tile at least. False at the end, with `batch` empty.
    pub(crate) fn next_batch(&mut self, batch: &mut TileBatch) -> io::Result<bool> {
        batch.clear();
        loop {
            // A batch closes only between tiles.
            if !batch.tiles.is_empty() && batch.bytes() >= self.batch_bytes {
                break;
            }
            let next = self.source.peek().map(|k| k.0);
            let cur = self.cur;
            self.active.retain(|f| f.end > cur);
            // Tiles before the next fragment that only fills cover: a run per stretch of
            // unchanged fills.
            if let Some(first_end) = self.active.iter().map(|f| f.end).min() {
                let stop = first_end.min(next.unwrap_or(u64::MAX));
                if stop > cur {
                    batch.start_tile(cur, stop - cur);
                    for f in &self.active {
                        batch.push_frag(f.order, f.seq, &f.payload);
                    }
                    self.cur = stop;
                    continue;
                }
            }
            let Some(t) = next else { break };
            // Tile `t`: its fragments, and the fills that start here.
            let first_frag = batch.frags.len();
            let mut own = false;
            while self.source.peek().is_some_and(|k| k.0 == t) {
                let active = &mut self.active;
                let fold = &mut self.fold;
                let pushed = self.source.pop(|k, p| -> io::Result<()> {
                    match super::codec::split_fill(p).map_err(|_| damaged())? {
                        Some((end, frag)) => {
                            // A run within the zoom of its first tile.
                            let zoom_end = crate::tile::tile_zoom(t)
                                .and_then(|z| crate::tile::zoom_first_id(z + 1))
                                .unwrap_or(u64::MAX);
                            if end <= t || end > zoom_end {
                                return Err(damaged());
                            }
                            let at = active.partition_point(|f| (f.order, f.seq) < (k.1, k.2));
                            active.insert(
                                at,
                                ActiveFill {
                                    end,
                                    order: k.1,
                                    seq: k.2,
                                    payload: frag.to_vec(),
                                },
                            );
                        }
                        None => {
                            if !own {
                                batch.start_tile(t, 1);
                                own = true;
                            }
                            match fold {
                                Some(f) => f.push(batch, k.1, k.2, p).map_err(|_| damaged())?,
                                None => batch.push_frag(k.1, k.2, p),
                            }
                        }
                    }
                    Ok(())
                })?;
                if let Some(r) = pushed {
                    r?;
                }
            }
            if let Some(f) = &mut self.fold {
                f.end_tile(batch).map_err(|_| damaged())?;
            }
            if own {
                // The tile's own fragments are in order; the fills join them in place.
                if !self.active.is_empty() {
                    for f in &self.active {
                        batch.push_frag(f.order, f.seq, &f.payload);
                    }
                    if let Some(frags) = batch.frags.get_mut(first_frag..) {
                        frags.sort_by_key(|f| (f.order, f.seq));
                    }
                }
                self.cur = t + 1;
            } else {
                // Only fills start here: the run loop above hands the tile out.
                self.cur = t;
            }
        }
        Ok(!batch.tiles.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn collect(mut s: TileStream) -> Vec<(u64, Vec<Vec<u8>>)> {
        let mut out: Vec<(u64, Vec<Vec<u8>>)> = Vec::new();
        let mut b = TileBatch::default();
        while s.next_batch(&mut b).unwrap() {
            for t in &b.tiles {
                assert!(out.last().is_none_or(|(l, _)| *l < t.id), "tiles in order");
                out.push((
                    t.id,
                    b.frags[t.frags.clone()]
                        .iter()
                        .map(|f| b.payload(f).to_vec())
                        .collect(),
                ));
            }
        }
        out
    }

    fn fill(s: &mut Sorter, n: u64) {
        for chunk in 0..4u64 {
            let mut b = FragBuf::default();
            for i in 0..n {
                let seq = chunk * n + i;
                let tile = (seq * 7919) % 97;
                b.push(tile, seq % 3, seq, |a| {
                    // A fragment payload starts with its id tag (0: none), never the fill tag.
                    a.push(0);
                    a.extend_from_slice(&seq.to_le_bytes());
                });
            }
            s.add(&b).unwrap();
        }
    }

    #[test]
    fn the_run_buffer_is_allocated_once_and_stays_within_the_budget() {
        let mut s = Sorter::new(1 << 20, None);
        let (arena_cap, index_cap) = s.caps();
        let mut arena = None;
        for chunk in 0..40u64 {
            let mut b = FragBuf::default();
            for i in 0..2000 {
                let seq = chunk * 2000 + i;
                b.push(seq % 97, 0, seq, |a| a.extend_from_slice(&[7u8; 40]));
            }
            s.add(&b).unwrap();
            assert!(
                s.buf.arena.capacity() <= arena_cap,
                "{}",
                s.buf.arena.capacity()
            );
            assert!(
                s.buf.index.capacity() <= index_cap,
                "{}",
                s.buf.index.capacity()
            );
            // The same allocation from the first fragment to the last run.
            let at = *arena.get_or_insert(s.buf.arena.as_ptr());
            assert_eq!(
                at,
                s.buf.arena.as_ptr(),
                "a new run buffer after {} runs",
                s.runs()
            );
        }
        assert!(s.runs() >= 5, "{} runs", s.runs());
        let tiles = collect(s.finish(1 << 16).unwrap());
        assert_eq!(tiles.iter().map(|t| t.1.len()).sum::<usize>(), 80_000);
    }

    #[test]
    fn merge_read_buffers_share_the_budget() {
        assert_eq!(run_read_buffer(15 << 20, 10), MAX_RUN_READ_BUFFER);
        assert_eq!(run_read_buffer(15 << 20, 200), (15 << 20) / 200);
        assert!(run_read_buffer(15 << 20, 200) * 200 <= 15 << 20);
        assert_eq!(run_read_buffer(1 << 20, 1000), MIN_RUN_READ_BUFFER);
        assert_eq!(run_read_buffer(1 << 20, 0), MAX_RUN_READ_BUFFER);
    }

    #[test]
    fn batches_reuse_their_buffers() {
        let mut s = Sorter::new(usize::MAX, None);
        fill(&mut s, 5_000);
        let mut stream = s.finish(4096).unwrap();
        let mut batch = TileBatch::default();
        let (mut batches, mut seen) = (0, 0);
        while stream.next_batch(&mut batch).unwrap() {
            batches += 1;
            seen += batch.tiles.len();
        }
        assert!(batches > 3, "{batches} batches");
        assert_eq!(seen, 97);
        assert!(batch.tiles.is_empty() && batch.frags.is_empty() && batch.arena.is_empty());
        // Emptied, not replaced: the allocations stay for the next batch.
        assert!(batch.arena.capacity() > 0 && batch.frags.capacity() > 0);
    }

    #[test]
    fn memory_and_spilled_sorts_agree() {
        let mut mem = Sorter::new(usize::MAX, None);
        fill(&mut mem, 20_000);
        assert_eq!(mem.runs(), 0);
        let a = collect(mem.finish(1000).unwrap());
        // The budget has a 1 MiB floor; 80,000 fragments of 40 bytes spill several runs.
        let mut disk = Sorter::new(0, None);
        fill(&mut disk, 20_000);
        assert!(disk.runs() >= 2, "{} runs", disk.runs());
        let b = collect(disk.finish(1000).unwrap());
        assert_eq!(a, b);
        assert_eq!(a.len(), 97);
        assert_eq!(a.iter().map(|t| t.1.len()).sum::<usize>(), 80_000);
        // Within a tile: by order, then by sequence.
        for (_, frags) in &a {
            let seqs: Vec<u64> = frags
                .iter()
                .map(|p| u64::from_le_bytes(p[1..9].try_into().unwrap()))
                .collect();
            let keys: Vec<(u64, u64)> = seqs.iter().map(|s| (s % 3, *s)).collect();
            let mut sorted = keys.clone();
            sorted.sort();
            assert_eq!(keys, sorted);
        }
    }

    /// Every tile id the stream hands out, runs expanded, with its fragments' (order, seq).
    fn expand(mut s: TileStream) -> BTreeMap<u64, Vec<(u64, u64)>> {
        let mut out = BTreeMap::new();
        let mut b = TileBatch::default();
        let mut last = None;
        while s.next_batch(&mut b).unwrap() {
            for t in &b.tiles {
                assert!(t.run >= 1);
                assert!(last.is_none_or(|l| l < t.id), "tiles in order");
                last = Some(t.id + t.run - 1);
                let frags: Vec<(u64, u64)> = b.frags[t.frags.clone()]
                    .iter()
                    .map(|f| (f.order, f.seq))
                    .collect();
                for id in t.id..t.id + t.run {
                    out.insert(id, frags.clone());
                }
            }
        }
        out
    }

    #[test]
    fn fills_join_the_tiles_they_cover_and_make_runs_between() {
        use crate::geom::TileGeom;
        use crate::tiler::codec::{put_fill, put_fragment};
        use std::collections::BTreeMap as Map;
        let geom = TileGeom::Points(vec![[1, 1]]);
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let mut rnd = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for budget in [usize::MAX, 0] {
            for round in 0..20u64 {
                let mut want: Map<u64, Vec<(u64, u64)>> = Map::new();
                let mut s = Sorter::new(budget, None);
                let mut b = FragBuf::default();
                for seq in 0..300u64 {
                    let order = rnd(4);
                    // Within zoom 6 (ids 1365..5461), as real fills are.
                    let start = 1365 + rnd(400);
                    if rnd(3) == 0 {
                        let end = start + 1 + rnd(60);
                        b.push(start, order, seq, |a| {
                            put_fill(a, end, Some(seq), 0, &[], &geom)
                        });
                        for id in start..end {
                            want.entry(id).or_default().push((order, seq));
                        }
                    } else {
                        b.push(start, order, seq, |a| {
                            put_fragment(a, Some(seq), 0, &[], &geom)
                        });
                        want.entry(start).or_default().push((order, seq));
                    }
                    if b.index.len() >= 50 {
                        s.add(&b).unwrap();
                        b.clear();
                    }
                }
                s.add(&b).unwrap();
                for v in want.values_mut() {
                    v.sort();
                }
                let got = expand(s.finish(512 + round as usize * 64).unwrap());
                assert_eq!(got, want, "budget {budget} round {round}");
            }
        }
    }

    #[test]
    fn a_damaged_fill_is_an_error_not_a_tile() {
        // A fill whose run ends where it starts, and one running into the next zoom.
        for (start, end) in [(7, 7), (7, 22)] {
            let mut s = Sorter::new(usize::MAX, None);
            let mut b = FragBuf::default();
            b.push(start, 0, 0, |a| {
                crate::tiler::codec::put_fill(
                    a,
                    end,
                    None,
                    0,
                    &[],
                    &crate::geom::TileGeom::Points(vec![]),
                )
            });
            s.add(&b).unwrap();
            let mut stream = s.finish(1 << 10).unwrap();
            let err = stream.next_batch(&mut TileBatch::default()).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        }
    }
}
