//! Well-known text geometries, ISO SQL/MM flavour, as GDAL reads them: Point, LineString,
//! Polygon, their Multi* forms and GeometryCollection; the curves CircularString,
//! CompoundCurve, CurvePolygon, MultiCurve and MultiSurface, made into straight segments
//! ([`crate::curve`]); Triangle as a Polygon, TIN and PolyhedralSurface as a MultiPolygon.
//!
//! Keywords in any case, Z/M/ZM (also glued: `POINTZ`) accepted and dropped, two to four
//! numbers a position (the first two kept). `EMPTY` anywhere: an empty member is left out and an
//! empty geometry is `None`. An unclosed ring is closed ([`Repair::RingClosed`]). Nesting is
//! bounded by the caller's depth, and text after the geometry is refused.

use geo_types::{
    Coord, Geometry, GeometryCollection, LineString, MultiLineString, MultiPoint, MultiPolygon,
    Point, Polygon,
};

use crate::curve::{self, Budget};
use crate::repair::{Repair, Repairs, close_ring};

/// Parses one WKT geometry (all of `text`); `Ok(None)` when it is empty.
pub(crate) fn parse(
    text: &str,
    max_depth: usize,
    repairs: &mut Repairs,
) -> Result<Option<Geometry<f64>>, String> {
    let mut p = Parser {
        text: text.as_bytes(),
        at: 0,
        max_depth,
        budget: Budget::default(),
        repairs: Repairs::NONE,
    };
    let g = p.geometry(0)?;
    p.skip_ws();
    if p.at < p.text.len() {
        return Err(format!("text after the geometry at character {}", p.at + 1));
    }
    if p.repairs.contains(Repair::RingClosed) {
        repairs.insert(Repair::RingClosed);
    }
    Ok(g)
}

struct Parser<'a> {
    text: &'a [u8],
    at: usize,
    max_depth: usize,
    budget: Budget,
    repairs: Repairs,
}

/// The geometry types, by keyword.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Point,
    LineString,
    Polygon,
    MultiPoint,
    MultiLineString,
    MultiPolygon,
    Collection,
    CircularString,
    CompoundCurve,
    CurvePolygon,
    MultiCurve,
    MultiSurface,
    Triangle,
    Tin,
    PolyhedralSurface,
}

fn kind_of(word: &str) -> Option<Kind> {
    let upper = word.to_ascii_uppercase();
    // `POINTZ`, `LINESTRINGZM`, `POLYGONM`: the dimension glued on.
    let base = ["ZM", "Z", "M"]
        .iter()
        .find_map(|suffix| {
            upper
                .strip_suffix(suffix)
                .filter(|b| kind_exact(b).is_some())
        })
        .unwrap_or(&upper);
    kind_exact(base)
}

fn kind_exact(word: &str) -> Option<Kind> {
    Some(match word {
        "POINT" => Kind::Point,
        "LINESTRING" => Kind::LineString,
        "POLYGON" => Kind::Polygon,
        "MULTIPOINT" => Kind::MultiPoint,
        "MULTILINESTRING" => Kind::MultiLineString,
        "MULTIPOLYGON" => Kind::MultiPolygon,
        "GEOMETRYCOLLECTION" => Kind::Collection,
        "CIRCULARSTRING" => Kind::CircularString,
        "COMPOUNDCURVE" => Kind::CompoundCurve,
        "CURVEPOLYGON" => Kind::CurvePolygon,
        "MULTICURVE" => Kind::MultiCurve,
        "MULTISURFACE" => Kind::MultiSurface,
        "TRIANGLE" => Kind::Triangle,
        "TIN" => Kind::Tin,
        "POLYHEDRALSURFACE" => Kind::PolyhedralSurface,
        _ => return None,
    })
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while self.text.get(self.at).is_some_and(u8::is_ascii_whitespace) {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.text.get(self.at).copied()
    }

    fn where_(&self) -> String {
        match self.text.get(self.at) {
            None => "at the end".to_owned(),
            Some(_) => format!("at character {}", self.at + 1),
        }
    }

    fn expect(&mut self, b: u8) -> Result<(), String> {
        if self.peek() == Some(b) {
            self.at += 1;
            Ok(())
        } else {
            Err(format!("expected '{}' {}", char::from(b), self.where_()))
        }
    }

    /// `(` then items separated by `,` then `)`, each read by `item`.
    fn list<T>(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<T, String>,
    ) -> Result<Vec<T>, String> {
        self.expect(b'(')?;
        let mut out = Vec::new();
        loop {
            out.push(item(self)?);
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b')') => {
                    self.at += 1;
                    return Ok(out);
                }
                _ => return Err(format!("expected ',' or ')' {}", self.where_())),
            }
        }
    }

    /// A keyword, or `None` when the next token is not a word.
    fn word(&mut self) -> Option<&str> {
        self.skip_ws();
        let start = self.at;
        while self.text.get(self.at).is_some_and(u8::is_ascii_alphabetic) {
            self.at += 1;
        }
        std::str::from_utf8(self.text.get(start..self.at)?)
            .ok()
            .filter(|w| !w.is_empty())
    }

    /// `EMPTY` next (consumed), or not (nothing consumed).
    fn empty(&mut self) -> bool {
        let start = self.at;
        match self.word() {
            Some(w) if w.eq_ignore_ascii_case("EMPTY") => true,
            _ => {
                self.at = start;
                false
            }
        }
    }

    /// A Z, M or ZM after a keyword (consumed and ignored).
    fn dimension(&mut self) {
        let start = self.at;
        match self.word() {
            Some(w) if ["Z", "M", "ZM"].iter().any(|d| w.eq_ignore_ascii_case(d)) => {}
            _ => self.at = start,
        }
    }

    fn number(&mut self) -> Result<f64, String> {
        self.skip_ws();
        let start = self.at;
        while self
            .text
            .get(self.at)
            .is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+'))
        {
            self.at += 1;
        }
        let token = std::str::from_utf8(self.text.get(start..self.at).unwrap_or_default())
            .unwrap_or_default();
        if token.is_empty() {
            return Err(format!("expected a number {}", self.where_()));
        }
        token.parse::<f64>().map_err(|_| {
            format!(
                "'{}' at character {} is not a number",
                crate::formats::excerpt(token),
                start + 1
            )
        })
    }

    /// A position: 2 to 4 numbers, the first two kept.
    fn position(&mut self) -> Result<Coord<f64>, String> {
        let x = self.number()?;
        let y = self.number()?;
        for _ in 0..2 {
            match self.peek() {
                Some(b',' | b')') | None => break,
                _ => {
                    self.number()?;
                }
            }
        }
        Ok(Coord { x, y })
    }

    /// `( x y, x y … )` or `EMPTY`.
    fn positions(&mut self) -> Result<Vec<Coord<f64>>, String> {
        if self.empty() {
            return Ok(Vec::new());
        }
        self.list(Self::position)
    }

    fn ring(&mut self) -> Result<Vec<Coord<f64>>, String> {
        let mut ring = self.positions()?;
        close_ring(&mut ring, &mut self.repairs);
        Ok(ring)
    }

    /// `( ring, ring … )` or `EMPTY`: a polygon, `None` when empty.
    fn polygon_text(&mut self) -> Result<Option<Polygon<f64>>, String> {
        if self.empty() {
            return Ok(None);
        }
        let rings = self.list(Self::ring)?;
        Ok(polygon(rings))
    }

    /// A curve: a bare position list (a LineString), or a tagged LineString,
    /// CircularString or CompoundCurve; as straight segments.
    fn curve(&mut self, depth: usize) -> Result<Vec<Coord<f64>>, String> {
        if self.peek() == Some(b'(') {
            return self.positions();
        }
        let at = self.at;
        let kind = self.word().and_then(kind_of);
        self.dimension();
        match kind {
            Some(Kind::LineString) => self.positions(),
            Some(Kind::CircularString) => self.circular(),
            Some(Kind::CompoundCurve) => self.compound(depth),
            _ => Err(format!(
                "expected a curve (LINESTRING, CIRCULARSTRING or COMPOUNDCURVE) at character {}",
                at + 1
            )),
        }
    }

    fn circular(&mut self) -> Result<Vec<Coord<f64>>, String> {
        let points = self.positions()?;
        let mut out = Vec::with_capacity(points.len());
        curve::circular_string(&points, &mut out, &mut self.budget)?;
        Ok(out)
    }

    fn compound(&mut self, depth: usize) -> Result<Vec<Coord<f64>>, String> {
        if self.empty() {
            return Ok(Vec::new());
        }
        self.nest(depth)?;
        let parts = self.list(|p| p.curve(depth + 1))?;
        let mut out: Vec<Coord<f64>> = Vec::new();
        for (i, part) in parts.into_iter().enumerate() {
            let Some(first) = part.first() else { continue };
            match out.last() {
                None => out.extend(part),
                Some(last) if last == first => out.extend(part.into_iter().skip(1)),
                Some(_) => {
                    return Err(format!(
                        "CompoundCurve part {i} does not start where the part before it ends"
                    ));
                }
            }
        }
        Ok(out)
    }

    /// A surface of a MultiSurface: a bare polygon text, or a tagged Polygon or CurvePolygon.
    fn surface(&mut self, depth: usize) -> Result<Option<Polygon<f64>>, String> {
        if self.peek() == Some(b'(') {
            return self.polygon_text();
        }
        let at = self.at;
        let kind = self.word().and_then(kind_of);
        self.dimension();
        match kind {
            Some(Kind::Polygon | Kind::Triangle) => self.polygon_text(),
            Some(Kind::CurvePolygon) => self.curve_polygon(depth),
            _ => Err(format!(
                "expected a surface (POLYGON or CURVEPOLYGON) at character {}",
                at + 1
            )),
        }
    }

    fn curve_polygon(&mut self, depth: usize) -> Result<Option<Polygon<f64>>, String> {
        if self.empty() {
            return Ok(None);
        }
        self.nest(depth)?;
        let rings = self.list(|p| {
            let mut ring = p.curve(depth + 1)?;
            close_ring(&mut ring, &mut p.repairs);
            Ok(ring)
        })?;
        Ok(polygon(rings))
    }

    fn nest(&self, depth: usize) -> Result<(), String> {
        if depth >= self.max_depth {
            return Err(format!("WKT nested deeper than {} levels", self.max_depth));
        }
        Ok(())
    }

    fn geometry(&mut self, depth: usize) -> Result<Option<Geometry<f64>>, String> {
        self.nest(depth)?;
        let at = self.at;
        let word = self.word().map(str::to_owned);
        let Some(kind) = word.as_deref().and_then(kind_of) else {
            return Err(match word {
                Some(w) => format!(
                    "unknown geometry type '{}' at character {}",
                    crate::formats::excerpt(&w),
                    at + 1
                ),
                None => format!("expected a geometry type {}", self.where_()),
            });
        };
        self.dimension();
        let depth = depth + 1;
        let g = match kind {
            Kind::Point => {
                if self.empty() {
                    return Ok(None);
                }
                self.expect(b'(')?;
                let c = self.position()?;
                self.expect(b')')?;
                Geometry::Point(Point(c))
            }
            Kind::LineString => Geometry::LineString(LineString(self.positions()?)),
            Kind::CircularString => Geometry::LineString(LineString(self.circular()?)),
            Kind::CompoundCurve => Geometry::LineString(LineString(self.compound(depth)?)),
            Kind::Polygon | Kind::Triangle => match self.polygon_text()? {
                Some(p) => Geometry::Polygon(p),
                None => return Ok(None),
            },
            Kind::CurvePolygon => match self.curve_polygon(depth)? {
                Some(p) => Geometry::Polygon(p),
                None => return Ok(None),
            },
            Kind::MultiPoint => {
                if self.empty() {
                    return Ok(None);
                }
                let points = self.list(|p| {
                    // `(1 2)` or `1 2` or `EMPTY`.
                    if p.empty() {
                        return Ok(None);
                    }
                    if p.peek() == Some(b'(') {
                        p.at += 1;
                        let c = p.position()?;
                        p.expect(b')')?;
                        Ok(Some(Point(c)))
                    } else {
                        p.position().map(|c| Some(Point(c)))
                    }
                })?;
                Geometry::MultiPoint(MultiPoint(points.into_iter().flatten().collect()))
            }
            Kind::MultiLineString | Kind::MultiCurve => {
                if self.empty() {
                    return Ok(None);
                }
                let lines = if kind == Kind::MultiCurve {
                    self.list(|p| p.curve(depth))?
                } else {
                    self.list(Self::positions)?
                };
                Geometry::MultiLineString(MultiLineString(
                    lines
                        .into_iter()
                        .filter(|l| !l.is_empty())
                        .map(LineString)
                        .collect(),
                ))
            }
            Kind::MultiPolygon | Kind::Tin | Kind::PolyhedralSurface | Kind::MultiSurface => {
                if self.empty() {
                    return Ok(None);
                }
                let polygons = if kind == Kind::MultiSurface {
                    self.list(|p| p.surface(depth))?
                } else {
                    self.list(Self::polygon_text)?
                };
                Geometry::MultiPolygon(MultiPolygon(polygons.into_iter().flatten().collect()))
            }
            Kind::Collection => {
                if self.empty() {
                    return Ok(None);
                }
                let members = self.list(|p| p.geometry(depth))?;
                Geometry::GeometryCollection(GeometryCollection(
                    members.into_iter().flatten().collect(),
                ))
            }
        };
        Ok(Some(g))
    }
}

/// A polygon of rings (the first the exterior), `None` without rings.
fn polygon(rings: Vec<Vec<Coord<f64>>>) -> Option<Polygon<f64>> {
    let mut rings = rings.into_iter().map(LineString);
    let exterior = rings.next()?;
    if exterior.0.is_empty() && rings.len() == 0 {
        return None;
    }
    Some(Polygon::new(exterior, rings.collect()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use geo_types::{line_string, point, polygon};

    fn wkt(text: &str) -> Result<Option<Geometry<f64>>, String> {
        parse(text, 64, &mut Repairs::default())
    }

    fn one(text: &str) -> Geometry<f64> {
        wkt(text).unwrap().unwrap()
    }

    #[test]
    fn simple_features() {
        assert_eq!(one("POINT (1 2)"), point!(x: 1., y: 2.).into());
        assert_eq!(one("point z(1 2 3)"), point!(x: 1., y: 2.).into());
        assert_eq!(one("POINTZM(1 2 3 4)"), point!(x: 1., y: 2.).into());
        assert_eq!(
            one("LINESTRING(0 0,1 1)"),
            line_string![(x: 0., y: 0.), (x: 1., y: 1.)].into()
        );
        assert_eq!(
            one("MULTIPOINT (1 2, (3 4), EMPTY)"),
            MultiPoint(vec![point!(x: 1., y: 2.), point!(x: 3., y: 4.)]).into()
        );
        assert_eq!(
            one("POLYGON((0 0,1 0,1 1,0 0))"),
            polygon![(x: 0., y: 0.), (x: 1., y: 0.), (x: 1., y: 1.), (x: 0., y: 0.)].into()
        );
        let gc = one("GEOMETRYCOLLECTION(POINT(1 2),POINT EMPTY,LINESTRING(0 0,1 1))");
        assert!(matches!(gc, Geometry::GeometryCollection(ref c) if c.0.len() == 2));
        assert_eq!(wkt("POINT EMPTY"), Ok(None));
        assert_eq!(wkt("MULTIPOLYGON EMPTY"), Ok(None));
    }

    #[test]
    fn unclosed_rings_are_closed_and_noted() {
        let mut r = Repairs::NONE;
        let g = parse("POLYGON((0 0,1 0,1 1))", 64, &mut r)
            .unwrap()
            .unwrap();
        assert_eq!(
            g,
            polygon![(x: 0., y: 0.), (x: 1., y: 0.), (x: 1., y: 1.), (x: 0., y: 0.)].into()
        );
        assert!(r.contains(Repair::RingClosed));
    }

    #[test]
    fn curves_become_lines() {
        let Geometry::LineString(arc) = one("CIRCULARSTRING(1 0, 0 1, -1 0)") else {
            panic!("not a line");
        };
        assert_eq!(arc.0.len(), 47);
        let Geometry::LineString(compound) =
            one("COMPOUNDCURVE(CIRCULARSTRING(1 0,0 1,-1 0),(-1 0,-1 -1,1 -1))")
        else {
            panic!("not a line");
        };
        assert_eq!(compound.0.len(), 47 + 2);
        let Geometry::Polygon(p) =
            one("CURVEPOLYGON(CIRCULARSTRING(2 0,0 0,2 0),(0.5 0,1.5 0,1 0.5,0.5 0))")
        else {
            panic!("not a polygon");
        };
        assert_eq!(p.exterior().0.len(), 91);
        assert_eq!(p.interiors().len(), 1);
        let Geometry::MultiLineString(mc) =
            one("MULTICURVE((0 0,1 1),CIRCULARSTRING(1 0,0 1,-1 0))")
        else {
            panic!("not lines");
        };
        assert_eq!(mc.0.len(), 2);
        let Geometry::MultiPolygon(ms) =
            one("MULTISURFACE(((0 0,1 0,1 1,0 0)),CURVEPOLYGON(CIRCULARSTRING(2 0,0 0,2 0)))")
        else {
            panic!("not polygons");
        };
        assert_eq!(ms.0.len(), 2);
        assert!(
            wkt("COMPOUNDCURVE((0 0,1 1),(5 5,6 6))")
                .unwrap_err()
                .contains("does not start")
        );
        assert!(
            wkt("CIRCULARSTRING(0 0,1 1)")
                .unwrap_err()
                .contains("3, 5, 7")
        );
    }

    #[test]
    fn triangles_and_surfaces_become_polygons() {
        assert_eq!(
            one("TRIANGLE((0 0,1 0,0 1,0 0))"),
            polygon![(x: 0., y: 0.), (x: 1., y: 0.), (x: 0., y: 1.), (x: 0., y: 0.)].into()
        );
        let Geometry::MultiPolygon(tin) =
            one("TIN Z(((0 0 0,1 0 0,0 1 0,0 0 0)),((1 0 0,1 1 0,0 1 0,1 0 0)))")
        else {
            panic!("not polygons");
        };
        assert_eq!(tin.0.len(), 2);
        let Geometry::MultiPolygon(ps) = one("POLYHEDRALSURFACE(((0 0,1 0,1 1,0 1,0 0)))") else {
            panic!("not polygons");
        };
        assert_eq!(ps.0.len(), 1);
    }

    #[test]
    fn refusals_say_where() {
        assert_eq!(
            wkt("CIRCLE(1 2)"),
            Err("unknown geometry type 'CIRCLE' at character 1".into())
        );
        assert_eq!(
            wkt("POINT(1 x)"),
            Err("'x' at character 9 is not a number".into())
        );
        assert_eq!(
            wkt("POINT(1 2) junk"),
            Err("text after the geometry at character 12".into())
        );
        assert_eq!(wkt("POINT(1 2"), Err("expected ')' at the end".into()));
        let deep = format!(
            "{}POINT(1 2){}",
            "GEOMETRYCOLLECTION(".repeat(100),
            ")".repeat(100)
        );
        assert!(wkt(&deep).unwrap_err().contains("nested deeper"));
    }
}
