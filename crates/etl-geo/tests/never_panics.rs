//! No input makes a reader panic, and every reader keeps the iterator contract:
//! ordinals count up from 0 without gaps, lines never go back, nothing follows an
//! error.

use std::io::Cursor;

use etl_geo::{Format, ReadOptions, open};
use proptest::prelude::*;

fn drain(format: Format, bytes: &[u8]) {
    let Ok(source) = open(
        format,
        Box::new(Cursor::new(bytes.to_vec())),
        &ReadOptions::default(),
    ) else {
        return;
    };
    let mut failed = false;
    let mut ordinal = 0;
    let mut line = 0;
    for item in source {
        assert!(!failed, "{format:?}: an item followed an error");
        match item {
            Ok(record) => {
                assert_eq!(record.ordinal, ordinal, "{format:?}: ordinal gap");
                assert!(record.line >= line.max(1), "{format:?}: line went back");
                ordinal += 1;
                line = record.line;
            }
            Err(e) => {
                failed = true;
                let _ = e.to_string();
            }
        }
    }
}

fn all_readers(bytes: &[u8]) {
    let _ = Format::sniff(bytes);
    drain(Format::GeoJson, bytes);
    drain(Format::GeoJsonSeq, bytes);
    drain(Format::Csv, bytes);
}

const JSON_TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    " ",
    "\n",
    "\r\n",
    "\u{1e}",
    "\u{feff}",
    "\"type\"",
    "\"Feature\"",
    "\"FeatureCollection\"",
    "\"features\"",
    "\"geometry\"",
    "\"coordinates\"",
    "\"geometries\"",
    "\"properties\"",
    "\"id\"",
    "\"Point\"",
    "\"LineString\"",
    "\"Polygon\"",
    "\"MultiPolygon\"",
    "\"MultiPoint\"",
    "\"MultiLineString\"",
    "\"GeometryCollection\"",
    "\"x\"",
    "\"\\u0000\"",
    "\"\\ud800\"",
    "\"\\",
    "0",
    "1",
    "-2.5",
    "1e999",
    "181",
    "95",
    "12345678901234567890",
    "null",
    "true",
    "fals",
    "\"",
    "\\",
];

const CSV_TOKENS: &[&str] = &[
    "lon",
    "lat",
    "x",
    "y",
    "wkt",
    "geometry",
    "name",
    ",",
    ";",
    "\t",
    "\n",
    "\r\n",
    "\"",
    " ",
    "1",
    "-2.5",
    "181",
    "NaN",
    "inf",
    "007",
    "true",
    "POINT(1 2)",
    "POINT",
    "(",
    ")",
    "EMPTY",
    "POLYGON((0 0,1 0,1 1,0 0))",
    "LINESTRING(",
    "GEOMETRYCOLLECTION(",
    "SRID=4326;",
    "\u{feff}",
];

/// WKT pieces, curves and surfaces included, for a `wkt` column.
const WKT_TOKENS: &[&str] = &[
    "POINT",
    "LINESTRING",
    "POLYGON",
    "MULTIPOINT",
    "MULTILINESTRING",
    "MULTIPOLYGON",
    "GEOMETRYCOLLECTION",
    "CIRCULARSTRING",
    "COMPOUNDCURVE",
    "CURVEPOLYGON",
    "MULTICURVE",
    "MULTISURFACE",
    "TRIANGLE",
    "TIN",
    "POLYHEDRALSURFACE",
    " Z",
    "ZM",
    "EMPTY",
    "(",
    ")",
    ",",
    " ",
    "0",
    "1",
    "-1",
    "0.5",
    "1e308",
    "NaN",
    "0 0",
    "1 0",
    "0 1",
    "1 1",
    "0 0,1 1,2 0",
    "0 0,0 0,0 0",
    "(0 0,1 1,0 0)",
    "CIRCULARSTRING(0 0,1 1,2 0)",
    "CIRCULARSTRING(0 0,1 0,0 0)",
];

fn tokens(alphabet: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop::sample::select(alphabet), 0..120)
        .prop_map(|parts| parts.concat().into_bytes())
}

const VALID_COLLECTION: &str = r#"{"type":"FeatureCollection","features":[
{"type":"Feature","id":1,"properties":{"a":[1,{"b":null}],"s":"x\"y"},"geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,0]],[[0.1,0.1],[0.2,0.1],[0.2,0.2],[0.1,0.1]]]}},
{"type":"Feature","id":"two","geometry":{"type":"GeometryCollection","geometries":[{"type":"Point","coordinates":[1,2]},{"type":"MultiLineString","coordinates":[[[0,0],[1,1]]]}]}}
]}"#;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        all_readers(&bytes);
    }

    #[test]
    fn json_like_token_soup(bytes in tokens(JSON_TOKENS)) {
        all_readers(&bytes);
    }

    #[test]
    fn csv_like_token_soup(bytes in tokens(CSV_TOKENS)) {
        all_readers(&bytes);
    }

    #[test]
    fn wkt_token_soup(bytes in tokens(WKT_TOKENS)) {
        let mut csv = b"id\twkt\n1\t".to_vec();
        csv.extend(bytes.iter().filter(|b| !matches!(b, b'\t' | b'\n' | b'"')));
        csv.push(b'\n');
        drain(Format::Csv, &csv);
    }

    #[test]
    fn mutated_valid_collection(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = VALID_COLLECTION.as_bytes().to_vec();
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        all_readers(&bytes);
        let end = cut.index(bytes.len() + 1);
        all_readers(&bytes[..end]);
    }
}

#[test]
fn pathological_nesting() {
    for depth in [1_000usize, 100_000] {
        let arrays = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let objects = "{\"a\":".repeat(depth);
        for body in [arrays.as_str(), objects.as_str()] {
            all_readers(body.as_bytes());
            let feature = format!("{{\"type\":\"Feature\",\"properties\":{{\"p\":{body}}}}}\n");
            all_readers(feature.as_bytes());
            let coordinates = format!(
                "{{\"type\":\"Feature\",\"geometry\":{{\"type\":\"Point\",\"coordinates\":{body}}}}}\n"
            );
            all_readers(coordinates.as_bytes());
        }
        let wkt = format!("wkt\n\"{}\"\n", "GEOMETRYCOLLECTION(".repeat(depth));
        all_readers(wkt.as_bytes());
    }
}
