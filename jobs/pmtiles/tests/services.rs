//! etl-pmtiles against the real services scripts/test.sh starts: S3 (moto) for inputs and
//! outputs, PostGIS for `--sql`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{Cursor, Read, Write};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use etl_core::store::{Location, S3Config, Store, StoreError};
use etl_tiles::archive::{Archive, verify};
use etl_tiles::geom::TileGeom;
use etl_tiles::mvt::{DecodedFeature, DecodedLayer, PropValue, decode_tile};
use etl_tiles::tile::{TileCoord, lonlat_to_world, tile_coord};
use serde_json::Value;

fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .expect("DATABASE_URL not set: run the tests through scripts/test.sh (it starts PostGIS)")
}

fn s3_endpoint() -> String {
    std::env::var("S3_ENDPOINT").expect(
        "S3_ENDPOINT not set: run the tests through scripts/test.sh (it starts the S3 server)",
    )
}

/// A name unique to this test process and call: `prefix_<pid>_<n>`.
fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/data")
        .join(name)
        .to_str()
        .unwrap()
        .to_owned()
}

fn etl_pmtiles() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_etl-pmtiles"));
    cmd.env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env_remove("ETL_CHECKPOINT")
        .env_remove("ETL_DATABASE")
        .env_remove("ETL_SQL")
        .env_remove("AWS_BATCH_JOB_ARRAY_INDEX")
        .env_remove("AWS_BATCH_JOB_ARRAY_SIZE");
    if let Ok(ep) = std::env::var("S3_ENDPOINT") {
        cmd.env("ETL_S3_ENDPOINT", ep);
    }
    cmd
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    summary: Value,
}

impl Run {
    fn from_output(out: Output) -> Run {
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let summary = stdout
            .lines()
            .last()
            .and_then(|l| serde_json::from_str(l).ok())
            .unwrap_or(Value::Null);
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout,
            stderr,
            summary,
        }
    }

    fn error(&self) -> &str {
        self.summary["error"].as_str().unwrap_or("")
    }

    #[track_caller]
    fn assert_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

fn run(args: &[&str]) -> Run {
    Run::from_output(
        etl_pmtiles()
            .args(args)
            .output()
            .expect("spawn etl-pmtiles"),
    )
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Checks an archive with `verify` and decodes every addressed tile.
fn decode_archive(bytes: &[u8]) -> BTreeMap<TileCoord, Vec<DecodedLayer>> {
    verify(Cursor::new(bytes), bytes.len() as u64).unwrap();
    let mut a = Archive::open(Cursor::new(bytes)).unwrap();
    let entries: Vec<_> = a.entries().map(Result::unwrap).collect();
    let mut out = BTreeMap::new();
    for e in entries {
        let layers = decode_tile(&gunzip(&a.read_tile(&e).unwrap())).unwrap();
        for k in 0..u64::from(e.run_length) {
            out.insert(tile_coord(e.tile_id + k).unwrap(), layers.clone());
        }
    }
    out
}

fn metadata(bytes: &[u8]) -> Value {
    Archive::open(Cursor::new(bytes))
        .unwrap()
        .metadata()
        .clone()
}

/// The features of layer `name` at zoom `z`, with the tile each is in.
fn features_at<'a>(
    tiles: &'a BTreeMap<TileCoord, Vec<DecodedLayer>>,
    z: u8,
    name: &str,
) -> Vec<(TileCoord, &'a DecodedFeature)> {
    let mut out = Vec::new();
    for (c, layers) in tiles.iter().filter(|(c, _)| c.z == z) {
        for l in layers.iter().filter(|l| l.name == name) {
            out.extend(l.features.iter().map(|f| (*c, f)));
        }
    }
    out
}

fn prop<'a>(f: &'a DecodedFeature, key: &str) -> Option<&'a PropValue> {
    f.props.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// Asserts that a point feature sits where lon/lat puts it in its tile (±1 extent unit).
#[track_caller]
fn assert_at(c: TileCoord, f: &DecodedFeature, lon: f64, lat: f64) {
    let (wx, wy) = lonlat_to_world(lon, lat);
    let size = 1i64 << (32 - u32::from(c.z));
    assert_eq!(
        (wx / size, wy / size),
        (i64::from(c.x), i64::from(c.y)),
        "{lon},{lat} is not in {c}"
    );
    let want = [
        (wx - i64::from(c.x) * size) * 4096 / size,
        (wy - i64::from(c.y) * size) * 4096 / size,
    ];
    let TileGeom::Points(p) = &f.geom else {
        panic!("{c}: not a point: {:?}", f.geom)
    };
    let got = [i64::from(p[0][0]), i64::from(p[0][1])];
    assert!(
        (got[0] - want[0]).abs() <= 1 && (got[1] - want[1]).abs() <= 1,
        "{c}: point at {got:?}, expected {want:?} for {lon},{lat}"
    );
}

// ---------------------------------------------------------------------------------------
// S3

fn store() -> Store {
    Store::new(S3Config {
        endpoint: Some(s3_endpoint()),
        ..Default::default()
    })
}

async fn bucket(store: &Store, name: &str) -> String {
    let name = name.replace('_', "-").to_lowercase();
    store
        .s3()
        .await
        .unwrap()
        .client()
        .create_bucket()
        .bucket(&name)
        .send()
        .await
        .unwrap();
    name
}

async fn upload(store: &Store, url: &str, bytes: Vec<u8>) {
    let loc = Location::parse(url).unwrap();
    let mut w = store.writer(&loc).await.unwrap();
    tokio::task::spawn_blocking(move || {
        w.write_all(&bytes).unwrap();
        w.commit().unwrap();
    })
    .await
    .unwrap();
}

async fn download(store: &Store, url: &str) -> Option<Vec<u8>> {
    store
        .get(&Location::parse(url).unwrap())
        .await
        .unwrap()
        .map(|(b, _)| b)
}

async fn open_uploads(store: &Store, bucket: &str) -> usize {
    store
        .s3()
        .await
        .unwrap()
        .client()
        .list_multipart_uploads()
        .bucket(bucket)
        .send()
        .await
        .unwrap()
        .uploads()
        .len()
}

#[test]
fn s3_inputs_to_s3_output() {
    let rt = rt();
    let store = store();
    let b = rt.block_on(bucket(&store, &unique("pmtiles-s3")));
    for name in ["sites.geojson", "tracks.geojsonl"] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        rt.block_on(upload(&store, &format!("s3://{b}/in/{name}"), bytes));
    }
    let out = format!("s3://{b}/tiles/fixtures.pmtiles");
    let r = run(&["-o", &out, "-z9", &format!("s3://{b}/in/")]);
    r.assert_code(0);
    assert_eq!(r.summary["counts"]["read"], 9);
    assert_eq!(r.summary["outputs"][0], out.as_str());
    let bytes = rt.block_on(download(&store, &out)).expect("output object");
    assert_eq!(r.summary["bytes"]["out"].as_u64(), Some(bytes.len() as u64));
    let tiles = decode_archive(&bytes);
    let m = metadata(&bytes);
    let mut names: Vec<&str> = m["vector_layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["id"].as_str().unwrap())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["sites", "tracks"], "layers named after the S3 keys");
    let mut ids: Vec<u64> = features_at(&tiles, 9, "sites")
        .iter()
        .map(|(_, f)| f.id.unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids, [1, 2, 3, 4, 5]);
    assert_eq!(features_at(&tiles, 9, "tracks").len(), 4);
    assert_eq!(rt.block_on(open_uploads(&store, &b)), 0);

    // The object exists now: without -f the run is refused and the object left alone.
    let r = run(&["-o", &out, "-z3", &fixture("sites.geojson")]);
    r.assert_code(64);
    assert!(r.error().contains("already exists"), "{}", r.error());
    assert_eq!(
        rt.block_on(download(&store, &out)).as_deref(),
        Some(&bytes[..])
    );
    // With -f it is replaced.
    let r = run(&["-o", &out, "-z3", "-f", &fixture("sites.geojson")]);
    r.assert_code(0);
    let replaced = rt.block_on(download(&store, &out)).unwrap();
    let tiles = decode_archive(&replaced);
    assert_eq!(tiles.keys().map(|c| c.z).max(), Some(3));
}

#[test]
fn large_archive_is_uploaded_in_parts() {
    // Points with incompressible attributes: an archive over the 5 MiB part size.
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big.geojsonl");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&input).unwrap());
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..60_000u32 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let (lon, lat) = (
            -120.0 + f64::from(i % 300) * 0.1,
            30.0 + f64::from(i / 300) * 0.05,
        );
        writeln!(
            f,
            r#"{{"type":"Feature","id":{i},"properties":{{"h":"{x:016x}{:016x}"}},"geometry":{{"type":"Point","coordinates":[{lon},{lat}]}}}}"#,
            x.rotate_left(29)
        )
        .unwrap();
    }
    f.flush().unwrap();
    drop(f);
    let rt = rt();
    let store = store();
    let b = rt.block_on(bucket(&store, &unique("pmtiles-big")));
    let out = format!("s3://{b}/big.pmtiles");
    let r = run(&[
        "-o",
        &out,
        "-z8",
        "-r1",
        "-M",
        "100000000",
        "--s3-part-size",
        "5242880",
        s(&input),
    ]);
    r.assert_code(0);
    let (bytes, etag) = rt
        .block_on(store.get(&Location::parse(&out).unwrap()))
        .unwrap()
        .expect("output object");
    assert!(bytes.len() > 5 << 20, "archive is {} bytes", bytes.len());
    assert!(
        etag.trim_matches('"').contains('-'),
        "multipart ETag has a part count: {etag}"
    );
    let tiles = decode_archive(&bytes);
    assert_eq!(features_at(&tiles, 8, "big").len(), 60_000);
    assert_eq!(features_at(&tiles, 0, "big").len(), 60_000, "-r1 keeps all");
}

#[test]
fn failed_run_leaves_no_s3_object() {
    let rt = rt();
    let store = store();
    let b = rt.block_on(bucket(&store, &unique("pmtiles-fail")));
    let mut bytes = std::fs::read(fixture("tracks.geojsonl")).unwrap();
    bytes.extend_from_slice(b"{\"type\":\"Feature\",\"geometry\":\n");
    rt.block_on(upload(&store, &format!("s3://{b}/in/bad.geojsonl"), bytes));
    let out = format!("s3://{b}/out/bad.pmtiles");
    let r = run(&["-o", &out, "-z5", &format!("s3://{b}/in/bad.geojsonl")]);
    r.assert_code(65);
    assert!(
        r.error().contains(&format!("s3://{b}/in/bad.geojsonl:5")),
        "{}",
        r.error()
    );
    let head = rt.block_on(store.head(&Location::parse(&out).unwrap()));
    assert!(
        matches!(head, Err(StoreError::NotFound(_))),
        "no output object: {head:?}"
    );
    assert_eq!(rt.block_on(open_uploads(&store, &b)), 0);
    // A missing input: 66 (EX_NOINPUT), not retried.
    let r = run(&["-o", &out, "-z5", &format!("s3://{b}/nope.geojsonl")]);
    r.assert_code(66);
}

// ---------------------------------------------------------------------------------------
// PostGIS

async fn pool() -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&database_url())
        .await
        .expect("connect to DATABASE_URL")
}

async fn exec(pool: &sqlx::PgPool, sql: &str) {
    sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// (id, lon, lat) of the test points.
const POINTS: [(i64, f64, f64); 4] = [
    (1, -104.8214, 38.8339),
    (2, -104.7601, 38.9012),
    (3, 2.3522, 48.8566),
    (40, 151.2093, -33.8688),
];

#[test]
fn sql_query_in_4326_and_3857() {
    let t4326 = unique("pm_sites");
    let t3857 = unique("pm_merc");
    rt().block_on(async {
        let pool = pool().await;
        exec(
            &pool,
            &format!(
                "CREATE TABLE \"{t4326}\" (id bigint, name text, score double precision, \
                 active boolean, tags jsonb, note text, geom geometry(Geometry, 4326))"
            ),
        )
        .await;
        exec(
            &pool,
            &format!(
                "CREATE TABLE \"{t3857}\" (id integer, name text, geom geometry(Point, 3857))"
            ),
        )
        .await;
        for (id, lon, lat) in POINTS {
            exec(
                &pool,
                &format!(
                    "INSERT INTO \"{t4326}\" VALUES ({id}, 'site {id}', {id}.5, {}, \
                     '{{\"k\": [{id}]}}', NULL, ST_SetSRID(ST_MakePoint({lon}, {lat}), 4326))",
                    id % 2 == 0
                ),
            )
            .await;
            exec(
                &pool,
                &format!(
                    "INSERT INTO \"{t3857}\" VALUES ({id}, 'merc {id}', \
                     ST_Transform(ST_SetSRID(ST_MakePoint({lon}, {lat}), 4326), 3857))"
                ),
            )
            .await;
        }
        // A polygon, a negative id (not an MVT id: it stays an attribute) and a row without
        // geometry (nothing to tile).
        exec(
            &pool,
            &format!(
                "INSERT INTO \"{t4326}\" VALUES \
                 (-5, 'area', 0, true, NULL, 'x', ST_GeomFromText('POLYGON((10 10, 11 10, 11 11, 10 11, 10 10))', 4326)), \
                 (6, 'nowhere', 1, false, NULL, NULL, NULL)"
            ),
        )
        .await;
    });

    let dir = tempfile::tempdir().unwrap();
    let db = database_url();

    // 4326: attributes from the other columns, `id` the feature id.
    let out = dir.path().join("sites.pmtiles");
    let q = format!("SELECT * FROM \"{t4326}\"");
    let r = run(&["-o", s(&out), "-z8", "-r1", "--sql", &q, "--database", &db]);
    r.assert_code(0);
    let bytes = std::fs::read(&out).unwrap();
    let tiles = decode_archive(&bytes);
    let m = metadata(&bytes);
    assert_eq!(
        m["vector_layers"][0]["id"], "sites",
        "layer named after the output"
    );
    let fields = &m["vector_layers"][0]["fields"];
    assert_eq!(fields["name"], "String");
    assert_eq!(fields["score"], "Number");
    assert_eq!(fields["active"], "Boolean");
    assert_eq!(fields["tags"], "String");
    assert!(fields.get("geom").is_none(), "{fields}");
    assert!(fields.get("note").is_some(), "the one non-null note");
    let feats = features_at(&tiles, 8, "sites");
    let mut ids = Vec::new();
    for (c, f) in &feats {
        match f.id {
            Some(id) => {
                ids.push(id);
                let (_, lon, lat) = POINTS.iter().find(|p| p.0 == id as i64).unwrap();
                assert_at(*c, f, *lon, *lat);
                assert_eq!(
                    prop(f, "name"),
                    Some(&PropValue::String(format!("site {id}")))
                );
                assert_eq!(prop(f, "score"), Some(&PropValue::Double(id as f64 + 0.5)));
                assert_eq!(prop(f, "active"), Some(&PropValue::Bool(id % 2 == 0)));
                assert_eq!(
                    prop(f, "tags"),
                    Some(&PropValue::String(format!("{{\"k\":[{id}]}}")))
                );
                assert_eq!(prop(f, "id"), None, "the id column is the feature id");
                assert_eq!(prop(f, "note"), None, "NULL is left out");
                assert_eq!(prop(f, "geom"), None);
            }
            None => {
                assert!(matches!(f.geom, TileGeom::Polygons(_)), "{c}: {:?}", f.geom);
                assert_eq!(prop(f, "id"), Some(&PropValue::SInt(-5)));
                assert_eq!(prop(f, "name"), Some(&PropValue::String("area".into())));
            }
        }
    }
    ids.sort_unstable();
    assert_eq!(ids, [1, 2, 3, 40]);
    assert_eq!(
        feats.len(),
        5,
        "four points and the polygon; the NULL row is skipped"
    );

    // 3857: transformed back to WGS 84, so the points land where the 4326 ones did.
    let out = dir.path().join("merc.pmtiles");
    let q = format!("SELECT id, name, geom FROM \"{t3857}\" WHERE id < 40");
    let r = run(&[
        "-o",
        s(&out),
        "-z10",
        "-r1",
        "-l",
        "merc",
        "--sql",
        &q,
        "--database",
        &db,
    ]);
    r.assert_code(0);
    let tiles = decode_archive(&std::fs::read(&out).unwrap());
    let feats = features_at(&tiles, 10, "merc");
    assert_eq!(feats.len(), 3);
    for (c, f) in &feats {
        let id = f.id.unwrap();
        let (_, lon, lat) = POINTS.iter().find(|p| p.0 == id as i64).unwrap();
        assert_at(*c, f, *lon, *lat);
        assert_eq!(
            prop(f, "name"),
            Some(&PropValue::String(format!("merc {id}")))
        );
    }

    // DATABASE_URL from the environment when --database is not given.
    let out = dir.path().join("env.pmtiles");
    let q = format!("SELECT id, geom FROM \"{t3857}\"");
    let r = Run::from_output(
        etl_pmtiles()
            .env("DATABASE_URL", &db)
            .args(["-o", s(&out), "-z4", "-r1", "--sql", &q])
            .output()
            .unwrap(),
    );
    r.assert_code(0);
    assert_eq!(
        features_at(&decode_archive(&std::fs::read(&out).unwrap()), 4, "env").len(),
        4
    );

    rt().block_on(async {
        let pool = pool().await;
        exec(&pool, &format!("DROP TABLE \"{t4326}\", \"{t3857}\"")).await;
    });
}

#[test]
fn sql_errors_are_classified() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.pmtiles");
    let db = database_url();
    // A missing table: configuration, not a retryable failure.
    let r = run(&[
        "-o",
        s(&out),
        "-z3",
        "--sql",
        "SELECT * FROM no_such_table_here",
        "--database",
        &db,
    ]);
    r.assert_code(78);
    // A query without a geometry column.
    let r = run(&[
        "-o",
        s(&out),
        "-z3",
        "--sql",
        "SELECT 1 AS id, 'x' AS name",
        "--database",
        &db,
    ]);
    r.assert_code(78);
    assert!(r.error().contains("geometry"), "{}", r.error());
    // A query whose rows all lack geometry: no features.
    let r = run(&[
        "-o",
        s(&out),
        "-z3",
        "--sql",
        "SELECT 1 AS id, NULL::geometry AS geom",
        "--database",
        &db,
    ]);
    r.assert_code(65);
    assert!(r.error().contains("no features"), "{}", r.error());
    assert!(!out.exists());
}

#[cfg(unix)]
#[test]
fn sigterm_while_the_query_waits_stops_the_job() {
    let table = unique("pm_locked");
    let rt = rt();
    let pool = rt.block_on(pool());
    rt.block_on(exec(
        &pool,
        &format!(
            "CREATE TABLE \"{table}\" AS SELECT 1 AS id, ST_SetSRID(ST_MakePoint(1, 2), 4326) AS geom"
        ),
    ));
    // Hold a lock that blocks the job's query until the test lets go: the job cannot finish.
    let mut tx = rt.block_on(pool.begin()).unwrap();
    rt.block_on(
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "LOCK TABLE \"{table}\" IN ACCESS EXCLUSIVE MODE"
        )))
        .execute(&mut *tx),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("locked.pmtiles");
    let q = format!("SELECT * FROM \"{table}\"");
    let child = etl_pmtiles()
        .args([
            "-o",
            s(&out),
            "-z3",
            "--sql",
            &q,
            "--database",
            &database_url(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Ready when the job's session waits for the lock.
    let start = std::time::Instant::now();
    loop {
        let waiting: i64 = rt
            .block_on(
                sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tak-etl' \
                     AND wait_event_type = 'Lock' AND query LIKE $1",
                )
                .bind(format!("%{table}%"))
                .fetch_one(&pool),
            )
            .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "the job never waited for the lock"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let r = Run::from_output(child.wait_with_output().unwrap());
    rt.block_on(tx.rollback()).unwrap();
    rt.block_on(exec(&pool, &format!("DROP TABLE \"{table}\"")));
    r.assert_code(143);
    assert_eq!(r.summary["status"], "stopped");
    assert!(!out.exists());
    assert!(
        !r.error().contains("did not stop"),
        "the job itself stopped, not the runner's grace timer: {}",
        r.error()
    );
}

/// `verify`, `show` and `merge` take `s3://` archives: parts made by two zoom ranges of one run
/// merge on S3 into an archive that verifies and equals a single run tile by tile.
#[test]
fn archive_tools_read_and_write_s3() {
    let rt = rt();
    let store = store();
    let b = rt.block_on(bucket(&store, &unique("pmtiles-tools")));
    let input = fixture("sites.geojson");
    let low = format!("s3://{b}/parts/low.pmtiles");
    let high = format!("s3://{b}/parts/high.pmtiles");
    let whole = format!("s3://{b}/whole.pmtiles");
    // The same base zoom as the whole run, so points thin the same way below it.
    run(&["-o", &low, "-Z0", "-z3", "-B6", &input]).assert_code(0);
    run(&["-o", &high, "-Z4", "-z6", &input]).assert_code(0);
    run(&["-o", &whole, "-Z0", "-z6", &input]).assert_code(0);

    let merged = format!("s3://{b}/merged.pmtiles");
    let r = run(&["merge", &merged, &low, &high]);
    r.assert_code(0);
    let r = run(&["verify", &merged]);
    r.assert_code(0);
    assert!(r.stdout.contains("valid"), "{}", r.stdout);
    let shown: Value = serde_json::from_str(&run(&["show", &merged]).stdout).unwrap();
    assert_eq!(shown["header"]["min_zoom"], 0);
    assert_eq!(shown["header"]["max_zoom"], 6);
    let merged_bytes = rt
        .block_on(download(&store, &merged))
        .expect("merged object");
    let whole_bytes = rt.block_on(download(&store, &whole)).expect("whole object");
    assert_eq!(decode_archive(&merged_bytes), decode_archive(&whole_bytes));

    // An existing output needs -f; a missing part is 66 and writes nothing.
    let before = merged_bytes.len();
    run(&["merge", &merged, &low]).assert_code(64);
    assert_eq!(
        rt.block_on(download(&store, &merged)).map(|b| b.len()),
        Some(before)
    );
    let missing = format!("s3://{b}/parts/nope.pmtiles");
    let out2 = format!("s3://{b}/never.pmtiles");
    run(&["merge", &out2, &low, &missing]).assert_code(66);
    assert!(rt.block_on(download(&store, &out2)).is_none());
    run(&["verify", &missing]).assert_code(66);

    // The tools take the runner's S3 flags, before or after the subcommand name: with no
    // endpoint in the environment, `--s3-endpoint` alone reaches the server.
    let flagged = |args: &[&str]| {
        let mut cmd = etl_pmtiles();
        cmd.env_remove("ETL_S3_ENDPOINT")
            .env_remove("AWS_ENDPOINT_URL_S3")
            .env_remove("AWS_ENDPOINT_URL")
            .args(args);
        Run::from_output(cmd.output().expect("spawn etl-pmtiles"))
    };
    let ep = s3_endpoint();
    flagged(&["verify", &merged, "--s3-endpoint", &ep]).assert_code(0);
    flagged(&["--s3-endpoint", &ep, "show", &merged]).assert_code(0);
    // And a wrong endpoint is the one used (unreachable: 69), not a default from elsewhere.
    flagged(&["verify", &merged, "--s3-endpoint", "http://127.0.0.1:9"]).assert_code(69);
}
