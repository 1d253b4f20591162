//! `extract`: the tiles of an area and a zoom range, copied byte for byte into a new clustered
//! archive (offline packages for TAK devices), from any [`RangeReader`]: a local file, or a
//! remote archive read by ranged requests without downloading it.
//!
//! The area's tiles at each zoom are decomposed into aligned quadtree blocks, each one run of
//! tile ids on the Hilbert curve ([`super::area`]). The source's directories are walked in
//! tile-id order, reading only the leaf directories whose ids meet those runs; the tile entries
//! met are cut to the runs (a run-length entry of a polygon interior stays one run). Their
//! bytes are then read in batches: the byte ranges of a batch sorted, neighbours less than
//! [`GAP_BYTES`] apart joined into one request, a few requests in flight, so a clustered
//! source gives a few large reads per zoom, and memory stays at one batch whatever the area.

use std::io::{Seek, Write};
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

use super::area::Area;
use super::range::{RangeReader, ReadError};
use super::walk::{absolute, check_entry, read, read_leaf};
use super::{
    ArchiveError, ArchiveIndex, ArchiveMeta, ArchiveWriter, Entry, Header, MAX_DIRECTORY_DEPTH,
    MAX_TILE_BYTES,
};
use crate::tile::{MAX_LAT, MAX_ZOOM, TILE_ID_END, lonlat_to_world, tile_zoom, zoom_first_id};

/// Tile bytes one batch reads before they are written out.
pub const BATCH_BYTES: u64 = 16 << 20;
/// Byte ranges closer than this are read as one (the bytes between are read and dropped).
pub const GAP_BYTES: u64 = 256 << 10;
/// A joined read grows to at most this (one tile may be larger; it is read alone).
const MAX_READ_BYTES: u64 = 8 << 20;
/// Reads in flight at once.
const READS_IN_FLIGHT: usize = 4;
/// Pieces one batch holds at most (runs of one shared tile, an ocean, add pieces but no bytes).
const BATCH_PIECES: usize = 1 << 20;

/// What an extract wrote and read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtractReport {
    /// Tiles addressed (run-length entries count every tile).
    pub tiles: u64,
    /// Distinct tile contents written.
    pub tile_contents: u64,
    /// Leaf directories read (of the source's, only those meeting the area).
    pub leaves_read: u64,
    /// Requests for tile bytes.
    pub tile_reads: u64,
    /// Bytes read from the source in all (header, directories, metadata and tiles).
    pub bytes_read: u64,
}

/// Why an extract failed. `E` is the reader's own error.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError<E> {
    /// The area or zooms asked for make no sense.
    #[error("{0}")]
    Area(String),
    /// The region is too detailed for a zoom the walk reached (see
    /// [`super::MAX_REGION_VISITS`]): the region file's problem, not the command line's.
    #[error("{0}")]
    Region(String),
    /// The source archive is damaged.
    #[error("source: {0}")]
    Read(ArchiveError),
    /// The source's directory is out of order or out of range.
    #[error("source: {0}")]
    Damaged(String),
    /// The reader failed (I/O, network, the archive changed while it was read).
    #[error("source: {0}")]
    Source(E),
    /// Writing the extract failed.
    #[error("write: {0}")]
    Write(ArchiveError),
}

impl<E> From<ArchiveError> for ExtractError<E> {
    fn from(e: ArchiveError) -> Self {
        ExtractError::Read(e)
    }
}

impl<E> From<ReadError<E>> for ExtractError<E> {
    fn from(e: ReadError<E>) -> Self {
        match e {
            ReadError::Corrupt(e) => ExtractError::Read(e),
            ReadError::Source(e) => ExtractError::Source(e),
        }
    }
}

/// Checks an area and zoom range before any work: a box is `[west, south, east, north]` in
/// degrees, west < east (an area across the antimeridian is two extracts), south < north after
/// clamping to Web Mercator's ±85.05°; `min_zoom <= max_zoom <= 31`.
pub fn check_area<E>(area: &Area, (min_zoom, max_zoom): (u8, u8)) -> Result<(), ExtractError<E>> {
    if let Area::Bbox(bbox) = area {
        let [w, s, e, n] = *bbox;
        if !bbox.iter().all(|v| v.is_finite()) || w >= e || s >= n {
            return Err(ExtractError::Area(format!(
                "--bbox {w},{s},{e},{n}: want WEST,SOUTH,EAST,NORTH with west < east and south < \
                 north (an area across the antimeridian is two extracts)"
            )));
        }
        if w < -180.0 || e > 180.0 || s < -90.0 || n > 90.0 {
            return Err(ExtractError::Area(format!(
                "--bbox {w},{s},{e},{n}: longitudes go from -180 to 180, latitudes from -90 to 90"
            )));
        }
        let (x0, y0) = lonlat_to_world(w, n);
        let (x1, y1) = lonlat_to_world(e, s);
        if x1 <= x0 || y1 <= y0 {
            return Err(ExtractError::Area(format!(
                "--bbox {w},{s},{e},{n}: no area left inside Web Mercator's latitudes (±{MAX_LAT:.2})"
            )));
        }
    }
    if min_zoom > max_zoom || max_zoom > MAX_ZOOM {
        return Err(ExtractError::Area(format!(
            "zooms {min_zoom}..{max_zoom}: the min zoom must not be above the max zoom (at most {MAX_ZOOM})"
        )));
    }
    Ok(())
}

/// A reader that counts what it reads, for the report.
struct Counted<'a, R> {
    r: &'a R,
    bytes: std::cell::Cell<u64>,
}

impl<R: RangeReader> RangeReader for Counted<'_, R> {
    type Error = R::Error;

    fn size(&self) -> u64 {
        self.r.size()
    }

    async fn read_range(&self, offset: u64, len: u64) -> Result<Bytes, R::Error> {
        let got = self.r.read_range(offset, len).await?;
        self.bytes.set(self.bytes.get() + got.len() as u64);
        Ok(got)
    }
}

/// Copies the tiles of `area` (see [`check_area`]) at zooms `min_zoom..=max_zoom` from the
/// archive `src` reads into a new archive on `out`, with the source's metadata (its zooms,
/// bounds and center made the extract's), tile type and compression.
pub async fn extract<R: RangeReader, W: Write + Seek>(
    src: &R,
    out: W,
    area: &Area,
    (min_zoom, max_zoom): (u8, u8),
) -> Result<(W, ExtractReport), ExtractError<R::Error>> {
    check_area(area, (min_zoom, max_zoom))?;
    let r = Counted {
        r: src,
        bytes: std::cell::Cell::new(0),
    };
    let index = ArchiveIndex::open(&r).await?;
    let header = index.header().clone();
    if min_zoom > header.max_zoom || max_zoom < header.min_zoom {
        return Err(ExtractError::Area(format!(
            "zooms {min_zoom}..{max_zoom}: the archive has z{}-z{}",
            header.min_zoom, header.max_zoom
        )));
    }
    let mut want = Wanted {
        area,
        zooms: (min_zoom.max(header.min_zoom), max_zoom.min(header.max_zoom)),
        kept: Vec::new(),
    };
    let mut writer = ArchiveWriter::new(out).map_err(ExtractError::Write)?;
    writer.set_tile_format(header.tile_type, header.tile_compression);
    let mut report = ExtractReport::default();
    let mut batch = Batch::default();
    let mut zooms = (u8::MAX, 0u8);
    let mut stack = vec![Frame {
        entries: Arc::new(index.root().to_vec()),
        next: 0,
        end: TILE_ID_END,
        depth: 0,
    }];
    // The last leaf read: a directory pointing at one leaf again gets it without a request
    // (and then fails the order check below).
    let mut last_leaf: Option<((u64, u32), super::Leaf)> = None;
    // Every entry must start at or after the end of the one before (directories in tile-id
    // order, runs not overlapping).
    let mut covered = 0u64;
    let mut overlaps: Vec<(u64, u64)> = Vec::new();
    while let Some(top) = stack.last_mut() {
        let Some(&e) = top.entries.get(top.next) else {
            stack.pop();
            continue;
        };
        top.next += 1;
        if e.tile_id < covered || e.tile_id >= top.end {
            return Err(ExtractError::Damaged(format!(
                "directory out of order: tile id {} after {covered} (directory up to {})",
                e.tile_id, top.end
            )));
        }
        // Past the last zoom wanted: nothing more to find.
        if tile_zoom(e.tile_id).is_none_or(|z| z > want.zooms.1) {
            break;
        }
        if e.is_leaf() {
            // A leaf holds the ids up to the next entry of its directory.
            let end = top
                .entries
                .get(top.next)
                .map_or(top.end, |n| n.tile_id.min(top.end));
            covered = e.tile_id;
            want.overlaps(e.tile_id, end, true, &mut overlaps)?;
            if overlaps.is_empty() {
                continue;
            }
            let depth = top.depth + 1;
            if depth > MAX_DIRECTORY_DEPTH {
                return Err(ExtractError::Damaged(format!(
                    "leaf directories nested deeper than {MAX_DIRECTORY_DEPTH}"
                )));
            }
            let key = (e.offset, e.length);
            let leaf = match &last_leaf {
                Some((k, leaf)) if *k == key => leaf.clone(),
                _ => {
                    let leaf = Arc::new(read_leaf(&r, &header, &e).await?);
                    report.leaves_read += 1;
                    last_leaf = Some((key, leaf.clone()));
                    leaf
                }
            };
            if leaf.is_empty() {
                return Err(ExtractError::Damaged(format!(
                    "the leaf directory for tile id {} is empty",
                    e.tile_id
                )));
            }
            stack.push(Frame {
                entries: leaf,
                next: 0,
                end,
                depth,
            });
            continue;
        }
        let end = e
            .tile_id
            .checked_add(u64::from(e.run_length))
            .filter(|end| *end <= top.end)
            .ok_or_else(|| {
                ExtractError::Damaged(format!(
                    "tile id {} + run {} beyond its directory's end {}",
                    e.tile_id, e.run_length, top.end
                ))
            })?;
        covered = end;
        want.overlaps(e.tile_id, end, false, &mut overlaps)?;
        if overlaps.is_empty() {
            continue;
        }
        // (Directory decoding refused zero lengths.)
        check_entry(&e, "data", header.data_length, MAX_TILE_BYTES)
            .map_err(|m| ArchiveError::Entry(format!("tile id {}: {m}", e.tile_id)))?;
        for &(from, to) in &overlaps {
            for id in [from, to - 1] {
                let z = tile_zoom(id).unwrap_or(MAX_ZOOM);
                zooms = (zooms.0.min(z), zooms.1.max(z));
            }
            batch.push(Piece {
                from,
                count: to - from,
                offset: e.offset,
                len: u64::from(e.length),
            });
        }
        if batch.bytes >= BATCH_BYTES || batch.pieces.len() >= BATCH_PIECES {
            batch.flush(&r, &header, &mut writer, &mut report).await?;
        }
    }
    batch.flush(&r, &header, &mut writer, &mut report).await?;
    report.tile_contents = writer.contents();
    report.bytes_read = r.bytes.get();
    let asked = area.bounds();
    let b = header.bounds;
    let both = [
        asked[0].max(b[0]),
        asked[1].max(b[1]),
        asked[2].min(b[2]),
        asked[3].min(b[3]),
    ];
    // The area where the source has data; the area asked for when they do not meet.
    let bounds = if both[0] < both[2] && both[1] < both[3] {
        both
    } else {
        asked
    };
    let (mut lo, mut hi) = zooms;
    if lo > hi {
        (lo, hi) = (min_zoom.max(header.min_zoom), max_zoom.min(header.max_zoom));
    }
    let center = (
        (bounds[0] + bounds[2]) / 2.0,
        (bounds[1] + bounds[3]) / 2.0,
        lo,
    );
    let meta = ArchiveMeta {
        min_zoom: lo,
        max_zoom: hi,
        bounds,
        center,
        metadata: fitted_metadata(index.metadata(), (lo, hi), bounds, center),
    };
    let out = writer.finish(&meta).map_err(ExtractError::Write)?;
    Ok((out, report))
}

/// A directory being walked: its entries, the next one, and the end of the ids it holds.
struct Frame {
    entries: Arc<Vec<Entry>>,
    next: usize,
    end: u64,
    depth: usize,
}

/// The area's tile-id runs, made zoom by zoom as the walk reaches each zoom (an archive that
/// claims zooms it has no tiles at costs nothing there), at most the zooms a span crosses kept.
struct Wanted<'a> {
    area: &'a Area,
    /// The zooms wanted that the archive has.
    zooms: (u8, u8),
    kept: Vec<(u8, Vec<(u64, u64)>)>,
}

impl Wanted<'_> {
    /// Sets `out` to the parts of ids `a..b` the area wants, in order; with `any`, stops at
    /// the first (a leaf only needs to know whether to be read).
    fn overlaps<E>(
        &mut self,
        a: u64,
        b: u64,
        any: bool,
        out: &mut Vec<(u64, u64)>,
    ) -> Result<(), ExtractError<E>> {
        out.clear();
        let (Some(za), Some(zb)) = (tile_zoom(a), tile_zoom(b.saturating_sub(1).max(a))) else {
            return Ok(());
        };
        // Zooms behind the walk are done with.
        self.kept.retain(|(z, _)| *z >= za);
        for z in za.max(self.zooms.0)..=zb.min(self.zooms.1) {
            let (Some(first), next) = (zoom_first_id(z), zoom_first_id(z + 1)) else {
                break;
            };
            let (lo, hi) = (a.max(first), b.min(next.unwrap_or(TILE_ID_END)));
            if !self.kept.iter().any(|(k, _)| *k == z) {
                let runs = self.area.runs_at(z).map_err(ExtractError::Region)?;
                self.kept.push((z, runs));
            }
            let runs = self
                .kept
                .iter()
                .find(|(k, _)| *k == z)
                .map_or(&[][..], |(_, r)| r.as_slice());
            let i = runs.partition_point(|w| w.1 <= lo);
            for &(x, y) in runs.iter().skip(i).take_while(|w| w.0 < hi) {
                out.push((x.max(lo), y.min(hi)));
                if any {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

/// Tiles `from..from + count`, all holding the `len` bytes at `offset` in the data section.
struct Piece {
    from: u64,
    count: u64,
    offset: u64,
    len: u64,
}

/// Pieces in tile-id order waiting for their bytes.
#[derive(Default)]
struct Batch {
    pieces: Vec<Piece>,
    /// The bytes of the distinct ranges the pieces need (a tile that many entries or runs
    /// share counts once).
    bytes: u64,
    ranges: std::collections::HashSet<(u64, u64)>,
}

impl Batch {
    fn push(&mut self, p: Piece) {
        if self.ranges.insert((p.offset, p.len)) {
            self.bytes += p.len;
        }
        self.pieces.push(p);
    }

    /// Reads the batch's bytes (joined ranges, a few in flight) and writes its pieces in order.
    async fn flush<R: RangeReader, W: Write + Seek>(
        &mut self,
        r: &R,
        h: &Header,
        writer: &mut ArchiveWriter<W>,
        report: &mut ExtractReport,
    ) -> Result<(), ExtractError<R::Error>> {
        if self.pieces.is_empty() {
            return Ok(());
        }
        let mut ranges: Vec<(u64, u64)> = self
            .pieces
            .iter()
            .map(|p| (p.offset, p.offset + p.len))
            .collect();
        ranges.sort_unstable();
        ranges.dedup();
        // Neighbours are joined when the bytes between are fewer than GAP_BYTES and fewer
        // than the tile bytes the read needs so far (so a batch reads at most twice what it
        // needs), up to MAX_READ_BYTES; a range inside the read is always taken from it.
        let mut reads: Vec<(u64, u64)> = Vec::new();
        let mut needed = 0u64;
        for (a, b) in ranges {
            match reads.last_mut() {
                Some(last) if b <= last.1 => {}
                Some(last)
                    if a <= last.1.saturating_add(GAP_BYTES.min(needed))
                        && b - last.0 <= MAX_READ_BYTES =>
                {
                    needed += b - a.max(last.1);
                    last.1 = b;
                }
                _ => {
                    needed = b - a;
                    reads.push((a, b));
                }
            }
        }
        report.tile_reads += reads.len() as u64;
        let got: Vec<Bytes> = futures::stream::iter(reads.iter().map(|&(a, b)| async move {
            let abs = absolute(h.data_offset, a, "tile")?;
            read(r, abs, b - a, "tile").await
        }))
        .buffered(READS_IN_FLIGHT)
        .try_collect()
        .await?;
        for p in self.pieces.drain(..) {
            let i = reads.partition_point(|x| x.0 <= p.offset).saturating_sub(1);
            let (Some(&(a, _)), Some(bytes)) = (reads.get(i), got.get(i)) else {
                return Err(ExtractError::Damaged(format!(
                    "tile id {}: no read",
                    p.from
                )));
            };
            let at = usize::try_from(p.offset - a).unwrap_or(usize::MAX);
            let end = at.saturating_add(usize::try_from(p.len).unwrap_or(usize::MAX));
            let Some(data) = bytes.get(at..end) else {
                return Err(ExtractError::Damaged(format!(
                    "tile id {}: short read",
                    p.from
                )));
            };
            writer
                .add_tile_run(p.from, p.count, data)
                .map_err(ExtractError::Write)?;
            report.tiles += p.count;
        }
        self.bytes = 0;
        self.ranges.clear();
        Ok(())
    }
}

/// The source's metadata with its zooms, bounds and center (where it has them) made the
/// extract's, and each vector layer's zooms kept within the extract's.
fn fitted_metadata(
    src: &serde_json::Value,
    (lo, hi): (u8, u8),
    bounds: [f64; 4],
    center: (f64, f64, u8),
) -> serde_json::Value {
    use serde_json::{Value, json};
    let mut m = src.clone();
    let Value::Object(obj) = &mut m else {
        return m;
    };
    for (key, value) in [
        ("minzoom", json!(lo)),
        ("maxzoom", json!(hi)),
        ("bounds", json!(bounds)),
        ("center", json!([center.0, center.1, center.2])),
    ] {
        if obj.contains_key(key) {
            obj.insert(key.to_owned(), value);
        }
    }
    if let Some(Value::Array(layers)) = obj.get_mut("vector_layers") {
        for layer in layers.iter_mut().filter_map(Value::as_object_mut) {
            let clamp = |v: Option<&Value>, d: u8| {
                v.and_then(Value::as_u64)
                    .map_or(d, |z| u8::try_from(z).unwrap_or(u8::MAX))
                    .clamp(lo, hi)
            };
            let (a, b) = (
                clamp(layer.get("minzoom"), lo),
                clamp(layer.get("maxzoom"), hi),
            );
            layer.insert("minzoom".into(), json!(a));
            layer.insert("maxzoom".into(), json!(b));
        }
    }
    m
}
