//! Writing GeoJSON (sequence or FeatureCollection) or GeoParquet to a file or S3 object. The
//! object appears whole on commit or not at all; a stopped or failed run leaves nothing behind.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use etl_core::metrics::Stats;
use etl_core::store::{ObjectMeta, ObjectWriter};
use etl_core::{JobContext, JobError};
use etl_geo::{Feature, FeatureWriter, GeoParquetError, GeoParquetWriter, OutputFormat};
use tokio_util::sync::CancellationToken;

use crate::read;
use crate::rejects::{Reject, RejectsSink};
use crate::state::over_limit;

pub struct ObjectJob {
    pub inputs: Vec<ObjectMeta>,
    pub source: etl_sources::Source,
    pub shaping: etl_sources::read::Shaping,
    pub select: Vec<String>,
    pub max_rejects: Option<u64>,
    pub output_format: ObjectFormat,
}

/// What a file or S3 output is written as, from its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectFormat {
    GeoJson(OutputFormat),
    /// `.parquet` / `.geoparquet`: GeoParquet 1.1 (etl-geo's `formats/geoparquet/write.rs`).
    GeoParquet,
}

impl ObjectFormat {
    pub fn from_path(path: &str) -> Option<ObjectFormat> {
        let name = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
        if name.ends_with(".parquet") || name.ends_with(".geoparquet") {
            return Some(ObjectFormat::GeoParquet);
        }
        OutputFormat::from_path(path).map(ObjectFormat::GeoJson)
    }
}

/// The writer of an [`ObjectFormat`] over the object.
enum Out {
    GeoJson(FeatureWriter<Box<dyn ObjectWriter>>),
    GeoParquet(GeoParquetWriter<Box<dyn ObjectWriter>>),
}

impl Out {
    fn new(format: ObjectFormat, writer: Box<dyn ObjectWriter>) -> Out {
        match format {
            ObjectFormat::GeoJson(f) => Out::GeoJson(FeatureWriter::new(f, writer)),
            ObjectFormat::GeoParquet => Out::GeoParquet(GeoParquetWriter::new(writer)),
        }
    }

    /// Writes `f`; `Ok(Some(reason))` when this one feature cannot be written and is a reject.
    fn write(&mut self, f: &Feature) -> Result<Option<String>, JobError> {
        let failed =
            |e: &dyn std::fmt::Display| JobError::temporary(format!("writing output: {e}"));
        match self {
            Out::GeoJson(w) => w.write(f).map(|()| None).map_err(|e| failed(&e)),
            Out::GeoParquet(w) => match w.write(f) {
                Ok(()) => Ok(None),
                Err(GeoParquetError::Rejected(reason)) => Ok(Some(reason)),
                Err(e) => Err(failed(&e)),
            },
        }
    }

    fn finish(self) -> Result<Box<dyn ObjectWriter>, JobError> {
        let failed =
            |e: &dyn std::fmt::Display| JobError::temporary(format!("writing output: {e}"));
        match self {
            Out::GeoJson(w) => w.finish().map_err(|e| failed(&e)),
            Out::GeoParquet(w) => w.finish().map_err(|e| failed(&e)),
        }
    }
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
    let mut out = Out::new(job.output_format, writer);
    let mut written_total = 0u64;
    let mut filtered_total = 0u64;
    for meta in &job.inputs {
        let url = meta.location.to_string();
        let bytes = Arc::new(AtomicU64::new(0));
        ctx.progress.start(&url, meta.size);
        let mut reader = read::spawn(
            ctx.store.clone(),
            meta.clone(),
            job.source.clone(),
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
                let rejected = match rec.feature {
                    Ok(mut f) => {
                        if !job.select.is_empty() {
                            f.properties
                                .retain(|k, _| job.select.iter().any(|s| s == k));
                        }
                        let rejected = out.write(&f)?;
                        if rejected.is_none() {
                            written_total += 1;
                        }
                        rejected
                    }
                    Err(r) => Some(r.reason),
                };
                if let Some(reason) = rejected {
                    Stats::add(&ctx.stats.rejected, 1);
                    if over_limit(rejects.count() + 1, job.max_rejects) {
                        return Err(JobError::bad_input(format!(
                            "{url}:{}: more than {} features rejected (--max-rejects); last: {}",
                            rec.line,
                            job.max_rejects.unwrap_or(0),
                            reason
                        )));
                    }
                    rejects.push(&Reject {
                        input: url.clone(),
                        line: rec.line,
                        ordinal: rec.ordinal,
                        reason,
                    })?;
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
    let writer = out.finish()?;
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
