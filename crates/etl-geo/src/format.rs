//! Input format detection, by file name or by content.

use crate::formats::csv::{GeometryColumns, detect_delimiter, split_header_line};

/// An input format a reader exists for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One GeoJSON document: a FeatureCollection, a single Feature or a bare geometry.
    GeoJson,
    /// A GeoJSON text sequence: one Feature per line, or RFC 8142 RS-separated.
    GeoJsonSeq,
    /// CSV or TSV with longitude/latitude or WKT columns.
    Csv,
    /// KML (the `kml` root element).
    Kml,
    /// GPX 1.0/1.1: layers `waypoints`, `routes`, `tracks`.
    Gpx,
    /// TAK Cursor-on-Target XML: one `event` or several (an `events` root or a sequence).
    Cot,
    /// FlatGeobuf.
    FlatGeobuf,
}

/// The layer names of formats with fixed layers, in [`Record::layer`](crate::Record) order.
pub const GPX_LAYERS: [&str; 3] = ["waypoints", "routes", "tracks"];

const RS: u8 = 0x1E;

impl Format {
    /// The format a file name's extension (case-insensitive) stands for.
    pub fn from_path(path: &str) -> Option<Format> {
        let ext = extension(path)?;
        Some(match ext.as_str() {
            "geojson" | "json" => Format::GeoJson,
            "geojsonl" | "geojsonld" | "ndjson" | "geojsons" | "jsonl" => Format::GeoJsonSeq,
            "csv" | "tsv" => Format::Csv,
            "kml" => Format::Kml,
            "gpx" => Format::Gpx,
            "cot" => Format::Cot,
            "fgb" => Format::FlatGeobuf,
            _ => return None,
        })
    }

    /// The format of content starting with `prefix` (up to the first 64 KiB).
    ///
    /// A JSON object whose line is followed by another object (or any RS byte
    /// first) is a sequence; a FeatureCollection, a multi-line object or an object
    /// that is the whole prefix is one document; a header line with
    /// longitude/latitude or WKT columns is CSV.
    pub fn sniff(prefix: &[u8]) -> Option<Format> {
        if prefix.starts_with(b"fgb\x03") {
            return Some(Format::FlatGeobuf);
        }
        let text = prefix.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(prefix);
        let start = text.iter().position(|b| !b.is_ascii_whitespace())?;
        let text = text.get(start..)?;
        match text.first()? {
            &RS => Some(Format::GeoJsonSeq),
            b'{' => Some(sniff_json_object(text)),
            b'<' => sniff_xml(text),
            _ => sniff_csv(text),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Format::GeoJson => "geojson",
            Format::GeoJsonSeq => "geojsonseq",
            Format::Csv => "csv",
            Format::Kml => "kml",
            Format::Gpx => "gpx",
            Format::Cot => "cot",
            Format::FlatGeobuf => "flatgeobuf",
        }
    }

    /// The layers a reader of this format declares, when fixed by the format; empty means
    /// one layer named after the input.
    pub fn layers(&self) -> &'static [&'static str] {
        match self {
            Format::Gpx => &GPX_LAYERS,
            _ => &[],
        }
    }
}

/// The lower-cased extension of the last path segment.
pub(crate) fn extension(path: &str) -> Option<String> {
    let name = path.rsplit(['/', '\\']).next().unwrap_or(path);
    let (stem, ext) = name.rsplit_once('.')?;
    if stem.is_empty() || ext.is_empty() {
        return None;
    }
    Some(ext.to_ascii_lowercase())
}

fn sniff_json_object(text: &[u8]) -> Format {
    let first = FirstObject::scan(text);
    if first.top_type == Some(b"FeatureCollection".as_slice()) {
        return Format::GeoJson;
    }
    let Some(end) = first.end else {
        // Cut off by the prefix: a compact object that is not a collection or a
        // geometry is a long NDJSON line (its "type" may come after the prefix);
        // anything else is one big document.
        let is_geometry = first.top_type.is_some_and(|t| t != b"Feature".as_slice());
        return if first.multi_line || first.has_features || is_geometry {
            Format::GeoJson
        } else {
            Format::GeoJsonSeq
        };
    };
    let rest = text.get(end.saturating_add(1)..).unwrap_or_default();
    let same_line = rest
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\r'))
        .map_or(&[][..], |i| rest.get(i..).unwrap_or_default());
    if same_line.first() != Some(&b'\n') {
        return Format::GeoJson;
    }
    match same_line.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') | Some(&RS) => Format::GeoJsonSeq,
        _ => Format::GeoJson,
    }
}

/// What a quick scan of the first JSON object reveals.
struct FirstObject<'a> {
    /// Index of its closing brace, if within the prefix.
    end: Option<usize>,
    /// The top-level `"type"` string, raw.
    top_type: Option<&'a [u8]>,
    /// A top-level `"features"` member was seen.
    has_features: bool,
    multi_line: bool,
}

impl<'a> FirstObject<'a> {
    fn scan(text: &'a [u8]) -> Self {
        let mut found = FirstObject {
            end: None,
            top_type: None,
            has_features: false,
            multi_line: false,
        };
        let mut depth = 0usize;
        let mut last_key: Option<&[u8]> = None;
        let mut type_value_next = false;
        let mut i = 0usize;
        while let Some(&b) = text.get(i) {
            match b {
                b'"' => {
                    let start = i.saturating_add(1);
                    let mut j = start;
                    loop {
                        match text.get(j) {
                            None => return found,
                            Some(b'\\') => j = j.saturating_add(2),
                            Some(b'"') => break,
                            Some(_) => j = j.saturating_add(1),
                        }
                    }
                    let content = text.get(start..j).unwrap_or_default();
                    if depth == 1 {
                        if type_value_next {
                            found.top_type = Some(content);
                            type_value_next = false;
                        } else {
                            last_key = Some(content);
                        }
                    }
                    i = j;
                }
                b':' if depth == 1 => {
                    type_value_next = last_key == Some(b"type".as_slice());
                    found.has_features |= last_key == Some(b"features".as_slice());
                    last_key = None;
                }
                b',' if depth == 1 => {
                    type_value_next = false;
                    last_key = None;
                }
                b'{' | b'[' => {
                    depth = depth.saturating_add(1);
                    type_value_next = false;
                }
                b'}' | b']' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        found.end = Some(i);
                        return found;
                    }
                }
                b'\n' => found.multi_line = true,
                _ => {}
            }
            i = i.saturating_add(1);
        }
        found
    }
}

/// The root element of an XML document decides: `kml`, `gpx`, `event`/`events` (CoT).
/// Only the prolog (declaration, comments, processing instructions, a DOCTYPE) may come
/// before it; a DOCTYPE is allowed here so that the reader, not the sniffer, refuses it by name.
fn sniff_xml(text: &[u8]) -> Option<Format> {
    let qname = xml_root(text)?;
    let local = qname.rsplit(|&b| b == b':').next().unwrap_or(qname);
    match local {
        b"kml" => Some(Format::Kml),
        b"gpx" => Some(Format::Gpx),
        b"event" | b"events" => Some(Format::Cot),
        _ => None,
    }
}

/// The qualified name of the root element, past the prolog; `None` when `text` ends first.
fn xml_root(text: &[u8]) -> Option<&[u8]> {
    let mut rest = text;
    loop {
        let start = rest.iter().position(|b| !b.is_ascii_whitespace())?;
        rest = rest.get(start..)?;
        if rest.starts_with(b"<?") {
            let end = find(rest, b"?>")?;
            rest = rest.get(end.saturating_add(2)..)?;
        } else if rest.starts_with(b"<!--") {
            let end = find(rest, b"-->")?;
            rest = rest.get(end.saturating_add(3)..)?;
        } else if rest.starts_with(b"<!") {
            // A DOCTYPE, possibly with an internal subset in brackets.
            let end = match (
                rest.iter().position(|&b| b == b'['),
                rest.iter().position(|&b| b == b'>'),
            ) {
                (Some(open), Some(gt)) if open < gt => find(rest, b"]>")?.saturating_add(2),
                (_, Some(gt)) => gt.saturating_add(1),
                _ => return None,
            };
            rest = rest.get(end..)?;
        } else if rest.starts_with(b"<") {
            let name = rest.get(1..)?;
            let len = name
                .iter()
                .position(|b| b.is_ascii_whitespace() || matches!(b, b'>' | b'/'))
                .unwrap_or(name.len());
            return name.get(..len);
        } else {
            return None;
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// What the start of an input that no reader recognises looks like, for the
/// "unsupported input format: …" message.
pub fn describe_unknown(prefix: &[u8]) -> String {
    let text = prefix.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(prefix);
    let start = text
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(text.len());
    let text = text.get(start..).unwrap_or_default();
    if text.is_empty() {
        return "an empty file".to_owned();
    }
    if text.first() == Some(&b'<') {
        return match xml_root(text) {
            Some(name) if !name.is_empty() => {
                let shown: String = String::from_utf8_lossy(name).chars().take(40).collect();
                format!("XML with root element <{shown}>")
            }
            _ => "XML whose root element does not start in its first 64 KiB".to_owned(),
        };
    }
    if text.first() == Some(&b'{') || text.first() == Some(&b'[') {
        return "JSON that is not GeoJSON".to_owned();
    }
    let head = text.get(..text.len().min(16)).unwrap_or_default();
    if head
        .iter()
        .all(|b| b.is_ascii_graphic() || *b == b' ' || *b == b',' || *b == b'\t')
    {
        let line: String = text
            .iter()
            .take_while(|&&b| b != b'\n' && b != b'\r')
            .take(60)
            .map(|&b| char::from(b))
            .collect();
        return format!("text starting {line:?}");
    }
    let hex: Vec<String> = head.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!("binary data starting with bytes {}", hex.join(" "))
}

fn sniff_csv(text: &[u8]) -> Option<Format> {
    let line = text.split(|&b| b == b'\n').next()?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = std::str::from_utf8(line).ok()?;
    if line.contains('\0') {
        return None;
    }
    let fields = split_header_line(line, detect_delimiter(line.as_bytes()));
    GeometryColumns::detect(&fields).map(|_| Format::Csv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_xml_is_named_by_its_root_element_past_the_prolog() {
        assert_eq!(
            describe_unknown(
                b"<?xml version=\"1.0\"?>\n<!-- made by hand -->\n<osm version=\"0.6\">"
            ),
            "XML with root element <osm>"
        );
        assert_eq!(
            describe_unknown(b"<?xml version=\"1.0\"?>\n<!-- never closed"),
            "XML whose root element does not start in its first 64 KiB"
        );
        assert_eq!(
            describe_unknown(b"<foo:bar x=\"1\"/>"),
            "XML with root element <foo:bar>"
        );
    }

    #[test]
    fn by_extension() {
        let cases = [
            ("a/b/roads.GeoJSON", Some(Format::GeoJson)),
            ("x.json", Some(Format::GeoJson)),
            ("x.geojsonl", Some(Format::GeoJsonSeq)),
            ("x.geojsonld", Some(Format::GeoJsonSeq)),
            ("x.NDJSON", Some(Format::GeoJsonSeq)),
            ("x.geojsons", Some(Format::GeoJsonSeq)),
            ("s3://bucket/x.jsonl", Some(Format::GeoJsonSeq)),
            ("pois.csv", Some(Format::Csv)),
            ("pois.TSV", Some(Format::Csv)),
            ("pois.csv.gz", None),
            ("dir.csv/file", None),
            (".csv", None),
            ("noext", None),
        ];
        for (path, expected) in cases {
            assert_eq!(Format::from_path(path), expected, "{path}");
        }
    }

    #[test]
    fn names() {
        assert_eq!(Format::GeoJson.name(), "geojson");
        assert_eq!(Format::GeoJsonSeq.name(), "geojsonseq");
        assert_eq!(Format::Csv.name(), "csv");
    }

    #[test]
    fn by_content() {
        let line = r#"{"type":"Feature","properties":{"a":"}{"},"geometry":null}"#;
        let cases: Vec<(Vec<u8>, Option<Format>)> = vec![
            (format!("{line}\n{line}\n").into_bytes(), Some(Format::GeoJsonSeq)),
            (format!("\u{feff}  {line}\r\n\n{line}").into_bytes(), Some(Format::GeoJsonSeq)),
            (format!("\x1e{line}\n\x1e{line}\n").into_bytes(), Some(Format::GeoJsonSeq)),
            (format!("{line}\n").into_bytes(), Some(Format::GeoJson)),
            (
                br#"{"type":"FeatureCollection","features":[]}"#.to_vec(),
                Some(Format::GeoJson),
            ),
            (
                b"{\n  \"type\": \"FeatureCollection\",\n  \"features\": [\n    {\"type\":\"Feature\"}\n  ]\n}\n".to_vec(),
                Some(Format::GeoJson),
            ),
            (
                br#"{"features":[{"type":"Feature","geometry":null}],"type":"FeatureCollection"}"#.to_vec(),
                Some(Format::GeoJson),
            ),
            // Cut off inside the first object.
            (br#"{"type":"Feature","geometry":{"type":"Polygon","coordinates":[[[0,0],"#.to_vec(), Some(Format::GeoJsonSeq)),
            (b"{\"type\":\"FeatureCollection\",\"features\":[{\"type\":\"Feature\",".to_vec(), Some(Format::GeoJson)),
            (b"{\n\"type\":\"Feature\",\n\"geometry\":{".to_vec(), Some(Format::GeoJson)),
            (br#"{"properties":{"a":"#.to_vec(), Some(Format::GeoJsonSeq)),
            (br#"{"features":[{"type":"Feature","#.to_vec(), Some(Format::GeoJson)),
            (br#"{"type":"MultiPolygon","coordinates":[[[0,0],"#.to_vec(), Some(Format::GeoJson)),
            (b"name,lon,lat\nx,1,2\n".to_vec(), Some(Format::Csv)),
            (b"\xef\xbb\xbf\"id\";\"WKT\"\r\n1;POINT(1 2)".to_vec(), Some(Format::Csv)),
            (b"id\tx\ty\n".to_vec(), Some(Format::Csv)),
            (b"a,b,c\n1,2,3\n".to_vec(), None),
            (b"[1,2]".to_vec(), None),
            (b"   \n ".to_vec(), None),
            (b"".to_vec(), None),
            (b"\x00\x01lon,lat".to_vec(), None),
        ];
        for (prefix, expected) in cases {
            assert_eq!(
                Format::sniff(&prefix),
                expected,
                "{}",
                String::from_utf8_lossy(&prefix)
            );
        }
    }
}
