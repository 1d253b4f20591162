//! CSV (and TSV) with a header row and either longitude/latitude or WKT columns.

mod header;
mod read;
mod typing;

pub(crate) use header::{GeometryColumns, detect_delimiter, split_header_line};
pub(crate) use read::CsvReader;
