//! The `.shp` main file: its 100-byte header, then records read one at a time into
//! a reused buffer and turned into `geo_types` geometry.

use std::io::{self, BufRead, Read};

use geo_types::{
    Coord, Geometry, LineString, MultiLineString, MultiPoint, MultiPolygon, Point, Polygon,
};

use super::crs::Crs;
use crate::formats::MAX_RECORD_BYTES;
use crate::validate::check_ring_closed;

pub(crate) struct ShpReader {
    input: Box<dyn BufRead + Send>,
    /// File length from the header, in bytes.
    length: u64,
    /// Bytes consumed so far (header included).
    pos: u64,
    content: Vec<u8>,
}

/// One record's content, borrowed from the reader's buffer.
pub(crate) struct ShpRecord<'a> {
    pub(crate) content: &'a [u8],
}

impl ShpReader {
    pub(crate) fn open(mut input: Box<dyn BufRead + Send>) -> Result<Self, String> {
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
        })
    }

    /// Reads the next record; `Ok(None)` at the end of the file the header declares.
    /// A file shorter than its header says is an error.
    pub(crate) fn next_record(&mut self) -> Result<Option<ShpRecord<'_>>, String> {
        if self.pos >= self.length {
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

    fn coord(&self, at: usize, crs: Crs) -> Result<Coord<f64>, String> {
        let (x, y) = crs.to_wgs84(self.f64(at)?, self.f64(at + 8)?);
        Ok(Coord { x, y })
    }
}

fn short() -> String {
    "record content is shorter than its shape needs".to_owned()
}

/// The geometry of one record's content; `Err` is a one-line reason to reject the record.
pub(crate) fn geometry(content: &[u8], crs: Crs) -> Result<Option<Geometry<f64>>, String> {
    let c = Content(content);
    let shape_type = c.i32(0)?;
    match shape_type {
        0 => Ok(None),
        1 | 11 | 21 => Ok(Some(Geometry::Point(Point(c.coord(4, crs)?)))),
        8 | 18 | 28 => {
            let n = c.count(36, "points")?;
            let mut points = Vec::with_capacity(n);
            for i in 0..n {
                points.push(Point(c.coord(40 + 16 * i, crs)?));
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
                    return Err(format!("part {i} starts before the part before it"));
                }
                starts.push(s);
            }
            let mut lines = Vec::with_capacity(parts);
            for (i, &start) in starts.iter().enumerate() {
                let end = starts.get(i + 1).copied().unwrap_or(points);
                let mut coords = Vec::with_capacity(end - start);
                for p in start..end {
                    coords.push(c.coord(first_point + 16 * p, crs)?);
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
                polygons(lines).map(Some)
            }
        }
        31 => Err("MultiPatch shapes are not supported".to_owned()),
        t => Err(format!("unknown shape type {t}")),
    }
}

/// Twice the signed area of a ring: negative when clockwise.
fn signed_area2(ring: &[Coord<f64>]) -> f64 {
    let mut sum = 0.0;
    for w in ring.windows(2) {
        sum += w[0].x * w[1].y - w[1].x * w[0].y;
    }
    sum
}

/// Ray-casting point-in-ring test.
fn contains(ring: &[Coord<f64>], p: Coord<f64>) -> bool {
    let mut inside = false;
    for w in ring.windows(2) {
        let (a, b) = (w[0], w[1]);
        if (a.y > p.y) != (b.y > p.y) {
            let x = a.x + (p.y - a.y) * (b.x - a.x) / (b.y - a.y);
            if p.x < x {
                inside = !inside;
            }
        }
    }
    inside
}

/// Groups shapefile rings into polygons: clockwise rings are shells, counter-clockwise
/// rings holes of the smallest shell that contains them. A hole inside no shell, or
/// rings that are all counter-clockwise, become shells of their own.
fn polygons(rings: Vec<LineString<f64>>) -> Result<Geometry<f64>, String> {
    for (i, ring) in rings.iter().enumerate() {
        check_ring_closed(&ring.0, i)?;
    }
    let areas: Vec<f64> = rings.iter().map(|r| signed_area2(&r.0)).collect();
    let any_clockwise = areas.iter().any(|&a| a < 0.0);
    let mut shells: Vec<(LineString<f64>, f64, Vec<LineString<f64>>)> = Vec::new();
    let mut holes = Vec::new();
    for (ring, area) in rings.into_iter().zip(areas) {
        if area < 0.0 || !any_clockwise {
            shells.push((ring, area.abs(), Vec::new()));
        } else {
            holes.push(ring);
        }
    }
    for hole in holes {
        // A vertex of the hole that is not on the shell decides; the first is good
        // enough for well-formed data (holes touch their shell at most at points).
        let probe = hole.0.first().copied();
        let owner = probe.and_then(|p| {
            shells
                .iter()
                .enumerate()
                .filter(|(_, (shell, _, _))| contains(&shell.0, p))
                .min_by(|a, b| a.1.1.total_cmp(&b.1.1))
                .map(|(i, _)| i)
        });
        match owner.and_then(|i| shells.get_mut(i)) {
            Some(shell) => shell.2.push(hole),
            None => {
                let area = signed_area2(&hole.0).abs();
                shells.push((hole, area, Vec::new()));
            }
        }
    }
    let mut polygons: Vec<Polygon<f64>> = shells
        .into_iter()
        .map(|(shell, _, holes)| Polygon::new(shell, holes))
        .collect();
    if polygons.len() == 1 {
        Ok(polygons.pop().map_or(
            Geometry::MultiPolygon(MultiPolygon(vec![])),
            Geometry::Polygon,
        ))
    } else {
        Ok(Geometry::MultiPolygon(MultiPolygon(polygons)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(points: &[(f64, f64)]) -> LineString<f64> {
        LineString(points.iter().map(|&(x, y)| Coord { x, y }).collect())
    }

    #[test]
    fn holes_go_to_their_shell() {
        // Two clockwise shells, a counter-clockwise hole inside the second.
        let a = ring(&[(0., 0.), (0., 1.), (1., 1.), (1., 0.), (0., 0.)]);
        let b = ring(&[(10., 0.), (10., 10.), (20., 10.), (20., 0.), (10., 0.)]);
        let h = ring(&[(12., 2.), (14., 2.), (14., 4.), (12., 4.), (12., 2.)]);
        let Geometry::MultiPolygon(mp) = polygons(vec![a, b, h]).unwrap() else {
            panic!("expected a multipolygon");
        };
        assert_eq!(mp.0.len(), 2);
        assert!(mp.0[0].interiors().is_empty());
        assert_eq!(mp.0[1].interiors().len(), 1);
    }

    #[test]
    fn open_ring_is_rejected() {
        let a = ring(&[(0., 0.), (0., 1.), (1., 1.), (1., 0.)]);
        assert!(polygons(vec![a]).is_err());
    }
}
