//! One import from start to end, the same for every trigger: decide from the manifest already
//! there, fetch the upload (refusing it by size before reading), convert it, then under a
//! per-output lease decide again and publish.

use std::io::Write;
use std::path::{Path, PathBuf};

use etl_core::checkpoint::Checkpoints;
use etl_core::store::{Location, ObjectMeta, StoreError};
use etl_core::{JobContext, JobError};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

use crate::convert::{ConvertOptions, Converted, convert, stopped};
use crate::publish::{Decision, Publish, Source, Target, current, decide, source_of};

mod route;

pub use route::{check_key, check_source, target_for};

/// How an import ended, when it did not fail.
#[derive(Debug, Clone, PartialEq)]
pub enum Imported {
    /// Outputs written; the manifest.
    Done(Value),
    /// The outputs already come from this object version.
    /// The outputs already come from this object version; the version of those outputs.
    Unchanged(Option<String>),
    /// A newer event's outputs are there (or the object changed since the event).
    Stale(String),
}

impl Imported {
    pub fn status(&self) -> &'static str {
        match self {
            Imported::Done(_) => "imported",
            Imported::Unchanged(_) => "unchanged",
            Imported::Stale(_) => "stale",
        }
    }
}

/// Everything an import needs besides the source.
pub struct Importer {
    pub ctx: JobContext,
    pub convert: ConvertOptions,
    pub max_bytes: u64,
    /// Who takes the per-output lease: unique per process and per concurrent slot, so two
    /// `--serve` workers of one process exclude each other.
    pub owner: String,
    /// How long unreferenced output versions stay readable before gc deletes them.
    pub gc_grace: std::time::Duration,
    /// Longest one import may take, every phase included.
    pub timeout: std::time::Duration,
}

/// The per-import work directories in the scratch directory.
const WORK_PREFIX: &str = ".etl-events-import-";

/// What the phases before publishing leave.
enum Prepared {
    /// Nothing to publish (same version, or a newer one is there).
    Settled(Imported),
    Converted(Box<(Source, Converted)>),
}

impl Importer {
    /// Imports `source` into `target`. `--import-timeout` bounds everything up to the swap:
    /// fetching and converting are abandoned when it passes, and the swap is not attempted
    /// after it; once the swap is under way it is finished (a swap cut short could not say
    /// whether it happened).
    pub async fn import(&self, mut source: Source, target: &Target) -> Result<Imported, JobError> {
        // The profile only shapes the tiles: without them it does not set the outputs apart.
        source.tiles = if self.convert.pmtiles {
            self.convert.tiles.recorded()
        } else {
            None
        };
        let deadline = std::time::Instant::now() + self.timeout;
        let url = source.url.clone();
        // Everything this import unpacks or builds lives in a locked work directory, removed
        // when the import ends; what a killed import left is swept by a later one.
        let scratch = &self.convert.scratch;
        etl_core::scratch::sweep(scratch, WORK_PREFIX);
        let work = etl_core::scratch::WorkDir::new_in(scratch, WORK_PREFIX).map_err(|e| {
            JobError::temporary(format!(
                "{}: cannot create a work directory: {e}",
                scratch.display()
            ))
        })?;
        let prepared = match tokio::time::timeout_at(
            deadline.into(),
            self.prepare(source, target, deadline, work.path()),
        )
        .await
        {
            Ok(r) => r?,
            Err(_) => return Err(timed_out(&url)),
        };
        let (source, converted) = match prepared {
            Prepared::Settled(outcome) => return Ok(outcome),
            Prepared::Converted(both) => *both,
        };
        let outcome = self.publish(source, target, converted, deadline).await?;
        if matches!(outcome, Imported::Done(_)) {
            // Superseded versions past their grace and orphans of dead attempts. A failure
            // here leaves them for the next import or an `etl-events --gc` run; the import
            // itself is done.
            if let Err(e) = crate::gc::collect(
                &self.ctx.store,
                target,
                crate::gc::Keep::Grace(self.gc_grace),
            )
            .await
            {
                tracing::warn!(manifest = %target.manifest(), error = %e.message, "gc after the import failed");
            }
        }
        Ok(outcome)
    }

    /// Under the target's lease (waited for until the deadline), decides again — another
    /// worker may have imported a newer version meanwhile — and publishes.
    async fn publish(
        &self,
        source: Source,
        target: &Target,
        converted: Converted,
        deadline: std::time::Instant,
    ) -> Result<Imported, JobError> {
        let store = &self.ctx.store;
        etl_core::fault::pause("events.before_lease").await;
        let locks = lock_store(&self.ctx, target).await?;
        let scope = lock_scope(target);
        let mut pause = std::time::Duration::from_millis(100);
        let lease = loop {
            match locks
                .acquire(&scope, &self.owner, self.ctx.settings.lease_ttl)
                .await
                .map_err(JobError::from)?
            {
                Ok(lease) => break lease,
                Err(holder) => {
                    if std::time::Instant::now() + pause >= deadline {
                        return Err(JobError::temporary(format!(
                            "{}: another worker ({}) held the publish lease until this import's deadline; retry later",
                            target.manifest(),
                            holder.owner
                        )));
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = self.ctx.shutdown.cancelled() => return Err(stopped()),
                    }
                    pause = (pause * 2).min(std::time::Duration::from_secs(2));
                }
            }
        };
        let existing = current(store, target).await;
        let outcome = match existing {
            Err(e) => Err(e),
            Ok(existing) => match decide(
                existing.as_ref().and_then(|(m, _)| source_of(m)).as_ref(),
                &source,
            ) {
                Decision::Unchanged => Ok(Imported::Unchanged(version_of(existing.as_ref()))),
                Decision::Stale => Ok(Imported::Stale(stale_reason(existing.as_ref()))),
                Decision::Import => Publish {
                    store,
                    target,
                    lease: &lease,
                    grace: self.gc_grace,
                    deadline,
                }
                .run(converted, &source, existing.as_ref())
                .await
                .map(Imported::Done),
            },
        };
        lease.release().await;
        outcome
    }

    /// Everything before publishing: the cheap decision, HEAD, download and conversion.
    async fn prepare(
        &self,
        mut source: Source,
        target: &Target,
        deadline: std::time::Instant,
        work: &Path,
    ) -> Result<Prepared, JobError> {
        let store = &self.ctx.store;
        // 1. A cheap decision before any download.
        let existing = current(store, target).await?;
        match decide(
            existing.as_ref().and_then(|(m, _)| source_of(m)).as_ref(),
            &source,
        ) {
            Decision::Import => {}
            Decision::Unchanged => {
                return Ok(Prepared::Settled(Imported::Unchanged(version_of(
                    existing.as_ref(),
                ))));
            }
            Decision::Stale => {
                return Ok(Prepared::Settled(Imported::Stale(stale_reason(
                    existing.as_ref(),
                ))));
            }
        }
        // 2. The object as it is now; refused by size before it is read.
        let loc = Location::parse(&source.url)
            .map_err(|e| JobError::usage(format!("{}: {e}", source.url)))?;
        let meta = store
            .head(&loc)
            .await
            .map_err(|e| source_error(&source.url, e))?;
        if loc.is_s3()
            && let (Some(want), Some(have)) = (&source.etag, &meta.etag)
            && want.trim_matches('"') != have.trim_matches('"')
        {
            // Overwritten since the event: that write has its own event, which imports it.
            return Ok(Prepared::Settled(Imported::Stale(format!(
                "{} changed since the event (ETag {have}, event {want})",
                source.url
            ))));
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
                let file = self.download(&meta, work).await?;
                (file.path().to_path_buf(), Some(file))
            }
        };
        // Documents its NetworkLinks name outside it, fetched first (a KML or KMZ only).
        let followed = crate::links::follow(
            &path,
            work,
            &self.convert.links,
            &self.convert.upload.archive,
            self.convert.upload.read.max_xml_text,
            &self.ctx.shutdown,
        )
        .await?;
        // Its placemarks' icons, for a sprite sheet beside the tiles.
        let icons = crate::icons::collect(
            &followed,
            &self.convert.links,
            self.convert.upload.read.max_xml_text,
            work,
            &self.ctx.shutdown,
        )
        .await?;
        let mut converted = {
            let mut opts = self.convert.clone();
            opts.scratch = work.to_path_buf();
            opts.upload.linked = followed.linked;
            // Readers busy inside one record (a shapefile polygon of many rings) poll this.
            let read_cancel = etl_geo::Cancel::new().with_deadline(deadline);
            opts.upload.read.cancel = read_cancel.clone();
            let on_stop = {
                let shutdown = self.ctx.shutdown.clone();
                tokio::spawn(async move {
                    shutdown.cancelled().await;
                    read_cancel.cancel();
                })
            };
            let _stop_watch = AbortOnDrop(on_stop);
            let name = target.name.clone();
            let shutdown = self.ctx.shutdown.clone();
            let shown = source.url.clone();
            let path: PathBuf = path.clone();
            tokio::task::spawn_blocking(move || {
                let cancel = || shutdown.is_cancelled() || std::time::Instant::now() >= deadline;
                convert(&path, &name, &opts, &cancel, deadline).map_err(|mut e| {
                    // Errors name the local download; the user knows the upload by its URL.
                    e.message = e.message.replace(&path.display().to_string(), &shown);
                    e
                })
            })
            .await
            .map_err(|e| task_failed("conversion", e))?
            .map_err(|e| {
                // A read cancelled by SIGTERM ends as an interrupted read: it is a stop.
                if self.ctx.shutdown.is_cancelled() && e.kind.retryable() {
                    return stopped();
                }
                // The converter says "stopped" for the deadline too.
                if e.kind == etl_core::ExitKind::Stopped
                    && !self.ctx.shutdown.is_cancelled()
                    && std::time::Instant::now() >= deadline
                {
                    timed_out(&source.url)
                } else {
                    e
                }
            })?
        };
        crate::convert::note_skipped(&mut converted.manifest, &followed.skipped);
        crate::convert::note_skipped(&mut converted.manifest, &icons.skipped);
        if !icons.icons.is_empty() && converted.pmtiles.is_some() {
            let work = work.to_path_buf();
            let list = icons.icons;
            converted.sprite = Some(
                tokio::task::spawn_blocking(move || {
                    crate::convert::sprite::artifacts(&list, &work)
                })
                .await
                .map_err(|e| task_failed("sprite sheet", e))??,
            );
        }
        if self.ctx.shutdown.is_cancelled() {
            return Err(stopped());
        }
        if std::time::Instant::now() >= deadline {
            return Err(timed_out(&source.url));
        }
        Ok(Prepared::Converted(Box::new((source, converted))))
    }

    /// Streams an S3 object into the scratch directory, pinned to the version HEAD saw, and
    /// never past the size limit.
    async fn download(
        &self,
        meta: &ObjectMeta,
        dir: &Path,
    ) -> Result<tempfile::NamedTempFile, JobError> {
        let file = tempfile::Builder::new()
            .prefix(".etl-events-download-")
            .tempfile_in(dir)
            .map_err(|e| JobError::temporary(format!("{}: {e}", dir.display())))?;
        let mut reader = self
            .ctx
            .store
            .reader(meta)
            .await
            .map_err(|e| source_error(&meta.location.to_string(), e))?;
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

/// The output version a manifest names.
fn version_of(existing: Option<&(Value, String)>) -> Option<String> {
    existing
        .and_then(|(m, _)| m.get("version"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn timed_out(url: &str) -> JobError {
    JobError::temporary(format!(
        "{url}: the import took longer than --import-timeout; nothing was swapped"
    ))
}

/// A blocking task that did not finish: a panic is a bug (exit 70), anything else (the
/// runtime shutting down) is worth a retry.
pub(crate) fn task_failed(what: &str, e: tokio::task::JoinError) -> JobError {
    if e.is_panic() {
        JobError::panicked(what, e.into_panic().as_ref())
    } else {
        JobError::temporary(format!("{what} task failed: {e}"))
    }
}

/// Reading the upload failed. What cannot be read for good (not found, access denied — an
/// upload encrypted with a key the worker may not use) is that object's problem, not the
/// worker's: bad input for it alone, so the other objects of an event go on.
fn source_error(url: &str, e: StoreError) -> JobError {
    match e {
        StoreError::NotFound(_) => JobError::bad_input(format!("{url}: not found")),
        StoreError::Io { source: io, .. } if io.kind() == std::io::ErrorKind::NotFound => {
            JobError::bad_input(format!("{url}: not found"))
        }
        e => {
            let job = JobError::from(e);
            if job.kind == etl_core::ExitKind::Config {
                JobError::bad_input(format!("cannot read the upload: {}", job.message))
            } else {
                job
            }
        }
    }
}

/// Stops a helper task when the import is done with it.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn stale_reason(existing: Option<&(Value, String)>) -> String {
    let seq = existing
        .and_then(|(m, _)| source_of(m))
        .and_then(|s| s.sequencer)
        .unwrap_or_default();
    format!("the outputs come from a newer event (sequencer {seq})")
}

/// Per-output leases live beside the outputs, under `.etl-events/` (shared with retention).
async fn lock_store(ctx: &JobContext, target: &Target) -> Result<Checkpoints, JobError> {
    let (url, _) = etl_core::imports::manifest_lease(&target.manifest());
    Checkpoints::open(&url, &ctx.store, None)
        .await
        .map_err(JobError::from)
}

fn lock_scope(target: &Target) -> String {
    etl_core::imports::manifest_lease(&target.manifest()).1
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
