//! Reprojection against GDAL/PROJ: 10,000 points in each of eight coordinate systems
//! (fixtures/crs/, made once with gdaltransform and cct, see its README) go to WGS 84 and back,
//! from the EPSG code and from each definition GDAL writes for the CRS (ESRI `.prj`, WKT1,
//! WKT2, PROJJSON, PROJ string). Every position must agree within 1 cm; a definition that
//! cannot be used must be an error, never a silently different result.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::path::PathBuf;

use etl_geo::Crs;

const CODES: [u32; 8] = [2193, 4167, 32633, 32760, 27700, 2263, 2154, 3857];
const TOLERANCE_M: f64 = 0.01;
/// Metres per degree of latitude (and of longitude at the equator), near enough for
/// centimetre checks.
const M_PER_DEG: f64 = 111_320.0;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/crs")
}

/// (x, y, lon, lat) rows.
fn points(code: u32) -> Vec<[f64; 4]> {
    let path = dir().join(format!("{code}.csv.gz"));
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .unwrap();
    let rows: Vec<[f64; 4]> = text
        .lines()
        .skip(1)
        .map(|l| {
            let v: Vec<f64> = l.split(',').map(|f| f.parse().unwrap()).collect();
            [v[0], v[1], v[2], v[3]]
        })
        .collect();
    assert_eq!(rows.len(), 10_000, "{}", path.display());
    rows
}

/// Metres per native unit of the CRS's x/y (degrees for 4167, US survey feet for 2263).
fn unit(code: u32, lat: f64) -> (f64, f64) {
    match code {
        4167 => (M_PER_DEG * lat.to_radians().cos(), M_PER_DEG),
        2263 => (1200.0 / 3937.0, 1200.0 / 3937.0),
        _ => (1.0, 1.0),
    }
}

fn ground(lon_a: f64, lat_a: f64, lon_b: f64, lat_b: f64) -> f64 {
    // -180° and 180° are one meridian (UTM 60S reaches it).
    let dlon = (lon_a - lon_b + 540.0).rem_euclid(360.0) - 180.0;
    let dx = dlon * M_PER_DEG * lat_a.to_radians().cos();
    let dy = (lat_a - lat_b) * M_PER_DEG;
    dx.hypot(dy)
}

/// `text` without any `NODE[…]` that starts with `node` (and the comma before it).
fn without(text: &str, node: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest
        .match_indices(node)
        .map(|(i, _)| i)
        // A whole keyword: `ID[`, not the end of `ELLIPSOID[`.
        .find(|&i| !rest[..i].ends_with(|c: char| c.is_ascii_alphanumeric()))
    {
        let before = rest[..at].trim_end();
        out.push_str(before.strip_suffix(',').unwrap_or(before));
        let mut depth = 0usize;
        let mut end = at;
        for (i, c) in rest[at..].char_indices() {
            match c {
                '[' => depth += 1,
                ']' => {
                    depth -= 1;
                    if depth == 0 {
                        end = at + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Removes every `id` and `ids` member, at any depth.
fn strip_ids(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            map.remove("id");
            map.remove("ids");
            map.values_mut().for_each(strip_ids);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_ids),
        _ => {}
    }
}

struct Worst {
    forward: f64,
    inverse: f64,
    round_trip: f64,
}

fn check(code: u32, crs: &Crs, rows: &[[f64; 4]]) -> Worst {
    let mut w = Worst {
        forward: 0.0,
        inverse: 0.0,
        round_trip: 0.0,
    };
    for &[x, y, lon, lat] in rows {
        let (l, b) = crs.to_wgs84(x, y).unwrap_or_else(|e| panic!("{code}: {e}"));
        w.forward = w.forward.max(ground(l, b, lon, lat));
        let (ux, uy) = unit(code, lat);
        // Web Mercator stops at ±85.0511°; GDAL's grid reaches a little past it.
        if code == 3857 && lat.abs() > 85.0511 {
            continue;
        }
        let (ix, iy) = crs
            .from_wgs84(lon, lat)
            .unwrap_or_else(|e| panic!("{code}: {e}"));
        w.inverse = w.inverse.max(((ix - x) * ux).hypot((iy - y) * uy));
        let (rx, ry) = crs.from_wgs84(l, b).unwrap();
        w.round_trip = w.round_trip.max(((rx - x) * ux).hypot((ry - y) * uy));
    }
    w
}

#[test]
fn eight_coordinate_systems_agree_with_gdal_within_a_centimetre() {
    let mut report = Vec::new();
    for code in CODES {
        let rows = points(code);
        let mut sources = vec![(format!("EPSG:{code}"), format!("EPSG:{code}"))];
        for ext in ["esri.prj", "wkt1", "wkt2", "projjson", "proj4"] {
            let path = dir().join(format!("{code}.{ext}"));
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            // The same definitions without their EPSG codes: parsed, not looked up.
            match ext {
                "wkt1" => sources.push(("wkt1 without codes".into(), without(&text, "AUTHORITY["))),
                "wkt2" => sources.push(("wkt2 without codes".into(), without(&text, "ID["))),
                "projjson" => {
                    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
                    strip_ids(&mut v);
                    sources.push(("projjson without codes".into(), v.to_string()));
                }
                _ => {}
            }
            sources.push((ext.to_string(), text));
        }
        for (what, def) in sources {
            let crs = match Crs::from_definition(&def) {
                Ok(crs) => crs,
                // GDAL's PROJ string of OSGB 1936 names only the ellipsoid: no datum shift can
                // be derived from it, so it must be refused, not read without one (150 m off).
                Err(e) if code == 27700 && what == "proj4" => {
                    report.push(format!("{code} {what}: refused ({e})"));
                    continue;
                }
                // A gap of proj-wkt 0.13's parser (Lambert Conic Conformal in WKT2 and
                // PROJJSON): refused, never read wrong.
                Err(e)
                    if what.ends_with("without codes")
                        && matches!(
                            (code, what.as_str()),
                            (2263 | 2154, "wkt2 without codes" | "projjson without codes")
                        ) =>
                {
                    report.push(format!("{code} {what}: refused ({e})"));
                    continue;
                }
                Err(e) => panic!("{code} {what}: {e}"),
            };
            let w = check(code, &crs, &rows);
            report.push(format!(
                "{code} {what}: forward {:.1e} m, inverse {:.1e} m, round trip {:.1e} m",
                w.forward, w.inverse, w.round_trip
            ));
            assert!(
                w.forward < TOLERANCE_M && w.inverse < TOLERANCE_M && w.round_trip < TOLERANCE_M,
                "{}",
                report.join("\n")
            );
        }
    }
    println!("{}", report.join("\n"));
}
