//! The `.shp` main file: its 100-byte header, then records read one at a time into
//! a reused buffer and turned into `geo_types` geometry.

use std::io::{self, BufRead, Read};

use geo_types::{Coord, Geometry, LineString, MultiLineString, MultiPoint, Point};

use super::multipatch::multipatch;
use super::rings::{Ticker, polygons};
use crate::formats::MAX_RECORD_BYTES;
use crate::repair::Repairs;

/// Why a record's shape gives no geometry.
#[derive(Debug)]
pub(crate) enum ShapeError {
    /// The record is rejected for this one-line reason; reading goes on.
    Reject(String),
    /// The caller's cancel token stopped the work: reading ends.
    Cancelled,
}

impl From<String> for ShapeError {
    fn from(reason: String) -> Self {
        ShapeError::Reject(reason)
    }
}

pub(crate) struct ShpReader {
    input: Box<dyn BufRead + Send>,
    /// File length from the header, in bytes.
    length: u64,
    /// Bytes consumed so far (header included).
    pos: u64,
    content: Vec<u8>,
    /// How many records the `.shx` lists, when there is one: the rest of the file is not read.
    records: Option<u64>,
    /// Records read so far.
    read: u64,
    /// The header's bounding box: min x, min y, max x, max y.
    extent: [f64; 4],
}

/// One record's content, borrowed from the reader's buffer.
pub(crate) struct ShpRecord<'a> {
    pub(crate) content: &'a [u8],
}

/// The number of records a `.shx` header lists, `None` when `head` (its first 100 bytes, or
/// fewer) is not a shapefile index header.
pub(crate) fn shx_records(head: &[u8]) -> Option<u64> {
    let code = i32::from_be_bytes(head.get(0..4)?.try_into().ok()?);
    if code != 9994 || head.len() < 100 {
        return None;
    }
    let words = u32::from_be_bytes(head.get(24..28)?.try_into().ok()?);
    Some((u64::from(words) * 2).saturating_sub(100) / 8)
}

impl ShpReader {
    /// Reads the header of a `.shp`; `records` is what its `.shx` lists, when it has one.
    pub(crate) fn open(
        mut input: Box<dyn BufRead + Send>,
        records: Option<u64>,
    ) -> Result<Self, String> {
        let mut head = [0u8; 100];
        input.read_exact(&mut head).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => {
                "the .shp file is shorter than the 100-byte shapefile header".to_owned()
            }
            _ => format!("cannot read the .shp file: {e}"),
        })?;
        let code = i32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        if code != 9994 {
            return Err(format!(
                "the .shp file is not a shapefile (file code {code}, expected 9994)"
            ));
        }
        let words = u32::from_be_bytes([head[24], head[25], head[26], head[27]]);
        Ok(ShpReader {
            input,
            length: u64::from(words) * 2,
            pos: 100,
            content: Vec::new(),
            records,
            read: 0,
            extent: [36, 44, 52, 60].map(|at| {
                let mut b = [0u8; 8];
                b.copy_from_slice(&head[at..at + 8]);
                f64::from_le_bytes(b)
            }),
        })
    }

    /// The header's bounding box (min x, min y, max x, max y), in the file's coordinates.
    pub(crate) fn extent(&self) -> [f64; 4] {
        self.extent
    }

    /// Reads the next record; `Ok(None)` at the end of the file the header declares, or after
    /// the records the `.shx` lists.
    /// A file shorter than its header says is an error.
    pub(crate) fn next_record(&mut self) -> Result<Option<ShpRecord<'_>>, String> {
        if self.pos >= self.length || self.records.is_some_and(|n| self.read >= n) {
            return Ok(None);
        }
        let at = self.pos;
        let mut head = [0u8; 8];
        let got = read_full(&mut self.input, &mut head)
            .map_err(|e| format!("cannot read the .shp file: {e}"))?;
        if got == 0 {
            return Err(format!(
                "the .shp file is truncated: it ends at byte {at} but its header says {} bytes",
                self.length
            ));
        }
        if got < 8 {
            return Err(format!(
                "the .shp file is truncated inside the record header at byte {at}"
            ));
        }
        let words = i32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        let len = usize::try_from(words)
            .ok()
            .and_then(|w| w.checked_mul(2))
            .filter(|&l| l <= MAX_RECORD_BYTES)
            .ok_or_else(|| {
                format!(
                    "the .shp record at byte {at} has an invalid content length ({words} words)"
                )
            })?;
        self.content.clear();
        let read = (&mut self.input)
            .take(len as u64)
            .read_to_end(&mut self.content)
            .map_err(|e| format!("cannot read the .shp file: {e}"))?;
        if read < len {
            return Err(format!(
                "the .shp file is truncated inside the record at byte {at} ({read} of {len} bytes)"
            ));
        }
        self.pos = at + 8 + len as u64;
        self.read += 1;
        Ok(Some(ShpRecord {
            content: &self.content,
        }))
    }
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

/// Bounds-checked little-endian access to a record's content.
struct Content<'a>(&'a [u8]);

impl Content<'_> {
    fn i32(&self, at: usize) -> Result<i32, String> {
        self.0
            .get(at..at + 4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(short)
    }

    fn f64(&self, at: usize) -> Result<f64, String> {
        let b = self.0.get(at..at + 8).ok_or_else(short)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(f64::from_le_bytes(a))
    }

    fn count(&self, at: usize, what: &str) -> Result<usize, String> {
        let n = self.i32(at)?;
        let n = usize::try_from(n).map_err(|_| format!("negative number of {what} ({n})"))?;
        // Each part takes 4 bytes and each point 16: a count past that is corrupt.
        if n > self.0.len() / 4 {
            return Err(format!("number of {what} ({n}) exceeds the record"));
        }
        Ok(n)
    }

    fn coord(&self, at: usize) -> Result<Coord<f64>, String> {
        Ok(Coord {
            x: self.f64(at)?,
            y: self.f64(at + 8)?,
        })
    }
}

fn short() -> String {
    "record content is shorter than its shape needs".to_owned()
}

/// The geometry of one record's content; `Err(Reject)` is a one-line reason to reject the
/// record. `ticker` is polled while parts are assembled.
pub(crate) fn geometry(
    content: &[u8],
    ticker: &mut Ticker<'_>,
    repairs: &mut Repairs,
) -> Result<Option<Geometry<f64>>, ShapeError> {
    let c = Content(content);
    let shape_type = c.i32(0)?;
    match shape_type {
        0 => Ok(None),
        1 | 11 | 21 => Ok(Some(Geometry::Point(Point(c.coord(4)?)))),
        8 | 18 | 28 => {
            let n = c.count(36, "points")?;
            let mut points = Vec::with_capacity(n);
            for i in 0..n {
                points.push(Point(c.coord(40 + 16 * i)?));
            }
            Ok(Some(Geometry::MultiPoint(MultiPoint(points))))
        }
        3 | 13 | 23 | 5 | 15 | 25 => {
            let parts = c.count(36, "parts")?;
            let points = c.count(40, "points")?;
            let first_point = 44 + 4 * parts;
            let mut starts = Vec::with_capacity(parts);
            for i in 0..parts {
                let s = c.i32(44 + 4 * i)?;
                let s = usize::try_from(s)
                    .ok()
                    .filter(|&s| s < points)
                    .ok_or_else(|| format!("part {i} starts at point {s} of {points}"))?;
                if starts.last().is_some_and(|&prev| s < prev) {
                    return Err(format!("part {i} starts before the part before it").into());
                }
                starts.push(s);
            }
            let mut lines = Vec::with_capacity(parts);
            for (i, &start) in starts.iter().enumerate() {
                let end = starts.get(i + 1).copied().unwrap_or(points);
                ticker.tick(end - start)?;
                let mut coords = Vec::with_capacity(end - start);
                for p in start..end {
                    coords.push(c.coord(first_point + 16 * p)?);
                }
                lines.push(LineString(coords));
            }
            if lines.is_empty() {
                return Ok(None);
            }
            if matches!(shape_type, 3 | 13 | 23) {
                if lines.len() == 1 {
                    Ok(lines.pop().map(Geometry::LineString))
                } else {
                    Ok(Some(Geometry::MultiLineString(MultiLineString(lines))))
                }
            } else {
                polygons(lines, ticker, repairs).map(Some)
            }
        }
        31 => {
            let parts = c.count(36, "parts")?;
            let points = c.count(40, "points")?;
            let types = 44 + 4 * parts;
            let first_point = types + 4 * parts;
            let mut starts = Vec::with_capacity(parts);
            for i in 0..parts {
                let s = c.i32(44 + 4 * i)?;
                let s = usize::try_from(s)
                    .ok()
                    .filter(|&s| s < points)
                    .ok_or_else(|| format!("part {i} starts at point {s} of {points}"))?;
                if starts.last().is_some_and(|&prev| s < prev) {
                    return Err(format!("part {i} starts before the part before it").into());
                }
                starts.push(s);
            }
            let mut out = Vec::with_capacity(parts);
            for (i, &start) in starts.iter().enumerate() {
                let end = starts.get(i + 1).copied().unwrap_or(points);
                let mut coords = Vec::with_capacity(end - start);
                for p in start..end {
                    coords.push(c.coord(first_point + 16 * p)?);
                }
                out.push((c.i32(types + 4 * i)?, coords));
            }
            multipatch(out, ticker, repairs)
        }
        t => Err(format!("unknown shape type {t}").into()),
    }
}
