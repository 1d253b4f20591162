//! Writes features as GeoParquet 1.1 to any `Write + Send` sink, streaming.
//!
//! - **Geometry**: the column `geometry`, WKB (little-endian, 2D), nullable. The `geo`
//!   metadata is version 1.1.0 with `encoding: "WKB"`, the `geometry_types` written and the
//!   `bbox` of the whole file; `crs` is left out, which means OGC:CRS84 (what every feature
//!   tak-etl reads is in).
//! - **Properties**: typed columns inferred from the first [`SAMPLE_FEATURES`] features (or
//!   [`SAMPLE_BYTES`] of them), as [`super::infer`] says. After that the schema is fixed, and
//!   nothing is dropped: **a key outside the schema, and a value that does not fit its
//!   column's type, go to the JSON text column `properties_extra`** (an object per row of
//!   just those keys; the column is null where there are none, and the typed column is null
//!   where the value went there). A reserved name (`geometry`, the id column,
//!   `properties_extra`) used as a property also goes there. An integer in a double column
//!   is written exactly when within ±2^53 (it reads back as a double: `5` → `5.0`); a larger
//!   one goes to `properties_extra`. A key absent from a feature is a null in its column, and
//!   reads back as a `null` property.
//! - **Feature ids**: when the sample has ids, an `id` column (`fid`, `feature_id` or
//!   `_feature_id` if a property takes the name) of int64 when the sampled ids are all
//!   integers, else of strings (integer ids written as their decimal text). A string id after
//!   an int64 id column was chosen cannot be stored: that feature is refused with
//!   [`GeoParquetError::Rejected`], for the caller to count and list.
//! - **`tak-etl` metadata** names the id and overflow columns, so our reader gives back the
//!   feature ids and merges `properties_extra` into the properties; other readers see plain
//!   columns.
//! - **Layout**: record batches of at most [`BATCH_FEATURES`] features (or [`BATCH_BYTES`]),
//!   row groups of at most [`ROW_GROUP_ROWS`] rows or [`ROW_GROUP_BYTES`] encoded bytes,
//!   zstd compression. Memory is bounded by the sample, one batch and one row group.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use geo_types::{Coord, Geometry};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use serde_json::{Map, Value, json};

use super::infer::{self, Column, Kind};
use super::metadata::{GEO_KEY, TAK_KEY, TakMetadata};
use crate::feature::{Feature, FeatureId};

/// Features buffered to infer the schema from.
pub const SAMPLE_FEATURES: usize = 65_536;
/// … or this many bytes of them (estimated), whichever comes first.
pub const SAMPLE_BYTES: usize = 64 << 20;
/// Features per record batch handed to the Parquet writer.
pub const BATCH_FEATURES: usize = 8192;
/// … or this many bytes of them (estimated).
pub const BATCH_BYTES: usize = 32 << 20;
/// Most rows per row group.
pub const ROW_GROUP_ROWS: usize = 65_536;
/// Most encoded bytes per row group.
pub const ROW_GROUP_BYTES: usize = 128 << 20;
/// The geometry column's name.
pub const GEOMETRY_COLUMN: &str = "geometry";
/// The overflow column's name.
pub const EXTRA_COLUMN: &str = "properties_extra";
const ID_NAMES: [&str; 4] = ["id", "fid", "feature_id", "_feature_id"];

/// Why writing failed.
#[derive(Debug, thiserror::Error)]
pub enum GeoParquetError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("Arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// This feature cannot be written (nothing of it was); the writer can go on.
    #[error("{0}")]
    Rejected(String),
}

/// The columns fixed once the sample is in.
struct Plan {
    schema: SchemaRef,
    columns: Vec<Column>,
    /// Each column's position in `columns`, by name.
    index: HashMap<String, usize>,
    /// `Some(true)` for an int64 id column, `Some(false)` for strings.
    id: Option<(String, bool)>,
}

enum State<W: Write + Send> {
    Sampling(W),
    Writing {
        writer: Box<ArrowWriter<W>>,
        plan: Plan,
    },
    Failed,
}

/// Streams features into a GeoParquet file; [`GeoParquetWriter::finish`] writes the footer
/// and returns the sink (without it the file is incomplete).
pub struct GeoParquetWriter<W: Write + Send> {
    state: State<W>,
    pending: Vec<Feature>,
    pending_bytes: usize,
    bbox: Option<[f64; 4]>,
    types: BTreeSet<&'static str>,
    written: u64,
    sample_features: usize,
}

impl<W: Write + Send> GeoParquetWriter<W> {
    pub fn new(sink: W) -> Self {
        Self::with_sample(sink, SAMPLE_FEATURES)
    }

    /// A writer that fixes its schema after `features` features (tests use a small sample).
    pub(crate) fn with_sample(sink: W, features: usize) -> Self {
        GeoParquetWriter {
            sample_features: features.max(1),
            state: State::Sampling(sink),
            pending: Vec::new(),
            pending_bytes: 0,
            bbox: None,
            types: BTreeSet::new(),
            written: 0,
        }
    }

    /// Features written (or buffered to be).
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Writes one feature. A geometry with a non-finite coordinate, or a string id after an
    /// int64 id column was chosen, is [`GeoParquetError::Rejected`] and not written.
    pub fn write(&mut self, f: &Feature) -> Result<(), GeoParquetError> {
        if let State::Failed = self.state {
            return Err(failed_earlier());
        }
        if let Some(g) = &f.geometry
            && !finite(g)
        {
            return Err(GeoParquetError::Rejected(
                "geometry has a non-finite coordinate".into(),
            ));
        }
        if let State::Writing {
            plan: Plan {
                id: Some((_, true)),
                ..
            },
            ..
        } = &self.state
            && let Some(FeatureId::Str(s)) = &f.id
        {
            return Err(GeoParquetError::Rejected(format!(
                "feature id {:?} is a string, but the ids of the first features were integers and made the id column int64",
                crate::formats::excerpt(s)
            )));
        }
        if let Some(g) = &f.geometry {
            self.types.insert(type_name(g));
            extend_bbox(&mut self.bbox, g);
        }
        self.pending_bytes = self.pending_bytes.saturating_add(estimate(f));
        self.pending.push(f.clone());
        self.written = self.written.saturating_add(1);
        let full = match self.state {
            State::Sampling(_) => {
                self.pending.len() >= self.sample_features || self.pending_bytes >= SAMPLE_BYTES
            }
            _ => self.pending.len() >= BATCH_FEATURES || self.pending_bytes >= BATCH_BYTES,
        };
        if full {
            self.flush_pending()?;
        }
        Ok(())
    }

    /// Writes what is buffered and the footer with the `geo` metadata; returns the sink.
    pub fn finish(mut self) -> Result<W, GeoParquetError> {
        self.flush_pending()?;
        let state = std::mem::replace(&mut self.state, State::Failed);
        let State::Writing { mut writer, plan } = state else {
            return Err(failed_earlier());
        };
        writer.append_key_value_metadata(KeyValue::new(GEO_KEY.to_owned(), self.geo_json()));
        let tak = TakMetadata {
            id_column: plan.id.as_ref().map(|(name, _)| name.clone()),
            extra_column: Some(EXTRA_COLUMN.to_owned()),
        };
        writer.append_key_value_metadata(KeyValue::new(TAK_KEY.to_owned(), tak.to_json()));
        let mut sink = writer.into_inner()?;
        sink.flush()?;
        Ok(sink)
    }

    fn geo_json(&self) -> String {
        let mut column = Map::new();
        column.insert("encoding".into(), json!("WKB"));
        column.insert("geometry_types".into(), json!(self.types));
        if let Some(b) = self.bbox {
            column.insert("bbox".into(), json!(b));
        }
        json!({
            "version": "1.1.0",
            "primary_column": GEOMETRY_COLUMN,
            "columns": { GEOMETRY_COLUMN: column },
        })
        .to_string()
    }

    /// Fixes the schema if it is not yet, and writes the buffered features. After an error
    /// the writer stays failed: every later call fails too, nothing is dropped silently.
    fn flush_pending(&mut self) -> Result<(), GeoParquetError> {
        let result = self.try_flush_pending();
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    fn try_flush_pending(&mut self) -> Result<(), GeoParquetError> {
        if let State::Failed = self.state {
            return Err(failed_earlier());
        }
        if let State::Sampling(_) = self.state {
            let State::Sampling(sink) = std::mem::replace(&mut self.state, State::Failed) else {
                return Ok(());
            };
            let plan = plan(&self.pending);
            let props = WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::default()))
                .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
                .set_max_row_group_bytes(Some(ROW_GROUP_BYTES))
                .set_created_by(format!("tak-etl {}", env!("CARGO_PKG_VERSION")))
                .build();
            // No ARROW:schema entry: pyarrow (and so geopandas) takes the schema's metadata
            // from it when present, and would not see the `geo` entry added at the end.
            let options = ArrowWriterOptions::new()
                .with_properties(props)
                .with_skip_arrow_metadata(true);
            let writer = ArrowWriter::try_new_with_options(sink, plan.schema.clone(), options)?;
            self.state = State::Writing {
                writer: Box::new(writer),
                plan,
            };
        }
        let pending = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let State::Writing { writer, plan } = &mut self.state else {
            return Err(failed_earlier());
        };
        for chunk in pending.chunks(BATCH_FEATURES) {
            writer.write(&batch(plan, chunk)?)?;
        }
        Ok(())
    }
}

fn failed_earlier() -> GeoParquetError {
    GeoParquetError::Io(std::io::Error::other(
        "the GeoParquet writer failed earlier",
    ))
}

/// The schema for the sampled features.
fn plan(sample: &[Feature]) -> Plan {
    let keys: BTreeSet<&str> = sample
        .iter()
        .flat_map(|f| f.properties.keys().map(String::as_str))
        .collect();
    let with_ids = sample.iter().any(|f| f.id.is_some());
    let id = with_ids
        .then(|| ID_NAMES.iter().find(|n| !keys.contains(**n)).copied())
        .flatten()
        .map(|name| {
            let ints = sample
                .iter()
                .all(|f| !matches!(f.id, Some(FeatureId::Str(_))));
            (name.to_owned(), ints)
        });
    let mut reserved = vec![GEOMETRY_COLUMN, EXTRA_COLUMN];
    if let Some((name, _)) = &id {
        reserved.push(name.as_str());
    }
    let columns = infer::columns(sample.iter().map(|f| &f.properties), &reserved);
    let mut fields = vec![Field::new(GEOMETRY_COLUMN, DataType::Binary, true)];
    if let Some((name, ints)) = &id {
        let dt = if *ints {
            DataType::Int64
        } else {
            DataType::Utf8
        };
        fields.push(Field::new(name, dt, true));
    }
    for c in &columns {
        fields.push(field(&c.name, c.kind));
    }
    fields.push(field(EXTRA_COLUMN, Kind::Json));
    let index = columns
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.clone(), i))
        .collect();
    Plan {
        schema: Arc::new(Schema::new(fields)),
        columns,
        index,
        id,
    }
}

fn field(name: &str, kind: Kind) -> Field {
    match kind {
        Kind::Bool => Field::new(name, DataType::Boolean, true),
        Kind::Int => Field::new(name, DataType::Int64, true),
        Kind::Float => Field::new(name, DataType::Float64, true),
        Kind::Text => Field::new(name, DataType::Utf8, true),
        Kind::Json => Field::new(name, DataType::Utf8, true)
            .with_extension_type(arrow_schema::extension::Json::default()),
    }
}

/// One record batch of `features` in the columns of `plan`.
fn batch<'f>(plan: &Plan, features: &'f [Feature]) -> Result<RecordBatch, GeoParquetError> {
    let n = features.len();
    let mut geometry = BinaryBuilder::with_capacity(n, n * 32);
    let mut wkb = Vec::new();
    for f in features {
        match &f.geometry {
            Some(g) => {
                wkb.clear();
                crate::ewkb::write_ewkb(g, None, &mut wkb);
                geometry.append_value(&wkb);
            }
            None => geometry.append_null(),
        }
    }
    let mut arrays: Vec<ArrayRef> = vec![Arc::new(geometry.finish())];
    if let Some((_, ints)) = &plan.id {
        if *ints {
            let mut b = Int64Builder::with_capacity(n);
            for f in features {
                match &f.id {
                    Some(FeatureId::Int(i)) => b.append_value(*i),
                    _ => b.append_null(),
                }
            }
            arrays.push(Arc::new(b.finish()));
        } else {
            let mut b = StringBuilder::with_capacity(n, n * 8);
            for f in features {
                match &f.id {
                    Some(id) => b.append_value(id.to_string()),
                    None => b.append_null(),
                }
            }
            arrays.push(Arc::new(b.finish()));
        }
    }
    // Each row's properties that do not go into their column.
    let mut extra: Vec<Map<String, Value>> = vec![Map::new(); n];
    for (row, f) in features.iter().enumerate() {
        for (k, v) in &f.properties {
            let in_schema = plan
                .index
                .get(k)
                .and_then(|&i| plan.columns.get(i))
                .is_some_and(|c| v.is_null() || infer::fits(c.kind, v));
            if !in_schema && let Some(e) = extra.get_mut(row) {
                e.insert(k.clone(), v.clone());
            }
        }
    }
    for c in &plan.columns {
        let value = |f: &'f Feature| -> Option<&'f Value> {
            f.properties
                .get(&c.name)
                .filter(|v| !v.is_null() && infer::fits(c.kind, v))
        };
        let array: ArrayRef = match c.kind {
            Kind::Bool => {
                let mut b = BooleanBuilder::with_capacity(n);
                features
                    .iter()
                    .for_each(|f| b.append_option(value(f).and_then(Value::as_bool)));
                Arc::new(b.finish())
            }
            Kind::Int => {
                let mut b = Int64Builder::with_capacity(n);
                features
                    .iter()
                    .for_each(|f| b.append_option(value(f).and_then(Value::as_i64)));
                Arc::new(b.finish())
            }
            Kind::Float => {
                let mut b = Float64Builder::with_capacity(n);
                features
                    .iter()
                    .for_each(|f| b.append_option(value(f).and_then(Value::as_f64)));
                Arc::new(b.finish())
            }
            Kind::Text => {
                let mut b = StringBuilder::with_capacity(n, n * 8);
                features
                    .iter()
                    .for_each(|f| b.append_option(value(f).and_then(Value::as_str)));
                Arc::new(b.finish())
            }
            Kind::Json => {
                let mut b = StringBuilder::with_capacity(n, n * 8);
                features
                    .iter()
                    .for_each(|f| b.append_option(value(f).map(Value::to_string)));
                Arc::new(b.finish())
            }
        };
        arrays.push(array);
    }
    let mut b = StringBuilder::with_capacity(n, 0);
    for e in &extra {
        if e.is_empty() {
            b.append_null();
        } else {
            b.append_value(Value::Object(e.clone()).to_string());
        }
    }
    arrays.push(Arc::new(b.finish()));
    Ok(RecordBatch::try_new(plan.schema.clone(), arrays)?)
}

/// The GeoParquet name of a geometry's type as written (WKB writes a `Line` as a
/// LineString, a `Rect` and a `Triangle` as Polygons).
fn type_name(g: &Geometry<f64>) -> &'static str {
    match g {
        Geometry::Point(_) => "Point",
        Geometry::Line(_) | Geometry::LineString(_) => "LineString",
        Geometry::Polygon(_) | Geometry::Rect(_) | Geometry::Triangle(_) => "Polygon",
        Geometry::MultiPoint(_) => "MultiPoint",
        Geometry::MultiLineString(_) => "MultiLineString",
        Geometry::MultiPolygon(_) => "MultiPolygon",
        Geometry::GeometryCollection(_) => "GeometryCollection",
    }
}

fn for_each_coord(g: &Geometry<f64>, f: &mut impl FnMut(Coord<f64>)) {
    let mut line = |l: &geo_types::LineString<f64>| l.0.iter().for_each(|c| f(*c));
    match g {
        Geometry::Point(p) => line(&geo_types::LineString(vec![p.0])),
        Geometry::Line(l) => line(&geo_types::LineString(vec![l.start, l.end])),
        Geometry::LineString(l) => line(l),
        Geometry::Polygon(p) => {
            line(p.exterior());
            p.interiors().iter().for_each(line);
        }
        Geometry::MultiPoint(m) => m.0.iter().for_each(|p| f(p.0)),
        Geometry::MultiLineString(m) => m.0.iter().for_each(line),
        Geometry::MultiPolygon(m) => m.0.iter().for_each(|p| {
            line(p.exterior());
            p.interiors().iter().for_each(&mut line);
        }),
        Geometry::GeometryCollection(c) => c.0.iter().for_each(|m| for_each_coord(m, f)),
        Geometry::Rect(r) => line(&r.to_polygon().exterior().clone()),
        Geometry::Triangle(t) => line(&t.to_polygon().exterior().clone()),
    }
}

fn extend_bbox(bbox: &mut Option<[f64; 4]>, g: &Geometry<f64>) {
    for_each_coord(g, &mut |c| {
        let b = bbox.get_or_insert([c.x, c.y, c.x, c.y]);
        b[0] = b[0].min(c.x);
        b[1] = b[1].min(c.y);
        b[2] = b[2].max(c.x);
        b[3] = b[3].max(c.y);
    });
}

fn finite(g: &Geometry<f64>) -> bool {
    let mut ok = true;
    for_each_coord(g, &mut |c| ok &= c.x.is_finite() && c.y.is_finite());
    ok
}

/// Rough bytes a feature takes, for the sample and batch budgets.
fn estimate(f: &Feature) -> usize {
    let mut coords = 0usize;
    if let Some(g) = &f.geometry {
        for_each_coord(g, &mut |_| coords += 1);
    }
    let mut bytes = 64usize.saturating_add(coords.saturating_mul(16));
    for (k, v) in &f.properties {
        bytes = bytes.saturating_add(k.len()).saturating_add(match v {
            Value::String(s) => s.len().saturating_add(16),
            Value::Array(_) | Value::Object(_) => v.to_string().len(),
            _ => 16,
        });
    }
    bytes
}
