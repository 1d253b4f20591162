//! Valid tile polygons: what simplification, clipping and rounding to the tile grid break is
//! rebuilt here, on the tile's own integer grid, so the encoded polygon is what the MVT spec
//! asks for (rings that neither cross nor touch themselves, exteriors positive by the spec's
//! area formula, holes negative).
//!
//! Douglas–Peucker can make a ring cross itself or its holes, clipping to the buffered tile
//! leaves zero-width bridges along the tile edge (a ring that runs out along the edge and back
//! the same way), and rounding to extent units can fold thin parts over. The rebuild is
//! i_overlay's integer overlay (exact arithmetic, no new coordinates off the grid) of the
//! feature's rings as `to_tile` oriented them (exteriors +1, holes −1) under the *positive*
//! fill rule, with OGC extraction: what exteriors cover and no hole takes away. A hole that
//! rounding pushed over its exterior's edge becomes a notch (its outer part, winding −1, is not
//! filled), overlapping parts merge, a bridge vanishes, and a ring that crosses itself keeps its
//! lobes of positive winding (the small lobes of opposite winding that simplification twists
//! out are left out). A single ring that is already simple and correctly wound is checked by
//! i_overlay's fast path and kept exactly as it is; rings with holes and multipolygons always go
//! through the overlay, which drops collinear vertices.

use i_overlay::core::fill_rule::FillRule;
use i_overlay::core::overlay::{ContourDirection, IntOverlayOptions, Overlay};
use i_overlay::core::solver::Solver;
use i_overlay::i_float::int::point::IntPoint;

use super::{clean_ring, ring_area2};

type Ring = Vec<[i32; 2]>;
type Polygon = Vec<Ring>;

/// The largest coordinate magnitude handed to the overlay: its products must stay far from
/// `i64`'s range. Tile coordinates are within the buffered extent (a few thousand units); only
/// a caller passing unclipped world-sized geometry gets past this, and that is left as it is.
const MAX_COORD: u32 = 1 << 28;

/// `polygons` (closed rings, exterior first, in MVT orientation) as valid polygons covering
/// what the exteriors cover less what the holes take away (see the module doc). A single
/// simple ring comes back unchanged.
pub(crate) fn valid_polygons(polygons: Vec<Polygon>) -> Vec<Polygon> {
    let in_range = polygons
        .iter()
        .flatten()
        .flatten()
        .all(|p| p[0].unsigned_abs() <= MAX_COORD && p[1].unsigned_abs() <= MAX_COORD);
    if !in_range || polygons.is_empty() {
        return polygons;
    }
    let contours: Vec<Vec<IntPoint>> = polygons.iter().flatten().map(|r| contour(r)).collect();
    let run = |ogc: bool| {
        OVERLAY.with(|cell| {
            let mut slot = cell.borrow_mut();
            let o =
                slot.get_or_insert_with(|| Overlay::new_custom(0, options(ogc), Solver::default()));
            o.options = options(ogc);
            let out = catch(|| match contours.as_slice() {
                // The common case (one ring, as most clipped pieces are): i_overlay's fast path
                // tells a simple ring from one that needs rebuilding without building the graph.
                [one] => o.simplify_contour(one, FILL),
                all => o.simplify_shape(all, FILL),
            });
            if out.is_none() {
                // A panic may have left the overlay's buffers half-updated: start afresh.
                *slot = None;
            }
            out
        })
    };
    // i_overlay 4.5 can fail an internal assertion in its OGC extraction (see etl-geo's
    // make_valid): the overlay is run again without it, and a second failure keeps the
    // polygons as they were rather than losing the feature.
    match run(true).or_else(|| run(false)) {
        Some(Some(shapes)) => from_shapes(shapes),
        Some(None) | None => polygons,
    }
}

thread_local! {
    /// One overlay per cutting thread, its buffers reused from polygon to polygon.
    static OVERLAY: std::cell::RefCell<Option<Overlay>> = const { std::cell::RefCell::new(None) };
}

/// Positive: exteriors wind +1 (positive by the MVT formula, counter-clockwise with y up,
/// i_overlay's positive direction), holes −1; what exteriors cover and no hole takes away.
const FILL: FillRule = FillRule::Positive;

fn options(ogc: bool) -> IntOverlayOptions {
    IntOverlayOptions {
        preserve_input_collinear: false,
        // Orientation is set below from the MVT formula, whatever i_overlay's convention.
        output_direction: ContourDirection::CounterClockwise,
        preserve_output_collinear: false,
        min_output_area: 0,
        ogc,
    }
}

/// Runs `f`, turning a panic inside the overlay library into `None`.
fn catch<T>(f: impl FnOnce() -> T) -> Option<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).ok()
}

/// A closed ring as an open i_overlay contour.
fn contour(ring: &[[i32; 2]]) -> Vec<IntPoint> {
    let open = match ring {
        [rest @ .., last] if ring.len() > 1 && ring.first() == Some(last) => rest,
        all => all,
    };
    open.iter().map(|p| IntPoint::new(p[0], p[1])).collect()
}

/// i_overlay's shapes (outer contour, then holes; open) as closed MVT rings: exteriors
/// positive, holes negative; degenerate rings left out. Each hole goes to the smallest exterior
/// that holds it: i_overlay 4.5's OGC extraction can hand a hole to the wrong shape when it
/// splits contours at touching points.
fn from_shapes(shapes: Vec<Vec<Vec<IntPoint>>>) -> Vec<Polygon> {
    let mut exteriors: Vec<Ring> = Vec::new();
    let mut holes: Vec<Ring> = Vec::new();
    for shape in shapes {
        for (i, c) in shape.into_iter().enumerate() {
            let Some(mut r) = clean_ring(c.iter().map(|p| [p.x, p.y]).collect::<Ring>()) else {
                continue;
            };
            if (ring_area2(&r) > 0) != (i == 0) {
                r.reverse();
            }
            if i == 0 { &mut exteriors } else { &mut holes }.push(r);
        }
    }
    let mut out: Vec<Polygon> = exteriors.into_iter().map(|e| vec![e]).collect();
    if let [one] = out.as_mut_slice() {
        // One exterior: every hole of the result is its.
        one.extend(holes);
        return out;
    }
    // Candidates smallest first, each with its bounding box: a hole goes to the first that
    // holds it, and most are rejected by the box.
    let mut order: Vec<(i128, [i32; 4], usize)> = out
        .iter()
        .enumerate()
        .map(|(k, p)| (ring_area2(&p[0]), ring_box(&p[0]), k))
        .collect();
    order.sort_unstable_by_key(|&(area, _, k)| (area, k));
    for h in holes {
        let hb = ring_box(&h);
        let owner = order
            .iter()
            .find(|(_, b, k)| {
                b[0] <= hb[0]
                    && b[1] <= hb[1]
                    && b[2] >= hb[2]
                    && b[3] >= hb[3]
                    && holds(&out[*k][0], &h)
            })
            .map(|&(_, _, k)| k);
        // A hole inside no exterior has nothing to cut out of.
        if let Some(k) = owner {
            out[k].push(h);
        }
    }
    out
}

fn ring_box(r: &[[i32; 2]]) -> [i32; 4] {
    r.iter()
        .fold([i32::MAX, i32::MAX, i32::MIN, i32::MIN], |b, p| {
            [
                b[0].min(p[0]),
                b[1].min(p[1]),
                b[2].max(p[0]),
                b[3].max(p[1]),
            ]
        })
}

/// Whether `hole` lies inside `exterior` (rings of a valid overlay result: they may touch at
/// points but never cross, so the first hole vertex not on the exterior's boundary decides).
fn holds(exterior: &[[i32; 2]], hole: &[[i32; 2]]) -> bool {
    hole.iter()
        .find_map(|&p| match locate(exterior, p) {
            Place::Boundary => None,
            Place::Inside => Some(true),
            Place::Outside => Some(false),
        })
        .unwrap_or(false)
}

enum Place {
    Inside,
    Outside,
    Boundary,
}

/// Where `p` is relative to the closed ring `r`: crossing number with exact integer
/// arithmetic.
fn locate(r: &[[i32; 2]], p: [i32; 2]) -> Place {
    let (px, py) = (i64::from(p[0]), i64::from(p[1]));
    let mut inside = false;
    for w in r.windows(2) {
        let (ax, ay) = (i64::from(w[0][0]), i64::from(w[0][1]));
        let (bx, by) = (i64::from(w[1][0]), i64::from(w[1][1]));
        let cross = (bx - ax) * (py - ay) - (by - ay) * (px - ax);
        if cross == 0
            && px >= ax.min(bx)
            && px <= ax.max(bx)
            && py >= ay.min(by)
            && py <= ay.max(by)
        {
            return Place::Boundary;
        }
        if (ay > py) != (by > py) {
            // The edge crosses the horizontal line through p: on which side of p?
            let right = if by > ay { cross > 0 } else { cross < 0 };
            if right {
                inside = !inside;
            }
        }
    }
    if inside {
        Place::Inside
    } else {
        Place::Outside
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(x0: i32, y0: i32, x1: i32, y1: i32) -> Ring {
        // Positive by the MVT formula: clockwise on screen (y down).
        vec![[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    }

    fn area(p: &[Polygon]) -> i128 {
        p.iter().flatten().map(|r| ring_area2(r)).sum()
    }

    #[test]
    fn a_valid_square_is_kept_exactly() {
        let p = vec![vec![square(0, 0, 10, 10)]];
        assert_eq!(valid_polygons(p.clone()), p);
    }

    #[test]
    fn a_bow_tie_keeps_its_positive_lobe() {
        // Lobes of opposite winding: the positive one (an exterior by the MVT formula) stays.
        let bow = vec![vec![vec![[0, 0], [10, 10], [10, 0], [0, 10], [0, 0]]]];
        let out = valid_polygons(bow);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].len(), 1);
        assert!(ring_area2(&out[0][0]) > 0);
        assert_eq!(area(&out), 50);
    }

    #[test]
    fn a_hole_pushed_over_its_exterior_edge_becomes_a_notch() {
        // Exterior 0..10; hole 8..12 × 2..4 sticks out past x = 10.
        let mut hole = square(8, 2, 12, 4);
        hole.reverse();
        let out = valid_polygons(vec![vec![square(0, 0, 10, 10), hole]]);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].len(), 1, "a notch, not a hole: {out:?}");
        // 100 less the hole's 2×2 part inside; nothing added outside.
        assert_eq!(area(&out), 2 * (100 - 4));
        assert!(out[0][0].iter().all(|p| p[0] <= 10));
    }

    #[test]
    fn a_zero_width_bridge_vanishes() {
        // Two squares joined by an edge run out and back along y = 5.
        let ring = vec![
            [0, 0],
            [4, 0],
            [4, 5],
            [10, 5],
            [10, 0],
            [14, 0],
            [14, 10],
            [10, 10],
            [10, 5],
            [4, 5],
            [4, 10],
            [0, 10],
            [0, 0],
        ];
        let out = valid_polygons(vec![vec![ring]]);
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(area(&out), 2 * 2 * 40);
    }

    #[test]
    fn overlapping_parts_merge_and_holes_stay_holes() {
        let mut hole = square(2, 2, 4, 4);
        hole.reverse();
        let a = vec![square(0, 0, 10, 10), hole];
        let b = vec![square(5, 0, 15, 10)];
        let out = valid_polygons(vec![a, b]);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].len(), 2);
        assert!(ring_area2(&out[0][0]) > 0 && ring_area2(&out[0][1]) < 0);
        assert_eq!(area(&out), 2 * (150 - 4));
    }

    #[test]
    fn far_coordinates_are_left_alone() {
        let p = vec![vec![square(0, 0, i32::MAX, i32::MAX)]];
        assert_eq!(valid_polygons(p.clone()), p);
    }
}
