//! Deserializes GeoJSON Feature and geometry objects straight into [`Feature`] and
//! `geo_types`, with no intermediate JSON tree (coordinates: see `coordinates.rs`).
//!
//! Every container checks the nesting limit itself, so an NDJSON line that nests too
//! deeply is rejected by the same pass that parses it.

use std::fmt;

use geo_types::{Geometry, GeometryCollection};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};

use super::coordinates::{CoordScratch, CoordinatesSeed};
use crate::error::Position;
use crate::feature::{Feature, FeatureId};
use crate::formats::Rejection;
use crate::repair::Repairs;

/// Parses Feature and geometry objects from byte slices, reusing its coordinate
/// buffers from one call to the next.
pub(crate) struct FeatureDecoder {
    max_depth: usize,
    scratch: CoordScratch,
    /// Property count of the last feature: features of one input tend to share a
    /// schema, and sizing the map up front saves rehashing as it fills.
    properties_hint: usize,
    /// The coordinate system the positions are in (`--s-srs`); WGS 84 when `None`.
    crs: Option<crate::crs::Crs>,
}

impl FeatureDecoder {
    pub(crate) fn new(max_depth: usize) -> Self {
        FeatureDecoder {
            max_depth,
            scratch: CoordScratch::default(),
            crs: None,
            properties_hint: 0,
        }
    }

    /// Parses one Feature object; `level` is the nesting level the object itself
    /// occupies in its document (1 for a standalone JSON text).
    /// Positions are in `crs` (moved to WGS 84 by the caller's `accept_in`).
    pub(crate) fn with_crs(mut self, crs: Option<crate::crs::Crs>) -> Self {
        self.crs = crs;
        self
    }

    pub(crate) fn crs(&self) -> Option<&crate::crs::Crs> {
        self.crs.as_ref()
    }

    /// The repairs made reading the last feature or geometry (unclosed rings closed).
    pub(crate) fn take_repairs(&mut self) -> Repairs {
        std::mem::take(&mut self.scratch.repairs)
    }

    pub(crate) fn feature(&mut self, json: &[u8], level: usize) -> serde_json::Result<Feature> {
        self.scratch.repairs = Repairs::NONE;
        let mut de = serde_json::Deserializer::from_slice(json);
        let feature = self.feature_from(&mut de, level)?;
        de.end()?;
        Ok(feature)
    }

    fn feature_from(
        &mut self,
        de: &mut serde_json::Deserializer<serde_json::de::SliceRead<'_>>,
        level: usize,
    ) -> serde_json::Result<Feature> {
        let depth = Depth {
            level,
            max: self.max_depth,
        };
        let feature = FeatureSeed {
            scratch: &mut self.scratch,
            depth,
            properties_hint: self.properties_hint,
        }
        .deserialize(de)?;
        self.properties_hint = feature.properties.len().min(256);
        Ok(feature)
    }

    /// Parses one geometry object (a bare-geometry GeoJSON document).
    pub(crate) fn geometry(
        &mut self,
        json: &[u8],
        level: usize,
    ) -> serde_json::Result<Geometry<f64>> {
        self.scratch.repairs = Repairs::NONE;
        let mut de = serde_json::Deserializer::from_slice(json);
        let depth = Depth {
            level,
            max: self.max_depth,
        };
        let geometry = GeometrySeed {
            scratch: &mut self.scratch,
            depth,
        }
        .deserialize(&mut de)?;
        de.end()?;
        Ok(geometry)
    }
}

/// Turns a parse failure of the JSON text starting at `origin` into a rejection.
/// Well-formed JSON that is not a usable feature gives serde's message alone;
/// malformed JSON says where, as a column when the text is one line.
pub(crate) fn rejection(err: &serde_json::Error, origin: Position, one_line: bool) -> Rejection {
    let message = message_of(err);
    if err.classify() == serde_json::error::Category::Data {
        return Rejection::new(message);
    }
    let (line, column) = if err.line() <= 1 {
        (
            origin.line,
            origin
                .column
                .saturating_add(err.column() as u64)
                .saturating_sub(1),
        )
    } else {
        (
            origin.line.saturating_add(err.line() as u64 - 1),
            err.column() as u64,
        )
    };
    let what = if message == "number out of range" {
        "number out of range of a 64-bit float".to_owned()
    } else {
        format!("invalid JSON: {message}")
    };
    if one_line {
        Rejection::new(format!("{what} at column {column}"))
    } else {
        Rejection::new(format!("{what} at line {line} column {column}"))
    }
}

/// serde_json's message without the " at line L column C" it appends.
fn message_of(err: &serde_json::Error) -> String {
    let text = err.to_string();
    if err.line() == 0 {
        return text;
    }
    let suffix = format!(" at line {} column {}", err.line(), err.column());
    match text.strip_suffix(&suffix) {
        Some(message) => message.to_owned(),
        None => text,
    }
}

/// The GeoJSON object types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GeoJsonType {
    Feature,
    FeatureCollection,
    Point,
    MultiPoint,
    LineString,
    MultiLineString,
    Polygon,
    MultiPolygon,
    GeometryCollection,
}

impl GeoJsonType {
    pub(crate) fn from_name(name: &[u8]) -> Option<Self> {
        Some(match name {
            b"Feature" => GeoJsonType::Feature,
            b"FeatureCollection" => GeoJsonType::FeatureCollection,
            b"Point" => GeoJsonType::Point,
            b"MultiPoint" => GeoJsonType::MultiPoint,
            b"LineString" => GeoJsonType::LineString,
            b"MultiLineString" => GeoJsonType::MultiLineString,
            b"Polygon" => GeoJsonType::Polygon,
            b"MultiPolygon" => GeoJsonType::MultiPolygon,
            b"GeometryCollection" => GeoJsonType::GeometryCollection,
            _ => return None,
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            GeoJsonType::Feature => "Feature",
            GeoJsonType::FeatureCollection => "FeatureCollection",
            GeoJsonType::Point => "Point",
            GeoJsonType::MultiPoint => "MultiPoint",
            GeoJsonType::LineString => "LineString",
            GeoJsonType::MultiLineString => "MultiLineString",
            GeoJsonType::Polygon => "Polygon",
            GeoJsonType::MultiPolygon => "MultiPolygon",
            GeoJsonType::GeometryCollection => "GeometryCollection",
        }
    }

    /// How many array levels sit above the positions in `"coordinates"`.
    pub(super) fn position_depth(self) -> Option<u8> {
        match self {
            GeoJsonType::Point => Some(0),
            GeoJsonType::MultiPoint | GeoJsonType::LineString => Some(1),
            GeoJsonType::MultiLineString | GeoJsonType::Polygon => Some(2),
            GeoJsonType::MultiPolygon => Some(3),
            GeoJsonType::Feature
            | GeoJsonType::FeatureCollection
            | GeoJsonType::GeometryCollection => None,
        }
    }

    pub(super) fn coordinate_shape(self) -> &'static str {
        match self.position_depth() {
            Some(0) => "a position",
            Some(1) => "an array of positions",
            Some(2) => "an array of arrays of positions",
            _ => "an array of arrays of arrays of positions",
        }
    }
}

impl fmt::Display for GeoJsonType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// Type names and object keys are read as raw bytes: serde_json then skips UTF-8
// validation, which is a measurable share of parsing a small feature.
impl<'de> Deserialize<'de> for GeoJsonType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TypeVisitor;
        impl Visitor<'_> for TypeVisitor {
            type Value = GeoJsonType;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a GeoJSON type name")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<GeoJsonType, E> {
                GeoJsonType::from_name(v).ok_or_else(|| {
                    E::custom(format_args!(
                        "unknown GeoJSON type {:?}",
                        crate::formats::excerpt(&String::from_utf8_lossy(v))
                    ))
                })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<GeoJsonType, E> {
                self.visit_bytes(v.as_bytes())
            }
        }
        d.deserialize_bytes(TypeVisitor)
    }
}

/// Nesting bookkeeping: `level` is the level a container at this point would occupy.
#[derive(Debug, Clone, Copy)]
pub(super) struct Depth {
    level: usize,
    max: usize,
}

impl Depth {
    pub(super) fn enter<E: de::Error>(self) -> Result<(), E> {
        if self.level > self.max {
            Err(E::custom(format_args!(
                "JSON nested deeper than {} levels",
                self.max
            )))
        } else {
            Ok(())
        }
    }

    pub(super) fn child(self) -> Depth {
        Depth {
            level: self.level.saturating_add(1),
            max: self.max,
        }
    }
}

/// Object keys matched without allocating; `Other` covers foreign members.
enum Key {
    Type,
    Id,
    Geometry,
    Properties,
    Coordinates,
    Geometries,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Key, E> {
                Ok(match v {
                    b"type" => Key::Type,
                    b"id" => Key::Id,
                    b"geometry" => Key::Geometry,
                    b"properties" => Key::Properties,
                    b"coordinates" => Key::Coordinates,
                    b"geometries" => Key::Geometries,
                    _ => Key::Other,
                })
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                self.visit_bytes(v.as_bytes())
            }
        }
        d.deserialize_bytes(KeyVisitor)
    }
}

struct FeatureSeed<'a> {
    scratch: &'a mut CoordScratch,
    depth: Depth,
    properties_hint: usize,
}

impl<'de> DeserializeSeed<'de> for FeatureSeed<'_> {
    type Value = Feature;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Feature, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FeatureSeed<'_> {
    type Value = Feature;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a GeoJSON Feature object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Feature, A::Error> {
        self.depth.enter()?;
        let inner = self.depth.child();
        let mut feature = Feature::default();
        let mut typed = false;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Type => {
                    let kind: GeoJsonType = map.next_value()?;
                    if kind != GeoJsonType::Feature {
                        return Err(A::Error::custom(format_args!(
                            "expected a Feature, found a {kind}"
                        )));
                    }
                    typed = true;
                }
                Key::Id => feature.id = feature_id(map.next_value::<Option<&RawValue>>()?)?,
                Key::Geometry => {
                    feature.geometry = map.next_value_seed(OptionalGeometrySeed {
                        scratch: &mut *self.scratch,
                        depth: inner,
                    })?;
                }
                Key::Properties => {
                    feature.properties = map.next_value_seed(PropertiesSeed {
                        depth: inner,
                        capacity: self.properties_hint,
                    })?;
                }
                Key::Coordinates | Key::Geometries | Key::Other => {
                    map.next_value_seed(IgnoreSeed(inner))?;
                }
            }
        }
        if !typed {
            return Err(A::Error::custom("missing \"type\": \"Feature\""));
        }
        Ok(feature)
    }
}

fn feature_id<E: de::Error>(raw: Option<&RawValue>) -> Result<Option<FeatureId>, E> {
    let Some(raw) = raw else { return Ok(None) };
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b'"') => serde_json::from_str(text)
            .map(|s| Some(FeatureId::Str(s)))
            .map_err(E::custom),
        Some(b'-' | b'0'..=b'9') => Ok(Some(match text.parse::<i64>() {
            Ok(i) => FeatureId::Int(i),
            Err(_) => FeatureId::Str(text.to_owned()),
        })),
        _ => Err(E::custom("feature id must be a string or a number")),
    }
}

struct PropertiesSeed {
    depth: Depth,
    capacity: usize,
}

impl<'de> DeserializeSeed<'de> for PropertiesSeed {
    type Value = Map<String, Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for PropertiesSeed {
    type Value = Map<String, Value>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object or null")
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Map::new())
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Map::new())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        object(self.depth, Map::with_capacity(self.capacity), map)
    }
}

fn object<'de, A: MapAccess<'de>>(
    depth: Depth,
    mut object: Map<String, Value>,
    mut map: A,
) -> Result<Map<String, Value>, A::Error> {
    depth.enter()?;
    while let Some(key) = map.next_key::<String>()? {
        let value = map.next_value_seed(ValueSeed(depth.child()))?;
        object.insert(key, value);
    }
    Ok(object)
}

/// Builds a `serde_json::Value` while enforcing the nesting limit.
struct ValueSeed(Depth);

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.0.enter()?;
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element_seed(ValueSeed(self.0.child()))? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Value, A::Error> {
        object(self.0, Map::new(), map).map(Value::Object)
    }
}

/// Skips a value while enforcing the nesting limit (serde's `IgnoredAny` would not).
struct IgnoreSeed(Depth);

impl<'de> DeserializeSeed<'de> for IgnoreSeed {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for IgnoreSeed {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.0.enter()?;
        while seq.next_element_seed(IgnoreSeed(self.0.child()))?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.0.enter()?;
        while map.next_key::<de::IgnoredAny>()?.is_some() {
            map.next_value_seed(IgnoreSeed(self.0.child()))?;
        }
        Ok(())
    }
}

struct OptionalGeometrySeed<'a> {
    scratch: &'a mut CoordScratch,
    depth: Depth,
}

impl<'de> DeserializeSeed<'de> for OptionalGeometrySeed<'_> {
    type Value = Option<Geometry<f64>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for OptionalGeometrySeed<'_> {
    type Value = Option<Geometry<f64>>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a GeoJSON geometry object or null")
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        GeometrySeed {
            scratch: self.scratch,
            depth: self.depth,
        }
        .deserialize(d)
        .map(Some)
    }
}

struct GeometrySeed<'a> {
    scratch: &'a mut CoordScratch,
    depth: Depth,
}

impl<'de> DeserializeSeed<'de> for GeometrySeed<'_> {
    type Value = Geometry<f64>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for GeometrySeed<'_> {
    type Value = Geometry<f64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a GeoJSON geometry object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        self.depth.enter()?;
        let inner = self.depth.child();
        let mut kind = None;
        let mut has_coordinates = false;
        let mut members = None;
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Type => kind = Some(map.next_value::<GeoJsonType>()?),
                Key::Coordinates => {
                    has_coordinates = map.next_value_seed(CoordinatesSeed {
                        scratch: &mut *self.scratch,
                        depth: inner,
                    })?;
                }
                Key::Geometries => members = map.next_value_seed(GeometriesSeed(inner))?,
                Key::Id | Key::Geometry | Key::Properties | Key::Other => {
                    map.next_value_seed(IgnoreSeed(inner))?;
                }
            }
        }
        let Some(kind) = kind else {
            return Err(A::Error::custom("geometry has no \"type\""));
        };
        match kind {
            GeoJsonType::GeometryCollection => members
                .map(|m| Geometry::GeometryCollection(GeometryCollection(m)))
                .ok_or_else(|| A::Error::custom("GeometryCollection has no \"geometries\" array")),
            GeoJsonType::Feature | GeoJsonType::FeatureCollection => Err(A::Error::custom(
                format_args!("expected a geometry, found a {kind}"),
            )),
            _ if !has_coordinates => Err(A::Error::custom(format_args!(
                "{kind} has no \"coordinates\""
            ))),
            _ => self.scratch.build(kind).map_err(A::Error::custom),
        }
    }
}

/// The `"geometries"` of a GeometryCollection (`null` counts as absent).
struct GeometriesSeed(Depth);

impl<'de> DeserializeSeed<'de> for GeometriesSeed {
    type Value = Option<Vec<Geometry<f64>>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for GeometriesSeed {
    type Value = Option<Vec<Geometry<f64>>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of GeoJSON geometry objects")
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        self.0.enter()?;
        // Members are assembled one after another, so one scratch serves them all;
        // it must not be the parent's, whose coordinates may still be pending.
        let mut scratch = CoordScratch::default();
        let mut members = Vec::new();
        while let Some(member) = seq.next_element_seed(GeometrySeed {
            scratch: &mut scratch,
            depth: self.0.child(),
        })? {
            members.push(member);
        }
        Ok(Some(members))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use geo_types::{line_string, point, polygon};
    use serde_json::json;

    fn feature(text: &str) -> Result<Feature, String> {
        FeatureDecoder::new(64)
            .feature(text.as_bytes(), 1)
            .map_err(|e| message_of(&e))
    }

    fn geometry(text: &str) -> Result<Geometry<f64>, String> {
        FeatureDecoder::new(64)
            .geometry(text.as_bytes(), 1)
            .map_err(|e| message_of(&e))
    }

    #[test]
    fn point_feature() {
        let f = feature(
            r#"{"type":"Feature","id":0,"properties":{"city":12,"category":"cafe","name":"poi 0","value":20.09},"geometry":{"type":"Point","coordinates":[-64.123456,43.654321]}}"#,
        )
        .unwrap();
        assert_eq!(f.id, Some(FeatureId::Int(0)));
        assert_eq!(f.geometry, Some(point!(x: -64.123456, y: 43.654321).into()));
        assert_eq!(
            Value::Object(f.properties),
            json!({"city":12,"category":"cafe","name":"poi 0","value":20.09})
        );
    }

    #[test]
    fn property_order_is_kept() {
        let f = feature(r#"{"type":"Feature","geometry":null,"properties":{"z":1,"a":2,"m":3}}"#)
            .unwrap();
        let keys: Vec<&str> = f.properties.keys().map(String::as_str).collect();
        assert_eq!(keys, ["z", "a", "m"]);
    }

    #[test]
    fn type_after_coordinates_and_foreign_members() {
        let g = geometry(
            r#"{"bbox":[0,0,1,1],"coordinates":[[[0,0],[1,0],[1,1],[0,0]]],"crs":{"x":[1,{"y":null}]},"type":"Polygon"}"#,
        )
        .unwrap();
        assert_eq!(
            g,
            polygon![(x: 0., y: 0.), (x: 1., y: 0.), (x: 1., y: 1.)].into()
        );
    }

    #[test]
    fn feature_problems() {
        let cases = [
            (r#"{"geometry":null}"#, "missing \"type\": \"Feature\""),
            (
                r#"{"type":"Point","coordinates":[1,2]}"#,
                "expected a Feature, found a Point",
            ),
            (
                r#"{"type":"Feature","properties":[1]}"#,
                "invalid type: sequence, expected a JSON object or null",
            ),
            (
                r#"{"type":"Feature","id":true}"#,
                "feature id must be a string or a number",
            ),
            (
                r#"{"type":"Feature","geometry":5}"#,
                "invalid type: integer `5`, expected a GeoJSON geometry object",
            ),
            (
                r#"7"#,
                "invalid type: integer `7`, expected a GeoJSON Feature object",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(feature(text), Err(expected.to_owned()), "{text}");
        }
    }

    #[test]
    fn ids() {
        let id = |raw: &str| {
            feature(&format!(
                r#"{{"type":"Feature","id":{raw},"geometry":null}}"#
            ))
            .unwrap()
            .id
        };
        assert_eq!(id("-42"), Some(FeatureId::Int(-42)));
        assert_eq!(id("\"a\\\"b\""), Some(FeatureId::Str("a\"b".into())));
        assert_eq!(id("1.50"), Some(FeatureId::Str("1.50".into())));
        assert_eq!(id("1e3"), Some(FeatureId::Str("1e3".into())));
        assert_eq!(
            id("18446744073709551616"),
            Some(FeatureId::Str("18446744073709551616".into()))
        );
        assert_eq!(id("null"), None);
    }

    #[test]
    fn null_geometry_and_properties() {
        let f = feature(r#"{"type":"Feature","geometry":null,"properties":null}"#).unwrap();
        assert_eq!(f, Feature::default());
        let f = feature(r#"{"type":"Feature"}"#).unwrap();
        assert_eq!(f, Feature::default());
    }

    #[test]
    fn depth_limit() {
        let mut decoder = FeatureDecoder::new(4);
        let ok = br#"{"type":"Feature","properties":{"a":{"b":[1]}}}"#;
        assert!(decoder.feature(ok, 1).is_ok());
        let deep = br#"{"type":"Feature","properties":{"a":{"b":[[1]]}}}"#;
        let err = decoder.feature(deep, 1).unwrap_err();
        assert_eq!(message_of(&err), "JSON nested deeper than 4 levels");
        let deep_foreign = br#"{"type":"Feature","x":{"b":[[[1]]]}}"#;
        assert!(decoder.feature(deep_foreign, 1).is_err());
        let deep_gc = br#"{"type":"GeometryCollection","geometries":[{"type":"GeometryCollection","geometries":[]}]}"#;
        // Levels: collection 1, geometries 2, member 3, its geometries 4.
        assert!(decoder.geometry(deep_gc, 1).is_ok());
        assert!(decoder.geometry(deep_gc, 2).is_err());
    }

    #[test]
    fn scratch_is_reused_between_features() {
        let mut decoder = FeatureDecoder::new(64);
        let a = br#"{"type":"Feature","geometry":{"type":"MultiPolygon","coordinates":[[[[0,0],[1,0],[1,1],[0,0]]]]}}"#;
        let b =
            br#"{"type":"Feature","geometry":{"type":"LineString","coordinates":[[5,5],[6,6]]}}"#;
        decoder.feature(a, 1).unwrap();
        let f = decoder.feature(b, 1).unwrap();
        assert_eq!(
            f.geometry,
            Some(line_string![(x: 5., y: 5.), (x: 6., y: 6.)].into())
        );
    }

    #[test]
    fn rejection_positions() {
        let err = serde_json::from_slice::<Value>(b"{\"a\": x}").unwrap_err();
        let r = rejection(&err, Position { line: 5, column: 1 }, true);
        assert_eq!(r.reason, "invalid JSON: expected value at column 7");
        let r = rejection(
            &err,
            Position {
                line: 5,
                column: 10,
            },
            false,
        );
        assert_eq!(r.reason, "invalid JSON: expected value at line 5 column 16");
        let err = serde_json::from_slice::<Value>(b"{\n\n  x}").unwrap_err();
        let r = rejection(
            &err,
            Position {
                line: 5,
                column: 10,
            },
            false,
        );
        assert_eq!(
            r.reason,
            "invalid JSON: key must be a string at line 7 column 3"
        );
        let err = serde_json::from_slice::<Value>(b"[1e999]").unwrap_err();
        let r = rejection(&err, Position { line: 1, column: 1 }, true);
        assert_eq!(
            r.reason,
            "number out of range of a 64-bit float at column 6"
        );
    }
}
