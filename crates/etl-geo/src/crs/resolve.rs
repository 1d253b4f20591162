//! What a CRS definition says about itself before it is parsed: its EPSG code if it carries
//! one (then the registry's definition is used: no parser gaps, and easting first), whether it
//! is OGC:CRS84, and its name for messages. Reads WKT with a flat scan (depth-limited, no
//! recursion) and PROJJSON with serde_json (whose recursion is limited).

use super::CrsError;

/// Deepest bracket nesting accepted in WKT (real definitions stay under 10).
const MAX_DEPTH: usize = 32;

/// What a definition says about itself.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Definition {
    /// The EPSG code it names at its top level (`EPSG:n`, a URN, `AUTHORITY["EPSG","n"]`,
    /// `ID["EPSG",n]`, a PROJJSON `id`, `+init=epsg:n`).
    pub epsg: Option<u32>,
    /// OGC:CRS84 (WGS 84, longitude first).
    pub is_crs84: bool,
    /// The name it gives itself, if any.
    pub name: Option<String>,
    /// A short form of the text, when there is no name.
    excerpt: String,
}

impl Definition {
    /// Reads what `text` says about itself; an error for WKT nested beyond reason or JSON that
    /// is not a PROJJSON object.
    pub fn read(text: &str) -> Result<Definition, CrsError> {
        let mut def = Definition {
            excerpt: crate::formats::excerpt(text).to_string(),
            ..Definition::default()
        };
        let lower = text.to_ascii_lowercase();
        if is_crs84_name(&lower) {
            def.is_crs84 = true;
            return Ok(def);
        }
        if let Some(code) = code_form(&lower) {
            def.epsg = Some(code);
            return Ok(def);
        }
        if text.starts_with('{') {
            read_projjson(text, &mut def)?;
        } else if text.starts_with('+') || lower.starts_with("proj=") {
            def.epsg = lower
                .split_whitespace()
                .find_map(|t| t.strip_prefix("+init=epsg:"))
                .and_then(|c| c.parse().ok());
        } else if text.contains(['[', '(']) {
            read_wkt(text, &mut def)?;
        }
        Ok(def)
    }

    /// The CRS as messages name it: `EPSG:n`, or its name, or the start of its text.
    pub fn label(&self) -> String {
        match (self.epsg, &self.name) {
            (Some(code), Some(name)) => format!("EPSG:{code} ({})", short(name)),
            (Some(code), None) => format!("EPSG:{code}"),
            (None, Some(name)) => format!("\"{}\"", short(name)),
            (None, None) => format!("\"{}\"", self.excerpt),
        }
    }
}

/// A name as messages show it: one line, at most 60 characters.
fn short(name: &str) -> String {
    crate::formats::excerpt(&name.replace(['\n', '\r'], " ")).to_string()
}

fn is_crs84_name(lower: &str) -> bool {
    matches!(
        lower,
        "crs84"
            | "ogc:crs84"
            | "urn:ogc:def:crs:ogc:1.3:crs84"
            | "urn:ogc:def:crs:ogc::crs84"
            | "http://www.opengis.net/def/crs/ogc/1.3/crs84"
    )
}

/// `EPSG:n`, `n`, `urn:ogc:def:crs:EPSG:[version]:n`, `http://www.opengis.net/def/crs/EPSG/0/n`.
fn code_form(lower: &str) -> Option<u32> {
    let digits = |s: &str| -> Option<u32> {
        (!s.is_empty() && s.len() <= 9 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    if let Some(code) = digits(lower) {
        return Some(code);
    }
    if let Some(rest) = lower.strip_prefix("epsg:") {
        return digits(rest);
    }
    if let Some(rest) = lower.strip_prefix("urn:ogc:def:crs:epsg:") {
        return digits(rest.rsplit(':').next().unwrap_or(""));
    }
    for prefix in [
        "http://www.opengis.net/def/crs/epsg/",
        "https://www.opengis.net/def/crs/epsg/",
    ] {
        if let Some(rest) = lower.strip_prefix(prefix) {
            return digits(rest.rsplit('/').next().unwrap_or(""));
        }
    }
    None
}

fn read_projjson(text: &str, def: &mut Definition) -> Result<(), CrsError> {
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| CrsError(format!("coordinate system is not valid PROJJSON: {e}")))?;
    let Some(obj) = v.as_object() else {
        return Err(CrsError(
            "coordinate system is not a PROJJSON object".into(),
        ));
    };
    def.name = obj.get("name").and_then(|n| n.as_str()).map(str::to_string);
    let ids = obj.get("id").into_iter().chain(
        obj.get("ids")
            .and_then(|i| i.as_array())
            .into_iter()
            .flatten(),
    );
    for id in ids {
        let authority = id.get("authority").and_then(|a| a.as_str()).unwrap_or("");
        let code = id.get("code");
        if authority.eq_ignore_ascii_case("OGC") && code.and_then(|c| c.as_str()) == Some("CRS84") {
            def.is_crs84 = true;
            return Ok(());
        }
        if authority.eq_ignore_ascii_case("EPSG") {
            let n = match code {
                Some(serde_json::Value::Number(n)) => n.as_u64(),
                Some(serde_json::Value::String(s)) => s.parse().ok(),
                _ => None,
            };
            if let Some(n) = n.and_then(|n| u32::try_from(n).ok()) {
                def.epsg = Some(n);
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Scans WKT once: the top-level node's name (its first quoted string) and its own
/// `AUTHORITY["EPSG","n"]` (WKT1) or `ID["EPSG",n]` (WKT2), if any.
fn read_wkt(text: &str, def: &mut Definition) -> Result<(), CrsError> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    // (start, depth) of each keyword: the word before an opening bracket.
    let mut word_start = 0;
    let mut pending_node: Option<(String, usize)> = None;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'"' => {
                let end = closing_quote(bytes, i + 1).ok_or_else(|| {
                    CrsError("coordinate system WKT has an unterminated string".into())
                })?;
                let s = text.get(i + 1..end).unwrap_or("").replace("\"\"", "\"");
                if depth == 1 && def.name.is_none() {
                    def.name = Some(s.clone());
                }
                if let Some((keyword, at)) = &pending_node
                    && *at == depth
                    && depth == 2
                {
                    // First string of a depth-2 node: AUTHORITY["EPSG", …] / ID["EPSG", …].
                    if (keyword == "AUTHORITY" || keyword == "ID") && s.eq_ignore_ascii_case("EPSG")
                    {
                        def.epsg = node_code(text, end + 1);
                    }
                    pending_node = None;
                }
                i = end + 1;
                word_start = i;
                continue;
            }
            b'[' | b'(' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(CrsError(format!(
                        "coordinate system WKT is nested more than {MAX_DEPTH} deep"
                    )));
                }
                let keyword = text
                    .get(word_start..i)
                    .unwrap_or("")
                    .trim()
                    .trim_start_matches(',')
                    .trim()
                    .to_ascii_uppercase();
                pending_node = Some((keyword, depth));
            }
            b']' | b')' => {
                depth = depth.saturating_sub(1);
                pending_node = None;
                if depth == 0 {
                    // One definition: whatever follows its closing bracket is not part of it
                    // (and must not lend it an AUTHORITY).
                    let rest = text.get(i + 1..).unwrap_or("").trim();
                    if !rest.is_empty() {
                        return Err(CrsError(format!(
                            "coordinate system WKT has text after its end: \"{}\"",
                            crate::formats::excerpt(rest)
                        )));
                    }
                    return Ok(());
                }
            }
            b',' => {}
            _ => {
                i += 1;
                continue;
            }
        }
        i += 1;
        word_start = i;
    }
    Ok(())
}

/// The PROJ string of a WKT1 `EXTENSION["PROJ4","…"]`, if the text has one.
pub fn proj4_extension(text: &str) -> Option<String> {
    let upper = text.to_ascii_uppercase();
    let at = upper.find("EXTENSION[\"PROJ4\"")?;
    let rest = text.get(at + "EXTENSION[\"PROJ4\"".len()..)?.trim_start();
    let rest = rest.strip_prefix(',')?.trim_start().strip_prefix('"')?;
    let end = closing_quote(rest.as_bytes(), 0)?;
    let value = rest.get(..end)?.replace("\"\"", "\"");
    (!value.trim().is_empty()).then_some(value)
}

/// The index of the quote that closes a string opened before `from` (`""` is an escaped quote).
fn closing_quote(bytes: &[u8], mut from: usize) -> Option<usize> {
    while from < bytes.len() {
        if bytes[from] == b'"' {
            if bytes.get(from + 1) == Some(&b'"') {
                from += 2;
                continue;
            }
            return Some(from);
        }
        from += 1;
    }
    None
}

/// The code after `"EPSG"` in `AUTHORITY["EPSG","2193"]` or `ID["EPSG",2193]`.
fn node_code(text: &str, after: usize) -> Option<u32> {
    let rest = text
        .get(after..)?
        .trim_start()
        .strip_prefix(',')?
        .trim_start();
    let rest = rest.strip_prefix('"').unwrap_or(rest);
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> Option<u32> {
        Definition::read(text).unwrap().epsg
    }

    #[test]
    fn codes_in_every_spelling() {
        assert_eq!(code("EPSG:2193"), Some(2193));
        assert_eq!(code("2193"), Some(2193));
        assert_eq!(code("urn:ogc:def:crs:EPSG::2193"), Some(2193));
        assert_eq!(code("urn:ogc:def:crs:EPSG:9.8.15:2193"), Some(2193));
        assert_eq!(
            code("http://www.opengis.net/def/crs/EPSG/0/2193"),
            Some(2193)
        );
        assert_eq!(code("+init=epsg:2193 +type=crs"), Some(2193));
        assert_eq!(
            code(
                r#"{"type":"ProjectedCRS","name":"NZGD2000 / New Zealand Transverse Mercator 2000","id":{"authority":"EPSG","code":2193}}"#
            ),
            Some(2193)
        );
        // Only the top-level authority counts, not the base CRS's or a unit's.
        assert_eq!(
            code(
                r#"PROJCS["NZGD2000 / NZTM",GEOGCS["NZGD2000",AUTHORITY["EPSG","4167"]],UNIT["metre",1,AUTHORITY["EPSG","9001"]],AUTHORITY["EPSG","2193"]]"#
            ),
            Some(2193)
        );
        assert_eq!(
            code(
                r#"PROJCRS["NZGD2000 / NZTM",BASEGEOGCRS["NZGD2000",ID["EPSG",4167]],ID["EPSG",2193]]"#
            ),
            Some(2193)
        );
        assert_eq!(
            code(r#"PROJCS["NZGD_2000_Transverse_Mercator",GEOGCS["GCS_NZGD_2000"]]"#),
            None
        );
        assert_eq!(code("EPSG:"), None);
        assert_eq!(code("EPSG:99999999999"), None);
    }

    #[test]
    fn names_and_crs84() {
        let d =
            Definition::read(r#"PROJCS["NZGD_2000_Transverse_Mercator",GEOGCS["GCS"]]"#).unwrap();
        assert_eq!(d.name.as_deref(), Some("NZGD_2000_Transverse_Mercator"));
        assert_eq!(d.label(), "\"NZGD_2000_Transverse_Mercator\"");
        assert!(Definition::read("OGC:CRS84").unwrap().is_crs84);
        assert!(
            Definition::read(r#"{"id":{"authority":"OGC","code":"CRS84"}}"#)
                .unwrap()
                .is_crs84
        );
    }

    #[test]
    fn a_second_node_cannot_lend_the_first_an_authority() {
        assert!(Definition::read(r#"LOCAL_CS["site"],X[AUTHORITY["EPSG","4326"]]"#).is_err());
    }

    #[test]
    fn hostile_text_is_an_error_or_nothing_never_a_crash() {
        assert!(Definition::read(&"A[".repeat(1000)).is_err());
        assert!(Definition::read("PROJCS[\"unterminated").is_err());
        assert!(Definition::read("{not json").is_err());
        assert!(Definition::read("[1,2]").is_ok());
    }
}
