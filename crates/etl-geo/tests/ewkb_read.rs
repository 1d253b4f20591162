//! `read_ewkb` on its edge cases: what rows of a PostGIS query (`etl-pmtiles --sql`) can bring,
//! and a few inputs they cannot. Pinned so that the reader behind `read_ewkb` can change
//! without its answers changing unnoticed.

use etl_geo::geo_types::{
    Coord, Geometry, GeometryCollection, LineString, MultiLineString, MultiPoint, MultiPolygon,
    Point, Polygon, coord, line_string, point, polygon,
};
use etl_geo::{EwkbError, read_ewkb};

const Z_FLAG: u32 = 0x8000_0000;
const M_FLAG: u32 = 0x4000_0000;
const SRID_FLAG: u32 = 0x2000_0000;

/// A little-endian header.
fn le(code: u32) -> Vec<u8> {
    let mut b = vec![1];
    b.extend_from_slice(&code.to_le_bytes());
    b
}

fn le_srid(code: u32, srid: i32) -> Vec<u8> {
    let mut b = le(code | SRID_FLAG);
    b.extend_from_slice(&srid.to_le_bytes());
    b
}

fn count(b: &mut Vec<u8>, n: u32) {
    b.extend_from_slice(&n.to_le_bytes());
}

fn push(b: &mut Vec<u8>, values: &[f64]) {
    for v in values {
        b.extend_from_slice(&v.to_le_bytes());
    }
}

fn le_point(x: f64, y: f64) -> Vec<u8> {
    let mut b = le(1);
    push(&mut b, &[x, y]);
    b
}

fn geometry(bytes: &[u8]) -> Result<Geometry<f64>, EwkbError> {
    read_ewkb(bytes).map(|(_, g)| g)
}

#[test]
fn srid_of_either_byte_order_and_any_value() {
    let mut b = le_srid(1, 4326);
    push(&mut b, &[1., 2.]);
    assert_eq!(read_ewkb(&b), Ok((Some(4326), point!(x: 1., y: 2.).into())));
    for srid in [0, -1, i32::MAX] {
        let mut b = le_srid(1, srid);
        push(&mut b, &[1., 2.]);
        assert_eq!(read_ewkb(&b).map(|(s, _)| s), Ok(Some(srid)));
    }
    // SELECT ST_AsEWKB('SRID=2193;POINT(1 2)'::geometry, 'XDR')
    let mut be = vec![0];
    be.extend_from_slice(&(SRID_FLAG | 1).to_be_bytes());
    be.extend_from_slice(&2193i32.to_be_bytes());
    for v in [1.0f64, 2.0] {
        be.extend_from_slice(&v.to_be_bytes());
    }
    assert_eq!(
        read_ewkb(&be),
        Ok((Some(2193), point!(x: 1., y: 2.).into()))
    );
    // No flag, no SRID.
    assert_eq!(
        read_ewkb(&le_point(1., 2.)),
        Ok((None, point!(x: 1., y: 2.).into()))
    );
}

#[test]
fn only_the_outer_srid_is_returned() {
    let mut member = le_srid(1, 4326);
    push(&mut member, &[1., 2.]);
    let mut with = le_srid(7, 3857);
    count(&mut with, 1);
    with.extend_from_slice(&member);
    let collection =
        Geometry::GeometryCollection(GeometryCollection(vec![point!(x: 1., y: 2.).into()]));
    assert_eq!(read_ewkb(&with), Ok((Some(3857), collection.clone())));
    let mut without = le(7);
    count(&mut without, 1);
    without.extend_from_slice(&member);
    assert_eq!(read_ewkb(&without), Ok((None, collection)));
}

#[test]
fn z_and_m_are_dropped_whatever_declares_them() {
    for (code, extra) in [
        (1001u32, 1usize),
        (2001, 1),
        (3001, 2),
        (Z_FLAG | 1, 1),
        (M_FLAG | 1, 1),
        (Z_FLAG | M_FLAG | 1, 2),
    ] {
        let mut b = le(code);
        push(&mut b, &[1., 2.]);
        push(&mut b, &vec![7.; extra]);
        assert_eq!(geometry(&b), Ok(point!(x: 1., y: 2.).into()), "{code:#x}");
    }
    // A ZM line, big-endian (SELECT ST_AsBinary('LINESTRING ZM (1 2 3 4, 5 6 7 8)', 'XDR')).
    let mut be = vec![0];
    be.extend_from_slice(&3002u32.to_be_bytes());
    be.extend_from_slice(&2u32.to_be_bytes());
    for v in [1.0f64, 2., 3., 4., 5., 6., 7., 8.] {
        be.extend_from_slice(&v.to_be_bytes());
    }
    assert_eq!(
        geometry(&be),
        Ok(line_string![(x: 1., y: 2.), (x: 5., y: 6.)].into())
    );
    // A NaN Z or M is not a NaN position.
    let mut b = le(3001);
    push(&mut b, &[1., 2., f64::NAN, f64::NAN]);
    assert_eq!(geometry(&b), Ok(point!(x: 1., y: 2.).into()));
}

#[test]
fn the_empty_point_is_refused_everywhere() {
    // POINT EMPTY is PostGIS's NaN NaN.
    let empty = EwkbError::EmptyPoint { offset: 0 };
    assert_eq!(geometry(&le_point(f64::NAN, f64::NAN)), Err(empty.clone()));
    let mut srid = le_srid(1, 4326);
    push(&mut srid, &[f64::NAN, f64::NAN]);
    assert_eq!(geometry(&srid), Err(empty.clone()));
    let mut z = le(1001);
    push(&mut z, &[f64::NAN, f64::NAN, f64::NAN]);
    assert_eq!(geometry(&z), Err(empty));
    // As a member, at the member's offset.
    for parent in [4u32, 7] {
        let mut b = le(parent);
        count(&mut b, 2);
        b.extend(le_point(1., 2.));
        b.extend(le_point(f64::NAN, f64::NAN));
        assert_eq!(
            geometry(&b),
            Err(EwkbError::EmptyPoint { offset: 30 }),
            "type {parent}"
        );
    }
}

#[test]
fn a_nan_position_is_refused_at_its_offset() {
    assert_eq!(
        geometry(&le_point(f64::NAN, 1.)),
        Err(EwkbError::NanCoordinate { offset: 5 })
    );
    let mut srid = le_srid(1, 4326);
    push(&mut srid, &[1., f64::NAN]);
    assert_eq!(geometry(&srid), Err(EwkbError::NanCoordinate { offset: 9 }));
    let mut line = le(2);
    count(&mut line, 2);
    push(&mut line, &[0., 0., 1., f64::NAN]);
    assert_eq!(
        geometry(&line),
        Err(EwkbError::NanCoordinate { offset: 25 })
    );
    let mut ring = le(3);
    count(&mut ring, 1);
    count(&mut ring, 4);
    push(&mut ring, &[0., 0., f64::NAN, 0., 1., 1., 0., 0.]);
    assert_eq!(
        geometry(&ring),
        Err(EwkbError::NanCoordinate { offset: 29 })
    );
}

#[test]
fn infinity_is_read_as_it_is() {
    assert_eq!(
        geometry(&le_point(f64::INFINITY, f64::NEG_INFINITY)),
        Ok(point!(x: f64::INFINITY, y: f64::NEG_INFINITY).into())
    );
}

#[test]
fn empty_geometries_are_empty_values_not_errors() {
    let empty_ring = Polygon::new(LineString(vec![]), vec![]);
    let cases: [(u32, Geometry<f64>); 6] = [
        (2, LineString::<f64>(vec![]).into()),
        (3, empty_ring.clone().into()),
        (4, MultiPoint::<f64>(vec![]).into()),
        (5, MultiLineString::<f64>(vec![]).into()),
        (6, MultiPolygon::<f64>(vec![]).into()),
        (7, Geometry::GeometryCollection(GeometryCollection(vec![]))),
    ];
    for (code, expected) in cases {
        let mut b = le(code);
        count(&mut b, 0);
        assert_eq!(geometry(&b), Ok(expected), "type {code}");
    }
    // A polygon of one empty ring.
    let mut b = le(3);
    count(&mut b, 1);
    count(&mut b, 0);
    assert_eq!(geometry(&b), Ok(empty_ring.into()));
}

#[test]
fn an_unclosed_ring_is_closed() {
    let mut b = le(3);
    count(&mut b, 2);
    count(&mut b, 4);
    push(&mut b, &[0., 0., 4., 0., 4., 4., 0., 4.]);
    count(&mut b, 3);
    push(&mut b, &[1., 1., 2., 1., 2., 2.]);
    let expected = Polygon::new(
        line_string![(x: 0., y: 0.), (x: 4., y: 0.), (x: 4., y: 4.), (x: 0., y: 4.), (x: 0., y: 0.)],
        vec![line_string![(x: 1., y: 1.), (x: 2., y: 1.), (x: 2., y: 2.), (x: 1., y: 1.)]],
    );
    assert_eq!(geometry(&b), Ok(expected.into()));
    // Closed rings are kept as they are, however short.
    let mut one = le(3);
    count(&mut one, 1);
    count(&mut one, 1);
    push(&mut one, &[3., 3.]);
    assert_eq!(
        geometry(&one),
        Ok(Polygon::new(LineString(vec![coord! {x: 3., y: 3.}]), vec![]).into())
    );
}

#[test]
fn every_multi_type_and_nested_collections() {
    let mut b = le(6);
    count(&mut b, 1);
    b.extend(le(3));
    count(&mut b, 1);
    count(&mut b, 4);
    push(&mut b, &[0., 0., 1., 0., 1., 1., 0., 0.]);
    assert_eq!(
        geometry(&b),
        Ok(MultiPolygon(vec![
            polygon![(x: 0., y: 0.), (x: 1., y: 0.), (x: 1., y: 1.)]
        ])
        .into())
    );
    let mut b = le(5);
    count(&mut b, 2);
    b.extend(le(2));
    count(&mut b, 2);
    push(&mut b, &[0., 0., 1., 1.]);
    b.extend(le(2));
    count(&mut b, 0);
    assert_eq!(
        geometry(&b),
        Ok(MultiLineString(vec![
            line_string![(x: 0., y: 0.), (x: 1., y: 1.)],
            LineString(vec![])
        ])
        .into())
    );
    // A collection in a collection, members of mixed byte order.
    let mut inner = vec![0];
    inner.extend_from_slice(&7u32.to_be_bytes());
    inner.extend_from_slice(&1u32.to_be_bytes());
    inner.extend(le_point(5., 6.));
    let mut b = le(7);
    count(&mut b, 2);
    b.extend(le_point(1., 2.));
    b.extend(inner);
    assert_eq!(
        geometry(&b),
        Ok(Geometry::GeometryCollection(GeometryCollection(vec![
            point!(x: 1., y: 2.).into(),
            Geometry::GeometryCollection(GeometryCollection(vec![point!(x: 5., y: 6.).into()]))
        ])))
    );
}

#[test]
fn negative_zero_and_exact_bits_survive() {
    let b = le_point(-0.0, 0.1 + 0.2);
    let Ok(Geometry::Point(Point(Coord { x, y }))) = geometry(&b) else {
        panic!("a point")
    };
    assert!(x == 0.0 && x.is_sign_negative());
    assert_eq!(y.to_bits(), (0.1f64 + 0.2).to_bits());
}

#[test]
fn nesting_stops_at_64_collections() {
    let nest = |levels: usize| {
        let mut b = Vec::new();
        for _ in 0..levels {
            b.extend(le(7));
            count(&mut b, 1);
        }
        b.extend(le_point(0., 0.));
        b
    };
    assert!(geometry(&nest(64)).is_ok());
    // At the 66th header, where the 65th collection's member starts.
    assert_eq!(
        geometry(&nest(65)),
        Err(EwkbError::TooDeep { offset: 65 * 9 })
    );
}

/// Refusals: their variant, and their message as `etl-pmtiles --sql` puts it in a rejection.
/// Each is one line with the byte offset.
#[test]
fn refusals_and_their_messages() {
    let mut lying = le(2);
    count(&mut lying, u32::MAX);
    let mut trailing = le_point(1., 2.);
    trailing.extend_from_slice(&[0, 0, 0]);
    let mut wrong_member = le(4);
    count(&mut wrong_member, 1);
    wrong_member.extend(le(2));
    count(&mut wrong_member, 0);
    let mut deep = Vec::new();
    for _ in 0..100 {
        deep.extend(le(7));
        count(&mut deep, 1);
    }
    let cases: Vec<(Vec<u8>, EwkbError, &str)> = vec![
        (
            vec![],
            EwkbError::UnexpectedEnd {
                offset: 0,
                needed: 1,
                left: 0,
            },
            "WKB ends early: 1 more bytes needed at offset 0, 0 left",
        ),
        (
            le(1),
            EwkbError::UnexpectedEnd {
                offset: 5,
                needed: 8,
                left: 0,
            },
            "WKB ends early: 8 more bytes needed at offset 5, 0 left",
        ),
        (
            lying,
            EwkbError::Count {
                offset: 5,
                parent: "LineString",
                count: u32::MAX as usize,
                needed: u32::MAX as usize * 16,
                left: 0,
            },
            "WKB: a LineString at offset 5 says it has 4294967295 parts, which would need 68719476720 bytes; 0 are left",
        ),
        (
            vec![2, 1, 0, 0, 0],
            EwkbError::ByteOrder {
                offset: 0,
                marker: 2,
            },
            "WKB: invalid byte order marker 2 at offset 0",
        ),
        (
            le(99),
            EwkbError::GeometryType {
                offset: 0,
                code: 99,
            },
            "WKB: unknown geometry type code 99 (0x63) at offset 0",
        ),
        (
            le(4001),
            EwkbError::GeometryType {
                offset: 0,
                code: 4001,
            },
            "WKB: unknown geometry type code 4001 (0xfa1) at offset 0",
        ),
        (
            le(Z_FLAG | M_FLAG | 3001),
            EwkbError::DeclaredTwice {
                offset: 0,
                code: Z_FLAG | M_FLAG | 3001,
            },
            "WKB: geometry type code 0xc0000bb9 at offset 0 declares Z or M twice",
        ),
        (
            trailing,
            EwkbError::TrailingBytes {
                offset: 21,
                count: 3,
            },
            "WKB: 3 bytes after the end of the geometry at offset 21",
        ),
        (
            wrong_member,
            EwkbError::Member {
                offset: 9,
                parent: "MultiPoint",
                found: "LineString",
            },
            "WKB: a LineString inside a MultiPoint at offset 9",
        ),
        (
            deep,
            EwkbError::TooDeep { offset: 585 },
            "WKB: geometry collections nested deeper than 64 levels at offset 585",
        ),
        (
            le_point(f64::NAN, f64::NAN),
            EwkbError::EmptyPoint { offset: 0 },
            "WKB: empty point at offset 0 cannot be represented",
        ),
        (
            le_point(1., f64::NAN),
            EwkbError::NanCoordinate { offset: 5 },
            "WKB: NaN coordinate at offset 5",
        ),
    ];
    for (bytes, error, message) in cases {
        let got = geometry(&bytes);
        assert_eq!(got, Err(error), "{bytes:02x?}");
        if let Err(e) = got {
            assert_eq!(e.to_string(), message);
        }
    }
}

/// Z or M declared by both a flag bit and an ISO code: refused (it used to be read as
/// their sum of ordinates, where PostGIS would read one Z).
#[test]
fn z_declared_twice() {
    let mut b = le(Z_FLAG | 1001);
    push(&mut b, &[1., 2., 3., 4.]);
    assert_eq!(
        geometry(&b),
        Err(EwkbError::DeclaredTwice {
            offset: 0,
            code: Z_FLAG | 1001
        })
    );
}

/// The curves, surfaces and triangles of SQL/MM (`ST_AsBinary` of a curved PostGIS column):
/// read as GeoPackage's are, curves made straight (they used to be refused). The abstract
/// Curve and Surface are refused.
#[test]
fn curves_and_surfaces() {
    let empty_polygon = Geometry::Polygon(Polygon::new(LineString(vec![]), vec![]));
    let empty: [(u32, Geometry<f64>); 8] = [
        (8, LineString::<f64>(vec![]).into()),
        (9, LineString::<f64>(vec![]).into()),
        (10, empty_polygon.clone()),
        (11, MultiLineString::<f64>(vec![]).into()),
        (12, MultiPolygon::<f64>(vec![]).into()),
        (15, MultiPolygon::<f64>(vec![]).into()),
        (16, MultiPolygon::<f64>(vec![]).into()),
        (17, empty_polygon),
    ];
    for (code, expected) in empty {
        let mut b = le(code);
        count(&mut b, 0);
        assert_eq!(geometry(&b), Ok(expected), "type {code}");
    }
    for (code, name) in [(13u32, "Curve"), (14, "Surface")] {
        let mut b = le(code);
        count(&mut b, 0);
        assert_eq!(
            geometry(&b),
            Err(EwkbError::Unsupported {
                offset: 0,
                code,
                name
            })
        );
    }
    // CURVEPOLYGON(COMPOUNDCURVE(CIRCULARSTRING(0 0, 1 1, 2 0), (2 0, 0 0))) with an SRID.
    let mut b = le_srid(10, 4326);
    count(&mut b, 1);
    b.extend(le(9));
    count(&mut b, 2);
    b.extend(le(8));
    count(&mut b, 3);
    push(&mut b, &[0., 0., 1., 1., 2., 0.]);
    b.extend(le(2));
    count(&mut b, 2);
    push(&mut b, &[2., 0., 0., 0.]);
    let Ok((Some(4326), Geometry::Polygon(p))) = read_ewkb(&b) else {
        panic!("{:?}", read_ewkb(&b))
    };
    let ring = &p.exterior().0;
    // Each 90° half of the arc in 23 steps of at most 4°: 47 positions, then back to the start.
    assert_eq!(ring.len(), 48);
    assert_eq!(ring[0], coord! {x: 0., y: 0.});
    assert_eq!(ring[23], coord! {x: 1., y: 1.});
    assert_eq!(ring[46], coord! {x: 2., y: 0.});
    assert_eq!(ring.last(), ring.first());
    // A Triangle is a Polygon; inside a MultiPolygon it is still refused.
    let mut t = le(17);
    count(&mut t, 1);
    count(&mut t, 4);
    push(&mut t, &[0., 0., 1., 0., 0., 1., 0., 0.]);
    assert_eq!(
        geometry(&t),
        Ok(polygon![(x: 0., y: 0.), (x: 1., y: 0.), (x: 0., y: 1.)].into())
    );
    let mut b = le(6);
    count(&mut b, 1);
    b.extend(le(17));
    count(&mut b, 0);
    assert_eq!(
        geometry(&b),
        Err(EwkbError::Member {
            offset: 9,
            parent: "MultiPolygon",
            found: "Triangle"
        })
    );
}
