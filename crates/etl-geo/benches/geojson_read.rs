//! Reading 100k synthetic point features as NDJSON and as a FeatureCollection.

#![allow(
    clippy::expect_used,
    reason = "a benchmark whose own data fails to read should stop loudly"
)]

use std::hint::black_box;
use std::io::Cursor;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use etl_geo::{Format, ReadOptions, open};

mod synthetic;

const FEATURES: usize = 100_000;

fn read_all(format: Format, data: &'static [u8]) -> usize {
    let source = open(format, Box::new(Cursor::new(data)), &ReadOptions::default())
        .expect("benchmark data opens");
    let mut accepted = 0;
    for record in source {
        if record.expect("benchmark data reads").feature.is_ok() {
            accepted += 1;
        }
    }
    accepted
}

fn bench(c: &mut Criterion) {
    let features = synthetic::point_features(FEATURES);
    // Leaked so each iteration reads the same bytes without copying them.
    let ndjson: &'static [u8] = Box::leak(synthetic::ndjson(&features).into_boxed_slice());
    let collection: &'static [u8] =
        Box::leak(synthetic::feature_collection(&features).into_boxed_slice());
    assert_eq!(read_all(Format::GeoJsonSeq, ndjson), FEATURES);
    assert_eq!(read_all(Format::GeoJson, collection), FEATURES);

    let mut group = c.benchmark_group("geojson_read");
    group.throughput(Throughput::Elements(FEATURES as u64));
    group.sample_size(20);
    group.bench_function("ndjson_100k_points", |b| {
        b.iter(|| black_box(read_all(Format::GeoJsonSeq, ndjson)))
    });
    group.bench_function("feature_collection_100k_points", |b| {
        b.iter(|| black_box(read_all(Format::GeoJson, collection)))
    });
    // Reference point: serde_json's own parse of each line into a Value tree.
    group.bench_function("baseline_serde_json_value_per_line", |b| {
        b.iter(|| {
            ndjson
                .split(|&b| b == b'\n')
                .filter(|line| !line.is_empty())
                .map(|line| serde_json::from_slice::<serde_json::Value>(line).map_or(0, |_| 1))
                .sum::<usize>()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
