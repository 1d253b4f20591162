//! `--make-valid`: any polygon or multipolygon built from the bytes (rings of up to 16 positions
//! on a small grid, so crossings and touches are common) is either left alone, rebuilt, or
//! refused; never a panic that escapes. `make_valid` catches a failure inside i_overlay (see
//! `regressions/make_valid/`); libfuzzer-sys's panic hook would abort on that caught panic too,
//! so the hook here only prints, and a panic that reaches the fuzz target still aborts (the
//! target runs under `catch_unwind`).
#![no_main]

use etl_geo::geo_types::{Coord, Geometry, LineString, MultiPolygon, Polygon};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| std::panic::set_hook(Box::new(|info| eprintln!("{info}"))));
    let mut polygons = Vec::new();
    for chunk in data.chunks(128).take(8) {
        let mut rings = Vec::new();
        for ring in chunk.chunks(32) {
            let mut coords: Vec<Coord<f64>> = ring
                .chunks(2)
                .map(|p| Coord {
                    x: f64::from(p[0] % 16),
                    y: f64::from(p.get(1).copied().unwrap_or(0) % 16),
                })
                .collect();
            if let Some(&first) = coords.first() {
                coords.push(first);
            }
            rings.push(LineString(coords));
        }
        if let Some((exterior, holes)) = rings.split_first() {
            polygons.push(Polygon::new(exterior.clone(), holes.to_vec()));
        }
    }
    let mut g = Geometry::MultiPolygon(MultiPolygon(polygons));
    let _ = etl_geo::make_valid::make_valid(&mut g);
});
