//! MapLibre Tiles (MLT, PMTiles tile type 6): our MVT tiles transcoded with the format's
//! reference Rust implementation (`mlt-core`), and MLT read back as MVT.
//!
//! The tiler makes every tile as MVT first (its limits and reductions are MVT's, as in
//! tippecanoe), then writes it as MLT when asked (`--tile-format mlt`); the tile server uses the
//! same call to serve an MVT archive as MLT. MLT is columnar: each layer's ids, geometries and
//! property columns get their own lightweight encodings (delta, RLE, FastPFOR, FSST,
//! dictionaries), chosen per column for the smallest result.

use std::collections::HashMap;

use mlt_core::encoder::EncoderConfig;
use mlt_core::mvt::{mvt_to_tile_layers, tile_layers_to_mvt};
use mlt_core::{Decoder, Layer, Parser};

use crate::mvt::{LayerBuilder, PropValue, decode_tile, encode_tile, value_text};

/// The most memory the reference decoder may take for one tile.
const MAX_DECODED_BYTES: u32 = 64 << 20;

/// How much of a tile the MVT → MLT transcoding may take on. `mlt-core` builds one row per
/// feature with a slot for every key of the layer (about 48 bytes each), and copies each tag's
/// text; a small hostile tile can ask for gigabytes of either.
#[derive(Debug, Clone, Copy)]
pub struct MltLimits {
    /// Features × distinct keys, per layer.
    pub max_slots: u64,
    /// Key and string-value bytes over all tags of a layer.
    pub max_tag_text: u64,
}

impl MltLimits {
    /// For tiles from elsewhere (the tile server): about 200 MiB of rows and 64 MiB of text.
    pub const SERVE: MltLimits = MltLimits {
        max_slots: 4 << 20,
        max_tag_text: 64 << 20,
    };
    /// For the tiler's own tiles (at most `-O` features each): four times as much.
    pub const TILER: MltLimits = MltLimits {
        max_slots: 16 << 20,
        max_tag_text: 256 << 20,
    };
}

/// Why a tile could not be transcoded.
#[derive(Debug, thiserror::Error)]
pub enum MltError {
    /// The reference implementation refused the tile.
    #[error("{0}")]
    Codec(#[from] mlt_core::MltError),
    /// The reference implementation panicked on the tile (caught; a bug to report upstream).
    #[error("the MLT encoder failed on this tile: {0}")]
    Panicked(String),
    /// The MVT given is not a valid tile.
    #[error("MVT: {0}")]
    Mvt(#[from] crate::mvt::MvtError),
    /// A layer is too large to transcode within [`MltLimits`].
    #[error(
        "layer {layer} has {features} features × {keys} keys and {text} bytes of tag text, over the MLT transcoding limit ({max_slots} feature-keys, {max_text} bytes)"
    )]
    TooWide {
        layer: usize,
        features: u64,
        keys: u64,
        text: u64,
        max_slots: u64,
        max_text: u64,
    },
}

/// Transcodes one (uncompressed) MVT tile to MLT. With `keep_order`, each layer's features stay
/// in the MVT's order (the tiler's `--order-*`); otherwise the encoder may sort them (by space or
/// id) when that encodes smaller. An MVT without features gives an empty tile.
///
/// An MLT property column has one type, where an MVT key may hold any value in any feature; see
/// [`uniform_columns`] for what a mixed key becomes.
pub fn mvt_to_mlt(mvt: &[u8], keep_order: bool, limits: MltLimits) -> Result<Vec<u8>, MltError> {
    for (layer, s) in crate::mvt::tile_stats(mvt)?.into_iter().enumerate() {
        if s.features.saturating_mul(s.keys) > limits.max_slots
            || s.tag_text_bytes > limits.max_tag_text
        {
            return Err(MltError::TooWide {
                layer,
                features: s.features,
                keys: s.keys,
                text: s.tag_text_bytes,
                max_slots: limits.max_slots,
                max_text: limits.max_tag_text,
            });
        }
    }
    let uniform = uniform_columns(mvt)?;
    let mvt = uniform.as_deref().unwrap_or(mvt);
    guard(|| {
        // What MapLibre GL JS decodes: no FastPFOR (decoded only from 5.15; MapLibre Native only
        // when built with it), and no FSST (5.24's decoder fails on an FSST string column
        // without nulls: "Cannot read properties of null (reading 'size')"). Dictionaries and
        // the integer encodings remain.
        let mut cfg = EncoderConfig::default()
            .with_fastpfor(false)
            .with_fsst(false);
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

/// The type class of a value, as a bit, for [`uniform_columns`]. `mlt-core` makes a column of
/// unsigned integers `u64`, of unsigned and signed ones `i64` (an unsigned one above
/// `i64::MAX` then does not fit), of `f32` and `f64` values `f64`; any other mix is text.
const UINT: u8 = 1;
const BIG_UINT: u8 = 2;
const SIGNED: u8 = 4;
const FLOAT: u8 = 8;
const BOOL: u8 = 16;
const STR: u8 = 32;
const NUMBERS: u8 = UINT | BIG_UINT | SIGNED | FLOAT;

fn kind(v: &PropValue) -> u8 {
    match v {
        PropValue::UInt(u) if i64::try_from(*u).is_err() => BIG_UINT,
        PropValue::UInt(_) => UINT,
        PropValue::SInt(_) | PropValue::Int(_) => SIGNED,
        PropValue::Float(_) | PropValue::Double(_) => FLOAT,
        PropValue::Bool(_) => BOOL,
        PropValue::String(_) => STR,
    }
}

/// How `mlt-core` would store a key whose values have the kinds in `mask`.
fn column(mask: u8) -> Column {
    let fine =
        mask.count_ones() <= 1 || mask & !(UINT | BIG_UINT) == 0 || mask & !(UINT | SIGNED) == 0;
    if fine {
        Column::Keep
    } else if mask & !NUMBERS == 0 {
        Column::Double
    } else {
        Column::Text
    }
}

/// What one key of a layer becomes when its values are not all of one MLT type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    /// As it is: one type, or a mix `mlt-core` widens without loss.
    Keep,
    /// Numbers of several kinds (integers and floats, or integers beyond `i64` with negative
    /// ones): all as doubles (exact up to 2^53).
    Double,
    /// Numbers, booleans and strings mixed: all as text (`90`, `88.25`, `true`).
    Text,
}

/// The MVT rewritten so that every key of a layer holds values of one MLT type, or `None` when
/// it does already. `mlt-core` would otherwise write each value of a mixed key as its Rust debug
/// text (`UInt(90)`); here mixed numbers become doubles and numbers mixed with text or booleans
/// become text, each feature keeping its value.
pub fn uniform_columns(mvt: &[u8]) -> Result<Option<Vec<u8>>, MltError> {
    let layers = decode_tile(mvt)?;
    let mut plans: Vec<HashMap<String, Column>> = Vec::with_capacity(layers.len());
    let mut any = false;
    for l in &layers {
        let mut kinds: HashMap<&str, u8> = HashMap::new();
        for f in &l.features {
            for (k, v) in &f.props {
                *kinds.entry(k.as_str()).or_insert(0) |= kind(v);
            }
        }
        let mut plan = HashMap::new();
        for (k, mask) in kinds {
            let c = column(mask);
            if c != Column::Keep {
                plan.insert(k.to_owned(), c);
                any = true;
            }
        }
        plans.push(plan);
    }
    if !any {
        return Ok(None);
    }
    let mut builders = Vec::with_capacity(layers.len());
    for (l, plan) in layers.iter().zip(&plans) {
        let mut b = LayerBuilder::new(l.name.clone(), l.extent);
        for f in &l.features {
            let props: Vec<(&str, PropValue)> = f
                .props
                .iter()
                .map(|(k, v)| {
                    let v = match plan.get(k).copied().unwrap_or(Column::Keep) {
                        Column::Keep => v.clone(),
                        Column::Double => PropValue::Double(as_double(v)),
                        Column::Text => PropValue::String(value_text(v)),
                    };
                    (k.as_str(), v)
                })
                .collect();
            b.add_feature(f.id, &f.geom, &props);
        }
        builders.push(b);
    }
    Ok(Some(encode_tile(&builders)))
}

fn as_double(v: &PropValue) -> f64 {
    match v {
        PropValue::UInt(u) => *u as f64,
        PropValue::SInt(i) | PropValue::Int(i) => *i as f64,
        PropValue::Float(f) => f64::from(*f),
        PropValue::Double(d) => *d,
        PropValue::Bool(b) => f64::from(u8::from(*b)),
        PropValue::String(_) => f64::NAN,
    }
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

    fn features(mvt: &[u8]) -> Vec<String> {
        crate::mvt::feature_lines(mvt).unwrap()
    }

    #[test]
    fn round_trip_keeps_every_feature() {
        let mvt = sample();
        for keep_order in [false, true] {
            let mlt = mvt_to_mlt(&mvt, keep_order, MltLimits::SERVE).unwrap();
            assert!(!mlt.is_empty());
            let back = mlt_to_mvt(&mlt).unwrap();
            assert_eq!(features(&back), features(&mvt), "keep_order {keep_order}");
        }
        assert!(
            mvt_to_mlt(&encode_tile(&[]), false, MltLimits::SERVE)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn mixed_keys_keep_their_values() {
        let mut l = LayerBuilder::new("t", 4096);
        let vals = [
            (
                PropValue::UInt(90),
                PropValue::UInt(1),
                PropValue::String("a".into()),
            ),
            (
                PropValue::Double(88.25),
                PropValue::SInt(-2),
                PropValue::Bool(true),
            ),
            (
                PropValue::UInt(u64::MAX),
                PropValue::UInt(3),
                PropValue::UInt(7),
            ),
        ];
        for (i, (a, b, c)) in vals.iter().enumerate() {
            l.add_feature(
                Some(i as u64),
                &TileGeom::Points(vec![[i as i32, 1]]),
                &[("num", a.clone()), ("int", b.clone()), ("mix", c.clone())],
            );
        }
        let mvt = encode_tile(&[l]);
        let back =
            decode_tile(&mlt_to_mvt(&mvt_to_mlt(&mvt, true, MltLimits::SERVE).unwrap()).unwrap())
                .unwrap();
        let f = &back[0].features;
        let get = |i: usize, k: &str| f[i].props.iter().find(|(n, _)| n == k).unwrap().1.clone();
        // Numbers of several kinds: doubles; integers that fit i64 stay integers.
        assert_eq!(as_double(&get(0, "num")), 90.0);
        assert_eq!(as_double(&get(1, "num")), 88.25);
        assert_eq!(as_double(&get(2, "num")), u64::MAX as f64);
        assert_eq!(as_double(&get(1, "int")), -2.0);
        assert!(matches!(
            get(1, "int"),
            PropValue::SInt(-2) | PropValue::Int(-2)
        ));
        // Numbers, text and booleans: text, never a debug spelling.
        assert_eq!(get(0, "mix"), PropValue::String("a".into()));
        assert_eq!(get(1, "mix"), PropValue::String("true".into()));
        assert_eq!(get(2, "mix"), PropValue::String("7".into()));
        // One type per key already: passed through untouched.
        assert!(uniform_columns(&sample()).unwrap().is_none());
        // Mixes mlt-core widens without loss are left to it.
        assert_eq!(column(UINT | BIG_UINT), Column::Keep);
        assert_eq!(column(UINT | SIGNED), Column::Keep);
        assert_eq!(column(BIG_UINT | SIGNED), Column::Double);
        assert_eq!(column(UINT | FLOAT), Column::Double);
        assert_eq!(column(STR | UINT), Column::Text);
        assert_eq!(column(BOOL | STR), Column::Text);
    }

    #[test]
    fn a_tile_too_wide_to_transcode_is_refused_before_decoding() {
        // 20,000 features, each naming one 10 KB string: 200 MB of tag text from a tile of a
        // few hundred KB (that gzips to far less).
        let long = PropValue::String("y".repeat(10_000));
        let mut l = LayerBuilder::new("w", 4096);
        for i in 0..20_000u64 {
            l.add_feature(
                Some(i),
                &TileGeom::Points(vec![[1, 1]]),
                &[("s", long.clone())],
            );
        }
        let mvt = encode_tile(&[l]);
        assert!(mvt.len() < 1_000_000, "{} bytes", mvt.len());
        let err = mvt_to_mlt(&mvt, false, MltLimits::SERVE).unwrap_err();
        assert!(
            matches!(
                err,
                MltError::TooWide {
                    features: 20_000,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn hostile_bytes_are_errors_not_panics() {
        let mlt = mvt_to_mlt(&sample(), false, MltLimits::SERVE).unwrap();
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
        assert!(mvt_to_mlt(b"\xff\xff\xff", false, MltLimits::SERVE).is_err());
    }
}
