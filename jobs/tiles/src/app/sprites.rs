//! `GET /sprites/{NAME}.json|.png` (and `@2x`, answered with the same sheet): the MapLibre
//! sprite sheet the import worker publishes beside an archive when its features have icons
//! (the manifest's `sprite.png` and `sprite.json` outputs). Access is the archive's.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::http::header::HeaderMap;

use super::{Answer, Failure, Shared, archive, authorize, cacheable};
use crate::request;

/// Largest sprite file served (200 icons of at most 256×32 px fit in far less).
const MAX_SPRITE_BYTES: u64 = 16 << 20;

pub(super) async fn sprite(
    State(state): State<Shared>,
    Path(file): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Answer {
    let (stem, ext, content_type) = if let Some(s) = file.strip_suffix(".json") {
        (s, "json", "application/json")
    } else if let Some(s) = file.strip_suffix(".png") {
        (s, "png", "image/png")
    } else {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            "a sprite is NAME.json or NAME.png".to_owned(),
        ));
    };
    let name = stem.strip_suffix("@2x").unwrap_or(stem);
    let name = request::archive_name(name)?;
    authorize(&state, &headers, query.as_deref(), name)?;
    let a = archive(&state, name).await?;
    let Some(base) = &a.sprite else {
        return Err(Failure::new(
            StatusCode::NOT_FOUND,
            format!("archive {name:?} has no sprite sheet"),
        ));
    };
    let file = format!("{base}.{ext}");
    match state.archives.read_beside(&file, MAX_SPRITE_BYTES).await? {
        Some((bytes, _)) if !bytes.is_empty() => Ok(cacheable(
            &headers,
            bytes,
            content_type,
            state.settings.cache_control.clone(),
        )),
        Some(_) => Err(Failure::new(
            StatusCode::BAD_GATEWAY,
            format!("the sprite file {file} is over {MAX_SPRITE_BYTES} bytes"),
        )),
        None => Err(Failure::new(
            StatusCode::NOT_FOUND,
            format!("the sprite file {file} is not there"),
        )),
    }
}
