//! Property values from Arrow arrays (as the Parquet reader gives them, the file's own Arrow
//! schema ignored) to JSON:
//!
//! - integers and floats → numbers (NaN and infinities → `null`); booleans → booleans;
//! - strings → strings; a column of Parquet's JSON logical type → the JSON value it holds;
//! - binary → standard base64 (as for GeoPackage BLOBs);
//! - dates → `YYYY-MM-DD`; times → `HH:MM:SS[.fff]`; timestamps → ISO 8601
//!   (`YYYY-MM-DDTHH:MM:SS[.fff]`, with `Z` when the column is adjusted to UTC);
//! - decimals → numbers when their precision is at most 15 digits (an `f64` holds those
//!   exactly as text), else their exact text as a string;
//! - lists → arrays, structs → objects, maps → objects (string keys) or arrays of
//!   `[key, value]` pairs, each value converted by these same rules.
//!
//! Which types are read is checked once against the schema ([`check_type`]), so that a file
//! with a column of another type is refused when it is opened, naming the column.

use arrow_array::cast::AsArray;
use arrow_array::types::ArrowTemporalType;
use arrow_array::types::{
    Date32Type, Date64Type, Decimal32Type, Decimal64Type, Decimal128Type, Decimal256Type,
    Float16Type, Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type,
    Time32MillisecondType, Time32SecondType, Time64MicrosecondType, Time64NanosecondType,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use arrow_array::{Array, PrimitiveArray};
use arrow_schema::{DataType, TimeUnit};
use serde_json::{Map, Number, Value};

/// Deepest nesting of lists, structs and maps read as a property.
pub(super) const MAX_NESTING: usize = 64;
/// Decimals of at most this many digits are numbers; longer ones keep their exact text.
const MAX_FLOAT_DIGITS: u8 = 15;

/// Whether values of type `dt` can be read; the error names the type.
pub(super) fn check_type(dt: &DataType, depth: usize) -> Result<(), String> {
    if depth > MAX_NESTING {
        return Err(format!("nested deeper than {MAX_NESTING} levels"));
    }
    match dt {
        DataType::Null
        | DataType::Boolean
        | DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Float16
        | DataType::Float32
        | DataType::Float64
        | DataType::Utf8
        | DataType::LargeUtf8
        | DataType::Utf8View
        | DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_)
        | DataType::Date32
        | DataType::Date64
        | DataType::Time32(_)
        | DataType::Time64(_)
        | DataType::Timestamp(_, _)
        | DataType::Decimal32(_, _)
        | DataType::Decimal64(_, _)
        | DataType::Decimal128(_, _)
        | DataType::Decimal256(_, _) => Ok(()),
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            check_type(f.data_type(), depth + 1)
        }
        DataType::Struct(fields) => fields
            .iter()
            .try_for_each(|f| check_type(f.data_type(), depth + 1)),
        DataType::Map(entries, _) => check_type(entries.data_type(), depth + 1),
        other => Err(format!("of type {other}, which is not read")),
    }
}

/// The value at row `i` of `array` (of a type [`check_type`] accepted); `json` when the
/// column holds JSON text. An error rejects the row.
pub(super) fn value(array: &dyn Array, i: usize, json: bool) -> Result<Value, String> {
    if array.is_null(i) {
        return Ok(Value::Null);
    }
    let dt = array.data_type();
    Ok(match dt {
        DataType::Null => Value::Null,
        DataType::Boolean => Value::Bool(array.as_boolean().value(i)),
        DataType::Int8 => int(array.as_primitive::<Int8Type>().value(i)),
        DataType::Int16 => int(array.as_primitive::<Int16Type>().value(i)),
        DataType::Int32 => int(array.as_primitive::<Int32Type>().value(i)),
        DataType::Int64 => int(array.as_primitive::<Int64Type>().value(i)),
        DataType::UInt8 => int(array.as_primitive::<UInt8Type>().value(i)),
        DataType::UInt16 => int(array.as_primitive::<UInt16Type>().value(i)),
        DataType::UInt32 => int(array.as_primitive::<UInt32Type>().value(i)),
        DataType::UInt64 => Value::Number(array.as_primitive::<UInt64Type>().value(i).into()),
        DataType::Float16 => float(array.as_primitive::<Float16Type>().value(i).to_f64()),
        DataType::Float32 => float(f64::from(array.as_primitive::<Float32Type>().value(i))),
        DataType::Float64 => float(array.as_primitive::<Float64Type>().value(i)),
        DataType::Utf8 => text(array.as_string::<i32>().value(i), json)?,
        DataType::LargeUtf8 => text(array.as_string::<i64>().value(i), json)?,
        DataType::Utf8View => text(array.as_string_view().value(i), json)?,
        DataType::Binary => base64(array.as_binary::<i32>().value(i)),
        DataType::LargeBinary => base64(array.as_binary::<i64>().value(i)),
        DataType::BinaryView => base64(array.as_binary_view().value(i)),
        DataType::FixedSizeBinary(_) => base64(array.as_fixed_size_binary().value(i)),
        DataType::Date32 => date(array.as_primitive::<Date32Type>(), i)?,
        DataType::Date64 => date(array.as_primitive::<Date64Type>(), i)?,
        DataType::Time32(TimeUnit::Second) => time(array.as_primitive::<Time32SecondType>(), i)?,
        DataType::Time32(_) => time(array.as_primitive::<Time32MillisecondType>(), i)?,
        DataType::Time64(TimeUnit::Nanosecond) => {
            time(array.as_primitive::<Time64NanosecondType>(), i)?
        }
        DataType::Time64(_) => time(array.as_primitive::<Time64MicrosecondType>(), i)?,
        DataType::Timestamp(unit, tz) => {
            let utc = tz.is_some();
            match unit {
                TimeUnit::Second => timestamp(array.as_primitive::<TimestampSecondType>(), i, utc)?,
                TimeUnit::Millisecond => {
                    timestamp(array.as_primitive::<TimestampMillisecondType>(), i, utc)?
                }
                TimeUnit::Microsecond => {
                    timestamp(array.as_primitive::<TimestampMicrosecondType>(), i, utc)?
                }
                TimeUnit::Nanosecond => {
                    timestamp(array.as_primitive::<TimestampNanosecondType>(), i, utc)?
                }
            }
        }
        DataType::Decimal32(p, _) => decimal(array.as_primitive::<Decimal32Type>(), i, *p),
        DataType::Decimal64(p, _) => decimal(array.as_primitive::<Decimal64Type>(), i, *p),
        DataType::Decimal128(p, _) => decimal(array.as_primitive::<Decimal128Type>(), i, *p),
        DataType::Decimal256(p, _) => decimal(array.as_primitive::<Decimal256Type>(), i, *p),
        DataType::List(_) => items(array.as_list::<i32>().value(i).as_ref())?,
        DataType::LargeList(_) => items(array.as_list::<i64>().value(i).as_ref())?,
        DataType::FixedSizeList(_, _) => items(array.as_fixed_size_list().value(i).as_ref())?,
        DataType::Struct(fields) => {
            let s = array.as_struct();
            let mut object = Map::with_capacity(fields.len());
            for (field, column) in fields.iter().zip(s.columns()) {
                object.insert(field.name().clone(), value(column.as_ref(), i, false)?);
            }
            Value::Object(object)
        }
        DataType::Map(_, _) => {
            let entries = array.as_map().value(i);
            let (keys, values) = (entries.column(0), entries.column(1));
            if matches!(keys.data_type(), DataType::Utf8 | DataType::LargeUtf8) {
                let mut object = Map::with_capacity(entries.len());
                for j in 0..entries.len() {
                    let Value::String(key) = value(keys.as_ref(), j, false)? else {
                        return Err("a null map key".into());
                    };
                    object.insert(key, value(values.as_ref(), j, false)?);
                }
                Value::Object(object)
            } else {
                let mut pairs = Vec::with_capacity(entries.len());
                for j in 0..entries.len() {
                    pairs.push(Value::Array(vec![
                        value(keys.as_ref(), j, false)?,
                        value(values.as_ref(), j, false)?,
                    ]));
                }
                Value::Array(pairs)
            }
        }
        other => return Err(format!("a value of type {other}, which is not read")),
    })
}

fn items(list: &dyn Array) -> Result<Value, String> {
    (0..list.len())
        .map(|j| value(list, j, false))
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

fn int(v: impl Into<i64>) -> Value {
    Value::Number(Number::from(v.into()))
}

fn float(v: f64) -> Value {
    Number::from_f64(v).map_or(Value::Null, Value::Number)
}

fn text(s: &str, json: bool) -> Result<Value, String> {
    if json {
        serde_json::from_str(s).map_err(|e| format!("a JSON column holds invalid JSON: {e}"))
    } else {
        Ok(Value::String(s.to_owned()))
    }
}

fn base64(bytes: &[u8]) -> Value {
    Value::String(crate::formats::base64(bytes))
}

fn date<T: ArrowTemporalType>(a: &PrimitiveArray<T>, i: usize) -> Result<Value, String>
where
    i64: From<T::Native>,
{
    a.value_as_date(i)
        .map(|d| Value::String(d.format("%Y-%m-%d").to_string()))
        .ok_or_else(|| format!("a date out of range ({})", i64::from(a.value(i))))
}

fn time<T: ArrowTemporalType>(a: &PrimitiveArray<T>, i: usize) -> Result<Value, String>
where
    i64: From<T::Native>,
{
    a.value_as_time(i)
        .map(|t| Value::String(t.format("%H:%M:%S%.f").to_string()))
        .ok_or_else(|| format!("a time of day out of range ({})", i64::from(a.value(i))))
}

fn timestamp<T: ArrowTemporalType>(
    a: &PrimitiveArray<T>,
    i: usize,
    utc: bool,
) -> Result<Value, String>
where
    i64: From<T::Native>,
{
    a.value_as_datetime(i)
        .map(|t| {
            let mut s = t.format("%Y-%m-%dT%H:%M:%S%.f").to_string();
            if utc {
                s.push('Z');
            }
            Value::String(s)
        })
        .ok_or_else(|| format!("a timestamp out of range ({})", i64::from(a.value(i))))
}

fn decimal<T: arrow_array::types::DecimalType>(
    a: &PrimitiveArray<T>,
    i: usize,
    precision: u8,
) -> Value {
    let exact = a.value_as_string(i);
    if precision <= MAX_FLOAT_DIGITS
        && let Ok(f) = exact.parse::<f64>()
        && let Some(n) = Number::from_f64(f)
    {
        return Value::Number(n);
    }
    Value::String(exact)
}
