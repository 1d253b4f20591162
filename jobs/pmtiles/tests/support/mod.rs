//! What the etl-pmtiles process tests share: running the binary with a clean environment.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

/// Runs `etl-pmtiles ARGS` with JSON logs and none of the job's `ETL_*` inputs from the
/// environment: (exit code, stdout, stderr).
pub fn etl_pmtiles(args: &[&str]) -> (i32, String, String) {
    etl_pmtiles_with(&[], args)
}

/// [`etl_pmtiles`] with these environment variables set as well.
pub fn etl_pmtiles_with(envs: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_etl-pmtiles"))
        .envs(envs.iter().copied())
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env_remove("ETL_CHECKPOINT")
        .env_remove("ETL_OUTPUT")
        .env_remove("ETL_INPUT")
        .env_remove("ETL_TILE_FORMAT")
        .args(args)
        .output()
        .expect("spawn etl-pmtiles");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// [`etl_pmtiles`] with stdout and stderr as one text.
pub fn run(args: &[&str]) -> (i32, String) {
    let (code, out, err) = etl_pmtiles(args);
    (code, format!("{out}{err}"))
}

/// A bundled fixture under `fixtures/data`, as a path string.
pub fn fixture(name: &str) -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/data")
        .join(name)
        .to_str()
        .unwrap()
        .to_owned()
}

/// `crowd.geojsonl` in `dir`: a 60 × 50 grid of 3,000 named points 0.01° apart, whose one z0
/// tile is over `-M 5000` and `-O 100`.
pub fn crowd(dir: &std::path::Path) -> std::path::PathBuf {
    use std::io::Write;
    let input = dir.join("crowd.geojsonl");
    let mut f = std::fs::File::create(&input).unwrap();
    for i in 0..3000 {
        let (x, y) = (10.0 + (i % 60) as f64 * 0.01, 10.0 + (i / 60) as f64 * 0.01);
        writeln!(
            f,
            r#"{{"type":"Feature","id":{i},"properties":{{"name":"point {i}"}},"geometry":{{"type":"Point","coordinates":[{x},{y}]}}}}"#
        )
        .unwrap();
    }
    input
}

/// Every stored tile of an MVT archive (a run of identical tiles once) with its layers.
pub fn stored_tiles(
    path: &std::path::Path,
) -> Vec<(
    etl_tiles::tile::TileCoord,
    Vec<etl_tiles::mvt::DecodedLayer>,
)> {
    use std::io::Read;
    let bytes = std::fs::read(path).unwrap();
    let mut a = etl_tiles::archive::Archive::open(std::io::Cursor::new(&bytes)).unwrap();
    let entries: Vec<_> = a.entries().map(Result::unwrap).collect();
    entries
        .iter()
        .map(|e| {
            let mut raw = Vec::new();
            flate2::read::GzDecoder::new(&a.read_tile(e).unwrap()[..])
                .read_to_end(&mut raw)
                .unwrap();
            (
                etl_tiles::tile::tile_coord(e.tile_id).unwrap(),
                etl_tiles::mvt::decode_tile(&raw).unwrap(),
            )
        })
        .collect()
}
