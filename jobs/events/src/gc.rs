//! Garbage collection of versioned outputs: an output version that the current manifest does
//! not name is deleted once it is older than the grace period (and, if the manifest lists it as
//! superseded, once that listing's `until` has passed).
//!
//! Safe to kill and to run twice or beside imports: it only deletes, deleting a missing object
//! is not an error, and the age is measured against the time *before* the manifest was read, so
//! a version that an import swapped in after that read is still younger than the grace period
//! (an import refuses to swap once half the grace period has passed since its version was made).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use etl_core::JobError;
use etl_core::store::{Location, Store};
use serde_json::Value;

use crate::publish::{
    Target, current, manifest_files, promised_until, superseded_entries, version_time,
};

/// What one collection did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GcReport {
    /// Targets (manifest locations) looked at.
    pub targets: usize,
    pub deleted: Vec<String>,
    /// Versioned outputs kept (named by the manifest, superseded, or too young).
    pub kept: usize,
}

/// How a collection treats what is not named as a current output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Versions younger than the grace period (an import may be about to swap them in) and
    /// superseded versions whose manifest promises them until a time still to come.
    Grace(Duration),
    /// Nothing but the current outputs: only when no import is running and no reader holds an
    /// older manifest (`etl-events --gc --gc-now`, an operator's clean-up).
    Nothing,
}

/// Pure: which of `files` (names in the target's folder) to delete, given the manifest there
/// (read after `now` was taken).
pub fn plan(
    target: &Target,
    manifest: Option<&Value>,
    files: &[String],
    now: DateTime<Utc>,
    keep_rule: Keep,
) -> Vec<String> {
    let mut keep: BTreeSet<String> = BTreeSet::new();
    if let Some(m) = manifest {
        keep.extend(manifest_files(m).into_iter().map(|(f, _)| f));
        if let Keep::Grace(_) = keep_rule {
            for s in superseded_entries(m) {
                // A promise that cannot be read is kept: deleting is the step that loses data.
                let live = promised_until(s).is_none_or(|u| u > now);
                if live && let Some(f) = s.get("file").and_then(Value::as_str) {
                    keep.insert(f.to_owned());
                }
            }
        }
    }
    files
        .iter()
        .filter(|f| !keep.contains(f.as_str()))
        .filter(|f| {
            let Some((version, _)) = target.parse_file(f) else {
                return false;
            };
            match keep_rule {
                Keep::Nothing => true,
                Keep::Grace(grace) => {
                    let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
                    version_time(version).is_some_and(|made| {
                        made.checked_add_signed(grace).is_some_and(|t| t <= now)
                    })
                }
            }
        })
        .cloned()
        .collect()
}

/// Collects one target's unreferenced versions.
pub async fn collect(store: &Store, target: &Target, keep: Keep) -> Result<GcReport, JobError> {
    let now = Utc::now();
    let manifest = current(store, target).await?.map(|(m, _)| m);
    let listed = store
        .list_prefix(&target.prefix.join(&format!("{}.", target.name)))
        .await
        .map_err(JobError::from)?;
    let files: Vec<String> = listed
        .iter()
        .map(|o| o.location.file_name().to_owned())
        .filter(|f| target.parse_file(f).is_some())
        .collect();
    let doomed = plan(target, manifest.as_ref(), &files, now, keep);
    let mut report = GcReport {
        targets: 1,
        kept: files.len() - doomed.len(),
        ..GcReport::default()
    };
    let mut first_error = None;
    for file in doomed {
        let loc = target.prefix.join(&file);
        match store.delete(&loc).await {
            Ok(()) => report.deleted.push(loc.to_string()),
            Err(e) => {
                tracing::warn!(object = %loc, error = %e, "gc cannot delete an unreferenced output");
                first_error.get_or_insert(JobError::from(e));
            }
        }
    }
    match first_error {
        Some(e) => Err(e.context(format!("gc of {}", target.manifest()))),
        None => Ok(report),
    }
}

/// Collects every target below an output prefix (a directory or `s3://bucket/prefix/`): each
/// folder and name that has versioned outputs, whether or not it has a manifest. One target's
/// failure (a manifest that is not JSON) does not stop the others; the first error is returned
/// after all were tried.
pub async fn collect_prefix(
    store: &Store,
    prefix: &Location,
    keep: Keep,
) -> Result<GcReport, JobError> {
    // A prefix names a folder, with or without its trailing slash.
    let prefix = match prefix {
        Location::S3 { bucket, key } if !key.is_empty() && !key.ends_with('/') => Location::S3 {
            bucket: bucket.clone(),
            key: format!("{key}/"),
        },
        other => other.clone(),
    };
    let objects = store
        .expand(&prefix.to_string())
        .await
        .map_err(JobError::from)?;
    let mut targets: BTreeMap<(Location, String), ()> = BTreeMap::new();
    for o in &objects {
        if hidden(&prefix, &o.location) {
            continue;
        }
        let file = o.location.file_name();
        let mut parts = file.rsplitn(3, '.');
        let (Some(kind), Some(version), Some(name)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let target = Target {
            prefix: o.location.parent(),
            name: name.to_owned(),
        };
        if target.parse_file(file) == Some((version, kind)) {
            targets.insert((target.prefix, target.name), ());
        }
    }
    let mut total = GcReport::default();
    let mut first_error = None;
    for (prefix, name) in targets.into_keys() {
        match collect(store, &Target { prefix, name }, keep).await {
            Ok(r) => {
                total.targets += r.targets;
                total.kept += r.kept;
                total.deleted.extend(r.deleted);
            }
            Err(e) => {
                tracing::warn!(error = %e.message, "gc of one output failed; going on with the others");
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(total),
    }
}

/// Leases and other bookkeeping live in folders whose names start with a dot; only the part
/// below the prefix counts (the prefix itself may well sit in a hidden temp folder).
fn hidden(prefix: &Location, loc: &Location) -> bool {
    match (prefix, loc) {
        (Location::S3 { key: p, .. }, Location::S3 { key, .. }) => key
            .strip_prefix(p.as_str())
            .unwrap_or(key)
            .split('/')
            .any(|seg| seg.starts_with('.')),
        (Location::File(p), Location::File(path)) => path
            .strip_prefix(p)
            .unwrap_or(path)
            .components()
            .any(|c| c.as_os_str().to_string_lossy().starts_with('.')),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn t() -> Target {
        Target {
            prefix: Location::File("out".into()),
            name: "a".into(),
        }
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn plan_keeps_what_is_named_superseded_or_young() {
        let files: Vec<String> = [
            "a.v20261206T100000Z-00000001.pmtiles",  // current
            "a.v20261206T090000Z-00000002.pmtiles",  // superseded, still live
            "a.v20261206T080000Z-00000003.pmtiles",  // superseded, expired
            "a.v20261206T070000Z-00000004.geojsonl", // orphan, old
            "a.v20261206T115900Z-00000005.pmtiles",  // orphan, young (an import in flight)
            "a.json",
            "b.v20261206T070000Z-00000006.pmtiles", // another name
        ]
        .map(String::from)
        .to_vec();
        let m = json!({
            "outputs": [{"file": "a.v20261206T100000Z-00000001.pmtiles", "kind": "pmtiles"}],
            "superseded": [
                {"file": "a.v20261206T090000Z-00000002.pmtiles", "until": "2026-12-06T12:30:00Z"},
                {"file": "a.v20261206T080000Z-00000003.pmtiles", "until": "2026-12-06T11:00:00Z"},
            ],
        });
        let now = at("2026-12-06T12:00:00Z");
        let hour = Keep::Grace(Duration::from_secs(3600));
        assert_eq!(
            plan(&t(), Some(&m), &files, now, hour),
            [
                "a.v20261206T080000Z-00000003.pmtiles",
                "a.v20261206T070000Z-00000004.geojsonl"
            ]
        );
        // No manifest at all (the first import died before its swap): old versions go.
        assert_eq!(
            plan(&t(), None, &files, now, hour),
            [
                "a.v20261206T100000Z-00000001.pmtiles",
                "a.v20261206T090000Z-00000002.pmtiles",
                "a.v20261206T080000Z-00000003.pmtiles",
                "a.v20261206T070000Z-00000004.geojsonl"
            ]
        );
        // Grace zero: a promised superseded version still stays.
        let zero = plan(&t(), Some(&m), &files, now, Keep::Grace(Duration::ZERO));
        assert!(!zero.contains(&"a.v20261206T090000Z-00000002.pmtiles".to_owned()));
        assert!(zero.contains(&"a.v20261206T115900Z-00000005.pmtiles".to_owned()));
        // Keep nothing: every unreferenced version, never the current one.
        let all = plan(&t(), Some(&m), &files, now, Keep::Nothing);
        assert!(!all.contains(&"a.v20261206T100000Z-00000001.pmtiles".to_owned()));
        assert!(all.contains(&"a.v20261206T090000Z-00000002.pmtiles".to_owned()));
        assert_eq!(all.len(), 4);
    }

    #[test]
    fn hidden_folders() {
        let s3 = Location::parse("s3://b/out/").unwrap();
        assert!(hidden(
            &s3,
            &Location::parse("s3://b/out/.etl-events/x.json").unwrap()
        ));
        assert!(!hidden(&s3, &Location::parse("s3://b/out/a.json").unwrap()));
        let dir = Location::File("/tmp/.tmpX/out".into());
        assert!(hidden(
            &dir,
            &Location::File("/tmp/.tmpX/out/.etl-events/lock".into())
        ));
        assert!(!hidden(
            &dir,
            &Location::File("/tmp/.tmpX/out/b/a.json".into())
        ));
    }
}
