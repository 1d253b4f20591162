//! Reads one ESRI Shapefile layer (`NAME.shp` with `NAME.dbf`, `NAME.prj`,
//! `NAME.cpg` beside it; the extensions in any case) record by record.
//!
//! - **Geometry** (`.shp`): Point, MultiPoint, PolyLine (one part → LineString,
//!   several → MultiLineString), Polygon (rings grouped by winding order: clockwise
//!   rings are shells, counter-clockwise rings holes of the smallest shell that
//!   contains them; one shell → Polygon, several → MultiPolygon) and their Z and M
//!   variants, whose Z and M are dropped; MultiPatch (triangle strips, fans and rings) as a
//!   MultiPolygon, as GDAL reads it (see [`multipatch`]). Null shapes and shapes without parts
//!   give a null geometry. Unclosed rings are closed (a repair, see `crate::repair`). Unknown
//!   shape types and parts that point outside their record reject that record.
//! - **`.shx`** is not needed: records are read in file order. When there is one, its header
//!   says how many records there are (as GDAL reads them), and bytes past them in the `.shp`
//!   (zero padding some writers leave) are not read; a `.shx` that is not a shapefile index
//!   is ignored.
//! - **Attributes** (`.dbf`): see [`dbf`] for the field types. A missing `.dbf`
//!   gives features without properties. Records marked deleted in the `.dbf` are
//!   skipped with their shape. The `.dbf` and `.shp` must hold the same number of
//!   records, else reading fails where they part.
//! - **Encoding**: from the `.cpg` (UTF-8, ISO-8859-1/Latin-1, Windows-1252 and the code
//!   pages of [`codepages`]; any other code page is refused, naming it; a `.cpg` that names
//!   no code page at all, such as an HTML page, is ignored as GDAL does); without one, from the
//!   DBF language driver id (Windows-1252 for 0x03/0x57), else UTF-8, where a value that is
//!   not valid UTF-8 is read as Windows-1252.
//! - **Coordinate system** (`.prj`): any the EPSG registry can take to WGS 84 (see
//!   `crate::crs`); one that cannot be read is refused, naming it. **Without a `.prj`** (or
//!   with an empty one, or one holding no coordinate system definition at all, such as an
//!   HTML page, which GDAL ignores too) the header's bounding box decides: inside
//!   longitude/latitude → WGS 84, anything else → the layer is refused whole (a local grid is
//!   never read as degrees; see `formats::undeclared_crs`).
//! - **Records**: [`Record::line`] is the 1-based record number in the `.shp`.
//!   Features have no id. A truncated `.shp` or `.dbf` is a fatal [`ReadError`].

mod codepages;
mod dbf;
mod multipatch;
mod rings;
mod shp;

use std::fs::{self, File};
use std::io::{BufReader, ErrorKind, Read};
use std::path::{Path, PathBuf};

use serde_json::Map;

use self::dbf::{DbfReader, Encoding};
use self::rings::Ticker;
use self::shp::{ShapeError, ShpReader};
use crate::cancel::{Cancel, cancelled};
use crate::crs::Crs;
use crate::error::{Position, ReadError};
use crate::feature::Feature;
use crate::formats::{FeatureSource, ReadOptions, Record, Rejection, accept_in, undeclared_crs};
use crate::repair::Repairs;

const BUFFER: usize = 256 * 1024;

/// Opens the layer whose `.shp` is at `shp` (siblings `.shx`, `.dbf`, `.prj`, `.cpg` beside it).
pub(crate) fn open_layer(shp: &Path, opts: &ReadOptions) -> Result<FeatureSource, ReadError> {
    // The .shx says how many records there are, as GDAL reads them: anything past them in
    // the .shp (zero padding some writers leave, a stray byte) is not a record.
    let records = match sibling(shp, "shx") {
        None => None,
        Some(shx) => {
            let mut head = Vec::with_capacity(100);
            File::open(&shx)?.take(100).read_to_end(&mut head)?;
            shp::shx_records(&head)
        }
    };
    let file = File::open(shp)?;
    let shp_reader = ShpReader::open(Box::new(BufReader::with_capacity(BUFFER, file)), records)
        .map_err(ReadError::Refused)?;
    let prj = match sibling(shp, "prj") {
        Some(prj) => Some((read_small_text(&prj)?, file_name(&prj))),
        None => None,
    };
    let crs = match (&opts.source_crs, prj) {
        (Some(given), _) => given.clone(),
        (None, Some((text, name))) if is_crs_definition(&text) => Crs::from_definition(&text)
            .map_err(|e| {
                ReadError::Refused(format!("unsupported coordinate system in {name}: {e}"))
            })?,
        // No .prj, an empty one, or one that holds no coordinate system definition at all
        // (an HTML page saved under that name): the header's extent decides.
        (None, prj) => {
            let what = match prj {
                None => format!("{} has no .prj", file_name(shp)),
                Some((_, name)) => format!("{name} holds no coordinate system"),
            };
            undeclared_crs(&what, Some(shp_reader.extent()))?
        }
    };
    let encoding = match sibling(shp, "cpg") {
        None => None,
        Some(cpg) => {
            let text = read_small_text(&cpg)?;
            if !is_code_page_name(&text) {
                // Not a code page name at all (an HTML page saved under that name): ignored,
                // as GDAL does, and the DBF header decides.
                None
            } else {
                Some(Encoding::from_cpg(&text).ok_or_else(|| {
                ReadError::Refused(format!(
                    "unsupported code page in {}: {} (supported: UTF-8, ISO-8859-1, Windows-1252)",
                    file_name(&cpg),
                    crate::formats::excerpt(text.trim())
                ))
            })?)
            }
        }
    };
    let dbf = match sibling(shp, "dbf") {
        None => None,
        Some(path) => {
            let file = File::open(&path)?;
            let reader = DbfReader::open(
                Box::new(BufReader::with_capacity(BUFFER, file)),
                &file_name(&path),
                encoding,
            )
            .map_err(ReadError::Refused)?;
            Some(reader)
        }
    };
    Ok(Box::new(ShapefileReader {
        shp: shp_reader,
        dbf,
        crs,
        cancel: opts.cancel.clone(),
        number: 0,
        ordinal: 0,
        done: false,
    }))
}

struct ShapefileReader {
    shp: ShpReader,
    dbf: Option<DbfReader>,
    crs: Crs,
    /// Polled while a record's rings are assembled.
    cancel: Cancel,
    /// Records read from the `.shp` so far, deleted ones included.
    number: u64,
    /// Records returned so far.
    ordinal: u64,
    done: bool,
}

impl ShapefileReader {
    /// Ends reading with an error at record `line` (1-based).
    fn fail(&mut self, line: u64, message: String) -> Option<Result<Record, ReadError>> {
        self.done = true;
        Some(Err(ReadError::invalid(
            Position {
                line: line.max(1),
                column: 1,
            },
            message,
        )))
    }
}

impl Iterator for ShapefileReader {
    type Item = Result<Record, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            let mut repairs = Repairs::NONE;
            let geometry = match self.shp.next_record() {
                Err(message) => return self.fail(self.number + 1, message),
                Ok(None) => {
                    self.done = true;
                    if let Some(dbf) = &mut self.dbf
                        && !matches!(dbf.next_record(), Ok(None))
                    {
                        let (count, number) = (dbf.record_count(), self.number);
                        return self.fail(
                            number + 1,
                            format!("the .dbf has {count} records but the .shp only {number}"),
                        );
                    }
                    return None;
                }
                Ok(Some(record)) => {
                    match shp::geometry(
                        record.content,
                        &mut Ticker::new(&self.cancel),
                        &mut repairs,
                    ) {
                        Ok(geometry) => Ok(geometry),
                        Err(ShapeError::Reject(reason)) => Err(reason),
                        Err(ShapeError::Cancelled) => {
                            self.done = true;
                            return Some(Err(cancelled()));
                        }
                    }
                }
            };
            self.number += 1;
            let properties = match &mut self.dbf {
                None => Map::new(),
                Some(dbf) => match dbf.next_record() {
                    Err(message) => return self.fail(self.number, message),
                    Ok(None) => {
                        let count = dbf.record_count();
                        return self.fail(
                            self.number,
                            format!("the .shp has more records than the {count} of the .dbf"),
                        );
                    }
                    Ok(Some(None)) => continue, // deleted
                    Ok(Some(Some(properties))) => properties,
                },
            };
            let feature = geometry.map_err(Rejection::new).and_then(|geometry| {
                // Assembled in the file's own coordinates, then moved to WGS 84.
                accept_in(
                    Feature {
                        id: None,
                        geometry,
                        properties,
                    },
                    Some(&self.crs),
                    &mut repairs,
                )
            });
            let record = Record {
                line: self.number,
                ordinal: self.ordinal,
                layer: 0,
                feature,
                repairs,
            };
            self.ordinal += 1;
            return Some(Ok(record));
        }
    }
}

/// Whether a `.prj` holds a coordinate system definition at all (WKT, PROJJSON, a PROJ string
/// or a code), rather than something else saved under that name. Empty is not one.
fn is_crs_definition(text: &str) -> bool {
    let t = text.trim_start_matches('\u{feff}').trim_start();
    let keyword = t.bytes().take_while(u8::is_ascii_alphabetic).count();
    (keyword > 0
        && t.as_bytes().get(keyword..).is_some_and(|rest| {
            matches!(
                rest.iter().find(|b| !b.is_ascii_whitespace()),
                Some(b'[' | b'(')
            )
        }))
        || t.starts_with(['{', '+'])
        || ["EPSG:", "ESRI:", "URN:", "HTTP"]
            .iter()
            .any(|p| t.get(..p.len()).is_some_and(|h| h.eq_ignore_ascii_case(p)))
}

/// Whether a `.cpg` can name a code page at all: a short run of letters, digits, spaces and
/// `-_.` (`UTF-8`, `1252`, `ISO 8859-1`), not an HTML page saved under that name.
fn is_code_page_name(text: &str) -> bool {
    let t = text.trim_start_matches('\u{feff}').trim();
    t.len() <= 40
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.'))
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// The file beside `shp` with the same stem and extension `ext` in any case (the
/// stem compared exactly first, then ignoring case).
fn sibling(shp: &Path, ext: &str) -> Option<PathBuf> {
    let stem = shp.file_stem()?.to_string_lossy().into_owned();
    let dir = match shp.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut loose = None;
    for entry in fs::read_dir(&dir).ok()?.flatten() {
        let path = entry.path();
        let (Some(s), Some(e)) = (path.file_stem(), path.extension()) else {
            continue;
        };
        if !e.to_string_lossy().eq_ignore_ascii_case(ext) || !path.is_file() {
            continue;
        }
        let s = s.to_string_lossy();
        if s == stem {
            return Some(path);
        }
        if loose.is_none() && s.to_lowercase() == stem.to_lowercase() {
            loose = Some(path);
        }
    }
    loose
}

/// Reads a `.prj` or `.cpg` (at most 64 KiB; longer is refused).
fn read_small_text(path: &Path) -> Result<String, ReadError> {
    const MAX: u64 = 64 * 1024;
    let len = fs::metadata(path)?.len();
    if len > MAX {
        return Err(ReadError::Refused(format!(
            "{} is {len} bytes long, more than a coordinate system or code page file can be",
            file_name(path)
        )));
    }
    match fs::read(path) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e.into()),
    }
}
