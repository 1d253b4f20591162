//! `extract`: the tiles of an area and a zoom range, copied byte for byte into a new clustered
//! archive (offline packages for TAK devices).
//!
//! The area's tiles at each zoom are decomposed into aligned quadtree blocks, each one run of
//! tile ids on the Hilbert curve; the source's entries, in tile-id order, are intersected with
//! those runs in one sweep. A run-length entry (a polygon interior) is cut to the part inside
//! the area and written as one run again, so an extract costs the source's directory and the
//! area's outline, not its tile count.

use std::io::{Read, Seek, Write};

use super::{Archive, ArchiveError, ArchiveMeta, ArchiveWriter};
use crate::tile::{MAX_LAT, lonlat_to_world};

/// What an extract wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtractReport {
    /// Tiles addressed (run-length entries count every tile).
    pub tiles: u64,
    /// Distinct tile contents written.
    pub tile_contents: u64,
}

/// Why an extract failed.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// The area or zooms asked for make no sense.
    #[error("{0}")]
    Area(String),
    /// The source archive is damaged.
    #[error("source: {0}")]
    Read(ArchiveError),
    /// Writing the extract failed.
    #[error("write: {0}")]
    Write(ArchiveError),
}

/// Copies the tiles of `bbox` (`[west, south, east, north]` in degrees, west < east: an area
/// across the antimeridian is two extracts) at zooms `min_zoom..=max_zoom` from `src` into a
/// new archive on `out`, with the source's metadata, tile type and compression.
pub fn extract<R: Read + Seek, W: Write + Seek>(
    src: &Archive<R>,
    out: W,
    bbox: [f64; 4],
    (min_zoom, max_zoom): (u8, u8),
) -> Result<(W, ExtractReport), ExtractError> {
    let [w, s, e, n] = bbox;
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
    if min_zoom > max_zoom || max_zoom > crate::tile::MAX_ZOOM {
        return Err(ExtractError::Area(format!(
            "zooms {min_zoom}..{max_zoom}: the min zoom must not be above the max zoom (at most {})",
            crate::tile::MAX_ZOOM
        )));
    }
    let header = src.header().clone();
    let (lo, hi) = (min_zoom.max(header.min_zoom), max_zoom.min(header.max_zoom));
    let wanted = area_runs(bbox, lo, hi);

    let mut writer = ArchiveWriter::new(out).map_err(ExtractError::Write)?;
    writer.set_tile_format(header.tile_type, header.tile_compression);
    let mut report = ExtractReport::default();
    // One sweep: the source's entries and the wanted runs are both in tile-id order.
    let mut next = 0usize;
    for entry in src.walk_entries() {
        let entry = entry.map_err(ExtractError::Read)?;
        let (start, end) = (entry.tile_id, entry.tile_id + u64::from(entry.run_length));
        while wanted.get(next).is_some_and(|r| r.1 <= start) {
            next += 1;
        }
        let mut data: Option<bytes::Bytes> = None;
        let mut k = next;
        while let Some(&(a, b)) = wanted.get(k) {
            if a >= end {
                break;
            }
            let (from, to) = (a.max(start), b.min(end));
            if from < to {
                let bytes = match &data {
                    Some(d) => d,
                    None => data.insert(src.tile_bytes(&entry).map_err(ExtractError::Read)?),
                };
                writer
                    .add_tile_run(from, to - from, bytes)
                    .map_err(ExtractError::Write)?;
                report.tiles += to - from;
            }
            k += 1;
        }
    }
    report.tile_contents = writer.contents();
    let clamp_lat = |v: f64| v.clamp(-MAX_LAT, MAX_LAT);
    let area = [w, clamp_lat(s), e, clamp_lat(n)];
    let both = [
        area[0].max(header.bounds[0]),
        area[1].max(header.bounds[1]),
        area[2].min(header.bounds[2]),
        area[3].min(header.bounds[3]),
    ];
    // The area where the source has data; the area asked for when they do not meet.
    let bounds = if both[0] < both[2] && both[1] < both[3] {
        both
    } else {
        area
    };
    let meta = ArchiveMeta {
        min_zoom: lo,
        max_zoom: hi.max(lo),
        bounds,
        center: (
            (bounds[0] + bounds[2]) / 2.0,
            (bounds[1] + bounds[3]) / 2.0,
            lo,
        ),
        metadata: src.metadata().clone(),
    };
    let out = writer.finish(&meta).map_err(ExtractError::Write)?;
    Ok((out, report))
}

/// The tile-id runs of `bbox`'s tiles at zooms `lo..=hi`, sorted and joined.
fn area_runs(bbox: [f64; 4], lo: u8, hi: u8) -> Vec<(u64, u64)> {
    let [w, s, e, n] = bbox;
    let (x0, y0) = lonlat_to_world(w, n);
    let (x1, y1) = lonlat_to_world(e, s);
    let mut runs = Vec::new();
    for z in lo..=hi {
        let shift = crate::tile::WORLD_BITS - u32::from(z);
        let last = (1i64 << z) - 1;
        let t = |v: i64| (v >> shift).clamp(0, last);
        // The east and south edges are exclusive: an edge on a tile border takes no tile
        // beyond it.
        let r = [t(x0), t(y0), t((x1 - 1).max(x0)), t((y1 - 1).max(y0))];
        crate::tiler::aligned_blocks(z, r, &mut |first, count| runs.push((first, first + count)));
    }
    runs.sort_unstable();
    let mut joined: Vec<(u64, u64)> = Vec::with_capacity(runs.len());
    for (a, b) in runs {
        match joined.last_mut() {
            Some(last) if last.1 == a => last.1 = b,
            _ => joined.push((a, b)),
        }
    }
    joined
}
