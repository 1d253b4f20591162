//! The GPX pull reader: one feature per `wpt`, `rte` or `trk` element.

use std::borrow::Cow;
use std::io::BufRead;

use geo_types::Coord;
use quick_xml::events::{BytesStart, Event};
use serde_json::{Map, Value};

use super::extensions::ns_key;
use super::feature::{Acc, Kind, Line, TEXT_PROPS, TIME, number};
use crate::error::{Position, ReadError};
use crate::feature::Feature;
use crate::formats::xml::XmlReader;
use crate::formats::{Record, Rejection, excerpt};
use crate::repair::Repairs;

type Input = Box<dyn BufRead + Send>;

/// What a start tag is, by local name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tag {
    Wpt,
    Rte,
    Trk,
    Rtept,
    Trkseg,
    Trkpt,
    Extensions,
    Link,
    Url,
    Urlname,
    Ele,
    Sym,
    Src,
    Text(usize),
    Other,
}

pub(super) fn tag_of(local: &str) -> Tag {
    match local {
        "wpt" => Tag::Wpt,
        "rte" => Tag::Rte,
        "trk" => Tag::Trk,
        "rtept" => Tag::Rtept,
        "trkseg" => Tag::Trkseg,
        "trkpt" => Tag::Trkpt,
        "extensions" => Tag::Extensions,
        "link" => Tag::Link,
        "url" => Tag::Url,
        "urlname" => Tag::Urlname,
        "ele" => Tag::Ele,
        "sym" => Tag::Sym,
        "src" => Tag::Src,
        other => match TEXT_PROPS.iter().position(|p| *p == other) {
            Some(i) => Tag::Text(i),
            None => Tag::Other,
        },
    }
}

pub(super) fn local_name<'a>(e: &'a BytesStart<'_>) -> &'a str {
    let name: &'a str = e.name().into_inner();
    match name.rfind(':') {
        Some(i) => name.get(i + 1..).unwrap_or(name),
        None => name,
    }
}

/// The raw value of the attribute with this local name. Malformed attributes read as absent.
fn attr<'a>(e: &'a BytesStart<'_>, name: &str) -> Option<Cow<'a, str>> {
    for a in e.attributes().with_checks(false) {
        let Ok(a) = a else { return None };
        if a.key.local_name().into_inner() == name {
            return Some(
                a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                    .unwrap_or(a.value),
            );
        }
    }
    None
}

/// `lon`/`lat` of a point element, without allocating for well-formed numbers.
fn lon_lat(e: &BytesStart<'_>) -> Result<Coord<f64>, String> {
    let mut lat = None;
    let mut lon = None;
    for a in e.attributes().with_checks(false) {
        let Ok(a) = a else {
            return Err("has malformed attributes".to_owned());
        };
        match a.key.local_name().into_inner() {
            "lat" => lat = Some(a.value),
            "lon" => lon = Some(a.value),
            _ => {}
        }
    }
    let parse = |name: &str, v: Option<Cow<'_, str>>| -> Result<f64, String> {
        match v {
            None => Err(format!("has no {name} attribute")),
            Some(v) => v
                .trim()
                .parse::<f64>()
                .map_err(|_| format!("has a non-numeric {name} \"{}\"", excerpt(&v))),
        }
    };
    Ok(Coord {
        x: parse("lon", lon)?,
        y: parse("lat", lat)?,
    })
}

pub(super) struct GpxReader {
    pub(super) xml: XmlReader<Input>,
    pub(super) buf: Vec<u8>,
    /// Namespace prefixes declared on the root, whose extension elements become properties.
    pub(super) prefixes: Vec<String>,
    ordinal: u64,
    done: bool,
}

pub(super) fn truncated(at: Position) -> ReadError {
    ReadError::syntax(
        at,
        "unexpected end of XML: the GPX document is truncated (an element is not closed)",
    )
}

impl GpxReader {
    pub(super) fn new(input: Input, max_xml_text: usize) -> Self {
        GpxReader {
            xml: XmlReader::new(input, max_xml_text),
            buf: Vec::new(),
            prefixes: vec!["gpxx".to_owned()],
            ordinal: 0,
            done: false,
        }
    }

    /// Reads up to the root start tag, which must be `gpx`.
    pub(super) fn read_root(&mut self) -> Result<(), ReadError> {
        loop {
            let at = self.xml.position();
            match self.xml.next(&mut self.buf)? {
                Event::Start(e) | Event::Empty(e) => {
                    let name = local_name(&e);
                    if name != "gpx" {
                        return Err(ReadError::invalid(
                            at,
                            format!("not a GPX document: root element <{}>", excerpt(name)),
                        ));
                    }
                    for a in e.attributes().with_checks(false).flatten() {
                        // A prefix bound to GPX itself names GPX elements, not extensions.
                        if let Some(prefix) = a.key.into_inner().strip_prefix("xmlns:")
                            && !a.value.starts_with("http://www.topografix.com/GPX/1/")
                        {
                            self.prefixes.push(prefix.to_owned());
                        }
                    }
                    if self.xml.depth() == 0 {
                        // `<gpx/>`: no features.
                        self.done = true;
                    }
                    return Ok(());
                }
                Event::Text(t) if !t.trim_ascii().is_empty() => {
                    return Err(ReadError::invalid(
                        at,
                        "not a GPX document: text before the root element",
                    ));
                }
                Event::Eof => {
                    return Err(ReadError::invalid(
                        at,
                        "not a GPX document: no root element",
                    ));
                }
                Event::End(_) | Event::CData(_) | Event::GeneralRef(_) => {
                    return Err(ReadError::invalid(
                        at,
                        "not a GPX document: content before the root element",
                    ));
                }
                _ => {}
            }
        }
    }

    /// The next feature element at depth 1, or `None` at the end of the root.
    fn next_record(&mut self) -> Result<Option<Record>, ReadError> {
        loop {
            let at = self.xml.position();
            let (kind, start) = match self.xml.next(&mut self.buf)? {
                Event::Start(e) => {
                    let tag = tag_of(local_name(&e));
                    let kind = match tag {
                        Tag::Wpt => Kind::Wpt,
                        Tag::Rte => Kind::Rte,
                        Tag::Trk => Kind::Trk,
                        _ => {
                            self.xml.skip_element(&mut self.buf)?;
                            continue;
                        }
                    };
                    let point = (kind == Kind::Wpt).then(|| lon_lat(&e));
                    (kind, Some(point))
                }
                Event::Empty(e) => {
                    let kind = match tag_of(local_name(&e)) {
                        Tag::Wpt => Kind::Wpt,
                        Tag::Rte => Kind::Rte,
                        Tag::Trk => Kind::Trk,
                        _ => continue,
                    };
                    let mut acc = Acc::new(kind);
                    if kind == Kind::Wpt {
                        match lon_lat(&e) {
                            Ok(c) => acc.point = Some(c),
                            Err(msg) => acc.bad = Some(msg),
                        }
                    }
                    let line = self.xml.position().line;
                    return Ok(Some(self.record(line, kind, acc.into_feature(line))));
                }
                Event::End(_) => return Ok(None),
                Event::Eof => return Err(truncated(at)),
                _ => continue,
            };
            let line = self.xml.position().line;
            let mut acc = Acc::new(kind);
            if let Some(Some(point)) = start {
                match point {
                    Ok(c) => acc.point = Some(c),
                    Err(msg) => acc.bad = Some(msg),
                }
            }
            self.read_feature(&mut acc)?;
            return Ok(Some(self.record(line, kind, acc.into_feature(line))));
        }
    }

    fn record(
        &mut self,
        line: u64,
        kind: Kind,
        (feature, repairs): (Result<Feature, Rejection>, Repairs),
    ) -> Record {
        let ordinal = self.ordinal;
        self.ordinal += 1;
        Record {
            line,
            ordinal,
            layer: kind.layer(),
            feature,
            repairs,
        }
    }

    /// Reads the body of a `wpt`, `rte` or `trk` whose start tag was just read.
    fn read_feature(&mut self, acc: &mut Acc) -> Result<(), ReadError> {
        let depth = self.xml.depth();
        if acc.kind == Kind::Rte {
            acc.lines.push(Line::default());
        }
        loop {
            let at = self.xml.position();
            let (tag, direct, point, href) = match self.xml.next(&mut self.buf)? {
                Event::Start(e) => {
                    let direct = self.xml.depth() == depth + 1;
                    // GPX 1.0 puts extension elements directly in the feature.
                    if direct && let Some(key) = ns_key(&self.prefixes, e.name().into_inner()) {
                        let text = self.xml.read_text(&mut self.buf)?;
                        acc.ns.insert(key, Value::String(text.trim().to_owned()));
                        continue;
                    }
                    let tag = tag_of(local_name(&e));
                    let point = (tag == Tag::Rtept).then(|| lon_lat(&e));
                    let href = if tag == Tag::Link && direct {
                        attr(&e, "href").map(Cow::into_owned)
                    } else {
                        None
                    };
                    (tag, direct, point, href)
                }
                Event::Empty(e) => {
                    let tag = tag_of(local_name(&e));
                    let direct = self.xml.depth() == depth;
                    if direct && let Some(key) = ns_key(&self.prefixes, e.name().into_inner()) {
                        acc.ns.insert(key, Value::String(String::new()));
                    } else if tag == Tag::Rtept && acc.kind == Kind::Rte {
                        let point = lon_lat(&e);
                        self.add_point(acc, point, true)?;
                    } else if tag == Tag::Link && direct {
                        let mut link = Map::new();
                        link.insert(
                            "href".into(),
                            attr(&e, "href").map_or(Value::Null, |h| Value::String(h.into_owned())),
                        );
                        acc.links.push(Value::Object(link));
                    }
                    continue;
                }
                Event::End(_) => {
                    if self.xml.depth() < depth {
                        return Ok(());
                    }
                    continue;
                }
                Event::Eof => return Err(truncated(at)),
                _ => continue,
            };
            match tag {
                Tag::Rtept if acc.kind == Kind::Rte => {
                    let point = point.unwrap_or_else(|| Err("is unreadable".into()));
                    self.add_point(acc, point, false)?;
                }
                Tag::Trkseg if acc.kind == Kind::Trk => {
                    acc.lines.push(Line::default());
                    self.read_segment(acc)?;
                }
                Tag::Extensions if direct => self.read_feature_extensions(acc)?,
                Tag::Link if direct => self.read_link(acc, href)?,
                Tag::Url if direct => acc.url = Some(self.xml.read_text(&mut self.buf)?),
                Tag::Urlname if direct => acc.urlname = Some(self.xml.read_text(&mut self.buf)?),
                Tag::Ele if direct && acc.kind == Kind::Wpt => {
                    let text = self.xml.read_text(&mut self.buf)?;
                    acc.ele = text.trim().parse::<f64>().ok().and_then(number);
                }
                Tag::Sym if direct && acc.kind == Kind::Wpt => {
                    acc.sym = Some(self.xml.read_text(&mut self.buf)?).filter(|s| !s.is_empty());
                }
                Tag::Src if direct => {
                    acc.src = Some(self.xml.read_text(&mut self.buf)?).filter(|s| !s.is_empty());
                }
                Tag::Text(i) if acc.wants_text(i) => {
                    let text = self.xml.read_text(&mut self.buf)?;
                    acc.set_text(i, text);
                }
                _ => self.xml.skip_element(&mut self.buf)?,
            }
        }
    }

    fn read_segment(&mut self, acc: &mut Acc) -> Result<(), ReadError> {
        let depth = self.xml.depth();
        loop {
            let at = self.xml.position();
            match self.xml.next(&mut self.buf)? {
                Event::Start(e) => {
                    if local_name(&e) == "trkpt" {
                        let point = lon_lat(&e);
                        self.add_point(acc, point, false)?;
                    } else {
                        self.xml.skip_element(&mut self.buf)?;
                    }
                }
                Event::Empty(e) if local_name(&e) == "trkpt" => {
                    let point = lon_lat(&e);
                    self.add_point(acc, point, true)?;
                }
                Event::End(_) if self.xml.depth() < depth => {
                    if let Some(line) = acc.lines.last_mut() {
                        line.finish();
                    }
                    return Ok(());
                }
                Event::Eof => return Err(truncated(at)),
                _ => {}
            }
        }
    }

    /// Adds a `rtept` or `trkpt` (its start tag just read) to the last line, and reads its
    /// children unless it was an empty element.
    fn add_point(
        &mut self,
        acc: &mut Acc,
        point: Result<Coord<f64>, String>,
        empty: bool,
    ) -> Result<(), ReadError> {
        acc.points_seen += 1;
        let seen = acc.points_seen;
        let is_track = acc.kind == Kind::Trk;
        match point {
            Ok(c) => {
                if let Some(line) = acc.lines.last_mut() {
                    line.coords.push(c);
                }
            }
            Err(msg) => {
                if acc.bad.is_none() {
                    acc.bad = Some(format!("point {seen} {msg}"));
                }
            }
        }
        let index = match acc.lines.last_mut() {
            Some(line) => {
                line.points += 1;
                line.points - 1
            }
            None => 0,
        };
        if empty {
            return Ok(());
        }
        let depth = self.xml.depth();
        let mut extensions_seen = false;
        loop {
            let at = self.xml.position();
            let tag = match self.xml.next(&mut self.buf)? {
                Event::Start(e) => tag_of(local_name(&e)),
                Event::Empty(e) => {
                    if local_name(&e) == "extensions" {
                        extensions_seen = true;
                    }
                    continue;
                }
                Event::End(_) => {
                    if self.xml.depth() < depth {
                        return Ok(());
                    }
                    continue;
                }
                Event::Eof => return Err(truncated(at)),
                _ => continue,
            };
            match tag {
                Tag::Text(TIME) => {
                    let text = self.xml.read_text(&mut self.buf)?;
                    if !text.is_empty() {
                        let text = if acc.wants_text(TIME) {
                            acc.set_text(TIME, text.clone());
                            text
                        } else {
                            text
                        };
                        if is_track && let Some(line) = acc.lines.last_mut() {
                            line.times.push(Value::String(text));
                        }
                    }
                }
                Tag::Extensions if is_track && !extensions_seen => {
                    extensions_seen = true;
                    self.read_point_extensions(acc, index)?;
                }
                Tag::Text(i) if acc.wants_text(i) => {
                    let text = self.xml.read_text(&mut self.buf)?;
                    acc.set_text(i, text);
                }
                _ => self.xml.skip_element(&mut self.buf)?,
            }
        }
    }
}

impl Iterator for GpxReader {
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
    fn waypoint_route_track_layers() {
        let records = read(
            r#"<gpx><wpt lat="1" lon="2"><name>a</name><ele>10.5</ele></wpt>
<rte><rtept lat="1" lon="2"/><rtept lat="3" lon="4"/></rte>
<trk><trkseg><trkpt lat="1" lon="2"/><trkpt lat="3" lon="4"/></trkseg></trk></gpx>"#,
        )
        .unwrap();
        let layers: Vec<u32> = records.iter().map(|r| r.layer).collect();
        assert_eq!(layers, [0, 1, 2]);
        let wpt = records[0].feature.as_ref().unwrap();
        assert_eq!(wpt.properties["ele"], serde_json::json!(10.5));
        assert_eq!(records[1].line, 2);
    }

    #[test]
    fn root_must_be_gpx() {
        let err = read("<kml/>").unwrap_err();
        assert_eq!(
            err.to_string(),
            "1:1: not a GPX document: root element <kml>"
        );
    }

    #[test]
    fn truncated_is_fatal() {
        let err = read("<gpx><trk><trkseg><trkpt lat=\"1\" lon=\"2\">").unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn bad_point_rejects_the_track() {
        let records = read(
            r#"<gpx><trk><name>T</name><trkseg><trkpt lat="x" lon="2"/><trkpt lat="3" lon="4"/></trkseg></trk></gpx>"#,
        )
        .unwrap();
        let reason = &records[0].feature.as_ref().unwrap_err().reason;
        assert_eq!(reason, "track \"T\": point 1 has a non-numeric lat \"x\"");
    }
}
