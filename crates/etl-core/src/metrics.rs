//! Run counters and their CloudWatch Embedded Metric Format (EMF) line, so alarms need no agent.
//!
//! Each metric name is written in exactly one place: [`Metric`].

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Map, Value, json};

/// Counters a job updates while it runs; the runner turns them into metrics and the summary.
#[derive(Debug, Default)]
pub struct Stats {
    pub read: AtomicU64,
    pub written: AtomicU64,
    pub rejected: AtomicU64,
    /// Features an attribute filter (`--where`) left out: read, neither written nor rejected.
    pub filtered: AtomicU64,
    /// Features whose geometry was repaired (degenerate shapes by the readers, invalid
    /// polygons by `--make-valid`).
    pub repaired: AtomicU64,
    pub skipped_inputs: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    run_key: Mutex<Option<String>>,
    outputs: Mutex<Vec<String>>,
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
    pub fn set_run_key(&self, key: &str) {
        if let Ok(mut k) = self.run_key.lock() {
            *k = Some(key.to_string());
        }
    }
    pub fn run_key(&self) -> Option<String> {
        self.run_key.lock().ok().and_then(|k| k.clone())
    }
    pub fn add_output(&self, url: impl Into<String>) {
        if let Ok(mut o) = self.outputs.lock() {
            o.push(url.into());
        }
    }
    pub fn outputs(&self) -> Vec<String> {
        self.outputs.lock().map(|o| o.clone()).unwrap_or_default()
    }
}

/// The metrics the runner publishes; names and units live here only.
#[derive(Debug, Clone, Copy)]
pub enum Metric {
    FeaturesRead,
    FeaturesWritten,
    FeaturesRejected,
    BytesRead,
    BytesWritten,
    Duration,
    Failures,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::FeaturesRead => "FeaturesRead",
            Metric::FeaturesWritten => "FeaturesWritten",
            Metric::FeaturesRejected => "FeaturesRejected",
            Metric::BytesRead => "BytesRead",
            Metric::BytesWritten => "BytesWritten",
            Metric::Duration => "Duration",
            Metric::Failures => "Failures",
        }
    }
    pub fn unit(self) -> &'static str {
        match self {
            Metric::FeaturesRead
            | Metric::FeaturesWritten
            | Metric::FeaturesRejected
            | Metric::Failures => "Count",
            Metric::BytesRead | Metric::BytesWritten => "Bytes",
            Metric::Duration => "Milliseconds",
        }
    }
}

pub const NAMESPACE: &str = "TakEtl";

/// One EMF JSON line for a finished run (namespace `TakEtl`, dimension `Job`).
pub fn emf_line(job: &str, stats: &Stats, elapsed: Duration, failed: bool, now_ms: u64) -> String {
    let values = [
        (Metric::FeaturesRead, Stats::get(&stats.read) as f64),
        (Metric::FeaturesWritten, Stats::get(&stats.written) as f64),
        (Metric::FeaturesRejected, Stats::get(&stats.rejected) as f64),
        (Metric::BytesRead, Stats::get(&stats.bytes_in) as f64),
        (Metric::BytesWritten, Stats::get(&stats.bytes_out) as f64),
        (Metric::Duration, elapsed.as_millis() as f64),
        (Metric::Failures, if failed { 1.0 } else { 0.0 }),
    ];
    let defs: Vec<Value> = values
        .iter()
        .map(|(m, _)| json!({"Name": m.name(), "Unit": m.unit()}))
        .collect();
    let mut root = Map::new();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": now_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Job"]],
                "Metrics": defs,
            }]
        }),
    );
    root.insert("Job".into(), Value::String(job.to_string()));
    for (m, v) in values {
        root.insert(m.name().into(), json!(v));
    }
    Value::Object(root).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_has_every_declared_metric_value() {
        let stats = Stats::default();
        Stats::add(&stats.read, 10);
        Stats::add(&stats.rejected, 2);
        let line = emf_line("etl-data", &stats, Duration::from_millis(1500), false, 1);
        let v: Value = serde_json::from_str(&line).unwrap();
        let metrics = v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap();
        for m in metrics {
            let name = m["Name"].as_str().unwrap();
            assert!(v.get(name).is_some(), "{name} declared but has no value");
        }
        assert_eq!(v["FeaturesRead"], 10.0);
        assert_eq!(v["FeaturesRejected"], 2.0);
        assert_eq!(v["Duration"], 1500.0);
        assert_eq!(v["Job"], "etl-data");
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], "TakEtl");
    }
}
