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
    /// Left out by an attribute filter (`--where`); not rejects.
    #[serde(skip_serializing_if = "is_zero")]
    pub filtered: u64,
    /// Features whose geometry was repaired (by a reader, or by `--make-valid`).
    #[serde(skip_serializing_if = "is_zero")]
    pub repaired: u64,
    pub skipped_inputs: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
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
    /// The process's peak resident memory (Linux `VmHWM`), so a run says what it cost; absent
    /// where /proc cannot tell.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_rss_bytes: Option<u64>,
    pub outputs: Vec<String>,
    pub batch: BatchEnv,
}

/// `VmHWM` of /proc/self/status in bytes.
pub fn peak_rss() -> Option<u64> {
    let status = match std::fs::read_to_string("/proc/self/status") {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "no /proc/self/status: peak memory not reported");
            return None;
        }
    };
    parse_vm_hwm(&status)
}

/// Pure: the `VmHWM:  1234 kB` line of a /proc status file, in bytes.
fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
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
                filtered: Stats::get(&s.filtered),
                repaired: Stats::get(&s.repaired),
                skipped_inputs: Stats::get(&s.skipped_inputs),
            },
            bytes: Bytes {
                input: Stats::get(&s.bytes_in),
                output: Stats::get(&s.bytes_out),
            },
            duration_ms: elapsed.as_millis() as u64,
            peak_rss_bytes: peak_rss(),
            outputs: s.outputs(),
            batch: ctx.batch.clone(),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_hwm() {
        assert_eq!(
            parse_vm_hwm("Name:\tx\nVmPeak:\t  10 kB\nVmHWM:\t    2048 kB\n"),
            Some(2048 * 1024)
        );
        assert_eq!(parse_vm_hwm("Name: x\n"), None);
        assert!(peak_rss().is_some_and(|b| b > 0));
    }
}
