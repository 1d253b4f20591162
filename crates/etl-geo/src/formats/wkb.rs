//! Well-known binary as GeoPackage and GeoParquet store it: OGC/ISO WKB of either byte order,
//! with the ISO type codes for Z (1000+), M (2000+) and ZM (3000+) and, as GDAL also reads
//! them, PostGIS EWKB's Z, M and SRID flag bits. Z and M are dropped. (PostGIS's own 2D EWKB
//! is read and written by [`crate::ewkb`].)
//!
//! Point, LineString, Polygon, their Multi* forms and GeometryCollection are read; so are the
//! curves (CircularString, CompoundCurve, CurvePolygon, MultiCurve, MultiSurface: type codes
//! 8–12), made into straight segments as GDAL does ([`crate::curve`]), Triangle (17) as a
//! Polygon and TIN (16) and PolyhedralSurface (15) as a MultiPolygon. The abstract Curve and
//! Surface (13, 14) are refused, naming the type. Every count is checked against the bytes left
//! before anything is allocated, collections nest at most [`MAX_NESTING`] deep, an unclosed
//! ring is closed (on the stored positions, noted as a repair), NaN positions are refused (an
//! all-NaN Point is the empty point), and nothing may follow the geometry.

use geo_types::{
    Coord, Geometry, GeometryCollection, LineString, MultiLineString, MultiPoint, MultiPolygon,
    Point, Polygon,
};

use crate::curve::{self, Budget};
use crate::repair::{Repairs, close_ring};

/// Deepest nesting of geometry collections.
pub(crate) const MAX_NESTING: usize = 64;

const Z_FLAG: u32 = 0x8000_0000;
const M_FLAG: u32 = 0x4000_0000;
const SRID_FLAG: u32 = 0x2000_0000;

const POINT: u32 = 1;
const LINESTRING: u32 = 2;
const POLYGON: u32 = 3;
const MULTIPOINT: u32 = 4;
const MULTILINESTRING: u32 = 5;
const MULTIPOLYGON: u32 = 6;
const COLLECTION: u32 = 7;
const CIRCULARSTRING: u32 = 8;
const COMPOUNDCURVE: u32 = 9;
const CURVEPOLYGON: u32 = 10;
const MULTICURVE: u32 = 11;
const MULTISURFACE: u32 = 12;
const POLYHEDRALSURFACE: u32 = 15;
const TIN: u32 = 16;
const TRIANGLE: u32 = 17;

/// The smallest WKB geometry: byte order, type and a count.
const MIN_GEOMETRY: usize = 9;

fn type_name(kind: u32) -> &'static str {
    match kind {
        POINT => "Point",
        LINESTRING => "LineString",
        POLYGON => "Polygon",
        MULTIPOINT => "MultiPoint",
        MULTILINESTRING => "MultiLineString",
        MULTIPOLYGON => "MultiPolygon",
        COLLECTION => "GeometryCollection",
        8 => "CircularString",
        9 => "CompoundCurve",
        10 => "CurvePolygon",
        11 => "MultiCurve",
        12 => "MultiSurface",
        13 => "Curve",
        14 => "Surface",
        15 => "PolyhedralSurface",
        16 => "TIN",
        17 => "Triangle",
        _ => "unknown geometry type",
    }
}

/// Reads one WKB geometry filling all of `bytes`; `None` when it is empty (an all-NaN Point,
/// or a geometry with no positions, rings or members).
pub(crate) fn read(bytes: &[u8], repairs: &mut Repairs) -> Result<Option<Geometry<f64>>, String> {
    let mut r = Reader {
        bytes,
        offset: 0,
        budget: Budget::default(),
        repairs,
    };
    let geometry = r.geometry(0)?;
    let rest = bytes.len().saturating_sub(r.offset);
    if rest > 0 {
        return Err(format!("WKB: {rest} bytes after the end of the geometry"));
    }
    Ok(if is_empty(&geometry) {
        None
    } else {
        Some(geometry)
    })
}

/// A geometry read with no content at the top level.
fn is_empty(g: &Geometry<f64>) -> bool {
    match g {
        Geometry::Point(p) => p.x().is_nan() && p.y().is_nan(),
        Geometry::LineString(l) => l.0.is_empty(),
        Geometry::Polygon(p) => p.exterior().0.is_empty() && p.interiors().is_empty(),
        Geometry::MultiPoint(m) => m.0.is_empty(),
        Geometry::MultiLineString(m) => m.0.is_empty(),
        Geometry::MultiPolygon(m) => m.0.is_empty(),
        Geometry::GeometryCollection(c) => c.0.is_empty(),
        _ => false,
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
    /// What linearising this geometry's arcs may still make.
    budget: Budget,
    repairs: &'a mut Repairs,
}

#[derive(Clone, Copy)]
struct Header {
    little_endian: bool,
    kind: u32,
    /// Ordinates per position (2 to 4).
    dims: usize,
}

impl Reader<'_> {
    fn left(&self) -> usize {
        self.bytes.len().saturating_sub(self.offset)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let chunk = self
            .bytes
            .get(self.offset..)
            .and_then(|rest| rest.first_chunk::<N>())
            .ok_or_else(|| {
                format!(
                    "WKB ends early: {N} more bytes needed at offset {}, {} left",
                    self.offset,
                    self.left()
                )
            })?;
        self.offset = self.offset.saturating_add(N);
        Ok(*chunk)
    }

    fn u32(&mut self, little_endian: bool) -> Result<u32, String> {
        let b = self.array::<4>()?;
        Ok(if little_endian {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    }

    fn f64(&mut self, little_endian: bool) -> Result<f64, String> {
        let b = self.array::<8>()?;
        Ok(if little_endian {
            f64::from_le_bytes(b)
        } else {
            f64::from_be_bytes(b)
        })
    }

    fn header(&mut self) -> Result<Header, String> {
        let at = self.offset;
        let little_endian = match self.array::<1>()? {
            [0] => false,
            [1] => true,
            [other] => {
                return Err(format!(
                    "WKB: invalid byte order marker {other} at offset {at}"
                ));
            }
        };
        let code = self.u32(little_endian)?;
        if code & SRID_FLAG != 0 {
            self.u32(little_endian)?;
        }
        let base = code & 0x0FFF_FFFF;
        let iso_extra = match base / 1000 {
            0 => 0,
            1 | 2 => 1,
            3 => 2,
            _ => {
                return Err(format!(
                    "WKB: unknown geometry type code {code} at offset {at}"
                ));
            }
        };
        let kind = base % 1000;
        let dims =
            2 + iso_extra + usize::from(code & Z_FLAG != 0) + usize::from(code & M_FLAG != 0);
        if !(POINT..=MULTISURFACE).contains(&kind)
            && !(POLYHEDRALSURFACE..=TRIANGLE).contains(&kind)
        {
            return Err(match type_name(kind) {
                "unknown geometry type" => {
                    format!("WKB: unknown geometry type code {code} at offset {at}")
                }
                name => format!("{name} geometries are not supported"),
            });
        }
        if iso_extra > 0 && code & (Z_FLAG | M_FLAG) != 0 {
            return Err(format!(
                "WKB: geometry type code {code:#x} at offset {at} declares Z or M twice"
            ));
        }
        Ok(Header {
            little_endian,
            kind,
            dims,
        })
    }

    /// A count of items at least `min_size` bytes each, checked against the bytes left so
    /// that a lying count cannot ask for a huge allocation.
    fn count(&mut self, h: Header, min_size: usize) -> Result<usize, String> {
        let at = self.offset;
        let n = self.u32(h.little_endian)?;
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        let needed = n.saturating_mul(min_size.max(1));
        if needed > self.left() {
            return Err(format!(
                "WKB: a {} at offset {at} says it has {n} parts, which would need {needed} bytes; {} are left",
                type_name(h.kind),
                self.left()
            ));
        }
        Ok(n)
    }

    /// One position, which may be NaN (the caller decides what that means).
    fn raw_coord(&mut self, h: Header) -> Result<Coord<f64>, String> {
        let x = self.f64(h.little_endian)?;
        let y = self.f64(h.little_endian)?;
        for _ in 2..h.dims {
            self.f64(h.little_endian)?;
        }
        Ok(Coord { x, y })
    }

    fn coord(&mut self, h: Header) -> Result<Coord<f64>, String> {
        let at = self.offset;
        let c = self.raw_coord(h)?;
        if c.x.is_nan() || c.y.is_nan() {
            return Err(format!("WKB: NaN coordinate at offset {at}"));
        }
        Ok(c)
    }

    fn coords(&mut self, h: Header) -> Result<Vec<Coord<f64>>, String> {
        let n = self.count(h, h.dims.saturating_mul(8))?;
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.coord(h)?);
        }
        Ok(out)
    }

    /// A point; all-NaN is the empty point, returned as is for the caller to judge.
    fn point(&mut self, h: Header) -> Result<Point<f64>, String> {
        let at = self.offset;
        let c = self.raw_coord(h)?;
        if c.x.is_nan() != c.y.is_nan() {
            return Err(format!("WKB: NaN coordinate at offset {at}"));
        }
        Ok(Point(c))
    }

    fn polygon(&mut self, h: Header) -> Result<Polygon<f64>, String> {
        let n = self.count(h, 4)?;
        let mut rings = Vec::with_capacity(n);
        for _ in 0..n {
            let mut ring = self.coords(h)?;
            close_ring(&mut ring, self.repairs);
            rings.push(ring);
        }
        Ok(polygon(rings))
    }

    /// A CircularString's positions as straight segments.
    fn circular(&mut self, h: Header) -> Result<Vec<Coord<f64>>, String> {
        let points = self.coords(h)?;
        let mut out = Vec::with_capacity(points.len());
        curve::circular_string(&points, &mut out, &mut self.budget)?;
        Ok(out)
    }

    /// A CompoundCurve's LineString and CircularString parts, joined.
    fn compound(&mut self, h: Header) -> Result<Vec<Coord<f64>>, String> {
        let n = self.count(h, MIN_GEOMETRY)?;
        let mut out: Vec<Coord<f64>> = Vec::new();
        for i in 0..n {
            let at = self.offset;
            let m = self.header()?;
            let part = match m.kind {
                LINESTRING => self.coords(m)?,
                CIRCULARSTRING => self.circular(m)?,
                other => {
                    return Err(format!(
                        "WKB: a {} inside a CompoundCurve at offset {at}",
                        type_name(other)
                    ));
                }
            };
            let Some(first) = part.first() else { continue };
            match out.last() {
                None => out.extend(part),
                Some(last) if last == first => out.extend(part.into_iter().skip(1)),
                Some(_) => {
                    return Err(format!(
                        "CompoundCurve part {i} does not start where the part before it ends"
                    ));
                }
            }
        }
        Ok(out)
    }

    /// A member curve (of a CurvePolygon or MultiCurve): LineString, CircularString or
    /// CompoundCurve, as straight segments.
    fn curve(&mut self, parent: u32) -> Result<Vec<Coord<f64>>, String> {
        let at = self.offset;
        let h = self.header()?;
        match h.kind {
            LINESTRING => self.coords(h),
            CIRCULARSTRING => self.circular(h),
            COMPOUNDCURVE => self.compound(h),
            other => Err(format!(
                "WKB: a {} inside a {} at offset {at}",
                type_name(other),
                type_name(parent)
            )),
        }
    }

    fn curve_polygon(&mut self, h: Header) -> Result<Polygon<f64>, String> {
        let n = self.count(h, MIN_GEOMETRY)?;
        let mut rings = Vec::with_capacity(n);
        for _ in 0..n {
            let mut ring = self.curve(CURVEPOLYGON)?;
            close_ring(&mut ring, self.repairs);
            rings.push(ring);
        }
        Ok(polygon(rings))
    }

    /// The polygons of a MultiPolygon, MultiSurface, PolyhedralSurface or TIN.
    fn surfaces(&mut self, h: Header) -> Result<Vec<Polygon<f64>>, String> {
        let n = self.count(h, MIN_GEOMETRY)?;
        let mut polygons = Vec::with_capacity(n);
        for i in 0..n {
            let at = self.offset;
            let m = self.header()?;
            let allowed = match h.kind {
                MULTISURFACE => matches!(m.kind, POLYGON | CURVEPOLYGON | TRIANGLE),
                TIN => m.kind == TRIANGLE,
                _ => m.kind == POLYGON,
            };
            if !allowed {
                return Err(format!(
                    "WKB: a {} inside a {} at offset {at}",
                    type_name(m.kind),
                    type_name(h.kind)
                ));
            }
            let p = if m.kind == CURVEPOLYGON {
                self.curve_polygon(m)
            } else {
                self.polygon(m)
            };
            polygons.push(p.map_err(|e| format!("{} part {i}: {e}", type_name(h.kind)))?);
        }
        Ok(polygons)
    }

    /// The header of a member of a Multi* geometry, which must be of `kind`.
    fn member(&mut self, parent: u32, kind: u32) -> Result<Header, String> {
        let at = self.offset;
        let h = self.header()?;
        if h.kind != kind {
            return Err(format!(
                "WKB: a {} inside a {} at offset {at}",
                type_name(h.kind),
                type_name(parent)
            ));
        }
        Ok(h)
    }

    fn geometry(&mut self, nesting: usize) -> Result<Geometry<f64>, String> {
        if nesting > MAX_NESTING {
            return Err(format!(
                "WKB: geometry collections nested deeper than {MAX_NESTING} levels"
            ));
        }
        let h = self.header()?;
        Ok(match h.kind {
            POINT => Geometry::Point(self.point(h)?),
            LINESTRING => Geometry::LineString(LineString(self.coords(h)?)),
            POLYGON | TRIANGLE => Geometry::Polygon(self.polygon(h)?),
            CIRCULARSTRING => Geometry::LineString(LineString(self.circular(h)?)),
            COMPOUNDCURVE => Geometry::LineString(LineString(self.compound(h)?)),
            CURVEPOLYGON => Geometry::Polygon(self.curve_polygon(h)?),
            MULTICURVE => {
                let n = self.count(h, MIN_GEOMETRY)?;
                let mut lines = Vec::with_capacity(n);
                for _ in 0..n {
                    let line = self.curve(MULTICURVE)?;
                    if !line.is_empty() {
                        lines.push(LineString(line));
                    }
                }
                Geometry::MultiLineString(MultiLineString(lines))
            }
            MULTISURFACE | POLYHEDRALSURFACE | TIN => {
                Geometry::MultiPolygon(MultiPolygon(self.surfaces(h)?))
            }
            MULTIPOINT => {
                let n = self.count(h, MIN_GEOMETRY)?;
                let mut points = Vec::with_capacity(n);
                for i in 0..n {
                    let m = self.member(h.kind, POINT)?;
                    let p = self.point(m)?;
                    if p.x().is_nan() {
                        return Err(format!("MultiPoint part {i} is an empty point"));
                    }
                    points.push(p);
                }
                Geometry::MultiPoint(MultiPoint(points))
            }
            MULTILINESTRING => {
                let n = self.count(h, MIN_GEOMETRY)?;
                let mut lines = Vec::with_capacity(n);
                for _ in 0..n {
                    let m = self.member(h.kind, LINESTRING)?;
                    lines.push(LineString(self.coords(m)?));
                }
                Geometry::MultiLineString(MultiLineString(lines))
            }
            MULTIPOLYGON => Geometry::MultiPolygon(MultiPolygon(self.surfaces(h)?)),
            _ => {
                let n = self.count(h, MIN_GEOMETRY)?;
                let mut members = Vec::with_capacity(n);
                for i in 0..n {
                    let g = self.geometry(nesting.saturating_add(1))?;
                    if matches!(&g, Geometry::Point(p) if p.x().is_nan()) {
                        return Err(format!("GeometryCollection member {i} is an empty point"));
                    }
                    members.push(g);
                }
                Geometry::GeometryCollection(GeometryCollection(members))
            }
        })
    }
}

/// A polygon of rings, the first the exterior (an empty one when there are none).
fn polygon(rings: Vec<Vec<Coord<f64>>>) -> Polygon<f64> {
    let mut rings = rings.into_iter().map(LineString);
    let exterior = rings.next().unwrap_or_else(|| LineString(Vec::new()));
    Polygon::new(exterior, rings.collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::repair::Repair;
    use geo_types::{line_string, point, polygon};

    fn read(bytes: &[u8]) -> Result<Option<Geometry<f64>>, String> {
        super::read(bytes, &mut Repairs::default())
    }

    fn le(code: u32) -> Vec<u8> {
        let mut b = vec![1];
        b.extend_from_slice(&code.to_le_bytes());
        b
    }

    fn push(b: &mut Vec<u8>, values: &[f64]) {
        for v in values {
            b.extend_from_slice(&v.to_le_bytes());
        }
    }

    fn count(b: &mut Vec<u8>, n: u32) {
        b.extend_from_slice(&n.to_le_bytes());
    }

    #[test]
    fn points_in_every_dimension_and_byte_order() {
        for (code, extra) in [
            (1u32, 0usize),
            (1001, 1),
            (2001, 1),
            (3001, 2),
            (Z_FLAG | 1, 1),
        ] {
            let mut b = le(code);
            push(&mut b, &[1.0, 2.0]);
            push(&mut b, &vec![9.0; extra]);
            assert_eq!(read(&b), Ok(Some(point!(x: 1., y: 2.).into())), "{code:#x}");
        }
        let mut be = vec![0];
        be.extend_from_slice(&1001u32.to_be_bytes());
        for v in [1.0f64, 2.0, 3.0] {
            be.extend_from_slice(&v.to_be_bytes());
        }
        assert_eq!(read(&be), Ok(Some(point!(x: 1., y: 2.).into())));
        // EWKB with an SRID.
        let mut srid = le(SRID_FLAG | 1);
        srid.extend_from_slice(&4326u32.to_le_bytes());
        push(&mut srid, &[1.0, 2.0]);
        assert_eq!(read(&srid), Ok(Some(point!(x: 1., y: 2.).into())));
    }

    #[test]
    fn polygons_lines_and_empties() {
        let mut b = le(3);
        count(&mut b, 1);
        count(&mut b, 4);
        push(&mut b, &[0., 0., 1., 0., 1., 1., 0., 0.]);
        assert_eq!(
            read(&b),
            Ok(Some(
                polygon![(x: 0., y: 0.), (x: 1., y: 0.), (x: 1., y: 1.), (x: 0., y: 0.)].into()
            ))
        );
        let mut open = le(3);
        count(&mut open, 1);
        count(&mut open, 4);
        push(&mut open, &[0., 0., 1., 0., 1., 1., 0., 1.]);
        let mut repairs = Repairs::NONE;
        assert_eq!(
            super::read(&open, &mut repairs),
            Ok(Some(
                polygon![(x: 0., y: 0.), (x: 1., y: 0.), (x: 1., y: 1.), (x: 0., y: 1.), (x: 0., y: 0.)].into()
            ))
        );
        assert!(repairs.contains(Repair::RingClosed));
        let mut line = le(2);
        count(&mut line, 2);
        push(&mut line, &[0., 0., 1., 1.]);
        assert_eq!(
            read(&line),
            Ok(Some(line_string![(x: 0., y: 0.), (x: 1., y: 1.)].into()))
        );
        let mut empty_point = le(1);
        push(&mut empty_point, &[f64::NAN, f64::NAN]);
        assert_eq!(read(&empty_point), Ok(None));
        for code in [2u32, 3, 4, 5, 6, 7] {
            let mut b = le(code);
            count(&mut b, 0);
            assert_eq!(read(&b), Ok(None), "type {code}");
        }
    }

    #[test]
    fn refusals() {
        let mut lying = le(2);
        count(&mut lying, u32::MAX);
        assert!(read(&lying).unwrap_err().contains("parts"));
        let mut curve = le(13);
        count(&mut curve, 0);
        assert_eq!(
            read(&curve),
            Err("Curve geometries are not supported".into())
        );
        assert!(read(&le(99)).unwrap_err().contains("unknown geometry type"));
        assert!(read(&le(1)).unwrap_err().contains("ends early"));
        assert!(read(&[7, 1, 0, 0, 0]).unwrap_err().contains("byte order"));
        let mut trailing = le(1);
        push(&mut trailing, &[1., 2., 3.]);
        assert!(read(&trailing).unwrap_err().contains("after the end"));
        let mut nan = le(2);
        count(&mut nan, 2);
        push(&mut nan, &[0., f64::NAN, 1., 1.]);
        assert!(read(&nan).unwrap_err().contains("NaN"));
        let mut wrong_member = le(4);
        count(&mut wrong_member, 1);
        wrong_member.extend(le(2));
        count(&mut wrong_member, 0);
        assert!(
            read(&wrong_member)
                .unwrap_err()
                .contains("LineString inside a MultiPoint")
        );
        let mut twice = le(Z_FLAG | 1001);
        push(&mut twice, &[1., 2., 3., 4.]);
        assert!(read(&twice).unwrap_err().contains("twice"));
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let mut b = Vec::new();
        for _ in 0..10_000 {
            b.extend(le(7));
            count(&mut b, 1);
        }
        b.extend(le(1));
        push(&mut b, &[0., 0.]);
        assert!(read(&b).unwrap_err().contains("nested deeper"));
        let mut ok = Vec::new();
        for _ in 0..MAX_NESTING {
            ok.extend(le(7));
            count(&mut ok, 1);
        }
        ok.extend(le(1));
        push(&mut ok, &[0., 0.]);
        assert!(read(&ok).unwrap().is_some());
    }
}
