//! The records of one feature table, read a page at a time.

use std::collections::VecDeque;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, Row};
use serde_json::{Map, Number, Value};

use super::layer::{Key, Layer};
use super::{PAGE_BYTES, PAGE_ROWS, blob, refused, shown, sql_error};
use crate::cancel::{Cancel, cancelled};
use crate::error::ReadError;
use crate::feature::{Feature, FeatureId};
use crate::formats::{Record, Rejection, accept_in};
use crate::repair::Repairs;

/// Result columns before the properties: key, geometry, id.
const FIXED_COLUMNS: usize = 3;

pub(super) struct LayerReader {
    conn: Connection,
    layer: Layer,
    file: String,
    cancel: Cancel,
    /// Records of the current page not yet returned.
    page: VecDeque<Record>,
    /// Where the next page starts: the last key read, `None` before the first page.
    last_key: Option<i64>,
    /// Rows read so far.
    rows: u64,
    /// The last page has been read (or reading failed).
    exhausted: bool,
}

impl LayerReader {
    pub(super) fn new(conn: Connection, layer: Layer, file: String, cancel: Cancel) -> Self {
        LayerReader {
            conn,
            layer,
            file,
            cancel,
            page: VecDeque::new(),
            last_key: None,
            rows: 0,
            exhausted: false,
        }
    }

    /// Reads the next page into `self.page`; sets `exhausted` after the last one.
    fn fetch(&mut self) -> Result<(), ReadError> {
        let limit = PAGE_ROWS as i64;
        let (sql, start) = match (&self.layer.key, self.last_key) {
            (Key::Column(_), None) => (&self.layer.first, None),
            (Key::Column(_), Some(last)) => (&self.layer.next, Some(last)),
            (Key::Offset, _) if self.rows == 0 => (&self.layer.first, None),
            (Key::Offset, _) => (
                &self.layer.next,
                Some(i64::try_from(self.rows).unwrap_or(i64::MAX)),
            ),
        };
        let (file, cancel) = (self.file.as_str(), &self.cancel);
        let err = |e: rusqlite::Error| sql_error(file, "reading the table", e, Some(cancel));
        let mut stmt = self.conn.prepare(sql).map_err(err)?;
        let mut rows = match start {
            None => stmt.query([limit]),
            Some(start) => stmt.query([limit, start]),
        }
        .map_err(err)?;
        let (mut count, mut bytes) = (0usize, 0usize);
        while let Some(row) = rows.next().map_err(err)? {
            if let Key::Column(key) = &self.layer.key {
                match row.get_ref(0).map_err(err)? {
                    ValueRef::Integer(k) => self.last_key = Some(k),
                    other => {
                        return Err(refused(
                            file,
                            format!(
                                "table {}: its key {key} holds a {} value, not an integer",
                                shown(&self.layer.table),
                                type_name(other)
                            ),
                        ));
                    }
                }
            }
            let mut repairs = Repairs::NONE;
            let (feature, size) = decode(row, &self.layer, &mut repairs).map_err(err)?;
            let record = Record {
                line: self.rows.saturating_add(1),
                ordinal: self.rows,
                layer: 0,
                feature,
                repairs,
            };
            self.rows = self.rows.saturating_add(1);
            self.page.push_back(record);
            count += 1;
            bytes = bytes.saturating_add(size);
            if bytes >= PAGE_BYTES {
                // A short page that is not the last: the next one starts after this row.
                return Ok(());
            }
        }
        if count < PAGE_ROWS {
            self.exhausted = true;
        }
        Ok(())
    }
}

impl Iterator for LayerReader {
    type Item = Result<Record, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(record) = self.page.pop_front() {
            return Some(Ok(record));
        }
        if self.exhausted {
            return None;
        }
        if self.cancel.is_cancelled() {
            self.exhausted = true;
            return Some(Err(cancelled()));
        }
        if let Err(e) = self.fetch() {
            self.exhausted = true;
            self.page.clear();
            return Some(Err(e));
        }
        match self.page.pop_front() {
            Some(record) => Some(Ok(record)),
            None => {
                self.exhausted = true;
                None
            }
        }
    }
}

fn type_name(v: ValueRef<'_>) -> &'static str {
    match v {
        ValueRef::Null => "NULL",
        ValueRef::Integer(_) => "INTEGER",
        ValueRef::Real(_) => "REAL",
        ValueRef::Text(_) => "TEXT",
        ValueRef::Blob(_) => "BLOB",
    }
}

/// Bytes a value takes, for the page budget.
fn size(v: ValueRef<'_>) -> usize {
    match v {
        ValueRef::Text(b) | ValueRef::Blob(b) => b.len().saturating_add(16),
        _ => 16,
    }
}

/// One row as a feature (or the reason it is rejected), and the bytes its values took.
fn decode(
    row: &Row<'_>,
    layer: &Layer,
    repairs: &mut Repairs,
) -> Result<(Result<Feature, Rejection>, usize), rusqlite::Error> {
    let geometry_value = row.get_ref(1)?;
    let mut bytes = size(geometry_value);
    let geometry = match geometry_value {
        ValueRef::Null => Ok(None),
        ValueRef::Blob(b) => blob::geometry(b, repairs),
        other => Err(format!(
            "the geometry column holds a {} value, not a GeoPackage geometry blob",
            type_name(other)
        )),
    };
    let id = match row.get_ref(2)? {
        ValueRef::Integer(i) => Some(FeatureId::Int(i)),
        ValueRef::Text(t) => Some(FeatureId::Str(String::from_utf8_lossy(t).into_owned())),
        ValueRef::Real(f) if f.is_finite() => Some(FeatureId::Str(f.to_string())),
        _ => None,
    };
    let mut properties = Map::with_capacity(layer.properties.len());
    for (i, property) in layer.properties.iter().enumerate() {
        let v = row.get_ref(FIXED_COLUMNS + i)?;
        bytes = bytes.saturating_add(size(v));
        let value = match v {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(i) if property.boolean => Value::Bool(i != 0),
            ValueRef::Integer(i) => Value::Number(Number::from(i)),
            ValueRef::Real(f) => Number::from_f64(f).map_or(Value::Null, Value::Number),
            ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
            ValueRef::Blob(b) => Value::String(crate::formats::base64(b)),
        };
        properties.insert(property.name.clone(), value);
    }
    let feature = geometry
        .map_err(|reason| Rejection::new(format!("geometry: {reason}")))
        .and_then(|geometry| {
            accept_in(
                Feature {
                    id,
                    geometry,
                    properties,
                },
                Some(&layer.crs),
                repairs,
            )
        });
    Ok((feature, bytes))
}
