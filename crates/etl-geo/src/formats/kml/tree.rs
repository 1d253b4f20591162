//! A small element tree for one KML object (a Placemark, a Style, ...): read from the
//! stream when its start tag is seen, dropped when the record is built, so memory is
//! bounded by the largest single object. Nodes are stored in document order (pre-order),
//! so the descendants of node `i` are exactly `i + 1 .. end(i)`.

use std::borrow::Cow;
use std::io::BufRead;

use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, Event};

use crate::error::{Position, ReadError};
use crate::formats::MAX_RECORD_BYTES;
use crate::formats::xml::{XmlReader, one_line, push_ref};

#[derive(Debug, Default)]
pub(super) struct Node {
    /// Qualified element name; empty for a text node.
    pub name: String,
    /// The KML local name when the element is in KML's namespace (unprefixed or a KML
    /// prefix), else empty: `is` compares this, once per lookup, without re-splitting.
    local: String,
    pub attrs: Vec<(String, String)>,
    /// Text of a text node (character data, CDATA and resolved references).
    pub text: String,
    pub parent: usize,
    /// One past the last descendant.
    pub end: usize,
}

impl Node {
    fn is_text(&self) -> bool {
        self.name.is_empty()
    }
}

#[derive(Debug)]
pub(super) struct Tree {
    /// Nodes of the current tree are `nodes[..len]`; the rest are kept for reuse, so that
    /// reading many similar Placemarks does not allocate per node.
    nodes: Vec<Node>,
    len: usize,
    bytes: usize,
    /// Namespace prefixes read as KML: `kml:` and `gx:`, and any prefix bound to a KML or
    /// Google KML extension namespace (e.g. Python ElementTree's `ns0:`).
    prefixes: Vec<String>,
}

impl Default for Tree {
    fn default() -> Self {
        Tree {
            nodes: Vec::new(),
            len: 0,
            bytes: 0,
            prefixes: vec!["kml".to_owned(), "gx".to_owned()],
        }
    }
}

/// Whether `uri` is a KML namespace (OGC 2.2, Google's 2.0/2.1, or the gx extensions).
fn is_kml_namespace(uri: &str) -> bool {
    uri.contains("opengis.net/kml/") || uri.contains("google.com/kml/")
}

const MAX_PREFIXES: usize = 64;

/// The local part of a qualified name.
pub(super) fn local_name(qname: &str) -> &str {
    qname.rsplit_once(':').map_or(qname, |(_, l)| l)
}

pub(super) fn attributes(
    start: &BytesStart<'_>,
    at: Position,
) -> Result<Vec<(String, String)>, ReadError> {
    let mut out = Vec::new();
    for attr in start.attributes() {
        let attr = attr.map_err(|e| ReadError::syntax(at, one_line(&format!("XML: {e}"))))?;
        let value = attr
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|e| ReadError::invalid(at, one_line(&format!("XML attribute: {e}"))))?;
        out.push((attr.key.into_inner().to_owned(), value.into_owned()));
    }
    Ok(out)
}

impl Tree {
    /// Learns the KML namespace prefixes declared by `attrs` (`xmlns:p="…/kml/2.2"`).
    pub(super) fn learn_prefixes(&mut self, attrs: &[(String, String)]) {
        for (k, v) in attrs {
            if let Some(prefix) = k.strip_prefix("xmlns:")
                && is_kml_namespace(v)
                && self.prefixes.len() < MAX_PREFIXES
                && !self.prefixes.iter().any(|p| p == prefix)
            {
                self.prefixes.push(prefix.to_owned());
            }
        }
    }

    /// Whether the qualified name `qname` is the KML element `local`: unprefixed, or with
    /// a KML prefix (other namespaces, such as `atom:name`, never match).
    pub(super) fn name_is(&self, qname: &str, local: &str) -> bool {
        if qname == local {
            return true;
        }
        match qname.split_once(':') {
            Some((prefix, rest)) => rest == local && self.prefixes.iter().any(|p| p == prefix),
            None => false,
        }
    }

    fn slot(&mut self) -> &mut Node {
        if self.len == self.nodes.len() {
            self.nodes.push(Node::default());
        }
        let i = self.len;
        self.len += 1;
        // In range: pushed above when needed.
        &mut self.nodes[i]
    }

    /// Starts a new tree whose root is the element `start` (already returned by `xml`); when
    /// `empty` is false, reads the rest of the element from `xml`.
    pub(super) fn read<R: BufRead>(
        &mut self,
        name: &str,
        attrs: Vec<(String, String)>,
        empty: bool,
        xml: &mut XmlReader<R>,
        buf: &mut Vec<u8>,
    ) -> Result<(), ReadError> {
        self.len = 0;
        self.bytes = 0;
        let kml_local = self.kml_local(name).map(str::to_owned);
        let root = self.slot();
        root.name.clear();
        root.name.push_str(name);
        root.local.clear();
        if let Some(l) = &kml_local {
            root.local.push_str(l);
        }
        root.attrs = attrs;
        root.text.clear();
        root.parent = 0;
        root.end = 1;
        if empty {
            return Ok(());
        }
        let start_depth = xml.depth();
        let mut current = 0usize;
        loop {
            let at = xml.position();
            match xml.next(buf)? {
                Event::Start(s) => {
                    let attrs = attributes(&s, at)?;
                    current = self.push_element(current, s.name().into_inner(), attrs, at)?;
                }
                Event::Empty(s) => {
                    let attrs = attributes(&s, at)?;
                    let i = self.push_element(current, s.name().into_inner(), attrs, at)?;
                    self.close(i);
                }
                Event::End(_) => {
                    self.close(current);
                    if xml.depth() < start_depth {
                        return Ok(());
                    }
                    current = self.node(current).map_or(0, |n| n.parent);
                }
                Event::Text(t) => self.push_text(current, &t.xml10_content(), at)?,
                Event::CData(c) => self.push_text(current, &c.xml10_content(), at)?,
                Event::GeneralRef(r) => {
                    let mut s = String::new();
                    push_ref(&mut s, &r, at)?;
                    self.push_text(current, &s, at)?;
                }
                Event::Eof => {
                    return Err(ReadError::syntax(
                        at,
                        format!(
                            "unexpected end of XML inside <{}>: the document is truncated",
                            crate::formats::excerpt(
                                self.node(current).map_or("", |n| n.name.as_str())
                            )
                        ),
                    ));
                }
                _ => {}
            }
        }
    }

    fn charge(&mut self, n: usize, at: Position) -> Result<(), ReadError> {
        self.bytes = self.bytes.saturating_add(n);
        if self.bytes > MAX_RECORD_BYTES {
            return Err(ReadError::invalid(
                at,
                format!("KML object larger than {MAX_RECORD_BYTES} bytes"),
            ));
        }
        Ok(())
    }

    fn node(&self, i: usize) -> Option<&Node> {
        self.nodes.get(..self.len)?.get(i)
    }

    fn push_element(
        &mut self,
        parent: usize,
        name: &str,
        attrs: Vec<(String, String)>,
        at: Position,
    ) -> Result<usize, ReadError> {
        self.charge(
            std::mem::size_of::<Node>()
                + name.len()
                + attrs
                    .iter()
                    .map(|(k, v)| k.len() + v.len() + 48)
                    .sum::<usize>(),
            at,
        )?;
        let i = self.len;
        let in_kml = self.kml_local(name).is_some();
        let node = self.slot();
        node.name.clear();
        node.name.push_str(name);
        node.local.clear();
        if in_kml {
            node.local.push_str(local_name(name));
        }
        node.attrs = attrs;
        node.text.clear();
        node.parent = parent;
        node.end = i + 1;
        Ok(i)
    }

    fn push_text(&mut self, parent: usize, text: &str, at: Position) -> Result<(), ReadError> {
        if text.is_empty() {
            return Ok(());
        }
        self.charge(text.len(), at)?;
        if let Some(last) = self.len.checked_sub(1).and_then(|l| self.nodes.get_mut(l))
            && last.is_text()
            && last.parent == parent
        {
            last.text.push_str(text);
            return Ok(());
        }
        self.charge(std::mem::size_of::<Node>(), at)?;
        let i = self.len;
        let node = self.slot();
        node.name.clear();
        node.local.clear();
        node.attrs.clear();
        node.text.clear();
        node.text.push_str(text);
        node.parent = parent;
        node.end = i + 1;
        Ok(())
    }

    fn close(&mut self, i: usize) {
        let end = self.len;
        if i < end
            && let Some(n) = self.nodes.get_mut(i)
        {
            n.end = end;
        }
    }

    pub(super) fn name(&self, i: usize) -> &str {
        self.node(i).map_or("", |n| n.name.as_str())
    }

    pub(super) fn is(&self, i: usize, local: &str) -> bool {
        !local.is_empty() && self.node(i).is_some_and(|n| n.local == local)
    }

    /// The local name of `qname` if it is a KML element (unprefixed or a KML prefix).
    fn kml_local<'a>(&self, qname: &'a str) -> Option<&'a str> {
        match qname.split_once(':') {
            None => Some(qname),
            Some((prefix, rest)) => self.prefixes.iter().any(|p| p == prefix).then_some(rest),
        }
    }

    pub(super) fn attr(&self, i: usize, key: &str) -> Option<&str> {
        self.node(i)?
            .attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn range(&self, i: usize) -> std::ops::Range<usize> {
        let end = self
            .node(i)
            .map_or(i + 1, |n| n.end.clamp(i + 1, self.len.max(i + 1)));
        i + 1..end
    }

    /// Direct child elements of `i`, in order.
    pub(super) fn children(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        self.range(i)
            .filter(move |&j| self.node(j).is_some_and(|n| n.parent == i && !n.is_text()))
    }

    /// The first descendant element of `i` named `local` (like DOM `getElementsByTagName`).
    pub(super) fn find(&self, i: usize, local: &str) -> Option<usize> {
        self.range(i).find(|&j| self.is(j, local))
    }

    /// Every descendant element of `i` named `local`, in document order.
    pub(super) fn find_all<'a>(
        &'a self,
        i: usize,
        local: &'a str,
    ) -> impl Iterator<Item = usize> + 'a {
        self.range(i).filter(move |&j| self.is(j, local))
    }

    /// The first direct child element of `i` named `local`.
    pub(super) fn child(&self, i: usize, local: &str) -> Option<usize> {
        self.children(i).find(|&j| self.is(j, local))
    }

    /// The concatenated text of `i` and its descendants (DOM `textContent`), borrowed
    /// when it is a single text node.
    pub(super) fn text(&self, i: usize) -> Cow<'_, str> {
        let mut texts = self
            .range(i)
            .filter_map(|j| self.node(j).filter(|n| n.is_text()));
        let Some(first) = texts.next() else {
            return Cow::Borrowed("");
        };
        match texts.next() {
            None => Cow::Borrowed(first.text.as_str()),
            Some(second) => {
                let mut s = first.text.clone();
                s.push_str(&second.text);
                for t in texts {
                    s.push_str(&t.text);
                }
                Cow::Owned(s)
            }
        }
    }

    /// The text of the first descendant named `local`, empty when there is none.
    pub(super) fn text_of(&self, i: usize, local: &str) -> Cow<'_, str> {
        match self.find(i, local) {
            Some(j) => self.text(j),
            None => Cow::Borrowed(""),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let mut t = Tree::default();
        assert!(t.name_is("Track", "Track"));
        assert!(t.name_is("gx:Track", "Track"));
        assert!(!t.name_is("atom:name", "name"));
        assert!(!t.name_is("ns0:name", "name"));
        t.learn_prefixes(&[("xmlns:ns0".into(), "http://www.opengis.net/kml/2.2".into())]);
        assert!(t.name_is("ns0:name", "name"));
        assert_eq!(local_name("gx:coord"), "coord");
    }
}
