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
    #[error("bad tile coordinate {0:?}: expected a whole number")]
    Coordinate(String),
    #[error("zoom {0} is beyond the largest zoom 30")]
    Zoom(u32),
    #[error("tile {z}/{x}/{y} does not exist: x and y must be below 2^{z}")]
    OutOfWorld { z: u8, x: u32, y: u32 },
    #[error("unknown tile extension {0:?} (expected mvt, pbf, png, jpg, jpeg or webp)")]
    Extension(String),
    #[error("missing tile extension in {0:?} (expected y.mvt, y.pbf, y.png, y.jpg or y.webp)")]
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

/// The tile formats a URL may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TileExt {
    Mvt,
    Pbf,
    Png,
    Jpg,
    Webp,
}

impl TileExt {
    pub fn parse(ext: &str) -> Result<TileExt, BadRequest> {
        match ext {
            "mvt" => Ok(TileExt::Mvt),
            "pbf" => Ok(TileExt::Pbf),
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
            TileExt::Png => "png",
            TileExt::Jpg => "jpg",
            TileExt::Webp => "webp",
        }
    }

    /// Whether tiles of `tile_type` may be served under this extension.
    pub fn check(self, tile_type: TileType) -> Result<(), BadRequest> {
        let ok = matches!(
            (self, tile_type),
            (TileExt::Mvt | TileExt::Pbf, TileType::Mvt)
                | (TileExt::Png, TileType::Png)
                | (TileExt::Jpg, TileType::Jpeg)
                | (TileExt::Webp, TileType::Webp)
        );
        if ok {
            Ok(())
        } else {
            Err(BadRequest::WrongType {
                ext: self.as_str(),
                tile_type: tile_type_name(tile_type),
            })
        }
    }
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
        TileType::Mlt | TileType::Unknown | TileType::Other(_) => "application/octet-stream",
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
        Ok(TileRequest { z, x, y, ext })
    }
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
        assert!(TileExt::Pbf.check(TileType::Mvt).is_ok());
        assert!(TileExt::Mvt.check(TileType::Mvt).is_ok());
        assert!(TileExt::Png.check(TileType::Mvt).is_err());
        assert!(TileExt::Jpg.check(TileType::Jpeg).is_ok());
        assert!(TileExt::Pbf.check(TileType::Png).is_err());
        assert!(TileExt::Webp.check(TileType::Webp).is_ok());
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
