//! Vector tiles in the other encoding: an MVT archive's tiles as MLT (`.mlt`, or `Accept` asking
//! for MLT on `.pbf`/`.mvt`), an MLT archive's tiles as MVT (`.pbf`/`.mvt`, for clients that
//! cannot read MLT). Each tile is transcoded once (concurrent requests for it wait for the
//! first), on the blocking pool and under one of the decompression permits (none free: 503 with
//! `Retry-After`; the permit goes with the work, so a client that hangs up does not free it
//! early), then kept gzipped in a cache bounded in bytes and keyed by the archive's file, its
//! version and the tile, so a replaced archive never answers from its old tiles. A tile too wide
//! to transcode within [`MltLimits::SERVE`] is refused before it is decoded (406).

use std::io::Write;
use std::sync::Arc;

use axum::http::StatusCode;
use bytes::Bytes;
use etl_tiles::archive::Compression;
use quick_cache::Weighter;
use quick_cache::sync::Cache;

use super::tiles::{Inflate, MAX_DECOMPRESSED_TILE, inflate, take_permit};
use super::{Failure, Shared};
use crate::archives::{OpenArchive, ServeError};
use crate::request::Serve;
use etl_tiles::mlt::{MltError, MltLimits};

/// Bytes of transcoded (gzipped) tiles kept.
pub const TRANSCODE_CACHE_BYTES: u64 = 64 << 20;

/// (file, version, tile id, to MLT).
type Key = (Arc<str>, Arc<str>, u64, bool);

#[derive(Clone)]
struct Weight;

impl Weighter<Key, Bytes> for Weight {
    fn weight(&self, key: &Key, tile: &Bytes) -> u64 {
        (tile.len() + key.0.len() + key.1.len() + 64) as u64
    }
}

/// The transcoded tiles.
pub struct Transcoded {
    cache: Cache<Key, Bytes, Weight>,
}

impl Transcoded {
    pub fn new(bytes: u64) -> Transcoded {
        Transcoded {
            // A few hundred bytes to a few hundred KiB each: plan for 8 KiB.
            cache: Cache::with_weighter((bytes / 8192).max(16) as usize, bytes, Weight),
        }
    }
}

/// Why a tile could not be transcoded.
pub(super) enum TranscodeError {
    /// Not now (permits): 503, or the stored tile to a client whose `Accept` chose.
    Busy(Failure),
    /// Never for this tile (too large, too wide, compressed with neither gzip nor nothing, or
    /// refused by the codec): an error, or the stored tile to a client whose `Accept` chose.
    Refused(Failure),
}

/// The tile `stored` (as archive `a` stores tile `id`) in the encoding `want` asks for, gzipped.
pub(super) async fn transcode(
    state: &Shared,
    name: &str,
    a: &OpenArchive,
    id: u64,
    stored: Bytes,
    want: Serve,
) -> Result<Bytes, TranscodeError> {
    let to_mlt = match want {
        Serve::Stored => return Ok(stored),
        Serve::AsMlt => true,
        Serve::AsMvt => false,
    };
    let gzipped = match a.header().tile_compression {
        Compression::Gzip => true,
        Compression::None => false,
        other => {
            return Err(TranscodeError::Refused(Failure::new(
                StatusCode::NOT_ACCEPTABLE,
                format!(
                    "tiles of {name:?} are {other:?}-compressed; only gzip or uncompressed tiles are transcoded, so they are served only as stored"
                ),
            )));
        }
    };
    let key: Key = (a.version.file.clone(), a.version.etag.clone(), id, to_mlt);
    // One transcoding per tile: concurrent requests for it wait for the first and share its
    // result (a failed first leaves the next to try).
    let guard = match state.transcoded.cache.get_value_or_guard_async(&key).await {
        Ok(hit) => return Ok(hit),
        Err(guard) => guard,
    };
    let permit = take_permit(state, name, "transcoded or decompressed", "; retry")
        .map_err(TranscodeError::Busy)?;
    let done = tokio::task::spawn_blocking(move || {
        // The permit lives as long as the work, not as long as the request.
        let _held = permit;
        convert(&stored, gzipped, to_mlt)
    })
    .await;
    let tile = match done {
        Ok(Ok(t)) => t,
        Ok(Err(Convert::TooLarge)) => {
            return Err(TranscodeError::Refused(Failure::new(
                StatusCode::NOT_ACCEPTABLE,
                format!(
                    "a tile of {name:?} decodes to more than {MAX_DECOMPRESSED_TILE} bytes; it is served only as stored"
                ),
            )));
        }
        Ok(Err(Convert::TooWide(e))) => {
            return Err(TranscodeError::Refused(Failure::new(
                StatusCode::NOT_ACCEPTABLE,
                format!(
                    "a tile of {name:?} is too large to transcode ({e}); it is served only as stored"
                ),
            )));
        }
        Ok(Err(Convert::Bad(what))) => {
            return Err(TranscodeError::Refused(Failure::from(
                ServeError::Corrupt {
                    name: name.to_string(),
                    error: etl_tiles::archive::ArchiveError::Directory(format!("tile: {what}")),
                },
            )));
        }
        Err(e) => {
            return Err(TranscodeError::Refused(Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("transcoding a tile of {name:?} failed: {e}"),
            )));
        }
    };
    let tile = Bytes::from(tile);
    if guard.insert(tile.clone()).is_err() {
        // The cache took another value for the key meanwhile (a replaced entry): this tile is
        // still the right answer for this request.
        tracing::debug!(
            archive = name,
            "transcoded tile not cached: the slot was taken"
        );
    }
    Ok(tile)
}

enum Convert {
    TooLarge,
    TooWide(String),
    Bad(String),
}

/// Decodes the stored tile, transcodes it and gzips the result.
fn convert(stored: &[u8], gzipped: bool, to_mlt: bool) -> Result<Vec<u8>, Convert> {
    let plain;
    let tile = if gzipped {
        plain = inflate(stored, MAX_DECOMPRESSED_TILE).map_err(|e| match e {
            Inflate::TooLarge => Convert::TooLarge,
            Inflate::Bad(e) => Convert::Bad(format!("gzip: {e}")),
        })?;
        &plain[..]
    } else {
        stored
    };
    let out = if to_mlt {
        // The archive's feature order stays (it may be a label priority, as tippecanoe's
        // --order-by makes it).
        etl_tiles::mlt::mvt_to_mlt(tile, true, MltLimits::SERVE).map_err(|e| match e {
            MltError::TooWide { .. } => Convert::TooWide(e.to_string()),
            e => Convert::Bad(format!("MVT: {e}")),
        })?
    } else {
        etl_tiles::mlt::mlt_to_mvt(tile).map_err(|e| Convert::Bad(format!("MLT: {e}")))?
    };
    let mut gz = flate2::write::GzEncoder::new(
        Vec::with_capacity(out.len() / 2 + 64),
        flate2::Compression::default(),
    );
    gz.write_all(&out)
        .and_then(|()| gz.finish())
        .map_err(|e| Convert::Bad(format!("gzip: {e}")))
}
