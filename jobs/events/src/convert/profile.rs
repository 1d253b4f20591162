//! The tiling profiles of an import's PMTiles output (`--profile-tiles`): ours, and CloudTAK's
//! (`../shared/cloudtak-contract.md`, "Transform": its tippecanoe command line).

use etl_tiles::tiler::TilerOptions;

use super::ConvertOptions;

/// How an import's PMTiles archive is tiled (`--profile-tiles`).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum TilesProfile {
    /// A layer per input layer, the tile limits, the zooms of the flags.
    #[default]
    Etl,
    /// CloudTAK's: one layer `out`, z0–14, base zoom 6, no tile limits.
    Cloudtak,
}

/// The one layer CloudTAK's map reads (its tippecanoe's `-l out`).
pub const CLOUDTAK_LAYER: &str = "out";
/// The description CloudTAK's worker gives its archives (`-N`).
pub const CLOUDTAK_DESCRIPTION: &str = "Automatically Converted by @tak-ps/etl";

impl TilesProfile {
    /// The tiler's options for an upload named `name`.
    pub(super) fn tiler_options(self, opts: &ConvertOptions, name: &str) -> TilerOptions {
        let base = TilerOptions {
            memory: opts.tiler_memory,
            tmp_dir: Some(opts.scratch.clone()),
            name: name.to_owned(),
            generator: concat!("etl-events ", env!("CARGO_PKG_VERSION")).to_owned(),
            ..TilerOptions::default()
        };
        match self {
            TilesProfile::Etl => TilerOptions {
                min_zoom: opts.min_zoom,
                max_zoom: opts.max_zoom,
                description: format!("{name}, imported by etl-events"),
                ..base
            },
            TilesProfile::Cloudtak => TilerOptions {
                min_zoom: 0,
                max_zoom: Some(14),
                base_zoom: Some(6),
                max_tile_bytes: usize::MAX,
                max_tile_features: usize::MAX,
                description: CLOUDTAK_DESCRIPTION.to_owned(),
                ..base
            },
        }
    }

    /// The tiler's layers for the upload's `layers`.
    pub(super) fn tiler_layers(self, layers: &[String]) -> Vec<String> {
        match self {
            TilesProfile::Etl => layers.to_vec(),
            TilesProfile::Cloudtak => vec![CLOUDTAK_LAYER.to_owned()],
        }
    }

    /// The tiler's layer for a feature of upload layer `layer`.
    pub(super) fn tiler_layer(self, layer: usize) -> usize {
        match self {
            TilesProfile::Etl => layer,
            TilesProfile::Cloudtak => 0,
        }
    }
}
