//! The CoT pull reader: one feature per `<event>`.

use std::io::BufRead;

use geo_types::{Coord, Geometry, LineString, Point, Polygon};
use quick_xml::events::{BytesStart, Event};
use serde_json::{Map, Value};

use crate::error::{Position, ReadError};
use crate::feature::{Feature, FeatureId};
use crate::formats::xml::{XmlReader, push_ref};
use crate::formats::{Record, Rejection, accept, excerpt};
use crate::repair::Repairs;

type Input = Box<dyn BufRead + Send>;

/// Types whose `<link point>` lists are the geometry (node-CoT's list).
const SHAPE_TYPES: [&str; 4] = ["u-d-f", "u-d-r", "b-m-r", "u-rb-a"];
const ELLIPSE_PREFIXES: [&str; 3] = ["u-d-c-c", "u-r-b-c-c", "u-d-c-e"];
/// Generic detail conversion bounds: nesting below a detail child, and elements per event.
const MAX_GENERIC_DEPTH: usize = 16;
const MAX_GENERIC_NODES: usize = 10_000;
const MAX_GENERIC_TEXT: usize = 1024 * 1024;

fn local_name<'a>(e: &'a BytesStart<'_>) -> &'a str {
    let name: &'a str = e.name().into_inner();
    match name.rfind(':') {
        Some(i) => name.get(i + 1..).unwrap_or(name),
        None => name,
    }
}

/// Attributes as a JSON object of strings (entity references resolved where possible).
fn attrs_of(e: &BytesStart<'_>) -> Map<String, Value> {
    let mut out = Map::new();
    for a in e.attributes().with_checks(false).flatten() {
        let key = a.key.into_inner().to_owned();
        let value = a
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map(|v| v.into_owned())
            .unwrap_or_else(|_| a.value.clone().into_owned());
        out.insert(key, Value::String(value));
    }
    out
}

fn get_str<'a>(attrs: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    attrs.get(key).and_then(Value::as_str)
}

fn number(x: f64) -> Option<Value> {
    if x.fract() == 0.0 && x.abs() < 9_007_199_254_740_992.0 {
        #[allow(clippy::cast_possible_truncation)]
        return Some(Value::from(x as i64));
    }
    serde_json::Number::from_f64(x).map(Value::Number)
}

fn parse_num(text: &str) -> Option<f64> {
    text.trim().parse::<f64>().ok().filter(|x| x.is_finite())
}

/// An ARGB color as node-CoT's `Color`: `#RRGGBB` and alpha/255.
fn argb(value: &str) -> Option<(String, Value)> {
    let x = parse_num(value)?;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let v = (x.trunc() as i64) as u32;
    let [a, r, g, b] = v.to_be_bytes();
    Some((
        format!("#{r:02X}{g:02X}{b:02X}"),
        number(f64::from(a) / 255.0)?,
    ))
}

/// A KML `aarrggbb`-ordered string as node-CoT reads it (a, r, g, b in that order).
fn kml_color(text: &str) -> Option<(String, Value)> {
    let t = text.trim().trim_start_matches('#');
    let byte = |i: usize| t.get(i..i + 2).and_then(|s| u8::from_str_radix(s, 16).ok());
    let (a, r, g, b) = (byte(0)?, byte(2)?, byte(4)?, byte(6)?);
    Some((
        format!("#{r:02X}{g:02X}{b:02X}"),
        number(f64::from(a) / 255.0)?,
    ))
}

fn truncated(at: Position) -> ReadError {
    ReadError::syntax(
        at,
        "unexpected end of XML: the CoT document is truncated (an element is not closed)",
    )
}

/// A shape vertex, or why it is unreadable.
type Vertex = Result<Coord<f64>, String>;

/// Everything collected from one event.
#[derive(Default)]
struct Acc {
    attrs: Map<String, Value>,
    point: Option<Result<Coord<f64>, String>>,
    hae: Option<f64>,
    ce: Option<f64>,
    le: Option<f64>,
    callsign: Option<String>,
    props: Map<String, Value>,
    links: Vec<Value>,
    shape_points: Vec<Result<Coord<f64>, String>>,
    fill: Option<String>,
    colors: Vec<Option<String>>,
    kml_style: Map<String, Value>,
    /// A `b-m-p-s-p-i` `<shape><polyline>`: its vertices and whether it is closed.
    polyline: Option<(Vec<Vertex>, bool)>,
    nodes: usize,
}

impl Acc {
    fn event_type(&self) -> &str {
        get_str(&self.attrs, "type").unwrap_or("")
    }

    fn is_shape(&self) -> bool {
        SHAPE_TYPES.contains(&self.event_type())
    }

    fn is_ellipse(&self) -> bool {
        let t = self.event_type();
        ELLIPSE_PREFIXES.iter().any(|p| t.starts_with(p))
    }

    fn label(&self, line: u64) -> String {
        match get_str(&self.attrs, "uid") {
            Some(uid) => format!("event \"{}\"", excerpt(uid)),
            None => format!("event without uid on line {line}"),
        }
    }

    fn into_feature(mut self, line: u64, repairs: &mut Repairs) -> Result<Feature, Rejection> {
        let label = self.label(line);
        let point = match self.point.take() {
            None => return Err(Rejection::new(format!("{label} has no <point>"))),
            Some(Err(msg)) => return Err(Rejection::new(format!("{label}: <point> {msg}"))),
            Some(Ok(c)) => c,
        };
        let mut props = Map::new();
        if let Some(callsign) = self.callsign.take() {
            props.insert("callsign".into(), Value::String(callsign));
        }
        let mut center: Vec<Value> = [point.x, point.y].into_iter().filter_map(number).collect();
        if let Some(hae) = self.hae.and_then(number) {
            center.push(hae);
        }
        props.insert("center".into(), Value::Array(center));
        for key in ["type", "how", "time", "start", "stale"] {
            match self.attrs.get(key) {
                Some(v) => {
                    props.insert(key.into(), v.clone());
                }
                None if key == "how" => {
                    props.insert(key.into(), Value::String(String::new()));
                }
                None => {}
            }
        }
        for (key, v) in [("hae", self.hae), ("ce", self.ce), ("le", self.le)] {
            if let Some(v) = v.and_then(number) {
                props.insert(key.into(), v);
            }
        }
        // Colors: node-CoT merges several <color> elements, the second one winning.
        let argb_value = if self.colors.len() > 1 {
            self.colors
                .iter()
                .skip(1)
                .flatten()
                .next()
                .or_else(|| self.colors.first().and_then(Option::as_ref))
                .cloned()
        } else {
            self.colors.first().cloned().flatten()
        };
        if let Some((hex, opacity)) = argb_value.as_deref().and_then(argb) {
            self.props.insert("marker-color".into(), Value::String(hex));
            self.props.insert("marker-opacity".into(), opacity);
        }
        let mut geometry = Geometry::Point(Point(point));
        if self.is_shape() && !self.shape_points.is_empty() && self.event_type() != "u-rb-a" {
            let mut coords = Vec::with_capacity(self.shape_points.len() + 1);
            for (i, p) in std::mem::take(&mut self.shape_points)
                .into_iter()
                .enumerate()
            {
                match p {
                    Ok(c) => coords.push(c),
                    Err(msg) => {
                        return Err(Rejection::new(format!(
                            "{label}: link point {} {msg}",
                            i + 1
                        )));
                    }
                }
            }
            let closed = coords.first() == coords.last();
            if self.event_type() == "u-d-r" || (closed && coords.len() > 1) {
                if self.event_type() == "u-d-r"
                    && let Some(first) = coords.first().copied()
                {
                    coords.push(first);
                }
                if let Some((hex, opacity)) = self.fill.as_deref().and_then(argb) {
                    self.props.insert("fill-opacity".into(), opacity);
                    self.props.insert("fill".into(), Value::String(hex));
                }
                if coords.len() < 4 {
                    return Err(Rejection::new(format!(
                        "{label}: a polygon needs at least 4 positions, the links give {}",
                        coords.len()
                    )));
                }
                geometry = Geometry::Polygon(Polygon::new(LineString(coords), vec![]));
            } else {
                geometry = Geometry::LineString(LineString(coords));
            }
        }
        if let Some((vertices, closed)) = self.polyline.take() {
            let mut coords = Vec::with_capacity(vertices.len() + 1);
            for (i, v) in vertices.into_iter().enumerate() {
                match v {
                    Ok(c) => coords.push(c),
                    Err(msg) => {
                        return Err(Rejection::new(format!("{label}: vertex {} {msg}", i + 1)));
                    }
                }
            }
            geometry = match coords.len() {
                0 => geometry,
                1 => Geometry::Point(Point(coords[0])),
                _ if closed => {
                    coords.push(coords[0]);
                    Geometry::Polygon(Polygon::new(LineString(coords), vec![]))
                }
                _ => Geometry::LineString(LineString(coords)),
            };
        }
        if self.is_ellipse() || self.event_type().starts_with("b-m-p-s-p-i") {
            self.props.append(&mut self.kml_style);
        }
        if !self.links.is_empty() {
            self.props.insert(
                "links".into(),
                Value::Array(std::mem::take(&mut self.links)),
            );
        }
        props.append(&mut self.props);
        let id = get_str(&self.attrs, "uid").map(|u| FeatureId::Str(u.to_owned()));
        accept(
            Feature {
                id,
                geometry: Some(geometry),
                properties: props,
            },
            repairs,
        )
        .map_err(|r| Rejection::new(format!("{label}: {}", r.reason)))
    }
}

/// `lat,lon[,hae]` of a shape link.
fn link_point(text: &str) -> Result<Coord<f64>, String> {
    let mut parts = text.split(',');
    let mut next = |name: &str| -> Result<f64, String> {
        let part = parts.next().unwrap_or("");
        part.trim()
            .parse::<f64>()
            .map_err(|_| format!("has a non-numeric {name} \"{}\"", excerpt(part)))
    };
    let lat = next("lat")?;
    let lon = next("lon")?;
    Ok(Coord { x: lon, y: lat })
}

fn point_of(attrs: &Map<String, Value>) -> Result<Coord<f64>, String> {
    let get = |name: &str| -> Result<f64, String> {
        match get_str(attrs, name) {
            None => Err(format!("has no {name} attribute")),
            Some(v) => v
                .trim()
                .parse::<f64>()
                .map_err(|_| format!("has a non-numeric {name} \"{}\"", excerpt(v))),
        }
    };
    Ok(Coord {
        x: get("lon")?,
        y: get("lat")?,
    })
}

/// Inserts `value` under `key`, turning repeated keys into arrays.
fn insert_multi(map: &mut Map<String, Value>, key: String, value: Value) {
    match map.get_mut(&key) {
        None => {
            map.insert(key, value);
        }
        Some(Value::Array(items)) => items.push(value),
        Some(existing) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, value]);
        }
    }
}

pub(super) struct CotReader {
    xml: XmlReader<Input>,
    buf: Vec<u8>,
    ordinal: u64,
    done: bool,
    /// Depth of the `<events>` element being read, if any.
    in_events: bool,
    /// The first event's start tag, read by `read_root`: (attributes, line, empty).
    pending: Option<(Map<String, Value>, u64, bool)>,
}

impl CotReader {
    pub(super) fn new(input: Input, max_xml_text: usize) -> Self {
        CotReader {
            xml: XmlReader::new(input, max_xml_text),
            buf: Vec::new(),
            ordinal: 0,
            done: false,
            in_events: false,
            pending: None,
        }
    }

    /// Reads up to the first root element, which must be `event` or `events`.
    pub(super) fn read_root(&mut self) -> Result<(), ReadError> {
        loop {
            let at = self.xml.position();
            match self.xml.next(&mut self.buf)? {
                Event::Start(e) | Event::Empty(e) => {
                    let empty = self.xml.depth() == 0;
                    match local_name(&e) {
                        "event" => {
                            let line = self.xml.position().line;
                            self.pending = Some((attrs_of(&e), line, empty));
                        }
                        "events" => self.in_events = !empty,
                        other => {
                            return Err(ReadError::invalid(
                                at,
                                format!("not a CoT document: root element <{}>", excerpt(other)),
                            ));
                        }
                    }
                    return Ok(());
                }
                Event::Text(t) if !t.trim_ascii().is_empty() => {
                    return Err(ReadError::invalid(
                        at,
                        "not a CoT document: text before the root element",
                    ));
                }
                Event::Eof => {
                    return Err(ReadError::invalid(
                        at,
                        "not a CoT document: no root element",
                    ));
                }
                Event::End(_) | Event::CData(_) | Event::GeneralRef(_) => {
                    return Err(ReadError::invalid(
                        at,
                        "not a CoT document: content before the root element",
                    ));
                }
                _ => {}
            }
        }
    }

    fn next_record(&mut self) -> Result<Option<Record>, ReadError> {
        if let Some((attrs, line, empty)) = self.pending.take() {
            return self.read_event(attrs, line, empty).map(Some);
        }
        loop {
            let at = self.xml.position();
            let (name, attrs, empty) = match self.xml.next(&mut self.buf)? {
                Event::Start(e) => (local_name(&e).to_owned(), attrs_of(&e), false),
                Event::Empty(e) => (local_name(&e).to_owned(), attrs_of(&e), true),
                Event::End(_) => {
                    if self.xml.depth() == 0 {
                        self.in_events = false;
                    }
                    continue;
                }
                Event::Eof => {
                    if self.xml.depth() == 0 {
                        return Ok(None);
                    }
                    return Err(truncated(at));
                }
                Event::Text(t) => {
                    if self.xml.depth() == 0 && !t.trim_ascii().is_empty() {
                        return Err(ReadError::syntax(
                            at,
                            "not a CoT stream: text between events",
                        ));
                    }
                    continue;
                }
                _ => continue,
            };
            // Depth of the element itself (Start events have already been counted).
            let depth = if empty {
                self.xml.depth() + 1
            } else {
                self.xml.depth()
            };
            let event_depth = if self.in_events { 2 } else { 1 };
            match name.as_str() {
                "event" if depth == event_depth => {
                    let line = self.xml.position().line;
                    return self.read_event(attrs, line, empty).map(Some);
                }
                "events" if depth == 1 => {
                    self.in_events = !empty;
                }
                _ if depth == 1 => {
                    return Err(ReadError::invalid(
                        at,
                        format!("not a CoT document: root element <{}>", excerpt(&name)),
                    ));
                }
                _ => {
                    if !empty {
                        self.xml.skip_element(&mut self.buf)?;
                    }
                }
            }
        }
    }

    fn read_event(
        &mut self,
        attrs: Map<String, Value>,
        line: u64,
        empty: bool,
    ) -> Result<Record, ReadError> {
        let mut acc = Acc {
            attrs,
            ..Acc::default()
        };
        if !empty {
            let depth = self.xml.depth();
            loop {
                let at = self.xml.position();
                let (name, attrs, child_empty) = match self.xml.next(&mut self.buf)? {
                    Event::Start(e) => (local_name(&e).to_owned(), attrs_of(&e), false),
                    Event::Empty(e) => (local_name(&e).to_owned(), attrs_of(&e), true),
                    Event::End(_) => {
                        if self.xml.depth() < depth {
                            break;
                        }
                        continue;
                    }
                    Event::Eof => return Err(truncated(at)),
                    _ => continue,
                };
                match name.as_str() {
                    "point" if acc.point.is_none() => {
                        acc.point = Some(point_of(&attrs));
                        acc.hae = get_str(&attrs, "hae").and_then(parse_num);
                        acc.ce = get_str(&attrs, "ce").and_then(parse_num);
                        acc.le = get_str(&attrs, "le").and_then(parse_num);
                        if !child_empty {
                            self.xml.skip_element(&mut self.buf)?;
                        }
                    }
                    "detail" if !child_empty => self.read_detail(&mut acc)?,
                    _ => {
                        if !child_empty {
                            self.xml.skip_element(&mut self.buf)?;
                        }
                    }
                }
            }
        }
        let ordinal = self.ordinal;
        self.ordinal += 1;
        let mut repairs = Repairs::NONE;
        let feature = acc.into_feature(line, &mut repairs);
        Ok(Record {
            line,
            ordinal,
            layer: 0,
            feature,
            repairs,
        })
    }

    fn read_detail(&mut self, acc: &mut Acc) -> Result<(), ReadError> {
        let depth = self.xml.depth();
        loop {
            let at = self.xml.position();
            let (name, attrs, empty) = match self.xml.next(&mut self.buf)? {
                Event::Start(e) => (e.name().into_inner().to_owned(), attrs_of(&e), false),
                Event::Empty(e) => (e.name().into_inner().to_owned(), attrs_of(&e), true),
                Event::End(_) => {
                    if self.xml.depth() < depth {
                        return Ok(());
                    }
                    continue;
                }
                Event::Eof => return Err(truncated(at)),
                _ => continue,
            };
            let mut skip = !empty;
            let spot_map = acc.event_type() == "b-m-p-s-m";
            let props = &mut acc.props;
            match name.as_str() {
                "contact" => {
                    let mut rest = attrs;
                    if let Some(Value::String(c)) = rest.remove("callsign") {
                        acc.callsign = Some(c);
                    }
                    if !rest.is_empty() {
                        props.insert("contact".into(), Value::Object(rest));
                    }
                }
                "remarks" => {
                    if !empty {
                        skip = false;
                        let text = self.xml.read_text(&mut self.buf)?;
                        if !text.is_empty() {
                            props.insert("remarks".into(), Value::String(text));
                        }
                    }
                }
                "__group" | "status" | "takv" | "precisionlocation" | "_flow-tags_" | "creator" => {
                    let key = match name.as_str() {
                        "__group" => "group",
                        "_flow-tags_" => "flow",
                        other => other,
                    };
                    if !attrs.is_empty() {
                        props.insert(key.into(), Value::Object(attrs));
                    }
                }
                "track" => {
                    for key in ["course", "slope", "speed"] {
                        if let Some(v) = get_str(&attrs, key).and_then(parse_num).and_then(number) {
                            props.insert(key.into(), v);
                        }
                    }
                }
                "uid" => {
                    if let Some(droid) = attrs.get("Droid") {
                        props.insert("droid".into(), droid.clone());
                    }
                }
                "link" => match get_str(&attrs, "point") {
                    Some(p) if acc.is_shape() => acc.shape_points.push(link_point(p)),
                    _ => acc.links.push(Value::Object(attrs)),
                },
                "archive" => {
                    props.insert("archived".into(), Value::Bool(true));
                }
                "labels_on" => {
                    if let Some(v) = get_str(&attrs, "value") {
                        let value = match v.to_ascii_lowercase().as_str() {
                            "true" => Value::Bool(true),
                            "false" => Value::Bool(false),
                            _ => Value::String(v.to_owned()),
                        };
                        props.insert("labels".into(), value);
                    }
                }
                "usericon" => {
                    if let Some(path) = get_str(&attrs, "iconsetpath") {
                        let spot = path.strip_prefix("COT_MAPPING_SPOTMAP/b-m-p-s-m/");
                        if spot_map {
                            if let Some((hex, opacity)) = spot.and_then(argb) {
                                props.insert("marker-color".into(), Value::String(hex));
                                props.insert("marker-opacity".into(), opacity);
                            }
                        } else {
                            props.insert("icon".into(), Value::String(path.to_owned()));
                        }
                    }
                }
                "strokeColor" => {
                    if let Some((hex, opacity)) = get_str(&attrs, "value").and_then(argb) {
                        props.insert("stroke".into(), Value::String(hex));
                        props.insert("stroke-opacity".into(), opacity);
                    }
                }
                "strokeWeight" => {
                    if let Some(w) = get_str(&attrs, "value")
                        .and_then(parse_num)
                        .and_then(number)
                    {
                        props.insert("stroke-width".into(), w);
                    }
                }
                "strokeStyle" => {
                    if let Some(s) = attrs.get("value") {
                        props.insert("stroke-style".into(), s.clone());
                    }
                }
                "fillColor" => acc.fill = get_str(&attrs, "value").map(str::to_owned),
                "color" => acc.colors.push(get_str(&attrs, "argb").map(str::to_owned)),
                _ => {
                    skip = false;
                    let value = self.read_generic(attrs, empty, 0, &mut acc.nodes)?;
                    if name == "shape" && acc.is_ellipse() {
                        shape_properties(&value, &mut acc.kml_style);
                    } else if name == "shape"
                        && acc.event_type().starts_with("b-m-p-s-p-i")
                        && value["polyline"]["vertex"] != Value::Null
                    {
                        polyline_shape(&value["polyline"], acc);
                    } else {
                        insert_multi(&mut acc.props, name, value);
                    }
                }
            }
            if skip {
                self.xml.skip_element(&mut self.buf)?;
            }
        }
    }

    /// An element (start tag already read) as JSON: attributes, `_text`, children by name.
    fn read_generic(
        &mut self,
        mut obj: Map<String, Value>,
        empty: bool,
        level: usize,
        nodes: &mut usize,
    ) -> Result<Value, ReadError> {
        *nodes += 1;
        if empty {
            return Ok(Value::Object(obj));
        }
        if level >= MAX_GENERIC_DEPTH || *nodes > MAX_GENERIC_NODES {
            self.xml.skip_element(&mut self.buf)?;
            return Ok(Value::Object(obj));
        }
        let depth = self.xml.depth();
        let mut text = String::new();
        loop {
            let here = self.xml.position();
            let (name, attrs, child_empty) = match self.xml.next(&mut self.buf)? {
                Event::Start(e) => (e.name().into_inner().to_owned(), attrs_of(&e), false),
                Event::Empty(e) => (e.name().into_inner().to_owned(), attrs_of(&e), true),
                Event::Text(t) => {
                    if text.len() < MAX_GENERIC_TEXT {
                        text.push_str(&t.xml10_content());
                    }
                    continue;
                }
                Event::CData(t) => {
                    if text.len() < MAX_GENERIC_TEXT {
                        text.push_str(&t.xml10_content());
                    }
                    continue;
                }
                Event::GeneralRef(r) => {
                    push_ref(&mut text, &r, here)?;
                    continue;
                }
                Event::End(_) => {
                    if self.xml.depth() < depth {
                        break;
                    }
                    continue;
                }
                Event::Eof => return Err(truncated(here)),
                _ => continue,
            };
            let child = self.read_generic(attrs, child_empty, level + 1, nodes)?;
            insert_multi(&mut obj, name, child);
        }
        let trimmed = text.trim();
        if !trimmed.is_empty() {
            obj.insert("_text".into(), Value::String(trimmed.to_owned()));
        }
        Ok(Value::Object(obj))
    }
}

/// node-CoT's circle/ellipse properties from a generic `<shape>`: `shape.ellipse` numbers and
/// the KML style of its `b-x-KmlStyle` link.
fn shape_properties(shape: &Value, out: &mut Map<String, Value>) {
    let ellipse = &shape["ellipse"];
    if ellipse.is_object() {
        let mut e = Map::new();
        for key in ["major", "minor", "angle"] {
            if let Some(v) = ellipse[key].as_str().and_then(parse_num).and_then(number) {
                e.insert(key.into(), v);
            }
        }
        if let Some(v) = ellipse["swapAxis"].as_str() {
            e.insert("swapAxis".into(), Value::Bool(!v.is_empty()));
        }
        let mut s = Map::new();
        s.insert("ellipse".into(), Value::Object(e));
        out.insert("shape".into(), Value::Object(s));
    }
    let link = &shape["link"];
    if link["type"] == "b-x-KmlStyle" {
        let style = &link["Style"];
        if let Some((hex, opacity)) = style["LineStyle"]["color"]["_text"]
            .as_str()
            .and_then(kml_color)
        {
            out.insert("stroke".into(), Value::String(hex));
            out.insert("stroke-opacity".into(), opacity);
        }
        if let Some(w) = style["LineStyle"]["width"]["_text"]
            .as_str()
            .and_then(parse_num)
            .and_then(number)
        {
            out.insert("stroke-width".into(), w);
        }
        if let Some((hex, opacity)) = style["PolyStyle"]["color"]["_text"]
            .as_str()
            .and_then(kml_color)
        {
            out.insert("fill-opacity".into(), opacity);
            out.insert("fill".into(), Value::String(hex));
        }
    }
}

/// node-CoT's `b-m-p-s-p-i` polyline: vertices as the geometry, `fillColor`/`color` as style.
fn polyline_shape(polyline: &Value, acc: &mut Acc) {
    let vertices: Vec<&Value> = match &polyline["vertex"] {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let coords = vertices
        .iter()
        .map(|v| match v.as_object() {
            Some(attrs) => point_of(attrs),
            None => Err("is not an element".to_owned()),
        })
        .collect();
    let closed = polyline["closed"]
        .as_str()
        .is_some_and(|c| c.eq_ignore_ascii_case("true"));
    acc.polyline = Some((coords, closed));
    if let Some((hex, opacity)) = polyline["fillColor"].as_str().and_then(argb) {
        acc.kml_style.insert("fill-opacity".into(), opacity);
        acc.kml_style.insert("fill".into(), Value::String(hex));
    }
    if let Some((hex, opacity)) = polyline["color"].as_str().and_then(argb) {
        acc.kml_style.insert("stroke".into(), Value::String(hex));
        acc.kml_style.insert("stroke-opacity".into(), opacity);
    }
}

impl Iterator for CotReader {
    type Item = Result<Record, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_record() {
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
    use std::io::Cursor;

    use super::*;
    use crate::formats::ReadOptions;

    fn read(text: &str) -> Result<Vec<Record>, ReadError> {
        let source = super::super::open(
            Box::new(Cursor::new(text.as_bytes().to_vec())),
            &ReadOptions::default(),
        )?;
        source.collect()
    }

    #[test]
    fn concatenated_events_with_declarations() {
        let one =
            r#"<?xml version="1.0"?><event uid="a" type="a-f-G"><point lat="1" lon="2"/></event>"#;
        let records = read(&format!("{one}\n{}", one.replace("\"a\"", "\"b\""))).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[1].line, 2);
        let f = records[1].feature.as_ref().unwrap();
        assert_eq!(f.id, Some(FeatureId::Str("b".into())));
    }

    #[test]
    fn root_must_be_event() {
        let err = read("<gpx/>").unwrap_err();
        assert_eq!(
            err.to_string(),
            "1:1: not a CoT document: root element <gpx>"
        );
    }

    #[test]
    fn colors_like_node_cot() {
        assert_eq!(argb("-8773218"), Some(("#7A219E".into(), Value::from(1))));
        assert_eq!(
            kml_color("ffff7700"),
            Some(("#FF7700".into(), Value::from(1)))
        );
    }
}
