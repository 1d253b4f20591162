//! What [`GeoParquetWriter`] writes reads back as the same features, with the `geo` metadata
//! the specification asks for.

use std::collections::BTreeMap;

use geo_types::{Geometry, GeometryCollection, LineString, MultiPolygon, Point, Polygon};
use parquet::file::reader::{FileReader, SerializedFileReader};
use serde_json::{Value, json};

use super::read_with;
use crate::feature::{Feature, FeatureId};
use crate::formats::ReadOptions;
use crate::formats::geoparquet::write::{GeoParquetError, GeoParquetWriter};

fn feature(id: i64, geometry: Option<Geometry<f64>>, properties: Value) -> Feature {
    Feature {
        id: Some(FeatureId::Int(id)),
        geometry,
        properties: properties.as_object().unwrap().clone(),
    }
}

fn sorted(f: &Feature) -> BTreeMap<String, Value> {
    f.properties
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn square(at: f64) -> Polygon<f64> {
    Polygon::new(
        LineString::from(vec![(at, at), (at + 1., at), (at + 1., at + 1.), (at, at)]),
        vec![],
    )
}

fn write(features: &[Feature], sample: usize) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("out.parquet");
    let file = std::fs::File::create(&path).unwrap();
    let mut w = GeoParquetWriter::with_sample(file, sample);
    for f in features {
        w.write(f).unwrap();
    }
    w.finish().unwrap();
    (dir, path)
}

#[test]
fn features_read_back_the_same_including_keys_past_the_sample() {
    let holed = Polygon::new(
        LineString::from(vec![(0., 0.), (10., 0.), (10., 10.), (0., 0.)]),
        vec![LineString::from(vec![
            (1., 1.),
            (2., 1.),
            (2., 2.),
            (1., 1.),
        ])],
    );
    let features = vec![
        feature(
            1,
            Some(Point::new(174.5, -41.25).into()),
            json!({"i": 1, "f": 1.5, "b": true, "s": "a", "o": {"k": [1, 2]}, "m": 1, "n": null}),
        ),
        feature(
            2,
            Some(LineString::from(vec![(0., 0.), (1., 1.)]).into()),
            json!({"i": 2, "f": 2.5, "b": false, "s": "é", "o": null, "m": "x", "n": null}),
        ),
        feature(
            3,
            Some(holed.into()),
            json!({"i": -3, "f": -0.5, "b": true, "s": "", "o": [true], "m": [1], "n": null}),
        ),
        // Past the sample of 3: a new key, a value that does not fit its column, an integer
        // in the double column, a property named like the geometry column.
        feature(
            4,
            Some(MultiPolygon(vec![square(0.), square(5.)]).into()),
            json!({"i": "four", "f": 4, "b": null, "s": "d", "o": {}, "m": 2.5, "n": 1, "late": {"x": 1}, "geometry": "not it"}),
        ),
        feature(
            5,
            None,
            json!({"i": 9_007_199_254_740_993_i64, "f": 5.5, "b": true, "s": "e", "o": 1, "m": null, "n": "z"}),
        ),
        feature(
            6,
            Some(Geometry::GeometryCollection(GeometryCollection(vec![
                Point::new(1., 2.).into(),
                square(3.).into(),
            ]))),
            json!({"i": 6, "f": 6.5, "b": false, "s": "f", "o": null, "m": null, "n": null}),
        ),
    ];
    let (_dir, path) = write(&features, 3);
    let back: Vec<Feature> = read_with(&path, &ReadOptions::default())
        .unwrap()
        .into_iter()
        .map(|r| r.feature.unwrap())
        .collect();
    assert_eq!(back.len(), features.len());
    for (want, got) in features.iter().zip(&back) {
        assert_eq!(got.id, want.id);
        assert_eq!(got.geometry, want.geometry);
        let mut want_props = sorted(want);
        // An integer in the double column reads back as a double.
        if want_props.get("f") == Some(&json!(4)) {
            want_props.insert("f".into(), json!(4.0));
        }
        assert_eq!(sorted(got), want_props, "feature {:?}", want.id);
    }

    let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
    let kv = reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .unwrap();
    let geo: Value = serde_json::from_str(
        kv.iter()
            .find(|e| e.key == "geo")
            .unwrap()
            .value
            .as_deref()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(geo["version"], "1.1.0");
    assert_eq!(geo["primary_column"], "geometry");
    let column = &geo["columns"]["geometry"];
    assert_eq!(column["encoding"], "WKB");
    assert_eq!(
        column["geometry_types"],
        json!([
            "GeometryCollection",
            "LineString",
            "MultiPolygon",
            "Point",
            "Polygon"
        ])
    );
    assert_eq!(column["bbox"], json!([0.0, -41.25, 174.5, 10.0]));
    assert!(column.get("crs").is_none(), "{column}");
    let names: Vec<String> = reader
        .metadata()
        .file_metadata()
        .schema_descr()
        .root_schema()
        .get_fields()
        .iter()
        .map(|f| f.name().to_owned())
        .collect();
    assert_eq!(
        names,
        [
            "geometry",
            "id",
            "i",
            "f",
            "b",
            "s",
            "o",
            "m",
            "n",
            "properties_extra"
        ]
    );
}

#[test]
fn row_groups_are_bounded_and_a_late_string_id_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("many.parquet");
    let mut w = GeoParquetWriter::new(std::fs::File::create(&path).unwrap());
    let n = super::super::write::ROW_GROUP_ROWS + 4_464;
    for i in 0..n {
        let f = feature(
            i as i64,
            Some(Point::new(i as f64 * 1e-4, 1.0).into()),
            json!({"i": i}),
        );
        w.write(&f).unwrap();
    }
    let late = Feature {
        id: Some(FeatureId::Str("x".into())),
        ..Feature::default()
    };
    assert!(matches!(w.write(&late), Err(GeoParquetError::Rejected(m)) if m.contains("int64")));
    w.finish().unwrap();
    let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
    let groups: Vec<i64> = reader
        .metadata()
        .row_groups()
        .iter()
        .map(|g| g.num_rows())
        .collect();
    assert_eq!(groups, [65_536, 4_464]);
    let records = read_with(&path, &ReadOptions::default()).unwrap();
    assert_eq!(records.len(), n);
    let last = records.last().unwrap().feature.as_ref().unwrap();
    assert_eq!(last.id, Some(FeatureId::Int(n as i64 - 1)));
    assert_eq!(last.properties["i"], json!(n - 1));
}

/// A sink that fails every write.
struct Broken;

impl std::io::Write for Broken {
    fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
        Err(std::io::Error::other("disk on fire"))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failed_writer_stays_failed() {
    // The sink is written when a row group is full: the error comes with it, or at finish.
    let f = feature(1, Some(Point::new(1., 2.).into()), json!({"a": 1}));
    let w = GeoParquetWriter::with_sample(Broken, 1);
    let at_finish = w.finish().map(|_| ()).unwrap_err().to_string();
    assert!(at_finish.contains("disk on fire"), "{at_finish}");
    let mut w = GeoParquetWriter::with_sample(Broken, 1);
    // Distinct values, so that a row group is more than the writer's buffer.
    let first = (0..2 * super::super::write::ROW_GROUP_ROWS)
        .find_map(|i| {
            let f = feature(
                i as i64,
                Some(Point::new(i as f64, 2.).into()),
                json!({"a": i}),
            );
            w.write(&f).err()
        })
        .expect("a full row group reaches the sink");
    assert!(first.to_string().contains("disk on fire"), "{first}");
    let again = w.write(&f).unwrap_err().to_string();
    assert!(again.contains("failed earlier"), "{again}");
    assert!(w.finish().is_err());
}
