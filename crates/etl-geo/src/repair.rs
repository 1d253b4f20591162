//! Degenerate geometries made into the nearest valid geometry instead of rejected: what GDAL's
//! readers keep (a one-point track is still a feature to ogr2ogr), made something PostGIS and
//! the tiler can use. Every reader applies [`repair`] (through `formats::accept`) before
//! [`validate`](crate::validate); rings are closed by the readers themselves with
//! [`close_ring`], on the positions as stored, because `geo_types::Polygon::new` closes
//! them without telling. What was done is noted in the record's [`Repairs`].
//!
//! The rules, on positions with consecutive duplicates collapsed (duplicates are removed only
//! where they make a line or ring degenerate; elsewhere they are left as they are):
//! - a LineString of one distinct position → that Point ([`Repair::LineToPoint`]);
//! - a polygon whose outer ring has fewer than three distinct positions → a LineString of
//!   its two positions, or a Point ([`Repair::RingToLine`]); such a hole, an empty hole,
//!   an empty or collapsed polygon beside real ones, an empty or one-position line beside
//!   real lines, an empty member of a collection → dropped ([`Repair::PartsDropped`]);
//! - a MultiLineString whose every part has one distinct position → a MultiPoint of them
//!   (a Point when there is one) ([`Repair::LinesToPoints`], [`Repair::LineToPoint`]); a
//!   MultiPolygon of collapsed polygons only → their lines (or points).
//!
//! A ring of three or more distinct positions that is still not a valid area (collinear
//! positions, a self-intersection) is left as it is: that is topology, not structure.
//! GPX tracks make the same decisions per segment in their reader, so that the per-point
//! `coordinateProperties` stay aligned with the segments kept.

use std::fmt;

use geo_types::{
    Coord, Geometry, GeometryCollection, LineString, MultiLineString, MultiPoint, Point, Polygon,
};

/// One kind of repair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Repair {
    /// A line of one distinct position (a one-point route or track) read as a Point.
    LineToPoint,
    /// A multi-line whose every part has one distinct position (a track of one-point
    /// segments) read as a MultiPoint.
    LinesToPoints,
    /// A polygon whose outer ring has fewer than three distinct positions read as a
    /// LineString (or a Point).
    RingToLine,
    /// A ring whose last position differed from its first, closed.
    RingClosed,
    /// Empty or degenerate parts dropped beside valid ones (empty or one-point segments,
    /// collapsed holes, collapsed polygons, empty members).
    PartsDropped,
}

impl Repair {
    pub const ALL: [Repair; 5] = [
        Repair::LineToPoint,
        Repair::LinesToPoints,
        Repair::RingToLine,
        Repair::RingClosed,
        Repair::PartsDropped,
    ];

    /// A stable snake_case name, for manifests and logs.
    pub fn name(self) -> &'static str {
        match self {
            Repair::LineToPoint => "line_to_point",
            Repair::LinesToPoints => "lines_to_points",
            Repair::RingToLine => "ring_to_line",
            Repair::RingClosed => "ring_closed",
            Repair::PartsDropped => "parts_dropped",
        }
    }

    /// What was done, in words.
    pub fn describe(self) -> &'static str {
        match self {
            Repair::LineToPoint => "a line of one position read as a point",
            Repair::LinesToPoints => {
                "a multi-line whose every part has one position read as a multi-point"
            }
            Repair::RingToLine => {
                "a polygon whose ring has fewer than three distinct positions read as a line"
            }
            Repair::RingClosed => "an unclosed polygon ring closed",
            Repair::PartsDropped => {
                "empty or degenerate parts dropped beside valid ones (one-point segments, collapsed holes or polygons)"
            }
        }
    }

    fn bit(self) -> u8 {
        match self {
            Repair::LineToPoint => 1,
            Repair::LinesToPoints => 2,
            Repair::RingToLine => 4,
            Repair::RingClosed => 8,
            Repair::PartsDropped => 16,
        }
    }
}

impl fmt::Display for Repair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The repairs made to one record's geometry (a set of [`Repair`] kinds; empty for most).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Repairs(u8);

impl Repairs {
    /// No repair.
    pub const NONE: Repairs = Repairs(0);

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn contains(self, repair: Repair) -> bool {
        self.0 & repair.bit() != 0
    }

    pub fn insert(&mut self, repair: Repair) {
        self.0 |= repair.bit();
    }

    /// The kinds made, in [`Repair::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = Repair> {
        Repair::ALL.into_iter().filter(move |r| self.contains(*r))
    }
}

impl From<Repair> for Repairs {
    fn from(repair: Repair) -> Self {
        let mut r = Repairs::NONE;
        r.insert(repair);
        r
    }
}

/// Closes a ring whose last position differs from its first, noting [`Repair::RingClosed`].
/// An empty ring stays empty.
pub(crate) fn close_ring(ring: &mut Vec<Coord<f64>>, repairs: &mut Repairs) {
    if let (Some(first), Some(last)) = (ring.first().copied(), ring.last().copied())
        && first != last
    {
        ring.push(first);
        repairs.insert(Repair::RingClosed);
    }
}

/// Repairs `geometry` in place by the rules of this module, adding what was done to `repairs`.
pub(crate) fn repair(geometry: &mut Geometry<f64>, repairs: &mut Repairs) {
    if !needs_work(geometry) {
        return;
    }
    let taken = std::mem::replace(
        geometry,
        Geometry::GeometryCollection(GeometryCollection(Vec::new())),
    );
    *geometry = fix(taken, repairs);
}

/// Distinct positions of a run with consecutive duplicates collapsed.
fn distinct(coords: &[Coord<f64>]) -> usize {
    let mut n = 0usize;
    let mut last: Option<Coord<f64>> = None;
    for c in coords {
        if last != Some(*c) {
            n += 1;
            last = Some(*c);
        }
    }
    n
}

/// A ring's distinct positions, without the closing one.
fn ring_positions(ring: &[Coord<f64>]) -> Vec<Coord<f64>> {
    let mut out: Vec<Coord<f64>> = Vec::with_capacity(4);
    for c in ring {
        if out.last() != Some(c) {
            out.push(*c);
        }
    }
    if out.len() > 1 && out.first() == out.last() {
        out.pop();
    }
    out
}

fn ring_collapsed(ring: &[Coord<f64>]) -> bool {
    // Fewer than 3 distinct positions (+1 closing) means fewer than 4 after de-duplication;
    // checked without allocating for the common, healthy ring.
    distinct(ring) < 4 && ring_positions(ring).len() < 3
}

fn line_degenerate(line: &[Coord<f64>]) -> bool {
    !line.is_empty() && distinct(line) < 2
}

fn polygon_empty(p: &Polygon<f64>) -> bool {
    p.exterior().0.is_empty() && p.interiors().is_empty()
}

fn is_empty(g: &Geometry<f64>) -> bool {
    match g {
        Geometry::LineString(l) => l.0.is_empty(),
        Geometry::Polygon(p) => polygon_empty(p),
        Geometry::MultiPoint(m) => m.0.is_empty(),
        Geometry::MultiLineString(m) => m.0.is_empty(),
        Geometry::MultiPolygon(m) => m.0.is_empty(),
        Geometry::GeometryCollection(c) => c.0.is_empty(),
        _ => false,
    }
}

/// Whether [`fix`] would change anything: most geometries are fine and are not rebuilt.
fn needs_work(g: &Geometry<f64>) -> bool {
    let polygon = |p: &Polygon<f64>| {
        !polygon_empty(p)
            && (ring_collapsed(&p.exterior().0)
                || p.interiors()
                    .iter()
                    .any(|h| h.0.is_empty() || ring_collapsed(&h.0)))
    };
    match g {
        Geometry::LineString(l) => line_degenerate(&l.0),
        Geometry::Polygon(p) => polygon(p),
        Geometry::MultiLineString(m) => m.0.iter().any(|l| l.0.is_empty() || line_degenerate(&l.0)),
        Geometry::MultiPolygon(m) => m.0.iter().any(|p| polygon_empty(p) || polygon(p)),
        Geometry::GeometryCollection(c) => c.0.iter().any(|g| is_empty(g) || needs_work(g)),
        _ => false,
    }
}

fn fix(g: Geometry<f64>, repairs: &mut Repairs) -> Geometry<f64> {
    match g {
        Geometry::LineString(l) => match l.0.first().copied() {
            Some(c) if line_degenerate(&l.0) => {
                repairs.insert(Repair::LineToPoint);
                Geometry::Point(Point(c))
            }
            _ => Geometry::LineString(l),
        },
        Geometry::Polygon(p) => match polygon(p, repairs) {
            Ok(p) => Geometry::Polygon(p),
            Err(remnant) => {
                repairs.insert(Repair::RingToLine);
                remnant
            }
        },
        Geometry::MultiLineString(m) => multi_line(m, repairs),
        Geometry::MultiPolygon(m) => multi_polygon(m.0, repairs),
        Geometry::GeometryCollection(c) => {
            let before = c.0.len();
            let members: Vec<Geometry<f64>> =
                c.0.into_iter()
                    .map(|g| fix(g, repairs))
                    .filter(|g| !is_empty(g))
                    .collect();
            if members.len() < before {
                repairs.insert(Repair::PartsDropped);
            }
            Geometry::GeometryCollection(GeometryCollection(members))
        }
        other => other,
    }
}

/// A polygon with its empty and collapsed holes dropped, or, when its outer ring collapsed,
/// what is left of it (a LineString or a Point) as the error.
fn polygon(p: Polygon<f64>, repairs: &mut Repairs) -> Result<Polygon<f64>, Geometry<f64>> {
    let (exterior, holes) = p.into_inner();
    if exterior.0.is_empty() {
        // The empty polygon, or holes without a shell (which validation refuses).
        return Ok(Polygon::new(exterior, holes));
    }
    if ring_collapsed(&exterior.0) {
        let positions = ring_positions(&exterior.0);
        return Err(match positions.as_slice() {
            [one] => Geometry::Point(Point(*one)),
            _ => Geometry::LineString(LineString(positions)),
        });
    }
    let before = holes.len();
    let kept: Vec<LineString<f64>> = holes
        .into_iter()
        .filter(|h| !h.0.is_empty() && !ring_collapsed(&h.0))
        .collect();
    if kept.len() < before {
        repairs.insert(Repair::PartsDropped);
    }
    Ok(Polygon::new(exterior, kept))
}

fn multi_line(m: MultiLineString<f64>, repairs: &mut Repairs) -> Geometry<f64> {
    let before = m.0.len();
    let parts: Vec<LineString<f64>> = m.0.into_iter().filter(|l| !l.0.is_empty()).collect();
    if parts.len() < before {
        repairs.insert(Repair::PartsDropped);
    }
    let (lines, points): (Vec<LineString<f64>>, Vec<LineString<f64>>) =
        parts.into_iter().partition(|l| !line_degenerate(&l.0));
    if !lines.is_empty() {
        if !points.is_empty() {
            repairs.insert(Repair::PartsDropped);
        }
        return Geometry::MultiLineString(MultiLineString(lines));
    }
    let mut points: Vec<Point<f64>> = points
        .into_iter()
        .filter_map(|l| l.0.first().copied().map(Point))
        .collect();
    match points.len() {
        0 => Geometry::MultiLineString(MultiLineString(Vec::new())),
        1 => {
            repairs.insert(Repair::LineToPoint);
            points.pop().map_or(
                Geometry::MultiPoint(MultiPoint(Vec::new())),
                Geometry::Point,
            )
        }
        _ => {
            repairs.insert(Repair::LinesToPoints);
            Geometry::MultiPoint(MultiPoint(points))
        }
    }
}

fn multi_polygon(polygons: Vec<Polygon<f64>>, repairs: &mut Repairs) -> Geometry<f64> {
    let mut kept = Vec::with_capacity(polygons.len());
    let mut lines = Vec::new();
    let mut points = Vec::new();
    let mut dropped = false;
    for p in polygons {
        if polygon_empty(&p) {
            dropped = true;
            continue;
        }
        match polygon(p, repairs) {
            Ok(p) => kept.push(p),
            Err(Geometry::LineString(l)) => lines.push(l),
            Err(Geometry::Point(pt)) => points.push(pt),
            Err(_) => dropped = true,
        }
    }
    if !kept.is_empty() {
        if dropped || !lines.is_empty() || !points.is_empty() {
            repairs.insert(Repair::PartsDropped);
        }
        return Geometry::MultiPolygon(geo_types::MultiPolygon(kept));
    }
    if dropped {
        repairs.insert(Repair::PartsDropped);
    }
    if lines.is_empty() && points.is_empty() {
        return Geometry::MultiPolygon(geo_types::MultiPolygon(Vec::new()));
    }
    repairs.insert(Repair::RingToLine);
    if !lines.is_empty() {
        if !points.is_empty() {
            repairs.insert(Repair::PartsDropped);
        }
        return match lines.len() {
            1 => lines.pop().map_or(
                Geometry::MultiLineString(MultiLineString(Vec::new())),
                Geometry::LineString,
            ),
            _ => Geometry::MultiLineString(MultiLineString(lines)),
        };
    }
    match points.len() {
        1 => points.pop().map_or(
            Geometry::MultiPoint(MultiPoint(Vec::new())),
            Geometry::Point,
        ),
        _ => Geometry::MultiPoint(MultiPoint(points)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo_types::{MultiPolygon, coord, line_string, point, polygon};

    fn fixed(g: impl Into<Geometry<f64>>) -> (Geometry<f64>, Vec<Repair>) {
        let mut g = g.into();
        let mut r = Repairs::NONE;
        repair(&mut g, &mut r);
        (g, r.iter().collect())
    }

    fn square(x: f64) -> LineString<f64> {
        line_string![(x: x, y: 0.), (x: x + 1., y: 0.), (x: x + 1., y: 1.), (x: x, y: 0.)]
    }

    #[test]
    fn healthy_geometries_are_untouched() {
        let cases: Vec<Geometry<f64>> = vec![
            point!(x: 1., y: 2.).into(),
            line_string![(x: 0., y: 0.), (x: 0., y: 0.), (x: 1., y: 1.)].into(),
            LineString::<f64>(vec![]).into(),
            Polygon::new(square(0.), vec![square(0.2)]).into(),
            Polygon::new(LineString(vec![]), vec![]).into(),
            MultiLineString(vec![line_string![(x: 0., y: 0.), (x: 1., y: 1.)]]).into(),
            MultiPolygon(vec![Polygon::new(square(0.), vec![])]).into(),
        ];
        for g in cases {
            assert_eq!(fixed(g.clone()), (g, vec![]));
        }
    }

    #[test]
    fn one_point_lines_become_points() {
        assert_eq!(
            fixed(line_string![(x: 1., y: 2.)]),
            (point!(x: 1., y: 2.).into(), vec![Repair::LineToPoint])
        );
        // Duplicates that make the line degenerate are removed.
        assert_eq!(
            fixed(line_string![(x: 1., y: 2.), (x: 1., y: 2.)]),
            (point!(x: 1., y: 2.).into(), vec![Repair::LineToPoint])
        );
    }

    #[test]
    fn multi_lines_of_points_become_points() {
        let one = MultiLineString(vec![line_string![(x: 1., y: 2.)], LineString(vec![])]);
        assert_eq!(
            fixed(one),
            (
                point!(x: 1., y: 2.).into(),
                vec![Repair::LineToPoint, Repair::PartsDropped]
            )
        );
        let two = MultiLineString(vec![
            line_string![(x: 1., y: 2.)],
            line_string![(x: 3., y: 4.), (x: 3., y: 4.)],
        ]);
        assert_eq!(
            fixed(two),
            (
                MultiPoint(vec![point!(x: 1., y: 2.), point!(x: 3., y: 4.)]).into(),
                vec![Repair::LinesToPoints]
            )
        );
        let mixed = MultiLineString(vec![
            line_string![(x: 1., y: 2.)],
            line_string![(x: 0., y: 0.), (x: 1., y: 1.)],
        ]);
        assert_eq!(
            fixed(mixed),
            (
                MultiLineString(vec![line_string![(x: 0., y: 0.), (x: 1., y: 1.)]]).into(),
                vec![Repair::PartsDropped]
            )
        );
    }

    #[test]
    fn collapsed_rings_become_lines_or_are_dropped() {
        let two = polygon![(x: 0., y: 0.), (x: 1., y: 1.), (x: 0., y: 0.)];
        assert_eq!(
            fixed(two.clone()),
            (
                line_string![(x: 0., y: 0.), (x: 1., y: 1.)].into(),
                vec![Repair::RingToLine]
            )
        );
        let dup = polygon![(x: 0., y: 0.), (x: 0., y: 0.), (x: 1., y: 1.), (x: 0., y: 0.)];
        assert_eq!(
            fixed(dup).0,
            line_string![(x: 0., y: 0.), (x: 1., y: 1.)].into()
        );
        let dot = polygon![(x: 5., y: 5.), (x: 5., y: 5.), (x: 5., y: 5.), (x: 5., y: 5.)];
        assert_eq!(
            fixed(dot),
            (point!(x: 5., y: 5.).into(), vec![Repair::RingToLine])
        );
        let hole = Polygon::new(
            square(0.),
            vec![line_string![(x: 0.2, y: 0.2), (x: 0.3, y: 0.3), (x: 0.2, y: 0.2)]],
        );
        assert_eq!(
            fixed(hole),
            (
                Polygon::new(square(0.), vec![]).into(),
                vec![Repair::PartsDropped]
            )
        );
        let parts = MultiPolygon(vec![Polygon::new(square(0.), vec![]), two.clone()]);
        assert_eq!(
            fixed(parts),
            (
                MultiPolygon(vec![Polygon::new(square(0.), vec![])]).into(),
                vec![Repair::PartsDropped]
            )
        );
        let only = MultiPolygon(vec![two.clone(), two]);
        assert_eq!(
            fixed(only),
            (
                MultiLineString(vec![
                    line_string![(x: 0., y: 0.), (x: 1., y: 1.)],
                    line_string![(x: 0., y: 0.), (x: 1., y: 1.)]
                ])
                .into(),
                vec![Repair::RingToLine]
            )
        );
    }

    #[test]
    fn collections_lose_empty_members() {
        let gc = GeometryCollection(vec![
            LineString::<f64>(vec![]).into(),
            line_string![(x: 1., y: 1.)].into(),
        ]);
        assert_eq!(
            fixed(Geometry::GeometryCollection(gc)),
            (
                Geometry::GeometryCollection(GeometryCollection(vec![point!(x: 1., y: 1.).into()])),
                vec![Repair::LineToPoint, Repair::PartsDropped]
            )
        );
    }

    #[test]
    fn closing_rings_is_noted() {
        let mut r = Repairs::NONE;
        let mut ring = vec![
            coord! {x: 0., y: 0.},
            coord! {x: 1., y: 0.},
            coord! {x: 1., y: 1.},
        ];
        close_ring(&mut ring, &mut r);
        assert_eq!(ring.len(), 4);
        assert!(r.contains(Repair::RingClosed));
        let mut r = Repairs::NONE;
        close_ring(&mut ring, &mut r);
        let mut empty = Vec::new();
        close_ring(&mut empty, &mut r);
        assert!(r.is_empty() && ring.len() == 4 && empty.is_empty());
    }

    #[test]
    fn names_are_stable() {
        let names: Vec<&str> = Repair::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(
            names,
            [
                "line_to_point",
                "lines_to_points",
                "ring_to_line",
                "ring_closed",
                "parts_dropped"
            ]
        );
    }
}
