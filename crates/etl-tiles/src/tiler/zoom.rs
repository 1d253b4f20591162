//! Zoom-wide dropping: with `--drop-densest-as-needed` / `--coalesce-densest-as-needed`, the
//! spacing one over-limit tile needed applies to every tile of its zoom, as in tippecanoe, so
//! neighbouring tiles show the same density (no seam where one tile was thinned and the next
//! was not).
//!
//! Tiles come zoom by zoom in tile-id order. While a zoom streams past, each tile's fragments go
//! to a replay file and its assembled bytes to a pending file, both unlinked temporaries. When
//! the zoom ends: if no tile had to thin, the pending tiles are written as they are; otherwise
//! every tile of the zoom is assembled again from the replay file with the largest spacing any
//! of them needed, and those tiles are written. Memory stays one batch of tiles.
//!
//! The features a zoom's written tiles show are remembered by sequence number (a bit each), and
//! the next zoom's re-assembly keeps them whatever the spacing ([`Protected`]): a feature shown
//! at z stays shown at z + 1.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use super::assemble::{self, AssembleCtx, Assembled};
use super::codec::fragment_size;
use super::cut::{order_layer, order_spatial};
use super::sort::{BatchTile, TileBatch};
use super::thin::{self, Reduction};
use super::{Run, TilerError};
use crate::archive::ArchiveWriter;
use crate::tile::{tile_coord, tile_id};

/// The features shown at the zoom above, by sequence number: a zoom-wide dropping strategy
/// never removes them, so a feature shown at z is shown at z + 1 (tippecanoe's densest-first
/// dropping does not promise this). Only when a tile is still over its limits with every
/// unprotected feature gone are protected ones dropped.
///
/// Sequence numbers are the callers' keys, `input << 40 | ordinal` by convention: one bit per
/// ordinal of each input (150M features: 19 MB) while an input's bits stay within
/// [`DENSE_SLACK`] words per key held, and a set for any other key, so keys that follow no
/// convention (hashes) cost per kept feature, never a bitset per key.
#[derive(Debug, Default, Clone)]
pub(crate) struct Protected {
    /// Per input: the bits, and how many keys they hold.
    dense: rustc_hash::FxHashMap<u64, (Vec<u64>, u64)>,
    sparse: rustc_hash::FxHashSet<u64>,
}

/// An input's bitset may grow to this many words per key it holds, plus [`DENSE_FLOOR`].
const DENSE_SLACK: u64 = 16;
const DENSE_FLOOR: u64 = 1 << 12;

impl Protected {
    pub(crate) fn insert(&mut self, seq: u64) {
        let (input, ordinal) = (seq >> 40, seq & ((1 << 40) - 1));
        let (w, b) = (ordinal / 64, ordinal % 64);
        let grown = self
            .dense
            .get(&input)
            .map_or((0, 0), |(b, h)| (b.len() as u64, *h));
        if w >= grown.0 && w >= DENSE_SLACK * (grown.1 + 1) + DENSE_FLOOR {
            // No map entry either: keys that follow no convention cost one set entry each.
            self.sparse.insert(seq);
            return;
        }
        let (bits, held) = self.dense.entry(input).or_default();
        let w = w as usize;
        if w >= bits.len() {
            bits.resize(w + 1, 0);
        }
        if let Some(word) = bits.get_mut(w) {
            if *word & (1 << b) == 0 {
                *held += 1;
            }
            *word |= 1 << b;
        }
    }

    pub(crate) fn contains(&self, seq: u64) -> bool {
        let (input, ordinal) = (seq >> 40, seq & ((1 << 40) - 1));
        let dense = self
            .dense
            .get(&input)
            .and_then(|(bits, _)| bits.get((ordinal / 64) as usize))
            .is_some_and(|w| w & (1 << (ordinal % 64)) != 0);
        dense || self.sparse.contains(&seq)
    }
}

/// Where finished tiles go, and what the zoom stage needs to assemble them again.
pub(crate) struct Sink<'a, W: Write + Seek> {
    pub ctx: &'a AssembleCtx<'a>,
    pub writer: &'a mut ArchiveWriter<W>,
    pub run: &'a mut Run,
    pub cancel: &'a (dyn Fn() -> bool + Sync),
}

/// The current zoom's tiles, held back until the zoom's spacing is known.
pub(crate) struct ZoomStage {
    zoom: Option<u8>,
    replay: BufWriter<File>,
    pending: BufWriter<File>,
    reduction: Reduction,
}

fn temp(dir: Option<&Path>) -> io::Result<File> {
    match dir {
        Some(d) => tempfile::tempfile_in(d),
        None => tempfile::tempfile(),
    }
}

fn put_u32(w: &mut impl Write, v: u32) -> io::Result<()> {
    w.write_all(&v.to_le_bytes())
}

fn put_u64(w: &mut impl Write, v: u64) -> io::Result<()> {
    w.write_all(&v.to_le_bytes())
}

fn get_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn get_u64(r: &mut impl Read) -> io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

/// Reads a record's leading tile id, or `None` at a clean end of file.
fn next_id(r: &mut impl Read) -> io::Result<Option<u64>> {
    let mut b = [0u8; 8];
    match r.read_exact(&mut b[..1]) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    r.read_exact(&mut b[1..])?;
    Ok(Some(u64::from_le_bytes(b)))
}

fn len32(n: usize) -> io::Result<u32> {
    u32::try_from(n).map_err(|_| io::Error::other("record over 4 GiB"))
}

impl ZoomStage {
    pub(crate) fn new(tmp_dir: Option<&Path>) -> io::Result<Self> {
        Ok(ZoomStage {
            zoom: None,
            replay: BufWriter::with_capacity(1 << 20, temp(tmp_dir)?),
            pending: BufWriter::with_capacity(1 << 20, temp(tmp_dir)?),
            reduction: Reduction::NONE,
        })
    }

    /// Takes one assembled tile (and its fragments from `batch`), finishing the previous zoom
    /// first when this tile starts a new one.
    pub(crate) fn push<W: Write + Seek>(
        &mut self,
        a: &Assembled,
        batch: &TileBatch,
        tile: &BatchTile,
        sink: &mut Sink<'_, W>,
    ) -> Result<(), TilerError> {
        if self.zoom != Some(a.tile.z) {
            self.finish(sink)?;
            self.zoom = Some(a.tile.z);
        }
        let id = tile_id(a.tile);
        // Replay record: id, run, fragment count, then (order, sequence number, length,
        // payload) per fragment, in their final order.
        let fr = batch.frags.get(tile.frags.clone()).unwrap_or(&[]);
        put_u64(&mut self.replay, id)?;
        put_u64(&mut self.replay, tile.run)?;
        put_u32(&mut self.replay, len32(fr.len())?)?;
        for f in fr {
            let p = batch.payload(f);
            put_u64(&mut self.replay, f.order)?;
            put_u64(&mut self.replay, f.seq)?;
            put_u32(&mut self.replay, len32(p.len())?)?;
            self.replay.write_all(p)?;
        }
        // Pending record: id, run, dropped, coalesced, layers, gzipped and detail, data, the
        // kept features' sequence numbers.
        put_u64(&mut self.pending, id)?;
        put_u64(&mut self.pending, a.run)?;
        put_u32(&mut self.pending, len32(a.dropped)?)?;
        put_u32(&mut self.pending, len32(a.coalesced)?)?;
        put_u32(&mut self.pending, len32(a.layers.len())?)?;
        for l in &a.layers {
            put_u32(&mut self.pending, *l)?;
        }
        let data = a.data.as_deref().unwrap_or(&[]);
        self.pending.write_all(&[u8::from(a.gz), a.detail])?;
        put_u32(&mut self.pending, len32(data.len())?)?;
        self.pending.write_all(data)?;
        put_u32(&mut self.pending, len32(a.kept.len())?)?;
        for k in &a.kept {
            put_u64(&mut self.pending, *k)?;
        }
        self.reduction = self.reduction.and(a.reduction);
        Ok(())
    }

    /// Writes the held zoom: as assembled when no tile thinned, else assembled again with the
    /// zoom's spacing.
    pub(crate) fn finish<W: Write + Seek>(
        &mut self,
        sink: &mut Sink<'_, W>,
    ) -> Result<(), TilerError> {
        let Some(z) = self.zoom else {
            return Ok(());
        };
        // What the zoom above showed (when it was tiled in this run), and what this one shows.
        let above = sink
            .run
            .shown
            .take()
            .filter(|(sz, _)| z.checked_sub(1) == Some(*sz))
            .map(|(_, p)| p);
        let mut shown = Protected::default();
        let respace = !self.reduction.is_none();
        if respace {
            sink.run.zooms_respaced += 1;
        }
        // Walk the pending tiles (and, when respacing, their fragments in lockstep). A tile
        // that needs nothing removed at the zoom's spacing keeps its bytes; the others are
        // assembled again in parallel batches, and everything is written in tile order.
        let mut pending = rewind(&mut self.pending)?;
        let mut replay = if respace {
            Some(rewind(&mut self.replay)?)
        } else {
            None
        };
        let mut slots: Vec<Slot> = Vec::new();
        let mut batch = TileBatch::default();
        let mut held = 0usize;
        let mut frags: Vec<(u64, u64, Vec<u8>)> = Vec::new();
        while let Some(a) = read_pending(&mut pending)? {
            if let Some(r) = &mut replay {
                let id = next_id(r)?.ok_or(TilerError::Damaged(tile_id(a.tile)))?;
                let tile_run = get_u64(r)?;
                if id != tile_id(a.tile) || tile_run != a.run {
                    return Err(TilerError::Damaged(id));
                }
                let n = get_u32(r)?;
                frags.clear();
                for _ in 0..n {
                    let order = get_u64(r)?;
                    let seq = get_u64(r)?;
                    let len = get_u32(r)? as usize;
                    let mut p = vec![0u8; len];
                    r.read_exact(&mut p)?;
                    frags.push((order, seq, p));
                }
                if a.dropped + a.coalesced > 0 || would_reduce(id, &frags, &self.reduction)? {
                    batch.start_tile(id, tile_run);
                    for (order, seq, p) in &frags {
                        batch.push_frag(*order, *seq, p);
                    }
                    slots.push(Slot::Again(batch.tiles.len() - 1));
                } else {
                    held += a.data.as_ref().map_or(0, Vec::len);
                    slots.push(Slot::Ready(a));
                }
                if batch.bytes() + held >= sink.ctx.batch_bytes {
                    if (sink.cancel)() {
                        return Err(TilerError::Cancelled);
                    }
                    self.flush(&mut slots, &mut batch, sink, above.as_ref(), &mut shown)?;
                    held = 0;
                }
            } else {
                held += a.data.as_ref().map_or(0, Vec::len);
                slots.push(Slot::Ready(a));
                if held >= sink.ctx.batch_bytes {
                    self.flush(&mut slots, &mut batch, sink, above.as_ref(), &mut shown)?;
                    held = 0;
                }
            }
        }
        self.flush(&mut slots, &mut batch, sink, above.as_ref(), &mut shown)?;
        sink.run.shown = Some((z, shown));
        // Start the next zoom with empty files (flushed first: bytes left in a buffer would
        // land in the next zoom's file).
        truncate(&mut self.replay)?;
        truncate(&mut self.pending)?;
        self.reduction = Reduction::NONE;
        self.zoom = None;
        Ok(())
    }

    /// Assembles the batched tiles again with the zoom's spacing (keeping what the zoom above
    /// showed) and writes every slot in order, noting the features each shows.
    fn flush<W: Write + Seek>(
        &self,
        slots: &mut Vec<Slot>,
        batch: &mut TileBatch,
        sink: &mut Sink<'_, W>,
        above: Option<&Protected>,
        shown: &mut Protected,
    ) -> Result<(), TilerError> {
        let mut done: Vec<Option<Result<Assembled, _>>> = if batch.tiles.is_empty() {
            Vec::new()
        } else {
            assemble::assemble_batch(batch, sink.ctx, &self.reduction, false, above)
                .into_iter()
                .map(Some)
                .collect()
        };
        let mut ready: Vec<Assembled> = Vec::with_capacity(slots.len());
        for slot in slots.drain(..) {
            ready.push(match slot {
                Slot::Ready(a) => a,
                Slot::Again(i) => done
                    .get_mut(i)
                    .and_then(Option::take)
                    .ok_or(TilerError::Damaged(0))??,
            });
        }
        super::output::finish_all(&mut ready, sink.ctx.output)?;
        for mut a in ready {
            if a.data.is_some() {
                for &k in &a.kept {
                    shown.insert(k);
                }
            }
            write_tile(&mut a, sink.ctx.output, sink.writer, sink.run)?;
        }
        batch.clear();
        Ok(())
    }
}

/// A tile of a respaced zoom: kept as assembled, or the index of its re-assembly in the batch.
enum Slot {
    Ready(Assembled),
    Again(usize),
}

/// Whether the zoom's reduction would remove anything from a tile that kept everything: a
/// feature whose spacing from its predecessor (any layer, in spatial order) is under the gap,
/// one under the minimum size, one at or over the rank limit.
fn would_reduce(id: u64, frags: &[(u64, u64, Vec<u8>)], r: &Reduction) -> Result<bool, TilerError> {
    if frags
        .iter()
        .any(|(_, seq, _)| thin::rank(*seq) >= r.rank_limit)
    {
        return Ok(true);
    }
    if r.gap == 0 && r.min_size == 0 {
        return Ok(false);
    }
    // Each fragment's size, read once: (spatial key, layer, size) in the tile's order.
    let mut items: Vec<(u64, u32, u64)> = Vec::with_capacity(frags.len());
    for (order, seq, payload) in frags {
        let size = fragment_size(payload).map_err(|_| TilerError::Damaged(id))?;
        if thin::too_small(size, *seq, r.min_size) {
            return Ok(true);
        }
        items.push((order_spatial(*order), order_layer(*order), size));
    }
    Ok(r.gap > 0 && thin::any_closer(&mut items, r.gap))
}

/// Reads one pending tile, `None` at the end.
fn read_pending(r: &mut impl Read) -> Result<Option<Assembled>, TilerError> {
    let Some(id) = next_id(r)? else {
        return Ok(None);
    };
    let tile = tile_coord(id).ok_or(TilerError::Damaged(id))?;
    let run = get_u64(r)?;
    // A run of no tiles, or one running past its zoom, is damage, not an empty tile.
    let zoom_end = crate::tile::zoom_first_id(tile.z + 1).unwrap_or(u64::MAX);
    if run == 0 || id.saturating_add(run) > zoom_end {
        return Err(TilerError::Damaged(id));
    }
    let dropped = get_u32(r)? as usize;
    let coalesced = get_u32(r)? as usize;
    let n = get_u32(r)?;
    let mut layers = Vec::with_capacity(n.min(1 << 16) as usize);
    for _ in 0..n {
        layers.push(get_u32(r)?);
    }
    let mut gz = [0u8; 2];
    r.read_exact(&mut gz)?;
    let len = get_u32(r)? as usize;
    let mut data = vec![0u8; len];
    r.read_exact(&mut data)?;
    let k = get_u32(r)?;
    let mut kept = Vec::with_capacity(k.min(1 << 20) as usize);
    for _ in 0..k {
        kept.push(get_u64(r)?);
    }
    Ok(Some(Assembled {
        tile,
        data: (len > 0).then_some(data),
        gz: gz[0] != 0,
        stored: false,
        layers,
        dropped,
        coalesced,
        reduction: Reduction::NONE,
        run,
        detail: gz[1],
        kept,
    }))
}

fn truncate(w: &mut BufWriter<File>) -> io::Result<()> {
    w.flush()?;
    w.get_mut().set_len(0)?;
    w.get_mut().seek(SeekFrom::Start(0))?;
    Ok(())
}

/// Flushes `w` and returns a reader over what it wrote, from the start.
fn rewind(w: &mut BufWriter<File>) -> io::Result<BufReader<File>> {
    w.flush()?;
    let mut f = w.get_ref().try_clone()?;
    f.seek(SeekFrom::Start(0))?;
    Ok(BufReader::with_capacity(1 << 20, f))
}

/// Records a finished tile and writes it when it has data.
pub(crate) fn write_tile<W: Write + Seek>(
    a: &mut Assembled,
    output: super::output::Output,
    writer: &mut ArchiveWriter<W>,
    run: &mut Run,
) -> Result<(), TilerError> {
    // Tiles are brought to their stored form in parallel before they get here; this is the
    // safety net.
    super::output::finish(a, output)?;
    run.record(a);
    if let Some(data) = &a.data {
        writer.add_tile_run(tile_id(a.tile), a.run, data)?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn protected_keys_are_bits_per_input_and_a_set_beyond() {
        let mut p = Protected::default();
        let keys = [
            0,
            63,
            64,
            (1 << 40) | 5,
            (7 << 40) | 123_456,
            // Far past what an input's bits hold, and keys that follow no convention.
            (2 << 40) | (1 << 35),
            u64::MAX,
            u64::MAX - (1 << 41),
        ];
        for k in keys {
            p.insert(k);
        }
        for k in keys {
            assert!(p.contains(k), "{k:#x}");
        }
        for k in [
            1,
            62,
            65,
            (1 << 40) | 4,
            (7 << 40),
            (2 << 40) | 3,
            u64::MAX - 1,
        ] {
            assert!(!p.contains(k), "{k:#x}");
        }
        // Bits, not a word per key: seven inputs' worth of small ordinals stay small.
        let words: usize = p.dense.values().map(|(b, _)| b.len()).sum();
        assert!(words < 2_000, "{words} words");
        assert_eq!(p.sparse.len(), 3);
        // Hashed keys: a set entry each, no bitset grows.
        let mut h = Protected::default();
        let mut k = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..10_000 {
            k = k.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            h.insert(k);
            assert!(h.contains(k));
        }
        let words: usize = h.dense.values().map(|(b, _)| b.len()).sum();
        assert!(words < 10_000, "{words} words");
        assert!(h.dense.len() < 100, "{} inputs", h.dense.len());
        // Dense ordinals of one input: bits, not set entries.
        let mut d = Protected::default();
        for o in (0..1_000_000u64).step_by(3) {
            d.insert((5 << 40) | o);
        }
        assert!(d.sparse.is_empty());
        assert!(d.contains((5 << 40) | 999_999) && !d.contains((5 << 40) | 1));
    }

    use crate::geom::TileGeom;
    use crate::tiler::assemble::Feat;
    use crate::tiler::codec::put_fragment;
    use crate::tiler::cut::{order_key, spatial_key};
    use proptest::prelude::*;

    proptest! {
        /// `would_reduce` is how a respaced zoom decides which tiles to assemble again: when it
        /// says no, applying the zoom's reduction must remove nothing.
        #[test]
        fn would_reduce_is_false_only_when_nothing_goes(
            raw in prop::collection::vec((0u32..3, 0i64..1 << 12, 0i64..1 << 12, prop_oneof![Just(0u64), 0u64..1 << 14]), 1..80),
            gap in prop_oneof![Just(0u64), 1u64..1 << 10],
            fixed_every in 0usize..5,
        ) {
            let mut frags: Vec<(u64, u64, Vec<u8>)> = raw
                .iter()
                .enumerate()
                .map(|(i, &(layer, x, y, size))| {
                    let mut payload = Vec::new();
                    let geom = TileGeom::Points(vec![[0, 0]]);
                    put_fragment(&mut payload, None, size, &[], &geom);
                    (order_key(layer, spatial_key([x, y])), i as u64, payload)
                })
                .collect();
            frags.sort_by_key(|f| (f.0, f.1));
            let r = Reduction { gap, ..Reduction::NONE };
            let mut feats: Vec<Feat<'_>> = frags
                .iter()
                .map(|(order, seq, payload)| Feat {
                    layer: order_layer(*order),
                    seq: *seq,
                    size: fragment_size(payload).unwrap(),
                    spatial: order_spatial(*order),
                    id: None,
                    props: &[],
                    geom: TileGeom::Points(vec![[0, 0]]),
                })
                .collect();
            let mut keep = vec![true; feats.len()];
            let fixed: Vec<bool> = (0..feats.len())
                .map(|i| fixed_every > 0 && i % fixed_every == 0)
                .collect();
            let (dropped, coalesced) = thin::apply(&mut feats, &mut keep, &fixed, &r, false);
            if !would_reduce(0, &frags, &r).unwrap() {
                prop_assert_eq!(dropped + coalesced, 0);
            }
        }
    }
}
