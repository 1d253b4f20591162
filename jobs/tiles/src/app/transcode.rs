//! Vector tiles in the other encoding: an MVT archive's tiles as MLT (`.mlt`, or `Accept` asking
//! for MLT on `.pbf`/`.mvt`), an MLT archive's tiles as MVT (`.pbf`/`.mvt`, for clients that
//! cannot read MLT). Each tile is transcoded once, on the blocking pool and under one of the
//! decompression permits (none free: 503 with `Retry-After`), then kept gzipped in a cache
//! bounded in bytes and keyed by the archive's file, its version and the tile, so a replaced
//! archive never answers from its old tiles.

use std::io::Write;
use std::sync::Arc;

use axum::http::StatusCode;
use bytes::Bytes;
use etl_tiles::archive::Compression;
use quick_cache::Weighter;
use quick_cache::sync::Cache;

use super::tiles::{Inflate, MAX_DECOMPRESSED_TILE, inflate};
use super::{Failure, Shared};
use crate::archives::{OpenArchive, ServeError};
use crate::request::Serve;

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

/// The tile `stored` (as archive `a` stores tile `id`) in the encoding `want` asks for, gzipped.
pub(super) async fn transcode(
    state: &Shared,
    name: &str,
    a: &OpenArchive,
    id: u64,
    stored: Bytes,
    want: Serve,
) -> Result<Bytes, Failure> {
    let to_mlt = match want {
        Serve::Stored => return Ok(stored),
        Serve::AsMlt => true,
        Serve::AsMvt => false,
    };
    let key: Key = (a.version.file.clone(), a.version.etag.clone(), id, to_mlt);
    if let Some(hit) = state.transcoded.cache.get(&key) {
        return Ok(hit);
    }
    let Ok(permit) = state.inflate.try_acquire() else {
        tracing::warn!(
            archive = name,
            limit = state.settings.inflate_limit,
            "every decompression permit is taken; answering 503"
        );
        return Err(Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "too many tiles are being transcoded or decompressed (limit {}); retry",
                state.settings.inflate_limit
            ),
        ));
    };
    let gzipped = a.header().tile_compression == Compression::Gzip;
    let done = tokio::task::spawn_blocking(move || convert(&stored, gzipped, to_mlt)).await;
    drop(permit);
    let corrupt = |what: String| {
        Failure::from(ServeError::Corrupt {
            name: name.to_string(),
            error: etl_tiles::archive::ArchiveError::Directory(format!("tile: {what}")),
        })
    };
    let tile = match done {
        Ok(Ok(t)) => t,
        Ok(Err(Convert::TooLarge)) => {
            return Err(Failure::new(
                StatusCode::NOT_ACCEPTABLE,
                format!(
                    "a tile of {name:?} decodes to more than {MAX_DECOMPRESSED_TILE} bytes; it is served only as stored"
                ),
            ));
        }
        Ok(Err(Convert::Bad(e))) => return Err(corrupt(e)),
        Err(e) => {
            return Err(Failure::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("transcoding a tile of {name:?} failed: {e}"),
            ));
        }
    };
    let tile = Bytes::from(tile);
    state.transcoded.cache.insert(key, tile.clone());
    Ok(tile)
}

enum Convert {
    TooLarge,
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
        etl_tiles::mlt::mvt_to_mlt(tile, false).map_err(|e| Convert::Bad(format!("MVT: {e}")))?
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
