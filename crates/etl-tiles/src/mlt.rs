//! MapLibre Tiles (MLT, PMTiles tile type 6): our MVT tiles transcoded with the format's
//! reference Rust implementation (`mlt-core`), and MLT read back as MVT.
//!
//! The tiler makes every tile as MVT first (its limits and reductions are MVT's, as in
//! tippecanoe), then writes it as MLT when asked (`--tile-format mlt`); the tile server uses the
//! same call to serve an MVT archive as MLT. MLT is columnar: each layer's ids, geometries and
//! property columns get their own lightweight encodings (delta, RLE, FastPFOR, FSST,
//! dictionaries), chosen per column for the smallest result.

use mlt_core::encoder::EncoderConfig;
use mlt_core::mvt::{mvt_to_tile_layers, tile_layers_to_mvt};
use mlt_core::{Decoder, Layer, Parser};

/// The most memory the reference decoder may take for one tile.
const MAX_DECODED_BYTES: u32 = 256 << 20;

/// Why a tile could not be transcoded.
#[derive(Debug, thiserror::Error)]
pub enum MltError {
    /// The reference implementation refused the tile.
    #[error("{0}")]
    Codec(#[from] mlt_core::MltError),
    /// The reference implementation panicked on the tile (caught; a bug to report upstream).
    #[error("the MLT encoder failed on this tile: {0}")]
    Panicked(String),
}

/// Transcodes one (uncompressed) MVT tile to MLT. With `keep_order`, each layer's features stay
/// in the MVT's order (the tiler's `--order-*`); otherwise the encoder may sort them (by space or
/// id) when that encodes smaller. An MVT without features gives an empty tile.
pub fn mvt_to_mlt(mvt: &[u8], keep_order: bool) -> Result<Vec<u8>, MltError> {
    guard(|| {
        let mut cfg = EncoderConfig::default();
        if keep_order {
            cfg = cfg
                .with_spatial_morton_sort(false)
                .with_spatial_hilbert_sort(false)
                .with_id_sort(false);
        }
        let mut out = Vec::new();
        for layer in mvt_to_tile_layers(mvt)? {
            out.extend_from_slice(&layer.encode(cfg)?);
        }
        Ok(out)
    })
}

/// Decodes an MLT tile with the reference decoder and writes it as MVT (layers of unknown MLT
/// kinds are left out).
pub fn mlt_to_mvt(mlt: &[u8]) -> Result<Vec<u8>, MltError> {
    guard(|| {
        let mut parser = Parser::with_max_size(MAX_DECODED_BYTES);
        let mut dec = Decoder::with_max_size(MAX_DECODED_BYTES);
        let mut layers = Vec::new();
        for layer in parser.parse_layers(mlt)? {
            if let Layer::Tag01(l) = layer {
                layers.push(l.into_tile(&mut dec)?);
            }
        }
        Ok(tile_layers_to_mvt(layers)?)
    })
}

/// Runs `f`, turning a panic inside the reference implementation into an error.
fn guard<T>(f: impl FnOnce() -> Result<T, MltError>) -> Result<T, MltError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => Err(MltError::Panicked(
            p.downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic without a message".to_owned()),
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::geom::TileGeom;
    use crate::mvt::{LayerBuilder, PropValue, decode_tile, encode_tile};

    fn sample() -> Vec<u8> {
        let mut pts = LayerBuilder::new("pts", 4096);
        for i in 0..50i32 {
            pts.add_feature(
                Some(i as u64),
                &TileGeom::Points(vec![[i * 40, 4000 - i * 30]]),
                &[
                    ("name", PropValue::String(format!("p{i}"))),
                    ("n", PropValue::UInt(i as u64)),
                ],
            );
        }
        let mut lines = LayerBuilder::new("lines", 4096);
        lines.add_feature(
            None,
            &TileGeom::Lines(vec![vec![[0, 0], [100, 100], [200, 50]]]),
            &[("kind", PropValue::String("road".into()))],
        );
        let mut polys = LayerBuilder::new("polys", 4096);
        polys.add_feature(
            Some(7),
            &TileGeom::Polygons(vec![vec![vec![
                [0, 0],
                [100, 0],
                [100, 100],
                [0, 100],
                [0, 0],
            ]]]),
            &[("levels", PropValue::SInt(-2))],
        );
        encode_tile(&[pts, lines, polys])
    }

    /// (layer, id, geometry, sorted properties) of every feature, in a canonical order.
    fn features(mvt: &[u8]) -> Vec<String> {
        let mut out: Vec<String> = decode_tile(mvt)
            .unwrap()
            .into_iter()
            .flat_map(|l| {
                let name = l.name.clone();
                l.features.into_iter().map(move |f| {
                    let mut props: Vec<String> = f
                        .props
                        .iter()
                        .map(|(k, v)| {
                            let v = match v {
                                PropValue::String(s) => s.clone(),
                                PropValue::Double(d) => d.to_string(),
                                PropValue::Float(x) => x.to_string(),
                                PropValue::UInt(u) => u.to_string(),
                                PropValue::SInt(i) | PropValue::Int(i) => i.to_string(),
                                PropValue::Bool(b) => b.to_string(),
                            };
                            format!("{k}={v}")
                        })
                        .collect();
                    props.sort();
                    format!("{name} {:?} {:?} {props:?}", f.id, f.geom)
                })
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn round_trip_keeps_every_feature() {
        let mvt = sample();
        for keep_order in [false, true] {
            let mlt = mvt_to_mlt(&mvt, keep_order).unwrap();
            assert!(!mlt.is_empty());
            let back = mlt_to_mvt(&mlt).unwrap();
            assert_eq!(features(&back), features(&mvt), "keep_order {keep_order}");
        }
        assert!(mvt_to_mlt(&encode_tile(&[]), false).unwrap().is_empty());
    }

    #[test]
    fn hostile_bytes_are_errors_not_panics() {
        let mlt = mvt_to_mlt(&sample(), false).unwrap();
        // Cut anywhere or with any byte changed: an error or some tile, never a panic (a cut
        // at a layer boundary is a smaller valid tile).
        let mut refused = 0;
        for cut in 1..mlt.len() {
            refused += usize::from(mlt_to_mvt(&mlt[..cut]).is_err());
        }
        assert!(
            refused > mlt.len() / 2,
            "{refused} of {} cuts refused",
            mlt.len()
        );
        let mut flipped = mlt.clone();
        for i in 0..flipped.len() {
            flipped[i] ^= 0x5a;
            if let Ok(mvt) = mlt_to_mvt(&flipped) {
                assert!(
                    decode_tile(&mvt).is_ok(),
                    "byte {i}: what decodes re-encodes"
                );
            }
            flipped[i] ^= 0x5a;
        }
        assert!(mvt_to_mlt(b"\xff\xff\xff", false).is_err());
    }
}
