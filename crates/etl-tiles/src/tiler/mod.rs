//! The tiler: features in, a clustered PMTiles archive of gzipped MVT tiles out.
//!
//! 1. **Stage** ([`Tiler::add`]): each feature is projected to world coordinates, its
//!    attributes filtered and typed, and written as a compact record to an unlinked temporary
//!    file (the page cache keeps it in memory when it fits; it never counts against the heap).
//!    Bounds, field types and the `-zg` statistics are gathered on the way.
//! 2. **Cut** ([`Tiler::finish`]): the staged records are read back in chunks and cut in
//!    parallel (rayon) into per-tile fragments for every zoom ([`cut`]); fragments go to an
//!    external sort by (tile id, layer, spatial key) that spills to disk under the memory
//!    budget ([`sort`]).
//! 3. **Assemble**: the sorted fragments come back tile by tile in tile-id order; batches of
//!    tiles are encoded, held to the size limits and gzipped in parallel ([`assemble`]), then
//!    written in order to the [`ArchiveWriter`], which deduplicates and run-lengths them.
//!
//! Memory is bounded whatever the input size: the sort's run holds the memory budget
//! ([`TilerOptions::memory`]); the fragments of the chunk being cut, one batch of tiles and the
//! archive writer's dedup cache a quarter of it each. These buffers are allocated once and
//! reused, so the allocator is not left holding memory they freed.
//!
//! With [`TilerOptions::shard`], a run makes one disjoint share of the tile set (see `shard`):
//! the partition comes from staged statistics, and tiles of other shards are skipped as they
//! are cut, so the sort and the assembly only see this shard's tiles.

mod accumulate;
mod assemble;
mod attrs;
mod cluster;
mod codec;
mod cut;
mod detail;
mod feature_filter;
mod meta;
mod order;
mod output;
mod pass;
mod shard;
mod sort;
mod thin;
mod zoom;

use std::fs::File;
use std::io::{self, BufWriter, Seek, Write};
use std::path::PathBuf;

use geo_types::{Coord, Geometry};
use serde_json::{Map, Value};

pub use accumulate::{AccumOp, MAX_ACCUMULATED_TEXT, parse_accumulate};
pub use assemble::TileLimitError;
pub use attrs::{AttrFilter, mvt_value};
pub use cluster::{CLUSTER_KEYS, ClusterMaxZoom, ClusterOptions};
pub(crate) use cut::{aligned_blocks, bbox as world_bbox, join_runs};
pub use feature_filter::{FeatureFilter, GeomType};
pub use order::OrderKey;
pub use output::TileFormat;

use crate::archive::{ArchiveError, ArchiveWriter, DEDUP_CACHE_BYTES};
use crate::geom::{WorldGeom, project};
use crate::tile::{MAX_LAT, TileCoord};
use crate::zoom_guess::ZoomGuesser;
use pass::{PassCtx, Run, quarter};

/// Tile extent (tippecanoe's default detail of 12 bits).
pub const EXTENT: u32 = 4096;
/// The deepest zoom the tiler makes (tippecanoe's limit too).
pub const MAX_TILER_ZOOM: u8 = 24;

/// How to tile: the meaning of each field is that of the tippecanoe flag named in its doc.
#[derive(Debug, Clone)]
pub struct TilerOptions {
    /// `-Z`: lowest zoom.
    pub min_zoom: u8,
    /// `-z`: highest zoom; `None` is `-zg` (guessed from feature spacing).
    pub max_zoom: Option<u8>,
    /// `-B`: the zoom below which points are thinned by `drop_rate` (default: max zoom).
    pub base_zoom: Option<u8>,
    /// `-r`: drop rate (2.5; 1 keeps every point at every zoom).
    pub drop_rate: f64,
    /// `-b`: buffer in screen pixels of a 256-pixel tile (5).
    pub buffer: u32,
    /// `-S`: simplification tolerance multiplier (1 = one tile unit).
    pub simplification: f64,
    /// `-M`: maximum compressed tile size (500,000).
    pub max_tile_bytes: usize,
    /// `-O`: maximum features per tile (200,000).
    pub max_tile_features: usize,
    /// `--drop-densest-as-needed`.
    pub drop_densest: bool,
    /// `--coalesce-densest-as-needed`.
    pub coalesce_densest: bool,
    /// `--drop-smallest-as-needed`: an over-limit tile drops its smallest lines and polygons
    /// (points are not dropped by size), and every tile of the zoom drops what is smaller.
    pub drop_smallest: bool,
    /// `--drop-fraction-as-needed`: an over-limit tile drops a share of its features by a hash
    /// of each, and every tile of the zoom drops the same share.
    pub drop_fraction: bool,
    /// `--extend-zooms-if-still-dropping`.
    pub extend_zooms: bool,
    /// Below the max zoom, polygons of less than 4 square tile units are drawn as 2×2 squares
    /// with a probability that keeps their total area (tippecanoe's tiny-polygon reduction);
    /// `false` is `--no-tiny-polygon-reduction`.
    pub tiny_polygon_reduction: bool,
    /// The order features are written in within each layer of a tile (primary key first);
    /// empty: spatial order.
    pub order: Vec<OrderKey>,
    /// `--tile-format`: MVT, or MLT (each tile made as MVT, then transcoded).
    pub tile_format: TileFormat,
    /// `-y/-x/-X`.
    pub attrs: AttrFilter,
    /// `-j`: which features each layer keeps, at which zooms.
    pub feature_filter: Option<FeatureFilter>,
    /// `--cluster-distance`: single points at the clustered zooms become one feature per grid
    /// cell of about that many pixels, with counts (see [`ClusterOptions`]).
    pub cluster: Option<ClusterOptions>,
    /// `--memory`: bytes the fragment sort may hold before spilling to disk (at least 1 MiB).
    /// The fragments being cut, a batch of tiles being assembled and the archive writer's
    /// dedup cache take up to a quarter of it more each.
    pub memory: usize,
    /// Where spill files go (default: the system temp dir).
    pub tmp_dir: Option<PathBuf>,
    /// `-n`.
    pub name: String,
    /// Metadata description.
    pub description: String,
    /// `-A`.
    pub attribution: Option<String>,
    /// The `generator` metadata value.
    pub generator: String,
    /// `--shard I/N`: make only shard `I` (0-based) of `N` of the tile set. Every shard must
    /// stage the same features; the shards' archives are disjoint and together hold exactly
    /// the tiles of an unsharded run (join them with [`crate::archive::merge`]). The
    /// zoom-wide strategies (`drop_*`, `coalesce_densest`, `extend_zooms`) decide from
    /// tiles of other shards, so they are refused with a shard.
    pub shard: Option<(u32, u32)>,
}

impl Default for TilerOptions {
    fn default() -> Self {
        TilerOptions {
            min_zoom: 0,
            max_zoom: Some(14),
            base_zoom: None,
            drop_rate: 2.5,
            buffer: 5,
            simplification: 1.0,
            max_tile_bytes: 500_000,
            max_tile_features: 200_000,
            drop_densest: false,
            coalesce_densest: false,
            drop_smallest: false,
            drop_fraction: false,
            extend_zooms: false,
            tiny_polygon_reduction: true,
            order: Vec::new(),
            tile_format: TileFormat::Mvt,
            attrs: AttrFilter::default(),
            feature_filter: None,
            cluster: None,
            memory: 64 << 20,
            tmp_dir: None,
            name: String::new(),
            description: String::new(),
            attribution: None,
            generator: concat!("etl-tiles ", env!("CARGO_PKG_VERSION")).to_owned(),
            shard: None,
        }
    }
}

/// Why tiling failed.
#[derive(Debug, thiserror::Error)]
pub enum TilerError {
    /// The options contradict each other.
    #[error("invalid options: {0}")]
    Options(String),
    /// Nothing to tile.
    #[error("no features")]
    NoFeatures,
    /// A tile could not be brought under the limits.
    #[error(transparent)]
    Tile(#[from] TileLimitError),
    /// The tiler's own temporary files failed (disk full, I/O error).
    #[error("temporary file: {0}")]
    Temp(#[from] io::Error),
    /// The staged data read back damaged.
    #[error("staged feature data is damaged (record {0})")]
    Damaged(u64),
    /// Writing the archive failed.
    #[error("archive: {0}")]
    Archive(#[from] ArchiveError),
    /// `cancel` said stop.
    #[error("cancelled")]
    Cancelled,
    /// A tile could not be written as MLT; `too_wide`: its attributes are beyond what the
    /// transcoding takes on (the input's doing), else the encoder refused it.
    #[error("tile {tile}: MLT: {reason}")]
    Mlt {
        tile: TileCoord,
        too_wide: bool,
        reason: String,
    },
}

/// What kind of failure a [`TilerError`] is: what a job's exit code says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The options contradict each other or name what does not exist.
    Usage,
    /// The input cannot be tiled as asked (no features, a tile over its limits, attributes too
    /// many for MLT).
    BadInput,
    /// `cancel` said stop.
    Cancelled,
    /// Temporary files or the archive could not be written (disk full, I/O): a retry may pass.
    Temporary,
    /// A defect: the MLT encoder refused a tile we made.
    Internal,
}

impl TilerError {
    pub fn kind(&self) -> FailureKind {
        match self {
            TilerError::Options(_) => FailureKind::Usage,
            // Spill data read back damaged is the disk's doing, not the input's: a retry may
            // pass. A gzip refusal is a defect.
            TilerError::Tile(TileLimitError::Damaged(_)) => FailureKind::Temporary,
            TilerError::Tile(TileLimitError::Gzip { .. }) => FailureKind::Internal,
            TilerError::NoFeatures | TilerError::Tile(_) => FailureKind::BadInput,
            TilerError::Mlt { too_wide: true, .. } => FailureKind::BadInput,
            TilerError::Mlt {
                too_wide: false, ..
            } => FailureKind::Internal,
            TilerError::Cancelled => FailureKind::Cancelled,
            TilerError::Temp(_) | TilerError::Damaged(_) | TilerError::Archive(_) => {
                FailureKind::Temporary
            }
        }
    }
}

/// What [`Tiler::add`] did with a feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// Staged for tiling.
    Staged {
        /// Some coordinate was outside Web Mercator's range and was clamped.
        clamped: bool,
    },
    /// No (non-empty, finite) geometry: nothing to tile.
    NoGeometry,
    /// Left out at every zoom by the `-j` feature filter.
    Filtered,
}

/// What a finished run made.
#[derive(Debug, Clone, Default)]
pub struct TileReport {
    pub features: u64,
    pub clamped: u64,
    /// Features the `-j` filter left out at every zoom (not staged, not in `features`).
    pub filtered: u64,
    pub min_zoom: u8,
    pub max_zoom: u8,
    /// The `-zg` guess, when one was made.
    pub guessed_zoom: Option<u8>,
    /// How the guess was made, in tippecanoe's words (`Choosing a maxzoom of -z…`).
    pub guess_notes: Vec<String>,
    /// Tiles written (before deduplication).
    pub tiles: u64,
    /// Bytes of (compressed) tile data written, before deduplication.
    pub tile_bytes: u64,
    /// The largest tile.
    pub largest: Option<(TileCoord, usize)>,
    /// Features dropped / coalesced to meet the tile limits, and the tiles concerned.
    pub dropped: u64,
    pub coalesced: u64,
    pub tiles_reduced: u64,
    /// Tiles made at lower detail (extent below 4096) to fit the byte limit.
    pub tiles_detail_reduced: u64,
    /// `--cluster-distance`: cluster features made (tile by tile), the points they absorbed
    /// (a cluster of k points absorbs k − 1), and accumulated texts cut at
    /// [`MAX_ACCUMULATED_TEXT`].
    pub clusters: u64,
    pub clustered_points: u64,
    pub accumulate_truncated: u64,
    /// Zooms whose tiles all took the spacing one of them needed (drop/coalesce strategies).
    pub zooms_respaced: u64,
    /// Tile fragments sorted, and bytes that went through spill files.
    pub fragments: u64,
    pub spilled_bytes: u64,
    /// Time spent cutting and sorting, and assembling and writing tiles.
    pub cut_time: std::time::Duration,
    pub assemble_time: std::time::Duration,
    /// With [`TilerOptions::shard`]: the part of the tile set this run made.
    pub shard: Option<ShardReport>,
}

/// The tiles one shard made; see [`TilerOptions::shard`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardReport {
    pub index: u32,
    pub count: u32,
    /// The partition zoom: shards own runs of its cells in Hilbert order.
    pub partition_zoom: u8,
    /// This shard's run of Hilbert indices at the partition zoom, `[start, end)`.
    pub cells: (u64, u64),
    /// The estimated work (sixteenths of a tile fragment, from the staged features) of this
    /// shard's run, and of every shard's run.
    pub weight: u64,
    pub weights: Vec<u64>,
}

/// Streams features into a PMTiles archive.
pub struct Tiler {
    opts: TilerOptions,
    layers: Vec<String>,
    attrs: attrs::Attributes,
    filter: attrs::CompiledFilter,
    stage: BufWriter<File>,
    buf: Vec<u8>,
    props: Vec<u8>,
    scratch: Vec<u8>,
    features: u64,
    clamped: u64,
    /// Features the `-j` filter left out at every zoom.
    filtered: u64,
    /// World bbox of everything staged.
    bounds: [i64; 4],
    guesser: ZoomGuesser,
    /// With a shard: staged weight per cell, to partition the tile set.
    weights: Option<shard::Weights>,
}

impl Tiler {
    /// A tiler for features of the given layers (feature layers are indices into `layers`).
    pub fn new(opts: TilerOptions, layers: Vec<String>) -> Result<Self, TilerError> {
        if layers.is_empty() {
            return Err(TilerError::Options("no layers".into()));
        }
        // A fragment's sort key holds its layer in 16 bits.
        if layers.len() > 0xFFFF {
            return Err(TilerError::Options(format!(
                "{} layers: at most 65535",
                layers.len()
            )));
        }
        if let Some(z) = opts.max_zoom {
            if z > MAX_TILER_ZOOM {
                return Err(TilerError::Options(format!(
                    "max zoom {z} is above {MAX_TILER_ZOOM}"
                )));
            }
            if opts.min_zoom > z {
                return Err(TilerError::Options(format!(
                    "min zoom {} is above max zoom {z}",
                    opts.min_zoom
                )));
            }
        }
        if opts.min_zoom > MAX_TILER_ZOOM {
            return Err(TilerError::Options(format!(
                "min zoom {} is above {MAX_TILER_ZOOM}",
                opts.min_zoom
            )));
        }
        if opts.simplification.is_nan()
            || opts.simplification < 0.0
            || !opts.drop_rate.is_finite()
            || opts.drop_rate < 0.0
        {
            return Err(TilerError::Options(
                "simplification and drop rate must be finite and not negative".into(),
            ));
        }
        if opts.max_tile_bytes == 0 || opts.max_tile_features == 0 {
            return Err(TilerError::Options("tile limits must be above zero".into()));
        }
        let strategies = [
            opts.drop_densest,
            opts.coalesce_densest,
            opts.drop_smallest,
            opts.drop_fraction,
        ]
        .iter()
        .filter(|s| **s)
        .count();
        if strategies > 1 {
            return Err(TilerError::Options(
                "--drop-densest-as-needed, --coalesce-densest-as-needed, \
                 --drop-smallest-as-needed and --drop-fraction-as-needed are alternatives; pick \
                 one"
                .into(),
            ));
        }
        if let Some(c) = &opts.cluster {
            c.validate().map_err(TilerError::Options)?;
        }
        if let Some((i, n)) = opts.shard {
            if n == 0 || i >= n {
                return Err(TilerError::Options(format!(
                    "shard {i}/{n}: the index must be below the count"
                )));
            }
            if strategies > 0 || opts.extend_zooms {
                return Err(TilerError::Options(
                    "a shard cannot use --drop-densest-as-needed, --coalesce-densest-as-needed, \
                     --drop-smallest-as-needed, --drop-fraction-as-needed or \
                     --extend-zooms-if-still-dropping (they decide from the tiles of a whole \
                     zoom, which other shards make)"
                        .into(),
                ));
            }
        }
        let file = match &opts.tmp_dir {
            Some(d) => tempfile::tempfile_in(d)?,
            None => tempfile::tempfile()?,
        };
        Ok(Tiler {
            weights: opts
                .shard
                .map(|_| shard::Weights::new(opts.drop_rate, opts.min_zoom, opts.max_zoom)),
            attrs: attrs::Attributes::new(layers.len()),
            filter: attrs::CompiledFilter::new(&opts.attrs),
            opts,
            layers,
            stage: BufWriter::with_capacity(1 << 20, file),
            buf: Vec::with_capacity(1 << 16),
            props: Vec::new(),
            scratch: Vec::new(),
            features: 0,
            clamped: 0,
            filtered: 0,
            bounds: [i64::MAX, i64::MAX, i64::MIN, i64::MIN],
            guesser: ZoomGuesser::new(),
        })
    }

    /// Features staged so far.
    pub fn features(&self) -> u64 {
        self.features
    }

    /// Features that had coordinates clamped to Web Mercator's range.
    pub fn clamped(&self) -> u64 {
        self.clamped
    }

    /// Stages one feature of layer `layer`.
    ///
    /// `key` is the feature's stable identity, e.g. `input index << 40 | ordinal`: it decides
    /// which points drop-rate thinning keeps and breaks ties in the order of features inside a
    /// tile, so inputs read in parallel (in any interleaving) give the same archive.
    ///
    /// A GeometryCollection mixing points, lines and polygons becomes one feature per member
    /// (an MVT feature has a single geometry type), each with the same id and attributes.
    pub fn add(
        &mut self,
        layer: usize,
        key: u64,
        id: Option<u64>,
        geometry: Option<&Geometry<f64>>,
        properties: &Map<String, Value>,
    ) -> Result<Added, TilerError> {
        let Some(g) = geometry else {
            return Ok(Added::NoGeometry);
        };
        let layer_idx = u32::try_from(layer)
            .ok()
            .filter(|_| layer < self.layers.len())
            .ok_or_else(|| TilerError::Options(format!("layer index {layer} out of range")))?;
        let Some(w) = project(g) else {
            if let Geometry::GeometryCollection(gc) = g {
                // One feature, however many members: counted once as filtered, or not at all.
                let filtered_before = self.filtered;
                let (mut any, mut filtered) = (None, false);
                for member in &gc.0 {
                    match self.add(layer, key, id, Some(member), properties)? {
                        Added::Staged { clamped } => {
                            any = Some(any.unwrap_or(false) || clamped);
                        }
                        Added::Filtered => filtered = true,
                        Added::NoGeometry => {}
                    }
                }
                self.filtered = filtered_before;
                return Ok(match any {
                    Some(clamped) => Added::Staged { clamped },
                    None if filtered => {
                        self.filtered += 1;
                        Added::Filtered
                    }
                    None => Added::NoGeometry,
                });
            }
            return Ok(Added::NoGeometry);
        };
        let zooms = match &self.opts.feature_filter {
            Some(filter) => {
                let kind = match &w {
                    WorldGeom::Points(_) => GeomType::Point,
                    WorldGeom::Lines(_) => GeomType::LineString,
                    WorldGeom::Polygons(_) => GeomType::Polygon,
                };
                let name = self.layers.get(layer).map_or("", String::as_str);
                let subject = feature_filter::Subject {
                    props: properties,
                    id,
                    kind,
                };
                filter.zoom_mask(name, &subject)
            }
            None => u32::MAX,
        };
        // The zooms this run makes (with -zg or --extend-zooms-if-still-dropping, any up to
        // the deepest the tiler makes).
        let deepest = match self.opts.max_zoom {
            Some(z) if !self.opts.extend_zooms => z,
            _ => MAX_TILER_ZOOM,
        };
        let wanted =
            (u32::MAX >> (31 - u32::from(deepest))) & (u32::MAX << self.opts.min_zoom.min(31));
        if zooms & wanted == 0 {
            self.filtered += 1;
            return Ok(Added::Filtered);
        }
        let clamped = out_of_range(g);
        self.props.clear();
        self.attrs
            .encode(layer, properties, &self.filter, &mut self.props);
        codec::put_staged(
            &mut self.buf,
            &mut self.scratch,
            (layer_idx, zooms),
            key,
            id,
            &self.props,
            &w,
        );
        cut::extend_bounds(&mut self.bounds, &w);
        if self.opts.max_zoom.is_none() {
            self.guesser.add(&w);
        }
        if let (Some(weights), Some(b)) = (&mut self.weights, cut::bbox(&w)) {
            weights.add(b, shard::Shape::of(&w));
        }
        if self.buf.len() >= 1 << 16 {
            self.stage.write_all(&self.buf)?;
            self.buf.clear();
        }
        self.features += 1;
        if clamped {
            self.clamped += 1;
        }
        Ok(Added::Staged { clamped })
    }

    /// Tiles everything staged into `out`. `cancel` is polled between chunks of work; when it
    /// says stop, the run ends with [`TilerError::Cancelled`] and `out` holds no valid archive.
    pub fn finish<W: Write + Seek>(
        mut self,
        out: W,
        cancel: &(dyn Fn() -> bool + Sync),
    ) -> Result<(W, TileReport), TilerError> {
        if self.features == 0 {
            return Err(TilerError::NoFeatures);
        }
        self.stage.write_all(&self.buf)?;
        self.buf = Vec::new();
        let mut stage = self.stage.into_inner().map_err(|e| e.into_error())?;
        let (guessed, guess_notes) = match self.opts.max_zoom {
            Some(_) => (None, Vec::new()),
            None => {
                let g = self
                    .guesser
                    .guess_with(&crate::zoom_guess::GuessOptions::default());
                (
                    Some(
                        g.map_or(0, |g| g.maxzoom)
                            .clamp(self.opts.min_zoom, MAX_TILER_ZOOM),
                    ),
                    g.map_or_else(Vec::new, |g| g.describe()),
                )
            }
        };
        let mut max_zoom = self.opts.max_zoom.or(guessed).unwrap_or(14);
        let min_zoom = self.opts.min_zoom.min(max_zoom);
        let base_zoom = self.opts.base_zoom.unwrap_or(max_zoom);
        let limits = assemble::Limits {
            max_bytes: self.opts.max_tile_bytes,
            max_features: self.opts.max_tile_features,
            drop_densest: self.opts.drop_densest,
            coalesce_densest: self.opts.coalesce_densest,
            drop_smallest: self.opts.drop_smallest,
            drop_fraction: self.opts.drop_fraction,
        };
        let partition = match (&self.weights, self.opts.shard) {
            (Some(w), Some((i, n))) => Some((i, n, shard::Partition::new(w, max_zoom, n))),
            _ => None,
        };
        let owned = partition.as_ref().map(|(i, _, part)| part.range(*i));
        let mut writer = ArchiveWriter::new(out)?;
        if self.opts.tile_format == TileFormat::Mlt {
            writer.set_tile_format(
                crate::archive::TileType::Mlt,
                crate::archive::Compression::Gzip,
            );
        }
        writer.set_dedup_cache_bytes(quarter(self.opts.memory).min(DEDUP_CACHE_BYTES));
        let mut run = Run {
            report: TileReport {
                features: self.features,
                clamped: self.clamped,
                filtered: self.filtered,
                min_zoom,
                max_zoom,
                guessed_zoom: guessed,
                guess_notes,
                shard: partition.as_ref().map(|(i, n, part)| {
                    let r = part.range(*i);
                    ShardReport {
                        index: *i,
                        count: *n,
                        partition_zoom: part.p,
                        cells: (r.start, r.end),
                        weight: part.weights.get(*i as usize).copied().unwrap_or(0),
                        weights: part.weights.clone(),
                    }
                }),
                ..TileReport::default()
            },
            layer_zooms: vec![None; self.layers.len()],
            reduced_at: vec![0; usize::from(MAX_TILER_ZOOM) + 1],
            zooms_respaced: 0,
            shown: None,
            cluster_fields: Default::default(),
        };
        let cluster = match &self.opts.cluster {
            Some(c) => Some(cluster_setup(&mut self.attrs, c)?),
            None => None,
        };
        let ctx = PassCtx {
            layers: &self.layers,
            keys: &self.attrs.keys,
            limits: &limits,
            memory: self.opts.memory,
            tmp_dir: self.opts.tmp_dir.clone(),
            cancel,
            order: order::resolve(&self.opts.order, &self.attrs.keys),
            cluster,
            output: output::Output {
                format: self.opts.tile_format,
                keep_order: !self.opts.order.is_empty(),
            },
            extend_zooms: self.opts.extend_zooms,
        };
        let mut params = cut::CutParams {
            min_zoom,
            max_zoom,
            base_zoom,
            drop_rate: self.opts.drop_rate,
            extent: EXTENT,
            buffer: self.opts.buffer.saturating_mul(EXTENT / 256),
            simplification: self.opts.simplification,
            owned,
            tiny_polygons: self.opts.tiny_polygon_reduction,
            cluster: self.opts.cluster.as_ref().and_then(|c| {
                c.deepest(max_zoom)
                    .map(|z| cluster::ClusterCut::new(c.distance, z))
            }),
        };
        ctx.pass(&mut stage, &params, &mut writer, &mut run)?;
        // tippecanoe's --extend-zooms-if-still-dropping: while the deepest zoom still had to
        // drop or coalesce, add a zoom (deeper tiles hold fewer features each).
        while self.opts.extend_zooms
            && run
                .reduced_at
                .get(usize::from(max_zoom))
                .copied()
                .unwrap_or(0)
                > 0
            && max_zoom < MAX_TILER_ZOOM
        {
            max_zoom += 1;
            params.min_zoom = max_zoom;
            params.max_zoom = max_zoom;
            ctx.pass(&mut stage, &params, &mut writer, &mut run)?;
        }
        run.report.max_zoom = max_zoom;
        run.report.zooms_respaced = run.zooms_respaced;
        drop(ctx);
        for ((layer, key), t) in std::mem::take(&mut run.cluster_fields) {
            self.attrs.note(layer as usize, key, t);
        }
        let meta = meta::archive_meta(
            &self.opts,
            &self.layers,
            &self.attrs.fields,
            &run.layer_zooms,
            self.bounds,
            min_zoom,
            max_zoom,
        );
        let out = writer.finish(&meta)?;
        Ok((out, run.report))
    }
}

/// Adds the keys clusters write to the key table and finds the accumulated attributes' keys
/// (an attribute no feature carries is refused: a typo would otherwise do nothing).
fn cluster_setup(
    attrs: &mut attrs::Attributes,
    c: &ClusterOptions,
) -> Result<cluster::ClusterSetup, TilerError> {
    let mut keys = [0usize; 4];
    for (k, name) in keys.iter_mut().zip(CLUSTER_KEYS) {
        *k = attrs
            .key(name)
            .ok_or_else(|| TilerError::Options("too many attribute keys".into()))?
            as usize;
    }
    let mut specs = Vec::with_capacity(c.accumulate.len());
    for (name, op) in &c.accumulate {
        let Some(k) = attrs.find(name) else {
            let hint = if name.contains(',') {
                " (give several as repeated flags or as one JSON object)"
            } else {
                " (or -x/-y/-X left it out)"
            };
            return Err(TilerError::Options(format!(
                "--accumulate-attribute {name:?}: no feature has that attribute{hint}"
            )));
        };
        specs.push((k as usize, *op));
    }
    Ok(cluster::ClusterSetup {
        keys,
        specs,
        keep_position: c.keep_position,
    })
}

/// True when a finite coordinate lies outside Web Mercator's range (and will be clamped).
fn out_of_range(g: &Geometry<f64>) -> bool {
    fn bad(c: &Coord<f64>) -> bool {
        c.x.is_finite() && c.y.is_finite() && (c.x.abs() > 180.0 || c.y.abs() > MAX_LAT)
    }
    fn ls(l: &geo_types::LineString<f64>) -> bool {
        l.0.iter().any(bad)
    }
    fn poly(p: &geo_types::Polygon<f64>) -> bool {
        ls(p.exterior()) || p.interiors().iter().any(ls)
    }
    match g {
        Geometry::Point(p) => bad(&p.0),
        Geometry::MultiPoint(mp) => mp.0.iter().any(|p| bad(&p.0)),
        Geometry::Line(l) => bad(&l.start) || bad(&l.end),
        Geometry::LineString(l) => ls(l),
        Geometry::MultiLineString(m) => m.0.iter().any(ls),
        Geometry::Polygon(p) => poly(p),
        Geometry::MultiPolygon(m) => m.0.iter().any(poly),
        Geometry::Rect(r) => bad(&r.min()) || bad(&r.max()),
        Geometry::Triangle(t) => bad(&t.v1()) || bad(&t.v2()) || bad(&t.v3()),
        Geometry::GeometryCollection(gc) => gc.0.iter().any(out_of_range),
    }
}
