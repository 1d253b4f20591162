//! What a request asks for, checked before anything is read: archive names that cannot escape
//! the root, tile coordinates that exist, extensions the server knows. Pure functions, so every
//! 400 is decided here and unit-tested.

use etl_tiles::archive::TileType;

/// Why a request is malformed (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadRequest {
    #[error(
        "bad archive name {0:?}: names may not be empty or hold '/', '\\', '..' or control characters"
    )]
    Name(String),
    #[error(
        "bad archive path {0:?}: each '/'-separated part must be a name that is not empty and holds no '\\', '..' or control characters, and the path may not start with '/'"
    )]
    Path(String),
    #[error("bad tile coordinate {0:?}: expected a whole number")]
    Coordinate(String),
    #[error("zoom {0} is beyond the largest zoom 30")]
    Zoom(u32),
    #[error("tile {z}/{x}/{y} does not exist: x and y must be below 2^{z}")]
    OutOfWorld { z: u8, x: u32, y: u32 },
    #[error("unknown tile extension {0:?} (expected mvt, pbf, mlt, png, jpg, jpeg or webp)")]
    Extension(String),
    #[error(
        "missing tile extension in {0:?} (expected y.mvt, y.pbf, y.mlt, y.png, y.jpg or y.webp)"
    )]
    NoExtension(String),
    #[error("extension .{ext} does not match the archive's {tile_type} tiles")]
    WrongType {
        ext: &'static str,
        tile_type: &'static str,
    },
}

/// The largest zoom a request may name. PMTiles tile ids reach zoom 31, but no archive goes past
/// 30 and tile ids of zoom 31 overflow the 2^62 range some clients assume.
pub const MAX_ZOOM: u8 = 30;

/// An archive name: one path segment, no traversal, nothing that would confuse a log line.
pub fn archive_name(raw: &str) -> Result<&str, BadRequest> {
    let bad = raw.is_empty()
        || raw == "."
        || raw.contains("..")
        || raw.contains('/')
        || raw.contains('\\')
        || raw.chars().any(char::is_control)
        || raw.len() > 255;
    if bad {
        return Err(BadRequest::Name(raw.to_string()));
    }
    Ok(raw)
}

/// The most segments a nested archive path may have (`profile/USER/FILE` has three).
pub const MAX_PATH_SEGMENTS: usize = 4;

/// A nested archive path under the root (`public/NAME`, `profile/USER/FILE`): segments joined by
/// `/`, each one an [`archive_name`] (so no `..`, `.`, `\`, control characters or empty
/// segment), no leading `/` (absolute), at most [`MAX_PATH_SEGMENTS`] of them. Whatever it
/// holds, the key it names stays under the root.
pub fn archive_path(raw: &str) -> Result<&str, BadRequest> {
    let segments = raw.split('/').count();
    if segments > MAX_PATH_SEGMENTS || raw.split('/').any(|s| archive_name(s).is_err()) {
        return Err(BadRequest::Path(raw.to_string()));
    }
    Ok(raw)
}

/// The tile formats a URL may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TileExt {
    Mvt,
    Pbf,
    Mlt,
    Png,
    Jpg,
    Webp,
}

impl TileExt {
    pub fn parse(ext: &str) -> Result<TileExt, BadRequest> {
        match ext {
            "mvt" => Ok(TileExt::Mvt),
            "pbf" => Ok(TileExt::Pbf),
            "mlt" => Ok(TileExt::Mlt),
            "png" => Ok(TileExt::Png),
            "jpg" | "jpeg" => Ok(TileExt::Jpg),
            "webp" => Ok(TileExt::Webp),
            other => Err(BadRequest::Extension(other.to_string())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TileExt::Mvt => "mvt",
            TileExt::Pbf => "pbf",
            TileExt::Mlt => "mlt",
            TileExt::Png => "png",
            TileExt::Jpg => "jpg",
            TileExt::Webp => "webp",
        }
    }

    /// What to answer a request under this extension from an archive of `tile_type` tiles:
    /// the stored tile, or the vector tile in the other encoding. `.mlt` on an MVT archive asks
    /// for MLT; `.pbf`/`.mvt` on one asks for MLT too when `prefers_mlt` (the client's `Accept`
    /// says so); `.pbf`/`.mvt` on an MLT archive asks for MVT.
    pub fn serve(self, tile_type: TileType, prefers_mlt: bool) -> Result<Serve, BadRequest> {
        match (self, tile_type) {
            (TileExt::Mvt | TileExt::Pbf, TileType::Mvt) if prefers_mlt => Ok(Serve::AsMlt),
            (TileExt::Mvt | TileExt::Pbf, TileType::Mvt)
            | (TileExt::Mlt, TileType::Mlt)
            | (TileExt::Png, TileType::Png)
            | (TileExt::Jpg, TileType::Jpeg)
            | (TileExt::Webp, TileType::Webp) => Ok(Serve::Stored),
            (TileExt::Mlt, TileType::Mvt) => Ok(Serve::AsMlt),
            (TileExt::Mvt | TileExt::Pbf, TileType::Mlt) => Ok(Serve::AsMvt),
            _ => Err(BadRequest::WrongType {
                ext: self.as_str(),
                tile_type: tile_type_name(tile_type),
            }),
        }
    }

    /// Whether the client's `Accept` can change the answer under this extension.
    pub fn negotiable(self) -> bool {
        matches!(self, TileExt::Mvt | TileExt::Pbf)
    }
}

/// How a tile request is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serve {
    /// The tile as the archive stores it.
    Stored,
    /// An MVT archive's tile transcoded to MLT.
    AsMlt,
    /// An MLT archive's tile transcoded to MVT.
    AsMvt,
}

/// The media type MLT tiles are served as (martin's, go-pmtiles' and MapLibre Native's).
pub const MLT_MEDIA_TYPE: &str = "application/vnd.maplibre-vector-tile";

/// Whether an `Accept` header asks for MLT over MVT: an MLT media type
/// (`application/vnd.maplibre-vector-tile`, or the shorter `application/vnd.maplibre-tile`)
/// with a quality above every MVT one (`application/vnd.mapbox-vector-tile`,
/// `application/x-protobuf`) and above `*/*`.
pub fn prefers_mlt(accept: Option<&str>) -> bool {
    let Some(accept) = accept else {
        return false;
    };
    let (mut mlt, mut other) = (0.0f32, 0.0f32);
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        // No q: 1. A q that is not a number from 0 to 1: the item is ignored (q 0).
        let q = match parts.find_map(|p| {
            let p = p.trim();
            p.strip_prefix("q=").or_else(|| p.strip_prefix("Q="))
        }) {
            None => 1.0,
            Some(q) => q
                .trim()
                .parse::<f32>()
                .ok()
                .filter(|q| (0.0..=1.0).contains(q))
                .unwrap_or(0.0),
        };
        match name.as_str() {
            "application/vnd.maplibre-vector-tile" | "application/vnd.maplibre-tile" => {
                mlt = mlt.max(q);
            }
            "application/vnd.mapbox-vector-tile"
            | "application/x-protobuf"
            | "*/*"
            | "application/*" => other = other.max(q),
            _ => {}
        }
    }
    mlt > 0.0 && mlt > other
}

/// The name of a tile type as TileJSON's `format` and the listing page use it.
pub fn tile_type_name(t: TileType) -> &'static str {
    match t {
        TileType::Mvt => "pbf",
        TileType::Png => "png",
        TileType::Jpeg => "jpg",
        TileType::Webp => "webp",
        TileType::Avif => "avif",
        TileType::Mlt => "mlt",
        TileType::Unknown | TileType::Other(_) => "unknown",
    }
}

/// The `Content-Type` of tiles of a type.
pub fn content_type(t: TileType) -> &'static str {
    match t {
        TileType::Mvt => "application/vnd.mapbox-vector-tile",
        TileType::Png => "image/png",
        TileType::Jpeg => "image/jpeg",
        TileType::Webp => "image/webp",
        TileType::Avif => "image/avif",
        TileType::Mlt => MLT_MEDIA_TYPE,
        TileType::Unknown | TileType::Other(_) => "application/octet-stream",
    }
}

/// A tile request: `{z}/{x}/{y}.{ext}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileRequest {
    pub z: u8,
    pub x: u32,
    pub y: u32,
    pub ext: TileExt,
}

fn coordinate(s: &str) -> Result<u32, BadRequest> {
    // Digits only: `u32::from_str` would also take a leading '+'.
    if s.is_empty() || s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BadRequest::Coordinate(s.to_string()));
    }
    s.parse().map_err(|_| BadRequest::Coordinate(s.to_string()))
}

impl TileRequest {
    pub fn parse(z: &str, x: &str, y_ext: &str) -> Result<TileRequest, BadRequest> {
        let (y, ext) = y_ext
            .rsplit_once('.')
            .ok_or_else(|| BadRequest::NoExtension(y_ext.to_string()))?;
        let ext = TileExt::parse(ext)?;
        let (z, x, y) = tile_coordinates(z, x, y)?;
        Ok(TileRequest { z, x, y, ext })
    }
}

/// A tile's `z`, `x` and `y` from a URL: whole numbers, `z` at most [`MAX_ZOOM`], `x` and `y`
/// inside the world at `z`.
pub fn tile_coordinates(z: &str, x: &str, y: &str) -> Result<(u8, u32, u32), BadRequest> {
    let zoom = coordinate(z)?;
    if zoom > u32::from(MAX_ZOOM) {
        return Err(BadRequest::Zoom(zoom));
    }
    let z = zoom as u8;
    let (x, y) = (coordinate(x)?, coordinate(y)?);
    let side = 1u64 << z;
    if u64::from(x) >= side || u64::from(y) >= side {
        return Err(BadRequest::OutOfWorld { z, x, y });
    }
    Ok((z, x, y))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn names() {
        for ok in ["fixtures", "a.b", "tracks-2024_v1", "ünïcode"] {
            assert_eq!(archive_name(ok), Ok(ok));
        }
        for bad in [
            "", ".", "..", "a/b", "../etc", "a\\b", "x\u{0}y", "x\ny", "a..b",
        ] {
            assert!(archive_name(bad).is_err(), "{bad:?}");
        }
        assert!(archive_name(&"x".repeat(256)).is_err());
    }

    #[test]
    fn paths() {
        for ok in ["public/roads", "profile/a@b.example/0f3e-11", "x"] {
            assert_eq!(archive_path(ok), Ok(ok));
        }
        for bad in [
            "",
            "/abs",
            "public/",
            "public//x",
            "public/../profile/bob/x",
            "public/..",
            "profile/a/./b",
            "profile/a\\b/c",
            "public/x\u{0}",
            "public/x\ny",
            "a/b/c/d/e",
        ] {
            assert!(archive_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tiles() {
        let t = TileRequest::parse("3", "7", "0.pbf").unwrap();
        assert_eq!((t.z, t.x, t.y, t.ext), (3, 7, 0, TileExt::Pbf));
        assert_eq!(
            TileRequest::parse("0", "0", "0.mvt").unwrap().ext,
            TileExt::Mvt
        );
        assert_eq!(
            TileRequest::parse("1", "2", "0.pbf"),
            Err(BadRequest::OutOfWorld { z: 1, x: 2, y: 0 })
        );
        assert_eq!(
            TileRequest::parse("31", "0", "0.pbf"),
            Err(BadRequest::Zoom(31))
        );
        assert!(matches!(
            TileRequest::parse("-1", "0", "0.pbf"),
            Err(BadRequest::Coordinate(_))
        ));
        assert!(matches!(
            TileRequest::parse("+1", "0", "0.pbf"),
            Err(BadRequest::Coordinate(_))
        ));
        assert!(matches!(
            TileRequest::parse("1", "0", "0"),
            Err(BadRequest::NoExtension(_))
        ));
        assert!(matches!(
            TileRequest::parse("1", "0", "0.gif"),
            Err(BadRequest::Extension(_))
        ));
        assert!(matches!(
            TileRequest::parse("99999999999", "0", "0.pbf"),
            Err(BadRequest::Coordinate(_))
        ));
        assert!(matches!(
            TileRequest::parse("1", "0", ".pbf"),
            Err(BadRequest::Coordinate(_))
        ));
        let big = TileRequest::parse("30", "1073741823", "1073741823.png").unwrap();
        assert_eq!(big.x, (1 << 30) - 1);
    }

    #[test]
    fn extension_matches_type() {
        assert_eq!(TileExt::Pbf.serve(TileType::Mvt, false), Ok(Serve::Stored));
        assert_eq!(TileExt::Mvt.serve(TileType::Mvt, false), Ok(Serve::Stored));
        assert!(TileExt::Png.serve(TileType::Mvt, false).is_err());
        assert_eq!(TileExt::Jpg.serve(TileType::Jpeg, true), Ok(Serve::Stored));
        assert!(TileExt::Pbf.serve(TileType::Png, false).is_err());
        assert!(TileExt::Mlt.serve(TileType::Png, false).is_err());
        assert_eq!(
            TileExt::Webp.serve(TileType::Webp, false),
            Ok(Serve::Stored)
        );
        // The two vector encodings, either way.
        assert_eq!(TileExt::Mlt.serve(TileType::Mlt, false), Ok(Serve::Stored));
        assert_eq!(TileExt::Mlt.serve(TileType::Mvt, false), Ok(Serve::AsMlt));
        assert_eq!(TileExt::Pbf.serve(TileType::Mvt, true), Ok(Serve::AsMlt));
        assert_eq!(TileExt::Pbf.serve(TileType::Mlt, false), Ok(Serve::AsMvt));
        assert!(TileExt::Pbf.negotiable() && !TileExt::Mlt.negotiable());
    }

    #[test]
    fn accept_for_mlt() {
        for yes in [
            "application/vnd.maplibre-vector-tile",
            "application/vnd.maplibre-tile, application/x-protobuf;q=0.5",
            "APPLICATION/VND.MAPLIBRE-TILE;q=0.9, */*;q=0.1",
        ] {
            assert!(prefers_mlt(Some(yes)), "{yes}");
        }
        for no in [
            "",
            "*/*",
            "application/x-protobuf",
            "application/vnd.maplibre-tile;q=0",
            "application/vnd.maplibre-tile;q=0.5, application/vnd.mapbox-vector-tile",
            "application/vnd.maplibre-tile;q=0.5, */*",
            "application/vnd.maplibre-tile;q=nan",
        ] {
            assert!(!prefers_mlt(Some(no)), "{no}");
        }
        assert!(!prefers_mlt(None));
    }

    proptest::proptest! {
        // Whatever a URL holds, parsing answers Ok or a 400, never panics, and an Ok is a tile
        // that exists.
        #[test]
        fn parsing_never_panics(z in ".{0,12}", x in ".{0,12}", y in ".{0,16}", name in ".{0,40}") {
            if let Ok(t) = TileRequest::parse(&z, &x, &y) {
                proptest::prop_assert!(t.z <= MAX_ZOOM);
                proptest::prop_assert!(u64::from(t.x) < 1u64 << t.z && u64::from(t.y) < 1u64 << t.z);
            }
            if let Ok(n) = archive_name(&name) {
                proptest::prop_assert!(!n.contains('/') && !n.contains(".."));
            }
        }
    }
}
