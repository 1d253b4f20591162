//! The streaming KML reader: walks the document, keeps the Folder path, the styles and
//! the SimpleField types seen so far, and turns each Placemark / GroundOverlay into a
//! record.

use std::collections::HashMap;
use std::io::BufRead;

use quick_xml::events::Event;
use serde_json::{Map, Value};

use super::geometry::{self, Collected, num_value};
use super::style::{self, Props, Styles, normalize_id};
use super::tree::{Tree, attributes, local_name};
use crate::error::{Position, ReadError};
use crate::feature::{Feature, FeatureId};
use crate::formats::xml::{XmlReader, push_ref};
use crate::formats::{Record, Rejection, accept, excerpt};
use crate::repair::Repairs;

/// How a `SimpleData` value is typed, from its `SimpleField type` (togeojson's
/// `typeConverters`).
#[derive(Clone, Copy)]
enum FieldType {
    String,
    Number,
    Bool,
}

const MAX_SCHEMA_FIELDS: usize = 100_000;

enum Frame {
    /// A Folder and its `name`, once read.
    Folder(Option<String>),
    Other,
}

pub(super) struct KmlReader<R: BufRead> {
    xml: XmlReader<R>,
    buf: Vec<u8>,
    stack: Vec<Frame>,
    root_seen: bool,
    done: bool,
    ordinal: u64,
    styles: Styles,
    schema: HashMap<String, FieldType>,
    tree: Tree,
    scratch: String,
}

impl<R: BufRead> KmlReader<R> {
    pub(super) fn new(input: R, max_xml_text: usize) -> Self {
        KmlReader {
            xml: XmlReader::new(input, max_xml_text),
            buf: Vec::with_capacity(8 * 1024),
            stack: Vec::new(),
            root_seen: false,
            done: false,
            ordinal: 0,
            styles: Styles::default(),
            schema: HashMap::new(),
            tree: Tree::default(),
            scratch: String::new(),
        }
    }

    fn path(&self) -> Option<String> {
        let mut out = String::new();
        for frame in &self.stack {
            if let Frame::Folder(Some(name)) = frame
                && !name.is_empty()
            {
                if !out.is_empty() {
                    out.push_str(" / ");
                }
                out.push_str(name);
            }
        }
        (!out.is_empty()).then_some(out)
    }

    fn next_record(&mut self) -> Result<Option<Record>, ReadError> {
        loop {
            let at = self.xml.position();
            let (name, attrs, empty) = match self.xml.next(&mut self.buf)? {
                Event::Start(s) => (s.name().into_inner().to_owned(), attributes(&s, at)?, false),
                Event::Empty(s) => (s.name().into_inner().to_owned(), attributes(&s, at)?, true),
                Event::End(_) => {
                    self.stack.pop();
                    if self.stack.is_empty() {
                        return Ok(None);
                    }
                    continue;
                }
                Event::Text(t) => {
                    if self.stack.is_empty() && !t.xml10_content().trim().is_empty() {
                        return Err(ReadError::invalid(
                            at,
                            "not a KML document: text outside the root element",
                        ));
                    }
                    continue;
                }
                Event::CData(_) if self.stack.is_empty() => {
                    return Err(ReadError::invalid(
                        at,
                        "not a KML document: CDATA outside the root element",
                    ));
                }
                Event::GeneralRef(r) => {
                    self.scratch.clear();
                    push_ref(&mut self.scratch, &r, at)?;
                    continue;
                }
                Event::Eof => {
                    if !self.root_seen {
                        return Err(ReadError::invalid(
                            at,
                            "not a KML document: no root element",
                        ));
                    }
                    if !self.stack.is_empty() {
                        return Err(ReadError::syntax(
                            at,
                            format!(
                                "unexpected end of XML: the document is truncated ({} elements still open)",
                                self.stack.len()
                            ),
                        ));
                    }
                    return Ok(None);
                }
                _ => continue,
            };
            if !self.root_seen {
                if local_name(&name) != "kml" {
                    return Err(ReadError::invalid(
                        at,
                        format!("not a KML document: root element <{}>", excerpt(&name)),
                    ));
                }
                self.root_seen = true;
                self.tree.learn_prefixes(&attrs);
                if empty {
                    return Ok(None);
                }
                self.stack.push(Frame::Other);
                continue;
            }
            self.tree.learn_prefixes(&attrs);
            let local = local_name(&name).to_owned();
            if !self.tree.name_is(&name, &local) {
                // Another namespace (atom:, xal:, ...): not KML content.
                if !empty {
                    self.xml.skip_element(&mut self.buf)?;
                }
                continue;
            }
            match local.as_str() {
                "Placemark" | "GroundOverlay" => {
                    let overlay = local == "GroundOverlay";
                    self.tree
                        .read(&name, attrs, empty, &mut self.xml, &mut self.buf)?;
                    let record = self.record(at, overlay);
                    return Ok(Some(record));
                }
                "Style" | "StyleMap" | "CascadingStyle" | "Schema" => {
                    self.tree
                        .read(&name, attrs, empty, &mut self.xml, &mut self.buf)?;
                    match local.as_str() {
                        "Style" => self.styles.add_style(&self.tree, 0, None),
                        "StyleMap" => self.styles.add_style_map(&self.tree, 0),
                        "CascadingStyle" => self.styles.add_cascading(&self.tree, 0),
                        _ => self.add_schema(),
                    }
                }
                "NetworkLink" | "ScreenOverlay" | "PhotoOverlay" | "Region" | "LookAt"
                | "Camera"
                    if !empty =>
                {
                    self.xml.skip_element(&mut self.buf)?;
                }
                "NetworkLink" | "ScreenOverlay" | "PhotoOverlay" | "Region" | "LookAt"
                | "Camera" => {}
                "name" if !empty && matches!(self.stack.last(), Some(Frame::Folder(None))) => {
                    let text = self.xml.read_text(&mut self.buf)?;
                    if let Some(frame) = self.stack.last_mut() {
                        *frame = Frame::Folder(Some(folder_name(&text)));
                    }
                }
                "Folder" if !empty => self.stack.push(Frame::Folder(None)),
                _ if !empty => self.stack.push(Frame::Other),
                _ => {}
            }
        }
    }

    fn add_schema(&mut self) {
        let tree = &self.tree;
        for field in tree.find_all(0, "SimpleField") {
            if self.schema.len() >= MAX_SCHEMA_FIELDS {
                break;
            }
            let name = tree.attr(field, "name").unwrap_or("").to_owned();
            let ty = match tree.attr(field, "type").unwrap_or("") {
                "int" | "uint" | "short" | "ushort" | "float" | "double" => FieldType::Number,
                "bool" => FieldType::Bool,
                _ => FieldType::String,
            };
            self.schema.insert(name, ty);
        }
    }

    fn record(&mut self, at: Position, overlay: bool) -> Record {
        let ordinal = self.ordinal;
        self.ordinal += 1;
        let path = self.path();
        // Styles with ids inside the object are shared too (as togeojson's document-wide
        // style map does).
        let inline: Vec<usize> = self.tree.find_all(0, "Style").collect();
        for s in inline {
            if self.tree.attr(s, "id").is_some() {
                self.styles.add_style(&self.tree, s, None);
            }
        }
        let mut repairs = Repairs::NONE;
        let feature = self
            .feature(path, overlay, &mut repairs)
            .map_err(Rejection::new)
            .and_then(|f| accept(f, &mut repairs))
            .map_err(|r| Rejection::new(format!("{}: {}", self.label(at, overlay), r.reason)));
        Record {
            line: at.line.max(1),
            ordinal,
            layer: 0,
            feature,
            repairs,
        }
    }

    /// How a rejection names the object: its name, else its id, else its line.
    fn label(&self, at: Position, overlay: bool) -> String {
        let what = if overlay {
            "GroundOverlay"
        } else {
            "placemark"
        };
        let tree = &self.tree;
        let name = tree
            .child(0, "name")
            .map(|n| tree.text(n).trim().to_owned());
        match (name.filter(|n| !n.is_empty()), tree.attr(0, "id")) {
            (Some(n), _) => format!("{what} '{}'", excerpt(&n)),
            (None, Some(id)) if !id.is_empty() => format!("{what} id '{}'", excerpt(id)),
            _ => format!("{what} at line {}", at.line),
        }
    }

    fn feature(
        &self,
        path: Option<String>,
        overlay: bool,
        repairs: &mut Repairs,
    ) -> Result<Feature, String> {
        let tree = &self.tree;
        let mut props = Map::new();
        let mut coord_times = None;
        let geometry = if overlay {
            props.insert(
                "@geometry-type".to_owned(),
                Value::String("groundoverlay".to_owned()),
            );
            geometry::ground_overlay(tree, 0)?.map(geo_types::Geometry::Polygon)
        } else {
            let mut collected = Collected::default();
            geometry::collect(tree, 0, &mut collected)?;
            *repairs = collected.repairs;
            if !collected.times.is_empty() {
                let mut times: Vec<Value> = collected
                    .times
                    .into_iter()
                    .map(|t| Value::Array(t.into_iter().map(Value::String).collect()))
                    .collect();
                coord_times = Some(if times.len() == 1 && !collected.multitrack {
                    times.pop().unwrap_or(Value::Null)
                } else {
                    Value::Array(times)
                });
            }
            geometry::assemble(collected.parts, collected.multi)
        };
        for key in [
            "name",
            "address",
            "visibility",
            "open",
            "phoneNumber",
            "description",
        ] {
            let v = tree.text_of(0, key);
            if !v.is_empty() {
                props.insert(key.to_owned(), Value::String(v.into_owned()));
            }
        }
        let style_url = tree.text_of(0, "styleUrl");
        if !style_url.is_empty() {
            let id = normalize_id(&style_url);
            props.insert("styleUrl".to_owned(), Value::String(id.clone()));
            if let Some(shared) = self.styles.get(&id) {
                merge(&mut props, shared.clone());
            }
        }
        merge(&mut props, style::extract_style(tree, 0));
        if overlay {
            let mut icon = Props::new();
            style::icon_href(tree, 0, &mut icon);
            merge(&mut props, icon);
        }
        if let Some(ext) = tree.find(0, "ExtendedData") {
            for data in tree.find_all(ext, "Data") {
                let name = tree.attr(data, "name").unwrap_or("").to_owned();
                props.insert(
                    name,
                    Value::String(tree.text_of(data, "value").into_owned()),
                );
            }
            for data in tree.find_all(ext, "SimpleData") {
                let name = tree.attr(data, "name").unwrap_or("").to_owned();
                let text = tree.text(data);
                let value = match self.schema.get(&name).copied().unwrap_or(FieldType::String) {
                    FieldType::String => Value::String(text.into_owned()),
                    FieldType::Number => {
                        let t = text.trim();
                        if t.is_empty() {
                            Value::from(0)
                        } else {
                            t.parse::<f64>().map_or(Value::Null, num_value)
                        }
                    }
                    FieldType::Bool => match text.trim() {
                        "1" | "true" => Value::Bool(true),
                        "0" | "false" | "" => Value::Bool(false),
                        _ => Value::String(text.into_owned()),
                    },
                };
                props.insert(name, value);
            }
        }
        if let Some(span) = tree.find(0, "TimeSpan") {
            let mut m = Map::new();
            m.insert(
                "begin".to_owned(),
                Value::String(tree.text_of(span, "begin").into_owned()),
            );
            m.insert(
                "end".to_owned(),
                Value::String(tree.text_of(span, "end").into_owned()),
            );
            props.insert("timespan".to_owned(), Value::Object(m));
        }
        if let Some(stamp) = tree.find(0, "TimeStamp") {
            props.insert(
                "timestamp".to_owned(),
                Value::String(tree.text_of(stamp, "when").into_owned()),
            );
        }
        if let Some(times) = coord_times {
            let mut m = Map::new();
            m.insert("times".to_owned(), times);
            props.insert("coordinateProperties".to_owned(), Value::Object(m));
        }
        if let Some(v) = props.get_mut("visibility") {
            *v = Value::Bool(v.as_str() != Some("0"));
        }
        if let Some(path) = path
            && !props.contains_key("path")
        {
            props.insert("path".to_owned(), Value::String(path));
        }
        let id = tree
            .attr(0, "id")
            .filter(|id| !id.is_empty())
            .map(|id| FeatureId::Str(id.to_owned()));
        Ok(Feature {
            id,
            geometry,
            properties: props,
        })
    }
}

/// The longest Folder name kept for `path` (bounds memory with deep nesting).
const MAX_FOLDER_NAME: usize = 1024;

fn folder_name(text: &str) -> String {
    let t = text.trim();
    match t.char_indices().nth(MAX_FOLDER_NAME) {
        Some((end, _)) => t.get(..end).unwrap_or(t).to_owned(),
        None => t.to_owned(),
    }
}

fn merge(into: &mut Props, from: Props) {
    for (k, v) in from {
        into.insert(k, v);
    }
}

impl<R: BufRead> Iterator for KmlReader<R> {
    type Item = Result<Record, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_record() {
            Ok(Some(r)) => Some(Ok(r)),
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
