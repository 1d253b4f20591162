//! The input flags every job shares (flattened into each job's config), and what they become:
//! a [`Source`] — the forced format, the reader options and the layers to read.

use etl_core::JobError;
use etl_geo::{CsvOptions, Format, ReadOptions};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How the inputs are read: the same flags, env vars and config keys in every job.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema, clap::Args)]
pub struct InputArgs {
    /// Input format, for text inputs whose content and extension do not tell: geojson,
    /// geojsonseq, csv, kml, gpx, cot or flatgeobuf (zip archives, Shapefiles, GeoPackages and
    /// GeoParquet are known by their bytes).
    #[arg(long, env = "ETL_FORMAT")]
    #[serde(default)]
    pub format: Option<String>,

    /// Coordinate system of the input's coordinates, for inputs that do not say (GeoJSON, CSV)
    /// or to override what they say (.prj, FlatGeobuf, GeoPackage, GeoParquet): EPSG:N, WKT,
    /// PROJJSON, a PROJ string, or a file holding one. Positions are moved from it to WGS 84.
    #[arg(long = "s-srs", env = "ETL_S_SRS")]
    #[serde(default)]
    pub s_srs: Option<String>,

    #[command(flatten)]
    #[serde(flatten)]
    pub csv: CsvArgs,
}

/// CSV column choices; each unset one is detected from the header.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema, clap::Args)]
pub struct CsvArgs {
    /// CSV longitude column (default: detected from lon, lng, long, longitude, x, …).
    #[arg(long, env = "ETL_CSV_LON")]
    #[serde(default)]
    pub csv_lon: Option<String>,

    /// CSV latitude column (default: detected from lat, latitude, y, …).
    #[arg(long, env = "ETL_CSV_LAT")]
    #[serde(default)]
    pub csv_lat: Option<String>,

    /// CSV WKT geometry column (default: detected from wkt, geometry, geom, the_geom).
    #[arg(long, env = "ETL_CSV_WKT")]
    #[serde(default)]
    pub csv_wkt: Option<String>,
}

/// What the input flags resolve to, for [`crate::read::spawn`].
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// `--format`: the format of a text input, whatever its content and name.
    pub format: Option<Format>,
    pub read: ReadOptions,
    /// The layers of a GeoPackage to read; empty: every feature table.
    pub layers: Vec<String>,
}

impl InputArgs {
    /// Resolves the flags: an unknown format or an unusable `--s-srs` is a usage error (64).
    pub fn source(&self, layers: &[String]) -> Result<Source, JobError> {
        let format = self.format.as_deref().map(parse_format).transpose()?;
        let source_crs = self
            .s_srs
            .as_deref()
            .map(|value| {
                etl_geo::Crs::from_flag(value)
                    .map_err(|e| JobError::usage(format!("--s-srs {value}: {e}")))
            })
            .transpose()?;
        Ok(Source {
            format,
            read: ReadOptions {
                csv: self.csv.options(),
                source_crs,
                ..ReadOptions::default()
            },
            layers: layers
                .iter()
                .map(|l| l.trim().to_owned())
                .filter(|l| !l.is_empty())
                .collect(),
        })
    }
}

impl CsvArgs {
    pub fn options(&self) -> CsvOptions {
        CsvOptions {
            lon: self.csv_lon.clone(),
            lat: self.csv_lat.clone(),
            wkt: self.csv_wkt.clone(),
            delimiter: None,
        }
    }
}

/// The format `--format NAME` names.
pub fn parse_format(name: &str) -> Result<Format, JobError> {
    match name.trim().to_ascii_lowercase().as_str() {
        "geojson" | "json" => Ok(Format::GeoJson),
        "geojsonseq" | "geojsonl" | "ndjson" | "geojsonld" | "jsonl" => Ok(Format::GeoJsonSeq),
        "csv" | "tsv" => Ok(Format::Csv),
        "kml" => Ok(Format::Kml),
        "gpx" => Ok(Format::Gpx),
        "cot" => Ok(Format::Cot),
        "flatgeobuf" | "fgb" => Ok(Format::FlatGeobuf),
        other => Err(JobError::usage(format!(
            "--format {other:?}: expected geojson, geojsonseq, csv, kml, gpx, cot or flatgeobuf"
        ))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        input: InputArgs,
    }

    #[test]
    fn flags_become_a_source() {
        let cli = Cli::parse_from([
            "x",
            "--format",
            "GPX",
            "--s-srs",
            "EPSG:2193",
            "--csv-lon",
            "E",
        ]);
        let source = cli.input.source(&["roads".into(), " ".into()]).unwrap();
        assert_eq!(source.format, Some(Format::Gpx));
        assert!(source.read.source_crs.is_some());
        assert_eq!(source.read.csv.lon.as_deref(), Some("E"));
        assert_eq!(source.layers, ["roads"]);
        // The config keys stay flat (csv_lon, not csv.csv_lon): run keys and env files keep
        // their shape.
        let v = serde_json::to_value(&cli.input).unwrap();
        assert_eq!(v["csv_lon"], "E");
        assert_eq!(v["s_srs"], "EPSG:2193");
    }

    #[test]
    fn bad_flags_are_usage_errors() {
        let bad = |args: &[&str]| {
            let mut argv = vec!["x"];
            argv.extend(args);
            let e = Cli::parse_from(argv).input.source(&[]).unwrap_err();
            assert_eq!(e.kind, etl_core::ExitKind::Usage, "{args:?}");
            e.message
        };
        assert!(bad(&["--format", "shapefile"]).contains("--format"));
        assert!(bad(&["--s-srs", "EPSG:999999"]).contains("--s-srs"));
    }
}
