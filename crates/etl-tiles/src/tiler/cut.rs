//! Cutting one staged feature into tile fragments for every zoom of a pass.
//!
//! - Points: thinned below the base zoom by the drop rate (each point gets a deterministic
//!   pseudo-random rank from its sequence number, so a point kept at zoom z is kept at every
//!   deeper zoom), then each point goes to the one tile that contains it (no buffer copies:
//!   across the tiles of a zoom every point appears exactly once).
//! - Points at the zooms `--cluster-distance` clusters: not thinned; each single point goes to
//!   its tile as a member of its grid cell, sorted by the cell's centre, and the tile stream
//!   folds each cell's members into one feature (see `cluster`).
//! - Lines and polygons: simplified once per zoom in world coordinates (tolerance = one tile
//!   unit × `-S`), each zoom's result simplified further for the next lower zoom, then cut into
//!   the buffered tiles by recursive halving of the tile range, so a feature spanning `T` tiles
//!   costs `O(V log T)` clipping rather than `O(V · T)`.
//! - Polygon interiors: a range of tiles that a polygon covers whole (buffer included) is not
//!   cut further. It becomes *fill* fragments, one per run of consecutive tile ids (the range's
//!   aligned quadtree blocks, each a contiguous run on the Hilbert curve), all holding the same
//!   tile-relative square; the sort hands them to assembly as runs (see `sort`), so a country
//!   costs its outline's tiles, not its area's.

use super::cluster::{ClusterCut, put_member};
use super::codec::{Staged, put_fill, put_fragment};
use super::shard::ShardRange;
use super::sort::FragBuf;
use crate::geom::{Cover, TileGeom, WorldGeom, clip, cover, simplify_world, to_tile};
use crate::tile::{TileCoord, WORLD_BITS, tile_id};

/// Per-pass cutting parameters.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CutParams {
    pub min_zoom: u8,
    pub max_zoom: u8,
    pub base_zoom: u8,
    /// `-r`: at `base_zoom - k` a point is kept with probability `rate^-k`; ≤ 1 keeps all.
    pub drop_rate: f64,
    pub extent: u32,
    /// Buffer in extent units.
    pub buffer: u32,
    /// `-S`: simplification tolerance in tile units.
    pub simplification: f64,
    /// With a shard: the tiles to emit (others are skipped).
    pub owned: Option<ShardRange>,
    /// Below the max zoom, polygons smaller than [`TINY_AREA`] square tile units are drawn as
    /// squares of that area with a probability that keeps their total area (tippecanoe's
    /// tiny-polygon reduction); off with `--no-tiny-polygon-reduction`.
    pub tiny_polygons: bool,
    /// `--cluster-distance`: the grid and the zooms whose single points are clustered.
    pub cluster: Option<ClusterCut>,
}

/// tippecanoe's "4 square subpixels": the area (in square tile units, at extent 4096) below
/// which a polygon is too small to draw as itself, and the area of the square that stands for
/// it when it is drawn.
pub(crate) const TINY_AREA: f64 = 4.0;

/// Bit-interleaves world x and y (y in the odd bits): a Z-order key that keeps neighbours close.
pub(crate) fn spatial_key(p: [i64; 2]) -> u64 {
    fn spread(v: u32) -> u64 {
        let mut x = u64::from(v);
        x = (x | (x << 16)) & 0x0000_FFFF_0000_FFFF;
        x = (x | (x << 8)) & 0x00FF_00FF_00FF_00FF;
        x = (x | (x << 4)) & 0x0F0F_0F0F_0F0F_0F0F;
        x = (x | (x << 2)) & 0x3333_3333_3333_3333;
        x = (x | (x << 1)) & 0x5555_5555_5555_5555;
        x
    }
    let c = |v: i64| v.clamp(0, i64::from(u32::MAX)) as u32;
    spread(c(p[0])) | (spread(c(p[1])) << 1)
}

/// The sort order of a fragment inside its tile: layer first, then spatial position.
pub(crate) fn order_key(layer: u32, key: u64) -> u64 {
    (u64::from(layer.min(0xFFFF)) << 48) | (key >> 16)
}

/// The spatial part of an order key (for gap-based dropping).
pub(crate) fn order_spatial(order: u64) -> u64 {
    order & 0xFFFF_FFFF_FFFF
}

pub(crate) fn order_layer(order: u64) -> u32 {
    (order >> 48) as u32
}

/// SplitMix64: a well-mixed hash of the feature sequence number.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The lowest zoom at which a point feature is kept by drop-rate thinning.
pub(crate) fn point_min_zoom(seq: u64, base_zoom: u8, rate: f64) -> u8 {
    if rate.is_nan() || rate <= 1.0 {
        return 0;
    }
    // u in (0, 1]; kept at base_zoom - k when u <= rate^-k.
    let u = ((mix(seq) >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    let levels = ((1.0 / u).ln() / rate.ln()).floor();
    let levels = if levels.is_finite() { levels } else { 0.0 };
    (f64::from(base_zoom) - levels).max(0.0) as u8
}

fn first_point(g: &WorldGeom) -> [i64; 2] {
    match g {
        WorldGeom::Points(p) => p.first().copied(),
        WorldGeom::Lines(l) => l.first().and_then(|l| l.first()).copied(),
        WorldGeom::Polygons(p) => p
            .first()
            .and_then(|p| p.first())
            .and_then(|r| r.first())
            .copied(),
    }
    .unwrap_or([0, 0])
}

/// Grows `b` (`[min_x, min_y, max_x, max_y]`) to cover `g`.
pub(crate) fn extend_bounds(b: &mut [i64; 4], g: &WorldGeom) {
    let mut add = |p: &[i64; 2]| {
        b[0] = b[0].min(p[0]);
        b[1] = b[1].min(p[1]);
        b[2] = b[2].max(p[0]);
        b[3] = b[3].max(p[1]);
    };
    match g {
        WorldGeom::Points(ps) => ps.iter().for_each(&mut add),
        WorldGeom::Lines(ls) => ls.iter().flatten().for_each(&mut add),
        WorldGeom::Polygons(ps) => ps.iter().flatten().flatten().for_each(&mut add),
    }
}

pub(crate) fn bbox(g: &WorldGeom) -> Option<[i64; 4]> {
    let mut b = [i64::MAX, i64::MAX, i64::MIN, i64::MIN];
    extend_bounds(&mut b, g);
    (b[0] <= b[2]).then_some(b)
}

/// Cuts one feature into fragments for zooms `min_zoom..=max_zoom` of `p`.
pub(crate) fn cut_feature(f: &Staged<'_>, p: &CutParams, out: &mut FragBuf) {
    let seq = f.seq;
    let order = order_key(f.layer, spatial_key(first_point(&f.geom)));
    let size = feature_size(&f.geom);
    let emit = |out: &mut FragBuf, piece: Piece<'_>| match piece {
        Piece::Tile(tile, g) => {
            let id = tile_id(tile);
            if p.owned.is_some_and(|o| !o.owns_id(id)) {
                return;
            }
            out.push(id, order, seq, |a| put_fragment(a, f.id, size, f.props, g));
        }
        Piece::Fill { start, end, geom } => {
            // A shard owns one run of tile ids per zoom: the fill's part of it, if any.
            let (start, end) = match p.owned {
                Some(o) => o.clip_ids(start, end),
                None => (start, end),
            };
            if start < end {
                out.push(start, order, seq, |a| {
                    put_fill(a, end, f.id, size, f.props, geom)
                });
            }
        }
    };
    match &f.geom {
        WorldGeom::Points(pts) => {
            let from = point_min_zoom(seq, p.base_zoom, p.drop_rate).max(p.min_zoom);
            for z in (p.min_zoom..=p.max_zoom).filter(|z| kept_at(f.zooms, *z)) {
                match (p.cluster, pts.as_slice()) {
                    // Clustered zooms: every single point, as a member of its cell.
                    (Some(c), [one]) if z <= c.max_zoom => {
                        let (cell, Some(t)) = c.cell(*one, z) else {
                            continue;
                        };
                        let id = tile_id(t);
                        if p.owned.is_some_and(|o| !o.owns_id(id)) {
                            continue;
                        }
                        let Some(g) = to_tile(&WorldGeom::Points(vec![*one]), t, p.extent) else {
                            continue;
                        };
                        let order = order_key(f.layer, spatial_key(c.centre(cell, z)));
                        out.push(id, order, seq, |a| put_member(a, cell, f.id, f.props, &g));
                    }
                    _ if z >= from => {
                        cut_points(pts, z, p.extent, &mut |t, g| emit(out, Piece::Tile(t, g)));
                    }
                    _ => {}
                }
            }
        }
        geom => {
            let mut g = std::borrow::Cow::Borrowed(geom);
            let polygon = matches!(geom, WorldGeom::Polygons(_));
            for z in (p.min_zoom..=p.max_zoom).rev() {
                let unit = tile_size(z) as f64 / f64::from(p.extent.max(1));
                // Past z20 a tile unit is under one world unit: no square of the right size.
                if polygon && p.tiny_polygons && z < p.max_zoom && unit >= 1.0 {
                    let area = world_area(&g) / (unit * unit);
                    if area < TINY_AREA {
                        if !kept_tiny(seq, area) {
                            // Smaller still at every lower zoom (the same area in 4x larger
                            // units), so not drawn there either.
                            break;
                        }
                        if kept_at(f.zooms, z) {
                            let square = tiny_square(&g, unit);
                            cut_tile_range(&square, z, p, &mut |piece| emit(out, piece));
                        }
                        continue;
                    }
                }
                let Some(s) = simplify_world(&g, p.simplification * unit) else {
                    // Smaller than a tile unit here, and smaller still at every lower zoom.
                    break;
                };
                g = std::borrow::Cow::Owned(s);
                if !kept_at(f.zooms, z) {
                    // Left out here by a `-j` filter; still simplified on for the lower zooms.
                    continue;
                }
                if bbox(&g).is_none() {
                    break;
                }
                cut_tile_range(&g, z, p, &mut |piece| emit(out, piece));
            }
        }
    }
}

/// Cuts `g` into the buffered tiles of zoom `z` it touches.
fn cut_tile_range(g: &WorldGeom, z: u8, p: &CutParams, emit: &mut dyn FnMut(Piece<'_>)) {
    let Some(b) = bbox(g) else { return };
    let size = tile_size(z);
    let grow = size * i64::from(p.buffer) / i64::from(p.extent.max(1));
    let last = (1i64 << z) - 1;
    let range = [
        ((b[0] - grow).div_euclid(size)).clamp(0, last),
        ((b[1] - grow).div_euclid(size)).clamp(0, last),
        ((b[2] + grow).div_euclid(size)).clamp(0, last),
        ((b[3] + grow).div_euclid(size)).clamp(0, last),
    ];
    let cut = Cut {
        z,
        size,
        grow,
        extent: p.extent,
        owned: p.owned,
    };
    cut.split(g, range, emit);
}

/// A feature's size for `--drop-smallest-as-needed`, in world units: a line's length, the
/// square root of a polygon's area (so both are lengths), at least 1; 0 for points.
pub(crate) fn feature_size(g: &WorldGeom) -> u64 {
    let size = match g {
        WorldGeom::Points(_) => return 0,
        WorldGeom::Lines(ls) => ls
            .iter()
            .flat_map(|l| l.windows(2))
            .map(|w| ((w[1][0] - w[0][0]) as f64).hypot((w[1][1] - w[0][1]) as f64))
            .sum::<f64>(),
        WorldGeom::Polygons(_) => world_area(g).sqrt(),
    };
    // `as` saturates (and maps NaN to 0).
    (size as u64).max(1)
}

/// The area a polygon geometry covers, in square world units: each polygon's exterior less
/// its holes (taken by magnitude, whatever winding the input had), the polygons added up.
fn world_area(g: &WorldGeom) -> f64 {
    let WorldGeom::Polygons(polys) = g else {
        return 0.0;
    };
    polys.iter().map(|p| polygon_area(p)).sum()
}

fn polygon_area(rings: &[Vec<[i64; 2]>]) -> f64 {
    let area = |r: &Vec<[i64; 2]>| crate::geom::ring_area2(r).unsigned_abs() as f64 / 2.0;
    let Some((exterior, holes)) = rings.split_first() else {
        return 0.0;
    };
    (area(exterior) - holes.iter().map(area).sum::<f64>()).max(0.0)
}

/// Whether a tiny polygon of `area` square tile units is drawn (as a [`TINY_AREA`] square):
/// with probability `area / TINY_AREA`, from the feature's own hash, so the squares drawn keep
/// the total area of the polygons they stand for. The hash is the same at every zoom and the
/// area in tile units grows 4x per zoom: a polygon drawn at zoom z is drawn at every deeper zoom.
fn kept_tiny(seq: u64, area: f64) -> bool {
    let u = ((mix(seq ^ 0x7469_6e79) >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
    u * TINY_AREA <= area
}

/// The [`TINY_AREA`] square (side 2 tile units) centred on the bounding box of `g`'s largest
/// polygon (not of the whole feature: islets far apart, or parts on both sides of the
/// antimeridian, would put it in open sea).
fn tiny_square(g: &WorldGeom, unit: f64) -> WorldGeom {
    let largest = match g {
        WorldGeom::Polygons(polys) => polys
            .iter()
            .max_by(|a, b| polygon_area(a).total_cmp(&polygon_area(b)))
            .and_then(|p| p.first())
            .and_then(|r| bbox(&WorldGeom::Lines(vec![r.clone()]))),
        _ => None,
    };
    let b = largest.or_else(|| bbox(g)).unwrap_or([0, 0, 0, 0]);
    let (cx, cy) = (b[0] / 2 + b[2] / 2, b[1] / 2 + b[3] / 2);
    let h = (unit * TINY_AREA.sqrt() / 2.0).round() as i64;
    WorldGeom::Polygons(vec![vec![vec![
        [cx - h, cy - h],
        [cx + h, cy - h],
        [cx + h, cy + h],
        [cx - h, cy + h],
        [cx - h, cy - h],
    ]]])
}

/// Whether zoom `z` is in a staged feature's zoom mask (zooms past 31 share bit 31).
fn kept_at(zooms: u32, z: u8) -> bool {
    zooms & (1 << u32::from(z.min(31))) != 0
}

fn tile_size(z: u8) -> i64 {
    1i64 << (WORLD_BITS - u32::from(z.min(31)))
}

/// Groups points by their tile at zoom `z` and emits one fragment per tile.
fn cut_points(pts: &[[i64; 2]], z: u8, extent: u32, emit: &mut dyn FnMut(TileCoord, &TileGeom)) {
    let shift = WORLD_BITS - u32::from(z);
    let tile_of = |p: &[i64; 2]| {
        let c = |v: i64| (v.clamp(0, i64::from(u32::MAX)) >> shift) as u32;
        (c(p[0]), c(p[1]))
    };
    if let [one] = pts {
        let (x, y) = tile_of(one);
        if let Some(t) = TileCoord::new(z, x, y)
            && let Some(g) = to_tile(&WorldGeom::Points(vec![*one]), t, extent)
        {
            emit(t, &g);
        }
        return;
    }
    let mut by_tile: Vec<((u32, u32), [i64; 2])> = pts.iter().map(|p| (tile_of(p), *p)).collect();
    by_tile.sort_by_key(|(t, _)| *t);
    for group in by_tile.chunk_by(|a, b| a.0 == b.0) {
        let Some(((x, y), _)) = group.first() else {
            continue;
        };
        let Some(t) = TileCoord::new(z, *x, *y) else {
            continue;
        };
        let w = WorldGeom::Points(group.iter().map(|(_, p)| *p).collect());
        if let Some(g) = to_tile(&w, t, extent) {
            emit(t, &g);
        }
    }
}

/// What cutting makes of a feature: its piece in one tile, or a run of tiles it covers whole.
pub(crate) enum Piece<'a> {
    Tile(TileCoord, &'a TileGeom),
    /// Tile ids `start..end`, all of one zoom, each holding `geom` (the buffered tile square).
    Fill {
        start: u64,
        end: u64,
        geom: &'a TileGeom,
    },
}

struct Cut {
    z: u8,
    size: i64,
    grow: i64,
    extent: u32,
    owned: Option<ShardRange>,
}

impl Cut {
    /// The buffered world box of the tile range `[x0, y0, x1, y1]` (inclusive).
    fn bounds(&self, r: [i64; 4]) -> [i64; 4] {
        [
            r[0] * self.size - self.grow,
            r[1] * self.size - self.grow,
            (r[2] + 1) * self.size + self.grow,
            (r[3] + 1) * self.size + self.grow,
        ]
    }

    fn split(&self, g: &WorldGeom, r: [i64; 4], emit: &mut dyn FnMut(Piece<'_>)) {
        // Another shard's tiles only: nothing here to clip (the owned tiles' pieces do not
        // depend on this range, each is clipped from the feature down its own halvings).
        if self.owned.is_some_and(|o| o.none_owned(self.z, r)) {
            return;
        }
        let bounds = self.bounds(r);
        let Some(g) = clip(g, bounds) else {
            return;
        };
        let covers = cover(&g, bounds);
        if covers == Cover::Nothing {
            // Inside a hole: the exterior and the hole both run around the box.
            return;
        }
        if r[0] == r[2] && r[1] == r[3] {
            let (Ok(x), Ok(y)) = (u32::try_from(r[0]), u32::try_from(r[1])) else {
                return;
            };
            if let Some(t) = TileCoord::new(self.z, x, y)
                && let Some(tg) = to_tile(&g, t, self.extent)
            {
                emit(Piece::Tile(t, &tg));
            }
            return;
        }
        if covers == Cover::Whole {
            self.fill(r, emit);
            return;
        }
        // Halve the longer side at its coarsest quadtree boundary, so that the ranges found
        // covered whole are (nearly) aligned blocks: few fill runs each. Each half is clipped
        // from this (already smaller) piece.
        let halves = if r[2] - r[0] >= r[3] - r[1] {
            let mid = aligned_mid(r[0], r[2]);
            [[r[0], r[1], mid - 1, r[3]], [mid, r[1], r[2], r[3]]]
        } else {
            let mid = aligned_mid(r[1], r[3]);
            [[r[0], r[1], r[2], mid - 1], [r[0], mid, r[2], r[3]]]
        };
        for h in halves {
            self.split(&g, h, emit);
        }
    }

    /// Emits the tiles of range `r`, which the feature covers whole, as fills: the range's
    /// aligned quadtree blocks as runs of tile ids (adjacent runs joined), each tile holding
    /// the buffered tile square.
    fn fill(&self, r: [i64; 4], emit: &mut dyn FnMut(Piece<'_>)) {
        let (Ok(x), Ok(y)) = (u32::try_from(r[0]), u32::try_from(r[1])) else {
            return;
        };
        let Some(t) = TileCoord::new(self.z, x, y) else {
            return;
        };
        let [x0, y0, x1, y1] = self.bounds([r[0], r[1], r[0], r[1]]);
        let square = WorldGeom::Polygons(vec![vec![vec![
            [x0, y0],
            [x1, y0],
            [x1, y1],
            [x0, y1],
            [x0, y0],
        ]]]);
        let Some(geom) = to_tile(&square, t, self.extent) else {
            return;
        };
        let mut runs = Vec::new();
        aligned_blocks(self.z, r, &mut |id, n| runs.push((id, id + n)));
        for (start, end) in join_runs(runs) {
            emit(Piece::Fill {
                start,
                end,
                geom: &geom,
            });
        }
    }
}

/// Tile-id runs `[start, end)` sorted, with runs that meet joined into one.
pub(crate) fn join_runs(mut runs: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    runs.sort_unstable();
    let mut joined: Vec<(u64, u64)> = Vec::with_capacity(runs.len());
    for (s, e) in runs {
        match joined.last_mut() {
            Some(last) if last.1 == s => last.1 = e,
            _ => joined.push((s, e)),
        }
    }
    joined
}

/// The split point of tile interval `lo..=hi` (`0 <= lo < hi`): the multiple of the largest
/// power of two in `lo + 1..=hi`, so `lo..mid` and `mid..=hi` are both non-empty.
fn aligned_mid(lo: i64, hi: i64) -> i64 {
    let bit = 63 - (lo ^ hi).leading_zeros();
    (hi >> bit) << bit
}

/// Calls `f(first id, tile count)` for each maximal aligned quadtree block (side `2^k` at
/// zoom `z`, `x` and `y` multiples of `2^k`) inside the inclusive tile range `r`. The Hilbert
/// curve visits an aligned block's tiles consecutively, entering at one of its corners, so a
/// block is the id run from its corners' smallest id, `4^k` long.
pub(crate) fn aligned_blocks(z: u8, r: [i64; 4], f: &mut dyn FnMut(u64, u64)) {
    fn visit(z: u8, x: i64, y: i64, k: u32, r: [i64; 4], f: &mut dyn FnMut(u64, u64)) {
        let side = 1i64 << k;
        let (bx1, by1) = (x + side - 1, y + side - 1);
        if bx1 < r[0] || by1 < r[1] || x > r[2] || y > r[3] {
            return;
        }
        if x >= r[0] && y >= r[1] && bx1 <= r[2] && by1 <= r[3] {
            let id = |cx: i64, cy: i64| {
                let (Ok(cx), Ok(cy)) = (u32::try_from(cx), u32::try_from(cy)) else {
                    return u64::MAX;
                };
                TileCoord::new(z, cx, cy).map_or(u64::MAX, tile_id)
            };
            let first = id(x, y).min(id(bx1, y)).min(id(x, by1)).min(id(bx1, by1));
            if first != u64::MAX {
                f(first, 1u64 << (2 * k));
            }
            return;
        }
        let half = side / 2;
        for (dx, dy) in [(0, 0), (half, 0), (0, half), (half, half)] {
            visit(z, x + dx, y + dy, k - 1, r, f);
        }
    }
    // The whole zoom is the one block of side 2^z.
    if z <= 31 {
        visit(z, 0, 0, u32::from(z), r, f);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spatial_key_interleaves() {
        assert_eq!(spatial_key([1, 0]), 1);
        assert_eq!(spatial_key([0, 1]), 2);
        assert_eq!(spatial_key([3, 3]), 15);
        assert_eq!(spatial_key([-5, i64::MAX]), spread_check());
    }

    fn spread_check() -> u64 {
        // x clamps to 0, y to u32::MAX: all odd bits set.
        0xAAAA_AAAA_AAAA_AAAA
    }

    #[test]
    fn drop_rate_keeps_the_expected_fraction() {
        let n = 200_000u64;
        for (z, want) in [(14u8, 1.0), (13, 0.4), (12, 0.16), (10, 0.0256)] {
            let kept = (0..n).filter(|s| point_min_zoom(*s, 14, 2.5) <= z).count() as f64;
            let frac = kept / n as f64;
            assert!(
                (frac - want).abs() < want * 0.05 + 0.001,
                "z{z}: kept {frac}, want {want}"
            );
        }
        assert!((0..1000).all(|s| point_min_zoom(s, 14, 1.0) == 0));
    }

    #[test]
    fn aligned_mid_splits_at_the_coarsest_boundary() {
        assert_eq!(aligned_mid(0, 1), 1);
        assert_eq!(aligned_mid(0, 100), 64);
        assert_eq!(aligned_mid(63, 1000), 512);
        assert_eq!(aligned_mid(64, 127), 96);
        assert_eq!(aligned_mid(5, 6), 6);
        for lo in 0..200 {
            for hi in lo + 1..260 {
                let m = aligned_mid(lo, hi);
                assert!(lo < m && m <= hi, "{lo}..={hi}: {m}");
            }
        }
    }

    #[test]
    fn aligned_blocks_are_id_runs_that_tile_the_range() {
        use std::collections::BTreeSet;
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move |n: i64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as i64
        };
        for z in 0u8..=6 {
            let n = 1i64 << z;
            for _ in 0..40 {
                let (xa, xb, ya, yb) = (next(n), next(n), next(n), next(n));
                let r = [xa.min(xb), ya.min(yb), xa.max(xb), ya.max(yb)];
                let mut got = BTreeSet::new();
                aligned_blocks(z, r, &mut |first, count| {
                    for id in first..first + count {
                        assert!(got.insert(id), "z{z} {r:?}: id {id} twice");
                    }
                });
                let mut want = BTreeSet::new();
                for x in r[0]..=r[2] {
                    for y in r[1]..=r[3] {
                        want.insert(tile_id(TileCoord::new(z, x as u32, y as u32).unwrap()));
                    }
                }
                assert_eq!(got, want, "z{z} {r:?}");
            }
        }
        // A block count that grows with the outline, not the area.
        let mut blocks = 0;
        aligned_blocks(14, [100, 200, 9000, 7000], &mut |_, _| blocks += 1);
        assert!(blocks <= 2 * (8901 + 6801), "{blocks} blocks");
    }
}
