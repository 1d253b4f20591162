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

    /// The profile as the manifest's `source` records it: nothing for the default, so the
    /// manifests written before profiles existed read as made with it.
    pub fn recorded(self) -> Option<String> {
        match self {
            TilesProfile::Etl => None,
            TilesProfile::Cloudtak => Some("cloudtak".to_owned()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cloudtak_options_are_cloudtaks_tippecanoe_flags() {
        let opts = ConvertOptions {
            upload: etl_geo::UploadOptions::default(),
            max_zoom: Some(14),
            min_zoom: 0,
            geojsonl: true,
            pmtiles: true,
            tiler_memory: 1 << 20,
            scratch: std::env::temp_dir(),
            tiles: TilesProfile::Cloudtak,
            links: crate::links::LinkOptions::default(),
            icon_names: std::sync::Arc::default(),
        };
        let t = TilesProfile::Cloudtak.tiler_options(&opts, "x.kml");
        // -z14 -Z0 -B6 --no-tile-size-limit --no-feature-limit -n x.kml -N …
        assert_eq!(
            (t.min_zoom, t.max_zoom, t.base_zoom),
            (0, Some(14), Some(6))
        );
        assert_eq!(
            (t.max_tile_bytes, t.max_tile_features),
            (usize::MAX, usize::MAX)
        );
        assert_eq!(t.name, "x.kml");
        assert_eq!(t.description, CLOUDTAK_DESCRIPTION);
        // The rest as tippecanoe's defaults (drop rate 2.5, no dropping strategy).
        let d = TilerOptions::default();
        assert_eq!(t.drop_rate, d.drop_rate);
        assert!(!t.drop_densest && !t.coalesce_densest && !t.drop_smallest && !t.drop_fraction);
        assert_eq!(
            TilesProfile::Cloudtak.tiler_layers(&["a".into(), "b".into()]),
            ["out"]
        );
        assert_eq!(TilesProfile::Cloudtak.tiler_layer(1), 0);
        // Ours: the flags' zooms, the default limits, a layer each.
        let e = TilesProfile::Etl.tiler_options(
            &ConvertOptions {
                max_zoom: Some(9),
                ..opts
            },
            "x",
        );
        assert_eq!((e.max_zoom, e.base_zoom), (Some(9), None));
        assert_eq!(
            (e.max_tile_bytes, e.max_tile_features),
            (d.max_tile_bytes, d.max_tile_features)
        );
        assert_eq!(
            TilesProfile::Etl.tiler_layers(&["a".into(), "b".into()]),
            ["a", "b"]
        );
    }
}
