//! The ground rules every XML format reader (KML, GPX, CoT, data package manifests) shares:
//! no document type declarations at all (so no entity expansion, no external entities), a
//! nesting limit, a size limit on every single event, 1-based line numbers for errors, and
//! text with the five predefined entities and character references resolved (any other
//! entity is an error).

use std::io::{self, BufRead, Read};

use quick_xml::events::{BytesRef, Event};

use crate::error::{Position, ReadError};

/// The deepest element nesting accepted; deeper is an error, never a stack or memory problem.
pub(crate) const MAX_XML_DEPTH: usize = 256;
/// The longest text a single element may hold: 15 MiB is a `<coordinates>` of about half a
/// million points; a gigabyte description is refused. Just under 16 MiB so that the event
/// buffer (the limit plus the 64 KiB margin) never doubles to 32 MiB: a hostile single text
/// node then costs ~50 MB, and the whole import stays under 100 MB (measured: 72 MB peak for a
/// 2 GiB text node through etl-events). The default of
/// [`ReadOptions::max_xml_text`](crate::ReadOptions).
pub(crate) const MAX_XML_TEXT: usize = 15 * 1024 * 1024;
/// What one event (text node, tag, comment, CDATA, processing instruction) may span beyond
/// the text limit: room for the markup around a text of the longest allowed length.
pub(crate) const XML_EVENT_MARGIN: usize = 64 * 1024;

/// A pull parser over `R` that enforces the rules above.
pub(crate) struct XmlReader<R: BufRead> {
    inner: quick_xml::Reader<Counted<R>>,
    depth: usize,
    max_depth: usize,
    max_text: usize,
}

impl<R: BufRead> XmlReader<R> {
    /// A parser whose element text may be `max_text` bytes long and whose single events may
    /// span `max_text` + [`XML_EVENT_MARGIN`] bytes.
    pub(crate) fn new(input: R, max_text: usize) -> Self {
        let mut inner = quick_xml::Reader::from_reader(Counted {
            inner: input,
            line: 1,
            event_bytes: 0,
            max_event: max_text.saturating_add(XML_EVENT_MARGIN),
            over: false,
        });
        let config = inner.config_mut();
        config.check_end_names = true;
        config.expand_empty_elements = false;
        XmlReader {
            inner,
            depth: 0,
            max_depth: MAX_XML_DEPTH,
            max_text,
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
        let counted = self.inner.get_mut();
        counted.event_bytes = 0;
        let line = counted.line;
        let event = match self.inner.read_event_into(buf) {
            Ok(event) => event,
            Err(e) => {
                let counted = self.inner.get_ref();
                if counted.over {
                    return Err(ReadError::invalid(
                        Position { line, column: 1 },
                        format!(
                            "XML: a single text, tag, comment or CDATA section runs past {} bytes \
                             (the {}-byte text limit plus {XML_EVENT_MARGIN} bytes); reading stopped there",
                            counted.max_event, self.max_text
                        ),
                    ));
                }
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
                Event::Text(t) => push_limited(&mut out, &t.xml10_content(), self.max_text, at)?,
                Event::CData(c) => push_limited(&mut out, &c.xml10_content(), self.max_text, at)?,
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

fn push_limited(out: &mut String, text: &str, max: usize, at: Position) -> Result<(), ReadError> {
    if out.len().saturating_add(text.len()) > max {
        return Err(ReadError::invalid(
            at,
            format!("XML element text longer than {max} bytes"),
        ));
    }
    out.push_str(text);
    Ok(())
}

/// What the parser reads through: counts line breaks, and the bytes of the current event.
/// Once an event has taken `max_event` bytes it is refused more (an error, `over` set), and
/// it is never offered more than that in one piece, so the parser cannot buffer more.
struct Counted<R> {
    inner: R,
    line: u64,
    /// Bytes consumed since the current event began; reset by [`XmlReader::next`].
    event_bytes: usize,
    max_event: usize,
    over: bool,
}

impl<R> Counted<R> {
    /// Bytes the current event may still take; an error (and `over`) when none.
    fn allowance(&mut self) -> io::Result<usize> {
        let allowed = self.max_event.saturating_sub(self.event_bytes);
        if allowed == 0 {
            self.over = true;
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("XML event longer than {} bytes", self.max_event),
            ));
        }
        Ok(allowed)
    }

    fn count(&mut self, consumed: &[u8]) {
        let lines = consumed.iter().filter(|&&b| b == b'\n').count();
        self.line = self.line.saturating_add(lines as u64);
        self.event_bytes = self.event_bytes.saturating_add(consumed.len());
    }
}

impl<R: BufRead> Read for Counted<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let allowed = self.allowance()?;
        let len = out.len().min(allowed);
        let out = out.get_mut(..len).unwrap_or_default();
        let n = self.inner.read(out)?;
        self.count(out.get(..n).unwrap_or_default());
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Counted<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        let allowed = self.allowance()?;
        let buf = self.inner.fill_buf()?;
        Ok(buf.get(..allowed).unwrap_or(buf))
    }

    fn consume(&mut self, amt: usize) {
        let (lines, taken) = match self.inner.fill_buf() {
            Ok(buf) => {
                let taken = buf.get(..amt).unwrap_or(buf);
                (taken.iter().filter(|&&b| b == b'\n').count(), taken.len())
            }
            Err(_) => (0, amt),
        };
        self.line = self.line.saturating_add(lines as u64);
        self.event_bytes = self.event_bytes.saturating_add(taken);
        self.inner.consume(amt);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// Reads every event of `doc` with a text limit of `max_text`; the first error.
    fn first_error(doc: &[u8], max_text: usize) -> Option<ReadError> {
        let mut xml = XmlReader::new(Cursor::new(doc.to_vec()), max_text);
        let mut buf = Vec::new();
        loop {
            match xml.next(&mut buf) {
                Err(e) => return Some(e),
                Ok(Event::Eof) => return None,
                Ok(_) => {}
            }
        }
    }

    #[test]
    fn every_kind_of_event_is_bounded() {
        let max = 1000;
        let big = "x".repeat(max + XML_EVENT_MARGIN + 1);
        for (what, doc) in [
            ("text", format!("<a>\n<b>{big}</b></a>")),
            ("attribute list", format!("<a>\n<b c=\"{big}\"/></a>")),
            ("comment", format!("<a>\n<!--{big}--></a>")),
            ("CDATA", format!("<a>\n<![CDATA[{big}]]></a>")),
            ("tag name", format!("<a>\n<{big}/></a>")),
            ("processing instruction", format!("<a>\n<?pi {big}?></a>")),
            ("end tag", format!("<a>\n</{big}>")),
        ] {
            let err =
                first_error(doc.as_bytes(), max).unwrap_or_else(|| panic!("{what}: no error"));
            let text = err.to_string();
            assert!(matches!(err, ReadError::Invalid { .. }), "{what}: {err:?}");
            assert!(
                text.starts_with("2:1: XML: a single text"),
                "{what}: {text}"
            );
        }
    }

    #[test]
    fn text_up_to_the_limit_is_read() {
        let max = 1000;
        let doc = format!("<a>{}</a>", "y".repeat(max));
        let mut xml = XmlReader::new(Cursor::new(doc.into_bytes()), max);
        let mut buf = Vec::new();
        assert!(matches!(xml.next(&mut buf), Ok(Event::Start(_))));
        let text = xml.read_text(&mut buf).map_err(|e| e.to_string());
        assert_eq!(text.map(|t| t.len()), Ok(max));
        let doc = format!("<a>{}</a>", "y".repeat(max + 1));
        let mut xml = XmlReader::new(Cursor::new(doc.into_bytes()), max);
        assert!(matches!(xml.next(&mut buf), Ok(Event::Start(_))));
        let err = xml.read_text(&mut buf).err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("1:1: XML element text longer than 1000 bytes")
        );
    }

    #[test]
    fn the_limit_counts_per_event_not_per_document() {
        // Many events each below the limit: a long document is fine.
        let item = format!("<b>{}</b>\n", "z".repeat(900));
        let doc = format!("<a>{}</a>", item.repeat(200));
        assert!(first_error(doc.as_bytes(), 1000).is_none());
    }
}
