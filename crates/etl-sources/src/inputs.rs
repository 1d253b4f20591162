//! Expanding `--input` URLs into the objects of this run (and of this Batch array shard).

use etl_core::JobError;
use etl_core::batch::BatchEnv;
use etl_core::runkey::InputVersion;
use etl_core::store::{ObjectMeta, Store};

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
            return Err(JobError::config(format!("{pattern}: no input files match")));
        }
        all.extend(found);
    }
    all.sort_by(|a, b| a.location.cmp(&b.location));
    all.dedup_by(|a, b| a.location == b.location);
    let all = without_sidecars(all);
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
