//! Douglas–Peucker simplification in tile units that keeps MVT polygons valid.

use super::{TileGeom, WorldGeom, clean_ring, ring_area2};

/// A vertex that Douglas–Peucker can measure: tile (`i32`) or world (`i64`) coordinates.
trait Vertex: Copy + PartialEq {
    fn xy(self) -> (f64, f64);
}

impl Vertex for [i32; 2] {
    fn xy(self) -> (f64, f64) {
        (f64::from(self[0]), f64::from(self[1]))
    }
}

impl Vertex for [i64; 2] {
    fn xy(self) -> (f64, f64) {
        // World coordinates are below 2^53, where f64 is exact.
        (self[0] as f64, self[1] as f64)
    }
}

/// Douglas–Peucker with `tolerance` in tile units.
///
/// Keeps ring closure and winding; never yields a ring with < 4 points or zero area: such rings
/// are dropped, and so is a ring whose winding flipped (it would have self-intersected), and a
/// polygon whose exterior is dropped is dropped with its holes. This is what makes small
/// polygons vanish at low zooms instead of turning into slivers. A tolerance of 0 (or a negative
/// or NaN one) is a no-op. Points are never simplified.
pub fn simplify(g: &TileGeom, tolerance: f64) -> Option<TileGeom> {
    if tolerance.is_nan() || tolerance <= 0.0 {
        return Some(g.clone());
    }
    let tol2 = tolerance * tolerance;
    match g {
        TileGeom::Points(p) => (!p.is_empty()).then(|| TileGeom::Points(p.clone())),
        TileGeom::Lines(lines) => simplify_lines(lines, tol2).map(TileGeom::Lines),
        TileGeom::Polygons(polys) => simplify_polygons(polys, tol2).map(TileGeom::Polygons),
    }
}

/// [`simplify`] in world coordinates, with `tolerance` in world units: the tiler simplifies a
/// feature once per zoom before cutting it into tiles, so neighbouring tiles see the same
/// simplified edges (no seams) and a huge polygon is thinned once, not once per tile.
pub fn simplify_world(g: &WorldGeom, tolerance: f64) -> Option<WorldGeom> {
    if tolerance.is_nan() || tolerance <= 0.0 {
        return Some(g.clone());
    }
    let tol2 = tolerance * tolerance;
    match g {
        WorldGeom::Points(p) => (!p.is_empty()).then(|| WorldGeom::Points(p.clone())),
        WorldGeom::Lines(lines) => simplify_lines(lines, tol2).map(WorldGeom::Lines),
        WorldGeom::Polygons(polys) => simplify_polygons(polys, tol2).map(WorldGeom::Polygons),
    }
}

/// Simplifies each line; lines left with < 2 distinct points go. `None` when none is left.
fn simplify_lines<T>(lines: &[Vec<[T; 2]>], tol2: f64) -> Option<Vec<Vec<[T; 2]>>>
where
    [T; 2]: Vertex,
{
    let out: Vec<Vec<[T; 2]>> = lines
        .iter()
        .filter_map(|l| {
            let mut s = douglas_peucker(l, tol2);
            s.dedup();
            (s.len() >= 2).then_some(s)
        })
        .collect();
    (!out.is_empty()).then_some(out)
}

/// Simplifies each polygon's rings; a polygon whose exterior goes is dropped with its holes.
fn simplify_polygons<T>(polys: &[Vec<Vec<[T; 2]>>], tol2: f64) -> Option<Vec<Vec<Vec<[T; 2]>>>>
where
    T: Copy + PartialEq + Into<i64>,
    [T; 2]: Vertex,
{
    let out: Vec<Vec<Vec<[T; 2]>>> = polys
        .iter()
        .filter_map(|poly| {
            let mut rings = poly.iter();
            let ext = simplify_ring(rings.next()?, tol2)?;
            let mut out = vec![ext];
            out.extend(rings.filter_map(|r| simplify_ring(r, tol2)));
            Some(out)
        })
        .collect();
    (!out.is_empty()).then_some(out)
}

fn simplify_ring<T>(ring: &[[T; 2]], tol2: f64) -> Option<Vec<[T; 2]>>
where
    T: Copy + PartialEq + Into<i64>,
    [T; 2]: Vertex,
{
    let sign = ring_area2(ring).signum();
    if sign == 0 || ring.len() < 4 {
        return None;
    }
    // Douglas–Peucker needs two distinct anchors: split the closed ring at its first vertex and
    // the vertex farthest from it, and simplify both halves.
    let first = ring[0];
    let far = ring
        .iter()
        .enumerate()
        .max_by(|a, b| dist2(first, *a.1).total_cmp(&dist2(first, *b.1)))
        .map_or(0, |(i, _)| i);
    let mut out = douglas_peucker(&ring[..=far], tol2);
    let second = douglas_peucker(&ring[far..], tol2);
    out.extend(second.into_iter().skip(1));
    let out = clean_ring(out)?;
    (ring_area2(&out).signum() == sign).then_some(out)
}

fn dist2<V: Vertex>(a: V, b: V) -> f64 {
    let ((ax, ay), (bx, by)) = (a.xy(), b.xy());
    let (dx, dy) = (ax - bx, ay - by);
    dx * dx + dy * dy
}

/// Squared distance from `p` to the segment a–b.
fn seg_dist2<V: Vertex>(p: V, a: V, b: V) -> f64 {
    let ((px, py), (ax, ay), (bx, by)) = (p.xy(), a.xy(), b.xy());
    let (dx, dy) = (bx - ax, by - ay);
    let len2 = dx * dx + dy * dy;
    if len2 == 0.0 {
        return dist2(p, a);
    }
    let t = (((px - ax) * dx + (py - ay) * dy) / len2).clamp(0.0, 1.0);
    let (cx, cy) = (ax + t * dx, ay + t * dy);
    let (ex, ey) = (px - cx, py - cy);
    ex * ex + ey * ey
}

/// Iterative (explicit stack) so that a line of millions of points cannot overflow the call stack.
fn douglas_peucker<V: Vertex>(pts: &[V], tol2: f64) -> Vec<V> {
    if pts.len() <= 2 {
        return pts.to_vec();
    }
    let mut keep = vec![false; pts.len()];
    keep[0] = true;
    keep[pts.len() - 1] = true;
    let mut stack = vec![(0usize, pts.len() - 1)];
    while let Some((lo, hi)) = stack.pop() {
        if hi <= lo + 1 {
            continue;
        }
        let (mut best, mut best_d) = (lo, -1.0f64);
        for (i, &p) in pts.iter().enumerate().take(hi).skip(lo + 1) {
            let d = seg_dist2(p, pts[lo], pts[hi]);
            if d > best_d {
                best = i;
                best_d = d;
            }
        }
        if best_d > tol2 {
            keep[best] = true;
            stack.push((lo, best));
            stack.push((best, hi));
        }
    }
    pts.iter()
        .zip(keep)
        .filter_map(|(&p, k)| k.then_some(p))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_tolerance_is_noop() {
        let g = TileGeom::Lines(vec![vec![[0, 0], [1, 0], [2, 0]]]);
        assert_eq!(simplify(&g, 0.0), Some(g));
    }

    #[test]
    fn collinear_points_removed() {
        let g = TileGeom::Lines(vec![vec![[0, 0], [1, 0], [2, 0], [3, 1], [4, 0]]]);
        assert_eq!(
            simplify(&g, 2.0),
            Some(TileGeom::Lines(vec![vec![[0, 0], [4, 0]]]))
        );
    }

    #[test]
    fn tiny_ring_dropped() {
        let g = TileGeom::Polygons(vec![vec![vec![[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]]);
        assert_eq!(simplify(&g, 5.0), None);
    }
}
