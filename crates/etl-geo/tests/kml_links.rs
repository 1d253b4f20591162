//! NetworkLinks of a KML or KMZ upload: linked documents packed in the KMZ are followed to
//! depth 3 (not 4), and documents a caller fetched (`UploadOptions::linked`) are read as layers
//! of their own after the upload's.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;

use etl_geo::{LinkedDoc, Record, Upload, UploadOptions, feature_to_json};

fn doc(name: &str, link: Option<&str>) -> String {
    let link = link
        .map(|h| {
            format!("<NetworkLink><name>next</name><Link><href>{h}</href></Link></NetworkLink>")
        })
        .unwrap_or_default();
    format!(
        r#"<kml xmlns="http://www.opengis.net/kml/2.2"><Document>{link}<Placemark><name>{name}</name><Point><coordinates>1,2</coordinates></Point></Placemark></Document></kml>"#
    )
}

fn names(upload: Upload) -> Vec<(u32, String)> {
    upload
        .map(|r: Result<Record, _>| {
            let r = r.unwrap();
            let f = feature_to_json(r.feature.as_ref().unwrap());
            (
                r.layer,
                f["properties"]["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn packed_links_are_followed_three_deep() {
    let dir = tempfile::tempdir().unwrap();
    let kmz = dir.path().join("chain.kmz");
    let mut w = zip::ZipWriter::new(std::fs::File::create(&kmz).unwrap());
    for (name, text) in [
        ("doc.kml", doc("root", Some("a/one.kml"))),
        ("a/one.kml", doc("one", Some("b/two.kml"))),
        ("a/b/two.kml", doc("two", Some("../../three.kml"))),
        ("three.kml", doc("three", Some("four.kml"))),
        ("four.kml", doc("four", None)),
    ] {
        w.start_file(name, zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(text.as_bytes()).unwrap();
    }
    w.finish().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let upload = Upload::open(&kmz, "chain", scratch.path(), &UploadOptions::default()).unwrap();
    assert_eq!(upload.layers, ["chain", "one", "two", "three"]);
    // The fourth level is not read; it stays an entry of the archive.
    assert!(upload.assets.iter().any(|a| a.name == "four.kml"));
    assert_eq!(
        names(upload),
        [
            (0, "root".to_owned()),
            (1, "one".to_owned()),
            (2, "two".to_owned()),
            (3, "three".to_owned())
        ]
    );
}

#[test]
fn fetched_documents_are_layers_after_the_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("main.kml");
    std::fs::write(&main, doc("root", Some("https://example.org/x.kml"))).unwrap();
    let fetched = dir.path().join("fetched-1.kml");
    std::fs::write(&fetched, doc("remote", None)).unwrap();
    let opts = UploadOptions {
        linked: vec![LinkedDoc {
            label: "https://example.org/x.kml".into(),
            path: fetched,
            layer: "x".into(),
        }],
        ..UploadOptions::default()
    };
    let scratch = tempfile::tempdir().unwrap();
    let upload = Upload::open(&main, "main", scratch.path(), &opts).unwrap();
    assert_eq!(upload.layers, ["main", "x"]);
    assert_eq!(
        names(upload),
        [(0, "root".to_owned()), (1, "remote".to_owned())]
    );
    // Only KML and KMZ uploads take linked documents.
    let geojson = dir.path().join("p.geojson");
    std::fs::write(
        &geojson,
        r#"{"type":"Feature","properties":{"name":"g"},"geometry":{"type":"Point","coordinates":[1,2]}}"#,
    )
    .unwrap();
    let upload = Upload::open(&geojson, "p", scratch.path(), &opts).unwrap();
    assert_eq!(upload.layers, ["p"]);
}
