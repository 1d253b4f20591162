//! `etl-events --cloudtak`: CloudTAK's import worker (its `events` ECS service), against the
//! contract in `../shared/cloudtak-contract.md` §1. It reads CloudTAK's own environment
//! (`API_URL`, `SigningSecret`, `ASSET_BUCKET`, `AWS_S3_*`), polls
//! `GET /api/import?limit=<free slots>&status=Pending` every --poll-interval, locks each row
//! with `PATCH {"status":"Running"}`, and runs it in a slot: download `import/<id><ext>`,
//! convert, publish under `profile/<user>/` with the API calls CloudTAK's worker makes, and end
//! the row Success or Fail with a one-line error.
//!
//! Beyond CloudTAK's worker: --concurrency slots, a deadline per import (--import-timeout),
//! retries of temporary failures, a lease per import so a dead worker's Running rows are taken
//! over (see [`claim`]), SIGTERM giving imports back, nothing created for an upload that cannot
//! be converted, and ids derived from the import so a second attempt repeats the first's
//! objects instead of duplicating them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use etl_core::store::{S3Config, StaticKeys, Store};
use etl_core::{ExitKind, JobContext, JobError, Outcome};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::config::EventsConfig;
use crate::convert::{ConvertOptions, TilesProfile};

pub mod api;
mod claim;
mod file;
mod iconset;
mod job;
mod package;
mod xml;

use api::Api;
use claim::Claims;

/// Where the per-import leases live in the asset bucket (a prefix CloudTAK does not use).
pub const LEASE_PREFIX: &str = ".etl-events/cloudtak/";

/// What every slot shares.
pub(crate) struct Worker {
    pub api: Api,
    pub store: Store,
    pub bucket: String,
    pub claims: Claims,
    pub convert: ConvertOptions,
    pub max_bytes: u64,
    pub timeout: Duration,
    pub max_attempts: u32,
    /// How often a live import touches its row (`PATCH {}`), which keeps it from looking
    /// abandoned.
    pub touch_every: Duration,
    pub ctx: JobContext,
}

/// CloudTAK's settings, checked.
struct Settings {
    api: Api,
    bucket: String,
    store: Store,
    slots: usize,
    reclaim_after: Duration,
}

fn settings(config: &EventsConfig, api_url: &str, ctx: &JobContext) -> Result<Settings, JobError> {
    fn set(v: &Option<String>) -> Option<&str> {
        v.as_deref().map(str::trim).filter(|v| !v.is_empty())
    }
    let secret = set(&config.signing_secret).ok_or_else(|| {
        JobError::config("--cloudtak needs SigningSecret (--signing-secret): CloudTAK's API refuses unsigned calls")
    })?;
    let bucket = set(&config.asset_bucket).ok_or_else(|| {
        JobError::config("--cloudtak needs ASSET_BUCKET (--asset-bucket): where CloudTAK keeps uploads and assets")
    })?;
    let api = Api::new(api_url, secret)?;
    let mut s3 = S3Config {
        ..ctx.store.s3_config().clone()
    };
    if let Some(ep) = set(&config.cloudtak_s3_endpoint) {
        s3.endpoint = Some(ep.to_owned());
    }
    match (
        set(&config.cloudtak_s3_access_key_id),
        set(&config.cloudtak_s3_secret_access_key),
    ) {
        (Some(id), Some(secret)) => {
            s3.static_keys = Some(StaticKeys {
                access_key_id: id.to_owned(),
                secret_access_key: secret.to_owned(),
            });
        }
        (None, None) => {}
        _ => {
            return Err(JobError::config(
                "AWS_S3_AccessKeyId and AWS_S3_SecretAccessKey go together",
            ));
        }
    }
    let slots = config.concurrency.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    if slots == 0 || slots > 100 {
        return Err(JobError::usage(
            "--concurrency must be 1..=100 (CloudTAK lists at most 100 imports a poll)",
        ));
    }
    let reclaim_after = humantime::parse_duration(&config.reclaim_after)
        .map_err(|e| JobError::usage(format!("--reclaim-after {:?}: {e}", config.reclaim_after)))?;
    if reclaim_after < Duration::from_secs(1) {
        return Err(JobError::usage("--reclaim-after must be at least 1s"));
    }
    Ok(Settings {
        api,
        bucket: bucket.to_owned(),
        store: Store::new(s3),
        slots,
        reclaim_after,
    })
}

/// The conversion CloudTAK's map expects: both outputs, its tiling profile.
fn convert_options(config: &EventsConfig) -> Result<ConvertOptions, JobError> {
    let mut c = config.clone();
    c.outputs = vec!["geojsonl".into(), "pmtiles".into()];
    c.profile_tiles = TilesProfile::Cloudtak;
    c.maximum_zoom = "14".into();
    c.minimum_zoom = 0;
    c.convert_options()
}

pub async fn dry_run(
    config: &EventsConfig,
    api_url: &str,
    ctx: &JobContext,
) -> Result<Value, JobError> {
    let s = settings(config, api_url, ctx)?;
    convert_options(config)?;
    // A read-only call proves the URL and the secret.
    let pending = s.api.list("Pending", 100).await?;
    Ok(json!({
        "mode": "cloudtak",
        "api": s.api.base(),
        "bucket": s.bucket,
        "concurrency": s.slots,
        "reclaim_after": config.reclaim_after,
        "leases": format!("s3://{}/{LEASE_PREFIX}", s.bucket),
        "pending": pending.iter().map(|r| json!({"id": r.id, "name": r.name})).collect::<Vec<_>>(),
    }))
}

pub async fn run(
    config: &EventsConfig,
    api_url: &str,
    ctx: JobContext,
) -> Result<Outcome, JobError> {
    let s = settings(config, api_url, &ctx)?;
    let convert = convert_options(config)?;
    let (timeout, _) = config.durations()?;
    let poll = config.poll_interval()?;
    let claims = Claims::open(
        &s.store,
        &format!("s3://{}/{LEASE_PREFIX}", s.bucket),
        ctx.settings.owner.clone(),
        ctx.settings.lease_ttl,
        s.reclaim_after,
    )
    .await?;
    let shutdown = ctx.shutdown.clone();
    let worker = Arc::new(Worker {
        api: s.api,
        store: s.store,
        bucket: s.bucket,
        claims,
        convert,
        max_bytes: config.max_bytes,
        timeout,
        max_attempts: config.max_attempts.max(1),
        touch_every: (s.reclaim_after / 3).min(Duration::from_secs(60)),
        ctx,
    });
    tracing::info!(
        api = worker.api.base(),
        bucket = %worker.bucket,
        slots = s.slots,
        leases = %worker.claims.describe(),
        "CloudTAK import worker started"
    );
    let slots = Arc::new(Semaphore::new(s.slots));
    // Running rows are looked at for take-over this often (and at start).
    let reclaim_every = (s.reclaim_after / 2).clamp(poll, Duration::from_secs(10).max(poll));
    let mut last_reclaim: Option<Instant> = None;
    let mut tasks = JoinSet::new();
    let mut wait = poll;
    let mut fatal = None;
    loop {
        while let Some(done) = tasks.try_join_next() {
            reap(done);
        }
        if shutdown.is_cancelled() {
            break;
        }
        let reclaim = last_reclaim.is_none_or(|t| t.elapsed() >= reclaim_every);
        match fill(&worker, &slots, &mut tasks, reclaim).await {
            Ok(()) => {
                wait = poll;
                if reclaim {
                    last_reclaim = Some(Instant::now());
                }
            }
            Err(e) if matches!(e.kind, ExitKind::Config | ExitKind::Usage) => {
                // A refused secret or a missing bucket will not mend: stop, so ECS says so.
                fatal = Some(e);
                shutdown.cancel();
                break;
            }
            Err(e) => {
                wait = (wait * 2).min(Duration::from_secs(30));
                tracing::warn!(error = %e.message, retry_in = ?wait, "polling CloudTAK failed");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => break,
        }
    }
    // Imports in flight see the shutdown and give their rows back.
    while let Some(done) = tasks.join_next().await {
        reap(done);
    }
    match fatal {
        Some(e) => Err(e),
        None => Err(JobError::new(
            ExitKind::Stopped,
            "stopped by SIGTERM; imports in flight were given back for another worker",
        )),
    }
}

fn reap(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        // The import's lease lapses; its row is taken over after --reclaim-after.
        tracing::error!(error = %e, "an import task failed");
    }
}

/// Takes Pending rows for the free slots, then (when due) Running rows nobody works on.
async fn fill(
    worker: &Arc<Worker>,
    slots: &Arc<Semaphore>,
    tasks: &mut JoinSet<()>,
    reclaim: bool,
) -> Result<(), JobError> {
    let free = slots.available_permits();
    if free == 0 {
        return Ok(());
    }
    for row in worker.api.list("Pending", free).await? {
        if worker.ctx.shutdown.is_cancelled() {
            return Ok(());
        }
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            return Ok(());
        };
        // The lease first: a row locked without it would be Running with nobody on it.
        let Some(lease) = worker.claims.lease(&row.id).await? else {
            tracing::debug!(id = %row.id, "another worker holds this import's lease");
            continue;
        };
        let locked = match worker.api.lock(&row.id).await {
            Ok(Some(locked)) => locked,
            Ok(None) => {
                tracing::debug!(id = %row.id, "another worker locked this import first");
                lease.release().await;
                continue;
            }
            Err(e) => {
                lease.release().await;
                return Err(e);
            }
        };
        let held = worker.claims.begin(&row.id, lease, true).await?;
        let w = worker.clone();
        tasks.spawn(async move { job::run(w, locked, held, permit).await });
    }
    if !reclaim {
        return Ok(());
    }
    for row in worker.api.list("Running", 100).await? {
        if worker.ctx.shutdown.is_cancelled() || slots.available_permits() == 0 {
            return Ok(());
        }
        if !worker.claims.abandoned(&row).await? {
            continue;
        }
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            return Ok(());
        };
        if let Some(lease) = worker.claims.lease(&row.id).await? {
            // The row as it is now: its results say what the last attempt did.
            let row = match worker.api.import(&row.id).await {
                Ok(row) if row.status == "Running" => row,
                Ok(_) => {
                    lease.release().await;
                    continue;
                }
                Err(e) => {
                    lease.release().await;
                    return Err(e);
                }
            };
            let held = worker.claims.begin(&row.id, lease, false).await?;
            tracing::warn!(id = %row.id, attempt = held.attempt, "taking over an abandoned import");
            let w = worker.clone();
            tasks.spawn(async move { job::run(w, row, held, permit).await });
        }
    }
    Ok(())
}
