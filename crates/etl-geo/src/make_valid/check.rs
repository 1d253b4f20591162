//! Whether a polygon or multipolygon breaks the OGC rules a repair fixes, found in
//! O(n log n) plus the segment pairs whose boxes meet (an R*-tree join), within a work budget:
//! past the budget, or with too many crossings for the overlay to untangle in bounded time, the
//! answer is "too complex", so no input can make the check or the repair slow.
//!
//! What it finds: a ring that crosses or touches itself (other than its adjacent segments at
//! their shared vertex), rings of one polygon or of different parts that cross or overlap along
//! a segment (touching at a point is allowed), a hole whose first vertex is outside its shell or
//! inside another hole, and a part inside another part's area. Orientation is computed in
//! floating point with exact-zero tests: a nearly collinear touch may be missed (the shape is
//! then left as it is) or flagged (then it is repaired): either way nothing is lost.

use geo_types::{Coord, LineString, Polygon};

/// Segment pair tests and point-in-ring steps one geometry may take, at least; more for a large
/// geometry ([`BUDGET_PER_SEGMENT`] each).
const BUDGET: u64 = 20_000_000;
const BUDGET_PER_SEGMENT: u64 = 64;
/// Meeting segment pairs past which a polygon is too tangled to rebuild in bounded time (the
/// overlay's work grows with the number of crossings).
const MAX_CROSSINGS: u64 = 100_000;

/// What the check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    Valid,
    Invalid,
    /// Past the work budget or the crossing cap: not repaired (the caller rejects it).
    TooComplex,
}

/// One segment: its ends, the ring it belongs to (index across all rings of the geometry) and
/// its position in that ring.
#[derive(Clone, Copy)]
struct Segment {
    a: Coord<f64>,
    b: Coord<f64>,
    ring: u32,
    index: u32,
    /// Segments in the ring, to recognise the closing segment's neighbour.
    ring_len: u32,
}

/// Whether `polygons` (one polygon, or the parts of a multipolygon) need repair.
pub(super) fn verdict(polygons: &[Polygon<f64>]) -> Verdict {
    let mut segments = Vec::new();
    let mut ring_no = 0u32;
    for polygon in polygons {
        for ring in std::iter::once(polygon.exterior()).chain(polygon.interiors()) {
            if ring.0.is_empty() {
                // An empty ring (an empty polygon) has nothing to repair.
                continue;
            }
            if !closed_enough(ring) {
                return Verdict::Invalid;
            }
            // Segments are numbered as they are kept: a repeated vertex (a zero-length segment,
            // common in real data and valid) must not make its neighbours look apart.
            let first = segments.len();
            for w in ring.0.windows(2) {
                if w[0] == w[1] {
                    continue;
                }
                segments.push(Segment {
                    a: w[0],
                    b: w[1],
                    ring: ring_no,
                    index: (segments.len() - first) as u32,
                    ring_len: 0,
                });
            }
            let kept = (segments.len() - first) as u32;
            for s in &mut segments[first..] {
                s.ring_len = kept;
            }
            ring_no = ring_no.saturating_add(1);
        }
    }
    let mut budget = BUDGET.max(BUDGET_PER_SEGMENT.saturating_mul(segments.len() as u64));
    match crossings(&segments, &mut budget) {
        None => Verdict::TooComplex,
        // No edges meet: what is left to find is a hole or part in the wrong place. Many parts
        // or holes can spend the budget on pairs; then the geometry is left as it is (a
        // multipolygon of thousands of islands is far more often valid than nested).
        Some(0) => match containment(polygons, &mut budget) {
            Some(true) => Verdict::Invalid,
            Some(false) | None => Verdict::Valid,
        },
        Some(_) => Verdict::Invalid,
    }
}

/// A ring of fewer than 4 positions or not closed (readers close rings; this guards direct use).
fn closed_enough(ring: &LineString<f64>) -> bool {
    ring.0.len() >= 4 && ring.0.first() == ring.0.last()
}

/// Counts the segment pairs that meet in a way a valid polygon does not allow, from the pairs
/// whose bounding boxes meet (an R*-tree join); `None` when the budget or the cap on such
/// pairs runs out.
fn crossings(segments: &[Segment], budget: &mut u64) -> Option<u64> {
    use rstar::primitives::{GeomWithData, Line};
    let tree = rstar::RTree::bulk_load(
        segments
            .iter()
            .enumerate()
            .map(|(i, s)| GeomWithData::new(Line::new([s.a.x, s.a.y], [s.b.x, s.b.y]), i))
            .collect(),
    );
    let mut bad = 0u64;
    for (x, y) in tree.intersection_candidates_with_other_tree(&tree) {
        // Each pair comes twice, and every segment with itself.
        if x.data >= y.data {
            continue;
        }
        *budget = budget.checked_sub(1)?;
        if bad_pair(&segments[x.data], &segments[y.data]) {
            bad += 1;
            if bad > MAX_CROSSINGS {
                return None;
            }
        }
    }
    Some(bad)
}

fn orient(p: Coord<f64>, q: Coord<f64>, r: Coord<f64>) -> f64 {
    (q.x - p.x) * (r.y - p.y) - (q.y - p.y) * (r.x - p.x)
}

/// Whether `r`, collinear with `p`–`q`, lies within their bounding box.
fn on_segment(p: Coord<f64>, q: Coord<f64>, r: Coord<f64>) -> bool {
    r.x >= p.x.min(q.x) && r.x <= p.x.max(q.x) && r.y >= p.y.min(q.y) && r.y <= p.y.max(q.y)
}

/// Whether two segments meet in a way a valid polygon does not allow.
fn bad_pair(s: &Segment, t: &Segment) -> bool {
    let same_ring = s.ring == t.ring;
    let adjacent = same_ring
        && (s.index.abs_diff(t.index) == 1
            || (s.index.min(t.index) == 0 && s.index.max(t.index) + 1 == s.ring_len));
    let d1 = orient(t.a, t.b, s.a);
    let d2 = orient(t.a, t.b, s.b);
    let d3 = orient(s.a, s.b, t.a);
    let d4 = orient(s.a, s.b, t.b);
    if d1 == 0.0 && d2 == 0.0 {
        // Collinear: along the longer axis, overlapping for a stretch is always wrong (a spike,
        // or rings sharing an edge); meeting at one point is wrong only within one ring, for
        // segments that are not neighbours.
        let along_x = (t.b.x - t.a.x).abs() >= (t.b.y - t.a.y).abs();
        let span = |seg: &Segment| {
            let (u, v) = if along_x {
                (seg.a.x, seg.b.x)
            } else {
                (seg.a.y, seg.b.y)
            };
            (u.min(v), u.max(v))
        };
        let ((s0, s1), (t0, t1)) = (span(s), span(t));
        let (lo, hi) = (s0.max(t0), s1.min(t1));
        return hi > lo || (hi == lo && same_ring && !adjacent);
    }
    let proper = ((d1 > 0.0 && d2 < 0.0) || (d1 < 0.0 && d2 > 0.0))
        && ((d3 > 0.0 && d4 < 0.0) || (d3 < 0.0 && d4 > 0.0));
    if proper {
        return true;
    }
    let touches = (d1 == 0.0 && on_segment(t.a, t.b, s.a))
        || (d2 == 0.0 && on_segment(t.a, t.b, s.b))
        || (d3 == 0.0 && on_segment(s.a, s.b, t.a))
        || (d4 == 0.0 && on_segment(s.a, s.b, t.b));
    // Within one ring only neighbours may touch (at their shared vertex); different rings may
    // touch at a point.
    touches && same_ring && !adjacent
}

/// Where a position is against a ring.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Loc {
    Inside,
    Outside,
    Boundary,
}

/// Ray casting; `None` when the budget is spent.
fn locate(ring: &LineString<f64>, p: Coord<f64>, budget: &mut u64) -> Option<Loc> {
    *budget = budget.checked_sub(ring.0.len() as u64)?;
    let mut inside = false;
    for w in ring.0.windows(2) {
        let (a, b) = (w[0], w[1]);
        if orient(a, b, p) == 0.0 && on_segment(a, b, p) {
            return Some(Loc::Boundary);
        }
        if (a.y > p.y) != (b.y > p.y) {
            let x = a.x + (p.y - a.y) / (b.y - a.y) * (b.x - a.x);
            if p.x < x {
                inside = !inside;
            }
        }
    }
    Some(if inside { Loc::Inside } else { Loc::Outside })
}

/// Whether ring `a` (which does not cross `b`) lies inside `b`: decided by the first of its
/// first 16 vertices that is not on `b`'s boundary (`Some(None)` when all of them are).
/// `None` when the budget is spent.
fn inside(a: &LineString<f64>, b: &LineString<f64>, budget: &mut u64) -> Option<Option<bool>> {
    for p in a.0.iter().take(16) {
        match locate(b, *p, budget)? {
            Loc::Boundary => continue,
            Loc::Inside => return Some(Some(true)),
            Loc::Outside => return Some(Some(false)),
        }
    }
    Some(None)
}

/// The bounding box of a ring: (min x, min y, max x, max y).
fn bbox(ring: &LineString<f64>) -> (f64, f64, f64, f64) {
    ring.0.iter().fold(
        (
            f64::INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NEG_INFINITY,
        ),
        |(x0, y0, x1, y1), c| (x0.min(c.x), y0.min(c.y), x1.max(c.x), y1.max(c.y)),
    )
}

/// Whether box `a` lies within box `b` (so ring a may lie inside ring b).
fn within(a: (f64, f64, f64, f64), b: (f64, f64, f64, f64)) -> bool {
    a.0 >= b.0 && a.1 >= b.1 && a.2 <= b.2 && a.3 <= b.3
}

/// With no crossings found, the rings are nested or apart: whether a hole is outside its shell
/// or inside another hole, or a part inside another part's area; `None` when the budget ran
/// out.
fn containment(polygons: &[Polygon<f64>], budget: &mut u64) -> Option<bool> {
    let shells: Vec<_> = polygons.iter().map(|p| bbox(p.exterior())).collect();
    for polygon in polygons {
        let shell = polygon.exterior();
        let holes: Vec<_> = polygon.interiors().iter().map(bbox).collect();
        for (h, hole) in polygon.interiors().iter().enumerate() {
            // With no crossings, a hole is either wholly inside its shell or wholly outside.
            if inside(hole, shell, budget)? == Some(false) {
                return Some(true);
            }
            for (k, other) in polygon.interiors().iter().enumerate().skip(h + 1) {
                *budget = budget.checked_sub(1)?;
                let (a, b) = (holes[h], holes[k]);
                if (within(a, b) && inside(hole, other, budget)? == Some(true))
                    || (within(b, a) && inside(other, hole, budget)? == Some(true))
                {
                    return Some(true);
                }
            }
        }
    }
    for (i, a) in polygons.iter().enumerate() {
        for (j, b) in polygons.iter().enumerate() {
            *budget = budget.checked_sub(1)?;
            if i == j || !within(shells[i], shells[j]) {
                continue;
            }
            if inside(a.exterior(), b.exterior(), budget)? == Some(true) {
                // Inside b's shell: fine only within one of b's holes.
                let mut in_hole = false;
                for hole in b.interiors() {
                    if inside(a.exterior(), hole, budget)? != Some(false) {
                        in_hole = true;
                        break;
                    }
                }
                if !in_hole {
                    return Some(true);
                }
            }
        }
    }
    Some(false)
}
