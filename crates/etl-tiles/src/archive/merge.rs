//! Merging disjoint PMTiles parts (the outputs of a sharded run: different zoom ranges or
//! disjoint tile sets) into one clustered, deduplicated archive.
//!
//! The merge is a k-way merge of the parts' directory entries by tile id, streaming: each part
//! contributes one pending entry and one directory per nesting level (what
//! [`Archive::entries`] holds), and tile bytes are copied one entry at a time into an
//! [`ArchiveWriter`], which deduplicates and run-length encodes the merged sequence again.
//!
//! Tile ids present in two parts are an error ([`MergeError::Overlap`]): the parts of a sharded
//! run must be disjoint, and silently picking one tile would hide a sharding bug.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Read, Seek, SeekFrom, Write};

use serde_json::{Map, Value};

use super::{
    Archive, ArchiveError, ArchiveMeta, ArchiveWriter, Compression, Entry, HEADER_LEN, Header,
    TileType,
};
use crate::tile::{TILE_ID_END, tile_coord, tile_zoom};

/// Why a merge failed. Errors about one input name its index in `parts`.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("nothing to merge: no parts given")]
    NoParts,
    #[error("part {part}: tile type {tile_type:?}, but only MVT and MLT archives can be merged")]
    NotMvt { part: usize, tile_type: TileType },
    #[error(
        "part {part}: tile type {found:?} differs from part 0's {expected:?}; all parts must agree"
    )]
    TypeMismatch {
        part: usize,
        found: TileType,
        expected: TileType,
    },
    #[error(
        "part {part}: tile compression {found:?} is not supported (merged archives hold gzip-compressed tiles)"
    )]
    UnsupportedCompression { part: usize, found: Compression },
    #[error(
        "part {part}: tile compression {found:?} differs from part 0's {expected:?}; all parts must agree"
    )]
    CompressionMismatch {
        part: usize,
        found: Compression,
        expected: Compression,
    },
    #[error(
        "parts are not disjoint: tile z{z}/{x}/{y} is in part {first_part} and in part {second_part}"
    )]
    Overlap {
        z: u8,
        x: u32,
        y: u32,
        /// The part whose entry for the tile was merged first (for the same tile id, the
        /// lower index).
        first_part: usize,
        second_part: usize,
    },
    #[error("part {part}: metadata: {message}")]
    Metadata { part: usize, message: String },
    #[error("part {part}: {source}")]
    Part {
        part: usize,
        #[source]
        source: ArchiveError,
    },
    #[error("writing the merged archive: {0}")]
    Write(#[source] ArchiveError),
}

/// What a merge produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeReport {
    /// Number of parts merged.
    pub parts: usize,
    /// Addressed tiles taken from each part, in `parts` order.
    pub part_tiles: Vec<u64>,
    /// Addressed tiles of the merged archive (run-length entries count every tile).
    pub tiles: u64,
    /// Directory entries of the merged archive.
    pub tile_entries: u64,
    /// Distinct tile contents stored in the merged archive.
    pub tile_contents: u64,
    /// Size of the merged archive in bytes.
    pub bytes: u64,
}

/// Merges disjoint MVT archives into one clustered archive written to `out` (from its current
/// position), and returns `out` positioned at the end of the archive.
///
/// The parts are consumed; each part's entries are walked while its tiles are read through the
/// same reader.
///
/// Requirements: at least one part; every part MVT with gzip tile compression; no tile id in
/// two parts. Metadata: `vector_layers` are unioned by `id` (fields unioned, a field with
/// different types in two parts becomes `"Mixed"`, `minzoom` the minimum, `maxzoom` the
/// maximum, other layer keys such as `description` from the first part that has them); other
/// top-level keys come from the first part that has them, except `minzoom`, `maxzoom`, `bounds`
/// and `center`, which are recomputed (in the same JSON shape, array or comma-separated string)
/// when present. Header bounds are the union of the bounds of the parts that have tiles; the
/// center is the middle of those bounds at the lowest zoom of the merged tiles.
///
/// On error, whatever was written to `out` so far is not a valid archive.
pub fn merge<R: Read + Seek, W: Write + Seek>(
    parts: Vec<Archive<R>>,
    out: W,
) -> Result<(W, MergeReport), MergeError> {
    if parts.is_empty() {
        return Err(MergeError::NoParts);
    }
    let tile_type = check_tile_formats(parts.iter().map(Archive::header))?;

    let walkers = parts;
    let metadata = {
        let metas: Vec<&Value> = walkers.iter().map(Archive::metadata).collect();
        merge_metadata(&metas)?
    };

    let mut out = HeaderCapture::new(out).map_err(|e| MergeError::Write(e.into()))?;
    let base = out.base;
    let mut writer = ArchiveWriter::new(&mut out).map_err(MergeError::Write)?;
    writer.set_tile_format(tile_type, Compression::Gzip);

    let n = walkers.len();
    // The entry walks and the tile reads of a part share its reader (`&` borrows of it).
    let mut iters: Vec<_> = walkers.iter().map(Archive::walk_entries).collect();
    // One past the last tile id taken from each part, to reject a part whose own entries are
    // out of order (the overlap check below would otherwise blame another part).
    let mut part_next: Vec<u64> = vec![0; n];
    let mut part_tiles: Vec<u64> = vec![0; n];
    // The pending entry of each part, and a min-heap of (tile id, part) over them.
    let mut pending: Vec<Option<Entry>> = vec![None; n];
    let mut heap = BinaryHeap::with_capacity(n);
    for (part, iter) in iters.iter_mut().enumerate() {
        if let Some(e) = pull(iter, part, &mut part_next)? {
            heap.push(Reverse((e.tile_id, part)));
            if let Some(slot) = pending.get_mut(part) {
                *slot = Some(e);
            }
        }
    }

    // One past the last tile id written, and the part it came from.
    let mut next_id: u64 = 0;
    let mut last_part: Option<usize> = None;
    let mut first_id: Option<u64> = None;
    while let Some(Reverse((_, part))) = heap.pop() {
        let Some(e) = pending.get_mut(part).and_then(Option::take) else {
            continue;
        };
        if let Some(iter) = iters.get_mut(part)
            && let Some(next) = pull(iter, part, &mut part_next)?
        {
            heap.push(Reverse((next.tile_id, part)));
            if let Some(slot) = pending.get_mut(part) {
                *slot = Some(next);
            }
        }
        if let Some(first_part) = last_part
            && e.tile_id < next_id
        {
            let c = tile_coord(e.tile_id).ok_or(MergeError::Part {
                part,
                source: ArchiveError::InvalidTileId(e.tile_id),
            })?;
            return Err(MergeError::Overlap {
                z: c.z,
                x: c.x,
                y: c.y,
                first_part,
                second_part: part,
            });
        }
        let Some(walker) = walkers.get(part) else {
            continue;
        };
        let data = walker
            .tile_bytes(&e)
            .map_err(|source| MergeError::Part { part, source })?;
        // `pull` checked that the run stays below TILE_ID_END.
        let end = e.tile_id + u64::from(e.run_length);
        // One call per entry: a polygon interior's run may address billions of tiles.
        writer
            .add_tile_run(e.tile_id, u64::from(e.run_length), &data)
            .map_err(MergeError::Write)?;
        if let Some(count) = part_tiles.get_mut(part) {
            *count += u64::from(e.run_length);
        }
        first_id.get_or_insert(e.tile_id);
        next_id = end;
        last_part = Some(part);
    }
    drop(iters);

    let had_tiles: Vec<bool> = part_tiles.iter().map(|&t| t > 0).collect();
    let headers: Vec<&Header> = walkers.iter().map(Archive::header).collect();
    let zooms = first_id.map(|first| {
        (
            tile_zoom(first).unwrap_or(0),
            tile_zoom(next_id.saturating_sub(1)).unwrap_or(0),
        )
    });
    let meta = archive_meta(&headers, &had_tiles, zooms, metadata);
    writer.finish(&meta).map_err(MergeError::Write)?;

    let header = Header::from_bytes(&out.header).map_err(MergeError::Write)?;
    let bytes = out.pos.saturating_sub(base);
    let report = MergeReport {
        parts: n,
        part_tiles,
        tiles: header.addressed_tiles,
        tile_entries: header.tile_entries,
        tile_contents: header.tile_contents,
        bytes,
    };
    Ok((out.inner, report))
}

/// The parts' common tile type (MVT or MLT), gzip-compressed in every part.
fn check_tile_formats<'a>(
    headers: impl Iterator<Item = &'a Header>,
) -> Result<TileType, MergeError> {
    let mut expected = None;
    let mut tile_type = None;
    for (part, h) in headers.enumerate() {
        if !matches!(h.tile_type, TileType::Mvt | TileType::Mlt) {
            return Err(MergeError::NotMvt {
                part,
                tile_type: h.tile_type,
            });
        }
        match tile_type {
            None => tile_type = Some(h.tile_type),
            Some(t) if t != h.tile_type => {
                return Err(MergeError::TypeMismatch {
                    part,
                    found: h.tile_type,
                    expected: t,
                });
            }
            Some(_) => {}
        }
        match expected {
            None => {
                // The writer labels its tiles gzip, so that is what every part must hold.
                if h.tile_compression != Compression::Gzip {
                    return Err(MergeError::UnsupportedCompression {
                        part,
                        found: h.tile_compression,
                    });
                }
                expected = Some(h.tile_compression);
            }
            Some(expected) if expected != h.tile_compression => {
                return Err(MergeError::CompressionMismatch {
                    part,
                    found: h.tile_compression,
                    expected,
                });
            }
            Some(_) => {}
        }
    }
    tile_type.ok_or(MergeError::NoParts)
}

/// The next entry of a part, checked to come after the part's previous one and to stay within
/// the valid tile ids.
fn pull<I: Iterator<Item = Result<Entry, ArchiveError>>>(
    iter: &mut I,
    part: usize,
    part_next: &mut [u64],
) -> Result<Option<Entry>, MergeError> {
    let Some(e) = iter.next() else {
        return Ok(None);
    };
    let e = e.map_err(|source| MergeError::Part { part, source })?;
    let bad = |m: String| MergeError::Part {
        part,
        source: ArchiveError::Directory(m),
    };
    let end = e
        .tile_id
        .checked_add(u64::from(e.run_length))
        .filter(|&end| end <= TILE_ID_END && e.run_length > 0)
        .ok_or_else(|| {
            bad(format!(
                "tile id {} + run length {} goes beyond the largest tile id",
                e.tile_id, e.run_length
            ))
        })?;
    let Some(next) = part_next.get_mut(part) else {
        return Ok(None);
    };
    if e.tile_id < *next {
        return Err(bad(format!(
            "entries out of order: tile id {} comes after tile id {}",
            e.tile_id,
            *next - 1
        )));
    }
    *next = end;
    Ok(Some(e))
}

/// Passes writes through, keeping a copy of the bytes last written over the header position,
/// so the merge can report the counts the writer put in the header without reading `out`.
struct HeaderCapture<W> {
    inner: W,
    base: u64,
    pos: u64,
    header: [u8; HEADER_LEN],
}

impl<W: Write + Seek> HeaderCapture<W> {
    fn new(mut inner: W) -> io::Result<Self> {
        let base = inner.stream_position()?;
        Ok(Self {
            inner,
            base,
            pos: base,
            header: [0; HEADER_LEN],
        })
    }
}

impl<W: Write> Write for HeaderCapture<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        let written_end = self.pos.saturating_add(n as u64);
        let start = self.pos.max(self.base);
        let end = written_end.min(self.base.saturating_add(HEADER_LEN as u64));
        if start < end {
            // All four values are below HEADER_LEN or n, so they fit in usize.
            let h = (start - self.base) as usize..(end - self.base) as usize;
            let b = (start - self.pos) as usize..(end - self.pos) as usize;
            if let (Some(dst), Some(src)) = (self.header.get_mut(h), buf.get(b)) {
                dst.copy_from_slice(src);
            }
        }
        self.pos = written_end;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Seek> Seek for HeaderCapture<W> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.pos = self.inner.seek(pos)?;
        Ok(self.pos)
    }
}

/// Header fields and metadata of the merged archive.
fn archive_meta(
    headers: &[&Header],
    had_tiles: &[bool],
    zooms: Option<(u8, u8)>,
    mut metadata: Map<String, Value>,
) -> ArchiveMeta {
    let first = headers.first();
    let union = headers
        .iter()
        .zip(had_tiles)
        .filter(|(_, had)| **had)
        .map(|(h, _)| h.bounds)
        .reduce(|a, b| {
            [
                a[0].min(b[0]),
                a[1].min(b[1]),
                a[2].max(b[2]),
                a[3].max(b[3]),
            ]
        });
    let (min_zoom, max_zoom) = zooms.unwrap_or_else(|| {
        (
            headers.iter().map(|h| h.min_zoom).min().unwrap_or(0),
            headers.iter().map(|h| h.max_zoom).max().unwrap_or(0),
        )
    });
    let (bounds, center) = match union {
        Some(b) => (
            b,
            (
                (b[0] + b[2]) / 2.0,
                (b[1] + b[3]) / 2.0,
                zooms.map_or_else(|| first.map_or(0, |h| h.center_zoom), |z| z.0),
            ),
        ),
        None => match first {
            Some(h) => (h.bounds, (h.center_lon, h.center_lat, h.center_zoom)),
            None => (
                [-180.0, -85.051_128_78, 180.0, 85.051_128_78],
                (0.0, 0.0, 0),
            ),
        },
    };
    // Top-level zoom/extent keys some writers copy into the metadata would describe one part;
    // recompute them, keeping their JSON shape.
    for (key, numbers) in [
        ("minzoom", vec![f64::from(min_zoom)]),
        ("maxzoom", vec![f64::from(max_zoom)]),
        ("bounds", bounds.to_vec()),
        ("center", vec![center.0, center.1, f64::from(center.2)]),
    ] {
        if let Some(v) = metadata.get_mut(key) {
            *v = same_shape(v, &numbers);
        }
    }
    ArchiveMeta {
        min_zoom,
        max_zoom,
        bounds,
        center,
        metadata: Value::Object(metadata),
    }
}

/// `numbers` as JSON shaped like `old`: a comma-separated string, a single number or an array.
fn same_shape(old: &Value, numbers: &[f64]) -> Value {
    let num = |f: f64| {
        if f.fract() == 0.0 && f.abs() < 1e15 {
            Value::from(f as i64)
        } else {
            Value::from(f)
        }
    };
    match (old, numbers) {
        (Value::String(_), _) => Value::String(
            numbers
                .iter()
                .map(|f| num(*f).to_string())
                .collect::<Vec<_>>()
                .join(","),
        ),
        (Value::Array(_), _) | (_, [] | [_, _, ..]) => {
            Value::Array(numbers.iter().map(|f| num(*f)).collect())
        }
        (_, [one]) => num(*one),
    }
}

/// Unions the parts' metadata; see [`merge`] for the rules.
fn merge_metadata(metas: &[&Value]) -> Result<Map<String, Value>, MergeError> {
    let mut out = Map::new();
    let mut layers: Vec<Map<String, Value>> = Vec::new();
    for (part, meta) in metas.iter().enumerate() {
        let err = |message: String| MergeError::Metadata { part, message };
        let Value::Object(obj) = meta else {
            return Err(err("not a JSON object".into()));
        };
        for (key, value) in obj {
            if key == "vector_layers" {
                let Value::Array(list) = value else {
                    return Err(err("`vector_layers` is not an array".into()));
                };
                for layer in list {
                    merge_layer(&mut layers, layer).map_err(err)?;
                }
                // Keep the key at the position of its first appearance.
                if !out.contains_key(key) {
                    out.insert(key.clone(), Value::Null);
                }
            } else if !out.contains_key(key) {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    // The merged archive is MVT, which needs `vector_layers` even when no part had any.
    out.insert(
        "vector_layers".into(),
        Value::Array(layers.into_iter().map(Value::Object).collect()),
    );
    Ok(out)
}

fn merge_layer(layers: &mut Vec<Map<String, Value>>, layer: &Value) -> Result<(), String> {
    let Value::Object(layer) = layer else {
        return Err("a `vector_layers` entry is not an object".into());
    };
    let Some(Value::String(id)) = layer.get("id") else {
        return Err("a `vector_layers` entry has no string `id`".into());
    };
    let field_map = |l: &Map<String, Value>| -> Result<Option<Map<String, Value>>, String> {
        match l.get("fields") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(f)) => Ok(Some(f.clone())),
            Some(_) => Err(format!("layer {id:?}: `fields` is not an object")),
        }
    };
    let new_fields = field_map(layer)?;
    for key in ["minzoom", "maxzoom"] {
        if let Some(v) = layer.get(key)
            && v.as_f64().is_none()
        {
            return Err(format!("layer {id:?}: `{key}` is not a number"));
        }
    }
    let existing = layers
        .iter_mut()
        .find(|l| l.get("id").is_some_and(|v| v.as_str() == Some(id.as_str())));
    let Some(existing) = existing else {
        layers.push(layer.clone());
        return Ok(());
    };
    if let Some(new_fields) = new_fields {
        let mut fields = field_map(existing)?.unwrap_or_default();
        for (name, ty) in new_fields {
            match fields.get_mut(&name) {
                None => {
                    fields.insert(name, ty);
                }
                Some(old) if *old != ty => *old = Value::String("Mixed".into()),
                Some(_) => {}
            }
        }
        existing.insert("fields".into(), Value::Object(fields));
    }
    for (key, keep_smaller) in [("minzoom", true), ("maxzoom", false)] {
        let Some(new) = layer.get(key) else { continue };
        let replace = match existing.get(key).and_then(Value::as_f64) {
            None => true,
            Some(old) => {
                let new = new.as_f64().unwrap_or(old);
                if keep_smaller { new < old } else { new > old }
            }
        };
        if replace {
            existing.insert(key.into(), new.clone());
        }
    }
    // Everything else (description, ...) from the first part that has it.
    for (key, value) in layer {
        if !existing.contains_key(key) {
            existing.insert(key.clone(), value.clone());
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn layers_union() {
        let a = json!({"name": "a", "vector_layers": [
            {"id": "roads", "fields": {"name": "String", "lanes": "Number"}, "minzoom": 4,
             "maxzoom": 10, "description": "from a"},
            {"id": "water", "fields": {}},
        ]});
        let b = json!({"name": "b", "attribution": "b", "vector_layers": [
            {"id": "roads", "fields": {"lanes": "String", "oneway": "Boolean"}, "minzoom": 2,
             "maxzoom": 8, "description": "from b"},
            {"id": "poi", "fields": {"kind": "String"}, "minzoom": 12, "maxzoom": 14},
        ]});
        let m = merge_metadata(&[&a, &b]).unwrap();
        assert_eq!(m["name"], "a");
        assert_eq!(m["attribution"], "b");
        let layers = m["vector_layers"].as_array().unwrap();
        assert_eq!(layers.len(), 3);
        assert_eq!(
            layers[0],
            json!({"id": "roads", "fields": {"name": "String", "lanes": "Mixed",
                   "oneway": "Boolean"}, "minzoom": 2, "maxzoom": 10, "description": "from a"})
        );
        assert_eq!(layers[1]["id"], "water");
        assert_eq!(layers[2]["id"], "poi");
    }

    #[test]
    fn bad_metadata_names_the_part() {
        let good = json!({"vector_layers": []});
        for bad in [
            json!([1]),
            json!({"vector_layers": {}}),
            json!({"vector_layers": [{"fields": {}}]}),
            json!({"vector_layers": [{"id": "x", "fields": []}]}),
            json!({"vector_layers": [{"id": "x", "minzoom": "a"}]}),
        ] {
            match merge_metadata(&[&good, &bad]) {
                Err(MergeError::Metadata { part: 1, .. }) => {}
                other => panic!("{bad}: {other:?}"),
            }
        }
        assert!(
            merge_metadata(&[&json!({})]).unwrap()["vector_layers"]
                .as_array()
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn shapes_are_kept() {
        assert_eq!(same_shape(&json!("0,1"), &[1.5, 2.0]), json!("1.5,2"));
        assert_eq!(same_shape(&json!(3), &[4.0]), json!(4));
        assert_eq!(same_shape(&json!([0]), &[4.0]), json!([4]));
        assert_eq!(same_shape(&json!(null), &[1.0, 2.0]), json!([1, 2]));
    }

    #[test]
    fn header_capture_keeps_last_header_bytes() {
        let mut c = HeaderCapture::new(io::Cursor::new(vec![0u8; 3])).unwrap();
        c.seek(SeekFrom::Start(3)).unwrap();
        let mut c = HeaderCapture::new(c.inner).unwrap();
        c.write_all(&[1u8; 200]).unwrap();
        c.seek(SeekFrom::Start(3 + 10)).unwrap();
        c.write_all(&[2u8; 5]).unwrap();
        assert_eq!(c.header[9], 1);
        assert_eq!(&c.header[10..15], &[2u8; 5]);
        assert_eq!(c.header[15], 1);
        assert_eq!(c.pos, 3 + 15);
    }
}
