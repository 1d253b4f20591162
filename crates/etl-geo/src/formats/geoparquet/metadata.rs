//! The `geo` key-value metadata of a GeoParquet file (versions 1.0 and 1.1, and the 0.x drafts
//! that already had the same shape): which column holds the primary geometry, how it is
//! encoded, and its coordinate system; and the `tak-etl` entry our own writer adds.

use serde_json::{Map, Value};

use crate::crs::Crs;

/// The key of the GeoParquet metadata.
pub(crate) const GEO_KEY: &str = "geo";
/// The key of what [`super::write`] adds: which column holds the feature ids and which holds
/// the properties that did not fit the columns.
pub(crate) const TAK_KEY: &str = "tak-etl";

/// How a geometry column is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Wkb,
    /// GeoArrow's native encodings (GeoParquet 1.1): lists nested this deep around a
    /// coordinate (a `{x, y}` struct, or an interleaved list of doubles).
    Point,
    LineString,
    Polygon,
    MultiPoint,
    MultiLineString,
    MultiPolygon,
}

impl Encoding {
    fn parse(name: &str) -> Option<Encoding> {
        Some(match name.to_ascii_lowercase().as_str() {
            "wkb" => Encoding::Wkb,
            "point" => Encoding::Point,
            "linestring" => Encoding::LineString,
            "polygon" => Encoding::Polygon,
            "multipoint" => Encoding::MultiPoint,
            "multilinestring" => Encoding::MultiLineString,
            "multipolygon" => Encoding::MultiPolygon,
            _ => return None,
        })
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Encoding::Wkb => "WKB",
            Encoding::Point => "point",
            Encoding::LineString => "linestring",
            Encoding::Polygon => "polygon",
            Encoding::MultiPoint => "multipoint",
            Encoding::MultiLineString => "multilinestring",
            Encoding::MultiPolygon => "multipolygon",
        }
    }

    /// Lists around the coordinate (0 for a point, 3 for a multipolygon); `None` for WKB.
    pub(crate) fn list_depth(self) -> Option<usize> {
        match self {
            Encoding::Wkb => None,
            Encoding::Point => Some(0),
            Encoding::LineString | Encoding::MultiPoint => Some(1),
            Encoding::Polygon | Encoding::MultiLineString => Some(2),
            Encoding::MultiPolygon => Some(3),
        }
    }
}

/// What the `geo` metadata says, checked.
#[derive(Debug)]
pub(crate) struct GeoMetadata {
    /// The primary geometry column: the feature's geometry.
    pub(crate) primary: String,
    pub(crate) encoding: Encoding,
    /// The coordinate system of the primary column, easting/longitude first.
    pub(crate) crs: Crs,
    /// The other geometry columns, which are not read.
    pub(crate) others: Vec<String>,
    /// The columns a `covering` (GeoParquet 1.1's per-row bbox struct) uses: an index, not
    /// data, so not read as properties.
    pub(crate) covering: Vec<String>,
}

/// What the `tak-etl` entry says.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct TakMetadata {
    pub(crate) id_column: Option<String>,
    pub(crate) extra_column: Option<String>,
}

impl GeoMetadata {
    /// Reads the `geo` value; `source_crs` (`--s-srs`) replaces the file's CRS. An error is
    /// one line saying what is wrong.
    pub(crate) fn parse(text: &str, source_crs: Option<&Crs>) -> Result<GeoMetadata, String> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| format!("its \"geo\" metadata is not valid JSON: {e}"))?;
        let Value::Object(root) = value else {
            return Err("its \"geo\" metadata is not a JSON object".into());
        };
        let version = match root.get("version") {
            Some(Value::String(v)) => v.clone(),
            Some(_) => return Err("its \"geo\" metadata has a version that is not a string".into()),
            None => return Err("its \"geo\" metadata has no version".into()),
        };
        if !(version.starts_with("1.") || version.starts_with("0.")) {
            return Err(format!(
                "GeoParquet version {} is not supported (1.0 and 1.1 are)",
                shown(&version)
            ));
        }
        let primary = match root.get("primary_column") {
            Some(Value::String(c)) => c.clone(),
            _ => return Err("its \"geo\" metadata has no primary_column string".into()),
        };
        let Some(Value::Object(columns)) = root.get("columns") else {
            return Err("its \"geo\" metadata has no columns object".into());
        };
        let Some(Value::Object(column)) = columns.get(&primary) else {
            return Err(format!(
                "its \"geo\" metadata does not describe the primary column {}",
                shown(&primary)
            ));
        };
        let encoding = match column.get("encoding") {
            Some(Value::String(e)) => Encoding::parse(e).ok_or_else(|| {
                format!(
                    "geometry column {}: unknown encoding {} (expected WKB, point, linestring, polygon, multipoint, multilinestring or multipolygon)",
                    shown(&primary),
                    shown(e)
                )
            })?,
            _ => {
                return Err(format!(
                    "geometry column {}: no encoding string",
                    shown(&primary)
                ));
            }
        };
        let crs = match source_crs {
            Some(given) => given.clone(),
            None => column_crs(&primary, column)?,
        }
        .easting_first();
        let others = columns.keys().filter(|k| **k != primary).cloned().collect();
        // "covering": {"bbox": {"xmin": ["bbox", "xmin"], …}}: the first element of each path.
        let mut covering: Vec<String> = Vec::new();
        if let Some(Value::Object(kinds)) = column.get("covering") {
            for kind in kinds.values() {
                let Value::Object(paths) = kind else { continue };
                for path in paths.values() {
                    if let Some(Value::String(root)) = path.as_array().and_then(|p| p.first())
                        && !covering.contains(root)
                        && *root != primary
                    {
                        covering.push(root.clone());
                    }
                }
            }
        }
        Ok(GeoMetadata {
            primary,
            encoding,
            crs,
            others,
            covering,
        })
    }
}

impl TakMetadata {
    /// Reads the `tak-etl` value; one that is not what our writer writes is an error.
    pub(crate) fn parse(text: &str) -> Result<TakMetadata, String> {
        let value: Value = serde_json::from_str(text)
            .map_err(|e| format!("its \"tak-etl\" metadata is not valid JSON: {e}"))?;
        let Value::Object(root) = value else {
            return Err("its \"tak-etl\" metadata is not a JSON object".into());
        };
        let name = |key: &str| match root.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(format!(
                "its \"tak-etl\" metadata has a {key} that is not a string"
            )),
        };
        Ok(TakMetadata {
            id_column: name("id_column")?,
            extra_column: name("extra_column")?,
        })
    }

    pub(crate) fn to_json(&self) -> String {
        let mut root = Map::new();
        if let Some(c) = &self.id_column {
            root.insert("id_column".into(), Value::String(c.clone()));
        }
        if let Some(c) = &self.extra_column {
            root.insert("extra_column".into(), Value::String(c.clone()));
        }
        Value::Object(root).to_string()
    }
}

/// A column's `crs`: absent is OGC:CRS84; `null` is an unknown CRS, which is refused (the
/// numbers could be anything); PROJJSON (or, leniently, a definition string) is resolved.
fn column_crs(column: &str, meta: &Map<String, Value>) -> Result<Crs, String> {
    match meta.get("crs") {
        None => Ok(Crs::wgs84()),
        Some(Value::Null) => Err(format!(
            "geometry column {}: its crs is null (unknown); name it with --s-srs",
            shown(column)
        )),
        Some(Value::String(definition)) => Crs::from_definition(definition)
            .map_err(|e| format!("geometry column {}: crs: {e}", shown(column))),
        Some(projjson @ Value::Object(_)) => Crs::from_definition(&projjson.to_string())
            .map_err(|e| format!("geometry column {}: crs: {e}", shown(column))),
        Some(_) => Err(format!(
            "geometry column {}: its crs is neither PROJJSON nor null",
            shown(column)
        )),
    }
}

/// A name or value from the file, quoted, short and on one line.
pub(crate) fn shown(text: &str) -> String {
    let cut = crate::formats::excerpt(text);
    if cut.len() < text.len() {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_minimal_file_is_wkb_in_crs84() {
        let m = GeoMetadata::parse(
            r#"{"version":"1.0.0","primary_column":"geometry","columns":{"geometry":{"encoding":"WKB","geometry_types":[]}}}"#,
            None,
        )
        .unwrap();
        assert_eq!(m.encoding, Encoding::Wkb);
        assert!(m.crs.is_wgs84());
        assert_eq!(m.primary, "geometry");
        assert!(m.others.is_empty());
        let covered = GeoMetadata::parse(
            r#"{"version":"1.1.0","primary_column":"geometry","columns":{"geometry":{"encoding":"WKB","covering":{"bbox":{"xmin":["bbox","xmin"],"ymin":["bbox","ymin"],"xmax":["bbox","xmax"],"ymax":["bbox","ymax"]}}}}}"#,
            None,
        )
        .unwrap();
        assert_eq!(covered.covering, ["bbox"]);
    }

    #[test]
    fn null_crs_is_refused_unless_given() {
        let text = r#"{"version":"1.1.0","primary_column":"g","columns":{"g":{"encoding":"point","crs":null},"h":{"encoding":"WKB"}}}"#;
        let e = GeoMetadata::parse(text, None).unwrap_err();
        assert!(e.contains("crs is null") && e.contains("--s-srs"), "{e}");
        let given = Crs::from_definition("EPSG:2193").unwrap();
        let m = GeoMetadata::parse(text, Some(&given)).unwrap();
        assert_eq!(m.crs.name(), "EPSG:2193");
        assert_eq!(m.encoding, Encoding::Point);
        assert_eq!(m.others, ["h"]);
    }

    #[test]
    fn projjson_with_an_epsg_id_resolves() {
        let text = r#"{"version":"1.1.0","primary_column":"geometry","columns":{"geometry":{"encoding":"WKB","crs":{"type":"ProjectedCRS","name":"NZGD2000 / New Zealand Transverse Mercator 2000","id":{"authority":"EPSG","code":2193}}}}}"#;
        let m = GeoMetadata::parse(text, None).unwrap();
        assert_eq!(m.crs.name(), "EPSG:2193");
    }

    #[test]
    fn bad_metadata_says_what_is_wrong() {
        for (text, expected) in [
            ("{not json", "not valid JSON"),
            ("[1]", "not a JSON object"),
            (r#"{"primary_column":"g"}"#, "no version"),
            (r#"{"version":"2.0.0"}"#, "not supported"),
            (r#"{"version":"1.0.0","columns":{}}"#, "no primary_column"),
            (r#"{"version":"1.0.0","primary_column":"g"}"#, "no columns"),
            (
                r#"{"version":"1.0.0","primary_column":"g","columns":{}}"#,
                "does not describe",
            ),
            (
                r#"{"version":"1.0.0","primary_column":"g","columns":{"g":{}}}"#,
                "no encoding",
            ),
            (
                r#"{"version":"1.0.0","primary_column":"g","columns":{"g":{"encoding":"WKT"}}}"#,
                "unknown encoding",
            ),
            (
                r#"{"version":"1.0.0","primary_column":"g","columns":{"g":{"encoding":"WKB","crs":5}}}"#,
                "neither PROJJSON",
            ),
            (
                r#"{"version":"1.0.0","primary_column":"g","columns":{"g":{"encoding":"WKB","crs":{"type":"GeographicCRS","name":"nowhere"}}}}"#,
                "crs:",
            ),
        ] {
            let e = GeoMetadata::parse(text, None).unwrap_err();
            assert!(e.contains(expected), "{text}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn tak_metadata_round_trips() {
        let m = TakMetadata {
            id_column: Some("id".into()),
            extra_column: Some("properties_extra".into()),
        };
        assert_eq!(TakMetadata::parse(&m.to_json()).unwrap(), m);
        assert!(TakMetadata::parse(r#"{"id_column":3}"#).is_err());
    }
}
