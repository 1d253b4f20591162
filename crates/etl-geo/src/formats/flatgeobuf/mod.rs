//! Reads FlatGeobuf (version 3) as a stream: the header, then the spatial index
//! skipped without seeking, then one size-prefixed feature at a time into a reused
//! buffer. Every header and feature is verified as a FlatBuffer before it is read,
//! and all property and coordinate access is bounds-checked, so corrupt input is an
//! error, never a panic or an unbounded allocation (a feature may be at most
//! [`MAX_RECORD_BYTES`], the header 10 MiB).
//!
//! - **Geometry**: Point, MultiPoint, LineString, MultiLineString, Polygon,
//!   MultiPolygon, GeometryCollection; Triangle → Polygon, TIN and PolyhedralSurface
//!   → MultiPolygon. Z, M, T and TM are dropped. Curves (CircularString,
//!   CompoundCurve, CurvePolygon, MultiCurve, MultiSurface, Curve, Surface) reject
//!   the record. A feature without geometry, or an empty Point, has a null geometry.
//! - **Properties** in the order the feature stores them; a column a feature does not
//!   store is left out. Integers and doubles → JSON numbers (Float via its shortest
//!   decimal form; NaN/∞ → `null`), Bool → bool, String → string, Json → the parsed
//!   JSON value (kept as a string when it does not parse), DateTime → its ISO 8601
//!   string as stored, **Binary → a standard base64 string (with padding)**.
//!   Columns declared per feature override the header's.
//! - **Coordinate system** from the header: any the EPSG registry can take to WGS 84 (see
//!   `crate::crs`), others → [`ReadError::Refused`] naming the code. A header without one: its
//!   envelope decides (longitude/latitude → WGS 84; anything else → refused whole, see
//!   `formats::undeclared_crs`); no envelope → WGS 84, each position checked.
//! - **Count**: a header feature count > 0 is trusted (trailing bytes are ignored, a
//!   file ending early is truncated); a count of 0 means read to the end.
//! - **Records**: [`Record::line`] is the 1-based feature number; features have no id.
//!   Fatal errors carry the feature number as their line and name the byte offset.

use std::io::{self, BufRead, Read};

use flatgeobuf as fgb;
use geo_types::{
    Coord, Geometry, GeometryCollection, LineString, MultiLineString, MultiPoint, MultiPolygon,
    Point, Polygon,
};
use serde_json::{Map, Number, Value};

use crate::crs::Crs;
use crate::error::{Position, ReadError};
use crate::feature::Feature;
use crate::formats::{
    FeatureSource, MAX_RECORD_BYTES, ReadOptions, Record, Rejection, accept_in, undeclared_crs,
};
use crate::repair::{Repairs, close_ring};

const MAX_HEADER_BYTES: usize = 10 * 1024 * 1024;
/// Deepest nesting of geometry collections accepted.
const MAX_GEOMETRY_DEPTH: usize = 32;

/// Opens a FlatGeobuf stream: reads and checks the header and skips the index.
pub(crate) fn open(
    mut input: Box<dyn BufRead + Send>,
    opts: &ReadOptions,
) -> Result<FeatureSource, ReadError> {
    let start = Position { line: 1, column: 1 };
    let mut magic = [0u8; 8];
    let got = read_full(&mut input, &mut magic)?;
    if got < 8 || &magic[0..3] != b"fgb" || &magic[4..7] != b"fgb" {
        return Err(ReadError::Refused(
            "not a FlatGeobuf file: it does not start with the fgb signature".into(),
        ));
    }
    if magic[3] != 3 {
        return Err(ReadError::Refused(format!(
            "FlatGeobuf version {} is not supported (only version 3)",
            magic[3]
        )));
    }
    let mut size = [0u8; 4];
    if read_full(&mut input, &mut size)? < 4 {
        return Err(ReadError::syntax(
            start,
            "FlatGeobuf file is truncated inside its header",
        ));
    }
    let header_size = u32::from_le_bytes(size) as usize;
    if !(8..=MAX_HEADER_BYTES).contains(&header_size) {
        return Err(ReadError::invalid(
            start,
            format!(
                "FlatGeobuf header size {header_size} is out of range (8 to {MAX_HEADER_BYTES} bytes)"
            ),
        ));
    }
    let mut header_buf = Vec::with_capacity(header_size + 4);
    header_buf.extend_from_slice(&size);
    (&mut input)
        .take(header_size as u64)
        .read_to_end(&mut header_buf)?;
    if header_buf.len() < header_size + 4 {
        return Err(ReadError::syntax(
            start,
            format!(
                "FlatGeobuf file is truncated inside its header ({} of {header_size} bytes)",
                header_buf.len() - 4
            ),
        ));
    }
    let header = fgb::size_prefixed_root_as_header(&header_buf).map_err(|e| {
        ReadError::syntax(
            start,
            format!("FlatGeobuf header is corrupt: {}", one_line(&e.to_string())),
        )
    })?;
    let crs = match &opts.source_crs {
        Some(given) => given.clone(),
        None => match header_crs(&header)? {
            Some(crs) => crs,
            None => {
                let envelope = header
                    .envelope()
                    .and_then(|e| (e.len() >= 4).then(|| [e.get(0), e.get(1), e.get(2), e.get(3)]));
                undeclared_crs("the FlatGeobuf header has no coordinate system", envelope)?
            }
        },
    };
    let columns = columns(header.columns().into_iter().flat_map(|v| v.iter()));
    let geometry_type = header.geometry_type();
    let count = header.features_count();
    let node_size = header.index_node_size();
    let mut offset = 12 + header_size as u64;
    if node_size > 0 && count > 0 {
        let index = index_size(count, node_size).ok_or_else(|| {
            ReadError::invalid(
                start,
                format!(
                    "FlatGeobuf index of {count} features with node size {node_size} is invalid"
                ),
            )
        })?;
        let skipped = io::copy(&mut (&mut input).take(index), &mut io::sink())?;
        if skipped < index {
            return Err(ReadError::syntax(
                start,
                format!(
                    "FlatGeobuf file is truncated inside its spatial index (byte {})",
                    offset + skipped
                ),
            ));
        }
        offset += index;
    }
    Ok(Box::new(FgbReader {
        input,
        columns,
        geometry_type,
        crs,
        count,
        number: 0,
        offset,
        buf: Vec::new(),
        done: false,
    }))
}

#[derive(Debug, Clone)]
struct Column {
    name: String,
    kind: fgb::ColumnType,
}

fn columns<'a>(list: impl Iterator<Item = fgb::Column<'a>>) -> Vec<Column> {
    list.map(|c| Column {
        name: c.name().to_owned(),
        kind: c.type_(),
    })
    .collect()
}

/// Size in bytes of a packed Hilbert R-tree index of `count` items (40-byte nodes).
fn index_size(count: u64, node_size: u16) -> Option<u64> {
    if node_size < 2 {
        return None;
    }
    let node_size = u64::from(node_size);
    // As the reference `calcTreeSize`: a do-while, so one item has a root above it.
    let mut n = count;
    let mut nodes = n;
    loop {
        n = n.div_ceil(node_size);
        nodes = nodes.checked_add(n)?;
        if n <= 1 {
            break;
        }
    }
    nodes.checked_mul(40)
}

/// The coordinate system the header names; `None` when it names none.
fn header_crs(header: &fgb::Header<'_>) -> Result<Option<Crs>, ReadError> {
    let Some(c) = header.crs() else {
        return Ok(None);
    };
    let org = c.org().unwrap_or("EPSG");
    let code = c.code();
    let refuse = |what: String| {
        let name = c.name().map(|n| format!(" ({n})")).unwrap_or_default();
        ReadError::Refused(format!(
            "unsupported coordinate system in the FlatGeobuf header: {what}{name}"
        ))
    };
    let definition = if code != 0 {
        if org.eq_ignore_ascii_case("OGC") && code == 84 {
            return Ok(Some(Crs::wgs84()));
        }
        if !org.eq_ignore_ascii_case("EPSG") {
            return Err(refuse(format!("{org}:{code}")));
        }
        format!("EPSG:{code}")
    } else if let Some(s) = c.code_string().filter(|s| !s.is_empty()) {
        if s.bytes().all(|b| b.is_ascii_digit()) {
            format!("{org}:{s}")
        } else {
            s.to_string()
        }
    } else {
        match c.wkt().filter(|w| !w.trim().is_empty()) {
            Some(wkt) => wkt.to_string(),
            None => return Ok(None),
        }
    };
    Crs::from_definition(&definition)
        .map(Some)
        .map_err(|e| refuse(e.to_string()))
}

struct FgbReader {
    input: Box<dyn BufRead + Send>,
    columns: Vec<Column>,
    geometry_type: fgb::GeometryType,
    crs: Crs,
    /// Declared feature count; 0 = unknown.
    count: u64,
    /// Features read so far.
    number: u64,
    /// Byte offset of the next feature.
    offset: u64,
    buf: Vec<u8>,
    done: bool,
}

impl FgbReader {
    fn fail(&mut self, error: ReadError) -> Option<Result<Record, ReadError>> {
        self.done = true;
        Some(Err(error))
    }

    fn at(&self) -> Position {
        Position {
            line: self.number + 1,
            column: 1,
        }
    }

    /// Reads the next feature into `buf`; `Ok(false)` at the end.
    fn read_feature(&mut self) -> Result<bool, ReadError> {
        let at = self.at();
        if self.count > 0 && self.number >= self.count {
            return Ok(false);
        }
        let mut size = [0u8; 4];
        let got = read_full(&mut self.input, &mut size)?;
        if got == 0 {
            if self.count > 0 {
                return Err(ReadError::syntax(
                    at,
                    format!(
                        "FlatGeobuf file is truncated: it ends at byte {} after {} of {} features",
                        self.offset, self.number, self.count
                    ),
                ));
            }
            return Ok(false);
        }
        if got < 4 {
            return Err(ReadError::syntax(
                at,
                format!(
                    "FlatGeobuf file is truncated inside the size of feature {} at byte {}",
                    self.number + 1,
                    self.offset
                ),
            ));
        }
        let len = u32::from_le_bytes(size) as usize;
        if len > MAX_RECORD_BYTES {
            return Err(ReadError::invalid(
                at,
                format!(
                    "FlatGeobuf feature {} at byte {} is {len} bytes, more than the {MAX_RECORD_BYTES} allowed",
                    self.number + 1,
                    self.offset
                ),
            ));
        }
        self.buf.clear();
        self.buf.extend_from_slice(&size);
        let read = (&mut self.input)
            .take(len as u64)
            .read_to_end(&mut self.buf)?;
        if read < len {
            return Err(ReadError::syntax(
                at,
                format!(
                    "FlatGeobuf file is truncated inside feature {} at byte {} ({read} of {len} bytes)",
                    self.number + 1,
                    self.offset
                ),
            ));
        }
        Ok(true)
    }
}

impl Iterator for FgbReader {
    type Item = Result<Record, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.read_feature() {
            Err(e) => return self.fail(e),
            Ok(false) => {
                self.done = true;
                return None;
            }
            Ok(true) => {}
        }
        let at = self.at();
        let offset = self.offset;
        let mut repairs = Repairs::NONE;
        let converted = convert(
            &self.buf,
            &self.columns,
            self.geometry_type,
            &Crs::wgs84(),
            &mut repairs,
        );
        self.offset += self.buf.len() as u64;
        self.number += 1;
        let feature = match converted {
            Err(message) => {
                return self.fail(ReadError::invalid(
                    at,
                    format!(
                        "FlatGeobuf feature {} at byte {offset} is corrupt: {message}",
                        at.line
                    ),
                ));
            }
            // Decoded in the file's own coordinates, then moved to WGS 84.
            Ok(feature) => feature.and_then(|f| accept_in(f, Some(&self.crs), &mut repairs)),
        };
        Some(Ok(Record {
            line: at.line,
            ordinal: at.line - 1,
            layer: 0,
            feature,
            repairs,
        }))
    }
}

/// Decodes one size-prefixed feature. The outer `Err` is fatal (the buffer is not a
/// valid feature); the inner one rejects the feature.
fn convert(
    buf: &[u8],
    header_columns: &[Column],
    geometry_type: fgb::GeometryType,
    crs: &Crs,
    repairs: &mut Repairs,
) -> Result<Result<Feature, Rejection>, String> {
    let feature = fgb::size_prefixed_root_as_feature(buf).map_err(|e| one_line(&e.to_string()))?;
    let own_columns;
    let columns = match feature.columns() {
        Some(list) => {
            own_columns = columns(list.iter());
            &own_columns
        }
        None => header_columns,
    };
    let properties = match feature.properties() {
        Some(bytes) => properties(bytes.bytes(), columns)?,
        None => Map::new(),
    };
    let geometry = match feature.geometry() {
        None => Ok(None),
        Some(g) => geometry(&g, geometry_type, crs, 0, repairs),
    };
    Ok(geometry.map_err(Rejection::new).map(|geometry| Feature {
        id: None,
        geometry,
        properties,
    }))
}

fn take<'a>(bytes: &'a [u8], offset: &mut usize, n: usize) -> Result<&'a [u8], String> {
    let end = offset.checked_add(n).filter(|&e| e <= bytes.len());
    match end.and_then(|e| bytes.get(*offset..e)) {
        Some(slice) => {
            *offset += n;
            Ok(slice)
        }
        None => Err(format!(
            "a property value runs past the end of the properties ({} bytes)",
            bytes.len()
        )),
    }
}

fn array<const N: usize>(bytes: &[u8], offset: &mut usize) -> Result<[u8; N], String> {
    let mut a = [0u8; N];
    a.copy_from_slice(take(bytes, offset, N)?);
    Ok(a)
}

fn properties(bytes: &[u8], columns: &[Column]) -> Result<Map<String, Value>, String> {
    let mut map = Map::with_capacity(columns.len());
    let mut at = 0usize;
    // Like the reference reader, tolerate one trailing byte.
    while at + 1 < bytes.len() {
        let index = usize::from(u16::from_le_bytes(array(bytes, &mut at)?));
        let column = columns.get(index).ok_or_else(|| {
            format!(
                "a property refers to column {index} but there are {} columns",
                columns.len()
            )
        })?;
        let value = match column.kind {
            fgb::ColumnType::Byte => Value::from(i8::from_le_bytes(array(bytes, &mut at)?)),
            fgb::ColumnType::UByte => Value::from(u8::from_le_bytes(array(bytes, &mut at)?)),
            fgb::ColumnType::Bool => Value::Bool(array::<1>(bytes, &mut at)?[0] != 0),
            fgb::ColumnType::Short => Value::from(i16::from_le_bytes(array(bytes, &mut at)?)),
            fgb::ColumnType::UShort => Value::from(u16::from_le_bytes(array(bytes, &mut at)?)),
            fgb::ColumnType::Int => Value::from(i32::from_le_bytes(array(bytes, &mut at)?)),
            fgb::ColumnType::UInt => Value::from(u32::from_le_bytes(array(bytes, &mut at)?)),
            fgb::ColumnType::Long => Value::from(i64::from_le_bytes(array(bytes, &mut at)?)),
            fgb::ColumnType::ULong => Value::from(u64::from_le_bytes(array(bytes, &mut at)?)),
            fgb::ColumnType::Float => {
                let f = f32::from_le_bytes(array(bytes, &mut at)?);
                let shortest = ryu::Buffer::new().format(f).parse::<f64>().ok();
                shortest
                    .and_then(Number::from_f64)
                    .map_or(Value::Null, Value::Number)
            }
            fgb::ColumnType::Double => Number::from_f64(f64::from_le_bytes(array(bytes, &mut at)?))
                .map_or(Value::Null, Value::Number),
            fgb::ColumnType::String
            | fgb::ColumnType::Json
            | fgb::ColumnType::DateTime
            | fgb::ColumnType::Binary => {
                let len = u32::from_le_bytes(array(bytes, &mut at)?) as usize;
                let raw = take(bytes, &mut at, len)?;
                match column.kind {
                    fgb::ColumnType::Binary => Value::String(crate::formats::base64(raw)),
                    fgb::ColumnType::Json => {
                        serde_json::from_slice::<Value>(raw).unwrap_or_else(|_| {
                            Value::String(String::from_utf8_lossy(raw).into_owned())
                        })
                    }
                    _ => Value::String(String::from_utf8_lossy(raw).into_owned()),
                }
            }
            other => return Err(format!("column {index} has unknown type {}", other.0)),
        };
        map.insert(column.name.clone(), value);
    }
    Ok(map)
}

/// The coordinates of one FlatGeobuf geometry.
struct Xy<'a, 'g> {
    g: &'g fgb::Geometry<'a>,
    crs: &'g Crs,
}

impl Xy<'_, '_> {
    fn points(&self) -> usize {
        self.g.xy().map_or(0, |v| v.len() / 2)
    }

    /// Positions `start..end`, checked by the caller to be within [`Xy::points`], in WGS 84;
    /// an error for a position the coordinate system cannot transform.
    fn coords(&self, start: usize, end: usize) -> Result<Vec<Coord<f64>>, String> {
        let Some(xy) = self.g.xy() else {
            return Ok(Vec::new());
        };
        let end = end.min(xy.len() / 2);
        (start..end)
            .map(|i| {
                let (x, y) = self
                    .crs
                    .to_wgs84(xy.get(2 * i), xy.get(2 * i + 1))
                    .map_err(|e| e.to_string())?;
                Ok(Coord { x, y })
            })
            .collect()
    }

    /// The position ranges the `ends` array splits the coordinates into (one range
    /// for all positions when there are no ends).
    fn parts(&self) -> Result<Vec<(usize, usize)>, String> {
        let g = self.g;
        let n = self.points();
        let Some(ends) = g.ends().filter(|e| !e.is_empty()) else {
            return Ok(if n == 0 { Vec::new() } else { vec![(0, n)] });
        };
        let mut parts = Vec::with_capacity(ends.len());
        let mut start = 0usize;
        for end in ends.iter() {
            let end = end as usize;
            if end < start || end > n {
                return Err(format!(
                    "part end {end} is outside the {n} positions of the geometry"
                ));
            }
            parts.push((start, end));
            start = end;
        }
        Ok(parts)
    }
}

fn polygon(xy: &Xy<'_, '_>, repairs: &mut Repairs) -> Result<Polygon<f64>, String> {
    let mut rings = Vec::new();
    for (s, e) in xy.parts()? {
        let mut ring = xy.coords(s, e)?;
        close_ring(&mut ring, repairs);
        rings.push(LineString(ring));
    }
    let mut rings = rings.into_iter();
    let exterior = rings.next().unwrap_or_else(|| LineString(Vec::new()));
    Ok(Polygon::new(exterior, rings.collect()))
}

fn geometry(
    g: &fgb::Geometry<'_>,
    declared: fgb::GeometryType,
    crs: &Crs,
    depth: usize,
    repairs: &mut Repairs,
) -> Result<Option<Geometry<f64>>, String> {
    use fgb::GeometryType as T;
    if depth > MAX_GEOMETRY_DEPTH {
        return Err(format!(
            "geometry collections nested deeper than {MAX_GEOMETRY_DEPTH}"
        ));
    }
    let kind = if declared == T::Unknown {
        g.type_()
    } else {
        declared
    };
    let xy = Xy { g, crs };
    let parts = || {
        g.parts()
            .map(|p| p.iter().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    Ok(Some(match kind {
        T::Point => match xy.coords(0, xy.points().min(1))?.first() {
            Some(&c) => Geometry::Point(Point(c)),
            None => return Ok(None),
        },
        T::MultiPoint => Geometry::MultiPoint(MultiPoint(
            xy.coords(0, xy.points())?.into_iter().map(Point).collect(),
        )),
        T::LineString => Geometry::LineString(LineString(xy.coords(0, xy.points())?)),
        T::MultiLineString => Geometry::MultiLineString(MultiLineString(
            xy.parts()?
                .into_iter()
                .map(|(s, e)| xy.coords(s, e).map(LineString))
                .collect::<Result<_, _>>()?,
        )),
        T::Polygon | T::Triangle => Geometry::Polygon(polygon(&xy, repairs)?),
        T::TIN => {
            let mut triangles = Vec::new();
            for (s, e) in xy.parts()? {
                let mut ring = xy.coords(s, e)?;
                close_ring(&mut ring, repairs);
                triangles.push(Polygon::new(LineString(ring), Vec::new()));
            }
            Geometry::MultiPolygon(MultiPolygon(triangles))
        }
        T::MultiPolygon | T::PolyhedralSurface => {
            let mut polygons = Vec::new();
            for (i, part) in parts().iter().enumerate() {
                let part_xy = Xy { g: part, crs };
                polygons.push(polygon(&part_xy, repairs).map_err(|m| format!("polygon {i}: {m}"))?);
            }
            Geometry::MultiPolygon(MultiPolygon(polygons))
        }
        T::GeometryCollection => {
            let mut members = Vec::new();
            for part in parts() {
                if let Some(member) = geometry(&part, T::Unknown, crs, depth + 1, repairs)? {
                    members.push(member);
                }
            }
            Geometry::GeometryCollection(GeometryCollection(members))
        }
        other => {
            return Err(format!(
                "{} geometries are not supported",
                other.variant_name().unwrap_or("unknown")
            ));
        }
    }))
}

/// Reads until `buf` is full or the input ends; returns the number of bytes read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_size_matches_reference() {
        // 179 features, node size 16: 179 + 12 + 1 nodes of 40 bytes.
        assert_eq!(index_size(179, 16), Some((179 + 12 + 1) * 40));
        assert_eq!(index_size(1, 16), Some(80));
        assert_eq!(index_size(5, 1), None);
        assert_eq!(index_size(u64::MAX, 2), None);
    }
}
