//! Hostile uploads through the whole binary stay bounded: a KML whose single text node is
//! 2 GiB, and a data package whose nested KMZs each fit the expansion limit but together do
//! not, both exit 65 naming the problem, publish nothing, leave the scratch directory empty,
//! and peak under 100 MB of resident memory (the run summary's `peak_rss_bytes`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::path::Path;

use support::{Run, entries_in, etl_events, files_in};

const MIB: u64 = 1 << 20;

fn import(input: &Path, out: &Path, scratch: &Path, extra: &[&str]) -> Run {
    Run::from_output(
        etl_events()
            .args([
                "--input",
                input.to_str().unwrap(),
                "--output",
                out.to_str().unwrap(),
                "--scratch",
                scratch.to_str().unwrap(),
            ])
            .args(extra)
            .output()
            .unwrap(),
    )
}

#[track_caller]
fn refused_whole(r: &Run, expected: &str, out: &Path, scratch: &Path) {
    r.assert_code(65);
    let error = r.error();
    assert!(!error.contains('\n'), "{error}");
    assert!(
        error.contains(expected),
        "expected {expected:?} in {error:?}"
    );
    assert!(files_in(out).is_empty(), "published: {:?}", files_in(out));
    assert!(
        entries_in(scratch).is_empty(),
        "scratch left: {:?}",
        entries_in(scratch)
    );
    let peak = r.summary["peak_rss_bytes"].as_u64().unwrap();
    eprintln!("peak RSS {} MiB", peak / MIB);
    assert!(peak < 100 * MIB, "peak RSS {} MiB", peak / MIB);
}

/// 2 GiB in one `<description>`, with the default limits.
#[test]
fn a_2_gib_text_node_is_refused_in_bounded_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("huge.kml");
    {
        let mut f =
            std::io::BufWriter::with_capacity(8 << 20, std::fs::File::create(&input).unwrap());
        f.write_all(b"<?xml version=\"1.0\"?>\n<kml xmlns=\"http://www.opengis.net/kml/2.2\"><Placemark><description>")
            .unwrap();
        let block = vec![b'x'; 8 << 20];
        for _ in 0..(2048 / 8) {
            f.write_all(&block).unwrap();
        }
        f.write_all(
            b"</description><Point><coordinates>1,2</coordinates></Point></Placemark></kml>\n",
        )
        .unwrap();
        f.flush().unwrap();
    }
    assert!(std::fs::metadata(&input).unwrap().len() > 2 << 30);
    let (out, scratch) = (tmp.path().join("out"), tmp.path().join("scratch"));
    std::fs::create_dir_all(&scratch).unwrap();
    let r = import(
        &input,
        &out,
        &scratch,
        &["--max-bytes", &(3u64 << 30).to_string()],
    );
    refused_whole(&r, "huge.kml", &out, &scratch);
    assert!(r.error().contains("runs past"), "{}", r.error());
}

/// A zip entry: its name and what writes its bytes.
type Entry<'a> = (&'a str, &'a dyn Fn(&mut dyn Write));

fn zip_of(path: &Path, entries: &[Entry<'_>]) {
    let mut w = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    for (name, write) in entries {
        w.start_file(
            *name,
            zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated),
        )
        .unwrap();
        write(&mut w);
    }
    w.finish().unwrap();
}

/// Text that deflates about 20:1, under the default ratio limit of 100.
fn placemarks(w: &mut dyn Write, bytes: u64) {
    w.write_all(b"<kml xmlns=\"http://www.opengis.net/kml/2.2\"><Document>")
        .unwrap();
    let mut written = 0u64;
    let mut i = 0u64;
    while written < bytes {
        let p = format!(
            "<Placemark><name>p{i}</name><description>{}</description><Point><coordinates>{},{}</coordinates></Point></Placemark>",
            i.wrapping_mul(2_654_435_761) % 1_000_003,
            (i % 360) as f64 - 180.0,
            (i % 170) as f64 - 85.0
        );
        w.write_all(p.as_bytes()).unwrap();
        written += p.len() as u64;
        i += 1;
    }
    w.write_all(b"</Document></kml>").unwrap();
}

/// A data package of three KMZs, each 24 MiB expanded, under a 48 MiB expansion limit: each
/// fits, together they do not.
#[test]
fn nested_archives_share_one_expansion_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let kmz = tmp.path().join("part.kmz");
    zip_of(
        &kmz,
        &[("doc.kml", &|w: &mut dyn Write| placemarks(w, 24 * MIB))],
    );
    let kmz_bytes = std::fs::read(&kmz).unwrap();
    let package = tmp.path().join("package.zip");
    let manifest = br#"<MissionPackageManifest version="2"><Configuration><Parameter name="uid" value="p"/><Parameter name="name" value="p"/></Configuration><Contents><Content ignore="false" zipEntry="a.kmz"/><Content ignore="false" zipEntry="b.kmz"/><Content ignore="false" zipEntry="c.kmz"/></Contents></MissionPackageManifest>"#;
    let copy = |w: &mut dyn Write| w.write_all(&kmz_bytes).unwrap();
    zip_of(
        &package,
        &[
            ("MANIFEST/manifest.xml", &|w: &mut dyn Write| {
                w.write_all(manifest).unwrap()
            }),
            ("a.kmz", &copy),
            ("b.kmz", &copy),
            ("c.kmz", &copy),
        ],
    );
    let (out, scratch) = (tmp.path().join("out"), tmp.path().join("scratch"));
    std::fs::create_dir_all(&scratch).unwrap();
    let limit = (48 * MIB).to_string();
    let r = import(&package, &out, &scratch, &["--max-unzipped-bytes", &limit]);
    refused_whole(&r, "package.zip", &out, &scratch);
    // One KMZ alone fits the same limit.
    let single = tmp.path().join("single");
    std::fs::create_dir_all(&single).unwrap();
    let r = import(
        &kmz,
        &single.join("out"),
        &scratch,
        &["--max-unzipped-bytes", &limit, "-z", "4"],
    );
    r.assert_code(0);
}
