//! The etl-events job: one binary, three triggers (a local file, S3 events, the imports queue).

use etl_core::metrics::Stats;
use etl_core::store::Location;
use etl_core::{ExitKind, Job, JobContext, JobError, Outcome};
use serde_json::{Value, json};

use crate::config::{EventsConfig, Mode};
use crate::event::{self, ObjectRef};
use crate::import::{Imported, Importer, check_source, local_source, report, target_for};
use crate::publish::Source;

pub struct EventsJob;

impl Job for EventsJob {
    type Config = EventsConfig;
    const NAME: &'static str = "etl-events";
    const ABOUT: &'static str =
        "Import uploads into GeoJSON + PMTiles: from a file, S3 events or the imports queue";

    async fn dry_run(config: EventsConfig, ctx: JobContext) -> Result<Value, JobError> {
        let mode = config.mode()?;
        if let Mode::Cloudtak { api } = &mode {
            return crate::cloudtak::dry_run(&config, api, &ctx).await;
        }
        let convert = config.convert_options()?;
        if let Some(output) = &config.output {
            let loc =
                Location::parse(output).map_err(|e| JobError::usage(format!("--output: {e}")))?;
            ctx.store.check(&loc).await.map_err(JobError::from)?;
        }
        let plan = match &mode {
            Mode::Serve => crate::serve::dry_run(&config).await?,
            Mode::Cloudtak { .. } => json!({"mode": "cloudtak"}),
            Mode::Local { input } => json!({"mode": "local", "input": input}),
            Mode::Event { json } => {
                let objects =
                    event::parse(json).map_err(|e| JobError::bad_input(format!("event: {e}")))?;
                json!({"mode": "event", "objects": objects})
            }
            Mode::Object(o) => json!({"mode": "object", "objects": [o]}),
            Mode::Gc => json!({"mode": "gc", "grace": config.gc_grace}),
        };
        Ok(json!({
            "plan": plan,
            "output": config.output,
            "outputs": config.outputs,
            "max_zoom": convert.max_zoom,
            "scratch": convert.scratch,
        }))
    }

    async fn run(config: EventsConfig, ctx: JobContext) -> Result<Outcome, JobError> {
        let mode = config.mode()?;
        if let Mode::Cloudtak { api } = &mode {
            return crate::cloudtak::run(&config, api, ctx).await;
        }
        let convert = config.convert_options()?;
        std::fs::create_dir_all(&convert.scratch).map_err(|e| {
            JobError::config(format!(
                "{}: cannot create the scratch directory: {e}",
                convert.scratch.display()
            ))
        })?;
        let (timeout, gc_grace) = config.durations()?;
        let importer = Importer {
            owner: format!("{}/0", ctx.settings.owner),
            ctx: ctx.clone(),
            convert,
            max_bytes: config.max_bytes,
            gc_grace,
            timeout,
        };
        match mode {
            Mode::Serve => crate::serve::run(&config, importer).await,
            Mode::Cloudtak { .. } => Err(JobError::internal("the CloudTAK mode runs above")),
            Mode::Gc => {
                let output = config.output.as_deref().ok_or_else(|| {
                    JobError::usage("--gc needs --output DIR|s3://bucket/prefix/")
                })?;
                let prefix = Location::parse(output)
                    .map_err(|e| JobError::usage(format!("--output: {e}")))?;
                let keep = if config.gc_now {
                    crate::gc::Keep::Nothing
                } else {
                    crate::gc::Keep::Grace(gc_grace)
                };
                let report = crate::gc::collect_prefix(&ctx.store, &prefix, keep).await?;
                tracing::info!(
                    targets = report.targets,
                    deleted = report.deleted.len(),
                    kept = report.kept,
                    "gc finished"
                );
                for d in &report.deleted {
                    ctx.stats.add_output(d.clone());
                }
                Ok(if report.deleted.is_empty() {
                    Outcome::Skipped
                } else {
                    Outcome::Succeeded
                })
            }
            Mode::Local { input } => {
                let output = config.output.as_deref().ok_or_else(|| {
                    JobError::usage("--input needs --output DIR|s3://bucket/prefix/")
                })?;
                let loc = Location::parse(&input)
                    .map_err(|e| JobError::usage(format!("--input: {e}")))?;
                let target = target_for(output, &loc, config.name.as_deref())?;
                let source = match &loc {
                    Location::File(p) => local_source(p),
                    Location::S3 { .. } => Source {
                        url: input.clone(),
                        ..Source::default()
                    },
                };
                let outcome = importer.import(source.clone(), &target).await?;
                Ok(finish(&ctx, &[(source, target, outcome)]))
            }
            Mode::Event { json } => {
                let objects =
                    event::parse(&json).map_err(|e| JobError::bad_input(format!("event: {e}")))?;
                if objects.is_empty() {
                    tracing::info!("the event names no created object (a test event or a removal)");
                    return Ok(Outcome::Skipped);
                }
                import_objects(&config, &importer, objects).await
            }
            Mode::Object(o) => import_objects(&config, &importer, vec![o]).await,
        }
    }
}

/// Imports each object of an event in turn. One object's bad data does not stop the others;
/// a temporary failure makes the whole run retryable (objects already imported are no-ops on
/// the retry).
async fn import_objects(
    config: &EventsConfig,
    importer: &Importer,
    objects: Vec<ObjectRef>,
) -> Result<Outcome, JobError> {
    let output = config.output.as_deref().ok_or_else(|| {
        JobError::usage("S3 events need --output s3://bucket/prefix/ (or ETL_OUTPUT)")
    })?;
    if config.name.is_some() && objects.len() > 1 {
        return Err(JobError::usage(
            "--name names one output, and the event names several objects",
        ));
    }
    let allowed = config.allowed_sources()?;
    let mut done = Vec::new();
    let mut worst: Option<JobError> = None;
    for o in objects {
        if importer.ctx.shutdown.is_cancelled() {
            return Err(crate::convert::stopped());
        }
        let loc = Location::S3 {
            bucket: o.bucket.clone(),
            key: o.key.clone(),
        };
        let source = Source {
            url: o.url(),
            etag: o.etag.clone(),
            version_id: o.version_id.clone(),
            sequencer: o.sequencer.clone(),
            bytes: o.size,
            // Set by the importer from its profile.
            tiles: None,
        };
        // One object's bad key or refused bucket does not stop the others.
        let result = match check_source(&allowed, &loc)
            .and_then(|()| target_for(output, &loc, config.name.as_deref()))
        {
            Ok(target) => importer
                .import(source.clone(), &target)
                .await
                .map(|outcome| (target, outcome)),
            Err(e) => Err(e),
        };
        match result {
            Ok((target, outcome)) => done.push((source, target, outcome)),
            Err(e) if e.kind == ExitKind::Stopped => return Err(e),
            // No object can be imported without it: stop at once.
            Err(e) if e.kind == ExitKind::Config => return Err(e),
            Err(e) => {
                tracing::error!(source = %source.url, error = %e.message, "import failed");
                worst = Some(match worst {
                    Some(w) if w.kind.retryable() => w,
                    _ => e,
                });
            }
        }
    }
    let outcome = finish(&importer.ctx, &done);
    match worst {
        Some(e) => Err(e),
        None => Ok(outcome),
    }
}

/// Logs each import, counts it, and says whether anything was written.
fn finish(ctx: &JobContext, done: &[(Source, crate::publish::Target, Imported)]) -> Outcome {
    let mut any = false;
    for (source, target, outcome) in done {
        let line = report(source, target, outcome);
        tracing::info!(report = %line, "{} {}", outcome.status(), source.url);
        if let Imported::Done(manifest) = outcome {
            any = true;
            count(&ctx.stats, manifest);
            ctx.stats.add_output(target.manifest().to_string());
        }
    }
    if any {
        Outcome::Succeeded
    } else {
        Outcome::Skipped
    }
}

pub(crate) fn count(stats: &Stats, manifest: &Value) {
    let n = |k: &str| manifest.get(k).and_then(Value::as_u64).unwrap_or(0);
    Stats::add(&stats.read, n("features") + n("rejected"));
    Stats::add(&stats.written, n("features"));
    Stats::add(&stats.rejected, n("rejected"));
    for o in manifest
        .get("outputs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(url) = o.get("url").and_then(Value::as_str) {
            stats.add_output(url);
        }
        Stats::add(
            &stats.bytes_out,
            o.get("bytes").and_then(Value::as_u64).unwrap_or(0),
        );
    }
}
