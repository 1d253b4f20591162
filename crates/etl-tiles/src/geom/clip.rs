//! Clipping world geometries to a (buffered) tile box, in exact integer arithmetic.

use super::{WorldGeom, clean_ring};

/// World coordinates are < 2^32 and tile buffers add little; anything beyond ±2^48 is garbage
/// input. Clamping to it first bounds every difference by 2^50 and every product by 2^100, so the
/// i128 arithmetic below cannot overflow whatever the input.
const COORD_LIMIT: i64 = 1 << 48;

fn clamp_pt(p: [i64; 2]) -> [i64; 2] {
    [
        p[0].clamp(-COORD_LIMIT, COORD_LIMIT),
        p[1].clamp(-COORD_LIMIT, COORD_LIMIT),
    ]
}

#[derive(Clone, Copy)]
struct Bbox {
    min_x: i64,
    min_y: i64,
    max_x: i64,
    max_y: i64,
}

impl Bbox {
    fn contains_closed(&self, p: [i64; 2]) -> bool {
        p[0] >= self.min_x && p[0] <= self.max_x && p[1] >= self.min_y && p[1] <= self.max_y
    }
}

/// Clips to an axis-aligned box `[min_x, min_y, max_x, max_y)`.
///
/// Points are filtered by the half-open box, so a point on a shared tile edge belongs to exactly
/// one unbuffered tile. Lines and polygons are clipped to the closed box (their cut points lie on
/// the max edges too, which is where the neighbouring tile continues them). Lines are cut into
/// pieces (Liang–Barsky per segment, pieces joined when contiguous); polygons are clipped ring by
/// ring with Sutherland–Hodgman against the 4 edges, degenerate results dropped, and a polygon
/// whose exterior vanishes is dropped with its holes. `None` when nothing remains.
pub fn clip(g: &WorldGeom, bbox: [i64; 4]) -> Option<WorldGeom> {
    let [a, b, c, d] = bbox.map(|v| v.clamp(-COORD_LIMIT, COORD_LIMIT));
    if a >= c || b >= d {
        return None;
    }
    let bb = Bbox {
        min_x: a,
        min_y: b,
        max_x: c,
        max_y: d,
    };
    match g {
        WorldGeom::Points(pts) => {
            let out: Vec<[i64; 2]> = pts
                .iter()
                .copied()
                .filter(|p| p[0] >= a && p[0] < c && p[1] >= b && p[1] < d)
                .collect();
            (!out.is_empty()).then_some(WorldGeom::Points(out))
        }
        WorldGeom::Lines(lines) => {
            let mut out = Vec::new();
            for l in lines {
                clip_line(l, bb, &mut out);
            }
            (!out.is_empty()).then_some(WorldGeom::Lines(out))
        }
        WorldGeom::Polygons(polys) => {
            let out: Vec<Vec<Vec<[i64; 2]>>> = polys
                .iter()
                .filter_map(|poly| {
                    let mut rings = poly.iter();
                    let ext = clip_ring(rings.next()?, bb)?;
                    let mut out = vec![ext];
                    out.extend(rings.filter_map(|r| clip_ring(r, bb)));
                    Some(out)
                })
                .collect();
            (!out.is_empty()).then_some(WorldGeom::Polygons(out))
        }
    }
}

/// How a clipped geometry covers the box it was clipped to; see [`cover`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cover {
    /// The whole box: one polygon whose only ring runs around the box.
    Whole,
    /// None of it: one polygon whose exterior and one hole both run around the box (the box is
    /// inside a hole).
    Nothing,
    /// Anything else (some of it, or a shape this test does not decide).
    Part,
}

/// Whether `g`, the result of [`clip`] to `bbox`, covers the box whole, not at all, or in
/// part. Exact (integer) and conservative: a ring "runs around the box" when each of its edges
/// lies along one side of the box and its area is the box's. Such a ring never enters the
/// box's interior, so its winding number there is one constant, and the area makes it ±1: the
/// ring bounds exactly the box, which is what clipping a polygon that contains the box gives
/// (possibly with extra vertices along the sides). Anything else is [`Cover::Part`], which is
/// always safe: the caller then cuts as usual.
pub fn cover(g: &WorldGeom, bbox: [i64; 4]) -> Cover {
    let [a, b, c, d] = bbox.map(|v| v.clamp(-COORD_LIMIT, COORD_LIMIT));
    let WorldGeom::Polygons(polys) = g else {
        return Cover::Part;
    };
    let [poly] = polys.as_slice() else {
        return Cover::Part;
    };
    let around = |ring: &[[i64; 2]]| {
        let in_box = |p: &[i64; 2]| (a..=c).contains(&p[0]) && (b..=d).contains(&p[1]);
        let along_a_side = |p: &[i64; 2], q: &[i64; 2]| {
            in_box(p)
                && in_box(q)
                && ((p[0] == q[0] && (p[0] == a || p[0] == c))
                    || (p[1] == q[1] && (p[1] == b || p[1] == d)))
        };
        let box_area2 = 2 * i128::from(c - a) * i128::from(d - b);
        ring.len() >= 4
            && ring.first() == ring.last()
            && ring.windows(2).all(|w| along_a_side(&w[0], &w[1]))
            && super::ring_area2(ring).abs() == box_area2
    };
    match poly.as_slice() {
        [ext] if around(ext) => Cover::Whole,
        [ext, hole] if around(ext) && around(hole) => Cover::Nothing,
        _ => Cover::Part,
    }
}

fn clip_line(line: &[[i64; 2]], bb: Bbox, out: &mut Vec<Vec<[i64; 2]>>) {
    // Fast path: most features of a deep tile are wholly inside it.
    if line.iter().all(|&p| bb.contains_closed(p)) {
        let mut l = line.to_vec();
        l.dedup();
        if l.len() >= 2 {
            out.push(l);
        }
        return;
    }
    let mut cur: Vec<[i64; 2]> = Vec::new();
    let flush = |cur: &mut Vec<[i64; 2]>, out: &mut Vec<Vec<[i64; 2]>>| {
        let piece = std::mem::take(cur);
        if piece.len() >= 2 {
            out.push(piece);
        }
    };
    for w in line.windows(2) {
        let (p0, p1) = (clamp_pt(w[0]), clamp_pt(w[1]));
        match clip_segment(p0, p1, bb) {
            Some((s, e)) => {
                if cur.last() != Some(&s) {
                    flush(&mut cur, out);
                    cur.push(s);
                }
                if cur.last() != Some(&e) {
                    cur.push(e);
                }
                if e != p1 {
                    // The segment leaves the box: whatever follows starts a new piece.
                    flush(&mut cur, out);
                }
            }
            None => flush(&mut cur, out),
        }
    }
    flush(&mut cur, out);
}

/// A parameter `t = num / den` along a segment, with `den > 0`.
#[derive(Clone, Copy)]
struct Frac {
    num: i128,
    den: i128,
}

impl Frac {
    fn lt(self, o: Frac) -> bool {
        self.num * o.den < o.num * self.den
    }
}

/// Liang–Barsky on one segment with exact rational parameters.
fn clip_segment(p0: [i64; 2], p1: [i64; 2], bb: Bbox) -> Option<([i64; 2], [i64; 2])> {
    let (x0, y0) = (i128::from(p0[0]), i128::from(p0[1]));
    let dx = i128::from(p1[0]) - x0;
    let dy = i128::from(p1[1]) - y0;
    let mut t0 = Frac { num: 0, den: 1 };
    let mut t1 = Frac { num: 1, den: 1 };
    // Each constraint reads p * t <= q.
    let constraints = [
        (-dx, x0 - i128::from(bb.min_x)),
        (dx, i128::from(bb.max_x) - x0),
        (-dy, y0 - i128::from(bb.min_y)),
        (dy, i128::from(bb.max_y) - y0),
    ];
    for (p, q) in constraints {
        if p == 0 {
            if q < 0 {
                return None;
            }
        } else if p < 0 {
            // Entering: t >= q / p.
            let t = Frac { num: -q, den: -p };
            if t0.lt(t) {
                t0 = t;
            }
        } else {
            // Leaving: t <= q / p.
            let t = Frac { num: q, den: p };
            if t.lt(t1) {
                t1 = t;
            }
        }
    }
    if t1.lt(t0) {
        return None;
    }
    let at = |t: Frac| -> [i64; 2] {
        if t.num == 0 {
            return p0;
        }
        if t.num == t.den {
            return p1;
        }
        [
            x0 + round_div(dx * t.num, t.den),
            y0 + round_div(dy * t.num, t.den),
        ]
        .map(|v| v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64)
    };
    let (s, e) = (at(t0), at(t1));
    // Rounding keeps exact results inside an integer box, but clamp anyway so "inside the box"
    // never depends on that argument.
    Some((clamp_to(s, bb), clamp_to(e, bb)))
}

fn clamp_to(p: [i64; 2], bb: Bbox) -> [i64; 2] {
    [
        p[0].clamp(bb.min_x, bb.max_x),
        p[1].clamp(bb.min_y, bb.max_y),
    ]
}

/// `n / d` rounded to nearest (halves away from -inf), `d > 0`.
fn round_div(n: i128, d: i128) -> i128 {
    (2 * n + d).div_euclid(2 * d)
}

#[derive(Clone, Copy)]
enum Edge {
    MinX(i64),
    MaxX(i64),
    MinY(i64),
    MaxY(i64),
}

impl Edge {
    fn inside(self, p: [i64; 2]) -> bool {
        match self {
            Edge::MinX(v) => p[0] >= v,
            Edge::MaxX(v) => p[0] <= v,
            Edge::MinY(v) => p[1] >= v,
            Edge::MaxY(v) => p[1] <= v,
        }
    }

    /// Where segment a→b crosses the edge line; only called when exactly one end is inside, so
    /// the denominator is non-zero. The crossing coordinate is exact; the other is rounded and
    /// therefore lies between a's and b's.
    fn intersect(self, a: [i64; 2], b: [i64; 2]) -> [i64; 2] {
        let (ax, ay, bx, by) = (
            i128::from(a[0]),
            i128::from(a[1]),
            i128::from(b[0]),
            i128::from(b[1]),
        );
        let interp = |p0: i128, p1: i128, q0: i128, q1: i128, at: i128| -> i64 {
            // q at the point where p == at; (p1 - p0) != 0 here.
            let (mut num, mut den) = ((q1 - q0) * (at - p0), p1 - p0);
            if den < 0 {
                num = -num;
                den = -den;
            }
            (q0 + round_div(num, den)).clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
        };
        match self {
            Edge::MinX(v) | Edge::MaxX(v) => [v, interp(ax, bx, ay, by, i128::from(v))],
            Edge::MinY(v) | Edge::MaxY(v) => [interp(ay, by, ax, bx, i128::from(v)), v],
        }
    }
}

fn clip_ring(ring: &[[i64; 2]], bb: Bbox) -> Option<Vec<[i64; 2]>> {
    if ring.iter().all(|&p| bb.contains_closed(p)) {
        return clean_ring(ring.to_vec());
    }
    // Sutherland–Hodgman on the open ring (the closing point would be a duplicate vertex).
    let mut pts: Vec<[i64; 2]> = ring.iter().map(|&p| clamp_pt(p)).collect();
    if pts.len() > 1 && pts.first() == pts.last() {
        pts.pop();
    }
    let edges = [
        Edge::MinX(bb.min_x),
        Edge::MaxX(bb.max_x),
        Edge::MinY(bb.min_y),
        Edge::MaxY(bb.max_y),
    ];
    for edge in edges {
        if pts.is_empty() {
            return None;
        }
        let mut out = Vec::with_capacity(pts.len() + 4);
        let mut prev = pts[pts.len() - 1];
        for &cur in &pts {
            match (edge.inside(prev), edge.inside(cur)) {
                (true, true) => out.push(cur),
                (true, false) => out.push(edge.intersect(prev, cur)),
                (false, true) => {
                    out.push(edge.intersect(prev, cur));
                    out.push(cur);
                }
                (false, false) => {}
            }
            prev = cur;
        }
        pts = out;
    }
    clean_ring(pts.into_iter().map(|p| clamp_to(p, bb)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_crossing_box() {
        let bb = Bbox {
            min_x: 0,
            min_y: 0,
            max_x: 10,
            max_y: 10,
        };
        assert_eq!(clip_segment([-5, 5], [15, 5], bb), Some(([0, 5], [10, 5])));
        assert_eq!(clip_segment([-5, -5], [-1, 20], bb), None);
        assert_eq!(clip_segment([2, 2], [3, 3], bb), Some(([2, 2], [3, 3])));
    }

    fn square(x0: i64, y0: i64, x1: i64, y1: i64) -> Vec<[i64; 2]> {
        vec![[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    }

    #[test]
    fn cover_tells_whole_from_part_and_nothing() {
        let bb = [100, 100, 200, 200];
        let polys = |rings: Vec<Vec<[i64; 2]>>| WorldGeom::Polygons(vec![rings]);
        // A polygon around the box, clipped: the whole box.
        let big = polys(vec![square(0, 0, 1000, 1000)]);
        assert_eq!(cover(&clip(&big, bb).unwrap(), bb), Cover::Whole);
        // A diamond around the box (its clip has extra vertices along the sides).
        let diamond = polys(vec![vec![
            [150, -100],
            [400, 150],
            [150, 400],
            [-100, 150],
            [150, -100],
        ]]);
        let clipped = clip(&diamond, bb).unwrap();
        assert_eq!(cover(&clipped, bb), Cover::Whole, "{clipped:?}");
        // Reaching into the box from one side: part of it.
        let part = polys(vec![square(0, 0, 150, 1000)]);
        assert_eq!(cover(&clip(&part, bb).unwrap(), bb), Cover::Part);
        // A hole inside the box: part; a hole around the box: nothing.
        let holed = polys(vec![square(0, 0, 1000, 1000), square(120, 120, 130, 130)]);
        assert_eq!(cover(&clip(&holed, bb).unwrap(), bb), Cover::Part);
        let lake = polys(vec![square(0, 0, 1000, 1000), square(50, 50, 500, 500)]);
        assert_eq!(cover(&clip(&lake, bb).unwrap(), bb), Cover::Nothing);
        // A notch whose tip touches the box edge does not enter it: still whole.
        let notch = polys(vec![vec![
            [0, 0],
            [150, 0],
            [160, 100],
            [170, 0],
            [1000, 0],
            [1000, 1000],
            [0, 1000],
            [0, 0],
        ]]);
        assert_eq!(cover(&clip(&notch, bb).unwrap(), bb), Cover::Whole);
        // Lines, points and two polygons are never decided here.
        let two = WorldGeom::Polygons(vec![
            vec![square(0, 0, 1000, 1000)],
            vec![square(0, 0, 1000, 1000)],
        ]);
        assert_eq!(cover(&two, bb), Cover::Part);
        let line = WorldGeom::Lines(vec![square(100, 100, 200, 200)]);
        assert_eq!(cover(&line, bb), Cover::Part);
    }

    #[test]
    fn cover_needs_a_ring_that_stays_on_the_sides() {
        let bb = [0, 0, 10, 10];
        // Around the box once, then across it and back: edges through the interior.
        let across = WorldGeom::Polygons(vec![vec![vec![
            [0, 0],
            [10, 0],
            [10, 10],
            [0, 10],
            [0, 0],
            [10, 10],
            [0, 0],
        ]]]);
        assert_eq!(cover(&across, bb), Cover::Part);
        // Around twice: twice the area.
        let twice = WorldGeom::Polygons(vec![vec![vec![
            [0, 0],
            [10, 0],
            [10, 10],
            [0, 10],
            [0, 0],
            [10, 0],
            [10, 10],
            [0, 10],
            [0, 0],
        ]]]);
        assert_eq!(cover(&twice, bb), Cover::Part);
        // Either winding is the box.
        let ccw = WorldGeom::Polygons(vec![vec![vec![[0, 0], [0, 10], [10, 10], [10, 0], [0, 0]]]]);
        assert_eq!(cover(&ccw, bb), Cover::Whole);
    }
}
