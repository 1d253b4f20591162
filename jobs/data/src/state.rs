//! Per-input progress kept in the checkpoint, the per-table ledger of loaded inputs, and the
//! decisions taken from them (pure functions, tested here).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A checkpoint or ledger entry that does not decode: the store holds something this version
/// cannot read. Never a reason to start over (that would load rows twice): a configuration
/// error for an operator to look at.
#[derive(Debug, thiserror::Error)]
#[error(
    "run {run_key}: checkpoint entry {name:?} cannot be decoded ({source}); refusing to guess where the load stands: inspect or delete the run's rows in etl_checkpoint (scope {run_key:?})"
)]
pub struct UndecodableState {
    pub run_key: String,
    pub name: String,
    #[source]
    pub source: serde_json::Error,
}

impl From<UndecodableState> for etl_core::JobError {
    fn from(e: UndecodableState) -> Self {
        etl_core::JobError::config(e.to_string())
    }
}

/// Progress of one input within a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputState {
    /// Records with a lower ordinal are committed (loaded or rejected).
    pub next: u64,
    pub read: u64,
    pub written: u64,
    pub rejected: u64,
    /// Of `read`, the features `--where` left out.
    #[serde(default)]
    pub filtered: u64,
    /// Features whose geometry was repaired (by the reader or `--make-valid`).
    #[serde(default)]
    pub repaired: u64,
    pub done: bool,
    /// Columns this run added to an existing table while loading this input (appends straight
    /// into the table), counted against `--max-new-columns` and dropped again if the run is
    /// undone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns_added: Vec<String>,
}

impl InputState {
    /// The state saved under `name`, or a fresh one when there is none. An entry that exists
    /// but does not decode is an error naming the run.
    pub fn decode(
        run_key: &str,
        name: &str,
        v: Option<&Value>,
    ) -> Result<InputState, UndecodableState> {
        match v {
            None => Ok(InputState::default()),
            Some(v) => serde_json::from_value(v.clone()).map_err(|source| UndecodableState {
                run_key: run_key.to_string(),
                name: name.to_string(),
                source,
            }),
        }
    }

    pub fn to_value(&self) -> Value {
        let mut v = serde_json::json!({
            "next": self.next,
            "read": self.read,
            "written": self.written,
            "rejected": self.rejected,
            "done": self.done,
        });
        if !self.columns_added.is_empty() {
            v["columns_added"] = Value::from(self.columns_added.clone());
        }
        if self.filtered > 0 {
            v["filtered"] = Value::from(self.filtered);
        }
        if self.repaired > 0 {
            v["repaired"] = Value::from(self.repaired);
        }
        v
    }
}

/// What the ledger of a table says about one input: which version of it the table holds (or
/// is receiving), and who put it there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadedVersion {
    pub etag: Option<String>,
    pub size: u64,
    /// The table (pg_class oid) that received it: a ledger entry of a table since dropped and
    /// recreated describes nothing.
    #[serde(default)]
    pub table_oid: Option<i64>,
    /// The run that loads (or loaded) it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// Every row of this version is in the table. Entries written before appends went straight
    /// into the table were written only once complete, hence the default.
    #[serde(default = "yes")]
    pub done: bool,
    /// The transactions that inserted this version's rows, kept until the loading run is
    /// published, so that a run that fails for good (or is abandoned half way) can be undone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub xids: Vec<String>,
    /// The entry this one replaced, restored when this run is undone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Box<LoadedVersion>>,
}

fn yes() -> bool {
    true
}

impl LoadedVersion {
    /// A complete load by `run` into the table `table_oid`.
    pub fn complete(etag: Option<String>, size: u64, table_oid: Option<i64>, run: &str) -> Self {
        LoadedVersion {
            etag,
            size,
            table_oid,
            run: Some(run.to_string()),
            done: true,
            xids: Vec::new(),
            previous: None,
        }
    }

    /// Decodes a ledger entry; one that does not decode is an error, never "not loaded".
    pub fn decode(scope: &str, name: &str, v: &Value) -> Result<LoadedVersion, UndecodableState> {
        serde_json::from_value(v.clone()).map_err(|source| UndecodableState {
            run_key: scope.to_string(),
            name: name.to_string(),
            source,
        })
    }

    pub fn to_value(&self) -> Result<Value, etl_core::JobError> {
        serde_json::to_value(self)
            .map_err(|e| etl_core::JobError::internal(format!("encoding a ledger entry: {e}")))
    }

    /// The same version of the same input: only an ETag proves it.
    pub fn same_version(&self, etag: Option<&str>, size: u64) -> bool {
        etag.is_some() && self.etag.as_deref() == etag && self.size == size
    }

    /// Complete and published: nothing of it can be undone any more.
    pub fn settled(&self) -> bool {
        self.done && self.xids.is_empty()
    }
}

/// An input is skipped when the target already holds exactly this version of it, completely
/// and for good. Without an ETag there is no proof of sameness, so it is loaded again.
pub fn unchanged(
    prev: Option<&LoadedVersion>,
    etag: Option<&str>,
    size: u64,
    table_oid: Option<i64>,
) -> bool {
    let Some(prev) = prev else {
        return false;
    };
    prev.same_version(etag, size)
        && table_oid.is_some()
        && prev.table_oid == table_oid
        && prev.settled()
}

/// What a run may do with one input of an append that goes straight into the table, given the
/// table's ledger entry for it. Taken under a lock on that entry, so two runs cannot both
/// decide to load the same input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Load it. `restart`: this run's committed progress on it no longer counts (its rows are
    /// gone with a replaced table, or another run undid them): start again from the first
    /// record. `undo`: transactions of another run's abandoned partial load of this input,
    /// whose rows are deleted first.
    Load { restart: bool, undo: Vec<String> },
    /// The table already holds this version completely: nothing to load. `adopt`: its loading
    /// run was not published yet; this run takes the entry over (and publishes it), so the
    /// rows are never undone by a run that no longer owns them.
    Skip { adopt: bool },
    /// Another run that is alive is loading it: retry later.
    Busy { run: String },
}

/// The claim decision. `progress`: whether this run has committed rows of the input already;
/// `alive`: whether the run that owns an entry still holds its lease.
pub fn claim(
    entry: Option<&LoadedVersion>,
    me: &str,
    progress: bool,
    etag: Option<&str>,
    size: u64,
    table_oid: i64,
    alive: impl FnOnce(&str) -> bool,
) -> Claim {
    let fresh = Claim::Load {
        restart: progress,
        undo: Vec::new(),
    };
    let Some(e) = entry else {
        return fresh;
    };
    if e.table_oid != Some(table_oid) {
        // Written for another incarnation of the table: its rows went with it.
        return fresh;
    }
    let owner = e.run.as_deref().unwrap_or("");
    if owner == me {
        return if e.done {
            Claim::Skip { adopt: false }
        } else {
            Claim::Load {
                restart: false,
                undo: Vec::new(),
            }
        };
    }
    if e.done {
        if e.same_version(etag, size) {
            return Claim::Skip {
                adopt: !e.xids.is_empty(),
            };
        }
        // Another version of the input: appended as well, as a changed input always was.
        return fresh;
    }
    if !owner.is_empty() && alive(owner) {
        return Claim::Busy {
            run: owner.to_string(),
        };
    }
    // A partial load whose run is gone: its rows go, then this run loads the input whole.
    Claim::Load {
        restart: progress,
        undo: e.xids.clone(),
    }
}

/// Name of the run's own state in the checkpoint scope.
pub const RUN_STATE: &str = "_run";

/// Whether the run's own state says it finished. A state that exists without a readable
/// `status` is an error, not "not done".
pub fn run_done(run_key: &str, v: Option<&Value>) -> Result<bool, etl_core::JobError> {
    let Some(v) = v else { return Ok(false) };
    match v.get("status").and_then(Value::as_str) {
        Some(s) => Ok(s == "done"),
        None => Err(etl_core::JobError::config(format!(
            "run {run_key}: checkpoint entry {RUN_STATE:?} has no status ({v}); refusing to guess whether the run finished: inspect or delete the run's rows in etl_checkpoint (scope {run_key:?})"
        ))),
    }
}

/// Whether the rejects so far exceed the limit.
pub fn over_limit(rejected: u64, max: Option<u64>) -> bool {
    max.is_some_and(|m| rejected > m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(v: Value) -> LoadedVersion {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn unchanged_needs_same_etag_size_and_table() {
        let prev = entry(json!({"etag": "\"abc\"", "size": 10, "table_oid": 7}));
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
        let partial = entry(
            json!({"etag": "\"abc\"", "size": 10, "table_oid": 7, "run": "r", "done": false, "xids": ["5"]}),
        );
        assert!(
            !unchanged(Some(&partial), Some("\"abc\""), 10, Some(7)),
            "half loaded"
        );
        let unpublished = entry(
            json!({"etag": "\"abc\"", "size": 10, "table_oid": 7, "run": "r", "done": true, "xids": ["5"]}),
        );
        assert!(
            !unchanged(Some(&unpublished), Some("\"abc\""), 10, Some(7)),
            "its run may still be undone"
        );
    }

    #[test]
    fn claims() {
        let alive = |_: &str| true;
        let dead = |_: &str| false;
        let e = Some("\"e\"");
        // Nothing known: load; progress without an entry means the rows are gone.
        assert_eq!(
            claim(None, "me", false, e, 1, 7, alive),
            Claim::Load {
                restart: false,
                undo: vec![]
            }
        );
        assert_eq!(
            claim(None, "me", true, e, 1, 7, alive),
            Claim::Load {
                restart: true,
                undo: vec![]
            }
        );
        // An entry of another incarnation of the table.
        let old = entry(
            json!({"etag": "\"e\"", "size": 1, "table_oid": 6, "run": "x", "done": false, "xids": ["1"]}),
        );
        assert_eq!(
            claim(Some(&old), "me", true, e, 1, 7, alive),
            Claim::Load {
                restart: true,
                undo: vec![]
            }
        );
        // My own partial load: resume.
        let mine = entry(
            json!({"etag": "\"e\"", "size": 1, "table_oid": 7, "run": "me", "done": false, "xids": ["1"]}),
        );
        assert_eq!(
            claim(Some(&mine), "me", true, e, 1, 7, dead),
            Claim::Load {
                restart: false,
                undo: vec![]
            }
        );
        // Another run's partial load: wait while it lives, undo it once it is gone.
        let theirs = entry(
            json!({"etag": "\"e\"", "size": 1, "table_oid": 7, "run": "x", "done": false, "xids": ["1", "2"]}),
        );
        assert_eq!(
            claim(Some(&theirs), "me", false, e, 1, 7, alive),
            Claim::Busy { run: "x".into() }
        );
        assert_eq!(
            claim(Some(&theirs), "me", true, e, 1, 7, dead),
            Claim::Load {
                restart: true,
                undo: vec!["1".into(), "2".into()]
            }
        );
        // The same version complete: skip (taking over an unpublished one), whatever my progress.
        let settled = entry(json!({"etag": "\"e\"", "size": 1, "table_oid": 7, "run": "x"}));
        assert_eq!(
            claim(Some(&settled), "me", true, e, 1, 7, alive),
            Claim::Skip { adopt: false }
        );
        let unpublished =
            entry(json!({"etag": "\"e\"", "size": 1, "table_oid": 7, "run": "x", "xids": ["3"]}));
        assert_eq!(
            claim(Some(&unpublished), "me", false, e, 1, 7, alive),
            Claim::Skip { adopt: true }
        );
        // Another version, or no ETag to prove sameness: load it.
        assert_eq!(
            claim(Some(&settled), "me", false, Some("\"f\""), 1, 7, alive),
            Claim::Load {
                restart: false,
                undo: vec![]
            }
        );
        assert_eq!(
            claim(Some(&settled), "me", false, None, 1, 7, alive),
            Claim::Load {
                restart: false,
                undo: vec![]
            }
        );
    }

    #[test]
    fn limits_and_done() {
        assert!(!over_limit(5, None));
        assert!(!over_limit(5, Some(5)));
        assert!(over_limit(6, Some(5)));
        assert!(run_done("k", Some(&json!({"status": "done"}))).unwrap());
        assert!(!run_done("k", Some(&json!({"status": "running"}))).unwrap());
        assert!(!run_done("k", None).unwrap());
        let err = run_done("k1", Some(&json!(["junk"]))).unwrap_err();
        assert_eq!(err.kind.code(), 78);
        assert!(err.message.contains("k1"), "{}", err.message);
    }

    #[test]
    fn state_round_trip_and_undecodable_entries() {
        let s = InputState {
            next: 5,
            read: 5,
            written: 4,
            rejected: 1,
            filtered: 2,
            repaired: 1,
            done: false,
            columns_added: vec!["a".into()],
        };
        assert_eq!(
            InputState::decode("k", "in", Some(&s.to_value())).unwrap(),
            s
        );
        assert_eq!(
            InputState::decode("k", "in", None).unwrap(),
            InputState::default()
        );
        // Checkpoints written before `columns_added` existed still decode.
        let old = json!({"next": 3, "read": 3, "written": 3, "rejected": 0, "done": false});
        assert_eq!(InputState::decode("k", "in", Some(&old)).unwrap().next, 3);
        for junk in [json!("junk"), json!({"next": "many"}), json!({"next": -1})] {
            let e = InputState::decode("key42", "in.geojsonl", Some(&junk)).unwrap_err();
            let job: etl_core::JobError = e.into();
            assert_eq!(job.kind.code(), 78);
            assert!(
                job.message.contains("key42") && job.message.contains("in.geojsonl"),
                "{}",
                job.message
            );
        }
    }
}
