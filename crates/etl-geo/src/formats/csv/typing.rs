//! Light typing of CSV cells: numbers, booleans and empties become JSON values.

use serde_json::{Number, Value};

/// The JSON value of a cell: `None` for an empty cell (the property is omitted),
/// numbers for text in JSON number syntax, booleans for `true`/`false` in any case,
/// otherwise the text itself. JSON syntax keeps `007`, `+1`, `.5` and `1,5` as
/// strings, so identifiers with leading zeros survive. An integer too large for
/// 64 bits stays a string rather than losing digits as a float.
pub(crate) fn typed_value(text: &str) -> Option<Value> {
    if text.is_empty() {
        return None;
    }
    if text.eq_ignore_ascii_case("true") {
        return Some(Value::Bool(true));
    }
    if text.eq_ignore_ascii_case("false") {
        return Some(Value::Bool(false));
    }
    match number_syntax(text.as_bytes()) {
        Some(NumberSyntax::Integer) => {
            if let Ok(i) = text.parse::<i64>() {
                return Some(Value::Number(i.into()));
            }
            if let Ok(u) = text.parse::<u64>() {
                return Some(Value::Number(u.into()));
            }
        }
        Some(NumberSyntax::Float) => {
            if let Some(n) = text.parse::<f64>().ok().and_then(Number::from_f64) {
                return Some(Value::Number(n));
            }
        }
        None => {}
    }
    Some(Value::String(text.to_owned()))
}

enum NumberSyntax {
    Integer,
    Float,
}

/// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
fn number_syntax(s: &[u8]) -> Option<NumberSyntax> {
    let mut i = usize::from(s.first() == Some(&b'-'));
    let digits = |from: usize| {
        s.get(from..).map_or(0, |rest| {
            rest.iter().take_while(|b| b.is_ascii_digit()).count()
        })
    };
    match s.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i += digits(i),
        _ => return None,
    }
    let mut float = false;
    if s.get(i) == Some(&b'.') {
        let n = digits(i + 1);
        if n == 0 {
            return None;
        }
        i += 1 + n;
        float = true;
    }
    if let Some(b'e' | b'E') = s.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = s.get(i) {
            i += 1;
        }
        let n = digits(i);
        if n == 0 {
            return None;
        }
        i += n;
        float = true;
    }
    match (i == s.len(), float) {
        (false, _) => None,
        (true, false) => Some(NumberSyntax::Integer),
        (true, true) => Some(NumberSyntax::Float),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn typing() {
        let cases = [
            ("12", Some(json!(12))),
            ("-3", Some(json!(-3))),
            ("0", Some(json!(0))),
            ("18446744073709551615", Some(json!(18446744073709551615u64))),
            ("99999999999999999999", Some(json!("99999999999999999999"))),
            ("2.5", Some(json!(2.5))),
            ("-1e3", Some(json!(-1000.0))),
            ("1e999", Some(json!("1e999"))),
            ("007", Some(json!("007"))),
            ("+1", Some(json!("+1"))),
            (".5", Some(json!(".5"))),
            ("1.", Some(json!("1."))),
            ("1,5", Some(json!("1,5"))),
            (" 12", Some(json!(" 12"))),
            ("NaN", Some(json!("NaN"))),
            ("inf", Some(json!("inf"))),
            ("true", Some(json!(true))),
            ("FALSE", Some(json!(false))),
            ("yes", Some(json!("yes"))),
            ("", None),
        ];
        for (text, expected) in cases {
            assert_eq!(typed_value(text), expected, "{text:?}");
        }
    }
}
