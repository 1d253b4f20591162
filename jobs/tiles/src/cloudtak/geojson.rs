//! Decoded MVT features as GeoJSON in longitude/latitude (what CloudTAK's `/features` answers,
//! read with `@mapbox/vector-tile`'s `toGeoJSON`): the geometry's tile units placed in the tile
//! and unprojected from Web Mercator, the properties with their types, the id when there is one.

use etl_tiles::geom::TileGeom;
use etl_tiles::mvt::{DecodedFeature, PropValue};
use serde_json::{Map, Number, Value, json};

/// Where a tile is (zoom, column, row) and how many units its side has (the layer's extent).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TileFrame {
    pub z: u8,
    pub x: u32,
    pub y: u32,
    pub extent: u32,
}

/// Degrees rounded to 1e-7 (about a centimetre): more digits only make the answer longer.
fn round7(v: f64) -> f64 {
    (v * 1e7).round() / 1e7
}

impl TileFrame {
    fn tiles_per_side(&self) -> f64 {
        // Zooms come from checked requests (at most 30); the shift cannot overflow a u64.
        (1u64 << self.z.min(62)) as f64
    }

    fn extent(&self) -> f64 {
        f64::from(self.extent.max(1))
    }

    /// Longitude and latitude of a point in tile units.
    pub fn lonlat(&self, px: f64, py: f64) -> [f64; 2] {
        let n = self.tiles_per_side();
        let wx = (f64::from(self.x) + px / self.extent()) / n;
        let wy = (f64::from(self.y) + py / self.extent()) / n;
        let lon = wx * 360.0 - 180.0;
        let lat = (std::f64::consts::PI * (1.0 - 2.0 * wy))
            .sinh()
            .atan()
            .to_degrees();
        [round7(lon), round7(lat)]
    }

    /// The tile units of a longitude and latitude (outside the tile when the point is).
    pub fn tile_point(&self, lon: f64, lat: f64) -> (f64, f64) {
        let n = self.tiles_per_side();
        let lat = lat.clamp(
            -crate::cloudtak::cover::MAX_LAT,
            crate::cloudtak::cover::MAX_LAT,
        );
        let wx = (lon + 180.0) / 360.0;
        let r = lat.to_radians();
        let wy = (1.0 - (r.tan() + 1.0 / r.cos()).ln() / std::f64::consts::PI) / 2.0;
        (
            (wx * n - f64::from(self.x)) * self.extent(),
            (wy * n - f64::from(self.y)) * self.extent(),
        )
    }

    fn point(&self, p: &[i32; 2]) -> Value {
        let [lon, lat] = self.lonlat(f64::from(p[0]), f64::from(p[1]));
        json!([lon, lat])
    }

    fn line(&self, l: &[[i32; 2]]) -> Value {
        Value::Array(l.iter().map(|p| self.point(p)).collect())
    }

    fn polygon(&self, rings: &[Vec<[i32; 2]>]) -> Value {
        Value::Array(rings.iter().map(|r| self.line(r)).collect())
    }
}

/// A property value as JSON; a float that is not a number (NaN, infinite) becomes `null`.
pub fn prop_value(v: &PropValue) -> Value {
    let float = |f: f64| Number::from_f64(f).map_or(Value::Null, Value::Number);
    match v {
        PropValue::String(s) => Value::String(s.clone()),
        PropValue::Float(f) => float(f64::from(*f)),
        PropValue::Double(d) => float(*d),
        PropValue::Int(i) | PropValue::SInt(i) => Value::from(*i),
        PropValue::UInt(u) => Value::from(*u),
        PropValue::Bool(b) => Value::Bool(*b),
    }
}

/// A feature's properties as a JSON object (a repeated key keeps its last value).
pub fn properties(f: &DecodedFeature) -> Map<String, Value> {
    f.props
        .iter()
        .map(|(k, v)| (k.clone(), prop_value(v)))
        .collect()
}

/// The GeoJSON geometries of a tile geometry: one (`Point`, `MultiPoint`, …, the single form
/// when there is one part), or with `multi` false, one per part in the single form.
pub fn geometries(geom: &TileGeom, frame: &TileFrame, multi: bool) -> Vec<Value> {
    fn one(kind: &str, coordinates: Value) -> Value {
        json!({"type": kind, "coordinates": coordinates})
    }
    match geom {
        TileGeom::Points(pts) if pts.len() == 1 || !multi => {
            pts.iter().map(|p| one("Point", frame.point(p))).collect()
        }
        TileGeom::Points(pts) => vec![one("MultiPoint", frame.line(pts))],
        TileGeom::Lines(ls) if ls.len() == 1 || !multi => ls
            .iter()
            .map(|l| one("LineString", frame.line(l)))
            .collect(),
        TileGeom::Lines(ls) => vec![one(
            "MultiLineString",
            Value::Array(ls.iter().map(|l| frame.line(l)).collect()),
        )],
        TileGeom::Polygons(ps) if ps.len() == 1 || !multi => ps
            .iter()
            .map(|p| one("Polygon", frame.polygon(p)))
            .collect(),
        TileGeom::Polygons(ps) => vec![one(
            "MultiPolygon",
            Value::Array(ps.iter().map(|p| frame.polygon(p)).collect()),
        )],
    }
}

/// Which features of a tile are wanted.
#[derive(Debug, Clone, Default)]
pub struct FeatureFilter {
    /// Only this layer.
    pub layer: Option<String>,
    /// Only geometries of this GeoJSON type (after `multi` splitting).
    pub geometry_type: Option<String>,
    /// Keep multi-part geometries whole (default); `false` splits them into one feature each.
    pub split_multi: bool,
}

/// The GeoJSON features of one decoded feature of layer `layer`: `{type, id?, layer,
/// properties, geometry}` each, filtered by `filter`.
pub fn features(
    layer: &str,
    f: &DecodedFeature,
    frame: &TileFrame,
    filter: &FeatureFilter,
) -> Vec<Value> {
    let props = Value::Object(properties(f));
    geometries(&f.geom, frame, !filter.split_multi)
        .into_iter()
        .filter(|g| {
            filter
                .geometry_type
                .as_deref()
                .is_none_or(|t| g["type"] == t)
        })
        .map(|geometry| {
            let mut out = Map::new();
            out.insert("type".into(), "Feature".into());
            if let Some(id) = f.id {
                out.insert("id".into(), id.into());
            }
            out.insert("layer".into(), layer.into());
            out.insert("properties".into(), props.clone());
            out.insert("geometry".into(), geometry);
            Value::Object(out)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn tile_units_to_degrees_and_back() {
        let world = TileFrame {
            z: 0,
            x: 0,
            y: 0,
            extent: 4096,
        };
        assert_eq!(world.lonlat(0.0, 0.0), [-180.0, 85.0511288]);
        assert_eq!(world.lonlat(2048.0, 2048.0), [0.0, 0.0]);
        let t = TileFrame {
            z: 12,
            x: 2200,
            y: 1300,
            extent: 4096,
        };
        let [lon, lat] = t.lonlat(100.0, 3000.0);
        let (px, py) = t.tile_point(lon, lat);
        assert!(
            (px - 100.0).abs() < 0.01 && (py - 3000.0).abs() < 0.01,
            "{px} {py}"
        );
    }

    #[test]
    fn multi_parts_split_on_request() {
        let frame = TileFrame {
            z: 1,
            x: 1,
            y: 0,
            extent: 4096,
        };
        let f = DecodedFeature {
            id: Some(7),
            geom: TileGeom::Points(vec![[0, 0], [4096, 4096]]),
            props: vec![
                ("name".into(), PropValue::String("a".into())),
                ("n".into(), PropValue::UInt(3)),
                ("bad".into(), PropValue::Double(f64::NAN)),
            ],
        };
        let whole = features("out", &f, &frame, &FeatureFilter::default());
        assert_eq!(whole.len(), 1);
        assert_eq!(whole[0]["geometry"]["type"], "MultiPoint");
        assert_eq!(whole[0]["geometry"]["coordinates"][1], json!([180.0, 0.0]));
        assert_eq!(whole[0]["id"], 7);
        assert_eq!(whole[0]["layer"], "out");
        assert_eq!(
            whole[0]["properties"],
            json!({"name": "a", "n": 3, "bad": null})
        );
        let split = FeatureFilter {
            split_multi: true,
            ..FeatureFilter::default()
        };
        let parts = features("out", &f, &frame, &split);
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p["geometry"]["type"] == "Point"));
        let lines_only = FeatureFilter {
            geometry_type: Some("LineString".into()),
            ..split
        };
        assert!(features("out", &f, &frame, &lines_only).is_empty());
    }
}
