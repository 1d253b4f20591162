//! Hostile and malformed uploads through [`Upload`]: every way a zip's own structure can be
//! bad is [`ReadError::Refused`] (a job's exit 65), never [`ReadError::Io`] (exit 75, retried);
//! and whatever the outcome, the upload's folder in the scratch directory is gone by the time
//! the error (or the end) is returned, with the upload still alive.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use etl_geo::archive::ArchiveLimits;
use etl_geo::{ReadError, Upload, UploadOptions};
use zip::write::SimpleFileOptions;

const KML: &[u8] = br#"<kml xmlns="http://www.opengis.net/kml/2.2"><Placemark><Point><coordinates>1,2</coordinates></Point></Placemark></kml>"#;

fn hostile_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/hostile")
}

/// Names left in `dir`.
fn leftovers(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// Opens `path` and reads it to its end or its fatal error; returns the features read or
/// the error, and what is left in the scratch directory at that moment, with the upload not
/// yet dropped (as when a reader thread still holds it while the job exits).
fn outcome(path: &Path, opts: &UploadOptions) -> (Result<usize, ReadError>, Vec<String>) {
    let scratch = tempfile::tempdir().unwrap();
    let mut upload = match Upload::open(path, "x", scratch.path(), opts) {
        Ok(upload) => upload,
        Err(e) => return (Err(e), leftovers(scratch.path())),
    };
    let mut result = Ok(0);
    for record in upload.by_ref() {
        match record {
            Ok(r) => {
                if let Ok(n) = &mut result {
                    *n += usize::from(r.feature.is_ok());
                }
            }
            Err(e) => result = Err(e),
        }
    }
    let left = leftovers(scratch.path());
    drop(upload);
    (result, left)
}

/// Asserts that `path` is refused as bad input, mentioning `expected`, leaving nothing behind.
fn assert_refused(what: &str, path: &Path, opts: &UploadOptions, expected: &str) {
    let (result, left) = outcome(path, opts);
    let err = match result {
        Err(e) => e,
        Ok(n) => panic!("{what}: read {n} features, expected a refusal"),
    };
    assert!(
        matches!(err, ReadError::Refused(_)) && !err.is_io(),
        "{what}: {err:?} is not a bad-input refusal"
    );
    let text = err.to_string();
    assert!(
        text.to_lowercase().contains(&expected.to_lowercase()),
        "{what}: expected {expected:?} in {text:?}"
    );
    assert!(!text.contains('\n'), "{what}: {text:?}");
    assert!(left.is_empty(), "{what}: left in scratch: {left:?}");
}

fn write_zip(path: &Path, entries: &[(&str, &[u8])], method: zip::CompressionMethod) {
    let mut w = zip::ZipWriter::new(fs::File::create(path).unwrap());
    let opts = SimpleFileOptions::default().compression_method(method);
    for (name, data) in entries {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap();
}

fn zip_bytes(entries: &[(&str, &[u8])], method: zip::CompressionMethod) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("z.zip");
    write_zip(&path, entries, method);
    fs::read(path).unwrap()
}

/// Offsets of `needle` in `hay`.
fn find_all(hay: &[u8], needle: &[u8]) -> Vec<usize> {
    hay.windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn every_zip_fixture_in_fixtures_hostile_is_bad_input() {
    let cases: &[(&str, &str)] = &[
        ("zip-slip.kmz", "climbs out of the archive"),
        ("zip-absolute.zip", "absolute path"),
        ("zip-symlink.kmz", "symbolic link"),
        ("zip-bomb.kmz", "zip bomb"),
        ("truncated.kmz", "corrupt zip"),
    ];
    // Every zip-shaped fixture is covered here: a new one must be added to the table.
    let mut zips: Vec<String> = leftovers(&hostile_dir())
        .into_iter()
        .filter(|n| fs::read(hostile_dir().join(n)).unwrap().starts_with(b"PK"))
        .collect();
    zips.sort();
    let mut listed: Vec<String> = cases.iter().map(|(n, _)| (*n).to_owned()).collect();
    listed.sort();
    assert_eq!(zips, listed, "zip fixtures in fixtures/hostile");
    for (name, expected) in cases {
        let path = hostile_dir().join(name);
        assert_refused(name, &path, &UploadOptions::default(), expected);
    }
}

#[test]
fn every_hostile_fixture_leaves_the_scratch_directory_empty() {
    let mut checked = 0;
    for name in leftovers(&hostile_dir()) {
        if name.ends_with(".py") || name.ends_with(".md") {
            continue;
        }
        let (result, left) = outcome(&hostile_dir().join(&name), &UploadOptions::default());
        assert!(left.is_empty(), "{name}: left in scratch: {left:?}");
        // The no-features fixtures read fine (the job refuses them for having none).
        if let Err(e) = result {
            assert!(!e.is_io(), "{name}: {e:?} would be retried as temporary");
        }
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} fixtures");
}

#[test]
fn refused_coordinate_system_removes_the_extracted_files_before_the_error() {
    // A shapefile zip whose .prj the reader refuses when the part is opened, while
    // iterating: the case that used to leave `upload-*` behind when the job exited first.
    let mut shp = Vec::new();
    shp.extend_from_slice(&9994i32.to_be_bytes());
    shp.extend_from_slice(&[0; 20]);
    shp.extend_from_slice(&50i32.to_be_bytes());
    shp.extend_from_slice(&1000i32.to_le_bytes());
    shp.extend_from_slice(&1i32.to_le_bytes());
    shp.extend_from_slice(&[0; 64]);
    // A datum no registry knows: no way to WGS 84.
    let prj = br#"PROJCS["Mystery_Grid",GEOGCS["GCS_Mystery",DATUM["D_Mystery",SPHEROID["Mystery",6377000.0,299.0]],PRIMEM["Greenwich",0.0],UNIT["Degree",0.0174532925199433]],PROJECTION["Transverse_Mercator"],PARAMETER["False_Easting",500000.0],PARAMETER["Central_Meridian",15.0],PARAMETER["Scale_Factor",0.9996],UNIT["Meter",1.0]]"#;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("utm.zip");
    write_zip(
        &path,
        &[("utm.shp", &shp), ("utm.prj", prj)],
        zip::CompressionMethod::Deflated,
    );
    for _ in 0..20 {
        assert_refused(
            "utm.zip",
            &path,
            &UploadOptions::default(),
            "unsupported coordinate system",
        );
    }
}

#[test]
fn scratch_folder_is_removed_after_the_last_record_and_on_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ok.kmz");
    write_zip(
        &path,
        &[("doc.kml", KML), ("files/icon.png", b"png")],
        zip::CompressionMethod::Deflated,
    );
    let (result, left) = outcome(&path, &UploadOptions::default());
    assert_eq!(result.unwrap(), 1);
    assert!(left.is_empty(), "left after the last record: {left:?}");

    let scratch = tempfile::tempdir().unwrap();
    let upload = Upload::open(&path, "x", scratch.path(), &UploadOptions::default()).unwrap();
    assert_eq!(leftovers(scratch.path()).len(), 1, "extracted while open");
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _held = upload;
        panic!("a caller's bug while the upload is open");
    }));
    assert!(panicked.is_err());
    let left = leftovers(scratch.path());
    assert!(left.is_empty(), "left after unwinding: {left:?}");
}

#[test]
fn hostile_zip_structures_are_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let deflated = zip::CompressionMethod::Deflated;
    let stored = zip::CompressionMethod::Stored;
    let write = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        fs::write(&p, bytes).unwrap();
        p
    };
    let opts = UploadOptions::default();
    let big_kml = [KML, &[b' '; 200_000]].concat();

    // An encrypted entry: the flag set in the local and the central header.
    let mut bytes = zip_bytes(&[("doc.kml", KML)], stored);
    for at in find_all(&bytes, b"PK\x03\x04") {
        bytes[at + 6] |= 1;
    }
    for at in find_all(&bytes, b"PK\x01\x02") {
        bytes[at + 8] |= 1;
    }
    assert_refused("encrypted", &write("enc.kmz", &bytes), &opts, "encrypted");

    // More entries than allowed.
    let names: Vec<String> = (0..11).map(|i| format!("files/{i}.png")).collect();
    let mut entries: Vec<(&str, &[u8])> = names.iter().map(|n| (n.as_str(), &b"png"[..])).collect();
    entries.push(("doc.kml", KML));
    let path = dir.path().join("many.kmz");
    write_zip(&path, &entries, deflated);
    let few = UploadOptions {
        archive: ArchiveLimits {
            max_entries: 10,
            ..ArchiveLimits::default()
        },
        ..UploadOptions::default()
    };
    assert_refused("too many entries", &path, &few, "entries (limit 10)");

    // A file listed twice (the second name patched to equal the first).
    let mut bytes = zip_bytes(&[("doc.kml", KML), ("dod.kml", KML)], stored);
    for at in find_all(&bytes, b"dod.kml") {
        bytes[at + 2] = b'c';
    }
    assert_refused(
        "duplicate",
        &write("dup.kmz", &bytes),
        &opts,
        "listed twice",
    );

    // A name that is a file and a folder, in both orders.
    let both = zip_bytes(&[("doc.kml", KML), ("a", b"x"), ("a/b.png", b"x")], stored);
    assert_refused(
        "file then folder",
        &write("ff.kmz", &both),
        &opts,
        "a file in the archive",
    );
    let both = zip_bytes(&[("doc.kml", KML), ("a/b.png", b"x"), ("a", b"x")], stored);
    assert_refused(
        "folder then file",
        &write("ff2.kmz", &both),
        &opts,
        "file and a folder",
    );

    // A name part longer than file systems hold.
    let long = format!("files/{}.png", "n".repeat(300));
    let bytes = zip_bytes(&[("doc.kml", KML), (long.as_str(), b"x")], stored);
    assert_refused(
        "long name",
        &write("long.kmz", &bytes),
        &opts,
        "longer than 255 bytes",
    );

    // The central directory overwritten, or pointing past the end of the file.
    let good = zip_bytes(&[("doc.kml", &big_kml)], deflated);
    let cd = find_all(&good, b"PK\x01\x02")[0];
    let mut bytes = good.clone();
    for b in &mut bytes[cd..cd + 30] {
        *b = 0xEE;
    }
    assert_refused(
        "corrupt central directory",
        &write("cd.kmz", &bytes),
        &opts,
        "corrupt zip",
    );
    let mut bytes = good.clone();
    let eocd = find_all(&bytes, b"PK\x05\x06")[0];
    bytes[eocd + 16..eocd + 20].copy_from_slice(&0x7fff_fff0u32.to_le_bytes());
    assert_refused(
        "central directory offset",
        &write("off.kmz", &bytes),
        &opts,
        "corrupt zip",
    );

    // Corrupt compressed data: the CRC or the inflater notices.
    let mut bytes = good.clone();
    for b in &mut bytes[60..cd - 40] {
        *b ^= 0x5A;
    }
    assert_refused("corrupt data", &write("data.kmz", &bytes), &opts, "corrupt");

    // Truncated anywhere: refused, never an I/O error.
    for cut in (0..good.len()).step_by(37) {
        let (result, left) = outcome(&write("cut.kmz", &good[..cut]), &opts);
        let err = result
            .err()
            .unwrap_or_else(|| panic!("cut at {cut}: read whole"));
        assert!(
            matches!(err, ReadError::Refused(_)),
            "cut at {cut}: {err:?}"
        );
        assert!(left.is_empty(), "cut at {cut}: {left:?}");
    }
}

#[test]
fn nested_archives_share_the_entry_budget() {
    // A data package of 6 entries holding a KMZ of 6 entries: each archive is within a
    // limit of 10 entries, both together are not.
    let dir = tempfile::tempdir().unwrap();
    let kmz = dir.path().join("inner.kmz");
    let icons: Vec<String> = (0..5).map(|i| format!("files/{i}.png")).collect();
    let mut entries: Vec<(&str, &[u8])> = icons.iter().map(|n| (n.as_str(), &b"png"[..])).collect();
    entries.push(("doc.kml", KML));
    write_zip(&kmz, &entries, zip::CompressionMethod::Deflated);
    let kmz = fs::read(kmz).unwrap();
    let manifest = br#"<MissionPackageManifest version="2"><Configuration><Parameter name="uid" value="p"/></Configuration><Contents/></MissionPackageManifest>"#;
    let mut outer: Vec<(&str, &[u8])> =
        vec![("MANIFEST/manifest.xml", manifest), ("inner.kmz", &kmz)];
    let extra: Vec<String> = (0..4).map(|i| format!("att/{i}.txt")).collect();
    outer.extend(extra.iter().map(|n| (n.as_str(), &b"x"[..])));
    let path = dir.path().join("pkg.zip");
    write_zip(&path, &outer, zip::CompressionMethod::Deflated);
    let limits = |max_entries| UploadOptions {
        archive: ArchiveLimits {
            max_entries,
            ..ArchiveLimits::default()
        },
        ..UploadOptions::default()
    };
    assert_refused(
        "nested entries",
        &path,
        &limits(10),
        "more than 10 entries together",
    );
    let (result, left) = outcome(&path, &limits(12));
    assert_eq!(result.unwrap(), 1);
    assert!(left.is_empty(), "{left:?}");
}
