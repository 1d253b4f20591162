//! Damaged, lying and hostile GeoPackages: each gives its specified outcome, never a panic.

use rusqlite::params;
use serde_json::json;

use super::*;
use crate::crs::Crs;

#[test]
fn truncated_file_is_refused() {
    let bytes = std::fs::read(fixture("points.gpkg")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for len in [50usize, 100, 4096, bytes.len() / 2, bytes.len() - 1] {
        let path = dir.path().join(format!("cut{len}.gpkg"));
        std::fs::write(&path, &bytes[..len]).unwrap();
        let m = refusal(feature_tables(&path).err());
        assert!(m.starts_with(&format!("cut{len}.gpkg: ")), "{m}");
        assert!(m.contains("truncated"), "{m}");
        let m = refusal(read_all(&path, "points", &ReadOptions::default()).1);
        assert!(m.contains("truncated"), "{m}");
    }
}

#[test]
fn files_that_are_not_geopackages_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.sqlite");
    let conn = rusqlite::Connection::open(&plain).unwrap();
    conn.execute_batch("CREATE TABLE things (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO things VALUES (1, 'a');")
        .unwrap();
    drop(conn);
    assert!(!is_geopackage(&prefix(&plain)));
    let m = refusal(feature_tables(&plain).err());
    assert_eq!(
        m,
        "plain.sqlite: not a GeoPackage: it has no gpkg_contents table"
    );
    let m = refusal(read_all(&plain, "things", &ReadOptions::default()).1);
    assert!(m.contains("no gpkg_contents"), "{m}");

    let text = dir.path().join("text.gpkg");
    std::fs::write(&text, "id,name\n1,a\n").unwrap();
    assert!(!is_geopackage(&prefix(&text)));
    let m = refusal(feature_tables(&text).err());
    assert_eq!(
        m,
        "text.gpkg: not a GeoPackage: not an SQLite database (bad header)"
    );
    // A missing file is an I/O error, not a refusal.
    assert!(matches!(
        feature_tables(&dir.path().join("missing.gpkg")),
        Err(ReadError::Io(_))
    ));
    // The other application ids, and prefixes too short to hold one.
    let mut header = prefix(&fixture("points.gpkg"));
    for id in [b"GP10", b"GP11", b"GPKG"] {
        header[68..72].copy_from_slice(id);
        assert!(is_geopackage(&header));
    }
    header[68..72].copy_from_slice(b"MPBF");
    assert!(!is_geopackage(&header));
    assert!(!is_geopackage(&header[..70]));
}

#[test]
fn bad_blobs_reject_their_row_and_reading_goes_on() {
    let mut lying = vec![1];
    lying.extend_from_slice(&2u32.to_le_bytes());
    lying.extend_from_slice(&u32::MAX.to_le_bytes());
    lying.extend_from_slice(&[0; 32]);
    let mut extended = gp(&wkb_point(1.0, 2.0));
    extended[3] |= 0b0010_0000;
    let mut empty = gp(&wkb_point(f64::NAN, f64::NAN));
    empty[3] |= 0b0001_0000;
    // The abstract Curve type (13): no geometry has it.
    let mut curve = vec![1];
    curve.extend_from_slice(&13u32.to_le_bytes());
    curve.extend_from_slice(&0u32.to_le_bytes());
    let mut bad_magic = gp(&wkb_point(1.0, 2.0));
    bad_magic[0] = b'X';
    let cut = gp(&wkb_point(1.0, 2.0))[..20].to_vec();
    let rows: Vec<(i64, rusqlite::types::Value)> = vec![
        (1, gp(&lying).into()),
        (2, bad_magic.into()),
        (3, extended.into()),
        (4, gp(&curve).into()),
        (5, cut.into()),
        (6, "POINT (1 2)".to_owned().into()),
        (7, empty.into()),
        (8, gp(&wkb_point(f64::NAN, f64::NAN)).into()),
        (9, gp(&wkb_point(1.0, 2.0)).into()),
        (10, gp(&wkb_point(500.0, 2.0)).into()),
    ];
    let (_dir, path) = write_gpkg(|conn| {
        add_layer(conn, "bad", "fid INTEGER PRIMARY KEY, geom GEOMETRY", 4326);
        for (fid, geom) in &rows {
            conn.execute("INSERT INTO bad VALUES (?1, ?2)", params![fid, geom])
                .unwrap();
        }
    });
    let (records, error) = read_all(&path, "bad", &ReadOptions::default());
    assert!(error.is_none(), "{error:?}");
    let outcomes: Vec<Result<Option<Geometry<f64>>, String>> = records
        .into_iter()
        .map(|r| r.feature.map(|f| f.geometry).map_err(|e| e.reason))
        .collect();
    let expect_rejection = |i: usize, needle: &str| match &outcomes[i] {
        Err(reason) => assert!(
            reason.contains(needle) && !reason.contains('\n'),
            "row {i}: {reason}"
        ),
        Ok(g) => panic!("row {i} accepted: {g:?}"),
    };
    expect_rejection(0, "4294967295 parts");
    expect_rejection(1, "magic");
    expect_rejection(2, "extended GeoPackage geometry");
    expect_rejection(3, "Curve geometries are not supported");
    expect_rejection(4, "ends early");
    expect_rejection(5, "holds a TEXT value");
    assert_eq!(outcomes[6], Ok(None), "empty flag");
    assert_eq!(outcomes[7], Ok(None), "all-NaN point");
    assert_eq!(
        outcomes[8],
        Ok(Some(geo_types::point!(x: 1.0, y: 2.0).into()))
    );
    expect_rejection(9, "longitude 500 out of range");
}

#[test]
fn undefined_cartesian_srs_is_refused_unless_overridden() {
    let (_dir, path) = write_gpkg(|conn| {
        add_layer(conn, "local", "fid INTEGER PRIMARY KEY, geom BLOB", -1);
        conn.execute(
            "INSERT INTO local VALUES (1, ?1)",
            [gp(&wkb_point(3.0, 4.0))],
        )
        .unwrap();
    });
    assert_eq!(feature_tables(&path).unwrap(), ["local"]);
    let m = refusal(read_all(&path, "local", &ReadOptions::default()).1);
    assert!(
        m.starts_with(
            "test.gpkg: table \"local\" has no coordinate system (srs_id -1, undefined Cartesian) and no extent"
        ),
        "{m}"
    );
    let opts = ReadOptions {
        source_crs: Some(Crs::wgs84()),
        ..ReadOptions::default()
    };
    let features: Vec<_> = read_all(&path, "local", &opts).0;
    assert_eq!(
        features[0].feature.as_ref().unwrap().geometry,
        Some(geo_types::point!(x: 3.0, y: 4.0).into())
    );
}

/// A table in an undefined coordinate system is read as longitude/latitude only when the extent
/// gpkg_contents gives for it fits; a local grid is refused whole, never read as degrees.
#[test]
fn undefined_srs_is_decided_by_the_extent() {
    let (_dir, path) = write_gpkg(|conn| {
        for (table, srs, extent) in [
            ("lonlat", -1, [170.0, -45.0, 175.0, -40.0]),
            ("grid", 0, [-10.0, -10.0, 1500.0, 80.0]),
            ("grid_cartesian", -1, [1000.0, 2000.0, 3000.0, 4000.0]),
        ] {
            add_layer(conn, table, "fid INTEGER PRIMARY KEY, geom BLOB", srs);
            conn.execute(
                "UPDATE gpkg_contents SET min_x = ?2, min_y = ?3, max_x = ?4, max_y = ?5 \
                 WHERE table_name = ?1",
                rusqlite::params![table, extent[0], extent[1], extent[2], extent[3]],
            )
            .unwrap();
            conn.execute(
                &format!("INSERT INTO {table} VALUES (1, ?1)"),
                [gp(&wkb_point(extent[0], extent[1]))],
            )
            .unwrap();
        }
    });
    let (records, error) = read_all(&path, "lonlat", &ReadOptions::default());
    assert!(error.is_none(), "{error:?}");
    assert_eq!(
        records[0].feature.as_ref().unwrap().geometry,
        Some(geo_types::point!(x: 170.0, y: -45.0).into())
    );
    let m = refusal(read_all(&path, "grid", &ReadOptions::default()).1);
    assert_eq!(
        m,
        "test.gpkg: table \"grid\" has no coordinate system (srs_id 0, undefined geographic), \
         and its extent (-10, -10) – (1500, 80) is not longitude/latitude (projected or local \
         coordinates?): give its coordinate system (--s-srs)"
    );
    let m = refusal(read_all(&path, "grid_cartesian", &ReadOptions::default()).1);
    assert!(
        m.contains("srs_id -1, undefined Cartesian), and its extent (1000, 2000)"),
        "{m}"
    );
}

#[test]
fn coordinate_systems_from_gpkg_spatial_ref_sys() {
    let nztm = Crs::from_epsg(2193).unwrap();
    let (x, y) = (1_748_735.25, 5_427_916.5);
    let (_dir, path) = write_gpkg(|conn| {
        conn.execute_batch(
            "INSERT INTO gpkg_spatial_ref_sys VALUES
                ('NZTM, lower-case organization', 2193, 'epsg', 2193, 'undefined', NULL),
                ('only a definition', 7000, 'ACME', 42, 'EPSG:2193', NULL),
                ('nonsense', 7001, 'ACME', 43, 'not a CRS at all', NULL);",
        )
        .unwrap();
        for (table, srs) in [
            ("by_code", 2193),
            ("by_definition", 7000),
            ("nonsense", 7001),
            ("missing", 9999),
            ("geographic", 0),
        ] {
            add_layer(conn, table, "fid INTEGER PRIMARY KEY, geom BLOB", srs);
            let (px, py) = if srs == 0 { (174.5, -41.0) } else { (x, y) };
            conn.execute(
                &format!("INSERT INTO {table} VALUES (1, ?1)"),
                [gp(&wkb_point(px, py))],
            )
            .unwrap();
        }
    });
    let expected = nztm.to_wgs84(x, y).unwrap();
    for table in ["by_code", "by_definition"] {
        let f = &features(&path, table)[0];
        assert_eq!(
            f.geometry,
            Some(geo_types::point!(x: expected.0, y: expected.1).into()),
            "{table}"
        );
    }
    let m = refusal(read_all(&path, "nonsense", &ReadOptions::default()).1);
    assert!(
        m.starts_with(
            "test.gpkg: table \"nonsense\": unsupported coordinate system ACME:43 (srs_id 7001)"
        ),
        "{m}"
    );
    let m = refusal(read_all(&path, "missing", &ReadOptions::default()).1);
    assert!(
        m.contains("srs_id 9999 is not in gpkg_spatial_ref_sys"),
        "{m}"
    );
    assert_eq!(
        features(&path, "geographic")[0].geometry,
        Some(geo_types::point!(x: 174.5, y: -41.0).into())
    );
}

#[test]
fn hostile_names_are_quoted_never_run() {
    let table = "we\"ird\"; DROP TABLE gpkg_contents; --";
    let (_dir, path) = write_gpkg(|conn| {
        add_layer(
            conn,
            table,
            "\"fid\" INTEGER PRIMARY KEY, geom BLOB, \"a\"\"b\" TEXT, \"[x]\" INTEGER",
            4326,
        );
        conn.execute(
            &format!("INSERT INTO {} VALUES (7, ?1, 'q', 3)", ident(table)),
            [gp(&wkb_point(1.0, 2.0))],
        )
        .unwrap();
    });
    assert_eq!(feature_tables(&path).unwrap(), [table]);
    let f = &features(&path, table)[0];
    assert_eq!(f.id, Some(FeatureId::Int(7)));
    assert_eq!(json!(f.properties), json!({"a\"b": "q", "[x]": 3}));
    // Still there: nothing was dropped.
    assert_eq!(feature_tables(&path).unwrap(), [table]);
}

#[test]
fn nul_in_a_table_name_is_refused() {
    let (_dir, path) = write_gpkg(|conn| {
        register(conn, "bad\0name", 4326);
    });
    let m = refusal(feature_tables(&path).err());
    assert_eq!(
        m,
        "test.gpkg: table name \"bad\\0name\" contains a NUL character"
    );
    let m = refusal(read_all(&path, "bad\0name", &ReadOptions::default()).1);
    assert!(m.contains("NUL"), "{m}");
}

#[test]
fn listed_tables_must_exist_and_have_geometry() {
    let (_dir, path) = write_gpkg(|conn| {
        // Listed, but no such table.
        register(conn, "ghost", 4326);
        // A table, but no gpkg_geometry_columns row.
        conn.execute_batch(
            "CREATE TABLE nogeom (fid INTEGER PRIMARY KEY, geom BLOB);
             INSERT INTO gpkg_contents (table_name, data_type) VALUES ('nogeom', 'features');",
        )
        .unwrap();
        add_layer(conn, "real", "fid INTEGER PRIMARY KEY, geom BLOB", 4326);
        // Its geometry column is not a column of the table.
        add_layer(
            conn,
            "wrongcol",
            "fid INTEGER PRIMARY KEY, shape BLOB",
            4326,
        );
    });
    assert_eq!(feature_tables(&path).unwrap(), ["real", "wrongcol"]);
    let m = refusal(read_all(&path, "ghost", &ReadOptions::default()).1);
    assert!(m.contains("no such table or view"), "{m}");
    let m = refusal(read_all(&path, "nogeom", &ReadOptions::default()).1);
    assert!(m.contains("not in gpkg_geometry_columns"), "{m}");
    let m = refusal(read_all(&path, "wrongcol", &ReadOptions::default()).1);
    assert!(m.contains("has no column \"geom\""), "{m}");
    assert!(features(&path, "real").is_empty());
}
