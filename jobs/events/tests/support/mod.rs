//! Shared helpers for etl-events' integration tests: the binary, fixture paths, the services
//! scripts/test.sh starts.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod cloudtak;
pub mod http;

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
    let version = manifest["version"].as_str().unwrap();
    for o in outputs {
        let path = PathBuf::from(o["url"].as_str().unwrap());
        // Every output is an immutable file of this version, beside the manifest.
        let file = o["file"].as_str().unwrap();
        assert_eq!(
            file,
            format!("{name}.{version}.{}", o["kind"].as_str().unwrap())
        );
        assert_eq!(path, dir.join(file));
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
            "sprite.png" => {
                let img = image::load_from_memory(&bytes).unwrap();
                assert!(img.height() >= 32, "{}", path.display());
            }
            "sprite.json" => {
                let index: Value = serde_json::from_slice(&bytes).unwrap();
                assert!(!index.as_object().unwrap().is_empty(), "{}", path.display());
            }
            other => panic!("unexpected output kind {other}"),
        }
    }
    manifest
}

/// Whether a dot-separated part of a name is an output version (`v20261206T221500Z-1a2b3c4d`).
pub fn is_version(part: &str) -> bool {
    part.len() == 26
        && part.starts_with('v')
        && part.as_bytes().get(9) == Some(&b'T')
        && part.as_bytes().get(16) == Some(&b'Z')
        && part.as_bytes().get(17) == Some(&b'-')
}

/// Names with each output version replaced by `V`, so layouts can be compared:
/// `a.v20261206T221500Z-1a2b3c4d.pmtiles` → `a.V.pmtiles`.
pub fn layout<S: AsRef<str>>(names: &[S]) -> Vec<String> {
    let mut out: Vec<String> = names
        .iter()
        .map(|n| {
            n.as_ref()
                .split('.')
                .map(|p| if is_version(p) { "V" } else { p })
                .collect::<Vec<_>>()
                .join(".")
        })
        .collect();
    out.sort();
    out
}

/// The local file a manifest in `dir` names for output `kind`.
pub fn output_path(dir: &Path, name: &str, kind: &str) -> PathBuf {
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.json"))).unwrap()).unwrap();
    let file = manifest["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} output in {manifest}"))["file"]
        .as_str()
        .unwrap()
        .to_owned();
    dir.join(file)
}

/// `s3://BUCKET/` of an `s3://BUCKET/…` output URL, for --allow-source.
pub fn bucket_of(url: &str) -> String {
    let bucket = url
        .strip_prefix("s3://")
        .and_then(|r| r.split('/').next())
        .unwrap();
    format!("s3://{bucket}/")
}

/// A bucket of its own on the test S3 server, with blocking helpers.
pub struct S3 {
    pub client: aws_sdk_s3::Client,
    pub rt: tokio::runtime::Runtime,
    pub bucket: String,
}

impl S3 {
    pub fn new() -> S3 {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = rt.block_on(async {
            etl_core::store::S3Store::connect(etl_core::store::S3Config {
                endpoint: Some(s3_endpoint()),
                ..Default::default()
            })
            .await
            .unwrap()
            .client()
            .clone()
        });
        let bucket = unique("uploads");
        rt.block_on(client.create_bucket().bucket(&bucket).send())
            .unwrap();
        S3 { client, rt, bucket }
    }

    /// Puts an object; returns its ETag without quotes.
    pub fn put(&self, key: &str, bytes: Vec<u8>) -> String {
        let out = self
            .rt
            .block_on(
                self.client
                    .put_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .body(bytes.into())
                    .send(),
            )
            .unwrap();
        out.e_tag().unwrap().trim_matches('"').to_owned()
    }

    pub fn get(&self, key: &str) -> Option<(Vec<u8>, String)> {
        let out = self
            .rt
            .block_on(
                self.client
                    .get_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .send(),
            )
            .ok()?;
        let etag = out.e_tag().unwrap_or_default().to_owned();
        let bytes = self
            .rt
            .block_on(out.body.collect())
            .unwrap()
            .into_bytes()
            .to_vec();
        Some((bytes, etag))
    }

    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let out = self
            .rt
            .block_on(
                self.client
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .prefix(prefix)
                    .send(),
            )
            .unwrap();
        let mut keys: Vec<String> = out
            .contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_owned))
            .collect();
        keys.sort();
        keys
    }
}

/// Every name in `dir`, hidden ones included (work directories and temporaries are hidden).
pub fn entries_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Sets the modification time of every entry of `dir` a minute back, so a later run takes
/// what a killed one left for abandoned.
pub fn age_entries(dir: &Path) {
    for name in entries_in(dir) {
        let p = dir.join(name);
        let f = std::fs::File::options()
            .write(true)
            .open(&p)
            .or_else(|_| std::fs::File::open(&p))
            .unwrap();
        f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(60))
            .unwrap();
    }
}
