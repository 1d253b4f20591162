//! The tiler's compact binary records: staged features (world coordinates, written once while
//! reading the input) and tile fragments (one feature's geometry inside one tile, in tile
//! coordinates, sorted by tile id).
//!
//! Everything is varints and zigzag deltas, so a typical point costs a dozen bytes. The
//! records never leave the process (they live in memory or in the tiler's own spill files), but
//! decoding still checks every length: a truncated spill file gives an error, not a panic.

use crate::geom::{TileGeom, WorldGeom};
use crate::mvt::PropValue;

/// A record was shorter than its own lengths say (a damaged spill file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Truncated;

pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(crate) fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// A cursor over a record's bytes.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// Bytes read so far.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn varint(&mut self) -> Result<u64, Truncated> {
        let mut v = 0u64;
        let mut shift = 0u32;
        loop {
            let b = *self.buf.get(self.pos).ok_or(Truncated)?;
            self.pos += 1;
            if shift >= 64 {
                return Err(Truncated);
            }
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
            shift += 7;
        }
    }

    pub(crate) fn len(&mut self) -> Result<usize, Truncated> {
        let n = usize::try_from(self.varint()?).map_err(|_| Truncated)?;
        // Every counted item takes at least one byte: a count beyond the bytes left is damage,
        // and refusing it here keeps a bad count from reserving gigabytes.
        if n > self.buf.len() - self.pos.min(self.buf.len()) {
            return Err(Truncated);
        }
        Ok(n)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Truncated> {
        let b = *self.buf.get(self.pos).ok_or(Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], Truncated> {
        let end = self.pos.checked_add(n).ok_or(Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(Truncated)?;
        self.pos = end;
        Ok(s)
    }
}

/// Geometry kinds, as stored and as MVT geometry types minus one.
pub(crate) const KIND_POINTS: u8 = 0;
pub(crate) const KIND_LINES: u8 = 1;
pub(crate) const KIND_POLYGONS: u8 = 2;

// ---- property values ---------------------------------------------------------------------

const VAL_STRING: u8 = 0;
const VAL_DOUBLE: u8 = 1;
const VAL_UINT: u8 = 2;
const VAL_SINT: u8 = 3;
const VAL_FALSE: u8 = 4;
const VAL_TRUE: u8 = 5;

/// Appends one value. Only the variants the tiler produces are stored; a `Float`/`Int` (which
/// it never makes) is widened to `Double`/`SInt`.
pub(crate) fn put_value(out: &mut Vec<u8>, v: &PropValue) {
    match v {
        PropValue::String(s) => {
            out.push(VAL_STRING);
            put_varint(out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
        PropValue::Double(d) => {
            out.push(VAL_DOUBLE);
            out.extend_from_slice(&d.to_le_bytes());
        }
        PropValue::Float(f) => {
            out.push(VAL_DOUBLE);
            out.extend_from_slice(&f64::from(*f).to_le_bytes());
        }
        PropValue::UInt(u) => {
            out.push(VAL_UINT);
            put_varint(out, *u);
        }
        PropValue::SInt(i) | PropValue::Int(i) => {
            out.push(VAL_SINT);
            put_varint(out, zigzag(*i));
        }
        PropValue::Bool(b) => out.push(if *b { VAL_TRUE } else { VAL_FALSE }),
    }
}

/// Reads one value as the raw bytes it occupies (tag included), without decoding it.
pub(crate) fn raw_value<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], Truncated> {
    let start = r.pos;
    match r.u8()? {
        VAL_STRING => {
            let n = r.len()?;
            r.bytes(n)?;
        }
        VAL_DOUBLE => {
            r.bytes(8)?;
        }
        VAL_UINT | VAL_SINT => {
            r.varint()?;
        }
        VAL_FALSE | VAL_TRUE => {}
        _ => return Err(Truncated),
    }
    Ok(&r.buf[start..r.pos])
}

/// Decodes a value from its raw bytes (as returned by [`raw_value`]).
pub(crate) fn decode_value(raw: &[u8]) -> Result<PropValue, Truncated> {
    let mut r = Reader::new(raw);
    Ok(match r.u8()? {
        VAL_STRING => {
            let n = r.len()?;
            PropValue::String(String::from_utf8_lossy(r.bytes(n)?).into_owned())
        }
        VAL_DOUBLE => {
            let b: [u8; 8] = r.bytes(8)?.try_into().map_err(|_| Truncated)?;
            PropValue::Double(f64::from_le_bytes(b))
        }
        VAL_UINT => PropValue::UInt(r.varint()?),
        VAL_SINT => PropValue::SInt(unzigzag(r.varint()?)),
        VAL_FALSE => PropValue::Bool(false),
        VAL_TRUE => PropValue::Bool(true),
        _ => return Err(Truncated),
    })
}

// ---- geometry ----------------------------------------------------------------------------

fn put_coords<T: Copy + Into<i64>>(out: &mut Vec<u8>, pts: &[[T; 2]], cursor: &mut [i64; 2]) {
    put_varint(out, pts.len() as u64);
    for p in pts {
        let (x, y) = (p[0].into(), p[1].into());
        put_varint(out, zigzag(x.wrapping_sub(cursor[0])));
        put_varint(out, zigzag(y.wrapping_sub(cursor[1])));
        *cursor = [x, y];
    }
}

fn get_coords<T>(
    r: &mut Reader<'_>,
    cursor: &mut [i64; 2],
    conv: fn(i64) -> T,
) -> Result<Vec<[T; 2]>, Truncated> {
    let n = r.len()?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let x = cursor[0].wrapping_add(unzigzag(r.varint()?));
        let y = cursor[1].wrapping_add(unzigzag(r.varint()?));
        *cursor = [x, y];
        v.push([conv(x), conv(y)]);
    }
    Ok(v)
}

/// A geometry of either coordinate type, borrowed for encoding.
pub(crate) enum GeomRef<'a> {
    World(&'a WorldGeom),
    Tile(&'a TileGeom),
}

fn put_lines<T: Copy + Into<i64>>(out: &mut Vec<u8>, ls: &[Vec<[T; 2]>], c: &mut [i64; 2]) {
    out.push(KIND_LINES);
    put_varint(out, ls.len() as u64);
    for l in ls {
        put_coords(out, l, c);
    }
}

fn put_polygons<T: Copy + Into<i64>>(out: &mut Vec<u8>, ps: &[Vec<Vec<[T; 2]>>], c: &mut [i64; 2]) {
    out.push(KIND_POLYGONS);
    put_varint(out, ps.len() as u64);
    for p in ps {
        put_varint(out, p.len() as u64);
        for ring in p {
            put_coords(out, ring, c);
        }
    }
}

/// Appends a geometry (kind byte first).
pub(crate) fn put_geom(out: &mut Vec<u8>, g: GeomRef<'_>) {
    let mut c = [0i64; 2];
    match g {
        GeomRef::World(WorldGeom::Points(p)) => {
            out.push(KIND_POINTS);
            put_coords(out, p, &mut c);
        }
        GeomRef::Tile(TileGeom::Points(p)) => {
            out.push(KIND_POINTS);
            put_coords(out, p, &mut c);
        }
        GeomRef::World(WorldGeom::Lines(ls)) => put_lines(out, ls, &mut c),
        GeomRef::Tile(TileGeom::Lines(ls)) => put_lines(out, ls, &mut c),
        GeomRef::World(WorldGeom::Polygons(ps)) => put_polygons(out, ps, &mut c),
        GeomRef::Tile(TileGeom::Polygons(ps)) => put_polygons(out, ps, &mut c),
    }
}

fn to_i32(v: i64) -> i32 {
    v.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32
}

fn same(v: i64) -> i64 {
    v
}

/// A decoded geometry before it is wrapped in its coordinate type's enum.
enum Parts<T> {
    Points(Vec<[T; 2]>),
    Lines(Vec<Vec<[T; 2]>>),
    Polygons(Vec<Vec<Vec<[T; 2]>>>),
}

fn get_parts<T>(r: &mut Reader<'_>, conv: fn(i64) -> T) -> Result<Parts<T>, Truncated> {
    let mut c = [0i64; 2];
    Ok(match r.u8()? {
        KIND_POINTS => Parts::Points(get_coords(r, &mut c, conv)?),
        KIND_LINES => {
            let n = r.len()?;
            let mut ls = Vec::with_capacity(n);
            for _ in 0..n {
                ls.push(get_coords(r, &mut c, conv)?);
            }
            Parts::Lines(ls)
        }
        KIND_POLYGONS => {
            let n = r.len()?;
            let mut ps = Vec::with_capacity(n);
            for _ in 0..n {
                let nr = r.len()?;
                let mut rings = Vec::with_capacity(nr);
                for _ in 0..nr {
                    rings.push(get_coords(r, &mut c, conv)?);
                }
                ps.push(rings);
            }
            Parts::Polygons(ps)
        }
        _ => return Err(Truncated),
    })
}

pub(crate) fn get_world_geom(r: &mut Reader<'_>) -> Result<WorldGeom, Truncated> {
    Ok(match get_parts(r, same)? {
        Parts::Points(p) => WorldGeom::Points(p),
        Parts::Lines(l) => WorldGeom::Lines(l),
        Parts::Polygons(p) => WorldGeom::Polygons(p),
    })
}

pub(crate) fn get_tile_geom(r: &mut Reader<'_>) -> Result<TileGeom, Truncated> {
    Ok(match get_parts(r, to_i32)? {
        Parts::Points(p) => TileGeom::Points(p),
        Parts::Lines(l) => TileGeom::Lines(l),
        Parts::Polygons(p) => TileGeom::Polygons(p),
    })
}

// ---- staged features ---------------------------------------------------------------------

/// A feature as staged: everything the cutter needs, in world coordinates.
pub(crate) struct Staged<'a> {
    pub layer: u32,
    /// The zooms the feature is kept at (bit z for zoom z): all, unless a `-j` filter reads
    /// `$zoom`.
    pub zooms: u32,
    /// The caller's stable feature key (thinning and tie order).
    pub seq: u64,
    pub id: Option<u64>,
    /// Encoded properties (count, then key index + value per property), copied verbatim into
    /// every fragment of the feature.
    pub props: &'a [u8],
    pub geom: WorldGeom,
}

/// Appends a staged record, length-prefixed.
pub(crate) fn put_staged(
    out: &mut Vec<u8>,
    scratch: &mut Vec<u8>,
    (layer, zooms): (u32, u32),
    seq: u64,
    id: Option<u64>,
    props: &[u8],
    geom: &WorldGeom,
) {
    scratch.clear();
    put_varint(scratch, u64::from(layer));
    // Stored inverted: the usual "every zoom" is one byte, not five.
    put_varint(scratch, u64::from(!zooms));
    put_varint(scratch, seq);
    put_id(scratch, id);
    put_varint(scratch, props.len() as u64);
    scratch.extend_from_slice(props);
    put_geom(scratch, GeomRef::World(geom));
    put_varint(out, scratch.len() as u64);
    out.extend_from_slice(scratch);
}

fn put_id(out: &mut Vec<u8>, id: Option<u64>) {
    match id {
        // 0 means "no id"; ids up to u64::MAX - 1 are stored shifted by one, u64::MAX as a
        // marker followed by nothing (it cannot be shifted).
        None => out.push(0),
        Some(u64::MAX) => {
            out.push(1);
        }
        Some(v) => {
            out.push(2);
            put_varint(out, v);
        }
    }
}

fn get_id(r: &mut Reader<'_>) -> Result<Option<u64>, Truncated> {
    Ok(match r.u8()? {
        0 => None,
        1 => Some(u64::MAX),
        2 => Some(r.varint()?),
        _ => return Err(Truncated),
    })
}

/// Decodes the body of a staged record (without its length prefix).
pub(crate) fn get_staged(body: &[u8]) -> Result<Staged<'_>, Truncated> {
    let mut r = Reader::new(body);
    let layer = u32::try_from(r.varint()?).map_err(|_| Truncated)?;
    let zooms = !u32::try_from(r.varint()?).map_err(|_| Truncated)?;
    let seq = r.varint()?;
    let id = get_id(&mut r)?;
    let n = r.len()?;
    let props = r.bytes(n)?;
    let geom = get_world_geom(&mut r)?;
    Ok(Staged {
        layer,
        zooms,
        seq,
        id,
        props,
        geom,
    })
}

/// Splits a buffer of length-prefixed records into record bodies. Returns the bodies and the
/// number of bytes consumed (a partial record at the end is left for the next read).
pub(crate) fn split_records(buf: &[u8]) -> (Vec<&[u8]>, usize) {
    let mut out = Vec::new();
    let mut r = Reader::new(buf);
    let mut consumed = 0;
    while !r.is_empty() {
        let Ok(n) = r.varint() else { break };
        let Ok(n) = usize::try_from(n) else { break };
        let Ok(body) = r.bytes(n) else { break };
        out.push(body);
        consumed = r.pos;
    }
    (out, consumed)
}

// ---- fragments ---------------------------------------------------------------------------

/// Appends a fragment payload: id, the whole feature's size (see [`Fragment::size`]),
/// properties, tile geometry.
pub(crate) fn put_fragment(
    out: &mut Vec<u8>,
    id: Option<u64>,
    size: u64,
    props: &[u8],
    geom: &TileGeom,
) {
    put_id(out, id);
    put_varint(out, size);
    put_varint(out, props.len() as u64);
    out.extend_from_slice(props);
    put_geom(out, GeomRef::Tile(geom));
}

/// The first byte of a fill payload (fragment payloads start with an id tag 0-2).
const FILL_TAG: u8 = 0xF1;

/// Appends a fill payload: the fill marker, the end of its run of tile ids (its sort key holds
/// the start), then the fragment every tile of the run holds.
pub(crate) fn put_fill(
    out: &mut Vec<u8>,
    end: u64,
    id: Option<u64>,
    size: u64,
    props: &[u8],
    geom: &TileGeom,
) {
    out.push(FILL_TAG);
    put_varint(out, end);
    put_fragment(out, id, size, props, geom);
}

/// Whether a sorted payload is a fill; if so, the end of its run and its fragment payload.
pub(crate) fn split_fill(payload: &[u8]) -> Result<Option<(u64, &[u8])>, Truncated> {
    let Some((&FILL_TAG, rest)) = payload.split_first() else {
        return Ok(None);
    };
    let mut r = Reader::new(rest);
    let end = r.varint()?;
    Ok(Some((end, rest.get(r.pos..).ok_or(Truncated)?)))
}

/// A decoded fragment payload; properties stay encoded.
pub(crate) struct Fragment<'a> {
    pub id: Option<u64>,
    /// The whole feature's size in world units, the same in every tile and at every zoom:
    /// a line's length, the square root of a polygon's area; 0 for points.
    pub size: u64,
    pub props: &'a [u8],
    pub geom: TileGeom,
}

pub(crate) fn get_fragment(payload: &[u8]) -> Result<Fragment<'_>, Truncated> {
    let mut r = Reader::new(payload);
    let id = get_id(&mut r)?;
    let size = r.varint()?;
    let n = r.len()?;
    let props = r.bytes(n)?;
    let geom = get_tile_geom(&mut r)?;
    Ok(Fragment {
        id,
        size,
        props,
        geom,
    })
}

/// A fragment payload's feature size, without decoding the rest.
pub(crate) fn fragment_size(payload: &[u8]) -> Result<u64, Truncated> {
    let mut r = Reader::new(payload);
    get_id(&mut r)?;
    r.varint()
}

/// Iterates encoded properties: `(key index, raw value bytes)`.
pub(crate) fn props_iter(
    props: &[u8],
) -> impl Iterator<Item = Result<(usize, &[u8]), Truncated>> + '_ {
    let mut r = Reader::new(props);
    let mut left: Option<usize> = None;
    std::iter::from_fn(move || {
        let n = match left {
            Some(n) => n,
            None => match r.len() {
                Ok(n) => n,
                Err(e) => {
                    left = Some(0);
                    return Some(Err(e));
                }
            },
        };
        if n == 0 {
            left = Some(0);
            return None;
        }
        left = Some(n - 1);
        let item = (|| {
            let k = usize::try_from(r.varint()?).map_err(|_| Truncated)?;
            Ok((k, raw_value(&mut r)?))
        })();
        if item.is_err() {
            left = Some(0);
        }
        Some(item)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_round_trip() {
        let g = WorldGeom::Polygons(vec![vec![
            vec![[0, 0], [10, 0], [10, 10], [0, 0]],
            vec![[2, 2], [3, 3], [2, 3], [2, 2]],
        ]]);
        let mut props = Vec::new();
        put_varint(&mut props, 2);
        put_varint(&mut props, 0);
        put_value(&mut props, &PropValue::String("x".into()));
        put_varint(&mut props, 1);
        put_value(&mut props, &PropValue::SInt(-5));
        let (mut out, mut scratch) = (Vec::new(), Vec::new());
        put_staged(&mut out, &mut scratch, (3, 0b1010), 9, Some(7), &props, &g);
        put_staged(
            &mut out,
            &mut scratch,
            (0, u32::MAX),
            1,
            Some(u64::MAX),
            &[0],
            &g,
        );
        let (bodies, used) = split_records(&out);
        assert_eq!(used, out.len());
        assert_eq!(bodies.len(), 2);
        let s = get_staged(bodies[0]).unwrap();
        assert_eq!(
            (s.layer, s.zooms, s.seq, s.id, s.geom.clone()),
            (3, 0b1010, 9, Some(7), g.clone())
        );
        let every = get_staged(bodies[1]).unwrap();
        assert_eq!(every.zooms, u32::MAX);
        // Layer 0 and "every zoom" take one byte each.
        assert_eq!(&bodies[1][..2], &[0, 0]);
        let p: Vec<_> = props_iter(s.props).map(|r| r.unwrap()).collect();
        assert_eq!(p.len(), 2);
        assert_eq!(
            decode_value(p[1].1).unwrap(),
            PropValue::SInt(-5),
            "values decode"
        );
        assert_eq!(get_staged(bodies[1]).unwrap().id, Some(u64::MAX));
        // Every truncation is an error, never a panic.
        for cut in 0..bodies[0].len() {
            assert!(get_staged(&bodies[0][..cut]).is_err() || cut == bodies[0].len());
        }
    }

    #[test]
    fn fragment_round_trip() {
        let g = TileGeom::Lines(vec![vec![[-5, 4100], [3, 3]]]);
        let mut out = Vec::new();
        put_fragment(&mut out, None, 7, &[0], &g);
        let f = get_fragment(&out).unwrap();
        assert_eq!((f.id, f.geom), (None, g));
        assert_eq!(props_iter(f.props).count(), 0);
    }
}
