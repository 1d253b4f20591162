//! Shared by the integration tests: service settings from the environment `scripts/test.sh`
//! exports, unique names so tests can share one server, and bounded polling.

#![allow(dead_code)]

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use etl_core::store::{S3Config, Store};

/// A required environment variable; a missing one fails the test (never a silent skip).
pub fn env(name: &str) -> String {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v,
        _ => panic!("{name} not set: run the tests through scripts/test.sh"),
    }
}

pub fn database_url() -> String {
    env("DATABASE_URL")
}

/// The S3 endpoint, after checking that the credentials the SDK needs are set too.
pub fn s3_endpoint() -> String {
    for var in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"] {
        env(var);
    }
    env("S3_ENDPOINT")
}

pub fn s3_config() -> S3Config {
    S3Config {
        endpoint: Some(s3_endpoint()),
        ..Default::default()
    }
}

pub fn s3_store() -> Store {
    Store::new(s3_config())
}

/// A name no other test (in this or another process, in this or an earlier run against the same
/// servers) uses: lowercase letters, digits and `-`, at most 63 bytes (a valid bucket name).
pub fn unique(test: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let suffix = format!("-{}-{n}-{nanos:x}", std::process::id());
    let stem: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(63 - suffix.len())
        .collect();
    format!("{}{suffix}", stem.trim_matches('-'))
}

/// Creates a fresh bucket for one test and returns its name.
pub async fn new_bucket(store: &Store, test: &str) -> String {
    let bucket = unique(test);
    store
        .s3()
        .await
        .expect("S3 client")
        .client()
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "creating bucket {bucket} at {}: {}",
                s3_endpoint(),
                aws_sdk_s3::error::DisplayErrorContext(&e)
            )
        });
    bucket
}

/// Polls `check` every 50 ms for up to 10 s; panics with `what` if it never holds.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "gave up after 10 s waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
