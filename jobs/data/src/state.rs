//! Per-input progress kept in the checkpoint, and the decisions taken from it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Progress of one input within a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputState {
    /// Records with a lower ordinal are committed (loaded or rejected).
    pub next: u64,
    pub read: u64,
    pub written: u64,
    pub rejected: u64,
    pub done: bool,
}

impl InputState {
    pub fn from_value(v: Option<&Value>) -> InputState {
        v.and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default()
    }
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// What version of an input a target holds, for skipping unchanged inputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadedVersion {
    pub etag: Option<String>,
    pub size: u64,
    /// The table (pg_class oid) that received it: a ledger entry of a table since dropped and
    /// recreated describes nothing.
    #[serde(default)]
    pub table_oid: Option<i64>,
}

/// An input is skipped when the target already holds exactly this version of it. Without an
/// ETag there is no proof of sameness, so it is loaded again.
pub fn unchanged(
    ledger: Option<&Value>,
    etag: Option<&str>,
    size: u64,
    table_oid: Option<i64>,
) -> bool {
    let Some(prev) = ledger.and_then(|v| serde_json::from_value::<LoadedVersion>(v.clone()).ok())
    else {
        return false;
    };
    etag.is_some()
        && prev.etag.as_deref() == etag
        && prev.size == size
        && table_oid.is_some()
        && prev.table_oid == table_oid
}

/// Name of the run's own state in the checkpoint scope.
pub const RUN_STATE: &str = "_run";

pub fn run_done(v: Option<&Value>) -> bool {
    v.and_then(|v| v.get("status"))
        .and_then(Value::as_str)
        .is_some_and(|s| s == "done")
}

/// Whether the rejects so far exceed the limit.
pub fn over_limit(rejected: u64, max: Option<u64>) -> bool {
    max.is_some_and(|m| rejected > m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unchanged_needs_same_etag_size_and_table() {
        let prev = json!({"etag": "\"abc\"", "size": 10, "table_oid": 7});
        assert!(unchanged(Some(&prev), Some("\"abc\""), 10, Some(7)));
        assert!(!unchanged(Some(&prev), Some("\"abc\""), 11, Some(7)));
        assert!(!unchanged(Some(&prev), Some("\"abd\""), 10, Some(7)));
        assert!(!unchanged(Some(&prev), None, 10, Some(7)));
        assert!(!unchanged(None, Some("\"abc\""), 10, Some(7)));
        assert!(
            !unchanged(Some(&prev), Some("\"abc\""), 10, Some(8)),
            "table recreated"
        );
        assert!(
            !unchanged(Some(&prev), Some("\"abc\""), 10, None),
            "no table"
        );
    }

    #[test]
    fn limits_and_done() {
        assert!(!over_limit(5, None));
        assert!(!over_limit(5, Some(5)));
        assert!(over_limit(6, Some(5)));
        assert!(run_done(Some(&json!({"status": "done"}))));
        assert!(!run_done(Some(&json!({"status": "running"}))));
        assert!(!run_done(None));
    }

    #[test]
    fn state_round_trip_and_defaults() {
        let s = InputState {
            next: 5,
            read: 5,
            written: 4,
            rejected: 1,
            done: false,
        };
        assert_eq!(InputState::from_value(Some(&s.to_value())), s);
        assert_eq!(
            InputState::from_value(Some(&json!("junk"))),
            InputState::default()
        );
    }
}
