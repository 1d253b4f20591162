//! TAK data packages and other zip uploads through `Upload`, against node-cot's expectations
//! for its package fixtures (`packages/expected.json`: CoTs, attachments and files per
//! package), plus KMZ assets and nested archives.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::Path;

use etl_geo::{Upload, UploadFormat, UploadOptions};
use serde_json::Value;

mod common;

fn packages() -> std::path::PathBuf {
    common::peer_fixtures("node-cot/packages")
}

fn open(path: &Path) -> Result<Upload, etl_geo::ReadError> {
    let scratch = tempfile::tempdir().unwrap();
    // The scratch directory must outlive the upload: leak it for the test's duration.
    let dir = scratch.keep();
    Upload::open(path, "pkg", &dir, &UploadOptions::default())
}

/// Features of an upload by layer name, and the fatal error if any.
fn read_all(upload: Upload) -> (Vec<(String, usize)>, Option<String>) {
    let layers = upload.layers.clone();
    let mut counts = vec![0usize; layers.len()];
    let mut error = None;
    for r in upload {
        match r {
            Ok(rec) => {
                if rec.feature.is_ok() {
                    counts[rec.layer as usize] += 1;
                }
            }
            Err(e) => error = Some(e.to_string()),
        }
    }
    (layers.into_iter().zip(counts).collect(), error)
}

#[test]
fn node_cot_packages() {
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(packages().join("expected.json")).unwrap())
            .unwrap();
    for p in expected["packages"].as_array().unwrap() {
        let file = p["file"].as_str().unwrap();
        let Some(cots) = p["cots"].as_u64() else {
            continue;
        };
        let path = packages().join(file);
        // An iconset is not a data package (no MANIFEST/manifest.xml): refused by name.
        if file == "Iconset-FalconView.zip" {
            let err = open(&path).unwrap_err().to_string();
            assert!(
                err.contains("unsupported input format") && err.contains("iconset.xml"),
                "{err}"
            );
            continue;
        }
        let upload = open(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(upload.format, UploadFormat::DataPackage, "{file}");
        let assets = upload.assets.len() as u64;
        let (layers, error) = read_all(upload);
        assert_eq!(error, None, "{file}");
        let cot_features: usize = layers
            .iter()
            .filter(|(n, _)| n == "pkg")
            .map(|(_, n)| n)
            .sum();
        assert_eq!(cot_features as u64, cots, "{file}: CoT features {layers:?}");
        // node-cot's `files` are the non-CoT contents: ours are either read by their own format
        // (a KMZ becomes a layer) or listed as assets.
        let other_layers = layers.iter().filter(|(n, _)| n != "pkg").count() as u64;
        let files = p["files"].as_u64().unwrap() + p["attachments"].as_u64().unwrap();
        assert_eq!(
            assets + other_layers,
            files,
            "{file}: assets {assets}, layers {layers:?}"
        );
    }
}

#[test]
fn kmz_inside_a_package_is_read_as_kml() {
    let upload = open(&packages().join("COMilePosts.zip")).unwrap();
    let (layers, error) = read_all(upload);
    assert_eq!(error, None);
    assert_eq!(layers.len(), 1, "{layers:?}");
    assert_eq!(layers[0].0, "CO Mileposts");
    assert!(layers[0].1 > 100, "{layers:?}");
}

#[test]
fn kmz_assets_and_nested_names() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.kmz");
    let mut w = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let opts = zip::write::SimpleFileOptions::default();
    w.start_file("files/a.png", opts).unwrap();
    w.write_all(b"png").unwrap();
    w.start_file("doc.kml", opts).unwrap();
    w.write_all(
        br#"<kml><Placemark><Point><coordinates>1,2</coordinates></Point></Placemark></kml>"#,
    )
    .unwrap();
    w.finish().unwrap();
    let upload = open(&path).unwrap();
    assert_eq!(upload.format, UploadFormat::Kmz);
    assert_eq!(upload.assets.len(), 1);
    assert_eq!(upload.assets[0].name, "files/a.png");
    assert_eq!(upload.assets[0].bytes, 3);
    let (layers, error) = read_all(upload);
    assert_eq!((layers, error), (vec![("pkg".to_owned(), 1)], None));
}
