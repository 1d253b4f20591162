//! MVT decoder, written from the spec independently of the encoder so that tests of one check
//! the other. It never panics, and counts read from the input are checked against the bytes
//! that remain before anything is reserved. Each feature gets its own copy of every key and
//! value its tags name, so a small tile whose tags all name one long string decodes large:
//! bound that with [`super::tile_stats`] before decoding a tile from an untrusted source.

use std::collections::HashSet;

use super::encode::{
    CMD_CLOSE_PATH, CMD_LINE_TO, CMD_MOVE_TO, WIRE_FIXED32, WIRE_FIXED64, WIRE_LEN, WIRE_VARINT,
};
use super::{DecodedFeature, DecodedLayer, MvtError, PropValue};
use crate::geom::{TileGeom, ring_area2};

/// The proto2 default of `Layer.extent`.
const DEFAULT_EXTENT: u32 = 4096;

pub(super) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf` in the whole tile, for error messages.
    base: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8], base: usize) -> Self {
        Reader { buf, pos: 0, base }
    }

    pub(super) fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(super) fn varint(&mut self) -> Result<u64, MvtError> {
        let start = self.base + self.pos;
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = *self.buf.get(self.pos).ok_or(MvtError::Truncated(start))?;
            self.pos += 1;
            // The 10th byte may only carry the 64th bit.
            if i == 9 && b > 1 {
                return Err(MvtError::BadVarint(start));
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(MvtError::BadVarint(start))
    }

    pub(super) fn key(&mut self) -> Result<(u32, u8), MvtError> {
        let k = self.varint()?;
        let field = u32::try_from(k >> 3).map_err(|_| MvtError::OutOfRange("field number"))?;
        if field == 0 {
            return Err(MvtError::FieldZero);
        }
        Ok((field, (k & 7) as u8))
    }

    fn take(&mut self, n: usize) -> Result<(&'a [u8], usize), MvtError> {
        let start = self.pos;
        let end = start
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(MvtError::Truncated(self.base + start))?;
        self.pos = end;
        Ok((&self.buf[start..end], self.base + start))
    }

    pub(super) fn bytes(&mut self) -> Result<(&'a [u8], usize), MvtError> {
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| MvtError::Truncated(self.base + self.pos))?;
        self.take(len)
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], MvtError> {
        let (b, at) = self.take(N)?;
        b.try_into().map_err(|_| MvtError::Truncated(at))
    }

    pub(super) fn skip(&mut self, wire: u8) -> Result<(), MvtError> {
        match wire {
            WIRE_VARINT => self.varint().map(drop),
            WIRE_FIXED64 => self.take(8).map(drop),
            WIRE_LEN => self.bytes().map(drop),
            WIRE_FIXED32 => self.take(4).map(drop),
            other => Err(MvtError::BadWireType(other)),
        }
    }
}

fn expect_wire(message: &'static str, field: u32, wire: u8, expected: u8) -> Result<(), MvtError> {
    if wire == expected {
        Ok(())
    } else {
        Err(MvtError::WrongWireType {
            message,
            field,
            wire,
            expected,
        })
    }
}

fn to_u32(v: u64, what: &'static str) -> Result<u32, MvtError> {
    u32::try_from(v).map_err(|_| MvtError::OutOfRange(what))
}

fn utf8(b: &[u8], what: &'static str) -> Result<String, MvtError> {
    std::str::from_utf8(b)
        .map(str::to_owned)
        .map_err(|_| MvtError::Utf8(what))
}

/// Reads a `repeated uint32` field occurrence: packed (wire 2) or a single varint (wire 0), as
/// protobuf parsers must accept both. Occurrences concatenate.
pub(super) fn read_u32s(
    r: &mut Reader<'_>,
    wire: u8,
    field: u32,
    what: &'static str,
    out: &mut Vec<u32>,
) -> Result<(), MvtError> {
    match wire {
        WIRE_LEN => {
            let (b, at) = r.bytes()?;
            let mut p = Reader::new(b, at);
            while !p.done() {
                out.push(to_u32(p.varint()?, what)?);
            }
            Ok(())
        }
        WIRE_VARINT => {
            out.push(to_u32(r.varint()?, what)?);
            Ok(())
        }
        _ => expect_wire("Feature", field, wire, WIRE_LEN),
    }
}

/// Decodes a tile.
///
/// Errors on malformed protobuf and on what MVT 2.1 calls invalid: a layer without name or
/// version, a version other than 1/2, duplicate layer names, a value of no known type, odd or
/// out-of-range tags, an unknown geometry type, and geometry command streams that break the
/// grammar (wrong command for the type, counts without their parameters, ClosePath count ≠ 1).
///
/// Tolerant, defined results: unknown fields are skipped; repeated scalar fields take the last
/// occurrence and repeated packed fields concatenate (protobuf rules); features of type UNKNOWN
/// (0) are skipped, as are polygon rings of zero area (and a feature left without geometry);
/// cursor arithmetic wraps modulo 2^32 like the encoder's; a version-1 polygon whose first ring
/// is negative is read with that sign as exterior and its rings reversed into v2 winding.
pub fn decode_tile(bytes: &[u8]) -> Result<Vec<DecodedLayer>, MvtError> {
    let mut r = Reader::new(bytes, 0);
    let mut layers = Vec::new();
    let mut names = HashSet::new();
    while !r.done() {
        let (field, wire) = r.key()?;
        if field == 3 {
            expect_wire("Tile", field, wire, WIRE_LEN)?;
            let (b, at) = r.bytes()?;
            let layer = decode_layer(b, at)?;
            if !names.insert(layer.name.clone()) {
                return Err(MvtError::DuplicateLayer(layer.name));
            }
            layers.push(layer);
        } else {
            r.skip(wire)?;
        }
    }
    Ok(layers)
}

fn decode_layer(buf: &[u8], base: usize) -> Result<DecodedLayer, MvtError> {
    let mut r = Reader::new(buf, base);
    let mut name = None;
    let mut version = None;
    let mut extent = DEFAULT_EXTENT;
    let mut keys = Vec::new();
    let mut values = Vec::new();
    let mut raw_features = Vec::new();
    while !r.done() {
        let (field, wire) = r.key()?;
        match field {
            15 => {
                expect_wire("Layer", field, wire, WIRE_VARINT)?;
                version = Some(to_u32(r.varint()?, "layer version")?);
            }
            1 => {
                expect_wire("Layer", field, wire, WIRE_LEN)?;
                name = Some(utf8(r.bytes()?.0, "layer name")?);
            }
            2 => {
                expect_wire("Layer", field, wire, WIRE_LEN)?;
                raw_features.push(r.bytes()?);
            }
            3 => {
                expect_wire("Layer", field, wire, WIRE_LEN)?;
                keys.push(utf8(r.bytes()?.0, "key")?);
            }
            4 => {
                expect_wire("Layer", field, wire, WIRE_LEN)?;
                values.push(r.bytes()?);
            }
            5 => {
                expect_wire("Layer", field, wire, WIRE_VARINT)?;
                extent = to_u32(r.varint()?, "extent")?;
            }
            _ => r.skip(wire)?,
        }
    }
    let name = name.ok_or(MvtError::MissingName)?;
    let version = version.ok_or_else(|| MvtError::MissingVersion(name.clone()))?;
    if !(1..=2).contains(&version) {
        return Err(MvtError::UnsupportedVersion { name, version });
    }
    let values = values
        .into_iter()
        .map(|(b, at)| decode_value(b, at, &name))
        .collect::<Result<Vec<_>, _>>()?;
    let mut features = Vec::new();
    for (b, at) in raw_features {
        if let Some(f) = decode_feature(b, at, &keys, &values, version)? {
            features.push(f);
        }
    }
    Ok(DecodedLayer {
        name,
        extent,
        version,
        features,
    })
}

fn decode_value(buf: &[u8], base: usize, layer: &str) -> Result<PropValue, MvtError> {
    let mut r = Reader::new(buf, base);
    let mut value = None;
    while !r.done() {
        let (field, wire) = r.key()?;
        let v = match field {
            1 => {
                expect_wire("Value", field, wire, WIRE_LEN)?;
                PropValue::String(utf8(r.bytes()?.0, "string value")?)
            }
            2 => {
                expect_wire("Value", field, wire, WIRE_FIXED32)?;
                PropValue::Float(f32::from_le_bytes(r.fixed()?))
            }
            3 => {
                expect_wire("Value", field, wire, WIRE_FIXED64)?;
                PropValue::Double(f64::from_le_bytes(r.fixed()?))
            }
            4 => {
                expect_wire("Value", field, wire, WIRE_VARINT)?;
                PropValue::Int(r.varint()? as i64)
            }
            5 => {
                expect_wire("Value", field, wire, WIRE_VARINT)?;
                PropValue::UInt(r.varint()?)
            }
            6 => {
                expect_wire("Value", field, wire, WIRE_VARINT)?;
                let z = r.varint()?;
                PropValue::SInt(((z >> 1) as i64) ^ -((z & 1) as i64))
            }
            7 => {
                expect_wire("Value", field, wire, WIRE_VARINT)?;
                PropValue::Bool(r.varint()? != 0)
            }
            _ => {
                r.skip(wire)?;
                continue;
            }
        };
        value = Some(v);
    }
    // MVT 2.x has exactly these seven types; a value of any other would silently become a
    // missing property, so it is an error (mvt-fixtures 011 and 026 call it fatal).
    value.ok_or_else(|| MvtError::UnknownValueType(layer.to_owned()))
}

fn decode_feature(
    buf: &[u8],
    base: usize,
    keys: &[String],
    values: &[PropValue],
    version: u32,
) -> Result<Option<DecodedFeature>, MvtError> {
    let mut r = Reader::new(buf, base);
    let mut id = None;
    let mut tags = Vec::new();
    let mut geom_type = 0u64;
    let mut geometry = Vec::new();
    while !r.done() {
        let (field, wire) = r.key()?;
        match field {
            1 => {
                expect_wire("Feature", field, wire, WIRE_VARINT)?;
                id = Some(r.varint()?);
            }
            2 => read_u32s(&mut r, wire, field, "tag", &mut tags)?,
            3 => {
                expect_wire("Feature", field, wire, WIRE_VARINT)?;
                geom_type = r.varint()?;
            }
            4 => read_u32s(&mut r, wire, field, "geometry", &mut geometry)?,
            _ => r.skip(wire)?,
        }
    }
    if tags.len() % 2 != 0 {
        return Err(MvtError::OddTags);
    }
    let mut props = Vec::with_capacity(tags.len() / 2);
    for pair in tags.chunks_exact(2) {
        let (k, v) = (pair[0], pair[1]);
        let key = keys.get(k as usize).ok_or(MvtError::TagIndex {
            kind: "key",
            index: k,
        })?;
        let value = values.get(v as usize).ok_or(MvtError::TagIndex {
            kind: "value",
            index: v,
        })?;
        props.push((key.clone(), value.clone()));
    }
    let geom = match geom_type {
        // UNKNOWN: the spec lets decoders ignore such features, and `TileGeom` has no kind for it.
        0 => return Ok(None),
        1..=3 if geometry.is_empty() => return Err(MvtError::MissingGeometry),
        1 => decode_points(&geometry)?,
        2 => decode_lines(&geometry)?,
        3 => match decode_polygons(&geometry, version)? {
            Some(g) => g,
            None => return Ok(None),
        },
        other => return Err(MvtError::GeomType(other)),
    };
    Ok(Some(DecodedFeature { id, geom, props }))
}

/// Walks a command stream, handing each command and its points to `on`.
struct Commands<'a> {
    ints: &'a [u32],
    pos: usize,
    cursor: [i32; 2],
}

impl<'a> Commands<'a> {
    fn new(ints: &'a [u32]) -> Self {
        Commands {
            ints,
            pos: 0,
            cursor: [0, 0],
        }
    }

    /// The next command id and count, with the count checked against the integers that remain
    /// (so a huge count cannot drive allocation or a long loop).
    fn next(&mut self) -> Result<Option<(u32, u32)>, MvtError> {
        let Some(&c) = self.ints.get(self.pos) else {
            return Ok(None);
        };
        self.pos += 1;
        let (id, count) = (c & 7, c >> 3);
        let remaining = (self.ints.len() - self.pos) as u64;
        match id {
            CMD_MOVE_TO | CMD_LINE_TO => {
                if count == 0 {
                    return Err(MvtError::Geometry("MoveTo/LineTo with count 0"));
                }
                if u64::from(count) * 2 > remaining {
                    return Err(MvtError::Geometry("command count exceeds its parameters"));
                }
            }
            CMD_CLOSE_PATH => {
                if count != 1 {
                    return Err(MvtError::Geometry("ClosePath count must be 1"));
                }
            }
            _ => return Err(MvtError::Geometry("unknown command id")),
        }
        Ok(Some((id, count)))
    }

    /// The next point; `next` has checked that its parameters exist.
    fn point(&mut self) -> Result<[i32; 2], MvtError> {
        let (Some(&dx), Some(&dy)) = (self.ints.get(self.pos), self.ints.get(self.pos + 1)) else {
            return Err(MvtError::Geometry("missing parameters"));
        };
        self.pos += 2;
        self.cursor = [
            self.cursor[0].wrapping_add(unzigzag(dx)),
            self.cursor[1].wrapping_add(unzigzag(dy)),
        ];
        Ok(self.cursor)
    }
}

fn unzigzag(v: u32) -> i32 {
    ((v >> 1) as i32) ^ -((v & 1) as i32)
}

fn decode_points(ints: &[u32]) -> Result<TileGeom, MvtError> {
    let mut c = Commands::new(ints);
    let mut pts = Vec::new();
    while let Some((id, count)) = c.next()? {
        if id != CMD_MOVE_TO {
            return Err(MvtError::Geometry(
                "point geometry with a non-MoveTo command",
            ));
        }
        for _ in 0..count {
            pts.push(c.point()?);
        }
    }
    Ok(TileGeom::Points(pts))
}

fn decode_lines(ints: &[u32]) -> Result<TileGeom, MvtError> {
    let mut c = Commands::new(ints);
    let mut lines: Vec<Vec<[i32; 2]>> = Vec::new();
    while let Some((id, count)) = c.next()? {
        match id {
            CMD_MOVE_TO => {
                if count != 1 {
                    return Err(MvtError::Geometry("line MoveTo count must be 1"));
                }
                if lines.last().is_some_and(|l| l.len() < 2) {
                    return Err(MvtError::Geometry("MoveTo without LineTo"));
                }
                lines.push(vec![c.point()?]);
            }
            CMD_LINE_TO => {
                let line = lines
                    .last_mut()
                    .ok_or(MvtError::Geometry("LineTo before MoveTo"))?;
                for _ in 0..count {
                    line.push(c.point()?);
                }
            }
            _ => return Err(MvtError::Geometry("ClosePath in a line geometry")),
        }
    }
    if lines.last().is_some_and(|l| l.len() < 2) {
        return Err(MvtError::Geometry("MoveTo without LineTo"));
    }
    Ok(TileGeom::Lines(lines))
}

fn decode_polygons(ints: &[u32], version: u32) -> Result<Option<TileGeom>, MvtError> {
    let mut c = Commands::new(ints);
    let mut rings: Vec<Vec<[i32; 2]>> = Vec::new();
    // The ring being drawn, until its ClosePath.
    let mut open: Option<Vec<[i32; 2]>> = None;
    while let Some((id, count)) = c.next()? {
        match id {
            CMD_MOVE_TO => {
                if count != 1 {
                    return Err(MvtError::Geometry("polygon MoveTo count must be 1"));
                }
                if open.is_some() {
                    return Err(MvtError::Geometry("ring without ClosePath"));
                }
                open = Some(vec![c.point()?]);
            }
            CMD_LINE_TO => {
                let ring = open
                    .as_mut()
                    .ok_or(MvtError::Geometry("LineTo outside a ring"))?;
                for _ in 0..count {
                    ring.push(c.point()?);
                }
            }
            _ => {
                let mut ring = open
                    .take()
                    .ok_or(MvtError::Geometry("ClosePath outside a ring"))?;
                if ring.len() < 3 {
                    return Err(MvtError::Geometry("ring with fewer than 3 points"));
                }
                if let Some(&first) = ring.first() {
                    ring.push(first);
                }
                rings.push(ring);
            }
        }
    }
    if open.is_some() {
        return Err(MvtError::Geometry("ring without ClosePath"));
    }
    // Group rings: each exterior (positive area) starts a polygon, negatives are its holes.
    let mut polys: Vec<Vec<Vec<[i32; 2]>>> = Vec::new();
    let mut exterior_sign = None;
    for mut ring in rings {
        let sign = ring_area2(&ring).signum();
        if sign == 0 {
            continue;
        }
        let ext = *exterior_sign.get_or_insert(if version >= 2 { 1 } else { sign });
        if ext < 0 {
            // v1 did not fix winding: normalise to the v2 convention `TileGeom` promises.
            ring.reverse();
        }
        if sign == ext {
            polys.push(vec![ring]);
        } else if let Some(p) = polys.last_mut() {
            p.push(ring);
        } else {
            return Err(MvtError::Geometry("polygon starts with an interior ring"));
        }
    }
    Ok((!polys.is_empty()).then_some(TileGeom::Polygons(polys)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unzigzag_extremes() {
        assert_eq!(unzigzag(u32::MAX), i32::MIN);
        assert_eq!(unzigzag(u32::MAX - 1), i32::MAX);
        assert_eq!(unzigzag(1), -1);
    }

    #[test]
    fn overlong_varint_rejected() {
        let bytes = [
            0x1a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
        ];
        assert!(matches!(decode_tile(&bytes), Err(MvtError::BadVarint(_))));
    }
}
