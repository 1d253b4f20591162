//! Lower detail for a tile over the byte limit, as tippecanoe does before it gives up: the tile
//! is encoded again with an extent of 2048, 1024, … down to 128 (detail 11 to 7), each
//! coordinate rounded to the coarser grid, then simplified (Douglas–Peucker, one coarse unit)
//! with the spikes rounding makes removed. A huge line or polygon shrinks with it: one feature
//! too big for the tile is drawn simpler instead of failing the run.
//! Polygons are rebuilt valid afterwards (`geom::valid`).

use super::assemble::{AssembleCtx, FULL_DETAIL, Feat, TileLimitError, encode, gzip};
use crate::geom::{TileGeom, clean_ring, ring_area2, simplify, valid_polygons};
use crate::tile::TileCoord;

/// The coarsest detail tried: extent `4096 >> MAX_SHIFT` = 128, tippecanoe's minimum detail 7.
pub(crate) const MAX_SHIFT: u32 = 5;

/// `v / 2^shift`, rounded half up (exact for negative buffer coordinates too).
fn scale(v: i32, shift: u32) -> i32 {
    let half = (1i64 << shift) >> 1;
    ((i64::from(v) + half) >> shift) as i32
}

fn scale_pt(p: [i32; 2], shift: u32) -> [i32; 2] {
    [scale(p[0], shift), scale(p[1], shift)]
}

/// `g` on the grid of an extent `2^shift` times coarser: consecutive repeats merged, lines
/// of fewer than 2 distinct points and rings of no area dropped, and rings whose winding the
/// rounding turned over dropped too (an exterior must keep its MVT sign, a hole its own).
/// `None` when nothing drawable remains.
pub(crate) fn coarser(g: &TileGeom, shift: u32) -> Option<TileGeom> {
    let rounded = rounded(g, shift)?;
    // One coarse unit: what the tiler's own simplification would have used at this extent.
    match simplify(&rounded, 1.0)? {
        // Rounding and simplifying can fold a ring over or push a hole across its exterior.
        TileGeom::Polygons(p) => {
            let p = valid_polygons(p);
            (!p.is_empty()).then_some(TileGeom::Polygons(p))
        }
        other => Some(other),
    }
}

fn rounded(g: &TileGeom, shift: u32) -> Option<TileGeom> {
    match g {
        TileGeom::Points(ps) => {
            let out: Vec<[i32; 2]> = ps.iter().map(|p| scale_pt(*p, shift)).collect();
            (!out.is_empty()).then_some(TileGeom::Points(out))
        }
        TileGeom::Lines(ls) => {
            let out: Vec<Vec<[i32; 2]>> = ls
                .iter()
                .filter_map(|l| {
                    let l = despike(l.iter().map(|p| scale_pt(*p, shift)).collect(), false);
                    (l.len() >= 2).then_some(l)
                })
                .collect();
            (!out.is_empty()).then_some(TileGeom::Lines(out))
        }
        TileGeom::Polygons(polys) => {
            let out: Vec<Vec<Vec<[i32; 2]>>> = polys
                .iter()
                .filter_map(|rings| {
                    let mut rings = rings.iter();
                    let exterior = ring(rings.next()?, shift, true)?;
                    let mut p = vec![exterior];
                    p.extend(rings.filter_map(|r| ring(r, shift, false)));
                    Some(p)
                })
                .collect();
            (!out.is_empty()).then_some(TileGeom::Polygons(out))
        }
    }
}

/// Merges repeated vertices and removes spikes (`A, B, A` becomes `A`) until none is left; a
/// closed ring's first and last vertex count as neighbours.
fn despike(mut pts: Vec<[i32; 2]>, closed: bool) -> Vec<[i32; 2]> {
    if closed {
        while pts.len() > 1 && pts.first() == pts.last() {
            pts.pop();
        }
    }
    let mut out: Vec<[i32; 2]> = Vec::with_capacity(pts.len());
    for p in pts {
        if out.last() == Some(&p) {
            continue;
        }
        // B is a spike when the point after it is the point before it.
        if out.len() >= 2 && out[out.len() - 2] == p {
            out.pop();
            continue;
        }
        out.push(p);
    }
    if closed {
        // Repeats and spikes across the seam (last vertex, first vertex and on), one vertex
        // at a time from either end.
        let mut ring: std::collections::VecDeque<[i32; 2]> = out.into();
        while ring.len() >= 3 {
            let n = ring.len();
            let (first, second, last, before_last) = (ring[0], ring[1], ring[n - 1], ring[n - 2]);
            if last == first || before_last == first {
                // A repeat, or a spike at the last vertex.
                ring.pop_back();
            } else if second == last {
                // A spike at the first vertex.
                ring.pop_front();
            } else {
                break;
            }
        }
        out = ring.into();
        if let Some(&first) = out.first() {
            out.push(first);
        }
    }
    out
}

fn ring(r: &[[i32; 2]], shift: u32, exterior: bool) -> Option<Vec<[i32; 2]>> {
    let r = clean_ring(despike(
        r.iter().map(|p| scale_pt(*p, shift)).collect(),
        true,
    ))?;
    // Positive MVT area is an exterior ring (see `geom::ring_area2`).
    ((ring_area2(&r) > 0) == exterior).then_some(r)
}

/// A tile made at lower detail.
pub(super) struct LowDetail {
    pub(super) bytes: Vec<u8>,
    pub(super) layers: Vec<u32>,
    /// log2 of the extent it was made at.
    pub(super) detail: u8,
    /// Kept features with nothing left to draw at that detail.
    pub(super) vanished: usize,
}

/// The last detail tried for a tile that fits at none, and its gzipped size there.
pub(super) struct Tried {
    pub(super) detail: u8,
    pub(super) bytes: usize,
}

impl Tried {
    fn over(&self, ctx: &AssembleCtx<'_>) -> bool {
        self.bytes > ctx.limits.max_bytes
    }
}

/// The kept features encoded at the finest detail from 11 down to 7 (extent 2048 … 128) that
/// fits the byte limit, gzipped. Detail 7 is tried first: when even that is over the byte
/// limit (bytes that are attributes, or a crowd of points), the tile fails after one attempt,
/// not five.
/// Without a dropping strategy (`may_vanish` false) a detail at which some feature has nothing
/// left to draw does not count as fitting: the run fails rather than lose features unasked.
pub(super) fn lower_detail(
    feats: &[Feat<'_>],
    keep: &[bool],
    ctx: &AssembleCtx<'_>,
    tile: TileCoord,
    may_vanish: bool,
) -> Result<Result<LowDetail, Tried>, TileLimitError> {
    let max = MAX_SHIFT;
    let attempt = |shift: u32| -> Result<Result<LowDetail, Tried>, TileLimitError> {
        let mut vanished = 0;
        let coarse: Vec<Feat<'_>> = feats
            .iter()
            .zip(keep)
            .filter(|(_, k)| **k)
            .filter_map(|(f, _)| {
                let g = coarser(&f.geom, shift);
                if g.is_none() {
                    vanished += 1;
                }
                Some(Feat {
                    layer: f.layer,
                    seq: f.seq,
                    size: f.size,
                    spatial: f.spatial,
                    id: f.id,
                    props: f.props,
                    geom: g?,
                })
            })
            .collect();
        let all = vec![true; coarse.len()];
        let (raw, layers) = encode(
            &coarse,
            &all,
            ctx.layers,
            ctx.keys,
            ctx.extent >> shift,
            ctx.order,
        )
        .map_err(|_| TileLimitError::Damaged(tile))?;
        let bytes = gzip(&raw).map_err(TileLimitError::gzip(tile))?;
        let detail = FULL_DETAIL - shift as u8;
        let fits = bytes.len() <= ctx.limits.max_bytes
            && !coarse.is_empty()
            && !layers.is_empty()
            && (may_vanish || vanished == 0);
        Ok(if fits {
            Ok(LowDetail {
                bytes,
                layers,
                detail,
                vanished,
            })
        } else {
            Err(Tried {
                detail,
                bytes: bytes.len(),
            })
        })
    };
    let coarsest = attempt(max)?;
    // Over the byte limit even at detail 7: no finer detail is smaller. (Failing there for a
    // vanished feature says nothing of the finer details, which keep more.)
    if let Err(t) = &coarsest
        && t.over(ctx)
    {
        return Ok(coarsest);
    }
    for shift in 1..max {
        if let Ok(low) = attempt(shift)? {
            return Ok(Ok(low));
        }
    }
    Ok(coarsest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_halves_up_on_both_sides_of_zero() {
        assert_eq!(scale(4096, 1), 2048);
        assert_eq!(scale(-80, 5), -2);
        assert_eq!(scale(-81, 5), -3);
        assert_eq!(scale(15, 5), 0);
        assert_eq!(scale(16, 5), 1);
        assert_eq!(scale(i32::MAX, 5), 67_108_864);
        assert_eq!(scale(i32::MIN, 5), -67_108_864);
    }

    #[test]
    fn dense_lines_and_rings_collapse_to_the_coarse_grid() {
        // 4096 vertices one unit apart: at shift 5 one vertex per 32 units remains.
        let line: Vec<[i32; 2]> = (0..4096).map(|i| [i, i % 2]).collect();
        let Some(TileGeom::Lines(ls)) = coarser(&TileGeom::Lines(vec![line]), 5) else {
            panic!("the line vanished")
        };
        assert_eq!(ls.len(), 1);
        assert!(ls[0].len() <= 129 * 2, "{} vertices", ls[0].len());
        // A ring smaller than a coarse cell vanishes; a big one keeps its winding.
        let small = vec![[0, 0], [5, 0], [5, 5], [0, 5], [0, 0]];
        let big = vec![[0, 0], [4096, 0], [4096, 4096], [0, 4096], [0, 0]];
        let polys = |r: Vec<[i32; 2]>| TileGeom::Polygons(vec![vec![r]]);
        assert!(ring_area2(&big) > 0, "an exterior in MVT terms");
        assert_eq!(coarser(&polys(small.clone()), 5), None);
        let Some(TileGeom::Polygons(ps)) = coarser(&polys(big), 5) else {
            panic!("the square vanished")
        };
        assert_eq!(
            ps[0][0],
            vec![[0, 0], [128, 0], [128, 128], [0, 128], [0, 0]]
        );
        // A hole that collapses goes, its polygon stays.
        let with_hole = TileGeom::Polygons(vec![vec![
            vec![[0, 0], [4096, 0], [4096, 4096], [0, 4096], [0, 0]],
            small.into_iter().rev().collect(),
        ]]);
        let Some(TileGeom::Polygons(ps)) = coarser(&with_hole, 5) else {
            panic!("the polygon vanished")
        };
        assert_eq!(ps[0].len(), 1);
        // A lone point that rounds onto another stays (points are never merged).
        let pts = coarser(&TileGeom::Points(vec![[1, 1], [2, 2]]), 5);
        assert_eq!(pts, Some(TileGeom::Points(vec![[0, 0], [0, 0]])));
    }
}
