//! Which tiles a point or a box falls in at a zoom (what `@mapbox/tilebelt`'s `pointToTile` and
//! `@mapbox/tile-cover` answer for CloudTAK's `/query` and `/features`).

/// The latitude limit of Web Mercator.
pub const MAX_LAT: f64 = 85.051_128_779_806_59;

/// The tile column of a longitude at zoom `z`: longitudes wrap around the antimeridian.
fn column(lon: f64, z: u8) -> u32 {
    let n = (1u64 << z) as f64;
    let wrapped = (lon + 180.0).rem_euclid(360.0) / 360.0;
    ((wrapped * n).floor() as u64).min((1u64 << z) - 1) as u32
}

/// The tile row of a latitude at zoom `z` (clamped to the Web Mercator range).
fn row(lat: f64, z: u8) -> u32 {
    let n = (1u64 << z) as f64;
    let r = lat.clamp(-MAX_LAT, MAX_LAT).to_radians();
    let wy = (1.0 - (r.tan() + 1.0 / r.cos()).ln() / std::f64::consts::PI) / 2.0;
    ((wy * n).floor().max(0.0) as u64).min((1u64 << z) - 1) as u32
}

/// The tile `(x, y)` holding a point at zoom `z` (at most 30). Finite coordinates only.
pub fn point_tile(lon: f64, lat: f64, z: u8) -> (u32, u32) {
    (column(lon, z), row(lat, z))
}

/// Why a box cannot be answered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoverError {
    #[error("Invalid BBOX: expected minX,minY,maxX,maxY with minX <= maxX and minY <= maxY")]
    Inverted,
    #[error(
        "the bbox covers {tiles} tiles at zoom {zoom}; at most {limit} are read: use a smaller bbox or a lower zoom"
    )]
    TooMany { tiles: u64, zoom: u8, limit: u64 },
}

/// The tiles `(x, y)` a box `[min_lon, min_lat, max_lon, max_lat]` covers at zoom `z`, at most
/// `limit` of them (more: an error, counted without listing them). Longitudes are clamped to
/// ±180, so a box does not cross the antimeridian.
pub fn bbox_tiles(bbox: [f64; 4], z: u8, limit: u64) -> Result<Vec<(u32, u32)>, CoverError> {
    let [min_lon, min_lat, max_lon, max_lat] = bbox;
    if min_lon > max_lon || min_lat > max_lat {
        return Err(CoverError::Inverted);
    }
    // No wrapping here: 180 is the east edge of the last column, not the west edge of the first.
    let edge = |lon: f64| {
        let n = (1u64 << z) as f64;
        let w = (lon.clamp(-180.0, 180.0) + 180.0) / 360.0;
        ((w * n).floor() as u64).min((1u64 << z) - 1) as u32
    };
    let (x0, x1) = (edge(min_lon), edge(max_lon));
    // North is the smaller row.
    let (y0, y1) = (row(max_lat, z), row(min_lat, z));
    let tiles = (u64::from(x1 - x0) + 1) * (u64::from(y1 - y0) + 1);
    if tiles > limit {
        return Err(CoverError::TooMany {
            tiles,
            zoom: z,
            limit,
        });
    }
    let mut out = Vec::with_capacity(tiles as usize);
    for x in x0..=x1 {
        for y in y0..=y1 {
            out.push((x, y));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn points() {
        assert_eq!(point_tile(0.0, 0.0, 0), (0, 0));
        assert_eq!(point_tile(-0.1, 0.1, 1), (0, 0));
        assert_eq!(point_tile(0.1, -0.1, 1), (1, 1));
        assert_eq!(point_tile(180.0, 0.0, 2), (0, 2), "180 wraps to -180");
        assert_eq!(point_tile(-180.0, 90.0, 3), (0, 0));
        assert_eq!(point_tile(179.99, -90.0, 3), (7, 7));
        // Boulder, CO at z14.
        assert_eq!(point_tile(-105.2705, 40.015, 14), (3401, 6201));
    }

    #[test]
    fn boxes() {
        assert_eq!(bbox_tiles([-1.0, -1.0, 1.0, 1.0], 1, 64).unwrap().len(), 4);
        assert_eq!(
            bbox_tiles([-180.0, -90.0, 180.0, 90.0], 0, 64).unwrap(),
            vec![(0, 0)]
        );
        assert_eq!(
            bbox_tiles([10.0, 10.0, 10.1, 10.1], 5, 64).unwrap(),
            vec![point_tile(10.0, 10.0, 5)]
        );
        assert_eq!(
            bbox_tiles([-180.0, -85.0, 180.0, 85.0], 4, 64),
            Err(CoverError::TooMany {
                tiles: 256,
                zoom: 4,
                limit: 64
            })
        );
        assert_eq!(
            bbox_tiles([1.0, 0.0, 0.0, 1.0], 4, 64),
            Err(CoverError::Inverted)
        );
        // The whole world at zoom 30 is counted, never listed.
        assert!(matches!(
            bbox_tiles([-180.0, -85.0, 180.0, 85.0], 30, 64),
            Err(CoverError::TooMany { .. })
        ));
    }
}
