//! What an archive holds, from its directory entries alone (no tile is read): what
//! `etl-pmtiles show FILE` prints.

use std::collections::BTreeMap;
use std::io::{Read, Seek};

use serde_json::{Value, json};

use super::{Archive, ArchiveError, Compression, Header, TileType};
use crate::tile::{TILE_ID_END, TileCoord, tile_coord, tile_zoom, zoom_first_id};

/// Tile counts and sizes of an archive.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Summary {
    /// Addressed tiles per zoom (a run-length entry counts every tile it covers, also when it
    /// crosses into the next zoom).
    pub tiles_per_zoom: BTreeMap<u8, u64>,
    /// Addressed tiles in all zooms.
    pub tiles: u64,
    /// Directory entries (a run counts once).
    pub tile_entries: u64,
    /// Distinct tile contents stored in the data section.
    pub contents: u64,
    /// Bytes of the distinct tile contents.
    pub total_tile_bytes: u64,
    /// The largest stored tile (the first in tile-id order among equals) and its size.
    pub largest: Option<(TileCoord, u32)>,
}

/// Walks the directory entries of `a` and counts its tiles.
///
/// Distinct contents are told apart by their data offset: for a clustered archive in constant
/// memory (a content is new when it starts past the data seen so far), otherwise by collecting
/// the offsets. The summary trusts the directories; use [`super::verify`] to check them.
pub fn summarize<R: Read + Seek>(a: &mut Archive<R>) -> Result<Summary, ArchiveError> {
    let clustered = a.header().clustered;
    let mut s = Summary::default();
    let mut high_water: u64 = 0;
    let mut contents: Vec<(u64, u32)> = Vec::new();
    for entry in a.entries() {
        let e = entry?;
        count_run(&mut s.tiles_per_zoom, e.tile_id, u64::from(e.run_length));
        s.tiles = s.tiles.saturating_add(u64::from(e.run_length));
        s.tile_entries += 1;
        if clustered {
            if e.offset >= high_water {
                s.contents += 1;
                s.total_tile_bytes = s.total_tile_bytes.saturating_add(u64::from(e.length));
                high_water = e.offset.saturating_add(u64::from(e.length));
            }
        } else {
            contents.push((e.offset, e.length));
        }
        if s.largest.is_none_or(|(_, len)| e.length > len)
            && let Some(c) = tile_coord(e.tile_id)
        {
            s.largest = Some((c, e.length));
        }
    }
    if !clustered {
        contents.sort_unstable();
        contents.dedup();
        s.contents = contents.len() as u64;
        s.total_tile_bytes = contents
            .iter()
            .fold(0u64, |sum, c| sum.saturating_add(u64::from(c.1)));
    }
    Ok(s)
}

/// Adds a run of `len` tiles from `start` to per-zoom counts, splitting it at zoom boundaries.
pub(crate) fn count_run(counts: &mut BTreeMap<u8, u64>, mut start: u64, mut len: u64) {
    while len > 0 {
        let Some(z) = tile_zoom(start) else { return };
        let zoom_end = zoom_first_id(z + 1).unwrap_or(TILE_ID_END);
        let take = len.min(zoom_end - start);
        let n = counts.entry(z).or_insert(0);
        *n = n.saturating_add(take);
        start += take;
        len -= take;
    }
}

fn compression_name(c: Compression) -> String {
    match c {
        Compression::Unknown => "unknown".into(),
        Compression::None => "none".into(),
        Compression::Gzip => "gzip".into(),
        Compression::Brotli => "brotli".into(),
        Compression::Zstd => "zstd".into(),
        Compression::Other(b) => format!("other({b})"),
    }
}

fn tile_type_name(t: TileType) -> String {
    match t {
        TileType::Unknown => "unknown".into(),
        TileType::Mvt => "mvt".into(),
        TileType::Png => "png".into(),
        TileType::Jpeg => "jpeg".into(),
        TileType::Webp => "webp".into(),
        TileType::Avif => "avif".into(),
        TileType::Mlt => "mlt".into(),
        TileType::Other(b) => format!("other({b})"),
    }
}

impl Summary {
    /// The JSON `etl-pmtiles show FILE` prints: the header (compression and tile type by
    /// name), the metadata as stored, and the counts of this summary.
    pub fn to_json(&self, header: &Header, metadata: &Value) -> Value {
        let h = header;
        let per_zoom: serde_json::Map<String, Value> = self
            .tiles_per_zoom
            .iter()
            .map(|(z, n)| (z.to_string(), Value::from(*n)))
            .collect();
        let largest = match self.largest {
            Some((c, bytes)) => json!({"z": c.z, "x": c.x, "y": c.y, "bytes": bytes}),
            None => Value::Null,
        };
        json!({
            "header": {
                "version": h.version,
                "root_offset": h.root_offset,
                "root_length": h.root_length,
                "metadata_offset": h.metadata_offset,
                "metadata_length": h.metadata_length,
                "leaf_offset": h.leaf_offset,
                "leaf_length": h.leaf_length,
                "data_offset": h.data_offset,
                "data_length": h.data_length,
                "addressed_tiles": h.addressed_tiles,
                "tile_entries": h.tile_entries,
                "tile_contents": h.tile_contents,
                "clustered": h.clustered,
                "internal_compression": compression_name(h.internal_compression),
                "tile_compression": compression_name(h.tile_compression),
                "tile_type": tile_type_name(h.tile_type),
                "min_zoom": h.min_zoom,
                "max_zoom": h.max_zoom,
                "bounds": h.bounds,
                "center": [h.center_lon, h.center_lat, h.center_zoom],
            },
            "metadata": metadata,
            "tiles_per_zoom": per_zoom,
            "tiles": self.tiles,
            "tile_entries": self.tile_entries,
            "contents": self.contents,
            "tile_bytes": self.total_tile_bytes,
            "largest_tile": largest,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_split_at_zoom_boundaries() {
        let mut m = BTreeMap::new();
        // ids 3, 4 are z1; 5..=7 are z2
        count_run(&mut m, 3, 5);
        assert_eq!(m.get(&1), Some(&2));
        assert_eq!(m.get(&2), Some(&3));
        // A run past the last tile id stops there.
        count_run(&mut m, TILE_ID_END - 1, 10);
        assert_eq!(m.get(&31), Some(&1));
        count_run(&mut m, u64::MAX, 10);
        assert_eq!(m.values().sum::<u64>(), 6);
    }

    #[test]
    fn names() {
        assert_eq!(compression_name(Compression::Other(9)), "other(9)");
        assert_eq!(tile_type_name(TileType::Mvt), "mvt");
    }
}
