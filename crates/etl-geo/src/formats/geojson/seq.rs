//! Reads a GeoJSON text sequence: one Feature per line (NDJSON, GeoJSONL), or
//! RFC 8142 texts each introduced by an RS (0x1E) byte, which may span lines.
//!
//! Every record is parsed on its own, so a bad one is only a rejection; only I/O
//! and a record longer than the size cap are fatal.

use std::io::{BufRead, Read};

use super::decode::{FeatureDecoder, rejection};
use crate::error::{Position, ReadError};
use crate::feature::Feature;
use crate::formats::{Record, Rejection, accept_in};
use crate::repair::Repairs;

const RS: u8 = 0x1E;

/// Above this the line buffer is given back after use, so one huge line does not
/// pin its memory for the rest of the file.
const RETAINED_LINE: usize = 4 * 1024 * 1024;

pub(crate) struct GeoJsonSeqReader {
    input: Box<dyn BufRead + Send>,
    decoder: FeatureDecoder,
    buf: Vec<u8>,
    /// `b'\n'` for NDJSON, RS for RFC 8142; decided by the first byte of input.
    separator: Option<u8>,
    /// Line of the next unread byte.
    line: u64,
    ordinal: u64,
    max_record_bytes: usize,
    done: bool,
}

impl GeoJsonSeqReader {
    pub(crate) fn new(
        input: Box<dyn BufRead + Send>,
        max_depth: usize,
        max_record_bytes: usize,
        crs: Option<crate::crs::Crs>,
    ) -> Self {
        GeoJsonSeqReader {
            input,
            decoder: FeatureDecoder::new(max_depth).with_crs(crs),
            buf: Vec::new(),
            separator: None,
            line: 1,
            ordinal: 0,
            max_record_bytes,
            done: false,
        }
    }

    /// Skips a byte order mark and picks the separator from the first text byte.
    fn detect_separator(&mut self) -> Result<u8, ReadError> {
        let head = self.input.fill_buf()?;
        if head.starts_with(b"\xEF\xBB\xBF") {
            self.input.consume(3);
        }
        let head = self.input.fill_buf()?;
        let first = head.iter().find(|b| !b.is_ascii_whitespace());
        Ok(if first == Some(&RS) { RS } else { b'\n' })
    }

    /// Copies input up to and including the next separator (or the end) into `buf`.
    fn read_record(&mut self, separator: u8) -> Result<(), ReadError> {
        if self.buf.capacity() > RETAINED_LINE {
            self.buf = Vec::new();
        }
        self.buf.clear();
        let limit = u64::try_from(self.max_record_bytes)
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        (&mut self.input)
            .take(limit)
            .read_until(separator, &mut self.buf)?;
        if self.buf.len() > self.max_record_bytes && self.buf.last() != Some(&separator) {
            return Err(self.too_long());
        }
        Ok(())
    }

    fn too_long(&self) -> ReadError {
        ReadError::invalid(
            Position {
                line: self.line,
                column: 1,
            },
            format!("record longer than {} bytes", self.max_record_bytes),
        )
    }

    fn advance(&mut self) -> Result<Option<Record>, ReadError> {
        let separator = match self.separator {
            Some(s) => s,
            None => {
                let s = self.detect_separator()?;
                self.separator = Some(s);
                s
            }
        };
        loop {
            let buffered = self.input.fill_buf()?;
            if buffered.is_empty() {
                return Ok(None);
            }
            // A record that lies whole in the reader's buffer is parsed in place;
            // only one that straddles a refill is copied out.
            let decoded = match find_byte(buffered, separator) {
                Some(end) if end > self.max_record_bytes => return Err(self.too_long()),
                Some(end) => {
                    let text = buffered.get(..=end).unwrap_or(buffered);
                    let decoded = decode(&mut self.decoder, text, separator, self.line);
                    let len = text.len();
                    self.input.consume(len);
                    decoded
                }
                None => {
                    self.read_record(separator)?;
                    decode(&mut self.decoder, &self.buf, separator, self.line)
                }
            };
            self.line = self.line.saturating_add(decoded.newlines);
            if let Some((origin, feature, repairs)) = decoded.record {
                let ordinal = self.ordinal;
                self.ordinal = self.ordinal.saturating_add(1);
                return Ok(Some(Record {
                    line: origin.line,
                    ordinal,
                    layer: 0,
                    feature,
                    repairs,
                }));
            }
        }
    }
}

/// What one separator-terminated chunk of input held.
struct Decoded {
    newlines: u64,
    /// Where the JSON text starts and what it parsed to; `None` for a blank chunk.
    record: Option<(Position, Result<Feature, Rejection>, Repairs)>,
}

/// Parses the JSON text in `chunk` (a record with its separator), which starts on
/// `line`; surrounding whitespace and RS bytes are ignored.
fn decode(decoder: &mut FeatureDecoder, chunk: &[u8], separator: u8, line: u64) -> Decoded {
    let newlines = if separator == b'\n' {
        u64::from(chunk.last() == Some(&b'\n'))
    } else {
        chunk.iter().filter(|&&b| b == b'\n').count() as u64
    };
    let text = chunk.strip_suffix(&[separator]).unwrap_or(chunk);
    let is_blank = |b: &u8| b.is_ascii_whitespace() || *b == RS;
    let lead = text.iter().position(|b| !is_blank(b)).unwrap_or(text.len());
    let trail = text
        .iter()
        .rposition(|b| !is_blank(b))
        .map_or(lead, |i| i.saturating_add(1));
    let Some(json) = text.get(lead..trail).filter(|t| !t.is_empty()) else {
        return Decoded {
            newlines,
            record: None,
        };
    };
    let skipped = text.get(..lead).unwrap_or_default();
    let column = match skipped.iter().rposition(|&b| b == b'\n') {
        Some(i) => lead.saturating_sub(i),
        None => lead.saturating_add(1),
    };
    let origin = Position {
        line: line.saturating_add(skipped.iter().filter(|&&b| b == b'\n').count() as u64),
        column: column as u64,
    };
    let mut repairs = Repairs::NONE;
    let feature = match decoder.feature(json, 1) {
        Ok(feature) => {
            repairs = decoder.take_repairs();
            accept_in(feature, decoder.crs(), &mut repairs)
        }
        Err(e) => Err(rejection(&e, origin, separator == b'\n')),
    };
    Decoded {
        newlines,
        record: Some((origin, feature, repairs)),
    }
}

/// Index of the first `needle` in `haystack`, eight bytes at a time.
fn find_byte(haystack: &[u8], needle: u8) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let pattern = ONES.wrapping_mul(u64::from(needle));
    let mut offset = 0;
    for chunk in haystack.chunks_exact(8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        // Some byte of x is zero iff (x - 0x01..) & !x & 0x80.. is non-zero.
        let x = u64::from_le_bytes(word) ^ pattern;
        if x.wrapping_sub(ONES) & !x & HIGHS != 0 {
            break;
        }
        offset += 8;
    }
    let rest = haystack.get(offset..)?;
    rest.iter().position(|&b| b == needle).map(|i| offset + i)
}

impl Iterator for GeoJsonSeqReader {
    type Item = Result<Record, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.advance() {
            Ok(Some(record)) => Some(Ok(record)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feature::FeatureId;
    use std::io::Cursor;

    fn summarize(
        text: &[u8],
        max_depth: usize,
        cap: usize,
    ) -> Vec<Result<(u64, u64, String), String>> {
        GeoJsonSeqReader::new(Box::new(Cursor::new(text.to_vec())), max_depth, cap, None)
            .map(|r| {
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

    fn summary(text: &str) -> Vec<Result<(u64, u64, String), String>> {
        summarize(text.as_bytes(), 64, 1 << 20)
    }

    fn ok(line: u64, ordinal: u64, what: &str) -> Result<(u64, u64, String), String> {
        Ok((line, ordinal, what.to_owned()))
    }

    #[test]
    fn lines_blank_lines_and_rejections() {
        let text = "{\"type\":\"Feature\",\"id\":1,\"geometry\":{\"type\":\"Point\",\"coordinates\":[1,2]}}\r\n\
                    \n   \n\
                    {\"type\":\"Feature\",\"id\":2,,}\n\
                    {\"type\":\"Point\",\"coordinates\":[1,2]}\n\
                    [1]\n\
                    \u{1e}{\"type\":\"Feature\",\"id\":\"x\"}\n\
                    {\"type\":\"Feature\",\"id\":4,\"geometry\":{\"type\":\"Point\",\"coordinates\":[200,0]}}\n\
                    {\"type\":\"Feature\",\"id\":5}";
        assert_eq!(
            summary(text),
            [
                ok(1, 0, "id 1"),
                ok(4, 1, "invalid JSON: key must be a string at column 26"),
                ok(5, 2, "expected a Feature, found a Point"),
                ok(
                    6,
                    3,
                    "invalid type: sequence, expected a GeoJSON Feature object"
                ),
                ok(7, 4, "id x"),
                ok(8, 5, "longitude 200 out of range [-180, 180]"),
                ok(9, 6, "id 5"),
            ]
        );
    }

    #[test]
    fn invalid_json_reports_the_column_in_the_line() {
        assert_eq!(
            summary("  {\"type\": \"Feature\", \"id\": x}\n"),
            [ok(1, 0, "invalid JSON: expected value at column 29")]
        );
        assert_eq!(
            summary("{\"type\":\"Feature\"} {}\n"),
            [ok(1, 0, "invalid JSON: trailing characters at column 20")]
        );
        assert_eq!(
            summary("{\"type\":\"Feature\",\"id\":\"\u{1}\"}\n"),
            [ok(
                1,
                0,
                "invalid JSON: control character (\\u0000-\\u001F) found while parsing a string at column 24"
            )]
        );
    }

    #[test]
    fn rfc8142_sequences_may_span_lines() {
        let text = "\u{1e}{\"type\":\"Feature\",\n \"id\":1}\n\u{1e}\n{\"type\":\"Feature\",\"id\":2}\n\u{1e}{\n\"type\":\"Feature\",\n\"id\":x}\n\u{1e}\n";
        assert_eq!(
            summary(text),
            [
                ok(1, 0, "id 1"),
                ok(4, 1, "id 2"),
                ok(5, 2, "invalid JSON: expected value at line 7 column 6"),
            ]
        );
    }

    #[test]
    fn find_byte_matches_position() {
        let text = b"0123456789abcdef\nxyz\n";
        for start in 0..text.len() {
            let hay = &text[start..];
            assert_eq!(find_byte(hay, b'\n'), hay.iter().position(|&b| b == b'\n'));
            assert_eq!(find_byte(hay, 0x1e), None);
        }
        assert_eq!(find_byte(b"\x80\x81\xff\x0a", b'\n'), Some(3));
    }

    #[test]
    fn records_straddling_buffer_refills() {
        let line =
            r#"{"type":"Feature","id":1,"properties":{"name":"a longer line than the buffer"}}"#;
        let text = format!("{line}\n\n{line}\n{line}");
        let reader = std::io::BufReader::with_capacity(16, Cursor::new(text.into_bytes()));
        let out: Vec<(u64, u64)> = GeoJsonSeqReader::new(Box::new(reader), 64, 1 << 20, None)
            .map(|r| r.unwrap())
            .map(|r| {
                assert!(r.feature.is_ok());
                (r.line, r.ordinal)
            })
            .collect();
        assert_eq!(out, [(1, 0), (3, 1), (4, 2)]);
    }

    #[test]
    fn bom_is_skipped() {
        assert_eq!(
            summary("\u{feff}{\"type\":\"Feature\",\"id\":1}\n"),
            [ok(1, 0, "id 1")]
        );
    }

    #[test]
    fn depth_is_a_rejection() {
        let deep = format!(
            "{{\"type\":\"Feature\",\"properties\":{{\"a\":{}1{}}}}}\n{{\"type\":\"Feature\",\"id\":2}}\n",
            "[".repeat(100),
            "]".repeat(100)
        );
        assert_eq!(
            summary(&deep),
            [
                ok(1, 0, "JSON nested deeper than 64 levels"),
                ok(2, 1, "id 2")
            ]
        );
        let deeper = deep
            .replace(&"[".repeat(100), &"[".repeat(200))
            .replace(&"]".repeat(100), &"]".repeat(200));
        let out = summarize(deeper.as_bytes(), 1000, 1 << 20);
        assert_eq!(out.len(), 2);
        assert!(matches!(&out[0], Ok((1, 0, reason)) if reason.contains("recursion limit")));
    }

    #[test]
    fn long_lines_are_fatal() {
        let line = format!(
            "{{\"type\":\"Feature\",\"properties\":{{\"s\":\"{}\"}}}}",
            "x".repeat(1000)
        );
        let text = format!("{{\"type\":\"Feature\",\"id\":1}}\n{line}\n{line}\n");
        assert_eq!(summarize(text.as_bytes(), 64, 2000).len(), 3);
        assert_eq!(
            summarize(text.as_bytes(), 64, 500),
            [
                ok(1, 0, "id 1"),
                Err("2:1: record longer than 500 bytes".to_owned())
            ]
        );
    }

    #[test]
    fn invalid_utf8_is_a_rejection() {
        let out = summarize(
            b"{\"type\":\"Feature\",\"id\":\"\xff\"}\n{\"type\":\"Feature\",\"id\":2}",
            64,
            1 << 20,
        );
        assert_eq!(out.len(), 2);
        assert!(
            matches!(&out[0], Ok((1, 0, reason)) if reason.starts_with("invalid JSON: invalid unicode"))
        );
    }

    #[test]
    fn ids_keep_their_type() {
        let records: Vec<Record> = GeoJsonSeqReader::new(
            Box::new(Cursor::new(
                b"{\"type\":\"Feature\",\"id\":\"7\"}\n{\"type\":\"Feature\",\"id\":7}".to_vec(),
            )),
            64,
            1 << 20,
            None,
        )
        .map(Result::unwrap)
        .collect();
        assert_eq!(
            records[0].feature.as_ref().unwrap().id,
            Some(FeatureId::Str("7".into()))
        );
        assert_eq!(
            records[1].feature.as_ref().unwrap().id,
            Some(FeatureId::Int(7))
        );
    }
}
