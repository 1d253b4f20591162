//! The area of an extract, as the tile-id runs it covers at each zoom: a box of degrees, or a
//! region of polygons (a country's outline, an area of operations) that takes every tile it
//! meets.
//!
//! A region is covered top-down on the quadtree: a tile that no region edge crosses is either
//! wholly inside (one run of ids for all its descendants at the zoom asked for: the Hilbert curve
//! visits them consecutively) or wholly outside, told apart by one point-in-region test; only
//! tiles on the outline are split. Each tile tests only the edges that crossed its parent, so
//! the cost follows the outline's length, not the area's tile count.

use geo_types::MultiPolygon;

use super::extract::ExtractError;
use crate::tile::{MAX_LAT, MAX_ZOOM, WORLD_BITS, lonlat_to_world};
use crate::tiler::{aligned_blocks, join_runs};

/// Edges a region may have (32 MB of edges, and at most 64 MB of band index).
pub const MAX_REGION_EDGES: usize = 1_000_000;

/// Edge references the point-in-region index may hold in all its bands together.
const MAX_BAND_REFS: usize = 16_000_000;

/// Quadtree tiles one zoom's covering may visit: an outline that crosses more tiles than this
/// at a zoom is refused there, not covered for hours.
pub const MAX_REGION_VISITS: u64 = 16_000_000;

const WORLD: f64 = (1u64 << WORLD_BITS) as f64;

/// What an extract takes.
#[derive(Debug, Clone)]
pub enum Area {
    /// `[west, south, east, north]` in degrees, west < east; edges on the east and south sides
    /// take no tile beyond them.
    Bbox([f64; 4]),
    /// Every tile whose inside meets the inside of the region's polygons.
    Region(Region),
}

impl Area {
    /// `[west, south, east, north]` in degrees, latitudes within Web Mercator's.
    pub fn bounds(&self) -> [f64; 4] {
        let clamp = |v: f64| v.clamp(-MAX_LAT, MAX_LAT);
        match self {
            Area::Bbox([w, s, e, n]) => [*w, clamp(*s), *e, clamp(*n)],
            Area::Region(r) => r.bounds,
        }
    }

    /// The sorted, joined tile-id runs of the area's tiles at zoom `z`; an error when a
    /// region's outline is too detailed for the zoom.
    pub(crate) fn runs_at(&self, z: u8) -> Result<Vec<(u64, u64)>, String> {
        let mut runs = Vec::new();
        match self {
            Area::Bbox(b) => bbox_runs(*b, z.min(MAX_ZOOM), &mut runs),
            Area::Region(r) => r.runs(z.min(MAX_ZOOM), &mut runs)?,
        }
        Ok(join_runs(runs))
    }
}

/// A line of a region's outline in world coordinates, and the polygon it bounds.
#[derive(Debug, Clone, Copy)]
struct Edge {
    a: (f64, f64),
    b: (f64, f64),
    polygon: u32,
}

/// Polygons prepared for covering: their edges in world coordinates, and an index of the edges
/// by horizontal band for point-in-region tests.
#[derive(Debug, Clone)]
pub struct Region {
    edges: Vec<Edge>,
    bands: Vec<Vec<u32>>,
    band_y0: f64,
    band_h: f64,
    world: [f64; 4],
    bounds: [f64; 4],
}

impl Region {
    /// Prepares `polygons` (longitude, latitude in degrees): a point is inside when it is
    /// inside any polygon (holes are holes of their own polygon; overlapping polygons add up,
    /// they do not cancel). Edges are straight in longitude and latitude, as GeoJSON draws
    /// them: an edge from 179° to -179° goes the long way round, so a region across the
    /// antimeridian must be split there (as RFC 7946 asks). Refused: a coordinate that is not a
    /// number or outside ±180/±90, no area within Web Mercator's latitudes, more than
    /// [`MAX_REGION_EDGES`] edges.
    pub fn new<E>(polygons: &MultiPolygon<f64>) -> Result<Region, ExtractError<E>> {
        let bad = |m: String| ExtractError::Area(format!("--region: {m}"));
        let mut edges = Vec::new();
        let mut bounds = [f64::MAX, f64::MAX, f64::MIN, f64::MIN];
        let rings = polygons.iter().enumerate().flat_map(|(i, p)| {
            std::iter::once(p.exterior())
                .chain(p.interiors())
                .map(move |r| (i, r))
        });
        for (polygon, ring) in rings {
            let polygon = u32::try_from(polygon).unwrap_or(u32::MAX);
            let mut prev: Option<(f64, f64)> = None;
            for c in ring.coords() {
                if !(c.x.is_finite() && c.y.is_finite()) || c.x.abs() > 180.0 || c.y.abs() > 90.0 {
                    return Err(bad(format!(
                        "coordinate {},{} is not a longitude,latitude in degrees",
                        c.x, c.y
                    )));
                }
                bounds = [
                    bounds[0].min(c.x),
                    bounds[1].min(c.y),
                    bounds[2].max(c.x),
                    bounds[3].max(c.y),
                ];
                let (x, y) = lonlat_to_world(c.x, c.y);
                let p = (x as f64, y as f64);
                if let Some(q) = prev
                    && q != p
                {
                    if edges.len() == MAX_REGION_EDGES {
                        return Err(bad(format!(
                            "more than {MAX_REGION_EDGES} edges; simplify the outline"
                        )));
                    }
                    edges.push(Edge {
                        a: q,
                        b: p,
                        polygon,
                    });
                }
                prev = Some(p);
            }
        }
        let world = edges
            .iter()
            .fold([f64::MAX, f64::MAX, f64::MIN, f64::MIN], |w, e| {
                [
                    w[0].min(e.a.0).min(e.b.0),
                    w[1].min(e.a.1).min(e.b.1),
                    w[2].max(e.a.0).max(e.b.0),
                    w[3].max(e.a.1).max(e.b.1),
                ]
            });
        if edges.len() < 3 || world[0] >= world[2] || world[1] >= world[3] {
            return Err(bad(
                "no polygon with an area within Web Mercator's latitudes".to_owned(),
            ));
        }
        let clamp = |v: f64| v.clamp(-MAX_LAT, MAX_LAT);
        let bounds = [bounds[0], clamp(bounds[1]), bounds[2], clamp(bounds[3])];
        let (bands, band_y0, band_h) = band_index(&edges, world);
        Ok(Region {
            edges,
            bands,
            band_y0,
            band_h,
            world,
            bounds,
        })
    }

    /// Adds the runs of the region's tiles at zoom `z` to `out`.
    fn runs(&self, z: u8, out: &mut Vec<(u64, u64)>) -> Result<(), String> {
        self.runs_within(z, out, MAX_REGION_VISITS)
    }

    /// [`Region::runs`] visiting at most `limit` quadtree tiles.
    fn runs_within(&self, z: u8, out: &mut Vec<(u64, u64)>, limit: u64) -> Result<(), String> {
        let all: Vec<u32> = (0..self.edges.len() as u32).collect();
        let mut visits = (limit, false);
        self.visit(z, 0, (0, 0), &all, out, &mut visits);
        if visits.1 {
            return Err(format!(
                "--region: its outline crosses more than {limit} tiles at z{z}; simplify it \
                 or lower --maxzoom"
            ));
        }
        Ok(())
    }

    fn visit(
        &self,
        z: u8,
        k: u8,
        (x, y): (i64, i64),
        parent: &[u32],
        out: &mut Vec<(u64, u64)>,
        visits: &mut (u64, bool),
    ) {
        // Counts down the visits left; past the last one the covering stops (and fails).
        if visits.0 == 0 {
            visits.1 = true;
            return;
        }
        visits.0 -= 1;
        let side = WORLD / (1u64 << k) as f64;
        // The tile's inside: shrunk by half a world unit, so an outline along a tile border
        // (world coordinates are whole numbers) does not take the tile beyond it.
        let rect = [
            x as f64 * side + 0.5,
            y as f64 * side + 0.5,
            (x + 1) as f64 * side - 0.5,
            (y + 1) as f64 * side - 0.5,
        ];
        let w = self.world;
        if rect[2] < w[0] || rect[0] > w[2] || rect[3] < w[1] || rect[1] > w[3] {
            return;
        }
        let crossing: Vec<u32> = parent
            .iter()
            .copied()
            .filter(|&i| self.edges.get(i as usize).is_some_and(|e| meets(e, rect)))
            .collect();
        if crossing.is_empty() {
            let centre = ((x as f64 + 0.5) * side, (y as f64 + 0.5) * side);
            if self.contains(centre) {
                let d = z - k;
                let r = [x << d, y << d, ((x + 1) << d) - 1, ((y + 1) << d) - 1];
                aligned_blocks(z, r, &mut |first, count| push_run(out, first, count));
            }
            return;
        }
        if k == z {
            aligned_blocks(z, [x, y, x, y], &mut |first, count| {
                push_run(out, first, count);
            });
            return;
        }
        for (dx, dy) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
            self.visit(z, k + 1, (2 * x + dx, 2 * y + dy), &crossing, out, visits);
        }
    }

    /// Whether world point `p` is inside any of the region's polygons (each by the even-odd
    /// rule, a ray towards +x).
    fn contains(&self, (px, py): (f64, f64)) -> bool {
        let band = band_of(py, self.band_y0, self.band_h, self.bands.len());
        let Some(ids) = self.bands.get(band) else {
            return false;
        };
        // The polygons the ray has crossed an odd number of times.
        let mut odd: Vec<u32> = Vec::new();
        for e in ids.iter().filter_map(|&i| self.edges.get(i as usize)) {
            let (a, b) = (e.a, e.b);
            if (a.1 > py) != (b.1 > py) {
                let x = a.0 + (py - a.1) * (b.0 - a.0) / (b.1 - a.1);
                if x > px {
                    match odd.iter().position(|p| *p == e.polygon) {
                        Some(i) => {
                            odd.swap_remove(i);
                        }
                        None => odd.push(e.polygon),
                    }
                }
            }
        }
        !odd.is_empty()
    }
}

fn band_of(y: f64, y0: f64, h: f64, n: usize) -> usize {
    (((y - y0) / h).floor().max(0.0) as usize).min(n.saturating_sub(1))
}

/// Edges by horizontal band of the region's height: as many bands as keep a test to a few
/// dozen edges, fewer when long edges would put the index over [`MAX_BAND_REFS`].
fn band_index(edges: &[Edge], world: [f64; 4]) -> (Vec<Vec<u32>>, f64, f64) {
    let mut n = (edges.len() / 16).clamp(1, 4096);
    loop {
        let h = (world[3] - world[1]) / n as f64;
        let span = |e: &Edge| {
            let (lo, hi) = (e.a.1.min(e.b.1), e.a.1.max(e.b.1));
            (band_of(lo, world[1], h, n), band_of(hi, world[1], h, n))
        };
        let refs: usize = edges
            .iter()
            .map(|e| {
                let (a, b) = span(e);
                b - a + 1
            })
            .sum();
        if refs > MAX_BAND_REFS && n > 1 {
            n /= 2;
            continue;
        }
        let mut bands = vec![Vec::new(); n];
        for (i, e) in edges.iter().enumerate() {
            let (a, b) = span(e);
            for band in bands.iter_mut().take(b + 1).skip(a) {
                band.push(i as u32);
            }
        }
        return (bands, world[1], h);
    }
}

/// Whether segment `e` meets the closed rectangle `r` (`[x0, y0, x1, y1]`).
fn meets(e: &Edge, r: [f64; 4]) -> bool {
    let ((ax, ay), (bx, by)) = (e.a, e.b);
    if ax.max(bx) < r[0] || ax.min(bx) > r[2] || ay.max(by) < r[1] || ay.min(by) > r[3] {
        return false;
    }
    // The segment's box meets the rectangle: the segment does unless all four corners lie
    // strictly on one side of its line.
    let side = |x: f64, y: f64| (bx - ax) * (y - ay) - (by - ay) * (x - ax);
    let s = [
        side(r[0], r[1]),
        side(r[2], r[1]),
        side(r[0], r[3]),
        side(r[2], r[3]),
    ];
    !(s.iter().all(|v| *v > 0.0) || s.iter().all(|v| *v < 0.0))
}

/// Adds the runs of the box's tiles at zoom `z` to `out`.
fn bbox_runs(bbox: [f64; 4], z: u8, out: &mut Vec<(u64, u64)>) {
    let [w, s, e, n] = bbox;
    let (x0, y0) = lonlat_to_world(w, n);
    let (x1, y1) = lonlat_to_world(e, s);
    let shift = WORLD_BITS - u32::from(z);
    let last = (1i64 << z) - 1;
    let t = |v: i64| (v >> shift).clamp(0, last);
    // The east and south edges are exclusive: an edge on a tile border takes no tile beyond
    // it. (`check_area` made sure x1 > x0 and y1 > y0.)
    let r = [t(x0), t(y0), t((x1 - 1).max(x0)), t((y1 - 1).max(y0))];
    aligned_blocks(z, r, &mut |first, count| push_run(out, first, count));
}

/// Adds a run, joined to the last one when they meet (most quadtree blocks follow each other).
fn push_run(out: &mut Vec<(u64, u64)>, first: u64, count: u64) {
    match out.last_mut() {
        Some(last) if last.1 == first => last.1 += count,
        _ => out.push((first, first + count)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::tile::{TileCoord, tile_id};
    use geo_types::{LineString, Polygon};
    use std::collections::BTreeSet;

    fn ids(runs: &[(u64, u64)]) -> BTreeSet<u64> {
        runs.iter().flat_map(|&(a, b)| a..b).collect()
    }

    fn square(w: f64, s: f64, e: f64, n: f64) -> LineString<f64> {
        LineString::from(vec![(w, s), (e, s), (e, n), (w, n), (w, s)])
    }

    #[test]
    fn a_rectangular_region_takes_the_tiles_of_the_same_box() {
        for b in [
            [-20.5, 10.25, 30.0, 40.0],
            [0.0, 0.0, 90.0, 66.51326044311186],
            [-179.0, -80.0, 179.0, 80.0],
        ] {
            let region = Region::new::<()>(&MultiPolygon(vec![Polygon::new(
                square(b[0], b[1], b[2], b[3]),
                vec![],
            )]))
            .unwrap();
            for z in 0..=9 {
                let (mut a, mut r) = (Vec::new(), Vec::new());
                bbox_runs(b, z, &mut a);
                region.runs(z, &mut r).unwrap();
                assert_eq!(ids(&join_runs(a)), ids(&join_runs(r)), "{b:?} z{z}");
            }
        }
    }

    #[test]
    fn a_hole_and_a_triangle_take_only_the_tiles_they_meet() {
        // A square with a square hole: the tiles inside the hole are left out.
        let region = Region::new::<()>(&MultiPolygon(vec![Polygon::new(
            square(0.0, 0.0, 45.0, 40.0),
            vec![square(10.0, 10.0, 35.0, 30.0)],
        )]))
        .unwrap();
        let z = 6;
        let mut r = Vec::new();
        region.runs(z, &mut r).unwrap();
        let got = ids(&join_runs(r));
        let tile = |lon: f64, lat: f64| {
            let (x, y) = lonlat_to_world(lon, lat);
            let shift = WORLD_BITS - u32::from(z);
            tile_id(TileCoord::new(z, (x >> shift) as u32, (y >> shift) as u32).unwrap())
        };
        assert!(got.contains(&tile(5.0, 5.0)));
        assert!(got.contains(&tile(40.0, 35.0)));
        assert!(!got.contains(&tile(22.0, 20.0)), "a tile inside the hole");
        assert!(
            !got.contains(&tile(50.0, 20.0)),
            "a tile east of the region"
        );
        // A thin triangle: far fewer tiles than its box.
        let tri = Region::new::<()>(&MultiPolygon(vec![Polygon::new(
            LineString::from(vec![(0.0, 0.0), (40.0, 10.0), (0.0, 20.0), (0.0, 0.0)]),
            vec![],
        )]))
        .unwrap();
        let (mut t, mut b) = (Vec::new(), Vec::new());
        tri.runs(9, &mut t).unwrap();
        bbox_runs([0.0, 0.0, 40.0, 20.0], 9, &mut b);
        let (t, b) = (ids(&join_runs(t)), ids(&join_runs(b)));
        assert!(t.is_subset(&b));
        assert!(t.len() * 100 < b.len() * 65, "{} of {}", t.len(), b.len());
        let at = |lon: f64, lat: f64| {
            let (x, y) = lonlat_to_world(lon, lat);
            tile_id(TileCoord::new(9, (x >> 23) as u32, (y >> 23) as u32).unwrap())
        };
        assert!(t.contains(&at(10.0, 10.0)));
        assert!(
            !t.contains(&at(35.0, 2.0)),
            "a tile of the box outside the triangle"
        );
    }

    #[test]
    fn overlapping_polygons_add_up_instead_of_cancelling() {
        let one = Polygon::new(square(0.0, 0.0, 40.0, 40.0), vec![]);
        let twice = Region::new::<()>(&MultiPolygon(vec![one.clone(), one.clone()])).unwrap();
        let once = Region::new::<()>(&MultiPolygon(vec![one])).unwrap();
        let overlap = Region::new::<()>(&MultiPolygon(vec![
            Polygon::new(square(0.0, 0.0, 30.0, 40.0), vec![]),
            Polygon::new(square(10.0, 0.0, 40.0, 40.0), vec![]),
        ]))
        .unwrap();
        for z in [3, 6] {
            let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
            once.runs(z, &mut a).unwrap();
            twice.runs(z, &mut b).unwrap();
            overlap.runs(z, &mut c).unwrap();
            let a = ids(&join_runs(a));
            assert_eq!(a, ids(&join_runs(b)), "z{z}: a polygon given twice");
            assert_eq!(a, ids(&join_runs(c)), "z{z}: two overlapping halves");
        }
    }

    #[test]
    fn an_outline_too_detailed_for_a_zoom_is_refused_there() {
        // A zigzag over 160 degrees of latitude: at z10 it crosses over a million tiles.
        let mut ring: Vec<(f64, f64)> = (0..2000)
            .map(|i| {
                (
                    -170.0 + i as f64 * 0.17,
                    if i % 2 == 0 { -80.0 } else { 80.0 },
                )
            })
            .collect();
        ring.push((-170.0, -85.0));
        ring.push(ring[0]);
        let region = Region::new::<()>(&MultiPolygon(vec![Polygon::new(
            LineString::from(ring),
            vec![],
        )]))
        .unwrap();
        let mut r = Vec::new();
        assert!(region.runs_within(4, &mut r, 200_000).is_ok());
        let mut r = Vec::new();
        let e = region.runs_within(10, &mut r, 200_000).unwrap_err();
        assert!(e.contains("z10"), "{e}");
    }

    #[test]
    fn hostile_regions_are_refused() {
        for ring in [
            vec![(0.0, 0.0), (f64::NAN, 1.0), (1.0, 1.0), (0.0, 0.0)],
            vec![(0.0, 0.0), (200.0, 1.0), (1.0, 1.0), (0.0, 0.0)],
            vec![(0.0, 0.0), (1.0, 1.0), (0.0, 0.0)],
            vec![(0.0, 86.0), (10.0, 87.0), (5.0, 89.0), (0.0, 86.0)],
        ] {
            let r = Region::new::<()>(&MultiPolygon(vec![Polygon::new(
                LineString::from(ring.clone()),
                vec![],
            )]));
            assert!(matches!(r, Err(ExtractError::Area(_))), "{ring:?}");
        }
    }
}
