//! An MBTiles upload: its tiles converted straight to a PMTiles archive (no features).

use std::io::{BufWriter, Write};
use std::path::Path;

use etl_core::JobError;
use serde_json::{Map, Value, json};

use super::files::{artifact, temp_err, temp_in};
use super::{ConvertOptions, Converted};

pub(super) fn convert_mbtiles(
    path: &Path,
    shown: &str,
    opts: &ConvertOptions,
    mut manifest: Map<String, Value>,
    deadline: std::time::Instant,
) -> Result<Converted, JobError> {
    if !opts.pmtiles {
        return Err(JobError::usage(format!(
            "{shown}: an MBTiles upload only converts to PMTiles, and --outputs leaves PMTiles out"
        )));
    }
    let file = temp_in(&opts.scratch, ".pmtiles")?;
    let out = BufWriter::with_capacity(1 << 20, file.reopen().map_err(temp_err)?);
    let limits = etl_tiles::mbtiles::MbtilesOptions {
        // The import's deadline bounds the conversion too (a recursive `tiles` view would
        // otherwise loop for ever inside SQLite).
        max_duration: Some(deadline.saturating_duration_since(std::time::Instant::now())),
        ..etl_tiles::mbtiles::MbtilesOptions::default()
    };
    let (mut out, report) =
        etl_tiles::mbtiles::convert(path, out, &limits).map_err(|e| mbtiles_error(shown, e))?;
    out.flush().map_err(temp_err)?;
    drop(out);
    manifest.insert("tiles".into(), mbtiles_report(&report));
    manifest.insert("bounds".into(), json!(report.bounds));
    manifest.insert("layers".into(), json!([]));
    manifest.insert("features".into(), json!(0));
    manifest.insert("rejected".into(), json!(0));
    manifest.insert("repaired".into(), json!(0));
    Ok(Converted {
        manifest,
        geojsonl: None,
        pmtiles: Some(artifact(file)?),
        sprite: None,
    })
}

fn mbtiles_report(r: &etl_tiles::mbtiles::MbtilesReport) -> Value {
    json!({
        "format": r.format.name(),
        "min_zoom": r.min_zoom,
        "max_zoom": r.max_zoom,
        "tiles": r.tiles_written,
        "tiles_read": r.tiles_read,
        "duplicates_skipped": r.duplicates_skipped,
        "bounds": r.bounds,
        "warnings": r.warnings,
    })
}

fn mbtiles_error(shown: &str, e: etl_tiles::mbtiles::MbtilesError) -> JobError {
    match e {
        etl_tiles::mbtiles::MbtilesError::TimedOut { .. } => JobError::temporary(format!(
            "{shown}: {e}: the import took longer than --import-timeout"
        )),
        e => JobError::bad_input(format!("{shown}: {e}")),
    }
}
