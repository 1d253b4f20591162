//! CSV (and TSV) with a header row and either longitude/latitude or WKT columns. WKT (or EWKT)
//! is read by [`crate::wkt`]: simple features, curves (linearised as GDAL does, steps of at most
//! 4°), Triangle, TIN and PolyhedralSurface; an unclosed ring is closed (a repair).

mod header;
mod read;
mod typing;

pub(crate) use header::{GeometryColumns, detect_delimiter, split_header_line};
pub(crate) use read::CsvReader;
