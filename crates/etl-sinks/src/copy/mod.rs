//! Row encoding for PostgreSQL `COPY … FROM STDIN` into a table of typed columns,
//! in the text format ([`CopyEncoder::encode`]) or the binary one
//! ([`CopyEncoder::encode_binary`], which spares the server parsing numbers and
//! hex EWKB).
//!
//! This is the hot path of a load: values are written straight into the caller's
//! buffer with no per-row allocation on the success path. Which values a column
//! accepts is decided once, as a [`Cell`], for both formats; they differ only in
//! how an accepted cell is written, so they cannot disagree about which rows are
//! refused.

use std::borrow::Cow;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

use geo_types::Geometry;
use serde_json::Value;

use etl_geo::{Crs, Feature, FeatureId, GeometryJson, excerpt, project, write_ewkb_hex};

mod binary;

pub use binary::{COPY_BINARY_HEADER, COPY_BINARY_TRAILER};

/// The PostgreSQL column types the encoder knows how to fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    SmallInt,
    Integer,
    BigInt,
    Real,
    Double,
    Numeric,
    Boolean,
    Text,
    Json,
    Jsonb,
    Geometry,
    /// Any other type: strings are passed through for PostgreSQL to parse.
    Other,
}

impl ColumnKind {
    /// The kind of an `information_schema.columns.udt_name`.
    pub fn from_pg_type(udt_name: &str) -> ColumnKind {
        match udt_name {
            "int2" => ColumnKind::SmallInt,
            "int4" => ColumnKind::Integer,
            "int8" => ColumnKind::BigInt,
            "float4" => ColumnKind::Real,
            "float8" => ColumnKind::Double,
            "numeric" => ColumnKind::Numeric,
            "bool" => ColumnKind::Boolean,
            "text" | "varchar" | "bpchar" => ColumnKind::Text,
            "json" => ColumnKind::Json,
            "jsonb" => ColumnKind::Jsonb,
            "geometry" => ColumnKind::Geometry,
            _ => ColumnKind::Other,
        }
    }

    /// The type to declare in `CREATE TABLE`.
    pub fn sql_type(&self) -> &'static str {
        match self {
            ColumnKind::SmallInt => "smallint",
            ColumnKind::Integer => "integer",
            ColumnKind::BigInt => "bigint",
            ColumnKind::Real => "real",
            ColumnKind::Double => "double precision",
            ColumnKind::Numeric => "numeric",
            ColumnKind::Boolean => "boolean",
            ColumnKind::Text | ColumnKind::Other => "text",
            ColumnKind::Json => "json",
            ColumnKind::Jsonb => "jsonb",
            ColumnKind::Geometry => "geometry(Geometry,4326)",
        }
    }

    /// The type to declare for a geometry column of `srid`.
    pub fn geometry_sql_type(srid: i32) -> String {
        format!("geometry(Geometry,{srid})")
    }

    /// The kind a new column would get from one sample value; `None` for null.
    pub fn infer(v: &Value) -> Option<ColumnKind> {
        Some(match v {
            Value::Null => return None,
            Value::Bool(_) => ColumnKind::Boolean,
            Value::Number(n) if n.is_i64() => ColumnKind::BigInt,
            Value::Number(_) => ColumnKind::Double,
            Value::String(_) => ColumnKind::Text,
            Value::Array(_) | Value::Object(_) => ColumnKind::Jsonb,
        })
    }

    /// The kind that holds samples of both kinds: the wider integer, a float for
    /// integers mixed with floats, numeric with any number, and jsonb for anything
    /// else that differs.
    pub fn unify(a: ColumnKind, b: ColumnKind) -> ColumnKind {
        use ColumnKind::*;
        let int_rank = |k| match k {
            SmallInt => Some(0),
            Integer => Some(1),
            BigInt => Some(2),
            _ => None,
        };
        match (a, b) {
            _ if a == b => a,
            _ if int_rank(a).is_some() && int_rank(b).is_some() => {
                if int_rank(a) > int_rank(b) {
                    a
                } else {
                    b
                }
            }
            (Numeric, SmallInt | Integer | BigInt | Real | Double)
            | (SmallInt | Integer | BigInt | Real | Double, Numeric) => Numeric,
            (
                SmallInt | Integer | BigInt | Real | Double,
                SmallInt | Integer | BigInt | Real | Double,
            ) => Double,
            _ => Jsonb,
        }
    }

    fn integer_range(self) -> Option<(i64, i64)> {
        match self {
            ColumnKind::SmallInt => Some((i16::MIN.into(), i16::MAX.into())),
            ColumnKind::Integer => Some((i32::MIN.into(), i32::MAX.into())),
            ColumnKind::BigInt => Some((i64::MIN, i64::MAX)),
            _ => None,
        }
    }
}

/// Where a column's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnSource {
    Id,
    Geometry,
    Property(String),
    /// The bigint the caller passes with each row (the record ordinal, for staging tables).
    Ordinal,
}

#[derive(Debug, Clone)]
pub struct CopyColumn {
    pub name: String,
    pub kind: ColumnKind,
    pub source: ColumnSource,
}

/// A value that does not fit its column; the row is not written.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("property {column:?}: {found} does not fit column type {expected}")]
pub struct Conflict {
    pub column: String,
    pub found: String,
    pub expected: String,
}

/// Encodes features as COPY rows, text or binary, for a fixed list of columns.
pub struct CopyEncoder {
    columns: Vec<CopyColumn>,
    /// Per column, where its property sat in the last feature's map. Features of one
    /// input share a key order, so checking that slot first replaces hashing the
    /// name with one string comparison. Atomics keep the encoder shareable.
    property_slots: Vec<AtomicUsize>,
    srid: i32,
    /// The CRS of `srid` when it is not WGS 84: geometries are moved into it as they are
    /// encoded (features are always WGS 84).
    project: Option<Crs>,
}

const NULL: &[u8] = b"\\N";

/// Why a value was refused, described lazily: the description allocates, and most
/// rows never need it.
enum Misfit<'a> {
    Value(&'a Value),
    Id(&'a FeatureId),
    Ordinal(i64),
    Geometry,
    /// A geometry the target CRS cannot take, and why.
    Projection(String),
    Nul,
    /// Binary COPY only, for columns [`CopyEncoder::binary_supported`] excludes.
    NoBinaryForm,
}

impl Misfit<'_> {
    fn describe(&self) -> String {
        match self {
            Misfit::Value(Value::Null) => "null".to_owned(),
            Misfit::Value(Value::Bool(b)) => format!("boolean {b}"),
            Misfit::Value(Value::Number(n)) if n.is_f64() => format!("number {n}"),
            Misfit::Value(Value::Number(n)) => format!("integer {n}"),
            Misfit::Value(Value::String(s)) => format!("string {:?}", excerpt(s)),
            Misfit::Value(Value::Array(_)) => "array".to_owned(),
            Misfit::Value(Value::Object(_)) => "object".to_owned(),
            Misfit::Id(FeatureId::Int(i)) => format!("integer id {i}"),
            Misfit::Id(FeatureId::Str(s)) => format!("string id {:?}", excerpt(s)),
            Misfit::Ordinal(i) => format!("ordinal {i}"),
            Misfit::Geometry => "geometry".to_owned(),
            Misfit::Projection(why) => format!("a geometry it cannot hold ({why})"),
            Misfit::Nul => "string containing NUL".to_owned(),
            Misfit::NoBinaryForm => "a value binary COPY cannot send".to_owned(),
        }
    }
}

/// A non-null value its column accepted, not yet written. Its text form is what
/// text COPY sends for PostgreSQL to parse; binary COPY sends the value the server
/// would have parsed from that text, so both formats store the same thing.
enum Cell<'f> {
    Int(i64),
    /// An integer beyond `i64`, for a floating-point or numeric column.
    UInt(u64),
    /// Finite; for a real column, one `real_from_text` accepts.
    Float(f64),
    Bool(bool),
    /// Free of NUL bytes.
    Text(&'f str),
    Json(Json<'f>),
    /// Already in the CRS of the SRID (moved there when the target is not WGS 84).
    Geometry(Cow<'f, Geometry<f64>>, i32),
}

/// A value written as compact JSON text.
enum Json<'f> {
    Value(&'f Value),
    Id(&'f FeatureId),
    Geometry(&'f Geometry<f64>),
}

impl<'f> Json<'f> {
    fn write(&self, w: impl io::Write) -> serde_json::Result<()> {
        match self {
            Json::Value(v) => serde_json::to_writer(w, v),
            Json::Id(FeatureId::Str(s)) => serde_json::to_writer(w, s),
            Json::Id(FeatureId::Int(i)) => serde_json::to_writer(w, i),
            Json::Geometry(g) => serde_json::to_writer(w, &GeometryJson(g)),
        }
    }

    fn misfit(&self) -> Misfit<'f> {
        match self {
            Json::Value(v) => Misfit::Value(v),
            Json::Id(id) => Misfit::Id(id),
            Json::Geometry(_) => Misfit::Geometry,
        }
    }
}

impl CopyEncoder {
    /// An encoder for WGS 84 geometry columns of `srid` 4326 (or of SRID 0).
    pub fn new(columns: Vec<CopyColumn>, srid: i32) -> Self {
        let property_slots = columns.iter().map(|_| AtomicUsize::new(0)).collect();
        CopyEncoder {
            columns,
            property_slots,
            srid,
            project: None,
        }
    }

    /// An encoder for geometry columns of `srid`, whose CRS is `crs`: every geometry is moved
    /// from WGS 84 into it, and a geometry with a position the CRS cannot take is a conflict
    /// (the row becomes a reject).
    pub fn projecting(columns: Vec<CopyColumn>, srid: i32, crs: Crs) -> Self {
        let mut encoder = CopyEncoder::new(columns, srid);
        encoder.project = (!crs.is_wgs84()).then_some(crs);
        encoder
    }

    /// The SRID geometries are written with.
    pub fn srid(&self) -> i32 {
        self.srid
    }

    pub fn columns(&self) -> &[CopyColumn] {
        &self.columns
    }

    /// Appends one text-format COPY row (terminated by '\n') to `out`. On Err, `out` is left exactly as it was.
    pub fn encode(&self, f: &Feature, ordinal: i64, out: &mut Vec<u8>) -> Result<(), Conflict> {
        let start = out.len();
        for (i, (column, slot)) in self.columns.iter().zip(&self.property_slots).enumerate() {
            if i > 0 {
                out.push(b'\t');
            }
            let written = self
                .cell(column, slot, f, ordinal)
                .and_then(|cell| write_text_field(cell.as_ref(), out));
            if let Err(misfit) = written {
                out.truncate(start);
                return Err(conflict(column, &misfit, self.srid));
            }
        }
        out.push(b'\n');
        Ok(())
    }

    /// Whether every column can be sent in binary: all kinds except numeric and
    /// other, whose values stay text for PostgreSQL to parse, and except a geometry
    /// column filled from a property, whose strings (hex EWKB, WKT, EWKT) only
    /// PostGIS's text input reads.
    pub fn binary_supported(&self) -> bool {
        i16::try_from(self.columns.len()).is_ok()
            && self.columns.iter().all(binary::has_binary_form)
    }

    /// Appends one binary-format COPY tuple to `out` (the stream needs
    /// [`COPY_BINARY_HEADER`] first and [`COPY_BINARY_TRAILER`] last). Accepts and
    /// refuses exactly what [`CopyEncoder::encode`] does, provided
    /// [`CopyEncoder::binary_supported`]; otherwise a value of a text-only column
    /// is refused. On Err, `out` is left exactly as it was.
    pub fn encode_binary(
        &self,
        f: &Feature,
        ordinal: i64,
        out: &mut Vec<u8>,
    ) -> Result<(), Conflict> {
        let start = out.len();
        let Ok(fields) = i16::try_from(self.columns.len()) else {
            return Err(Conflict {
                column: String::new(),
                found: format!("a row of {} columns", self.columns.len()),
                expected: "a binary COPY tuple (at most 32767 fields)".to_owned(),
            });
        };
        out.extend_from_slice(&fields.to_be_bytes());
        for (column, slot) in self.columns.iter().zip(&self.property_slots) {
            let written = self
                .cell(column, slot, f, ordinal)
                .and_then(|cell| binary::write_field(column.kind, cell.as_ref(), out));
            if let Err(misfit) = written {
                out.truncate(start);
                return Err(conflict(column, &misfit, self.srid));
            }
        }
        Ok(())
    }

    /// Decides what `column` holds for this feature: `None` for NULL, or why the
    /// value does not fit. Both formats write exactly the cells this accepts.
    fn cell<'f>(
        &self,
        column: &CopyColumn,
        slot: &AtomicUsize,
        f: &'f Feature,
        ordinal: i64,
    ) -> Result<Option<Cell<'f>>, Misfit<'f>> {
        let kind = column.kind;
        match &column.source {
            ColumnSource::Property(name) => match property(f, name, slot) {
                None => Ok(None),
                Some(v) => value_cell(kind, v),
            },
            ColumnSource::Id => match &f.id {
                None => Ok(None),
                Some(id @ FeatureId::Int(i)) => match kind {
                    ColumnKind::Text
                    | ColumnKind::Real
                    | ColumnKind::Double
                    | ColumnKind::Numeric
                    | ColumnKind::Json
                    | ColumnKind::Jsonb => Ok(Some(Cell::Int(*i))),
                    _ => int_in_range(kind, *i).ok_or(Misfit::Id(id)),
                },
                Some(id @ FeatureId::Str(s)) => match kind {
                    ColumnKind::Text | ColumnKind::Other => text_cell(s),
                    ColumnKind::Jsonb if s.contains('\0') => Err(Misfit::Nul),
                    ColumnKind::Json | ColumnKind::Jsonb => Ok(Some(Cell::Json(Json::Id(id)))),
                    _ => Err(Misfit::Id(id)),
                },
            },
            ColumnSource::Ordinal => match kind {
                ColumnKind::Text
                | ColumnKind::Real
                | ColumnKind::Double
                | ColumnKind::Numeric
                | ColumnKind::Json
                | ColumnKind::Jsonb
                | ColumnKind::Other => Ok(Some(Cell::Int(ordinal))),
                _ => int_in_range(kind, ordinal).ok_or(Misfit::Ordinal(ordinal)),
            },
            ColumnSource::Geometry => match (&f.geometry, kind) {
                (None, _) => Ok(None),
                (Some(g), ColumnKind::Geometry | ColumnKind::Other) => match &self.project {
                    None => Ok(Some(Cell::Geometry(Cow::Borrowed(g), self.srid))),
                    Some(crs) => {
                        let mut moved = g.clone();
                        project(&mut moved, crs).map_err(|e| Misfit::Projection(e.to_string()))?;
                        Ok(Some(Cell::Geometry(Cow::Owned(moved), self.srid)))
                    }
                },
                (Some(g), ColumnKind::Json | ColumnKind::Jsonb) => {
                    Ok(Some(Cell::Json(Json::Geometry(g))))
                }
                (Some(_), _) => Err(Misfit::Geometry),
            },
        }
    }
}

fn conflict(column: &CopyColumn, misfit: &Misfit<'_>, srid: i32) -> Conflict {
    Conflict {
        column: column.name.clone(),
        found: misfit.describe(),
        expected: match column.kind {
            ColumnKind::Geometry => ColumnKind::geometry_sql_type(srid),
            kind => kind.sql_type().to_owned(),
        },
    }
}

fn property<'f>(f: &'f Feature, name: &str, slot: &AtomicUsize) -> Option<&'f Value> {
    // serde_json's map offers no indexed access: positions are reached by walking,
    // which beats hashing the name only while maps are small.
    const WALK_LIMIT: usize = 32;
    let properties = &f.properties;
    let guess = slot.load(Ordering::Relaxed);
    if guess < WALK_LIMIT
        && let Some((key, value)) = properties.iter().nth(guess)
        && key == name
    {
        return Some(value);
    }
    if properties.len() > WALK_LIMIT {
        return properties.get(name);
    }
    let (index, (_, value)) = properties
        .iter()
        .enumerate()
        .find(|(_, (key, _))| *key == name)?;
    slot.store(index, Ordering::Relaxed);
    Some(value)
}

fn value_cell(kind: ColumnKind, v: &Value) -> Result<Option<Cell<'_>>, Misfit<'_>> {
    let misfit = Misfit::Value(v);
    let cell = match (v, kind) {
        (Value::Null, _) => return Ok(None),
        // jsonb rejects \u0000; json stores the text as given and accepts it.
        (_, ColumnKind::Jsonb) if contains_nul(v) => return Err(Misfit::Nul),
        (_, ColumnKind::Json | ColumnKind::Jsonb) => Cell::Json(Json::Value(v)),
        (Value::String(s), ColumnKind::Text | ColumnKind::Other | ColumnKind::Geometry) => {
            return text_cell(s);
        }
        (Value::Bool(b), ColumnKind::Boolean) => Cell::Bool(*b),
        (Value::Number(n), ColumnKind::SmallInt | ColumnKind::Integer | ColumnKind::BigInt) => {
            return n.as_i64().and_then(|i| int_in_range(kind, i)).ok_or(misfit);
        }
        (Value::Number(n), ColumnKind::Real | ColumnKind::Double | ColumnKind::Numeric) => {
            if let Some(i) = n.as_i64() {
                Cell::Int(i)
            } else if let Some(u) = n.as_u64() {
                Cell::UInt(u)
            } else {
                let x = n.as_f64().ok_or(Misfit::Value(v))?;
                if !x.is_finite() || (kind == ColumnKind::Real && real_from_text(x).is_none()) {
                    return Err(misfit);
                }
                Cell::Float(x)
            }
        }
        _ => return Err(misfit),
    };
    Ok(Some(cell))
}

fn int_in_range<'f>(kind: ColumnKind, i: i64) -> Option<Option<Cell<'f>>> {
    let (min, max) = kind.integer_range()?;
    (min..=max).contains(&i).then_some(Some(Cell::Int(i)))
}

/// PostgreSQL text cannot hold NUL bytes.
fn text_cell<'f>(s: &'f str) -> Result<Option<Cell<'f>>, Misfit<'f>> {
    if s.as_bytes().contains(&0) {
        return Err(Misfit::Nul);
    }
    Ok(Some(Cell::Text(s)))
}

/// The `real` PostgreSQL parses from the text COPY sends for `x` (its shortest
/// round-trip decimal, read by a correctly rounding `strtof`), or `None` where
/// that parse fails: the decimal overflows, or underflows to zero.
fn real_from_text(x: f64) -> Option<f32> {
    let r: f32 = ryu::Buffer::new().format_finite(x).parse().ok()?;
    (r.is_finite() && (r != 0.0 || x == 0.0)).then_some(r)
}

fn contains_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || contains_nul(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

/// How a cell's text form is written: escaped for a COPY text field, or as is
/// (the binary format's text-typed fields).
#[derive(Clone, Copy, PartialEq)]
enum TextForm {
    CopyEscaped,
    Raw,
}

fn write_text_field<'f>(cell: Option<&Cell<'f>>, out: &mut Vec<u8>) -> Result<(), Misfit<'f>> {
    match cell {
        None => {
            out.extend_from_slice(NULL);
            Ok(())
        }
        Some(cell) => write_text_form(cell, TextForm::CopyEscaped, out),
    }
}

/// Appends the text PostgreSQL parses `cell` from. Only text and JSON can hold
/// characters COPY escapes.
fn write_text_form<'f>(
    cell: &Cell<'f>,
    form: TextForm,
    out: &mut Vec<u8>,
) -> Result<(), Misfit<'f>> {
    match cell {
        Cell::Int(i) => out.extend_from_slice(itoa::Buffer::new().format(*i).as_bytes()),
        Cell::UInt(u) => out.extend_from_slice(itoa::Buffer::new().format(*u).as_bytes()),
        Cell::Float(x) => out.extend_from_slice(ryu::Buffer::new().format_finite(*x).as_bytes()),
        Cell::Bool(b) => out.push(if *b { b't' } else { b'f' }),
        Cell::Text(s) => match form {
            TextForm::CopyEscaped => push_escaped(out, s.as_bytes()),
            TextForm::Raw => out.extend_from_slice(s.as_bytes()),
        },
        Cell::Json(json) => {
            // Writing to a Vec cannot fail; should serialization fail anyway, the
            // value is refused rather than half written.
            let start = out.len();
            let written = match form {
                TextForm::CopyEscaped => json.write(CopyEscaped(out)),
                TextForm::Raw => json.write(&mut *out),
            };
            if written.is_err() {
                out.truncate(start);
                return Err(json.misfit());
            }
        }
        Cell::Geometry(g, srid) => write_ewkb_hex(g, Some(*srid), out),
    }
    Ok(())
}

/// Appends `bytes` escaped for a COPY text field: backslash, newline, carriage
/// return and tab (the delimiter) are backslash-escaped; other bytes pass through.
fn push_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut plain_from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escaped = match b {
            b'\\' => b'\\',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            _ => continue,
        };
        out.extend_from_slice(bytes.get(plain_from..i).unwrap_or_default());
        out.extend_from_slice(&[b'\\', escaped]);
        plain_from = i + 1;
    }
    out.extend_from_slice(bytes.get(plain_from..).unwrap_or_default());
}

/// Lets serde_json write compact JSON straight into a COPY field.
struct CopyEscaped<'a>(&'a mut Vec<u8>);

impl io::Write for CopyEscaped<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        push_escaped(self.0, buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo_types::point;
    use serde_json::json;

    fn column(name: &str, kind: ColumnKind) -> CopyColumn {
        CopyColumn {
            name: name.to_owned(),
            kind,
            source: ColumnSource::Property(name.to_owned()),
        }
    }

    fn geometry_feature(lon: f64, lat: f64) -> Feature {
        Feature {
            geometry: Some(point!(x: lon, y: lat).into()),
            ..Feature::default()
        }
    }

    #[test]
    fn a_projecting_encoder_writes_positions_in_the_target_crs() {
        let geom = CopyColumn {
            name: "geom".into(),
            kind: ColumnKind::Geometry,
            source: ColumnSource::Geometry,
        };
        let nztm = Crs::from_epsg(2193).unwrap();
        let encoder = CopyEncoder::projecting(vec![geom.clone()], 2193, nztm.clone());
        let mut out = Vec::new();
        encoder
            .encode_binary(&geometry_feature(174.7633, -36.8485), 0, &mut out)
            .unwrap();
        // Tuple: field count (2), length (4), then EWKB: order, type|SRID flag, SRID, x, y.
        let ewkb = &out[6..];
        assert_eq!(&ewkb[5..9], &2193i32.to_le_bytes());
        let x = f64::from_le_bytes(ewkb[9..17].try_into().unwrap());
        let y = f64::from_le_bytes(ewkb[17..25].try_into().unwrap());
        let (lon, lat) = nztm.to_wgs84(x, y).unwrap();
        assert!((lon - 174.7633).abs() < 1e-9 && (lat + 36.8485).abs() < 1e-9);
        assert!((1_700_000.0..1_800_000.0).contains(&x), "easting {x}");

        // Web Mercator cannot hold the pole: the row is refused, naming the column's type.
        let mercator = CopyEncoder::projecting(vec![geom], 3857, Crs::from_epsg(3857).unwrap());
        let mut out = Vec::new();
        let err = mercator
            .encode(&geometry_feature(10.0, 90.0), 0, &mut out)
            .unwrap_err();
        assert!(out.is_empty());
        assert_eq!(err.expected, "geometry(Geometry,3857)");
        assert!(err.found.starts_with("a geometry it cannot hold"), "{err}");
    }

    fn feature(properties: Value) -> Feature {
        Feature {
            id: None,
            geometry: None,
            properties: match properties {
                Value::Object(map) => map,
                _ => serde_json::Map::new(),
            },
        }
    }

    fn encode_one(kind: ColumnKind, v: Value) -> Result<String, Conflict> {
        let encoder = CopyEncoder::new(vec![column("p", kind)], 4326);
        let mut out = b"keep".to_vec();
        let result = encoder.encode(&feature(json!({ "p": v })), 0, &mut out);
        if result.is_err() {
            assert_eq!(out, b"keep", "out must be untouched on error");
        }
        result.map(|()| String::from_utf8(out[4..].to_vec()).unwrap())
    }

    fn conflict(kind: ColumnKind, v: Value) -> String {
        encode_one(kind, v).unwrap_err().found
    }

    #[test]
    fn pg_types() {
        for (udt, kind, sql) in [
            ("int2", ColumnKind::SmallInt, "smallint"),
            ("int4", ColumnKind::Integer, "integer"),
            ("int8", ColumnKind::BigInt, "bigint"),
            ("float4", ColumnKind::Real, "real"),
            ("float8", ColumnKind::Double, "double precision"),
            ("numeric", ColumnKind::Numeric, "numeric"),
            ("bool", ColumnKind::Boolean, "boolean"),
            ("text", ColumnKind::Text, "text"),
            ("varchar", ColumnKind::Text, "text"),
            ("bpchar", ColumnKind::Text, "text"),
            ("json", ColumnKind::Json, "json"),
            ("jsonb", ColumnKind::Jsonb, "jsonb"),
            ("geometry", ColumnKind::Geometry, "geometry(Geometry,4326)"),
            ("uuid", ColumnKind::Other, "text"),
        ] {
            assert_eq!(ColumnKind::from_pg_type(udt), kind);
            assert_eq!(kind.sql_type(), sql);
        }
    }

    #[test]
    fn inference_and_unification() {
        assert_eq!(ColumnKind::infer(&json!(null)), None);
        assert_eq!(ColumnKind::infer(&json!(3)), Some(ColumnKind::BigInt));
        assert_eq!(
            ColumnKind::infer(&json!(u64::MAX)),
            Some(ColumnKind::Double)
        );
        assert_eq!(ColumnKind::infer(&json!(3.5)), Some(ColumnKind::Double));
        assert_eq!(ColumnKind::infer(&json!(true)), Some(ColumnKind::Boolean));
        assert_eq!(ColumnKind::infer(&json!("a")), Some(ColumnKind::Text));
        assert_eq!(ColumnKind::infer(&json!([1])), Some(ColumnKind::Jsonb));
        assert_eq!(ColumnKind::infer(&json!({})), Some(ColumnKind::Jsonb));
        use ColumnKind::*;
        assert_eq!(ColumnKind::unify(BigInt, Double), Double);
        assert_eq!(ColumnKind::unify(Double, BigInt), Double);
        assert_eq!(ColumnKind::unify(Text, Text), Text);
        assert_eq!(ColumnKind::unify(Integer, BigInt), BigInt);
        assert_eq!(ColumnKind::unify(Numeric, SmallInt), Numeric);
        assert_eq!(ColumnKind::unify(BigInt, Text), Jsonb);
        assert_eq!(ColumnKind::unify(Boolean, BigInt), Jsonb);
        assert_eq!(ColumnKind::unify(Json, Jsonb), Jsonb);
    }

    #[test]
    fn text_escaping() {
        assert_eq!(
            encode_one(ColumnKind::Text, json!("a\\b\tc\nd\re\u{1}é")).unwrap(),
            "a\\\\b\\tc\\nd\\re\u{1}é\n"
        );
        assert_eq!(
            encode_one(ColumnKind::Text, json!("\\N")).unwrap(),
            "\\\\N\n"
        );
        assert_eq!(
            encode_one(ColumnKind::Text, json!("\\.")).unwrap(),
            "\\\\.\n"
        );
        assert_eq!(
            encode_one(ColumnKind::Other, json!("(1,2)")).unwrap(),
            "(1,2)\n"
        );
    }

    #[test]
    fn nulls() {
        for kind in [
            ColumnKind::Text,
            ColumnKind::BigInt,
            ColumnKind::Jsonb,
            ColumnKind::Boolean,
        ] {
            assert_eq!(encode_one(kind, json!(null)).unwrap(), "\\N\n");
        }
        let encoder = CopyEncoder::new(vec![column("missing", ColumnKind::Text)], 4326);
        let mut out = Vec::new();
        encoder.encode(&feature(json!({})), 0, &mut out).unwrap();
        assert_eq!(out, b"\\N\n");
    }

    #[test]
    fn integers() {
        assert_eq!(
            encode_one(ColumnKind::SmallInt, json!(-32768)).unwrap(),
            "-32768\n"
        );
        assert_eq!(
            conflict(ColumnKind::SmallInt, json!(32768)),
            "integer 32768"
        );
        assert_eq!(
            encode_one(ColumnKind::Integer, json!(2147483647)).unwrap(),
            "2147483647\n"
        );
        assert_eq!(
            conflict(ColumnKind::Integer, json!(2147483648i64)),
            "integer 2147483648"
        );
        assert_eq!(
            encode_one(ColumnKind::BigInt, json!(i64::MIN)).unwrap(),
            format!("{}\n", i64::MIN)
        );
        assert_eq!(
            conflict(ColumnKind::BigInt, json!(u64::MAX)),
            "integer 18446744073709551615"
        );
        assert_eq!(conflict(ColumnKind::BigInt, json!(1.5)), "number 1.5");
        assert_eq!(conflict(ColumnKind::BigInt, json!(2.0)), "number 2.0");
        assert_eq!(conflict(ColumnKind::Integer, json!("12")), "string \"12\"");
        assert_eq!(conflict(ColumnKind::Integer, json!(true)), "boolean true");
        assert_eq!(conflict(ColumnKind::Integer, json!({"a": 1})), "object");
        assert_eq!(conflict(ColumnKind::Integer, json!([1])), "array");
    }

    #[test]
    fn floats() {
        assert_eq!(
            encode_one(ColumnKind::Double, json!(20.09)).unwrap(),
            "20.09\n"
        );
        assert_eq!(encode_one(ColumnKind::Double, json!(7)).unwrap(), "7\n");
        assert_eq!(
            encode_one(ColumnKind::Double, json!(u64::MAX)).unwrap(),
            "18446744073709551615\n"
        );
        assert_eq!(
            encode_one(ColumnKind::Numeric, json!(1e300)).unwrap(),
            "1e300\n"
        );
        assert_eq!(encode_one(ColumnKind::Real, json!(0.1)).unwrap(), "0.1\n");
        assert_eq!(conflict(ColumnKind::Real, json!(1e300)), "number 1e+300");
        assert_eq!(conflict(ColumnKind::Double, json!("1.5")), "string \"1.5\"");
        assert_eq!(conflict(ColumnKind::Numeric, json!(false)), "boolean false");
        let x = 0.1 + 0.2;
        let text = encode_one(ColumnKind::Double, json!(x)).unwrap();
        assert_eq!(text.trim_end().parse::<f64>().unwrap(), x);
    }

    #[test]
    fn booleans_text_other() {
        assert_eq!(encode_one(ColumnKind::Boolean, json!(true)).unwrap(), "t\n");
        assert_eq!(
            encode_one(ColumnKind::Boolean, json!(false)).unwrap(),
            "f\n"
        );
        assert_eq!(
            conflict(ColumnKind::Boolean, json!("true")),
            "string \"true\""
        );
        assert_eq!(conflict(ColumnKind::Boolean, json!(1)), "integer 1");
        assert_eq!(conflict(ColumnKind::Text, json!(12)), "integer 12");
        assert_eq!(conflict(ColumnKind::Text, json!(false)), "boolean false");
        assert_eq!(conflict(ColumnKind::Text, json!([])), "array");
        assert_eq!(conflict(ColumnKind::Other, json!(1.5)), "number 1.5");
        assert_eq!(
            conflict(ColumnKind::Text, json!("a\u{0}b")),
            "string containing NUL"
        );
        assert_eq!(
            conflict(ColumnKind::Other, json!("\u{0}")),
            "string containing NUL"
        );
    }

    #[test]
    fn json_columns() {
        assert_eq!(
            encode_one(
                ColumnKind::Jsonb,
                json!({"a": "x\ty\\z", "b": [1, 2.5, null]})
            )
            .unwrap(),
            "{\"a\":\"x\\\\ty\\\\\\\\z\",\"b\":[1,2.5,null]}\n"
        );
        assert_eq!(encode_one(ColumnKind::Json, json!("s")).unwrap(), "\"s\"\n");
        assert_eq!(encode_one(ColumnKind::Jsonb, json!(3)).unwrap(), "3\n");
        assert_eq!(
            encode_one(ColumnKind::Jsonb, json!(true)).unwrap(),
            "true\n"
        );
        assert_eq!(
            conflict(ColumnKind::Jsonb, json!({"a": ["\u{0}"]})),
            "string containing NUL"
        );
        assert_eq!(
            encode_one(ColumnKind::Json, json!("\u{0}")).unwrap(),
            "\"\\\\u0000\"\n"
        );
    }

    #[test]
    fn id_geometry_ordinal_sources() {
        let columns = vec![
            CopyColumn {
                name: "id".into(),
                kind: ColumnKind::BigInt,
                source: ColumnSource::Id,
            },
            CopyColumn {
                name: "ord".into(),
                kind: ColumnKind::BigInt,
                source: ColumnSource::Ordinal,
            },
            CopyColumn {
                name: "geom".into(),
                kind: ColumnKind::Geometry,
                source: ColumnSource::Geometry,
            },
            column("name", ColumnKind::Text),
        ];
        let encoder = CopyEncoder::new(columns, 4326);
        assert_eq!(encoder.columns().len(), 4);
        let f = Feature {
            id: Some(FeatureId::Int(42)),
            geometry: Some(point!(x: 1., y: 2.).into()),
            properties: feature(json!({"name": "n"})).properties,
        };
        let mut out = Vec::new();
        encoder.encode(&f, 7, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "42\t7\t0101000020E6100000000000000000F03F0000000000000040\tn\n"
        );

        let mut out = Vec::new();
        encoder.encode(&Feature::default(), 8, &mut out).unwrap();
        assert_eq!(out, b"\\N\t8\t\\N\t\\N\n");

        let string_id = Feature {
            id: Some(FeatureId::Str("a".into())),
            ..Feature::default()
        };
        let mut out = b"x".to_vec();
        let err = encoder.encode(&string_id, 0, &mut out).unwrap_err();
        assert_eq!(
            err,
            Conflict {
                column: "id".into(),
                found: "string id \"a\"".into(),
                expected: "bigint".into()
            }
        );
        assert_eq!(
            err.to_string(),
            "property \"id\": string id \"a\" does not fit column type bigint"
        );
        assert_eq!(out, b"x");
    }

    #[test]
    fn property_order_may_change_between_rows() {
        let encoder = CopyEncoder::new(
            vec![
                column("a", ColumnKind::BigInt),
                column("b", ColumnKind::Text),
            ],
            4326,
        );
        let mut out = Vec::new();
        for props in [
            json!({"a": 1, "b": "x"}),
            json!({"b": "y", "a": 2}),
            json!({"z": 0, "a": 3}),
            json!({"b": "w", "a": 4}),
        ] {
            encoder.encode(&feature(props), 0, &mut out).unwrap();
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "1\tx\n2\ty\n3\t\\N\n4\tw\n"
        );
    }

    #[test]
    fn id_kinds() {
        let encode = |kind, id| {
            let encoder = CopyEncoder::new(
                vec![CopyColumn {
                    name: "id".into(),
                    kind,
                    source: ColumnSource::Id,
                }],
                4326,
            );
            let mut out = Vec::new();
            encoder
                .encode(
                    &Feature {
                        id: Some(id),
                        ..Feature::default()
                    },
                    0,
                    &mut out,
                )
                .map(|()| String::from_utf8(out).unwrap())
                .map_err(|c| c.found)
        };
        assert_eq!(
            encode(ColumnKind::Text, FeatureId::Int(-5)),
            Ok("-5\n".into())
        );
        assert_eq!(
            encode(ColumnKind::Text, FeatureId::Str("a\tb".into())),
            Ok("a\\tb\n".into())
        );
        assert_eq!(
            encode(ColumnKind::Integer, FeatureId::Int(1 << 40)),
            Err("integer id 1099511627776".into())
        );
        assert_eq!(
            encode(ColumnKind::Integer, FeatureId::Str("1".into())),
            Err("string id \"1\"".into())
        );
        assert_eq!(
            encode(ColumnKind::Jsonb, FeatureId::Str("\u{0}".into())),
            Err("string containing NUL".into())
        );
        assert_eq!(
            encode(ColumnKind::Json, FeatureId::Str("a\tb".into())),
            Ok("\"a\\\\tb\"\n".into())
        );
        assert_eq!(
            encode(ColumnKind::Jsonb, FeatureId::Str("x".into())),
            Ok("\"x\"\n".into())
        );
        assert_eq!(
            encode(ColumnKind::Boolean, FeatureId::Int(1)),
            Err("integer id 1".into())
        );
        assert_eq!(
            encode(ColumnKind::Text, FeatureId::Str("\u{0}".into())),
            Err("string containing NUL".into())
        );
    }

    #[test]
    fn ordinal_and_geometry_kinds() {
        let encode = |kind, source, f: &Feature, ordinal| {
            let encoder = CopyEncoder::new(
                vec![CopyColumn {
                    name: "c".into(),
                    kind,
                    source,
                }],
                3857,
            );
            let mut out = Vec::new();
            encoder
                .encode(f, ordinal, &mut out)
                .map(|()| String::from_utf8(out).unwrap())
                .map_err(|c| c.found)
        };
        let none = Feature::default();
        assert_eq!(
            encode(ColumnKind::SmallInt, ColumnSource::Ordinal, &none, 40000),
            Err("ordinal 40000".into())
        );
        assert_eq!(
            encode(ColumnKind::Text, ColumnSource::Ordinal, &none, 40000),
            Ok("40000\n".into())
        );
        assert_eq!(
            encode(ColumnKind::Boolean, ColumnSource::Ordinal, &none, 1),
            Err("ordinal 1".into())
        );
        let point = Feature {
            geometry: Some(point!(x: 1., y: 2.).into()),
            ..Feature::default()
        };
        assert_eq!(
            encode(ColumnKind::Jsonb, ColumnSource::Geometry, &point, 0),
            Ok("{\"type\":\"Point\",\"coordinates\":[1.0,2.0]}\n".into())
        );
        assert_eq!(
            encode(ColumnKind::Text, ColumnSource::Geometry, &point, 0),
            Err("geometry".into())
        );
        assert!(
            encode(ColumnKind::Other, ColumnSource::Geometry, &point, 0)
                .unwrap()
                .starts_with("0101000020110F0000")
        );
    }
}
