//! Inputs that are read as files, not streams: zip archives (zipped Shapefiles, KMZ, TAK data
//! packages), GeoPackages, GeoParquet (its footer is at the end) and loose Shapefile sets. They go through [`etl_geo::Upload`], the
//! reader etl-events uses, so every job reads the same formats the same way. A local input is
//! read where it is; an S3 object is first copied to a temporary file (removed when done),
//! except GeoParquet, which is read in place with ranged GETs (`ranged.rs`).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use etl_core::JobError;
use etl_geo::{Record, Upload, UploadOptions};

const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
const SQLITE_MAGIC: &[u8] = b"SQLite format 3\0";
const PARQUET_MAGIC: &[u8] = b"PAR1";
/// The largest input copied to a temporary file (the archive expansion budget of uploads).
pub const MAX_COPY_BYTES: u64 = 4 << 30;
/// A Shapefile's main file starts with the big-endian file code 9994.
const SHP_MAGIC: &[u8] = &[0x00, 0x00, 0x27, 0x0a];

/// Whether an input starting with `prefix` must be read as a file.
pub fn needs_file(prefix: &[u8]) -> bool {
    prefix.starts_with(ZIP_MAGIC)
        || prefix.starts_with(SQLITE_MAGIC)
        || prefix.starts_with(PARQUET_MAGIC)
        || prefix.starts_with(SHP_MAGIC)
}

/// Where the file is: the local input itself, or a temporary copy of the stream.
pub enum Local {
    Path(PathBuf),
    Copy(tempfile::NamedTempFile),
}

impl Local {
    pub fn path(&self) -> &Path {
        match self {
            Local::Path(p) => p,
            Local::Copy(f) => f.path(),
        }
    }

    /// A temporary copy of `prefix` followed by the rest of `rest`: at most
    /// [`MAX_COPY_BYTES`] (a decompressed `.zip.gz` cannot fill the disk), stopped when
    /// `cancel` is set (the partial copy is removed as it drops).
    pub fn copy(
        url: &str,
        prefix: &[u8],
        rest: &mut dyn BufRead,
        cancel: &etl_geo::Cancel,
    ) -> Result<Local, JobError> {
        let io = |e: std::io::Error| {
            if e.kind() == std::io::ErrorKind::StorageFull {
                JobError::config(format!(
                    "{url}: no space left for a temporary copy of the input (set TMPDIR to a larger disk)"
                ))
            } else {
                JobError::temporary(format!("{url}: copying to a temporary file: {e}"))
            }
        };
        let mut file = tempfile::Builder::new()
            .prefix("etl-input-")
            .tempfile()
            .map_err(io)?;
        file.write_all(prefix).map_err(io)?;
        let mut copied = prefix.len() as u64;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            if cancel.is_cancelled() {
                return Err(JobError::stopped());
            }
            let n = match rest.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
                    ) =>
                {
                    return Err(JobError::bad_input(format!(
                        "{url}: corrupt or truncated data: {e}"
                    )));
                }
                Err(e) => return Err(JobError::temporary(format!("{url}: read error: {e}"))),
            };
            copied += n as u64;
            if copied > MAX_COPY_BYTES {
                return Err(JobError::bad_input(format!(
                    "{url}: more than {} GiB to read as a file (an archive, GeoPackage or GeoParquet file this large is refused)",
                    MAX_COPY_BYTES >> 30
                )));
            }
            file.write_all(&buf[..n]).map_err(io)?;
        }
        file.flush().map_err(io)?;
        Ok(Local::Copy(file))
    }
}

/// Opens the file as an upload: its records, and the names of its layers.
pub fn open(
    url: &str,
    local: &Local,
    opts: &etl_geo::ReadOptions,
    layers: &[String],
) -> Result<(Upload, Vec<String>), JobError> {
    let stem = stem_of(url);
    let upload = Upload::open(
        local.path(),
        &stem,
        &std::env::temp_dir(),
        &UploadOptions {
            read: opts.clone(),
            layers: layers.to_vec(),
            ..UploadOptions::default()
        },
    )
    .map_err(|e| crate::read::read_err(url, e))?;
    if upload.mbtiles().is_some() {
        return Err(JobError::bad_input(format!(
            "{url}: an MBTiles tile set holds tiles, not features (etl-events converts it to PMTiles)"
        )));
    }
    for skipped in &upload.skipped {
        tracing::warn!(input = %url, "{skipped}");
    }
    let layers = upload.layers.clone();
    Ok((upload, layers))
}

/// With several layers, each feature says which it came from (`layer`), as etl-events does.
pub fn label(record: &mut Record, layers: &[String]) {
    if layers.len() < 2 {
        return;
    }
    if let (Ok(feature), Some(name)) = (&mut record.feature, layers.get(record.layer as usize))
        && !feature.properties.contains_key("layer")
    {
        feature
            .properties
            .insert("layer".into(), serde_json::Value::String(name.clone()));
    }
}

/// The input's file name without directories and extensions (`s3://b/k/roads.shp.zip` → `roads`).
fn stem_of(url: &str) -> String {
    let name = url.rsplit('/').next().unwrap_or(url);
    let name = name.strip_suffix(".gz").unwrap_or(name);
    match name.split_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem.to_string(),
        _ => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_read_as_a_file() {
        assert!(needs_file(b"PK\x03\x04rest"));
        assert!(needs_file(b"SQLite format 3\0rest"));
        assert!(needs_file(&[0, 0, 0x27, 0x0a, 0, 0]));
        assert!(needs_file(b"PAR1\x15\x04"));
        assert!(!needs_file(b"{\"type\":\"FeatureCollection\""));
        assert!(!needs_file(b"lon,lat\n"));
    }

    #[test]
    fn stems() {
        assert_eq!(stem_of("s3://b/k/roads.shp.zip"), "roads");
        assert_eq!(stem_of("/data/nztm.gpkg"), "nztm");
        assert_eq!(stem_of("/data/noext"), "noext");
    }
}
