//! What the tiler's integration tests share: features, building an archive in memory, and
//! reading its tiles back.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{Cursor, Read};

use etl_tiles::archive::Archive;
use etl_tiles::mvt::{DecodedLayer, decode_tile};
use etl_tiles::tile::{TileCoord, tile_coord};
use etl_tiles::tiler::{Added, TileReport, Tiler, TilerError, TilerOptions};
use geo_types::{Geometry, LineString, Point, Polygon};
use serde_json::{Map, Value};

/// Deterministic pseudo-random numbers (xorshift), so failures reproduce.
pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (self.next() >> 11) as f64 / (1u64 << 53) as f64 * (hi - lo)
    }
}

/// One input feature: layer, id, geometry, properties.
pub struct Feat {
    pub layer: usize,
    pub id: Option<u64>,
    pub geom: Geometry<f64>,
    pub props: Map<String, Value>,
}

pub fn feat(layer: usize, id: Option<u64>, geom: Geometry<f64>, props: Value) -> Feat {
    Feat {
        layer,
        id,
        geom,
        props: props.as_object().cloned().unwrap_or_default(),
    }
}

pub fn point(lon: f64, lat: f64) -> Geometry<f64> {
    Geometry::Point(Point::new(lon, lat))
}

pub fn rect(w: f64, s: f64, e: f64, n: f64) -> Polygon<f64> {
    Polygon::new(
        LineString::from(vec![(w, s), (e, s), (e, n), (w, n), (w, s)]),
        vec![],
    )
}

pub fn opts(min_zoom: u8, max_zoom: u8) -> TilerOptions {
    TilerOptions {
        min_zoom,
        max_zoom: Some(max_zoom),
        name: "test".into(),
        ..TilerOptions::default()
    }
}

pub fn layers(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

/// Tiles `feats` into an in-memory archive.
pub fn build(
    opts: TilerOptions,
    layer_names: &[&str],
    feats: &[Feat],
) -> Result<(Vec<u8>, TileReport), TilerError> {
    let mut t = Tiler::new(opts, layers(layer_names))?;
    for (key, f) in feats.iter().enumerate() {
        let added = t.add(f.layer, key as u64, f.id, Some(&f.geom), &f.props)?;
        assert!(matches!(added, Added::Staged { .. }), "feature {key}");
    }
    let (out, report) = t.finish(Cursor::new(Vec::new()), &|| false)?;
    Ok((out.into_inner(), report))
}

pub fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Every addressed tile with its gunzipped MVT bytes (run-length entries expanded).
pub fn raw_tiles(bytes: &[u8]) -> BTreeMap<TileCoord, Vec<u8>> {
    let mut a = Archive::open(Cursor::new(bytes)).unwrap();
    let entries: Vec<_> = a.entries().map(Result::unwrap).collect();
    let mut out = BTreeMap::new();
    for e in entries {
        let data = gunzip(&a.read_tile(&e).unwrap());
        for k in 0..u64::from(e.run_length) {
            out.insert(tile_coord(e.tile_id + k).unwrap(), data.clone());
        }
    }
    out
}

pub fn tiles(bytes: &[u8]) -> BTreeMap<TileCoord, Vec<DecodedLayer>> {
    raw_tiles(bytes)
        .into_iter()
        .map(|(c, raw)| {
            let layers = decode_tile(&raw).unwrap_or_else(|e| panic!("{c}: {e}"));
            (c, layers)
        })
        .collect()
}

/// Per zoom: the feature ids shown in any tile.
pub fn ids_by_zoom(bytes: &[u8]) -> BTreeMap<u8, std::collections::BTreeSet<u64>> {
    let mut out: BTreeMap<u8, std::collections::BTreeSet<u64>> = BTreeMap::new();
    for (c, layers) in tiles(bytes) {
        for l in layers {
            for f in l.features {
                if let Some(id) = f.id {
                    out.entry(c.z).or_default().insert(id);
                }
            }
        }
    }
    out
}
