//! Projecting, clipping and simplifying geometries for tiles.
//!
//! The pipeline per feature and tile is `project` (once per feature) → `clip` (per tile, in
//! world coordinates, so neighbouring tiles cut at exactly the same integer points) →
//! `to_tile` (scale to extent units, fix MVT winding, rebuild what simplification, clipping and
//! rounding made invalid: `valid`) → `simplify` (in tile units, where the tolerance means
//! "pixels").
//!
//! All coordinates are integers: world coordinates are `i64` and tile coordinates `i32`, so there
//! is no NaN to propagate and every intermediate product is computed in `i128`.

mod clip;
mod project;
mod simplify;
mod valid;

pub use clip::{Cover, clip, cover};
pub use project::{project, to_tile};
pub use simplify::{simplify, simplify_world};
pub(crate) use valid::valid_polygons;

/// A geometry in world coordinates (i64 so buffered tiles can extend past the world edge).
#[derive(Debug, Clone, PartialEq)]
pub enum WorldGeom {
    /// One or more points.
    Points(Vec<[i64; 2]>),
    /// One or more line strings.
    Lines(Vec<Vec<[i64; 2]>>),
    /// Each polygon: exterior ring then holes, rings closed (first point == last point).
    Polygons(Vec<Vec<Vec<[i64; 2]>>>),
}

/// Tile-local integer geometry for MVT: coordinates relative to the tile's top-left in extent
/// units (can be negative / > extent inside the buffer).
#[derive(Debug, Clone, PartialEq)]
pub enum TileGeom {
    /// One or more points.
    Points(Vec<[i32; 2]>),
    /// One or more line strings.
    Lines(Vec<Vec<[i32; 2]>>),
    /// Each polygon: exterior ring (positive MVT area) then holes (negative), rings closed.
    Polygons(Vec<Vec<Vec<[i32; 2]>>>),
}

/// Twice the signed area of a ring by the MVT 2.1 formula (`Σ x_i·y_{i+1} − x_{i+1}·y_i`):
/// positive means clockwise on screen (y down), i.e. an exterior ring.
///
/// Coordinates are taken relative to the first vertex so that the products stay small, and the
/// sum saturates: only the sign and zero-ness are ever used, and saturation keeps both for any
/// ring that fits in memory.
pub(crate) fn ring_area2<T: Copy + Into<i64>>(ring: &[[T; 2]]) -> i128 {
    let Some(first) = ring.first() else {
        return 0;
    };
    let (ox, oy) = (i128::from(first[0].into()), i128::from(first[1].into()));
    let mut sum: i128 = 0;
    for w in ring.windows(2) {
        let (x0, y0) = (
            i128::from(w[0][0].into()) - ox,
            i128::from(w[0][1].into()) - oy,
        );
        let (x1, y1) = (
            i128::from(w[1][0].into()) - ox,
            i128::from(w[1][1].into()) - oy,
        );
        sum = sum.saturating_add(x0 * y1 - x1 * y0);
    }
    // The closing edge back to the first vertex contributes 0 relative to the first vertex.
    sum
}

/// Normalises a ring: closes it, removes consecutive duplicates, and returns `None` when fewer
/// than 3 distinct vertices or zero area remain (such a ring draws nothing and breaks renderers).
pub(crate) fn clean_ring<T>(mut ring: Vec<[T; 2]>) -> Option<Vec<[T; 2]>>
where
    T: Copy + PartialEq + Into<i64>,
{
    // Rounding and clipping create consecutive duplicates.
    ring.dedup();
    // Work on the open ring so that a duplicated closing point is not counted as a vertex.
    while ring.len() > 1 && ring.first() == ring.last() {
        ring.pop();
    }
    if ring.len() < 3 {
        return None;
    }
    let first = *ring.first()?;
    ring.push(first);
    if ring_area2(&ring) == 0 {
        return None;
    }
    Some(ring)
}
