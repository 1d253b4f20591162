//! Making an import's outputs appear, and deciding whether an import should happen at all.
//!
//! The manifest `PREFIX/NAME.json` is written last and names the source object version it was
//! made from; it is what makes a repeated event a no-op and an older event harmless. The data
//! outputs are written first, each whole (atomic file rename, or a single PUT / a multipart
//! upload whose completion is the only moment the object appears); if anything fails after the
//! first of them was written, the outputs of this import and the previous manifest are deleted,
//! so readers never see a manifest that disagrees with the data.

use std::io;

use etl_core::JobError;
use etl_core::store::{Location, Precondition, Store, StoreError};
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

/// Pure: same object version → `Unchanged`; an older sequencer on the same key → `Stale`;
/// anything else (nothing there, another key, a newer event, no way to tell) → `Import`.
pub fn decide(current: Option<&Source>, incoming: &Source) -> Decision {
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

impl Target {
    pub fn geojsonl(&self) -> Location {
        self.prefix.join(&format!("{}.geojsonl", self.name))
    }
    pub fn pmtiles(&self) -> Location {
        self.prefix.join(&format!("{}.pmtiles", self.name))
    }
    pub fn manifest(&self) -> Location {
        self.prefix.join(&format!("{}.json", self.name))
    }
}

/// The manifest at the target now: its source and its ETag (for the compare-and-swap).
pub async fn current(store: &Store, target: &Target) -> Result<Option<(Value, String)>, JobError> {
    let loc = target.manifest();
    match store.get(&loc).await {
        Ok(Some((bytes, etag))) => {
            let value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            Ok(Some((value, etag)))
        }
        Ok(None) => Ok(None),
        Err(StoreError::NotFound(_)) => Ok(None),
        Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The source a manifest names, if it is readable.
pub fn source_of(manifest: &Value) -> Option<Source> {
    serde_json::from_value(manifest.get("source")?.clone()).ok()
}

/// Publishes the converted outputs and then the manifest (under `manifest_cond`); returns the
/// manifest written. `previous` is the manifest being replaced, if any.
pub async fn publish(
    store: &Store,
    target: &Target,
    converted: Converted,
    source: &Source,
    previous: Option<&Value>,
    manifest_cond: Precondition,
) -> Result<Value, JobError> {
    let mut manifest: Map<String, Value> = converted.manifest;
    let mut outputs = Vec::new();
    let mut written: Vec<Location> = Vec::new();
    let result = async {
        for (artifact, loc, kind) in [
            (converted.geojsonl, target.geojsonl(), "geojsonl"),
            (converted.pmtiles, target.pmtiles(), "pmtiles"),
        ] {
            let Some(Artifact {
                file,
                bytes,
                sha256,
            }) = artifact
            else {
                continue;
            };
            etl_core::store::publish_file(store, file, &loc).await?;
            written.push(loc.clone());
            outputs.push(
                json!({"url": loc.to_string(), "kind": kind, "bytes": bytes, "sha256": sha256}),
            );
        }
        manifest.insert(
            "source".into(),
            serde_json::to_value(source).unwrap_or(Value::Null),
        );
        manifest.insert("outputs".into(), Value::Array(outputs.clone()));
        manifest.insert(
            "imported_at".into(),
            json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        );
        let doc = Value::Object(manifest.clone());
        let mut bytes = serde_json::to_vec_pretty(&doc)
            .map_err(|e| JobError::temporary(format!("manifest: {e}")))?;
        bytes.push(b'\n');
        store
            .put(&target.manifest(), bytes, manifest_cond)
            .await
            .map_err(|e| match e {
                StoreError::PreconditionFailed(_) => JobError::temporary(format!(
                    "{}: another import replaced the manifest meanwhile; a retry decides again",
                    target.manifest()
                )),
                e => e.into(),
            })?;
        Ok::<Value, JobError>(doc)
    }
    .await;
    match result {
        Ok(doc) => {
            // Outputs of the previous import this one did not replace (say, a GeoJSON sequence
            // when an MBTiles upload replaced a KML) would be orphans.
            if let Some(prev) = previous {
                for url in etl_core::imports::output_urls(prev) {
                    if !outputs
                        .iter()
                        .any(|o| o.get("url").and_then(Value::as_str) == Some(&url))
                        && let Ok(loc) = Location::parse(&url)
                        && loc.parent() == target.prefix
                    {
                        let _ = store.delete(&loc).await;
                    }
                }
            }
            Ok(doc)
        }
        Err(e) => {
            if !written.is_empty() {
                for loc in &written {
                    let _ = store.delete(loc).await;
                }
                let _ = store.delete(&target.manifest()).await;
            }
            Err(e)
        }
    }
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
        assert_eq!(t.pmtiles().to_string(), "s3://b/out/import/route 1.pmtiles");
    }
}
