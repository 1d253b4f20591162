//! What lies under a point of a decoded MVT tile: CloudTAK's `/query`, answered in the shape of
//! `@mapbox/vtquery` (each hit a `Point` feature at the closest point of the feature, its
//! properties plus `tilequery: {distance, geometry, layer}`, nearest first).
//!
//! A polygon is under the point when the point is inside it (and outside its holes); a point
//! or a line when it is within [`TOLERANCE_PX`] pixels of a 256-pixel tile.

use etl_tiles::geom::TileGeom;
use etl_tiles::mvt::DecodedLayer;
use serde_json::{Map, Value, json};

use super::geojson::{TileFrame, properties};

/// How near (in pixels of a 256-pixel tile) a point or a line must be to be under the query.
pub const TOLERANCE_PX: f64 = 8.0;

/// The largest `limit` a query may ask for (vtquery's).
pub const MAX_LIMIT: u32 = 1000;

/// Mean Earth radius in metres, for the distances reported.
const EARTH_RADIUS_M: f64 = 6_371_008.8;

type P = (f64, f64);

fn dist2(a: P, b: P) -> f64 {
    (a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)
}

/// The point of segment `a`–`b` closest to `q`.
fn closest_on_segment(q: P, a: P, b: P) -> P {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len2 = dx * dx + dy * dy;
    if len2 == 0.0 {
        return a;
    }
    let t = (((q.0 - a.0) * dx + (q.1 - a.1) * dy) / len2).clamp(0.0, 1.0);
    (a.0 + t * dx, a.1 + t * dy)
}

fn pt(p: &[i32; 2]) -> P {
    (f64::from(p[0]), f64::from(p[1]))
}

/// The point of a line (or ring) closest to `q`, with its squared distance.
fn closest_on_line(q: P, line: &[[i32; 2]]) -> Option<(P, f64)> {
    let mut best: Option<(P, f64)> = None;
    let mut consider = |c: P| {
        let d = dist2(q, c);
        if best.is_none_or(|(_, b)| d < b) {
            best = Some((c, d));
        }
    };
    match line {
        [] => {}
        [only] => consider(pt(only)),
        _ => {
            for w in line.windows(2) {
                consider(closest_on_segment(q, pt(&w[0]), pt(&w[1])));
            }
        }
    }
    best
}

/// Whether `q` is inside a ring (even-odd rule).
fn in_ring(q: P, ring: &[[i32; 2]]) -> bool {
    let mut inside = false;
    let n = ring.len();
    if n < 3 {
        return false;
    }
    let mut j = n - 1;
    for i in 0..n {
        let (a, b) = (pt(&ring[i]), pt(&ring[j]));
        if (a.1 > q.1) != (b.1 > q.1) && q.0 < (b.0 - a.0) * (q.1 - a.1) / (b.1 - a.1) + a.0 {
            inside = !inside;
        }
        j = i;
    }
    inside
}

/// Where a feature is nearest `q` and how far that is (in tile units), when it is under `q`.
fn hit(q: P, geom: &TileGeom, tolerance: f64) -> Option<(P, f64, &'static str)> {
    let within = |c: Option<(P, f64)>| c.filter(|(_, d2)| *d2 <= tolerance * tolerance);
    match geom {
        TileGeom::Points(pts) => {
            let best = pts
                .iter()
                .map(|p| (pt(p), dist2(q, pt(p))))
                .min_by(|a, b| a.1.total_cmp(&b.1));
            within(best).map(|(c, d2)| (c, d2.sqrt(), "point"))
        }
        TileGeom::Lines(ls) => {
            let best = ls
                .iter()
                .filter_map(|l| closest_on_line(q, l))
                .min_by(|a, b| a.1.total_cmp(&b.1));
            within(best).map(|(c, d2)| (c, d2.sqrt(), "linestring"))
        }
        TileGeom::Polygons(ps) => ps
            .iter()
            .any(|rings| match rings.split_first() {
                Some((outer, holes)) => in_ring(q, outer) && !holes.iter().any(|h| in_ring(q, h)),
                None => false,
            })
            .then_some((q, 0.0, "polygon")),
    }
}

/// Great-circle distance in metres.
fn haversine(a: [f64; 2], b: [f64; 2]) -> f64 {
    let (la1, la2) = (a[1].to_radians(), b[1].to_radians());
    let dlat = la2 - la1;
    let dlon = (b[0] - a[0]).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
}

/// The features of tile `z/x/y` (decoded) under `lnglat`, nearest first, at most `limit`.
pub fn query(
    layers: &[DecodedLayer],
    (z, x, y): (u8, u32, u32),
    lnglat: [f64; 2],
    limit: usize,
) -> Vec<Value> {
    let mut hits: Vec<(f64, Value)> = Vec::new();
    for layer in layers {
        let frame = TileFrame {
            z,
            x,
            y,
            extent: layer.extent,
        };
        let q = frame.tile_point(lnglat[0], lnglat[1]);
        let tolerance = TOLERANCE_PX * f64::from(layer.extent.max(1)) / 256.0;
        for f in &layer.features {
            let Some((closest, _, kind)) = hit(q, &f.geom, tolerance) else {
                continue;
            };
            let at = if kind == "polygon" {
                lnglat
            } else {
                frame.lonlat(closest.0, closest.1)
            };
            let distance = haversine(lnglat, at);
            let mut props = properties(f);
            props.insert(
                "tilequery".into(),
                json!({"distance": distance, "geometry": kind, "layer": layer.name}),
            );
            let mut out = Map::new();
            out.insert("type".into(), "Feature".into());
            if let Some(id) = f.id {
                out.insert("id".into(), id.into());
            }
            out.insert(
                "geometry".into(),
                json!({"type": "Point", "coordinates": at}),
            );
            out.insert("properties".into(), Value::Object(props));
            hits.push((distance, Value::Object(out)));
        }
    }
    // Stable: features at the same distance keep the tile's order.
    hits.sort_by(|a, b| a.0.total_cmp(&b.0));
    hits.into_iter().take(limit).map(|(_, f)| f).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use etl_tiles::mvt::{DecodedFeature, PropValue};

    fn feature(name: &str, geom: TileGeom) -> DecodedFeature {
        DecodedFeature {
            id: None,
            geom,
            props: vec![("name".into(), PropValue::String(name.into()))],
        }
    }

    #[test]
    fn what_is_under_a_point() {
        let frame = TileFrame {
            z: 10,
            x: 500,
            y: 300,
            extent: 4096,
        };
        let square = vec![vec![
            [1000, 1000],
            [2000, 1000],
            [2000, 2000],
            [1000, 2000],
            [1000, 1000],
        ]];
        let hole = vec![
            [1400, 1400],
            [1400, 1600],
            [1600, 1600],
            [1600, 1400],
            [1400, 1400],
        ];
        let layer = DecodedLayer {
            name: "out".into(),
            extent: 4096,
            version: 2,
            features: vec![
                feature("near", TileGeom::Points(vec![[1200, 1200]])),
                feature("far", TileGeom::Points(vec![[3500, 3500]])),
                feature("area", TileGeom::Polygons(vec![square.clone()])),
                feature(
                    "holed",
                    TileGeom::Polygons(vec![{
                        let mut r = square.clone();
                        r.push(hole);
                        r
                    }]),
                ),
                feature("road", TileGeom::Lines(vec![vec![[0, 1250], [4096, 1250]]])),
            ],
        };
        let at = |px: f64, py: f64| {
            let ll = frame.lonlat(px, py);
            let names: Vec<String> = query(std::slice::from_ref(&layer), (10, 500, 300), ll, 10)
                .iter()
                .map(|f| f["properties"]["name"].as_str().unwrap().to_string())
                .collect();
            names
        };
        // Inside both squares, 50 units from the road, 10 from the point (tolerance: 128).
        assert_eq!(at(1210.0, 1200.0), ["area", "holed", "near", "road"]);
        // In the hole: only the plain square.
        assert_eq!(at(1500.0, 1500.0), ["area"]);
        // Far from everything.
        assert!(at(3000.0, 200.0).is_empty());
        let ll = frame.lonlat(1210.0, 1200.0);
        let one = query(std::slice::from_ref(&layer), (10, 500, 300), ll, 1);
        assert_eq!(one.len(), 1);
        let tq = &one[0]["properties"]["tilequery"];
        assert_eq!(tq["layer"], "out");
        assert_eq!(tq["geometry"], "polygon");
        assert_eq!(tq["distance"], 0.0);
    }
}
