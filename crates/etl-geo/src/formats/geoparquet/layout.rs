//! What a GeoParquet file holds, checked once when it is opened: its footer (bounded before
//! the Parquet library reads it), its `geo` metadata, its row groups' sizes, and which column
//! becomes what (the geometry, the feature id, properties, properties that did not fit).

use arrow_schema::Schema;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::errors::ParquetError;
use parquet::file::metadata::ParquetMetaData;

use parquet::file::reader::ChunkReader;

use super::chunks::{ChunkSource, Chunks, Span};
use super::metadata::{Encoding, GEO_KEY, GeoMetadata, TAK_KEY, TakMetadata, shown};
use super::{MAGIC, MAX_FOOTER_BYTES, MAX_ROW_GROUP_BYTES, guarded, refused};
use crate::crs::Crs;
use crate::error::ReadError;
use crate::formats::ReadOptions;

/// A property column: its name and its index in the batches read.
#[derive(Debug)]
pub(super) struct Property {
    pub(super) name: String,
    pub(super) index: usize,
    /// Parquet's JSON logical type: the text is parsed back into a value.
    pub(super) json: bool,
}

/// The file's columns, as indices into the record batches the projection gives.
pub(super) struct Layout {
    pub(super) geometry: usize,
    pub(super) encoding: Encoding,
    pub(super) crs: Crs,
    pub(super) id: Option<usize>,
    pub(super) extra: Option<usize>,
    pub(super) properties: Vec<Property>,
    pub(super) projection: ProjectionMask,
    /// Columns not read, and why, for the log.
    pub(super) skipped: Vec<String>,
    pub(super) metadata: ArrowReaderMetadata,
}

impl Layout {
    /// Reads and checks the footer of the file `chunks` reads, and tells `chunks` which column
    /// chunks the records will be read from.
    pub(super) fn open<R: ChunkSource>(
        chunks: &Chunks<R>,
        name: &str,
        opts: &ReadOptions,
    ) -> Result<Layout, ReadError> {
        let data_end = check_footer(chunks, name)?;
        let options = ArrowReaderOptions::new().with_skip_arrow_metadata(true);
        let metadata = guarded(|| ArrowReaderMetadata::load(chunks, options))
            .map_err(|e| refused(name, format!("corrupt Parquet footer: {e}")))?;
        let parquet = metadata.metadata();
        for (i, group) in parquet.row_groups().iter().enumerate() {
            if group.num_rows() < 0 || group.total_byte_size() < 0 {
                return Err(refused(
                    name,
                    format!("row group {i}: a negative row count or size in the footer"),
                ));
            }
            if group.total_byte_size() > MAX_ROW_GROUP_BYTES {
                return Err(refused(
                    name,
                    format!(
                        "row group {i} holds {} bytes uncompressed, more than the {} MiB read at once (write it with smaller row groups)",
                        group.total_byte_size(),
                        MAX_ROW_GROUP_BYTES >> 20
                    ),
                ));
            }
        }
        let kv = parquet.file_metadata().key_value_metadata();
        let find = |key: &str| {
            kv.and_then(|kv| kv.iter().find(|e| e.key == key))
                .map(|e| e.value.as_deref().unwrap_or(""))
        };
        let geo = find(GEO_KEY).ok_or_else(|| {
            refused(
                name,
                "a Parquet file without \"geo\" metadata: not GeoParquet (no geometry column is declared)",
            )
        })?;
        let geo =
            GeoMetadata::parse(geo, opts.source_crs.as_ref()).map_err(|m| refused(name, m))?;
        let tak = match find(TAK_KEY) {
            Some(text) => TakMetadata::parse(text).map_err(|m| refused(name, m))?,
            None => TakMetadata::default(),
        };
        let schema = metadata.schema().clone();
        let layout = Self::assign(&schema, &geo, &tak).map_err(|m| refused(name, m))?;
        let projection = ProjectionMask::roots(metadata.parquet_schema(), layout.kept.clone());
        let (spans, columns) =
            spans(parquet, &projection, data_end).map_err(|m| refused(name, m))?;
        chunks.set_spans(spans, columns);
        Ok(Layout {
            geometry: layout.geometry,
            encoding: geo.encoding,
            crs: geo.crs,
            id: layout.id,
            extra: layout.extra,
            properties: layout.properties,
            projection,
            skipped: layout.skipped,
            metadata,
        })
    }

    /// Which column is what; the error says which column is wrong.
    fn assign(schema: &Schema, geo: &GeoMetadata, tak: &TakMetadata) -> Result<Assigned, String> {
        let mut a = Assigned::default();
        let mut geometry = None;
        for (root, field) in schema.fields().iter().enumerate() {
            let column = field.name();
            if geo.others.contains(column) {
                a.skipped.push(format!(
                    "column {}: a second geometry column, not read (only the primary one, {}, is)",
                    shown(column),
                    shown(&geo.primary)
                ));
                continue;
            }
            if geo.covering.contains(column) {
                a.skipped.push(format!(
                    "column {}: the geometry's bbox covering, not read",
                    shown(column)
                ));
                continue;
            }
            let index = a.kept.len();
            a.kept.push(root);
            if *column == geo.primary {
                super::geometry::check_type(field.data_type(), geo.encoding)
                    .map_err(|m| format!("geometry column {}: {m}", shown(column)))?;
                geometry = Some(index);
            } else if tak.id_column.as_ref() == Some(column) {
                use arrow_schema::DataType as D;
                if !matches!(
                    field.data_type(),
                    D::Int64 | D::Int32 | D::Utf8 | D::LargeUtf8
                ) {
                    return Err(format!(
                        "id column {}: of type {}, not an integer or a string",
                        shown(column),
                        field.data_type()
                    ));
                }
                a.id = Some(index);
            } else if tak.extra_column.as_ref() == Some(column) {
                if !matches!(
                    field.data_type(),
                    arrow_schema::DataType::Utf8 | arrow_schema::DataType::LargeUtf8
                ) {
                    return Err(format!(
                        "column {}: of type {}, not JSON text",
                        shown(column),
                        field.data_type()
                    ));
                }
                a.extra = Some(index);
            } else {
                super::values::check_type(field.data_type(), 0)
                    .map_err(|m| format!("column {}: {m}", shown(column)))?;
                a.properties.push(Property {
                    name: column.clone(),
                    index,
                    json: field.extension_type_name() == Some("arrow.json"),
                });
            }
        }
        a.geometry = geometry.ok_or_else(|| {
            format!(
                "the primary geometry column {} named in its \"geo\" metadata is not in the file",
                shown(&geo.primary)
            )
        })?;
        for (what, wanted, found) in [
            ("id", &tak.id_column, a.id),
            ("extra", &tak.extra_column, a.extra),
        ] {
            if let (Some(column), None) = (wanted, found) {
                return Err(format!(
                    "its \"tak-etl\" metadata names the {what} column {} but the file has none",
                    shown(column)
                ));
            }
        }
        Ok(a)
    }
}

#[derive(Default)]
struct Assigned {
    geometry: usize,
    id: Option<usize>,
    extra: Option<usize>,
    properties: Vec<Property>,
    kept: Vec<usize>,
    skipped: Vec<String>,
}

/// The byte ranges of the column chunks the projection reads, and how many columns that is:
/// each must lie between the header and the footer (`data_end`), so no read is sized by a
/// claim the file cannot back.
fn spans(
    parquet: &ParquetMetaData,
    projection: &ProjectionMask,
    data_end: u64,
) -> Result<(Vec<Span>, usize), String> {
    let mut spans = Vec::new();
    let mut columns = 0;
    for (group, rg) in parquet.row_groups().iter().enumerate() {
        let mut read = 0;
        for (leaf, column) in rg.columns().iter().enumerate() {
            if !projection.leaf_included(leaf) {
                continue;
            }
            read += 1;
            let start = column
                .dictionary_page_offset()
                .unwrap_or_else(|| column.data_page_offset());
            let len = column.compressed_size();
            let inside = u64::try_from(start)
                .ok()
                .zip(u64::try_from(len).ok())
                .filter(|&(s, l)| s >= 4 && s.checked_add(l).is_some_and(|e| e <= data_end));
            let Some((start, len)) = inside else {
                return Err(format!(
                    "truncated or corrupt Parquet file: row group {group}, column {}: its data at bytes {start}..{} lies outside the file's {data_end} bytes of data",
                    shown(&column.column_path().string()),
                    start.saturating_add(len)
                ));
            };
            spans.push(Span {
                start,
                end: start + len,
                group,
            });
        }
        columns = columns.max(read);
    }
    Ok((spans, columns))
}

/// A failed read of the file's bytes.
fn read_failed(e: ParquetError) -> ReadError {
    match e {
        ParquetError::External(e) => match e.downcast::<std::io::Error>() {
            Ok(io) => ReadError::Io(*io),
            Err(other) => ReadError::Io(std::io::Error::other(other.to_string())),
        },
        other => ReadError::Io(std::io::Error::other(other.to_string())),
    }
}

/// The file starts and ends with `PAR1` and its footer is no larger than the file or
/// [`MAX_FOOTER_BYTES`]: checked before the Parquet library reads (and allocates) it.
/// Returns where the footer starts (the end of the column chunks' bytes).
fn check_footer<R: ChunkReader>(file: &R, name: &str) -> Result<u64, ReadError> {
    let len = file.len();
    if len < 12 {
        return Err(refused(
            name,
            format!("truncated Parquet file: {len} bytes, too short for a header and a footer"),
        ));
    }
    let head = file.get_bytes(0, 4).map_err(read_failed)?;
    if &head[..] != MAGIC {
        return Err(refused(
            name,
            "not a Parquet file: it does not start with PAR1",
        ));
    }
    let tail = file.get_bytes(len - 8, 8).map_err(read_failed)?;
    let (size, magic) = tail.split_at(4);
    if magic == b"PARE" {
        return Err(refused(
            name,
            "an encrypted Parquet file, which is not read",
        ));
    }
    if magic != MAGIC {
        return Err(refused(
            name,
            "truncated or corrupt Parquet file: it does not end with PAR1",
        ));
    }
    let size = u64::from(u32::from_le_bytes([size[0], size[1], size[2], size[3]]));
    if size > len - 12 {
        return Err(refused(
            name,
            format!(
                "truncated or corrupt Parquet file: its footer says {size} bytes, the file has {len}"
            ),
        ));
    }
    if size > MAX_FOOTER_BYTES {
        return Err(refused(
            name,
            format!(
                "a Parquet footer of {size} bytes, more than the {} MiB read",
                MAX_FOOTER_BYTES >> 20
            ),
        ));
    }
    Ok(len - 8 - size)
}
