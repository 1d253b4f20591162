//! Reads a GeoJSON document: a FeatureCollection streamed feature by feature, a
//! single Feature, or a bare geometry.
//!
//! The top-level object is walked member by member with [`JsonScanner`]. Its bytes
//! are copied aside until it is clear that it is a FeatureCollection (a `"type"` of
//! FeatureCollection or a `"features"` array), because a single Feature or geometry
//! document is parsed whole once its end is reached. The `"features"` array is then
//! read one element at a time, so memory is bounded by the largest feature,
//! wherever `"features"` sits among the members. An element that lies whole in the
//! read buffer is parsed in place; others are checked by the scanner, copied out
//! and parsed from the copy.

use std::borrow::Cow;
use std::io::BufRead;

use super::decode::{FeatureDecoder, GeoJsonType, rejection};
use super::scan::{JsonScanner, object_extent};
use crate::error::{Position, ReadError};
use crate::feature::Feature;
use crate::formats::{Record, Rejection, accept_in, excerpt};
use crate::repair::Repairs;

pub(crate) struct GeoJsonReader {
    scanner: JsonScanner,
    decoder: FeatureDecoder,
    state: State,
    key: Vec<u8>,
    top_type: TopType,
    streamed_features: bool,
    document_start: Position,
    ordinal: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Start,
    /// Inside the top-level object, before a member key.
    Key,
    /// After a top-level member's value.
    AfterMember,
    /// Just inside the `"features"` array.
    FeaturesStart,
    /// After an element of `"features"`.
    AfterFeature,
    /// After the top-level object's closing brace.
    End,
    Done,
}

enum TopType {
    Missing,
    Known(GeoJsonType),
    Unsupported(String),
}

/// The level a FeatureCollection member occupies: collection object, array, feature.
const FEATURE_LEVEL: usize = 3;

impl GeoJsonReader {
    pub(crate) fn new(
        input: Box<dyn BufRead + Send>,
        max_depth: usize,
        max_record_bytes: usize,
        crs: Option<crate::crs::Crs>,
    ) -> Self {
        GeoJsonReader {
            scanner: JsonScanner::new(input, max_depth, max_record_bytes),
            decoder: FeatureDecoder::new(max_depth).with_crs(crs),
            state: State::Start,
            key: Vec::new(),
            top_type: TopType::Missing,
            streamed_features: false,
            document_start: Position::default(),
            ordinal: 0,
        }
    }

    /// Runs the document walk until the next record or the end.
    fn advance(&mut self) -> Result<Option<Record>, ReadError> {
        loop {
            match self.state {
                State::Start => self.start_document()?,
                State::Key => self.member()?,
                State::AfterMember => match self.next_nonblank("an object")? {
                    b',' => {
                        self.scanner.consume();
                        self.state = State::Key;
                    }
                    b'}' => {
                        self.scanner.consume();
                        self.state = State::End;
                    }
                    _ => return Err(self.scanner.syntax_error("expected `,` or `}`")),
                },
                State::FeaturesStart => {
                    if self.next_nonblank("an array")? == b']' {
                        self.scanner.consume();
                        self.state = State::AfterMember;
                    } else {
                        return self.feature().map(Some);
                    }
                }
                State::AfterFeature => match self.next_nonblank("an array")? {
                    b',' => {
                        self.scanner.consume();
                        return self.feature().map(Some);
                    }
                    b']' => {
                        self.scanner.consume();
                        self.state = State::AfterMember;
                    }
                    _ => return Err(self.scanner.syntax_error("expected `,` or `]`")),
                },
                State::End => {
                    self.state = State::Done;
                    return self.finish_document();
                }
                State::Done => return Ok(None),
            }
        }
    }

    fn next_nonblank(&mut self, parsing: &str) -> Result<u8, ReadError> {
        match self.scanner.skip_whitespace()? {
            Some(b) => Ok(b),
            None => Err(self
                .scanner
                .syntax_error(format!("EOF while parsing {parsing}"))),
        }
    }

    fn start_document(&mut self) -> Result<(), ReadError> {
        self.scanner.skip_bom()?;
        match self.scanner.skip_whitespace()? {
            Some(b'{') => {}
            Some(_) => {
                return Err(ReadError::invalid(
                    self.scanner.position(),
                    "expected a GeoJSON object",
                ));
            }
            None => {
                return Err(ReadError::invalid(
                    self.scanner.position(),
                    "empty input: expected a GeoJSON object",
                ));
            }
        }
        self.document_start = self.scanner.position();
        self.scanner.start_capture();
        self.scanner.consume();
        self.state = if self.next_nonblank("an object")? == b'}' {
            self.scanner.consume();
            State::End
        } else {
            State::Key
        };
        Ok(())
    }

    /// Reads one top-level member up to the start of `"features"` or the end of its value.
    fn member(&mut self) -> Result<(), ReadError> {
        if self.next_nonblank("an object")? != b'"' {
            return Err(self.scanner.syntax_error("key must be a string"));
        }
        self.key.clear();
        let escaped = self.scanner.scan_string(Some(&mut self.key))?;
        let key = unescape(&self.key, escaped);
        let is_features = &*key == b"features";
        let is_type = &*key == b"type";
        self.scanner.expect_colon()?;
        let value_start = self.next_nonblank("an object")?;

        if is_features && value_start == b'[' && self.may_be_collection() {
            self.streamed_features = true;
            self.scanner.discard_capture();
            self.scanner.consume();
            self.state = State::FeaturesStart;
            return Ok(());
        }
        if is_type && value_start == b'"' {
            self.key.clear();
            let escaped = self.scanner.scan_string(Some(&mut self.key))?;
            let name = unescape(&self.key, escaped);
            self.top_type = match GeoJsonType::from_name(&name) {
                Some(kind) => TopType::Known(kind),
                None => TopType::Unsupported(String::from_utf8_lossy(&name).into_owned()),
            };
            if matches!(
                self.top_type,
                TopType::Known(GeoJsonType::FeatureCollection)
            ) {
                self.scanner.discard_capture();
            }
        } else {
            self.scanner.skip_value(1)?;
        }
        self.state = State::AfterMember;
        Ok(())
    }

    fn may_be_collection(&self) -> bool {
        !self.streamed_features
            && matches!(
                self.top_type,
                TopType::Missing | TopType::Known(GeoJsonType::FeatureCollection)
            )
    }

    /// Reads one element of `"features"`.
    fn feature(&mut self) -> Result<Record, ReadError> {
        self.scanner.skip_whitespace()?;
        let origin = self.scanner.position();
        self.state = State::AfterFeature;
        // Fast path: a feature that lies whole in the scanner's buffer is delimited
        // by a quick bracket count and parsed in place by serde, which checks its
        // syntax. Anything else (a feature cut by the buffer end, a syntax error, a
        // rejection) takes the checked path below, which gives exact positions.
        if let Some(len) = object_extent(self.scanner.buffered())
            && let Some(json) = self.scanner.buffered().get(..len)
            && let Ok(feature) = self.decoder.feature(json, FEATURE_LEVEL)
        {
            self.scanner.skip_buffered(len);
            let mut repairs = self.decoder.take_repairs();
            let accepted = accept_in(feature, self.decoder.crs(), &mut repairs);
            return Ok(self.record(origin, accepted, repairs));
        }
        self.scanner.start_capture();
        self.scanner.skip_value(FEATURE_LEVEL - 1)?;
        self.scanner.finish_capture()?;
        let mut repairs = Repairs::NONE;
        let feature = match self.decoder.feature(self.scanner.captured(), FEATURE_LEVEL) {
            Ok(feature) => {
                repairs = self.decoder.take_repairs();
                accept_in(feature, self.decoder.crs(), &mut repairs)
            }
            Err(e) => Err(rejection(&e, origin, false)),
        };
        Ok(self.record(origin, feature, repairs))
    }

    fn record(
        &mut self,
        origin: Position,
        feature: Result<Feature, Rejection>,
        repairs: Repairs,
    ) -> Record {
        let ordinal = self.ordinal;
        self.ordinal = self.ordinal.saturating_add(1);
        Record {
            line: origin.line,
            ordinal,
            layer: 0,
            feature,
            repairs,
        }
    }

    /// After the top-level object: nothing may follow, and a document that was not
    /// a FeatureCollection becomes its one record.
    fn finish_document(&mut self) -> Result<Option<Record>, ReadError> {
        self.scanner.finish_capture()?;
        if self.scanner.skip_whitespace()?.is_some() {
            return Err(self.scanner.syntax_error("trailing characters"));
        }
        if self.streamed_features {
            return Ok(None);
        }
        let origin = self.document_start;
        let mut repairs = Repairs::NONE;
        let feature = match &self.top_type {
            TopType::Known(GeoJsonType::FeatureCollection) => {
                return Err(ReadError::invalid(
                    origin,
                    "FeatureCollection has no \"features\" array",
                ));
            }
            TopType::Known(GeoJsonType::Feature) => {
                match self.decoder.feature(self.scanner.captured(), 1) {
                    Ok(feature) => {
                        repairs = self.decoder.take_repairs();
                        accept_in(feature, self.decoder.crs(), &mut repairs)
                    }
                    Err(e) => Err(rejection(&e, origin, false)),
                }
            }
            TopType::Known(_) => match self.decoder.geometry(self.scanner.captured(), 1) {
                Ok(geometry) => {
                    repairs = self.decoder.take_repairs();
                    accept_in(
                        Feature {
                            geometry: Some(geometry),
                            ..Feature::default()
                        },
                        self.decoder.crs(),
                        &mut repairs,
                    )
                }
                Err(e) => Err(rejection(&e, origin, false)),
            },
            TopType::Missing => {
                return Err(ReadError::invalid(
                    origin,
                    "not a GeoJSON object: no \"type\" member",
                ));
            }
            TopType::Unsupported(name) => {
                return Err(ReadError::invalid(
                    origin,
                    format!("unsupported GeoJSON type {:?}", excerpt(name)),
                ));
            }
        };
        Ok(Some(self.record(origin, feature, repairs)))
    }
}

/// The decoded text of a string's raw content; escapes are rare in keys, so only
/// then is anything allocated.
fn unescape(raw: &[u8], escaped: bool) -> Cow<'_, [u8]> {
    if !escaped {
        return Cow::Borrowed(raw);
    }
    let mut quoted = Vec::with_capacity(raw.len().saturating_add(2));
    quoted.push(b'"');
    quoted.extend_from_slice(raw);
    quoted.push(b'"');
    match serde_json::from_slice::<String>(&quoted) {
        Ok(s) => Cow::Owned(s.into_bytes()),
        Err(_) => Cow::Borrowed(raw),
    }
}

impl Iterator for GeoJsonReader {
    type Item = Result<Record, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.state == State::Done {
            return None;
        }
        match self.advance() {
            Ok(Some(record)) => Some(Ok(record)),
            Ok(None) => {
                self.state = State::Done;
                None
            }
            Err(e) => {
                self.state = State::Done;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feature::FeatureId;
    use geo_types::{Geometry, point};
    use serde_json::json;
    use std::io::Cursor;

    fn reader(text: &str, max_depth: usize, cap: usize) -> GeoJsonReader {
        GeoJsonReader::new(
            Box::new(Cursor::new(text.as_bytes().to_vec())),
            max_depth,
            cap,
            None,
        )
    }

    /// Each record as (line, ordinal, id or rejection reason); errors as text.
    fn summary(text: &str) -> Vec<Result<(u64, u64, String), String>> {
        summarize(reader(text, 64, 1 << 20))
    }

    fn summarize(r: GeoJsonReader) -> Vec<Result<(u64, u64, String), String>> {
        r.map(|r| {
            r.map(|rec| {
                let what = match rec.feature {
                    Ok(f) => format!("id {}", f.id.map(|i| i.to_string()).unwrap_or_default()),
                    Err(rej) => rej.reason,
                };
                (rec.line, rec.ordinal, what)
            })
            .map_err(|e| e.to_string())
        })
        .collect()
    }

    fn ok(line: u64, ordinal: u64, what: &str) -> Result<(u64, u64, String), String> {
        Ok((line, ordinal, what.to_owned()))
    }

    #[test]
    fn features_before_or_after_type_with_foreign_members() {
        let after = r#"{"name":"x","crs":{"type":"name","properties":{"features":[1]}},"bbox":[0,0,1,1],
"features":[
  {"type":"Feature","id":1,"geometry":{"type":"Point","coordinates":[1,2]},"properties":{"a":[{"features":[]}]}},
  {"type":"Feature","id":"b","geometry":null,"properties":null}
],"type":"FeatureCollection","extra":{"deep":[[[]]]}}"#;
        assert_eq!(summary(after), [ok(3, 0, "id 1"), ok(4, 1, "id b")]);
        let before = r#"{"type":"FeatureCollection","features":[{"type":"Feature","id":1,"geometry":null}],"bbox":[]}"#;
        assert_eq!(summary(before), [ok(1, 0, "id 1")]);
    }

    #[test]
    fn parsed_feature_content() {
        let text = r#"{"type":"FeatureCollection","features":[{"type":"Feature","id":7,"properties":{"z":1,"a":"x"},"geometry":{"coordinates":[1.5,-2],"type":"Point"}}]}"#;
        let records: Vec<Record> = reader(text, 64, 1 << 20).map(Result::unwrap).collect();
        let f = records[0].feature.clone().unwrap();
        assert_eq!(f.id, Some(FeatureId::Int(7)));
        assert_eq!(f.geometry, Some(point!(x: 1.5, y: -2.).into()));
        assert_eq!(
            serde_json::Value::Object(f.properties),
            json!({"z":1,"a":"x"})
        );
    }

    #[test]
    fn single_feature_and_bare_geometry_documents() {
        let feature = "\u{feff}\n {\"properties\":{\"a\":1},\"type\":\"Feature\",\"id\":3,\"geometry\":{\"type\":\"Point\",\"coordinates\":[1,2]}}\n";
        assert_eq!(summary(feature), [ok(2, 0, "id 3")]);
        let geometry = r#"{"type":"LineString","coordinates":[[1,2],[3,4]]}"#;
        let records: Vec<Record> = reader(geometry, 64, 1 << 20).map(Result::unwrap).collect();
        assert_eq!(records.len(), 1);
        let f = records[0].feature.clone().unwrap();
        assert!(f.properties.is_empty());
        assert!(matches!(f.geometry, Some(Geometry::LineString(_))));
        // An unclosed ring is closed, and the record says so.
        let open = r#"{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,1]]]}"#;
        let records: Vec<Record> = reader(open, 64, 1 << 20).map(Result::unwrap).collect();
        assert!(records[0].feature.is_ok());
        assert!(records[0].repairs.contains(crate::Repair::RingClosed));
    }

    #[test]
    fn rejections_do_not_stop_the_collection() {
        let text = r#"{"type":"FeatureCollection","features":[
{"type":"Feature","id":1,"geometry":{"type":"Circle","coordinates":[1,2]}},
{"type":"Feature","id":2,"geometry":{"type":"Point","coordinates":[[1,2]]}},
{"type":"Feature","id":3,"geometry":{"type":"Point","coordinates":[1,95]}},
{"type":"Point","coordinates":[1,2]},
[],
{"type":"Feature","id":6,"geometry":{"type":"Point","coordinates":[1e999,0]}},
{"type":"Feature","id":7,"geometry":null}
]}"#;
        assert_eq!(
            summary(text),
            [
                ok(2, 0, "unknown GeoJSON type \"Circle\""),
                ok(3, 1, "Point coordinates must be a position"),
                ok(4, 2, "latitude 95 out of range [-90, 90]"),
                ok(5, 3, "expected a Feature, found a Point"),
                ok(
                    6,
                    4,
                    "invalid type: sequence, expected a GeoJSON Feature object"
                ),
                ok(
                    7,
                    5,
                    "number out of range of a 64-bit float at line 7 column 72"
                ),
                ok(8, 6, "id 7"),
            ]
        );
    }

    #[test]
    fn syntax_errors_are_fatal_with_position() {
        let text = "{\"type\":\"FeatureCollection\",\"features\":[\n  {\"type\":\"Feature\",\"id\":1},\n  {\"type\":\"Feature\",\"id\":2,}\n]}";
        assert_eq!(
            summary(text),
            [
                ok(2, 0, "id 1"),
                Err("3:28: key must be a string".to_owned())
            ]
        );
        let cases = [
            ("", "1:1: empty input: expected a GeoJSON object"),
            ("  [1]", "1:3: expected a GeoJSON object"),
            (
                "{\"type\":\"FeatureCollection\"}",
                "1:1: FeatureCollection has no \"features\" array",
            ),
            ("{\"a\":1}", "1:1: not a GeoJSON object: no \"type\" member"),
            ("{}", "1:1: not a GeoJSON object: no \"type\" member"),
            (
                "{\"type\":\"Topology\"}",
                "1:1: unsupported GeoJSON type \"Topology\"",
            ),
            (
                "{\"type\":\"FeatureCollection\",\"features\":[]} x",
                "1:44: trailing characters",
            ),
            (
                "{\"type\":\"FeatureCollection\",\"features\":[",
                "1:41: EOF while parsing an array",
            ),
            (
                "{\"type\":\"FeatureCollection\",\"features\":[{}",
                "1:43: EOF while parsing an array",
            ),
            (
                "{\"type\":\"FeatureCollection\",\"features\":[] ",
                "1:43: EOF while parsing an object",
            ),
            (
                "{\"type\":\"FeatureCollection\" \"features\":[]}",
                "1:29: expected `,` or `}`",
            ),
            (
                "{\"type\":\"FeatureCollection\",\"features\":[{} {}]}",
                "1:44: expected `,` or `]`",
            ),
            (
                "{\"type\":\"FeatureCollection\",\"features\":[,]}",
                "1:41: expected value",
            ),
            (
                "{\"type\":\"FeatureCollection\",\"features\":[{},]}",
                "1:44: expected value",
            ),
            ("{1:2}", "1:2: key must be a string"),
        ];
        for (text, expected) in cases {
            let out = summary(text);
            assert_eq!(
                out.last(),
                Some(&Err(expected.to_owned())),
                "{text:?}: {out:?}"
            );
        }
    }

    #[test]
    fn error_ends_the_iteration() {
        let mut r = reader(
            "{\"type\":\"FeatureCollection\",\"features\":[x]}",
            64,
            1 << 20,
        );
        assert!(matches!(r.next(), Some(Err(ReadError::Syntax { .. }))));
        assert!(r.next().is_none());
        assert!(r.next().is_none());
    }

    #[test]
    fn escaped_keys_and_types() {
        let text =
            r#"{"typ\u0065":"Feature\u0043ollection","feat\u0075res":[{"type":"Feature","id":1}]}"#;
        assert_eq!(summary(text), [ok(1, 0, "id 1")]);
    }

    #[test]
    fn depth_limit_is_a_read_error() {
        let text = r#"{"type":"FeatureCollection","features":[{"type":"Feature","properties":{"a":[[1]]}}]}"#;
        assert_eq!(summarize(reader(text, 6, 1 << 20)).len(), 1);
        assert_eq!(
            summarize(reader(text, 5, 1 << 20)),
            [Err("1:78: JSON nested deeper than 5 levels".to_owned())]
        );
        let deep = format!(
            "{{\"type\":\"FeatureCollection\",\"features\":[{{\"type\":\"Feature\",\"properties\":{{\"a\":{}1{}}}}}]}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(matches!(
            reader(&deep, 64, 1 << 20).next(),
            Some(Err(ReadError::Invalid { .. }))
        ));
    }

    #[test]
    fn feature_size_cap() {
        let big = format!(
            r#"{{"type":"FeatureCollection","features":[{{"type":"Feature","properties":{{"s":"{}"}}}}]}}"#,
            "x".repeat(300_000)
        );
        assert_eq!(
            summarize(reader(&big, 64, 100_000)),
            [Err("1:41: JSON value larger than 100000 bytes".to_owned())]
        );
        assert_eq!(summarize(reader(&big, 64, 400_000)).len(), 1);
        let single = format!(
            r#"{{"type":"Feature","properties":{{"s":"{}"}}}}"#,
            "x".repeat(300_000)
        );
        assert_eq!(
            summarize(reader(&single, 64, 100_000)),
            [Err("1:1: JSON value larger than 100000 bytes".to_owned())]
        );
    }

    #[test]
    fn many_features_stream_across_buffer_refills() {
        let mut text = String::from("{\"features\":[");
        for i in 0..5000 {
            if i > 0 {
                text.push_str(",\n");
            }
            text.push_str(&format!(
                r#"{{"type":"Feature","id":{i},"properties":{{"name":"feature number {i}"}},"geometry":{{"type":"Point","coordinates":[{},{}]}}}}"#,
                i % 180,
                i % 90
            ));
        }
        text.push_str("],\"type\":\"FeatureCollection\"}");
        let records: Vec<Record> = reader(&text, 64, 1 << 20).map(Result::unwrap).collect();
        assert_eq!(records.len(), 5000);
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.ordinal, i as u64);
            assert_eq!(r.line, i as u64 + 1);
            let f = r.feature.as_ref().unwrap();
            assert_eq!(f.id, Some(FeatureId::Int(i as i64)));
        }
    }
}
