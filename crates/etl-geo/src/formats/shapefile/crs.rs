//! The two coordinate systems the binary readers accept, recognised from WKT (a
//! shapefile's `.prj`, a FlatGeobuf header) or an EPSG code, and the inverse
//! spherical Mercator that turns Web Mercator metres into WGS 84 degrees.

/// A coordinate system the readers can deliver as WGS 84 longitude/latitude.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Crs {
    /// Geographic WGS 84 (EPSG:4326, OGC:CRS84): coordinates are used as they are.
    Wgs84,
    /// Web Mercator (EPSG:3857, 900913, 102100, 102113): converted with [`inverse_mercator`].
    WebMercator,
}

/// Radius of the sphere of Web Mercator, in metres.
const R: f64 = 6_378_137.0;

impl Crs {
    /// The EPSG codes recognised; `None` for any other code.
    pub(crate) fn from_epsg(code: i64) -> Option<Crs> {
        match code {
            4326 => Some(Crs::Wgs84),
            3857 | 900_913 | 102_100 | 102_113 => Some(Crs::WebMercator),
            _ => None,
        }
    }

    /// Converts one position to WGS 84 longitude/latitude.
    #[inline]
    pub(crate) fn to_wgs84(self, x: f64, y: f64) -> (f64, f64) {
        match self {
            Crs::Wgs84 => (x, y),
            Crs::WebMercator => inverse_mercator(x, y),
        }
    }
}

/// Inverse spherical Mercator (R = 6378137 m): metres to degrees. A longitude a
/// rounding error past ±180° (the edge of the projected world) is clamped.
#[inline]
pub(crate) fn inverse_mercator(x: f64, y: f64) -> (f64, f64) {
    let mut lon = (x / R).to_degrees();
    if lon.abs() > 180.0 && lon.abs() < 180.0 + 1e-9 {
        lon = 180.0_f64.copysign(lon);
    }
    let lat = (2.0 * (y / R).exp().atan() - std::f64::consts::FRAC_PI_2).to_degrees();
    (lon, lat)
}

/// Recognises WKT (WKT1 as in `.prj` files, or WKT2): WGS 84 geographic or Web
/// Mercator; `Err(name)` names any other coordinate system (its `PROJCS`/`GEOGCS`
/// name, or the start of the text when it has none).
pub(crate) fn from_wkt(wkt: &str) -> Result<Crs, String> {
    let text = wkt.trim_start_matches('\u{feff}').trim();
    let (keyword, name) = head(text);
    let upper = keyword.to_ascii_uppercase();
    let compact: String = text
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase();
    let described = if name.is_empty() {
        crate::formats::excerpt(text).to_owned()
    } else {
        name.to_owned()
    };
    match upper.as_str() {
        "GEOGCS" | "GEOGCRS" | "GEODCRS" | "GEOGRAPHICCRS" => {
            if is_wgs84_name(name) || is_wgs84_datum(&compact) {
                Ok(Crs::Wgs84)
            } else {
                Err(described)
            }
        }
        "PROJCS" | "PROJCRS" | "PROJECTEDCRS" => {
            const MARKERS: [&str; 5] = [
                "MERCATOR_AUXILIARY_SPHERE",
                "POPULAR VISUALISATION PSEUDO MERCATOR",
                "POPULAR_VISUALISATION_PSEUDO_MERCATOR",
                "WGS_1984_WEB_MERCATOR",
                "PSEUDO-MERCATOR",
            ];
            let upper_text = text.to_ascii_uppercase();
            let by_name = MARKERS.iter().any(|m| upper_text.contains(m));
            let by_code = ["3857", "900913", "102100", "102113"]
                .iter()
                .any(|code| compact.ends_with(&format!("AUTHORITY[\"EPSG\",\"{code}\"]]")))
                || ["3857", "900913", "102100", "102113"]
                    .iter()
                    .any(|code| compact.ends_with(&format!("ID[\"EPSG\",{code}]]")));
            if by_name || by_code {
                Ok(Crs::WebMercator)
            } else {
                Err(described)
            }
        }
        _ => Err(described),
    }
}

/// The keyword and quoted name that open a WKT text: `PROJCS["name", …` → (`PROJCS`, `name`).
fn head(text: &str) -> (&str, &str) {
    let Some(open) = text.find(['[', '(']) else {
        return (text, "");
    };
    let keyword = text.get(..open).unwrap_or("").trim();
    let rest = text.get(open + 1..).unwrap_or("").trim_start();
    let name = rest
        .strip_prefix('"')
        .and_then(|r| r.find('"').and_then(|end| r.get(..end)))
        .unwrap_or("");
    (keyword, name)
}

fn is_wgs84_name(name: &str) -> bool {
    let n: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_uppercase();
    matches!(n.as_str(), "GCSWGS1984" | "WGS84" | "WGS1984" | "EPSG4326")
}

/// A geographic CRS on the WGS 84 datum under another name (e.g. `GEOGCS["unnamed",DATUM["WGS_1984",…`).
fn is_wgs84_datum(compact_upper: &str) -> bool {
    [
        "DATUM[\"D_WGS_1984\"",
        "DATUM[\"WGS_1984\"",
        "DATUM[\"WGS84\"",
        "DATUM[\"WORLDGEODETICSYSTEM1984\"",
    ]
    .iter()
    .any(|d| compact_upper.contains(d))
        && !compact_upper.contains("PROJECTION[")
}

#[cfg(test)]
mod tests {
    use super::*;

    const ESRI_WGS84: &str = r#"GEOGCS["GCS_WGS_1984",DATUM["D_WGS_1984",SPHEROID["WGS_1984",6378137.0,298.257223563]],PRIMEM["Greenwich",0.0],UNIT["Degree",0.0174532925199433]]"#;
    const ESRI_WEB_MERCATOR: &str = r#"PROJCS["WGS_1984_Web_Mercator_Auxiliary_Sphere",GEOGCS["GCS_WGS_1984",DATUM["D_WGS_1984",SPHEROID["WGS_1984",6378137.0,298.257223563]],PRIMEM["Greenwich",0.0],UNIT["Degree",0.0174532925199433]],PROJECTION["Mercator_Auxiliary_Sphere"],PARAMETER["False_Easting",0.0],PARAMETER["False_Northing",0.0],PARAMETER["Central_Meridian",0.0],PARAMETER["Standard_Parallel_1",0.0],PARAMETER["Auxiliary_Sphere_Type",0.0],UNIT["Meter",1.0]]"#;
    const UTM: &str = r#"PROJCS["WGS_1984_UTM_Zone_33N",GEOGCS["GCS_WGS_1984",DATUM["D_WGS_1984",SPHEROID["WGS_1984",6378137.0,298.257223563]],PRIMEM["Greenwich",0.0],UNIT["Degree",0.0174532925199433]],PROJECTION["Transverse_Mercator"],PARAMETER["False_Easting",500000.0],PARAMETER["False_Northing",0.0],PARAMETER["Central_Meridian",15.0],PARAMETER["Scale_Factor",0.9996],PARAMETER["Latitude_Of_Origin",0.0],UNIT["Meter",1.0]]"#;

    #[test]
    fn recognises_wgs84_and_web_mercator() {
        assert_eq!(from_wkt(ESRI_WGS84), Ok(Crs::Wgs84));
        assert_eq!(
            from_wkt(
                r#"GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563,AUTHORITY["EPSG","7030"]]],AUTHORITY["EPSG","4326"]]"#
            ),
            Ok(Crs::Wgs84)
        );
        assert_eq!(from_wkt(ESRI_WEB_MERCATOR), Ok(Crs::WebMercator));
        assert_eq!(
            from_wkt(
                r#"PROJCS["WGS 84 / Pseudo-Mercator",GEOGCS["WGS 84"],PROJECTION["Mercator_1SP"],AUTHORITY["EPSG","3857"]]"#
            ),
            Ok(Crs::WebMercator)
        );
        assert_eq!(
            from_wkt(
                r#"PROJCS["Google Maps Global Mercator",GEOGCS["WGS 84"],PROJECTION["Mercator_2SP"],AUTHORITY["EPSG","900913"]]"#
            ),
            Ok(Crs::WebMercator)
        );
    }

    #[test]
    fn names_anything_else() {
        assert_eq!(from_wkt(UTM), Err("WGS_1984_UTM_Zone_33N".to_owned()));
        assert_eq!(
            from_wkt(
                r#"GEOGCS["GCS_North_American_1983",DATUM["D_North_American_1983",SPHEROID["GRS_1980",6378137.0,298.257222101]]]"#
            ),
            Err("GCS_North_American_1983".to_owned())
        );
        assert_eq!(
            from_wkt(r#"PROJCS["World_Mercator",GEOGCS["GCS_WGS_1984"],PROJECTION["Mercator"]]"#),
            Err("World_Mercator".to_owned())
        );
        assert_eq!(from_wkt("garbage"), Err("garbage".to_owned()));
    }

    #[test]
    fn inverse_mercator_round_numbers() {
        let (lon, lat) = inverse_mercator(0.0, 0.0);
        assert_eq!((lon, lat), (0.0, 0.0));
        let (lon, lat) = inverse_mercator(20_037_508.342_789_244, 20_037_508.342_789_244);
        assert!((lon - 180.0).abs() < 1e-9);
        assert!((lat - 85.051_128_779_806_59).abs() < 1e-9);
        let (lon, _) = inverse_mercator(-20_037_508.342_789_248, 0.0);
        assert!(lon >= -180.0);
    }
}
