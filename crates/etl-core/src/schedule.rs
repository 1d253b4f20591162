//! Scheduled runs: the logical time of a run fired by a schedule. It comes from the rule event
//! (EventBridge puts the event's `time` into `ETL_LOGICAL_TIME` through the target's input
//! transformer; EventBridge Scheduler sets it from `<aws.scheduler.scheduled-time>`), or from
//! `--logical-time` to backfill a missed tick. A scheduled run's key is made from it, so the same
//! tick delivered twice does the work once.

use chrono::{DateTime, SecondsFormat, Utc};

/// Parses a logical time: an RFC 3339 timestamp (`2026-12-04T02:00:00Z`, any offset) or a whole
/// EventBridge rule event (`{"detail-type": "Scheduled Event", "time": "…", …}`).
pub fn parse_logical_time(value: &str) -> Result<DateTime<Utc>, String> {
    let v = value.trim();
    if v.starts_with('{') {
        let event: serde_json::Value = serde_json::from_str(v)
            .map_err(|e| format!("logical time: not a timestamp, and not a JSON event: {e}"))?;
        let Some(time) = event.get("time").and_then(|t| t.as_str()) else {
            return Err("logical time: the event has no \"time\" field".into());
        };
        return parse_logical_time(time);
    }
    DateTime::parse_from_rfc3339(v)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            format!("logical time {v:?}: expected RFC 3339 like 2026-12-04T02:00:00Z ({e})")
        })
}

/// The canonical text of a logical time in run keys and summaries (UTC, whole seconds unless
/// the tick had fractions).
pub fn canonical(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn timestamps_and_events() {
        let t = parse_logical_time("2026-12-04T02:00:00Z").unwrap();
        assert_eq!(canonical(&t), "2026-12-04T02:00:00Z");
        // The same instant in another offset is the same tick.
        assert_eq!(parse_logical_time("2026-12-04T03:00:00+01:00").unwrap(), t);
        let event = r#"{"version":"0","id":"53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
            "detail-type":"Scheduled Event","source":"aws.events","account":"123456789012",
            "time":"2026-12-04T02:00:00Z","region":"us-east-1",
            "resources":["arn:aws:events:us-east-1:123456789012:rule/etl-retention"],"detail":{}}"#;
        assert_eq!(parse_logical_time(event).unwrap(), t);
        assert!(parse_logical_time("yesterday").is_err());
        assert!(
            parse_logical_time("{\"detail\":{}}")
                .unwrap_err()
                .contains("time")
        );
        assert!(parse_logical_time("{not json").is_err());
    }
}
