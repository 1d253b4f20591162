//! The JSON run summary: the last line a run prints.

use std::time::Duration;

use serde::Serialize;

use crate::batch::BatchEnv;
use crate::job::JobContext;
use crate::metrics::Stats;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Succeeded,
    Skipped,
    DryRun,
    Failed,
    Stopped,
}

#[derive(Debug, Serialize)]
pub struct Counts {
    pub read: u64,
    pub written: u64,
    pub rejected: u64,
    pub skipped_inputs: u64,
}

#[derive(Debug, Serialize)]
pub struct Bytes {
    #[serde(rename = "in")]
    pub input: u64,
    #[serde(rename = "out")]
    pub output: u64,
}

#[derive(Debug, Serialize)]
pub struct RunSummary {
    pub summary: &'static str,
    pub job: &'static str,
    pub run_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logical_time: Option<String>,
    pub status: RunStatus,
    pub exit_code: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub profile: &'static str,
    pub counts: Counts,
    pub bytes: Bytes,
    pub duration_ms: u64,
    pub outputs: Vec<String>,
    pub batch: BatchEnv,
}

impl RunSummary {
    pub fn new(
        job: &'static str,
        ctx: &JobContext,
        status: RunStatus,
        exit_code: i32,
        error: Option<String>,
        elapsed: Duration,
    ) -> Self {
        let s = &ctx.stats;
        RunSummary {
            summary: "run",
            job,
            run_key: s.run_key(),
            logical_time: ctx
                .settings
                .logical_time
                .as_ref()
                .map(crate::schedule::canonical),
            status,
            exit_code,
            error,
            profile: ctx.profile.name(),
            counts: Counts {
                read: Stats::get(&s.read),
                written: Stats::get(&s.written),
                rejected: Stats::get(&s.rejected),
                skipped_inputs: Stats::get(&s.skipped_inputs),
            },
            bytes: Bytes {
                input: Stats::get(&s.bytes_in),
                output: Stats::get(&s.bytes_out),
            },
            duration_ms: elapsed.as_millis() as u64,
            outputs: s.outputs(),
            batch: ctx.batch.clone(),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}
