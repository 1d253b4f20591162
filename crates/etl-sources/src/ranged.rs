//! GeoParquet on S3 read in place: the footer first, then the column chunks the records need,
//! each with ranged `GetObject`s pinned to the object version listed
//! ([`Store::read_range`]), never a copy of the whole object on disk. etl-geo reads the bytes
//! the same way as a local file's (read ahead in bounded windows within each column chunk,
//! footer and page sizes checked before anything is allocated for them); this module is the
//! Parquet [`ChunkReader`] that fetches them, on the reading thread, through the runtime's
//! [`Handle`].
//!
//! A failure of the store (the object overwritten since it was listed: 412; deleted: 404; the
//! network) reaches the Parquet library as an error it only reports as text, so the first one
//! is also kept here and is what the input fails with, classified as the store classifies it
//! ([`JobError::from`]`(`[`StoreError`](etl_core::store::StoreError)`)`) rather than as
//! corrupt data.

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use etl_core::JobError;
use etl_core::store::{Location, ObjectMeta, Store, StoreError};
use etl_geo::{ChunkSource, FeatureSource, ReadError, ReadOptions, Record};
use parquet::errors::ParquetError;
use parquet::file::reader::{ChunkReader, Length};
use tokio::runtime::Handle;

/// The most bytes one request asks for. etl-geo's reads are bounded below this (a footer of
/// at most 64 MiB, windows of a few MiB, a page of at most 256 MiB); a larger one is a bug or
/// hostile, refused rather than held in memory.
const MAX_REQUEST: u64 = 320 << 20;
/// Bytes read by one `get_read` (the library reads a footer's last 8 bytes this way).
const SMALL_READ: u64 = 64 << 10;

/// Whether the input is read in place: an S3 object, not gzipped, starting with `PAR1`.
pub fn wanted(meta: &ObjectMeta, gzipped: bool, prefix: &[u8]) -> bool {
    matches!(meta.location, Location::S3 { .. }) && !gzipped && prefix.starts_with(b"PAR1")
}

/// A store failure the reader classified already: [`crate::read::read_err`] hands it on as it
/// is instead of taking it for an I/O error of the file.
#[derive(Debug)]
pub(crate) struct Classified(pub(crate) JobError);

impl std::fmt::Display for Classified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Classified {}

/// The [`JobError`] an I/O error carries, if a reader classified it.
pub(crate) fn classified(e: std::io::Error) -> Result<JobError, std::io::Error> {
    if e.get_ref().is_some_and(|inner| inner.is::<Classified>()) {
        if let Some(inner) = e.into_inner()
            && let Ok(c) = inner.downcast::<Classified>()
        {
            return Ok(c.0);
        }
        return Err(std::io::Error::other("a classified read error was lost"));
    }
    Err(e)
}

/// The first failure of the store while reading one input.
type Failure = Arc<Mutex<Option<JobError>>>;

/// Opens the GeoParquet object `meta` for reading in place. `sniffed` is the stream the
/// format was detected from: closed before the first ranged read.
pub fn open(
    store: &Store,
    meta: &ObjectMeta,
    handle: &Handle,
    sniffed: Box<dyn std::io::BufRead + Send>,
    opts: &ReadOptions,
    bytes_read: &Arc<AtomicU64>,
) -> Result<FeatureSource, JobError> {
    drop(sniffed);
    let url = meta.location.to_string();
    // Lets a test change the object between its listing and the first ranged read.
    handle.block_on(etl_core::fault::pause("sources.ranged.open"));
    let failure = Failure::default();
    let reader = Ranged {
        store: store.clone(),
        meta: meta.clone(),
        handle: handle.clone(),
        bytes_read: bytes_read.clone(),
        failure: failure.clone(),
    };
    let name = url.rsplit('/').next().unwrap_or(&url);
    let (source, skipped) = etl_geo::open_geoparquet(reader, name, opts)
        .map_err(|e| crate::read::read_err(&url, take(&failure, e)))?;
    for skipped in &skipped {
        tracing::warn!(input = %url, "{skipped}");
    }
    Ok(Box::new(Checked {
        inner: source,
        failure,
    }))
}

/// `e`, or the store failure behind it.
fn take(failure: &Failure, e: ReadError) -> ReadError {
    match failure
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
    {
        Some(job) => ReadError::Io(std::io::Error::other(Classified(job))),
        None => e,
    }
}

/// The records, with a store failure reported as itself.
struct Checked {
    inner: FeatureSource,
    failure: Failure,
}

impl Iterator for Checked {
    type Item = Result<Record, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.inner.next()? {
            Ok(record) => Some(Ok(record)),
            Err(e) => Some(Err(take(&self.failure, e))),
        }
    }
}

/// Parquet's [`ChunkReader`] over ranged reads of one object version.
struct Ranged {
    store: Store,
    meta: ObjectMeta,
    handle: Handle,
    bytes_read: Arc<AtomicU64>,
    failure: Failure,
}

/// Requests of one [`ChunkSource::get_ranges`] in flight at once.
const CONCURRENT_REQUESTS: usize = 8;

impl Ranged {
    fn read(&self, start: u64, len: u64) -> parquet::errors::Result<Bytes> {
        self.bounded(start, len)?;
        let bytes = self
            .handle
            .block_on(self.store.read_range(&self.meta, start, len))
            .map_err(|e| self.failed(e))?;
        self.bytes_read.fetch_add(len, Ordering::Relaxed);
        Ok(bytes)
    }

    fn bounded(&self, start: u64, len: u64) -> parquet::errors::Result<()> {
        if len > MAX_REQUEST {
            return Err(ParquetError::General(format!(
                "{len} bytes asked for at once at byte {start}, more than the {} MiB read in one request",
                MAX_REQUEST >> 20
            )));
        }
        Ok(())
    }

    /// Keeps the first store failure (what the input fails with) and hands the library its text.
    fn failed(&self, e: StoreError) -> ParquetError {
        let job = JobError::from(e);
        let message = job.message.clone();
        let mut slot = self.failure.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(job);
        }
        ParquetError::General(message)
    }
}

impl ChunkSource for Ranged {
    /// The ranges' requests sent together, [`CONCURRENT_REQUESTS`] at a time: a row group's
    /// columns cost one round trip, not one each.
    fn get_ranges(&self, ranges: &[Range<u64>]) -> parquet::errors::Result<Vec<Bytes>> {
        for r in ranges {
            self.bounded(r.start, r.end.saturating_sub(r.start))?;
        }
        let mut out = Vec::with_capacity(ranges.len());
        for group in ranges.chunks(CONCURRENT_REQUESTS) {
            let answers = self.handle.block_on(async {
                let mut set = tokio::task::JoinSet::new();
                for (k, r) in group.iter().enumerate() {
                    let (store, meta, r) = (self.store.clone(), self.meta.clone(), r.clone());
                    set.spawn(async move {
                        (k, store.read_range(&meta, r.start, r.end - r.start).await)
                    });
                }
                let mut answers: Vec<Option<Result<Bytes, StoreError>>> =
                    (0..group.len()).map(|_| None).collect();
                while let Some(joined) = set.join_next().await {
                    match joined {
                        Ok((k, answer)) => answers[k] = Some(answer),
                        Err(e) => return Err(ParquetError::General(format!("a read failed: {e}"))),
                    }
                }
                Ok(answers)
            })?;
            for answer in answers {
                match answer {
                    Some(Ok(bytes)) => {
                        self.bytes_read
                            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
                        out.push(bytes);
                    }
                    Some(Err(e)) => return Err(self.failed(e)),
                    None => return Err(ParquetError::General("a read went missing".into())),
                }
            }
        }
        Ok(out)
    }
}

impl Length for Ranged {
    fn len(&self) -> u64 {
        self.meta.size
    }
}

impl ChunkReader for Ranged {
    type T = bytes::buf::Reader<Bytes>;

    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        use bytes::Buf;
        let len = self.meta.size.saturating_sub(start).min(SMALL_READ);
        Ok(self.read(start, len)?.reader())
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        self.read(start, length as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etl_core::error::ExitKind;

    fn meta(url: &str) -> ObjectMeta {
        ObjectMeta {
            location: Location::parse(url).unwrap_or_else(|e| panic!("{url}: {e}")),
            size: 100,
            etag: Some("\"e\"".into()),
            version_id: None,
        }
    }

    #[test]
    fn only_plain_parquet_on_s3_is_read_in_place() {
        let s3 = meta("s3://b/k/x.parquet");
        assert!(wanted(&s3, false, b"PAR1\x15\x04"));
        assert!(!wanted(&s3, true, b"PAR1\x15\x04"), "gzipped: copied");
        assert!(!wanted(&s3, false, b"PK\x03\x04"));
        assert!(
            !wanted(&meta("/data/x.parquet"), false, b"PAR1"),
            "local: the file"
        );
    }

    #[test]
    fn a_classified_failure_keeps_its_kind_through_read_err() {
        let changed = JobError::temporary("s3://b/k: the object changed");
        let e = ReadError::Io(std::io::Error::other(Classified(changed.clone())));
        assert_eq!(crate::read::read_err("s3://b/k", e), changed);
        let missing = JobError::config("s3://b/k: not found");
        let e = ReadError::Io(std::io::Error::other(Classified(missing.clone())));
        assert_eq!(crate::read::read_err("s3://b/k", e).kind, ExitKind::Config);
        // Any other I/O error is still the reader's.
        let e = ReadError::Io(std::io::Error::other("reset"));
        let plain = crate::read::read_err("s3://b/k", e);
        assert_eq!(plain.kind, ExitKind::Temporary);
        assert_eq!(plain.message, "s3://b/k: read error: reset");
    }
}
