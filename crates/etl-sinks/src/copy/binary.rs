//! The binary COPY format: each accepted [`Cell`] in its column type's binary
//! receive form (big-endian), so the server parses no text.
//!
//! Text, varchar, bpchar and json receive the same characters their text input
//! reads, and jsonb the same after a version byte; numbers are the values the
//! server would have parsed from the text COPY sends; geometry is EWKB, which
//! PostGIS's `geometry_recv` reads with the same parser its text input uses for hex.

use super::{Cell, ColumnKind, ColumnSource, CopyColumn, Misfit, TextForm, write_text_form};
use etl_geo::write_ewkb;

/// Starts a binary COPY stream: the signature, flags (no OIDs) and an empty header
/// extension.
pub const COPY_BINARY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// Ends a binary COPY stream: a tuple of -1 fields.
pub const COPY_BINARY_TRAILER: &[u8] = &(-1i16).to_be_bytes();

/// jsonb's binary form is a version byte, then the JSON text.
const JSONB_VERSION: u8 = 1;

const NULL_FIELD: [u8; 4] = (-1i32).to_be_bytes();

pub(super) fn has_binary_form(column: &CopyColumn) -> bool {
    match column.kind {
        ColumnKind::Numeric | ColumnKind::Other => false,
        ColumnKind::Geometry => !matches!(column.source, ColumnSource::Property(_)),
        _ => true,
    }
}

/// Appends one field: its length (-1 for NULL), then the value. On Err, part of
/// the field may have been written; the caller drops the row.
pub(super) fn write_field<'f>(
    kind: ColumnKind,
    cell: Option<&Cell<'f>>,
    out: &mut Vec<u8>,
) -> Result<(), Misfit<'f>> {
    let Some(cell) = cell else {
        out.extend_from_slice(&NULL_FIELD);
        return Ok(());
    };
    // Reserve the length and patch it once the value is written: no scratch buffer.
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    write_value(kind, cell, out)?;
    let len = out.len().saturating_sub(at).saturating_sub(4);
    // No field near 2 GiB gets this far (records are capped far below), and the
    // server takes at most 1 GB.
    let len = i32::try_from(len).map_err(|_| Misfit::NoBinaryForm)?;
    if let Some(slot) = out.get_mut(at..at.saturating_add(4)) {
        slot.copy_from_slice(&len.to_be_bytes());
    }
    Ok(())
}

fn write_value<'f>(kind: ColumnKind, cell: &Cell<'f>, out: &mut Vec<u8>) -> Result<(), Misfit<'f>> {
    match (kind, cell) {
        (ColumnKind::Text | ColumnKind::Json, _) => write_text_form(cell, TextForm::Raw, out)?,
        (ColumnKind::Jsonb, _) => {
            out.push(JSONB_VERSION);
            write_text_form(cell, TextForm::Raw, out)?;
        }
        (ColumnKind::SmallInt, Cell::Int(i)) => {
            out.extend_from_slice(&narrow::<i16>(*i)?.to_be_bytes())
        }
        (ColumnKind::Integer, Cell::Int(i)) => {
            out.extend_from_slice(&narrow::<i32>(*i)?.to_be_bytes())
        }
        (ColumnKind::BigInt, Cell::Int(i)) => out.extend_from_slice(&i.to_be_bytes()),
        // Integer to float `as` casts round to nearest, as the server's strtof and
        // strtod do with the digits text COPY would send.
        (ColumnKind::Real, Cell::Int(i)) => out.extend_from_slice(&(*i as f32).to_be_bytes()),
        (ColumnKind::Real, Cell::UInt(u)) => out.extend_from_slice(&(*u as f32).to_be_bytes()),
        (ColumnKind::Real, Cell::Float(x)) => {
            // Not `x as f32`: rounding the decimal to f64 and then to f32 may differ
            // from rounding it to f32 once, as the server does.
            let r = super::real_from_text(*x).ok_or(Misfit::NoBinaryForm)?;
            out.extend_from_slice(&r.to_be_bytes());
        }
        (ColumnKind::Double, Cell::Int(i)) => out.extend_from_slice(&(*i as f64).to_be_bytes()),
        (ColumnKind::Double, Cell::UInt(u)) => out.extend_from_slice(&(*u as f64).to_be_bytes()),
        (ColumnKind::Double, Cell::Float(x)) => out.extend_from_slice(&x.to_be_bytes()),
        (ColumnKind::Boolean, Cell::Bool(b)) => out.push(u8::from(*b)),
        (ColumnKind::Geometry, Cell::Geometry(g, srid)) => write_ewkb(g, Some(*srid), out),
        _ => return Err(Misfit::NoBinaryForm),
    }
    Ok(())
}

/// The shared rules range-check integers for their column, so this never fails.
fn narrow<'f, T: TryFrom<i64>>(i: i64) -> Result<T, Misfit<'f>> {
    T::try_from(i).map_err(|_| Misfit::NoBinaryForm)
}

#[cfg(test)]
mod tests {
    use geo_types::{Geometry, GeometryCollection, line_string, point, polygon};
    use proptest::prelude::*;
    use serde_json::{Map, Value, json};

    use super::super::{
        COPY_BINARY_HEADER, COPY_BINARY_TRAILER, ColumnKind, ColumnSource, Conflict, CopyColumn,
        CopyEncoder,
    };
    use etl_geo::{Feature, FeatureId};

    const ALL_KINDS: [ColumnKind; 12] = [
        ColumnKind::SmallInt,
        ColumnKind::Integer,
        ColumnKind::BigInt,
        ColumnKind::Real,
        ColumnKind::Double,
        ColumnKind::Numeric,
        ColumnKind::Boolean,
        ColumnKind::Text,
        ColumnKind::Json,
        ColumnKind::Jsonb,
        ColumnKind::Geometry,
        ColumnKind::Other,
    ];

    /// Bytes from hex digits; spaces are for reading.
    fn hex(digits: &str) -> Vec<u8> {
        let digits: Vec<u8> = digits.bytes().filter(|b| *b != b' ').collect();
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    /// A field: its length in hex, then the value's bytes.
    fn field(len_hex: &str, value: &[u8]) -> Vec<u8> {
        [hex(len_hex), value.to_vec()].concat()
    }

    fn encoder(kind: ColumnKind, source: ColumnSource) -> CopyEncoder {
        CopyEncoder::new(
            vec![CopyColumn {
                name: "c".into(),
                kind,
                source,
            }],
            4326,
        )
    }

    fn property(v: Value) -> Feature {
        let mut properties = Map::new();
        properties.insert("p".into(), v);
        Feature {
            properties,
            ..Feature::default()
        }
    }

    /// The one field `encode_binary` writes for a single-column encoder, checking
    /// the field count before it, and that `out` is untouched on error.
    fn encode(
        kind: ColumnKind,
        source: ColumnSource,
        f: &Feature,
        ordinal: i64,
    ) -> Result<Vec<u8>, String> {
        let mut out = b"keep".to_vec();
        match encoder(kind, source).encode_binary(f, ordinal, &mut out) {
            Ok(()) => {
                assert_eq!(out.get(..6), Some(&b"keep\x00\x01"[..]));
                Ok(out.split_off(6))
            }
            Err(conflict) => {
                assert_eq!(out, b"keep", "out must be untouched on error");
                Err(conflict.found)
            }
        }
    }

    fn prop(kind: ColumnKind, v: Value) -> Result<Vec<u8>, String> {
        encode(kind, ColumnSource::Property("p".into()), &property(v), 0)
    }

    fn id(kind: ColumnKind, id: FeatureId) -> Result<Vec<u8>, String> {
        let f = Feature {
            id: Some(id),
            ..Feature::default()
        };
        encode(kind, ColumnSource::Id, &f, 0)
    }

    fn ordinal(kind: ColumnKind, ordinal: i64) -> Result<Vec<u8>, String> {
        encode(kind, ColumnSource::Ordinal, &Feature::default(), ordinal)
    }

    fn geometry(kind: ColumnKind, g: Geometry<f64>) -> Result<Vec<u8>, String> {
        let f = Feature {
            geometry: Some(g),
            ..Feature::default()
        };
        encode(kind, ColumnSource::Geometry, &f, 0)
    }

    #[test]
    fn header_and_trailer() {
        assert_eq!(
            COPY_BINARY_HEADER,
            hex("5047434f50590aff0d0a00 00000000 00000000")
        );
        assert_eq!(COPY_BINARY_HEADER.len(), 19);
        assert_eq!(COPY_BINARY_TRAILER, hex("ffff"));
    }

    #[test]
    fn nulls_and_missing_properties() {
        for kind in ALL_KINDS {
            assert_eq!(prop(kind, json!(null)), Ok(hex("ffffffff")), "{kind:?}");
            let missing = encode(
                kind,
                ColumnSource::Property("q".into()),
                &property(json!(1)),
                0,
            );
            assert_eq!(missing, Ok(hex("ffffffff")), "{kind:?}");
            assert_eq!(
                encode(kind, ColumnSource::Id, &Feature::default(), 0),
                Ok(hex("ffffffff"))
            );
            assert_eq!(
                encode(kind, ColumnSource::Geometry, &Feature::default(), 0),
                Ok(hex("ffffffff"))
            );
        }
    }

    #[test]
    fn integers() {
        use ColumnKind::*;
        assert_eq!(prop(SmallInt, json!(-32768)), Ok(hex("00000002 8000")));
        assert_eq!(prop(SmallInt, json!(1)), Ok(hex("00000002 0001")));
        assert_eq!(prop(SmallInt, json!(32768)), Err("integer 32768".into()));
        assert_eq!(
            prop(Integer, json!(2147483647)),
            Ok(hex("00000004 7fffffff"))
        );
        assert_eq!(prop(Integer, json!(-2)), Ok(hex("00000004 fffffffe")));
        assert_eq!(
            prop(Integer, json!(2147483648i64)),
            Err("integer 2147483648".into())
        );
        assert_eq!(
            prop(BigInt, json!(i64::MIN)),
            Ok(hex("00000008 8000000000000000"))
        );
        assert_eq!(
            prop(BigInt, json!(258)),
            Ok(hex("00000008 0000000000000102"))
        );
        assert_eq!(
            prop(BigInt, json!(u64::MAX)),
            Err("integer 18446744073709551615".into())
        );
        assert_eq!(prop(BigInt, json!(2.0)), Err("number 2.0".into()));
        assert_eq!(prop(Integer, json!("12")), Err("string \"12\"".into()));
        assert_eq!(prop(SmallInt, json!(true)), Err("boolean true".into()));
    }

    #[test]
    fn floats() {
        use ColumnKind::*;
        assert_eq!(prop(Real, json!(1.5)), Ok(hex("00000004 3fc00000")));
        assert_eq!(prop(Real, json!(0.1)), Ok(hex("00000004 3dcccccd")));
        assert_eq!(prop(Real, json!(-0.0)), Ok(hex("00000004 80000000")));
        // 2^24 + 1 rounds to even, as float4in does with "16777217".
        assert_eq!(prop(Real, json!(16777217)), Ok(hex("00000004 4b800000")));
        // 1 + 2^-24 is a tie between two reals: `x as f32` rounds it to even (1.0),
        // but float4in reads the digits text COPY sends, "1.0000000596046448", which
        // lie just above the tie.
        assert_eq!(
            prop(Real, json!(1.0000000596046448)),
            Ok(hex("00000004 3f800001"))
        );
        // Subnormal: float4in accepts it.
        assert_eq!(prop(Real, json!(1e-40)), Ok(hex("00000004 000116c2")));
        // Above f32::MAX as f64, but the decimal rounds to f32::MAX, as in the server.
        assert_eq!(
            prop(Real, json!(3.4028235e38)),
            Ok(hex("00000004 7f7fffff"))
        );
        // float4in refuses a nonzero that rounds to zero, and overflow.
        assert_eq!(prop(Real, json!(1e-46)), Err("number 1e-46".into()));
        assert_eq!(
            prop(Real, json!(3.4028236e38)),
            Err("number 3.4028236e+38".into())
        );
        assert_eq!(prop(Real, json!(1e300)), Err("number 1e+300".into()));
        assert_eq!(
            prop(Double, json!(20.09)),
            Ok(hex("00000008 4034170a3d70a3d7"))
        );
        assert_eq!(prop(Double, json!(7)), Ok(hex("00000008 401c000000000000")));
        assert_eq!(
            prop(Double, json!(-0.0)),
            Ok(hex("00000008 8000000000000000"))
        );
        assert_eq!(
            prop(Double, json!(u64::MAX)),
            Ok(hex("00000008 43f0000000000000"))
        );
        assert_eq!(
            prop(Double, json!(1e-320)),
            Ok(hex("00000008 00000000000007e8"))
        );
        assert_eq!(prop(Double, json!("1.5")), Err("string \"1.5\"".into()));
        assert_eq!(prop(Real, json!(false)), Err("boolean false".into()));
    }

    #[test]
    fn booleans() {
        assert_eq!(
            prop(ColumnKind::Boolean, json!(true)),
            Ok(hex("00000001 01"))
        );
        assert_eq!(
            prop(ColumnKind::Boolean, json!(false)),
            Ok(hex("00000001 00"))
        );
        assert_eq!(prop(ColumnKind::Boolean, json!(1)), Err("integer 1".into()));
        assert_eq!(
            prop(ColumnKind::Boolean, json!("t")),
            Err("string \"t\"".into())
        );
    }

    #[test]
    fn text_is_sent_unescaped() {
        use ColumnKind::Text;
        assert_eq!(
            prop(Text, json!("a\tb\\é")),
            Ok(hex("00000006 61 09 62 5c c3a9"))
        );
        assert_eq!(prop(Text, json!("\\N")), Ok(hex("00000002 5c4e")));
        // Empty is not NULL.
        assert_eq!(prop(Text, json!("")), Ok(hex("00000000")));
        assert_eq!(
            prop(Text, json!("a\u{0}b")),
            Err("string containing NUL".into())
        );
        assert_eq!(prop(Text, json!(12)), Err("integer 12".into()));
        assert_eq!(prop(Text, json!([])), Err("array".into()));
    }

    #[test]
    fn json_and_jsonb() {
        use ColumnKind::{Json, Jsonb};
        assert_eq!(
            prop(Json, json!({"a": [1, 2.5, null]})),
            Ok(field("00000012", br#"{"a":[1,2.5,null]}"#))
        );
        assert_eq!(prop(Json, json!("s")), Ok(field("00000003", br#""s""#)));
        // json keeps \u0000 as text; jsonb refuses it.
        assert_eq!(
            prop(Json, json!("\u{0}")),
            Ok(field("00000008", br#""\u0000""#))
        );
        assert_eq!(
            prop(Jsonb, json!({"a": ["\u{0}"]})),
            Err("string containing NUL".into())
        );
        assert_eq!(prop(Jsonb, json!(3)), Ok(hex("00000002 01 33")));
        assert_eq!(prop(Jsonb, json!(true)), Ok(field("00000005", b"\x01true")));
        assert_eq!(
            prop(Jsonb, json!({"a": "x\ty"})),
            Ok(field("0000000d", b"\x01{\"a\":\"x\\ty\"}"))
        );
    }

    #[test]
    fn geometry_is_ewkb_with_the_srid() {
        let p: Geometry<f64> = point!(x: 1., y: 2.).into();
        assert_eq!(
            geometry(ColumnKind::Geometry, p.clone()),
            Ok(hex(
                "00000019 01 01000020 e6100000 000000000000f03f 0000000000000040"
            ))
        );
        let line: Geometry<f64> = line_string![(x: 0., y: 0.), (x: 1., y: -1.)].into();
        assert_eq!(
            geometry(ColumnKind::Geometry, line),
            Ok(hex("0000002d 01 02000020 e6100000 02000000 \
                 0000000000000000 0000000000000000 000000000000f03f 000000000000f0bf"))
        );
        assert_eq!(
            geometry(ColumnKind::Jsonb, p.clone()),
            Ok(field(
                "00000029",
                br#"{"type":"Point","coordinates":[1.0,2.0]}"#
                    .iter()
                    .fold(vec![1], |mut v, b| {
                        v.push(*b);
                        v
                    })
                    .as_slice()
            ))
        );
        assert_eq!(
            geometry(ColumnKind::Text, p.clone()),
            Err("geometry".into())
        );
        assert_eq!(geometry(ColumnKind::BigInt, p), Err("geometry".into()));
    }

    #[test]
    fn ids_and_ordinals() {
        use ColumnKind::*;
        assert_eq!(id(Text, FeatureId::Int(-5)), Ok(hex("00000002 2d35")));
        assert_eq!(
            id(BigInt, FeatureId::Int(42)),
            Ok(hex("00000008 000000000000002a"))
        );
        assert_eq!(id(Real, FeatureId::Int(7)), Ok(hex("00000004 40e00000")));
        assert_eq!(
            id(Jsonb, FeatureId::Str("x".into())),
            Ok(hex("00000004 01 227822"))
        );
        assert_eq!(
            id(Json, FeatureId::Str("a\tb".into())),
            Ok(field("00000006", b"\"a\\tb\""))
        );
        assert_eq!(
            id(Text, FeatureId::Str("a\tb".into())),
            Ok(hex("00000003 610962"))
        );
        assert_eq!(
            id(BigInt, FeatureId::Str("a".into())),
            Err("string id \"a\"".into())
        );
        assert_eq!(
            id(Integer, FeatureId::Int(1 << 40)),
            Err("integer id 1099511627776".into())
        );
        assert_eq!(ordinal(Integer, 40000), Ok(hex("00000004 00009c40")));
        assert_eq!(ordinal(SmallInt, 40000), Err("ordinal 40000".into()));
        assert_eq!(ordinal(Double, 7), Ok(hex("00000008 401c000000000000")));
        assert_eq!(ordinal(Text, -12), Ok(hex("00000003 2d3132")));
        assert_eq!(ordinal(Jsonb, 7), Ok(hex("00000002 01 37")));
        assert_eq!(ordinal(Boolean, 1), Err("ordinal 1".into()));
    }

    #[test]
    fn whole_tuples() {
        let column = |name: &str, kind, source| CopyColumn {
            name: name.into(),
            kind,
            source,
        };
        let encoder = CopyEncoder::new(
            vec![
                column("id", ColumnKind::BigInt, ColumnSource::Id),
                column("ord", ColumnKind::BigInt, ColumnSource::Ordinal),
                column("geom", ColumnKind::Geometry, ColumnSource::Geometry),
                column(
                    "name",
                    ColumnKind::Text,
                    ColumnSource::Property("name".into()),
                ),
            ],
            4326,
        );
        assert!(encoder.binary_supported());
        let mut f = property(json!("n"));
        f.properties = Map::from_iter([("name".to_owned(), json!("n"))]);
        f.id = Some(FeatureId::Int(42));
        f.geometry = Some(point!(x: 1., y: 2.).into());
        let mut out = Vec::new();
        encoder.encode_binary(&f, 7, &mut out).unwrap();
        encoder
            .encode_binary(&Feature::default(), 8, &mut out)
            .unwrap();
        assert_eq!(
            out,
            hex("0004 00000008 000000000000002a 00000008 0000000000000007 \
                 00000019 0101000020e6100000000000000000f03f0000000000000040 00000001 6e \
                 0004 ffffffff 00000008 0000000000000008 ffffffff ffffffff")
        );

        // A refused value in the last column drops the whole tuple.
        f.properties = Map::from_iter([("name".to_owned(), json!(1))]);
        let before = out.clone();
        assert_eq!(
            encoder.encode_binary(&f, 9, &mut out),
            Err(Conflict {
                column: "name".into(),
                found: "integer 1".into(),
                expected: "text".into(),
            })
        );
        assert_eq!(out, before);
    }

    #[test]
    fn text_only_columns() {
        use ColumnKind::*;
        let property = || ColumnSource::Property("p".into());
        for (kind, source, binary) in [
            (Numeric, property(), false),
            (Numeric, ColumnSource::Ordinal, false),
            (Other, ColumnSource::Id, false),
            (Geometry, property(), false),
            (Geometry, ColumnSource::Geometry, true),
            (Geometry, ColumnSource::Id, true),
            (Text, property(), true),
        ] {
            assert_eq!(
                encoder(kind, source.clone()).binary_supported(),
                binary,
                "{kind:?} from {source:?}"
            );
        }
        // NULL needs no binary form; a value is refused by name.
        assert_eq!(prop(Numeric, json!(null)), Ok(hex("ffffffff")));
        let mut out = Vec::new();
        let err = encoder(Numeric, property())
            .encode_binary(&super::tests::property(json!(1.5)), 0, &mut out)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "property \"c\": a value binary COPY cannot send does not fit column type numeric"
        );
        assert!(out.is_empty());
        assert_eq!(
            prop(
                Geometry,
                json!("0101000020E6100000000000000000F03F0000000000000040")
            ),
            Err("a value binary COPY cannot send".into())
        );
    }

    // --- The two formats agree -------------------------------------------------

    /// Splits a text COPY row into its (still escaped) fields.
    fn text_fields(row: &[u8]) -> Vec<&[u8]> {
        row.strip_suffix(b"\n")
            .expect("a text row ends with a newline")
            .split(|b| *b == b'\t')
            .collect()
    }

    fn unescape(field: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut bytes = field.iter();
        while let Some(&b) = bytes.next() {
            out.push(if b == b'\\' {
                match bytes.next() {
                    Some(b'\\') => b'\\',
                    Some(b'n') => b'\n',
                    Some(b'r') => b'\r',
                    Some(b't') => b'\t',
                    other => panic!("unexpected escape {other:?} in {field:?}"),
                }
            } else {
                b
            });
        }
        out
    }

    /// The fields of one binary tuple, `None` for NULL; the tuple must fill `tuple`.
    fn binary_fields(tuple: &[u8]) -> Vec<Option<&[u8]>> {
        let (count, mut rest) = tuple.split_at(2);
        let count = i16::from_be_bytes(count.try_into().unwrap());
        let fields = (0..count)
            .map(|_| {
                let (len, tail) = rest.split_at(4);
                let len = i32::from_be_bytes(len.try_into().unwrap());
                if len == -1 {
                    rest = tail;
                    return None;
                }
                let (value, tail) = tail.split_at(usize::try_from(len).unwrap());
                rest = tail;
                Some(value)
            })
            .collect();
        assert!(rest.is_empty(), "bytes after the last field");
        fields
    }

    /// Asserts that the binary field holds what PostgreSQL parses from the text field.
    fn assert_same_value(kind: ColumnKind, text: &[u8], binary: Option<&[u8]>) {
        let Some(binary) = binary else {
            assert_eq!(text, b"\\N", "{kind:?}: binary NULL");
            return;
        };
        assert_ne!(text, b"\\N", "{kind:?}: text NULL, binary {binary:?}");
        let text = unescape(text);
        let parsed = std::str::from_utf8(&text).unwrap();
        let expected = match kind {
            ColumnKind::SmallInt => i16::try_from(parsed.parse::<i64>().unwrap())
                .unwrap()
                .to_be_bytes()
                .to_vec(),
            ColumnKind::Integer => parsed.parse::<i32>().unwrap().to_be_bytes().to_vec(),
            ColumnKind::BigInt => parsed.parse::<i64>().unwrap().to_be_bytes().to_vec(),
            // Rust's parse rounds correctly, as glibc's strtof/strtod behind float4in/float8in.
            ColumnKind::Real => parsed.parse::<f32>().unwrap().to_be_bytes().to_vec(),
            ColumnKind::Double => parsed.parse::<f64>().unwrap().to_be_bytes().to_vec(),
            ColumnKind::Boolean => match parsed {
                "t" => vec![1],
                "f" => vec![0],
                _ => panic!("boolean text {parsed:?}"),
            },
            ColumnKind::Text | ColumnKind::Json => text.clone(),
            ColumnKind::Jsonb => [&[1u8][..], &text].concat(),
            ColumnKind::Geometry => hex(parsed),
            ColumnKind::Numeric | ColumnKind::Other => panic!("{kind:?} has no binary form"),
        };
        assert_eq!(binary, expected, "{kind:?}: text {parsed:?}");
    }

    /// Encodes one row both ways and checks that they accept and refuse alike, leave
    /// `out` alone on error, and send the same values.
    fn assert_formats_agree(encoder: &CopyEncoder, f: &Feature, ordinal: i64) {
        let mut text = b"keep".to_vec();
        let mut binary = b"keep".to_vec();
        let text_result = encoder.encode(f, ordinal, &mut text);
        let binary_result = encoder.encode_binary(f, ordinal, &mut binary);
        if !encoder.binary_supported() {
            // Only a value in a text-only column makes the binary row differ.
            if binary_result.is_ok() {
                assert!(text_result.is_ok());
            }
            return;
        }
        assert_eq!(
            text_result, binary_result,
            "feature {f:?}, ordinal {ordinal}"
        );
        if text_result.is_err() {
            assert_eq!(text, b"keep");
            assert_eq!(binary, b"keep");
            return;
        }
        let text_fields = text_fields(&text[4..]);
        let binary_fields = binary_fields(&binary[4..]);
        assert_eq!(text_fields.len(), encoder.columns().len());
        assert_eq!(binary_fields.len(), encoder.columns().len());
        for ((column, text), binary) in encoder.columns().iter().zip(text_fields).zip(binary_fields)
        {
            assert_same_value(column.kind, text, binary);
        }
    }

    fn sample_values() -> Vec<Value> {
        vec![
            json!(null),
            json!(true),
            json!(false),
            json!(0),
            json!(-1),
            json!(32767),
            json!(32768),
            json!(-32769),
            json!(2147483647),
            json!(2147483648i64),
            json!(i64::MIN),
            json!(i64::MAX),
            json!(u64::MAX),
            json!(9007199254740993i64),
            json!(0.1),
            json!(1.5),
            json!(2.0),
            json!(-0.0),
            json!(20.09),
            json!(1.0000000596046448),
            json!(1e-40),
            json!(1e-45),
            json!(7e-46),
            json!(1e-46),
            json!(1e-320),
            json!(3.4028235e38),
            json!(3.4028236e38),
            json!(1e300),
            json!(""),
            json!("a"),
            json!("a\tb\\c\nd\re"),
            json!("\\N"),
            json!("\\."),
            json!("\u{0}"),
            json!("12"),
            json!("é\u{1}"),
            json!("0101000020E6100000000000000000F03F0000000000000040"),
            json!([]),
            json!([1, "\u{0}"]),
            json!({"a": {"b": [null, 2.5, "t\tab"]}}),
            json!({"k\u{0}": 1}),
        ]
    }

    fn sample_ids() -> Vec<Option<FeatureId>> {
        vec![
            None,
            Some(FeatureId::Int(0)),
            Some(FeatureId::Int(-5)),
            Some(FeatureId::Int(40000)),
            Some(FeatureId::Int(1 << 40)),
            Some(FeatureId::Int(i64::MAX)),
            Some(FeatureId::Str(String::new())),
            Some(FeatureId::Str("a\tb".into())),
            Some(FeatureId::Str("\u{0}".into())),
            Some(FeatureId::Str("1.5".into())),
        ]
    }

    fn sample_geometries() -> Vec<Option<Geometry<f64>>> {
        vec![
            None,
            Some(point!(x: 1., y: 2.).into()),
            Some(line_string![(x: 0., y: 0.), (x: 1e-300, y: -1e300)].into()),
            Some(polygon![(x: 0., y: 0.), (x: 1., y: 0.), (x: 0., y: 1.)].into()),
            Some(Geometry::GeometryCollection(GeometryCollection(vec![]))),
        ]
    }

    const SAMPLE_ORDINALS: [i64; 7] = [0, 1, -1, 40000, 2147483648, i64::MIN, i64::MAX];

    /// Every kind from every source over values chosen at the rules' edges.
    #[test]
    fn formats_agree_on_every_kind_and_source() {
        let mut rows = 0;
        for kind in ALL_KINDS {
            let encoder = |source| encoder(kind, source);
            let by_property = encoder(ColumnSource::Property("p".into()));
            for v in sample_values() {
                assert_formats_agree(&by_property, &property(v), 0);
                rows += 1;
            }
            assert_formats_agree(&by_property, &Feature::default(), 0);
            let by_id = encoder(ColumnSource::Id);
            for id in sample_ids() {
                let f = Feature {
                    id,
                    ..Feature::default()
                };
                assert_formats_agree(&by_id, &f, 0);
                rows += 1;
            }
            let by_geometry = encoder(ColumnSource::Geometry);
            for geometry in sample_geometries() {
                let f = Feature {
                    geometry,
                    ..Feature::default()
                };
                assert_formats_agree(&by_geometry, &f, 0);
                rows += 1;
            }
            let by_ordinal = encoder(ColumnSource::Ordinal);
            for ordinal in SAMPLE_ORDINALS {
                assert_formats_agree(&by_ordinal, &Feature::default(), ordinal);
                rows += 1;
            }
        }
        assert_eq!(rows, 12 * (41 + 10 + 5 + 7));
    }

    const BINARY_KINDS: [ColumnKind; 10] = [
        ColumnKind::SmallInt,
        ColumnKind::Integer,
        ColumnKind::BigInt,
        ColumnKind::Real,
        ColumnKind::Double,
        ColumnKind::Boolean,
        ColumnKind::Text,
        ColumnKind::Json,
        ColumnKind::Jsonb,
        ColumnKind::Geometry,
    ];

    fn arb_column() -> impl Strategy<Value = CopyColumn> {
        let source = prop_oneof![
            Just(ColumnSource::Id),
            Just(ColumnSource::Geometry),
            Just(ColumnSource::Ordinal),
            prop::sample::select(vec!["a", "b", "c"])
                .prop_map(|p| ColumnSource::Property(p.to_owned())),
        ];
        (prop::sample::select(BINARY_KINDS.to_vec()), source)
            .prop_filter("a binary-capable column", |(kind, source)| {
                !(*kind == ColumnKind::Geometry && matches!(source, ColumnSource::Property(_)))
            })
            .prop_map(|(kind, source)| CopyColumn {
                name: format!("{kind:?}"),
                kind,
                source,
            })
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let edges = prop::sample::select(vec![
            i64::from(i16::MIN) - 1,
            i64::from(i16::MIN),
            i64::from(i16::MAX),
            i64::from(i16::MAX) + 1,
            i64::from(i32::MIN) - 1,
            i64::from(i32::MIN),
            i64::from(i32::MAX),
            i64::from(i32::MAX) + 1,
            i64::MIN,
            i64::MAX,
        ]);
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            edges.prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            // Non-finite becomes null.
            any::<f64>().prop_map(Value::from),
            // Around real's underflow and overflow.
            (-1e-44..1e-44f64).prop_map(Value::from),
            (3.4028233e38..3.4028238e38f64).prop_map(Value::from),
            "[a\\\\\t\n\r\u{0}é\"N.]{0,6}".prop_map(Value::from),
        ];
        leaf.prop_recursive(2, 8, 3, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::vec(("[a\u{0}\t]{0,2}", inner), 0..3)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        })
    }

    fn arb_feature() -> impl Strategy<Value = Feature> {
        let id = prop_oneof![
            Just(None),
            any::<i64>().prop_map(|i| Some(FeatureId::Int(i))),
            (-40000..40000i64).prop_map(|i| Some(FeatureId::Int(i))),
            "[a1\t\u{0}]{0,3}".prop_map(|s| Some(FeatureId::Str(s))),
        ];
        let coordinate = prop_oneof![any::<f64>(), -180.0..180.0f64];
        let geometry = prop_oneof![
            Just(None),
            (coordinate.clone(), coordinate)
                .prop_map(|(x, y)| Some(Geometry::from(point!(x: x, y: y)))),
        ];
        let properties = prop::collection::vec(
            (prop::sample::select(vec!["a", "b", "c", "d"]), arb_value()),
            0..4,
        );
        (id, geometry, properties).prop_map(|(id, geometry, properties)| Feature {
            id,
            geometry,
            properties: properties
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Random rows of several binary-capable columns: both formats accept and
        /// refuse the same rows with the same conflict, and send the same values.
        #[test]
        fn formats_agree_on_random_rows(
            columns in prop::collection::vec(arb_column(), 1..6),
            features in prop::collection::vec(arb_feature(), 1..4),
            ordinal in prop_oneof![any::<i64>(), -40000..40000i64],
        ) {
            let encoder = CopyEncoder::new(columns, 4326);
            prop_assert!(encoder.binary_supported());
            for f in &features {
                assert_formats_agree(&encoder, f, ordinal);
            }
        }
    }
}
