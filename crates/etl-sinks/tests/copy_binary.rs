//! Binary COPY against the PostGIS server scripts/test.sh starts: the same features loaded
//! through text COPY and through binary COPY must give identical tables. etl-sinks has no
//! database client (DESIGN §2), so the rows go through `psql` as a subprocess.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "helpers of these tests: a failure there is the test failing"
)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use etl_geo::geo_types::{
    Geometry, GeometryCollection, LineString, MultiPolygon, Point, Polygon, line_string, point,
    polygon,
};
use etl_geo::{Feature, FeatureId};
use etl_sinks::{
    COPY_BINARY_HEADER, COPY_BINARY_TRAILER, ColumnKind, ColumnSource, CopyColumn, CopyEncoder,
};
use serde_json::{Value, json};

fn database_url() -> String {
    match std::env::var("DATABASE_URL") {
        Ok(v) if !v.is_empty() => v,
        _ => panic!("DATABASE_URL not set: run the tests through scripts/test.sh"),
    }
}

/// The psql scripts/services.sh uses, else the one on PATH.
fn psql_program() -> PathBuf {
    let bin = std::env::var("TAK_PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
    let psql = PathBuf::from(bin).join("psql");
    if psql.is_file() {
        psql
    } else {
        PathBuf::from("psql")
    }
}

/// Runs `sql` (one statement per `-c`) in one psql session with `stdin` as COPY data;
/// returns stdout, or stderr on failure.
fn psql(sql: &[&str], stdin: Vec<u8>) -> Result<String, String> {
    let mut command = Command::new(psql_program());
    command
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
        .arg(database_url())
        .env("PGCLIENTENCODING", "UTF8")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for statement in sql {
        command.args(["-c", statement]);
    }
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("running psql ({:?}): {e}", psql_program()));
    let mut input = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || input.write_all(&stdin));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    if output.status.success() {
        Ok(String::from_utf8(output.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// Drops the test's tables however the test ends.
struct Tables(String);

impl Drop for Tables {
    fn drop(&mut self) {
        let t = &self.0;
        let _ = psql(
            &[&format!("DROP TABLE IF EXISTS {t}_text, {t}_binary")],
            Vec::new(),
        );
    }
}

fn unique_table() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("etl_geo_copy_binary_{}_{nanos:x}", std::process::id())
}

/// (name, SQL type, kind, source) of every column the test table has.
fn columns() -> Vec<(&'static str, &'static str, CopyColumn)> {
    let column = |name: &'static str, sql: &'static str, source| {
        let udt = match sql {
            "varchar(12)" => "varchar",
            "char(3)" => "bpchar",
            "geometry(Geometry,4326)" => "geometry",
            other => other,
        };
        (
            name,
            sql,
            CopyColumn {
                name: name.into(),
                kind: ColumnKind::from_pg_type(udt),
                source,
            },
        )
    };
    let prop = |name: &str| ColumnSource::Property(name.into());
    vec![
        column("seq", "int8", ColumnSource::Ordinal),
        column("id", "text", ColumnSource::Id),
        column("s", "int2", prop("s")),
        column("i", "int4", prop("i")),
        column("b", "int8", prop("b")),
        column("r", "float4", prop("r")),
        column("d", "float8", prop("d")),
        column("flag", "bool", prop("flag")),
        column("name", "text", prop("name")),
        column("code", "varchar(12)", prop("code")),
        column("ch", "char(3)", prop("ch")),
        column("j", "json", prop("j")),
        column("jb", "jsonb", prop("jb")),
        column("geom", "geometry(Geometry,4326)", ColumnSource::Geometry),
        column("gj", "jsonb", ColumnSource::Geometry),
        column("seq_r", "float4", ColumnSource::Ordinal),
        column("seq_j", "json", ColumnSource::Ordinal),
    ]
}

fn geometries() -> Vec<Option<Geometry<f64>>> {
    let square = polygon!(
        exterior: [(x: 0., y: 0.), (x: 10., y: 0.), (x: 10., y: 10.), (x: 0., y: 10.)],
        interiors: [[(x: 2., y: 2.), (x: 3., y: 2.), (x: 3., y: 3.)]],
    );
    vec![
        None,
        Some(point!(x: 13.4, y: 52.5).into()),
        Some(point!(x: -180., y: -90.).into()),
        Some(line_string![(x: 0., y: 0.), (x: 1e-300, y: 0.1 + 0.2)].into()),
        Some(square.clone().into()),
        Some(Geometry::MultiPolygon(MultiPolygon(vec![
            square,
            polygon![(x: 20., y: 20.), (x: 21., y: 20.), (x: 20., y: 21.)],
        ]))),
        Some(Geometry::GeometryCollection(GeometryCollection(vec![
            Point::new(1., 2.).into(),
            Geometry::GeometryCollection(GeometryCollection(vec![
                LineString::from(vec![(1., 1.), (2., 2.)]).into(),
            ])),
        ]))),
        Some(Geometry::GeometryCollection(GeometryCollection(vec![]))),
        Some(Polygon::new(LineString(vec![]), vec![]).into()),
    ]
}

/// Per property, values chosen at the edges of what the column accepts; features cycle
/// through them at different strides so rows mix them.
fn property_values() -> Vec<(&'static str, Vec<Value>)> {
    vec![
        (
            "s",
            vec![
                json!(-32768),
                json!(32767),
                json!(0),
                json!(null),
                json!(32768),
            ],
        ),
        (
            "i",
            vec![json!(i32::MIN), json!(i32::MAX), json!(-1), json!(1.5)],
        ),
        (
            "b",
            vec![json!(i64::MIN), json!(i64::MAX), json!(7), json!(u64::MAX)],
        ),
        (
            "r",
            vec![
                json!(0.1),
                json!(1.0000000596046448),
                json!(16777217),
                json!(u64::MAX),
                json!(1e-40),
                json!(1e-45),
                json!(3.4028235e38),
                json!(-0.0),
                json!(1e-46),
                json!(3.4028236e38),
            ],
        ),
        (
            "d",
            vec![
                json!(20.09),
                json!(0.1 + 0.2),
                json!(-0.0),
                json!(u64::MAX),
                json!(9007199254740993i64),
                json!(1e-320),
                json!(f64::MAX),
                json!(null),
            ],
        ),
        ("flag", vec![json!(true), json!(false), json!(null)]),
        (
            "name",
            vec![
                json!("plain"),
                json!("tab\there\\back\nnew\rret"),
                json!("\\N"),
                json!("\\."),
                json!(""),
                json!("Zürich – 東京 🗺"),
                json!("\u{1}\u{7f}"),
                json!("nul\u{0}"),
            ],
        ),
        (
            "code",
            vec![json!("abc"), json!("twelve chars"), json!("a\tb")],
        ),
        ("ch", vec![json!("x"), json!("xyz"), json!("é")]),
        (
            "j",
            vec![
                json!({"a": [1, 2.5, null], "b": "t\tab"}),
                json!("\u{0}"),
                json!(12),
                json!([]),
                json!({"z": 1, "a": 2}),
            ],
        ),
        (
            "jb",
            vec![
                json!({"k": {"nested": [true, "x\\y"]}}),
                json!(1e300),
                json!("s"),
                json!({"a": "\u{0}"}),
                json!(null),
            ],
        ),
    ]
}

fn features() -> Vec<Feature> {
    let ids = [
        None,
        Some(FeatureId::Int(-5)),
        Some(FeatureId::Str("a\tb".into())),
        Some(FeatureId::Str("1.5".into())),
    ];
    let geometries = geometries();
    let values = property_values();
    (0..400)
        .map(|n: usize| {
            let properties = values
                .iter()
                .enumerate()
                .filter_map(|(stride, (name, vs))| {
                    let v = &vs[(n * (stride + 1) / 2 + n) % vs.len()];
                    // Leave some properties out altogether.
                    (!n.is_multiple_of(stride + 5)).then(|| ((*name).to_owned(), v.clone()))
                })
                .collect();
            Feature {
                id: ids[n % ids.len()].clone(),
                geometry: geometries[n % geometries.len()].clone(),
                properties,
            }
        })
        .collect()
}

#[test]
fn binary_copy_loads_what_text_copy_loads() {
    let columns = columns();
    let encoder = CopyEncoder::new(columns.iter().map(|(_, _, c)| c.clone()).collect(), 4326);
    assert!(encoder.binary_supported());

    let mut text = Vec::new();
    let mut binary = COPY_BINARY_HEADER.to_vec();
    let mut loaded = 0;
    for (n, f) in features().iter().enumerate() {
        let ordinal = i64::try_from(n).unwrap() * 1_000_003;
        let text_result = encoder.encode(f, ordinal, &mut text);
        let binary_result = encoder.encode_binary(f, ordinal, &mut binary);
        assert_eq!(text_result, binary_result, "feature {n}: {f:?}");
        loaded += usize::from(text_result.is_ok());
    }
    binary.extend_from_slice(COPY_BINARY_TRAILER);
    assert!(loaded >= 100, "only {loaded} of the sample rows fit");

    let table = Tables(unique_table());
    let t = &table.0;
    let definitions: Vec<String> = columns
        .iter()
        .map(|(name, sql, _)| format!("{name} {sql}"))
        .collect();
    let names: Vec<&str> = columns.iter().map(|(name, _, _)| *name).collect();
    let names = names.join(", ");
    psql(
        &[
            &format!("CREATE TABLE {t}_text ({})", definitions.join(", ")),
            &format!("CREATE TABLE {t}_binary (LIKE {t}_text)"),
        ],
        Vec::new(),
    )
    .expect("creating the tables");
    psql(&[&format!("COPY {t}_text ({names}) FROM STDIN")], text).expect("text COPY");
    psql(
        &[&format!(
            "COPY {t}_binary ({names}) FROM STDIN (FORMAT binary)"
        )],
        binary,
    )
    .expect("binary COPY");

    // Whole rows as text: floats print in their shortest exact form and geometry as
    // hex EWKB, so equal text means equal values (json keeps its text as sent).
    let differences = format!(
        "SELECT count(*) FROM (
             (SELECT x::text FROM {t}_text x EXCEPT ALL SELECT y::text FROM {t}_binary y)
             UNION ALL
             (SELECT y::text FROM {t}_binary y EXCEPT ALL SELECT x::text FROM {t}_text x)
         ) d"
    );
    let counts = psql(
        &[
            &format!("SELECT count(*) FROM {t}_binary"),
            &differences,
            // Spot checks of what the binary rows hold.
            &format!(
                "SELECT count(*) FROM {t}_binary WHERE r = '1.0000000596046448'::real \
                 AND float4send(r) = '\\x3f800001'"
            ),
            &format!(
                "SELECT count(*) FROM {t}_binary WHERE geom IS NOT NULL AND ST_SRID(geom) <> 4326"
            ),
            &format!("SELECT count(*) FROM {t}_binary WHERE jb -> 'k' -> 'nested' ->> 1 = 'x\\y'"),
            &format!(
                "SELECT count(*) FROM {t}_binary WHERE name = E'tab\\there\\\\back\\nnew\\rret'"
            ),
        ],
        Vec::new(),
    )
    .expect("comparing the tables");
    let counts: Vec<usize> = counts.lines().map(|l| l.parse().unwrap()).collect();
    let [
        rows,
        differ,
        real_tie,
        wrong_srid,
        jsonb_nested,
        escaped_text,
    ] = counts[..]
    else {
        panic!("unexpected psql output {counts:?}");
    };
    assert_eq!(rows, loaded);
    assert_eq!(differ, 0, "rows differ between text and binary COPY");
    assert!(real_tie > 0, "no row has the real tie value");
    assert_eq!(wrong_srid, 0);
    assert!(jsonb_nested > 0, "no row has the nested jsonb value");
    assert!(escaped_text > 0, "no row has the escaped text value");
}

/// The real values both encoders refuse are those float4in refuses, and the edge
/// values they accept it accepts.
#[test]
fn real_limits_match_float4in() {
    for (text, accepted) in [
        ("1e-46", false),
        ("7e-46", false),
        ("3.4028236e+38", false),
        ("1e-45", true),
        ("3.4028235e+38", true),
        ("1.0000000596046448", true),
    ] {
        let encoder = CopyEncoder::new(
            vec![CopyColumn {
                name: "r".into(),
                kind: ColumnKind::Real,
                source: ColumnSource::Property("r".into()),
            }],
            4326,
        );
        let x: f64 = text.parse().unwrap();
        let f = Feature {
            properties: [("r".to_owned(), json!(x))].into_iter().collect(),
            ..Feature::default()
        };
        let mut out = Vec::new();
        assert_eq!(encoder.encode(&f, 0, &mut out).is_ok(), accepted, "{text}");
        assert_eq!(
            encoder.encode_binary(&f, 0, &mut out).is_ok(),
            accepted,
            "{text}"
        );
        let server = psql(&[&format!("SELECT '{text}'::real")], Vec::new());
        assert_eq!(server.is_ok(), accepted, "{text}: {server:?}");
        if let Err(e) = server {
            assert!(e.contains("out of range"), "{e}");
        }
    }
}
