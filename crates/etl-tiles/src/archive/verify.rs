//! Structural verification of a PMTiles v3 archive: what a reader or server would trip over,
//! reported as the first problem found, in one line.

use std::collections::BTreeMap;
use std::io::{Read, Seek};

use super::{
    Archive, ArchiveError, Compression, HEADER_LEN, Header, ROOT_SPACE, TileType,
    summary::count_run, walk::check_within,
};
use crate::tile::{TILE_ID_END, TileCoord, tile_coord, tile_zoom};

/// Latitude limit for header bounds: Web Mercator's ±85.0511 plus rounding slack.
const MAX_BOUNDS_LAT: f64 = 85.06;

/// The first problem `verify` found.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("header: {0}")]
    Header(String),
    #[error("truncated: {0}")]
    Truncated(String),
    #[error("sections: {0}")]
    Sections(String),
    #[error("directory: {0}")]
    Directory(String),
    #[error("order: {0}")]
    Order(String),
    #[error("offset: {0}")]
    Offset(String),
    #[error("unclustered: {0}")]
    Unclustered(String),
    #[error(
        "zoom mismatch: header says z{header_min}..=z{header_max}, entries span z{entries_min}..=z{entries_max}"
    )]
    ZoomMismatch {
        header_min: u8,
        header_max: u8,
        entries_min: u8,
        entries_max: u8,
    },
    #[error("bounds: {0}")]
    Bounds(String),
    #[error("metadata: {0}")]
    Metadata(String),
    #[error("counts: {0}")]
    Counts(String),
}

impl From<ArchiveError> for VerifyError {
    fn from(e: ArchiveError) -> Self {
        match e {
            ArchiveError::Io(e) => VerifyError::Io(e),
            ArchiveError::Truncated(m) => VerifyError::Truncated(m),
            ArchiveError::Metadata(m) => VerifyError::Metadata(m),
            e @ (ArchiveError::BadMagic
            | ArchiveError::UnsupportedVersion(_)
            | ArchiveError::UnsupportedCompression(_)) => VerifyError::Header(e.to_string()),
            other => VerifyError::Directory(other.to_string()),
        }
    }
}

/// What a valid archive holds.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyReport {
    /// Addressed tiles per zoom (run-length entries count every tile they cover).
    pub tiles_per_zoom: BTreeMap<u8, u64>,
    /// Tiles a client can fetch.
    pub addressed_tiles: u64,
    /// Directory entries (runs count once).
    pub tile_entries: u64,
    /// Distinct tile contents stored in the data section.
    pub unique_tiles: u64,
    /// The largest tile and its size in bytes.
    pub largest_tile: Option<(TileCoord, u32)>,
    /// The archive's size in bytes.
    pub total_size: u64,
    pub tile_type: TileType,
    pub tile_compression: Compression,
    pub clustered: bool,
}

/// Verifies an archive of `file_len` bytes starting at position 0 of `r`.
pub fn verify<R: Read + Seek>(r: R, file_len: u64) -> Result<VerifyReport, VerifyError> {
    let mut r = r;
    let mut head = Vec::with_capacity(HEADER_LEN);
    r.seek(std::io::SeekFrom::Start(0))?;
    (&mut r).take(HEADER_LEN as u64).read_to_end(&mut head)?;
    head.truncate(usize::try_from(file_len).unwrap_or(usize::MAX));
    let header = Header::from_bytes(&head)?;
    check_sections(&header, file_len)?;
    check_bounds(&header)?;

    let mut archive = Archive::open_with_len(r, file_len)?;
    check_metadata(&header, archive.metadata())?;

    let mut report = VerifyReport {
        tiles_per_zoom: BTreeMap::new(),
        addressed_tiles: 0,
        tile_entries: 0,
        unique_tiles: 0,
        largest_tile: None,
        total_size: file_len,
        tile_type: header.tile_type,
        tile_compression: header.tile_compression,
        clustered: header.clustered,
    };
    // One past the last tile id covered by the previous entry.
    let mut next_id: u64 = 0;
    let mut zooms: Option<(u8, u8)> = None;
    // Clustered: start and length of each new tile content, in offset order (which is tile-id
    // order when clustered), so a back-reference can be checked to be a real earlier tile.
    let mut starts: Vec<(u64, u32)> = Vec::new();
    let mut high_water: u64 = 0;
    // Unclustered: offsets, sorted and deduplicated at the end to count contents.
    let mut offsets: Vec<u64> = Vec::new();

    for entry in archive.entries() {
        let e = entry?;
        let last_id = e
            .tile_id
            .checked_add(u64::from(e.run_length) - 1)
            .filter(|&l| l < TILE_ID_END)
            .ok_or_else(|| {
                VerifyError::Directory(format!(
                    "tile {} + run length {} goes beyond the largest tile id",
                    e.tile_id, e.run_length
                ))
            })?;
        let name = describe(e.tile_id);
        if report.tile_entries > 0 && e.tile_id < next_id {
            return Err(VerifyError::Order(format!(
                "{name}: tile id not greater than the previous entry's last tile id {}",
                next_id - 1
            )));
        }
        next_id = last_id + 1;
        let end = e.offset.checked_add(u64::from(e.length));
        if end.is_none_or(|end| end > header.data_length) {
            return Err(VerifyError::Offset(format!(
                "{name}: offset {} + length {} beyond data section end {}",
                e.offset, e.length, header.data_length
            )));
        }
        if header.clustered {
            if e.offset >= high_water {
                // New content; a gap before it is wasteful but still clustered.
                starts.push((e.offset, e.length));
                high_water = e.offset + u64::from(e.length);
            } else {
                let reused = starts
                    .binary_search_by_key(&e.offset, |s| s.0)
                    .ok()
                    .and_then(|i| starts.get(i))
                    .is_some_and(|s| s.1 == e.length);
                if !reused {
                    return Err(VerifyError::Unclustered(format!(
                        "{name}: offset {} is before the end of earlier tiles' data ({high_water}) and is not a copy of an earlier tile, but the header says clustered",
                        e.offset
                    )));
                }
            }
        } else {
            offsets.push(e.offset);
        }

        let (z0, z1) = (
            tile_zoom(e.tile_id).unwrap_or(0),
            tile_zoom(last_id).unwrap_or(0),
        );
        zooms = Some(match zooms {
            None => (z0, z1),
            Some((a, b)) => (a.min(z0), b.max(z1)),
        });
        count_run(
            &mut report.tiles_per_zoom,
            e.tile_id,
            u64::from(e.run_length),
        );
        report.addressed_tiles += u64::from(e.run_length);
        report.tile_entries += 1;
        if report.largest_tile.is_none_or(|(_, len)| e.length > len)
            && let Some(c) = tile_coord(e.tile_id)
        {
            report.largest_tile = Some((c, e.length));
        }
    }
    report.unique_tiles = if header.clustered {
        starts.len() as u64
    } else {
        offsets.sort_unstable();
        offsets.dedup();
        offsets.len() as u64
    };

    if let Some((entries_min, entries_max)) = zooms
        && (entries_min, entries_max) != (header.min_zoom, header.max_zoom)
    {
        return Err(VerifyError::ZoomMismatch {
            header_min: header.min_zoom,
            header_max: header.max_zoom,
            entries_min,
            entries_max,
        });
    }
    // The counts are optional in the spec (0 = unknown), but a wrong count misleads clients.
    for (what, claimed, actual) in [
        (
            "addressed tiles",
            header.addressed_tiles,
            report.addressed_tiles,
        ),
        ("tile entries", header.tile_entries, report.tile_entries),
        ("tile contents", header.tile_contents, report.unique_tiles),
    ] {
        if claimed != 0 && claimed != actual {
            return Err(VerifyError::Counts(format!(
                "header says {claimed} {what}, the directories hold {actual}"
            )));
        }
    }
    Ok(report)
}

/// "tile 123 (z5/3/7)", or just the id when it is not a valid tile.
fn describe(id: u64) -> String {
    match tile_coord(id) {
        Some(c) => format!("tile {id} ({c})"),
        None => format!("tile {id}"),
    }
}

fn check_sections(h: &Header, file_len: u64) -> Result<(), VerifyError> {
    let sections = [
        ("root directory", h.root_offset, h.root_length),
        ("metadata", h.metadata_offset, h.metadata_length),
        ("leaf directories", h.leaf_offset, h.leaf_length),
        ("tile data", h.data_offset, h.data_length),
    ];
    for (name, offset, length) in sections {
        check_within(name, offset, length, file_len)?;
    }
    if h.root_length == 0 {
        return Err(VerifyError::Sections("root directory is empty".into()));
    }
    let root_end = h.root_offset + h.root_length;
    if root_end > ROOT_SPACE {
        return Err(VerifyError::Sections(format!(
            "root directory ends at {root_end}, beyond the first {ROOT_SPACE} bytes"
        )));
    }
    let mut spans: Vec<(&str, u64, u64)> = sections
        .iter()
        .filter(|s| s.2 > 0)
        .map(|&(n, o, l)| (n, o, o + l))
        .collect();
    spans.push(("header", 0, HEADER_LEN as u64));
    spans.sort_by_key(|s| (s.1, s.2));
    for pair in spans.windows(2) {
        if let [a, b] = pair
            && a.2 > b.1
        {
            return Err(VerifyError::Sections(format!(
                "{} [{}, {}) overlaps {} [{}, {})",
                a.0, a.1, a.2, b.0, b.1, b.2
            )));
        }
    }
    Ok(())
}

fn check_bounds(h: &Header) -> Result<(), VerifyError> {
    let [w, s, e, n] = h.bounds;
    // Header positions come from i32s, so they are never NaN and `>=` is the exact negation.
    let problem = if w >= e {
        Some("west is not less than east")
    } else if s >= n {
        Some("south is not less than north")
    } else if w < -180.0 || e > 180.0 {
        Some("longitude outside ±180")
    } else if s < -MAX_BOUNDS_LAT || n > MAX_BOUNDS_LAT {
        Some("latitude outside ±85.06")
    } else {
        None
    };
    match problem {
        Some(p) => Err(VerifyError::Bounds(format!("{p}: [{w}, {s}, {e}, {n}]"))),
        None => Ok(()),
    }
}

fn check_metadata(h: &Header, m: &serde_json::Value) -> Result<(), VerifyError> {
    // Only vector tiles need `vector_layers` (clients build their layer list from it);
    // raster and other tile types are valid without it.
    if matches!(h.tile_type, TileType::Mvt | TileType::Mlt) {
        match m.get("vector_layers") {
            Some(serde_json::Value::Array(_)) => {}
            Some(_) => {
                return Err(VerifyError::Metadata(
                    "`vector_layers` is not an array".into(),
                ));
            }
            None => {
                return Err(VerifyError::Metadata(
                    "vector tile archive without `vector_layers`".into(),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn bounds_rules() {
        let mut h = Header::from_bytes(&[&b"PMTiles\x03"[..], &[0u8; 119]].concat()).unwrap();
        h.bounds = [-180.0, -85.0511, 180.0, 85.0511];
        assert!(check_bounds(&h).is_ok());
        h.bounds = [10.0, 0.0, 10.0, 1.0];
        assert!(matches!(check_bounds(&h), Err(VerifyError::Bounds(_))));
        h.bounds = [0.0, 0.0, 1.0, 89.0];
        assert!(matches!(check_bounds(&h), Err(VerifyError::Bounds(_))));
    }
}
