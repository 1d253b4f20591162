//! Encoding 100k synthetic point features as PostgreSQL COPY rows, text and binary.

#![allow(
    clippy::expect_used,
    reason = "a benchmark whose own data fails to read should stop loudly"
)]

use std::hint::black_box;
use std::io::Cursor;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use etl_geo::{Feature, Format, ReadOptions, open};
use etl_sinks::{ColumnKind, ColumnSource, Conflict, CopyColumn, CopyEncoder};

#[path = "../../etl-geo/benches/synthetic.rs"]
mod synthetic;

const FEATURES: usize = 100_000;

fn column(name: &str, kind: ColumnKind, source: ColumnSource) -> CopyColumn {
    CopyColumn {
        name: name.to_owned(),
        kind,
        source,
    }
}

fn bench(c: &mut Criterion) {
    let data = synthetic::ndjson(&synthetic::point_features(FEATURES));
    let features: Vec<Feature> = open(
        Format::GeoJsonSeq,
        Box::new(Cursor::new(data)),
        &ReadOptions::default(),
    )
    .expect("benchmark data opens")
    .map(|r| {
        r.expect("benchmark data reads")
            .feature
            .expect("valid feature")
    })
    .collect();
    let prop = |name: &str| ColumnSource::Property(name.to_owned());
    let encoder = CopyEncoder::new(
        vec![
            column("_ordinal", ColumnKind::BigInt, ColumnSource::Ordinal),
            column("id", ColumnKind::BigInt, ColumnSource::Id),
            column("city", ColumnKind::Integer, prop("city")),
            column("category", ColumnKind::Text, prop("category")),
            column("name", ColumnKind::Text, prop("name")),
            column("value", ColumnKind::Double, prop("value")),
            column("geom", ColumnKind::Geometry, ColumnSource::Geometry),
        ],
        4326,
    );
    assert!(encoder.binary_supported());
    let mut out = Vec::with_capacity(FEATURES * 160);
    type Encode = fn(&CopyEncoder, &Feature, i64, &mut Vec<u8>) -> Result<(), Conflict>;
    let formats: [(&str, Encode); 2] = [
        ("100k_points_7_columns", CopyEncoder::encode),
        ("100k_points_7_columns_binary", CopyEncoder::encode_binary),
    ];

    // What each format puts on the wire, for reading the timings against.
    for (name, encode) in formats {
        out.clear();
        for (i, f) in features.iter().enumerate() {
            encode(&encoder, f, i as i64, &mut out).expect("benchmark features fit");
        }
        eprintln!("{name}: {} bytes per row", out.len() / FEATURES);
    }

    let mut group = c.benchmark_group("copy_encode");
    group.throughput(Throughput::Elements(FEATURES as u64));
    group.sample_size(30);
    for (name, encode) in formats {
        group.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                for (i, f) in features.iter().enumerate() {
                    encode(&encoder, f, i as i64, &mut out).expect("benchmark features fit");
                }
                black_box(out.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
