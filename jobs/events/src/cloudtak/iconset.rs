//! Iconsets an import makes, with the calls CloudTAK's worker makes: one an upload's data
//! package describes (an iconset XML and the icons packed beside it), and one of a KML's
//! placemark icons (CloudTAK's transform: `"<name> Icons"`, linked to the asset).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use etl_core::JobError;
use hyper::Method;
use serde_json::json;

use super::api::{Auth, segment};
use super::job::Job;
use super::package::{base, blocking, lower_ext};
use super::xml::Iconset;
use crate::icons::Icons;

/// An iconset and its icons (`POST /api/iconset`, then each icon found in the package), unless
/// it exists already.
pub(crate) async fn from_package(
    job: &Job<'_>,
    set: &Iconset,
    files: &HashMap<String, (String, PathBuf)>,
) -> Result<(), JobError> {
    let auth = Auth::User(job.user());
    let at = format!("/api/iconset/{}", segment(&set.uid));
    let check = job.w.api.send(Method::GET, &at, &[], auth, None).await?;
    if check.status == 200 {
        tracing::info!(id = %job.row.id, iconset = %set.uid, "the iconset exists already: left as it is");
        return Ok(());
    }
    if check.status != 404 {
        return Err(check.error());
    }
    let mut body = json!({
        "uid": set.uid,
        "version": set.version,
        "name": set.name,
        "skip_resize": set.skip_resize,
    });
    if let Some(o) = body.as_object_mut() {
        o.extend(set.defaults.clone());
    }
    job.w
        .api
        .expect(Method::POST, "/api/iconset", &[], auth, Some(&body))
        .await?;
    job.result(&set.name, "Iconset", &set.uid).await?;
    let mut failed = Vec::new();
    for (name, type2525b) in &set.icons {
        let mime = match lower_ext(name).as_str() {
            ".png" => "image/png",
            ".svg" => "image/svg+xml",
            other => {
                tracing::warn!(iconset = %set.uid, icon = %name, "an icon of type {other:?}: left out");
                continue;
            }
        };
        let Some((entry, path)) = files.get(base(name)) else {
            tracing::warn!(iconset = %set.uid, icon = %name, "the package does not hold this icon: left out");
            continue;
        };
        let path = path.clone();
        let data = blocking(move || icon_data(&path, mime)).await??;
        let Some(data) = data else {
            tracing::warn!(iconset = %set.uid, icon = %entry, "an icon over {MAX_ICON_BYTES} bytes: left out");
            continue;
        };
        // CloudTAK names an icon by its path in the package; its API takes 64 characters.
        let icon_name = if entry.chars().count() <= 64 {
            entry.as_str()
        } else {
            base(entry)
        };
        let reply = job
            .w
            .api
            .send(
                Method::POST,
                &format!("{at}/icon"),
                &[("regen", "false")],
                auth,
                Some(&json!({
                    "name": icon_name,
                    "path": format!("{}/{icon_name}", set.uid),
                    "type2525b": type2525b,
                    "data": data,
                })),
            )
            .await?;
        if !reply.ok() {
            // As CloudTAK's worker: one refused icon does not undo the iconset.
            let e = reply.error();
            if e.kind.retryable() {
                return Err(e);
            }
            tracing::error!(iconset = %set.uid, icon = %entry, error = %e.message, "an icon was refused");
            failed.push(entry.clone());
        }
    }
    job.w
        .api
        .expect(Method::POST, &format!("{at}/regen"), &[], auth, None)
        .await?;
    if !failed.is_empty() {
        tracing::error!(iconset = %set.uid, refused = failed.len(), first = %failed[0], "icons refused by the API");
    }
    Ok(())
}
/// Largest icon sent (CloudTAK draws them at 32 px; its sprite sheets hold 1,000).
const MAX_ICON_BYTES: u64 = 1 << 20;

/// An icon file as a data URL, `None` when it is over [`MAX_ICON_BYTES`].
fn icon_data(path: &Path, mime: &str) -> Result<Option<String>, JobError> {
    let len = std::fs::metadata(path)
        .map_err(|e| JobError::temporary(format!("{}: {e}", path.display())))?
        .len();
    if len > MAX_ICON_BYTES {
        return Ok(None);
    }
    let bytes =
        std::fs::read(path).map_err(|e| JobError::temporary(format!("{}: {e}", path.display())))?;
    Ok(Some(format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )))
}

/// The iconset of a KML's placemark icons: created unless an earlier attempt did (its uid is
/// derived from the import), its icons added without regenerating the sprite each time, then
/// once, and the asset linked to it.
pub(crate) async fn from_kml(
    job: &Job<'_>,
    uid: &str,
    icons: &Icons,
    asset: &str,
) -> Result<(), JobError> {
    let auth = Auth::User(job.user());
    let at = format!("/api/iconset/{}", segment(uid));
    // CloudTAK names it after the import; its API takes 64 characters.
    let mut name: String = job.row.name.chars().take(64 - " Icons".len()).collect();
    name.push_str(" Icons");
    let check = job.w.api.send(Method::GET, &at, &[], auth, None).await?;
    match check.status {
        404 => {
            job.w
                .api
                .expect(
                    Method::POST,
                    "/api/iconset",
                    &[],
                    auth,
                    Some(&json!({"uid": uid, "version": 1, "name": name, "internal": true, "scope": "user"})),
                )
                .await?;
        }
        200 => {}
        _ => return Err(check.error()),
    }
    job.result(&name, "Iconset", uid).await?;
    let mut refused = 0usize;
    for icon in &icons.icons {
        let data = format!(
            "data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(&icon.png)
        );
        let reply = job
            .w
            .api
            .send(
                Method::POST,
                &format!("{at}/icon"),
                &[("regen", "false")],
                auth,
                Some(&json!({"name": icon.name, "data": data})),
            )
            .await?;
        if !reply.ok() {
            let e = reply.error();
            // A second attempt finds the icons of the first: the API refuses them again.
            if e.kind.retryable() {
                return Err(e);
            }
            tracing::warn!(iconset = %uid, icon = %icon.name, error = %e.message, "an icon was refused");
            refused += 1;
        }
    }
    job.w
        .api
        .expect(Method::POST, &format!("{at}/regen"), &[], auth, None)
        .await?;
    job.w
        .api
        .expect(
            Method::PATCH,
            &format!("/api/profile/asset/{}", segment(asset)),
            &[],
            auth,
            Some(&json!({"iconset": uid})),
        )
        .await?;
    tracing::info!(iconset = %uid, icons = icons.icons.len(), refused, "iconset of the KML's icons");
    Ok(())
}
