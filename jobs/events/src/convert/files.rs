//! The temporary files a conversion writes: made in the scratch directory, hashed and
//! counted as they are written, and the bounds of what went in.

use std::io::{self, Read, Seek, Write};
use std::path::Path;

use etl_core::JobError;
use sha2::{Digest, Sha256};
use tempfile::NamedTempFile;

use super::Artifact;

pub(super) fn temp_in(dir: &Path, suffix: &str) -> Result<NamedTempFile, JobError> {
    tempfile::Builder::new()
        .prefix(".etl-events-")
        .suffix(suffix)
        .tempfile_in(dir)
        .map_err(|e| {
            JobError::temporary(format!(
                "{}: cannot create a temporary file: {e}",
                dir.display()
            ))
        })
}

pub(super) fn temp_err(e: io::Error) -> JobError {
    JobError::temporary(format!("temporary output: {e}"))
}

/// Size and SHA-256 of a finished temporary file.
pub(super) fn artifact(file: NamedTempFile) -> Result<Artifact, JobError> {
    let mut f = file.reopen().map_err(temp_err)?;
    f.rewind().map_err(temp_err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(temp_err)?;
        if n == 0 {
            break;
        }
        hasher.update(buf.get(..n).unwrap_or_default());
        bytes += n as u64;
    }
    Ok(Artifact {
        file,
        bytes,
        sha256: hex::encode(hasher.finalize()),
    })
}

/// Counts and hashes what passes through.
pub(super) struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    pub(super) fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
        }
    }

    pub(super) fn finish(mut self) -> io::Result<(u64, String)> {
        self.inner.flush()?;
        Ok((self.bytes, hex::encode(self.hasher.finalize())))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        let written = buf.get(..n).unwrap_or_default();
        self.hasher.update(written);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Grows `[west, south, east, north]` by a geometry's coordinates.
pub(super) fn extend_bounds(g: &etl_geo::geo_types::Geometry<f64>, b: &mut Option<[f64; 4]>) {
    use etl_geo::geo_types::{Coord, Geometry};
    fn add(c: Coord<f64>, b: &mut Option<[f64; 4]>) {
        let [w, s, e, n] = b.get_or_insert([c.x, c.y, c.x, c.y]);
        *w = w.min(c.x);
        *s = s.min(c.y);
        *e = e.max(c.x);
        *n = n.max(c.y);
    }
    match g {
        Geometry::Point(p) => add(p.0, b),
        Geometry::Line(l) => {
            add(l.start, b);
            add(l.end, b);
        }
        Geometry::LineString(ls) => ls.0.iter().for_each(|c| add(*c, b)),
        Geometry::Polygon(p) => p.exterior().0.iter().for_each(|c| add(*c, b)),
        Geometry::MultiPoint(mp) => mp.0.iter().for_each(|p| add(p.0, b)),
        Geometry::MultiLineString(ml) => ml.0.iter().flat_map(|l| &l.0).for_each(|c| add(*c, b)),
        Geometry::MultiPolygon(mp) => {
            mp.0.iter()
                .flat_map(|p| &p.exterior().0)
                .for_each(|c| add(*c, b))
        }
        Geometry::GeometryCollection(gc) => gc.0.iter().for_each(|g| extend_bounds(g, b)),
        Geometry::Rect(r) => {
            add(r.min(), b);
            add(r.max(), b);
        }
        Geometry::Triangle(t) => [t.v1(), t.v2(), t.v3()].into_iter().for_each(|c| add(c, b)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use etl_geo::geo_types::{Geometry, LineString, Point};

    #[test]
    fn bounds_cover_every_coordinate() {
        let mut b = None;
        extend_bounds(&Geometry::Point(Point::new(1.0, 2.0)), &mut b);
        extend_bounds(
            &Geometry::LineString(LineString::from(vec![(-3.0, 5.0), (4.0, -1.0)])),
            &mut b,
        );
        assert_eq!(b, Some([-3.0, -1.0, 4.0, 5.0]));
    }

    #[test]
    fn hashing_writer_counts_and_hashes() {
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"abc").unwrap();
        let (n, h) = w.finish().unwrap();
        assert_eq!(n, 3);
        assert_eq!(
            h,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
