//! The etl-data config: CLI flags, `ETL_*` env vars, JSON Schema (`schemas/etl-data.json`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How rows reach a PostGIS table.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Add the rows to the table (created if missing).
    Append,
    /// Build a new table and swap it in atomically: readers see the old or the new table, never half.
    Replace,
    /// Insert or update by `--key`.
    Upsert,
}

/// How `--mode append` puts rows into a table that exists.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum AppendPath {
    /// `swap` when the table is small beside the input and a plain table, else `direct`.
    #[default]
    Auto,
    /// COPY straight into the table (its indexes are kept up row by row).
    Direct,
    /// Build a copy of the table with the new rows, index it, and swap it in (falls back to
    /// `direct` for a table with triggers, views, foreign keys or other things a copy would lose).
    Swap,
}

/// Load geospatial files (GeoJSON, GeoJSON sequences, CSV, Shapefiles, GeoPackages, KML, GPX,
/// FlatGeobuf, …) into PostGIS, a GeoJSON file, or S3.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, clap::Args)]
pub struct DataConfig {
    /// Input files, directories, globs, s3://bucket/key or s3://bucket/prefix/ (repeatable or comma separated).
    #[arg(long = "input", short = 'i', env = "ETL_INPUT", value_delimiter = ',', required = true, num_args = 1..)]
    pub input: Vec<String>,

    /// Output: postgres://… (with --table), or a file / s3:// URL whose extension picks the format (.geojsonl/.ndjson or .geojson).
    #[arg(long, short = 'o', env = "ETL_OUTPUT")]
    pub output: String,

    /// Target table (NAME or SCHEMA.NAME) for a postgres:// output.
    #[arg(long, env = "ETL_TABLE")]
    pub table: Option<String>,

    /// append, replace or upsert (PostGIS outputs).
    #[arg(long, env = "ETL_MODE", value_enum, default_value = "append")]
    pub mode: Mode,

    /// How append reaches an existing table: auto, direct or swap (see the README). Only speed
    /// differs; every path is exactly-once and readers never see half a run.
    #[arg(long, env = "ETL_APPEND_PATH", value_enum, default_value = "auto")]
    #[serde(default)]
    pub append_path: AppendPath,

    /// Property (or `id`) that identifies a row for --mode upsert.
    #[arg(long, env = "ETL_KEY")]
    pub key: Option<String>,

    /// Keep only these properties (comma separated).
    #[arg(long, env = "ETL_SELECT", value_delimiter = ',')]
    #[serde(default)]
    pub select: Vec<String>,

    /// Where rejected features are listed (NDJSON: input, line, reason): a path or s3:// URL.
    #[arg(long, env = "ETL_REJECTS")]
    pub rejects: Option<String>,

    /// Abort with exit 65 once more than this many features were rejected (default: no limit).
    #[arg(long, env = "ETL_MAX_REJECTS")]
    pub max_rejects: Option<u64>,

    /// Commit a checkpoint every N features (PostGIS outputs).
    #[arg(long, env = "ETL_CHECKPOINT_EVERY", default_value_t = 50_000)]
    pub checkpoint_every: u64,

    /// Longest wait for a lock on the live table (the swap of --mode replace, a column added to
    /// it, the merge of upsert), e.g. 5s; readers queue behind a waiting swap, so it gives up,
    /// lets them through and tries again.
    #[arg(long, env = "ETL_LOCK_TIMEOUT", default_value = "5s")]
    #[serde(default = "default_lock_timeout")]
    pub lock_timeout: String,

    /// Tries of a step that needs a lock on the live table before the run gives up with exit 75.
    #[arg(long, env = "ETL_LOCK_RETRIES", default_value_t = 5)]
    #[serde(default = "default_lock_retries")]
    pub lock_retries: u32,

    /// Columns one run may add to an existing table for new properties; past it the run fails
    /// with exit 65 and publishes nothing.
    #[arg(long, env = "ETL_MAX_NEW_COLUMNS", default_value_t = 64)]
    #[serde(default = "default_max_new_columns")]
    pub max_new_columns: usize,

    #[command(flatten)]
    #[serde(flatten)]
    pub input_args: etl_sources::InputArgs,

    /// GeoPackage layers (feature tables) to read, repeatable or comma separated; default:
    /// every feature table. A name the file does not have is refused, naming those it has.
    #[arg(long = "layer", env = "ETL_LAYER", value_delimiter = ',')]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layer: Vec<String>,

    /// Only the first N records of each input that --where keeps (ogr2ogr's -limit).
    #[arg(long, env = "ETL_LIMIT")]
    #[serde(default)]
    pub limit: Option<u64>,

    /// Only features whose properties match this filter (ogr2ogr's -where; OGR SQL's WHERE
    /// syntax: =, <>, <, <=, >, >=, AND, OR, NOT, IS [NOT] NULL, [NOT] LIKE/ILIKE 'pat%',
    /// [NOT] IN (…), [NOT] BETWEEN … AND …; "quoted" property names, 'quoted' text). A missing
    /// property is NULL. Features left out are counted as `filtered`, not rejected.
    #[arg(long = "where", env = "ETL_WHERE")]
    #[serde(default, rename = "where")]
    pub where_: Option<String>,

    /// Invalid polygons (self-intersections, rings crossing or sharing edges, holes outside
    /// their shell, overlapping parts) are rebuilt as valid ones covering the same area (ogr2ogr's
    /// -makevalid); valid ones are untouched. One that cannot be rebuilt is rejected. Counted as
    /// `repaired`.
    #[arg(long, env = "ETL_MAKE_VALID")]
    #[serde(default)]
    pub make_valid: bool,

    /// Points, lines and polygons become multi-geometries of one part (ogr2ogr's
    /// -nlt PROMOTE_TO_MULTI), so a table's geometries are of one kind.
    #[arg(long, env = "ETL_PROMOTE_TO_MULTI")]
    #[serde(default)]
    pub promote_to_multi: bool,

    /// Coordinate system of the PostGIS geometry column, EPSG:N (ogr2ogr's -t_srs): positions
    /// are moved from WGS 84 into it, and a feature it cannot hold is rejected. Default: an
    /// existing table's own SRID, else 4326.
    #[arg(long = "t-srs", env = "ETL_T_SRS")]
    #[serde(default)]
    pub t_srs: Option<String>,
}

fn default_lock_timeout() -> String {
    "5s".into()
}

fn default_lock_retries() -> u32 {
    5
}

fn default_max_new_columns() -> usize {
    64
}

/// Where the features go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputTarget {
    /// A PostGIS table; the URL may be empty (`postgres://`) to use DATABASE_URL / the ECS secret.
    Postgres { url: String },
    /// A file or S3 object.
    Object { url: String },
}

impl DataConfig {
    /// The SRID `--t-srs` names (`EPSG:N` or `N`), if given.
    pub fn t_srs_code(&self) -> Result<Option<i32>, String> {
        let Some(value) = self.t_srs.as_deref() else {
            return Ok(None);
        };
        let trimmed = value.trim();
        let digits = match trimmed.get(..5) {
            Some(prefix) if prefix.eq_ignore_ascii_case("EPSG:") => {
                trimmed.get(5..).unwrap_or("").trim()
            }
            _ => trimmed,
        };
        match digits.parse::<i32>() {
            Ok(code) if code > 0 => Ok(Some(code)),
            _ => Err(format!(
                "--t-srs {value:?}: expected EPSG:N, the SRID of the table's geometry column"
            )),
        }
    }

    pub fn target(&self) -> OutputTarget {
        let o = self.output.trim();
        if o.starts_with("postgres://") || o.starts_with("postgresql://") || o == "postgres" {
            OutputTarget::Postgres { url: o.to_string() }
        } else {
            OutputTarget::Object { url: o.to_string() }
        }
    }

    /// The config as it enters the run key: secrets removed from URLs. An error if it cannot
    /// be serialised (never silently an empty identity shared by every config).
    pub fn identity(&self) -> Result<serde_json::Value, String> {
        let mut v = serde_json::to_value(self).map_err(|e| format!("config identity: {e}"))?;
        let Some(obj) = v.as_object_mut() else {
            return Err("config identity: not a JSON object".to_owned());
        };
        obj.insert("output".into(), redact_url(&self.output).into());
        // --limit once counted records before --where; a run with both made before that
        // changed must not be taken for one made after.
        if self.limit.is_some() && self.where_.is_some() {
            obj.insert("limit_counts".into(), "kept".into());
        }
        // Tuning, not identity: a rerun with another batch size must still resume.
        for tuning in [
            "checkpoint_every",
            "lock_timeout",
            "lock_retries",
            "max_new_columns",
            "append_path",
            "max_rejects",
            "rejects",
        ] {
            obj.remove(tuning);
        }
        Ok(v)
    }
}

/// Removes the password from `scheme://user:password@host/...`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}@{host}{path}")
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://app:secret@db:5432/tak?sslmode=require"),
            "postgres://app@db:5432/tak?sslmode=require"
        );
        assert_eq!(redact_url("postgres://db/tak"), "postgres://db/tak");
        assert_eq!(redact_url("out.geojsonl"), "out.geojsonl");
    }

    #[test]
    fn t_srs_takes_epsg_codes_only() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            config: DataConfig,
        }
        let with = |v: &str| {
            let args = [
                "etl-data",
                "--input",
                "a.geojson",
                "--output",
                "postgres://",
            ];
            let mut config = <Cli as clap::Parser>::parse_from(args).config;
            config.t_srs = Some(v.into());
            config
        };
        assert_eq!(with("EPSG:2193").t_srs_code(), Ok(Some(2193)));
        assert_eq!(with("epsg:3857").t_srs_code(), Ok(Some(3857)));
        assert_eq!(with(" 4326 ").t_srs_code(), Ok(Some(4326)));
        assert_eq!(with("EPSG: 2193").t_srs_code(), Ok(Some(2193)));
        for bad in ["EPSG:", "EPSG:-1", "0", "+proj=longlat", "EPSG:99999999999"] {
            assert!(with(bad).t_srs_code().is_err(), "{bad}");
        }
    }
}
