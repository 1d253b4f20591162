//! Criterion benches of the tiling engine's hot paths, on deterministic synthetic inputs (an
//! inline LCG, no data files):
//!
//! - `project`: lon/lat → world coordinates of a 50k-vertex noisy circle (elements = vertices);
//! - `clip_50k_ring/zN`: clipping that projected ring to every tile of zoom N its bbox touches,
//!   with a 5/256 buffer (elements = vertices × tiles, so the rate is comparable across zooms);
//! - `project_clip_small`: project + clip of 10k small polygons and 10k short lines to the z12
//!   tiles they touch, as a tiler does per feature (elements = features);
//! - `to_tile` / `simplify`: the ring in its z6 tile at extent 4096, then Douglas–Peucker at a few
//!   tolerances in tile units (elements = input vertices);
//! - `mvt_build` (`LayerBuilder::add_feature` for every feature) and `mvt_encode` (`encode_tile`)
//!   of a tile of 5,000 points with 4 properties and one of 500 polygons (some with a hole);
//! - `gzip`: those encoded tiles gzipped by libdeflate at level 6 (what the tiler writes) and by
//!   flate2's zlib-rs at its default level (what it wrote before), bytes = encoded tile size; the
//!   id names the compressed share.

#![allow(
    clippy::expect_used,
    reason = "a benchmark whose own gzip into a Vec fails should stop loudly"
)]

use std::f64::consts::TAU;
use std::hint::black_box;
use std::io::Write as _;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use etl_tiles::geom::{self, TileGeom, WorldGeom};
use etl_tiles::mvt::{LayerBuilder, PropValue, encode_tile};
use etl_tiles::tile::{TileCoord, WORLD_BITS, tile_bounds, world_to_lonlat};
use geo_types::{Geometry, LineString, Polygon};

const EXTENT: u32 = 4096;
/// tippecanoe's default buffer: 5 pixels of a 256-pixel tile, in extent units.
const BUFFER: u32 = 80;
const RING_VERTICES: usize = 50_000;
/// The big ring sits in this tile, centred, spanning 80% of it.
const RING_TILE: TileCoord = TileCoord { z: 6, x: 33, y: 22 };
const SMALL_FEATURES: usize = 10_000;
const SMALL_ZOOM: u8 = 12;

/// Knuth's MMIX LCG; the high bits are good enough for synthetic shapes.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 32) as u32
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        f64::from(self.next()) / 4_294_967_296.0
    }

    /// Uniform in [lo, hi).
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform in [0, n).
    fn below(&mut self, n: usize) -> usize {
        (self.unit() * n as f64) as usize
    }
}

fn tile_size(z: u8) -> f64 {
    (1u64 << (WORLD_BITS - u32::from(z))) as f64
}

/// A star-shaped (so simple) noisy ring around `(cx, cy)` in world units: a few random harmonics
/// for the outline plus per-vertex jitter of `jitter × radius`. Counter-clockwise in lon/lat
/// (y up), closed.
fn noisy_ring(
    rng: &mut Lcg,
    cx: f64,
    cy: f64,
    radius: f64,
    n: usize,
    jitter: f64,
) -> Vec<(f64, f64)> {
    let harmonics: Vec<(f64, f64, f64)> = [3.0f64, 7.0, 17.0, 41.0]
        .iter()
        .map(|&k| (k, rng.range(-0.06, 0.06) / k.sqrt(), rng.range(0.0, TAU)))
        .collect();
    let mut ring: Vec<(f64, f64)> = (0..n)
        .map(|i| {
            let t = TAU * i as f64 / n as f64;
            let mut r = 1.0 + rng.range(-jitter, jitter);
            for &(k, a, phase) in &harmonics {
                r += a * (k * t + phase).cos();
            }
            // World y grows southwards, so stepping t clockwise in world units is
            // counter-clockwise on the map.
            world_lonlat(cx + radius * r * t.cos(), cy - radius * r * t.sin())
        })
        .collect();
    ring.push(ring[0]);
    ring
}

fn world_lonlat(x: f64, y: f64) -> (f64, f64) {
    world_to_lonlat(x.round() as i64, y.round() as i64)
}

fn big_ring() -> Geometry<f64> {
    let size = tile_size(RING_TILE.z);
    let cx = (f64::from(RING_TILE.x) + 0.5) * size;
    let cy = (f64::from(RING_TILE.y) + 0.5) * size;
    let mut rng = Lcg(1);
    let ring = noisy_ring(&mut rng, cx, cy, 0.4 * size, RING_VERTICES, 0.003);
    Geometry::Polygon(Polygon::new(LineString::from(ring), vec![]))
}

/// 10k small polygons (8..40 vertices, some crossing z12 tile edges) and 10k lines (2..60
/// vertices, a random walk) scattered over one z8 tile, i.e. 16 × 16 z12 tiles.
fn small_features() -> Vec<Geometry<f64>> {
    let mut rng = Lcg(2);
    let region = tile_size(8);
    let (ox, oy) = (133.0 * region, 90.0 * region);
    let z12 = tile_size(SMALL_ZOOM);
    let mut out = Vec::with_capacity(2 * SMALL_FEATURES);
    for _ in 0..SMALL_FEATURES {
        let (cx, cy) = (ox + rng.unit() * region, oy + rng.unit() * region);
        let n = 8 + rng.below(33);
        let radius = rng.range(0.005, 0.05) * z12;
        let ring = noisy_ring(&mut rng, cx, cy, radius, n, 0.05);
        out.push(Geometry::Polygon(Polygon::new(
            LineString::from(ring),
            vec![],
        )));
    }
    for _ in 0..SMALL_FEATURES {
        let (mut x, mut y) = (ox + rng.unit() * region, oy + rng.unit() * region);
        let n = 2 + rng.below(59);
        let mut heading = rng.range(0.0, TAU);
        let line: Vec<(f64, f64)> = (0..n)
            .map(|_| {
                let p = world_lonlat(x, y);
                heading += rng.range(-0.5, 0.5);
                let step = rng.range(0.005, 0.03) * z12;
                x += step * heading.cos();
                y += step * heading.sin();
                p
            })
            .collect();
        out.push(Geometry::LineString(LineString::from(line)));
    }
    out
}

fn world_points(g: &WorldGeom) -> Box<dyn Iterator<Item = &[i64; 2]> + '_> {
    match g {
        WorldGeom::Points(p) => Box::new(p.iter()),
        WorldGeom::Lines(l) => Box::new(l.iter().flatten()),
        WorldGeom::Polygons(p) => Box::new(p.iter().flatten().flatten()),
    }
}

fn tile_vertices(g: &TileGeom) -> usize {
    match g {
        TileGeom::Points(p) => p.len(),
        TileGeom::Lines(l) => l.iter().map(Vec::len).sum(),
        TileGeom::Polygons(p) => p.iter().flatten().map(Vec::len).sum(),
    }
}

/// The tiles of zoom `z` that a world geometry's bounding box touches.
fn covering_tiles(g: &WorldGeom, z: u8) -> Vec<TileCoord> {
    let mut bb = [i64::MAX, i64::MAX, i64::MIN, i64::MIN];
    for p in world_points(g) {
        bb = [
            bb[0].min(p[0]),
            bb[1].min(p[1]),
            bb[2].max(p[0]),
            bb[3].max(p[1]),
        ];
    }
    if bb[0] > bb[2] {
        return Vec::new();
    }
    let shift = WORLD_BITS - u32::from(z);
    let last = (1i64 << z) - 1;
    let cell = |v: i64| u32::try_from((v >> shift).clamp(0, last)).unwrap_or(0);
    let mut out = Vec::new();
    for y in cell(bb[1])..=cell(bb[3]) {
        for x in cell(bb[0])..=cell(bb[2]) {
            out.extend(TileCoord::new(z, x, y));
        }
    }
    out
}

fn bench_geom(c: &mut Criterion) {
    let ring = big_ring();
    let world = geom::project(&ring).expect("the ring projects");
    let vertices = world_points(&world).count() as u64;

    let mut g = c.benchmark_group("project");
    g.throughput(Throughput::Elements(vertices));
    g.bench_function("ring_50k", |b| b.iter(|| geom::project(black_box(&ring))));
    g.finish();

    let mut g = c.benchmark_group("clip_50k_ring");
    g.sample_size(10);
    for z in [6u8, 8, 10] {
        let boxes: Vec<[i64; 4]> = covering_tiles(&world, z)
            .into_iter()
            .map(|t| tile_bounds(t, EXTENT, BUFFER))
            .collect();
        g.throughput(Throughput::Elements(vertices * boxes.len() as u64));
        let id = BenchmarkId::new(format!("z{z}"), format!("{}_tiles", boxes.len()));
        g.bench_with_input(id, &boxes, |b, boxes| {
            b.iter(|| {
                boxes
                    .iter()
                    .filter_map(|&bb| geom::clip(black_box(&world), bb))
                    .count()
            })
        });
    }
    g.finish();

    let small = small_features();
    let mut g = c.benchmark_group("project_clip_small");
    g.sample_size(10);
    g.throughput(Throughput::Elements(small.len() as u64));
    g.bench_function("10k_polygons_10k_lines_z12", |b| {
        b.iter(|| {
            let mut pieces = 0usize;
            for f in &small {
                let Some(w) = geom::project(black_box(f)) else {
                    continue;
                };
                for t in covering_tiles(&w, SMALL_ZOOM) {
                    pieces += usize::from(geom::clip(&w, tile_bounds(t, EXTENT, BUFFER)).is_some());
                }
            }
            pieces
        })
    });
    g.finish();

    let mut g = c.benchmark_group("to_tile");
    g.throughput(Throughput::Elements(vertices));
    g.bench_function("ring_50k_z6", |b| {
        b.iter(|| geom::to_tile(black_box(&world), RING_TILE, EXTENT))
    });
    g.finish();

    let tiled = geom::to_tile(&world, RING_TILE, EXTENT).expect("the ring fits its tile");
    let tiled_vertices = tile_vertices(&tiled);
    let mut g = c.benchmark_group("simplify");
    g.throughput(Throughput::Elements(tiled_vertices as u64));
    for tolerance in [0.5, 2.0, 8.0] {
        let kept = geom::simplify(&tiled, tolerance).map_or(0, |s| tile_vertices(&s));
        let id = BenchmarkId::new(
            format!("ring_{tiled_vertices}v"),
            format!("tol{tolerance}_keeps{kept}"),
        );
        g.bench_with_input(id, &tolerance, |b, &tol| {
            b.iter(|| geom::simplify(black_box(&tiled), tol))
        });
    }
    g.finish();
}

type Feature = (u64, TileGeom, Vec<(&'static str, PropValue)>);

const CATEGORIES: [&str; 10] = [
    "cafe", "school", "shop", "park", "hospital", "bank", "bar", "pharmacy", "fuel", "hotel",
];

/// 5,000 points spread over the tile (and its buffer), 4 properties each: an int, a category
/// out of 10, a unique name and a double.
fn point_features() -> Vec<Feature> {
    let mut rng = Lcg(3);
    let span = f64::from(EXTENT + 2 * BUFFER);
    (0..5_000u64)
        .map(|i| {
            let p = [
                (rng.unit() * span) as i32 - BUFFER as i32,
                (rng.unit() * span) as i32 - BUFFER as i32,
            ];
            let props = vec![
                ("city", PropValue::Int(rng.below(400) as i64)),
                (
                    "category",
                    PropValue::String(CATEGORIES[rng.below(CATEGORIES.len())].to_owned()),
                ),
                ("name", PropValue::String(format!("poi {i}"))),
                (
                    "value",
                    PropValue::Double((rng.range(0.0, 3.0).exp() * 1000.0).round() / 100.0),
                ),
            ];
            (i, TileGeom::Points(vec![p]), props)
        })
        .collect()
}

/// A closed ring of `n` vertices around `(cx, cy)` in tile units; `exterior` gives the MVT
/// exterior winding (positive area, clockwise on screen), else a hole's.
fn tile_ring(
    rng: &mut Lcg,
    cx: f64,
    cy: f64,
    radius: f64,
    n: usize,
    exterior: bool,
) -> Vec<[i32; 2]> {
    let mut ring: Vec<[i32; 2]> = (0..n)
        .map(|i| {
            let t = TAU * i as f64 / n as f64 * if exterior { 1.0 } else { -1.0 };
            let r = radius * rng.range(0.85, 1.15);
            [
                (cx + r * t.cos()).round() as i32,
                (cy + r * t.sin()).round() as i32,
            ]
        })
        .collect();
    ring.dedup();
    ring.push(ring[0]);
    ring
}

/// 500 polygons of 20..200 vertices, a fifth with a hole, 3 properties each.
fn polygon_features() -> Vec<Feature> {
    let mut rng = Lcg(4);
    (0..500u64)
        .map(|i| {
            let (cx, cy) = (
                rng.range(0.0, f64::from(EXTENT)),
                rng.range(0.0, f64::from(EXTENT)),
            );
            let radius = rng.range(20.0, 150.0);
            let n = 20 + rng.below(181);
            let mut rings = vec![tile_ring(&mut rng, cx, cy, radius, n, true)];
            if rng.below(5) == 0 {
                rings.push(tile_ring(&mut rng, cx, cy, radius * 0.3, n / 3 + 4, false));
            }
            let props = vec![
                ("id", PropValue::UInt(i)),
                (
                    "kind",
                    PropValue::String(CATEGORIES[rng.below(5)].to_owned()),
                ),
                ("area", PropValue::Double(rng.range(1.0, 1e6))),
            ];
            (i, TileGeom::Polygons(vec![rings]), props)
        })
        .collect()
}

fn build(name: &str, features: &[Feature]) -> LayerBuilder {
    let mut layer = LayerBuilder::new(name, EXTENT);
    for (id, g, props) in features {
        layer.add_feature(Some(*id), g, props);
    }
    layer
}

fn gzip_libdeflate(c: &mut libdeflater::Compressor, data: &[u8]) -> Vec<u8> {
    let mut out = vec![0; c.gzip_compress_bound(data.len())];
    let n = c.gzip_compress(data, &mut out).expect("gzip into a Vec");
    out.truncate(n);
    out
}

fn gzip_flate2(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 2),
        flate2::Compression::default(),
    );
    enc.write_all(data).expect("gzip into a Vec");
    enc.finish().expect("gzip into a Vec")
}

fn bench_mvt(c: &mut Criterion) {
    let tiles = [
        ("points_5000_4props", "points", point_features()),
        ("polygons_500", "polygons", polygon_features()),
    ];
    let encoded: Vec<Vec<u8>> = tiles
        .iter()
        .map(|(_, layer, f)| encode_tile(&[build(layer, f)]))
        .collect();

    let mut g = c.benchmark_group("mvt_build");
    for (name, layer, features) in &tiles {
        g.throughput(Throughput::Elements(features.len() as u64));
        g.bench_function(*name, |b| b.iter(|| build(layer, black_box(features))));
    }
    g.finish();

    let mut g = c.benchmark_group("mvt_encode");
    for ((name, layer, features), bytes) in tiles.iter().zip(&encoded) {
        let built = [build(layer, features)];
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function(*name, |b| b.iter(|| encode_tile(black_box(&built))));
    }
    g.finish();

    let mut g = c.benchmark_group("gzip");
    let lvl = libdeflater::CompressionLvl::new(6).expect("level 6 exists");
    let mut z = libdeflater::Compressor::new(lvl);
    for ((name, _, _), bytes) in tiles.iter().zip(&encoded) {
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        let share = |n: usize| n as f64 / bytes.len() as f64 * 100.0;
        let id = BenchmarkId::new(
            format!("libdeflate6/{name}"),
            format!(
                "{}B_to_{:.1}pct",
                bytes.len(),
                share(gzip_libdeflate(&mut z, bytes).len())
            ),
        );
        g.bench_with_input(id, bytes, |b, bytes| {
            b.iter(|| gzip_libdeflate(&mut z, black_box(bytes)))
        });
        let id = BenchmarkId::new(
            format!("flate2/{name}"),
            format!(
                "{}B_to_{:.1}pct",
                bytes.len(),
                share(gzip_flate2(bytes).len())
            ),
        );
        g.bench_with_input(id, bytes, |b, bytes| {
            b.iter(|| gzip_flate2(black_box(bytes)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_geom, bench_mvt);
criterion_main!(benches);
