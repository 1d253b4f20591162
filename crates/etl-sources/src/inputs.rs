//! Expanding `--input` URLs into the objects of this run (and of this Batch array shard).

use etl_core::JobError;
use etl_core::batch::BatchEnv;
use etl_core::runkey::InputVersion;
use etl_core::store::{Location, ObjectMeta, Store};

/// Every object the inputs name, deduplicated and in a stable order, restricted to the shard of
/// an array child. A pattern that matches nothing is an error: a silent empty load hides typos.
pub async fn expand(
    store: &Store,
    patterns: &[String],
    batch: &BatchEnv,
) -> Result<Vec<ObjectMeta>, JobError> {
    let mut all: Vec<ObjectMeta> = Vec::new();
    for pattern in patterns {
        let pattern = pattern.trim();
        if pattern.is_empty() {
            continue;
        }
        let found = store.expand(pattern).await.map_err(JobError::from)?;
        if found.is_empty() {
            return Err(JobError::new(
                etl_core::ExitKind::NoInput,
                format!("{pattern}: no input files match"),
            ));
        }
        all.extend(found);
    }
    all.sort_by(|a, b| a.location.cmp(&b.location));
    all.dedup_by(|a, b| a.location == b.location);
    let all = without_sidecars(all)
        .into_iter()
        .map(with_sidecar_versions)
        .collect::<Result<Vec<_>, _>>()?;
    if all.is_empty() {
        return Err(JobError::usage("no --input given"));
    }
    Ok(all
        .into_iter()
        .filter(|m| batch.owns(&m.location.to_string()))
        .collect())
}

/// Files that belong to a Shapefile set whose `.shp` is among the inputs (`.dbf`, `.prj`, …):
/// read with it, not as inputs of their own.
fn without_sidecars(all: Vec<ObjectMeta>) -> Vec<ObjectMeta> {
    const SIDECARS: [&str; 18] = [
        "shx",
        "dbf",
        "prj",
        "cpg",
        "sbn",
        "sbx",
        "qix",
        "fix",
        "fbn",
        "fbx",
        "aih",
        "ain",
        "atx",
        "ixs",
        "mxs",
        "qmd",
        "shp.xml",
        "shp.iso.xml",
    ];
    let shp_stems: std::collections::HashSet<String> = all
        .iter()
        .filter_map(|m| {
            let url = m.location.to_string();
            let lower = url.to_ascii_lowercase();
            lower.strip_suffix(".shp").map(str::to_string)
        })
        .collect();
    all.into_iter()
        .filter(|m| {
            let lower = m.location.to_string().to_ascii_lowercase();
            !SIDECARS.iter().any(|ext| {
                lower
                    .strip_suffix(ext)
                    .and_then(|s| s.strip_suffix('.'))
                    .is_some_and(|stem| shp_stems.contains(stem))
            })
        })
        .collect()
}

/// The files read with a local `.shp` (its `.dbf`, `.prj`, `.cpg`, `.shx`, found as the reader
/// finds them: same stem, any case) are part of its version: editing only the `.dbf` or fixing
/// the `.prj` makes a new run, not "already loaded".
fn with_sidecar_versions(mut meta: ObjectMeta) -> Result<ObjectMeta, JobError> {
    let Location::File(path) = &meta.location else {
        return Ok(meta);
    };
    if !path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("shp"))
    {
        return Ok(meta);
    }
    let (Some(dir), Some(stem)) = (path.parent(), path.file_stem()) else {
        return Ok(meta);
    };
    let stem = stem.to_string_lossy().to_lowercase();
    let entries = std::fs::read_dir(if dir.as_os_str().is_empty() {
        std::path::Path::new(".")
    } else {
        dir
    })
    .map_err(|e| JobError::temporary(format!("{}: listing its folder: {e}", path.display())))?;
    let mut parts: Vec<String> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| {
            JobError::temporary(format!("{}: listing its folder: {e}", path.display()))
        })?;
        let name = entry.file_name().to_string_lossy().to_lowercase();
        let Some((entry_stem, ext)) = name.rsplit_once('.') else {
            continue;
        };
        if entry_stem != stem || !["dbf", "prj", "cpg", "shx"].contains(&ext) {
            continue;
        }
        let md = entry
            .metadata()
            .map_err(|e| JobError::temporary(format!("{}: reading {name}: {e}", path.display())))?;
        let mtime = md
            .modified()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        parts.push(format!("{ext}:{mtime:x}-{:x}", md.len()));
    }
    parts.sort();
    if !parts.is_empty() {
        let shp = meta.etag.take().unwrap_or_default();
        meta.etag = Some(format!("{shp}+{}", parts.join("+")));
    }
    Ok(meta)
}

pub fn versions(inputs: &[ObjectMeta]) -> Vec<InputVersion> {
    inputs
        .iter()
        .map(|m| InputVersion {
            url: m.location.to_string(),
            etag: m.etag.clone(),
            size: m.size,
        })
        .collect()
}
