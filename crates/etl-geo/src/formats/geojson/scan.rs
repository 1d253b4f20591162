//! Streaming JSON syntax checking over a byte reader, tracking line and column,
//! able to copy out the exact bytes of one value.
//!
//! The FeatureCollection reader walks the document with this so that only one
//! feature's bytes are held at a time; serde then parses that slice. Checking the
//! syntax here, rather than leaving it to serde, is what makes a syntax error fatal
//! with its exact position while a well-formed but unusable feature only becomes a
//! rejection. It is iterative, so nesting depth costs heap, not stack.

use std::io::{BufRead, ErrorKind};

use crate::error::{Position, ReadError};

const BUFFER_SIZE: usize = 64 * 1024;

/// Above this the capture buffer is given back after use, so one huge feature does
/// not pin its memory for the rest of the file.
const RETAINED_CAPTURE: usize = 4 * 1024 * 1024;

/// The most raw bytes of a string [`JsonScanner::scan_string`] collects. Callers
/// only compare top-level keys and type names with short words, and once the
/// FeatureCollection capture is dropped nothing else bounds a key's length: a
/// multi-gigabyte key must not be held whole. Longer content is cut here, which
/// cannot make it equal any GeoJSON word (even fully `\u`-escaped they are
/// far shorter).
pub(crate) const MAX_COLLECTED_STRING: usize = 1024;

pub(crate) struct JsonScanner {
    reader: Box<dyn BufRead + Send>,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    eof: bool,
    /// Input offset of `buf[0]`.
    buf_offset: u64,
    line: u64,
    /// Input offset of the first byte of the current line.
    line_start: u64,
    capture: Option<Capture>,
    captured: Vec<u8>,
    capture_limit: usize,
    max_depth: usize,
    open: Vec<u8>,
}

struct Capture {
    /// Where in `buf` the not yet copied part of the capture starts.
    start: usize,
    origin: Position,
}

impl JsonScanner {
    pub(crate) fn new(
        reader: Box<dyn BufRead + Send>,
        max_depth: usize,
        capture_limit: usize,
    ) -> Self {
        JsonScanner {
            reader,
            buf: vec![0; BUFFER_SIZE],
            pos: 0,
            end: 0,
            eof: false,
            buf_offset: 0,
            line: 1,
            line_start: 0,
            capture: None,
            captured: Vec::new(),
            capture_limit,
            max_depth,
            open: Vec::new(),
        }
    }

    /// Position of the next unread byte.
    pub(crate) fn position(&self) -> Position {
        let offset = self.buf_offset.saturating_add(self.pos as u64);
        Position {
            line: self.line,
            column: offset.saturating_sub(self.line_start).saturating_add(1),
        }
    }

    pub(crate) fn syntax_error(&self, message: impl Into<String>) -> ReadError {
        ReadError::syntax(self.position(), message)
    }

    /// Loads the next chunk; false at end of input.
    fn refill(&mut self) -> Result<bool, ReadError> {
        if self.eof {
            return Ok(false);
        }
        if let Some(capture) = &mut self.capture {
            let pending = self.buf.get(capture.start..self.end).unwrap_or_default();
            if self.captured.len().saturating_add(pending.len()) > self.capture_limit {
                return Err(ReadError::invalid(
                    capture.origin,
                    format!("JSON value larger than {} bytes", self.capture_limit),
                ));
            }
            self.captured.extend_from_slice(pending);
            capture.start = 0;
        }
        self.buf_offset = self.buf_offset.saturating_add(self.end as u64);
        self.pos = 0;
        self.end = 0;
        loop {
            match self.reader.read(&mut self.buf) {
                Ok(n) => {
                    self.end = n.min(self.buf.len());
                    self.eof = n == 0;
                    return Ok(n > 0);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
    }

    /// The next byte, not consumed.
    #[inline]
    pub(crate) fn peek(&mut self) -> Result<Option<u8>, ReadError> {
        if self.pos >= self.end && !self.refill()? {
            return Ok(None);
        }
        Ok(self.buf.get(self.pos).copied())
    }

    /// Consumes the byte the last `peek` or `skip_whitespace` returned.
    #[inline]
    pub(crate) fn consume(&mut self) {
        if self.pos < self.end {
            self.pos += 1;
        }
    }

    #[inline]
    fn next_byte(&mut self) -> Result<Option<u8>, ReadError> {
        let b = self.peek()?;
        self.consume();
        Ok(b)
    }

    fn expect_more(&self, b: Option<u8>, parsing: &str) -> Result<u8, ReadError> {
        b.ok_or_else(|| self.syntax_error(format!("EOF while parsing {parsing}")))
    }

    /// Skips a UTF-8 byte order mark at the start of the input; columns then count
    /// from the byte after it.
    pub(crate) fn skip_bom(&mut self) -> Result<(), ReadError> {
        if self.peek()? != Some(0xEF) {
            return Ok(());
        }
        self.consume();
        for expected in [0xBB, 0xBF] {
            if self.next_byte()? != Some(expected) {
                return Err(self.syntax_error("invalid byte order mark"));
            }
        }
        self.line_start = self.buf_offset.saturating_add(self.pos as u64);
        Ok(())
    }

    /// Skips JSON whitespace; returns the next byte, not consumed.
    #[inline]
    pub(crate) fn skip_whitespace(&mut self) -> Result<Option<u8>, ReadError> {
        // Compact JSON has no whitespace between tokens: answer that case first.
        if let Some(&b) = self.buf.get(self.pos).filter(|_| self.pos < self.end)
            && !matches!(b, b' ' | b'\t' | b'\r' | b'\n')
        {
            return Ok(Some(b));
        }
        self.skip_whitespace_run()
    }

    fn skip_whitespace_run(&mut self) -> Result<Option<u8>, ReadError> {
        loop {
            while let Some(&b) = self.buf.get(self.pos).filter(|_| self.pos < self.end) {
                match b {
                    b' ' | b'\t' | b'\r' => self.pos += 1,
                    b'\n' => {
                        self.pos += 1;
                        self.line = self.line.saturating_add(1);
                        self.line_start = self.buf_offset.saturating_add(self.pos as u64);
                    }
                    _ => return Ok(Some(b)),
                }
            }
            if !self.refill()? {
                return Ok(None);
            }
        }
    }

    /// The unread bytes already in the buffer (possibly none).
    pub(crate) fn buffered(&self) -> &[u8] {
        self.buf.get(self.pos..self.end).unwrap_or_default()
    }

    /// Consumes `n` buffered bytes that were checked elsewhere, keeping line and
    /// column counts right.
    pub(crate) fn skip_buffered(&mut self, n: usize) {
        let skipped = self
            .buf
            .get(self.pos..self.end)
            .and_then(|rest| rest.get(..n))
            .unwrap_or_default();
        if let Some(last) = skipped.iter().rposition(|&b| b == b'\n') {
            let lines = skipped.iter().filter(|&&b| b == b'\n').count() as u64;
            self.line = self.line.saturating_add(lines);
            self.line_start = self.buf_offset.saturating_add((self.pos + last + 1) as u64);
        }
        self.pos = self.pos.saturating_add(skipped.len());
    }

    /// Starts copying input bytes, beginning with the next unread one.
    pub(crate) fn start_capture(&mut self) {
        if self.captured.capacity() > RETAINED_CAPTURE {
            self.captured = Vec::new();
        }
        self.captured.clear();
        self.capture = Some(Capture {
            start: self.pos,
            origin: self.position(),
        });
    }

    /// Stops copying; the bytes since `start_capture` are then in [`Self::captured`].
    pub(crate) fn finish_capture(&mut self) -> Result<(), ReadError> {
        if let Some(capture) = self.capture.take() {
            let pending = self.buf.get(capture.start..self.pos).unwrap_or_default();
            if self.captured.len().saturating_add(pending.len()) > self.capture_limit {
                return Err(ReadError::invalid(
                    capture.origin,
                    format!("JSON value larger than {} bytes", self.capture_limit),
                ));
            }
            self.captured.extend_from_slice(pending);
        }
        Ok(())
    }

    pub(crate) fn discard_capture(&mut self) {
        self.capture = None;
        self.captured.clear();
    }

    pub(crate) fn captured(&self) -> &[u8] {
        &self.captured
    }

    /// Checks and skips one JSON value nested inside `enclosing` containers.
    pub(crate) fn skip_value(&mut self, enclosing: usize) -> Result<(), ReadError> {
        self.open.clear();
        'value: loop {
            let b = self.skip_whitespace()?;
            match self.expect_more(b, "a value")? {
                open @ (b'{' | b'[') => {
                    if enclosing.saturating_add(self.open.len()) >= self.max_depth {
                        return Err(ReadError::invalid(
                            self.position(),
                            format!("JSON nested deeper than {} levels", self.max_depth),
                        ));
                    }
                    self.consume();
                    let close = if open == b'{' { b'}' } else { b']' };
                    if self.skip_whitespace()? == Some(close) {
                        self.consume();
                    } else {
                        self.open.push(open);
                        if open == b'{' {
                            self.member_key()?;
                        }
                        continue 'value;
                    }
                }
                b'"' => {
                    self.scan_string(None)?;
                }
                b'-' | b'0'..=b'9' => self.scan_number()?,
                b't' => self.scan_literal(b"true")?,
                b'f' => self.scan_literal(b"false")?,
                b'n' => self.scan_literal(b"null")?,
                _ => return Err(self.syntax_error("expected value")),
            }
            // A value is complete: close finished containers, find the next element.
            loop {
                let Some(&open) = self.open.last() else {
                    return Ok(());
                };
                let what = if open == b'{' {
                    "an object"
                } else {
                    "an array"
                };
                let b = self.skip_whitespace()?;
                match (open, self.expect_more(b, what)?) {
                    (_, b',') => {
                        self.consume();
                        if open == b'{' {
                            self.member_key()?;
                        }
                        continue 'value;
                    }
                    (b'{', b'}') | (b'[', b']') => {
                        self.consume();
                        self.open.pop();
                    }
                    (b'{', _) => return Err(self.syntax_error("expected `,` or `}`")),
                    _ => return Err(self.syntax_error("expected `,` or `]`")),
                }
            }
        }
    }

    /// Skips `"key" :` inside an object.
    fn member_key(&mut self) -> Result<(), ReadError> {
        let b = self.skip_whitespace()?;
        if self.expect_more(b, "an object")? != b'"' {
            return Err(self.syntax_error("key must be a string"));
        }
        self.scan_string(None)?;
        self.expect_colon()
    }

    pub(crate) fn expect_colon(&mut self) -> Result<(), ReadError> {
        let b = self.skip_whitespace()?;
        if self.expect_more(b, "an object")? != b':' {
            return Err(self.syntax_error("expected `:`"));
        }
        self.consume();
        Ok(())
    }

    /// Checks a string starting at its opening quote; appends its raw content
    /// (escapes undecoded) to `content` if given, up to [`MAX_COLLECTED_STRING`]
    /// bytes in all. Returns whether it had escapes.
    pub(crate) fn scan_string(
        &mut self,
        mut content: Option<&mut Vec<u8>>,
    ) -> Result<bool, ReadError> {
        if self.peek()? != Some(b'"') {
            return Err(self.syntax_error("expected a string"));
        }
        self.consume();
        let mut escaped = false;
        loop {
            let rest = self.buf.get(self.pos..self.end).unwrap_or_default();
            let stop = string_stop(rest);
            let plain = stop.unwrap_or(rest.len());
            if let Some(out) = content.as_deref_mut() {
                let room = MAX_COLLECTED_STRING.saturating_sub(out.len());
                out.extend_from_slice(rest.get(..plain.min(room)).unwrap_or_default());
            }
            self.pos = self.pos.saturating_add(plain);
            if stop.is_none() {
                if !self.refill()? {
                    return Err(self.syntax_error("EOF while parsing a string"));
                }
                continue;
            }
            // The stop byte is in the buffer: `stop` found it there.
            let b = self.peek()?;
            match self.expect_more(b, "a string")? {
                b'"' => {
                    self.consume();
                    return Ok(escaped);
                }
                b'\\' => {
                    self.consume();
                    escaped = true;
                    let e = self.peek()?;
                    let e = self.expect_more(e, "a string")?;
                    if !matches!(
                        e,
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' | b'u'
                    ) {
                        return Err(self.syntax_error("invalid escape"));
                    }
                    self.consume();
                    if let Some(out) = content.as_deref_mut()
                        && out.len() < MAX_COLLECTED_STRING
                    {
                        out.extend_from_slice(&[b'\\', e]);
                    }
                    if e == b'u' {
                        for _ in 0..4 {
                            let h = self.peek()?;
                            let h = self.expect_more(h, "a string")?;
                            if !h.is_ascii_hexdigit() {
                                return Err(self.syntax_error("invalid escape"));
                            }
                            self.consume();
                            if let Some(out) = content.as_deref_mut()
                                && out.len() < MAX_COLLECTED_STRING
                            {
                                out.push(h);
                            }
                        }
                    }
                }
                _ => {
                    return Err(self.syntax_error(
                        "control character (\\u0000-\\u001F) found while parsing a string",
                    ));
                }
            }
        }
    }

    fn scan_number(&mut self) -> Result<(), ReadError> {
        if self.peek()? == Some(b'-') {
            self.consume();
        }
        match self.peek()? {
            Some(b'0') => self.consume(),
            Some(b'1'..=b'9') => self.skip_digits()?,
            _ => return Err(self.syntax_error("invalid number")),
        }
        if self.peek()? == Some(b'.') {
            self.consume();
            self.digits()?;
        }
        if let Some(b'e' | b'E') = self.peek()? {
            self.consume();
            if let Some(b'+' | b'-') = self.peek()? {
                self.consume();
            }
            self.digits()?;
        }
        Ok(())
    }

    /// One or more digits.
    fn digits(&mut self) -> Result<(), ReadError> {
        match self.peek()? {
            Some(b'0'..=b'9') => self.skip_digits(),
            _ => Err(self.syntax_error("invalid number")),
        }
    }

    fn skip_digits(&mut self) -> Result<(), ReadError> {
        loop {
            let rest = self.buf.get(self.pos..self.end).unwrap_or_default();
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            self.pos = self.pos.saturating_add(digits);
            if digits < rest.len() || !self.refill()? {
                return Ok(());
            }
        }
    }

    fn scan_literal(&mut self, word: &[u8]) -> Result<(), ReadError> {
        for &expected in word {
            if self.peek()? != Some(expected) {
                return Err(self.syntax_error("expected ident"));
            }
            self.consume();
        }
        Ok(())
    }
}

/// The length of the JSON object at the start of `bytes` if it ends within them,
/// found by counting brackets outside strings. It does not check syntax: the
/// caller parses the result, which does.
pub(crate) fn object_extent(bytes: &[u8]) -> Option<usize> {
    if bytes.first() != Some(&b'{') {
        return None;
    }
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'{' | b'[' => depth = depth.saturating_add(1),
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            b'"' => loop {
                i += 1;
                i += string_stop(bytes.get(i..)?)?;
                match bytes.get(i)? {
                    b'"' => break,
                    b'\\' => i += 1,
                    // A control character: malformed, left for the parser to report.
                    _ => {}
                }
            },
            _ => {}
        }
        i += 1;
    }
    None
}

/// Index of the first byte that ends a plain run inside a JSON string: a quote, a
/// backslash or a control character. Eight bytes at a time, since strings are most
/// of a GeoJSON document's bytes.
fn string_stop(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // Some byte of x is zero iff (x - 0x01..) & !x & 0x80.. is non-zero; some byte
    // is below n (n <= 0x80) iff (x - n..) & !x & 0x80.. is non-zero.
    let zero_in = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS != 0;
    let mut offset = 0;
    for chunk in bytes.chunks_exact(8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word);
        let control = x.wrapping_sub(ONES.wrapping_mul(0x20)) & !x & HIGHS != 0;
        if control
            || zero_in(x ^ ONES.wrapping_mul(u64::from(b'"')))
            || zero_in(x ^ ONES.wrapping_mul(u64::from(b'\\')))
        {
            break;
        }
        offset += 8;
    }
    let rest = bytes.get(offset..)?;
    rest.iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .map(|i| offset + i)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufReader, Cursor, Read};

    fn scanner(text: &[u8], max_depth: usize) -> JsonScanner {
        JsonScanner::new(Box::new(Cursor::new(text.to_vec())), max_depth, 1 << 20)
    }

    fn check(text: &str) -> Result<(), String> {
        let mut s = scanner(text.as_bytes(), 64);
        s.skip_value(0).map_err(|e| e.to_string())?;
        match s.skip_whitespace().map_err(|e| e.to_string())? {
            None => Ok(()),
            Some(_) => Err(s.syntax_error("trailing characters").to_string()),
        }
    }

    #[test]
    fn accepts_what_serde_json_accepts() {
        let good = [
            "0",
            "-0.5e+10",
            "123E-2",
            "\"a\\u00e9\\n\\\"\"",
            "true",
            "null",
            "[]",
            "{}",
            " [ 1 , { \"a\" : [ false , null ] } ] ",
            "{\"a\":{\"b\":{\"c\":[[[]]]}}}",
        ];
        for text in good {
            assert_eq!(check(text), Ok(()), "{text}");
            assert!(serde_json::from_str::<serde_json::Value>(text).is_ok());
        }
    }

    #[test]
    fn rejects_with_position() {
        let cases = [
            ("[1,]", "1:4: expected value"),
            ("{\"a\" 1}", "1:6: expected `:`"),
            ("{\"a\":1,}", "1:8: key must be a string"),
            ("{\n  \"a\": 01}", "2:9: expected `,` or `}`"),
            ("[1 2]", "1:4: expected `,` or `]`"),
            ("[-]", "1:3: invalid number"),
            ("[1.]", "1:4: invalid number"),
            ("[1e]", "1:4: invalid number"),
            ("[tru]", "1:5: expected ident"),
            ("\"a\\x\"", "1:4: invalid escape"),
            ("\"a\\u12g4\"", "1:7: invalid escape"),
            (
                "\"a\nb\"",
                "1:3: control character (\\u0000-\\u001F) found while parsing a string",
            ),
            ("[1,\n\n", "3:1: EOF while parsing a value"),
            ("[1", "1:3: EOF while parsing an array"),
            ("{\"a\":1", "1:7: EOF while parsing an object"),
            ("\"abc", "1:5: EOF while parsing a string"),
            ("[1]]", "1:4: trailing characters"),
            ("}", "1:1: expected value"),
        ];
        for (text, expected) in cases {
            assert_eq!(check(text), Err(expected.to_owned()), "{text:?}");
        }
    }

    #[test]
    fn object_extent_counts_brackets_outside_strings() {
        assert_eq!(object_extent(br#"{"a":"}]\"{","b":[{}]},{"#), Some(22));
        assert_eq!(object_extent(br#"{"a":"x\\"}x"#), Some(11));
        assert_eq!(object_extent(br#"{"a":[1,2]"#), None);
        assert_eq!(object_extent(br#"{"a":"}"#), None);
        assert_eq!(object_extent(br#"{"a\"#), None);
        assert_eq!(object_extent(b"[1]"), None);
        assert_eq!(object_extent(b""), None);
    }

    #[test]
    fn string_stop_matches_a_plain_search() {
        let text = b"abcdefgh\xc3\xa9ijklmnop\"qrstuvwx\\yz\x1f\x7f\x80\xff";
        for start in 0..text.len() {
            let hay = &text[start..];
            assert_eq!(
                string_stop(hay),
                hay.iter()
                    .position(|&b| b == b'"' || b == b'\\' || b < 0x20),
                "from {start}"
            );
        }
        assert_eq!(string_stop(b"\x80\x80\x80\x80\x80\x80\x80\x80\x80"), None);
    }

    #[test]
    fn depth_limit_is_enforced_iteratively() {
        let mut s = scanner(b"[[[1]]]", 3);
        assert!(s.skip_value(0).is_ok());
        let mut s = scanner(b"[[[[1]]]]", 3);
        assert_eq!(
            s.skip_value(0).unwrap_err().to_string(),
            "1:4: JSON nested deeper than 3 levels"
        );
        let deep = "[".repeat(1_000_000);
        let mut s = scanner(deep.as_bytes(), usize::MAX);
        assert!(s.skip_value(0).is_err());
    }

    #[test]
    fn capture_spans_buffer_refills() {
        // One byte per read forces a refill inside every token.
        struct Trickle(Cursor<Vec<u8>>);
        impl Read for Trickle {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = buf.len().min(1);
                self.0.read(&mut buf[..n])
            }
        }
        let text = b"  {\"a\": [1, \"x\\\"y\", {\"b\": null}]} ,";
        let reader = BufReader::with_capacity(1, Trickle(Cursor::new(text.to_vec())));
        let mut s = JsonScanner::new(Box::new(reader), 64, 1 << 20);
        assert_eq!(s.skip_whitespace().unwrap(), Some(b'{'));
        s.start_capture();
        s.skip_value(0).unwrap();
        s.finish_capture().unwrap();
        assert_eq!(s.captured(), &text[2..text.len() - 2]);
        assert_eq!(s.skip_whitespace().unwrap(), Some(b','));
    }

    #[test]
    fn capture_limit() {
        let text = format!("[\"{}\"]", "x".repeat(200_000));
        let mut s = JsonScanner::new(Box::new(Cursor::new(text.into_bytes())), 64, 100_000);
        s.start_capture();
        assert_eq!(
            s.skip_value(0).unwrap_err().to_string(),
            "1:1: JSON value larger than 100000 bytes"
        );
    }

    #[test]
    fn string_content_is_collected_raw() {
        let mut s = scanner(b"\"ty\\u0070e\"", 64);
        let mut out = Vec::new();
        assert!(s.scan_string(Some(&mut out)).unwrap());
        assert_eq!(out, b"ty\\u0070e");
    }

    #[test]
    fn collected_string_content_is_bounded() {
        // A key far longer than any GeoJSON word is checked in full but only its
        // start is kept, so a huge key costs no memory.
        let text = format!("\"{}\\u0041{}\" x", "k".repeat(200_000), "\\n".repeat(1000));
        let mut s = scanner(text.as_bytes(), 64);
        let mut out = Vec::new();
        assert!(s.scan_string(Some(&mut out)).unwrap());
        assert!(out.len() <= MAX_COLLECTED_STRING + 6, "{}", out.len());
        assert_eq!(s.skip_whitespace().unwrap(), Some(b'x'));
    }

    #[test]
    fn bom_is_skipped_and_columns_restart() {
        let mut s = scanner(b"\xEF\xBB\xBF x", 64);
        s.skip_bom().unwrap();
        assert_eq!(s.skip_whitespace().unwrap(), Some(b'x'));
        assert_eq!(s.position(), Position { line: 1, column: 2 });
    }
}
