//! Writes features as GeoJSON: a FeatureCollection or one Feature per line.
//!
//! Features are serialized straight from the model (no intermediate
//! `serde_json::Value`); coordinates use the shortest text that parses back to the
//! same `f64`, so reading the output gives identical geometries.

use std::io::{self, BufWriter, Write};

use geo_types::{Coord, Geometry, LineString, Polygon};
use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};
use serde_json::Value;

use crate::feature::{Feature, FeatureId};
use crate::format::extension;

/// The GeoJSON flavours [`FeatureWriter`] produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// One Feature per line (NDJSON / GeoJSONL).
    GeoJsonSeq,
    /// A single FeatureCollection document.
    GeoJson,
}

impl OutputFormat {
    /// The output format a file name's extension (case-insensitive) asks for.
    pub fn from_path(path: &str) -> Option<OutputFormat> {
        match extension(path)?.as_str() {
            "geojsonl" | "geojsonld" | "ndjson" | "jsonl" | "geojsons" => {
                Some(OutputFormat::GeoJsonSeq)
            }
            "geojson" | "json" => Some(OutputFormat::GeoJson),
            _ => None,
        }
    }
}

/// Streams features to a writer. For a FeatureCollection, [`FeatureWriter::finish`]
/// writes the closing brackets: dropping the writer without it leaves the
/// document incomplete.
pub struct FeatureWriter<W: Write> {
    out: BufWriter<W>,
    format: OutputFormat,
    written: u64,
}

const COLLECTION_START: &[u8] = b"{\"type\":\"FeatureCollection\",\"features\":[\n";

impl<W: Write> FeatureWriter<W> {
    pub fn new(format: OutputFormat, w: W) -> Self {
        FeatureWriter {
            out: BufWriter::with_capacity(64 * 1024, w),
            format,
            written: 0,
        }
    }

    /// Writes one feature. A geometry with a non-finite coordinate is refused
    /// (`InvalidData`) before anything is written: JSON cannot express it.
    pub fn write(&mut self, f: &Feature) -> io::Result<()> {
        if let Some(g) = &f.geometry
            && !is_finite(g)
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "geometry has a non-finite coordinate",
            ));
        }
        if self.format == OutputFormat::GeoJson {
            self.out.write_all(if self.written == 0 {
                COLLECTION_START
            } else {
                b",\n"
            })?;
        }
        serde_json::to_writer(&mut self.out, &FeatureJson(f))?;
        if self.format == OutputFormat::GeoJsonSeq {
            self.out.write_all(b"\n")?;
        }
        self.written = self.written.saturating_add(1);
        Ok(())
    }

    /// Completes the document, flushes and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        if self.format == OutputFormat::GeoJson {
            if self.written == 0 {
                self.out.write_all(COLLECTION_START)?;
            }
            self.out.write_all(b"\n]}\n")?;
        }
        self.out.flush()?;
        self.out.into_inner().map_err(|e| e.into_error())
    }
}

/// The GeoJSON Feature object for `f`. Non-finite coordinates become `null`.
pub fn feature_to_json(f: &Feature) -> Value {
    // Serializing into a Value fails only for non-string map keys; there are none.
    serde_json::to_value(FeatureJson(f)).unwrap_or(Value::Null)
}

fn is_finite(g: &Geometry<f64>) -> bool {
    let coord = |c: &Coord<f64>| c.x.is_finite() && c.y.is_finite();
    let line = |l: &LineString<f64>| l.0.iter().all(coord);
    let polygon = |p: &Polygon<f64>| line(p.exterior()) && p.interiors().iter().all(line);
    match g {
        Geometry::Point(p) => coord(&p.0),
        Geometry::Line(l) => coord(&l.start) && coord(&l.end),
        Geometry::LineString(l) => line(l),
        Geometry::Polygon(p) => polygon(p),
        Geometry::MultiPoint(mp) => mp.0.iter().all(|p| coord(&p.0)),
        Geometry::MultiLineString(ml) => ml.0.iter().all(line),
        Geometry::MultiPolygon(mp) => mp.0.iter().all(polygon),
        Geometry::GeometryCollection(gc) => gc.0.iter().all(is_finite),
        Geometry::Rect(r) => coord(&r.min()) && coord(&r.max()),
        Geometry::Triangle(t) => t.to_array().iter().all(coord),
    }
}

struct FeatureJson<'a>(&'a Feature);

impl Serialize for FeatureJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let f = self.0;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("type", "Feature")?;
        match &f.id {
            Some(FeatureId::Int(i)) => map.serialize_entry("id", i)?,
            Some(FeatureId::Str(id)) => map.serialize_entry("id", id)?,
            None => {}
        }
        map.serialize_entry("properties", &f.properties)?;
        match &f.geometry {
            Some(g) => map.serialize_entry("geometry", &GeometryJson(g))?,
            None => map.serialize_entry("geometry", &())?,
        }
        map.end()
    }
}

/// A geometry as a GeoJSON geometry object. `Line`, `Rect` and `Triangle`, which
/// GeoJSON lacks, are written as a LineString and Polygons.
pub struct GeometryJson<'a>(pub &'a Geometry<f64>);

impl Serialize for GeometryJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Geometry::Point(p) => tagged(s, "Point", &Position(p.0)),
            Geometry::Line(l) => tagged(s, "LineString", &[Position(l.start), Position(l.end)]),
            Geometry::LineString(l) => tagged(s, "LineString", &Positions(&l.0)),
            Geometry::Polygon(p) => tagged(s, "Polygon", &Rings(p)),
            Geometry::MultiPoint(mp) => {
                let points: Vec<Position> = mp.0.iter().map(|p| Position(p.0)).collect();
                tagged(s, "MultiPoint", &points)
            }
            Geometry::MultiLineString(ml) => {
                let lines: Vec<Positions> = ml.0.iter().map(|l| Positions(&l.0)).collect();
                tagged(s, "MultiLineString", &lines)
            }
            Geometry::MultiPolygon(mp) => {
                let polygons: Vec<Rings> = mp.0.iter().map(Rings).collect();
                tagged(s, "MultiPolygon", &polygons)
            }
            Geometry::GeometryCollection(gc) => {
                let members: Vec<GeometryJson> = gc.0.iter().map(GeometryJson).collect();
                let mut map = s.serialize_map(Some(2))?;
                map.serialize_entry("type", "GeometryCollection")?;
                map.serialize_entry("geometries", &members)?;
                map.end()
            }
            Geometry::Rect(r) => tagged(s, "Polygon", &Rings(&r.to_polygon())),
            Geometry::Triangle(t) => tagged(s, "Polygon", &Rings(&t.to_polygon())),
        }
    }
}

fn tagged<S: Serializer>(
    s: S,
    kind: &str,
    coordinates: &impl Serialize,
) -> Result<S::Ok, S::Error> {
    let mut map = s.serialize_map(Some(2))?;
    map.serialize_entry("type", kind)?;
    map.serialize_entry("coordinates", coordinates)?;
    map.end()
}

struct Position(Coord<f64>);

impl Serialize for Position {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        [self.0.x, self.0.y].serialize(s)
    }
}

struct Positions<'a>(&'a [Coord<f64>]);

impl Serialize for Positions<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|c| Position(*c)))
    }
}

/// Polygon rings, exterior first; an empty polygon is `[]`.
struct Rings<'a>(&'a Polygon<f64>);

impl Serialize for Rings<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let p = self.0;
        if p.exterior().0.is_empty() && p.interiors().is_empty() {
            return s.collect_seq(std::iter::empty::<Position>());
        }
        s.collect_seq(
            std::iter::once(p.exterior())
                .chain(p.interiors())
                .map(|ring| Positions(&ring.0)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo_types::{Rect, Triangle, coord, line_string, point};
    use serde_json::json;

    fn sample(id: i64) -> Feature {
        let mut properties = serde_json::Map::new();
        properties.insert("name".into(), json!("a\nb"));
        properties.insert("n".into(), json!(1.5));
        Feature {
            id: Some(FeatureId::Int(id)),
            geometry: Some(point!(x: 1.25, y: -2.0).into()),
            properties,
        }
    }

    #[test]
    fn output_format_by_extension() {
        assert_eq!(
            OutputFormat::from_path("o.GEOJSONL"),
            Some(OutputFormat::GeoJsonSeq)
        );
        assert_eq!(
            OutputFormat::from_path("o.jsonl"),
            Some(OutputFormat::GeoJsonSeq)
        );
        assert_eq!(
            OutputFormat::from_path("o.ndjson"),
            Some(OutputFormat::GeoJsonSeq)
        );
        assert_eq!(
            OutputFormat::from_path("o.geojsons"),
            Some(OutputFormat::GeoJsonSeq)
        );
        assert_eq!(
            OutputFormat::from_path("o.geojsonld"),
            Some(OutputFormat::GeoJsonSeq)
        );
        assert_eq!(
            OutputFormat::from_path("o.json"),
            Some(OutputFormat::GeoJson)
        );
        assert_eq!(
            OutputFormat::from_path("o.geojson"),
            Some(OutputFormat::GeoJson)
        );
        assert_eq!(OutputFormat::from_path("o.csv"), None);
    }

    #[test]
    fn feature_json_shape() {
        assert_eq!(
            feature_to_json(&sample(7)),
            json!({"type":"Feature","id":7,"properties":{"name":"a\nb","n":1.5},
                   "geometry":{"type":"Point","coordinates":[1.25,-2.0]}})
        );
        assert_eq!(
            feature_to_json(&Feature::default()),
            json!({"type":"Feature","properties":{},"geometry":null})
        );
    }

    #[test]
    fn geometries_geojson_lacks() {
        let json = |g: Geometry<f64>| serde_json::to_value(GeometryJson(&g)).unwrap();
        assert_eq!(
            json(geo_types::Line::new(coord! {x: 0., y: 1.}, coord! {x: 2., y: 3.}).into()),
            json!({"type":"LineString","coordinates":[[0.0,1.0],[2.0,3.0]]})
        );
        assert_eq!(
            json(Rect::new(coord! {x: 0., y: 0.}, coord! {x: 1., y: 1.}).into())["type"],
            "Polygon"
        );
        assert_eq!(
            json(
                Triangle::new(
                    coord! {x: 0., y: 0.},
                    coord! {x: 1., y: 0.},
                    coord! {x: 0., y: 1.}
                )
                .into()
            )["coordinates"][0]
                .as_array()
                .map(Vec::len),
            Some(4)
        );
        assert_eq!(
            json(Polygon::new(LineString(vec![]), vec![]).into()),
            json!({"type":"Polygon","coordinates":[]})
        );
    }

    #[test]
    fn collection_and_sequence_output() {
        let mut w = FeatureWriter::new(OutputFormat::GeoJson, Vec::new());
        w.write(&sample(1)).unwrap();
        w.write(&sample(2)).unwrap();
        let out = w.finish().unwrap();
        let doc: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(doc["type"], "FeatureCollection");
        assert_eq!(doc["features"][1]["id"], 2);

        let empty = FeatureWriter::new(OutputFormat::GeoJson, Vec::new())
            .finish()
            .unwrap();
        let doc: Value = serde_json::from_slice(&empty).unwrap();
        assert_eq!(doc, json!({"type":"FeatureCollection","features":[]}));

        let mut w = FeatureWriter::new(OutputFormat::GeoJsonSeq, Vec::new());
        w.write(&sample(1)).unwrap();
        w.write(&sample(2)).unwrap();
        let out = String::from_utf8(w.finish().unwrap()).unwrap();
        assert_eq!(out.lines().count(), 2);
        assert!(out.ends_with('\n'));
    }

    #[test]
    fn non_finite_coordinates_are_refused_whole() {
        let mut w = FeatureWriter::new(OutputFormat::GeoJsonSeq, Vec::new());
        let bad = Feature {
            geometry: Some(line_string![(x: 0., y: 0.), (x: f64::NAN, y: 1.)].into()),
            ..Feature::default()
        };
        let err = w.write(&bad).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(w.finish().unwrap().is_empty());
    }
}
