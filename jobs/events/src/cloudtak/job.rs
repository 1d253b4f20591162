//! One import in a slot, from its lock to its last PATCH: download, dispatch (a file or an
//! archive), retries of temporary failures inside the deadline, and how it ends —
//! Success, Fail with a one-line error, or given back on SIGTERM.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etl_core::store::{Location, ObjectWriter};
use etl_core::{ExitKind, JobError};
use hyper::Method;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use super::Worker;
use super::api::{Auth, ImportRow, ResultRow, one_line, segment};
use super::claim::Held;

/// The per-import work directories in the scratch directory.
const WORK_PREFIX: &str = ".etl-events-cloudtak-";

/// One attempt's view of its import.
pub(crate) struct Job<'a> {
    pub w: &'a Worker,
    pub row: &'a ImportRow,
    /// Results the import has (from earlier attempts too), and those this attempt added.
    results: &'a Mutex<Vec<ResultRow>>,
    pub cancel: CancellationToken,
    pub deadline: Instant,
    pub work: PathBuf,
}

/// How an attempt ended when it did not succeed.
enum Ended {
    Failed(JobError),
    TimedOut,
    Stopped,
    LeaseLost,
}

pub(crate) async fn run(w: Arc<Worker>, row: ImportRow, held: Held, _slot: OwnedSemaphorePermit) {
    let id = row.id.clone();
    tracing::info!(id = %id, name = %row.name, user = %row.username, attempt = held.attempt, "import locked");
    if held.attempt > u64::from(w.max_attempts) {
        let msg = format!(
            "{}: the worker stopped {} times during this import (killed or out of memory); not tried again",
            row.name,
            held.attempt - 1
        );
        return end(&w, &id, held, Some(msg)).await;
    }
    let cancel = w.ctx.shutdown.child_token();
    let lost = held.lease.lost();
    // Stopped when this function returns or unwinds, so a failed import stops looking alive.
    let touch = AbortOnDrop(tokio::spawn(touch(w.clone(), id.clone(), w.touch_every)));
    let deadline = Instant::now() + w.timeout;
    let ended = attempts(&w, &row, &cancel, &lost, deadline).await;
    // Whatever still runs for this import (a conversion off the async threads) stops.
    cancel.cancel();
    drop(touch);
    match ended {
        Ok(()) => end(&w, &id, held, None).await,
        Err(Ended::Failed(e)) => end(&w, &id, held, Some(e.message)).await,
        Err(Ended::TimedOut) => {
            let msg = format!(
                "{}: the import took longer than --import-timeout ({}); stopped",
                row.name,
                humantime::format_duration(w.timeout)
            );
            end(&w, &id, held, Some(msg)).await
        }
        Err(Ended::Stopped) => match w.claims.give_back(held).await {
            Ok(()) => tracing::info!(id = %id, "stopped by SIGTERM: the import was given back"),
            Err(e) => {
                tracing::error!(id = %id, error = %e.message, "stopped by SIGTERM, and giving the import back failed: it is taken over after --reclaim-after")
            }
        },
        Err(Ended::LeaseLost) => {
            tracing::warn!(id = %id, "the import's lease was lost (another worker may have it); its row is left alone");
            w.claims.drop_lease(held).await;
        }
    }
}

/// Tries the import until it succeeds, fails for good, or runs out of tries or time.
async fn attempts(
    w: &Worker,
    row: &ImportRow,
    cancel: &CancellationToken,
    lost: &CancellationToken,
    deadline: Instant,
) -> Result<(), Ended> {
    let mut pause = Duration::from_secs(1);
    let mut tries = 0;
    // What every try recorded, so a later try does not record it again.
    let results = Mutex::new(row.results.clone());
    if let Err(e) = check_user(&row.username) {
        return Err(Ended::Failed(e));
    }
    loop {
        tries += 1;
        let once = async {
            let scratch = &w.convert.scratch;
            etl_core::scratch::sweep(scratch, WORK_PREFIX);
            let work = etl_core::scratch::WorkDir::new_in(scratch, WORK_PREFIX).map_err(|e| {
                JobError::temporary(format!(
                    "{}: cannot create a work directory: {e}",
                    scratch.display()
                ))
            })?;
            let job = Job {
                w,
                row,
                results: &results,
                cancel: cancel.clone(),
                deadline,
                work: work.path().to_path_buf(),
            };
            job.process().await
        };
        let r = tokio::select! {
            r = tokio::time::timeout_at(deadline.into(), once) => match r {
                Ok(r) => r,
                Err(_) => return Err(Ended::TimedOut),
            },
            _ = lost.cancelled() => return Err(Ended::LeaseLost),
            // Whatever the attempt is waiting on (an API call, S3), SIGTERM ends it; a
            // conversion in flight sees the same token and stops by itself.
            _ = cancel.cancelled() => return Err(Ended::Stopped),
        };
        let e = match r {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        if w.ctx.shutdown.is_cancelled() {
            return Err(Ended::Stopped);
        }
        if e.kind == ExitKind::Stopped || Instant::now() >= deadline {
            // The converter says "stopped" for its deadline too.
            return Err(Ended::TimedOut);
        }
        if !e.kind.retryable() || tries >= w.max_attempts {
            return Err(Ended::Failed(e));
        }
        tracing::warn!(id = %row.id, error = %e.message, try_ = tries, "import failed; trying again");
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = cancel.cancelled() => return Err(Ended::Stopped),
        }
        pause = (pause * 4).min(Duration::from_secs(60));
    }
}

/// Stops a helper task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// CloudTAK's users are email addresses; one that could change the layout of the keys it
/// becomes part of (`profile/<user>/…`) is refused.
fn check_user(user: &str) -> Result<(), JobError> {
    if user.is_empty()
        || user == "."
        || user == ".."
        || user.len() > 256
        || user
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control())
    {
        return Err(JobError::bad_input(format!(
            "the import's username {:?} cannot name a folder of the asset bucket",
            one_line(user, 80)
        )));
    }
    Ok(())
}

/// Touches the row while the import runs, so nobody takes it for abandoned.
async fn touch(w: Arc<Worker>, id: String, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        match w.api.patch_import(&id, &json!({})).await {
            Ok(r) if r.ok() => {}
            Ok(r) => {
                tracing::warn!(id = %id, error = %r.error().message, "touching the import failed")
            }
            Err(e) => tracing::warn!(id = %id, error = %e.message, "touching the import failed"),
        }
    }
}

/// Ends the row: Success (`error` None) or Fail, then lets the import go. A PATCH that keeps
/// failing leaves the row Running and the attempt counted: it is taken over later.
async fn end(w: &Worker, id: &str, held: Held, error: Option<String>) {
    let body = match &error {
        None => json!({"status": "Success"}),
        Some(e) => json!({"status": "Fail", "error": one_line(e, 1000)}),
    };
    let mut pause = Duration::from_millis(500);
    for i in 0..4 {
        match w.api.patch_import(id, &body).await {
            Ok(r) if r.ok() => {
                match &error {
                    None => tracing::info!(id, "import succeeded"),
                    Some(e) => tracing::warn!(id, error = %e, "import failed"),
                }
                if let Err(e) = w.claims.finish(held).await {
                    tracing::warn!(id, error = %e.message, "clearing the import's lease state failed");
                }
                return;
            }
            Ok(r) if !r.error().kind.retryable() => {
                tracing::error!(id, error = %r.error().message, "the API refused the import's end");
                break;
            }
            Ok(r) => tracing::warn!(id, error = %r.error().message, "ending the import failed"),
            Err(e) => tracing::warn!(id, error = %e.message, "ending the import failed"),
        }
        if i < 3 {
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
    }
    tracing::error!(
        id,
        "the import's end could not be recorded; it is taken over after --reclaim-after"
    );
    w.claims.drop_lease(held).await;
}

impl Job<'_> {
    pub fn user(&self) -> &str {
        &self.row.username
    }

    /// Download, then a zip goes the archive way and anything else the file way.
    async fn process(&self) -> Result<(), JobError> {
        let name = &self.row.name;
        etl_core::fault::pause(&format!("cloudtak.process:{name}")).await;
        // CloudTAK keys the upload by the extension of the import's name, case kept.
        let ext = Path::new(name)
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| format!(".{e}"))
            .unwrap_or_default();
        let key = format!("import/{}{ext}", self.row.id);
        let local = self
            .work
            .join(format!("upload{}", ext.to_ascii_lowercase()));
        self.download(&key, &local).await?;
        let entry = super::file::Local {
            path: local,
            name: name.clone(),
            entry: String::new(),
        };
        if super::package::is_zip(&entry.path)? {
            super::package::process(self, entry).await
        } else {
            super::file::process(self, entry).await
        }
    }

    /// Streams `import/<id><ext>` into `to`, refusing it past --max-bytes.
    async fn download(&self, key: &str, to: &Path) -> Result<(), JobError> {
        let loc = Location::S3 {
            bucket: self.w.bucket.clone(),
            key: key.to_owned(),
        };
        let meta = self.w.store.head(&loc).await.map_err(|e| match e {
            etl_core::store::StoreError::NotFound(_) => {
                JobError::bad_input(format!("{}: the upload {loc} is not there", self.row.name))
            }
            e => JobError::from(e),
        })?;
        if meta.size > self.w.max_bytes {
            return Err(JobError::bad_input(format!(
                "{}: the upload is {} bytes, over the limit of {} (--max-bytes)",
                self.row.name, meta.size, self.w.max_bytes
            )));
        }
        let mut reader = self.w.store.reader(&meta).await.map_err(JobError::from)?;
        let file = tokio::fs::File::create(to)
            .await
            .map_err(|e| JobError::temporary(format!("{}: {e}", to.display())))?;
        let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = tokio::select! {
                n = reader.read(&mut buf) => n.map_err(|e| JobError::temporary(format!("{loc}: download: {e}")))?,
                _ = self.cancel.cancelled() => return Err(crate::convert::stopped()),
            };
            if n == 0 {
                break;
            }
            total += n as u64;
            if total > self.w.max_bytes {
                return Err(JobError::bad_input(format!(
                    "{}: the upload is over the limit of {} bytes (--max-bytes)",
                    self.row.name, self.w.max_bytes
                )));
            }
            out.write_all(buf.get(..n).unwrap_or_default())
                .await
                .map_err(|e| JobError::temporary(format!("{}: {e}", to.display())))?;
        }
        out.flush()
            .await
            .map_err(|e| JobError::temporary(format!("{}: {e}", to.display())))?;
        etl_core::metrics::Stats::add(&self.w.ctx.stats.bytes_in, total);
        Ok(())
    }

    /// Uploads the local file `from` to `key` in the asset bucket.
    pub async fn upload(&self, from: &Path, key: &str) -> Result<u64, JobError> {
        let loc = Location::S3 {
            bucket: self.w.bucket.clone(),
            key: key.to_owned(),
        };
        let mut writer: Box<dyn ObjectWriter> =
            self.w.store.writer(&loc).await.map_err(JobError::from)?;
        let from = from.to_path_buf();
        let url = loc.to_string();
        let meta = tokio::task::spawn_blocking(move || {
            let mut f = std::fs::File::open(&from)
                .map_err(|e| JobError::temporary(format!("{}: {e}", from.display())))?;
            std::io::copy(&mut f, &mut writer)
                .map_err(|e| JobError::temporary(format!("{url}: upload: {e}")))?;
            writer.commit().map_err(JobError::from)
        })
        .await
        .map_err(|e| crate::import::task_failed("upload", e))??;
        etl_core::metrics::Stats::add(&self.w.ctx.stats.bytes_out, meta.size);
        self.w.ctx.stats.add_output(loc.to_string());
        Ok(meta.size)
    }

    /// Records a result of the import (`POST /api/import/<id>/result`, as its owner), unless
    /// an earlier attempt did.
    pub async fn result(&self, name: &str, kind: &str, type_id: &str) -> Result<(), JobError> {
        let have = |r: &ResultRow| r.kind == kind && r.type_id == type_id;
        if self.results.lock().map_err(poisoned)?.iter().any(have) {
            return Ok(());
        }
        self.w
            .api
            .expect(
                Method::POST,
                &format!("/api/import/{}/result", segment(&self.row.id)),
                &[],
                Auth::User(self.user()),
                Some(&json!({"name": name, "type": kind, "type_id": type_id})),
            )
            .await?;
        self.results.lock().map_err(poisoned)?.push(ResultRow {
            name: name.to_owned(),
            kind: kind.to_owned(),
            type_id: type_id.to_owned(),
        });
        Ok(())
    }

    pub fn has_result(&self, kind: &str, type_id: &str) -> Result<bool, JobError> {
        Ok(self
            .results
            .lock()
            .map_err(poisoned)?
            .iter()
            .any(|r| r.kind == kind && r.type_id == type_id))
    }

    pub fn has_result_named(&self, kind: &str, name: &str) -> Result<Option<String>, JobError> {
        Ok(self
            .results
            .lock()
            .map_err(poisoned)?
            .iter()
            .find(|r| r.kind == kind && r.name == name)
            .map(|r| r.type_id.clone()))
    }

    /// A UUID for something this import makes (an asset, an iconset), the same on every
    /// attempt: sha256 of the import id and `what`, laid out as a version-8 UUID.
    pub fn derived_uuid(&self, what: &str) -> String {
        derived_uuid(&self.row.id, what)
    }

    /// Stops the work when SIGTERM came or the deadline passed.
    pub fn check(&self) -> Result<(), JobError> {
        if self.cancel.is_cancelled() {
            return Err(crate::convert::stopped());
        }
        Ok(())
    }
}

fn poisoned<T>(_: std::sync::PoisonError<T>) -> JobError {
    JobError::internal("the import's results list was poisoned by a panic")
}

pub fn derived_uuid(id: &str, what: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"tak-etl cloudtak\0");
    h.update(id.as_bytes());
    h.update(b"\0");
    h.update(what.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(d.get(..16).unwrap_or(&[0u8; 16]));
    b[6] = (b[6] & 0x0f) | 0x80; // version 8
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 9562 variant
    let hex = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_uuids_are_stable_and_distinct() {
        let a = derived_uuid("7f1c", "asset");
        assert_eq!(a, derived_uuid("7f1c", "asset"));
        assert_ne!(a, derived_uuid("7f1c", "asset:b.kml"));
        assert_ne!(a, derived_uuid("7f1d", "asset"));
        assert_eq!(a.len(), 36);
        assert_eq!(a.as_bytes()[14], b'8');
        assert!(matches!(a.as_bytes()[19], b'8' | b'9' | b'a' | b'b'));
    }
}
