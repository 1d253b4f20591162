//! Vector tile bytes as PMTiles stores them (gzip), checked on the way: a gzip tile is inflated
//! once, into nothing, with a bound, and copied as it was; a zlib tile is inflated (bounded)
//! and gzipped; a raw MVT is gzipped.

use std::borrow::Cow;
use std::io::{self, Read, Write};

/// Why a vector tile was refused.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum TileError {
    /// It inflates to more than the limit.
    TooLarge,
    /// Corrupt compressed data; the message says what is wrong.
    Bad(String),
}

pub(super) fn is_zlib(d: &[u8]) -> bool {
    matches!(d, [cmf, flg, ..] if cmf & 0x0f == 8 && cmf >> 4 <= 7 && (u16::from(*cmf) * 256 + u16::from(*flg)) % 31 == 0)
}

fn is_gzip(d: &[u8]) -> bool {
    d.starts_with(&[0x1f, 0x8b])
}

/// A vector tile as gzip: gzip checked and borrowed as it is, zlib re-wrapped, raw MVT
/// compressed. No compressed tile may inflate to more than `limit` bytes.
pub(super) fn to_gzip(data: &[u8], limit: u64) -> Result<Cow<'_, [u8]>, TileError> {
    if is_gzip(data) {
        check_gzip(data, limit)?;
        return Ok(Cow::Borrowed(data));
    }
    let raw;
    let plain: &[u8] = if is_zlib(data) {
        let mut out = Vec::new();
        flate2::read::ZlibDecoder::new(data)
            .take(limit.saturating_add(1))
            .read_to_end(&mut out)
            .map_err(|e| TileError::Bad(format!("bad zlib data: {e}")))?;
        if out.len() as u64 > limit {
            return Err(TileError::TooLarge);
        }
        raw = out;
        &raw
    } else {
        data
    };
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(plain.len() / 2 + 32),
        flate2::Compression::default(),
    );
    enc.write_all(plain)
        .and_then(|()| enc.finish())
        .map(Cow::Owned)
        .map_err(|e| TileError::Bad(format!("gzip: {e}")))
}

/// Inflates gzip `data` into nothing, counting, and stops one byte past `limit`: memory is the
/// decoder's window and a copy buffer whatever the data, work at most `limit` bytes of output.
///
/// Every member is read (a client may decode them all), the CRC and length of each are
/// checked, and bytes after the last member that are not another member are corrupt.
/// Returns the inflated length.
pub(super) fn check_gzip(data: &[u8], limit: u64) -> Result<u64, TileError> {
    let mut decoder = flate2::bufread::MultiGzDecoder::new(data).take(limit.saturating_add(1));
    let n = io::copy(&mut decoder, &mut io::sink())
        .map_err(|e| TileError::Bad(format!("corrupt gzip data: {e}")))?;
    if n > limit {
        return Err(TileError::TooLarge);
    }
    Ok(n)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn gzip_normalisation() {
        let raw = b"\x1a\x02\x78\x02".to_vec();
        let gz = to_gzip(&raw, 1 << 20).unwrap().into_owned();
        assert!(gz.starts_with(&[0x1f, 0x8b]));
        assert!(matches!(to_gzip(&gz, 1 << 20).unwrap(), Cow::Borrowed(b) if b == gz));
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&raw).unwrap();
        let z = z.finish().unwrap();
        let gz2 = to_gzip(&z, 1 << 20).unwrap();
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz2[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, raw);
        // The zlib path has the same bound.
        assert_eq!(to_gzip(&z, 3), Err(TileError::TooLarge));
    }

    #[test]
    fn gzip_limit_is_inclusive() {
        let gz = gzip(&[7u8; 1000]);
        assert_eq!(check_gzip(&gz, 1000), Ok(1000));
        assert_eq!(check_gzip(&gz, 999), Err(TileError::TooLarge));
        assert_eq!(check_gzip(&gzip(b""), 0), Ok(0));
    }

    #[test]
    fn every_gzip_member_counts() {
        let mut two = gzip(&[1u8; 600]);
        two.extend_from_slice(&gzip(&[2u8; 600]));
        assert_eq!(check_gzip(&two, 1200), Ok(1200));
        assert_eq!(check_gzip(&two, 1000), Err(TileError::TooLarge));
    }

    #[test]
    fn corrupt_gzip_is_refused() {
        let good = gzip(b"\x1a\x02\x78\x02 some layer bytes");
        let bad = |d: &[u8]| matches!(check_gzip(d, 1 << 20), Err(TileError::Bad(_)));
        // Truncated: no trailer.
        assert!(bad(&good[..good.len() - 4]));
        // Header only.
        assert!(bad(&good[..10]));
        // A flipped CRC byte.
        let mut crc = good.clone();
        let i = crc.len() - 8;
        crc[i] ^= 0xff;
        assert!(bad(&crc));
        // A wrong length in the trailer.
        let mut len = good.clone();
        let i = len.len() - 1;
        len[i] ^= 0x01;
        assert!(bad(&len));
        // Garbage after the member.
        let mut tail = good.clone();
        tail.extend_from_slice(b"junk");
        assert!(bad(&tail));
        // The magic and nothing valid after it.
        assert!(bad(&[0x1f, 0x8b, 0x08, 0x00, 0xff, 0xff]));
        // And the good one passes.
        assert!(check_gzip(&good, 1 << 20).is_ok());
    }
}
