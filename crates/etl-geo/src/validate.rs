//! Geometry validation applied by every reader: a geometry that passes can be
//! loaded into PostGIS as EPSG:4326 without surprises.
//!
//! It runs after [`crate::repair`], which has made degenerate geometries (one-point lines,
//! collapsed rings, empty parts) into valid ones and whose readers closed open rings on the
//! raw positions (`geo_types::Polygon::new` would close them without telling); what is left
//! to refuse here is what no repair makes right: coordinates that are not finite
//! longitudes/latitudes, and holes without a shell.

use geo_types::{Coord, Geometry, LineString, Polygon};

/// Checks that all coordinates are finite longitudes/latitudes, line strings have
/// at least 2 positions and polygon rings are closed with at least 4 positions.
/// Empty geometries are valid; a polygon is empty only with no rings at all (an
/// empty ring beside others, or holes without a shell, are refused). The message names what failed and where, e.g.
/// `"multipolygon part 2: polygon ring 1 (interior) is not closed"`.
pub fn validate(geom: &Geometry<f64>) -> Result<(), String> {
    match geom {
        Geometry::Point(p) => check_coord(p.0),
        Geometry::Line(l) => check_positions(&[l.start, l.end]).map_err(|e| format!("line {e}")),
        Geometry::LineString(ls) => check_line_string(ls),
        Geometry::Polygon(p) => check_polygon(p),
        Geometry::MultiPoint(mp) => each(mp.0.iter(), "multipoint part", |p| check_coord(p.0)),
        Geometry::MultiLineString(ml) => {
            each(ml.0.iter(), "multilinestring part", check_line_string)
        }
        Geometry::MultiPolygon(mp) => each(mp.0.iter(), "multipolygon part", check_polygon),
        Geometry::GeometryCollection(gc) => each(gc.0.iter(), "geometry", validate),
        Geometry::Rect(r) => check_positions(&[r.min(), r.max()]).map_err(|e| format!("rect {e}")),
        Geometry::Triangle(t) => {
            check_positions(&[t.v1(), t.v2(), t.v3()]).map_err(|e| format!("triangle {e}"))
        }
    }
}

fn each<'a, T: 'a>(
    items: impl Iterator<Item = &'a T>,
    what: &str,
    check: impl Fn(&T) -> Result<(), String>,
) -> Result<(), String> {
    for (i, item) in items.enumerate() {
        check(item).map_err(|e| format!("{what} {i}: {e}"))?;
    }
    Ok(())
}

#[inline]
fn check_coord(c: Coord<f64>) -> Result<(), String> {
    if !c.x.is_finite() || !c.y.is_finite() {
        return Err(format!("coordinate ({}, {}) is not finite", c.x, c.y));
    }
    if !(-180.0..=180.0).contains(&c.x) {
        return Err(format!("longitude {} out of range [-180, 180]", c.x));
    }
    if !(-90.0..=90.0).contains(&c.y) {
        return Err(format!("latitude {} out of range [-90, 90]", c.y));
    }
    Ok(())
}

fn check_positions(coords: &[Coord<f64>]) -> Result<(), String> {
    for (i, c) in coords.iter().enumerate() {
        check_coord(*c).map_err(|e| format!("position {i}: {e}"))?;
    }
    Ok(())
}

fn check_line_string(ls: &LineString<f64>) -> Result<(), String> {
    if ls.0.len() == 1 {
        return Err("linestring has 1 position, needs at least 2".to_owned());
    }
    check_positions(&ls.0).map_err(|e| format!("linestring {e}"))
}

fn check_polygon(p: &Polygon<f64>) -> Result<(), String> {
    // Only a polygon with no rings at all is the empty polygon. A hole without a
    // shell, or an empty ring beside real ones, is no polygon PostGIS can use: it
    // reads such EWKB but the result breaks area, validity and index operations.
    let empty = p.exterior().0.is_empty() && p.interiors().is_empty();
    if !empty {
        if p.exterior().0.is_empty() {
            return Err("polygon ring 0 (exterior) is empty but the polygon has holes".to_owned());
        }
        if let Some(i) = p.interiors().iter().position(|r| r.0.is_empty()) {
            return Err(format!(
                "polygon ring {} (interior) is empty",
                i.saturating_add(1)
            ));
        }
    }
    check_ring(&p.exterior().0, 0)?;
    for (i, ring) in p.interiors().iter().enumerate() {
        check_ring(&ring.0, i.saturating_add(1))?;
    }
    Ok(())
}

fn ring_kind(index: usize) -> &'static str {
    if index == 0 { "exterior" } else { "interior" }
}

fn check_ring(coords: &[Coord<f64>], index: usize) -> Result<(), String> {
    if coords.is_empty() {
        return Ok(());
    }
    let kind = ring_kind(index);
    check_positions(coords).map_err(|e| format!("polygon ring {index} ({kind}) {e}"))?;
    check_ring_closed(coords, index)?;
    if coords.len() < 4 {
        return Err(format!(
            "polygon ring {index} ({kind}) has {} positions, needs at least 4",
            coords.len()
        ));
    }
    Ok(())
}

/// Fails if ring `index` of a polygon (0 = exterior) is non-empty and its first and
/// last positions differ.
pub(crate) fn check_ring_closed(coords: &[Coord<f64>], index: usize) -> Result<(), String> {
    if coords.first() == coords.last() {
        Ok(())
    } else {
        Err(format!(
            "polygon ring {index} ({}) is not closed",
            ring_kind(index)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo_types::{
        GeometryCollection, MultiLineString, MultiPoint, MultiPolygon, Point, Rect, coord,
        line_string, point, polygon,
    };

    fn square(x: f64) -> LineString<f64> {
        line_string![(x: x, y: 0.), (x: x + 1., y: 0.), (x: x + 1., y: 1.), (x: x, y: 0.)]
    }

    #[test]
    fn valid_geometries_pass() {
        let geoms: Vec<Geometry<f64>> = vec![
            point!(x: 180., y: -90.).into(),
            line_string![(x: 0., y: 0.), (x: 1., y: 1.)].into(),
            LineString::<f64>(vec![]).into(),
            Polygon::new(square(0.), vec![square(0.2)]).into(),
            Polygon::new(LineString(vec![]), vec![]).into(),
            MultiPoint::<f64>(vec![]).into(),
            MultiPolygon(vec![Polygon::new(square(0.), vec![])]).into(),
            Geometry::GeometryCollection(GeometryCollection(vec![point!(x: 1., y: 2.).into()])),
            Rect::new(coord! {x: 0., y: 0.}, coord! {x: 1., y: 1.}).into(),
        ];
        for g in geoms {
            assert_eq!(validate(&g), Ok(()), "{g:?}");
        }
    }

    #[test]
    fn out_of_range_and_non_finite() {
        assert_eq!(
            validate(&point!(x: 10., y: 91.5).into()),
            Err("latitude 91.5 out of range [-90, 90]".to_owned())
        );
        assert_eq!(
            validate(&point!(x: -180.5, y: 0.).into()),
            Err("longitude -180.5 out of range [-180, 180]".to_owned())
        );
        assert_eq!(
            validate(&Point::new(f64::NAN, 0.).into()),
            Err("coordinate (NaN, 0) is not finite".to_owned())
        );
        assert_eq!(
            validate(&Point::new(1., f64::INFINITY).into()),
            Err("coordinate (1, inf) is not finite".to_owned())
        );
        assert_eq!(
            validate(&line_string![(x: 0., y: 0.), (x: 0., y: 100.)].into()),
            Err("linestring position 1: latitude 100 out of range [-90, 90]".to_owned())
        );
    }

    #[test]
    fn short_linestring() {
        assert_eq!(
            validate(&line_string![(x: 0., y: 0.)].into()),
            Err("linestring has 1 position, needs at least 2".to_owned())
        );
    }

    #[test]
    fn rings() {
        let open = line_string![(x: 0., y: 0.), (x: 1., y: 0.), (x: 1., y: 1.), (x: 0., y: 1.)];
        assert_eq!(
            check_ring_closed(&open.0, 0),
            Err("polygon ring 0 (exterior) is not closed".to_owned())
        );
        assert_eq!(
            check_ring_closed(&open.0, 1),
            Err("polygon ring 1 (interior) is not closed".to_owned())
        );
        assert_eq!(check_ring_closed(&square(0.).0, 1), Ok(()));
        assert_eq!(check_ring_closed(&[], 0), Ok(()));
        let short = line_string![(x: 0., y: 0.), (x: 1., y: 0.), (x: 0., y: 0.)];
        assert_eq!(
            validate(&Polygon::new(short, vec![]).into()),
            Err("polygon ring 0 (exterior) has 3 positions, needs at least 4".to_owned())
        );
    }

    #[test]
    fn empty_rings_only_as_the_empty_polygon() {
        let empty = LineString::<f64>(vec![]);
        assert_eq!(
            validate(&Polygon::new(empty.clone(), vec![square(0.)]).into()),
            Err("polygon ring 0 (exterior) is empty but the polygon has holes".to_owned())
        );
        assert_eq!(
            validate(&Polygon::new(square(0.), vec![square(0.2), empty.clone()]).into()),
            Err("polygon ring 2 (interior) is empty".to_owned())
        );
        assert_eq!(
            validate(&MultiPolygon(vec![Polygon::new(empty.clone(), vec![])]).into()),
            Ok(())
        );
        assert_eq!(
            validate(&MultiPolygon(vec![Polygon::new(empty, vec![square(0.)])]).into()),
            Err(
                "multipolygon part 0: polygon ring 0 (exterior) is empty but the polygon has holes"
                    .to_owned()
            )
        );
    }

    #[test]
    fn nested_messages_say_where() {
        let bad = polygon![(x: 0., y: 0.), (x: 1., y: 0.), (x: 1., y: 95.), (x: 0., y: 0.)];
        let mp = MultiPolygon(vec![Polygon::new(square(0.), vec![]), bad]);
        assert_eq!(
            validate(&mp.into()),
            Err(
                "multipolygon part 1: polygon ring 0 (exterior) position 2: latitude 95 out of range [-90, 90]"
                    .to_owned()
            )
        );
        let gc = GeometryCollection(vec![
            point!(x: 0., y: 0.).into(),
            MultiLineString(vec![line_string![(x: 0., y: 0.)]]).into(),
        ]);
        assert_eq!(
            validate(&Geometry::GeometryCollection(gc)),
            Err(
                "geometry 1: multilinestring part 0: linestring has 1 position, needs at least 2"
                    .to_owned()
            )
        );
    }
}
