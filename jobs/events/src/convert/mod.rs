//! One upload, converted: its records streamed once into a GeoJSON sequence and into the tiler,
//! which then writes the PMTiles archive; an MBTiles upload is converted to PMTiles directly.
//! Everything lands in temporary files; [`crate::publish`] makes them appear.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use etl_core::{ExitKind, JobError};
use etl_geo::{FeatureId, FeatureWriter, OutputFormat, ReadError, Upload, UploadOptions};
use etl_tiles::tiler::{Tiler, TilerError};
use serde_json::{Map, Value, json};

use tempfile::NamedTempFile;

use crate::repairs::RepairTally;

mod files;
mod mbtiles;
mod profile;
pub mod sprite;

use files::{HashingWriter, artifact, extend_bounds, temp_err, temp_in};
pub use profile::{CLOUDTAK_DESCRIPTION, CLOUDTAK_LAYER, TilesProfile};

/// Records handed from the reader thread at a time.
const READ_BATCH: usize = 1024;
/// Rejected records the manifest quotes (the count covers all).
const QUOTED_REJECTIONS: usize = 20;

/// What the reader thread hands over.
enum ReadMsg {
    Batch(Batch),
    /// Every record was sent (or a fatal error was the last one).
    End,
}

/// A batch of records as the reader hands it over (and gets it back to free).
type Batch = Vec<Result<etl_geo::Record, ReadError>>;

/// The reader thread's body: batches, then `End`. Returns early when the receiver is gone.
/// Spent batches come back on `spent` and are freed here, on the thread that allocated them:
/// glibc's malloc makes a free from another thread wait on this thread's arena lock, which
/// cost GeoJSON-only conversions a quarter of their time.
fn read_all(
    upload: Upload,
    tx: &std::sync::mpsc::SyncSender<ReadMsg>,
    spent: &std::sync::mpsc::Receiver<Batch>,
) {
    let mut batch = Vec::with_capacity(READ_BATCH);
    for record in upload {
        let fatal = record.is_err();
        batch.push(record);
        if etl_core::fault::hit("events.read_panic") {
            panic!("fault injected: the reader panics mid-input");
        }
        if batch.len() >= READ_BATCH || fatal {
            while let Ok(done) = spent.try_recv() {
                drop(done);
            }
            let full = std::mem::replace(&mut batch, Vec::with_capacity(READ_BATCH));
            if tx.send(ReadMsg::Batch(full)).is_err() {
                return;
            }
            if fatal {
                break;
            }
        }
    }
    if !batch.is_empty() && tx.send(ReadMsg::Batch(batch)).is_err() {
        return;
    }
    // A closed receiver means the converter stopped first: nobody is left to tell.
    if tx.send(ReadMsg::End).is_err() {
        tracing::debug!("the converter stopped before the end of the input");
    }
}

/// The consuming side of the reader thread; dropping it stops and joins the thread.
struct Reader {
    rx: Option<std::sync::mpsc::Receiver<ReadMsg>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Reader {
    /// The next batch; `None` after `End`. A reader that vanished without `End` is a bug.
    fn next(
        &mut self,
        shown: &str,
    ) -> Result<Option<Vec<Result<etl_geo::Record, ReadError>>>, JobError> {
        let Some(rx) = &self.rx else {
            return Ok(None);
        };
        match rx.recv() {
            Ok(ReadMsg::Batch(b)) => Ok(Some(b)),
            Ok(ReadMsg::End) => Ok(None),
            Err(_) => Err(self.join_failure(shown)),
        }
    }

    /// Joins the thread after `End`; a panic there is still a failure.
    fn finish(mut self, shown: &str) -> Result<(), JobError> {
        self.rx = None;
        match self.handle.take().map(std::thread::JoinHandle::join) {
            Some(Err(payload)) => Err(JobError::panicked(
                &format!("reading {shown}"),
                payload.as_ref(),
            )),
            _ => Ok(()),
        }
    }

    fn join_failure(&mut self, shown: &str) -> JobError {
        self.rx = None;
        match self.handle.take().map(std::thread::JoinHandle::join) {
            Some(Err(payload)) => JobError::panicked(&format!("reading {shown}"), payload.as_ref()),
            _ => JobError::internal(format!(
                "reading {shown}: the reader stopped before the end of the input; nothing was published"
            )),
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        // Closing the channel makes the thread's next send fail, so it returns and drops the
        // upload (and its unpacked files) before this returns.
        self.rx = None;
        if let Some(h) = self.handle.take()
            && h.join().is_err()
        {
            tracing::error!("the reader thread panicked while the conversion was already failing");
        }
    }
}

/// What to make of an upload.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    pub upload: UploadOptions,
    /// Highest zoom; `None` guesses it (`-zg`).
    pub max_zoom: Option<u8>,
    pub min_zoom: u8,
    /// Write the GeoJSON sequence / the PMTiles archive.
    pub geojsonl: bool,
    pub pmtiles: bool,
    /// Bytes the tiler's sort may hold before spilling to `scratch`.
    pub tiler_memory: usize,
    /// Where archives are unpacked and temporary outputs are built.
    pub scratch: PathBuf,
    /// The tiling profile of the PMTiles output.
    pub tiles: TilesProfile,
    /// Whether and how a KML upload's NetworkLinks are followed.
    pub links: crate::links::LinkOptions,
    /// Placemarks' `icon` values to rewrite (to `<iconset uid>:<name>`), once the iconset
    /// they name is sure to exist.
    pub icon_names: std::sync::Arc<std::collections::HashMap<String, String>>,
}

/// A finished conversion: temporary files and the manifest's facts about them.
#[derive(Debug)]
pub struct Converted {
    /// Detected format, layers, counts, bounds, assets (no `source` or `outputs` yet).
    pub manifest: Map<String, Value>,
    pub geojsonl: Option<Artifact>,
    pub pmtiles: Option<Artifact>,
    /// A sprite sheet of the upload's icons and its index, when it has icons.
    pub sprite: Option<(Artifact, Artifact)>,
}

/// A temporary output file with its size and SHA-256.
#[derive(Debug)]
pub struct Artifact {
    pub file: NamedTempFile,
    pub bytes: u64,
    pub sha256: String,
}

/// Converts the upload at `input`, named `name`. `cancel` is polled while reading and tiling.
pub fn convert(
    input: &Path,
    name: &str,
    opts: &ConvertOptions,
    cancel: &(dyn Fn() -> bool + Sync),
    deadline: std::time::Instant,
) -> Result<Converted, JobError> {
    let shown = input.display().to_string();
    let upload = Upload::open(input, name, &opts.scratch, &opts.upload)
        .map_err(|e| read_error(&shown, e))?;
    let mut manifest = Map::new();
    manifest.insert("name".into(), json!(name));
    manifest.insert("format".into(), json!(upload.format.name()));
    if !upload.skipped.is_empty() {
        for skipped in &upload.skipped {
            tracing::warn!(input = %shown, "{skipped}");
        }
        manifest.insert("skipped".into(), json!(upload.skipped));
    }
    if let Some(path) = upload.mbtiles() {
        let path = path.to_path_buf();
        return mbtiles::convert_mbtiles(&path, &shown, opts, manifest, deadline);
    }
    convert_features(upload, &shown, name, opts, cancel, manifest)
}

fn convert_features(
    mut upload: Upload,
    shown: &str,
    name: &str,
    opts: &ConvertOptions,
    cancel: &(dyn Fn() -> bool + Sync),
    mut manifest: Map<String, Value>,
) -> Result<Converted, JobError> {
    let layers = upload.layers.clone();
    if layers.is_empty() {
        let held: Vec<&str> = upload
            .assets
            .iter()
            .take(5)
            .map(|a| a.name.as_str())
            .collect();
        return Err(JobError::bad_input(format!(
            "{shown}: no features found: nothing in it is a feature format (it holds {})",
            if held.is_empty() {
                "nothing".to_owned()
            } else {
                held.join(", ")
            }
        )));
    }
    let multi_layer = layers.len() > 1;
    let mut per_layer = vec![0u64; layers.len()];
    let mut geojsonl = if opts.geojsonl {
        let file = temp_in(&opts.scratch, ".geojsonl")?;
        let out = HashingWriter::new(BufWriter::with_capacity(
            1 << 20,
            file.reopen().map_err(temp_err)?,
        ));
        Some((file, FeatureWriter::new(OutputFormat::GeoJsonSeq, out)))
    } else {
        None
    };
    let mut tiler = if opts.pmtiles {
        let tiler_opts = opts.tiles.tiler_options(opts, name);
        let tiler_layers = opts.tiles.tiler_layers(&layers);
        Some(Tiler::new(tiler_opts, tiler_layers).map_err(tiler_error)?)
    } else {
        None
    };
    let mut features = 0u64;
    let mut with_geometry = 0u64;
    let mut rejected = 0u64;
    let mut repairs = RepairTally::default();
    let mut rejections = Vec::new();
    let mut bounds: Option<[f64; 4]> = None;
    let assets = std::mem::take(&mut upload.assets);
    let package = std::mem::take(&mut upload.package);
    // Parsing runs on a thread of its own, writing GeoJSON and staging tiles on this one: on
    // two cores that overlaps the two halves of the work. Batches keep the hand-over cheap;
    // the bounded channel keeps memory bounded. The end of the input is a message of its own:
    // a reader that stops without sending it (a panic) is a failure, never a short result.
    let (tx, rx) = std::sync::mpsc::sync_channel::<ReadMsg>(4);
    let (spent_tx, spent_rx) = std::sync::mpsc::channel::<Batch>();
    let handle = std::thread::Builder::new()
        .name("etl-events-read".into())
        .spawn(move || read_all(upload, &tx, &spent_rx))
        .map_err(|e| JobError::temporary(format!("cannot start the reader thread: {e}")))?;
    // Joined on every way out of this function, so the upload's unpacked files are gone
    // before it returns.
    let mut reader = Reader {
        rx: Some(rx),
        handle: Some(handle),
    };
    let mut since_check = 0u32;
    loop {
        let mut batch = match reader.next(shown)? {
            Some(batch) => batch,
            None => break,
        };
        // A fatal read error ends its batch (the reader sends it at once).
        let fatal = match batch.last() {
            Some(Err(_)) => batch.pop().and_then(Result::err),
            _ => None,
        };
        for record in batch.iter_mut() {
            since_check += 1;
            if since_check >= 4096 {
                since_check = 0;
                if cancel() {
                    return Err(stopped());
                }
            }
            let record = match record {
                Ok(r) => r,
                Err(e) => {
                    return Err(JobError::internal(format!(
                        "{shown}: a read error in the middle of a batch: {e}"
                    )));
                }
            };
            let layer = record.layer as usize;
            let feature = match &mut record.feature {
                Ok(f) => f,
                Err(r) => {
                    rejected += 1;
                    if rejections.len() < QUOTED_REJECTIONS {
                        rejections.push(json!({
                            "layer": layers.get(layer),
                            "line": record.line,
                            "reason": r.reason,
                        }));
                    }
                    continue;
                }
            };
            features += 1;
            repairs.note(record.repairs, shown, layers.get(layer), record.line);
            if !opts.icon_names.is_empty()
                && let Some(Value::String(icon)) = feature.properties.get("icon")
                && let Some(named) = opts.icon_names.get(icon)
            {
                let named = named.clone();
                feature
                    .properties
                    .insert("icon".into(), Value::String(named));
            }
            if let Some(n) = per_layer.get_mut(layer) {
                *n += 1;
            }
            if let Some(g) = &feature.geometry {
                with_geometry += 1;
                extend_bounds(g, &mut bounds);
            }
            // CloudTAK's map reads one layer: there, as in the GeoJSON sequence it tiles, a
            // `layer` property says which input layer a feature came from.
            if multi_layer
                && opts.tiles == TilesProfile::Cloudtak
                && !feature.properties.contains_key("layer")
                && let Some(l) = layers.get(layer)
            {
                feature.properties.insert("layer".into(), json!(l));
            }
            if let Some(tiler) = &mut tiler {
                tiler
                    .add(
                        opts.tiles.tiler_layer(layer),
                        record.ordinal,
                        tile_id(feature.id.as_ref()),
                        feature.geometry.as_ref(),
                        &feature.properties,
                    )
                    .map_err(tiler_error)?;
            }
            if let Some((_, writer)) = &mut geojsonl {
                if multi_layer
                    && !feature.properties.contains_key("layer")
                    && let Some(l) = layers.get(layer)
                {
                    feature.properties.insert("layer".into(), json!(l));
                }
                writer
                    .write(feature)
                    .map_err(|e| JobError::temporary(format!("temporary GeoJSON output: {e}")))?;
            }
        }
        // Freed on the reader thread; once it has ended, here.
        if let Err(returned) = spent_tx.send(batch) {
            drop(returned.0);
        }
        if let Some(e) = fatal {
            return Err(read_error(shown, e));
        }
    }
    reader.finish(shown)?;
    if features == 0 {
        return Err(JobError::bad_input(format!(
            "{shown}: no features found{}",
            if rejected > 0 {
                format!(
                    " ({rejected} records rejected, first: {})",
                    first_reason(&rejections)
                )
            } else {
                String::new()
            }
        )));
    }
    if with_geometry == 0 && tiler.is_some() {
        return Err(JobError::bad_input(format!(
            "{shown}: no features with a geometry found ({features} features, none with a geometry)"
        )));
    }
    let geojsonl = match geojsonl {
        Some((file, writer)) => {
            let hashing = writer
                .finish()
                .map_err(|e| JobError::temporary(format!("temporary GeoJSON output: {e}")))?;
            let (bytes, sha256) = hashing
                .finish()
                .map_err(|e| JobError::temporary(format!("temporary GeoJSON output: {e}")))?;
            Some(Artifact {
                file,
                bytes,
                sha256,
            })
        }
        None => None,
    };
    let pmtiles = match tiler {
        Some(tiler) => {
            let file = temp_in(&opts.scratch, ".pmtiles")?;
            let out = BufWriter::with_capacity(1 << 20, file.reopen().map_err(temp_err)?);
            let (mut out, report) = tiler.finish(out, cancel).map_err(tiler_error)?;
            out.flush().map_err(temp_err)?;
            drop(out);
            manifest.insert(
                "tiles".into(),
                json!({
                    "min_zoom": report.min_zoom,
                    "max_zoom": report.max_zoom,
                    "tiles": report.tiles,
                    "guessed_zoom": report.guessed_zoom,
                }),
            );
            Some(artifact(file)?)
        }
        None => None,
    };
    manifest.insert(
        "layers".into(),
        Value::Array(
            layers
                .iter()
                .zip(&per_layer)
                .map(|(name, n)| json!({"name": name, "features": n}))
                .collect(),
        ),
    );
    manifest.insert("features".into(), json!(features));
    manifest.insert(
        "features_without_geometry".into(),
        json!(features - with_geometry),
    );
    manifest.insert("rejected".into(), json!(rejected));
    repairs.into_manifest(&mut manifest);
    if !rejections.is_empty() {
        manifest.insert("rejections".into(), Value::Array(rejections));
    }
    manifest.insert("bounds".into(), json!(bounds));
    if !assets.is_empty() {
        manifest.insert(
            "assets".into(),
            Value::Array(
                assets
                    .iter()
                    .map(|a| {
                        let mut m = json!({"name": a.name, "bytes": a.bytes});
                        if let (Some(uid), Some(obj)) = (&a.uid, m.as_object_mut()) {
                            obj.insert("uid".into(), json!(uid));
                        }
                        m
                    })
                    .collect(),
            ),
        );
    }
    if !package.is_empty() {
        manifest.insert("package".into(), Value::Object(package));
    }
    Ok(Converted {
        manifest,
        geojsonl,
        pmtiles,
        sprite: None,
    })
}

/// Adds what following the upload's NetworkLinks skipped to the manifest's `skipped`.
pub fn note_skipped(manifest: &mut Map<String, Value>, skipped: &[String]) {
    if skipped.is_empty() {
        return;
    }
    let list = manifest
        .entry("skipped")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Value::Array(items) = list {
        items.extend(skipped.iter().map(|s| json!(s)));
    }
}

/// The exit kind of a read error: I/O may go away on retry, everything else is the input's fault.
pub fn read_error(shown: &str, e: ReadError) -> JobError {
    match &e {
        ReadError::Io(_) => JobError::temporary(format!("{shown}: {e}")),
        ReadError::Syntax { .. } | ReadError::Invalid { .. } => {
            JobError::bad_input(format!("{shown}:{e}"))
        }
        ReadError::Refused(_) => JobError::bad_input(format!("{shown}: {e}")),
    }
}

fn first_reason(rejections: &[Value]) -> String {
    rejections
        .first()
        .and_then(|r| r.get("reason"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}

fn tiler_error(e: TilerError) -> JobError {
    use etl_tiles::tiler::FailureKind;
    let msg = e.to_string();
    match e.kind() {
        FailureKind::Usage => JobError::usage(msg),
        FailureKind::BadInput => JobError::bad_input(msg),
        FailureKind::Cancelled => stopped(),
        FailureKind::Temporary => JobError::temporary(msg),
        FailureKind::Internal => JobError::new(ExitKind::Internal, msg),
    }
}

/// SIGTERM while converting: nothing was published; a rerun starts over.
pub fn stopped() -> JobError {
    JobError::new(
        ExitKind::Stopped,
        "stopped by SIGTERM; no output was written and a rerun starts over",
    )
}

/// tippecanoe keeps a feature id when it is a non-negative integer.
fn tile_id(id: Option<&FeatureId>) -> Option<u64> {
    match id? {
        FeatureId::Int(i) => u64::try_from(*i).ok(),
        FeatureId::Str(_) => None,
    }
}
