//! Archives built by the etl-pmtiles binary, read back and decoded by code we did not write.
//!
//! Every tile is located with the `pmtiles` crate's header and directory parsers (the tile set is
//! enumerated from the header's bounds and checked against its addressed-tile count), gunzipped,
//! and decoded twice: by our `etl_tiles::mvt::decode_tile` and by geozero (prost-generated MVT
//! messages plus geozero's geometry and property reader). The two must agree on layers, versions,
//! extents, feature ids, geometry types, typed properties and every vertex. geozero's raw
//! command integers are also checked against MVT 2.1 here, independently of both decoders:
//! command grammar, ring winding by the spec's surveyor's formula, ring sizes, tags.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::{Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use etl_tiles::archive::Archive;
use etl_tiles::geom::TileGeom;
use etl_tiles::mvt::{DecodedLayer, LayerBuilder, PropValue, decode_tile, encode_tile};
use geozero::error::Result as GzResult;
use geozero::mvt::{Message as _, Tile, tile};
use geozero::{ColumnValue, FeatureProcessor, GeomProcessor, PropertyProcessor};
use serde_json::{Value, json};

type Pt = [i32; 2];

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

/// Runs the binary and asserts it succeeded.
fn build_archive(args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_etl-pmtiles"))
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("ETL_CHECKPOINT")
        .env_remove("ETL_OUTPUT")
        .env_remove("ETL_INPUT")
        .env_remove("AWS_BATCH_JOB_ARRAY_INDEX")
        .env_remove("AWS_BATCH_JOB_ARRAY_SIZE")
        .output()
        .expect("spawn etl-pmtiles");
    assert!(
        out.status.success(),
        "etl-pmtiles {args:?} failed\n--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

// ---------------------------------------------------------------------------------------------
// Reading with the `pmtiles` crate.
//
// The crate's reader (`AsyncPmTilesReader`) needs its async features, and this package has it
// with `write` only. What `write` still offers is the crate's own parsers: `Header` and
// `Directory`, with `find_tile_id` doing the lookup (runs, leaves). Their offsets and lengths are
// `pub(crate)`, so they are read from the derived `Debug` text; everything else is theirs.
// ---------------------------------------------------------------------------------------------

/// `field` as an unsigned integer from a derived `Debug` string such as
/// `DirEntry { tile_id: 5, offset: 0, length: 55, run_length: 1 }`.
fn debug_u64(debug: &str, field: &str) -> u64 {
    let pat = format!(" {field}: ");
    let at = debug
        .find(&pat)
        .unwrap_or_else(|| panic!("no `{field}` in pmtiles' Debug output {debug:?}"))
        + pat.len();
    debug[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or_else(|e| panic!("`{field}` in {debug:?}: {e}"))
}

/// The `bytes::Bytes` that `pmtiles` parses from, named through its own API (this package does
/// not depend on `bytes`): `T` is inferred from `Header::try_from_bytes`'s parameter.
fn pm_bytes<T: From<Vec<u8>>>(_: fn(T) -> pmtiles::PmtResult<pmtiles::Header>, v: Vec<u8>) -> T {
    T::from(v)
}

fn pm_directory(gzipped: &[u8]) -> pmtiles::Directory {
    pmtiles::Directory::try_from(pm_bytes(pmtiles::Header::try_from_bytes, gunzip(gzipped)))
        .expect("pmtiles parses the directory")
}

struct PmArchive {
    bytes: Vec<u8>,
    header: pmtiles::Header,
    root: pmtiles::Directory,
    leaves: HashMap<u64, pmtiles::Directory>,
    leaf_offset: u64,
    data_offset: u64,
}

impl PmArchive {
    fn open(path: &Path) -> PmArchive {
        let bytes = std::fs::read(path).unwrap();
        let header = pmtiles::Header::try_from_bytes(pm_bytes(
            pmtiles::Header::try_from_bytes,
            bytes[..127].to_vec(),
        ))
        .expect("pmtiles parses the header");
        assert_eq!(header.spec_version(), 3);
        assert_eq!(header.tile_type, pmtiles::TileType::Mvt);
        assert_eq!(header.tile_compression, pmtiles::Compression::Gzip);
        assert_eq!(header.internal_compression(), pmtiles::Compression::Gzip);
        let debug = format!("{header:?}");
        let (root_offset, root_length) = (
            debug_u64(&debug, "root_offset") as usize,
            debug_u64(&debug, "root_length") as usize,
        );
        let root = pm_directory(&bytes[root_offset..root_offset + root_length]);
        PmArchive {
            leaf_offset: debug_u64(&debug, "leaf_offset"),
            data_offset: debug_u64(&debug, "data_offset"),
            bytes,
            header,
            root,
            leaves: HashMap::new(),
        }
    }

    /// The stored (gzipped) bytes of tile `id`, found by pmtiles' directory lookups.
    fn tile(&mut self, id: pmtiles::TileId) -> Option<Vec<u8>> {
        // `None`: the root; `Some(offset)`: the leaf at that offset of the leaf section.
        let mut dir: Option<u64> = None;
        for _depth in 0..4 {
            let d = match dir {
                None => &self.root,
                Some(off) => &self.leaves[&off],
            };
            let debug = format!("{:?}", d.find_tile_id(id)?);
            let (offset, length) = (debug_u64(&debug, "offset"), debug_u64(&debug, "length"));
            if debug_u64(&debug, "run_length") > 0 {
                let start = (self.data_offset + offset) as usize;
                return Some(self.bytes[start..start + length as usize].to_vec());
            }
            let start = (self.leaf_offset + offset) as usize;
            let raw = &self.bytes[start..start + length as usize];
            self.leaves
                .entry(offset)
                .or_insert_with(|| pm_directory(raw));
            dir = Some(offset);
        }
        panic!("{id:?}: leaf directories nested deeper than 3");
    }

    /// Every addressed tile, by pmtiles tile id: each zoom's tiles over the header bounds plus a
    /// one-tile margin (the tile buffer), looked up one by one. The total must match the header's
    /// addressed-tile count, so no tile can be missed.
    fn all_tiles(&mut self) -> BTreeMap<u64, Vec<u8>> {
        let h = &self.header;
        let (w, s, e, n) = (
            h.min_longitude,
            h.min_latitude,
            h.max_longitude,
            h.max_latitude,
        );
        let zooms = h.min_zoom..=h.max_zoom;
        let want = h.n_addressed_tiles().map(|n| n.get());
        let mut out = BTreeMap::new();
        for z in zooms {
            let size = 1u32 << z;
            let x = |lon: f64| ((lon + 180.0) / 360.0 * f64::from(size)).floor() as i64;
            let y = |lat: f64| {
                let r = lat.to_radians();
                ((1.0 - r.tan().asinh() / std::f64::consts::PI) / 2.0 * f64::from(size)).floor()
                    as i64
            };
            let clamp = |v: i64| v.clamp(0, i64::from(size) - 1) as u32;
            for tx in clamp(x(w) - 1)..=clamp(x(e) + 1) {
                for ty in clamp(y(n) - 1)..=clamp(y(s) + 1) {
                    let id = pmtiles::TileId::from(pmtiles::TileCoord::new(z, tx, ty).unwrap());
                    if let Some(data) = self.tile(id) {
                        out.insert(id.value(), data);
                    }
                }
            }
        }
        assert_eq!(
            Some(out.len() as u64),
            want,
            "tiles found over the bounds vs the header's addressed count"
        );
        out
    }
}

/// The same archive through our reader: every addressed tile by id.
fn our_tiles(path: &Path) -> BTreeMap<u64, Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    let mut a = Archive::open(Cursor::new(&bytes)).unwrap();
    let entries: Vec<_> = a.entries().map(Result::unwrap).collect();
    let mut out = BTreeMap::new();
    for e in entries {
        let data = a.read_tile(&e).unwrap();
        for k in 0..u64::from(e.run_length) {
            out.insert(e.tile_id + k, data.clone());
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Property values, compared exactly: the MVT `Value` field and the bits of floats.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Typed {
    String(String),
    Float(u32),
    Double(u64),
    Int(i64),
    UInt(u64),
    SInt(i64),
    Bool(bool),
}

impl Typed {
    fn ours(v: &PropValue) -> Typed {
        match v {
            PropValue::String(s) => Typed::String(s.clone()),
            PropValue::Float(f) => Typed::Float(f.to_bits()),
            PropValue::Double(d) => Typed::Double(d.to_bits()),
            PropValue::Int(i) => Typed::Int(*i),
            PropValue::UInt(u) => Typed::UInt(*u),
            PropValue::SInt(i) => Typed::SInt(*i),
            PropValue::Bool(b) => Typed::Bool(*b),
        }
    }

    /// A prost-decoded `Value`, which must have exactly one of its seven fields.
    fn theirs(v: &tile::Value) -> Typed {
        let all = [
            v.string_value.clone().map(Typed::String),
            v.float_value.map(|f| Typed::Float(f.to_bits())),
            v.double_value.map(|d| Typed::Double(d.to_bits())),
            v.int_value.map(Typed::Int),
            v.uint_value.map(Typed::UInt),
            v.sint_value.map(Typed::SInt),
            v.bool_value.map(Typed::Bool),
        ];
        let mut set = all.into_iter().flatten();
        let one = set
            .next()
            .unwrap_or_else(|| panic!("value of no type: {v:?}"));
        assert!(set.next().is_none(), "value with several types: {v:?}");
        one
    }

    /// What geozero's property reader reports for this value: it folds int and sint into
    /// `Long`, so the comparison is by that.
    fn column(&self) -> Column {
        match self {
            Typed::String(s) => Column::String(s.clone()),
            Typed::Float(f) => Column::Float(*f),
            Typed::Double(d) => Column::Double(*d),
            Typed::Int(i) | Typed::SInt(i) => Column::Long(*i),
            Typed::UInt(u) => Column::ULong(*u),
            Typed::Bool(b) => Column::Bool(*b),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Typed::String(_) => "string",
            Typed::Float(_) => "float",
            Typed::Double(_) => "double",
            Typed::Int(_) => "int",
            Typed::UInt(_) => "uint",
            Typed::SInt(_) => "sint",
            Typed::Bool(_) => "bool",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Column {
    String(String),
    Float(u32),
    Double(u64),
    Long(i64),
    ULong(u64),
    Bool(bool),
}

impl Column {
    fn from_geozero(v: &ColumnValue) -> Column {
        match v {
            ColumnValue::String(s) => Column::String((*s).to_owned()),
            ColumnValue::Float(f) => Column::Float(f.to_bits()),
            ColumnValue::Double(d) => Column::Double(d.to_bits()),
            ColumnValue::Long(i) => Column::Long(*i),
            ColumnValue::ULong(u) => Column::ULong(*u),
            ColumnValue::Bool(b) => Column::Bool(*b),
            other => panic!("geozero reported an MVT value as {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// geozero's reader: a FeatureProcessor collecting each feature's geometry (in tile coordinates,
// as geozero's MVT reader emits them) and properties.
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Point,
    Line,
    Polygon,
}

/// A feature's properties as geozero's reader reports them.
type Columns = Vec<(String, Column)>;

#[derive(Default)]
struct GzFeature {
    kind: Option<Kind>,
    path: Vec<Pt>,
    points: Vec<Pt>,
    lines: Vec<Vec<Pt>>,
    rings: Vec<Vec<Pt>>,
    polygons: Vec<Vec<Vec<Pt>>>,
    props: Columns,
}

impl GzFeature {
    fn geom(self) -> Option<TileGeom> {
        assert!(self.path.is_empty() && self.rings.is_empty(), "unfinished");
        Some(match self.kind? {
            Kind::Point => TileGeom::Points(self.points),
            Kind::Line => TileGeom::Lines(self.lines),
            Kind::Polygon => TileGeom::Polygons(self.polygons),
        })
    }

    fn set_kind(&mut self, k: Kind) {
        assert!(
            self.kind.is_none_or(|have| have == k),
            "{k:?} inside {:?}",
            self.kind
        );
        self.kind = Some(k);
    }
}

#[derive(Default)]
struct GzLayer {
    current: GzFeature,
    features: Vec<(Option<TileGeom>, Columns)>,
}

impl GeomProcessor for GzLayer {
    fn xy(&mut self, x: f64, y: f64, _idx: usize) -> GzResult<()> {
        assert!(x.fract() == 0.0 && y.fract() == 0.0, "({x}, {y})");
        self.current.path.push([x as i32, y as i32]);
        Ok(())
    }
    fn point_begin(&mut self, _idx: usize) -> GzResult<()> {
        self.current.set_kind(Kind::Point);
        Ok(())
    }
    fn point_end(&mut self, _idx: usize) -> GzResult<()> {
        let f = &mut self.current;
        f.points.append(&mut f.path);
        Ok(())
    }
    fn multipoint_begin(&mut self, _size: usize, _idx: usize) -> GzResult<()> {
        self.current.set_kind(Kind::Point);
        Ok(())
    }
    fn multipoint_end(&mut self, _idx: usize) -> GzResult<()> {
        let f = &mut self.current;
        f.points.append(&mut f.path);
        Ok(())
    }
    fn linestring_begin(&mut self, tagged: bool, _size: usize, _idx: usize) -> GzResult<()> {
        if tagged {
            self.current.set_kind(Kind::Line);
        }
        assert!(
            self.current.kind.is_some(),
            "untagged line outside a geometry"
        );
        assert!(self.current.path.is_empty());
        Ok(())
    }
    fn linestring_end(&mut self, _tagged: bool, _idx: usize) -> GzResult<()> {
        let f = &mut self.current;
        let path = std::mem::take(&mut f.path);
        match f.kind {
            Some(Kind::Line) => f.lines.push(path),
            Some(Kind::Polygon) => f.rings.push(path),
            other => panic!("line in {other:?}"),
        }
        Ok(())
    }
    fn multilinestring_begin(&mut self, _size: usize, _idx: usize) -> GzResult<()> {
        self.current.set_kind(Kind::Line);
        Ok(())
    }
    fn polygon_begin(&mut self, _tagged: bool, _size: usize, _idx: usize) -> GzResult<()> {
        self.current.set_kind(Kind::Polygon);
        Ok(())
    }
    fn polygon_end(&mut self, _tagged: bool, _idx: usize) -> GzResult<()> {
        let f = &mut self.current;
        let rings = std::mem::take(&mut f.rings);
        f.polygons.push(rings);
        Ok(())
    }
    fn multipolygon_begin(&mut self, _size: usize, _idx: usize) -> GzResult<()> {
        self.current.set_kind(Kind::Polygon);
        Ok(())
    }
}

impl PropertyProcessor for GzLayer {
    fn property(&mut self, _idx: usize, name: &str, value: &ColumnValue) -> GzResult<bool> {
        self.current
            .props
            .push((name.to_owned(), Column::from_geozero(value)));
        Ok(false)
    }
}

impl FeatureProcessor for GzLayer {
    fn feature_begin(&mut self, _idx: u64) -> GzResult<()> {
        self.current = GzFeature::default();
        Ok(())
    }
    fn feature_end(&mut self, _idx: u64) -> GzResult<()> {
        let mut f = std::mem::take(&mut self.current);
        let props = std::mem::take(&mut f.props);
        self.features.push((f.geom(), props));
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// MVT 2.1 from the raw command integers (as prost decoded them), by the spec text alone.
// ---------------------------------------------------------------------------------------------

const MOVE_TO: u32 = 1;
const LINE_TO: u32 = 2;
const CLOSE_PATH: u32 = 7;

/// Twice the ring's area by the spec's surveyor's formula over its vertices (open ring, the
/// closing segment implied), in i128 so nothing can overflow.
fn area2(ring: &[Pt]) -> i128 {
    let n = ring.len();
    (0..n)
        .map(|i| {
            let (a, b) = (ring[i], ring[(i + 1) % n]);
            i128::from(a[0]) * i128::from(b[1]) - i128::from(b[0]) * i128::from(a[1])
        })
        .sum()
}

/// A command stream split into (id, count, points) with absolute coordinates.
fn commands(geometry: &[u32]) -> Result<Vec<(u32, u32, Vec<Pt>)>, String> {
    let mut out = Vec::new();
    let mut cursor = [0i64, 0i64];
    let mut i = 0;
    while i < geometry.len() {
        let (id, count) = (geometry[i] & 7, geometry[i] >> 3);
        i += 1;
        let params = match id {
            MOVE_TO | LINE_TO => 2 * count as usize,
            CLOSE_PATH => 0,
            other => return Err(format!("unknown command id {other}")),
        };
        if geometry.len() - i < params {
            return Err(format!("command {id} x{count} runs past the stream"));
        }
        let mut pts = Vec::new();
        for pair in geometry[i..i + params].chunks_exact(2) {
            let unzig = |v: u32| i64::from((v >> 1) as i32 ^ -((v & 1) as i32));
            let (dx, dy) = (unzig(pair[0]), unzig(pair[1]));
            if id == LINE_TO && dx == 0 && dy == 0 {
                return Err("LineTo with dX = dY = 0".into());
            }
            cursor = [cursor[0] + dx, cursor[1] + dy];
            let p = [
                i32::try_from(cursor[0]).map_err(|_| "x outside i32")?,
                i32::try_from(cursor[1]).map_err(|_| "y outside i32")?,
            ];
            pts.push(p);
        }
        i += params;
        out.push((id, count, pts));
    }
    Ok(out)
}

/// Checks a feature's geometry against MVT 2.1 and returns it as `TileGeom` (rings closed,
/// grouped by winding), a third decoding to compare with the other two.
fn spec_geometry(ty: i32, geometry: &[u32]) -> Result<TileGeom, String> {
    let cmds = commands(geometry)?;
    if cmds.is_empty() {
        return Err("no geometry".into());
    }
    match ty {
        1 => match cmds.as_slice() {
            [(MOVE_TO, n, pts)] if *n > 0 => Ok(TileGeom::Points(pts.clone())),
            _ => Err("POINT must be a single MoveTo with count > 0".into()),
        },
        2 => {
            let mut lines = Vec::new();
            for pair in cmds.chunks(2) {
                match pair {
                    [(MOVE_TO, 1, start), (LINE_TO, n, rest)] if *n > 0 => {
                        lines.push(start.iter().chain(rest).copied().collect());
                    }
                    _ => return Err("LINESTRING must repeat MoveTo(1) LineTo(n > 0)".into()),
                }
            }
            Ok(TileGeom::Lines(lines))
        }
        3 => {
            let mut polygons: Vec<Vec<Vec<Pt>>> = Vec::new();
            for triple in cmds.chunks(3) {
                let [(MOVE_TO, 1, start), (LINE_TO, n, rest), (CLOSE_PATH, 1, _)] = triple else {
                    return Err("POLYGON rings must be MoveTo(1) LineTo(n > 1) ClosePath".into());
                };
                if *n < 2 {
                    return Err(format!("ring LineTo count {n}"));
                }
                let mut ring: Vec<Pt> = start.iter().chain(rest).copied().collect();
                if ring.last() == ring.first() {
                    return Err("cursor before ClosePath repeats the first point".into());
                }
                let distinct: HashSet<Pt> = ring.iter().copied().collect();
                if distinct.len() < 3 {
                    return Err(format!("ring with {} distinct vertices", distinct.len()));
                }
                let a = area2(&ring);
                ring.push(ring[0]);
                if a > 0 {
                    polygons.push(vec![ring]);
                } else if a < 0 {
                    polygons
                        .last_mut()
                        .ok_or("first ring has negative area (must be exterior)")?
                        .push(ring);
                } else {
                    return Err("ring of zero area".into());
                }
            }
            Ok(TileGeom::Polygons(polygons))
        }
        other => Err(format!("geometry type {other}")),
    }
}

// ---------------------------------------------------------------------------------------------
// The comparison.
// ---------------------------------------------------------------------------------------------

#[derive(Default, Debug)]
struct Seen {
    tiles: usize,
    features: usize,
    points: usize,
    multipoints: usize,
    lines: usize,
    multilines: usize,
    polygons: usize,
    multipolygons: usize,
    holes: usize,
    with_id: usize,
    /// Value kinds by key.
    kinds: BTreeMap<String, BTreeSet<&'static str>>,
    layers: BTreeSet<String>,
}

fn compare_tile(at: &str, raw: &[u8], seen: &mut Seen) {
    let ours: Vec<DecodedLayer> =
        decode_tile(raw).unwrap_or_else(|e| panic!("{at}: our decoder: {e}"));
    let theirs = Tile::decode(raw).unwrap_or_else(|e| panic!("{at}: geozero/prost: {e}"));
    seen.tiles += 1;

    assert_eq!(
        ours.iter().map(|l| &l.name).collect::<Vec<_>>(),
        theirs.layers.iter().map(|l| &l.name).collect::<Vec<_>>(),
        "{at}: layer names"
    );
    let names: HashSet<&str> = theirs.layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(
        names.len(),
        theirs.layers.len(),
        "{at}: duplicate layer names"
    );

    for (o, t) in ours.iter().zip(&theirs.layers) {
        let at = format!("{at} layer {:?}", t.name);
        seen.layers.insert(t.name.clone());
        assert!(!t.name.is_empty(), "{at}: empty name");
        assert_eq!(t.version, 2, "{at}: MVT version");
        assert_eq!(o.version, t.version, "{at}: version");
        assert_eq!(o.extent, t.extent.unwrap_or(4096), "{at}: extent");
        assert!(!t.features.is_empty(), "{at}: layer without features");
        assert_eq!(o.features.len(), t.features.len(), "{at}: feature count");

        // geozero's own reading of the layer: geometry and properties.
        let mut gz = GzLayer::default();
        geozero::mvt::process(t, &mut gz).unwrap_or_else(|e| panic!("{at}: geozero: {e}"));
        assert_eq!(
            gz.features.len(),
            t.features.len(),
            "{at}: geozero features"
        );

        for (i, ((of, tf), (gz_geom, gz_props))) in o
            .features
            .iter()
            .zip(&t.features)
            .zip(gz.features)
            .enumerate()
        {
            let at = format!("{at} feature #{i} (id {:?})", tf.id);
            seen.features += 1;
            assert_eq!(of.id, tf.id, "{at}: id");
            seen.with_id += usize::from(tf.id.is_some());

            // Properties: tags by the spec, then typed values against ours and geozero's.
            assert!(tf.tags.len() % 2 == 0, "{at}: odd tags");
            let mut keys_used = HashSet::new();
            let mut typed = Vec::new();
            for pair in tf.tags.chunks_exact(2) {
                let key = t
                    .keys
                    .get(pair[0] as usize)
                    .unwrap_or_else(|| panic!("{at}: key index {} out of range", pair[0]));
                let value = t
                    .values
                    .get(pair[1] as usize)
                    .unwrap_or_else(|| panic!("{at}: value index {} out of range", pair[1]));
                assert!(keys_used.insert(pair[0]), "{at}: key {key:?} twice");
                typed.push((key.clone(), Typed::theirs(value)));
            }
            let ours_typed: Vec<(String, Typed)> = of
                .props
                .iter()
                .map(|(k, v)| (k.clone(), Typed::ours(v)))
                .collect();
            assert_eq!(ours_typed, typed, "{at}: properties (key, type, value)");
            let columns: Columns = typed.iter().map(|(k, v)| (k.clone(), v.column())).collect();
            assert_eq!(gz_props, columns, "{at}: geozero's property reader");
            for (k, v) in &typed {
                seen.kinds.entry(k.clone()).or_default().insert(v.kind());
            }

            // Geometry: type, then the three decodings vertex for vertex.
            let ty = tf.r#type.unwrap_or(0);
            let want_ty = match &of.geom {
                TileGeom::Points(_) => 1,
                TileGeom::Lines(_) => 2,
                TileGeom::Polygons(_) => 3,
            };
            assert_eq!(ty, want_ty, "{at}: geometry type");
            let spec = spec_geometry(ty, &tf.geometry)
                .unwrap_or_else(|e| panic!("{at}: not MVT 2.1: {e}; geometry {:?}", tf.geometry));
            assert_eq!(spec, of.geom, "{at}: our decoder vs the raw commands");
            let gz_geom = gz_geom.unwrap_or_else(|| panic!("{at}: geozero read no geometry"));
            assert_eq!(gz_geom, of.geom, "{at}: our decoder vs geozero's reader");

            match &of.geom {
                TileGeom::Points(p) if p.len() > 1 => seen.multipoints += 1,
                TileGeom::Points(_) => seen.points += 1,
                TileGeom::Lines(l) if l.len() > 1 => seen.multilines += 1,
                TileGeom::Lines(_) => seen.lines += 1,
                TileGeom::Polygons(ps) => {
                    if ps.len() > 1 {
                        seen.multipolygons += 1;
                    } else {
                        seen.polygons += 1;
                    }
                    seen.holes += ps.iter().map(|p| p.len() - 1).sum::<usize>();
                    for (pi, p) in ps.iter().enumerate() {
                        for (ri, ring) in p.iter().enumerate() {
                            assert_eq!(ring.first(), ring.last(), "{at}: ring {pi}.{ri} closed");
                            let a = area2(&ring[..ring.len() - 1]);
                            if ri == 0 {
                                assert!(a > 0, "{at}: exterior {pi} area {a}");
                            } else {
                                assert!(a < 0, "{at}: hole {pi}.{ri} area {a}");
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Reads `path` with the `pmtiles` crate and with our reader, checks they locate the same
/// bytes for the same tiles, and compares every tile's decodings.
fn cross_check(path: &Path) -> Seen {
    let mut pm = PmArchive::open(path);
    let theirs = pm.all_tiles();
    let ours = our_tiles(path);
    assert_eq!(
        theirs.keys().collect::<Vec<_>>(),
        ours.keys().collect::<Vec<_>>(),
        "tile ids: pmtiles vs our reader"
    );
    let mut seen = Seen::default();
    for (id, data) in &theirs {
        assert_eq!(Some(data), ours.get(id), "tile {id}: stored bytes");
        let c = etl_tiles::tile::tile_coord(*id).unwrap();
        let at = format!("{}/{}/{}", c.z, c.x, c.y);
        compare_tile(&at, &gunzip(data), &mut seen);
    }
    assert!(seen.tiles > 0 && seen.features > 0, "{seen:?}");
    seen
}

#[test]
fn fixtures_archive_agrees_with_geozero() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("fixtures.pmtiles");
    let data = repo("fixtures/data");
    build_archive(&[
        "-o",
        out.to_str().unwrap(),
        "-f",
        "-z12",
        data.to_str().unwrap(),
    ]);
    let seen = cross_check(&out);
    assert_eq!(
        seen.layers.iter().map(String::as_str).collect::<Vec<_>>(),
        ["observations", "sites", "tracks"]
    );
    assert!(seen.points > 0 && seen.multipoints > 0, "{seen:?}");
    assert!(
        seen.lines > 0 && seen.polygons > 0 && seen.holes > 0,
        "{seen:?}"
    );
    assert!(seen.with_id > 0, "{seen:?}");
}

/// A ring as GeoJSON coordinates: an axis-aligned box, counter-clockwise in lon/lat (as RFC 7946
/// wants exteriors) or clockwise (as it wants holes).
fn bbox_ring(w: f64, s: f64, e: f64, n: f64, ccw: bool) -> Value {
    let mut r = vec![[w, s], [e, s], [e, n], [w, n], [w, s]];
    if !ccw {
        r.reverse();
    }
    json!(r)
}

/// Polygons with holes (crossing tile edges at every zoom), multipolygons, a wrongly wound
/// polygon, rings that collapse at low zooms, long lines, multilines, points, multipoints; ids
/// integer, string and absent; properties of every JSON type.
fn generated_input(dir: &Path) -> PathBuf {
    let features = vec![
        json!({"type": "Feature", "id": 1,
        "properties": {"name": "big square, two holes", "n": 42, "neg": -17, "zero": 0,
            "f": 3.25, "yes": true, "no": false, "unicode": "Zürich ✓ \"q\"", "empty": ""},
        "geometry": {"type": "Polygon", "coordinates": [
            bbox_ring(10.02, 45.02, 10.38, 45.31, true),
            bbox_ring(10.05, 45.05, 10.20, 45.20, false),
            // A triangle hole.
            [[10.25, 45.10], [10.33, 45.27], [10.30, 45.10], [10.25, 45.10]],
        ]}}),
        json!({"type": "Feature", "id": 2,
        "properties": {"name": "multipolygon", "n": 18_446_744_073_709_551_615_u64,
            "neg": i64::MIN, "f": -0.5, "tiny": 1e-7, "huge": 1.5e300,
            "arr": [1, "a", null], "obj": {"k": {"deep": true}}, "yes": false},
        "geometry": {"type": "MultiPolygon", "coordinates": [
            [bbox_ring(10.40, 45.02, 10.58, 45.20, true),
             bbox_ring(10.45, 45.07, 10.52, 45.12, false)],
            [[[10.42, 45.30], [10.58, 45.30], [10.50, 45.45], [10.42, 45.30]]],
            // Far smaller than a pixel until the deepest zooms.
            [bbox_ring(10.5900, 45.4900, 10.5903, 45.4902, true)],
        ]}}),
        json!({"type": "Feature", "id": 3,
        "properties": {"name": "wound clockwise, tiny hole", "n": 7, "f": 0.1},
        "geometry": {"type": "Polygon", "coordinates": [
            bbox_ring(10.10, 45.33, 10.30, 45.48, false),
            bbox_ring(10.2000, 45.4000, 10.2002, 45.4001, true),
        ]}}),
        json!({"type": "Feature", "id": 4,
        "properties": {"name": "duplicate vertices", "n": 1},
        "geometry": {"type": "Polygon", "coordinates": [[
            [10.31, 45.33], [10.31, 45.33], [10.39, 45.33], [10.39, 45.40],
            [10.39, 45.40], [10.31, 45.40], [10.31, 45.33],
        ]]}}),
        json!({"type": "Feature", "id": 5,
        "properties": {"name": "zigzag line", "speed": 12.5, "lanes": 2, "oneway": true},
        "geometry": {"type": "LineString", "coordinates": [
            [9.99, 44.99], [10.15, 45.25], [10.15, 45.25], [10.30, 45.05],
            [10.45, 45.40], [10.61, 45.01],
        ]}}),
        json!({"type": "Feature", "id": "line-b",
        "properties": {"name": "multiline", "lanes": -1, "oneway": false},
        "geometry": {"type": "MultiLineString", "coordinates": [
            [[10.00, 45.15], [10.60, 45.16]],
            [[10.35, 45.00], [10.36, 45.50]],
        ]}}),
        json!({"type": "Feature",
            "properties": {"name": "point without id", "n": 0, "f": 2.0e-3},
            "geometry": {"type": "Point", "coordinates": [10.123, 45.234]}}),
        json!({"type": "Feature", "id": 4_294_967_296_u64,
        "properties": {"name": "multipoint", "n": -123_456_789_012_i64, "yes": true},
        "geometry": {"type": "MultiPoint", "coordinates": [
            [10.01, 45.01], [10.011, 45.011], [10.55, 45.45], [10.30, 45.20],
        ]}}),
        json!({"type": "Feature", "id": 0,
            "properties": {"name": "point id 0", "mixed": "text"},
            "geometry": {"type": "Point", "coordinates": [10.5, 45.1]}}),
        json!({"type": "Feature", "id": 9,
            "properties": {"name": "same key, other type", "mixed": 5.5},
            "geometry": {"type": "Point", "coordinates": [10.25, 45.45]}}),
    ];
    let path = dir.join("generated.geojsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    for feature in features {
        writeln!(f, "{feature}").unwrap();
    }
    path
}

#[test]
fn generated_archive_agrees_with_geozero() {
    let dir = tempfile::tempdir().unwrap();
    let input = generated_input(dir.path());
    let out = dir.path().join("generated.pmtiles");
    build_archive(&[
        "-o",
        out.to_str().unwrap(),
        "-f",
        "-z12",
        input.to_str().unwrap(),
    ]);
    let seen = cross_check(&out);
    assert_eq!(
        seen.layers.iter().map(String::as_str).collect::<Vec<_>>(),
        ["generated"]
    );
    assert!(seen.tiles > 50, "{seen:?}");
    assert!(
        seen.points > 0 && seen.multipoints > 0 && seen.lines > 0 && seen.multilines > 0,
        "{seen:?}"
    );
    assert!(
        seen.polygons > 0 && seen.multipolygons > 0 && seen.holes > 0,
        "{seen:?}"
    );
    assert!(seen.with_id > 0, "{seen:?}");
    let kinds = |k: &str| {
        seen.kinds
            .get(k)
            .map(|s| s.iter().copied().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    // Every JSON value type arrives as the MVT type we write for it, in both decoders.
    assert_eq!(kinds("name"), ["string"]);
    assert_eq!(kinds("n"), ["sint", "uint"]);
    assert_eq!(kinds("neg"), ["sint"]);
    assert_eq!(kinds("f"), ["double"]);
    assert_eq!(kinds("yes"), ["bool"]);
    assert_eq!(kinds("arr"), ["string"]);
    assert_eq!(kinds("mixed"), ["double", "string"]);
}

/// The spec checker itself: the spec's own examples pass, and each MUST it enforces fails.
#[test]
fn spec_checker_accepts_the_spec_examples_and_rejects_violations() {
    // 4.3.5.6: two polygons, the second with a hole.
    let multi = [
        9, 0, 0, 26, 20, 0, 0, 20, 19, 0, 15, 9, 22, 2, 26, 18, 0, 0, 18, 17, 0, 15, 9, 4, 13, 26,
        0, 8, 8, 0, 0, 7, 15,
    ];
    let TileGeom::Polygons(ps) = spec_geometry(3, &multi).unwrap() else {
        panic!("not polygons");
    };
    assert_eq!(ps.len(), 2);
    assert_eq!(ps[1][1], [[13, 13], [13, 17], [17, 17], [17, 13], [13, 13]]);
    assert_eq!(
        spec_geometry(1, &[17, 10, 14, 3, 9]).unwrap(),
        TileGeom::Points(vec![[5, 7], [3, 2]])
    );
    assert_eq!(
        spec_geometry(2, &[9, 4, 4, 18, 0, 16, 16, 0, 9, 17, 17, 10, 4, 8]).unwrap(),
        TileGeom::Lines(vec![vec![[2, 2], [2, 10], [10, 10]], vec![[1, 1], [3, 5]]])
    );
    let bad: [(i32, &[u32], &str); 8] = [
        // The first polygon's ring wound the other way: the stream starts with a hole.
        (3, &[9, 0, 0, 26, 0, 20, 20, 0, 0, 19, 15], "negative area"),
        // A square with a hole that is wound like an exterior is two polygons, so a ring of
        // zero area is what is left to reject: a collinear ring.
        (3, &[9, 0, 0, 18, 4, 0, 4, 0, 15], "zero area"),
        (
            3,
            &[9, 0, 0, 26, 8, 0, 7, 0, 8, 0, 15],
            "2 distinct vertices",
        ),
        (
            3,
            &[9, 0, 0, 26, 20, 0, 0, 20, 19, 19, 15],
            "repeats the first point",
        ),
        (2, &[9, 4, 4, 18, 0, 16, 0, 0], "dX = dY = 0"),
        (1, &[9, 10, 14, 9, 3, 9], "single MoveTo"),
        (
            3,
            &[9, 0, 0, 26, 20, 0, 0, 20, 19, 0, 23],
            "MoveTo(1) LineTo(n > 1) ClosePath",
        ),
        (2, &[9, 4, 4, 26, 0, 16], "runs past"),
    ];
    for (ty, geometry, why) in bad {
        let err = spec_geometry(ty, geometry).unwrap_err();
        assert!(err.contains(why), "{geometry:?}: {err:?}, expected {why:?}");
    }
}

/// `compare_tile` fails on a tile that breaks MVT 2.1 even when both decoders read it the same:
/// `LayerBuilder` encodes geometry as given, so a repeated vertex becomes a zero-length LineTo.
#[test]
#[should_panic(expected = "not MVT 2.1: LineTo with dX = dY = 0")]
fn compare_catches_a_zero_length_segment() {
    let mut layer = LayerBuilder::new("l", 4096);
    let line = TileGeom::Lines(vec![vec![[1, 1], [5, 5], [5, 5], [9, 1]]]);
    layer.add_feature(Some(1), &line, &[("k", PropValue::Bool(true))]);
    compare_tile("test", &encode_tile(&[layer]), &mut Seen::default());
}
