//! Reads CSV rows as point (longitude/latitude columns) or WKT features; the other
//! columns become lightly typed properties.

use std::io::{self, BufRead, Chain, Cursor, Read};

use geo_types::{Geometry, Point};
use serde_json::Map;

use super::header::{GeometryColumns, detect_delimiter};
use super::typing::typed_value;
use crate::error::{Position, ReadError};
use crate::feature::Feature;
use crate::formats::{ReadOptions, Record, Rejection, accept_in, excerpt};
use crate::repair::Repairs;

type Rows = csv::Reader<RecordBudget<Chain<Cursor<Vec<u8>>, Box<dyn BufRead + Send>>>>;

pub(crate) struct CsvReader {
    rows: Rows,
    header: Vec<String>,
    geometry: GeometryColumns,
    row: csv::ByteRecord,
    ordinal: u64,
    max_depth: usize,
    /// The coordinate system of the geometry columns (`--s-srs`); WGS 84 when `None`.
    crs: Option<crate::crs::Crs>,
    done: bool,
}

impl CsvReader {
    /// Reads the header row and picks the geometry columns.
    pub(crate) fn open(
        mut input: Box<dyn BufRead + Send>,
        opts: &ReadOptions,
        max_record_bytes: usize,
    ) -> Result<Self, ReadError> {
        let start = Position { line: 1, column: 1 };
        let limit = u64::try_from(max_record_bytes).unwrap_or(u64::MAX);
        // The first line is read ahead only to pick the delimiter; the csv crate
        // then parses it again, as the header, from this copy.
        let mut first_line = Vec::new();
        (&mut input)
            .take(limit)
            .read_until(b'\n', &mut first_line)?;
        if first_line.starts_with(b"\xEF\xBB\xBF") {
            first_line.drain(..3);
        }
        if first_line.iter().all(u8::is_ascii_whitespace) {
            return Err(ReadError::invalid(
                start,
                "empty input: a CSV header row is required",
            ));
        }
        let delimiter = opts
            .csv
            .delimiter
            .unwrap_or_else(|| detect_delimiter(&first_line));
        let source = RecordBudget {
            inner: Cursor::new(first_line).chain(input),
            used: 0,
            limit,
            delimiter,
            eof: false,
        };
        // Records end at '\n' only: with the csv crate's default CR/LF handling the
        // line numbers of records after a CRLF are one short. A CR left at the end of
        // a row is removed in `cell`.
        let mut rows = csv::ReaderBuilder::new()
            .delimiter(delimiter)
            .terminator(csv::Terminator::Any(b'\n'))
            .flexible(true)
            .has_headers(true)
            .buffer_capacity(64 * 1024)
            .from_reader(source);
        let header = match rows.byte_headers() {
            Ok(h) => h.clone(),
            Err(e) => return Err(csv_error(e, start)),
        };
        let last = header.len().saturating_sub(1);
        let header = header
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let name = if i == last {
                    name.strip_suffix(b"\r").unwrap_or(name)
                } else {
                    name
                };
                std::str::from_utf8(name)
                    .map(str::to_owned)
                    .map_err(|_| ReadError::invalid(start, "CSV header is not valid UTF-8"))
            })
            .collect::<Result<Vec<String>, ReadError>>()?;
        let geometry = GeometryColumns::choose(&header, &opts.csv)
            .map_err(|message| ReadError::invalid(start, message))?;
        Ok(CsvReader {
            rows,
            header,
            geometry,
            row: csv::ByteRecord::new(),
            ordinal: 0,
            max_depth: opts.max_json_depth,
            crs: opts.source_crs.clone(),
            done: false,
        })
    }

    /// Cell `i` of the current row, without the CR of a CRLF line end.
    fn cell(&self, i: usize) -> Option<&[u8]> {
        let cell = self.row.get(i)?;
        if i.saturating_add(1) == self.row.len() {
            Some(cell.strip_suffix(b"\r").unwrap_or(cell))
        } else {
            Some(cell)
        }
    }

    /// The line the current row starts on. The csv crate's own record position
    /// counts from before any blank lines it skipped, so count back from where the
    /// parser stands now: past the row's quoted line breaks and its final one.
    fn row_start_line(&self) -> u64 {
        let inner = self.row.as_slice().iter().filter(|&&b| b == b'\n').count() as u64;
        let terminator = u64::from(!self.rows.get_ref().eof);
        self.rows
            .position()
            .line()
            .saturating_sub(inner)
            .saturating_sub(terminator)
    }

    /// A line holding nothing but a line end.
    fn is_blank(&self) -> bool {
        self.row.len() == 1 && self.cell(0).is_some_and(<[u8]>::is_empty)
    }

    fn feature(&self, repairs: &mut Repairs) -> Result<Feature, Rejection> {
        if self.row.len() != self.header.len() {
            return Err(Rejection::new(format!(
                "row has {} fields, header has {}",
                self.row.len(),
                self.header.len()
            )));
        }
        let geometry = match self.geometry {
            GeometryColumns::LonLat { lon, lat } => Some(Geometry::Point(Point::new(
                coordinate(self.cell(lon), "longitude")?,
                coordinate(self.cell(lat), "latitude")?,
            ))),
            GeometryColumns::Wkt { column } => {
                wkt_geometry(self.cell(column), self.max_depth, repairs)?
            }
        };
        let mut properties = Map::new();
        for (i, name) in self.header.iter().enumerate() {
            if self.geometry.uses(i) {
                continue;
            }
            let cell = self.cell(i).unwrap_or_default();
            let text = std::str::from_utf8(cell).map_err(|_| {
                Rejection::new(format!("column {:?} is not valid UTF-8", excerpt(name)))
            })?;
            if let Some(value) = typed_value(text) {
                properties.insert(name.clone(), value);
            }
        }
        accept_in(
            Feature {
                id: None,
                geometry,
                properties,
            },
            self.crs.as_ref(),
            repairs,
        )
    }
}

fn cell_text<'a>(cell: Option<&'a [u8]>, what: &str) -> Result<&'a str, Rejection> {
    let text = std::str::from_utf8(cell.unwrap_or_default())
        .map_err(|_| Rejection::new(format!("{what} is not valid UTF-8")))?
        .trim();
    if text.is_empty() {
        return Err(Rejection::new(format!("empty {what}")));
    }
    Ok(text)
}

fn coordinate(cell: Option<&[u8]>, what: &str) -> Result<f64, Rejection> {
    let text = cell_text(cell, what)?;
    text.parse::<f64>()
        .map_err(|_| Rejection::new(format!("{what} {:?} is not a number", excerpt(text))))
}

/// Parses WKT (or EWKT: a `SRID=n;` prefix is ignored), curves and surfaces included
/// ([`crate::wkt`]); `None` for an empty geometry (`POINT EMPTY`).
fn wkt_geometry(
    cell: Option<&[u8]>,
    max_depth: usize,
    repairs: &mut Repairs,
) -> Result<Option<Geometry<f64>>, Rejection> {
    let text = cell_text(cell, "WKT geometry")?;
    let text = match text.split_once(';') {
        Some((srid, rest))
            if srid
                .get(..5)
                .is_some_and(|p| p.eq_ignore_ascii_case("SRID=")) =>
        {
            rest.trim()
        }
        _ => text,
    };
    // Refused before parsing starts (the parser checks its depth too).
    if paren_depth(text) > max_depth {
        return Err(Rejection::new(format!(
            "WKT nested deeper than {max_depth} levels"
        )));
    }
    crate::wkt::parse(text, max_depth, repairs)
        .map_err(|e| Rejection::new(format!("invalid WKT: {e}")))
}

fn paren_depth(text: &str) -> usize {
    let mut depth = 0usize;
    let mut deepest = 0usize;
    for b in text.bytes() {
        match b {
            b'(' => {
                depth = depth.saturating_add(1);
                deepest = deepest.max(depth);
            }
            b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Caps the bytes read between two records so an unterminated quote cannot make
/// the csv crate buffer the rest of the input as one field.
///
/// Each delimiter is charged [`FIELD_COST`] on top of its byte: the csv crate
/// keeps a `usize` end offset per field, so a row of nothing but delimiters would
/// otherwise hold eight times the cap in field bounds.
struct RecordBudget<R> {
    inner: R,
    used: u64,
    limit: u64,
    delimiter: u8,
    /// The input is exhausted. The csv crate reads again only once its buffer is
    /// empty, so this turning true while a row is read means that row ended at the
    /// end of input, without a line break.
    eof: bool,
}

/// What one field's bounds cost the csv crate beyond its bytes.
const FIELD_COST: u64 = std::mem::size_of::<usize>() as u64;

#[derive(Debug, thiserror::Error)]
#[error("CSV record longer than {0} bytes")]
struct RecordTooLong(u64);

impl<R: Read> Read for RecordBudget<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.used > self.limit {
            return Err(io::Error::other(RecordTooLong(self.limit)));
        }
        let n = self.inner.read(buf)?;
        let read = buf.get(..n).unwrap_or_default();
        let fields = read.iter().filter(|&&b| b == self.delimiter).count() as u64;
        self.used = self
            .used
            .saturating_add(n as u64)
            .saturating_add(fields.saturating_mul(FIELD_COST));
        self.eof |= n == 0 && !buf.is_empty();
        Ok(n)
    }
}

fn csv_error(err: csv::Error, at: Position) -> ReadError {
    let at = match err.position() {
        Some(p) => Position {
            line: p.line(),
            column: 1,
        },
        None => at,
    };
    let message = err.to_string();
    match err.into_kind() {
        csv::ErrorKind::Io(e) => {
            match e
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<RecordTooLong>())
            {
                Some(too_long) => ReadError::invalid(at, too_long.to_string()),
                None => ReadError::Io(e),
            }
        }
        _ => ReadError::syntax(at, message),
    }
}

impl Iterator for CsvReader {
    type Item = Result<Record, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        loop {
            self.rows.get_mut().used = 0;
            match self.rows.read_byte_record(&mut self.row) {
                Ok(true) if self.is_blank() => {}
                Ok(true) => break,
                Ok(false) => {
                    self.done = true;
                    return None;
                }
                Err(e) => {
                    self.done = true;
                    let at = Position {
                        line: self.rows.position().line(),
                        column: 1,
                    };
                    return Some(Err(csv_error(e, at)));
                }
            }
        }
        let line = self.row_start_line();
        let ordinal = self.ordinal;
        self.ordinal = self.ordinal.saturating_add(1);
        let mut repairs = Repairs::NONE;
        let feature = self.feature(&mut repairs);
        Some(Ok(Record {
            line,
            ordinal,
            layer: 0,
            feature,
            repairs,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::CsvOptions;
    use geo_types::{Geometry, point};
    use serde_json::{Value, json};

    fn open_with(text: &[u8], opts: &ReadOptions, cap: usize) -> Result<CsvReader, String> {
        CsvReader::open(Box::new(Cursor::new(text.to_vec())), opts, cap).map_err(|e| e.to_string())
    }

    fn records(text: &str) -> Vec<Record> {
        open_with(text.as_bytes(), &ReadOptions::default(), 1 << 20)
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    fn reasons(text: &str) -> Vec<(u64, u64, Result<Value, String>)> {
        records(text)
            .into_iter()
            .map(|r| {
                let f = r
                    .feature
                    .map(|f| Value::Object(f.properties))
                    .map_err(|rej| rej.reason);
                (r.line, r.ordinal, f)
            })
            .collect()
    }

    #[test]
    fn points_and_typed_properties() {
        let rs = records(
            "name,lon,lat,count,ratio,flag,code,empty\r\n\"a, b\",1.5,-2,3,0.5,true,007,\n",
        );
        assert_eq!(rs.len(), 1);
        let f = rs[0].feature.clone().unwrap();
        assert_eq!(f.geometry, Some(point!(x: 1.5, y: -2.).into()));
        assert_eq!(
            Value::Object(f.properties),
            json!({"name":"a, b","count":3,"ratio":0.5,"flag":true,"code":"007"})
        );
        assert_eq!((rs[0].line, rs[0].ordinal), (2, 0));
    }

    #[test]
    fn physical_lines_and_rejections() {
        let text = "id,longitude,latitude\n\
                    1,10,20\n\
                    \"two\nlines\",11,21\n\
                    3,,21\n\
                    4,abc,21\n\
                    5,10,91.5\n\
                    6,10\n\
                    7,NaN,0\n\
                    8, 12 , 13 \n";
        assert_eq!(
            reasons(text),
            [
                (2, 0, Ok(json!({"id":1}))),
                (3, 1, Ok(json!({"id":"two\nlines"}))),
                (5, 2, Err("empty longitude".to_owned())),
                (6, 3, Err("longitude \"abc\" is not a number".to_owned())),
                (7, 4, Err("latitude 91.5 out of range [-90, 90]".to_owned())),
                (8, 5, Err("row has 2 fields, header has 3".to_owned())),
                (9, 6, Err("coordinate (NaN, 0) is not finite".to_owned())),
                (10, 7, Ok(json!({"id":8}))),
            ]
        );
    }

    #[test]
    fn delimiters_are_detected_or_given() {
        let semicolon = records("\u{feff}name;lat;lon\nx;1,5;2\ny;1;2\n");
        assert_eq!(
            semicolon[0].feature.clone().unwrap_err().reason,
            "latitude \"1,5\" is not a number"
        );
        assert_eq!(
            semicolon[1].feature.clone().unwrap().geometry,
            Some(point!(x: 2., y: 1.).into())
        );
        let tab = records("name\tx\ty\na,b\t3\t4\n");
        let f = tab[0].feature.clone().unwrap();
        assert_eq!(f.geometry, Some(point!(x: 3., y: 4.).into()));
        assert_eq!(f.properties["name"], json!("a,b"));
        let opts = ReadOptions {
            csv: CsvOptions {
                delimiter: Some(b'|'),
                lon: Some("E".into()),
                lat: Some("N".into()),
                ..CsvOptions::default()
            },
            ..ReadOptions::default()
        };
        let piped: Vec<Record> = open_with(b"n|e|lat\n1|2|3\n", &opts, 1 << 20)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            piped[0].feature.clone().unwrap().geometry,
            Some(point!(x: 2., y: 1.).into())
        );
        let opts = ReadOptions {
            csv: CsvOptions {
                lat: Some("north".into()),
                ..CsvOptions::default()
            },
            ..ReadOptions::default()
        };
        assert_eq!(
            open_with(b"n,lon,lat\n1,2,3\n", &opts, 1 << 20).err(),
            Some("1:1: latitude column \"north\" not in header: n,lon,lat".to_owned())
        );
    }

    #[test]
    fn crlf_and_blank_lines() {
        let text = "lon,lat,name\r\n\r\n1,2,\"a\"\r\n\n3,4,b\r\n";
        assert_eq!(
            reasons(text),
            [
                (3, 0, Ok(json!({"name":"a"}))),
                (5, 1, Ok(json!({"name":"b"}))),
            ]
        );
    }

    #[test]
    fn last_row_without_line_break_after_blank_lines() {
        let text = "lon,lat,name\n1,2,\"x\ny\"\n\n\n3,4,z";
        assert_eq!(
            reasons(text),
            [
                (2, 0, Ok(json!({"name":"x\ny"}))),
                (6, 1, Ok(json!({"name":"z"}))),
            ]
        );
    }

    #[test]
    fn wkt_columns() {
        let text = "id;WKT\n\
                    1;POINT(1 2)\n\
                    2;\"SRID=4326;LINESTRING(0 0, 1 1)\"\n\
                    3;POLYGON((0 0, 1 0, 1 1, 0 1))\n\
                    4;MULTIPOLYGON(((0 0, 1 0, 1 1, 0 0)),((5 5, 6 5, 6 6, 5 6)))\n\
                    5;POINT(1\n\
                    6;\n\
                    7;POINT Z (1 2 3)\n\
                    8;GEOMETRYCOLLECTION(POINT(1 2),POLYGON((0 0,1 0,1 1,0 1)))\n\
                    9;POINT EMPTY\n";
        let rs = records(text);
        let geometry = |i: usize| {
            rs[i]
                .feature
                .clone()
                .map(|f| f.geometry)
                .map_err(|r| r.reason)
        };
        assert_eq!(geometry(0), Ok(Some(point!(x: 1., y: 2.).into())));
        assert!(matches!(geometry(1), Ok(Some(Geometry::LineString(_)))));
        // Unclosed rings are closed, and the record says so.
        assert!(matches!(geometry(2), Ok(Some(Geometry::Polygon(_)))));
        assert!(rs[2].repairs.contains(crate::Repair::RingClosed));
        assert!(matches!(geometry(3), Ok(Some(Geometry::MultiPolygon(_)))));
        assert!(rs[0].repairs.is_empty());
        assert!(geometry(4).unwrap_err().starts_with("invalid WKT"));
        assert_eq!(geometry(5), Err("empty WKT geometry".to_owned()));
        assert_eq!(geometry(6), Ok(Some(point!(x: 1., y: 2.).into())));
        assert!(matches!(
            geometry(7),
            Ok(Some(Geometry::GeometryCollection(_)))
        ));
        assert_eq!(geometry(8), Ok(None));
        assert_eq!(rs[0].feature.clone().unwrap().properties["id"], json!(1));
    }

    #[test]
    fn deep_wkt_is_rejected_not_a_stack_overflow() {
        let deep = format!(
            "wkt\n\"{}POINT(1 2){}\"\n",
            "GEOMETRYCOLLECTION(".repeat(50_000),
            ")".repeat(50_000)
        );
        let rs = records(&deep);
        assert_eq!(
            rs[0].feature.clone().unwrap_err().reason,
            "WKT nested deeper than 64 levels"
        );
    }

    #[test]
    fn header_problems_are_read_errors() {
        let opts = ReadOptions::default();
        assert_eq!(
            open_with(b"a,b,c\n1,2,3\n", &opts, 1 << 20).err(),
            Some("1:1: no longitude/latitude or WKT column in header: a,b,c".to_owned())
        );
        assert_eq!(
            open_with(b"", &opts, 1 << 20).err(),
            Some("1:1: empty input: a CSV header row is required".to_owned())
        );
        assert_eq!(
            open_with(b"lon,\xff,lat\n", &opts, 1 << 20).err(),
            Some("1:1: CSV header is not valid UTF-8".to_owned())
        );
    }

    #[test]
    fn invalid_utf8_cell_is_a_rejection() {
        let rs: Vec<Record> = open_with(
            b"lon,lat,name\n1,2,\xff\n3,4,ok\n",
            &ReadOptions::default(),
            1 << 20,
        )
        .unwrap()
        .map(Result::unwrap)
        .collect();
        assert_eq!(
            rs[0].feature.clone().unwrap_err().reason,
            "column \"name\" is not valid UTF-8"
        );
        assert!(rs[1].feature.is_ok());
    }

    #[test]
    fn a_row_of_delimiters_is_charged_for_its_fields() {
        // 200 000 commas are 200 KB of text but 1.6 MB of field bounds in the
        // csv crate: the cap must see the latter. (The cap is checked per read
        // of 64 KiB, so it is only meaningful well above 9 x 64 KiB.)
        let mut text = b"lon,lat,name\n".to_vec();
        text.extend(std::iter::repeat_n(b',', 200_000));
        text.extend_from_slice(b"\n1,2,x\n");
        let out: Vec<Result<Record, String>> = open_with(&text, &ReadOptions::default(), 1_000_000)
            .unwrap()
            .map(|r| r.map_err(|e| e.to_string()))
            .collect();
        assert!(
            matches!(&out[..], [Err(e)] if e.ends_with("CSV record longer than 1000000 bytes")),
            "{out:?}"
        );
        // Ordinary rows are far from it.
        let mut text = b"lon,lat,name\n".to_vec();
        for _ in 0..200_000 {
            text.extend_from_slice(b"1,2,x\n");
        }
        let out = open_with(&text, &ReadOptions::default(), 1_000_000).unwrap();
        assert_eq!(out.map(Result::unwrap).count(), 200_000);
    }

    #[test]
    fn unterminated_quote_hits_the_record_cap() {
        let mut text = b"lon,lat,name\n1,2,\"open\n".to_vec();
        for _ in 0..100_000 {
            text.extend_from_slice(b"1,2,more\n");
        }
        let out: Vec<Result<Record, String>> = open_with(&text, &ReadOptions::default(), 100_000)
            .unwrap()
            .map(|r| r.map_err(|e| e.to_string()))
            .collect();
        assert_eq!(out.len(), 1);
        assert!(
            matches!(&out[0], Err(e) if e.ends_with("CSV record longer than 100000 bytes")),
            "{out:?}"
        );
    }
}
