//! The records of a GeoParquet file, read one row group at a time and, inside it, one record
//! batch at a time: a batch has [`BATCH_ROWS`] rows, or fewer when the row group's rows are
//! large (about [`BATCH_BYTES`] per batch from its uncompressed size), so memory is bounded
//! by one batch and the pages it spans, not by the file. A batch becomes records
//! [`DECODE_ROWS`] rows at a time, as they are asked for, not all at once.

use std::collections::VecDeque;

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch};
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use serde_json::{Map, Value};

use super::chunks::{ChunkSource, Chunks};
use super::geometry::GeometryColumn;
use super::layout::Layout;
use super::{BATCH_BYTES, BATCH_ROWS, guarded, refused};

/// Rows of a batch turned into records at a time: records wait for the caller in a queue of
/// at most this many, however large the batch.
const DECODE_ROWS: usize = 512;
use crate::cancel::{Cancel, cancelled};
use crate::error::ReadError;
use crate::feature::{Feature, FeatureId};
use crate::formats::{Record, Rejection, accept_in};

pub(super) struct Reader<R> {
    chunks: Chunks<R>,
    name: String,
    layout: Layout,
    cancel: Cancel,
    /// The next row group to open.
    group: usize,
    batches: Option<ParquetRecordBatchReader>,
    /// The batch being turned into records, and its next row.
    current: Option<(RecordBatch, usize)>,
    /// Records made and not yet returned: at most [`DECODE_ROWS`].
    page: VecDeque<Record>,
    rows: u64,
    done: bool,
}

impl<R: ChunkSource + 'static> Reader<R> {
    pub(super) fn new(chunks: Chunks<R>, name: String, layout: Layout, cancel: Cancel) -> Self {
        Reader {
            chunks,
            name,
            layout,
            cancel,
            group: 0,
            batches: None,
            current: None,
            page: VecDeque::with_capacity(DECODE_ROWS),
            rows: 0,
            done: false,
        }
    }

    /// The next batch of the file, opening row groups as needed; `None` after the last.
    fn next_batch(&mut self) -> Result<Option<RecordBatch>, ReadError> {
        loop {
            if let Some(batches) = &mut self.batches {
                let group = self.group.saturating_sub(1);
                match guarded(|| batches.next().transpose()) {
                    Ok(Some(batch)) => return Ok(Some(batch)),
                    Ok(None) => self.batches = None,
                    Err(e) => {
                        return Err(refused(
                            &self.name,
                            format!("corrupt data in row group {group}: {e}"),
                        ));
                    }
                }
            }
            let metadata = self.layout.metadata.metadata();
            let Some(group) = metadata.row_groups().get(self.group) else {
                return Ok(None);
            };
            let rows = usize::try_from(group.num_rows()).unwrap_or(usize::MAX);
            let bytes = u64::try_from(group.total_byte_size()).unwrap_or(u64::MAX);
            let batch_rows = if bytes == 0 {
                BATCH_ROWS
            } else {
                let per_batch = (BATCH_BYTES as u128 * rows as u128 / u128::from(bytes)) as usize;
                per_batch.clamp(1, BATCH_ROWS)
            };
            let index = self.group;
            self.group += 1;
            let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(
                self.chunks.clone(),
                self.layout.metadata.clone(),
            )
            .with_projection(self.layout.projection.clone())
            .with_row_groups(vec![index])
            .with_batch_size(batch_rows);
            let reader = guarded(|| builder.build()).map_err(|e| {
                refused(
                    &self.name,
                    format!("corrupt data in row group {index}: {e}"),
                )
            })?;
            self.batches = Some(reader);
        }
    }

    /// Turns the next rows of the current batch (at most [`DECODE_ROWS`]) into records.
    fn decode(&mut self) -> Result<(), ReadError> {
        let Some((batch, from)) = self.current.take() else {
            return Ok(());
        };
        let to = batch.num_rows().min(from + DECODE_ROWS);
        let columns = batch.columns();
        let geometry = columns
            .get(self.layout.geometry)
            .ok_or_else(|| refused(&self.name, "the geometry column is missing from a batch"))
            .and_then(|c| {
                GeometryColumn::new(c, self.layout.encoding)
                    .map_err(|m| refused(&self.name, format!("geometry column: {m}")))
            })?;
        for i in from..to {
            let mut repairs = crate::repair::Repairs::NONE;
            let feature = self.feature(columns, &geometry, i, &mut repairs);
            self.page.push_back(Record {
                line: self.rows.saturating_add(1),
                ordinal: self.rows,
                layer: 0,
                feature,
                repairs,
            });
            self.rows = self.rows.saturating_add(1);
        }
        if to < batch.num_rows() {
            self.current = Some((batch, to));
        }
        Ok(())
    }

    fn feature(
        &self,
        columns: &[arrow_array::ArrayRef],
        geometry: &GeometryColumn<'_>,
        i: usize,
        repairs: &mut crate::repair::Repairs,
    ) -> Result<Feature, Rejection> {
        let geometry = geometry
            .get(i, repairs)
            .map_err(|e| Rejection::new(format!("geometry: {e}")))?;
        let column = |index: usize| {
            columns
                .get(index)
                .ok_or_else(|| Rejection::new("a column is missing from the batch"))
        };
        let mut properties = Map::with_capacity(self.layout.properties.len());
        for p in &self.layout.properties {
            let v = super::values::value(column(p.index)?.as_ref(), i, p.json)
                .map_err(|e| Rejection::new(format!("column {}: {e}", p.name)))?;
            properties.insert(p.name.clone(), v);
        }
        if let Some(index) = self.layout.extra {
            let array = column(index)?;
            if !array.is_null(i) {
                match super::values::value(array.as_ref(), i, true) {
                    Ok(Value::Object(extra)) => properties.extend(extra),
                    Ok(_) => {
                        return Err(Rejection::new(
                            "the properties_extra column holds JSON that is not an object",
                        ));
                    }
                    Err(e) => return Err(Rejection::new(format!("properties_extra: {e}"))),
                }
            }
        }
        let id = match self.layout.id {
            Some(index) => id(column(index)?.as_ref(), i),
            None => None,
        };
        accept_in(
            Feature {
                id,
                geometry,
                properties,
            },
            Some(&self.layout.crs),
            repairs,
        )
    }
}

fn id(array: &dyn Array, i: usize) -> Option<FeatureId> {
    use arrow_array::types::{Int32Type, Int64Type};
    if array.is_null(i) {
        return None;
    }
    if let Some(a) = array.as_primitive_opt::<Int64Type>() {
        return Some(FeatureId::Int(a.value(i)));
    }
    if let Some(a) = array.as_primitive_opt::<Int32Type>() {
        return Some(FeatureId::Int(i64::from(a.value(i))));
    }
    if let Some(a) = array.as_string_opt::<i32>() {
        return Some(FeatureId::Str(a.value(i).to_owned()));
    }
    array
        .as_string_opt::<i64>()
        .map(|a| FeatureId::Str(a.value(i).to_owned()))
}

impl<R: ChunkSource + 'static> Iterator for Reader<R> {
    type Item = Result<Record, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(record) = self.page.pop_front() {
                return Some(Ok(record));
            }
            if self.current.is_some() {
                if let Err(e) = self.decode() {
                    self.done = true;
                    self.batches = None;
                    self.current = None;
                    return Some(Err(e));
                }
                continue;
            }
            if self.done {
                return None;
            }
            if self.cancel.is_cancelled() {
                self.done = true;
                return Some(Err(cancelled()));
            }
            let step = self.next_batch().map(|batch| match batch {
                Some(batch) => {
                    self.current = Some((batch, 0));
                    true
                }
                None => false,
            });
            match step {
                Ok(true) => {}
                Ok(false) => {
                    self.done = true;
                    self.batches = None;
                }
                Err(e) => {
                    self.done = true;
                    self.batches = None;
                    self.page.clear();
                    return Some(Err(e));
                }
            }
        }
    }
}
