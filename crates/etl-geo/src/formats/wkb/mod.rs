//! The one reader of well-known binary: OGC/ISO WKB of either byte order, with the ISO type
//! codes for Z (1000+), M (2000+) and ZM (3000+), and PostGIS EWKB's Z, M and SRID flag bits.
//! GeoPackage blobs, GeoParquet's WKB columns and PostGIS rows ([`read_ewkb`]) are all read
//! here. Z and M are dropped. (EWKB is written by [`crate::ewkb`].)
//!
//! Point, LineString, Polygon, their Multi* forms and GeometryCollection are read; so are the
//! curves (CircularString, CompoundCurve, CurvePolygon, MultiCurve, MultiSurface: type codes
//! 8–12), made into straight segments as GDAL does ([`crate::curve`]; a position that
//! linearising makes NaN, from coordinates near `f64::MAX`, is refused), Triangle (17) as a
//! Polygon and TIN (16) and PolyhedralSurface (15) as a MultiPolygon. The abstract Curve and
//! Surface (13, 14) are refused, naming the type, and so is a type code declaring Z or M both by
//! a flag bit and by its thousands (PostGIS would take the flag and the code as one; adding them
//! up, or guessing which one is meant, would misread every position after it). Every count is
//! checked against the bytes left before anything is allocated, collections nest at most
//! [`MAX_NESTING`] deep, an unclosed ring is closed (on the stored positions, noted as
//! [`Repair::RingClosed`](crate::Repair::RingClosed)), NaN positions are refused (an all-NaN
//! Point is the empty point, which a Multi* or collection may not hold), and nothing may follow
//! the geometry. Only the outermost SRID is kept; those of members are skipped.
//!
//! The two entry points differ only in what they give back:
//! - [`read`] (GeoPackage, GeoParquet): `None` for an empty geometry (the empty point, or no
//!   positions, rings or members at the top level);
//! - [`read_ewkb`] (PostGIS rows): the SRID, and an empty geometry as the empty value of its
//!   type; but the empty point is refused ([`WkbError::EmptyPoint`] at offset 0),
//!   since it is NaN NaN and a Point cannot say "empty". [`read_ewkb_with_repairs`] also
//!   reports the closed rings (PostGIS does not store unclosed ones, so `read_ewkb` drops that
//!   note).
//!
//! Every error is one line that names the byte offset, from the start of the WKB, where the
//! bytes stopped making sense.

mod curves;
mod read;
#[cfg(test)]
mod tests;

use geo_types::Geometry;

use crate::curve::Budget;
use crate::repair::Repairs;

/// Deepest nesting of geometry collections.
pub(crate) const MAX_NESTING: usize = 64;

const Z_FLAG: u32 = 0x8000_0000;
const M_FLAG: u32 = 0x4000_0000;
/// PostGIS EWKB's flags and type codes, shared with the EWKB writer (`crate::ewkb`).
pub(crate) const SRID_FLAG: u32 = 0x2000_0000;

pub(crate) const POINT: u32 = 1;
pub(crate) const LINESTRING: u32 = 2;
pub(crate) const POLYGON: u32 = 3;
pub(crate) const MULTIPOINT: u32 = 4;
pub(crate) const MULTILINESTRING: u32 = 5;
pub(crate) const MULTIPOLYGON: u32 = 6;
pub(crate) const COLLECTION: u32 = 7;
const CIRCULARSTRING: u32 = 8;
const COMPOUNDCURVE: u32 = 9;
const CURVEPOLYGON: u32 = 10;
const MULTICURVE: u32 = 11;
const MULTISURFACE: u32 = 12;
const CURVE: u32 = 13;
const SURFACE: u32 = 14;
const POLYHEDRALSURFACE: u32 = 15;
const TIN: u32 = 16;
const TRIANGLE: u32 = 17;

/// The smallest WKB geometry: byte order, type and a count.
const MIN_GEOMETRY: usize = 9;

/// The most bytes reserved up front for the items a count read from the data announces. A
/// count is checked against the bytes left, but collections nest (up to [`MAX_NESTING`]
/// levels, each with its own count checked against nearly the same bytes), so reserving
/// for each would add up to many times the input; past this, a Vec grows as its items are
/// actually read.
const MAX_RESERVE_BYTES: usize = 64 << 10;

/// An empty Vec with room for `n` items, or for [`MAX_RESERVE_BYTES`] of them if fewer.
fn reserve<T>(n: usize) -> Vec<T> {
    Vec::with_capacity(n.min(MAX_RESERVE_BYTES / std::mem::size_of::<T>().max(1)))
}

fn type_name(kind: u32) -> &'static str {
    match kind {
        POINT => "Point",
        LINESTRING => "LineString",
        POLYGON => "Polygon",
        MULTIPOINT => "MultiPoint",
        MULTILINESTRING => "MultiLineString",
        MULTIPOLYGON => "MultiPolygon",
        COLLECTION => "GeometryCollection",
        CIRCULARSTRING => "CircularString",
        COMPOUNDCURVE => "CompoundCurve",
        CURVEPOLYGON => "CurvePolygon",
        MULTICURVE => "MultiCurve",
        MULTISURFACE => "MultiSurface",
        CURVE => "Curve",
        SURFACE => "Surface",
        POLYHEDRALSURFACE => "PolyhedralSurface",
        TIN => "TIN",
        TRIANGLE => "Triangle",
        _ => "unknown geometry type",
    }
}

/// Why bytes are not WKB or EWKB this crate can read (`etl_geo::EwkbError`). Each message is
/// one line naming the byte offset where reading stopped.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WkbError {
    #[error("WKB ends early: {needed} more bytes needed at offset {offset}, {left} left")]
    UnexpectedEnd {
        offset: usize,
        needed: usize,
        left: usize,
    },
    #[error(
        "WKB: a {parent} at offset {offset} says it has {count} parts, which would need {needed} bytes; {left} are left"
    )]
    Count {
        offset: usize,
        parent: &'static str,
        count: usize,
        needed: usize,
        left: usize,
    },
    #[error("WKB: invalid byte order marker {marker} at offset {offset}")]
    ByteOrder { offset: usize, marker: u8 },
    #[error("WKB: unknown geometry type code {code} ({code:#x}) at offset {offset}")]
    GeometryType { offset: usize, code: u32 },
    #[error("{name} geometries are not supported (WKB type code {code} at offset {offset})")]
    Unsupported {
        offset: usize,
        code: u32,
        name: &'static str,
    },
    #[error("WKB: geometry type code {code:#x} at offset {offset} declares Z or M twice")]
    DeclaredTwice { offset: usize, code: u32 },
    #[error("WKB: a {found} inside a {parent} at offset {offset}")]
    Member {
        offset: usize,
        parent: &'static str,
        found: &'static str,
    },
    #[error("WKB: empty point at offset {offset} cannot be represented")]
    EmptyPoint { offset: usize },
    /// geo_types cannot hold NaN faithfully: `Polygon::new` sees a ring starting with NaN as
    /// open and appends to it on every read.
    #[error("WKB: NaN coordinate at offset {offset}")]
    NanCoordinate { offset: usize },
    #[error("WKB: the {kind} at offset {offset}: {reason}")]
    Curve {
        offset: usize,
        kind: &'static str,
        reason: String,
    },
    #[error("WKB: geometry collections nested deeper than {MAX_NESTING} levels at offset {offset}")]
    TooDeep { offset: usize },
    #[error("WKB: {count} bytes after the end of the geometry at offset {offset}")]
    TrailingBytes { offset: usize, count: usize },
}

/// Reads one WKB geometry filling all of `bytes`; `None` when it is empty (an all-NaN Point,
/// or a geometry with no positions, rings or members).
pub(crate) fn read(bytes: &[u8], repairs: &mut Repairs) -> Result<Option<Geometry<f64>>, WkbError> {
    let (_, geometry) = decode(bytes, repairs)?;
    Ok((!is_empty(&geometry)).then_some(geometry))
}

/// Reads (E)WKB of either byte order, 2D or with Z/M (dropped), PostGIS flag or ISO type
/// codes, curves made straight: the SRID if the EWKB has one, and the geometry. An empty
/// geometry is its type's empty value, except the empty point, which is refused. An unclosed
/// ring is closed; see [`read_ewkb_with_repairs`] to be told.
pub fn read_ewkb(bytes: &[u8]) -> Result<(Option<i32>, Geometry<f64>), WkbError> {
    let mut closed_rings = Repairs::NONE;
    read_ewkb_with_repairs(bytes, &mut closed_rings)
}

/// [`read_ewkb`], adding [`Repair::RingClosed`](crate::Repair::RingClosed) to `repairs` when
/// a ring had to be closed.
#[inline]
pub fn read_ewkb_with_repairs(
    bytes: &[u8],
    repairs: &mut Repairs,
) -> Result<(Option<i32>, Geometry<f64>), WkbError> {
    let (srid, geometry) = decode(bytes, repairs)?;
    if matches!(&geometry, Geometry::Point(p) if p.x().is_nan()) {
        return Err(WkbError::EmptyPoint { offset: 0 });
    }
    Ok((srid, geometry))
}

/// The outermost SRID and the geometry of `bytes`, which it must fill.
#[inline(always)]
fn decode(bytes: &[u8], repairs: &mut Repairs) -> Result<(Option<i32>, Geometry<f64>), WkbError> {
    let mut r = Reader {
        bytes,
        offset: 0,
        budget: Budget::default(),
        repairs,
    };
    let h = r.header()?;
    // A lone point (most PostGIS rows) skips the dispatch on every type.
    let geometry = if h.kind == POINT {
        Geometry::Point(r.point(h)?)
    } else {
        r.body(h, 0)?
    };
    let count = r.left();
    if count > 0 {
        return Err(WkbError::TrailingBytes {
            offset: r.offset,
            count,
        });
    }
    Ok((h.srid, geometry))
}

/// A geometry read with no content at the top level.
fn is_empty(g: &Geometry<f64>) -> bool {
    match g {
        Geometry::Point(p) => p.x().is_nan() && p.y().is_nan(),
        Geometry::LineString(l) => l.0.is_empty(),
        Geometry::Polygon(p) => p.exterior().0.is_empty() && p.interiors().is_empty(),
        Geometry::MultiPoint(m) => m.0.is_empty(),
        Geometry::MultiLineString(m) => m.0.is_empty(),
        Geometry::MultiPolygon(m) => m.0.is_empty(),
        Geometry::GeometryCollection(c) => c.0.is_empty(),
        _ => false,
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
    /// What linearising this geometry's arcs may still make.
    budget: Budget,
    repairs: &'a mut Repairs,
}

#[derive(Clone, Copy)]
struct Header {
    little_endian: bool,
    kind: u32,
    /// Ordinates per position (2 to 4).
    dims: usize,
    /// Where the geometry starts.
    offset: usize,
    srid: Option<i32>,
}

impl Reader<'_> {
    fn left(&self) -> usize {
        self.bytes.len().saturating_sub(self.offset)
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N], WkbError> {
        let chunk = self
            .bytes
            .get(self.offset..)
            .and_then(|rest| rest.first_chunk::<N>())
            .ok_or_else(|| WkbError::UnexpectedEnd {
                offset: self.offset,
                needed: N,
                left: self.left(),
            })?;
        self.offset = self.offset.saturating_add(N);
        Ok(*chunk)
    }

    #[inline]
    fn u32(&mut self, little_endian: bool) -> Result<u32, WkbError> {
        let b = self.array::<4>()?;
        Ok(if little_endian {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    }

    #[inline]
    fn f64(&mut self, little_endian: bool) -> Result<f64, WkbError> {
        let b = self.array::<8>()?;
        Ok(if little_endian {
            f64::from_le_bytes(b)
        } else {
            f64::from_be_bytes(b)
        })
    }

    #[inline]
    fn header(&mut self) -> Result<Header, WkbError> {
        let offset = self.offset;
        let little_endian = match self.array::<1>()? {
            [0] => false,
            [1] => true,
            [marker] => return Err(WkbError::ByteOrder { offset, marker }),
        };
        let code = self.u32(little_endian)?;
        let srid = if code & SRID_FLAG != 0 {
            Some(self.u32(little_endian)?.cast_signed())
        } else {
            None
        };
        let base = code & 0x0FFF_FFFF;
        // The common 2D (or flagged EWKB) case first: no division.
        let (kind, iso_extra) = if base < 1000 {
            (base, 0)
        } else {
            let extra = match base / 1000 {
                1 | 2 => 1,
                3 => 2,
                _ => return Err(WkbError::GeometryType { offset, code }),
            };
            (base % 1000, extra)
        };
        match kind {
            POINT..=MULTISURFACE | POLYHEDRALSURFACE..=TRIANGLE => {}
            CURVE | SURFACE => {
                return Err(WkbError::Unsupported {
                    offset,
                    code,
                    name: type_name(kind),
                });
            }
            _ => return Err(WkbError::GeometryType { offset, code }),
        }
        if iso_extra > 0 && code & (Z_FLAG | M_FLAG) != 0 {
            return Err(WkbError::DeclaredTwice { offset, code });
        }
        let dims =
            2 + iso_extra + usize::from(code & Z_FLAG != 0) + usize::from(code & M_FLAG != 0);
        Ok(Header {
            little_endian,
            kind,
            dims,
            offset,
            srid,
        })
    }

    /// A count of items at least `min_size` bytes each, checked against the bytes left so
    /// that a lying count cannot ask for a huge allocation.
    fn count(&mut self, h: Header, min_size: usize) -> Result<usize, WkbError> {
        let offset = self.offset;
        let n = self.u32(h.little_endian)?;
        let count = usize::try_from(n).unwrap_or(usize::MAX);
        let needed = count.saturating_mul(min_size.max(1));
        let left = self.left();
        if needed > left {
            return Err(WkbError::Count {
                offset,
                parent: type_name(h.kind),
                count,
                needed,
                left,
            });
        }
        Ok(count)
    }
}
