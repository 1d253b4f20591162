//! Tile polygons as `geo` polygons, for the `geo` crate's OGC validity test (shared by
//! `tests/valid.rs` and `examples/quality.rs` through `#[path]`).

use geo::{Coord, LineString, MultiPolygon, Polygon};

/// Each polygon's exterior and holes, in tile units.
pub fn to_geo(polys: &[Vec<Vec<[i32; 2]>>]) -> MultiPolygon<f64> {
    let ring = |r: &Vec<[i32; 2]>| {
        LineString(
            r.iter()
                .map(|p| Coord {
                    x: f64::from(p[0]),
                    y: f64::from(p[1]),
                })
                .collect(),
        )
    };
    MultiPolygon(
        polys
            .iter()
            .filter(|p| !p.is_empty())
            .map(|p| Polygon::new(ring(&p[0]), p[1..].iter().map(ring).collect()))
            .collect(),
    )
}
