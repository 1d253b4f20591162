//! `etl-pmtiles extract` from remote archives and by region: an `s3://` object and the same
//! object over HTTP (the S3 server scripts/test.sh starts serves objects as plain HTTP resources
//! with Range, ETag and If-Match) give the same archive as the local file, reading only a part
//! of it; a region of polygons takes the tiles it meets; failures exit with codes that say
//! whether a retry helps.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use etl_core::store::{S3Config, Store};
use etl_tiles::archive::Archive;
use etl_tiles::tile::tile_coord;

mod support;

fn s3_endpoint() -> String {
    std::env::var("S3_ENDPOINT").expect(
        "S3_ENDPOINT not set: run the tests through scripts/test.sh (it starts the S3 server)",
    )
}

/// Natural Earth's 110m countries beside the repository (a missing one fails, never skips).
fn countries() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/peer-fixtures/flatgeobuf/countries.shp");
    assert!(p.is_file(), "peer fixture missing: {}", p.display());
    p
}

fn etl_pmtiles(args: &[&str]) -> (i32, String, String) {
    support::etl_pmtiles_with(&[("ETL_S3_ENDPOINT", &s3_endpoint())], args)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The world's countries at z0-8.
fn world(dir: &Path) -> PathBuf {
    let world = dir.join("world.pmtiles");
    let (code, _, stderr) = etl_pmtiles(&["-o", s(&world), "-z8", s(&countries())]);
    assert_eq!(code, 0, "{stderr}");
    world
}

/// The S3 server's store, and a runtime to drive it.
fn s3() -> (tokio::runtime::Runtime, Store) {
    let store = Store::new(S3Config {
        endpoint: Some(s3_endpoint()),
        ..Default::default()
    });
    (tokio::runtime::Runtime::new().unwrap(), store)
}

/// Puts `bytes` at `key` in `bucket`, readable without credentials when `public`.
fn put(bucket: &str, key: &str, bytes: Vec<u8>, public: bool) {
    let (rt, store) = s3();
    rt.block_on(async {
        let client = store.s3().await.unwrap().client();
        let mut req = client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(bytes.into());
        if public {
            req = req.acl("public-read".into());
        }
        req.send().await.unwrap();
    });
}

/// A new bucket holding `objects`, public-read; its name.
fn bucket(name: &str, objects: &[(&str, Vec<u8>)]) -> String {
    let (rt, store) = s3();
    let bucket = format!("{name}-{}", std::process::id());
    rt.block_on(async {
        let client = store.s3().await.unwrap().client();
        client.create_bucket().bucket(&bucket).send().await.unwrap();
    });
    for (key, bytes) in objects {
        put(&bucket, key, bytes.clone(), true);
    }
    bucket
}

/// Every tile id with its stored bytes, runs expanded.
fn stored(path: &Path) -> BTreeMap<u64, Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    let mut a = Archive::open(Cursor::new(&bytes)).unwrap();
    let entries: Vec<_> = a.entries().map(Result::unwrap).collect();
    let mut out = BTreeMap::new();
    for e in entries {
        let data = a.read_tile(&e).unwrap();
        for k in 0..u64::from(e.run_length) {
            out.insert(e.tile_id + k, data.clone());
        }
    }
    out
}

/// "read N bytes" from the extract's report line.
fn bytes_read(stdout: &str) -> u64 {
    let after = stdout.split("read ").nth(1).expect(stdout);
    after.split(' ').next().unwrap().parse().unwrap()
}

const NZ: &str = "165.5,-47.5,179,-34";

#[test]
fn s3_and_http_archives_extract_by_ranges_to_the_local_extract() {
    let dir = tempfile::tempdir().unwrap();
    let world = world(dir.path());
    let world_len = std::fs::metadata(&world).unwrap().len();
    let local = dir.path().join("local.pmtiles");
    let (code, stdout, stderr) = etl_pmtiles(&[
        "extract",
        s(&world),
        s(&local),
        "--bbox",
        NZ,
        "--minzoom",
        "2",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("extracted"), "{stdout}");
    let want = std::fs::read(&local).unwrap();
    assert!(stored(&local).len() > 50, "{} tiles", stored(&local).len());

    let b = bucket(
        "extract-remote",
        &[("world.pmtiles", std::fs::read(&world).unwrap())],
    );
    let s3_url = format!("s3://{b}/world.pmtiles");
    let http_url = format!("{}/{b}/world.pmtiles", s3_endpoint());
    for (name, url) in [("s3", &s3_url), ("http", &http_url)] {
        let out = dir.path().join(format!("{name}.pmtiles"));
        let (code, stdout, stderr) =
            etl_pmtiles(&["extract", url, s(&out), "--bbox", NZ, "--minzoom", "2"]);
        assert_eq!(code, 0, "{name}: {stdout}\n{stderr}");
        assert!(
            std::fs::read(&out).unwrap() == want,
            "{name}: the extract differs from the local one"
        );
        let read = bytes_read(&stdout);
        assert!(
            read * 3 < world_len,
            "{name}: read {read} of {world_len} bytes"
        );
    }
    // An S3 OUT from an HTTP IN.
    let s3_out = format!("s3://{b}/nz.pmtiles");
    let (code, _, stderr) = etl_pmtiles(&["extract", &http_url, &s3_out, "--bbox", NZ]);
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, stderr) = etl_pmtiles(&["verify", &s3_out]);
    assert_eq!(code, 0, "{stdout}{stderr}");

    // Missing archives are 66, an unreachable server 69; nothing is written.
    let never = dir.path().join("never.pmtiles");
    for (url, want) in [
        (format!("{}/{b}/nope.pmtiles", s3_endpoint()), 66),
        (format!("s3://{b}/nope.pmtiles"), 66),
        ("http://127.0.0.1:9/world.pmtiles".to_owned(), 69),
    ] {
        let (code, _, stderr) = etl_pmtiles(&["extract", &url, s(&never), "--bbox", NZ]);
        assert_eq!(code, want, "{url}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("nope") || stderr.contains("127.0.0.1"),
            "{stderr}"
        );
        assert!(!never.exists());
    }
    // A file that is not an archive is 65.
    let b2 = bucket(
        "extract-junk",
        &[("junk.pmtiles", b"not an archive at all".to_vec())],
    );
    let junk = format!("{}/{b2}/junk.pmtiles", s3_endpoint());
    let (code, _, stderr) = etl_pmtiles(&["extract", &junk, s(&never), "--bbox", NZ]);
    assert_eq!(code, 65, "{stderr}");
    assert!(!never.exists());
    // An object the server will not give without credentials: access denied, 78 (a retry
    // cannot help).
    put(
        &b2,
        "private.pmtiles",
        std::fs::read(&world).unwrap(),
        false,
    );
    let private = format!("{}/{b2}/private.pmtiles", s3_endpoint());
    let (code, _, stderr) = etl_pmtiles(&["extract", &private, s(&never), "--bbox", NZ]);
    assert_eq!(code, 78, "{stderr}");
    assert!(stderr.contains("403"), "{stderr}");
    assert!(!never.exists());
}

#[test]
fn a_region_takes_the_tiles_its_polygons_meet() {
    let dir = tempfile::tempdir().unwrap();
    let world = world(dir.path());
    // A triangle over New Zealand's North Island: the South Island's tiles stay out.
    let region = dir.path().join("nz.geojson");
    std::fs::write(
        &region,
        r#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{},
        "geometry":{"type":"Polygon","coordinates":[[[172,-42.2],[179,-42.2],[172,-34],
        [172,-42.2]]]}}]}"#,
    )
    .unwrap();
    let by_region = dir.path().join("region.pmtiles");
    let (code, stdout, stderr) =
        etl_pmtiles(&["extract", s(&world), s(&by_region), "--region", s(&region)]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let by_box = dir.path().join("box.pmtiles");
    let (code, _, stderr) = etl_pmtiles(&["extract", s(&world), s(&by_box), "--bbox", NZ]);
    assert_eq!(code, 0, "{stderr}");
    let (r, b) = (stored(&by_region), stored(&by_box));
    assert!(
        r.iter().all(|(id, d)| b.get(id) == Some(d)),
        "a region tile not in the box"
    );
    let deep = |m: &BTreeMap<u64, Vec<u8>>| {
        m.keys()
            .filter(|id| tile_coord(**id).unwrap().z == 8)
            .count()
    };
    assert!(
        deep(&r) > 0 && deep(&r) < deep(&b),
        "{} of {}",
        deep(&r),
        deep(&b)
    );
    let (code, stdout, stderr) = etl_pmtiles(&["verify", s(&by_region)]);
    assert_eq!(code, 0, "{stdout}{stderr}");

    // The region from S3 gives the same archive.
    let b3 = bucket(
        "extract-region",
        &[("nz.geojson", std::fs::read(&region).unwrap())],
    );
    let again = dir.path().join("again.pmtiles");
    let (code, _, stderr) = etl_pmtiles(&[
        "extract",
        s(&world),
        s(&again),
        "--region",
        &format!("s3://{b3}/nz.geojson"),
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(std::fs::read(&again).unwrap() == std::fs::read(&by_region).unwrap());

    // What a region cannot be, and usage mistakes: one line each, nothing written.
    let point = dir.path().join("point.geojson");
    std::fs::write(&point, r#"{"type":"Point","coordinates":[170,-40]}"#).unwrap();
    let far = dir.path().join("far.geojson");
    std::fs::write(
        &far,
        r#"{"type":"Polygon","coordinates":[[[170,-40],[250,-40],[170,-30],[170,-40]]]}"#,
    )
    .unwrap();
    let never = dir.path().join("never.pmtiles");
    for (args, want, says) in [
        (
            vec!["--region", s(&point)],
            65,
            "a point; a region is polygons",
        ),
        (vec!["--region", s(&far)], 65, "250"),
        (vec!["--region", "/nonexistent/r.geojson"], 66, "r.geojson"),
        (vec!["--region", s(&region), "--bbox", NZ], 64, ""),
        (vec![], 64, ""),
    ] {
        let mut all = vec!["extract", s(&world), s(&never)];
        all.extend(args.iter().copied());
        let (code, _, stderr) = etl_pmtiles(&all);
        assert_eq!(code, want, "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!never.exists());
    }
}
