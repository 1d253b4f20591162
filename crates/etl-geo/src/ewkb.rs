//! Writing PostGIS extended WKB: little-endian, 2D, optional SRID, as `ST_AsEWKB` does.
//! It is read back (with everything else WKB can hold) by the one WKB reader,
//! [`crate::formats::wkb`] ([`read_ewkb`](crate::read_ewkb)).

use geo_types::{Coord, Geometry, Polygon};

use crate::formats::wkb::{
    COLLECTION as GEOMETRYCOLLECTION, LINESTRING, MULTILINESTRING, MULTIPOINT, MULTIPOLYGON, POINT,
    POLYGON, SRID_FLAG,
};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read_ewkb;
    use geo_types::{
        GeometryCollection, LineString, MultiLineString, MultiPoint, MultiPolygon, Point,
        line_string, point, polygon,
    };
    use proptest::prelude::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02X}")).collect()
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
