//! Hostile inputs that used to cost unbounded memory or time: a KML with a 2 GiB text node,
//! nested zip bombs, a Shapefile polygon of a hundred thousand rings, a WKB of nested
//! collections claiming millions of members.
//!
//! Peak memory is measured in a child process (this test binary run again on one ignored
//! test, which reports `VmHWM` from `/proc/self/status`), so other tests running in parallel
//! do not count.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use etl_geo::archive::ArchiveLimits;
use etl_geo::geo_types::Geometry;
use etl_geo::{Cancel, Format, ReadError, ReadOptions, Upload, UploadOptions, open};
use zip::write::SimpleFileOptions;

const MIB: u64 = 1 << 20;

/// Runs the ignored test `name` of this binary alone in a child process with `env`; returns
/// the `REPORT key=value` lines it printed.
fn run_child(name: &str, env: &[(&str, String)]) -> BTreeMap<String, u64> {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args([
            "--ignored",
            "--exact",
            name,
            "--nocapture",
            "--test-threads=1",
        ])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("test result: ok. 1 passed"),
        "child {name} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    stdout
        .lines()
        // The harness prints `test NAME ... ` without a line break before the test's output.
        .filter_map(|l| l.split_once("REPORT ").map(|(_, kv)| kv))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim().parse().unwrap()))
        .collect()
}

/// A value of `/proc/self/status` (`VmHWM:`, `VmPeak:`), in bytes.
fn status_bytes(key: &str) -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(key)).unwrap();
    let kib: u64 = line
        .trim_start_matches(key)
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib * 1024
}

/// This process's peak resident set size, in bytes.
fn peak_rss() -> u64 {
    status_bytes("VmHWM:")
}

// ---------------------------------------------------------------------------------------
// A KML whose one text node is 2 GiB, generated as it is read.

const HEAD: &[u8] = b"<?xml version=\"1.0\"?>\n<kml xmlns=\"http://www.opengis.net/kml/2.2\">\n<Placemark>\n<description>";
const TAIL: &[u8] =
    b"</description><Point><coordinates>1,2</coordinates></Point></Placemark></kml>\n";
const TEXT_BYTES: u64 = 2 << 30;

/// The document, produced on the fly; `served` counts the bytes handed out.
struct HugeText {
    at: u64,
    served: Arc<AtomicU64>,
}

impl Read for HugeText {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let text_start = HEAD.len() as u64;
        let text_end = text_start + TEXT_BYTES;
        let n = if self.at < text_start {
            copy_from(&HEAD[self.at as usize..], out)
        } else if self.at < text_end {
            let k = out.len().min((text_end - self.at) as usize);
            out[..k].fill(b'a');
            k
        } else {
            let from = ((self.at - text_end) as usize).min(TAIL.len());
            copy_from(&TAIL[from..], out)
        };
        self.at += n as u64;
        self.served.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

fn copy_from(src: &[u8], out: &mut [u8]) -> usize {
    let k = src.len().min(out.len());
    out[..k].copy_from_slice(&src[..k]);
    k
}

/// Reads the 2 GiB-text KML with `max_xml_text` (from `ETL_GEO_MAX_XML_TEXT`, else the
/// default) and reports the error position, the bytes read and the peak RSS.
#[test]
#[ignore = "run in a child process by kml_2gib_text_node_* tests"]
fn child_kml_2gib_text_node() {
    let mut opts = ReadOptions::default();
    if let Ok(v) = std::env::var("ETL_GEO_MAX_XML_TEXT") {
        opts.max_xml_text = v.parse().unwrap();
    }
    let served = Arc::new(AtomicU64::new(0));
    let input = HugeText {
        at: 0,
        served: served.clone(),
    };
    let source = open(
        Format::Kml,
        Box::new(BufReader::with_capacity(64 * 1024, input)),
        &opts,
    )
    .unwrap();
    let items: Vec<_> = source.collect();
    assert_eq!(items.len(), 1, "one fatal error and nothing else");
    let Some(Err(err)) = items.into_iter().next() else {
        panic!("expected a fatal error");
    };
    assert!(matches!(err, ReadError::Invalid { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.starts_with("4:1: XML: a single text"), "{text}");
    assert!(
        text.contains(&format!("the {}-byte text limit", opts.max_xml_text)),
        "{text}"
    );
    println!("REPORT line={}", err.position().unwrap().0);
    println!("REPORT served={}", served.load(Ordering::Relaxed));
    println!("REPORT limit={}", opts.max_xml_text);
    println!("REPORT peak_rss={}", peak_rss());
}

#[test]
fn kml_2gib_text_node_is_refused_within_100_mb() {
    let limit = 16 * MIB;
    let r = run_child(
        "child_kml_2gib_text_node",
        &[("ETL_GEO_MAX_XML_TEXT", limit.to_string())],
    );
    assert_eq!(r["line"], 4);
    // Read no further than the event limit (text limit + 64 KiB) plus one read buffer.
    let served = r["served"];
    assert!(
        served <= limit + 64 * 1024 + 2 * 64 * 1024 + HEAD.len() as u64,
        "{served}"
    );
    assert!(served > limit, "{served}");
    let rss = r["peak_rss"];
    eprintln!(
        "2 GiB text node, 16 MiB text limit: peak RSS {} MiB",
        rss / MIB
    );
    assert!(rss < 100 * MIB, "peak RSS {rss} bytes");
}

#[test]
fn kml_2gib_text_node_with_the_default_limit_stops_at_the_limit() {
    let r = run_child("child_kml_2gib_text_node", &[]);
    let limit = r["limit"];
    assert_eq!(limit, 15 * MIB);
    let served = r["served"];
    assert!(
        served <= limit + 64 * 1024 + 2 * 64 * 1024 + HEAD.len() as u64,
        "{served}"
    );
    // The event buffer holds at most the limit: far below the 2 GiB of the node.
    let rss = r["peak_rss"];
    eprintln!(
        "2 GiB text node, default 15 MiB text limit: peak RSS {} MiB",
        rss / MIB
    );
    assert!(rss < 100 * MIB, "peak RSS {rss} bytes");
}

// ---------------------------------------------------------------------------------------
// Nested zip bombs: each archive within the limits, all of them together not.

/// Writes a zip to `path`; each entry is a name and a generator writing its bytes.
type Gen<'a> = &'a dyn Fn(&mut dyn Write) -> io::Result<()>;

fn write_zip(path: &Path, method: zip::CompressionMethod, entries: &[(&str, Gen<'_>)]) {
    let mut w = zip::ZipWriter::new(fs::File::create(path).unwrap());
    let opts = SimpleFileOptions::default()
        .compression_method(method)
        .large_file(false);
    for (name, generate) in entries {
        w.start_file(*name, opts).unwrap();
        generate(&mut w).unwrap();
    }
    w.finish().unwrap();
}

/// A valid KML padded with `pad` bytes of whitespace, written in chunks.
fn padded_kml(pad: u64) -> impl Fn(&mut dyn Write) -> io::Result<()> {
    move |out| {
        out.write_all(
            b"<kml><Placemark><Point><coordinates>1,2</coordinates></Point></Placemark>",
        )?;
        let chunk = vec![b' '; MIB as usize];
        let mut left = pad;
        while left > 0 {
            let k = left.min(MIB);
            out.write_all(&chunk[..k as usize])?;
            left -= k;
        }
        out.write_all(b"</kml>")
    }
}

fn copy_of(path: &Path) -> impl Fn(&mut dyn Write) -> io::Result<()> + '_ {
    move |out| io::copy(&mut fs::File::open(path)?, out).map(|_| ())
}

const MANIFEST: &[u8] = br#"<MissionPackageManifest version="2"><Configuration><Parameter name="uid" value="bomb"/></Configuration><Contents/></MissionPackageManifest>"#;

/// Builds the nested bomb `ETL_GEO_BOMB` (`siblings` or `deep`), opens it under a 32 MiB
/// total limit, asserts it is refused as bad input with nothing left in the scratch
/// directory, and reports the peak RSS.
#[test]
#[ignore = "run in a child process by nested_zip_bomb_* tests"]
fn child_nested_zip_bomb() {
    let kind = std::env::var("ETL_GEO_BOMB").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let manifest = |out: &mut dyn Write| out.write_all(MANIFEST);
    let stored = zip::CompressionMethod::Stored;
    let limits = ArchiveLimits {
        max_total_bytes: 32 * MIB,
        ..ArchiveLimits::default()
    };
    let (path, limits) = match kind.as_str() {
        // Three KMZs of 30 MiB each inflated (just under the limit), a few KiB each
        // compressed; the ratio limit is lifted so only the total can refuse them.
        "siblings" => {
            let kmz = dir.path().join("part.kmz");
            let doc = padded_kml(30 * MIB - 200);
            write_zip(&kmz, zip::CompressionMethod::Deflated, &[("doc.kml", &doc)]);
            let part = copy_of(&kmz);
            let path = dir.path().join("siblings.zip");
            write_zip(
                &path,
                stored,
                &[
                    ("MANIFEST/manifest.xml", &manifest),
                    ("a.kmz", &part),
                    ("b.kmz", &part),
                    ("c.kmz", &part),
                ],
            );
            let limits = ArchiveLimits {
                max_ratio: 1_000_000,
                ..limits
            };
            (path, limits)
        }
        // A package holding a 17 MiB KMZ holding a 17 MiB KMZ (all stored, ratio 1):
        // 17 MiB for the package, 17 MiB more for the middle KMZ.
        "deep" => {
            let inner = dir.path().join("inner.kmz");
            let doc = padded_kml(17 * MIB);
            write_zip(&inner, stored, &[("doc.kml", &doc)]);
            let middle = dir.path().join("middle.kmz");
            let small = padded_kml(0);
            let inner_copy = copy_of(&inner);
            write_zip(
                &middle,
                stored,
                &[("doc.kml", &small), ("files/inner.kmz", &inner_copy)],
            );
            let middle_copy = copy_of(&middle);
            let path = dir.path().join("deep.zip");
            write_zip(
                &path,
                stored,
                &[
                    ("MANIFEST/manifest.xml", &manifest),
                    ("middle.kmz", &middle_copy),
                ],
            );
            (path, limits)
        }
        other => panic!("unknown bomb {other}"),
    };
    let opts = UploadOptions {
        archive: limits,
        ..UploadOptions::default()
    };
    // Each archive alone is within the limits: extracting it with a budget of its own works.
    let err = match Upload::open(&path, "bomb", scratch.path(), &opts) {
        Ok(mut upload) => {
            let err = upload.by_ref().find_map(Result::err);
            let left = fs::read_dir(scratch.path()).unwrap().count();
            assert_eq!(left, 0, "scratch not empty with the upload alive");
            err.expect("refused")
        }
        Err(e) => e,
    };
    assert!(matches!(err, ReadError::Refused(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("zip bomb") && text.contains("counting every archive of the upload"),
        "{text}"
    );
    let left: Vec<_> = fs::read_dir(scratch.path()).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    println!("REPORT peak_rss={}", peak_rss());
}

#[test]
fn nested_zip_bomb_of_sibling_kmzs_is_refused_within_100_mb() {
    let r = run_child(
        "child_nested_zip_bomb",
        &[("ETL_GEO_BOMB", "siblings".into())],
    );
    eprintln!("sibling KMZ bomb: peak RSS {} MiB", r["peak_rss"] / MIB);
    assert!(r["peak_rss"] < 100 * MIB, "{r:?}");
}

#[test]
fn nested_zip_bomb_zip_in_zip_in_zip_is_refused_within_100_mb() {
    let r = run_child("child_nested_zip_bomb", &[("ETL_GEO_BOMB", "deep".into())]);
    eprintln!(
        "zip-in-zip-in-zip bomb: peak RSS {} MiB",
        r["peak_rss"] / MIB
    );
    assert!(r["peak_rss"] < 100 * MIB, "{r:?}");
}

// ---------------------------------------------------------------------------------------
// A Shapefile polygon of 50,000 shells, each with a hole.

/// A `.shp` of one Polygon record with these rings.
fn polygon_shp(rings: &[Vec<(f64, f64)>]) -> Vec<u8> {
    let points: usize = rings.iter().map(Vec::len).sum();
    let mut c = Vec::new();
    c.extend_from_slice(&5i32.to_le_bytes());
    c.extend_from_slice(&[0; 32]);
    c.extend_from_slice(&(rings.len() as i32).to_le_bytes());
    c.extend_from_slice(&(points as i32).to_le_bytes());
    let mut start = 0i32;
    for r in rings {
        c.extend_from_slice(&start.to_le_bytes());
        start += r.len() as i32;
    }
    for &(x, y) in rings.iter().flatten() {
        c.extend_from_slice(&x.to_le_bytes());
        c.extend_from_slice(&y.to_le_bytes());
    }
    let mut shp = Vec::new();
    shp.extend_from_slice(&9994i32.to_be_bytes());
    shp.extend_from_slice(&[0; 20]);
    shp.extend_from_slice(&(((100 + 8 + c.len()) / 2) as i32).to_be_bytes());
    shp.extend_from_slice(&1000i32.to_le_bytes());
    shp.extend_from_slice(&5i32.to_le_bytes());
    shp.extend_from_slice(&[0; 64]);
    shp.extend_from_slice(&1i32.to_be_bytes());
    shp.extend_from_slice(&((c.len() / 2) as i32).to_be_bytes());
    shp.extend_from_slice(&c);
    shp
}

/// A square ring; clockwise (a shapefile shell) or counter-clockwise (a hole).
fn square(x: f64, y: f64, size: f64, clockwise: bool) -> Vec<(f64, f64)> {
    let mut r = vec![
        (x, y),
        (x + size, y),
        (x + size, y + size),
        (x, y + size),
        (x, y),
    ];
    if clockwise {
        r.reverse();
    }
    r
}

const SHELLS: usize = 50_000;

/// A stored zip holding `many.shp`: 50,000 shells on a grid, then their holes in reverse
/// order, so that a hole is never next to its shell.
fn many_rings_zip(dir: &Path) -> std::path::PathBuf {
    let cell = |i: usize| {
        (
            -60.0 + (i % 250) as f64 * 0.5,
            -50.0 + (i / 250) as f64 * 0.5,
        )
    };
    let mut rings = Vec::with_capacity(2 * SHELLS);
    for i in 0..SHELLS {
        let (x, y) = cell(i);
        rings.push(square(x, y, 0.4, true));
    }
    for i in (0..SHELLS).rev() {
        let (x, y) = cell(i);
        rings.push(square(x + 0.1, y + 0.1, 0.2, false));
    }
    let shp = polygon_shp(&rings);
    let path = dir.join("many.zip");
    let shp_gen = |out: &mut dyn Write| out.write_all(&shp);
    write_zip(
        &path,
        zip::CompressionMethod::Stored,
        &[("many.shp", &shp_gen)],
    );
    path
}

#[test]
fn shapefile_polygon_of_100k_rings_assigns_every_hole() {
    let dir = tempfile::tempdir().unwrap();
    let path = many_rings_zip(dir.path());
    let scratch = tempfile::tempdir().unwrap();
    let upload = Upload::open(&path, "many", scratch.path(), &UploadOptions::default()).unwrap();
    let records: Vec<_> = upload.collect::<Result<_, _>>().unwrap();
    assert_eq!(records.len(), 1);
    let feature = records[0].feature.as_ref().unwrap();
    let Some(Geometry::MultiPolygon(mp)) = &feature.geometry else {
        panic!("expected a MultiPolygon");
    };
    assert_eq!(mp.0.len(), SHELLS, "one polygon per shell");
    let mut assigned = 0;
    for p in &mp.0 {
        let shell = &p.exterior().0;
        let (lo_x, hi_x) = (shell[0].x.min(shell[2].x), shell[0].x.max(shell[2].x));
        let (lo_y, hi_y) = (shell[0].y.min(shell[2].y), shell[0].y.max(shell[2].y));
        for hole in p.interiors() {
            let h = hole.0[0];
            assert!(
                lo_x < h.x && h.x < hi_x && lo_y < h.y && h.y < hi_y,
                "hole at {h:?} given to the shell {shell:?}"
            );
            assigned += 1;
        }
        assert_eq!(p.interiors().len(), 1);
    }
    assert_eq!(assigned, SHELLS);
    assert_eq!(fs::read_dir(scratch.path()).unwrap().count(), 0);
}

#[test]
fn shapefile_ring_assembly_stops_when_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let path = many_rings_zip(dir.path());
    let flag = Cancel::new();
    flag.cancel();
    let past = Cancel::new().with_deadline(std::time::Instant::now());
    for cancel in [flag, past] {
        let scratch = tempfile::tempdir().unwrap();
        let mut opts = UploadOptions::default();
        opts.read.cancel = cancel;
        let upload = Upload::open(&path, "many", scratch.path(), &opts).unwrap();
        let items: Vec<_> = upload.collect();
        assert_eq!(items.len(), 1, "only the error");
        let Some(Err(ReadError::Io(e))) = items.into_iter().next() else {
            panic!("expected an I/O (interrupted) error");
        };
        assert_eq!(e.kind(), io::ErrorKind::Interrupted);
        assert!(e.to_string().contains("cancelled"), "{e}");
        assert_eq!(fs::read_dir(scratch.path()).unwrap().count(), 0);
    }
}

// ---------------------------------------------------------------------------------------
// WKB of nested collections, each claiming as many members as the bytes left could hold.

/// 64 GeometryCollections nested around a point, each claiming a member per 9 bytes left,
/// then zeros to 16 MiB: refused at the first zero. Reports the address space it took
/// (`VmPeak`): room reserved for every claim would be 64 x 1.8 M members.
#[test]
#[ignore = "run in a child process by nested_wkb_collections_reserve_nothing_for_their_claims"]
fn child_nested_wkb_collections() {
    const LEN: usize = 16 << 20;
    let mut wkb = Vec::with_capacity(LEN);
    for _ in 0..64 {
        wkb.extend([1, 7, 0, 0, 0]);
        let left = LEN - wkb.len() - 4;
        wkb.extend(u32::try_from(left / 9).unwrap().to_le_bytes());
    }
    wkb.extend([1, 1, 0, 0, 0]);
    wkb.extend(1f64.to_le_bytes());
    wkb.extend(2f64.to_le_bytes());
    wkb.resize(LEN, 0);
    let before = status_bytes("VmPeak:");
    let err = etl_geo::read_ewkb(&wkb).unwrap_err().to_string();
    let after = status_bytes("VmPeak:");
    assert!(err.contains("unknown geometry type code 0"), "{err}");
    println!("REPORT reserved={}", after.saturating_sub(before));
}

#[test]
fn nested_wkb_collections_reserve_nothing_for_their_claims() {
    let r = run_child("child_nested_wkb_collections", &[]);
    let reserved = r["reserved"];
    eprintln!(
        "64 nested WKB collections of 16 MiB: {} MiB of address space",
        reserved / MIB
    );
    assert!(reserved < 64 * MIB, "{reserved} bytes reserved");
}
