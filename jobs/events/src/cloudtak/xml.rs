//! The two TAK XML documents an import can carry besides features: an iconset
//! (`<iconset uid name version><icon name type2525b/></iconset>`) and a MOBAC map source
//! (`<customMapSource><name/><minZoom/><maxZoom/><tileType/><url/></customMapSource>`), read as
//! node-CoT reads them (required fields, integer zooms and version).
//!
//! `Ok(None)` means "not this kind of document" (another root element); a document of the
//! kind that lacks what CloudTAK needs is an error naming the file and the field.

use std::io::Read;
use std::path::Path;

use etl_core::JobError;
use quick_xml::events::{BytesStart, Event};
use serde_json::{Map, Value};

/// XML indexes are small; anything larger is not read as one.
const MAX_INDEX_BYTES: u64 = 8 << 20;

/// A MOBAC map source, as `POST /api/basemap` takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Basemap {
    pub name: String,
    pub url: String,
    pub min_zoom: i64,
    pub max_zoom: i64,
    /// CloudTAK's `format`: png, jpeg, webp or mvt.
    pub format: String,
}

/// An iconset's attributes and icons.
#[derive(Debug, Clone, PartialEq)]
pub struct Iconset {
    pub uid: String,
    pub name: String,
    pub version: i64,
    pub skip_resize: bool,
    /// `default_group`, `default_friendly`, … when given.
    pub defaults: Map<String, Value>,
    /// Each icon's `name` and `type2525b`.
    pub icons: Vec<(String, Option<String>)>,
}

/// The file's text when it is small enough to be an index.
fn text(path: &Path) -> Result<Option<String>, JobError> {
    let f = std::fs::File::open(path)
        .map_err(|e| JobError::temporary(format!("{}: {e}", path.display())))?;
    let mut bytes = Vec::new();
    let n = f
        .take(MAX_INDEX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| JobError::temporary(format!("{}: {e}", path.display())))?;
    if n as u64 > MAX_INDEX_BYTES {
        return Ok(None);
    }
    // Text that is not UTF-8 is not an index of either kind.
    Ok(String::from_utf8(bytes).ok())
}

fn attrs(e: &BytesStart<'_>) -> Map<String, Value> {
    let mut m = Map::new();
    for a in e.attributes().flatten() {
        if let Ok(v) = a.normalized_value(quick_xml::XmlVersion::Implicit1_0) {
            m.insert(
                a.key.local_name().as_ref().to_owned(),
                Value::String(v.into_owned()),
            );
        }
    }
    m
}

/// The root element's local name, its attributes, its direct children's texts and the
/// attributes of its direct children named `child`.
struct Doc {
    root: String,
    attrs: Map<String, Value>,
    texts: Map<String, Value>,
    children: Vec<Map<String, Value>>,
}

fn parse(xml: &str, child: &str, shown: &str) -> Result<Option<Doc>, JobError> {
    let mut r = quick_xml::Reader::from_str(xml);
    let mut doc: Option<Doc> = None;
    let mut depth = 0usize;
    let mut current: Option<String> = None;
    loop {
        let ev = match r.read_event() {
            Ok(ev) => ev,
            // Not well-formed: not an index of either kind.
            Err(_) => return Ok(None),
        };
        match ev {
            Event::DocType(_) => {
                return Err(JobError::bad_input(format!(
                    "{shown}: a DTD is not accepted in an XML index"
                )));
            }
            Event::Start(e) | Event::Empty(e) if depth == 0 && doc.is_none() => {
                doc = Some(Doc {
                    root: e.local_name().as_ref().to_owned(),
                    attrs: attrs(&e),
                    texts: Map::new(),
                    children: Vec::new(),
                });
                depth = 1;
            }
            Event::Start(e) => {
                depth += 1;
                if depth == 2 {
                    let name = e.local_name().as_ref().to_owned();
                    if name == child
                        && let Some(d) = doc.as_mut()
                    {
                        d.children.push(attrs(&e));
                    }
                    current = Some(name);
                }
            }
            Event::Empty(e) => {
                if depth == 1
                    && e.local_name().as_ref() == child
                    && let Some(d) = doc.as_mut()
                {
                    d.children.push(attrs(&e));
                }
            }
            Event::Text(t) if depth == 2 => append(&mut doc, &current, &t.xml10_content()),
            Event::CData(t) if depth == 2 => append(&mut doc, &current, &t.xml10_content()),
            Event::GeneralRef(r) if depth == 2 => {
                let c = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    _ => {
                        let name: &str = &r;
                        match name {
                            "amp" => "&",
                            "lt" => "<",
                            "gt" => ">",
                            "quot" => "\"",
                            "apos" => "'",
                            _ => return Ok(None),
                        }
                        .to_owned()
                    }
                };
                append(&mut doc, &current, &c);
            }
            Event::End(_) => {
                depth = depth.saturating_sub(1);
                if depth < 2 {
                    current = None;
                }
            }
            Event::Eof => return Ok(doc),
            _ => {}
        }
    }
}

/// Adds `text` to the text of the child element being read.
fn append(doc: &mut Option<Doc>, current: &Option<String>, text: &str) {
    if let (Some(name), Some(d)) = (current, doc.as_mut()) {
        let entry = d
            .texts
            .entry(name.clone())
            .or_insert_with(|| Value::String(String::new()));
        if let Value::String(s) = entry {
            s.push_str(text);
        }
    }
}

fn str_field(m: &Map<String, Value>, key: &str) -> Option<String> {
    m.get(key)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn int_field(m: &Map<String, Value>, key: &str, shown: &str, what: &str) -> Result<i64, JobError> {
    let v = str_field(m, key)
        .ok_or_else(|| JobError::bad_input(format!("{shown}: the {what} has no {key}")))?;
    v.parse::<i64>().map_err(|_| {
        JobError::bad_input(format!(
            "{shown}: the {what}'s {key} {v:?} is not an integer"
        ))
    })
}

/// A MOBAC `<customMapSource>` at `path` (`shown` names it in errors).
pub fn read_basemap(path: &Path, shown: &str) -> Result<Option<Basemap>, JobError> {
    let Some(xml) = text(path)? else {
        return Ok(None);
    };
    let Some(doc) = parse(&xml, "", shown)? else {
        return Ok(None);
    };
    if doc.root != "customMapSource" {
        return Ok(None);
    }
    let what = "map source";
    let t = &doc.texts;
    let need = |k: &str| {
        str_field(t, k)
            .ok_or_else(|| JobError::bad_input(format!("{shown}: the {what} has no <{k}>")))
    };
    let name = need("name")?;
    if name.chars().count() > 64 {
        return Err(JobError::bad_input(format!(
            "{shown}: the map source's name is over 64 characters, CloudTAK's limit"
        )));
    }
    let url = need("url")?;
    let tile_type = need("tileType")?;
    let format = match tile_type
        .trim_start_matches("image/")
        .to_ascii_lowercase()
        .as_str()
    {
        // CloudTAK's worker sends `jpg` as it is, which its API refuses.
        "jpg" | "jpeg" => "jpeg".to_owned(),
        f @ ("png" | "webp" | "mvt" | "pbf") => {
            if f == "pbf" {
                "mvt".into()
            } else {
                f.to_owned()
            }
        }
        other => {
            return Err(JobError::bad_input(format!(
                "{shown}: tileType {other:?} is not one CloudTAK serves (png, jpeg, webp, mvt)"
            )));
        }
    };
    let lower = url.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        return Err(JobError::bad_input(format!(
            "{shown}: the map source's url must be http(s)"
        )));
    }
    Ok(Some(Basemap {
        name,
        url,
        min_zoom: int_field(t, "minZoom", shown, what)?,
        max_zoom: int_field(t, "maxZoom", shown, what)?,
        format,
    }))
}

/// An `<iconset>` at `path`.
pub fn read_iconset(path: &Path, shown: &str) -> Result<Option<Iconset>, JobError> {
    let Some(xml) = text(path)? else {
        return Ok(None);
    };
    let Some(doc) = parse(&xml, "icon", shown)? else {
        return Ok(None);
    };
    if doc.root != "iconset" {
        return Ok(None);
    }
    let what = "iconset";
    let a = &doc.attrs;
    let uid = str_field(a, "uid")
        .ok_or_else(|| JobError::bad_input(format!("{shown}: the iconset has no uid")))?;
    let name = str_field(a, "name")
        .ok_or_else(|| JobError::bad_input(format!("{shown}: the iconset has no name")))?;
    let version = int_field(a, "version", shown, what)?;
    let mut defaults = Map::new();
    for k in [
        "default_group",
        "default_friendly",
        "default_hostile",
        "default_neutral",
        "default_unknown",
    ] {
        if let Some(v) = str_field(a, k) {
            defaults.insert(k.to_owned(), Value::String(v));
        }
    }
    let icons: Vec<(String, Option<String>)> = doc
        .children
        .iter()
        .filter_map(|c| str_field(c, "name").map(|n| (n, str_field(c, "type2525b"))))
        .collect();
    if icons.is_empty() {
        return Err(JobError::bad_input(format!(
            "{shown}: the iconset lists no <icon name=…>"
        )));
    }
    Ok(Some(Iconset {
        uid,
        name,
        version,
        skip_resize: str_field(a, "skip_resize").is_some_and(|v| v == "true" || v == "1"),
        defaults,
        icons,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn map_sources() {
        let f = file(
            r#"<?xml version="1.0"?><customMapSource><name>Topo</name><minZoom>0</minZoom><maxZoom>17</maxZoom><tileType>JPG</tileType><url>https://t.example/{$z}/{$x}/{$y}.jpg?a=1&amp;b=2</url></customMapSource>"#,
        );
        let b = read_basemap(f.path(), "topo.xml").unwrap().unwrap();
        assert_eq!(b.name, "Topo");
        assert_eq!(b.url, "https://t.example/{$z}/{$x}/{$y}.jpg?a=1&b=2");
        assert_eq!((b.min_zoom, b.max_zoom), (0, 17));
        assert_eq!(b.format, "jpeg");
        let f = file(
            "<customMapSource><name>X</name><minZoom>0</minZoom><maxZoom>z</maxZoom><tileType>png</tileType><url>http://a/{z}</url></customMapSource>",
        );
        let e = read_basemap(f.path(), "x.xml").unwrap_err();
        assert!(
            e.message.contains("maxZoom \"z\" is not an integer"),
            "{}",
            e.message
        );
        let f = file(
            "<customMapSource><name>X</name><minZoom>0</minZoom><maxZoom>1</maxZoom><tileType>png</tileType></customMapSource>",
        );
        assert!(
            read_basemap(f.path(), "x.xml")
                .unwrap_err()
                .message
                .contains("<url>")
        );
        let f = file("<kml/>");
        assert_eq!(read_basemap(f.path(), "x.xml").unwrap(), None);
        let f = file("not xml <<<");
        assert_eq!(read_basemap(f.path(), "x.xml").unwrap(), None);
    }

    #[test]
    fn iconsets() {
        let f = file(
            r#"<iconset uid="6d78-1" version="3" name="Tools" default_group="General" skip_resize="false"><icon name="General/a.png" type2525b="a-f-G"/><icon name="b.svg"/></iconset>"#,
        );
        let i = read_iconset(f.path(), "iconset.xml").unwrap().unwrap();
        assert_eq!(
            (i.uid.as_str(), i.name.as_str(), i.version),
            ("6d78-1", "Tools", 3)
        );
        assert_eq!(i.defaults["default_group"], "General");
        assert_eq!(
            i.icons,
            vec![
                ("General/a.png".to_owned(), Some("a-f-G".to_owned())),
                ("b.svg".to_owned(), None)
            ]
        );
        let f = file(r#"<iconset uid="u" version="x" name="n"><icon name="a.png"/></iconset>"#);
        assert!(read_iconset(f.path(), "i.xml").is_err());
        let f = file(r#"<iconset uid="u" version="1" name="n"></iconset>"#);
        assert!(read_iconset(f.path(), "i.xml").is_err());
        let f = file(r#"<!DOCTYPE x [<!ENTITY a "b">]><iconset/>"#);
        assert!(read_iconset(f.path(), "i.xml").is_err());
    }
}
