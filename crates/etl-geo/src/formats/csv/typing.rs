//! Light typing of CSV cells: numbers, booleans and empties become JSON values.

use serde_json::{Number, Value};

/// The JSON value of a cell: `None` for an empty cell (the property is omitted),
/// numbers for text in JSON number syntax, booleans for `true`/`false` in any case,
/// otherwise the text itself. JSON syntax keeps `007`, `+1`, `.5` and `1,5` as
/// strings, so identifiers with leading zeros survive. An integer too large for
/// 64 bits stays a string rather than losing digits as a float, and so does a
/// decimal that no `f64` holds exactly as written (more digits than a double
/// carries, `1e-999` underflowing to 0): typing must never change a value. `-0`
/// stays a string too, since as an integer it would lose its sign.
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
        Some(NumberSyntax::Integer) if text == "-0" => {}
        Some(NumberSyntax::Integer) => {
            if let Ok(i) = text.parse::<i64>() {
                return Some(Value::Number(i.into()));
            }
            if let Ok(u) = text.parse::<u64>() {
                return Some(Value::Number(u.into()));
            }
        }
        Some(NumberSyntax::Float) => {
            if let Some(n) = text
                .parse::<f64>()
                .ok()
                .filter(|x| same_decimal(text, x))
                .and_then(Number::from_f64)
            {
                return Some(Value::Number(n));
            }
        }
        None => {}
    }
    Some(Value::String(text.to_owned()))
}

/// Whether `x`, written the way every writer writes a double (the shortest text
/// that reads back as it), denotes the same decimal as `text`, notation aside:
/// `1e5` and `100000.0` agree. Anything else would change the value for a reader
/// that keeps decimals exactly, such as a PostgreSQL `numeric` column: so
/// `0.10000000000000001` (reads as the double 0.1), 40-digit decimals and `1e-999`
/// (underflows to 0) are kept as text.
fn same_decimal(text: &str, x: &f64) -> bool {
    if !x.is_finite() {
        return false;
    }
    let mut shortest = ryu::Buffer::new();
    match (decimal(text), decimal(shortest.format_finite(*x))) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// A decimal in JSON number syntax, normalized: sign, significant digits without
/// leading or trailing zeros, and the power of ten of the digit after the last
/// one (so the value is `digits * 10^exponent`). Zero has no digits. `None` if
/// the exponent does not fit an `i64` (such text is no finite double anyway).
fn decimal(text: &str) -> Option<(bool, Vec<u8>, i64)> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(at) => (
            rest.get(..at)?,
            rest.get(at.saturating_add(1)..)?.parse::<i64>().ok()?,
        ),
        None => (rest, 0),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let frac_len = i64::try_from(frac.len()).ok()?;
    let mut digits: Vec<u8> = int.bytes().chain(frac.bytes()).collect();
    let leading = digits.iter().take_while(|&&d| d == b'0').count();
    digits.drain(..leading);
    let trailing = digits.iter().rev().take_while(|&&d| d == b'0').count();
    digits.truncate(digits.len().saturating_sub(trailing));
    if digits.is_empty() {
        return Some((negative, digits, 0));
    }
    let trailing = i64::try_from(trailing).ok()?;
    let exponent = exponent.checked_sub(frac_len)?.checked_add(trailing)?;
    Some((negative, digits, exponent))
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
        let long_digits = "9".repeat(10_000);
        let cases = [
            ("12", Some(json!(12))),
            ("-3", Some(json!(-3))),
            ("0", Some(json!(0))),
            ("18446744073709551615", Some(json!(18446744073709551615u64))),
            ("99999999999999999999", Some(json!("99999999999999999999"))),
            ("2.5", Some(json!(2.5))),
            ("-1e3", Some(json!(-1000.0))),
            ("1e999", Some(json!("1e999"))),
            ("1e5", Some(json!(100000.0))),
            ("2.50", Some(json!(2.5))),
            ("-0.0", Some(json!(-0.0))),
            ("0e7", Some(json!(0.0))),
            ("1e-999", Some(json!("1e-999"))),
            ("5e-324", Some(json!(5e-324))),
            ("4.9e-324", Some(json!("4.9e-324"))),
            ("0.10000000000000001", Some(json!("0.10000000000000001"))),
            ("1e-400", Some(json!("1e-400"))),
            (
                "0.1000000000000000055511151231257827",
                Some(json!("0.1000000000000000055511151231257827")),
            ),
            (
                "3.14159265358979323846",
                Some(json!("3.14159265358979323846")),
            ),
            (
                "123456789012345678901234567890.5",
                Some(json!("123456789012345678901234567890.5")),
            ),
            (
                "1e99999999999999999999",
                Some(json!("1e99999999999999999999")),
            ),
            ("-0", Some(json!("-0"))),
            ("-9223372036854775808", Some(json!(i64::MIN))),
            (&long_digits, Some(json!(long_digits.clone()))),
            ("12 ", Some(json!("12 "))),
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
            ("False", Some(json!(false))),
            ("TRUE", Some(json!(true))),
            ("yes", Some(json!("yes"))),
            ("", None),
        ];
        for (text, expected) in cases {
            assert_eq!(typed_value(text), expected, "{text:?}");
        }
        let long_float = format!("0.{}", "1".repeat(10_000));
        assert_eq!(typed_value(&long_float), Some(json!(long_float)));
    }

    #[test]
    fn typed_numbers_keep_their_value() {
        // Whatever becomes a JSON number must denote exactly the decimal written.
        for text in [
            "0.1",
            "1.7976931348623157e308",
            "5e-324",
            "123.456",
            "-2.5e-7",
            "1E+2",
        ] {
            let Some(Value::Number(n)) = typed_value(text) else {
                panic!("{text} not a number");
            };
            assert_eq!(n.as_f64(), text.parse::<f64>().ok(), "{text}");
        }
    }
}
