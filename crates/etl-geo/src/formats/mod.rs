//! Reading features from an input, one reader per format, behind one iterator type.

pub(crate) mod cot;
pub(crate) mod csv;
pub(crate) mod flatgeobuf;
pub(crate) mod geojson;
pub(crate) mod geoparquet;
pub(crate) mod gpkg;
pub(crate) mod gpx;
pub mod kml;
pub(crate) mod shapefile;
pub(crate) mod wkb;
pub(crate) mod xml;

use std::fmt;
use std::io::BufRead;

use crate::cancel::Cancel;
use crate::crs::{Crs, reproject};
use crate::error::ReadError;
use crate::feature::Feature;
use crate::format::Format;
use crate::repair::{Repairs, repair};
use crate::validate::validate;

/// The largest single record (an NDJSON line, one feature of a FeatureCollection, a
/// CSV row) a reader accepts. Past it reading fails instead of exhausting memory.
pub const MAX_RECORD_BYTES: usize = 256 * 1024 * 1024;

/// One record of an input: a feature or the reason it was rejected.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// 1-based line where the record starts: the NDJSON line, the line of a
    /// FeatureCollection member's opening `{`, the physical CSV line.
    pub line: u64,
    /// 0-based index among all records of the input, accepted and rejected alike, so
    /// that a resumed run can skip ordinals below its checkpoint.
    pub ordinal: u64,
    /// Index of the record's layer among the layers its reader declares (0 for
    /// single-layer formats; GPX has waypoints, routes and tracks).
    pub layer: u32,
    pub feature: Result<Feature, Rejection>,
    /// What was done to make the feature's geometry valid (empty for most records): a
    /// degenerate geometry is repaired into the nearest valid one, never rejected for it.
    pub repairs: Repairs,
}

/// Why one record was not accepted: one human-readable line.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    pub reason: String,
}

impl Rejection {
    /// Builds a rejection, folding any line breaks so the reason stays one line.
    pub fn new(reason: impl Into<String>) -> Self {
        let mut reason = reason.into();
        if reason.contains(['\n', '\r']) {
            reason = reason.replace(['\n', '\r'], " ");
        }
        Rejection { reason }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

/// The records of one input. After a fatal `Err` the iterator returns `None`.
pub type FeatureSource = Box<dyn Iterator<Item = Result<Record, ReadError>> + Send>;

#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// Deepest JSON nesting accepted (the whole document for a FeatureCollection, one
    /// line for NDJSON; also bounds WKT nesting in CSV). Deeper is a `ReadError` for a
    /// FeatureCollection and a `Rejection` for one NDJSON line, never a stack overflow.
    /// serde_json's own limit of 128 applies on top.
    pub max_json_depth: usize,
    pub csv: CsvOptions,
    /// The longest text one XML element may hold (KML, GPX, CoT, data package manifests).
    /// It also bounds every single XML event (a text node, a tag with its attributes, a
    /// comment, CDATA) to this plus 64 KiB: past that reading stops with an error at the
    /// event's line, before the event is buffered whole. Default 256 MiB.
    pub max_xml_text: usize,
    /// Polled inside long loops within one record (Shapefile ring assembly), so a caller
    /// can stop a read that would otherwise not return for a long time.
    pub cancel: Cancel,
    /// The coordinate system of the input's coordinates (`--s-srs`), for formats that do not
    /// say (GeoJSON, CSV) or to override what they say (a Shapefile's `.prj`, a FlatGeobuf
    /// header). Positions are transformed to WGS 84 before they are validated. KML, GPX
    /// and CoT are WGS 84 by definition and ignore it.
    pub source_crs: Option<Crs>,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            max_json_depth: 64,
            csv: CsvOptions::default(),
            max_xml_text: xml::MAX_XML_TEXT,
            cancel: Cancel::default(),
            source_crs: None,
        }
    }
}

/// CSV column choices; unset fields are detected from the header.
#[derive(Debug, Clone, Default)]
pub struct CsvOptions {
    pub lon: Option<String>,
    pub lat: Option<String>,
    pub wkt: Option<String>,
    pub delimiter: Option<u8>,
}

/// Opens a streaming reader of `format` over `input`. CSV reads its header here, so
/// a CSV without geometry columns fails now; JSON problems surface while iterating.
pub fn open(
    format: Format,
    input: Box<dyn BufRead + Send>,
    opts: &ReadOptions,
) -> Result<FeatureSource, ReadError> {
    Ok(match format {
        Format::GeoJson => Box::new(geojson::GeoJsonReader::new(
            input,
            opts.max_json_depth,
            MAX_RECORD_BYTES,
            opts.source_crs.clone(),
        )),
        Format::GeoJsonSeq => Box::new(geojson::GeoJsonSeqReader::new(
            input,
            opts.max_json_depth,
            MAX_RECORD_BYTES,
            opts.source_crs.clone(),
        )),
        Format::Csv => Box::new(csv::CsvReader::open(input, opts, MAX_RECORD_BYTES)?),
        Format::Kml => kml::open(input, opts)?,
        Format::Gpx => gpx::open(input, opts)?,
        Format::Cot => cot::open(input, opts)?,
        Format::FlatGeobuf => flatgeobuf::open(input, opts)?,
    })
}

/// Repairs a parsed feature's degenerate geometry ([`repair`], noted in `repairs`), then
/// applies [`validate`].
pub(crate) fn accept(mut feature: Feature, repairs: &mut Repairs) -> Result<Feature, Rejection> {
    if let Some(geometry) = &mut feature.geometry {
        repair(geometry, repairs);
        validate(geometry).map_err(Rejection::new)?;
    }
    Ok(feature)
}

/// [`accept`] for a feature whose positions are in `crs` (WGS 84 when `None`): moved to
/// WGS 84 first.
pub(crate) fn accept_in(
    mut feature: Feature,
    crs: Option<&Crs>,
    repairs: &mut Repairs,
) -> Result<Feature, Rejection> {
    if let (Some(crs), Some(geometry)) = (crs, &mut feature.geometry) {
        reproject(geometry, crs).map_err(|e| Rejection::new(e.to_string()))?;
    }
    accept(feature, repairs)
}

/// The coordinate system of a layer that declares none (a Shapefile without `.prj`, a
/// FlatGeobuf header without CRS, a GeoPackage table in srs 0 or -1), from the extent its
/// header gives up front: WGS 84 when the extent fits longitude/latitude, else the layer is
/// refused whole (`what` says which and why it has none: "x.shp has no .prj"), rather than read as degrees with the positions that do not
/// fit rejected one by one. No extent, or a non-finite one: WGS 84, each position checked.
/// (GeoJSON and CSV give no extent before their features, so there each position is checked.)
pub(crate) fn undeclared_crs(what: &str, extent: Option<[f64; 4]>) -> Result<Crs, ReadError> {
    let Some([min_x, min_y, max_x, max_y]) = extent.filter(|e| e.iter().all(|v| v.is_finite()))
    else {
        return Ok(Crs::wgs84());
    };
    let lon = -180.0..=180.0;
    let lat = -90.0..=90.0;
    if lon.contains(&min_x) && lon.contains(&max_x) && lat.contains(&min_y) && lat.contains(&max_y)
    {
        return Ok(Crs::wgs84());
    }
    Err(ReadError::Refused(format!(
        "{what}, and its extent ({min_x}, {min_y}) – ({max_x}, {max_y}) is not \
         longitude/latitude (projected or local coordinates?): give its coordinate system (--s-srs)"
    )))
}

/// Binary attribute values (FlatGeobuf, GeoPackage BLOBs) as standard base64 with padding.
pub(crate) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3).saturating_mul(4));
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The start of `text`, short enough to quote in a one-line message.
pub fn excerpt(text: &str) -> &str {
    const MAX: usize = 60;
    match text.char_indices().nth(MAX) {
        Some((end, _)) => text.get(..end).unwrap_or(text),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected);
        }
    }

    #[test]
    fn rejection_reason_is_one_line() {
        assert_eq!(Rejection::new("a\nb\r\nc").reason, "a b  c");
    }

    #[test]
    fn excerpt_cuts_on_char_boundary() {
        let long = "é".repeat(100);
        assert_eq!(excerpt(&long).chars().count(), 60);
        assert_eq!(excerpt("short"), "short");
    }
}
