//! Writing GeoJSON (sequence or FeatureCollection) to a file or S3 object. The object appears
//! whole on commit or not at all; a stopped or failed run leaves nothing behind.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use etl_core::metrics::Stats;
use etl_core::store::{ObjectMeta, ObjectWriter};
use etl_core::{JobContext, JobError};
use etl_geo::{FeatureWriter, Format, OutputFormat, ReadOptions};
use tokio_util::sync::CancellationToken;

use crate::read;
use crate::rejects::{Reject, RejectsSink};
use crate::state::over_limit;

pub struct ObjectJob {
    pub inputs: Vec<ObjectMeta>,
    pub format: Option<Format>,
    pub read_options: ReadOptions,
    pub shaping: etl_sources::read::Shaping,
    pub select: Vec<String>,
    pub max_rejects: Option<u64>,
    pub output_format: OutputFormat,
}

pub struct ObjectResult {
    pub meta: ObjectMeta,
    /// The rejects object, when `--rejects` asked for one.
    pub rejects: Option<String>,
}

/// Streams every input through the writer on a blocking thread and commits the output.
pub async fn write(
    job: ObjectJob,
    writer: Box<dyn ObjectWriter>,
    rejects: RejectsSink,
    ctx: &JobContext,
    lease_lost: CancellationToken,
) -> Result<ObjectResult, JobError> {
    let ctx = ctx.clone();
    tokio::task::spawn_blocking(move || write_blocking(job, writer, rejects, &ctx, &lease_lost))
        .await
        .map_err(|e| JobError::temporary(format!("writer task failed: {e}")))?
}

fn write_blocking(
    job: ObjectJob,
    writer: Box<dyn ObjectWriter>,
    mut rejects: RejectsSink,
    ctx: &JobContext,
    lease_lost: &CancellationToken,
) -> Result<ObjectResult, JobError> {
    let mut out = FeatureWriter::new(job.output_format, writer);
    let mut written_total = 0u64;
    let mut filtered_total = 0u64;
    for meta in &job.inputs {
        let url = meta.location.to_string();
        let bytes = Arc::new(AtomicU64::new(0));
        ctx.progress.start(&url, meta.size);
        let mut reader = read::spawn(
            ctx.store.clone(),
            meta.clone(),
            job.format,
            job.read_options.clone(),
            job.shaping.clone(),
            0,
            bytes.clone(),
        );
        let mut last_bytes = 0;
        while let Some(msg) = reader.blocking_recv() {
            if ctx.shutdown.is_cancelled() {
                // A file output has no partial checkpoint: dropping the writer discards it,
                // and the rerun writes the whole object again.
                return Err(JobError::stopped());
            }
            if lease_lost.is_cancelled() {
                return Err(JobError::temporary(
                    "lease lost; another worker may be running this run",
                ));
            }
            let batch = msg?;
            Stats::add(&ctx.stats.bytes_in, batch.bytes - last_bytes);
            last_bytes = batch.bytes;
            ctx.progress.set_bytes(batch.bytes);
            Stats::add(&ctx.stats.read, batch.records.len() as u64 + batch.filtered);
            Stats::add(&ctx.stats.filtered, batch.filtered);
            Stats::add(&ctx.stats.repaired, batch.repaired);
            filtered_total += batch.filtered;
            for rec in batch.records {
                match rec.feature {
                    Ok(mut f) => {
                        if !job.select.is_empty() {
                            f.properties
                                .retain(|k, _| job.select.iter().any(|s| s == k));
                        }
                        out.write(&f)
                            .map_err(|e| JobError::temporary(format!("writing output: {e}")))?;
                        written_total += 1;
                    }
                    Err(r) => {
                        Stats::add(&ctx.stats.rejected, 1);
                        if over_limit(rejects.count() + 1, job.max_rejects) {
                            return Err(JobError::bad_input(format!(
                                "{url}:{}: more than {} features rejected (--max-rejects); last: {}",
                                rec.line,
                                job.max_rejects.unwrap_or(0),
                                r.reason
                            )));
                        }
                        rejects.push(&Reject {
                            input: url.clone(),
                            line: rec.line,
                            ordinal: rec.ordinal,
                            reason: r.reason,
                        })?;
                    }
                }
            }
        }
    }
    if written_total == 0 && filtered_total > 0 {
        return Err(JobError::bad_input(format!(
            "none of the {filtered_total} features read matched --where; nothing was written"
        )));
    }
    if written_total == 0 {
        return Err(JobError::bad_input(format!(
            "{}: no features found",
            job.inputs
                .iter()
                .map(|m| m.location.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let writer = out
        .finish()
        .map_err(|e| JobError::temporary(format!("writing output: {e}")))?;
    // The last moment to back out: once committed, the object is visible.
    if lease_lost.is_cancelled() {
        return Err(JobError::temporary("lease lost; output not committed"));
    }
    if ctx.shutdown.is_cancelled() {
        return Err(JobError::stopped());
    }
    let meta = writer.commit().map_err(JobError::from)?;
    let rejects = rejects.commit()?;
    Stats::add(&ctx.stats.written, written_total);
    Stats::add(&ctx.stats.bytes_out, meta.size);
    Ok(ObjectResult { meta, rejects })
}
