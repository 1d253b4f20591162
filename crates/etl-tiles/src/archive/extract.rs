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
use crate::tile::{MAX_LAT, TILE_ID_END, lonlat_to_world, tile_zoom, zoom_first_id};

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
    /// The source's directory is out of order or out of range.
    #[error("source: {0}")]
    Damaged(String),
    /// Writing the extract failed.
    #[error("write: {0}")]
    Write(ArchiveError),
}

/// Checks an area and zoom range before any work: `[west, south, east, north]` in degrees,
/// west < east (an area across the antimeridian is two extracts), south < north after
/// clamping to Web Mercator's ±85.05°, and `min_zoom <= max_zoom <= 31`.
pub fn check_area(bbox: [f64; 4], (min_zoom, max_zoom): (u8, u8)) -> Result<(), ExtractError> {
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
    let (x0, y0) = lonlat_to_world(w, n);
    let (x1, y1) = lonlat_to_world(e, s);
    if x1 <= x0 || y1 <= y0 {
        return Err(ExtractError::Area(format!(
            "--bbox {w},{s},{e},{n}: no area left inside Web Mercator's latitudes (±{MAX_LAT:.2})"
        )));
    }
    if min_zoom > max_zoom || max_zoom > crate::tile::MAX_ZOOM {
        return Err(ExtractError::Area(format!(
            "zooms {min_zoom}..{max_zoom}: the min zoom must not be above the max zoom (at most {})",
            crate::tile::MAX_ZOOM
        )));
    }
    Ok(())
}

/// Copies the tiles of `bbox` (see [`check_area`]) at zooms `min_zoom..=max_zoom` from `src`
/// into a new archive on `out`, with the source's metadata (its zooms, bounds and center made
/// the extract's), tile type and compression.
pub fn extract<R: Read + Seek, W: Write + Seek>(
    src: &Archive<R>,
    out: W,
    bbox: [f64; 4],
    (min_zoom, max_zoom): (u8, u8),
) -> Result<(W, ExtractReport), ExtractError> {
    check_area(bbox, (min_zoom, max_zoom))?;
    let header = src.header().clone();
    if min_zoom > header.max_zoom || max_zoom < header.min_zoom {
        return Err(ExtractError::Area(format!(
            "zooms {min_zoom}..{max_zoom}: the archive has z{}-z{}",
            header.min_zoom, header.max_zoom
        )));
    }
    let mut writer = ArchiveWriter::new(out).map_err(ExtractError::Write)?;
    writer.set_tile_format(header.tile_type, header.tile_compression);
    let mut report = ExtractReport::default();
    // One sweep: the source's entries in tile-id order (checked), each cut at zoom borders
    // (a run of identical tiles may cross one) and intersected with that zoom's runs, which
    // are made as the sweep reaches the zoom.
    let mut zoom_runs: Option<(u8, Vec<(u64, u64)>)> = None;
    let mut next = 0usize;
    let mut covered = 0u64;
    let (mut lo, mut hi) = (u8::MAX, 0u8);
    for entry in src.walk_entries() {
        let entry = entry.map_err(ExtractError::Read)?;
        let start = entry.tile_id;
        let end = start
            .checked_add(u64::from(entry.run_length))
            .filter(|e| *e <= TILE_ID_END)
            .ok_or_else(|| ExtractError::Damaged(format!("tile id {start} out of range")))?;
        if start < covered {
            return Err(ExtractError::Damaged(format!(
                "directory out of order: tile id {start} after {covered}"
            )));
        }
        covered = end;
        let mut data: Option<bytes::Bytes> = None;
        let mut from = start;
        while from < end {
            let z =
                tile_zoom(from).ok_or_else(|| ExtractError::Damaged(format!("tile id {from}")))?;
            if z > max_zoom {
                break;
            }
            let zoom_end = zoom_first_id(z + 1).unwrap_or(TILE_ID_END).min(end);
            if z >= min_zoom {
                if zoom_runs.as_ref().is_none_or(|(rz, _)| *rz != z) {
                    zoom_runs = Some((z, area_runs(bbox, z)));
                    next = 0;
                }
                let runs = zoom_runs.as_ref().map_or(&[][..], |(_, r)| r.as_slice());
                while runs.get(next).is_some_and(|r| r.1 <= from) {
                    next += 1;
                }
                let mut k = next;
                while let Some(&(a, b)) = runs.get(k) {
                    if a >= zoom_end {
                        break;
                    }
                    let (x, y) = (a.max(from), b.min(zoom_end));
                    if x < y {
                        let bytes = match &data {
                            Some(d) => d,
                            None => {
                                data.insert(src.tile_bytes(&entry).map_err(ExtractError::Read)?)
                            }
                        };
                        writer
                            .add_tile_run(x, y - x, bytes)
                            .map_err(ExtractError::Write)?;
                        report.tiles += y - x;
                        (lo, hi) = (lo.min(z), hi.max(z));
                    }
                    k += 1;
                }
            }
            from = zoom_end;
        }
        if tile_zoom(start).is_some_and(|z| z > max_zoom) {
            break;
        }
    }
    report.tile_contents = writer.contents();
    let [w, s, e, n] = bbox;
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
        metadata: fitted_metadata(src.metadata(), (lo, hi), bounds, center),
    };
    let out = writer.finish(&meta).map_err(ExtractError::Write)?;
    Ok((out, report))
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

/// The tile-id runs of `bbox`'s tiles at zoom `z`, sorted and joined.
fn area_runs(bbox: [f64; 4], z: u8) -> Vec<(u64, u64)> {
    let [w, s, e, n] = bbox;
    let (x0, y0) = lonlat_to_world(w, n);
    let (x1, y1) = lonlat_to_world(e, s);
    let mut runs = Vec::new();
    let shift = crate::tile::WORLD_BITS - u32::from(z);
    let last = (1i64 << z) - 1;
    let t = |v: i64| (v >> shift).clamp(0, last);
    // The east and south edges are exclusive: an edge on a tile border takes no tile beyond
    // it. (`check_area` made sure x1 > x0 and y1 > y0.)
    let r = [t(x0), t(y0), t((x1 - 1).max(x0)), t((y1 - 1).max(y0))];
    crate::tiler::aligned_blocks(z, r, &mut |first, count| runs.push((first, first + count)));
    crate::tiler::join_runs(runs)
}
