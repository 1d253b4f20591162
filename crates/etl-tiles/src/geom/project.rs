//! Lon/lat → world coordinates, and world → tile-local extent units.

use geo_types::{Coord, Geometry, LineString, Polygon};

use super::{TileGeom, WorldGeom, clean_ring, ring_area2};
use crate::tile::{TileCoord, lonlat_to_world, tile_bounds};

/// Projects a lon/lat geometry to world coordinates.
///
/// Multi-geometries flatten into the matching kind. A GeometryCollection flattens when all its
/// members are of one kind (points, lines or polygons) and gives `None` when they are mixed,
/// because an MVT feature has exactly one geometry type. Non-finite coordinates are dropped
/// rather than projected (`NaN as i64` would silently become 0, a point off Africa). Empty
/// geometries give `None`.
pub fn project(g: &Geometry<f64>) -> Option<WorldGeom> {
    let mut acc = Acc::default();
    collect(g, &mut acc);
    match (
        acc.points.is_empty(),
        acc.lines.is_empty(),
        acc.polygons.is_empty(),
    ) {
        (false, true, true) => Some(WorldGeom::Points(acc.points)),
        (true, false, true) => Some(WorldGeom::Lines(acc.lines)),
        (true, true, false) => Some(WorldGeom::Polygons(acc.polygons)),
        _ => None,
    }
}

#[derive(Default)]
struct Acc {
    points: Vec<[i64; 2]>,
    lines: Vec<Vec<[i64; 2]>>,
    polygons: Vec<Vec<Vec<[i64; 2]>>>,
}

fn world(c: Coord<f64>) -> Option<[i64; 2]> {
    if !(c.x.is_finite() && c.y.is_finite()) {
        return None;
    }
    let (x, y) = lonlat_to_world(c.x, c.y);
    Some([x, y])
}

fn line(ls: &LineString<f64>) -> Vec<[i64; 2]> {
    let mut out: Vec<[i64; 2]> = ls.0.iter().filter_map(|&c| world(c)).collect();
    out.dedup();
    out
}

fn ring(ls: &LineString<f64>) -> Option<Vec<[i64; 2]>> {
    let mut r = line(ls);
    if r.first() != r.last() {
        let first = *r.first()?;
        r.push(first);
    }
    // Rings of fewer than 3 distinct points are kept out here; zero-area rings are left for
    // `clip` / `to_tile`, which drop them after they know the final integer coordinates.
    (r.len() >= 4).then_some(r)
}

fn polygon(p: &Polygon<f64>) -> Option<Vec<Vec<[i64; 2]>>> {
    let mut rings = vec![ring(p.exterior())?];
    rings.extend(p.interiors().iter().filter_map(ring));
    Some(rings)
}

fn collect(g: &Geometry<f64>, acc: &mut Acc) {
    match g {
        Geometry::Point(p) => acc.points.extend(world(p.0)),
        Geometry::MultiPoint(mp) => acc.points.extend(mp.0.iter().filter_map(|p| world(p.0))),
        Geometry::Line(l) => push_line(acc, line(&LineString(vec![l.start, l.end]))),
        Geometry::LineString(ls) => push_line(acc, line(ls)),
        Geometry::MultiLineString(mls) => {
            for ls in &mls.0 {
                push_line(acc, line(ls));
            }
        }
        Geometry::Polygon(p) => acc.polygons.extend(polygon(p)),
        Geometry::MultiPolygon(mp) => acc.polygons.extend(mp.0.iter().filter_map(polygon)),
        Geometry::Rect(r) => acc.polygons.extend(polygon(&r.to_polygon())),
        Geometry::Triangle(t) => acc.polygons.extend(polygon(&t.to_polygon())),
        Geometry::GeometryCollection(gc) => {
            for g in &gc.0 {
                collect(g, acc);
            }
        }
    }
}

fn push_line(acc: &mut Acc, l: Vec<[i64; 2]>) {
    if l.len() >= 2 {
        acc.lines.push(l);
    }
}

/// Scales a (clipped) world geometry into tile coordinates.
///
/// Removes consecutive duplicate points created by rounding; drops lines with < 2 distinct points
/// and rings with < 4 points / zero area; fixes winding per MVT 2.1 (exterior rings positive by
/// the spec's area formula, i.e. clockwise with y down; holes negative). A polygon whose exterior
/// is dropped is dropped with its holes. `None` when nothing remains.
///
/// Coordinates far outside the tile (unclipped input) saturate at the `i32` range instead of
/// wrapping, so they stay on the correct side of the tile.
pub fn to_tile(g: &WorldGeom, tile: TileCoord, extent: u32) -> Option<TileGeom> {
    let b = tile_bounds(tile, extent, 0);
    let scale = Scale {
        ox: i128::from(b[0]),
        oy: i128::from(b[1]),
        size: (i128::from(b[2]) - i128::from(b[0])).max(1),
        extent: i128::from(extent),
    };
    match g {
        WorldGeom::Points(pts) => {
            let out: Vec<[i32; 2]> = pts.iter().map(|&p| scale.apply(p)).collect();
            (!out.is_empty()).then_some(TileGeom::Points(out))
        }
        WorldGeom::Lines(lines) => {
            let out: Vec<Vec<[i32; 2]>> = lines
                .iter()
                .filter_map(|l| {
                    let mut t: Vec<[i32; 2]> = l.iter().map(|&p| scale.apply(p)).collect();
                    t.dedup();
                    (t.len() >= 2).then_some(t)
                })
                .collect();
            (!out.is_empty()).then_some(TileGeom::Lines(out))
        }
        WorldGeom::Polygons(polys) => {
            let out: Vec<Vec<Vec<[i32; 2]>>> = polys
                .iter()
                .filter_map(|poly| {
                    let mut rings = poly.iter();
                    let ext = tile_ring(rings.next()?, &scale, true)?;
                    let mut out = vec![ext];
                    out.extend(rings.filter_map(|r| tile_ring(r, &scale, false)));
                    Some(out)
                })
                .collect();
            let out = super::valid_polygons(out);
            (!out.is_empty()).then_some(TileGeom::Polygons(out))
        }
    }
}

fn tile_ring(r: &[[i64; 2]], scale: &Scale, exterior: bool) -> Option<Vec<[i32; 2]>> {
    let mut t = clean_ring(r.iter().map(|&p| scale.apply(p)).collect())?;
    if (ring_area2(&t) > 0) != exterior {
        t.reverse();
    }
    Some(t)
}

struct Scale {
    ox: i128,
    oy: i128,
    size: i128,
    extent: i128,
}

impl Scale {
    fn apply(&self, p: [i64; 2]) -> [i32; 2] {
        [self.axis(p[0], self.ox), self.axis(p[1], self.oy)]
    }

    /// Rounds `(v - origin) * extent / size` to the nearest integer (halves up), exactly.
    /// i128 cannot overflow: |v - origin| < 2^65 and extent < 2^32.
    fn axis(&self, v: i64, origin: i128) -> i32 {
        let num = (i128::from(v) - origin) * self.extent * 2 + self.size;
        let q = num.div_euclid(self.size * 2);
        // Saturate rather than wrap: a far-away coordinate must stay far away on the same side.
        q.clamp(i128::from(i32::MIN), i128::from(i32::MAX)) as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo_types::{GeometryCollection, LineString, MultiPoint, Point, polygon};

    #[test]
    fn mixed_collection_is_none_and_uniform_flattens() {
        let mixed = Geometry::GeometryCollection(GeometryCollection(vec![
            Geometry::Point(Point::new(0.0, 0.0)),
            Geometry::LineString(LineString::from(vec![(0.0, 0.0), (1.0, 1.0)])),
        ]));
        assert_eq!(project(&mixed), None);
        let pts = Geometry::GeometryCollection(GeometryCollection(vec![
            Geometry::Point(Point::new(0.0, 0.0)),
            Geometry::MultiPoint(MultiPoint(vec![Point::new(1.0, 1.0)])),
        ]));
        match project(&pts) {
            Some(WorldGeom::Points(p)) => assert_eq!(p.len(), 2),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            project(&Geometry::GeometryCollection(GeometryCollection(vec![]))),
            None
        );
    }

    #[test]
    fn nan_coordinates_are_dropped() {
        assert_eq!(project(&Geometry::Point(Point::new(f64::NAN, 0.0))), None);
    }

    #[test]
    fn polygon_rings_are_closed() {
        let p = polygon![(x: 0.0, y: 0.0), (x: 10.0, y: 0.0), (x: 10.0, y: 10.0)];
        match project(&Geometry::Polygon(p)) {
            Some(WorldGeom::Polygons(ps)) => {
                let r = &ps[0][0];
                assert_eq!(r.first(), r.last());
                assert_eq!(r.len(), 4);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
