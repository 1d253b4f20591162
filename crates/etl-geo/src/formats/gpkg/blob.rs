//! The GeoPackage binary geometry header (GeoPackage 1.x, §2.1.3): `GP`, a version byte,
//! a flags byte, the `srs_id` and an optional envelope, followed by standard WKB.
//!
//! Flags, from the low bit: the byte order of `srs_id` and the envelope (1 = little endian),
//! three bits of envelope contents (0 none, 1 xy, 2 xyz, 3 xym, 4 xyzm; 5–7 invalid), the
//! empty-geometry bit and the extended-type bit (`ExtendedGeoPackageBinary`, a geometry type
//! only an extension can read: refused). The top two bits are reserved and ignored.

use geo_types::Geometry;

use crate::formats::wkb;
use crate::repair::Repairs;

/// What a geometry blob holds.
#[derive(Debug, PartialEq)]
pub(super) enum Blob<'a> {
    /// The empty-geometry flag is set: no geometry, whatever the WKB says.
    Empty,
    /// The WKB after the header (and its envelope).
    Wkb(&'a [u8]),
}

/// Splits a GeoPackage geometry blob into its header and WKB, checking the header. The
/// message says what is wrong.
pub(super) fn split(blob: &[u8]) -> Result<Blob<'_>, String> {
    let Some((&[g, p, version, flags], rest)) = blob.split_first_chunk::<4>() else {
        return Err(format!(
            "geometry blob of {} bytes is shorter than a GeoPackage geometry header",
            blob.len()
        ));
    };
    if [g, p] != *b"GP" {
        return Err(format!(
            "geometry blob does not start with the GeoPackage magic \"GP\" (it starts with {g:#04x} {p:#04x})"
        ));
    }
    if version != 0 {
        return Err(format!(
            "GeoPackage geometry blob version {version} is not supported (only 0, version 1)"
        ));
    }
    if flags & 0b0010_0000 != 0 {
        return Err(
            "extended GeoPackage geometry (a geometry type defined by an extension) is not supported"
                .into(),
        );
    }
    let envelope = match (flags >> 1) & 0b111 {
        0 => 0,
        1 => 32,
        2 | 3 => 48,
        4 => 64,
        other => {
            return Err(format!(
                "GeoPackage geometry header has an invalid envelope indicator {other}"
            ));
        }
    };
    // The srs_id (4 bytes) is the layer's; the envelope is not needed.
    let skip = 4 + envelope;
    let Some(wkb) = rest.get(skip..) else {
        return Err(format!(
            "geometry blob of {} bytes ends inside its {}-byte GeoPackage header",
            blob.len(),
            8 + envelope
        ));
    };
    if flags & 0b0001_0000 != 0 {
        return Ok(Blob::Empty);
    }
    Ok(Blob::Wkb(wkb))
}

/// The geometry of a GeoPackage geometry blob in its layer's coordinates, Z and M dropped;
/// `None` for an empty geometry.
pub(super) fn geometry(
    blob: &[u8],
    repairs: &mut Repairs,
) -> Result<Option<Geometry<f64>>, String> {
    match split(blob)? {
        Blob::Empty => Ok(None),
        Blob::Wkb(bytes) => wkb::read(bytes, repairs).map_err(|e| e.to_string()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn header(flags: u8, envelope: usize) -> Vec<u8> {
        let mut b = vec![b'G', b'P', 0, flags];
        b.extend_from_slice(&4326i32.to_le_bytes());
        b.extend(std::iter::repeat_n(0u8, envelope));
        b
    }

    const POINT: [u8; 21] = [
        1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f, 0, 0, 0, 0, 0, 0, 0, 0x40,
    ];

    #[test]
    fn envelope_sizes() {
        for (indicator, size) in [(0u8, 0usize), (1, 32), (2, 48), (3, 48), (4, 64)] {
            let mut b = header(1 | (indicator << 1), size);
            b.extend_from_slice(&POINT);
            assert_eq!(
                split(&b),
                Ok(Blob::Wkb(&POINT[..])),
                "indicator {indicator}"
            );
            assert_eq!(
                geometry(&b, &mut Repairs::default()),
                Ok(Some(geo_types::point!(x: 1., y: 2.).into()))
            );
        }
        for indicator in 5u8..=7 {
            let b = header(1 | (indicator << 1), 64);
            assert!(split(&b).unwrap_err().contains("envelope indicator"));
        }
    }

    #[test]
    fn empty_flag_and_refusals() {
        let mut empty = header(0b0001_0001, 0);
        empty.extend_from_slice(&[1, 1, 0, 0, 0]);
        assert_eq!(geometry(&empty, &mut Repairs::default()), Ok(None));
        assert!(
            split(&header(0b0010_0001, 0))
                .unwrap_err()
                .contains("extended")
        );
        assert!(split(b"GP").unwrap_err().contains("shorter"));
        assert!(split(b"XP\0\x01abcd").unwrap_err().contains("magic"));
        let mut v2 = header(1, 0);
        v2[2] = 1;
        assert!(split(&v2).unwrap_err().contains("version 1"));
        // An envelope longer than the blob.
        assert!(
            split(&header(1 | (4 << 1), 10))
                .unwrap_err()
                .contains("ends inside")
        );
    }
}
