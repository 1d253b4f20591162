//! The ground rules every XML format reader (KML, GPX, CoT, data package manifests) shares:
//! no document type declarations at all (so no entity expansion, no external entities), a
//! nesting limit, 1-based line numbers for errors, and text with the five predefined entities
//! and character references resolved (any other entity is an error).

use std::io::{self, BufRead, Read};

use quick_xml::events::{BytesRef, Event};

use crate::error::{Position, ReadError};

/// The deepest element nesting accepted; deeper is an error, never a stack or memory problem.
pub(crate) const MAX_XML_DEPTH: usize = 256;
/// The longest text a single element may hold (a huge `<coordinates>` is fine; a gigabyte
/// description is not).
pub(crate) const MAX_XML_TEXT: usize = 256 * 1024 * 1024;

/// A pull parser over `R` that enforces the rules above.
pub(crate) struct XmlReader<R: BufRead> {
    inner: quick_xml::Reader<LineCounter<R>>,
    depth: usize,
    max_depth: usize,
}

impl<R: BufRead> XmlReader<R> {
    pub(crate) fn new(input: R) -> Self {
        let mut inner = quick_xml::Reader::from_reader(LineCounter {
            inner: input,
            line: 1,
        });
        let config = inner.config_mut();
        config.check_end_names = true;
        config.expand_empty_elements = false;
        XmlReader {
            inner,
            depth: 0,
            max_depth: MAX_XML_DEPTH,
        }
    }

    /// The line the parser has reached (where the last event ended).
    pub(crate) fn position(&self) -> Position {
        Position {
            line: self.inner.get_ref().line,
            column: 1,
        }
    }

    /// Current element depth: 1 inside the root element.
    pub(crate) fn depth(&self) -> usize {
        self.depth
    }

    /// The next event. `DocType` is refused; `Eof` is returned (the caller decides whether
    /// an end here is premature); comments, processing instructions and the XML declaration
    /// are returned too, for the caller to ignore.
    pub(crate) fn next<'b>(&mut self, buf: &'b mut Vec<u8>) -> Result<Event<'b>, ReadError> {
        buf.clear();
        let line = self.inner.get_ref().line;
        let event = match self.inner.read_event_into(buf) {
            Ok(event) => event,
            Err(e) => {
                return Err(ReadError::syntax(
                    Position { line, column: 1 },
                    one_line(&format!("XML: {e}")),
                ));
            }
        };
        match &event {
            Event::DocType(_) => {
                return Err(ReadError::invalid(
                    Position { line, column: 1 },
                    "XML document type declarations (DTD) are not accepted \
                     (entity expansion and external entities are refused)",
                ));
            }
            Event::Start(_) => {
                self.depth = self.depth.saturating_add(1);
                if self.depth > self.max_depth {
                    return Err(ReadError::invalid(
                        Position { line, column: 1 },
                        format!("XML nested deeper than {} elements", self.max_depth),
                    ));
                }
            }
            Event::End(_) => self.depth = self.depth.saturating_sub(1),
            _ => {}
        }
        Ok(event)
    }

    /// Reads the text content of the element whose `Start` was just returned, up to its
    /// `End`, concatenating text and CDATA of nested elements too, and resolving entity
    /// references. Leading and trailing whitespace is kept; callers trim where the format
    /// says so.
    pub(crate) fn read_text(&mut self, buf: &mut Vec<u8>) -> Result<String, ReadError> {
        let mut out = String::new();
        let start_depth = self.depth;
        loop {
            let at = self.position();
            match self.next(buf)? {
                Event::Text(t) => push_limited(&mut out, &t.xml10_content(), at)?,
                Event::CData(c) => push_limited(&mut out, &c.xml10_content(), at)?,
                Event::GeneralRef(r) => push_ref(&mut out, &r, at)?,
                Event::End(_) if self.depth < start_depth => return Ok(out),
                Event::Eof => {
                    return Err(ReadError::syntax(
                        at,
                        "unexpected end of XML inside an element",
                    ));
                }
                _ => {}
            }
        }
    }

    /// Skips the rest of the element whose `Start` was just returned.
    pub(crate) fn skip_element(&mut self, buf: &mut Vec<u8>) -> Result<(), ReadError> {
        let start_depth = self.depth;
        loop {
            let at = self.position();
            match self.next(buf)? {
                Event::End(_) if self.depth < start_depth => return Ok(()),
                Event::Eof => {
                    return Err(ReadError::syntax(
                        at,
                        "unexpected end of XML inside an element",
                    ));
                }
                _ => {}
            }
        }
    }
}

/// Appends the character an entity reference stands for: the five predefined entities and
/// numeric character references. Anything else cannot be defined without a DTD.
pub(crate) fn push_ref(out: &mut String, r: &BytesRef<'_>, at: Position) -> Result<(), ReadError> {
    if let Ok(Some(c)) = r.resolve_char_ref() {
        out.push(c);
        return Ok(());
    }
    let name: &str = r;
    out.push_str(match name {
        "amp" => "&",
        "lt" => "<",
        "gt" => ">",
        "quot" => "\"",
        "apos" => "'",
        other => {
            return Err(ReadError::invalid(
                at,
                format!("XML: undefined entity &{};", crate::formats::excerpt(other)),
            ));
        }
    });
    Ok(())
}

/// `text` with line breaks folded to spaces, for one-line error messages (parser errors
/// may quote input that spans lines).
pub(crate) fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

fn push_limited(out: &mut String, text: &str, at: Position) -> Result<(), ReadError> {
    if out.len().saturating_add(text.len()) > MAX_XML_TEXT {
        return Err(ReadError::invalid(
            at,
            format!("XML element text longer than {MAX_XML_TEXT} bytes"),
        ));
    }
    out.push_str(text);
    Ok(())
}

/// Counts line breaks in what the parser consumes.
struct LineCounter<R> {
    inner: R,
    line: u64,
}

impl<R: BufRead> Read for LineCounter<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(out)?;
        let lines = out
            .get(..n)
            .unwrap_or_default()
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        self.line = self.line.saturating_add(lines as u64);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for LineCounter<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amt: usize) {
        if let Ok(buf) = self.inner.fill_buf() {
            let lines = buf
                .get(..amt)
                .unwrap_or(buf)
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            self.line = self.line.saturating_add(lines as u64);
        }
        self.inner.consume(amt);
    }
}
