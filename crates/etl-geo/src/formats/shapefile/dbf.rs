//! A streaming dBASE (`.dbf`) reader: one fixed-length record at a time into a
//! reused buffer, fields typed into JSON values.
//!
//! Field types: `C` character (trailing blanks trimmed; blank → `null`), `N`/`F`
//! numeric (an integer without decimals → JSON integer, else a JSON number; blank or
//! `*` overflow → `null`; unparsable text is kept as a string), `L` logical
//! (`T/Y` → true, `F/N` → false, `?`/blank → `null`), `D` date (`YYYYMMDD` →
//! `"YYYY-MM-DD"`, blank → `null`), and the Visual FoxPro binary `I` (int32) and
//! `O` (double). Memo (`M`, the `.dbt` is not read) and other binary types
//! (`B`, `G`, `T`, `@`, `Y`, `+`, `0`) are skipped.

use std::io::{self, BufRead, Read};

use serde_json::{Map, Number, Value};

use super::codepages::{self, CodePage};

/// The text encoding of the character data (field names and `C` fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    /// UTF-8; a value that is not valid UTF-8 is read as Windows-1252 instead.
    Utf8,
    /// Windows-1252, which reads ISO-8859-1 (Latin-1) text the same for all printable characters.
    Windows1252,
    /// Another single-byte code page ([`codepages`]).
    Table(&'static CodePage),
}

impl Encoding {
    /// The encoding a `.cpg` file names; `Err` for one not supported.
    pub(crate) fn from_cpg(text: &str) -> Option<Encoding> {
        let name: String = text
            .trim_start_matches('\u{feff}')
            .trim()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_uppercase();
        match name.as_str() {
            "" | "UTF8" | "65001" | "USASCII" | "ASCII" | "UTF8BOM" => Some(Encoding::Utf8),
            "ISO88591" | "88591" | "LATIN1" | "L1" | "ISOLATIN1" | "CP819" | "IBM819" | "1252"
            | "CP1252" | "WINDOWS1252" | "ANSI1252" | "WIN1252" | "28591" => {
                Some(Encoding::Windows1252)
            }
            other => codepages::by_name(other).map(Encoding::Table),
        }
    }

    /// The encoding the language driver id in the DBF header implies, when there is no `.cpg`.
    fn from_ldid(ldid: u8) -> Encoding {
        match ldid {
            0x03 | 0x57 | 0x58 | 0x59 => Encoding::Windows1252,
            _ => Encoding::Utf8,
        }
    }

    pub(crate) fn decode(self, bytes: &[u8], out: &mut String) {
        out.clear();
        if self == Encoding::Utf8
            && let Ok(text) = std::str::from_utf8(bytes)
        {
            out.push_str(text);
            return;
        }
        match self {
            Encoding::Table(high) => out.extend(bytes.iter().map(|&b| {
                match b {
                    0x80.. => high
                        .get(usize::from(b - 0x80))
                        .copied()
                        .unwrap_or('\u{FFFD}'),
                    _ => char::from(b),
                }
            })),
            _ => out.extend(bytes.iter().map(|&b| windows_1252(b))),
        }
    }
}

/// Windows-1252 to Unicode; the five undefined bytes map to the C1 control of the same value.
fn windows_1252(b: u8) -> char {
    const HIGH: [char; 32] = [
        '\u{20AC}', '\u{81}', '\u{201A}', '\u{0192}', '\u{201E}', '\u{2026}', '\u{2020}',
        '\u{2021}', '\u{02C6}', '\u{2030}', '\u{0160}', '\u{2039}', '\u{0152}', '\u{8D}',
        '\u{017D}', '\u{8F}', '\u{90}', '\u{2018}', '\u{2019}', '\u{201C}', '\u{201D}', '\u{2022}',
        '\u{2013}', '\u{2014}', '\u{02DC}', '\u{2122}', '\u{0161}', '\u{203A}', '\u{0153}',
        '\u{9D}', '\u{017E}', '\u{0178}',
    ];
    match b {
        0x80..=0x9F => HIGH[usize::from(b - 0x80)],
        _ => char::from(b),
    }
}

#[derive(Debug, Clone)]
struct Field {
    name: String,
    kind: u8,
    offset: usize,
    length: usize,
    decimals: u8,
}

/// A DBF file opened past its header.
pub(crate) struct DbfReader {
    input: Box<dyn BufRead + Send>,
    fields: Vec<Field>,
    record: Vec<u8>,
    records: u64,
    read: u64,
    encoding: Encoding,
    text: String,
    /// File name, for messages.
    name: String,
}

/// What went wrong reading a DBF, worded for the user (the caller adds the file name).
pub(crate) type DbfError = String;

impl DbfReader {
    /// Reads the header and field descriptors. `encoding` is the `.cpg`'s, if any.
    pub(crate) fn open(
        mut input: Box<dyn BufRead + Send>,
        name: &str,
        encoding: Option<Encoding>,
    ) -> Result<DbfReader, DbfError> {
        let mut head = [0u8; 32];
        read_exact(&mut input, &mut head)
            .map_err(|e| format!("{name}: cannot read the header: {e}"))?;
        let records = u64::from(u32::from_le_bytes([head[4], head[5], head[6], head[7]]));
        let header_len = usize::from(u16::from_le_bytes([head[8], head[9]]));
        let record_len = usize::from(u16::from_le_bytes([head[10], head[11]]));
        let encoding = encoding.unwrap_or(Encoding::from_ldid(head[29]));
        if header_len < 33 || record_len == 0 {
            return Err(format!(
                "{name}: not a dBASE file (header length {header_len}, record length {record_len})"
            ));
        }
        // Field descriptors: 32 bytes each, up to a 0x0D terminator inside the header.
        let mut rest = vec![0u8; header_len - 32];
        read_exact(&mut input, &mut rest)
            .map_err(|e| format!("{name}: cannot read the field descriptors: {e}"))?;
        let mut fields = Vec::new();
        let mut offset = 1; // the deletion flag
        let mut text = String::new();
        for d in rest.chunks_exact(32) {
            if d[0] == 0x0D {
                break;
            }
            let raw_name = &d[..11];
            let end = raw_name.iter().position(|&b| b == 0).unwrap_or(11);
            encoding.decode(&raw_name[..end], &mut text);
            let length = usize::from(d[16]);
            let field = Field {
                name: text.trim().to_owned(),
                kind: d[11].to_ascii_uppercase(),
                offset,
                length,
                decimals: d[17],
            };
            offset += length;
            fields.push(field);
        }
        if offset > record_len {
            return Err(format!(
                "{name}: fields take {offset} bytes but records are {record_len} bytes long"
            ));
        }
        Ok(DbfReader {
            input,
            fields,
            record: vec![0u8; record_len],
            records,
            read: 0,
            encoding,
            text,
            name: name.to_owned(),
        })
    }

    /// Number of records the header declares.
    pub(crate) fn record_count(&self) -> u64 {
        self.records
    }

    /// Reads the next record: `Ok(None)` past the declared count, `Ok(Some(None))`
    /// for a record marked deleted, else its properties.
    pub(crate) fn next_record(&mut self) -> Result<Option<Option<Map<String, Value>>>, DbfError> {
        if self.read >= self.records {
            return Ok(None);
        }
        read_exact(&mut self.input, &mut self.record).map_err(|e| {
            format!(
                "{}: record {} of {}: {e}",
                self.name,
                self.read + 1,
                self.records
            )
        })?;
        self.read += 1;
        if self.record[0] == b'*' {
            return Ok(Some(None));
        }
        let mut properties = Map::with_capacity(self.fields.len());
        for field in &self.fields {
            let Some(raw) = self.record.get(field.offset..field.offset + field.length) else {
                continue;
            };
            let value = match field.kind {
                b'C' => {
                    let end = raw
                        .iter()
                        .rposition(|&b| b != b' ' && b != 0)
                        .map_or(0, |i| i + 1);
                    if end == 0 {
                        Value::Null
                    } else {
                        self.encoding.decode(&raw[..end], &mut self.text);
                        Value::String(self.text.clone())
                    }
                }
                b'N' | b'F' => numeric(raw, field.decimals),
                b'L' => match raw.first() {
                    Some(b'T' | b't' | b'Y' | b'y') => Value::Bool(true),
                    Some(b'F' | b'f' | b'N' | b'n') => Value::Bool(false),
                    _ => Value::Null,
                },
                b'D' => date(raw),
                b'I' if raw.len() == 4 => {
                    Value::from(i32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]))
                }
                b'O' if raw.len() == 8 => {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(raw);
                    Number::from_f64(f64::from_le_bytes(b)).map_or(Value::Null, Value::Number)
                }
                _ => continue,
            };
            properties.insert(field.name.clone(), value);
        }
        Ok(Some(Some(properties)))
    }
}

/// `read_exact` with a clearer message for a short file.
fn read_exact(input: &mut impl Read, buf: &mut [u8]) -> Result<(), String> {
    input.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            "the file is truncated".to_owned()
        } else {
            e.to_string()
        }
    })
}

fn numeric(raw: &[u8], decimals: u8) -> Value {
    let Ok(text) = std::str::from_utf8(raw) else {
        return Value::Null;
    };
    let text = text.trim_matches(|c: char| c == ' ' || c == '\0');
    if text.is_empty() || text.bytes().all(|b| b == b'*') {
        return Value::Null;
    }
    if decimals == 0
        && let Ok(i) = text.parse::<i64>()
    {
        return Value::from(i);
    }
    match text.parse::<f64>() {
        Ok(f) if f.is_finite() => {
            if f.fract() == 0.0 && f.abs() < 9.0e15 && !text.contains(['.', 'e', 'E']) {
                #[allow(clippy::cast_possible_truncation)]
                return Value::from(f as i64);
            }
            Number::from_f64(f).map_or(Value::Null, Value::Number)
        }
        _ => Value::String(text.to_owned()),
    }
}

fn date(raw: &[u8]) -> Value {
    let text = String::from_utf8_lossy(raw);
    let text = text.trim_matches(|c: char| c == ' ' || c == '\0');
    if text.is_empty() || text == "00000000" {
        return Value::Null;
    }
    if text.len() == 8 && text.bytes().all(|b| b.is_ascii_digit()) {
        let (y, md) = text.split_at(4);
        let (m, d) = md.split_at(2);
        return Value::String(format!("{y}-{m}-{d}"));
    }
    Value::String(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_1252_and_utf8_fallback() {
        let mut out = String::new();
        Encoding::Windows1252.decode(b"Z\xfcrich \x80", &mut out);
        assert_eq!(out, "Zürich €");
        Encoding::Utf8.decode("Zürich".as_bytes(), &mut out);
        assert_eq!(out, "Zürich");
        Encoding::Utf8.decode(b"Z\xfcrich", &mut out);
        assert_eq!(out, "Zürich");
    }

    #[test]
    fn cpg_names() {
        assert_eq!(Encoding::from_cpg("UTF-8\r\n"), Some(Encoding::Utf8));
        assert_eq!(
            Encoding::from_cpg("ISO-8859-1"),
            Some(Encoding::Windows1252)
        );
        assert_eq!(Encoding::from_cpg("1252"), Some(Encoding::Windows1252));
        assert_eq!(Encoding::from_cpg("CP936"), None);
        let mut out = String::new();
        for (cpg, bytes, text) in [
            ("1250", &b"\x8a\xe8"[..], "Šč"),
            ("ANSI 1251", b"\xcc\xee\xf1\xea\xe2\xe0", "Москва"),
            ("ISO-8859-2", b"\xa9", "Š"),
            ("8859-15", b"\xa4", "€"),
            ("CP437", b"\x81", "ü"),
        ] {
            let encoding = Encoding::from_cpg(cpg).unwrap();
            encoding.decode(bytes, &mut out);
            assert_eq!(out, text, "{cpg}");
        }
    }

    #[test]
    fn numbers_and_dates() {
        assert_eq!(numeric(b"   42", 0), Value::from(42));
        assert_eq!(numeric(b" -1.50", 2), serde_json::json!(-1.5));
        assert_eq!(numeric(b"      ", 0), Value::Null);
        assert_eq!(numeric(b"******", 0), Value::Null);
        assert_eq!(numeric(b"abc", 0), Value::from("abc"));
        assert_eq!(date(b"20240229"), Value::from("2024-02-29"));
        assert_eq!(date(b"        "), Value::Null);
    }
}
