//! The `metadata` table, the header values parsed from it, and the tiles' own extent.

use rusqlite::Connection;
use rusqlite::types::ValueRef;

use super::{MbtilesError, sql};
use crate::tile::{MAX_LAT, TileCoord};

/// Metadata rows beyond this many are refused (real files have a dozen).
const MAX_METADATA_ROWS: usize = 10_000;
/// One metadata value (the `json` row with tilestats can be a few MiB).
const MAX_METADATA_VALUE_BYTES: i64 = 16 << 20;
/// All metadata values together.
const MAX_METADATA_TOTAL_BYTES: usize = 64 << 20;

pub(super) struct Metadata {
    pub(super) format: Option<String>,
    pub(super) bounds: Option<String>,
    pub(super) center: Option<String>,
    /// Everything for the PMTiles JSON metadata.
    pub(super) json: serde_json::Map<String, serde_json::Value>,
}

fn value_string(v: ValueRef<'_>) -> Option<String> {
    match v {
        ValueRef::Null => None,
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
        ValueRef::Text(t) | ValueRef::Blob(t) => Some(String::from_utf8_lossy(t).into_owned()),
    }
}

pub(super) fn read_metadata(
    conn: &Connection,
    warnings: &mut Vec<String>,
) -> Result<Metadata, MbtilesError> {
    let mut meta = Metadata {
        format: None,
        bounds: None,
        center: None,
        json: serde_json::Map::new(),
    };
    let exists: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE name = 'metadata' COLLATE NOCASE AND type IN ('table', 'view'))",
            [],
            |r| r.get(0),
        )
        .map_err(sql("reading the schema"))?;
    if !exists {
        warnings.push("no `metadata` table".into());
        return Ok(meta);
    }
    let mut stmt = match conn.prepare(
        "SELECT name, CASE WHEN octet_length(value) <= ?1 THEN value END, octet_length(value) FROM metadata",
    ) {
        Ok(s) => s,
        Err(e) => {
            warnings.push(format!(
                "`metadata` table unusable: {}",
                e.to_string().replace('\n', " ")
            ));
            return Ok(meta);
        }
    };
    let mut rows = stmt
        .query([MAX_METADATA_VALUE_BYTES])
        .map_err(sql("reading metadata"))?;
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut total = 0usize;
    while let Some(r) = rows.next().map_err(sql("reading metadata"))? {
        if pairs.len() >= MAX_METADATA_ROWS {
            return Err(MbtilesError::NotMbtiles(format!(
                "more than {MAX_METADATA_ROWS} metadata rows"
            )));
        }
        let name = r.get_ref(0).ok().and_then(value_string);
        let len = r.get_ref(2).ok().and_then(|v| v.as_i64().ok()).unwrap_or(0);
        let Some(name) = name else { continue };
        if len > MAX_METADATA_VALUE_BYTES {
            warnings.push(format!(
                "metadata {name:?} ignored: {len} bytes, over {MAX_METADATA_VALUE_BYTES}"
            ));
            continue;
        }
        let Some(value) = r.get_ref(1).ok().and_then(value_string) else {
            continue;
        };
        total += name.len() + value.len();
        if total > MAX_METADATA_TOTAL_BYTES {
            return Err(MbtilesError::NotMbtiles(format!(
                "metadata over {MAX_METADATA_TOTAL_BYTES} bytes"
            )));
        }
        if pairs.iter().any(|(n, _)| *n == name) {
            warnings.push(format!("metadata {name:?} repeated; the first kept"));
            continue;
        }
        pairs.push((name, value));
    }
    let mut json_extra = None;
    for (name, value) in pairs {
        match name.as_str() {
            "format" => {
                meta.format = Some(value.clone());
                meta.json.insert(name, value.into());
            }
            "bounds" => meta.bounds = Some(value),
            "center" => meta.center = Some(value),
            "minzoom" | "maxzoom" => {}
            "json" => match serde_json::from_str::<serde_json::Value>(&value) {
                Ok(serde_json::Value::Object(o)) => json_extra = Some(o),
                Ok(_) => warnings.push("metadata json ignored: not a JSON object".into()),
                Err(e) => warnings.push(format!("metadata json ignored: {e}")),
            },
            _ => {
                meta.json.insert(name, value.into());
            }
        }
    }
    for (k, v) in json_extra.into_iter().flatten() {
        meta.json.entry(k).or_insert(v);
    }
    Ok(meta)
}

fn parse_numbers(s: &str) -> Result<Vec<f64>, String> {
    s.split(',')
        .map(|p| {
            p.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| format!("{:?} is not a number", p.trim()))
        })
        .collect()
}

/// `west,south,east,north` in degrees.
pub(super) fn parse_bounds(s: &str) -> Result<[f64; 4], String> {
    let v = parse_numbers(s)?;
    let [w, so, e, n] = v[..] else {
        return Err(format!("{s:?} does not have 4 numbers"));
    };
    if !((-180.0..=180.0).contains(&w)
        && (-180.0..=180.0).contains(&e)
        && (-90.0..=90.0).contains(&so)
        && (-90.0..=90.0).contains(&n)
        && w <= e
        && so <= n)
    {
        return Err(format!(
            "{s:?} is not a west,south,east,north box in degrees"
        ));
    }
    // Web Mercator stops at ±85.05°; writers often say ±90.
    Ok([w, so.max(-MAX_LAT), e, n.min(MAX_LAT)])
}

/// `longitude,latitude[,zoom]`; a zoom outside the tiles' zooms is clamped to them.
pub(super) fn parse_center(s: &str, min_zoom: u8, max_zoom: u8) -> Result<(f64, f64, u8), String> {
    let v = parse_numbers(s)?;
    let (lon, lat, zoom) = match v[..] {
        [lon, lat] => (lon, lat, f64::from(min_zoom)),
        [lon, lat, z] => (lon, lat, z),
        _ => return Err(format!("{s:?} does not have 2 or 3 numbers")),
    };
    if !((-180.0..=180.0).contains(&lon) && (-90.0..=90.0).contains(&lat)) {
        return Err(format!("{s:?} is not a longitude,latitude in degrees"));
    }
    let lat = lat.clamp(-MAX_LAT, MAX_LAT);
    let zoom = zoom.round().clamp(f64::from(min_zoom), f64::from(max_zoom)) as u8;
    Ok((lon, lat, zoom))
}

/// The union of tile extents, in degrees.
#[derive(Default)]
pub(super) struct LonLatBox(Option<[f64; 4]>);

impl LonLatBox {
    pub(super) fn add_tile(&mut self, c: TileCoord) {
        let n = f64::from(1u32 << c.z);
        let lon = |x: f64| x / n * 360.0 - 180.0;
        let lat = |y: f64| {
            (std::f64::consts::PI * (1.0 - 2.0 * y / n))
                .sinh()
                .atan()
                .to_degrees()
        };
        let (x, y) = (f64::from(c.x), f64::from(c.y));
        let t = [lon(x), lat(y + 1.0), lon(x + 1.0), lat(y)];
        self.0 = Some(match self.0 {
            None => t,
            Some(b) => [
                b[0].min(t[0]),
                b[1].min(t[1]),
                b[2].max(t[2]),
                b[3].max(t[3]),
            ],
        });
    }

    pub(super) fn bounds(&self) -> [f64; 4] {
        // Tile edges at ±85.0511287798° round just past MAX_LAT.
        let [w, s, e, n] = self.0.unwrap_or([-180.0, -MAX_LAT, 180.0, MAX_LAT]);
        [w, s.max(-MAX_LAT), e, n.min(MAX_LAT)]
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn bounds_and_center_parsing() {
        assert_eq!(
            parse_bounds("-10, -5,10,5").unwrap(),
            [-10.0, -5.0, 10.0, 5.0]
        );
        assert_eq!(
            parse_bounds("-180,-90,180,90").unwrap(),
            [-180.0, -MAX_LAT, 180.0, MAX_LAT]
        );
        assert!(parse_bounds("1,2,3").is_err());
        assert!(parse_bounds("10,0,-10,5").is_err());
        assert!(parse_bounds("a,b,c,d").is_err());
        assert!(parse_bounds("0,0,200,5").is_err());
        assert_eq!(parse_center("1,2,9", 0, 5).unwrap(), (1.0, 2.0, 5));
        assert_eq!(parse_center("1,2", 3, 5).unwrap(), (1.0, 2.0, 3));
        assert!(parse_center("1", 0, 5).is_err());
    }
}
