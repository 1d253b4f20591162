//! What decoding a tile would cost, read without decoding it: per layer, the features, the
//! distinct keys, and the bytes of text its tags refer to (each tag copies its key and value
//! when a decoder builds rows). A tile of 100 KB can refer to the same long string from every
//! tag of every feature; callers bound these numbers before decoding untrusted tiles.

use super::MvtError;
use super::decode::{Reader, read_u32s};
use super::encode::{WIRE_LEN, WIRE_VARINT};

/// The decoding cost of one layer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerStats {
    pub features: u64,
    pub keys: u64,
    /// Tag pairs over all features.
    pub tags: u64,
    /// Bytes of keys and string values over all tags (a value used by 1,000 features counts
    /// 1,000 times).
    pub tag_text_bytes: u64,
}

/// [`LayerStats`] of every layer, in order. Errors only on protobuf it cannot walk; values
/// and geometry are not checked (the decoder does that).
pub fn tile_stats(bytes: &[u8]) -> Result<Vec<LayerStats>, MvtError> {
    let mut r = Reader::new(bytes, 0);
    let mut out = Vec::new();
    while !r.done() {
        let (field, wire) = r.key()?;
        if field == 3 && wire == WIRE_LEN {
            let (b, at) = r.bytes()?;
            out.push(layer_stats(b, at)?);
        } else {
            r.skip(wire)?;
        }
    }
    Ok(out)
}

fn layer_stats(buf: &[u8], base: usize) -> Result<LayerStats, MvtError> {
    let mut r = Reader::new(buf, base);
    let mut key_len: Vec<u64> = Vec::new();
    let mut value_len: Vec<u64> = Vec::new();
    let mut features: Vec<(&[u8], usize)> = Vec::new();
    while !r.done() {
        let (field, wire) = r.key()?;
        match (field, wire) {
            (2, WIRE_LEN) => features.push(r.bytes()?),
            (3, WIRE_LEN) => key_len.push(r.bytes()?.0.len() as u64),
            (4, WIRE_LEN) => {
                // The string's length, or 8 for a number or boolean.
                let (b, at) = r.bytes()?;
                let mut v = Reader::new(b, at);
                let mut len = 8;
                while !v.done() {
                    let (f, w) = v.key()?;
                    if f == 1 && w == WIRE_LEN {
                        len = v.bytes()?.0.len() as u64;
                    } else {
                        v.skip(w)?;
                    }
                }
                value_len.push(len);
            }
            _ => r.skip(wire)?,
        }
    }
    let mut s = LayerStats {
        features: features.len() as u64,
        keys: key_len.len() as u64,
        ..LayerStats::default()
    };
    let mut tags = Vec::new();
    for (b, at) in features {
        let mut f = Reader::new(b, at);
        tags.clear();
        while !f.done() {
            let (field, wire) = f.key()?;
            if field == 2 && (wire == WIRE_LEN || wire == WIRE_VARINT) {
                read_u32s(&mut f, wire, field, "tag", &mut tags)?;
            } else {
                f.skip(wire)?;
            }
        }
        s.tags += (tags.len() / 2) as u64;
        for pair in tags.chunks_exact(2) {
            let k = key_len.get(pair[0] as usize).copied().unwrap_or(0);
            let v = value_len.get(pair[1] as usize).copied().unwrap_or(0);
            s.tag_text_bytes = s.tag_text_bytes.saturating_add(k + v);
        }
    }
    Ok(s)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::geom::TileGeom;
    use crate::mvt::{LayerBuilder, PropValue, encode_tile};

    #[test]
    fn counts_what_a_decoder_would_copy() {
        let long = "x".repeat(1000);
        let mut a = LayerBuilder::new("a", 4096);
        for i in 0..10 {
            a.add_feature(
                Some(i),
                &TileGeom::Points(vec![[1, 1]]),
                &[
                    ("k", PropValue::String(long.clone())),
                    ("n", PropValue::UInt(i)),
                ],
            );
        }
        let mut b = LayerBuilder::new("b", 4096);
        b.add_feature(None, &TileGeom::Points(vec![[1, 1]]), &[]);
        let s = tile_stats(&encode_tile(&[a, b])).unwrap();
        assert_eq!(
            s[0],
            LayerStats {
                features: 10,
                keys: 2,
                tags: 20,
                // One 1000-byte string per feature (stored once), its key, and "n" with a number.
                tag_text_bytes: 10 * (1 + 1000) + 10 * (1 + 8),
            }
        );
        assert_eq!(s[1].features, 1);
        assert_eq!(s[1].tags, 0);
        assert!(tile_stats(&[0x1a, 0x05, 0x12]).is_err());
    }
}
