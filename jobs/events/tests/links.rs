//! NetworkLinks of a KML upload to documents outside it: fetched from a loopback HTTP server
//! (allowed by --allow-network-link-host), relative links against the fetched document's URL,
//! a KMZ among them, redirects, depth 3 and not 4; the metadata address, file:// and an
//! unallowed loopback host skipped, never fatal.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;

use serde_json::Value;
use support::http::serve;
use support::{check_outputs, run};

fn kml(name: &str, links: &[&str]) -> String {
    let links: String = links
        .iter()
        .map(|h| {
            format!("<NetworkLink><name>to {h}</name><Link><href>{h}</href></Link></NetworkLink>")
        })
        .collect();
    format!(
        r#"<?xml version="1.0"?><kml xmlns="http://www.opengis.net/kml/2.2"><Document>{links}<Placemark><name>{name}</name><Point><coordinates>-105,39.7</coordinates></Point></Placemark></Document></kml>"#
    )
}

fn kmz(doc: &str) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.start_file("doc.kml", zip::write::SimpleFileOptions::default())
        .unwrap();
    w.write_all(doc.as_bytes()).unwrap();
    w.finish().unwrap().into_inner()
}

/// Imports `upload` into `out` with `allow` (the loopback server, `127.0.0.1` or
/// `127.0.0.1:PORT`) allowed; the checked manifest of `name`.
fn import_allowing(
    upload: &std::path::Path,
    out: &std::path::Path,
    name: &str,
    allow: &str,
) -> Value {
    run(&[
        "--input",
        upload.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--allow-network-link-host",
        allow,
    ])
    .assert_code(0);
    check_outputs(out, name)
}

fn names_in(out: &std::path::Path, manifest: &Value) -> Vec<(String, String)> {
    let file = manifest["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == "geojsonl")
        .unwrap()["file"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut got: Vec<(String, String)> = std::fs::read_to_string(out.join(file))
        .unwrap()
        .lines()
        .map(|l| {
            let f: Value = serde_json::from_str(l).unwrap();
            (
                f["properties"]["layer"].as_str().unwrap_or("").to_owned(),
                f["properties"]["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    got
}

#[test]
fn network_links_are_followed_three_deep_and_guarded() {
    let (base, asked) = serve(vec![
        (
            "/a.kml",
            200,
            vec![],
            kml("remote a", &["sub/b.kml"]).into_bytes(),
        ),
        (
            "/sub/b.kml",
            200,
            vec![],
            kml("remote b", &["../moved"]).into_bytes(),
        ),
        (
            "/moved",
            302,
            vec![("location", "/c.kmz".to_owned())],
            Vec::new(),
        ),
        ("/c.kmz", 200, vec![], kmz(&kml("remote c", &["/d.kml"]))),
        ("/d.kml", 200, vec![], kml("remote d", &[]).into_bytes()),
        ("/notkml", 200, vec![], b"{\"type\":\"Feature\"}".to_vec()),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let upload = dir.path().join("links.kml");
    std::fs::write(
        &upload,
        kml(
            "local",
            &[
                &format!("{base}/a.kml"),
                &format!("{base}/notkml"),
                "http://169.254.169.254/latest/meta-data/",
                "file:///etc/passwd",
                "packed-beside.kml",
            ],
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    // Only the server's own port is allowed.
    let manifest = import_allowing(
        &upload,
        &out,
        "links",
        base.strip_prefix("http://").unwrap(),
    );
    let layers: Vec<&str> = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    assert_eq!(layers, ["links", "a", "b", "c"], "{manifest}");
    assert_eq!(
        names_in(&out, &manifest),
        [
            ("a".to_owned(), "remote a".to_owned()),
            ("b".to_owned(), "remote b".to_owned()),
            ("c".to_owned(), "remote c".to_owned()),
            ("links".to_owned(), "local".to_owned()),
        ]
    );
    // Depth 4 was never asked for; the metadata address never reached.
    let asked = asked.lock().unwrap().clone();
    assert_eq!(
        asked,
        ["/a.kml", "/notkml", "/sub/b.kml", "/moved", "/c.kmz"]
    );
    let skipped: Vec<&str> = manifest["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(skipped.len(), 3, "{skipped:?}");
    assert!(
        skipped[0].contains("/notkml: not a KML or KMZ document"),
        "{skipped:?}"
    );
    assert!(
        skipped[1].contains("169.254.169.254") && skipped[1].contains("--allow-network-link-host"),
        "{skipped:?}"
    );
    assert!(
        skipped[2].contains("file:///etc/passwd") && skipped[2].contains("only http and https"),
        "{skipped:?}"
    );
}

#[test]
fn loopback_is_refused_unless_allowed_and_links_can_be_turned_off() {
    let (base, asked) = serve(vec![(
        "/a.kml",
        200,
        vec![],
        kml("remote a", &[]).into_bytes(),
    )]);
    let dir = tempfile::tempdir().unwrap();
    let upload = dir.path().join("up.kml");
    std::fs::write(&upload, kml("local", &[&format!("{base}/a.kml")])).unwrap();
    let out = dir.path().join("out");
    let r = run(&[
        "--input",
        upload.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
    ]);
    r.assert_code(0);
    let manifest = check_outputs(&out, "up");
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);
    let skipped = manifest["skipped"][0].as_str().unwrap();
    assert!(
        skipped.contains("127.0.0.1") && skipped.contains("--allow-network-link-host"),
        "{skipped}"
    );
    let off = dir.path().join("off");
    let r = run(&[
        "--input",
        upload.to_str().unwrap(),
        "--output",
        off.to_str().unwrap(),
        "--no-network-links",
        "--allow-network-link-host",
        "127.0.0.1",
    ]);
    r.assert_code(0);
    let manifest = check_outputs(&off, "up");
    assert_eq!(manifest["layers"].as_array().unwrap().len(), 1);
    assert!(manifest.get("skipped").is_none(), "{manifest}");
    assert!(
        asked.lock().unwrap().is_empty(),
        "nothing is fetched from a host not allowed"
    );
}

#[test]
fn a_kmzs_icons_become_a_sprite_sheet_beside_the_tiles() {
    let img = image_png(48, 48);
    let (base, _asked) = serve(vec![("/pin.png", 200, vec![], img.clone())]);
    let doc = format!(
        r#"<kml xmlns="http://www.opengis.net/kml/2.2"><Document>
<Style id="t"><IconStyle><Icon><href>files/tent.png</href></Icon></IconStyle></Style>
<Placemark><name>Tent</name><styleUrl>#t</styleUrl><Point><coordinates>1,2</coordinates></Point></Placemark>
<Placemark><name>Pin</name><Style><IconStyle><Icon><href>{base}/pin.png</href></Icon></IconStyle></Style><Point><coordinates>2,3</coordinates></Point></Placemark>
<Placemark><name>Lost</name><Style><IconStyle><Icon><href>files/missing.png</href></Icon></IconStyle></Style><Point><coordinates>3,4</coordinates></Point></Placemark>
</Document></kml>"#
    );
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in [
        ("doc.kml", doc.as_bytes().to_vec()),
        ("files/tent.png", img),
    ] {
        w.start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(&data).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let upload = dir.path().join("camp.kmz");
    std::fs::write(&upload, w.finish().unwrap().into_inner()).unwrap();
    let out = dir.path().join("out");
    let manifest = import_allowing(&upload, &out, "camp", "127.0.0.1");
    let kinds: Vec<&str> = manifest["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["geojsonl", "pmtiles", "sprite.png", "sprite.json"]);
    let file = |kind: &str| {
        out.join(
            manifest["outputs"]
                .as_array()
                .unwrap()
                .iter()
                .find(|o| o["kind"] == kind)
                .unwrap()["file"]
                .as_str()
                .unwrap(),
        )
    };
    let index: Value =
        serde_json::from_slice(&std::fs::read(file("sprite.json")).unwrap()).unwrap();
    let keys: Vec<&String> = index.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["files/tent.png", &format!("{base}/pin.png")]);
    assert_eq!(index["files/tent.png"]["height"], 32);
    let sheet = std::fs::read(file("sprite.png")).unwrap();
    assert_eq!(&sheet[1..4], b"PNG");
    // The placemarks keep their hrefs: the sprite is indexed by them.
    let names = names_in(&out, &manifest);
    assert_eq!(names.len(), 3);
    let skipped = manifest["skipped"].as_array().unwrap();
    assert!(
        skipped.iter().any(|s| s
            .as_str()
            .unwrap()
            .contains("files/missing.png: not in the upload")),
        "{skipped:?}"
    );
}

/// A plain PNG of `w`×`h`.
fn image_png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbaImage::from_pixel(w, h, image::Rgba([200, 30, 30, 255]));
    let mut out = Vec::new();
    image::DynamicImage::ImageRgba8(img)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .unwrap();
    out
}

#[test]
fn failed_links_count_against_the_limit() {
    let (base, asked) = serve(vec![]);
    let links: Vec<String> = (0..80).map(|i| format!("{base}/missing-{i}.kml")).collect();
    let refs: Vec<&str> = links.iter().map(String::as_str).collect();
    let dir = tempfile::tempdir().unwrap();
    let upload = dir.path().join("many.kml");
    std::fs::write(&upload, kml("local", &refs)).unwrap();
    let out = dir.path().join("out");
    let r = run(&[
        "--input",
        upload.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--allow-network-link-host",
        "127.0.0.1",
    ]);
    r.assert_code(0);
    // 50 tried (each a 404), the other 30 not even asked for.
    assert_eq!(asked.lock().unwrap().len(), 50);
    let manifest = check_outputs(&out, "many");
    let skipped = manifest["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 21, "{skipped:?}");
    assert_eq!(skipped[20], "… and 60 more");
    assert!(
        skipped[0].as_str().unwrap().contains("HTTP 404"),
        "{skipped:?}"
    );
}
