//! The etl-pmtiles config: tippecanoe's flags (same letters, same meaning), `ETL_*` env vars,
//! JSON Schema (`schemas/etl-pmtiles.json`).

use etl_core::JobError;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Turn GeoJSON, GeoJSON sequences, CSV or a PostGIS query into a PMTiles archive of vector tiles.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, clap::Args)]
pub struct PmtilesConfig {
    /// Input files, directories, globs or s3:// URLs, one layer each (named after the file) unless -l is given.
    #[arg(value_name = "INPUT", env = "ETL_INPUT", value_delimiter = ',')]
    #[serde(default)]
    pub inputs: Vec<String>,

    /// Output archive: a path or s3:// URL; written whole or not at all.
    #[arg(short = 'o', long = "output", env = "ETL_OUTPUT")]
    pub output: String,

    /// Overwrite an existing output (without it an existing output is an error, as in tippecanoe).
    #[arg(short = 'f', long = "force", env = "ETL_FORCE")]
    #[serde(default)]
    pub force: bool,

    /// Highest zoom (default 14); `g` guesses it from the spacing of the features (-zg).
    #[arg(
        short = 'z',
        long = "maximum-zoom",
        env = "ETL_MAXIMUM_ZOOM",
        value_name = "N|g"
    )]
    pub maximum_zoom: Option<String>,

    /// Lowest zoom.
    #[arg(
        short = 'Z',
        long = "minimum-zoom",
        env = "ETL_MINIMUM_ZOOM",
        default_value_t = 0
    )]
    pub minimum_zoom: u8,

    /// Base zoom: below it points are thinned by the drop rate (default: the max zoom).
    #[arg(short = 'B', long = "base-zoom", env = "ETL_BASE_ZOOM")]
    pub base_zoom: Option<u8>,

    /// Drop rate: each zoom below the base keeps 1/RATE of the points of the zoom above (1 keeps all).
    #[arg(
        short = 'r',
        long = "drop-rate",
        env = "ETL_DROP_RATE",
        default_value_t = 2.5
    )]
    pub drop_rate: f64,

    /// One layer named LAYER for all inputs.
    #[arg(short = 'l', long = "layer", env = "ETL_LAYER")]
    pub layer: Option<String>,

    /// A named layer from an input: NAME:INPUT (repeatable).
    #[arg(
        short = 'L',
        long = "named-layer",
        env = "ETL_NAMED_LAYER",
        value_name = "NAME:INPUT"
    )]
    #[serde(default)]
    pub named_layers: Vec<String>,

    /// Keep only this attribute (repeatable).
    #[arg(
        short = 'y',
        long = "include",
        env = "ETL_INCLUDE",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub include: Vec<String>,

    /// Leave out this attribute (repeatable).
    #[arg(
        short = 'x',
        long = "exclude",
        env = "ETL_EXCLUDE",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub exclude: Vec<String>,

    /// Leave out all attributes.
    #[arg(short = 'X', long = "exclude-all", env = "ETL_EXCLUDE_ALL")]
    #[serde(default)]
    pub exclude_all: bool,

    /// Feature filter (tippecanoe's -j): JSON of layer name (or "*") to a GL legacy filter,
    /// e.g. '{"*": ["all", ["==", "kind", "road"], [">=", "$zoom", 8]]}'.
    #[arg(
        short = 'j',
        long = "feature-filter",
        env = "ETL_FEATURE_FILTER",
        conflicts_with = "feature_filter_file"
    )]
    #[serde(default)]
    pub feature_filter: Option<String>,

    /// The feature filter from a file (tippecanoe's -J).
    #[arg(
        short = 'J',
        long = "feature-filter-file",
        env = "ETL_FEATURE_FILTER_FILE"
    )]
    #[serde(default)]
    pub feature_filter_file: Option<String>,

    /// Maximum compressed tile size in bytes.
    #[arg(
        short = 'M',
        long = "maximum-tile-bytes",
        env = "ETL_MAXIMUM_TILE_BYTES",
        default_value_t = 500_000
    )]
    pub maximum_tile_bytes: usize,

    /// Maximum features per tile.
    #[arg(
        short = 'O',
        long = "maximum-tile-features",
        env = "ETL_MAXIMUM_TILE_FEATURES",
        default_value_t = 200_000
    )]
    pub maximum_tile_features: usize,

    /// No byte limit per tile (overrides -M), as tippecanoe's flag; CloudTAK tiles with it.
    #[arg(long, env = "ETL_NO_TILE_SIZE_LIMIT")]
    #[serde(default)]
    pub no_tile_size_limit: bool,

    /// No feature limit per tile (overrides -O), as tippecanoe's flag; CloudTAK tiles with it.
    #[arg(long, env = "ETL_NO_FEATURE_LIMIT")]
    #[serde(default)]
    pub no_feature_limit: bool,

    /// When a tile is over the limits, drop the features closest to their neighbours.
    #[arg(long, env = "ETL_DROP_DENSEST_AS_NEEDED")]
    #[serde(default)]
    pub drop_densest_as_needed: bool,

    /// When a tile is over the limits, merge the features closest to their neighbours into them.
    #[arg(long, env = "ETL_COALESCE_DENSEST_AS_NEEDED")]
    #[serde(default)]
    pub coalesce_densest_as_needed: bool,

    /// When a tile is over the limits, drop its smallest lines and polygons (points stay); the
    /// size found applies to the whole zoom.
    #[arg(long, env = "ETL_DROP_SMALLEST_AS_NEEDED")]
    #[serde(default)]
    pub drop_smallest_as_needed: bool,

    /// When a tile is over the limits, drop a share of its features (by a hash of each); the
    /// share found applies to the whole zoom.
    #[arg(long, env = "ETL_DROP_FRACTION_AS_NEEDED")]
    #[serde(default)]
    pub drop_fraction_as_needed: bool,

    /// Add zooms past the max zoom while its tiles still had to drop features.
    #[arg(long, env = "ETL_EXTEND_ZOOMS_IF_STILL_DROPPING")]
    #[serde(default)]
    pub extend_zooms_if_still_dropping: bool,

    /// Draw polygons smaller than 4 square tile units as themselves at every zoom, instead of
    /// as 2x2 squares that keep their total area below the max zoom.
    #[arg(long, env = "ETL_NO_TINY_POLYGON_REDUCTION")]
    #[serde(default)]
    pub no_tiny_polygon_reduction: bool,

    /// Write the features of each layer of a tile in ascending order of this attribute
    /// (missing, then booleans, numbers, strings); repeat for more keys, the first primary.
    #[arg(long = "order-by", env = "ETL_ORDER_BY", value_delimiter = ',')]
    #[serde(default)]
    pub order_by: Vec<String>,

    /// As --order-by, descending; these keys come after the --order-by keys.
    #[arg(
        long = "order-descending-by",
        env = "ETL_ORDER_DESCENDING_BY",
        value_delimiter = ','
    )]
    #[serde(default)]
    pub order_descending_by: Vec<String>,

    /// Write the smallest features (polygon area, line length) of each layer first, after any
    /// attribute keys.
    #[arg(
        long,
        env = "ETL_ORDER_SMALLEST_FIRST",
        conflicts_with = "order_largest_first"
    )]
    #[serde(default)]
    pub order_smallest_first: bool,

    /// Write the largest features of each layer first, after any attribute keys.
    #[arg(long, env = "ETL_ORDER_LARGEST_FIRST")]
    #[serde(default)]
    pub order_largest_first: bool,

    /// The tiles' encoding: mvt (Mapbox Vector Tiles) or mlt (MapLibre Tiles, PMTiles tile type
    /// 6, drawn by MapLibre GL JS 5.12 and later; each tile is made as MVT, within -M and -O,
    /// then transcoded).
    #[arg(
        long = "tile-format",
        env = "ETL_TILE_FORMAT",
        value_enum,
        default_value_t = TileFormatArg::Mvt
    )]
    #[serde(default)]
    pub tile_format: TileFormatArg,

    /// Cluster points closer than about this many pixels (of 256): each grid cell of that size
    /// shows one point with clustered, point_count, sqrt_point_count and
    /// point_count_abbreviated; 1 to 255.
    #[arg(
        short = 'K',
        long = "cluster-distance",
        env = "ETL_CLUSTER_DISTANCE",
        value_parser = clap::value_parser!(u8).range(1..=255)
    )]
    #[serde(default)]
    #[schemars(range(min = 1, max = 255))]
    pub cluster_distance: Option<u8>,

    /// The deepest zoom --cluster-distance clusters (default: every zoom); `g`: the zoom below
    /// the max zoom, so every point shows at the max zoom.
    #[arg(
        short = 'k',
        long = "cluster-maxzoom",
        env = "ETL_CLUSTER_MAXZOOM",
        value_name = "N|g"
    )]
    #[serde(default)]
    pub cluster_maxzoom: Option<String>,

    /// Leave a cluster on its first point instead of the mean of its points.
    #[arg(long, env = "ETL_KEEP_POINT_CLUSTER_POSITION")]
    #[serde(default)]
    pub keep_point_cluster_position: bool,

    /// Fold an attribute of a cluster's points into the cluster: NAME:OP (sum, product, mean,
    /// max, min, concat, comma, count) or a JSON object {"NAME":"OP"}; repeat for more.
    #[arg(
        short = 'E',
        long = "accumulate-attribute",
        env = "ETL_ACCUMULATE_ATTRIBUTE"
    )]
    #[serde(default)]
    pub accumulate_attribute: Vec<String>,

    /// Tile buffer in screen pixels (of 256).
    #[arg(short = 'b', long = "buffer", env = "ETL_BUFFER", default_value_t = 5)]
    pub buffer: u32,

    /// Simplification tolerance multiplier (1 = one tile unit; 0 keeps every vertex).
    #[arg(
        short = 'S',
        long = "simplification",
        env = "ETL_SIMPLIFICATION",
        default_value_t = 1.0
    )]
    pub simplification: f64,

    /// Tileset name (metadata); default: the output file name.
    #[arg(short = 'n', long = "name", env = "ETL_NAME")]
    pub name: Option<String>,

    /// Tileset description (metadata).
    #[arg(short = 'N', long = "description", env = "ETL_DESCRIPTION")]
    pub description: Option<String>,

    /// Attribution (metadata).
    #[arg(short = 'A', long = "attribution", env = "ETL_ATTRIBUTION")]
    pub attribution: Option<String>,

    /// Memory the tile sort may use before spilling to disk: bytes, or with K, M or G.
    #[arg(long, env = "ETL_MEMORY", default_value = "64M")]
    pub memory: String,

    /// Directory for temporary files (spill runs, staged features, the archive before upload).
    #[arg(short = 't', long = "temporary-directory", env = "ETL_TMPDIR")]
    pub temporary_directory: Option<String>,

    /// Count and skip invalid features instead of failing on the first one.
    #[arg(long, env = "ETL_SKIP_INVALID")]
    #[serde(default)]
    pub skip_invalid: bool,

    /// Accepted for tippecanoe compatibility: etl-pmtiles draws no progress bar (its logs go to
    /// stderr, filtered by RUST_LOG).
    #[arg(short = 'q', long = "quiet", hide = true)]
    #[serde(default, skip_serializing)]
    pub quiet: bool,

    /// Accepted for tippecanoe compatibility: inputs are always read in parallel.
    #[arg(short = 'P', long = "read-parallel", hide = true)]
    #[serde(default, skip_serializing)]
    pub read_parallel: bool,

    /// Tile the rows of this PostGIS query (its geometry column, other columns as attributes).
    #[arg(long, env = "ETL_SQL")]
    pub sql: Option<String>,

    /// Database for --sql (default: DATABASE_URL or the ECS secret in ETL_DATABASE_SECRET).
    #[arg(long, env = "ETL_DATABASE")]
    pub database: Option<String>,

    #[command(flatten)]
    #[serde(flatten)]
    pub input_args: etl_sources::InputArgs,

    /// GeoPackage layers (feature tables) to read, repeatable or comma separated; default:
    /// every feature table (`-l`/`--layer` is tippecanoe's output layer name).
    #[arg(long = "input-layer", env = "ETL_INPUT_LAYER", value_delimiter = ',')]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub input_layer: Vec<String>,

    /// Make shard I (0-based) of N of the tile set: every shard reads all inputs and writes the tiles of its share of the map (balanced by staged features) to an output with {shard} in its name; `etl-pmtiles merge` joins the parts. Default in an AWS Batch array job: the array index and size.
    #[arg(long, env = "ETL_SHARD", value_name = "I/N")]
    pub shard: Option<String>,
}

/// Parses `--shard I/N` into (index, count).
pub fn parse_shard(v: &str) -> Result<(u32, u32), JobError> {
    let bad = || {
        JobError::usage(format!(
            "--shard {v:?}: expected I/N with 0 <= I < N, e.g. 0/4"
        ))
    };
    let (i, n) = v.trim().split_once('/').ok_or_else(bad)?;
    let i: u32 = i.trim().parse().map_err(|_| bad())?;
    let n: u32 = n.trim().parse().map_err(|_| bad())?;
    if n == 0 || i >= n {
        return Err(bad());
    }
    Ok((i, n))
}

/// `-z`: a zoom, or `g` for a guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxZoom {
    Fixed(u8),
    Guess,
}

pub fn parse_max_zoom(v: Option<&str>) -> Result<MaxZoom, JobError> {
    match v.map(str::trim) {
        None => Ok(MaxZoom::Fixed(14)),
        Some("g") => Ok(MaxZoom::Guess),
        Some(s) => s
            .parse::<u8>()
            .ok()
            .filter(|z| *z <= etl_tiles::tiler::MAX_TILER_ZOOM)
            .map(MaxZoom::Fixed)
            .ok_or_else(|| {
                JobError::usage(format!(
                    "-z {s:?}: expected a zoom from 0 to {} or g",
                    etl_tiles::tiler::MAX_TILER_ZOOM
                ))
            }),
    }
}

/// `--tile-format`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum TileFormatArg {
    /// Mapbox Vector Tiles.
    #[default]
    Mvt,
    /// MapLibre Tiles.
    Mlt,
}

/// Parses `--memory`: plain bytes or a K/M/G (binary) suffix.
pub fn parse_bytes(v: &str) -> Result<usize, JobError> {
    let s = v.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: usize = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                _ => 0,
            };
            (&s[..i], m)
        }
        _ => (s, 1),
    };
    num.trim()
        .parse::<usize>()
        .ok()
        .filter(|_| mult > 0)
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| JobError::usage(format!("--memory {v:?}: expected bytes, e.g. 512M or 2G")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zooms_and_sizes_parse() {
        assert_eq!(parse_max_zoom(None).unwrap(), MaxZoom::Fixed(14));
        assert_eq!(parse_max_zoom(Some("g")).unwrap(), MaxZoom::Guess);
        assert_eq!(parse_max_zoom(Some("7")).unwrap(), MaxZoom::Fixed(7));
        assert_eq!(parse_max_zoom(Some("25")).unwrap_err().kind.code(), 64);
        assert_eq!(parse_bytes("512M").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("1000").unwrap(), 1000);
        assert!(parse_bytes("12Q").is_err());
        assert!(parse_bytes("").is_err());
        assert_eq!(parse_shard("2/7").unwrap(), (2, 7));
        assert_eq!(parse_shard(" 0 / 1 ").unwrap(), (0, 1));
        for bad in ["7/7", "1/0", "1", "-1/3", "a/b", ""] {
            assert_eq!(parse_shard(bad).unwrap_err().kind.code(), 64, "{bad}");
        }
    }
}
