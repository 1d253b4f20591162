//! Mapbox Vector Tile 2.1 encoding and decoding.
//!
//! The protobuf layer is written by hand: the MVT schema is tiny (varints, zigzag, fixed32/64,
//! length-delimited fields) and a direct writer avoids building an intermediate message tree per
//! tile. The decoder is an independent reading of the spec, used by tests and `verify`.

mod decode;
mod describe;
mod encode;
mod stats;

pub use decode::decode_tile;
pub use describe::{feature_lines, value_text};
pub use encode::{LayerBuilder, encode_tile};
pub use stats::{LayerStats, tile_stats};

use crate::geom::TileGeom;

/// A feature property value; the variant is the MVT `Value` field it is encoded as.
#[derive(Debug, Clone, PartialEq)]
pub enum PropValue {
    /// `string_value` (1).
    String(String),
    /// `float_value` (2).
    Float(f32),
    /// `double_value` (3).
    Double(f64),
    /// `int_value` (4), varint two's complement.
    Int(i64),
    /// `uint_value` (5).
    UInt(u64),
    /// `sint_value` (6), zigzag.
    SInt(i64),
    /// `bool_value` (7).
    Bool(bool),
}

/// A decoded layer.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedLayer {
    /// Layer name (unique within a tile).
    pub name: String,
    /// Extent, 4096 when the field is absent (the proto2 default).
    pub extent: u32,
    /// Layer version (1 or 2).
    pub version: u32,
    /// Features in file order.
    pub features: Vec<DecodedFeature>,
}

/// A decoded feature.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedFeature {
    /// Feature id when present.
    pub id: Option<u64>,
    /// Geometry; polygon rings closed and grouped by winding.
    pub geom: TileGeom,
    /// Properties in tag order.
    pub props: Vec<(String, PropValue)>,
}

/// Why a tile could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MvtError {
    /// The buffer ends inside a field.
    #[error("truncated protobuf at byte {0}")]
    Truncated(usize),
    /// A varint longer than 10 bytes, or over 64 bits.
    #[error("malformed varint at byte {0}")]
    BadVarint(usize),
    /// Wire type 3/4 (groups), 6 or 7.
    #[error("unsupported protobuf wire type {0}")]
    BadWireType(u8),
    /// A known field encoded with the wrong wire type (e.g. a string extent).
    #[error("field {field} of {message} has wire type {wire}, expected {expected}")]
    WrongWireType {
        /// Message being decoded.
        message: &'static str,
        /// Field number.
        field: u32,
        /// Wire type found.
        wire: u8,
        /// Wire type expected.
        expected: u8,
    },
    /// A field number of 0, which protobuf forbids.
    #[error("protobuf field number 0")]
    FieldZero,
    /// A value does not fit its declared type (e.g. a uint32 over 2^32).
    #[error("{0} out of range")]
    OutOfRange(&'static str),
    /// A string that is not UTF-8.
    #[error("invalid UTF-8 in {0}")]
    Utf8(&'static str),
    /// A layer without a name.
    #[error("layer without a name")]
    MissingName,
    /// A layer without a version (v2 requires it).
    #[error("layer {0:?} without a version")]
    MissingVersion(String),
    /// A layer version other than 1 or 2.
    #[error("layer {name:?} has unsupported version {version}")]
    UnsupportedVersion {
        /// Layer name.
        name: String,
        /// Version found.
        version: u32,
    },
    /// Two layers with the same name.
    #[error("duplicate layer name {0:?}")]
    DuplicateLayer(String),
    /// A value message with no (or an unknown) type field.
    #[error("layer {0:?} has a value of unknown type")]
    UnknownValueType(String),
    /// A tags array of odd length.
    #[error("feature has an odd number of tags")]
    OddTags,
    /// A tag indexing past the keys or values table.
    #[error("feature tag {kind} index {index} out of range")]
    TagIndex {
        /// `key` or `value`.
        kind: &'static str,
        /// The index found.
        index: u32,
    },
    /// A geometry type outside the GeomType enum.
    #[error("unknown geometry type {0}")]
    GeomType(u64),
    /// A typed feature without geometry commands.
    #[error("feature has no geometry")]
    MissingGeometry,
    /// A geometry command stream that breaks the spec's grammar.
    #[error("invalid geometry: {0}")]
    Geometry(&'static str),
}
