//! The extension and link elements of a GPX feature: `<extensions>` of a track point (per-point
//! `coordinateProperties` values) and of the feature (namespaced properties, the line style),
//! and GPX 1.1 `<link>`s.

use quick_xml::events::Event;
use serde_json::{Map, Value};

use super::feature::{Acc, Kind, number, numeric_or_text};
use super::read::{GpxReader, Tag, local_name, tag_of, truncated};
use crate::error::ReadError;
use crate::formats::xml::push_ref;

/// The longest value collected for one namespaced extension property.
const MAX_EXT_TEXT: usize = 1024 * 1024;

impl GpxReader {
    /// The children of a track point's first `<extensions>`: Garmin `TrackPointExtension`
    /// children and any other element, as `coordinateProperties` values.
    pub(super) fn read_point_extensions(
        &mut self,
        acc: &mut Acc,
        index: usize,
    ) -> Result<(), ReadError> {
        let depth = self.xml.depth();
        loop {
            let at = self.xml.position();
            let (name, empty) = match self.xml.next(&mut self.buf)? {
                Event::Start(e) => (local_name(&e).to_owned(), false),
                Event::Empty(e) => (local_name(&e).to_owned(), true),
                Event::End(_) => {
                    if self.xml.depth() < depth {
                        return Ok(());
                    }
                    continue;
                }
                Event::Eof => return Err(truncated(at)),
                _ => continue,
            };
            if name == "TrackPointExtension" && !empty {
                // Its children are read by this same loop.
                continue;
            }
            let value = if empty {
                String::new()
            } else {
                self.xml.read_text(&mut self.buf)?
            };
            if let Some(line) = acc.lines.last_mut() {
                line.set_ext(&name, index, numeric_or_text(value));
            }
        }
    }

    /// A feature's own `<extensions>`: namespaced elements become `prefix_name` properties
    /// (their trimmed text content), the first `<line>` gives the line style, and unprefixed
    /// `name`, `time`… count for the text properties like anywhere in the feature.
    pub(super) fn read_feature_extensions(&mut self, acc: &mut Acc) -> Result<(), ReadError> {
        let depth = self.xml.depth();
        // One entry per open element: the property it feeds, if any, and its text so far.
        let mut open: Vec<Option<(String, String)>> = Vec::new();
        loop {
            let at = self.xml.position();
            match self.xml.next(&mut self.buf)? {
                Event::Start(e) => {
                    let qname = e.name().into_inner();
                    let key = ns_key(&self.prefixes, qname);
                    if key.is_none() {
                        if qname == "line" && !acc.style_seen {
                            acc.style_seen = true;
                            if acc.kind != Kind::Wpt {
                                self.read_line_style(acc)?;
                            } else {
                                self.xml.skip_element(&mut self.buf)?;
                            }
                            continue;
                        }
                        if let Tag::Text(i) = tag_of(qname)
                            && acc.wants_text(i)
                        {
                            let text = self.xml.read_text(&mut self.buf)?;
                            for (_, acc_text) in open.iter_mut().flatten() {
                                push_capped(acc_text, &text);
                            }
                            acc.set_text(i, text);
                            continue;
                        }
                    }
                    open.push(key.map(|k| (k, String::new())));
                }
                Event::Empty(e) => {
                    if let Some(key) = ns_key(&self.prefixes, e.name().into_inner()) {
                        acc.ns.insert(key, Value::String(String::new()));
                    }
                }
                Event::Text(t) => {
                    let text = t.xml10_content();
                    for (_, acc_text) in open.iter_mut().flatten() {
                        push_capped(acc_text, &text);
                    }
                }
                Event::CData(t) => {
                    let text = t.xml10_content();
                    for (_, acc_text) in open.iter_mut().flatten() {
                        push_capped(acc_text, &text);
                    }
                }
                Event::GeneralRef(r) => {
                    let mut text = String::new();
                    push_ref(&mut text, &r, at)?;
                    for (_, acc_text) in open.iter_mut().flatten() {
                        push_capped(acc_text, &text);
                    }
                }
                Event::End(_) => {
                    if self.xml.depth() < depth {
                        return Ok(());
                    }
                    if let Some(Some((key, text))) = open.pop() {
                        acc.ns.insert(key, Value::String(text.trim().to_owned()));
                    }
                }
                Event::Eof => return Err(truncated(at)),
                _ => {}
            }
        }
    }

    /// `<line>` of the gpx_style extension: `color`, `opacity`, `width` (mm, as px at 96 dpi).
    pub(super) fn read_line_style(&mut self, acc: &mut Acc) -> Result<(), ReadError> {
        let depth = self.xml.depth();
        let (mut color, mut opacity, mut width) = (None, None, None);
        loop {
            let at = self.xml.position();
            let which = match self.xml.next(&mut self.buf)? {
                Event::Start(e) => match local_name(&e) {
                    "color" => 0,
                    "opacity" => 1,
                    "width" => 2,
                    _ => 3,
                },
                Event::End(_) => {
                    if self.xml.depth() < depth {
                        break;
                    }
                    continue;
                }
                Event::Eof => return Err(truncated(at)),
                _ => continue,
            };
            let slot = match which {
                0 => &mut color,
                1 => &mut opacity,
                2 => &mut width,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(self.xml.read_text(&mut self.buf)?);
            } else {
                self.xml.skip_element(&mut self.buf)?;
            }
        }
        if let Some(color) = color.filter(|c| !c.is_empty()) {
            acc.style
                .insert("stroke".into(), Value::String(format!("#{color}")));
        }
        let num = |t: Option<String>| t.and_then(|t| t.trim().parse::<f64>().ok());
        if let Some(opacity) = num(opacity).filter(|o| *o != 0.0).and_then(number) {
            acc.style.insert("stroke-opacity".into(), opacity);
        }
        if let Some(width) = num(width)
            .filter(|w| *w != 0.0)
            .and_then(|w| number(w * 96.0 / 25.4))
        {
            acc.style.insert("stroke-width".into(), width);
        }
        Ok(())
    }

    /// A GPX 1.1 `<link href>` with optional `text` and `type` children.
    pub(super) fn read_link(
        &mut self,
        acc: &mut Acc,
        href: Option<String>,
    ) -> Result<(), ReadError> {
        let depth = self.xml.depth();
        let mut link = Map::new();
        link.insert("href".into(), href.map_or(Value::Null, Value::String));
        loop {
            let at = self.xml.position();
            let key = match self.xml.next(&mut self.buf)? {
                Event::Start(e) => match local_name(&e) {
                    "text" => Some("text"),
                    "type" => Some("type"),
                    _ => None,
                },
                Event::End(_) => {
                    if self.xml.depth() < depth {
                        break;
                    }
                    continue;
                }
                Event::Eof => return Err(truncated(at)),
                _ => continue,
            };
            match key {
                Some(key) if !link.contains_key(key) => {
                    let text = self.xml.read_text(&mut self.buf)?;
                    if !text.is_empty() {
                        link.insert(key.into(), Value::String(text));
                    }
                }
                _ => self.xml.skip_element(&mut self.buf)?,
            }
        }
        acc.links.push(Value::Object(link));
        Ok(())
    }
}

/// `prefix_local` when `qname`'s prefix was declared on the root (or is `gpxx`).
pub(super) fn ns_key(prefixes: &[String], qname: &str) -> Option<String> {
    let (prefix, local) = qname.split_once(':')?;
    prefixes
        .iter()
        .any(|p| p == prefix)
        .then(|| format!("{prefix}_{local}"))
}

fn push_capped(out: &mut String, text: &str) {
    if out.len().saturating_add(text.len()) <= MAX_EXT_TEXT {
        out.push_str(text);
    }
}
