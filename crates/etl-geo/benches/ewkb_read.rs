//! Decoding the geometries of PostGIS rows with `read_ewkb`, the hot path of
//! `etl-pmtiles --sql`: 100k points and 10k polygons of 50 positions (every tenth with a hole
//! of 10), as `ST_AsBinary` sends them (little-endian, 2D, no SRID).

#![allow(
    clippy::expect_used,
    reason = "a benchmark whose own data fails to read should stop loudly"
)]

use std::f64::consts::TAU;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use etl_geo::geo_types::{Coord, Geometry, LineString, Point, Polygon};
use etl_geo::{read_ewkb, write_ewkb};

const POINTS: usize = 100_000;
const POLYGONS: usize = 10_000;
const RING: usize = 50;
const HOLE: usize = 10;

/// xorshift64*: deterministic positions with realistic mantissas.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn coord(&mut self) -> Coord<f64> {
        Coord {
            x: -180.0 + 360.0 * self.unit(),
            y: -85.0 + 170.0 * self.unit(),
        }
    }
}

/// A closed ring of `n` positions (the last repeats the first) around `centre`.
fn ring(rng: &mut Rng, centre: Coord<f64>, radius: f64, n: usize) -> LineString<f64> {
    let mut coords: Vec<Coord<f64>> = (0..n - 1)
        .map(|i| {
            let a = TAU * i as f64 / (n - 1) as f64;
            let r = radius * (0.8 + 0.2 * rng.unit());
            Coord {
                x: centre.x + r * a.cos(),
                y: centre.y + r * a.sin(),
            }
        })
        .collect();
    coords.push(coords[0]);
    LineString(coords)
}

fn encode(geometries: &[Geometry<f64>]) -> Vec<Vec<u8>> {
    geometries
        .iter()
        .map(|g| {
            let mut out = Vec::new();
            write_ewkb(g, None, &mut out);
            out
        })
        .collect()
}

fn decode_all(rows: &[Vec<u8>]) -> usize {
    rows.iter()
        .map(|row| {
            let (_, g) = read_ewkb(row).expect("benchmark data reads");
            usize::from(matches!(g, Geometry::Point(_) | Geometry::Polygon(_)))
        })
        .sum()
}

fn bench(c: &mut Criterion) {
    let mut rng = Rng(42);
    let points: Vec<Geometry<f64>> = (0..POINTS)
        .map(|_| Geometry::Point(Point(rng.coord())))
        .collect();
    let polygons: Vec<Geometry<f64>> = (0..POLYGONS)
        .map(|i| {
            let centre = rng.coord();
            let exterior = ring(&mut rng, centre, 0.01, RING);
            let holes = if i % 10 == 0 {
                vec![ring(&mut rng, centre, 0.002, HOLE)]
            } else {
                Vec::new()
            };
            Geometry::Polygon(Polygon::new(exterior, holes))
        })
        .collect();
    let points = encode(&points);
    let polygons = encode(&polygons);
    assert_eq!(decode_all(&points), POINTS);
    assert_eq!(decode_all(&polygons), POLYGONS);

    let mut group = c.benchmark_group("ewkb_read");
    group.sample_size(50);
    group.throughput(Throughput::Elements(POINTS as u64));
    group.bench_function("100k_points", |b| {
        b.iter(|| black_box(decode_all(black_box(&points))))
    });
    group.throughput(Throughput::Elements(POLYGONS as u64));
    group.bench_function("10k_polygons_50_positions", |b| {
        b.iter(|| black_box(decode_all(black_box(&polygons))))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
