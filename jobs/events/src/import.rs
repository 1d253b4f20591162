//! One import from start to end, the same for every trigger: decide from the manifest already
//! there, fetch the upload (refusing it by size before reading), convert it, then under a
//! per-output lease decide again and publish.

use std::io::Write;
use std::path::{Path, PathBuf};

use etl_core::checkpoint::Checkpoints;
use etl_core::store::{Location, ObjectMeta, Precondition, StoreError};
use etl_core::{JobContext, JobError};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::convert::{ConvertOptions, convert, stopped};
use crate::publish::{Decision, Source, Target, current, decide, publish, source_of};

/// How an import ended, when it did not fail.
#[derive(Debug, Clone, PartialEq)]
pub enum Imported {
    /// Outputs written; the manifest.
    Done(Value),
    /// The outputs already come from this object version.
    Unchanged,
    /// A newer event's outputs are there (or the object changed since the event).
    Stale(String),
}

impl Imported {
    pub fn status(&self) -> &'static str {
        match self {
            Imported::Done(_) => "imported",
            Imported::Unchanged => "unchanged",
            Imported::Stale(_) => "stale",
        }
    }
}

/// Where one source's outputs go: `output` + (for an S3 key) the key's folder, and the file
/// name without its extension (or `name`).
pub fn target_for(output: &str, source: &Location, name: Option<&str>) -> Result<Target, JobError> {
    let root = Location::parse(output).map_err(|e| JobError::usage(format!("--output: {e}")))?;
    let root = match &root {
        // A prefix that does not end in '/' still names a folder.
        Location::S3 { bucket, key } if !key.is_empty() && !key.ends_with('/') => Location::S3 {
            bucket: bucket.clone(),
            key: format!("{key}/"),
        },
        _ => root,
    };
    let file = source.file_name();
    let stem = match file.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem,
        _ => file,
    };
    let name = name.unwrap_or(stem);
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(JobError::usage(format!(
            "cannot name outputs after {source}: give --name"
        )));
    }
    let prefix = match source {
        Location::S3 { key, .. } => match key.rfind('/') {
            Some(i) => root.join(&key[..=i]),
            None => root,
        },
        Location::File(_) => root,
    };
    Ok(Target {
        prefix,
        name: name.to_owned(),
    })
}

/// Everything an import needs besides the source.
pub struct Importer {
    pub ctx: JobContext,
    pub convert: ConvertOptions,
    pub max_bytes: u64,
}

impl Importer {
    /// Imports `source` into `target`.
    pub async fn import(&self, mut source: Source, target: &Target) -> Result<Imported, JobError> {
        let store = &self.ctx.store;
        // 1. A cheap decision before any download.
        let existing = current(store, target).await?;
        match decide(
            existing.as_ref().and_then(|(m, _)| source_of(m)).as_ref(),
            &source,
        ) {
            Decision::Import => {}
            Decision::Unchanged => return Ok(Imported::Unchanged),
            Decision::Stale => return Ok(Imported::Stale(stale_reason(existing.as_ref()))),
        }
        // 2. The object as it is now; refused by size before it is read.
        let loc = Location::parse(&source.url)
            .map_err(|e| JobError::usage(format!("{}: {e}", source.url)))?;
        let meta = store.head(&loc).await.map_err(|e| match e {
            StoreError::NotFound(_) => JobError::bad_input(format!("{}: not found", source.url)),
            StoreError::Io { source: io, .. } if io.kind() == std::io::ErrorKind::NotFound => {
                JobError::bad_input(format!("{}: not found", source.url))
            }
            e => e.into(),
        })?;
        if loc.is_s3()
            && let (Some(want), Some(have)) = (&source.etag, &meta.etag)
            && want.trim_matches('"') != have.trim_matches('"')
        {
            // Overwritten since the event: that write has its own event, which imports it.
            return Ok(Imported::Stale(format!(
                "{} changed since the event (ETag {have}, event {want})",
                source.url
            )));
        }
        if source.etag.is_none() {
            source.etag = meta.etag.clone().map(|e| e.trim_matches('"').to_owned());
        }
        if source.version_id.is_none() {
            source.version_id = meta.version_id.clone();
        }
        source.bytes = Some(meta.size);
        if meta.size > self.max_bytes {
            return Err(JobError::bad_input(format!(
                "{}: the upload is {} bytes, over the limit of {} (--max-bytes)",
                source.url, meta.size, self.max_bytes
            )));
        }
        // 3. Fetch (S3 only) and convert, off the async threads.
        let (path, _download) = match &loc {
            Location::File(p) => (p.clone(), None),
            Location::S3 { .. } => {
                let file = self.download(&meta).await?;
                (file.path().to_path_buf(), Some(file))
            }
        };
        let converted = {
            let opts = self.convert.clone();
            let name = target.name.clone();
            let shutdown = self.ctx.shutdown.clone();
            let shown = source.url.clone();
            let path: PathBuf = path.clone();
            tokio::task::spawn_blocking(move || {
                let cancel = || shutdown.is_cancelled();
                convert(&path, &name, &opts, &cancel).map_err(|mut e| {
                    // Errors name the local download; the user knows the upload by its URL.
                    e.message = e.message.replace(&path.display().to_string(), &shown);
                    e
                })
            })
            .await
            .map_err(|e| JobError::temporary(format!("conversion task failed: {e}")))??
        };
        if self.ctx.shutdown.is_cancelled() {
            return Err(stopped());
        }
        // 4. Publish under the target's lease, deciding again: another worker may have
        // imported a newer version meanwhile.
        let locks = lock_store(&self.ctx, target).await?;
        let scope = lock_scope(target);
        let lease = match locks
            .acquire(
                &scope,
                &self.ctx.settings.owner,
                self.ctx.settings.lease_ttl,
            )
            .await
            .map_err(JobError::from)?
        {
            Ok(lease) => lease,
            Err(holder) => {
                return Err(JobError::temporary(format!(
                    "{}: another worker ({}) is publishing this output; retry later",
                    target.manifest(),
                    holder.owner
                )));
            }
        };
        let existing = current(store, target).await?;
        let outcome = match decide(
            existing.as_ref().and_then(|(m, _)| source_of(m)).as_ref(),
            &source,
        ) {
            Decision::Unchanged => Ok(Imported::Unchanged),
            Decision::Stale => Ok(Imported::Stale(stale_reason(existing.as_ref()))),
            Decision::Import => {
                let cond = match &existing {
                    Some((_, etag)) => Precondition::IfMatch(etag.clone()),
                    None => Precondition::IfAbsent,
                };
                publish(
                    store,
                    target,
                    converted,
                    &source,
                    existing.as_ref().map(|(m, _)| m),
                    cond,
                )
                .await
                .map(Imported::Done)
            }
        };
        lease.release().await;
        outcome
    }

    /// Streams an S3 object into the scratch directory, pinned to the version HEAD saw, and
    /// never past the size limit.
    async fn download(&self, meta: &ObjectMeta) -> Result<tempfile::NamedTempFile, JobError> {
        let dir = self.convert.scratch.clone();
        let file = tempfile::Builder::new()
            .prefix(".etl-events-download-")
            .tempfile_in(&dir)
            .map_err(|e| JobError::temporary(format!("{}: {e}", dir.display())))?;
        let mut reader = self.ctx.store.reader(meta).await.map_err(JobError::from)?;
        let mut out = std::io::BufWriter::with_capacity(
            1 << 20,
            file.reopen()
                .map_err(|e| JobError::temporary(format!("download: {e}")))?,
        );
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = tokio::select! {
                n = reader.read(&mut buf) => n.map_err(|e| JobError::temporary(format!("{}: download: {e}", meta.location)))?,
                _ = self.ctx.shutdown.cancelled() => return Err(stopped()),
            };
            if n == 0 {
                break;
            }
            total += n as u64;
            if total > self.max_bytes {
                return Err(JobError::bad_input(format!(
                    "{}: the upload is over the limit of {} bytes (--max-bytes)",
                    meta.location, self.max_bytes
                )));
            }
            out.write_all(buf.get(..n).unwrap_or_default())
                .map_err(|e| JobError::temporary(format!("download: {e}")))?;
        }
        out.flush()
            .map_err(|e| JobError::temporary(format!("download: {e}")))?;
        self.ctx
            .stats
            .bytes_in
            .fetch_add(total, std::sync::atomic::Ordering::Relaxed);
        Ok(file)
    }
}

fn stale_reason(existing: Option<&(Value, String)>) -> String {
    let seq = existing
        .and_then(|(m, _)| source_of(m))
        .and_then(|s| s.sequencer)
        .unwrap_or_default();
    format!("the outputs come from a newer event (sequencer {seq})")
}

/// Per-output leases live beside the outputs, under `.etl-events/`.
async fn lock_store(ctx: &JobContext, target: &Target) -> Result<Checkpoints, JobError> {
    let url = target.prefix.join(".etl-events/").to_string();
    Checkpoints::open(&url, &ctx.store, None)
        .await
        .map_err(JobError::from)
}

fn lock_scope(target: &Target) -> String {
    let digest = Sha256::digest(target.manifest().to_string().as_bytes());
    format!(
        "publish-{}",
        hex::encode(digest.get(..12).unwrap_or_default())
    )
}

/// A local source: its path, size and a fingerprint for `--input` runs.
pub fn local_source(path: &Path) -> Source {
    Source {
        url: path.display().to_string(),
        ..Source::default()
    }
}

/// The one-line JSON a run prints per imported object.
pub fn report(source: &Source, target: &Target, outcome: &Imported) -> Value {
    let mut r = json!({
        "source": source.url,
        "status": outcome.status(),
        "manifest": target.manifest().to_string(),
    });
    if let (Imported::Stale(why), Some(obj)) = (outcome, r.as_object_mut()) {
        obj.insert("reason".into(), json!(why));
    }
    r
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn targets_follow_the_key_folder() {
        let src = Location::parse("s3://up/import/team alpha/route 1.kml").unwrap();
        let t = target_for("s3://out/processed", &src, None).unwrap();
        assert_eq!(
            t.manifest().to_string(),
            "s3://out/processed/import/team alpha/route 1.json"
        );
        let t = target_for(
            "s3://out/",
            &Location::parse("s3://up/x.gpx").unwrap(),
            None,
        )
        .unwrap();
        assert_eq!(t.geojsonl().to_string(), "s3://out/x.geojsonl");
        let t = target_for("out", &Location::parse("/data/a/b.tar.kmz").unwrap(), None).unwrap();
        assert_eq!(t.pmtiles().to_string(), "out/b.tar.pmtiles");
        let t = target_for(
            "out",
            &Location::parse("/data/noext").unwrap(),
            Some("mine"),
        )
        .unwrap();
        assert_eq!(t.manifest().to_string(), "out/mine.json");
        assert!(target_for("out", &Location::parse("/data/x.kml").unwrap(), Some("a/b")).is_err());
    }
}
