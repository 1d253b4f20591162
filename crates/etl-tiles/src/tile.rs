//! Tile coordinates, the PMTiles Hilbert tile id, Web Mercator world coordinates.
//!
//! World coordinates are integers so that clipping and MVT quantisation are exact and
//! reproducible across machines; 32 bits per axis (as tippecanoe uses) leave 14 bits of
//! 4096-extent detail below zoom 18 and stay below 2^32, so products fit in `i64`.

/// The deepest zoom whose tile ids still fit in a `u64` (PMTiles v3 allows 0..=31).
pub const MAX_ZOOM: u8 = 31;

/// Bits per axis of world coordinates: both axes span `[0, 2^WORLD_BITS)`.
pub const WORLD_BITS: u32 = 32;

/// The largest latitude Web Mercator maps into a square world.
pub const MAX_LAT: f64 = 85.051_128_78;

const WORLD_SIZE: f64 = (1u64 << WORLD_BITS) as f64;
const WORLD_MAX: i64 = (1i64 << WORLD_BITS) - 1;

/// A tile address in the XYZ scheme (y grows southwards).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TileCoord {
    pub z: u8,
    pub x: u32,
    pub y: u32,
}

impl TileCoord {
    /// A tile, or `None` when the zoom exceeds [`MAX_ZOOM`] or x/y fall outside the zoom's grid.
    pub fn new(z: u8, x: u32, y: u32) -> Option<TileCoord> {
        if z > MAX_ZOOM {
            return None;
        }
        let n = 1u64 << z;
        (u64::from(x) < n && u64::from(y) < n).then_some(TileCoord { z, x, y })
    }
}

impl std::fmt::Display for TileCoord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "z{}/{}/{}", self.z, self.x, self.y)
    }
}

/// The first tile id of zoom `z`: the number of tiles in all lower zooms, `(4^z - 1) / 3`.
/// Valid for `z <= 32` (the value for 32 is one past the last valid id).
fn first_id(z: u8) -> u64 {
    // u128 because 4^32 does not fit in u64; the quotient does.
    (((1u128 << (2 * u32::from(z))) - 1) / 3) as u64
}

/// One past the largest valid tile id (the first id of zoom 32).
pub const TILE_ID_END: u64 = 6_148_914_691_236_517_205;

/// PMTiles v3 tile id: tiles of all lower zooms first, then the Hilbert index within the zoom.
pub fn tile_id(c: TileCoord) -> u64 {
    // Hilbert curve xy -> d, the iterative form from Wikipedia that the PMTiles reference
    // implementations use, so ids match other writers bit for bit.
    let n: u64 = 1u64 << c.z;
    let (mut x, mut y) = (u64::from(c.x), u64::from(c.y));
    let mut d: u64 = 0;
    let mut s = n / 2;
    while s > 0 {
        let rx = u64::from(x & s > 0);
        let ry = u64::from(y & s > 0);
        d += s * s * ((3 * rx) ^ ry);
        if ry == 0 {
            if rx == 1 {
                x = n - 1 - x;
                y = n - 1 - y;
            }
            std::mem::swap(&mut x, &mut y);
        }
        s /= 2;
    }
    first_id(c.z) + d
}

/// The tile of a PMTiles v3 tile id, or `None` when the id is beyond zoom [`MAX_ZOOM`].
pub fn tile_coord(id: u64) -> Option<TileCoord> {
    if id >= TILE_ID_END {
        return None;
    }
    // The zoom is the largest z with first_id(z) <= id; at most 32 steps.
    let mut z: u8 = 0;
    while z < MAX_ZOOM && first_id(z + 1) <= id {
        z += 1;
    }
    let n: u64 = 1u64 << z;
    let mut t = id - first_id(z);
    let (mut x, mut y) = (0u64, 0u64);
    let mut s: u64 = 1;
    while s < n {
        let rx = 1 & (t / 2);
        let ry = 1 & (t ^ rx);
        if ry == 0 {
            if rx == 1 {
                x = s - 1 - x;
                y = s - 1 - y;
            }
            std::mem::swap(&mut x, &mut y);
        }
        x += s * rx;
        y += s * ry;
        t /= 4;
        s *= 2;
    }
    // x, y < 2^31 by construction, so the conversions cannot fail; `?` keeps this panic-free.
    TileCoord::new(z, u32::try_from(x).ok()?, u32::try_from(y).ok()?)
}

/// The zoom of a tile id without computing x/y, or `None` when the id is invalid.
pub fn tile_zoom(id: u64) -> Option<u8> {
    if id >= TILE_ID_END {
        return None;
    }
    let mut z: u8 = 0;
    while z < MAX_ZOOM && first_id(z + 1) <= id {
        z += 1;
    }
    Some(z)
}

/// The first tile id of zoom `z` (`None` beyond [`MAX_ZOOM`]).
pub fn zoom_first_id(z: u8) -> Option<u64> {
    (z <= MAX_ZOOM).then(|| first_id(z))
}

/// Web Mercator world coordinates of a longitude/latitude in degrees.
///
/// Latitude is clamped to ±[`MAX_LAT`] and longitude to ±180; the result is in
/// `[0, 2^32 - 1]` on both axes (x east, y south). NaN maps to 0.
pub fn lonlat_to_world(lon: f64, lat: f64) -> (i64, i64) {
    let lon = lon.clamp(-180.0, 180.0);
    let lat = lat.clamp(-MAX_LAT, MAX_LAT);
    let x = (lon + 180.0) / 360.0 * WORLD_SIZE;
    let lat_r = lat.to_radians();
    let y =
        (1.0 - (lat_r.tan() + 1.0 / lat_r.cos()).ln() / std::f64::consts::PI) / 2.0 * WORLD_SIZE;
    // Rounding (not truncation) halves the worst-case error; the clamp keeps lon = 180 and
    // lat = -MAX_LAT inside the half-open world. `as` saturates and maps NaN to 0.
    (
        (x.round() as i64).clamp(0, WORLD_MAX),
        (y.round() as i64).clamp(0, WORLD_MAX),
    )
}

/// Longitude/latitude in degrees of world coordinates (inverse of [`lonlat_to_world`]).
/// Values outside the world extrapolate the projection rather than wrap.
pub fn world_to_lonlat(x: i64, y: i64) -> (f64, f64) {
    let lon = x as f64 / WORLD_SIZE * 360.0 - 180.0;
    let n = std::f64::consts::PI * (1.0 - 2.0 * y as f64 / WORLD_SIZE);
    let lat = n.sinh().atan().to_degrees();
    (lon, lat)
}

/// The world-coordinate bounds `[min_x, min_y, max_x, max_y)` of a tile, grown on every side by
/// `buffer` units of a tile whose side is `extent` units (buffer 5 of extent 4096 grows the tile
/// by 5/4096 of its size). An `extent` of 0 means no buffer.
pub fn tile_bounds(c: TileCoord, extent: u32, buffer: u32) -> [i64; 4] {
    // Zooms above 32 cannot come from a valid TileCoord; saturate instead of shifting out.
    let size: i128 = 1i128 << WORLD_BITS.saturating_sub(u32::from(c.z.min(32)));
    let grow: i128 = if extent == 0 {
        0
    } else {
        size * i128::from(buffer) / i128::from(extent)
    };
    let min_x = i128::from(c.x) * size;
    let min_y = i128::from(c.y) * size;
    let clamp = |v: i128| -> i64 { v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64 };
    [
        clamp(min_x - grow),
        clamp(min_y - grow),
        clamp(min_x + size + grow),
        clamp(min_y + size + grow),
    ]
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn spec_known_ids() {
        assert_eq!(tile_id(TileCoord::new(0, 0, 0).unwrap()), 0);
        let z1: Vec<u64> = [(0, 0), (0, 1), (1, 1), (1, 0)]
            .iter()
            .map(|&(x, y)| tile_id(TileCoord::new(1, x, y).unwrap()))
            .collect();
        assert_eq!(z1, vec![1, 2, 3, 4]);
        for z in 0..=MAX_ZOOM {
            let first = ((4u128.pow(u32::from(z)) - 1) / 3) as u64;
            assert_eq!(tile_id(TileCoord::new(z, 0, 0).unwrap()), first, "z{z}");
            assert_eq!(tile_coord(first), TileCoord::new(z, 0, 0));
            assert_eq!(tile_zoom(first), Some(z));
        }
        // Values from the PMTiles reference implementation's tests.
        assert_eq!(tile_id(TileCoord::new(2, 0, 0).unwrap()), 5);
        assert_eq!(tile_id(TileCoord::new(2, 3, 0).unwrap()), 20);
        assert_eq!(tile_id(TileCoord::new(12, 3423, 1763).unwrap()), 19_078_479);
    }

    #[test]
    fn last_ids_and_out_of_range() {
        let last = TILE_ID_END - 1;
        let c = tile_coord(last).unwrap();
        assert_eq!(c.z, 31);
        assert_eq!(tile_id(c), last);
        assert_eq!(tile_coord(TILE_ID_END), None);
        assert_eq!(tile_coord(u64::MAX), None);
        assert_eq!(tile_zoom(u64::MAX), None);
        assert_eq!(first_id(32), TILE_ID_END);
    }

    #[test]
    fn new_rejects_out_of_grid() {
        assert!(TileCoord::new(0, 0, 0).is_some());
        assert!(TileCoord::new(0, 1, 0).is_none());
        assert!(TileCoord::new(3, 7, 8).is_none());
        assert!(TileCoord::new(31, (1 << 31) - 1, 0).is_some());
        assert!(TileCoord::new(31, 1 << 31, 0).is_none());
        assert!(TileCoord::new(32, 0, 0).is_none());
    }

    #[test]
    fn round_trip_exhaustive_z0_to_z8() {
        let mut expected = 0u64;
        for z in 0..=8u8 {
            let n = 1u32 << z;
            let mut seen = vec![false; (n as usize) * (n as usize)];
            for x in 0..n {
                for y in 0..n {
                    let c = TileCoord::new(z, x, y).unwrap();
                    let id = tile_id(c);
                    assert_eq!(tile_coord(id), Some(c));
                    let local = (id - first_id(z)) as usize;
                    assert!(!seen[local], "duplicate id {id}");
                    seen[local] = true;
                }
            }
            assert!(seen.iter().all(|&s| s));
            expected += u64::from(n) * u64::from(n);
            assert_eq!(first_id(z + 1), expected);
        }
    }

    #[test]
    fn hilbert_neighbours_are_adjacent() {
        // Consecutive ids within a zoom are edge-adjacent tiles: the property that makes
        // clustered archives read well.
        for z in 1..=6u8 {
            let n = 1u64 << (2 * z);
            for i in 0..n - 1 {
                let a = tile_coord(first_id(z) + i).unwrap();
                let b = tile_coord(first_id(z) + i + 1).unwrap();
                let d = a.x.abs_diff(b.x) + a.y.abs_diff(b.y);
                assert_eq!(d, 1, "{a} -> {b}");
            }
        }
    }

    #[test]
    fn world_corners() {
        assert_eq!(lonlat_to_world(-180.0, MAX_LAT), (0, 0));
        assert_eq!(lonlat_to_world(180.0, -MAX_LAT), (WORLD_MAX, WORLD_MAX));
        assert_eq!(lonlat_to_world(-200.0, 90.0), (0, 0));
        assert_eq!(lonlat_to_world(0.0, 0.0), (1 << 31, 1 << 31));
        assert_eq!(lonlat_to_world(f64::NAN, f64::NAN), (0, 0));
        let (lon, lat) = world_to_lonlat(1 << 31, 1 << 31);
        assert!(lon.abs() < 1e-12 && lat.abs() < 1e-12);
    }

    #[test]
    fn bounds_of_tiles() {
        let z0 = TileCoord::new(0, 0, 0).unwrap();
        assert_eq!(tile_bounds(z0, 4096, 0), [0, 0, 1 << 32, 1 << 32]);
        let b = tile_bounds(z0, 4096, 5);
        let g = (1i64 << 32) * 5 / 4096;
        assert_eq!(b, [-g, -g, (1 << 32) + g, (1 << 32) + g]);
        let c = TileCoord::new(2, 1, 3).unwrap();
        assert_eq!(
            tile_bounds(c, 4096, 0),
            [1 << 30, 3 << 30, 2 << 30, 4 << 30]
        );
        assert_eq!(tile_bounds(c, 0, 99), tile_bounds(c, 4096, 0));
        let deep = TileCoord::new(31, 5, 6).unwrap();
        assert_eq!(tile_bounds(deep, 4096, 4096), [8, 10, 14, 16]);
        // No overflow with absurd buffers.
        let _ = tile_bounds(z0, 1, u32::MAX);
    }

    proptest! {
        #[test]
        fn round_trip_random(z in 9u8..=31, xs in any::<u32>(), ys in any::<u32>()) {
            let mask = ((1u64 << z) - 1) as u32;
            let c = TileCoord::new(z, xs & mask, ys & mask).unwrap();
            let id = tile_id(c);
            prop_assert!(id >= first_id(z) && id < first_id(z + 1));
            prop_assert_eq!(tile_coord(id), Some(c));
        }

        #[test]
        fn id_round_trip_random(id in 0u64..TILE_ID_END) {
            let c = tile_coord(id).unwrap();
            prop_assert_eq!(tile_id(c), id);
            prop_assert_eq!(tile_zoom(id), Some(c.z));
        }

        #[test]
        fn lonlat_round_trip(lon in -180.0f64..180.0, lat in -MAX_LAT..MAX_LAT) {
            let (x, y) = lonlat_to_world(lon, lat);
            prop_assert!((0..=WORLD_MAX).contains(&x) && (0..=WORLD_MAX).contains(&y));
            let (lon2, lat2) = world_to_lonlat(x, y);
            prop_assert!((lon - lon2).abs() < 1e-7, "lon {} -> {}", lon, lon2);
            prop_assert!((lat - lat2).abs() < 1e-7, "lat {} -> {}", lat, lat2);
        }

        #[test]
        fn bounds_contain_children(z in 0u8..31, xs in any::<u32>(), ys in any::<u32>()) {
            let mask = ((1u64 << z) - 1) as u32;
            let p = TileCoord::new(z, xs & mask, ys & mask).unwrap();
            let pb = tile_bounds(p, 4096, 0);
            let child = TileCoord::new(z + 1, p.x * 2 + 1, p.y * 2).unwrap();
            let cb = tile_bounds(child, 4096, 0);
            prop_assert!(pb[0] <= cb[0] && pb[1] <= cb[1] && cb[2] <= pb[2] && cb[3] <= pb[3]);
        }
    }
}
