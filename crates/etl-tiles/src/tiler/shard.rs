//! Sharded tiling: splitting the tile set (not the input) among `N` independent runs.
//!
//! Every shard stages all features, so every shard sees the same statistics and makes the same
//! partition. While staging, each feature adds its estimated work in tile fragments (the unit of
//! cutting, sorting and assembling):
//! - a point: the zooms drop-rate thinning keeps it at on average, to its cell at the
//!   statistics zoom [`STAT_ZOOM`];
//! - a line or polygon: one fragment per tile it touches (its bbox's tiles; for lines at most
//!   one per tile length of line) at every zoom from the min zoom to the max zoom, spread over
//!   its bbox's tiles of that zoom for the zooms down to the deepest `g <= STAT_ZOOM` where the
//!   bbox touches at most [`MAX_CELLS`] tiles, and over the tiles of `g` for the deeper zooms.
//!
//! Weights are integers, so the totals do not depend on the order features arrive in.
//!
//! At the end of staging, the partition zoom is `P = min(max zoom, STAT_ZOOM)`. The weights are
//! brought to the cells of `P` (the work of a tile to the cell whose shard makes it, by the rule
//! below; spread work evenly over the cell's descendants at `P`), the cells are taken in Hilbert
//! order (the PMTiles tile-id order within a zoom) and cut into `N` contiguous runs of about
//! equal weight. Shard `i` owns:
//! - a tile at zoom `z >= P` whose ancestor at `P` is in run `i`;
//! - a tile at zoom `z < P` whose first descendant at `P` (in Hilbert order) is in run `i`.
//!
//! The Hilbert index of a tile's children at the next zoom is `4·d .. 4·d + 3`, so a tile's
//! ancestor and descendants are found by shifting its in-zoom index.

use std::collections::HashMap;

use crate::geom::WorldGeom;
use crate::tile::{TileCoord, WORLD_BITS, tile_id, zoom_first_id};

/// The zoom weights are gathered at while staging (before the max zoom is known for `-zg`).
pub(crate) const STAT_ZOOM: u8 = 10;
/// The most cells one feature adds weight to.
const MAX_CELLS: i64 = 64;

/// Staged weight, in sixteenths of an estimated tile fragment (the unit of cutting, sorting
/// and assembling work), keyed by the tile id of cells of zooms `0..=STAT_ZOOM`.
#[derive(Debug)]
pub(crate) struct Weights {
    /// Work in exactly this tile (or, for a tile below the partition zoom, in the tiles its
    /// owner makes).
    exact: HashMap<u64, u64>,
    /// Work spread evenly over the cell's area (a large feature's deeper zooms).
    spread: HashMap<u64, u64>,
    /// The weight of one point: the fragments drop-rate thinning leaves it on average.
    point: u64,
    /// The deepest zoom whose fragments are counted: the max zoom, or with `-zg` (unknown
    /// while staging) [`STAT_ZOOM`].
    deepest: u8,
    /// The lowest zoom made (`-Z`): no fragments below it.
    lowest: u8,
}

impl Weights {
    pub(crate) fn new(drop_rate: f64, min_zoom: u8, max_zoom: Option<u8>) -> Weights {
        // A point makes one fragment per zoom from its lowest zoom up to the base zoom; with
        // a drop rate r > 1 that is about 1 / (1 - 1/r) zooms, without thinning every zoom.
        let zooms = if drop_rate.is_finite() && drop_rate > 1.0 {
            (1.0 / (1.0 - 1.0 / drop_rate)).min(f64::from(STAT_ZOOM) + 1.0)
        } else {
            f64::from(STAT_ZOOM) + 1.0
        };
        Weights {
            exact: HashMap::new(),
            spread: HashMap::new(),
            point: (16.0 * zooms).round().max(1.0) as u64,
            deepest: max_zoom.unwrap_or(STAT_ZOOM).min(super::MAX_TILER_ZOOM),
            lowest: min_zoom,
        }
    }

    /// Adds a feature with world bbox `b` (`[min_x, min_y, max_x, max_y]`) and its shape.
    pub(crate) fn add(&mut self, b: [i64; 4], shape: Shape) {
        let range = |g: u8| {
            let shift = WORLD_BITS - u32::from(g);
            let last = (1i64 << g) - 1;
            let c = |v: i64| (v >> shift).clamp(0, last);
            [c(b[0]), c(b[1]), c(b[2]), c(b[3])]
        };
        let count = |r: [i64; 4]| ((r[2] - r[0] + 1) * (r[3] - r[1] + 1)) as u64;
        let cells = |g: u8, r: [i64; 4]| {
            (r[0]..=r[2]).flat_map(move |x| {
                (r[1]..=r[3])
                    .filter_map(move |y| TileCoord::new(g, x as u32, y as u32).map(tile_id))
            })
        };
        // The tiles the feature touches at zoom z: those of its bbox, or for lines at most about
        // one per tile length of line (plus one per line).
        let touched = |z: u8| {
            let r = count(range(z));
            match shape {
                Shape::Lines { lines, length } => {
                    r.min(lines + (length >> (WORLD_BITS - u32::from(z))))
                }
                _ => r,
            }
        };
        // `amount` sixteenths spread evenly over the bbox cells at z (remainder to the first).
        let place = |map: &mut HashMap<u64, u64>, z: u8, amount: u64| {
            let r = range(z);
            let n = count(r).max(1);
            let (each, mut rem) = (amount / n, amount % n);
            for id in cells(z, r) {
                let extra = u64::from(rem > 0);
                rem = rem.saturating_sub(1);
                if each + extra > 0 {
                    *map.entry(id).or_insert(0) += each + extra;
                }
            }
        };
        if shape == Shape::Point {
            // Mostly at the deepest zooms (thinning keeps few at low zooms).
            let r = range(STAT_ZOOM);
            if let Some(id) = cells(STAT_ZOOM, r).next() {
                *self.exact.entry(id).or_insert(0) += self.point;
            }
            return;
        }
        // A line or polygon makes about one fragment per tile its bbox touches, at every zoom:
        // exactly placed down to the deepest zoom `g` where it touches few cells, spread over
        // those cells for the zooms below.
        let g = (0..=STAT_ZOOM)
            .rev()
            .find(|&z| count(range(z)) <= MAX_CELLS as u64)
            .unwrap_or(0);
        let g = g.min(self.deepest);
        for z in self.lowest..=g {
            place(&mut self.exact, z, touched(z) * 16);
        }
        if g < self.deepest {
            let deeper: u64 = ((g + 1).max(self.lowest)..=self.deepest)
                .map(touched)
                .sum::<u64>()
                * 16;
            place(&mut self.spread, g, deeper);
        }
    }
}

/// What a staged feature is, for its weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// A single point.
    Point,
    /// Lines: how many, and their summed length (|dx| + |dy|, world units).
    Lines { lines: u64, length: u64 },
    /// Polygons or several points: as many tiles as their bbox touches.
    Area,
}

impl Shape {
    pub(crate) fn of(g: &WorldGeom) -> Shape {
        match g {
            WorldGeom::Points(p) if p.len() == 1 => Shape::Point,
            WorldGeom::Lines(ls) => Shape::Lines {
                lines: ls.len() as u64,
                length: ls
                    .iter()
                    .flat_map(|l| l.windows(2))
                    .map(|w| w[0][0].abs_diff(w[1][0]) + w[0][1].abs_diff(w[1][1]))
                    .sum(),
            },
            _ => Shape::Area,
        }
    }
}

/// The Hilbert index of tile id `id` within its zoom, and the zoom.
fn in_zoom(id: u64) -> Option<(u8, u64)> {
    let z = crate::tile::tile_zoom(id)?;
    Some((z, id - zoom_first_id(z)?))
}

/// The in-zoom index at zoom `p` that decides the owner of in-zoom index `d` at zoom `z`.
fn cell_at(z: u8, d: u64, p: u8) -> u64 {
    if z >= p {
        d >> (2 * u32::from(z - p))
    } else {
        d << (2 * u32::from(p - z))
    }
}

/// What one shard owns: the run `[start, end)` of Hilbert indices of the cells of zoom `p`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ShardRange {
    pub p: u8,
    pub start: u64,
    pub end: u64,
}

impl ShardRange {
    /// The part of the tile-id run `start..end` (all of one zoom) that this shard owns: owned
    /// tiles are one run of in-zoom indices per zoom (see the module doc). Empty (`start >=
    /// end`) when none is.
    pub(crate) fn clip_ids(&self, start: u64, end: u64) -> (u64, u64) {
        let Some((z, _)) = in_zoom(start) else {
            return (start, start);
        };
        let Some(first) = zoom_first_id(z) else {
            return (start, start);
        };
        let (lo, hi) = if z >= self.p {
            let k = 2 * u32::from(z - self.p);
            (
                self.start.checked_shl(k).unwrap_or(u64::MAX),
                self.end.checked_shl(k).unwrap_or(u64::MAX),
            )
        } else {
            let k = 2 * u32::from(self.p - z);
            let up = |v: u64| v.div_ceil(1u64.checked_shl(k).unwrap_or(u64::MAX));
            (up(self.start), up(self.end))
        };
        let (lo, hi) = (
            first.saturating_add(lo).max(start),
            first.saturating_add(hi).min(end),
        );
        (lo, hi.max(lo))
    }

    /// Whether the tile with id `id` belongs to this shard.
    pub(crate) fn owns_id(&self, id: u64) -> bool {
        match in_zoom(id) {
            Some((z, d)) => self.owns_cell(cell_at(z, d, self.p)),
            None => false,
        }
    }

    fn owns_cell(&self, d: u64) -> bool {
        (self.start..self.end).contains(&d)
    }

    /// Whether every tile at zoom `z >= p` of the tile range `[x0, y0, x1, y1]` (inclusive)
    /// is certainly not owned (one ancestor cell at `p`, not in the run). A cheap test used to
    /// prune the cut; `false` means "maybe owned".
    pub(crate) fn none_owned(&self, z: u8, r: [i64; 4]) -> bool {
        if z < self.p {
            return false;
        }
        let k = u32::from(z - self.p);
        let (x0, y0, x1, y1) = (r[0] >> k, r[1] >> k, r[2] >> k, r[3] >> k);
        if x0 != x1 || y0 != y1 {
            return false;
        }
        match (u32::try_from(x0), u32::try_from(y0)) {
            (Ok(x), Ok(y)) => match TileCoord::new(self.p, x, y) {
                Some(t) => !self.owns_id(tile_id(t)),
                None => false,
            },
            _ => false,
        }
    }
}

/// The partition of the cells of zoom `p` among `n` shards.
#[derive(Debug, Clone)]
pub(crate) struct Partition {
    pub p: u8,
    /// `n + 1` run boundaries (Hilbert indices at `p`): shard `i` owns `[b[i], b[i+1])`.
    pub bounds: Vec<u64>,
    /// The weight in each run.
    pub weights: Vec<u64>,
}

impl Partition {
    /// Cuts the cells of zoom `max_zoom.min(STAT_ZOOM)` into `n` runs of about equal weight.
    pub(crate) fn new(w: &Weights, max_zoom: u8, n: u32) -> Partition {
        let p = max_zoom.min(STAT_ZOOM);
        let cells = 1usize << (2 * u32::from(p));
        let mut dense = vec![0u64; cells];
        // Spreading coarser cells: a difference array of per-cell amounts.
        let mut diff = vec![0i128; cells + 1];
        // Exact work: a tile at z >= p is in its ancestor's cell; a tile below p is made by the
        // owner of its first descendant, so its work counts there.
        for (&id, &weight) in &w.exact {
            let Some((z, d)) = in_zoom(id) else { continue };
            if let Some(c) = dense.get_mut(cell_at(z, d, p) as usize) {
                *c += weight;
            }
        }
        for (&id, &weight) in &w.spread {
            let Some((z, d)) = in_zoom(id) else { continue };
            if z >= p {
                if let Some(c) = dense.get_mut(cell_at(z, d, p) as usize) {
                    *c += weight;
                }
            } else {
                // A coarser cell spreads its weight evenly over its 4^(p - z) descendants (the
                // remainder one each to the first ones, so no weight is lost).
                let span = 1u64 << (2 * u32::from(p - z));
                let (each, rem) = (weight / span, weight % span);
                let first = (d * span) as usize;
                for (at, amount) in [
                    (first, i128::from(each) + 1),
                    (first + rem as usize, -1),
                    (first + span as usize, -i128::from(each)),
                ] {
                    if let Some(v) = diff.get_mut(at) {
                        *v += amount;
                    }
                }
            }
        }
        let mut run = 0i128;
        for (c, dv) in dense.iter_mut().zip(&diff) {
            run += dv;
            *c += run as u64;
        }
        let total: u128 = dense.iter().map(|&v| u128::from(v)).sum();
        let n = n.max(1);
        let mut bounds = Vec::with_capacity(n as usize + 1);
        bounds.push(0u64);
        let mut cum: u128 = 0;
        let mut k = 1u32;
        for (i, &v) in dense.iter().enumerate() {
            // The run of shard k-1 ends before the first cell where the weight so far reaches
            // k/n of the total.
            while k < n && cum * u128::from(n) >= total * u128::from(k) && cum > 0 {
                bounds.push(i as u64);
                k += 1;
            }
            cum += u128::from(v);
        }
        while bounds.len() < n as usize + 1 {
            bounds.push(cells as u64);
        }
        let weights = bounds
            .windows(2)
            .map(|b| {
                dense
                    .get(b[0] as usize..b[1] as usize)
                    .map_or(0, |s| s.iter().sum())
            })
            .collect();
        Partition { p, bounds, weights }
    }

    /// The run of shard `i`.
    pub(crate) fn range(&self, i: u32) -> ShardRange {
        let i = i as usize;
        ShardRange {
            p: self.p,
            start: self.bounds.get(i).copied().unwrap_or(0),
            end: self.bounds.get(i + 1).copied().unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hilbert_children_follow_their_parent() {
        for z in 0u8..6 {
            for x in 0..(1u32 << z) {
                for y in 0..(1u32 << z) {
                    let parent = in_zoom(tile_id(TileCoord::new(z, x, y).unwrap()))
                        .unwrap()
                        .1;
                    for (a, b) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                        let c = TileCoord::new(z + 1, 2 * x + a, 2 * y + b).unwrap();
                        let child = in_zoom(tile_id(c)).unwrap().1;
                        assert_eq!(child >> 2, parent, "z{z}/{x}/{y}");
                    }
                }
            }
        }
    }

    #[test]
    fn every_tile_has_one_owner() {
        let mut w = Weights::new(2.5, 0, Some(12));
        for i in 0..500i64 {
            let x = (i * 7_919_777) % (1 << 32);
            let y = (i * 104_729_123) % (1 << 32);
            w.add(
                [x, y, x + (i % 5) * (1 << 22), y + (i % 3) * (1 << 24)],
                match i % 3 {
                    0 => Shape::Point,
                    1 => Shape::Lines {
                        lines: 1,
                        length: (i as u64) << 22,
                    },
                    _ => Shape::Area,
                },
            );
        }
        w.add([0, 0, (1 << 32) - 1, (1 << 32) - 1], Shape::Area);
        for max_zoom in [0u8, 3, 8, 12] {
            for n in [1u32, 2, 3, 7] {
                let part = Partition::new(&w, max_zoom, n);
                assert_eq!(part.bounds.len(), n as usize + 1);
                assert!(part.bounds.windows(2).all(|b| b[0] <= b[1]));
                for z in 0..=max_zoom.min(6) {
                    for x in 0..(1u32 << z) {
                        for y in 0..(1u32 << z) {
                            let id = tile_id(TileCoord::new(z, x, y).unwrap());
                            let owners = (0..n).filter(|i| part.range(*i).owns_id(id)).count();
                            assert_eq!(owners, 1, "z{z}/{x}/{y} n={n}");
                        }
                    }
                }
                if n > 1 && max_zoom >= 3 {
                    assert!(part.weights.iter().all(|&w| w > 0), "{part:?}");
                }
            }
        }
    }

    #[test]
    fn clip_ids_is_the_owned_part_of_a_run() {
        use crate::tile::zoom_first_id;
        for (p, start, end) in [(3u8, 5u64, 40u64), (2, 0, 3), (4, 17, 256), (3, 63, 64)] {
            let o = ShardRange { p, start, end };
            for z in 0u8..=6 {
                let first = zoom_first_id(z).unwrap();
                let count = 1u64 << (2 * u32::from(z));
                for (a, b) in [(0, count), (1, count / 2 + 1), (count / 3, count)] {
                    let (s, e) = o.clip_ids(first + a, first + b);
                    let want: Vec<u64> =
                        (first + a..first + b).filter(|id| o.owns_id(*id)).collect();
                    let got: Vec<u64> = (s..e).collect();
                    assert_eq!(got, want, "p{p} [{start},{end}) z{z} [{a},{b})");
                }
            }
        }
    }
}
