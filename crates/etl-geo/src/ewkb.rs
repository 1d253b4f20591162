//! PostGIS extended WKB: little-endian, 2D, optional SRID.

use geo_types::{
    Coord, Geometry, GeometryCollection, LineString, MultiLineString, MultiPoint, MultiPolygon,
    Point, Polygon,
};

const SRID_FLAG: u32 = 0x2000_0000;
const Z_FLAG: u32 = 0x8000_0000;
const M_FLAG: u32 = 0x4000_0000;
const MAX_NESTING: usize = 64;

const POINT: u32 = 1;
const LINESTRING: u32 = 2;
const POLYGON: u32 = 3;
const MULTIPOINT: u32 = 4;
const MULTILINESTRING: u32 = 5;
const MULTIPOLYGON: u32 = 6;
const GEOMETRYCOLLECTION: u32 = 7;

/// Why bytes are not EWKB this module can read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EwkbError {
    #[error("EWKB ends early: needed {needed} more bytes at offset {offset}")]
    UnexpectedEnd { offset: usize, needed: usize },
    #[error("invalid byte order marker {marker} at offset {offset}")]
    ByteOrder { offset: usize, marker: u8 },
    #[error("unsupported geometry type {code:#x} at offset {offset}")]
    GeometryType { offset: usize, code: u32 },
    #[error("{found} inside a {parent} at offset {offset}")]
    Member {
        offset: usize,
        parent: &'static str,
        found: &'static str,
    },
    #[error("empty point at offset {offset} cannot be represented")]
    EmptyPoint { offset: usize },
    /// geo_types cannot hold NaN faithfully: `Polygon::new` sees a ring starting
    /// with NaN as open and appends to it on every read.
    #[error("NaN coordinate at offset {offset}")]
    NanCoordinate { offset: usize },
    #[error("geometry collections nested deeper than {MAX_NESTING} levels")]
    TooDeep,
    #[error("{count} trailing bytes after the geometry")]
    TrailingBytes { count: usize },
}

/// Appends `geom` as little-endian 2D EWKB, with the SRID flag and value when
/// `srid` is given. `Line`, `Rect` and `Triangle` are written as a LineString and
/// Polygons.
pub fn write_ewkb(geom: &Geometry<f64>, srid: Option<i32>, out: &mut Vec<u8>) {
    write_geometry(&mut RawSink(out), geom, srid);
}

/// Appends `geom` as upper-case hex EWKB text, PostgreSQL's input form for geometry.
pub fn write_ewkb_hex(geom: &Geometry<f64>, srid: Option<i32>, out: &mut Vec<u8>) {
    write_geometry(&mut HexSink(out), geom, srid);
}

trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

struct RawSink<'a>(&'a mut Vec<u8>);

impl Sink for RawSink<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
}

struct HexSink<'a>(&'a mut Vec<u8>);

impl Sink for HexSink<'_> {
    fn put(&mut self, bytes: &[u8]) {
        const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
        self.0.reserve(bytes.len().saturating_mul(2));
        for &b in bytes {
            self.0.push(DIGITS[usize::from(b >> 4)]);
            self.0.push(DIGITS[usize::from(b & 0x0f)]);
        }
    }
}

fn put_u32(sink: &mut impl Sink, v: u32) {
    sink.put(&v.to_le_bytes());
}

/// Counts beyond `u32::MAX` cannot be expressed in WKB; no real geometry has them.
fn put_len(sink: &mut impl Sink, len: usize) {
    put_u32(sink, u32::try_from(len).unwrap_or(u32::MAX));
}

fn put_header(sink: &mut impl Sink, kind: u32, srid: Option<i32>) {
    sink.put(&[1]);
    match srid {
        Some(srid) => {
            put_u32(sink, kind | SRID_FLAG);
            sink.put(&srid.to_le_bytes());
        }
        None => put_u32(sink, kind),
    }
}

fn put_coord(sink: &mut impl Sink, c: Coord<f64>) {
    let mut bytes = [0u8; 16];
    let (x, y) = bytes.split_at_mut(8);
    x.copy_from_slice(&c.x.to_le_bytes());
    y.copy_from_slice(&c.y.to_le_bytes());
    sink.put(&bytes);
}

fn put_coords(sink: &mut impl Sink, coords: &[Coord<f64>]) {
    put_len(sink, coords.len());
    for &c in coords {
        put_coord(sink, c);
    }
}

fn put_polygon_body(sink: &mut impl Sink, p: &Polygon<f64>) {
    // PostGIS writes an empty polygon as zero rings.
    if p.exterior().0.is_empty() && p.interiors().is_empty() {
        put_u32(sink, 0);
        return;
    }
    put_len(sink, p.interiors().len().saturating_add(1));
    put_coords(sink, &p.exterior().0);
    for ring in p.interiors() {
        put_coords(sink, &ring.0);
    }
}

fn write_geometry(sink: &mut impl Sink, geom: &Geometry<f64>, srid: Option<i32>) {
    match geom {
        Geometry::Point(p) => {
            put_header(sink, POINT, srid);
            put_coord(sink, p.0);
        }
        Geometry::Line(l) => {
            put_header(sink, LINESTRING, srid);
            put_coords(sink, &[l.start, l.end]);
        }
        Geometry::LineString(l) => {
            put_header(sink, LINESTRING, srid);
            put_coords(sink, &l.0);
        }
        Geometry::Polygon(p) => {
            put_header(sink, POLYGON, srid);
            put_polygon_body(sink, p);
        }
        Geometry::MultiPoint(mp) => {
            put_header(sink, MULTIPOINT, srid);
            put_len(sink, mp.0.len());
            for p in &mp.0 {
                put_header(sink, POINT, None);
                put_coord(sink, p.0);
            }
        }
        Geometry::MultiLineString(ml) => {
            put_header(sink, MULTILINESTRING, srid);
            put_len(sink, ml.0.len());
            for l in &ml.0 {
                put_header(sink, LINESTRING, None);
                put_coords(sink, &l.0);
            }
        }
        Geometry::MultiPolygon(mp) => {
            put_header(sink, MULTIPOLYGON, srid);
            put_len(sink, mp.0.len());
            for p in &mp.0 {
                put_header(sink, POLYGON, None);
                put_polygon_body(sink, p);
            }
        }
        Geometry::GeometryCollection(gc) => {
            put_header(sink, GEOMETRYCOLLECTION, srid);
            put_len(sink, gc.0.len());
            for g in &gc.0 {
                write_geometry(sink, g, None);
            }
        }
        Geometry::Rect(r) => {
            put_header(sink, POLYGON, srid);
            put_polygon_body(sink, &r.to_polygon());
        }
        Geometry::Triangle(t) => {
            put_header(sink, POLYGON, srid);
            put_polygon_body(sink, &t.to_polygon());
        }
    }
}

/// Reads (E)WKB of either byte order, 2D or with Z/M (extra ordinates dropped),
/// PostGIS flag or ISO (1000s) type codes. Returns the SRID if present.
pub fn read_ewkb(bytes: &[u8]) -> Result<(Option<i32>, Geometry<f64>), EwkbError> {
    let mut reader = WkbReader { bytes, offset: 0 };
    let (srid, geometry) = reader.geometry(0)?;
    let rest = bytes.len().saturating_sub(reader.offset);
    if rest > 0 {
        return Err(EwkbError::TrailingBytes { count: rest });
    }
    Ok((srid, geometry))
}

struct WkbReader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

#[derive(Clone, Copy)]
struct Header {
    little_endian: bool,
    kind: u32,
    /// Ordinates per position (2 to 4).
    dims: usize,
    offset: usize,
}

fn type_name(kind: u32) -> &'static str {
    match kind {
        POINT => "Point",
        LINESTRING => "LineString",
        POLYGON => "Polygon",
        MULTIPOINT => "MultiPoint",
        MULTILINESTRING => "MultiLineString",
        MULTIPOLYGON => "MultiPolygon",
        _ => "GeometryCollection",
    }
}

impl<'a> WkbReader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EwkbError> {
        let end = self.offset.checked_add(n);
        match end.and_then(|end| self.bytes.get(self.offset..end)) {
            Some(slice) => {
                self.offset = self.offset.saturating_add(n);
                Ok(slice)
            }
            None => Err(EwkbError::UnexpectedEnd {
                offset: self.offset,
                needed: n,
            }),
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], EwkbError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u32(&mut self, little_endian: bool) -> Result<u32, EwkbError> {
        let b = self.array::<4>()?;
        Ok(if little_endian {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    }

    fn f64(&mut self, little_endian: bool) -> Result<f64, EwkbError> {
        let b = self.array::<8>()?;
        Ok(if little_endian {
            f64::from_le_bytes(b)
        } else {
            f64::from_be_bytes(b)
        })
    }

    fn header(&mut self) -> Result<(Header, Option<i32>), EwkbError> {
        let offset = self.offset;
        let little_endian = match self.array::<1>()? {
            [0] => false,
            [1] => true,
            [marker] => return Err(EwkbError::ByteOrder { offset, marker }),
        };
        let code = self.u32(little_endian)?;
        let srid = if code & SRID_FLAG != 0 {
            Some(self.u32(little_endian)? as i32)
        } else {
            None
        };
        let mut dims = 2 + usize::from(code & Z_FLAG != 0) + usize::from(code & M_FLAG != 0);
        let mut kind = code & 0x0FFF_FFFF;
        if kind >= 1000 {
            dims += match kind / 1000 {
                1 | 2 => 1,
                3 => 2,
                _ => return Err(EwkbError::GeometryType { offset, code }),
            };
            kind %= 1000;
        }
        if !(POINT..=GEOMETRYCOLLECTION).contains(&kind) || dims > 4 {
            return Err(EwkbError::GeometryType { offset, code });
        }
        Ok((
            Header {
                little_endian,
                kind,
                dims,
                offset,
            },
            srid,
        ))
    }

    /// A count of items at least `min_size` bytes each, checked against the bytes
    /// left so garbage cannot request a huge allocation.
    fn count(&mut self, h: Header, min_size: usize) -> Result<usize, EwkbError> {
        let offset = self.offset;
        let n = self.u32(h.little_endian)? as usize;
        let left = self.bytes.len().saturating_sub(self.offset);
        if n.saturating_mul(min_size.max(1)) > left {
            return Err(EwkbError::UnexpectedEnd {
                offset,
                needed: n.saturating_mul(min_size),
            });
        }
        Ok(n)
    }

    /// A position that may be NaN (the caller decides what that means).
    fn raw_coord(&mut self, h: Header) -> Result<Coord<f64>, EwkbError> {
        let x = self.f64(h.little_endian)?;
        let y = self.f64(h.little_endian)?;
        for _ in 2..h.dims {
            self.f64(h.little_endian)?;
        }
        Ok(Coord { x, y })
    }

    fn coord(&mut self, h: Header) -> Result<Coord<f64>, EwkbError> {
        let offset = self.offset;
        let c = self.raw_coord(h)?;
        if c.x.is_nan() || c.y.is_nan() {
            return Err(EwkbError::NanCoordinate { offset });
        }
        Ok(c)
    }

    fn coords(&mut self, h: Header) -> Result<Vec<Coord<f64>>, EwkbError> {
        let n = self.count(h, h.dims.saturating_mul(8))?;
        (0..n).map(|_| self.coord(h)).collect()
    }

    fn polygon(&mut self, h: Header) -> Result<Polygon<f64>, EwkbError> {
        let n = self.count(h, 4)?;
        let mut rings = Vec::with_capacity(n);
        for _ in 0..n {
            rings.push(LineString(self.coords(h)?));
        }
        let mut rings = rings.into_iter();
        let exterior = rings.next().unwrap_or_else(|| LineString(Vec::new()));
        Ok(Polygon::new(exterior, rings.collect()))
    }

    fn point(&mut self, h: Header) -> Result<Point<f64>, EwkbError> {
        let offset = self.offset;
        let c = self.raw_coord(h)?;
        match (c.x.is_nan(), c.y.is_nan()) {
            (true, true) => Err(EwkbError::EmptyPoint { offset: h.offset }),
            (false, false) => Ok(Point(c)),
            _ => Err(EwkbError::NanCoordinate { offset }),
        }
    }

    /// A member of a Multi* geometry, which must be of `kind`.
    fn member(&mut self, parent: u32, kind: u32) -> Result<Header, EwkbError> {
        let (h, _) = self.header()?;
        if h.kind != kind {
            return Err(EwkbError::Member {
                offset: h.offset,
                parent: type_name(parent),
                found: type_name(h.kind),
            });
        }
        Ok(h)
    }

    fn geometry(&mut self, nesting: usize) -> Result<(Option<i32>, Geometry<f64>), EwkbError> {
        if nesting > MAX_NESTING {
            return Err(EwkbError::TooDeep);
        }
        let (h, srid) = self.header()?;
        // The smallest member: byte order, type and a count or one coordinate.
        const MIN_MEMBER: usize = 9;
        let geometry = match h.kind {
            POINT => Geometry::Point(self.point(h)?),
            LINESTRING => Geometry::LineString(LineString(self.coords(h)?)),
            POLYGON => Geometry::Polygon(self.polygon(h)?),
            MULTIPOINT => {
                let n = self.count(h, MIN_MEMBER)?;
                let mut points = Vec::with_capacity(n);
                for _ in 0..n {
                    let m = self.member(h.kind, POINT)?;
                    points.push(self.point(m)?);
                }
                Geometry::MultiPoint(MultiPoint(points))
            }
            MULTILINESTRING => {
                let n = self.count(h, MIN_MEMBER)?;
                let mut lines = Vec::with_capacity(n);
                for _ in 0..n {
                    let m = self.member(h.kind, LINESTRING)?;
                    lines.push(LineString(self.coords(m)?));
                }
                Geometry::MultiLineString(MultiLineString(lines))
            }
            MULTIPOLYGON => {
                let n = self.count(h, MIN_MEMBER)?;
                let mut polygons = Vec::with_capacity(n);
                for _ in 0..n {
                    let m = self.member(h.kind, POLYGON)?;
                    polygons.push(self.polygon(m)?);
                }
                Geometry::MultiPolygon(MultiPolygon(polygons))
            }
            _ => {
                let n = self.count(h, MIN_MEMBER)?;
                let mut members = Vec::with_capacity(n);
                for _ in 0..n {
                    members.push(self.geometry(nesting.saturating_add(1))?.1);
                }
                Geometry::GeometryCollection(GeometryCollection(members))
            }
        };
        Ok((srid, geometry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo_types::{line_string, point, polygon};
    use proptest::prelude::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02X}")).collect()
    }

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn matches_postgis_point() {
        // SELECT ST_AsEWKB('SRID=4326;POINT(1 2)'::geometry)
        let mut out = Vec::new();
        write_ewkb(&point!(x: 1., y: 2.).into(), Some(4326), &mut out);
        assert_eq!(
            hex(&out),
            "0101000020E6100000000000000000F03F0000000000000040"
        );
        let mut text = Vec::new();
        write_ewkb_hex(&point!(x: 1., y: 2.).into(), Some(4326), &mut text);
        assert_eq!(text, hex(&out).into_bytes());
    }

    #[test]
    fn reads_big_endian_iso_z_and_postgis_collections() {
        // SELECT ST_AsBinary('POINT Z (1 2 3)'::geometry, 'XDR')
        let iso_z = unhex("00000003E93FF000000000000040000000000000004008000000000000");
        assert_eq!(read_ewkb(&iso_z), Ok((None, point!(x: 1., y: 2.).into())));
        // SELECT ST_AsEWKB('SRID=3857;MULTIPOINT(1 2,3 4)'::geometry)
        let multi = unhex(
            "0104000020110F0000020000000101000000000000000000F03F0000000000000040010100000000000000000008400000000000001040",
        );
        assert_eq!(
            read_ewkb(&multi),
            Ok((
                Some(3857),
                MultiPoint(vec![point!(x: 1., y: 2.), point!(x: 3., y: 4.)]).into()
            ))
        );
        // POINT EMPTY
        let empty = unhex("0101000000000000000000F87F000000000000F87F");
        assert_eq!(read_ewkb(&empty), Err(EwkbError::EmptyPoint { offset: 0 }));
    }

    #[test]
    fn garbage_is_an_error() {
        let cases: [&[u8]; 6] = [
            b"",
            b"\x02",
            b"\x01\x09\x00\x00\x00",
            b"\x01\x02\x00\x00\x00\xff\xff\xff\xff",
            b"\x01\x04\x00\x00\x00\x01\x00\x00\x00\x01\x02\x00\x00\x00\x00\x00\x00\x00",
            b"\x01\x02\x00\x00\x00\x00\x00\x00\x00\x00",
        ];
        for bytes in cases {
            assert!(read_ewkb(bytes).is_err(), "{bytes:?}");
        }
        // Deeply nested collections stop at the limit instead of exhausting the stack.
        let mut deep = Vec::new();
        for _ in 0..10_000 {
            deep.extend_from_slice(b"\x01\x07\x00\x00\x00\x01\x00\x00\x00");
        }
        assert!(read_ewkb(&deep).is_err());
    }

    #[test]
    fn fuzz_nan_ring_is_refused() {
        // Found by the ewkb fuzz target: a one-position ring whose first ordinate
        // is NaN grew by one position on every read -> write -> read.
        let crash = unhex(
            "00000000030000000d00000001ffffff000000060000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
        );
        assert_eq!(
            read_ewkb(&crash),
            Err(EwkbError::NanCoordinate { offset: 13 })
        );
        let mut nan_ring = Vec::new();
        write_ewkb(
            &Polygon::new(LineString(vec![Coord { x: f64::NAN, y: 0. }; 4]), vec![]).into(),
            None,
            &mut nan_ring,
        );
        assert!(matches!(
            read_ewkb(&nan_ring),
            Err(EwkbError::NanCoordinate { .. })
        ));
    }

    #[test]
    fn empty_polygon_and_lines_rects() {
        let round_trip = |g: Geometry<f64>| {
            let mut out = Vec::new();
            write_ewkb(&g, None, &mut out);
            read_ewkb(&out).map(|(_, g)| g)
        };
        let empty = Polygon::new(LineString(vec![]), vec![]);
        assert_eq!(round_trip(empty.clone().into()), Ok(empty.into()));
        let rect = geo_types::Rect::new(
            geo_types::coord! {x: 0., y: 0.},
            geo_types::coord! {x: 1., y: 1.},
        );
        assert_eq!(round_trip(rect.into()), Ok(rect.to_polygon().into()));
        let line = geo_types::Line::new(
            geo_types::coord! {x: 0., y: 0.},
            geo_types::coord! {x: 1., y: 1.},
        );
        assert_eq!(
            round_trip(line.into()),
            Ok(line_string![(x: 0., y: 0.), (x: 1., y: 1.)].into())
        );
        assert_eq!(
            round_trip(polygon![(x: 0., y: 0.), (x: 1., y: 0.), (x: 1., y: 1.)].into()),
            Ok(polygon![(x: 0., y: 0.), (x: 1., y: 0.), (x: 1., y: 1.)].into())
        );
    }

    fn coord() -> impl Strategy<Value = Coord<f64>> {
        (-180.0..=180.0f64, -90.0..=90.0f64).prop_map(|(x, y)| Coord { x, y })
    }

    fn line() -> impl Strategy<Value = LineString<f64>> {
        prop::collection::vec(coord(), 0..6).prop_map(LineString)
    }

    fn polygon() -> impl Strategy<Value = Polygon<f64>> {
        (
            prop::collection::vec(coord(), 3..6),
            prop::collection::vec(prop::collection::vec(coord(), 3..5), 0..3),
        )
            .prop_map(|(exterior, holes)| {
                Polygon::new(
                    LineString(exterior),
                    holes.into_iter().map(LineString).collect(),
                )
            })
    }

    fn geometry() -> impl Strategy<Value = Geometry<f64>> {
        let leaf = prop_oneof![
            coord().prop_map(|c| Geometry::Point(Point(c))),
            line().prop_map(Geometry::LineString),
            polygon().prop_map(Geometry::Polygon),
            prop::collection::vec(coord().prop_map(Point), 0..5)
                .prop_map(|p| Geometry::MultiPoint(MultiPoint(p))),
            prop::collection::vec(line(), 0..4)
                .prop_map(|l| Geometry::MultiLineString(MultiLineString(l))),
            prop::collection::vec(polygon(), 0..3)
                .prop_map(|p| Geometry::MultiPolygon(MultiPolygon(p))),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop::collection::vec(inner, 0..4)
                .prop_map(|g| Geometry::GeometryCollection(GeometryCollection(g)))
        })
    }

    proptest! {
        #[test]
        fn round_trip_every_type(g in geometry(), srid in proptest::option::of(any::<i32>())) {
            let mut out = Vec::new();
            write_ewkb(&g, srid, &mut out);
            prop_assert_eq!(read_ewkb(&out), Ok((srid, g.clone())));
            let mut text = Vec::new();
            write_ewkb_hex(&g, srid, &mut text);
            prop_assert_eq!(text, hex(&out).into_bytes());
        }

        #[test]
        fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = read_ewkb(&bytes);
        }

        #[test]
        fn mutated_ewkb_never_panics(g in geometry(), flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..4)) {
            let mut out = Vec::new();
            write_ewkb(&g, Some(4326), &mut out);
            for (at, byte) in flips {
                if !out.is_empty() {
                    let i = at % out.len();
                    out[i] = byte;
                }
            }
            let _ = read_ewkb(&out);
        }
    }
}
