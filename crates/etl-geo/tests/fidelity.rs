//! The third-party corpus (`fixtures/fidelity/`: test files shipped by public GPX, KML and
//! Shapefile libraries, listed with their licenses in `SOURCES.md`) read through `Upload`,
//! against the feature counts GDAL's ogr2ogr 3.6 gives for the same files
//! (`expected.csv`, written by `ogr_counts.sh`, so this test needs no GDAL).
//!
//! Asserted: no file panics; every corpus file has an expected count and every expected count
//! a file; at least 95 % of the files give ogr2ogr's count; and every file that does not is in
//! [`EXPLAINED`] with the count we give and why. The table is compared exactly, so a change in
//! either direction (a new difference, or an explained one that went away) fails until the
//! table is updated.
//!
//! Our count is the number of features an import publishes: the accepted records (repaired
//! ones included), or 0 when reading fails as a whole (etl-events publishes nothing then).
//!
//! Measured: main before this work (d8e991c) agreed on 88 of the 113 files (77.9 %); now 109
//! (96.5 %). `cargo test -p etl-geo --test fidelity -- --nocapture` prints each file's counts.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use etl_geo::{Upload, UploadOptions};

/// Files whose count differs from ogr2ogr's: (file, our count, why).
const EXPLAINED: &[(&str, u64, &str)] = &[
    (
        "gdal/gx_track_without_when.kml",
        1,
        "GDAL 3.6's LIBKML driver crashes (SIGSEGV) on a gx:Track without <when> (the file is \
         GDAL's regression test for that crash) and its KML driver reads 0 features; we read the \
         track as a LineString",
    ),
    (
        "togeojson/bad.gpx",
        0,
        "every point's lat/lon is \"undefined\" or \"x\"/\"y\": GDAL reads them as 0 (C atof) \
         and puts 4 features at 0,0; we reject each waypoint, route and track with a \
         non-numeric coordinate",
    ),
    (
        "togeojson/bad.kml",
        0,
        "coordinates like \"no,no\": libkml reads a non-number as 0 and keeps the placemark \
         whose every tuple has two values (at 0,30); we reject each placemark whose \
         coordinates are not numbers",
    ),
    (
        "togeojson/twopoints.kml",
        2,
        "two Placemarks directly under <kml>, where KML allows one feature: libkml keeps only \
         the last; we read both",
    ),
];

/// The share of files that must agree with ogr2ogr.
const MIN_AGREEMENT: f64 = 0.95;

/// Sidecars of a Shapefile: read with their `.shp`, not inputs of their own.
const SIDECARS: &[&str] = &["dbf", "shx", "prj", "cpg", "qpj"];

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/fidelity")
}

/// `expected.csv`: file → ogr2ogr's count.
fn expected() -> BTreeMap<String, u64> {
    let text = std::fs::read_to_string(corpus().join("expected.csv")).unwrap();
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#')).skip(1) {
        let mut cells = line.splitn(3, ',');
        let file = cells.next().unwrap().to_owned();
        let count: u64 = cells.next().unwrap().parse().unwrap();
        assert!(out.insert(file.clone(), count).is_none(), "{file} twice");
    }
    out
}

/// Every input file of the corpus (one folder per source), relative to it.
fn inputs() -> Vec<String> {
    let mut out = Vec::new();
    for dir in std::fs::read_dir(corpus()).unwrap() {
        let dir = dir.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&dir).unwrap() {
            let path = file.unwrap().path();
            let ext = path
                .extension()
                .map(|e| e.to_string_lossy().to_ascii_lowercase())
                .unwrap_or_default();
            if SIDECARS.contains(&ext.as_str()) {
                continue;
            }
            let rel = path.strip_prefix(corpus()).unwrap();
            out.push(rel.to_string_lossy().replace('\\', "/"));
        }
    }
    out.sort();
    out
}

/// What reading one file gave.
struct Outcome {
    features: u64,
    rejected: u64,
    repaired: u64,
    error: Option<String>,
}

fn read(path: &Path) -> Outcome {
    let scratch = tempfile::tempdir().unwrap();
    let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
    let mut out = Outcome {
        features: 0,
        rejected: 0,
        repaired: 0,
        error: None,
    };
    let upload = match Upload::open(path, &stem, scratch.path(), &UploadOptions::default()) {
        Ok(u) => u,
        Err(e) => {
            out.error = Some(e.to_string());
            return out;
        }
    };
    for record in upload {
        match record {
            Ok(r) => match &r.feature {
                Ok(_) => {
                    out.features += 1;
                    out.repaired += u64::from(!r.repairs.is_empty());
                }
                Err(_) => out.rejected += 1,
            },
            Err(e) => {
                out.error = Some(e.to_string());
                out.features = 0;
                break;
            }
        }
    }
    out
}

#[test]
fn corpus_matches_ogr2ogr() {
    let expected = expected();
    let files = inputs();
    let listed: Vec<&String> = expected.keys().collect();
    assert_eq!(
        files.iter().collect::<Vec<_>>(),
        listed,
        "the corpus files and expected.csv differ: run fixtures/fidelity/ogr_counts.sh"
    );
    let mut differences: Vec<(String, u64, u64)> = Vec::new();
    let mut panics = Vec::new();
    let mut summary = String::new();
    for file in &files {
        let path = corpus().join(file);
        let outcome = match catch_unwind(AssertUnwindSafe(|| read(&path))) {
            Ok(o) => o,
            Err(_) => {
                panics.push(file.clone());
                continue;
            }
        };
        let ogr = expected[file];
        summary.push_str(&format!(
            "{file}: ogr2ogr {ogr}, ours {} (rejected {}, repaired {}){}\n",
            outcome.features,
            outcome.rejected,
            outcome.repaired,
            outcome
                .error
                .as_deref()
                .map(|e| format!(", error: {e}"))
                .unwrap_or_default()
        ));
        if outcome.features != ogr {
            differences.push((file.clone(), outcome.features, ogr));
        }
    }
    println!("{summary}");
    assert!(panics.is_empty(), "reading panicked on {panics:?}");
    let agree = files.len() - differences.len();
    let share = agree as f64 / files.len() as f64;
    println!(
        "agreement with ogr2ogr: {agree} of {} files ({:.1} %)",
        files.len(),
        share * 100.0
    );
    let found: Vec<(&str, u64)> = differences
        .iter()
        .map(|(f, ours, _)| (f.as_str(), *ours))
        .collect();
    let explained: Vec<(&str, u64)> = EXPLAINED.iter().map(|(f, n, _)| (*f, *n)).collect();
    assert_eq!(
        found,
        explained,
        "the differences from ogr2ogr (file, our count) are not the explained ones; \
         ogr2ogr's counts: {:?}",
        differences
            .iter()
            .map(|(f, _, ogr)| (f.as_str(), *ogr))
            .collect::<Vec<_>>()
    );
    assert!(
        share >= MIN_AGREEMENT,
        "only {agree} of {} files agree with ogr2ogr",
        files.len()
    );
}
