//! The GeoParquet reader against files geopandas/pyarrow wrote (`fixtures/formats/geoparquet/`,
//! made by its `make.py`), hostile files, and the writer read back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod chunks;
mod hostile;
mod pages;
mod round_trip;

use std::path::{Path, PathBuf};

use geo_types::{Geometry, LineString, Point, Polygon};
use serde_json::json;

use super::open;
use crate::crs::Crs;
use crate::error::ReadError;
use crate::feature::Feature;
use crate::formats::{ReadOptions, Record};

pub(super) fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/formats/geoparquet")
        .join(name)
}

/// Every record of the file, or the first fatal error.
pub(super) fn read_with(path: &Path, opts: &ReadOptions) -> Result<Vec<Record>, ReadError> {
    open(path, opts)?.collect()
}

pub(super) fn features(path: &Path) -> Vec<Feature> {
    read_with(path, &ReadOptions::default())
        .unwrap()
        .into_iter()
        .map(|r| r.feature.unwrap())
        .collect()
}

#[test]
fn wkb_points_with_every_property_type() {
    let f = features(&fixture("points_wkb.parquet"));
    assert_eq!(f.len(), 4);
    // ISO WKB Point Z: Z dropped.
    assert_eq!(f[0].geometry, Some(Point::new(174.77, -41.29).into()));
    assert_eq!(
        serde_json::Value::Object(f[0].properties.clone()),
        json!({
            "name": "alpha", "count": 1, "score": 1.5, "flag": true, "day": "2024-02-29",
            "seen": "2024-02-29T12:34:56.789Z", "local": "2024-02-29T12:34:56",
            "blob": "AAH/", "price": 12.34, "tags": ["a", "b"], "info": {"k": 1, "v": "x"}
        })
    );
    assert_eq!(f[1].properties["seen"], json!("1970-01-01T00:00:00Z"));
    assert_eq!(f[1].properties["info"], json!({"k": 2, "v": null}));
    assert_eq!(f[1].properties["blob"], json!(""));
    // A row of nulls but its count: null geometry, null properties.
    assert_eq!(f[2].geometry, None);
    assert_eq!(f[2].properties["count"], json!(3));
    assert_eq!(f[2].properties.values().filter(|v| v.is_null()).count(), 10);
    // The empty point (NaN, NaN) is a null geometry.
    assert_eq!(f[3].geometry, None);
    assert_eq!(f[3].properties["price"], json!(1000.0));
    assert!(f.iter().all(|f| f.id.is_none()));
}

#[test]
fn native_polygons_and_multipolygons() {
    let polygons = features(&fixture("polygons_native.parquet"));
    let square = Polygon::new(
        LineString::from(vec![(0., 0.), (0., 1.), (1., 1.), (1., 0.), (0., 0.)]),
        vec![],
    );
    assert_eq!(polygons[0].geometry, Some(square.clone().into()));
    let Some(Geometry::Polygon(holed)) = &polygons[1].geometry else {
        panic!("{:?}", polygons[1]);
    };
    assert_eq!(holed.interiors().len(), 1);
    assert_eq!(holed.exterior().0.len(), 5);
    assert_eq!(polygons[1].properties["name"], json!("holed"));

    // The bbox covering column is an index: not a property.
    let covered = features(&fixture("polygons_covering.parquet"));
    assert_eq!(covered.len(), 2);
    assert_eq!(covered[0].geometry, Some(square.clone().into()));
    assert_eq!(covered[0].properties.keys().collect::<Vec<_>>(), ["name"]);
    let skipped = super::describe(
        &fixture("polygons_covering.parquet"),
        &ReadOptions::default(),
    )
    .unwrap();
    assert_eq!(
        skipped,
        ["column \"bbox\": the geometry's bbox covering, not read"]
    );

    // lz4-compressed.
    let multi = features(&fixture("multipolygons_native.parquet"));
    let parts: Vec<usize> = multi
        .iter()
        .map(|f| match &f.geometry {
            Some(Geometry::MultiPolygon(m)) => m.0.len(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(parts, [2, 1]);
    let Some(Geometry::MultiPolygon(one)) = &multi[1].geometry else {
        unreachable!()
    };
    assert_eq!(one.0[0], square);
}

#[test]
fn native_lines_points_separated_and_interleaved() {
    let separated = features(&fixture("linestrings_native.parquet"));
    let interleaved = features(&fixture("linestrings_interleaved.parquet"));
    assert_eq!(separated, interleaved);
    assert_eq!(
        separated[1].geometry,
        Some(LineString::from(vec![(2., 2.), (3., 4.), (5., 6.)]).into())
    );
    let multilines = features(&fixture("multilinestrings_native.parquet"));
    assert!(
        matches!(&multilines[0].geometry, Some(Geometry::MultiLineString(m)) if m.0.len() == 2)
    );
    let multipoints = features(&fixture("multipoints_native.parquet"));
    assert!(matches!(&multipoints[0].geometry, Some(Geometry::MultiPoint(m)) if m.0.len() == 2));
}

#[test]
fn geoparquet_1_0_in_epsg_4326_stays_longitude_first() {
    let f = features(&fixture("mixed_v1_0.parquet"));
    assert_eq!(
        f[0].geometry,
        Some(LineString::from(vec![(170.0, -45.0), (171.0, -44.0)]).into())
    );
    assert!(matches!(f[1].geometry, Some(Geometry::Polygon(_))));
}

/// The reference (lon, lat) of the NZTM points, by id (`fixtures/crs/2193.csv.gz`, GDAL's).
pub(super) fn nztm_reference() -> Vec<(f64, f64)> {
    use std::io::Read;
    let file = std::fs::File::open(fixture("../../crs/2193.csv.gz")).unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .unwrap();
    text.lines()
        .skip(1)
        .map(|l| {
            let v: Vec<f64> = l.split(',').map(|x| x.parse().unwrap()).collect();
            (v[2], v[3])
        })
        .collect()
}

#[test]
fn nztm_points_in_four_row_groups_land_where_gdal_puts_them() {
    let records = read_with(&fixture("nztm.parquet"), &ReadOptions::default()).unwrap();
    let reference = nztm_reference();
    assert_eq!(records.len(), 10_000);
    let mut worst: f64 = 0.0;
    for (n, r) in records.iter().enumerate() {
        assert_eq!((r.line, r.ordinal), (n as u64 + 1, n as u64));
        let f = r.feature.as_ref().unwrap();
        let id = f.properties["id"].as_u64().unwrap() as usize;
        assert_eq!(f.properties["name"], json!(format!("p{id}")));
        let Some(Geometry::Point(p)) = f.geometry else {
            panic!("{f:?}")
        };
        let (lon, lat) = reference[id];
        worst = worst.max((p.x() - lon).abs()).max((p.y() - lat).abs());
    }
    assert!(worst < 1e-7, "{worst}° off GDAL");
}

#[test]
fn an_unknown_crs_needs_s_srs() {
    let path = fixture("unknown_crs.parquet");
    let e = read_with(&path, &ReadOptions::default()).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("unknown_crs.parquet: geometry column \"geometry\": its crs is null"),
        "{e}"
    );
    let opts = ReadOptions {
        source_crs: Some(Crs::from_definition("EPSG:2193").unwrap()),
        ..ReadOptions::default()
    };
    let got = read_with(&path, &opts).unwrap();
    let reference = nztm_reference();
    let Ok(Feature {
        geometry: Some(Geometry::Point(p)),
        ..
    }) = &got[0].feature
    else {
        panic!("{:?}", got[0])
    };
    assert!((p.x() - reference[0].0).abs() < 1e-7 && (p.y() - reference[0].1).abs() < 1e-7);
}

#[test]
fn a_parquet_file_without_geo_metadata_is_not_geoparquet() {
    let e = read_with(&fixture("plain.parquet"), &ReadOptions::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "plain.parquet: a Parquet file without \"geo\" metadata: not GeoParquet (no geometry column is declared)"
    );
}

#[test]
fn the_upload_detects_geoparquet_by_its_magic() {
    let dir = tempfile::tempdir().unwrap();
    // No extension: found by content.
    let path = dir.path().join("upload");
    std::fs::copy(fixture("polygons_native.parquet"), &path).unwrap();
    let upload =
        crate::upload::Upload::open(&path, "parcels", dir.path(), &Default::default()).unwrap();
    assert_eq!(upload.format, crate::upload::UploadFormat::GeoParquet);
    assert_eq!(upload.layers, ["parcels"]);
    let records: Vec<Record> = upload.collect::<Result<_, _>>().unwrap();
    assert_eq!(records.len(), 2);
}
