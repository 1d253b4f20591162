//! The primary geometry column of a record batch, row by row: WKB through the shared reader
//! ([`crate::formats::wkb`]: ISO Z/M codes, either byte order), or GeoArrow's native
//! encodings: lists (0 to 3 levels) around a coordinate that is a struct of `x`, `y` (and
//! `z`/`m`, dropped) doubles, or an interleaved list of 2 to 4 doubles. GeoParquet stores
//! x = easting/longitude first whatever the CRS says.

use std::ops::Range;

use arrow_array::cast::AsArray;
use arrow_array::types::Float64Type;
use arrow_array::{Array, ArrayRef, Float64Array, ListArray, StructArray};
use arrow_schema::DataType;
use geo_types::{
    Coord, Geometry, LineString, MultiLineString, MultiPoint, MultiPolygon, Point, Polygon,
};

use super::metadata::Encoding;
use crate::formats::MAX_RECORD_BYTES;
use crate::validate::check_ring_closed;

/// Whether a column of type `dt` can hold geometries encoded as `encoding`; the error says
/// what it holds instead.
pub(super) fn check_type(dt: &DataType, encoding: Encoding) -> Result<(), String> {
    let Some(depth) = encoding.list_depth() else {
        return match dt {
            DataType::Binary | DataType::LargeBinary | DataType::BinaryView => Ok(()),
            other => Err(format!(
                "its encoding is WKB but the column holds {other}, not binary"
            )),
        };
    };
    let mut current = dt;
    for level in 0..depth {
        match current {
            DataType::List(child) => current = child.data_type(),
            other => {
                return Err(format!(
                    "its encoding is {} but level {level} of the column is {other}, not a list",
                    encoding.name()
                ));
            }
        }
    }
    match current {
        DataType::Struct(fields)
            if ["x", "y"].iter().all(|name| {
                fields
                    .iter()
                    .any(|f| f.name() == name && f.data_type() == &DataType::Float64)
            }) =>
        {
            Ok(())
        }
        DataType::List(child) if child.data_type() == &DataType::Float64 => Ok(()),
        other => Err(format!(
            "its encoding is {} but its coordinates are {other}, not a struct of x and y doubles or a list of doubles",
            encoding.name()
        )),
    }
}

/// How the coordinates of a native column are laid out.
enum Coords<'a> {
    Separated {
        parent: &'a StructArray,
        x: &'a Float64Array,
        y: &'a Float64Array,
    },
    Interleaved {
        list: &'a ListArray,
        values: &'a Float64Array,
    },
}

enum Column<'a> {
    Wkb(&'a dyn Array),
    Native {
        /// The list levels, outermost first; empty for points.
        levels: Vec<&'a ListArray>,
        coords: Coords<'a>,
    },
}

/// One batch's geometry column, ready to be read by row.
pub(super) struct GeometryColumn<'a> {
    top: &'a dyn Array,
    encoding: Encoding,
    column: Column<'a>,
}

impl<'a> GeometryColumn<'a> {
    pub(super) fn new(array: &'a ArrayRef, encoding: Encoding) -> Result<Self, String> {
        check_type(array.data_type(), encoding)?;
        let column = match encoding.list_depth() {
            None => Column::Wkb(array.as_ref()),
            Some(depth) => {
                let mut levels = Vec::with_capacity(depth);
                let mut current: &'a dyn Array = array.as_ref();
                for _ in 0..depth {
                    let list = current
                        .as_list_opt::<i32>()
                        .ok_or("a geometry list level is not a list")?;
                    levels.push(list);
                    current = list.values().as_ref();
                }
                Column::Native {
                    levels,
                    coords: coords(current)?,
                }
            }
        };
        Ok(GeometryColumn {
            top: array.as_ref(),
            encoding,
            column,
        })
    }

    /// The geometry of row `i`: `None` for a null or an empty geometry; an error (rejecting
    /// the row) for one that cannot be read.
    pub(super) fn get(
        &self,
        i: usize,
        repairs: &mut crate::repair::Repairs,
    ) -> Result<Option<Geometry<f64>>, String> {
        if self.top.is_null(i) {
            return Ok(None);
        }
        match &self.column {
            Column::Wkb(array) => {
                let bytes = binary_value(*array, i).ok_or("the WKB value cannot be read")?;
                if bytes.len() > MAX_RECORD_BYTES {
                    return Err(format!(
                        "a WKB geometry of {} bytes (at most {MAX_RECORD_BYTES})",
                        bytes.len()
                    ));
                }
                crate::formats::wkb::read(bytes, repairs).map_err(|e| e.to_string())
            }
            Column::Native { levels, coords } => {
                let native = Native { levels, coords };
                native.geometry(self.encoding, i)
            }
        }
    }
}

fn binary_value(array: &dyn Array, i: usize) -> Option<&[u8]> {
    if let Some(a) = array.as_binary_opt::<i32>() {
        return (i < a.len()).then(|| a.value(i));
    }
    if let Some(a) = array.as_binary_opt::<i64>() {
        return (i < a.len()).then(|| a.value(i));
    }
    array
        .as_binary_view_opt()
        .and_then(|a| (i < a.len()).then(|| a.value(i)))
}

fn coords(array: &dyn Array) -> Result<Coords<'_>, String> {
    if let Some(parent) = array.as_struct_opt() {
        let field = |name: &str| {
            parent
                .column_by_name(name)
                .and_then(|c| c.as_primitive_opt::<Float64Type>())
                .ok_or_else(|| format!("the coordinate struct has no {name} doubles"))
        };
        return Ok(Coords::Separated {
            parent,
            x: field("x")?,
            y: field("y")?,
        });
    }
    let list = array
        .as_list_opt::<i32>()
        .ok_or("the coordinates are neither a struct nor a list")?;
    let values = list
        .values()
        .as_primitive_opt::<Float64Type>()
        .ok_or("the interleaved coordinates are not doubles")?;
    Ok(Coords::Interleaved { list, values })
}

struct Native<'c, 'a> {
    levels: &'c [&'a ListArray],
    coords: &'c Coords<'a>,
}

impl Native<'_, '_> {
    fn geometry(&self, encoding: Encoding, i: usize) -> Result<Option<Geometry<f64>>, String> {
        let g: Geometry<f64> = match encoding {
            Encoding::Point => {
                let c = self.raw_coord(i)?;
                if c.x.is_nan() && c.y.is_nan() {
                    return Ok(None);
                }
                if c.x.is_nan() || c.y.is_nan() {
                    return Err("NaN coordinate".into());
                }
                Point(c).into()
            }
            Encoding::LineString => LineString(self.coords(0, i)?).into(),
            Encoding::MultiPoint => {
                MultiPoint(self.coords(0, i)?.into_iter().map(Point).collect()).into()
            }
            Encoding::Polygon => self.polygon(0, i)?.into(),
            Encoding::MultiLineString => MultiLineString(
                self.range(0, i)?
                    .map(|j| self.coords(1, j).map(LineString))
                    .collect::<Result<_, _>>()?,
            )
            .into(),
            Encoding::MultiPolygon => MultiPolygon(
                self.range(0, i)?
                    .enumerate()
                    .map(|(n, j)| {
                        self.polygon(1, j)
                            .map_err(|e| format!("MultiPolygon part {n}: {e}"))
                    })
                    .collect::<Result<_, _>>()?,
            )
            .into(),
            Encoding::Wkb => return Err("not a native encoding".into()),
        };
        Ok((!is_empty(&g)).then_some(g))
    }

    /// The child positions of item `i` of list level `level`.
    fn range(&self, level: usize, i: usize) -> Result<Range<usize>, String> {
        let list = self
            .levels
            .get(level)
            .ok_or("the geometry has fewer list levels than its encoding")?;
        list_range(list, i)
    }

    fn polygon(&self, level: usize, i: usize) -> Result<Polygon<f64>, String> {
        let mut rings = Vec::new();
        for (n, j) in self.range(level, i)?.enumerate() {
            let ring = self.coords(level + 1, j)?;
            check_ring_closed(&ring, n)?;
            rings.push(LineString(ring));
        }
        let mut rings = rings.into_iter();
        let exterior = rings.next().unwrap_or_else(|| LineString(Vec::new()));
        Ok(Polygon::new(exterior, rings.collect()))
    }

    fn coords(&self, level: usize, i: usize) -> Result<Vec<Coord<f64>>, String> {
        self.range(level, i)?
            .map(|k| {
                let c = self.raw_coord(k)?;
                if c.x.is_nan() || c.y.is_nan() {
                    return Err("NaN coordinate".into());
                }
                Ok(c)
            })
            .collect()
    }

    fn raw_coord(&self, k: usize) -> Result<Coord<f64>, String> {
        match self.coords {
            Coords::Separated { parent, x, y } => {
                if parent.is_null(k) || x.is_null(k) || y.is_null(k) {
                    return Err("a null coordinate".into());
                }
                match (x.values().get(k), y.values().get(k)) {
                    (Some(&x), Some(&y)) => Ok(Coord { x, y }),
                    _ => Err("a coordinate past the end of the column".into()),
                }
            }
            Coords::Interleaved { list, values } => {
                let r = list_range(list, k)?;
                if r.len() < 2 || r.len() > 4 {
                    return Err(format!(
                        "an interleaved coordinate of {} values (2 to 4 expected)",
                        r.len()
                    ));
                }
                if values.is_null(r.start) || values.is_null(r.start + 1) {
                    return Err("a null coordinate".into());
                }
                match (
                    values.values().get(r.start),
                    values.values().get(r.start + 1),
                ) {
                    (Some(&x), Some(&y)) => Ok(Coord { x, y }),
                    _ => Err("a coordinate past the end of the column".into()),
                }
            }
        }
    }
}

fn list_range(list: &ListArray, i: usize) -> Result<Range<usize>, String> {
    if list.is_null(i) {
        return Err("a null inside a geometry".into());
    }
    let offsets = list.value_offsets();
    match (offsets.get(i), offsets.get(i + 1)) {
        (Some(&start), Some(&end)) if 0 <= start && start <= end => {
            Ok(start as usize..end as usize)
        }
        _ => Err("a geometry list offset out of range".into()),
    }
}

fn is_empty(g: &Geometry<f64>) -> bool {
    match g {
        Geometry::LineString(l) => l.0.is_empty(),
        Geometry::Polygon(p) => p.exterior().0.is_empty() && p.interiors().is_empty(),
        Geometry::MultiPoint(m) => m.0.is_empty(),
        Geometry::MultiLineString(m) => m.0.is_empty(),
        Geometry::MultiPolygon(m) => m.0.is_empty(),
        _ => false,
    }
}
