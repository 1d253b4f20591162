//! GeoJSON `"coordinates"` of any shape into `geo_types`.
//!
//! `"type"` may come after `"coordinates"`, so the arrays are first collected
//! shape-agnostically into a [`CoordScratch`] (positions in order plus array sizes)
//! and assembled once the type is known. A Point needs no allocation.

use std::fmt;

use geo_types::{
    Coord, Geometry, LineString, MultiLineString, MultiPoint, MultiPolygon, Point, Polygon,
};
use serde::de::{self, DeserializeSeed, Deserializer, Error as _, SeqAccess, Visitor};

use super::decode::{Depth, GeoJsonType};
use crate::repair::{Repairs, close_ring};

/// `"coordinates"`: yields whether any were present (`null` counts as absent).
pub(super) struct CoordinatesSeed<'a> {
    pub(super) scratch: &'a mut CoordScratch,
    pub(super) depth: Depth,
}

impl<'de> DeserializeSeed<'de> for CoordinatesSeed<'_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for CoordinatesSeed<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of coordinates")
    }
    fn visit_none<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        self.scratch.clear();
        d.deserialize_seq(CoordArray {
            scratch: self.scratch,
            nesting: 0,
            depth: self.depth,
        })?;
        Ok(true)
    }
}

/// An array at `nesting` levels below `"coordinates"`.
struct CoordArray<'a> {
    scratch: &'a mut CoordScratch,
    nesting: u8,
    depth: Depth,
}

impl<'de> Visitor<'de> for CoordArray<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of coordinates")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        coordinate_array(self.scratch, self.nesting, self.depth, seq)
    }
}

enum CoordElement {
    Number(f64),
    Array,
}

impl<'de> DeserializeSeed<'de> for CoordArray<'_> {
    type Value = CoordElement;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<CoordElement, D::Error> {
        d.deserialize_any(CoordElementVisitor(self))
    }
}

struct CoordElementVisitor<'a>(CoordArray<'a>);

impl<'de> Visitor<'de> for CoordElementVisitor<'_> {
    type Value = CoordElement;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a coordinate number or array")
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<CoordElement, E> {
        Ok(CoordElement::Number(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<CoordElement, E> {
        Ok(CoordElement::Number(v as f64))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<CoordElement, E> {
        Ok(CoordElement::Number(v as f64))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<CoordElement, A::Error> {
        let a = self.0;
        coordinate_array(a.scratch, a.nesting, a.depth, seq)?;
        Ok(CoordElement::Array)
    }
}

struct CoordNumber;

impl<'de> DeserializeSeed<'de> for CoordNumber {
    type Value = f64;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<f64, D::Error> {
        d.deserialize_f64(self)
    }
}

impl Visitor<'_> for CoordNumber {
    type Value = f64;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a coordinate number")
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
        Ok(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
        Ok(v as f64)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
        Ok(v as f64)
    }
}

/// Reads one coordinate array. Its first element decides what it is: a number makes
/// it a position (x, y, extra numbers ignored), an array makes it a container.
fn coordinate_array<'de, A: SeqAccess<'de>>(
    scratch: &mut CoordScratch,
    nesting: u8,
    depth: Depth,
    mut seq: A,
) -> Result<(), A::Error> {
    depth.enter()?;
    if nesting > 3 {
        return Err(A::Error::custom(
            "coordinates nested deeper than a MultiPolygon's",
        ));
    }
    scratch.deepest = scratch.deepest.max(nesting);
    fn element(scratch: &mut CoordScratch, nesting: u8, depth: Depth) -> CoordArray<'_> {
        CoordArray {
            scratch,
            nesting: nesting.saturating_add(1),
            depth: depth.child(),
        }
    }
    match seq.next_element_seed(element(scratch, nesting, depth))? {
        None => scratch.note_empty(nesting),
        Some(CoordElement::Number(x)) => {
            let Some(y) = seq.next_element_seed(CoordNumber)? else {
                return Err(A::Error::custom("position has only one number"));
            };
            while seq.next_element_seed(CoordNumber)?.is_some() {}
            scratch
                .push_position(nesting, Coord { x, y })
                .map_err(A::Error::custom)?;
        }
        Some(CoordElement::Array) => {
            let mut count = 1usize;
            while let Some(e) = seq.next_element_seed(element(scratch, nesting, depth))? {
                match e {
                    CoordElement::Array => count = count.saturating_add(1),
                    CoordElement::Number(_) => {
                        return Err(A::Error::custom("coordinates mix numbers and arrays"));
                    }
                }
            }
            scratch.note_container(nesting, count);
        }
    }
    Ok(())
}

/// Coordinates of any shape, flattened: all positions in order, plus the element
/// counts of the arrays at nesting 1 and 2 (rings per polygon, positions per ring…).
#[derive(Debug, Default)]
pub(super) struct CoordScratch {
    positions: Vec<Coord<f64>>,
    counts: [Vec<usize>; 2],
    position_nesting: Option<u8>,
    deepest: u8,
    /// Bit `n` set: an empty array was seen at nesting `n`.
    empty_at: u8,
    /// Repairs made assembling the geometries of the current feature (not reset by
    /// [`CoordScratch::clear`], which runs for each geometry of a collection).
    pub(super) repairs: Repairs,
}

impl CoordScratch {
    fn clear(&mut self) {
        self.positions.clear();
        for c in &mut self.counts {
            c.clear();
        }
        self.position_nesting = None;
        self.deepest = 0;
        self.empty_at = 0;
    }

    fn counts_at(&mut self, nesting: u8) -> Option<&mut Vec<usize>> {
        match nesting {
            1 => Some(&mut self.counts[0]),
            2 => Some(&mut self.counts[1]),
            _ => None,
        }
    }

    fn note_empty(&mut self, nesting: u8) {
        self.empty_at |= 1u8.checked_shl(nesting.into()).unwrap_or(0);
        if let Some(counts) = self.counts_at(nesting) {
            counts.push(0);
        }
    }

    fn note_container(&mut self, nesting: u8, count: usize) {
        if let Some(counts) = self.counts_at(nesting) {
            counts.push(count);
        }
    }

    fn push_position(&mut self, nesting: u8, c: Coord<f64>) -> Result<(), &'static str> {
        match self.position_nesting {
            Some(n) if n != nesting => return Err("coordinates are not uniformly nested"),
            _ => self.position_nesting = Some(nesting),
        }
        self.positions.push(c);
        Ok(())
    }

    /// Assembles the collected coordinates as a `kind` geometry.
    pub(super) fn build(&mut self, kind: GeoJsonType) -> Result<Geometry<f64>, String> {
        let Some(expected) = kind.position_depth() else {
            return Err(format!("{kind} cannot have coordinates"));
        };
        let wrong_shape = || format!("{kind} coordinates must be {}", kind.coordinate_shape());
        match self.position_nesting {
            Some(n) if n != expected => return Err(wrong_shape()),
            None if self.deepest > expected => return Err(wrong_shape()),
            _ => {}
        }
        if self.empty_at & (1u8 << expected) != 0 {
            return Err(format!("{kind} coordinates contain an empty position"));
        }
        let counts = std::mem::take(&mut self.counts);
        let geometry = assemble(kind, &counts, self.positions.drain(..), &mut self.repairs);
        // Hand the count buffers back so their capacity is reused.
        self.counts = counts;
        geometry
    }
}

/// Splits `positions` into a `kind` geometry along the array sizes in `counts`.
fn assemble(
    kind: GeoJsonType,
    counts: &[Vec<usize>; 2],
    mut positions: impl Iterator<Item = Coord<f64>>,
    repairs: &mut Repairs,
) -> Result<Geometry<f64>, String> {
    let [outer, inner] = counts;
    Ok(match kind {
        GeoJsonType::Point => match positions.next() {
            Some(c) => Geometry::Point(Point(c)),
            None => return Err("Point has no position".to_owned()),
        },
        GeoJsonType::LineString => Geometry::LineString(LineString(positions.collect())),
        GeoJsonType::MultiPoint => Geometry::MultiPoint(MultiPoint(positions.map(Point).collect())),
        GeoJsonType::MultiLineString => Geometry::MultiLineString(MultiLineString(
            outer
                .iter()
                .map(|&n| LineString(positions.by_ref().take(n).collect()))
                .collect(),
        )),
        GeoJsonType::Polygon => Geometry::Polygon(polygon(outer, &mut positions, repairs)?),
        GeoJsonType::MultiPolygon => {
            let mut ring_sizes = inner.iter().copied();
            let mut polygons = Vec::with_capacity(outer.len());
            for (i, &rings) in outer.iter().enumerate() {
                let sizes: Vec<usize> = ring_sizes.by_ref().take(rings).collect();
                polygons.push(
                    polygon(&sizes, &mut positions, repairs)
                        .map_err(|e| format!("multipolygon part {i}: {e}"))?,
                );
            }
            Geometry::MultiPolygon(MultiPolygon(polygons))
        }
        GeoJsonType::Feature | GeoJsonType::FeatureCollection | GeoJsonType::GeometryCollection => {
            return Err(format!("{kind} cannot have coordinates"));
        }
    })
}

/// Builds a polygon from rings of `sizes` positions, closing open rings (noted in `repairs`)
/// before `Polygon::new` would close them without telling.
fn polygon(
    sizes: &[usize],
    positions: &mut impl Iterator<Item = Coord<f64>>,
    repairs: &mut Repairs,
) -> Result<Polygon<f64>, String> {
    let mut rings = Vec::with_capacity(sizes.len());
    for &n in sizes {
        let mut ring: Vec<Coord<f64>> = positions.by_ref().take(n).collect();
        close_ring(&mut ring, repairs);
        rings.push(LineString(ring));
    }
    let mut rings = rings.into_iter();
    let exterior = rings.next().unwrap_or_else(|| LineString(Vec::new()));
    Ok(Polygon::new(exterior, rings.collect()))
}

#[cfg(test)]
mod tests {
    use super::super::decode::FeatureDecoder;
    use super::*;
    use geo_types::{GeometryCollection, line_string, point, polygon};

    fn geometry(text: &str) -> Result<Geometry<f64>, String> {
        FeatureDecoder::new(64)
            .geometry(text.as_bytes(), 1)
            .map_err(|e| {
                let text = e.to_string();
                let suffix = format!(" at line {} column {}", e.line(), e.column());
                text.strip_suffix(&suffix)
                    .map(str::to_owned)
                    .unwrap_or(text)
            })
    }

    #[test]
    fn every_geometry_type() {
        let cases = [
            (r#"{"type":"Point","coordinates":[1,2,3,4]}"#, point!(x: 1., y: 2.).into()),
            (
                r#"{"type":"LineString","coordinates":[[1,2],[3,4.5]]}"#,
                line_string![(x: 1., y: 2.), (x: 3., y: 4.5)].into(),
            ),
            (
                r#"{"type":"MultiPoint","coordinates":[[1,2],[3,4]]}"#,
                MultiPoint(vec![point!(x: 1., y: 2.), point!(x: 3., y: 4.)]).into(),
            ),
            (
                r#"{"type":"MultiLineString","coordinates":[[[1,2],[3,4]],[],[[5,6],[7,8],[9,10]]]}"#,
                MultiLineString(vec![
                    line_string![(x: 1., y: 2.), (x: 3., y: 4.)],
                    LineString(vec![]),
                    line_string![(x: 5., y: 6.), (x: 7., y: 8.), (x: 9., y: 10.)],
                ])
                .into(),
            ),
            (
                r#"{"type":"MultiPolygon","coordinates":[[[[0,0],[1,0],[1,1],[0,0]],[[0.1,0.1],[0.2,0.1],[0.2,0.2],[0.1,0.1]]],[],[[[5,5],[6,5],[6,6],[5,5]]]]}"#,
                MultiPolygon(vec![
                    Polygon::new(
                        line_string![(x: 0., y: 0.), (x: 1., y: 0.), (x: 1., y: 1.), (x: 0., y: 0.)],
                        vec![line_string![(x: 0.1, y: 0.1), (x: 0.2, y: 0.1), (x: 0.2, y: 0.2), (x: 0.1, y: 0.1)]],
                    ),
                    Polygon::new(LineString(vec![]), vec![]),
                    polygon![(x: 5., y: 5.), (x: 6., y: 5.), (x: 6., y: 6.)],
                ])
                .into(),
            ),
            (
                r#"{"type":"GeometryCollection","geometries":[{"type":"Point","coordinates":[1,2]},{"geometries":[],"type":"GeometryCollection"}]}"#,
                Geometry::GeometryCollection(GeometryCollection(vec![
                    point!(x: 1., y: 2.).into(),
                    Geometry::GeometryCollection(GeometryCollection(vec![])),
                ])),
            ),
            (r#"{"type":"Polygon","coordinates":[]}"#, Polygon::new(LineString(vec![]), vec![]).into()),
            (r#"{"type":"Polygon","coordinates":[[]]}"#, Polygon::new(LineString(vec![]), vec![]).into()),
            (r#"{"type":"MultiPolygon","coordinates":[[[]]]}"#, MultiPolygon(vec![Polygon::new(LineString(vec![]), vec![])]).into()),
            (r#"{"type":"LineString","coordinates":[]}"#, LineString::<f64>(vec![]).into()),
        ];
        for (text, expected) in cases {
            assert_eq!(geometry(text), Ok(expected), "{text}");
        }
    }

    #[test]
    fn unclosed_rings_are_closed_and_noted() {
        let mut decoder = FeatureDecoder::new(64);
        let g = decoder
            .geometry(
                br#"{"type":"MultiPolygon","coordinates":[[[[0,0],[1,0],[1,1],[0,0]],[[0,0],[1,0],[1,1],[0,1]]]]}"#,
                1,
            )
            .unwrap();
        let Geometry::MultiPolygon(mp) = g else {
            panic!("not a multipolygon");
        };
        assert_eq!(mp.0[0].interiors()[0].0.len(), 5);
        assert!(decoder.take_repairs().contains(crate::Repair::RingClosed));
        decoder
            .geometry(br#"{"type":"Point","coordinates":[1,2]}"#, 1)
            .unwrap();
        assert!(decoder.take_repairs().is_empty());
    }

    #[test]
    fn wrong_shapes_are_errors() {
        let cases = [
            (
                r#"{"type":"Point","coordinates":[[1,2]]}"#,
                "Point coordinates must be a position",
            ),
            (
                r#"{"type":"Point","coordinates":[]}"#,
                "Point coordinates contain an empty position",
            ),
            (
                r#"{"type":"Point","coordinates":[1]}"#,
                "position has only one number",
            ),
            (
                r#"{"type":"Point","coordinates":[1,"2"]}"#,
                "invalid type: string \"2\", expected a coordinate number",
            ),
            (
                r#"{"type":"Point","coordinates":1}"#,
                "invalid type: integer `1`, expected an array of coordinates",
            ),
            (
                r#"{"type":"LineString","coordinates":[1,2]}"#,
                "LineString coordinates must be an array of positions",
            ),
            (
                r#"{"type":"LineString","coordinates":[[1,2],[]]}"#,
                "LineString coordinates contain an empty position",
            ),
            (
                r#"{"type":"LineString","coordinates":[[1,2],3]}"#,
                "coordinates mix numbers and arrays",
            ),
            (
                r#"{"type":"Polygon","coordinates":[[1,2],[[3,4]]]}"#,
                "coordinates are not uniformly nested",
            ),
            (
                r#"{"type":"Polygon","coordinates":[[[[[1,2]]]]]}"#,
                "coordinates nested deeper than a MultiPolygon's",
            ),
            (
                r#"{"type":"Circle","coordinates":[1,2]}"#,
                "unknown GeoJSON type \"Circle\"",
            ),
            (r#"{"coordinates":[1,2]}"#, "geometry has no \"type\""),
            (r#"{"type":"Point"}"#, "Point has no \"coordinates\""),
            (
                r#"{"type":"Point","coordinates":null}"#,
                "Point has no \"coordinates\"",
            ),
            (
                r#"{"type":"GeometryCollection"}"#,
                "GeometryCollection has no \"geometries\" array",
            ),
            (
                r#"{"type":"Feature","coordinates":[1,2]}"#,
                "expected a geometry, found a Feature",
            ),
            (
                r#"[1,2]"#,
                "invalid type: sequence, expected a GeoJSON geometry object",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(geometry(text), Err(expected.to_owned()), "{text}");
        }
    }
}
