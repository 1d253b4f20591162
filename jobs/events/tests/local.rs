//! `etl-events --input FILE --output DIR`: every format end to end through the binary, hostile
//! and broken uploads (exit 65, a one-line reason, no outputs), idempotent reruns, schema drift.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;
use support::{PEER, check_outputs, files_in, layout, output_path, repo, run};

fn import(input: &Path, out: &Path, extra: &[&str]) -> support::Run {
    let mut args = vec![
        "--input",
        input.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run(&args)
}

fn zip_of(path: &Path, entries: &[(&str, &[u8])]) {
    let mut w = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    for (name, data) in entries {
        w.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap();
}

/// Each hostile or broken upload: exit 65, one line naming the file and the problem, and
/// nothing in the output directory.
#[test]
fn hostile_and_broken_uploads_are_refused_whole() {
    let cases: &[(&str, &str)] = &[
        ("zip-slip.kmz", "climbs out of the archive"),
        ("zip-absolute.zip", "absolute path"),
        ("zip-symlink.kmz", "symbolic link"),
        ("zip-bomb.kmz", "zip bomb"),
        ("truncated.kmz", "corrupt zip"),
        ("billion-laughs.kml", "DTD"),
        ("external-entity.gpx", "DTD"),
        ("deep.geojson", "nest"),
        ("truncated.kml", ""),
        ("truncated.gpx", ""),
        ("truncated.geojson", ""),
        ("truncated.cot", ""),
        ("corrupt.fgb", ""),
        (
            "unknown.bin",
            "unsupported input format: binary data starting with bytes 89 50 4e 47",
        ),
        ("no-features.geojson", "no features found"),
        ("no-features.kml", "no features found"),
    ];
    let tmp = tempfile::tempdir().unwrap();
    for (file, expected) in cases {
        let out = tmp.path().join(file.replace('.', "_"));
        let input = repo("fixtures/hostile").join(file);
        let r = import(&input, &out, &[]);
        assert_eq!(r.code, 65, "{file}: exit code\n{}", r.stderr);
        let error = r.error();
        assert!(!error.contains('\n'), "{file}: {error}");
        assert!(
            error.contains(file),
            "{file}: the error names the file: {error}"
        );
        assert!(
            error.to_lowercase().contains(&expected.to_lowercase()),
            "{file}: expected {expected:?} in {error:?}"
        );
        assert!(
            files_in(&out).is_empty(),
            "{file}: outputs left behind: {:?}",
            files_in(&out)
        );
    }
}

#[test]
fn uploads_over_the_size_limit_are_refused_before_reading() {
    let tmp = tempfile::tempdir().unwrap();
    let r = import(
        &repo("fixtures/data/sites.geojson"),
        tmp.path(),
        &["--max-bytes", "100"],
    );
    r.assert_code(65);
    assert!(r.error().contains("over the limit of 100"), "{}", r.error());
    assert!(files_in(tmp.path()).is_empty());
}

#[test]
fn zip_limits_are_configurable() {
    let tmp = tempfile::tempdir().unwrap();
    let kmz = tmp.path().join("big.kmz");
    let kml = format!(
        "<kml><Placemark><name>{}</name><Point><coordinates>1,2</coordinates></Point></Placemark></kml>",
        "x".repeat(4000)
    );
    zip_of(&kmz, &[("doc.kml", kml.as_bytes())]);
    let out = tmp.path().join("out");
    let r = import(&kmz, &out, &["--max-unzipped-bytes", "1000"]);
    r.assert_code(65);
    assert!(
        r.error().contains("zip bomb") && r.error().contains("1000 bytes"),
        "{}",
        r.error()
    );
    import(&kmz, &out, &[]).assert_code(0);
    assert_eq!(
        layout(&files_in(&out)),
        ["big.V.geojsonl", "big.V.pmtiles", "big.json"]
    );
}

/// A KML run: outputs whole and consistent; a rerun rewrites nothing; a changed input is
/// imported again.
#[test]
fn kml_import_then_rerun_is_a_no_op() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("route.kml");
    std::fs::copy(format!("{PEER}/togeojson/data/linestring.kml"), &input).unwrap();
    let out = tmp.path().join("out");
    let r = import(&input, &out, &[]);
    r.assert_code(0);
    assert_eq!(r.status(), "succeeded");
    let manifest = check_outputs(&out, "route");
    assert_eq!(manifest["format"], "kml");
    assert_eq!(manifest["layers"][0]["name"], "route");
    assert!(manifest["features"].as_u64().unwrap() > 0);
    let archive = output_path(&out, "route", "pmtiles");
    let before = std::fs::metadata(&archive).unwrap().modified().unwrap();

    let again = import(&input, &out, &[]);
    again.assert_code(0);
    assert_eq!(again.status(), "skipped", "{}", again.stdout);
    let after = std::fs::metadata(&archive).unwrap().modified().unwrap();
    assert_eq!(before, after, "a repeated import rewrote the archive");

    // Touching the content makes it another version.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&input)
        .unwrap();
    writeln!(f, "<!-- edited -->").unwrap();
    drop(f);
    import(&input, &out, &[]).assert_code(0).status();
    let m2: Value =
        serde_json::from_slice(&std::fs::read(out.join("route.json")).unwrap()).unwrap();
    assert_ne!(m2["source"]["etag"], manifest["source"]["etag"]);
}

/// Every format through the whole binary, named by content rather than extension.
#[test]
fn every_format_imports() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let kml = std::fs::read(format!("{PEER}/togeojson/data/style.kml")).unwrap();
    let cot = std::fs::read(format!(
        "{PEER}/node-cot/xml/cot-emergency-cot-emergency-wearos.xml"
    ))
    .unwrap();
    // KMZ with an icon, zipped Shapefile, a data package holding a CoT and an attachment.
    zip_of(
        &dir.join("styled.kmz"),
        &[("doc.kml", &kml), ("files/icon.png", b"\x89PNG")],
    );
    let shp = |ext: &str| std::fs::read(format!("{PEER}/flatgeobuf/countries.{ext}")).unwrap();
    zip_of(
        &dir.join("countries.zip"),
        &[
            ("countries.shp", &shp("shp")),
            ("countries.shx", &shp("shx")),
            ("countries.dbf", &shp("dbf")),
            ("countries.prj", &shp("prj")),
        ],
    );
    let manifest = br#"<MissionPackageManifest version="2"><Configuration><Parameter name="uid" value="pkg-1"/><Parameter name="name" value="Package"/></Configuration><Contents><Content ignore="false" zipEntry="a/event.cot"><Parameter name="uid" value="e1"/></Content><Content ignore="false" zipEntry="a/photo.jpg"><Parameter name="uid" value="e1"/></Content></Contents></MissionPackageManifest>"#;
    zip_of(
        &dir.join("package.zip"),
        &[
            ("MANIFEST/manifest.xml", manifest),
            ("a/event.cot", &cot),
            ("a/photo.jpg", b"\xff\xd8\xff"),
        ],
    );
    let cases: Vec<(PathBuf, &str, &str)> = vec![
        (repo("fixtures/data/sites.geojson"), "sites", "geojson"),
        (
            repo("fixtures/data/tracks.geojsonl"),
            "tracks",
            "geojsonseq",
        ),
        (
            repo("fixtures/data/observations.csv"),
            "observations",
            "csv",
        ),
        (
            PathBuf::from(format!("{PEER}/togeojson/data/style.kml")),
            "style",
            "kml",
        ),
        (dir.join("styled.kmz"), "styled", "kmz"),
        (
            PathBuf::from(format!("{PEER}/togeojson/data/blue_hills.gpx")),
            "blue_hills",
            "gpx",
        ),
        (dir.join("countries.zip"), "countries", "shapefile"),
        (
            PathBuf::from(format!("{PEER}/flatgeobuf/countries.fgb")),
            "countries",
            "flatgeobuf",
        ),
        (
            PathBuf::from(format!(
                "{PEER}/node-cot/xml/cot-emergency-cot-emergency-wearos.xml"
            )),
            "cot-emergency-cot-emergency-wearos",
            "cot",
        ),
        (dir.join("package.zip"), "package", "datapackage"),
    ];
    for (input, name, format) in cases {
        let out = dir.join(format!("out-{format}"));
        // The countries cover the world: z14 would be tens of millions of tiles.
        let zoom: &[&str] = if name == "countries" {
            &["-z", "3"]
        } else {
            &[]
        };
        let r = import(&input, &out, zoom);
        assert_eq!(r.code, 0, "{format}: {}\n{}", r.error(), r.stderr);
        let manifest = check_outputs(&out, name);
        assert_eq!(manifest["format"], format, "{manifest}");
        assert!(
            manifest["features"].as_u64().unwrap() > 0,
            "{format}: {manifest}"
        );
        let b = manifest["bounds"].as_array().unwrap();
        assert!(
            b[0].as_f64().unwrap() <= b[2].as_f64().unwrap(),
            "{format}: {manifest}"
        );
        match format {
            "kmz" => assert_eq!(manifest["assets"][0]["name"], "files/icon.png"),
            "gpx" => assert_eq!(
                manifest["layers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| l["name"].as_str().unwrap())
                    .collect::<Vec<_>>(),
                ["waypoints", "routes", "tracks"]
            ),
            "shapefile" => assert_eq!(manifest["features"], 179),
            "flatgeobuf" => assert_eq!(manifest["features"], 179),
            "datapackage" => {
                assert_eq!(manifest["package"]["uid"], "pkg-1");
                assert_eq!(manifest["assets"][0]["name"], "a/photo.jpg");
                assert_eq!(manifest["assets"][0]["uid"], "e1");
                assert_eq!(manifest["features"], 1);
            }
            _ => {}
        }
    }
}

#[test]
fn peer_data_packages() {
    let tmp = tempfile::tempdir().unwrap();
    // CameraCOTs: one CoT. COMilePosts: a KMZ inside the package.
    for (zip, features_min) in [("CameraCOTs.zip", 1u64), ("COMilePosts.zip", 1)] {
        let out = tmp.path().join(zip);
        let r = import(
            Path::new(&format!("{PEER}/node-cot/packages/{zip}")),
            &out,
            &[],
        );
        assert_eq!(r.code, 0, "{zip}: {}", r.error());
        let m = check_outputs(&out, zip.trim_end_matches(".zip"));
        assert!(
            m["features"].as_u64().unwrap() >= features_min,
            "{zip}: {m}"
        );
        assert_eq!(m["format"], "datapackage");
    }
    // A package with only a text file holds no features.
    let out = tmp.path().join("aoi");
    let r = import(
        Path::new(&format!("{PEER}/node-cot/packages/GrandJunctionAOI.zip")),
        &out,
        &[],
    );
    r.assert_code(65);
    assert!(r.error().contains("no features found"), "{}", r.error());
}

#[test]
fn mbtiles_converts_to_pmtiles_only() {
    let tmp = tempfile::tempdir().unwrap();
    let fixture = repo("fixtures/formats/mbtiles");
    let Some(mbtiles) = std::fs::read_dir(&fixture)
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "mbtiles"))
    else {
        panic!("no .mbtiles fixture in {}", fixture.display());
    };
    let r = import(&mbtiles, tmp.path(), &[]);
    r.assert_code(0);
    let stem = mbtiles.file_stem().unwrap().to_str().unwrap();
    let m = check_outputs(tmp.path(), stem);
    assert_eq!(m["format"], "mbtiles");
    assert_eq!(m["outputs"].as_array().unwrap().len(), 1);
    assert_eq!(files_in(tmp.path()).len(), 2);
}

#[test]
fn schema_is_checked_in() {
    let r = run(&["--print-schema"]);
    r.assert_code(0);
    let path = repo("schemas/etl-events.json");
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        r.stdout.trim(),
        checked_in.trim(),
        "schemas/etl-events.json is out of date: regenerate with `etl-events --print-schema > schemas/etl-events.json`"
    );
}

#[test]
fn usage_errors() {
    run(&[]).assert_code(64);
    run(&["--input", "x.kml"]).assert_code(64);
    run(&["--input", "x.kml", "--serve", "--output", "o"]).assert_code(64);
    run(&["--bucket", "b", "--output", "o"]).assert_code(64);
    run(&["--input", "x.kml", "--output", "o", "--outputs", "shp"]).assert_code(64);
}

/// Degenerate routes and tracks are features, repaired, never a failed import: a GPX whose only
/// track has one point imports as a Point, and the manifest counts what was repaired, by kind.
#[test]
fn degenerate_tracks_are_repaired_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let one = tmp.path().join("one.gpx");
    std::fs::copy(
        repo("fixtures/fidelity/gpxpy/gpx-with-node-with-comments.gpx"),
        &one,
    )
    .unwrap();
    import(&one, &out, &[]).assert_code(0);
    let m = check_outputs(&out, "one");
    assert_eq!(m["features"], 1, "{m}");
    assert_eq!(m["rejected"], 0, "{m}");
    assert_eq!(m["repaired"], 1, "{m}");
    assert_eq!(m["repairs"], serde_json::json!({"line_to_point": 1}), "{m}");
    let text = std::fs::read_to_string(output_path(&out, "one", "geojsonl")).unwrap();
    let f: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(f["geometry"]["type"], "Point");
    assert_eq!(f["properties"]["name"], "2014-05-06_132925");

    let many = tmp.path().join("degenerate.gpx");
    std::fs::copy(repo("fixtures/formats/gpx/degenerate.gpx"), &many).unwrap();
    import(&many, &out, &[]).assert_code(0);
    let m = check_outputs(&out, "degenerate");
    assert_eq!(m["features"], 6, "{m}");
    assert_eq!(m["features_without_geometry"], 2, "{m}");
    assert_eq!(m["repaired"], 4, "{m}");
    assert_eq!(
        m["repairs"],
        serde_json::json!({"line_to_point": 2, "lines_to_points": 1, "parts_dropped": 1}),
        "{m}"
    );
    // An ordinary import says it repaired nothing.
    let plain = tmp.path().join("plain.gpx");
    std::fs::copy(repo("fixtures/formats/gpx/gpx10.gpx"), &plain).unwrap();
    import(&plain, &out, &[]).assert_code(0);
    let m = check_outputs(&out, "plain");
    assert_eq!(m["repaired"], 0, "{m}");
    assert!(m.get("repairs").is_none(), "{m}");
}
