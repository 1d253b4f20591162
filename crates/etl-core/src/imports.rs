//! The `imports` table: the import queue of the deployment and its history. Its schema lives in
//! `crates/etl-core/migrations/` and is applied with sqlx migrations by every binary that uses
//! it, so the import worker and the retention job agree on one definition.

use sqlx::PgPool;

/// Creates or upgrades the tables (idempotent; concurrent callers are serialised by sqlx's
/// migration lock).
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    sqlx::migrate!("./migrations").run(pool).await
}

/// The lease that serialises every change of one output's manifest (an import's swap, a
/// retention delete): the checkpoint store URL (a `.etl-events/` folder beside the manifest)
/// and the scope within it.
pub fn manifest_lease(manifest: &crate::store::Location) -> (String, String) {
    use sha2::Digest;
    let url = manifest.parent().join(".etl-events/").to_string();
    let digest = sha2::Sha256::digest(manifest.to_string().as_bytes());
    let scope = format!(
        "publish-{}",
        hex::encode(digest.get(..12).unwrap_or_default())
    );
    (url, scope)
}

/// The output URLs an import's `result` manifest lists: `outputs` items given as `{"url": …}`
/// objects or as plain strings. Anything else is ignored, so a malformed manifest never makes
/// retention delete something it was not pointed at.
pub fn output_urls(result: &serde_json::Value) -> Vec<String> {
    result
        .get("outputs")
        .and_then(|o| o.as_array())
        .map(|items| {
            items
                .iter()
                .filter_map(|i| i.get("url").and_then(|u| u.as_str()).or_else(|| i.as_str()))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_from_manifests() {
        let m = serde_json::json!({"outputs": [
            {"url": "s3://b/out/x.geojsonl", "bytes": 10},
            "s3://b/out/x.pmtiles",
            {"bytes": 3},
            42
        ]});
        assert_eq!(
            output_urls(&m),
            ["s3://b/out/x.geojsonl", "s3://b/out/x.pmtiles"]
        );
        assert!(output_urls(&serde_json::json!({})).is_empty());
        assert!(output_urls(&serde_json::Value::Null).is_empty());
    }
}
