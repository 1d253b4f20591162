//! MultiPatch shapes (type 31: 3D surfaces of triangle strips, triangle fans and rings) as a
//! MultiPolygon, the way GDAL reads them (`OGRCreateFromMultiPatch`), Z dropped:
//! - a triangle strip (part type 0) gives a triangle for every three consecutive positions,
//!   a triangle fan (1) one for its first position and every two consecutive others;
//! - an outer ring (2) or first ring (4) starts a polygon; an inner ring (3) or ring (5) is a
//!   hole of the polygon being built (or starts one when there is none); unclosed rings are
//!   closed (noted as a repair);
//! - an unknown part type rejects the record.
//!
//! Triangles that collapse in two dimensions (a wall seen from above) are dropped beside the
//! others by the shared repair (`crate::repair`), where GDAL keeps zero-area polygons.

use geo_types::{Coord, Geometry, LineString, MultiPolygon, Polygon};

use super::rings::Ticker;
use super::shp::ShapeError;
use crate::repair::{Repairs, close_ring};

const TRIANGLE_STRIP: i32 = 0;
const TRIANGLE_FAN: i32 = 1;
const OUTER_RING: i32 = 2;
const INNER_RING: i32 = 3;
const FIRST_RING: i32 = 4;
const RING: i32 = 5;

/// The polygon being built from rings: its exterior and its holes so far.
type Building = Option<(Vec<Coord<f64>>, Vec<LineString<f64>>)>;

/// The polygons of a MultiPatch whose parts (type and positions, in order) are `parts`.
pub(super) fn multipatch(
    parts: Vec<(i32, Vec<Coord<f64>>)>,
    ticker: &mut Ticker<'_>,
    repairs: &mut Repairs,
) -> Result<Option<Geometry<f64>>, ShapeError> {
    let mut polygons: Vec<Polygon<f64>> = Vec::new();
    let mut current: Building = None;
    let finish = |current: &mut Building, polygons: &mut Vec<Polygon<f64>>| {
        if let Some((exterior, holes)) = current.take() {
            polygons.push(Polygon::new(LineString(exterior), holes));
        }
    };
    for (i, (kind, points)) in parts.into_iter().enumerate() {
        ticker.tick(points.len())?;
        match kind & 0xf {
            TRIANGLE_STRIP => {
                finish(&mut current, &mut polygons);
                for w in points.windows(3) {
                    polygons.push(triangle(w[0], w[1], w[2]));
                }
            }
            TRIANGLE_FAN => {
                finish(&mut current, &mut polygons);
                if let Some((&first, rest)) = points.split_first() {
                    for w in rest.windows(2) {
                        polygons.push(triangle(first, w[0], w[1]));
                    }
                }
            }
            OUTER_RING | INNER_RING | FIRST_RING | RING => {
                let mut ring = points;
                close_ring(&mut ring, repairs);
                let hole = matches!(kind & 0xf, INNER_RING | RING);
                match &mut current {
                    Some((_, holes)) if hole => holes.push(LineString(ring)),
                    _ => {
                        finish(&mut current, &mut polygons);
                        current = Some((ring, Vec::new()));
                    }
                }
            }
            other => {
                return Err(ShapeError::Reject(format!(
                    "MultiPatch part {i} has an unknown part type {other}"
                )));
            }
        }
    }
    finish(&mut current, &mut polygons);
    Ok((!polygons.is_empty()).then_some(Geometry::MultiPolygon(MultiPolygon(polygons))))
}

fn triangle(a: Coord<f64>, b: Coord<f64>, c: Coord<f64>) -> Polygon<f64> {
    Polygon::new(LineString(vec![a, b, c, a]), Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cancel::Cancel;
    use crate::repair::Repair;
    use geo_types::coord;

    fn read(parts: Vec<(i32, Vec<Coord<f64>>)>) -> (Vec<Polygon<f64>>, Repairs) {
        let cancel = Cancel::new();
        let mut repairs = Repairs::default();
        let g = multipatch(parts, &mut Ticker::new(&cancel), &mut repairs)
            .map_err(|_| "rejected")
            .unwrap();
        match g {
            Some(Geometry::MultiPolygon(mp)) => (mp.0, repairs),
            None => (Vec::new(), repairs),
            Some(other) => panic!("{other:?}"),
        }
    }

    fn pts(xy: &[(f64, f64)]) -> Vec<Coord<f64>> {
        xy.iter().map(|&(x, y)| coord! {x: x, y: y}).collect()
    }

    #[test]
    fn strips_and_fans_are_triangles() {
        let (p, r) = read(vec![(0, pts(&[(0., 0.), (0., 1.), (1., 0.), (1., 1.)]))]);
        assert_eq!(p.len(), 2);
        assert_eq!(
            p[1].exterior().0,
            pts(&[(0., 1.), (1., 0.), (1., 1.), (0., 1.)])
        );
        assert!(r.is_empty());
        let (p, _) = read(vec![(1, pts(&[(0., 0.), (1., 0.), (1., 1.), (0., 1.)]))]);
        assert_eq!(p.len(), 2);
        assert_eq!(
            p[1].exterior().0,
            pts(&[(0., 0.), (1., 1.), (0., 1.), (0., 0.)])
        );
    }

    #[test]
    fn rings_make_polygons_with_holes() {
        let square =
            |o: f64, s: f64| pts(&[(o, o), (o, o + s), (o + s, o + s), (o + s, o), (o, o)]);
        let (p, r) = read(vec![
            (2, square(0., 10.)),
            (3, square(2., 2.)),
            (5, square(5., 2.)),
            (4, square(20., 1.)),
            (5, pts(&[(20.2, 20.2), (20.4, 20.2), (20.4, 20.4)])),
        ]);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].interiors().len(), 2);
        assert_eq!(p[1].interiors().len(), 1);
        assert!(r.contains(Repair::RingClosed));
    }

    #[test]
    fn unknown_part_types_reject() {
        let cancel = Cancel::new();
        let result = multipatch(
            vec![(9, pts(&[(0., 0.)]))],
            &mut Ticker::new(&cancel),
            &mut Repairs::default(),
        );
        assert!(matches!(result, Err(ShapeError::Reject(m)) if m.contains("part type 9")));
    }
}
