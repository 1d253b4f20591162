//! `--wait`: follows DescribeJobs until every job has finished, printing status changes.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde_json::{Value, json};

/// What DescribeJobs says about one job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobState {
    pub job_id: String,
    pub status: String,
    pub reason: Option<String>,
    /// An array parent's children per status.
    pub summary: Option<BTreeMap<String, i32>>,
}

/// Remembers the last state of each job and reports changes.
#[derive(Debug, Default)]
pub struct Tracker {
    last: HashMap<String, (String, Option<BTreeMap<String, i32>>)>,
}

impl Tracker {
    /// The status line for `s` when its status (or an array's summary) changed since last seen.
    pub fn observe(&mut self, s: &JobState) -> Option<Value> {
        let now = (s.status.clone(), s.summary.clone());
        if self.last.get(&s.job_id) == Some(&now) {
            return None;
        }
        self.last.insert(s.job_id.clone(), now);
        let mut line = json!({ "jobId": s.job_id, "status": s.status });
        if let Some(sum) = &s.summary {
            line["statusSummary"] = json!(sum);
        }
        if s.status == "FAILED" {
            line["statusReason"] = json!(
                s.reason
                    .as_deref()
                    .unwrap_or("no reason given by AWS Batch")
            );
        } else if let Some(r) = &s.reason {
            line["statusReason"] = json!(r);
        }
        Some(line)
    }
}

/// Where a set of jobs stands.
#[derive(Debug, PartialEq)]
pub enum Outcome {
    Running,
    Succeeded,
    /// The ids of the failed jobs.
    Failed(Vec<String>),
}

/// All of `ids` SUCCEEDED → Succeeded; any FAILED → Failed; else Running (also while a job is
/// not yet visible to DescribeJobs).
pub fn outcome(ids: &[String], states: &[JobState]) -> Outcome {
    let failed: Vec<String> = states
        .iter()
        .filter(|s| s.status == "FAILED")
        .map(|s| s.job_id.clone())
        .collect();
    if !failed.is_empty() {
        return Outcome::Failed(failed);
    }
    let all = ids.iter().all(|id| {
        states
            .iter()
            .any(|s| &s.job_id == id && s.status == "SUCCEEDED")
    });
    if all {
        Outcome::Succeeded
    } else {
        Outcome::Running
    }
}

/// Poll intervals: from `start` growing by half each time up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(start: Duration, max: Duration) -> Backoff {
        Backoff {
            next: start.min(max),
            max,
        }
    }

    /// 1 s → 10 s, or `ETL_SUBMIT_POLL_MS` (a constant interval, for tests).
    pub fn from_env(poll_ms: Option<&str>) -> Backoff {
        match poll_ms.and_then(|v| v.parse::<u64>().ok()) {
            Some(ms) => Backoff::new(Duration::from_millis(ms), Duration::from_millis(ms)),
            None => Backoff::new(Duration::from_secs(1), Duration::from_secs(10)),
        }
    }
}

impl Iterator for Backoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        let d = self.next;
        self.next = (d + d / 2).min(self.max);
        Some(d)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn st(id: &str, status: &str) -> JobState {
        JobState {
            job_id: id.into(),
            status: status.into(),
            reason: None,
            summary: None,
        }
    }

    #[test]
    fn changes_only() {
        let mut t = Tracker::default();
        assert_eq!(
            t.observe(&st("a", "RUNNABLE")).unwrap(),
            json!({"jobId":"a","status":"RUNNABLE"})
        );
        assert!(t.observe(&st("a", "RUNNABLE")).is_none());
        assert!(t.observe(&st("b", "RUNNABLE")).is_some());
        let mut f = st("a", "FAILED");
        assert_eq!(
            t.observe(&f).unwrap()["statusReason"],
            "no reason given by AWS Batch"
        );
        f.reason = Some("Essential container exited".into());
        f.job_id = "c".into();
        assert_eq!(
            t.observe(&f).unwrap()["statusReason"],
            "Essential container exited"
        );
    }

    #[test]
    fn array_summary_changes() {
        let mut t = Tracker::default();
        let mut s = st("p", "RUNNING");
        s.summary = Some([("RUNNING".to_owned(), 2), ("SUCCEEDED".to_owned(), 0)].into());
        assert_eq!(t.observe(&s).unwrap()["statusSummary"]["RUNNING"], 2);
        assert!(t.observe(&s).is_none());
        s.summary = Some([("RUNNING".to_owned(), 1), ("SUCCEEDED".to_owned(), 1)].into());
        assert_eq!(t.observe(&s).unwrap()["statusSummary"]["SUCCEEDED"], 1);
    }

    #[test]
    fn outcomes() {
        let ids = vec!["a".to_owned(), "b".to_owned()];
        assert_eq!(outcome(&ids, &[st("a", "SUCCEEDED")]), Outcome::Running);
        assert_eq!(
            outcome(&ids, &[st("a", "SUCCEEDED"), st("b", "RUNNING")]),
            Outcome::Running
        );
        assert_eq!(
            outcome(&ids, &[st("a", "SUCCEEDED"), st("b", "SUCCEEDED")]),
            Outcome::Succeeded
        );
        assert_eq!(
            outcome(&ids, &[st("a", "FAILED"), st("b", "PENDING")]),
            Outcome::Failed(vec!["a".into()])
        );
    }

    #[test]
    fn backoff() {
        let v: Vec<u64> = Backoff::from_env(None)
            .take(8)
            .map(|d| d.as_millis() as u64)
            .collect();
        assert_eq!(v, [1000, 1500, 2250, 3375, 5062, 7593, 10000, 10000]);
        assert!(
            Backoff::from_env(Some("20"))
                .take(5)
                .all(|d| d.as_millis() == 20)
        );
    }
}
