//! Shared helpers for etl-events' integration tests: the binary, fixture paths, the services
//! scripts/test.sh starts.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

pub fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

pub const PEER: &str = "/work/shared/peer-fixtures";

pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .expect("DATABASE_URL not set: run the tests through scripts/test.sh (it starts PostGIS)")
}

pub fn s3_endpoint() -> String {
    std::env::var("S3_ENDPOINT").expect(
        "S3_ENDPOINT not set: run the tests through scripts/test.sh (it starts the S3 server)",
    )
}

/// A name unique to this test process and call.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn etl_events() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_etl-events"));
    cmd.env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .env_remove("ETL_CHECKPOINT")
        .env_remove("ETL_LOGICAL_TIME")
        .env_remove("ETL_EVENT")
        .env_remove("ETL_OUTPUT")
        .env_remove("ETL_INPUT");
    if let Ok(ep) = std::env::var("S3_ENDPOINT") {
        cmd.env("ETL_S3_ENDPOINT", ep);
    }
    cmd
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub summary: Value,
}

impl Run {
    pub fn from_output(out: Output) -> Run {
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

    pub fn status(&self) -> &str {
        self.summary["status"].as_str().unwrap_or("")
    }

    pub fn error(&self) -> &str {
        self.summary["error"].as_str().unwrap_or("")
    }

    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Run {
        assert_eq!(
            self.code, code,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

pub fn run(args: &[&str]) -> Run {
    Run::from_output(etl_events().args(args).output().expect("spawn etl-events"))
}

pub fn spawn(args: &[&str]) -> Child {
    etl_events()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn etl-events")
}

/// The names of the files in `dir` (not hidden ones), sorted.
pub fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Checks a finished import in `dir`: the three outputs exist, the manifest's sizes and
/// hashes match the files, every GeoJSON line is a Feature, the archive verifies. Returns
/// the manifest.
pub fn check_outputs(dir: &Path, name: &str) -> Value {
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.json"))).unwrap()).unwrap();
    let outputs = manifest["outputs"].as_array().unwrap();
    assert!(!outputs.is_empty(), "{manifest}");
    for o in outputs {
        let path = PathBuf::from(o["url"].as_str().unwrap());
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            bytes.len() as u64,
            o["bytes"].as_u64().unwrap(),
            "{}",
            path.display()
        );
        assert_eq!(
            sha256_hex(&bytes),
            o["sha256"].as_str().unwrap(),
            "{}",
            path.display()
        );
        match o["kind"].as_str().unwrap() {
            "geojsonl" => {
                let text = String::from_utf8(bytes).unwrap();
                let lines = text.lines().count() as u64;
                assert_eq!(lines, manifest["features"].as_u64().unwrap());
                for line in text.lines() {
                    let f: Value = serde_json::from_str(line).unwrap();
                    assert_eq!(f["type"], "Feature");
                }
            }
            "pmtiles" => {
                let len = bytes.len() as u64;
                let report = etl_tiles::archive::verify(std::io::Cursor::new(bytes), len)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert!(report.addressed_tiles > 0, "{}: {report:?}", path.display());
            }
            other => panic!("unexpected output kind {other}"),
        }
    }
    manifest
}
