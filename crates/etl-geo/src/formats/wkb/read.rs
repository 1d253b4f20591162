//! Geometry decoding: positions, the simple types, their Multi* forms, the surfaces read as
//! polygons, and collections. The curves are in `curves.rs`.

use geo_types::{
    Coord, Geometry, GeometryCollection, LineString, MultiLineString, MultiPoint, MultiPolygon,
    Point, Polygon,
};

use super::{
    CIRCULARSTRING, COMPOUNDCURVE, CURVEPOLYGON, Header, LINESTRING, MAX_NESTING, MIN_GEOMETRY,
    MULTICURVE, MULTILINESTRING, MULTIPOINT, MULTIPOLYGON, MULTISURFACE, POINT, POLYGON,
    POLYHEDRALSURFACE, Reader, TIN, TRIANGLE, WkbError, reserve, type_name,
};
use crate::repair::close_ring;

impl Reader<'_> {
    /// A geometry nested `nesting` collections deep: its header, then its body.
    fn geometry(&mut self, nesting: usize) -> Result<Geometry<f64>, WkbError> {
        if nesting > MAX_NESTING {
            return Err(WkbError::TooDeep {
                offset: self.offset,
            });
        }
        let h = self.header()?;
        self.body(h, nesting)
    }

    /// What follows header `h`, nested `nesting` collections deep.
    pub(super) fn body(&mut self, h: Header, nesting: usize) -> Result<Geometry<f64>, WkbError> {
        Ok(match h.kind {
            POINT => Geometry::Point(self.point(h)?),
            LINESTRING => Geometry::LineString(LineString(self.coords(h)?)),
            POLYGON | TRIANGLE => Geometry::Polygon(self.polygon(h)?),
            CIRCULARSTRING => Geometry::LineString(LineString(self.circular(h)?)),
            COMPOUNDCURVE => Geometry::LineString(LineString(self.compound(h)?)),
            CURVEPOLYGON => Geometry::Polygon(self.curve_polygon(h)?),
            MULTICURVE => Geometry::MultiLineString(self.multi_curve(h)?),
            MULTIPOLYGON | MULTISURFACE | POLYHEDRALSURFACE | TIN => {
                Geometry::MultiPolygon(MultiPolygon(self.surfaces(h)?))
            }
            MULTIPOINT => {
                let n = self.count(h, MIN_GEOMETRY)?;
                let mut points = reserve(n);
                for _ in 0..n {
                    let m = self.member(h.kind, POINT)?;
                    let p = self.point(m)?;
                    if p.x().is_nan() {
                        return Err(WkbError::EmptyPoint { offset: m.offset });
                    }
                    points.push(p);
                }
                Geometry::MultiPoint(MultiPoint(points))
            }
            MULTILINESTRING => {
                let n = self.count(h, MIN_GEOMETRY)?;
                let mut lines = reserve(n);
                for _ in 0..n {
                    let m = self.member(h.kind, LINESTRING)?;
                    lines.push(LineString(self.coords(m)?));
                }
                Geometry::MultiLineString(MultiLineString(lines))
            }
            _ => {
                let n = self.count(h, MIN_GEOMETRY)?;
                let mut members = reserve(n);
                for _ in 0..n {
                    let offset = self.offset;
                    let g = self.geometry(nesting.saturating_add(1))?;
                    if matches!(&g, Geometry::Point(p) if p.x().is_nan()) {
                        return Err(WkbError::EmptyPoint { offset });
                    }
                    members.push(g);
                }
                Geometry::GeometryCollection(GeometryCollection(members))
            }
        })
    }

    /// One position, which may be NaN (the caller decides what that means).
    fn raw_coord(&mut self, h: Header) -> Result<Coord<f64>, WkbError> {
        let x = self.f64(h.little_endian)?;
        let y = self.f64(h.little_endian)?;
        for _ in 2..h.dims {
            self.f64(h.little_endian)?;
        }
        Ok(Coord { x, y })
    }

    /// A LineString's (or ring's, or CircularString's) positions, none NaN.
    pub(super) fn coords(&mut self, h: Header) -> Result<Vec<Coord<f64>>, WkbError> {
        let n = self.count(h, h.dims.saturating_mul(8))?;
        let mut out = reserve(n);
        for _ in 0..n {
            let offset = self.offset;
            let c = self.raw_coord(h)?;
            if c.x.is_nan() || c.y.is_nan() {
                return Err(WkbError::NanCoordinate { offset });
            }
            out.push(c);
        }
        Ok(out)
    }

    /// A point; all-NaN is the empty point, returned as is for the caller to judge.
    pub(super) fn point(&mut self, h: Header) -> Result<Point<f64>, WkbError> {
        let offset = self.offset;
        let c = self.raw_coord(h)?;
        if c.x.is_nan() != c.y.is_nan() {
            return Err(WkbError::NanCoordinate { offset });
        }
        Ok(Point(c))
    }

    fn polygon(&mut self, h: Header) -> Result<Polygon<f64>, WkbError> {
        let n = self.count(h, 4)?;
        let mut rings = reserve(n);
        for _ in 0..n {
            let mut ring = self.coords(h)?;
            close_ring(&mut ring, self.repairs);
            rings.push(ring);
        }
        Ok(polygon(rings))
    }

    /// The polygons of a MultiPolygon, MultiSurface, PolyhedralSurface or TIN.
    fn surfaces(&mut self, h: Header) -> Result<Vec<Polygon<f64>>, WkbError> {
        let n = self.count(h, MIN_GEOMETRY)?;
        let mut polygons = reserve(n);
        for _ in 0..n {
            let m = self.header()?;
            let allowed = match h.kind {
                MULTISURFACE => matches!(m.kind, POLYGON | CURVEPOLYGON | TRIANGLE),
                TIN => m.kind == TRIANGLE,
                _ => m.kind == POLYGON,
            };
            if !allowed {
                return Err(WkbError::Member {
                    offset: m.offset,
                    parent: type_name(h.kind),
                    found: type_name(m.kind),
                });
            }
            polygons.push(if m.kind == CURVEPOLYGON {
                self.curve_polygon(m)?
            } else {
                self.polygon(m)?
            });
        }
        Ok(polygons)
    }

    /// The header of a member of a Multi* geometry, which must be of `kind`.
    fn member(&mut self, parent: u32, kind: u32) -> Result<Header, WkbError> {
        let h = self.header()?;
        if h.kind != kind {
            return Err(WkbError::Member {
                offset: h.offset,
                parent: type_name(parent),
                found: type_name(h.kind),
            });
        }
        Ok(h)
    }
}

/// A polygon of rings, the first the exterior (an empty one when there are none).
pub(super) fn polygon(rings: Vec<Vec<Coord<f64>>>) -> Polygon<f64> {
    let mut rings = rings.into_iter().map(LineString);
    let exterior = rings.next().unwrap_or_else(|| LineString(Vec::new()));
    Polygon::new(exterior, rings.collect())
}
