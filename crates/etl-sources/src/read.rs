//! Reading one input on a blocking thread: storage stream -> format detection -> etl-geo reader,
//! delivered to the async side in batches through a bounded channel (bounded memory, and parsing
//! overlaps with loading).

use std::io::{BufRead, BufReader, Cursor, Read};

use flate2::bufread::MultiGzDecoder;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use etl_core::JobError;
use etl_core::store::{Location, ObjectMeta, Store};
use etl_geo::{Format, ReadError, Record};
use tokio::sync::mpsc;
use tokio_util::io::SyncIoBridge;

/// Records per message; a few of these are in flight at once.
pub const READ_BATCH: usize = 4096;
/// Positions per message at most (besides the record count): a batch of huge geometries
/// (linearised curves, dense coastlines) is sent early, so the batches in flight stay bounded in
/// memory, not only in count.
pub const READ_BATCH_POSITIONS: usize = 2 << 20;
const SNIFF_BYTES: usize = 64 * 1024;

pub struct ReadBatch {
    pub records: Vec<Record>,
    /// Bytes of the input consumed so far.
    pub bytes: u64,
    /// Features read since the previous batch that `--where` left out (not in `records`).
    pub filtered: u64,
    /// Features of `records` whose geometry was repaired: by the reader (degenerate shapes made
    /// the nearest valid ones) or by `--make-valid`.
    pub repaired: u64,
    /// The ordinal after the last record this batch accounts for, delivered or filtered out: a
    /// checkpoint at `next` neither reads a filtered record again nor counts it twice.
    pub next: u64,
}

/// What the reading thread sends: batches, then `End` — or an error.
enum Msg {
    Batch(ReadBatch),
    End,
    Failed(JobError),
}

/// The receiving end of one input's reader. The end of the input is a message of its own: a
/// reader that stops without it (a panic) is reported as a failure, never as a short input.
pub struct InputReader {
    rx: mpsc::Receiver<Msg>,
    url: String,
    ended: bool,
}

impl InputReader {
    /// The next batch; `None` once the whole input was read.
    pub async fn recv(&mut self) -> Option<Result<ReadBatch, JobError>> {
        let msg = self.rx.recv().await;
        self.take(msg)
    }

    /// [`InputReader::recv`] for blocking threads.
    pub fn blocking_recv(&mut self) -> Option<Result<ReadBatch, JobError>> {
        let msg = self.rx.blocking_recv();
        self.take(msg)
    }

    fn take(&mut self, msg: Option<Msg>) -> Option<Result<ReadBatch, JobError>> {
        if self.ended {
            return None;
        }
        match msg {
            Some(Msg::Batch(b)) => Some(Ok(b)),
            Some(Msg::End) => {
                self.ended = true;
                None
            }
            Some(Msg::Failed(e)) => {
                self.ended = true;
                Some(Err(e))
            }
            None => {
                self.ended = true;
                Some(Err(JobError::internal(format!(
                    "{}: the reader stopped before the end of the input (it panicked); nothing was published",
                    self.url
                ))))
            }
        }
    }
}

/// Counts bytes as they are read, for progress and the run summary.
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Picks the format: `--format`, else the content, else the extension.
fn detect(name: &str, forced: Option<Format>, prefix: &[u8]) -> Result<Format, String> {
    if let Some(f) = forced {
        return Ok(f);
    }
    if let Some(f) = Format::sniff(prefix) {
        return Ok(f);
    }
    if let Some(f) = Format::from_path(name) {
        return Ok(f);
    }
    let shown: String = String::from_utf8_lossy(&prefix[..prefix.len().min(40)])
        .chars()
        .map(|c| if c.is_control() { '.' } else { c })
        .collect();
    Err(format!("unsupported input format: starts with {shown:?}"))
}

pub(crate) fn read_err(url: &str, e: ReadError) -> JobError {
    match e {
        ReadError::Io(io) => crate::ranged::classified(io).unwrap_or_else(|io| io_err(url, io)),
        other => JobError::bad_input(format!("{url}:{other}")),
    }
}

/// Corrupt compressed data is bad input for good; anything else may be a passing I/O fault.
fn io_err(url: &str, e: std::io::Error) -> JobError {
    if matches!(
        e.kind(),
        std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
    ) {
        JobError::bad_input(format!("{url}: corrupt or truncated data: {e}"))
    } else {
        JobError::temporary(format!("{url}: read error: {e}"))
    }
}

/// What is done to the records of an input on their way (ogr2ogr's `-limit`, `-where` and
/// `-nlt PROMOTE_TO_MULTI`).
#[derive(Debug, Clone, Default)]
pub struct Shaping {
    /// Only the first N records of each input that the filter keeps (accepted and rejected
    /// alike).
    pub limit: Option<u64>,
    /// Points, lines and polygons become multi-geometries of one part, so a table's geometries
    /// are of one kind.
    pub promote_to_multi: bool,
    /// Only features whose properties the filter is true for; the others are counted, not
    /// delivered. Rejected records are delivered whatever the filter (their problem is
    /// reported, not hidden).
    pub filter: Option<Arc<etl_geo::filter::Filter>>,
    /// Invalid polygons are rebuilt (ogr2ogr's -makevalid); one that cannot be (no area left,
    /// too tangled) makes its record a reject.
    pub make_valid: bool,
}

impl Shaping {
    /// Whether `record` is left out by the filter.
    fn filters_out(&self, record: &Record) -> bool {
        match (&self.filter, &record.feature) {
            (Some(filter), Ok(feature)) => !filter.matches(feature),
            _ => false,
        }
    }

    /// Applies `--make-valid` and `--promote-to-multi`; whether a polygon was rebuilt.
    fn apply(&self, record: &mut Record) -> bool {
        let mut repaired = false;
        if self.make_valid
            && let Ok(feature) = &mut record.feature
            && let Some(geometry) = &mut feature.geometry
        {
            match etl_geo::make_valid::make_valid(geometry) {
                Ok(etl_geo::make_valid::Outcome::Repaired) => repaired = true,
                Ok(etl_geo::make_valid::Outcome::Valid) => {}
                Err(why) => record.feature = Err(etl_geo::Rejection::new(why)),
            }
        }
        if self.promote_to_multi {
            self.promote(record);
        }
        repaired
    }

    fn promote(&self, record: &mut Record) {
        use etl_geo::geo_types::{Geometry as G, MultiLineString, MultiPoint, MultiPolygon};
        if let Ok(feature) = &mut record.feature
            && let Some(g) = feature.geometry.take()
        {
            feature.geometry = Some(match g {
                G::Point(p) => G::MultiPoint(MultiPoint(vec![p])),
                G::LineString(l) => G::MultiLineString(MultiLineString(vec![l])),
                G::Polygon(p) => G::MultiPolygon(MultiPolygon(vec![p])),
                other => other,
            });
        }
    }
}

/// Starts reading `meta` on a blocking thread. Records with an ordinal below `skip_before`
/// (already committed by an earlier attempt) are parsed but not delivered.
pub fn spawn(
    store: Store,
    meta: ObjectMeta,
    source: crate::Source,
    shaping: Shaping,
    skip_before: u64,
    bytes_read: Arc<AtomicU64>,
) -> InputReader {
    let crate::Source {
        format: forced,
        read: opts,
        layers,
    } = source;
    let (tx, rx) = mpsc::channel(4);
    let handle = tokio::runtime::Handle::current();
    let shown = meta.location.to_string();
    tokio::task::spawn_blocking(move || {
        let url = meta.location.to_string();
        let result = (|| -> Result<(), JobError> {
            let stream = handle
                .block_on(store.reader(&meta))
                .map_err(JobError::from)?;
            let mut counted = BufReader::with_capacity(
                1 << 20,
                Counting {
                    inner: SyncIoBridge::new_with_handle(stream, handle.clone()),
                    count: bytes_read.clone(),
                },
            );
            // Gzipped uploads (.geojson.gz, …) are read through a streaming decoder, found by
            // their magic bytes rather than their name.
            let gzipped = counted
                .fill_buf()
                .map(|b| b.starts_with(&[0x1f, 0x8b]))
                .map_err(|e| JobError::temporary(format!("{url}: read error: {e}")))?;
            let mut raw: Box<dyn BufRead + Send> = if gzipped {
                Box::new(BufReader::with_capacity(
                    1 << 20,
                    MultiGzDecoder::new(counted),
                ))
            } else {
                Box::new(counted)
            };
            let mut prefix = Vec::with_capacity(SNIFF_BYTES);
            (&mut raw)
                .take(SNIFF_BYTES as u64)
                .read_to_end(&mut prefix)
                .map_err(|e| io_err(&url, e))?;
            if prefix.is_empty() {
                return Err(JobError::bad_input(format!(
                    "{url}: empty file: no features found"
                )));
            }
            // Kept until the records are read: a temporary copy is removed when it drops.
            let mut local = None;
            let source: Box<dyn Iterator<Item = Result<Record, ReadError>> + Send> =
                if crate::ranged::wanted(&meta, gzipped, &prefix) {
                    crate::ranged::open(&store, &meta, &handle, raw, &opts, &bytes_read)?
                } else if crate::file::needs_file(&prefix) {
                    let file = match &meta.location {
                        Location::File(path) if !gzipped => crate::file::Local::Path(path.clone()),
                        _ if url.to_ascii_lowercase().ends_with(".shp") => {
                            return Err(JobError::bad_input(format!(
                                "{url}: a loose Shapefile is read from local files only (its .dbf and .prj beside it); zip the set to load it from S3"
                            )));
                        }
                        _ => crate::file::Local::copy(&url, &prefix, &mut raw, &opts.cancel)?,
                    };
                    let (upload, layers) = crate::file::open(&url, &file, &opts, &layers)?;
                    local = Some(file);
                    Box::new(upload.map(move |item| {
                        item.map(|mut record| {
                            crate::file::label(&mut record, &layers);
                            record
                        })
                    }))
                } else {
                    let name = url.strip_suffix(".gz").unwrap_or(&url);
                    let fmt = detect(name, forced, &prefix)
                        .map_err(|m| JobError::bad_input(format!("{url}: {m}")))?;
                    if !layers.is_empty() {
                        return Err(JobError::bad_input(format!(
                            "{url}: --layer {} picks the tables of a GeoPackage, and this is {fmt:?}",
                            layers.join(",")
                        )));
                    }
                    let input: Box<dyn BufRead + Send> = Box::new(BufReader::with_capacity(
                        1 << 20,
                        Cursor::new(prefix).chain(raw),
                    ));
                    etl_geo::open(fmt, input, &opts).map_err(|e| read_err(&url, e))?
                };
            let mut batch = Vec::with_capacity(READ_BATCH);
            let mut filtered = 0u64;
            let mut repaired = 0u64;
            let mut positions = 0usize;
            let mut next = skip_before;
            let mut delivered = 0u64;
            for item in source {
                // --limit counts the records --where keeps (as ogr2ogr's -limit counts features
                // written), also those an earlier attempt delivered, so a resume stops where a
                // whole run would. (This check only stops `--limit 0`; the N-th kept record
                // stops the loop below.)
                if shaping.limit.is_some_and(|n| delivered >= n) {
                    break;
                }
                let mut rec = item.map_err(|e| read_err(&url, e))?;
                let kept = !shaping.filters_out(&rec);
                if rec.ordinal < skip_before {
                    delivered += u64::from(kept);
                    if shaping.limit.is_some_and(|n| delivered >= n) {
                        break;
                    }
                    continue;
                }
                next = rec.ordinal + 1;
                if !kept {
                    filtered += 1;
                    continue;
                }
                delivered += 1;
                // Repaired by the reader (a one-point track made a Point, a ring closed) or by
                // --make-valid: counted once per feature.
                let made_valid = shaping.apply(&mut rec);
                if made_valid || (!rec.repairs.is_empty() && rec.feature.is_ok()) {
                    repaired += 1;
                }
                if let Ok(feature) = &rec.feature
                    && let Some(g) = &feature.geometry
                {
                    positions = positions.saturating_add(position_count(g));
                }
                batch.push(rec);
                if etl_core::fault::hit("sources.read_panic") {
                    panic!("fault injected: the reader panics mid-input");
                }
                // The N-th kept record ends the input: nothing after it is read (a damaged
                // record there cannot fail the run).
                if shaping.limit.is_some_and(|n| delivered >= n) {
                    break;
                }
                if batch.len() >= READ_BATCH || positions >= READ_BATCH_POSITIONS {
                    positions = 0;
                    let msg = ReadBatch {
                        records: std::mem::replace(&mut batch, Vec::with_capacity(READ_BATCH)),
                        bytes: bytes_read.load(Ordering::Relaxed),
                        filtered: std::mem::take(&mut filtered),
                        repaired: std::mem::take(&mut repaired),
                        next,
                    };
                    if tx.blocking_send(Msg::Batch(msg)).is_err() {
                        // The consumer stopped (error or shutdown): stop reading.
                        return Ok(());
                    }
                }
            }
            if !batch.is_empty() || filtered > 0 {
                let msg = ReadBatch {
                    records: batch,
                    bytes: bytes_read.load(Ordering::Relaxed),
                    filtered,
                    repaired,
                    next,
                };
                if tx.blocking_send(Msg::Batch(msg)).is_err() {
                    return Ok(());
                }
            }
            if tx.blocking_send(Msg::End).is_err() {
                tracing::debug!(input = %url, "the consumer stopped before the end of the input");
            }
            if let Some(crate::file::Local::Copy(copy)) = local
                && let Err(e) = copy.close()
            {
                tracing::warn!(input = %url, error = %e, "could not remove the temporary copy of the input");
            }
            Ok(())
        })();
        // A closed channel means the consumer stopped first: nobody is left to tell.
        if let Err(e) = result
            && tx.blocking_send(Msg::Failed(e)).is_err()
        {
            tracing::debug!("the consumer stopped before a read error could be reported");
        }
    });
    InputReader {
        rx,
        url: shown,
        ended: false,
    }
}

/// How many positions a geometry holds (collections to any depth the readers allow).
fn position_count(g: &etl_geo::geo_types::Geometry<f64>) -> usize {
    use etl_geo::geo_types::Geometry as G;
    let polygon = |p: &etl_geo::geo_types::Polygon<f64>| {
        p.exterior().0.len() + p.interiors().iter().map(|r| r.0.len()).sum::<usize>()
    };
    match g {
        G::Point(_) => 1,
        G::Line(_) => 2,
        G::LineString(l) => l.0.len(),
        G::Polygon(p) => polygon(p),
        G::MultiPoint(m) => m.0.len(),
        G::MultiLineString(m) => m.0.iter().map(|l| l.0.len()).sum(),
        G::MultiPolygon(m) => m.0.iter().map(polygon).sum(),
        G::GeometryCollection(c) => c.0.iter().map(position_count).sum(),
        G::Rect(_) => 5,
        G::Triangle(_) => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_detection_order() {
        assert_eq!(
            detect("a.csv", Some(Format::GeoJsonSeq), b"lon,lat\n").unwrap(),
            Format::GeoJsonSeq
        );
        assert!(detect("a.bin", None, b"\x00\x01\x02garbage").is_err());
        let err = detect("a.bin", None, b"PK\x03\x04zip").unwrap_err();
        assert!(err.starts_with("unsupported input format"), "{err}");
    }
}
