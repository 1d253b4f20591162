//! How the dropping strategies remove features from a tile over its limits, and the
//! zoom-wide [`Reduction`] that makes every tile of a zoom follow the one that needed most:
//!
//! - `--drop-densest-as-needed` / `--coalesce-densest-as-needed`: a minimum [`spacing`]
//!   between kept features, measured across layers in spatial order, where a feature's own size
//!   counts as spacing ([`thin_densest`]);
//! - `--drop-smallest-as-needed`: a minimum size, lines by length and polygons by the square
//!   root of their area, both of the whole feature so a feature is kept or dropped in every
//!   tile alike; points are not dropped by size ([`thin_smallest`]);
//! - `--drop-fraction-as-needed`: a share of features, the same share everywhere in the zoom,
//!   by a hash of the feature ([`thin_fraction`]).
//!
//! Features `fixed` (the points the zoom above showed) are never removed here.

use super::assemble::Feat;
use crate::geom::TileGeom;

/// What a zoom's tiles must drop: the strictest of what its tiles needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reduction {
    /// Minimum [`spacing`] from the previous kept feature, any layer (0: none).
    pub gap: u64,
    /// Lines and polygons whose [`size_key`] is below this go (0: none): the size in world
    /// units, ties split by rank, so a threshold can fall inside a run of equal sizes.
    pub min_size: u128,
    /// Features whose rank is at or above this go (`u64::MAX`: none).
    pub rank_limit: u64,
}

impl Reduction {
    pub(crate) const NONE: Reduction = Reduction {
        gap: 0,
        min_size: 0,
        rank_limit: u64::MAX,
    };

    pub(crate) fn is_none(&self) -> bool {
        *self == Reduction::NONE
    }

    /// The stricter of the two on every count.
    pub(crate) fn and(self, o: Reduction) -> Reduction {
        Reduction {
            gap: self.gap.max(o.gap),
            min_size: self.min_size.max(o.min_size),
            rank_limit: self.rank_limit.min(o.rank_limit),
        }
    }
}

/// A feature's rank for `--drop-fraction-as-needed`: a hash of its sequence number, below
/// `u64::MAX` (so the "none" limit keeps every feature).
pub(crate) fn rank(seq: u64) -> u64 {
    let mut z = seq ^ 0x6672_6163_7469_6f6e;
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) >> 1
}

/// A feature's spacing from the previous kept feature (`prev` and `at` are their spatial
/// keys): the squared distance between their first points, or the feature's own squared size
/// when that is larger, both in units of 2^16 square world units (the keys drop 8 bits of each
/// coordinate). A long line or a big polygon is never "dense" because it starts near another
/// feature, so thinning falls on small features in crowded places, as tippecanoe's gap (the
/// squared distance from the previous feature to the farthest vertex) does.
pub(crate) fn spacing(prev: u64, at: u64, size: u64) -> u64 {
    let (ax, ay) = key_point(prev);
    let (bx, by) = key_point(at);
    let (dx, dy) = (u128::from(ax.abs_diff(bx)), u128::from(ay.abs_diff(by)));
    // Keys are 48 bits (24 per axis), but nothing here overflows on any u64.
    let distance = u64::try_from(dx * dx + dy * dy).unwrap_or(u64::MAX);
    let extent = (u128::from(size) * u128::from(size)) >> 16;
    distance.max(u64::try_from(extent).unwrap_or(u64::MAX))
}

/// The position a spatial key (an interleaved key without its low 16 bits) stands for, in
/// units of 256 world units: x from the even bits, y from the odd ones.
fn key_point(k: u64) -> (u64, u64) {
    fn squeeze(mut v: u64) -> u64 {
        v &= 0x5555_5555_5555_5555;
        v = (v | (v >> 1)) & 0x3333_3333_3333_3333;
        v = (v | (v >> 2)) & 0x0F0F_0F0F_0F0F_0F0F;
        v = (v | (v >> 4)) & 0x00FF_00FF_00FF_00FF;
        v = (v | (v >> 8)) & 0x0000_FFFF_0000_FFFF;
        (v | (v >> 16)) & 0x0000_0000_FFFF_FFFF
    }
    (squeeze(k), squeeze(k >> 1))
}

fn is_fixed(fixed: &[bool], i: usize) -> bool {
    fixed.get(i).copied().unwrap_or(false)
}

/// A line's or polygon's key for `--drop-smallest-as-needed`: its size, then its rank.
pub(crate) fn size_key(size: u64, seq: u64) -> u128 {
    (u128::from(size) << 64) | u128::from(rank(seq))
}

/// Whether a reduction of `min_size` removes a feature of `size` (0: a point, never).
pub(crate) fn too_small(size: u64, seq: u64, min_size: u128) -> bool {
    size > 0 && size_key(size, seq) < min_size
}

/// Applies a zoom's reduction to a tile's features. Returns (dropped, coalesced).
pub(crate) fn apply(
    feats: &mut [Feat<'_>],
    keep: &mut [bool],
    fixed: &[bool],
    r: &Reduction,
    coalesce: bool,
) -> (usize, usize) {
    let (mut dropped, mut coalesced) = (0, 0);
    if r.gap > 0 {
        (dropped, coalesced) = apply_gap(feats, keep, fixed, r.gap, coalesce);
    }
    for (i, f) in feats.iter().enumerate() {
        let Some(k) = keep.get_mut(i) else { break };
        if *k
            && !is_fixed(fixed, i)
            && (too_small(f.size, f.seq, r.min_size) || rank(f.seq) >= r.rank_limit)
        {
            *k = false;
            dropped += 1;
        }
    }
    (dropped, coalesced)
}

/// Removes the smallest lines and polygons until about `target` features remain. Returns
/// (dropped, the [`size_key`] below which features went).
pub(super) fn thin_smallest(
    feats: &[Feat<'_>],
    keep: &mut [bool],
    fixed: &[bool],
    target: usize,
) -> (usize, u128) {
    thin_lowest(feats, keep, fixed, target, |f| {
        (f.size > 0).then(|| size_key(f.size, f.seq))
    })
}

/// Removes the features of highest rank until about `target` remain. Returns (dropped, the
/// rank at and above which features went).
pub(super) fn thin_fraction(
    feats: &[Feat<'_>],
    keep: &mut [bool],
    fixed: &[bool],
    target: usize,
) -> (usize, u64) {
    // The highest ranks are the lowest keys; key < t is rank >= MAX - t + 1 (t >= 1).
    let (dropped, t) = thin_lowest(feats, keep, fixed, target, |f| {
        Some(u128::from(u64::MAX - rank(f.seq)))
    });
    // t <= u64::MAX + 1 (a key plus one), so the limit is exact.
    let limit = match u64::try_from(t) {
        Ok(0) => u64::MAX,
        Ok(t) => u64::MAX - t + 1,
        Err(_) => 0,
    };
    (dropped, limit)
}

/// Removes the kept, unfixed features of lowest `key` (`None`: never removed) until about
/// `target` remain. Returns (dropped, the key below which features went; 0: none, or when
/// removing every removable feature is not enough: that says nothing about the rest of the
/// zoom, whose tiles must not lose all their lines for one tile of points).
fn thin_lowest(
    feats: &[Feat<'_>],
    keep: &mut [bool],
    fixed: &[bool],
    target: usize,
    key: impl Fn(&Feat<'_>) -> Option<u128>,
) -> (usize, u128) {
    let kept = keep.iter().filter(|k| **k).count();
    let removable =
        |keep: &[bool], i: usize| keep.get(i).copied().unwrap_or(false) && !is_fixed(fixed, i);
    let mut keys: Vec<u128> = feats
        .iter()
        .enumerate()
        .filter(|(i, _)| removable(keep, *i))
        .filter_map(|(_, f)| key(f))
        .collect();
    let wanted = kept.saturating_sub(target.max(1));
    let excess = wanted.min(keys.len());
    if excess == 0 {
        return (0, 0);
    }
    keys.sort_unstable();
    // Everything strictly below the threshold goes; a run of equal keys goes whole.
    let threshold = keys
        .get(excess.min(keys.len() - 1))
        .copied()
        .unwrap_or(0)
        .max(keys.get(excess - 1).map_or(0, |k| k.saturating_add(1)));
    let mut dropped = 0;
    for (i, f) in feats.iter().enumerate() {
        if removable(keep, i)
            && key(f).is_some_and(|k| k < threshold)
            && let Some(k) = keep.get_mut(i)
        {
            *k = false;
            dropped += 1;
        }
    }
    (dropped, if wanted > keys.len() { 0 } else { threshold })
}

/// The tile's features in spatial order across layers (ties by layer, then input order):
/// the order in which spacing is measured, so a crowded place is thinned in every layer
/// alike rather than each layer against its own density.
fn spatial_order(feats: &[Feat<'_>]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..feats.len()).collect();
    idx.sort_by_key(|&i| feats.get(i).map(|f| (f.spatial, f.layer)));
    idx
}

/// Whether any of a tile's features, given as (spatial key, layer, size) in the tile's order,
/// has a [`spacing`] under `gap` from its predecessor in [`spatial_order`]: if none has,
/// [`apply`] with that gap removes nothing (each feature's previous kept one is then its
/// predecessor). Sorts `items`.
pub(crate) fn any_closer(items: &mut [(u64, u32, u64)], gap: u64) -> bool {
    // Stable, on the key `spatial_order` sorts by: ties keep the tile's order, as there.
    items.sort_by_key(|&(spatial, layer, _)| (spatial, layer));
    items
        .windows(2)
        .any(|w| spacing(w[0].0, w[1].0, w[1].2) < gap)
}

/// Removes kept features until about `target` remain: features whose [`spacing`] from the
/// previous kept feature (of any layer, in spatial order) is below a threshold go (dropped,
/// or coalesced into the previous kept feature of their own layer when it has the same
/// geometry type); `fixed` ones (when given) stay. Returns (dropped, coalesced, threshold).
pub(super) fn thin_densest(
    feats: &mut [Feat<'_>],
    keep: &mut [bool],
    fixed: &[bool],
    target: usize,
    coalesce: bool,
) -> (usize, usize, u64) {
    let order = spatial_order(feats);
    // Spacings of kept features; the first has none and is never removed.
    let mut gaps: Vec<u64> = Vec::new();
    let mut prev: Option<u64> = None;
    for &i in &order {
        let (Some(f), Some(true)) = (feats.get(i), keep.get(i).copied()) else {
            continue;
        };
        let gap = match prev {
            // A fixed feature is never removed: it counts as infinitely far.
            _ if is_fixed(fixed, i) => u64::MAX,
            Some(s) => spacing(s, f.spatial, f.size),
            None => u64::MAX,
        };
        gaps.push(gap);
        prev = Some(f.spatial);
    }
    let kept = gaps.len();
    // Only finite gaps can go; asking for more than there are takes them all (the threshold
    // stays a real spacing, never "everything", as it applies to the whole zoom).
    let mut sorted: Vec<u64> = gaps.into_iter().filter(|g| *g != u64::MAX).collect();
    let excess = kept.saturating_sub(target.max(1)).min(sorted.len());
    if excess == 0 {
        return (0, 0, 0);
    }
    sorted.sort_unstable();
    // Everything strictly below the threshold goes; ties at the threshold stay, so bump it
    // when the quantile falls inside a run of equal gaps (e.g. duplicate points, gap 0).
    let threshold = sorted
        .get(excess.min(sorted.len() - 1))
        .copied()
        .unwrap_or(0)
        .max(sorted.get(excess - 1).map_or(0, |g| g.saturating_add(1)));
    let (dropped, coalesced) = apply_gap_in(feats, keep, fixed, threshold, coalesce, &order);
    (dropped, coalesced, threshold)
}

/// Removes every kept feature whose [`spacing`] from the previous kept feature (any layer, in
/// spatial order) is below `threshold`, unless it is `fixed`: dropped, or coalesced into the
/// previous kept feature of its layer when `coalesce` and the geometry types match. Returns
/// (dropped, coalesced).
fn apply_gap(
    feats: &mut [Feat<'_>],
    keep: &mut [bool],
    fixed: &[bool],
    threshold: u64,
    coalesce: bool,
) -> (usize, usize) {
    let order = spatial_order(feats);
    apply_gap_in(feats, keep, fixed, threshold, coalesce, &order)
}

fn apply_gap_in(
    feats: &mut [Feat<'_>],
    keep: &mut [bool],
    fixed: &[bool],
    threshold: u64,
    coalesce: bool,
    order: &[usize],
) -> (usize, usize) {
    let (mut dropped, mut coalesced) = (0, 0);
    let mut last_spatial: Option<u64> = None;
    // The last kept feature of each layer: where a coalesced feature goes.
    let mut last_of_layer: rustc_hash::FxHashMap<u32, usize> = Default::default();
    for &i in order {
        let (Some(f), Some(true)) = (feats.get(i), keep.get(i).copied()) else {
            continue;
        };
        let (layer, at) = (f.layer, f.spatial);
        let close =
            !is_fixed(fixed, i) && last_spatial.is_some_and(|s| spacing(s, at, f.size) < threshold);
        if !close {
            last_spatial = Some(at);
            last_of_layer.insert(layer, i);
            continue;
        }
        if let Some(k) = keep.get_mut(i) {
            *k = false;
        }
        let into = last_of_layer.get(&layer).copied();
        if coalesce && into.is_some_and(|j| merge_into(feats, j, i)) {
            coalesced += 1;
        } else {
            dropped += 1;
        }
    }
    (dropped, coalesced)
}

/// Moves feature `from`'s geometry into feature `into` when both have the same type.
fn merge_into(feats: &mut [Feat<'_>], into: usize, from: usize) -> bool {
    if into >= from || from >= feats.len() {
        return false;
    }
    let (head, tail) = feats.split_at_mut(from);
    let (Some(a), Some(b)) = (head.get_mut(into), tail.first_mut()) else {
        return false;
    };
    match (&mut a.geom, &mut b.geom) {
        (TileGeom::Points(x), TileGeom::Points(y)) => x.append(y),
        (TileGeom::Lines(x), TileGeom::Lines(y)) => x.append(y),
        (TileGeom::Polygons(x), TileGeom::Polygons(y)) => x.append(y),
        _ => return false,
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tiler::cut::{order_key, order_spatial, spatial_key};

    fn key(x: i64, y: i64) -> u64 {
        order_spatial(order_key(3, spatial_key([x, y])))
    }

    #[test]
    fn a_key_gives_back_its_point_in_units_of_256() {
        for (x, y) in [
            (0, 0),
            (255, 256),
            (1 << 20, 3 << 24),
            (u32::MAX as i64, 12_345_678),
        ] {
            assert_eq!(
                key_point(key(x, y)),
                ((x >> 8) as u64, (y >> 8) as u64),
                "{x},{y}"
            );
        }
    }

    #[test]
    fn spacing_is_distance_squared_or_size_squared_whichever_is_larger() {
        // 10 units of 256 apart in x and y: 200 square units.
        let (a, b) = (
            key(1 << 20, 1 << 20),
            key((1 << 20) + 2560, (1 << 20) + 2560),
        );
        assert_eq!(spacing(a, b, 0), 200);
        assert_eq!(spacing(b, a, 0), 200, "symmetric");
        // A line 100 units of 256 long that starts there: its own extent.
        assert_eq!(spacing(a, b, 25_600), 10_000);
        // Far corners of the world and the largest size: no overflow.
        let far = key(u32::MAX as i64, u32::MAX as i64);
        assert_eq!(
            spacing(key(0, 0), far, 0),
            2 * (u64::from(u32::MAX >> 8)).pow(2)
        );
        assert_eq!(spacing(0, 0, u64::MAX), u64::MAX);
        assert_eq!(
            spacing(0, u64::MAX, 0),
            u64::MAX,
            "full 64-bit keys saturate"
        );
    }
}
