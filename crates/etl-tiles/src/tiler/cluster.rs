//! Point clustering (`--cluster-distance`, tippecanoe's `-K`).
//!
//! At a clustered zoom every single-point feature belongs to one cell of a grid of about
//! `distance` screen pixels: each tile is cut into `n × n` cells, `n = round(256 / distance)`.
//! All the points of a layer in one cell become one feature: the first of them in input order,
//! moved to their mean position (or left where it is with `keep_position`), with `clustered`,
//! `point_count`, `sqrt_point_count` and `point_count_abbreviated` as tippecanoe writes them, and
//! the `--accumulate-attribute` folds of the others. A cell holding one point shows that point
//! unchanged.
//!
//! What the grid guarantees, and tippecanoe's sequential merge does not:
//! - **Counts add up:** at every clustered zoom the `point_count`s (1 for a point left alone)
//!   sum to the number of point features, whatever the memory budget or the thread count.
//! - **Nesting:** a cell at zoom z is exactly four cells at z + 1 (cell index = the child's
//!   index halved), so a cluster splits into the clusters inside it as the map zooms in, and its
//!   position is inside its own cell, hence inside its own tile.
//! - **Bounded memory:** points reach assembly already folded: the tile stream folds the sorted
//!   fragments of a cell as they come out of the sort, so a tile holds one feature per cell, not
//!   one per point, whatever the input size.
//!
//! The counts add up in every tile that no dropping strategy reduced: `--drop-*-as-needed` and
//! `--coalesce-densest-as-needed` treat a cluster as one point and may drop it (counted in the
//! run's `dropped`, not folded into a neighbour).
//!
//! Drop-rate thinning does not apply to points at clustered zooms (clustering replaces it, as
//! tippecanoe's `-r1` advice does by hand); below `-k N`'s zoom it applies again as usual.
//! Multi-point features of more than one point are not clustered.

use std::collections::BTreeMap;

use super::accumulate::{Acc, AccumOp};
use super::attrs::FieldType;
use super::codec::{
    Reader, Truncated, decode_value, get_fragment, props_iter, put_fragment, put_value, put_varint,
};
use super::cut::order_layer;
use super::sort::TileBatch;
use crate::geom::TileGeom;
use crate::mvt::PropValue;
use crate::tile::{TileCoord, WORLD_BITS};

/// `--cluster-distance` and its companions.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterOptions {
    /// `-K`: the cell size in screen pixels of a 256-pixel tile, 1 to 255.
    pub distance: u8,
    /// `-k`: the deepest zoom clustered.
    pub max_zoom: ClusterMaxZoom,
    /// `--keep-point-cluster-position`: a cluster stays at its first point, not the mean.
    pub keep_position: bool,
    /// `-E NAME:OP`: the attributes folded from a cluster's members.
    pub accumulate: Vec<(String, AccumOp)>,
}

/// `-k`: which zooms are clustered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterMaxZoom {
    /// Every zoom (tippecanoe's default).
    Every,
    /// Zooms up to this one.
    Zoom(u8),
    /// `-kg`: every zoom below the max zoom, so that every point shows at the max zoom.
    BelowMax,
}

/// The attribute names a cluster writes, which `--accumulate-attribute` may not name.
pub const CLUSTER_KEYS: [&str; 4] = [
    "clustered",
    "point_count",
    "sqrt_point_count",
    "point_count_abbreviated",
];

impl ClusterOptions {
    /// Checks the options; the message names the offending flag.
    pub fn validate(&self) -> Result<(), String> {
        if self.distance == 0 {
            return Err("--cluster-distance must be 1 to 255 pixels".into());
        }
        let mut seen = std::collections::HashSet::new();
        for (name, _) in &self.accumulate {
            if CLUSTER_KEYS.contains(&name.as_str()) {
                return Err(format!(
                    "--accumulate-attribute {name}: a cluster writes {name} itself"
                ));
            }
            if !seen.insert(name) {
                return Err(format!(
                    "--accumulate-attribute {name}: given more than once"
                ));
            }
        }
        Ok(())
    }

    /// The deepest clustered zoom of a run whose max zoom is `max_zoom`; `None`: no zoom.
    pub(crate) fn deepest(&self, max_zoom: u8) -> Option<u8> {
        match self.max_zoom {
            ClusterMaxZoom::Every => Some(u8::MAX),
            ClusterMaxZoom::Zoom(z) => Some(z),
            ClusterMaxZoom::BelowMax => max_zoom.checked_sub(1),
        }
    }
}

/// The cutter's view of clustering: the grid and the zooms it applies to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClusterCut {
    /// Cells per tile side.
    pub cells: u64,
    /// Zooms up to this one are clustered.
    pub max_zoom: u8,
}

impl ClusterCut {
    pub(crate) fn new(distance: u8, max_zoom: u8) -> ClusterCut {
        let cells = (256.0 / f64::from(distance.max(1)))
            .round()
            .clamp(1.0, 256.0) as u64;
        ClusterCut { cells, max_zoom }
    }

    /// The global cell (x, y) of world point `p` at zoom `z`, and the tile holding it.
    pub(crate) fn cell(&self, p: [i64; 2], z: u8) -> ([u64; 2], Option<TileCoord>) {
        let idx = |v: i64| -> u64 {
            let v = v.clamp(0, i64::from(u32::MAX)) as u128;
            // < 2^32 · 256 · 2^24 / 2^32: fits u64.
            (((v * u128::from(self.cells)) << z) >> WORLD_BITS) as u64
        };
        let cell = [idx(p[0]), idx(p[1])];
        let tile = TileCoord::new(
            z,
            (cell[0] / self.cells) as u32,
            (cell[1] / self.cells) as u32,
        );
        (cell, tile)
    }

    /// The world position of a cell's centre (its place in the tile's fragment order).
    pub(crate) fn centre(&self, cell: [u64; 2], z: u8) -> [i64; 2] {
        let c = |i: u64| {
            let num = (2 * u128::from(i) + 1) << WORLD_BITS;
            let den = (2 * u128::from(self.cells)) << z;
            (num / den).min(u128::from(u32::MAX)) as i64
        };
        [c(cell[0]), c(cell[1])]
    }
}

/// The first byte of a cluster member's payload (fragment payloads start with an id tag 0-2,
/// fills with 0xF1).
const MEMBER_TAG: u8 = 0xC1;

/// Appends a cluster member: the tag, its global cell, then the point's fragment payload.
pub(crate) fn put_member(
    out: &mut Vec<u8>,
    cell: [u64; 2],
    id: Option<u64>,
    props: &[u8],
    geom: &TileGeom,
) {
    out.push(MEMBER_TAG);
    put_varint(out, cell[0]);
    put_varint(out, cell[1]);
    put_fragment(out, id, 0, props, geom);
}

/// A cluster member's global cell and its fragment payload.
pub(crate) type Member<'a> = ([u64; 2], &'a [u8]);

/// Whether a sorted payload is a cluster member; if so, its cell and fragment payload.
pub(crate) fn split_member(payload: &[u8]) -> Result<Option<Member<'_>>, Truncated> {
    let Some((&MEMBER_TAG, rest)) = payload.split_first() else {
        return Ok(None);
    };
    let mut r = Reader::new(rest);
    let cell = [r.varint()?, r.varint()?];
    Ok(Some((cell, rest.get(r.pos()..).ok_or(Truncated)?)))
}

/// Key indices of the attributes a cluster writes, and the accumulated ones.
#[derive(Debug, Clone)]
pub(crate) struct ClusterSetup {
    /// Indices of [`CLUSTER_KEYS`] in the key table.
    pub keys: [usize; 4],
    /// (key index, operation) of each accumulated attribute some feature carries.
    pub specs: Vec<(usize, AccumOp)>,
    pub keep_position: bool,
}

/// What folding made, for the report and the `vector_layers` field types.
#[derive(Debug, Default)]
pub(crate) struct FoldStats {
    /// Cluster features made (cells of more than one point), tile by tile.
    pub clusters: u64,
    /// Points folded into another (a cluster of k points absorbs k − 1).
    pub absorbed: u64,
    /// Accumulated texts cut at their cap.
    pub truncated: u64,
    /// (layer, key index) → type of what clusters wrote.
    pub fields: BTreeMap<(u32, usize), FieldType>,
}

/// A cell being folded.
struct Open {
    /// The first member: its sequence number and fragment payload.
    seq: u64,
    first: Vec<u8>,
    count: u64,
    sum: [i64; 2],
    accs: Vec<Acc>,
}

/// Folds the cluster members of a tile's sorted fragments into one feature per cell, handing
/// every other fragment through unchanged (see the module doc).
pub(crate) struct Fold {
    setup: ClusterSetup,
    /// The cells being folded, all of the sort order `order`: members of a cell share its order
    /// key, so they come out of the sort together (by sequence) and a cell is complete when the
    /// order moves on.
    open: Vec<Open>,
    /// Where each open cell is in `open`: at deep zooms many cells share an order key (it keeps
    /// 24 bits of each axis), and a scan per member would be quadratic.
    index: rustc_hash::FxHashMap<[u64; 2], usize>,
    order: u64,
    scratch: Vec<u8>,
    body: Vec<u8>,
    pub(crate) stats: FoldStats,
}

impl Fold {
    pub(crate) fn new(setup: ClusterSetup) -> Fold {
        Fold {
            setup,
            open: Vec::new(),
            index: rustc_hash::FxHashMap::default(),
            order: 0,
            scratch: Vec::new(),
            body: Vec::new(),
            stats: FoldStats::default(),
        }
    }

    /// Hands one sorted fragment of the current tile to `batch`, folding cluster members.
    pub(crate) fn push(
        &mut self,
        batch: &mut TileBatch,
        order: u64,
        seq: u64,
        payload: &[u8],
    ) -> Result<(), Truncated> {
        if order != self.order {
            self.end_tile(batch)?;
            self.order = order;
        }
        let Some((cell, frag)) = split_member(payload)? else {
            batch.push_frag(order, seq, payload);
            return Ok(());
        };
        let f = get_fragment(frag)?;
        let p = match &f.geom {
            TileGeom::Points(p) => match p.as_slice() {
                [one] => *one,
                _ => return Err(Truncated),
            },
            _ => return Err(Truncated),
        };
        let at = match self.index.get(&cell) {
            Some(&i) => i,
            None => {
                self.index.insert(cell, self.open.len());
                self.open.push(Open {
                    seq,
                    first: frag.to_vec(),
                    count: 0,
                    sum: [0, 0],
                    accs: self
                        .setup
                        .specs
                        .iter()
                        .map(|(_, op)| Acc::new(*op))
                        .collect(),
                });
                self.open.len() - 1
            }
        };
        let o = self.open.get_mut(at).ok_or(Truncated)?;
        o.count += 1;
        o.sum[0] = o.sum[0].saturating_add(i64::from(p[0]));
        o.sum[1] = o.sum[1].saturating_add(i64::from(p[1]));
        if !self.setup.specs.is_empty() {
            for prop in props_iter(f.props) {
                let (k, raw) = prop?;
                for (i, (key, _)) in self.setup.specs.iter().enumerate() {
                    if *key == k
                        && let Some(a) = o.accs.get_mut(i)
                    {
                        a.add(&decode_value(raw)?);
                    }
                }
            }
        }
        Ok(())
    }

    /// Writes the cells still open (at the end of a tile, or when the sort order moves on).
    pub(crate) fn end_tile(&mut self, batch: &mut TileBatch) -> Result<(), Truncated> {
        self.index.clear();
        let mut open = std::mem::take(&mut self.open);
        for o in open.drain(..) {
            if o.count <= 1 {
                batch.push_frag(self.order, o.seq, &o.first);
                continue;
            }
            self.write_cluster(batch, &o)?;
        }
        self.open = open;
        Ok(())
    }

    fn write_cluster(&mut self, batch: &mut TileBatch, o: &Open) -> Result<(), Truncated> {
        let first = get_fragment(&o.first)?;
        let TileGeom::Points(p) = &first.geom else {
            return Err(Truncated);
        };
        let at = match (self.setup.keep_position, p.first()) {
            (true, Some(p)) => *p,
            _ => {
                let n = o.count as f64;
                let c = |s: i64| (s as f64 / n).round() as i32;
                [c(o.sum[0]), c(o.sum[1])]
            }
        };
        let layer = order_layer(self.order);
        let count = o.count;
        let mut set: Vec<(usize, PropValue)> = Vec::with_capacity(4 + o.accs.len());
        for ((key, _), a) in self.setup.specs.iter().zip(&o.accs) {
            if a.truncated {
                self.stats.truncated += 1;
            }
            if let Some(v) = a.finish() {
                set.push((*key, v));
            }
        }
        let [clustered, point_count, sqrt, abbrev] = self.setup.keys;
        set.push((clustered, PropValue::Bool(true)));
        set.push((point_count, PropValue::UInt(count)));
        set.push((
            sqrt,
            PropValue::Double(((count as f64).sqrt() * 100.0).round() / 100.0),
        ));
        set.push((abbrev, PropValue::String(abbreviate(count))));
        self.body.clear();
        let mut n = 0u64;
        for prop in props_iter(first.props) {
            let (k, raw) = prop?;
            if set.iter().any(|(s, _)| *s == k) {
                continue;
            }
            put_varint(&mut self.body, k as u64);
            self.body.extend_from_slice(raw);
            n += 1;
        }
        for (k, v) in &set {
            put_varint(&mut self.body, *k as u64);
            put_value(&mut self.body, v);
            n += 1;
            let t = FieldType::of(v);
            self.stats
                .fields
                .entry((layer, *k))
                .and_modify(|e| *e = e.join(t))
                .or_insert(t);
        }
        let mut props = Vec::with_capacity(self.body.len() + 4);
        put_varint(&mut props, n);
        props.extend_from_slice(&self.body);
        self.scratch.clear();
        put_fragment(
            &mut self.scratch,
            first.id,
            0,
            &props,
            &TileGeom::Points(vec![at]),
        );
        batch.push_frag(self.order, o.seq, &self.scratch);
        self.stats.clusters += 1;
        self.stats.absorbed += count - 1;
        Ok(())
    }
}

/// tippecanoe's `point_count_abbreviated`: `15k`, `1.2k`, `999`.
pub(crate) fn abbreviate(count: u64) -> String {
    if count >= 10_000 {
        format!("{:.0}k", count as f64 / 1000.0)
    } else if count >= 1000 {
        format!("{:.1}k", count as f64 / 1000.0)
    } else {
        count.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_nest_and_stay_in_their_tile() {
        for d in [1u8, 3, 10, 77, 200, 255] {
            let g = ClusterCut::new(d, 24);
            assert!((1..=256).contains(&g.cells));
            for p in [
                [0i64, 0],
                [123_456_789, 3_000_000_000],
                [u32::MAX as i64; 2],
            ] {
                for z in 0..24u8 {
                    let (c, t) = g.cell(p, z);
                    let (child, _) = g.cell(p, z + 1);
                    assert_eq!([child[0] / 2, child[1] / 2], c, "d {d} z {z}");
                    let t = t.expect("a tile");
                    let shift = WORLD_BITS - u32::from(z);
                    assert_eq!((t.x, t.y), ((p[0] >> shift) as u32, (p[1] >> shift) as u32));
                    // The centre is in the same cell.
                    assert_eq!(g.cell(g.centre(c, z), z).0, c, "d {d} z {z} {p:?}");
                }
            }
        }
        assert_eq!(ClusterCut::new(10, 0).cells, 26);
        assert_eq!(ClusterCut::new(255, 0).cells, 1);
        assert_eq!(ClusterCut::new(1, 0).cells, 256);
    }

    #[test]
    fn member_payloads_round_trip_and_never_panic() {
        let mut out = Vec::new();
        put_member(
            &mut out,
            [7, u64::MAX],
            Some(3),
            &[0],
            &TileGeom::Points(vec![[1, 2]]),
        );
        let (cell, frag) = split_member(&out).unwrap().unwrap();
        assert_eq!(cell, [7, u64::MAX]);
        assert_eq!(get_fragment(frag).unwrap().id, Some(3));
        for cut in 1..out.len() {
            if let Ok(Some((_, f))) = split_member(&out[..cut]) {
                assert!(get_fragment(f).is_err());
            }
        }
        assert!(split_member(&[0, 1, 2]).unwrap().is_none());
    }

    #[test]
    fn abbreviations() {
        assert_eq!(abbreviate(999), "999");
        assert_eq!(abbreviate(1234), "1.2k");
        assert_eq!(abbreviate(15_234), "15k");
    }

    #[test]
    fn options_are_checked() {
        let ok = ClusterOptions {
            distance: 10,
            max_zoom: ClusterMaxZoom::BelowMax,
            keep_position: false,
            accumulate: vec![("pop".into(), AccumOp::Sum)],
        };
        assert!(ok.validate().is_ok());
        assert_eq!(ok.deepest(0), None);
        assert_eq!(ok.deepest(14), Some(13));
        let zero = ClusterOptions {
            distance: 0,
            ..ok.clone()
        };
        assert!(zero.validate().is_err());
        let own = ClusterOptions {
            accumulate: vec![("point_count".into(), AccumOp::Sum)],
            ..ok.clone()
        };
        assert!(own.validate().unwrap_err().contains("point_count"));
        let twice = ClusterOptions {
            accumulate: vec![("a".into(), AccumOp::Sum), ("a".into(), AccumOp::Max)],
            ..ok
        };
        assert!(twice.validate().unwrap_err().contains("more than once"));
    }
}
