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
