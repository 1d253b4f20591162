//! Making an import's outputs appear — one commit point per import — and deciding whether an
//! import should happen at all.
//!
//! Outputs are immutable and versioned: `PREFIX/NAME.<VERSION>.geojsonl` and
//! `PREFIX/NAME.<VERSION>.pmtiles`, where VERSION (`v20261206T221500Z-1a2b3c4d`) is new for every
//! attempt. The only mutable object is the manifest `PREFIX/NAME.json`, replaced by
//! compare-and-swap (S3 `If-Match`/`If-None-Match`, or a local rename under the output's lease);
//! it names the source object version and the outputs with their sizes and SHA-256. So:
//!
//! - readers resolve NAME through the manifest and see the previous complete version until the
//!   swap, the new complete version after it;
//! - a failure before the swap deletes only this attempt's own objects, which nothing names;
//!   after the swap was attempted nothing is deleted inline (the swap may have happened even if
//!   its answer was lost) and [`crate::gc`] removes what no manifest names once it is older than
//!   the grace period;
//! - the previous version's outputs are listed under `superseded` with the time until which they
//!   stay readable, so a reader holding the old manifest can finish.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use etl_core::JobError;
use etl_core::checkpoint::Lease;
use etl_core::fault;
use etl_core::store::{Location, Precondition, PublishError, Store, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::convert::{Artifact, Converted};
use crate::event::sequencer_cmp;

/// The object version an import is made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Source {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequencer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// The tiling profile the tiles were made with when it is not the default `etl` (so
    /// `"cloudtak"`), absent otherwise: the same object imported under another profile is
    /// imported again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tiles: Option<String>,
}

/// What to do with an incoming source, given the source of the outputs already there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Import,
    /// The outputs already come from this very object version.
    Unchanged,
    /// The outputs come from a newer event on the same key.
    Stale,
}

/// Pure: same object version → `Unchanged` (`Import` when it was tiled under another
/// profile); an older sequencer on the same key → `Stale`; anything else (nothing there,
/// another key, a newer event, no way to tell) → `Import`.
pub fn decide(current: Option<&Source>, incoming: &Source) -> Decision {
    match decide_version(current, incoming) {
        Decision::Unchanged if current.is_some_and(|c| c.tiles != incoming.tiles) => {
            Decision::Import
        }
        d => d,
    }
}

fn decide_version(current: Option<&Source>, incoming: &Source) -> Decision {
    let Some(cur) = current else {
        return Decision::Import;
    };
    if cur.url != incoming.url {
        return Decision::Import;
    }
    if let (Some(a), Some(b)) = (&incoming.sequencer, &cur.sequencer) {
        return match sequencer_cmp(a, b) {
            std::cmp::Ordering::Less => Decision::Stale,
            std::cmp::Ordering::Equal => Decision::Unchanged,
            std::cmp::Ordering::Greater => Decision::Import,
        };
    }
    if let (Some(a), Some(b)) = (&incoming.version_id, &cur.version_id) {
        return if a == b {
            Decision::Unchanged
        } else {
            Decision::Import
        };
    }
    match (&incoming.etag, &cur.etag) {
        (Some(a), Some(b)) if a == b => Decision::Unchanged,
        _ => Decision::Import,
    }
}

/// Where one import's outputs go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub prefix: Location,
    pub name: String,
}

/// The kinds of versioned output, by file extension.
pub const OUTPUT_KINDS: [&str; 4] = ["geojsonl", "pmtiles", "sprite.png", "sprite.json"];

impl Target {
    /// The mutable manifest, the import's commit point.
    pub fn manifest(&self) -> Location {
        self.prefix.join(&format!("{}.json", self.name))
    }

    /// The file name of one immutable output of one version.
    pub fn file(&self, version: &str, kind: &str) -> String {
        format!("{}.{version}.{kind}", self.name)
    }

    /// Where that output lives.
    pub fn output(&self, version: &str, kind: &str) -> Location {
        self.prefix.join(&self.file(version, kind))
    }

    /// The version and kind of a file name that is one of this target's versioned outputs.
    pub fn parse_file<'a>(&self, file: &'a str) -> Option<(&'a str, &'a str)> {
        let rest = file.strip_prefix(self.name.as_str())?.strip_prefix('.')?;
        let (version, kind) = rest.split_once('.')?;
        (is_version(version) && OUTPUT_KINDS.contains(&kind)).then_some((version, kind))
    }
}

/// A new output version: the UTC second it was made and 32 random bits.
pub fn new_version(now: DateTime<Utc>) -> String {
    use std::hash::{BuildHasher, RandomState};
    let random = RandomState::new().hash_one((now, std::process::id())) as u32;
    format!("v{}-{random:08x}", now.format("%Y%m%dT%H%M%SZ"))
}

/// Whether `s` is a version as [`new_version`] makes them (`v20261206T221500Z-1a2b3c4d`).
pub fn is_version(s: &str) -> bool {
    version_time(s).is_some()
}

/// When a version was made.
pub fn version_time(s: &str) -> Option<DateTime<Utc>> {
    let rest = s.strip_prefix('v')?;
    let (stamp, random) = rest.split_once('-')?;
    if random.len() != 8
        || !random
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    if stamp.len() != 16 {
        return None;
    }
    chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ")
        .ok()
        .map(|t| t.and_utc())
}

/// The manifest at the target now: its source and its ETag (for the compare-and-swap).
pub async fn current(store: &Store, target: &Target) -> Result<Option<(Value, String)>, JobError> {
    let loc = target.manifest();
    match store.get(&loc).await {
        Ok(Some((bytes, etag))) => {
            let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
                JobError::config(format!(
                    "{loc}: the manifest is not JSON ({e}); it is the commit point of this output and is left for an operator"
                ))
            })?;
            Ok(Some((value, etag)))
        }
        Ok(None) => Ok(None),
        Err(StoreError::NotFound(_)) => Ok(None),
        Err(StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// The source a manifest names, if it is readable.
pub fn source_of(manifest: &Value) -> Option<Source> {
    serde_json::from_value(manifest.get("source")?.clone()).ok()
}

/// How a publication is carried out.
pub struct Publish<'a> {
    pub store: &'a Store,
    pub target: &'a Target,
    /// The output's lease: checked before each output and before the swap.
    pub lease: &'a Lease,
    /// How long unreferenced outputs stay readable ([`crate::gc`]).
    pub grace: Duration,
    /// The import's deadline: the swap is not attempted after it.
    pub deadline: std::time::Instant,
}

/// The outputs of one manifest as (file, kind), for [`crate::gc`] and for `superseded`.
pub fn manifest_files(manifest: &Value) -> Vec<(String, String)> {
    manifest
        .get("outputs")
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|o| {
                    Some((
                        o.get("file")?.as_str()?.to_owned(),
                        o.get("kind")?.as_str()?.to_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

impl Publish<'_> {
    /// Writes this import's outputs under a new version, then swaps the manifest
    /// (`previous` is the manifest there now and its ETag). Returns the manifest written.
    pub async fn run(
        &self,
        converted: Converted,
        source: &Source,
        previous: Option<&(Value, String)>,
    ) -> Result<Value, JobError> {
        let started = Utc::now();
        let version = new_version(started);
        let mut written: Vec<Location> = Vec::new();
        let outputs = match self
            .write_outputs(
                {
                    let (png, json) = match converted.sprite {
                        Some((p, j)) => (Some(p), Some(j)),
                        None => (None, None),
                    };
                    [
                        (converted.geojsonl, "geojsonl"),
                        (converted.pmtiles, "pmtiles"),
                        (png, "sprite.png"),
                        (json, "sprite.json"),
                    ]
                },
                &version,
                &mut written,
            )
            .await
        {
            Ok(outputs) => outputs,
            Err(e) => {
                // No manifest names these objects: removing them is safe. What cannot be
                // removed now is an orphan that gc removes after the grace period.
                for loc in &written {
                    if let Err(d) = self.store.delete(loc).await {
                        tracing::warn!(object = %loc, error = %d, "cannot remove an output of a failed import; gc removes it after the grace period");
                    }
                }
                return Err(e);
            }
        };
        fault::point("publish.after_outputs");
        let now = Utc::now();
        let doc = manifest(
            converted.manifest,
            source,
            &version,
            outputs,
            previous.map(|(m, _)| m),
            self.target,
            now,
            self.grace,
        )?;
        let mut bytes = serde_json::to_vec_pretty(&doc)
            .map_err(|e| JobError::internal(format!("manifest: {e}")))?;
        bytes.push(b'\n');
        self.check_lease()?;
        // gc deletes an unreferenced version once it is older than the grace period: the swap
        // must come well inside it, or gc could take this version's outputs as orphans.
        // A clock that stepped back counts as no time spent.
        let age = (now - started).to_std().unwrap_or(Duration::ZERO);
        if std::time::Instant::now() >= self.deadline {
            return Err(JobError::temporary(format!(
                "{}: the import took longer than --import-timeout; nothing was swapped",
                self.target.manifest()
            )));
        }
        if age > self.grace / 2 {
            return Err(JobError::temporary(format!(
                "{}: publishing took {} s, over half the gc grace period; a retry publishes again",
                self.target.manifest(),
                age.as_secs()
            )));
        }
        let cond = match previous {
            Some((_, etag)) => Precondition::IfMatch(etag.clone()),
            None => Precondition::IfAbsent,
        };
        fault::point("publish.before_swap");
        match self.store.put(&self.target.manifest(), bytes, cond).await {
            Ok(_) => {
                fault::point("publish.after_swap");
                Ok(doc)
            }
            Err(e) => {
                // The answer may have been lost after the swap happened (and the client's retry
                // of it then failed its own precondition): look before deciding.
                match current(self.store, self.target).await {
                    Ok(Some((m, _)))
                        if m.get("version").and_then(Value::as_str) == Some(version.as_str()) =>
                    {
                        tracing::warn!(manifest = %self.target.manifest(), error = %e, "the manifest write reported an error but took effect");
                        Ok(m)
                    }
                    _ => Err(match e {
                        StoreError::PreconditionFailed(_) => JobError::temporary(format!(
                            "{}: another import replaced the manifest meanwhile; a retry decides again",
                            self.target.manifest()
                        )),
                        e => JobError::from(e),
                    }),
                }
            }
        }
    }

    fn check_lease(&self) -> Result<(), JobError> {
        if self.lease.is_lost() {
            return Err(JobError::temporary(format!(
                "{}: the publish lease was lost (another worker may hold it now); nothing was swapped",
                self.target.manifest()
            )));
        }
        Ok(())
    }

    async fn write_outputs(
        &self,
        artifacts: [(Option<Artifact>, &'static str); 4],
        version: &str,
        written: &mut Vec<Location>,
    ) -> Result<Vec<Value>, JobError> {
        let mut outputs = Vec::new();
        for (artifact, kind) in artifacts {
            let Some(Artifact {
                file,
                bytes,
                sha256,
            }) = artifact
            else {
                continue;
            };
            self.check_lease()?;
            let loc = self.target.output(version, kind);
            // Recorded before the write: a write whose answer was lost may still have landed.
            written.push(loc.clone());
            // Versioned names are new: never replace an object that is there. If one is (two
            // attempts drew the same version), it is not ours to clean up.
            match etl_core::store::publish_new_file(self.store, file, &loc).await {
                Ok(_) => {}
                Err(PublishError::Exists(what)) => {
                    written.pop();
                    return Err(JobError::temporary(format!(
                        "{what}: another attempt published this version name; a retry draws a new one"
                    )));
                }
                Err(PublishError::Failed(e)) => return Err(e),
            }
            let meta = self.store.head(&loc).await.map_err(JobError::from)?;
            if meta.size != bytes {
                return Err(JobError::temporary(format!(
                    "{loc}: {} bytes stored, {bytes} written",
                    meta.size
                )));
            }
            fault::point("publish.after_output");
            outputs.push(json!({
                "url": loc.to_string(),
                "file": self.target.file(version, kind),
                "kind": kind,
                "bytes": bytes,
                "sha256": sha256,
            }));
        }
        Ok(outputs)
    }
}

/// Pure: the manifest of a new version. The previous version's outputs (and any superseded
/// ones still inside their grace period) are listed under `superseded` until `now + grace`.
#[allow(clippy::too_many_arguments)]
pub fn manifest(
    mut doc: Map<String, Value>,
    source: &Source,
    version: &str,
    outputs: Vec<Value>,
    previous: Option<&Value>,
    target: &Target,
    now: DateTime<Utc>,
    grace: Duration,
) -> Result<Value, JobError> {
    let until = now + chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::hours(1));
    let mut superseded: Vec<Value> = Vec::new();
    if let Some(prev) = previous {
        for (file, kind) in manifest_files(prev) {
            if target.parse_file(&file).is_some() {
                superseded.push(json!({"file": file, "kind": kind, "until": stamp(until)}));
            }
        }
        for s in superseded_entries(prev) {
            if promised_until(s).is_some_and(|u| u > now) {
                superseded.push(s.clone());
            }
        }
    }
    doc.insert(
        "source".into(),
        serde_json::to_value(source).map_err(|e| JobError::internal(format!("manifest: {e}")))?,
    );
    doc.insert("version".into(), json!(version));
    doc.insert("outputs".into(), Value::Array(outputs));
    if !superseded.is_empty() {
        doc.insert("superseded".into(), Value::Array(superseded));
    }
    doc.insert("imported_at".into(), json!(stamp(now)));
    Ok(Value::Object(doc))
}

/// A manifest's `superseded` entries.
pub fn superseded_entries(manifest: &Value) -> impl Iterator<Item = &Value> {
    manifest
        .get("superseded")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// Until when a `superseded` entry promises its file stays readable (None: unreadable).
pub fn promised_until(entry: &Value) -> Option<DateTime<Utc>> {
    entry
        .get("until")
        .and_then(Value::as_str)
        .and_then(|u| DateTime::parse_from_rfc3339(u).ok())
        .map(|u| u.with_timezone(&Utc))
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(url: &str, etag: Option<&str>, version: Option<&str>, seq: Option<&str>) -> Source {
        Source {
            url: url.into(),
            etag: etag.map(Into::into),
            version_id: version.map(Into::into),
            sequencer: seq.map(Into::into),
            bytes: None,
            tiles: None,
        }
    }

    #[test]
    fn decisions() {
        let a = src("s3://b/k.kml", Some("e1"), None, Some("0055AED6DCD90281E5"));
        assert_eq!(decide(None, &a), Decision::Import);
        assert_eq!(decide(Some(&a), &a), Decision::Unchanged);
        let older = src("s3://b/k.kml", Some("e0"), None, Some("0055AED6DCD90281E4"));
        assert_eq!(decide(Some(&a), &older), Decision::Stale);
        let newer = src("s3://b/k.kml", Some("e2"), None, Some("0055AED6DCD90281F0"));
        assert_eq!(decide(Some(&a), &newer), Decision::Import);
        let other_key = src("s3://b/other/k.kml", Some("e1"), None, Some("00"));
        assert_eq!(decide(Some(&a), &other_key), Decision::Import);
        // Without sequencers: version ids, then ETags.
        let v1 = src("s3://b/k.kml", Some("e"), Some("v1"), None);
        let v2 = src("s3://b/k.kml", Some("e"), Some("v2"), None);
        assert_eq!(decide(Some(&v1), &v1), Decision::Unchanged);
        assert_eq!(decide(Some(&v1), &v2), Decision::Import);
        let e1 = src("/in/k.kml", Some("x"), None, None);
        let e2 = src("/in/k.kml", Some("y"), None, None);
        assert_eq!(decide(Some(&e1), &e1), Decision::Unchanged);
        assert_eq!(decide(Some(&e1), &e2), Decision::Import);
        // The same version under another tiling profile is imported again; an older event
        // stays stale whatever its profile.
        let cloudtak = |s: &Source| Source {
            tiles: Some("cloudtak".into()),
            ..s.clone()
        };
        assert_eq!(decide(Some(&e1), &cloudtak(&e1)), Decision::Import);
        assert_eq!(decide(Some(&cloudtak(&e1)), &e1), Decision::Import);
        assert_eq!(
            decide(Some(&cloudtak(&e1)), &cloudtak(&e1)),
            Decision::Unchanged
        );
        assert_eq!(decide(Some(&a), &cloudtak(&older)), Decision::Stale);
        let unknown = src("/in/k.kml", None, None, None);
        assert_eq!(decide(Some(&unknown), &unknown), Decision::Import);
    }

    #[test]
    fn targets() {
        let t = Target {
            prefix: Location::parse("s3://b/out/import/")
                .unwrap_or_else(|_| Location::File("x".into())),
            name: "route 1".into(),
        };
        assert_eq!(t.manifest().to_string(), "s3://b/out/import/route 1.json");
        let v = "v20261206T221500Z-1a2b3c4d";
        assert_eq!(
            t.output(v, "pmtiles").to_string(),
            "s3://b/out/import/route 1.v20261206T221500Z-1a2b3c4d.pmtiles"
        );
        assert_eq!(
            t.parse_file("route 1.v20261206T221500Z-1a2b3c4d.geojsonl"),
            Some((v, "geojsonl"))
        );
        // Another name's outputs, foreign files and malformed versions are not ours.
        for other in [
            "route 1.json",
            "route 10.v20261206T221500Z-1a2b3c4d.pmtiles",
            "route 1.v20261206T221500Z-1a2b3c4d.v20261206T221500Z-1a2b3c4d.pmtiles",
            "route 1.v20261206T221500Z-1A2B3C4D.pmtiles",
            "route 1.v2026120T221500Z-1a2b3c4d.pmtiles",
            "route 1.v20261206T221500Z-1a2b3c4d.json",
            "route 1.pmtiles",
        ] {
            assert_eq!(t.parse_file(other), None, "{other}");
        }
    }

    #[test]
    fn versions_are_new_and_dated() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-06T22:15:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let a = new_version(now);
        assert!(a.starts_with("v20261206T221500Z-"), "{a}");
        assert!(is_version(&a));
        assert_eq!(version_time(&a), Some(now));
        assert!(!is_version("v20261306T221500Z-1a2b3c4d"), "month 13");
    }

    #[test]
    fn manifests_list_what_they_supersede() {
        let t = Target {
            prefix: Location::File("out".into()),
            name: "a".into(),
        };
        let now = chrono::DateTime::parse_from_rfc3339("2026-12-06T22:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let prev = json!({
            "version": "v20261206T210000Z-00000001",
            "outputs": [
                {"file": "a.v20261206T210000Z-00000001.pmtiles", "kind": "pmtiles"},
                {"file": "../elsewhere.pmtiles", "kind": "pmtiles"},
            ],
            "superseded": [
                {"file": "a.v20261206T200000Z-00000002.pmtiles", "kind": "pmtiles", "until": "2026-12-06T22:30:00.000Z"},
                {"file": "a.v20261206T190000Z-00000003.pmtiles", "kind": "pmtiles", "until": "2026-12-06T21:00:00.000Z"},
            ],
        });
        let doc = manifest(
            Map::new(),
            &src("s3://b/a.kml", None, None, None),
            "v20261206T220000Z-00000004",
            vec![json!({"file": "a.v20261206T220000Z-00000004.pmtiles", "kind": "pmtiles"})],
            Some(&prev),
            &t,
            now,
            Duration::from_secs(3600),
        )
        .unwrap();
        let files: Vec<&str> = doc["superseded"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["file"].as_str().unwrap())
            .collect();
        // The previous version until now + grace, the still-live older one; not the expired
        // one, and never a file outside this target.
        assert_eq!(
            files,
            [
                "a.v20261206T210000Z-00000001.pmtiles",
                "a.v20261206T200000Z-00000002.pmtiles"
            ]
        );
        assert_eq!(doc["superseded"][0]["until"], "2026-12-06T23:00:00.000Z");
        assert_eq!(doc["version"], "v20261206T220000Z-00000004");
    }
}
