#![allow(clippy::unwrap_used, clippy::expect_used)]

use geo_types::{Coord, LineString, MultiPoint, Polygon, line_string, point, polygon};

use super::*;
use crate::repair::Repair;
use crate::write_ewkb;

fn read(bytes: &[u8]) -> Result<Option<Geometry<f64>>, WkbError> {
    super::read(bytes, &mut Repairs::default())
}

fn message(bytes: &[u8]) -> String {
    read(bytes).unwrap_err().to_string()
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

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
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
fn postgis_output_big_endian_iso_z_and_collections() {
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
    // POINT EMPTY: refused by read_ewkb, nothing for read.
    let empty = unhex("0101000000000000000000F87F000000000000F87F");
    assert_eq!(read_ewkb(&empty), Err(WkbError::EmptyPoint { offset: 0 }));
    assert_eq!(read(&empty), Ok(None));
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
    let closed: Geometry<f64> =
        polygon![(x: 0., y: 0.), (x: 1., y: 0.), (x: 1., y: 1.), (x: 0., y: 1.), (x: 0., y: 0.)]
            .into();
    let mut repairs = Repairs::NONE;
    assert_eq!(super::read(&open, &mut repairs), Ok(Some(closed.clone())));
    assert!(repairs.contains(Repair::RingClosed));
    // read_ewkb closes it too, and tells when asked.
    assert_eq!(read_ewkb(&open), Ok((None, closed.clone())));
    let mut repairs = Repairs::NONE;
    assert_eq!(
        read_ewkb_with_repairs(&open, &mut repairs),
        Ok((None, closed))
    );
    assert!(repairs.contains(Repair::RingClosed));
    let mut repairs = Repairs::NONE;
    assert!(read_ewkb_with_repairs(&b, &mut repairs).is_ok());
    assert!(repairs.is_empty());
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
    for code in [2u32, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 15, 16] {
        let mut b = le(code);
        count(&mut b, 0);
        assert_eq!(read(&b), Ok(None), "type {code}");
        // read_ewkb: the empty value of the type read.
        assert!(read_ewkb(&b).is_ok(), "type {code}");
    }
}

#[test]
fn refusals() {
    let mut lying = le(2);
    count(&mut lying, u32::MAX);
    assert_eq!(
        message(&lying),
        "WKB: a LineString at offset 5 says it has 4294967295 parts, which would need 68719476720 bytes; 0 are left"
    );
    let mut curve = le(13);
    count(&mut curve, 0);
    assert_eq!(
        message(&curve),
        "Curve geometries are not supported (WKB type code 13 at offset 0)"
    );
    assert_eq!(
        message(&le(99)),
        "WKB: unknown geometry type code 99 (0x63) at offset 0"
    );
    assert_eq!(
        message(&le(1)),
        "WKB ends early: 8 more bytes needed at offset 5, 0 left"
    );
    assert_eq!(
        message(&[7, 1, 0, 0, 0]),
        "WKB: invalid byte order marker 7 at offset 0"
    );
    let mut trailing = le(1);
    push(&mut trailing, &[1., 2., 3.]);
    assert_eq!(
        message(&trailing),
        "WKB: 8 bytes after the end of the geometry at offset 21"
    );
    let mut nan = le(2);
    count(&mut nan, 2);
    push(&mut nan, &[0., f64::NAN, 1., 1.]);
    assert_eq!(message(&nan), "WKB: NaN coordinate at offset 9");
    let mut wrong_member = le(4);
    count(&mut wrong_member, 1);
    wrong_member.extend(le(2));
    count(&mut wrong_member, 0);
    assert_eq!(
        message(&wrong_member),
        "WKB: a LineString inside a MultiPoint at offset 9"
    );
    let mut twice = le(Z_FLAG | 1001);
    push(&mut twice, &[1., 2., 3., 4.]);
    assert_eq!(
        message(&twice),
        "WKB: geometry type code 0x800003e9 at offset 0 declares Z or M twice"
    );
    let mut empty_member = le(4);
    count(&mut empty_member, 1);
    empty_member.extend(le(1));
    push(&mut empty_member, &[f64::NAN, f64::NAN]);
    assert_eq!(
        message(&empty_member),
        "WKB: empty point at offset 9 cannot be represented"
    );
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
        let e = read(bytes).unwrap_err();
        assert_eq!(read_ewkb(bytes).unwrap_err(), e);
        let text = e.to_string();
        assert!(text.contains("offset") && !text.contains('\n'), "{text}");
    }
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
    assert_eq!(read(&b), Err(WkbError::TooDeep { offset: 585 }));
    let mut ok = Vec::new();
    for _ in 0..MAX_NESTING {
        ok.extend(le(7));
        count(&mut ok, 1);
    }
    ok.extend(le(1));
    push(&mut ok, &[0., 0.]);
    assert!(read(&ok).unwrap().is_some());
}

#[test]
fn fuzz_nan_ring_is_refused() {
    // Found by the ewkb fuzz target: a one-position ring whose first ordinate is NaN grew
    // by one position on every read -> write -> read.
    let crash = unhex(
        "00000000030000000d00000001ffffff000000060000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
    );
    assert_eq!(
        read_ewkb(&crash),
        Err(WkbError::NanCoordinate { offset: 13 })
    );
    let mut nan_ring = Vec::new();
    write_ewkb(
        &Polygon::new(LineString(vec![Coord { x: f64::NAN, y: 0. }; 4]), vec![]).into(),
        None,
        &mut nan_ring,
    );
    assert!(matches!(
        read_ewkb(&nan_ring),
        Err(WkbError::NanCoordinate { .. })
    ));
}

#[test]
fn curves_made_straight_and_their_refusals() {
    // A half circle.
    let mut arc = le(8);
    count(&mut arc, 3);
    push(&mut arc, &[1., 0., 0., 1., -1., 0.]);
    let Ok((None, Geometry::LineString(line))) = read_ewkb(&arc) else {
        panic!("{:?}", read_ewkb(&arc))
    };
    assert_eq!(line.0.len(), 47);
    // Two positions are not an arc.
    let mut two = le(8);
    count(&mut two, 2);
    push(&mut two, &[1., 0., 0., 1.]);
    assert!(message(&two).starts_with("WKB: the CircularString at offset 0: "));
    // A full circle whose centre overflows: its made positions would be NaN.
    let mut huge = le(8);
    count(&mut huge, 3);
    push(&mut huge, &[1.7e308, 0., 1.6e308, 0., 1.7e308, 0.]);
    assert_eq!(
        message(&huge),
        "WKB: the CircularString at offset 0: made into straight segments it has NaN positions (its coordinates overflow)"
    );
    // Compound curve parts that do not join.
    let mut gap = le(9);
    count(&mut gap, 2);
    gap.extend(le(2));
    count(&mut gap, 2);
    push(&mut gap, &[0., 0., 1., 1.]);
    gap.extend(le(2));
    count(&mut gap, 2);
    push(&mut gap, &[2., 2., 3., 3.]);
    assert_eq!(
        message(&gap),
        "WKB: the CompoundCurve at offset 0: part 1 (at offset 50) does not start where the part before it ends"
    );
    // A Triangle in a TIN, a Polygon in a TIN.
    let triangle = |b: &mut Vec<u8>, code: u32| {
        b.extend(le(code));
        count(b, 1);
        count(b, 4);
        push(b, &[0., 0., 1., 0., 0., 1., 0., 0.]);
    };
    let mut tin = le(16);
    count(&mut tin, 1);
    triangle(&mut tin, 17);
    assert_eq!(
        read(&tin),
        Ok(Some(
            geo_types::MultiPolygon(vec![
                polygon![(x: 0., y: 0.), (x: 1., y: 0.), (x: 0., y: 1.)]
            ])
            .into()
        ))
    );
    let mut bad_tin = le(16);
    count(&mut bad_tin, 1);
    triangle(&mut bad_tin, 3);
    assert_eq!(message(&bad_tin), "WKB: a Polygon inside a TIN at offset 9");
}

#[test]
fn nested_claims_reserve_little_and_fail_cleanly() {
    // 64 collections nested around a point, each claiming a member per 9 bytes left, then
    // zeros: refused where the second member of the innermost collection should start.
    const LEN: usize = 1 << 20;
    let mut b = Vec::with_capacity(LEN);
    for _ in 0..MAX_NESTING {
        b.extend(le(COLLECTION));
        let left = LEN - b.len() - 4;
        count(&mut b, u32::try_from(left / 9).unwrap());
    }
    b.extend(le(POINT));
    push(&mut b, &[1.0, 2.0]);
    let second = b.len();
    b.resize(LEN, 0);
    assert_eq!(
        read(&b),
        Err(WkbError::GeometryType {
            offset: second,
            code: 0
        })
    );
    // What any one count may reserve room for up front.
    let room = reserve::<Geometry<f64>>(usize::MAX).capacity();
    assert!(
        room * std::mem::size_of::<Geometry<f64>>() <= MAX_RESERVE_BYTES,
        "{room}"
    );
    assert_eq!(reserve::<Coord<f64>>(10).capacity(), 10);
}
