//! The tippecanoe flags that map onto tiler options beyond a plain copy: `--cluster-*` and
//! `--accumulate-attribute`, the `--order-*` keys, `--tile-format`.

use etl_core::JobError;
use etl_tiles::tiler::{OrderKey, TileFormat};

use crate::config::{PmtilesConfig, TileFormatArg};

/// The clustering the `--cluster-*` and `--accumulate-attribute` flags ask for; `None`
/// without `--cluster-distance` (the companions alone are refused: they would do nothing).
pub fn cluster_options(
    config: &PmtilesConfig,
) -> Result<Option<etl_tiles::tiler::ClusterOptions>, JobError> {
    use etl_tiles::tiler::{ClusterMaxZoom, ClusterOptions, parse_accumulate};
    let Some(distance) = config.cluster_distance else {
        let stray = [
            (config.cluster_maxzoom.is_some(), "--cluster-maxzoom"),
            (
                config.keep_point_cluster_position,
                "--keep-point-cluster-position",
            ),
            (
                !config.accumulate_attribute.is_empty(),
                "--accumulate-attribute",
            ),
        ];
        if let Some((_, flag)) = stray.iter().find(|(on, _)| *on) {
            return Err(JobError::usage(format!(
                "{flag} needs --cluster-distance (it applies to clustered points only)"
            )));
        }
        return Ok(None);
    };
    let max_zoom = match config.cluster_maxzoom.as_deref().map(str::trim) {
        None => ClusterMaxZoom::Every,
        Some("g") => ClusterMaxZoom::BelowMax,
        Some(s) => s
            .parse::<u8>()
            .ok()
            .filter(|z| *z <= etl_tiles::tiler::MAX_TILER_ZOOM)
            .map(ClusterMaxZoom::Zoom)
            .ok_or_else(|| {
                JobError::usage(format!(
                    "--cluster-maxzoom {s:?}: expected a zoom from 0 to {} or g",
                    etl_tiles::tiler::MAX_TILER_ZOOM
                ))
            })?,
    };
    let mut accumulate = Vec::new();
    for a in &config.accumulate_attribute {
        accumulate.extend(
            parse_accumulate(a)
                .map_err(|e| JobError::usage(format!("--accumulate-attribute {e}")))?,
        );
    }
    let c = ClusterOptions {
        distance,
        max_zoom,
        keep_position: config.keep_point_cluster_position,
        accumulate,
    };
    c.validate().map_err(JobError::usage)?;
    Ok(Some(c))
}

/// The written order of features from the `--order-*` flags: `--order-by` keys, then
/// `--order-descending-by` keys, then size.
pub fn order_keys(config: &PmtilesConfig) -> Vec<OrderKey> {
    let attr = |descending: bool| {
        move |name: &String| OrderKey::Attribute {
            name: name.clone(),
            descending,
        }
    };
    let mut keys: Vec<OrderKey> = config.order_by.iter().map(attr(false)).collect();
    keys.extend(config.order_descending_by.iter().map(attr(true)));
    if config.order_smallest_first || config.order_largest_first {
        keys.push(OrderKey::Size {
            largest_first: config.order_largest_first,
        });
    }
    keys
}

/// The tiler's tile format from `--tile-format`, refusing what MLT cannot hold.
pub fn tile_format(config: &PmtilesConfig) -> Result<TileFormat, JobError> {
    Ok(match config.tile_format {
        TileFormatArg::Mvt => TileFormat::Mvt,
        TileFormatArg::Mlt => {
            // MVT tolerates an empty layer name; MLT (mlt-core) refuses it.
            if config.layer.as_deref().is_some_and(str::is_empty) {
                return Err(JobError::usage(
                    "-l \"\": an MLT layer needs a name (give -l NAME)",
                ));
            }
            TileFormat::Mlt
        }
    })
}
