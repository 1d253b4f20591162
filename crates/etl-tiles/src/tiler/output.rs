//! The stored form of a finished tile: gzipped MVT, or MLT (gzipped) with `--tile-format mlt`.
//!
//! Tiles are assembled, held to their limits and reduced as MVT (the limits are MVT's, as in
//! tippecanoe); this last step brings a batch of them to the archive's format in parallel, just
//! before they are written.

use rayon::prelude::*;

use super::TilerError;
use super::assemble::{Assembled, gzip};
use crate::mlt::{MltError, MltLimits, mvt_to_mlt};

/// The tile encoding an archive is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TileFormat {
    /// Mapbox Vector Tiles (PMTiles tile type 1).
    #[default]
    Mvt,
    /// MapLibre Tiles (PMTiles tile type 6), transcoded from the MVT with `mlt-core`.
    Mlt,
}

/// How finished tiles are stored.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Output {
    pub format: TileFormat,
    /// The features' order within a layer matters (`--order-*`): the MLT encoder may not sort.
    pub keep_order: bool,
}

/// Brings one tile to its stored form (a no-op when it is there already).
pub(crate) fn finish(a: &mut Assembled, out: Output) -> Result<(), TilerError> {
    let Some(data) = &a.data else {
        a.gz = true;
        a.stored = true;
        return Ok(());
    };
    if a.stored {
        return Ok(());
    }
    match out.format {
        TileFormat::Mvt => {
            if !a.gz {
                a.data = Some(gzip(data)?);
                a.gz = true;
            }
        }
        TileFormat::Mlt => {
            let raw;
            let mvt = if a.gz {
                raw = gunzip(data)?;
                &raw
            } else {
                data
            };
            let mlt =
                mvt_to_mlt(mvt, out.keep_order, MltLimits::TILER).map_err(|e| TilerError::Mlt {
                    tile: a.tile,
                    too_wide: matches!(e, MltError::TooWide { .. }),
                    reason: e.to_string(),
                })?;
            a.data = if mlt.is_empty() {
                None
            } else {
                Some(gzip(&mlt)?)
            };
            a.gz = true;
        }
    }
    a.stored = true;
    Ok(())
}

/// [`finish`] for many tiles in parallel; the first error (in tile order) wins.
pub(crate) fn finish_all<'a>(
    tiles: impl IntoParallelIterator<Item = &'a mut Assembled>,
    out: Output,
) -> Result<(), TilerError> {
    let results: Vec<Result<(), TilerError>> =
        tiles.into_par_iter().map(|a| finish(a, out)).collect();
    results.into_iter().collect()
}

fn gunzip(data: &[u8]) -> Result<Vec<u8>, TilerError> {
    use std::io::Read;
    let mut out = Vec::with_capacity(data.len() * 4);
    flate2::read::GzDecoder::new(data).read_to_end(&mut out)?;
    Ok(out)
}
