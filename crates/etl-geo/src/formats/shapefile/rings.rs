//! Shapefile polygon rings grouped into polygons: clockwise rings are shells,
//! counter-clockwise rings holes of the smallest shell that contains them.
//!
//! Holes find their candidate shells through a packed R-tree of ring bounding boxes, so a
//! record of a hundred thousand rings takes O(n log n), not one containment test per hole
//! and shell. The result is the same as testing every shell: a shell whose box cannot hold
//! the hole's probe point cannot contain it either (see [`ring_box`]).

use geo_types::{Coord, Geometry, LineString, MultiPolygon, Polygon};

use super::shp::ShapeError;
use crate::cancel::Cancel;
use crate::repair::{Repairs, close_ring};

/// Children per R-tree node.
const NODE: usize = 16;
/// Work (ring vertices visited) between two polls of the cancel token.
const POLL_EVERY: usize = 1 << 16;

/// Polls a [`Cancel`] every [`POLL_EVERY`] units of work.
pub(super) struct Ticker<'a> {
    cancel: &'a Cancel,
    spent: usize,
}

impl<'a> Ticker<'a> {
    pub(super) fn new(cancel: &'a Cancel) -> Self {
        Ticker { cancel, spent: 0 }
    }

    /// Counts `work`; `Err(Cancelled)` once the caller has cancelled.
    pub(super) fn tick(&mut self, work: usize) -> Result<(), ShapeError> {
        self.spent = self.spent.saturating_add(work.max(1));
        if self.spent >= POLL_EVERY {
            self.spent = 0;
            if self.cancel.is_cancelled() {
                return Err(ShapeError::Cancelled);
            }
        }
        Ok(())
    }
}

/// Twice the signed area of a ring: negative when clockwise.
fn signed_area2(ring: &[Coord<f64>]) -> f64 {
    let mut sum = 0.0;
    for w in ring.windows(2) {
        sum += w[0].x * w[1].y - w[1].x * w[0].y;
    }
    sum
}

/// Ray-casting point-in-ring test.
fn contains(ring: &[Coord<f64>], p: Coord<f64>) -> bool {
    let mut inside = false;
    for w in ring.windows(2) {
        let (a, b) = (w[0], w[1]);
        if (a.y > p.y) != (b.y > p.y) {
            let x = a.x + (p.y - a.y) * (b.x - a.x) / (b.y - a.y);
            if p.x < x {
                inside = !inside;
            }
        }
    }
    inside
}

/// A box `[min x, min y, max x, max y]` outside which [`contains`] is false for this closed
/// ring. In y the vertex range is exact: an edge only counts when it straddles the point's y.
/// In x, a point left of every vertex counts every straddling edge, an even number for a
/// closed ring, and a point right of every vertex counts none; the crossing's x is computed
/// with rounding, so the x range is widened by far more than that error can be. Non-finite
/// or huge coordinates give an infinite box (always a candidate).
fn ring_box(ring: &[Coord<f64>]) -> [f64; 4] {
    const EVERYWHERE: [f64; 4] = [
        f64::NEG_INFINITY,
        f64::NEG_INFINITY,
        f64::INFINITY,
        f64::INFINITY,
    ];
    let mut b = [
        f64::INFINITY,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NEG_INFINITY,
    ];
    for c in ring {
        if !c.x.is_finite() || !c.y.is_finite() || c.x.abs() > 1e300 || c.y.abs() > 1e300 {
            return EVERYWHERE;
        }
        b = [b[0].min(c.x), b[1].min(c.y), b[2].max(c.x), b[3].max(c.y)];
    }
    let margin = b[0].abs().max(b[2].abs()) * 1e-9 + 1e-300;
    [b[0] - margin, b[1], b[2] + margin, b[3]]
}

fn holds(b: &[f64; 4], p: Coord<f64>) -> bool {
    b[0] <= p.x && p.x <= b[2] && b[1] <= p.y && p.y <= b[3]
}

/// A static packed R-tree (sort-tile-recursive) over boxes: which boxes hold a point.
struct BoxTree {
    /// `levels[0]` holds the item boxes in packed order; each box of `levels[k]` covers
    /// [`NODE`] consecutive boxes of `levels[k - 1]`.
    levels: Vec<Vec<[f64; 4]>>,
    /// The item of each box of `levels[0]`.
    items: Vec<usize>,
}

impl BoxTree {
    fn new(boxes: &[[f64; 4]]) -> Self {
        let centre = |i: usize, axis: usize| {
            boxes
                .get(i)
                .map_or(0.0, |b| b[axis] / 2.0 + b[axis + 2] / 2.0)
        };
        let mut items: Vec<usize> = (0..boxes.len()).collect();
        items.sort_by(|&a, &b| centre(a, 0).total_cmp(&centre(b, 0)));
        let leaves = boxes.len().div_ceil(NODE);
        let slices = (leaves as f64).sqrt().ceil().max(1.0) as usize;
        let slice_len = NODE * leaves.div_ceil(slices).max(1);
        for slice in items.chunks_mut(slice_len) {
            slice.sort_by(|&a, &b| centre(a, 1).total_cmp(&centre(b, 1)));
        }
        let mut levels = vec![
            items
                .iter()
                .filter_map(|&i| boxes.get(i).copied())
                .collect::<Vec<_>>(),
        ];
        while let Some(last) = levels.last().filter(|l| l.len() > 1) {
            let up = last
                .chunks(NODE)
                .map(|children| {
                    children.iter().fold(
                        [
                            f64::INFINITY,
                            f64::INFINITY,
                            f64::NEG_INFINITY,
                            f64::NEG_INFINITY,
                        ],
                        |u, b| {
                            [
                                u[0].min(b[0]),
                                u[1].min(b[1]),
                                u[2].max(b[2]),
                                u[3].max(b[3]),
                            ]
                        },
                    )
                })
                .collect();
            levels.push(up);
        }
        BoxTree { levels, items }
    }

    /// The items whose box holds `p`, into `out` (cleared first), in no particular order.
    fn query(&self, p: Coord<f64>, stack: &mut Vec<(usize, usize)>, out: &mut Vec<usize>) {
        out.clear();
        stack.clear();
        let Some(top) = self.levels.len().checked_sub(1) else {
            return;
        };
        let roots = self.levels.get(top).map_or(0, Vec::len);
        stack.extend((0..roots).map(|j| (top, j)));
        while let Some((level, j)) = stack.pop() {
            let Some(b) = self.levels.get(level).and_then(|l| l.get(j)) else {
                continue;
            };
            if !holds(b, p) {
                continue;
            }
            match level.checked_sub(1) {
                None => out.extend(self.items.get(j).copied()),
                Some(below) => {
                    let count = self.levels.get(below).map_or(0, Vec::len);
                    let first = j.saturating_mul(NODE);
                    let end = first.saturating_add(NODE).min(count);
                    stack.extend((first..end).map(|c| (below, c)));
                }
            }
        }
    }
}

/// Groups shapefile rings into polygons: clockwise rings are shells, counter-clockwise
/// rings holes of the smallest shell that contains them (the first such shell on a tie). A
/// hole inside no shell, or rings that are all counter-clockwise, become shells of their
/// own; a hole turned shell can take later holes.
/// An unclosed ring is closed first (noted in `repairs`).
pub(super) fn polygons(
    mut rings: Vec<LineString<f64>>,
    ticker: &mut Ticker<'_>,
    repairs: &mut Repairs,
) -> Result<Geometry<f64>, ShapeError> {
    for ring in &mut rings {
        close_ring(&mut ring.0, repairs);
    }
    let areas: Vec<f64> = rings.iter().map(|r| signed_area2(&r.0)).collect();
    let any_clockwise = areas.iter().any(|&a| a < 0.0);
    // Shells in output order (ring indices), the holes of each, and each ring's place
    // among the shells once it is one.
    let mut shells: Vec<usize> = Vec::new();
    let mut holes_of: Vec<Vec<usize>> = Vec::new();
    let mut rank: Vec<Option<usize>> = vec![None; rings.len()];
    let mut holes = Vec::new();
    for (i, &area) in areas.iter().enumerate() {
        if area < 0.0 || !any_clockwise {
            rank[i] = Some(shells.len());
            shells.push(i);
            holes_of.push(Vec::new());
        } else {
            holes.push(i);
        }
    }
    if !holes.is_empty() {
        // Every ring is in the tree: a hole inside no shell becomes one.
        let boxes: Vec<[f64; 4]> = rings.iter().map(|r| ring_box(&r.0)).collect();
        let tree = BoxTree::new(&boxes);
        let (mut stack, mut candidates) = (Vec::new(), Vec::new());
        for &hole in &holes {
            ticker.tick(1)?;
            // A vertex of the hole that is not on the shell decides; the first is good
            // enough for well-formed data (holes touch their shell at most at points).
            let probe = rings.get(hole).and_then(|r| r.0.first().copied());
            let mut owner: Option<(f64, usize)> = None;
            if let Some(p) = probe {
                tree.query(p, &mut stack, &mut candidates);
                for &c in &candidates {
                    let (Some(k), Some(ring)) = (rank[c], rings.get(c)) else {
                        continue;
                    };
                    ticker.tick(ring.0.len())?;
                    let area = areas[c].abs();
                    let better =
                        owner.is_none_or(|(a, kk)| area.total_cmp(&a).then(k.cmp(&kk)).is_lt());
                    if better && contains(&ring.0, p) {
                        owner = Some((area, k));
                    }
                }
            }
            match owner.and_then(|(_, k)| holes_of.get_mut(k)) {
                Some(list) => list.push(hole),
                None => {
                    rank[hole] = Some(shells.len());
                    shells.push(hole);
                    holes_of.push(Vec::new());
                }
            }
        }
    }
    let mut rings: Vec<Option<LineString<f64>>> = rings.into_iter().map(Some).collect();
    let mut take = |i: usize| {
        rings
            .get_mut(i)
            .and_then(Option::take)
            .unwrap_or_else(|| LineString(Vec::new()))
    };
    let mut polygons: Vec<Polygon<f64>> = Vec::with_capacity(shells.len());
    for (shell, holes) in shells.into_iter().zip(holes_of) {
        let exterior = take(shell);
        let interiors = holes.into_iter().map(&mut take).collect();
        polygons.push(Polygon::new(exterior, interiors));
    }
    if polygons.len() == 1 {
        Ok(polygons.pop().map_or(
            Geometry::MultiPolygon(MultiPolygon(vec![])),
            Geometry::Polygon,
        ))
    } else {
        Ok(Geometry::MultiPolygon(MultiPolygon(polygons)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(points: &[(f64, f64)]) -> LineString<f64> {
        LineString(points.iter().map(|&(x, y)| Coord { x, y }).collect())
    }

    fn square(x: f64, y: f64, size: f64, clockwise: bool) -> LineString<f64> {
        let mut r = ring(&[
            (x, y),
            (x + size, y),
            (x + size, y + size),
            (x, y + size),
            (x, y),
        ]);
        if clockwise {
            r.0.reverse();
        }
        r
    }

    fn assemble(rings: Vec<LineString<f64>>) -> Result<Geometry<f64>, String> {
        let cancel = Cancel::new();
        polygons(
            rings,
            &mut Ticker::new(&cancel),
            &mut crate::repair::Repairs::default(),
        )
        .map_err(|e| match e {
            ShapeError::Reject(m) => m,
            ShapeError::Cancelled => "cancelled".to_owned(),
        })
    }

    /// The assignment before the index: every hole tested against every shell.
    fn brute_force(rings: &[LineString<f64>]) -> Vec<(usize, Vec<usize>)> {
        let areas: Vec<f64> = rings.iter().map(|r| signed_area2(&r.0)).collect();
        let any_clockwise = areas.iter().any(|&a| a < 0.0);
        let mut shells: Vec<(usize, f64, Vec<usize>)> = Vec::new();
        let mut holes = Vec::new();
        for (i, &a) in areas.iter().enumerate() {
            if a < 0.0 || !any_clockwise {
                shells.push((i, a.abs(), Vec::new()));
            } else {
                holes.push(i);
            }
        }
        for h in holes {
            let p = rings[h].0[0];
            let owner = shells
                .iter()
                .enumerate()
                .filter(|(_, (s, _, _))| contains(&rings[*s].0, p))
                .min_by(|a, b| a.1.1.total_cmp(&b.1.1))
                .map(|(i, _)| i);
            match owner {
                Some(i) => shells[i].2.push(h),
                None => shells.push((h, areas[h].abs(), Vec::new())),
            }
        }
        shells.into_iter().map(|(s, _, h)| (s, h)).collect()
    }

    fn as_indices(rings: &[LineString<f64>], g: &Geometry<f64>) -> Vec<(usize, Vec<usize>)> {
        let find = |r: &LineString<f64>| rings.iter().position(|x| x == r).unwrap_or(usize::MAX);
        let polys = match g {
            Geometry::Polygon(p) => vec![p.clone()],
            Geometry::MultiPolygon(mp) => mp.0.clone(),
            _ => Vec::new(),
        };
        polys
            .iter()
            .map(|p| (find(p.exterior()), p.interiors().iter().map(find).collect()))
            .collect()
    }

    #[test]
    fn holes_go_to_their_shell() {
        // Two clockwise shells, a counter-clockwise hole inside the second.
        let a = ring(&[(0., 0.), (0., 1.), (1., 1.), (1., 0.), (0., 0.)]);
        let b = ring(&[(10., 0.), (10., 10.), (20., 10.), (20., 0.), (10., 0.)]);
        let h = ring(&[(12., 2.), (14., 2.), (14., 4.), (12., 4.), (12., 2.)]);
        let Ok(Geometry::MultiPolygon(mp)) = assemble(vec![a, b, h]) else {
            panic!("expected a multipolygon");
        };
        assert_eq!(mp.0.len(), 2);
        assert!(mp.0[0].interiors().is_empty());
        assert_eq!(mp.0[1].interiors().len(), 1);
    }

    #[test]
    fn open_ring_is_closed_and_noted() {
        let a = ring(&[(0., 0.), (0., 1.), (1., 1.), (1., 0.)]);
        let mut repairs = crate::repair::Repairs::default();
        let cancel = Cancel::new();
        let Ok(Geometry::Polygon(p)) = polygons(vec![a], &mut Ticker::new(&cancel), &mut repairs)
        else {
            panic!("not a polygon");
        };
        assert_eq!(p.exterior().0.len(), 5);
        assert!(repairs.contains(crate::Repair::RingClosed));
    }

    #[test]
    fn same_assignment_as_testing_every_shell() {
        // Nested shells (smallest wins), equal shells (first wins), holes outside every
        // shell (they become shells and take later holes), touching boxes, a far hole.
        let mut rings = vec![
            square(0., 0., 100., true),
            square(10., 10., 50., true),
            square(5., 10., 50., true),
            square(200., 0., 10., true),
            square(20., 20., 5., false),
            square(300., 300., 40., false),
            square(310., 310., 5., false),
            square(1., 1., 2., false),
            square(210., 0., 10., true),
            square(210., 1., 1., false),
            square(-1e-7, 50., 1e-7, false),
            square(1e6, 1e6, 1., false),
        ];
        // A grid of shells with holes, listed out of order.
        for i in (0..400).rev() {
            let (x, y) = (f64::from(i % 20) * 3. + 500., f64::from(i / 20) * 3.);
            rings.push(square(x + 1., y + 1., 0.5, false));
            rings.push(square(x, y, 2., true));
        }
        let got = assemble(rings.clone()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(as_indices(&rings, &got), brute_force(&rings));
        let holes: usize = as_indices(&rings, &got).iter().map(|(_, h)| h.len()).sum();
        assert!(holes >= 400 + 3, "{holes}");
    }

    #[test]
    fn cancelled_assembly_stops() {
        let mut rings = Vec::new();
        for i in 0..20_000 {
            let x = f64::from(i) * 3.;
            rings.push(square(x, 0., 2., true));
            rings.push(square(x + 1., 1., 0.5, false));
        }
        let cancel = Cancel::new();
        cancel.cancel();
        let result = polygons(
            rings,
            &mut Ticker::new(&cancel),
            &mut crate::repair::Repairs::default(),
        );
        assert!(matches!(result, Err(ShapeError::Cancelled)));
    }
}
