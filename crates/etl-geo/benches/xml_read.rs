//! Reading the XML formats: 20k KML placemarks (points with ExtendedData, ogr2ogr's layout) and
//! 1k GPX tracks of 100 points each, the shapes of the etl-events benchmark inputs.

#![allow(
    clippy::expect_used,
    reason = "a benchmark whose own data fails to read should stop loudly"
)]

use std::fmt::Write as _;
use std::hint::black_box;
use std::io::Cursor;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use etl_geo::{Format, ReadOptions, open};

const PLACEMARKS: usize = 20_000;
const TRACKS: usize = 1_000;
const TRACK_POINTS: usize = 100;

fn kml() -> Vec<u8> {
    let mut s = String::from(
        "<?xml version=\"1.0\" encoding=\"utf-8\" ?>\n<kml xmlns=\"http://www.opengis.net/kml/2.2\">\n<Document id=\"root_doc\">\n<Folder><name>points</name>\n",
    );
    for i in 0..PLACEMARKS {
        let _ = write!(
            s,
            "  <Placemark>\n\t<ExtendedData><SchemaData schemaUrl=\"#points\">\n\t\t<SimpleData name=\"id\">{i}</SimpleData>\n\t\t<SimpleData name=\"cat\">cafe</SimpleData>\n\t\t<SimpleData name=\"name\">poi {i}</SimpleData>\n\t</SchemaData></ExtendedData>\n      <Point><coordinates>{:.6},{:.6}</coordinates></Point>\n  </Placemark>\n",
            -120.0 + (i % 1000) as f64 * 0.013,
            30.0 + (i / 1000) as f64 * 0.021
        );
    }
    s.push_str("</Folder>\n</Document></kml>\n");
    s.into_bytes()
}

fn gpx() -> Vec<u8> {
    let mut s = String::from(
        "<?xml version=\"1.0\"?>\n<gpx version=\"1.1\" creator=\"bench\" xmlns=\"http://www.topografix.com/GPX/1/1\">\n",
    );
    for t in 0..TRACKS {
        let _ = write!(s, "<trk>\n  <name>road {t}</name>\n  <trkseg>\n");
        for p in 0..TRACK_POINTS {
            let _ = writeln!(
                s,
                "    <trkpt lat=\"{:.6}\" lon=\"{:.6}\">\n    </trkpt>",
                30.0 + t as f64 * 0.01 + p as f64 * 0.0001,
                -120.0 + p as f64 * 0.0003
            );
        }
        s.push_str("  </trkseg>\n</trk>\n");
    }
    s.push_str("</gpx>\n");
    s.into_bytes()
}

fn read_all(format: Format, data: &'static [u8]) -> usize {
    let source = open(format, Box::new(Cursor::new(data)), &ReadOptions::default())
        .expect("benchmark data opens");
    source
        .filter(|r| r.as_ref().expect("benchmark data reads").feature.is_ok())
        .count()
}

fn bench(c: &mut Criterion) {
    let kml: &'static [u8] = Box::leak(kml().into_boxed_slice());
    let gpx: &'static [u8] = Box::leak(gpx().into_boxed_slice());
    assert_eq!(read_all(Format::Kml, kml), PLACEMARKS);
    assert_eq!(read_all(Format::Gpx, gpx), TRACKS);

    let mut group = c.benchmark_group("xml_read");
    group.sample_size(20);
    group.throughput(Throughput::Bytes(kml.len() as u64));
    group.bench_function("kml_20k_placemarks", |b| {
        b.iter(|| black_box(read_all(Format::Kml, kml)))
    });
    group.throughput(Throughput::Bytes(gpx.len() as u64));
    group.bench_function("gpx_1k_tracks_100k_points", |b| {
        b.iter(|| black_box(read_all(Format::Gpx, gpx)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
