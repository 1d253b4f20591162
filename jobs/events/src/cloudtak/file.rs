//! One file of an import (the upload itself, or a file inside a data package) becomes a
//! profile asset, as CloudTAK's worker makes it (contract §1, "File" and "Transform"):
//! the raw file at `profile/<user>/<asset><ext>`, `POST /api/profile/asset`, an `Asset` result,
//! then `<asset>.geojsonld` and `<asset>.pmtiles`, each followed by a `PATCH` of the asset's
//! artifacts. A MOBAC `<customMapSource>` XML becomes a basemap instead.
//!
//! Unlike CloudTAK's worker the file is converted first, so an upload that cannot be read
//! (an unknown format, no features, hostile content) creates nothing.

use std::path::{Path, PathBuf};

use etl_core::JobError;
use hyper::Method;
use serde_json::{Value, json};

use super::api::{Auth, segment};
use super::job::Job;
use crate::convert::{Converted, convert};
use crate::icons::Icons;

/// A file to import.
#[derive(Debug, Clone)]
pub(crate) struct Local {
    pub path: PathBuf,
    /// Its name as the user knows it (the import's name, or the entry's base name).
    pub name: String,
    /// Its entry in the upload's archive; empty for the upload itself.
    pub entry: String,
}

impl Local {
    /// The lower-case extension with its dot, as CloudTAK keys assets.
    pub fn ext(&self) -> String {
        super::package::lower_ext(&self.name)
    }

    /// The asset's name: the file's stem and its lower-case extension.
    fn asset_name(&self) -> String {
        let stem = Path::new(&self.name)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or(&self.name);
        format!("{stem}{}", self.ext())
    }
}

/// A file read and converted, not yet published.
pub(crate) enum Prepared {
    Basemap(super::xml::Basemap),
    /// The conversion, and the iconset its placemarks' icons were renamed into.
    Asset(Box<(Converted, Option<(String, Icons)>)>),
}

pub(crate) async fn process(job: &Job<'_>, local: Local) -> Result<(), JobError> {
    let prepared = prepare(job, &local).await?;
    publish(job, &local, prepared).await
}

/// Everything that can fail for the file's own sake, before anything is created.
pub(crate) async fn prepare(job: &Job<'_>, local: &Local) -> Result<Prepared, JobError> {
    prepare_within(job, local, job.w.convert.upload.archive).await
}

/// [`prepare`], with these archive limits for the file (a file inside a package shares the
/// package's).
pub(crate) async fn prepare_within(
    job: &Job<'_>,
    local: &Local,
    limits: etl_geo::archive::ArchiveLimits,
) -> Result<Prepared, JobError> {
    if local.ext() == ".xml"
        && let Some(basemap) = super::xml::read_basemap(&local.path, &local.name)?
    {
        return Ok(Prepared::Basemap(basemap));
    }
    Ok(Prepared::Asset(Box::new(
        convert_file(job, local, limits).await?,
    )))
}

pub(crate) async fn publish(
    job: &Job<'_>,
    local: &Local,
    prepared: Prepared,
) -> Result<(), JobError> {
    let (converted, iconset) = match prepared {
        Prepared::Basemap(b) => return super::package::basemap(job, &b).await,
        Prepared::Asset(c) => *c,
    };
    job.check()?;
    let user = job.user().to_owned();
    let ext = local.ext();
    let asset = job.derived_uuid(&format!("asset:{}", local.entry));
    let prefix = format!("profile/{user}/{asset}");
    job.upload(&local.path, &format!("{prefix}{ext}")).await?;
    create_asset(job, &asset, &local.asset_name()).await?;
    etl_core::fault::point("cloudtak.after_asset");
    job.result(&local.asset_name(), "Asset", &asset).await?;
    if let Some((uid, icons)) = &iconset {
        super::iconset::from_kml(job, uid, icons, &asset).await?;
    }
    let mut artifacts: Vec<Value> = Vec::new();
    if let Some(geojsonl) = &converted.geojsonl {
        job.upload(geojsonl.file.path(), &format!("{prefix}.geojsonld"))
            .await?;
        artifacts.push(json!({"ext": ".geojsonld"}));
        patch_asset(job, &asset, &json!({"artifacts": artifacts})).await?;
    }
    let pmtiles = converted.pmtiles.as_ref().ok_or_else(|| {
        JobError::internal(format!(
            "{}: the conversion made no PMTiles archive",
            local.name
        ))
    })?;
    job.upload(pmtiles.file.path(), &format!("{prefix}.pmtiles"))
        .await?;
    artifacts.push(json!({"ext": ".pmtiles"}));
    patch_asset(job, &asset, &json!({"artifacts": artifacts})).await?;
    let features = converted
        .manifest
        .get("features")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    tracing::info!(
        id = %job.row.id,
        asset = %asset,
        name = %local.name,
        features,
        "asset published"
    );
    Ok(())
}

/// Converts off the async threads, CloudTAK's tiling profile, errors naming the file as the
/// user knows it.
async fn convert_file(
    job: &Job<'_>,
    local: &Local,
    limits: etl_geo::archive::ArchiveLimits,
) -> Result<(Converted, Option<(String, Icons)>), JobError> {
    let mut opts = job.w.convert.clone();
    opts.scratch = job.work.clone();
    opts.upload.archive = limits;
    // Its NetworkLinks to documents outside it (a KML or KMZ only), as CloudTAK follows them.
    let followed = crate::links::follow(
        &local.path,
        &job.work
            .join(format!("links-{}", job.derived_uuid(&local.entry))),
        &opts.links,
        &limits,
        opts.upload.read.max_xml_text,
        &job.cancel,
    )
    .await?;
    // Its placemarks' icons, renamed into the iconset that publishing makes.
    let icons = crate::icons::collect(
        &followed,
        &opts.links,
        opts.upload.read.max_xml_text,
        &job.work
            .join(format!("icons-{}", job.derived_uuid(&local.entry))),
        &job.cancel,
    )
    .await?;
    let iconset = if icons.icons.is_empty() {
        None
    } else {
        let uid = job.derived_uuid(&format!("iconset:{}", local.entry));
        opts.icon_names = std::sync::Arc::new(icons.names(&uid));
        Some((uid, icons))
    };
    opts.upload.linked = followed.linked;
    let read_cancel = etl_geo::Cancel::new().with_deadline(job.deadline);
    opts.upload.read.cancel = read_cancel.clone();
    let watch = crate::import::AbortOnDrop({
        let cancel = job.cancel.clone();
        tokio::spawn(async move {
            cancel.cancelled().await;
            read_cancel.cancel();
        })
    });
    let cancel = job.cancel.clone();
    let deadline = job.deadline;
    let path = local.path.clone();
    let name = local.name.clone();
    let shown = if local.entry.is_empty() {
        local.name.clone()
    } else {
        format!("{}: {}", job.row.name, local.entry)
    };
    let r = tokio::task::spawn_blocking(move || {
        let stop = || cancel.is_cancelled() || std::time::Instant::now() >= deadline;
        convert(&path, &name, &opts, &stop, deadline).map_err(|mut e| {
            e.message = e.message.replace(&path.display().to_string(), &shown);
            e
        })
    })
    .await;
    drop(watch);
    let converted = r.map_err(|e| crate::import::task_failed("conversion", e))??;
    Ok((converted, iconset))
}

/// `POST /api/profile/asset`. An earlier attempt may have created it already (the id is the
/// same on every attempt): then the API refuses the second, and the asset is there.
async fn create_asset(job: &Job<'_>, asset: &str, name: &str) -> Result<(), JobError> {
    if job.has_result("Asset", asset)? {
        return Ok(());
    }
    let reply = job
        .w
        .api
        .send(
            Method::POST,
            "/api/profile/asset",
            &[],
            Auth::User(job.user()),
            Some(&json!({"id": asset, "name": name, "path": "/"})),
        )
        .await?;
    if reply.ok() {
        return Ok(());
    }
    // Is it there? A PATCH that changes nothing answers 200 for an asset that exists.
    let exists = job
        .w
        .api
        .send(
            Method::PATCH,
            &format!("/api/profile/asset/{}", segment(asset)),
            &[],
            Auth::User(job.user()),
            Some(&json!({})),
        )
        .await?;
    if exists.ok() {
        return Ok(());
    }
    Err(reply.error())
}

async fn patch_asset(job: &Job<'_>, asset: &str, body: &Value) -> Result<(), JobError> {
    job.w
        .api
        .expect(
            Method::PATCH,
            &format!("/api/profile/asset/{}", segment(asset)),
            &[],
            Auth::User(job.user()),
            Some(body),
        )
        .await?;
    Ok(())
}
