//! Lower detail for a tile over the byte limit, as tippecanoe does before it gives up: the tile
//! is encoded again with an extent of 2048, 1024, … down to 128 (detail 11 to 7), each
//! coordinate rounded to the coarser grid. Rounding merges the vertices a reader could not tell
//! apart at that extent, so a huge line or polygon shrinks with it: one feature too big for the
//! tile is drawn simpler instead of failing the run.

use crate::geom::{TileGeom, clean_ring, ring_area2};

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
    match g {
        TileGeom::Points(ps) => {
            let out: Vec<[i32; 2]> = ps.iter().map(|p| scale_pt(*p, shift)).collect();
            (!out.is_empty()).then_some(TileGeom::Points(out))
        }
        TileGeom::Lines(ls) => {
            let out: Vec<Vec<[i32; 2]>> = ls
                .iter()
                .filter_map(|l| {
                    let mut l: Vec<[i32; 2]> = l.iter().map(|p| scale_pt(*p, shift)).collect();
                    l.dedup();
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

fn ring(r: &[[i32; 2]], shift: u32, exterior: bool) -> Option<Vec<[i32; 2]>> {
    let r = clean_ring(r.iter().map(|p| scale_pt(*p, shift)).collect())?;
    // Positive MVT area is an exterior ring (see `geom::ring_area2`).
    ((ring_area2(&r) > 0) == exterior).then_some(r)
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
