//! The sizes a Parquet page header gives the Parquet library, read before the library reads
//! the header (and allocates what it claims).
//!
//! The library's own header decoder is not public, so this reads the Thrift compact encoding
//! the way parquet 60's `PageHeader::read_thrift` does, field by field, and returns exactly the
//! values it will use:
//!
//! - A known field (`PageHeader`, the data, dictionary and index page headers, page
//!   statistics) is read by its schema type whatever type its header declares, as the library
//!   does; here a declared type that would make the two read different bytes is refused. An
//!   integer field may be declared i16, i32 or i64 (all one varint), and is kept as the
//!   library keeps it: the zigzag value cast to `i32`.
//! - A field repeated overwrites the earlier one; the header is read up to its Stop (a field
//!   type of 0), not up to the first sizes found.
//! - Unknown fields are skipped as the library skips them.
//! - Anything the library would not read the same way (an unknown type, a varint over 10
//!   bytes, a field id overflowing `i16`), a header nested deeper or longer than any real one,
//!   and a header reaching past the end of its column chunk: refused, as corrupt data.

use parquet::errors::ParquetError;

/// Fields, elements and nesting a page header may have.
const BUDGET: u32 = 100_000;
const MAX_DEPTH: u32 = 32;

/// Why a header was not read.
#[derive(Debug)]
pub(super) enum Unreadable {
    /// Not a header the library would read the way this does; the reason.
    Malformed(&'static str),
    /// It reaches past the end of its column chunk.
    PastEnd,
    /// More fields or nesting than any real header has.
    TooComplex,
    /// The bytes could not be read.
    Read(ParquetError),
}

type Result<T> = std::result::Result<T, Unreadable>;

/// The bytes of one header: each call reads on from the last.
pub(super) trait Source {
    /// The next byte; [`Unreadable::PastEnd`] at the end of the column chunk.
    fn byte(&mut self) -> Result<u8>;
    /// Skips `n` bytes; [`Unreadable::PastEnd`] if they reach past the column chunk.
    fn skip(&mut self, n: u64) -> Result<()>;
}

/// A slice is a column chunk that ends where it does.
impl Source for &[u8] {
    fn byte(&mut self) -> Result<u8> {
        let (&b, rest) = self.split_first().ok_or(Unreadable::PastEnd)?;
        *self = rest;
        Ok(b)
    }

    fn skip(&mut self, n: u64) -> Result<()> {
        let n = usize::try_from(n).map_err(|_| Unreadable::PastEnd)?;
        *self = self.get(n..).ok_or(Unreadable::PastEnd)?;
        Ok(())
    }
}

/// The sizes of a page as the library will read them (`None`: the header lacks the field,
/// which the library refuses).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Sizes {
    pub(super) uncompressed: Option<i32>,
    pub(super) compressed: Option<i32>,
}

/// The structs of a page header whose fields the library reads by their schema type.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Struct {
    Page,
    Data,
    Index,
    Dictionary,
    DataV2,
    Statistics,
}

/// A known field's schema type.
#[derive(Clone, Copy)]
enum Field {
    /// i32, i64 or an enum: one zigzag varint.
    Int,
    Bool,
    Binary,
    Struct(Struct),
}

/// The type the library reads field `id` of `s` as, if it knows the field.
fn field(s: Struct, id: i16) -> Option<Field> {
    use Field::{Binary, Bool, Int};
    Some(match (s, id) {
        (Struct::Page, 1..=4) => Int,
        (Struct::Page, 5) => Field::Struct(Struct::Data),
        (Struct::Page, 6) => Field::Struct(Struct::Index),
        (Struct::Page, 7) => Field::Struct(Struct::Dictionary),
        (Struct::Page, 8) => Field::Struct(Struct::DataV2),
        (Struct::Data, 1..=4) => Int,
        (Struct::Data, 5) | (Struct::DataV2, 8) => Field::Struct(Struct::Statistics),
        (Struct::Dictionary, 1 | 2) => Int,
        (Struct::Dictionary, 3) => Bool,
        (Struct::DataV2, 1..=6) => Int,
        (Struct::DataV2, 7) => Bool,
        (Struct::Statistics, 1 | 2 | 5 | 6) => Binary,
        (Struct::Statistics, 3 | 4 | 9) => Int,
        (Struct::Statistics, 7 | 8) => Bool,
        _ => return None,
    })
}

/// Thrift compact types.
const BOOL_TRUE: u8 = 1;
const BOOL_FALSE: u8 = 2;
const BYTE: u8 = 3;
const I16: u8 = 4;
const I64: u8 = 6;
const DOUBLE: u8 = 7;
const BINARY: u8 = 8;
const LIST: u8 = 9;
const SET: u8 = 10;
const MAP: u8 = 11;
const STRUCT: u8 = 12;
const UUID: u8 = 13;

/// Reads the page header `src` starts with, to its Stop.
pub(super) fn page_sizes(src: &mut impl Source) -> Result<Sizes> {
    let mut reader = Reader {
        src,
        budget: BUDGET,
        sizes: Sizes::default(),
    };
    reader.known(Struct::Page, 0)?;
    Ok(reader.sizes)
}

struct Reader<'a, S> {
    src: &'a mut S,
    budget: u32,
    sizes: Sizes,
}

impl<S: Source> Reader<'_, S> {
    fn spend(&mut self, depth: u32) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(Unreadable::TooComplex);
        }
        self.budget = self.budget.checked_sub(1).ok_or(Unreadable::TooComplex)?;
        Ok(())
    }

    /// An unsigned varint of at most 10 bytes, its bits as the library assembles them.
    fn varint(&mut self) -> Result<u64> {
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let b = self.src.byte()?;
            value |= u64::from(b & 0x7f).wrapping_shl(shift);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Unreadable::Malformed("a varint longer than 10 bytes"))
    }

    fn zigzag(&mut self) -> Result<i64> {
        let v = self.varint()?;
        Ok((v >> 1) as i64 ^ -((v & 1) as i64))
    }

    /// A length or count the library reads as a non-negative `i32`.
    fn length(&mut self) -> Result<u64> {
        let n = self.varint()?;
        if n > i32::MAX as u64 {
            return Err(Unreadable::Malformed("a length over 2^31"));
        }
        Ok(n)
    }

    /// A field header: `None` at the Stop, else (declared type, id).
    fn field_begin(&mut self, last: i16) -> Result<Option<(u8, i16)>> {
        let b = self.src.byte()?;
        let kind = b & 0x0f;
        if kind == 0 {
            return Ok(None);
        }
        let delta = b >> 4;
        let id = if delta == 0 {
            // The library reads a long-form id as an i16, the zigzag value cast.
            self.zigzag()? as i16
        } else {
            last.checked_add(i16::from(delta))
                .ok_or(Unreadable::Malformed("a field id past 32767"))?
        };
        Ok(Some((kind, id)))
    }

    /// A struct the library reads by its schema `s`.
    fn known(&mut self, s: Struct, depth: u32) -> Result<()> {
        let mut last = 0i16;
        loop {
            self.spend(depth)?;
            let Some((kind, id)) = self.field_begin(last)? else {
                return Ok(());
            };
            match field(s, id) {
                None => self.skip(kind, depth + 1)?,
                Some(Field::Int) => {
                    if !matches!(kind, I16..=I64) {
                        return Err(Unreadable::Malformed(
                            "an integer field declared of another type",
                        ));
                    }
                    let v = self.zigzag()? as i32;
                    match (s, id) {
                        (Struct::Page, 2) => self.sizes.uncompressed = Some(v),
                        (Struct::Page, 3) => self.sizes.compressed = Some(v),
                        _ => {}
                    }
                }
                Some(Field::Bool) => {
                    if !matches!(kind, BOOL_TRUE | BOOL_FALSE) {
                        return Err(Unreadable::Malformed(
                            "a boolean field declared of another type",
                        ));
                    }
                }
                Some(Field::Binary) => {
                    if kind != BINARY {
                        return Err(Unreadable::Malformed(
                            "a binary field declared of another type",
                        ));
                    }
                    let n = self.length()?;
                    self.src.skip(n)?;
                }
                Some(Field::Struct(inner)) => {
                    if kind != STRUCT {
                        return Err(Unreadable::Malformed(
                            "a struct field declared of another type",
                        ));
                    }
                    self.known(inner, depth + 1)?;
                }
            }
            last = id;
        }
    }

    /// Skips a value of compact type `kind` as the library's `skip` does.
    fn skip(&mut self, kind: u8, depth: u32) -> Result<()> {
        self.spend(depth)?;
        match kind {
            BOOL_TRUE | BOOL_FALSE => {}
            BYTE => self.src.skip(1)?,
            I16..=I64 => {
                self.varint()?;
            }
            DOUBLE => self.src.skip(8)?,
            BINARY => {
                let n = self.length()?;
                self.src.skip(n)?;
            }
            LIST | SET => {
                let b = self.src.byte()?;
                // The library reads a header byte of 0 as an empty list.
                if b == 0 {
                    return Ok(());
                }
                let element = b & 0x0f;
                let n = match b >> 4 {
                    15 => self.length()?,
                    n => u64::from(n),
                };
                if matches!(element, BOOL_TRUE | BOOL_FALSE) {
                    self.src.skip(n)?;
                } else {
                    for _ in 0..n {
                        self.element(element, depth + 1)?;
                    }
                }
            }
            MAP => {
                let n = self.length()?;
                if n > 0 {
                    let types = self.src.byte()?;
                    for _ in 0..n {
                        self.element(types >> 4, depth + 1)?;
                        self.element(types & 0x0f, depth + 1)?;
                    }
                }
            }
            STRUCT => loop {
                self.spend(depth)?;
                // Field ids do not matter when skipping: the library passes 0 as the last.
                let Some((kind, _)) = self.field_begin(0)? else {
                    return Ok(());
                };
                self.skip(kind, depth + 1)?;
            },
            UUID => self.src.skip(16)?,
            _ => return Err(Unreadable::Malformed("an unknown field type")),
        }
        Ok(())
    }

    /// An element of a list or map: a boolean takes a byte.
    fn element(&mut self, kind: u8, depth: u32) -> Result<()> {
        match kind {
            BOOL_TRUE | BOOL_FALSE => {
                self.spend(depth)?;
                self.src.skip(1)
            }
            BYTE..=UUID => self.skip(kind, depth),
            _ => Err(Unreadable::Malformed("an unknown element type")),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sizes(mut header: &[u8]) -> Result<Sizes> {
        page_sizes(&mut header)
    }

    fn both(uncompressed: i32, compressed: i32) -> Sizes {
        Sizes {
            uncompressed: Some(uncompressed),
            compressed: Some(compressed),
        }
    }

    #[test]
    fn sizes_are_found_in_any_field_order() {
        // Fields 1, 2, 3 in order: 4096 bytes both ways.
        let plain = [0x15, 0x00, 0x15, 0x80, 0x40, 0x15, 0x80, 0x40, 0x00];
        assert_eq!(sizes(&plain).unwrap(), both(4096, 4096));
        // An unknown binary (field 9) and list of structs (field 10), a data page header
        // (field 5) with statistics, then fields 3 and 2 by their long form.
        let mut reordered = vec![0x98, 0x03, b'x', b'y', b'z'];
        reordered.extend([0x19, 0x2c, 0x15, 0x02, 0x00, 0x15, 0x04, 0x00]);
        reordered.extend([
            0x0c, 0x0a, 0x15, 0x00, 0x4c, 0x18, 0x01, b'a', 0x26, 0x02, 0x00, 0x00,
        ]);
        reordered.extend([0x05, 0x06, 0x80, 0x40]);
        reordered.extend([0x05, 0x04, 0x80, 0x80, 0x80, 0x80, 0x08, 0x00]);
        assert_eq!(sizes(&reordered).unwrap(), both(1 << 30, 4096));
    }

    #[test]
    fn the_last_value_counts_whatever_integer_type_declared() {
        // Field 2 and 3 say 100, then field 2 again in long form says i32::MAX.
        let repeated = [
            0x15, 0x00, 0x15, 0xc8, 0x01, 0x15, 0xc8, 0x01, 0x05, 0x04, 0xfe, 0xff, 0xff, 0xff,
            0x0f, 0x00,
        ];
        assert_eq!(sizes(&repeated).unwrap(), both(i32::MAX, 100));
        // Field 2 declared i64, field 3 declared i16.
        let typed = [
            0x15, 0x00, 0x16, 0xfe, 0xff, 0xff, 0xff, 0x0f, 0x14, 0xc8, 0x01, 0x00,
        ];
        assert_eq!(sizes(&typed).unwrap(), both(i32::MAX, 100));
        // An i64 value is cut to 32 bits as the library cuts it: 2^32 + 100 is 100.
        let wide = [0x16, 0x00, 0x16, 0xc8, 0x81, 0x80, 0x80, 0x20, 0x00];
        assert_eq!(sizes(&wide).unwrap().uncompressed, Some(100));
        // A Stop is any field byte whose type is 0, whatever its delta.
        assert_eq!(sizes(&[0x15, 0x00, 0x10]).unwrap(), Sizes::default());
    }

    #[test]
    fn what_the_library_would_read_otherwise_is_refused() {
        for (header, why) in [
            // Field 2 declared a binary: the library reads a varint there, not a length.
            (&[0x15, 0x00, 0x18, 0x02, 0x00][..], "integer field"),
            (&[0x15, 0x00, 0x11, 0x00][..], "integer field"),
            // Field 5 (the data page header) declared an i32.
            (&[0x55, 0x02, 0x00][..], "struct field"),
            // An unknown type.
            (&[0x9e, 0x00][..], "unknown field type"),
            // A field id past i16: field 32767 by its long form, then a delta.
            (
                &[0x05, 0xfe, 0xff, 0x03, 0x00, 0x15, 0x00, 0x00][..],
                "field id",
            ),
            // An 11-byte varint.
            (
                &[
                    0x15, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00,
                ][..],
                "varint",
            ),
        ] {
            match sizes(header) {
                Err(Unreadable::Malformed(m)) => assert!(m.contains(why), "{header:x?}: {m}"),
                other => panic!("{header:x?}: {other:?}"),
            }
        }
        // Past the end: no Stop, a binary longer than what is left.
        assert!(matches!(sizes(&[0x15, 0x00]), Err(Unreadable::PastEnd)));
        let long = [0x98, 0x80, 0x80, 0x80, 0x80, 0x04, 0x00];
        assert!(matches!(sizes(&long), Err(Unreadable::PastEnd)));
        // Nesting deeper than any header.
        let mut deep = vec![0x9c; 40];
        deep.push(0x00);
        assert!(matches!(sizes(&deep), Err(Unreadable::TooComplex)));
    }
}
