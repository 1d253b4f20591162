//! Coordinate reference systems: what a definition says (an EPSG code, WKT1 as in a
//! Shapefile's `.prj` or ESRI's dialect, WKT2, PROJJSON, a PROJ string, an OGC URN), and the
//! transformation of coordinates in it to WGS 84 longitude/latitude, which is what every
//! output of tak-etl holds.
//!
//! The transformations are `proj-core`'s (pure Rust, the EPSG registry of PROJ 9.6 compiled
//! in): for a projected CRS the projection's inverse, then the datum transformation PROJ
//! itself chooses when no grid files are installed (e.g. the EPSG:1314 Helmert for OSGB 1936;
//! a null transformation for NZGD2000, NAD83 and RGF93, which EPSG deems equal to WGS 84 at
//! the metre level). The results agree with GDAL/PROJ to well under a centimetre
//! (`crates/etl-geo/tests/crs_accuracy.rs`, `fixtures/crs/`). Transformations that need a grid
//! file (OSTN15, NADCON, NTv2) are not available.
//!
//! A definition is resolved by its EPSG code when it carries one (the registry's definition
//! is then used, with easting/longitude first, as files store coordinates), else parsed. A
//! CRS whose datum has no known transformation to WGS 84, or that cannot be parsed, is an
//! error naming the CRS: projected numbers are never passed on as degrees.

mod choose;
mod resolve;

use std::sync::Arc;

use proj_core::{AxisOrder, Transform};

pub use resolve::Definition;

/// Longest CRS definition accepted (a real `.prj` or PROJJSON is a few KiB).
const MAX_DEFINITION: usize = 64 * 1024;

/// Why a coordinate system cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CrsError(pub String);

/// A coordinate system whose coordinates can be delivered as WGS 84 longitude/latitude.
#[derive(Clone)]
pub struct Crs {
    inner: Inner,
    /// How the CRS was named or resolved, for messages and logs (`EPSG:2193`, …).
    name: Arc<str>,
}

#[derive(Clone)]
enum Inner {
    /// Geographic WGS 84 (EPSG:4326, OGC:CRS84): used as they are.
    Wgs84,
    Transform {
        forward: Arc<choose::Operations>,
        /// The source's axes are north first (a parsed definition that says so): swapped on
        /// the way in, since files store easting/longitude first.
        swap: bool,
    },
}

impl std::fmt::Debug for Crs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Crs({})", self.name)
    }
}

impl PartialEq for Crs {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Crs {
    /// WGS 84 longitude/latitude (what GeoJSON, KML and GPX hold).
    pub fn wgs84() -> Crs {
        Crs {
            inner: Inner::Wgs84,
            name: Arc::from("EPSG:4326"),
        }
    }

    /// Whether coordinates pass through unchanged.
    pub fn is_wgs84(&self) -> bool {
        matches!(self.inner, Inner::Wgs84)
    }

    /// How the CRS was identified (`EPSG:2193`, or the name in its definition).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The CRS of EPSG `code`.
    pub fn from_epsg(code: u32) -> Result<Crs, CrsError> {
        if is_wgs84_code(code) {
            return Ok(Crs::wgs84());
        }
        let source = proj_core::registry::lookup_epsg(code)
            .ok_or_else(|| CrsError(format!("EPSG:{code}: not in the EPSG registry")))?;
        let forward = wgs84_def()
            .and_then(|target| guarded(|| Transform::from_crs_defs(&source, &target)))
            .and_then(|t| choose::Operations::new(&source, t, false))
            .map_err(|e| CrsError(format!("EPSG:{code}: {e}")))?;
        Ok(Crs {
            inner: Inner::Transform {
                forward: Arc::new(forward),
                swap: false,
            },
            name: Arc::from(format!("EPSG:{code}")),
        })
    }

    /// The CRS of a definition: `EPSG:n` or a bare code, an OGC URN or `CRS84`, WKT1 (also
    /// ESRI's, as in a `.prj`), WKT2, PROJJSON, or a PROJ string.
    pub fn from_definition(text: &str) -> Result<Crs, CrsError> {
        let text = text.trim_start_matches('\u{feff}').trim();
        if text.is_empty() {
            return Err(CrsError("empty coordinate system definition".into()));
        }
        if text.len() > MAX_DEFINITION {
            return Err(CrsError(format!(
                "coordinate system definition of {} bytes (at most {MAX_DEFINITION})",
                text.len()
            )));
        }
        let def = Definition::read(text)?;
        if def.is_crs84 {
            return Ok(Crs::wgs84());
        }
        // GDAL's WKT1 carries the exact definition in EXTENSION["PROJ4", …] where WKT1 cannot
        // say it (Web Mercator's sphere on a WGS 84 datum): GDAL reads that, and so must we —
        // the WKT alone reads as ellipsoidal Mercator, kilometres off.
        if def.epsg.is_none()
            && let Some(proj4) = resolve::proj4_extension(text)
        {
            return Crs::from_definition(&proj4)
                .map_err(|e| CrsError(format!("{} (its PROJ4 extension: {e})", def.label())));
        }
        // The registry's definition for a code, unless the text adds its own datum shift
        // (TOWGS84, a BoundCRS, +towgs84), which only parsing the text keeps.
        let mut by_code = None;
        if let Some(code) = def.epsg
            && !declares_datum_shift(text)
        {
            match Crs::from_epsg(code) {
                Ok(crs) => return Ok(crs),
                Err(e) => by_code = Some(e),
            }
        }
        let label = def.label();
        let parsed = guarded(|| proj_wkt::parse_crs(text)).map_err(|e| match &by_code {
            Some(first) => CrsError(format!("{label}: {first}; parsing the definition: {e}")),
            None => CrsError(format!("{label}: {e}")),
        })?;
        let swap = parsed.axis_order() == Some(AxisOrder::NorthEast);
        let forward = guarded(|| proj_wkt::transform_from_crs_strings(text, "EPSG:4326"))
            .map_err(|e| CrsError(format!("{label}: {e}")))?;
        // A definition of WGS 84 itself under another name (an ESRI `GCS_WGS_1984` .prj).
        if parsed.epsg() == 4326 || (parsed.is_geographic() && is_identity(&forward, swap)) {
            return Ok(Crs::wgs84());
        }
        let own_shift = declares_datum_shift(text);
        let forward = choose::Operations::new(&parsed, forward, own_shift)
            .map_err(|e| CrsError(format!("{label}: {e}")))?;
        Ok(Crs {
            inner: Inner::Transform {
                forward: Arc::new(forward),
                swap,
            },
            name: Arc::from(label),
        })
    }

    /// The CRS a user named on the command line (`--s-srs`): a definition, or the path of a
    /// file holding one (a `.prj`, `.wkt` or `.json`, or any path with a `/`).
    pub fn from_flag(value: &str) -> Result<Crs, CrsError> {
        let path = std::path::Path::new(value);
        let looks_like_file = value.contains('/')
            || [".prj", ".wkt", ".json", ".projjson"]
                .iter()
                .any(|ext| value.to_ascii_lowercase().ends_with(ext));
        if looks_like_file && !value.trim_start().starts_with(['{', '[']) && path.is_file() {
            let meta = std::fs::metadata(path).map_err(|e| CrsError(format!("{value}: {e}")))?;
            if meta.len() > MAX_DEFINITION as u64 {
                return Err(CrsError(format!(
                    "{value}: {} bytes, more than a coordinate system definition holds",
                    meta.len()
                )));
            }
            let text =
                std::fs::read_to_string(path).map_err(|e| CrsError(format!("{value}: {e}")))?;
            return Crs::from_definition(&text).map_err(|e| CrsError(format!("{value}: {e}")));
        }
        Crs::from_definition(value)
    }

    /// One position in this CRS (x = easting or longitude, in the CRS's units) as WGS 84
    /// longitude/latitude; an error for a position the transformation cannot take or that
    /// lands outside longitude/latitude.
    #[inline]
    pub fn to_wgs84(&self, x: f64, y: f64) -> Result<(f64, f64), CrsError> {
        match &self.inner {
            Inner::Wgs84 => Ok((x, y)),
            Inner::Transform { forward, swap } => {
                if !x.is_finite() || !y.is_finite() {
                    return Err(CrsError(format!("coordinate ({x}, {y}) is not a number")));
                }
                let input = if *swap { (y, x) } else { (x, y) };
                let (lon, lat) = forward.convert(input).map_err(|e| {
                    CrsError(format!(
                        "({x}, {y}) is outside what {} can transform to WGS 84: {e}",
                        self.name
                    ))
                })?;
                if !lon.is_finite()
                    || !lat.is_finite()
                    || lat.abs() > 90.0
                    || lon.abs() > 180.0 + 1e-9
                {
                    return Err(CrsError(format!(
                        "({x}, {y}) in {} is outside the area the coordinate system covers",
                        self.name
                    )));
                }
                Ok((lon.clamp(-180.0, 180.0), lat))
            }
        }
    }

    /// This CRS for data that stores easting/longitude first whatever the definition's own
    /// axis order says (GeoParquet, whose specification overrides the CRS's axis order).
    pub fn easting_first(mut self) -> Crs {
        if let Inner::Transform { swap, .. } = &mut self.inner {
            *swap = false;
        }
        self
    }

    /// The position in this CRS of a WGS 84 longitude/latitude (x = easting or longitude);
    /// an error for one the transformation cannot take.
    #[inline]
    pub fn from_wgs84(&self, lon: f64, lat: f64) -> Result<(f64, f64), CrsError> {
        match &self.inner {
            Inner::Wgs84 => Ok((lon, lat)),
            Inner::Transform { forward, swap } => {
                if !lon.is_finite() || !lat.is_finite() {
                    return Err(CrsError(format!(
                        "coordinate ({lon}, {lat}) is not a number"
                    )));
                }
                let (a, b) = forward.convert_inverse(lon, lat).map_err(|e| {
                    CrsError(format!(
                        "({lon}, {lat}) is outside what {} can take from WGS 84: {e}",
                        self.name
                    ))
                })?;
                if !a.is_finite() || !b.is_finite() {
                    return Err(CrsError(format!(
                        "({lon}, {lat}) is outside the area {} covers",
                        self.name
                    )));
                }
                Ok(if *swap { (b, a) } else { (a, b) })
            }
        }
    }
}

/// Deepest geometry collection nesting [`reproject`] walks (readers stop far earlier).
const MAX_COLLECTION_DEPTH: usize = 64;

/// Moves every position of `geometry` from `crs` to WGS 84 in place; an error (naming the
/// position) for one the transformation cannot take.
pub fn reproject(geometry: &mut geo_types::Geometry<f64>, crs: &Crs) -> Result<(), CrsError> {
    if crs.is_wgs84() {
        return Ok(());
    }
    moved(geometry, crs, Direction::ToWgs84, 0)
}

/// Moves every position of `geometry` from WGS 84 into `crs` in place (a load into a table of
/// that CRS, `--t-srs`); an error (naming the position) for one the CRS cannot take.
pub fn project(geometry: &mut geo_types::Geometry<f64>, crs: &Crs) -> Result<(), CrsError> {
    if crs.is_wgs84() {
        return Ok(());
    }
    moved(geometry, crs, Direction::FromWgs84, 0)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Direction {
    ToWgs84,
    FromWgs84,
}

impl Direction {
    #[inline]
    fn apply(self, crs: &Crs, c: &mut geo_types::Coord<f64>) -> Result<(), CrsError> {
        let (x, y) = match self {
            Direction::ToWgs84 => crs.to_wgs84(c.x, c.y)?,
            Direction::FromWgs84 => crs.from_wgs84(c.x, c.y)?,
        };
        c.x = x;
        c.y = y;
        Ok(())
    }
}

fn moved(
    geometry: &mut geo_types::Geometry<f64>,
    crs: &Crs,
    dir: Direction,
    depth: usize,
) -> Result<(), CrsError> {
    use geo_types::Geometry as G;
    let one = |c: &mut geo_types::Coord<f64>| dir.apply(crs, c);
    let line = |coords: &mut [geo_types::Coord<f64>]| match dir {
        Direction::ToWgs84 => moved_line(coords, crs),
        Direction::FromWgs84 => coords.iter_mut().try_for_each(|c| dir.apply(crs, c)),
    };
    let polygon = |p: &mut geo_types::Polygon<f64>| -> Result<(), CrsError> {
        let mut result = Ok(());
        p.exterior_mut(|ring| result = line(&mut ring.0));
        result?;
        let mut result = Ok(());
        p.interiors_mut(|rings| result = rings.iter_mut().try_for_each(|r| line(&mut r.0)));
        result
    };
    match geometry {
        G::Point(p) => one(&mut p.0),
        G::Line(l) => {
            let mut coords = [l.start, l.end];
            line(&mut coords)?;
            l.start = coords[0];
            l.end = coords[1];
            Ok(())
        }
        G::LineString(ls) => line(&mut ls.0),
        G::Polygon(p) => polygon(p),
        G::MultiPoint(mp) => mp.0.iter_mut().try_for_each(|p| one(&mut p.0)),
        G::MultiLineString(ml) => ml.0.iter_mut().try_for_each(|l| line(&mut l.0)),
        G::MultiPolygon(mp) => mp.0.iter_mut().try_for_each(polygon),
        G::GeometryCollection(gc) => {
            if depth >= MAX_COLLECTION_DEPTH {
                return Err(CrsError(format!(
                    "geometry collections nested deeper than {MAX_COLLECTION_DEPTH}"
                )));
            }
            gc.0.iter_mut()
                .try_for_each(|g| moved(g, crs, dir, depth + 1))
        }
        G::Rect(r) => {
            let (mut min, mut max) = (r.min(), r.max());
            one(&mut min)?;
            one(&mut max)?;
            *r = geo_types::Rect::new(min, max);
            Ok(())
        }
        G::Triangle(t) => {
            let mut coords = [t.v1(), t.v2(), t.v3(), t.v1()];
            line(&mut coords)?;
            *t = geo_types::Triangle::new(coords[0], coords[1], coords[2]);
            Ok(())
        }
    }
}

/// Moves the positions of a line or ring to WGS 84. A segment whose ends land more than 180°
/// of longitude apart either goes the long way round (a world-wide line in Web Mercator: its
/// middle lands between its ends) or crosses the antimeridian (its middle lands beyond them,
/// near ±180°): that would be drawn around the world, so it is an error (not split yet).
fn moved_line(coords: &mut [geo_types::Coord<f64>], crs: &Crs) -> Result<(), CrsError> {
    let source: Vec<geo_types::Coord<f64>> = coords.to_vec();
    for c in coords.iter_mut() {
        let (x, y) = crs.to_wgs84(c.x, c.y)?;
        c.x = x;
        c.y = y;
    }
    for (i, pair) in coords.windows(2).enumerate() {
        let (a, b) = (pair[0].x, pair[1].x);
        if (b - a).abs() <= 180.0 {
            continue;
        }
        let (s, t) = (source[i], source[i + 1]);
        let (mid, _) = crs.to_wgs84((s.x + t.x) / 2.0, (s.y + t.y) / 2.0)?;
        if mid < a.min(b) || mid > a.max(b) {
            return Err(CrsError(format!(
                "positions {i} and {} are on either side of the antimeridian (180°) in WGS 84; shapes across it are not split yet",
                i + 1
            )));
        }
    }
    Ok(())
}

pub(super) fn wgs84_def() -> Result<proj_core::CrsDef, String> {
    proj_core::registry::lookup_epsg(4326)
        .ok_or_else(|| "EPSG:4326 is missing from the registry".to_owned())
}

/// Whether a definition carries its own transformation to WGS 84.
fn declares_datum_shift(text: &str) -> bool {
    let upper = text.to_ascii_uppercase();
    upper.contains("TOWGS84")
        || upper.contains("BOUNDCRS")
        || upper.contains("\"ABRIDGEDTRANSFORMATION\"")
}

/// Codes that are WGS 84 longitude/latitude as files store them.
fn is_wgs84_code(code: u32) -> bool {
    code == 4326
}

/// Whether a transformation leaves positions where they are (a geographic CRS on the WGS 84
/// datum under another name).
fn is_identity(t: &Transform, swap: bool) -> bool {
    [(10.0, 20.0), (-120.5, -45.25), (170.0, 60.0)]
        .iter()
        .all(|&(lon, lat)| {
            let input = if swap { (lat, lon) } else { (lon, lat) };
            t.convert(input)
                .is_ok_and(|(x, y)| (x - lon).abs() < 1e-12 && (y - lat).abs() < 1e-12)
        })
}

/// Runs a call into the projection library, turning a panic (a bug there, on some hostile
/// definition) into an error instead of taking the process down.
pub(super) fn guarded<T, E: std::fmt::Display>(
    f: impl FnOnce() -> Result<T, E>,
) -> Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the projection library failed on this definition".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ESRI_NZTM: &str = r#"PROJCS["NZGD_2000_New_Zealand_Transverse_Mercator",GEOGCS["GCS_NZGD_2000",DATUM["D_NZGD_2000",SPHEROID["GRS_1980",6378137.0,298.257222101]],PRIMEM["Greenwich",0.0],UNIT["Degree",0.0174532925199433]],PROJECTION["Transverse_Mercator"],PARAMETER["False_Easting",1600000.0],PARAMETER["False_Northing",10000000.0],PARAMETER["Central_Meridian",173.0],PARAMETER["Scale_Factor",0.9996],PARAMETER["Latitude_Of_Origin",0.0],UNIT["Meter",1.0]]"#;
    const ESRI_WGS84: &str = r#"GEOGCS["GCS_WGS_1984",DATUM["D_WGS_1984",SPHEROID["WGS_1984",6378137.0,298.257223563]],PRIMEM["Greenwich",0.0],UNIT["Degree",0.0174532925199433]]"#;

    /// A position in NZTM2000 and where GDAL puts it (fixtures/crs/2193.csv.gz, first row).
    const NZTM: (f64, f64) = (1_099_153.926_085_14, 4_736_810.692_701_4);
    const NZTM_LONLAT: (f64, f64) = (166.37, -47.33);

    #[test]
    fn an_esri_prj_of_nztm_reprojects() {
        let crs = Crs::from_definition(ESRI_NZTM).unwrap();
        assert!(!crs.is_wgs84());
        let (lon, lat) = crs.to_wgs84(NZTM.0, NZTM.1).unwrap();
        assert!((lon - NZTM_LONLAT.0).abs() < 1e-9, "{lon}");
        assert!((lat - NZTM_LONLAT.1).abs() < 1e-9, "{lat}");
        let code = Crs::from_definition("EPSG:2193").unwrap();
        let (lon2, lat2) = code.to_wgs84(NZTM.0, NZTM.1).unwrap();
        assert!((lon - lon2).abs() < 1e-9 && (lat - lat2).abs() < 1e-9);
    }

    #[test]
    fn wgs84_under_any_name_passes_through() {
        for def in [ESRI_WGS84, "EPSG:4326", "4326", "OGC:CRS84", "CRS84"] {
            let crs = Crs::from_definition(def).unwrap_or_else(|e| panic!("{def}: {e}"));
            assert!(crs.is_wgs84(), "{def}");
        }
    }

    #[test]
    fn a_urn_with_latitude_first_is_still_read_easting_first() {
        let crs = Crs::from_definition("urn:ogc:def:crs:EPSG::2193").unwrap();
        let (lon, _) = crs.to_wgs84(NZTM.0, NZTM.1).unwrap();
        assert!((lon - NZTM_LONLAT.0).abs() < 1e-9, "{lon}");
    }

    #[test]
    fn unknown_and_hostile_definitions_are_errors_not_degrees() {
        for def in [
            "EPSG:999999",
            "PROJCS[\"made up\",GEOGCS[\"nothing\"]]",
            "not a coordinate system",
            &"[".repeat(100_000),
            &format!("PROJCS[\"x\",{}]", "GEOGCS[".repeat(5000)),
        ] {
            assert!(
                Crs::from_definition(def).is_err(),
                "{}",
                &def[..def.len().min(60)]
            );
        }
    }

    #[test]
    fn a_line_across_the_antimeridian_is_an_error_a_world_wide_one_is_not() {
        let line = |coords: Vec<(f64, f64)>| {
            geo_types::Geometry::LineString(geo_types::LineString::from(coords))
        };
        // UTM 60S straddles 180°: 300 km east of its central meridian (177°E) is past it.
        let utm = Crs::from_epsg(32760).unwrap();
        let mut across = line(vec![(600_000.0, 5_000_000.0), (800_000.0, 5_000_000.0)]);
        let e = reproject(&mut across, &utm).unwrap_err();
        assert!(e.0.contains("antimeridian"), "{e}");
        let mut near = line(vec![(500_000.0, 5_000_000.0), (600_000.0, 5_000_000.0)]);
        reproject(&mut near, &utm).unwrap();
        // A line across the whole Web Mercator world goes through 0°, not across 180°.
        let mercator = Crs::from_epsg(3857).unwrap();
        let mut wide = line(vec![(-15e6, 0.0), (15e6, 0.0)]);
        reproject(&mut wide, &mercator).unwrap();
    }

    #[test]
    fn positions_the_projection_cannot_take_are_errors() {
        let crs = Crs::from_definition("EPSG:2193").unwrap();
        assert!(crs.to_wgs84(f64::NAN, 1.0).is_err());
        assert!(crs.to_wgs84(1e300, 1e300).is_err());
    }
}

#[cfg(test)]
mod against_gdal {
    use super::*;

    /// One position per CRS, where GDAL 3.6.2 / PROJ 9.1.1 (no grids) puts it
    /// (`echo X Y | gdaltransform -s_srs EPSG:N -t_srs EPSG:4326 -output_xy`), and how close
    /// we must be: 1 cm, or for the datums whose transformation EPSG has revised since PROJ
    /// 9.1's dataset (v10.076; proj-core carries v12) 1 m, well inside their stated 1–3 m.
    const POINTS: [(u32, f64, f64, f64, f64, f64); 11] = [
        (
            21781,
            600_000.0,
            200_000.0,
            7.438_632_420_871_81,
            46.951_082_771_871_1,
            1.0,
        ),
        (
            31467,
            3_500_000.0,
            5_500_000.0,
            8.998_958_968_391_23,
            49.636_708_261_708_7,
            1.0,
        ),
        (
            23032,
            500_000.0,
            5_000_000.0,
            8.998_948_802_572_14,
            45.151_699_124_934_9,
            0.01,
        ),
        (
            31370,
            150_000.0,
            170_000.0,
            4.368_752_140_904_19,
            50.840_411_283_117_9,
            1.0,
        ),
        (
            27700,
            400_000.0,
            300_000.0,
            -2.001_433_115_510_89,
            52.597_792_430_833_8,
            0.01,
        ),
        (
            2193,
            1_750_000.0,
            5_430_000.0,
            174.790_780_030_4,
            -41.267_507_306_569_3,
            0.01,
        ),
        (
            4267,
            -100.0,
            40.0,
            -100.000_415_588_626,
            39.999_996_882_432_8,
            0.01,
        ),
        (
            28992,
            155_000.0,
            463_000.0,
            5.387_203_508_413_77,
            52.155_172_301_192_2,
            0.01,
        ),
        (3035, 4_321_000.0, 3_210_000.0, 10.0, 52.0, 0.01),
        // Offshore, outside every NAD27 area: the nearest area's transformation.
        (
            4267,
            -125.5,
            40.0,
            -125.501_169_780_934,
            39.999_892_263_011_2,
            1.0,
        ),
        (
            4267,
            -125.5,
            47.0,
            -125.501_313_400_145,
            46.999_819_830_744,
            1.0,
        ),
    ];

    /// Datums with several transformations (NAD27 has dozens, one of them for Panama): each
    /// position takes the one for where it is, as PROJ does, and never a deprecated one
    /// (CH1903's EPSG:1508 put Bern 18 km off).
    #[test]
    fn datums_with_several_transformations_land_where_gdal_puts_them() {
        let mut report = Vec::new();
        let mut worst_over = Vec::new();
        for (code, x, y, lon, lat, tolerance) in POINTS {
            let crs = Crs::from_epsg(code).unwrap_or_else(|e| panic!("{e}"));
            let (l, b) = crs.to_wgs84(x, y).unwrap();
            let metres =
                ((l - lon) * 111_320.0 * lat.to_radians().cos()).hypot((b - lat) * 111_320.0);
            report.push(format!("EPSG:{code}: {metres:.3} m"));
            if metres >= tolerance {
                worst_over.push(code);
            }
        }
        assert!(
            worst_over.is_empty(),
            "{worst_over:?}\n{}",
            report.join("\n")
        );
    }
}
