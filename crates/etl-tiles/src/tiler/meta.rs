//! The archive's header values and JSON metadata: `vector_layers` (fields with types, min and
//! max zoom per layer), bounds, center, name, attribution, generator.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::TilerOptions;
use super::attrs::FieldType;
use crate::archive::ArchiveMeta;
use crate::tile::world_to_lonlat;

/// Builds the archive metadata. `bounds` is the world bbox of the staged features.
pub(crate) fn archive_meta(
    opts: &TilerOptions,
    layers: &[String],
    fields: &[BTreeMap<String, FieldType>],
    layer_zooms: &[Option<(u8, u8)>],
    bounds: [i64; 4],
    min_zoom: u8,
    max_zoom: u8,
) -> ArchiveMeta {
    let (west, north) = world_to_lonlat(bounds[0], bounds[1]);
    let (east, south) = world_to_lonlat(bounds[2], bounds[3]);
    let round = |v: f64| (v * 1e7).round() / 1e7;
    let mut b = [round(west), round(south), round(east), round(north)];
    // A single point (or features on one meridian / parallel) has an empty box; readers and
    // `verify` want west < east and south < north, so widen it by a hair (~1 cm).
    if b[0] >= b[2] {
        b[0] -= 1e-7;
        b[2] += 1e-7;
    }
    if b[1] >= b[3] {
        b[1] -= 1e-7;
        b[3] += 1e-7;
    }
    // The center zoom shows the whole extent in about one tile, within the archive's zooms.
    let span = (bounds[2] - bounds[0]).max(bounds[3] - bounds[1]).max(1) as f64;
    let fit = ((1u64 << 32) as f64 / span).log2().floor();
    let fit = if fit.is_finite() {
        fit.max(0.0) as u8
    } else {
        0
    };
    let center_zoom = fit.clamp(min_zoom, max_zoom);
    let center = (
        round((b[0] + b[2]) / 2.0),
        round((b[1] + b[3]) / 2.0),
        center_zoom,
    );
    let vector_layers: Vec<Value> = layers
        .iter()
        .enumerate()
        .filter_map(|(i, name)| {
            let (lo, hi) = layer_zooms.get(i).copied().flatten()?;
            let f: serde_json::Map<String, Value> = fields
                .get(i)
                .map(|m| {
                    m.iter()
                        .map(|(k, t)| (k.clone(), Value::String(t.name().to_owned())))
                        .collect()
                })
                .unwrap_or_default();
            Some(json!({
                "id": name,
                "description": "",
                "minzoom": lo,
                "maxzoom": hi,
                "fields": f,
            }))
        })
        .collect();
    let mut metadata = json!({
        "name": opts.name,
        "description": opts.description,
        "version": "2",
        "type": "overlay",
        "format": match opts.tile_format {
            super::TileFormat::Mvt => "pbf",
            super::TileFormat::Mlt => "mlt",
        },
        "generator": opts.generator,
        "vector_layers": vector_layers,
    });
    if let (Some(a), Some(m)) = (&opts.attribution, metadata.as_object_mut()) {
        m.insert("attribution".into(), Value::String(a.clone()));
    }
    ArchiveMeta {
        min_zoom,
        max_zoom,
        bounds: b,
        center,
        metadata,
    }
}
