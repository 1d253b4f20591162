//! What the header row says: the delimiter and which columns hold the geometry.

use crate::formats::CsvOptions;

/// Longitude and latitude headers, compared without case, spaces, `_`, `-` or `.`: the
/// English, Spanish/Portuguese/French/Italian spellings, decimal-degree suffixes, and Darwin
/// Core's `decimalLongitude`.
const LON_NAMES: [&str; 11] = [
    "lon",
    "lng",
    "long",
    "longitude",
    "longitud",
    "longitudine",
    "londd",
    "longdd",
    "londeg",
    "longitudedeg",
    "decimallongitude",
];
const LAT_NAMES: [&str; 8] = [
    "lat",
    "latitude",
    "latitud",
    "latitudine",
    "latdd",
    "latdeg",
    "latitudedeg",
    "decimallatitude",
];
const WKT_NAMES: [&str; 5] = ["wkt", "geometry", "geom", "the_geom", "wkt_geom"];

/// The columns the geometry comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GeometryColumns {
    LonLat { lon: usize, lat: usize },
    Wkt { column: usize },
}

impl GeometryColumns {
    /// Finds geometry columns by name, case-insensitively. Explicit longitude and
    /// latitude names win, then a WKT column, then `x`/`y` (weak names, often
    /// projected coordinates or unrelated data).
    pub(crate) fn detect<S: AsRef<str>>(header: &[S]) -> Option<Self> {
        if let (Some(lon), Some(lat)) = (
            find_loose(header, &LON_NAMES),
            find_loose(header, &LAT_NAMES),
        ) {
            return Some(GeometryColumns::LonLat { lon, lat });
        }
        if let Some(column) = find(header, &WKT_NAMES) {
            return Some(GeometryColumns::Wkt { column });
        }
        match (find(header, &["x"]), find(header, &["y"])) {
            (Some(lon), Some(lat)) => Some(GeometryColumns::LonLat { lon, lat }),
            _ => None,
        }
    }

    /// Geometry columns from the options, falling back to detection for what they
    /// leave unset. The error is a one-line message naming the header.
    pub(crate) fn choose<S: AsRef<str>>(header: &[S], opts: &CsvOptions) -> Result<Self, String> {
        let named = |name: &str, what: &str| {
            find(header, &[name])
                .ok_or_else(|| format!("{what} column {name:?} not in header: {}", joined(header)))
        };
        if let Some(name) = &opts.wkt {
            return Ok(GeometryColumns::Wkt {
                column: named(name, "WKT")?,
            });
        }
        if opts.lon.is_some() || opts.lat.is_some() {
            let lon = match &opts.lon {
                Some(name) => named(name, "longitude")?,
                None => find_loose(header, &LON_NAMES)
                    .or_else(|| find(header, &["x"]))
                    .ok_or_else(|| format!("no longitude column in header: {}", joined(header)))?,
            };
            let lat = match &opts.lat {
                Some(name) => named(name, "latitude")?,
                None => find_loose(header, &LAT_NAMES)
                    .or_else(|| find(header, &["y"]))
                    .ok_or_else(|| format!("no latitude column in header: {}", joined(header)))?,
            };
            return Ok(GeometryColumns::LonLat { lon, lat });
        }
        Self::detect(header).ok_or_else(|| {
            format!(
                "no longitude/latitude or WKT column in header: {}",
                joined(header)
            )
        })
    }

    /// Whether column `i` is consumed by the geometry (and so is not a property).
    pub(crate) fn uses(&self, i: usize) -> bool {
        match *self {
            GeometryColumns::LonLat { lon, lat } => i == lon || i == lat,
            GeometryColumns::Wkt { column } => i == column,
        }
    }
}

fn find<S: AsRef<str>>(header: &[S], names: &[&str]) -> Option<usize> {
    names.iter().find_map(|name| {
        header
            .iter()
            .position(|h| h.as_ref().trim().eq_ignore_ascii_case(name))
    })
}

/// [`find`] for the geometry names: a header matches when it equals one of `names` once
/// lowercased and stripped of spaces, `_`, `-` and `.` (`Decimal Longitude`, `LON_DD`).
fn find_loose<S: AsRef<str>>(header: &[S], names: &[&str]) -> Option<usize> {
    let loose: Vec<String> = header
        .iter()
        .map(|h| {
            h.as_ref()
                .chars()
                .filter(|c| !matches!(c, ' ' | '_' | '-' | '.'))
                .flat_map(char::to_lowercase)
                .collect()
        })
        .collect();
    names
        .iter()
        .find_map(|name| loose.iter().position(|h| h == name))
}

fn joined<S: AsRef<str>>(header: &[S]) -> String {
    let names: Vec<&str> = header.iter().map(AsRef::as_ref).collect();
    let text = names.join(",");
    crate::formats::excerpt(&text).to_owned()
}

/// The delimiter of a header line: a comma if there is one, else a tab, else a
/// semicolon, else a comma.
pub(crate) fn detect_delimiter(header_line: &[u8]) -> u8 {
    [b',', b'\t', b';']
        .into_iter()
        .find(|d| header_line.contains(d))
        .unwrap_or(b',')
}

/// Splits a header line for sniffing: fields trimmed of whitespace and quotes.
/// (Quoted delimiters inside names are not handled; the reader uses the csv crate.)
pub(crate) fn split_header_line(line: &str, delimiter: u8) -> Vec<&str> {
    line.split(char::from(delimiter))
        .map(|f| f.trim().trim_matches('"').trim())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longitude_and_latitude_in_other_spellings_win_over_x_and_y() {
        for (lon, lat) in [
            ("Longitud", "Latitud"),
            ("Decimal Longitude", "Decimal Latitude"),
            ("decimalLongitude", "decimalLatitude"),
            ("LON_DD", "LAT_DD"),
            ("longitude_deg", "latitude_deg"),
        ] {
            assert_eq!(
                GeometryColumns::detect(&["X", "Y", lat, lon]),
                Some(GeometryColumns::LonLat { lon: 3, lat: 2 }),
                "{lon}/{lat}"
            );
        }
    }

    #[test]
    fn detects_lon_lat_names() {
        assert_eq!(
            GeometryColumns::detect(&["name", "Latitude", " LNG "]),
            Some(GeometryColumns::LonLat { lon: 2, lat: 1 })
        );
        assert_eq!(
            GeometryColumns::detect(&["x", "y", "WKT"]),
            Some(GeometryColumns::Wkt { column: 2 })
        );
        assert_eq!(
            GeometryColumns::detect(&["X", "Y"]),
            Some(GeometryColumns::LonLat { lon: 0, lat: 1 })
        );
        assert_eq!(
            GeometryColumns::detect(&["the_geom"]),
            Some(GeometryColumns::Wkt { column: 0 })
        );
        assert_eq!(GeometryColumns::detect(&["lon", "name"]), None);
    }

    #[test]
    fn options_override_detection() {
        let opts = CsvOptions {
            lon: Some("east".into()),
            lat: Some("NORTH".into()),
            ..CsvOptions::default()
        };
        assert_eq!(
            GeometryColumns::choose(&["north", "east", "lat", "lon"], &opts),
            Ok(GeometryColumns::LonLat { lon: 1, lat: 0 })
        );
        let opts = CsvOptions {
            wkt: Some("shape".into()),
            ..CsvOptions::default()
        };
        assert_eq!(
            GeometryColumns::choose(&["a", "b"], &opts),
            Err("WKT column \"shape\" not in header: a,b".to_owned())
        );
        assert_eq!(
            GeometryColumns::choose(&["a", "b", "c"], &CsvOptions::default()),
            Err("no longitude/latitude or WKT column in header: a,b,c".to_owned())
        );
    }

    #[test]
    fn delimiters() {
        assert_eq!(detect_delimiter(b"a,b;c"), b',');
        assert_eq!(detect_delimiter(b"a\tb;c"), b'\t');
        assert_eq!(detect_delimiter(b"a;b"), b';');
        assert_eq!(detect_delimiter(b"ab"), b',');
        assert_eq!(split_header_line(" \"lon\" ;lat", b';'), ["lon", "lat"]);
    }
}
