//! The SQL/MM curves: CircularString, CompoundCurve, CurvePolygon and MultiCurve, made into
//! straight segments by [`crate::curve`].

use geo_types::{Coord, LineString, MultiLineString, Polygon};

use super::read::polygon;
use super::{
    CIRCULARSTRING, COMPOUNDCURVE, CURVEPOLYGON, Header, LINESTRING, MIN_GEOMETRY, MULTICURVE,
    Reader, WkbError, reserve, type_name,
};
use crate::curve;
use crate::repair::close_ring;

impl Reader<'_> {
    /// A CircularString's positions as straight segments.
    pub(super) fn circular(&mut self, h: Header) -> Result<Vec<Coord<f64>>, WkbError> {
        let points = self.coords(h)?;
        let mut out = Vec::with_capacity(points.len());
        let fail = |reason: String| WkbError::Curve {
            offset: h.offset,
            kind: type_name(CIRCULARSTRING),
            reason,
        };
        curve::circular_string(&points, &mut out, &mut self.budget).map_err(fail)?;
        // The given positions are not NaN, but an arc through coordinates near f64::MAX can
        // overflow to a NaN one, which no geometry may hold.
        if out.iter().any(|c| c.x.is_nan() || c.y.is_nan()) {
            return Err(fail(
                "made into straight segments it has NaN positions (its coordinates overflow)"
                    .to_owned(),
            ));
        }
        Ok(out)
    }

    /// A CompoundCurve's LineString and CircularString parts, joined.
    pub(super) fn compound(&mut self, h: Header) -> Result<Vec<Coord<f64>>, WkbError> {
        let n = self.count(h, MIN_GEOMETRY)?;
        let mut out: Vec<Coord<f64>> = Vec::new();
        for i in 0..n {
            let m = self.header()?;
            let part = match m.kind {
                LINESTRING => self.coords(m)?,
                CIRCULARSTRING => self.circular(m)?,
                other => {
                    return Err(WkbError::Member {
                        offset: m.offset,
                        parent: type_name(COMPOUNDCURVE),
                        found: type_name(other),
                    });
                }
            };
            let Some(first) = part.first() else { continue };
            match out.last() {
                None => out.extend(part),
                Some(last) if last == first => out.extend(part.into_iter().skip(1)),
                Some(_) => {
                    return Err(WkbError::Curve {
                        offset: h.offset,
                        kind: type_name(COMPOUNDCURVE),
                        reason: format!(
                            "part {i} (at offset {}) does not start where the part before it ends",
                            m.offset
                        ),
                    });
                }
            }
        }
        Ok(out)
    }

    /// A member curve (of a CurvePolygon or MultiCurve): LineString, CircularString or
    /// CompoundCurve, as straight segments.
    fn curve(&mut self, parent: u32) -> Result<Vec<Coord<f64>>, WkbError> {
        let h = self.header()?;
        match h.kind {
            LINESTRING => self.coords(h),
            CIRCULARSTRING => self.circular(h),
            COMPOUNDCURVE => self.compound(h),
            other => Err(WkbError::Member {
                offset: h.offset,
                parent: type_name(parent),
                found: type_name(other),
            }),
        }
    }

    pub(super) fn curve_polygon(&mut self, h: Header) -> Result<Polygon<f64>, WkbError> {
        let n = self.count(h, MIN_GEOMETRY)?;
        let mut rings = reserve(n);
        for _ in 0..n {
            let mut ring = self.curve(CURVEPOLYGON)?;
            close_ring(&mut ring, self.repairs);
            rings.push(ring);
        }
        Ok(polygon(rings))
    }

    /// A MultiCurve's curves as lines; an empty one is left out.
    pub(super) fn multi_curve(&mut self, h: Header) -> Result<MultiLineString<f64>, WkbError> {
        let n = self.count(h, MIN_GEOMETRY)?;
        let mut lines = reserve(n);
        for _ in 0..n {
            let line = self.curve(MULTICURVE)?;
            if !line.is_empty() {
                lines.push(LineString(line));
            }
        }
        Ok(MultiLineString(lines))
    }
}
