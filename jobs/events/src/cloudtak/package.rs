//! A zip upload, as CloudTAK's worker takes it (contract §1, "Archive"): a KMZ or a zipped
//! Shapefile set is one file; anything else is a data package — its CoTs become profile
//! features (`PUT /api/profile/feature`), their attachments go to `attachment/<sha256>/<name>`,
//! XML indexes become an iconset and icons or a basemap, and every other file an asset.
//!
//! Everything is read, checked and converted before the first call that creates anything, so
//! a package with one bad part fails whole and leaves nothing behind.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use etl_core::JobError;
use etl_geo::archive::{self, ArchiveLimits, Budget};
use etl_geo::upload::manifest::read_manifest;
use hyper::Method;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::api::Auth;
use super::file::{self, Local, Prepared};
use super::job::Job;
use super::xml::{Basemap, Iconset, read_basemap, read_iconset};
use crate::convert::read_error;

const MANIFEST: &str = "MANIFEST/manifest.xml";

/// One listed part of the package.
struct Part {
    entry: String,
    path: PathBuf,
    uid: Option<String>,
}

pub(crate) fn lower_ext(name: &str) -> String {
    Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .map(|e| format!(".{}", e.to_ascii_lowercase()))
        .unwrap_or_default()
}

pub(crate) fn base(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

pub(crate) async fn process(job: &Job<'_>, upload: Local) -> Result<(), JobError> {
    let limits = job.w.convert.upload.archive;
    let shown = job.row.name.clone();
    let zip = upload.path.clone();
    let names = blocking(move || archive::list(&zip, &limits))
        .await?
        .map_err(|e| read_error(&shown, e))?;
    let has_manifest = names.iter().any(|n| n == MANIFEST);
    let root_kml = names
        .iter()
        .any(|n| !n.contains('/') && lower_ext(n) == ".kml");
    let shapefile = names.iter().any(|n| lower_ext(n) == ".shp");
    // A KMZ, or a Shapefile set, is read whole (CloudTAK would split the set into files it
    // cannot read).
    if (upload.ext() == ".kmz" && root_kml) || (!has_manifest && (root_kml || shapefile)) {
        return file::process(job, upload).await;
    }
    let dir = job.work.join("package");
    std::fs::create_dir_all(&dir)
        .map_err(|e| JobError::temporary(format!("{}: {e}", dir.display())))?;
    let (zip, into) = (upload.path.clone(), dir.clone());
    let shown = job.row.name.clone();
    let entries = blocking(move || archive::extract_within(&zip, &into, &mut Budget::new(&limits)))
        .await?
        .map_err(|e| read_error(&shown, e))?;
    let by_name: HashMap<&str, &Path> = entries
        .iter()
        .map(|e| (e.name.as_str(), e.path.as_path()))
        .collect();
    // What the package lists: its manifest's contents, or every file.
    let (package_name, listed): (String, Vec<(String, bool, Option<String>)>) = if has_manifest {
        let path = by_name.get(MANIFEST).copied().ok_or_else(|| {
            JobError::internal(format!(
                "{}: {MANIFEST} was listed but not extracted",
                job.row.name
            ))
        })?;
        let m = read_manifest(path, job.w.convert.upload.read.max_xml_text)
            .map_err(|e| read_error(&format!("{}: {MANIFEST}", job.row.name), e))?;
        let name = m
            .settings
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("New Data Package")
            .to_owned();
        (
            name,
            m.contents
                .into_iter()
                .map(|c| (c.entry, c.ignore, c.uid))
                .collect(),
        )
    } else {
        let stem = Path::new(&job.row.name)
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or(&job.row.name)
            .to_owned();
        (
            stem,
            entries
                .iter()
                .map(|e| (e.name.clone(), false, None))
                .collect(),
        )
    };
    let mut parts = Vec::new();
    for (entry, ignore, uid) in listed {
        if ignore {
            continue;
        }
        let path = by_name.get(entry.as_str()).ok_or_else(|| {
            JobError::bad_input(format!(
                "{}: the manifest lists {entry:?}, which the package does not hold",
                job.row.name
            ))
        })?;
        parts.push(Part {
            entry,
            path: path.to_path_buf(),
            uid,
        });
    }
    // 1. CoTs, read as features.
    let mut features = Vec::new();
    for p in parts.iter().filter(|p| lower_ext(&p.entry) == ".cot") {
        features.extend(read_cots(job, p).await?);
    }
    let cot_uids: HashSet<String> = features
        .iter()
        .filter_map(|f| f.get("id").and_then(Value::as_str).map(str::to_owned))
        .collect();
    // 2. Attachments: parts the manifest gives to one of those CoTs.
    let mut attachments: BTreeMap<String, Vec<(String, PathBuf, String)>> = BTreeMap::new();
    for p in &parts {
        if lower_ext(&p.entry) == ".cot" || p.entry == MANIFEST {
            continue;
        }
        if let Some(uid) = p.uid.as_ref().filter(|u| cot_uids.contains(*u)) {
            let path = p.path.clone();
            let hash = blocking(move || sha256_file(&path)).await??;
            attachments.entry(uid.clone()).or_default().push((
                p.entry.clone(),
                p.path.clone(),
                hash,
            ));
        }
    }
    for f in &mut features {
        let uid = f.get("id").and_then(Value::as_str).unwrap_or("").to_owned();
        if let (Some(list), Some(props)) = (
            attachments.get(&uid),
            f.get_mut("properties").and_then(Value::as_object_mut),
        ) {
            let mut hashes: Vec<Value> = props
                .get("attachments")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for (_, _, h) in list {
                if !hashes.iter().any(|v| v.as_str() == Some(h)) {
                    hashes.push(json!(h));
                }
            }
            props.insert("attachments".into(), Value::Array(hashes));
        }
    }
    // 3. The other files: XML indexes, icons, and files that become assets.
    let attached: HashSet<&str> = attachments
        .values()
        .flatten()
        .map(|(e, _, _)| e.as_str())
        .collect();
    let files = parts
        .iter()
        .filter(|p| {
            !matches!(
                lower_ext(&p.entry).as_str(),
                ".cot" | ".png" | ".svg" | ".xml"
            ) && p.entry != MANIFEST
                && !attached.contains(p.entry.as_str())
        })
        .count() as u64;
    let unpacked: u64 = entries.iter().map(|e| e.bytes).sum();
    let left = limits.max_total_bytes.saturating_sub(unpacked);
    let mut indexes: Vec<Index> = Vec::new();
    let mut assets: Vec<(Local, Prepared)> = Vec::new();
    let mut icons: HashMap<String, (String, PathBuf)> = HashMap::new();
    for p in &parts {
        let ext = lower_ext(&p.entry);
        if ext == ".cot" || p.entry == MANIFEST || attached.contains(p.entry.as_str()) {
            continue;
        }
        let shown = format!("{}: {}", job.row.name, p.entry);
        match ext.as_str() {
            ".png" | ".svg" => {
                icons.insert(base(&p.entry).to_owned(), (p.entry.clone(), p.path.clone()));
            }
            ".xml" if base(&p.entry) != "MANIFEST.xml" => {
                if let Some(i) = read_iconset(&p.path, &shown)? {
                    indexes.push(Index::Iconset(i));
                } else if let Some(b) = read_basemap(&p.path, &shown)? {
                    indexes.push(Index::Basemap(b));
                } else {
                    tracing::warn!(id = %job.row.id, entry = %p.entry, "an XML file that is neither an iconset nor a map source: left out");
                }
            }
            ".xml" => {}
            _ => {
                if matches!(ext.as_str(), ".zip" | ".kmz") && !is_zip(&p.path)? {
                    return Err(JobError::bad_input(format!(
                        "Package content '{}' is not a valid ZIP archive",
                        base(&p.entry)
                    )));
                }
                let local = Local {
                    path: p.path.clone(),
                    name: base(&p.entry).to_owned(),
                    entry: p.entry.clone(),
                };
                // The package's files share what is left of its expansion allowance.
                let limits = ArchiveLimits {
                    max_total_bytes: left / files.max(1),
                    ..limits
                };
                let prepared = file::prepare_within(job, &local, limits).await?;
                assets.push((local, prepared));
            }
        }
    }
    job.check()?;
    // Publishing, in CloudTAK's order: features (with attachments), assets, indexes.
    let path = format!("/{}/", package_name.replace('/', ""));
    if features.iter().any(|f| {
        f.pointer("/properties/attachments")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty())
    }) {
        for (entry, local, hash) in attachments.values().flatten() {
            job.upload(local, &format!("attachment/{hash}/{}", base(entry)))
                .await?;
        }
    }
    for mut f in features {
        if let Some(o) = f.as_object_mut() {
            o.insert("path".into(), json!(path));
        }
        put_feature(job, &f).await?;
    }
    for (local, prepared) in assets {
        file::publish(job, &local, prepared).await?;
    }
    for index in indexes {
        match index {
            Index::Iconset(set) => super::iconset::from_package(job, &set, &icons).await?,
            Index::Basemap(b) => basemap(job, &b).await?,
        }
    }
    Ok(())
}

enum Index {
    Iconset(Iconset),
    Basemap(Basemap),
}

pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, JobError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| crate::import::task_failed("package", e))
}

pub(crate) fn is_zip(path: &Path) -> Result<bool, JobError> {
    use std::io::Read;
    let mut prefix = [0u8; 4];
    let mut f = std::fs::File::open(path)
        .map_err(|e| JobError::temporary(format!("{}: {e}", path.display())))?;
    let n = f
        .read(&mut prefix)
        .map_err(|e| JobError::temporary(format!("{}: {e}", path.display())))?;
    Ok(archive::is_zip(prefix.get(..n).unwrap_or_default()))
}

fn sha256_file(path: &Path) -> Result<String, JobError> {
    let mut f = std::fs::File::open(path)
        .map_err(|e| JobError::temporary(format!("{}: {e}", path.display())))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)
        .map_err(|e| JobError::temporary(format!("{}: {e}", path.display())))?;
    Ok(hex::encode(h.finalize()))
}

/// The events of one `.cot` entry as CloudTAK's profile features; any event it cannot take
/// fails the import (as one bad CoT fails CloudTAK's).
async fn read_cots(job: &Job<'_>, part: &Part) -> Result<Vec<Value>, JobError> {
    let path = part.path.clone();
    let scratch = job.work.clone();
    let mut opts = job.w.convert.upload.clone();
    opts.format = Some(etl_geo::Format::Cot);
    let shown = format!("{}: {}", job.row.name, part.entry);
    blocking(move || {
        let upload = etl_geo::Upload::open(&path, "cot", &scratch, &opts)
            .map_err(|e| read_error(&shown, e))?;
        let mut out = Vec::new();
        for record in upload {
            let record = record.map_err(|e| read_error(&shown, e))?;
            let feature = record.feature.map_err(|r| {
                JobError::bad_input(format!("{shown}: line {}: {}", record.line, r.reason))
            })?;
            out.push(profile_feature(etl_geo::feature_to_json(&feature), &shown)?);
        }
        Ok(out)
    })
    .await?
}

/// A feature of our CoT reader in the shape `PUT /api/profile/feature` takes (node-CoT's
/// `to_geojson`): a string id, `how`/`callsign` defaults, `metadata`, a 3D point.
pub fn profile_feature(mut f: Value, shown: &str) -> Result<Value, JobError> {
    let id = match f.get("id") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => {
            return Err(JobError::bad_input(format!(
                "{shown}: an event without a uid"
            )));
        }
    };
    let obj = f
        .as_object_mut()
        .ok_or_else(|| JobError::internal(format!("{shown}: a feature that is not an object")))?;
    obj.insert("id".into(), json!(id));
    let props = obj
        .entry("properties")
        .or_insert_with(|| Value::Object(Map::new()));
    let props = props
        .as_object_mut()
        .ok_or_else(|| JobError::internal(format!("{shown}: properties that are not an object")))?;
    for key in ["time", "start", "stale", "center"] {
        if props.get(key).is_none_or(Value::is_null) {
            return Err(JobError::bad_input(format!(
                "{shown}: event {id}: no {key}, which CloudTAK requires"
            )));
        }
    }
    props.entry("callsign").or_insert_with(|| json!("UNKNOWN"));
    props.entry("how").or_insert_with(|| json!(""));
    props.entry("metadata").or_insert_with(|| json!({}));
    let center = props.get("center").cloned();
    if let Some(g) = obj.get_mut("geometry").and_then(Value::as_object_mut)
        && g.get("type").and_then(Value::as_str) == Some("Point")
        && let Some(c) = center.filter(|c| {
            c.as_array()
                .is_some_and(|a| a.len() == 3 && a.iter().all(Value::is_number))
        })
    {
        g.insert("coordinates".into(), c);
    }
    match obj
        .get("geometry")
        .and_then(|g| g.get("type"))
        .and_then(Value::as_str)
    {
        Some("Point" | "LineString" | "Polygon") => Ok(f),
        other => Err(JobError::bad_input(format!(
            "{shown}: event {id}: a {} geometry, which CloudTAK does not take",
            other.unwrap_or("missing")
        ))),
    }
}

async fn put_feature(job: &Job<'_>, feature: &Value) -> Result<(), JobError> {
    let id = feature.get("id").and_then(Value::as_str).unwrap_or("");
    let reply = job
        .w
        .api
        .expect(
            Method::PUT,
            "/api/profile/feature",
            &[("broadcast", "true")],
            Auth::User(job.user()),
            Some(feature),
        )
        .await
        .map_err(|e| e.context(format!("{}: CoT {id}", job.row.name)))?;
    let saved: Value = reply.json()?;
    let type_id = match saved.get("id") {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => id.to_owned(),
    };
    job.result(id, "Feature", &type_id).await
}

/// `POST /api/basemap` and a `Basemap` result; an earlier attempt's basemap of the same name
/// stands.
pub(crate) async fn basemap(job: &Job<'_>, b: &Basemap) -> Result<(), JobError> {
    if job.has_result_named("Basemap", &b.name)?.is_some() {
        return Ok(());
    }
    let reply = job
        .w
        .api
        .expect(
            Method::POST,
            "/api/basemap",
            &[],
            Auth::User(job.user()),
            Some(&json!({
                "name": b.name,
                "url": b.url,
                "minzoom": b.min_zoom,
                "maxzoom": b.max_zoom,
                "protocol": "zxy",
                "format": b.format,
            })),
        )
        .await?;
    let made: Value = reply.json()?;
    let id = match made.get("id") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => {
            return Err(JobError::temporary(format!(
                "CloudTAK API {}: the new basemap has no id",
                reply.call
            )));
        }
    };
    let name = made
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or(&b.name)
        .to_owned();
    job.result(&name, "Basemap", &id).await
}
