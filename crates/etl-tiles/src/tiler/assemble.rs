//! Assembling one tile from its sorted fragments: MVT layers, the tile limits and the
//! strategies that bring a tile under them, gzip.
//!
//! A tile over `-M` bytes (compressed, as tippecanoe counts) or `-O` features is never written
//! silently: with `--drop-densest-as-needed` the features closest to their spatial predecessor
//! are dropped, with `--coalesce-densest-as-needed` they are merged into it instead. What is
//! still over the byte limit then (or at once, without either strategy) is made at lower detail
//! (`detail`), as tippecanoe does; what fits at no detail fails with its z/x/y.

use super::codec::{Truncated, decode_value, get_fragment, props_iter};
use super::cut::{order_layer, order_spatial};
use super::sort::{FragRef, TileBatch};
use super::thin::{self, Reduction};
use super::zoom::Protected;
use crate::geom::TileGeom;
use crate::mvt::{LayerBuilder, PropValue, encode_tile};
use crate::tile::TileCoord;

/// What a tile must respect and how.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub max_bytes: usize,
    pub max_features: usize,
    pub drop_densest: bool,
    pub coalesce_densest: bool,
    pub drop_smallest: bool,
    pub drop_fraction: bool,
}

impl Limits {
    /// Whether a strategy drops features from over-limit tiles (zoom-wide).
    pub(crate) fn strategy(&self) -> bool {
        self.drop_densest || self.coalesce_densest || self.drop_smallest || self.drop_fraction
    }
}

/// Why a tile could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TileLimitError {
    #[error(
        "tile {tile} is {bytes} bytes with {features} features at detail {detail}, over the limit of {max_bytes} bytes / {max_features} features; use a dropping strategy (--drop-densest-as-needed, --coalesce-densest-as-needed, --drop-smallest-as-needed, --drop-fraction-as-needed), or raise -M / -O"
    )]
    OverLimit {
        tile: TileCoord,
        bytes: usize,
        features: usize,
        /// The lowest detail tried (12: none lower, the tile is over the feature limit).
        detail: u8,
        max_bytes: usize,
        max_features: usize,
    },
    #[error(
        "tile {tile} is still {bytes} bytes with {features} features at detail {detail} after dropping all its strategy could (limit {max_bytes} bytes / {max_features} features; --drop-smallest-as-needed never drops points)"
    )]
    CannotReduce {
        tile: TileCoord,
        bytes: usize,
        features: usize,
        /// The lowest detail tried.
        detail: u8,
        max_bytes: usize,
        max_features: usize,
    },
    #[error("tile {0}: damaged spill data")]
    Damaged(TileCoord),
    /// gzip refused a tile (a defect: its output window is the compressor's own bound).
    #[error("tile {tile}: gzip: {reason}")]
    Gzip { tile: TileCoord, reason: String },
}

impl TileLimitError {
    /// The error of a failed gzip of `tile`.
    pub(crate) fn gzip(tile: TileCoord) -> impl Fn(std::io::Error) -> TileLimitError {
        move |e| TileLimitError::Gzip {
            tile,
            reason: e.to_string(),
        }
    }
}

/// The share of the features a thinning round aims to keep, of those that would just fit by
/// the tile's byte or feature ratio: below the deepest zoom...
const MARGIN: f64 = 0.7;
/// ...and at it.
const MARGIN_DEEPEST: f64 = 0.97;

/// Everything assembly needs besides the tiles.
pub(crate) struct AssembleCtx<'a> {
    pub layers: &'a [String],
    pub keys: &'a [String],
    pub extent: u32,
    pub limits: &'a Limits,
    /// Fragment bytes per batch of tiles assembled in parallel.
    pub batch_bytes: usize,
    /// The order features are written in within a layer.
    pub order: &'a [super::order::Resolved],
    /// How finished tiles are stored.
    pub output: super::output::Output,
    /// The deepest zoom of the run, when known: its tiles are thinned only as far as they must
    /// be.
    pub deepest: Option<u8>,
}

/// One assembled tile.
pub(crate) struct Assembled {
    pub tile: TileCoord,
    /// The MVT; `None` when no feature survived (nothing to store).
    pub data: Option<Vec<u8>>,
    /// Whether `data` is gzipped already (else it is raw and within the limits).
    pub gz: bool,
    /// Whether `data` is in the archive's stored form (see `output`).
    pub stored: bool,
    /// Layers present (indices into the layer names).
    pub layers: Vec<u32>,
    /// Features dropped / coalesced to meet the limits.
    pub dropped: usize,
    pub coalesced: usize,
    /// What the tile needed dropped to fit ([`Reduction::NONE`] when nothing had to go); the
    /// zoom's tiles are made again with the strictest.
    pub reduction: Reduction,
    /// Consecutive tile ids from `tile` that hold `data` (more than 1 for a run of tiles only
    /// fills cover).
    pub run: u64,
    /// log2 of the tile's extent: [`FULL_DETAIL`], or less when it was made at lower detail
    /// to fit the byte limit.
    pub detail: u8,
    /// The sequence numbers of the features the tile kept, when a dropping strategy is on (the
    /// next zoom must keep them: see [`Protected`]); empty otherwise.
    pub kept: Vec<u64>,
}

pub(super) struct Feat<'a> {
    pub(super) layer: u32,
    pub(super) seq: u64,
    /// The whole feature's size ([`super::codec::Fragment::size`]).
    pub(super) size: u64,
    pub(super) spatial: u64,
    pub(super) id: Option<u64>,
    pub(super) props: &'a [u8],
    pub(super) geom: TileGeom,
}

/// Assembles one tile. `zoom`: what the zoom's other tiles needed dropped; `protect`: the
/// features the zoom above showed, kept whatever the reduction while the tile can be made
/// with them.
pub(crate) fn assemble(
    tile: TileCoord,
    batch: &TileBatch,
    frags: &[FragRef],
    ctx: &AssembleCtx<'_>,
    zoom: &Reduction,
    defer_gzip: bool,
    protect: Option<&Protected>,
) -> Result<Assembled, TileLimitError> {
    let (layer_names, keys, extent, limits) = (ctx.layers, ctx.keys, ctx.extent, ctx.limits);
    let mut feats = Vec::with_capacity(frags.len());
    for f in frags {
        let fr = get_fragment(batch.payload(f)).map_err(|_| TileLimitError::Damaged(tile))?;
        feats.push(Feat {
            layer: order_layer(f.order),
            seq: f.seq,
            size: fr.size,
            spatial: order_spatial(f.order),
            id: fr.id,
            props: fr.props,
            geom: fr.geom,
        });
    }
    let n = feats.len();
    let mut keep = vec![true; n];
    let mut kept = n;
    let mut dropped = 0;
    let mut coalesced = 0;
    let mut reduction = Reduction::NONE;
    let strategy = limits.strategy();
    // Which features a dropping strategy may not remove.
    let mut fixed: Vec<bool> = match protect {
        Some(p) => feats.iter().map(|f| p.contains(f.seq)).collect(),
        None => Vec::new(),
    };
    // What another tile of this zoom needed applies here too (tippecanoe's "the discovered
    // spacing applies to the entire zoom level"): no density seams between tiles.
    if !zoom.is_none() {
        let (d, c) = thin::apply(&mut feats, &mut keep, &fixed, zoom, limits.coalesce_densest);
        dropped += d;
        coalesced += c;
        kept -= d + c;
        reduction = *zoom;
    }
    let (raw, mut layers) = encode(&feats, &keep, layer_names, keys, extent, ctx.order)
        .map_err(|_| TileLimitError::Damaged(tile))?;
    // A raw tile that fits with room for gzip's framing fits compressed too: when the caller
    // may still drop this result (a zoom held for respacing), the gzip is left for later.
    if defer_gzip
        && kept <= limits.max_features
        && raw.len() + raw.len() / 1000 + 64 <= limits.max_bytes
    {
        return Ok(Assembled {
            tile,
            data: (kept > 0 && !layers.is_empty()).then_some(raw),
            gz: false,
            stored: false,
            layers,
            dropped,
            coalesced,
            reduction,
            run: 1,
            detail: FULL_DETAIL,
            kept: kept_seqs(&feats, &keep, strategy),
        });
    }
    let mut bytes = gzip(&raw).map_err(TileLimitError::gzip(tile))?;
    drop(raw);
    let over = |bytes: usize, kept: usize| bytes > limits.max_bytes || kept > limits.max_features;
    if over(bytes.len(), kept) {
        if strategy {
            // Each round raises the minimum gap between kept features; the gap is picked as
            // the quantile that should remove the excess, with a margin, so a few rounds
            // suffice. Below the deepest zoom the margin is wide: the densest tile lands at
            // 75-90 % of the limit, where tippecanoe's land (its margin is 0.8 on a gap that
            // drops more per feature), and the zoom's other tiles follow its spacing. At the
            // deepest zoom, the most detailed the map gets, tiles are thinned only as far as
            // they must be: a narrow margin, more rounds.
            let margin = if ctx.deepest.is_some_and(|d| tile.z >= d) {
                MARGIN_DEEPEST
            } else {
                MARGIN
            };
            let mut rounds = 0;
            while over(bytes.len(), kept) && rounds <= 64 {
                rounds += 1;
                let frac = (limits.max_bytes as f64 / bytes.len() as f64)
                    .min(limits.max_features as f64 / kept as f64)
                    .min(1.0)
                    * margin;
                let target = ((kept as f64) * frac).floor() as usize;
                let removed = if limits.drop_smallest {
                    let (d, size) = thin::thin_smallest(&feats, &mut keep, &fixed, target);
                    reduction.min_size = reduction.min_size.max(size);
                    (d, 0)
                } else if limits.drop_fraction {
                    let (d, limit) = thin::thin_fraction(&feats, &mut keep, &fixed, target);
                    reduction.rank_limit = reduction.rank_limit.min(limit);
                    (d, 0)
                } else {
                    let (d, c, gap) = thin::thin_densest(
                        &mut feats,
                        &mut keep,
                        &fixed,
                        target,
                        limits.coalesce_densest,
                    );
                    reduction.gap = reduction.gap.max(gap);
                    (d, c)
                };
                if removed.0 + removed.1 == 0 {
                    if fixed.is_empty() {
                        break;
                    }
                    // Every feature left was shown a zoom up: the limits come first.
                    fixed.clear();
                    continue;
                }
                dropped += removed.0;
                coalesced += removed.1;
                kept -= removed.0 + removed.1;
                let (raw, l) = encode(&feats, &keep, layer_names, keys, extent, ctx.order)
                    .map_err(|_| TileLimitError::Damaged(tile))?;
                bytes = gzip(&raw).map_err(TileLimitError::gzip(tile))?;
                layers = l;
            }
        }
        if over(bytes.len(), kept) {
            // tippecanoe's last resort (and, without a dropping strategy, its first): lower
            // detail. Over the feature limit it cannot help.
            let low = if kept <= limits.max_features {
                super::detail::lower_detail(&feats, &keep, ctx, tile, strategy)?
            } else {
                Err(super::detail::Tried {
                    detail: FULL_DETAIL,
                    bytes: bytes.len(),
                })
            };
            return match low {
                Ok(low) => Ok(Assembled {
                    tile,
                    data: Some(low.bytes),
                    gz: true,
                    stored: false,
                    layers: low.layers,
                    dropped: dropped + low.vanished,
                    coalesced,
                    reduction,
                    run: 1,
                    detail: low.detail,
                    kept: kept_seqs(&feats, &keep, strategy),
                }),
                Err(tried) if strategy => Err(TileLimitError::CannotReduce {
                    tile,
                    bytes: tried.bytes,
                    features: kept,
                    detail: tried.detail,
                    max_bytes: limits.max_bytes,
                    max_features: limits.max_features,
                }),
                Err(tried) => Err(TileLimitError::OverLimit {
                    tile,
                    bytes: tried.bytes,
                    features: kept,
                    detail: tried.detail,
                    max_bytes: limits.max_bytes,
                    max_features: limits.max_features,
                }),
            };
        }
    }
    Ok(Assembled {
        tile,
        data: (kept > 0 && !layers.is_empty()).then_some(bytes),
        gz: true,
        stored: false,
        layers,
        dropped,
        coalesced,
        reduction,
        run: 1,
        detail: FULL_DETAIL,
        kept: kept_seqs(&feats, &keep, strategy),
    })
}

/// The sequence numbers of the kept point features, when a dropping strategy needs them.
///
/// Only points: a point that blinks out one zoom down is what a map reader sees. Keeping every
/// line and polygon of the zoom above too made the tiles near the byte limit (lines at z + 1
/// carry more detail than at z) take many more thinning rounds: 45 % longer on the synthetic
/// benchmark and 3 % larger, for lines that tippecanoe does not keep either.
fn kept_seqs(feats: &[Feat<'_>], keep: &[bool], strategy: bool) -> Vec<u64> {
    if !strategy {
        return Vec::new();
    }
    feats
        .iter()
        .zip(keep)
        .filter(|(f, k)| **k && matches!(f.geom, TileGeom::Points(_)))
        .map(|(f, _)| f.seq)
        .collect()
}

/// The detail of every tile that fits as it is: extent 4096.
pub(crate) const FULL_DETAIL: u8 = 12;

/// Encodes the kept features. Returns the raw MVT bytes and the layers present.
pub(super) fn encode(
    feats: &[Feat<'_>],
    keep: &[bool],
    layer_names: &[String],
    keys: &[String],
    extent: u32,
    order: &[super::order::Resolved],
) -> Result<(Vec<u8>, Vec<u32>), Truncated> {
    let mut builders: Vec<(u32, LayerBuilder)> = Vec::new();
    let mut props: Vec<(&str, PropValue)> = Vec::new();
    for f in super::order::written_order(feats, keep, order)?
        .into_iter()
        .filter_map(|i| feats.get(i))
    {
        if builders.last().is_none_or(|(l, _)| *l != f.layer) {
            let name = layer_names
                .get(f.layer as usize)
                .map_or("layer", String::as_str);
            builders.push((f.layer, LayerBuilder::new(name, extent)));
        }
        props.clear();
        for p in props_iter(f.props) {
            let (k, raw) = p?;
            let Some(key) = keys.get(k) else { continue };
            props.push((key.as_str(), decode_value(raw)?));
        }
        if let Some((_, b)) = builders.last_mut() {
            b.add_feature(f.id, &f.geom, &props);
        }
    }
    builders.retain(|(_, b)| !b.is_empty());
    let layers: Vec<u32> = builders.iter().map(|(l, _)| *l).collect();
    let built: Vec<LayerBuilder> = builders.into_iter().map(|(_, b)| b).collect();
    let raw = encode_tile(&built);
    Ok((raw, layers))
}

thread_local! {
    /// Each thread's compressor and output window, made once: a libdeflate compressor
    /// allocates a few hundred KiB of match-finder state, and the window (grown to the largest
    /// bound seen) keeps each tile's result from holding a raw-sized allocation.
    static DEFLATE: std::cell::RefCell<Option<(libdeflater::Compressor, Vec<u8>)>> =
        const { std::cell::RefCell::new(None) };
}

/// The libdeflate level tiles are gzipped at. On the 5M synthetic points (`-z14
/// --drop-densest-as-needed`) level 6 made a 210.9 MB archive in the time zlib-rs took for
/// 222.2 MB; level 8 saved 0.4 % more for 20 % more time.
const GZIP_LEVEL: i32 = 6;
/// The largest output window a thread keeps between tiles (the default limit is 500 KB).
const WINDOW_KEPT: usize = 4 << 20;

/// Gzip of one tile, with libdeflate: no name, no time, OS unknown (255), so identical tiles
/// give identical bytes whichever thread compressed them.
pub(crate) fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    DEFLATE.with_borrow_mut(|slot| {
        let (c, window) = match slot {
            Some(s) => s,
            None => {
                let lvl = libdeflater::CompressionLvl::new(GZIP_LEVEL)
                    .map_err(|e| std::io::Error::other(format!("gzip level: {e:?}")))?;
                slot.insert((libdeflater::Compressor::new(lvl), Vec::new()))
            }
        };
        let bound = c.gzip_compress_bound(data.len());
        if window.len() < bound {
            window.resize(bound, 0);
        }
        let n = c
            .gzip_compress(data, window)
            .map_err(|e| std::io::Error::other(format!("gzip: {e:?}")))?;
        // An exact-size copy: the result lives on while its batch is written.
        let out = window
            .get(..n)
            .ok_or_else(|| std::io::Error::other("gzip: output past its window"))?
            .to_vec();
        // A window grown for one huge tile (no tile limits) is not kept for the rest.
        if window.len() > WINDOW_KEPT {
            *window = Vec::new();
        }
        Ok(out)
    })
}

/// Assembles every tile of a batch in parallel, keeping tile order.
pub(crate) fn assemble_batch(
    batch: &TileBatch,
    ctx: &AssembleCtx<'_>,
    zoom: &Reduction,
    defer_gzip: bool,
    protect: Option<&Protected>,
) -> Vec<Result<Assembled, TileLimitError>> {
    use rayon::prelude::*;
    batch
        .tiles
        .par_iter()
        .map(|t| {
            let tile = crate::tile::tile_coord(t.id).unwrap_or(TileCoord { z: 0, x: 0, y: 0 });
            let frags = batch.frags.get(t.frags.clone()).unwrap_or(&[]);
            let mut a = assemble(tile, batch, frags, ctx, zoom, defer_gzip, protect)?;
            a.run = t.run;
            Ok(a)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Damaged spill data and a refused gzip are not the input's fault: exit codes that say a
    /// retry may help (damaged) or that it is a defect (gzip), not "bad input".
    #[test]
    fn tile_failures_are_classed_by_whose_fault_they_are() {
        use crate::tiler::{FailureKind, TilerError};
        let tile = TileCoord { z: 3, x: 1, y: 2 };
        let kind = |e: TileLimitError| TilerError::Tile(e).kind();
        assert_eq!(kind(TileLimitError::Damaged(tile)), FailureKind::Temporary);
        let refused = TileLimitError::gzip(tile)(std::io::Error::other("no room"));
        assert_eq!(refused.to_string(), "tile z3/1/2: gzip: no room");
        assert_eq!(kind(refused), FailureKind::Internal);
        let over = TileLimitError::OverLimit {
            tile,
            bytes: 2,
            features: 1,
            detail: 12,
            max_bytes: 1,
            max_features: 1,
        };
        assert_eq!(kind(over), FailureKind::BadInput);
    }

    #[test]
    fn gzip_round_trips_and_reuses_state() {
        for data in [
            Vec::new(),
            b"hello".to_vec(),
            (0..200_000u32)
                .flat_map(|i| (i % 251).to_le_bytes())
                .collect(),
            // Incompressible: stored blocks, output larger than the input.
            (0..300_000u64)
                .map(|i| {
                    (i.wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407)
                        >> 56) as u8
                })
                .collect(),
            // 340 KB of text that compresses like a big tile.
            (0..10_000u64)
                .flat_map(|i| {
                    let x = i
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    format!(
                        "{i},{:.5},{:.5},feature {}\n",
                        (x >> 40) as f64 / 1e5,
                        (x >> 20 & 0xfffff) as f64 / 1e4,
                        x >> 58
                    )
                    .into_bytes()
                })
                .collect(),
        ] {
            for _ in 0..2 {
                let z = gzip(&data).unwrap();
                let mut back = Vec::new();
                flate2::read::GzDecoder::new(&z[..])
                    .read_to_end(&mut back)
                    .unwrap();
                assert_eq!(back, data);
                // The same bytes as a fresh compressor on another thread: archives do not
                // change with the reuse, nor with which rayon thread gzips a tile.
                let fresh =
                    std::thread::scope(|sc| sc.spawn(|| gzip(&data).unwrap()).join()).unwrap();
                assert_eq!(z, fresh);
                // A plain gzip member: no name, no time, so identical tiles stay identical.
                assert_eq!(z[..10], [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
            }
        }
    }
}
