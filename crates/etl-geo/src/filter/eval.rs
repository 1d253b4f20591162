//! Evaluating a parsed filter against one feature's properties, with SQL's three-valued logic
//! (`None` is unknown). Recursion is bounded by the parser's nesting limit.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::{Cmp, Expr, Val, value_of};

pub(super) fn eval(expr: &Expr, props: &Map<String, Value>) -> Option<bool> {
    match expr {
        Expr::And(terms) => {
            // FALSE wins over unknown; unknown over TRUE.
            let mut result = Some(true);
            for t in terms {
                match eval(t, props) {
                    Some(false) => return Some(false),
                    None => result = None,
                    Some(true) => {}
                }
            }
            result
        }
        Expr::Or(terms) => {
            let mut result = Some(false);
            for t in terms {
                match eval(t, props) {
                    Some(true) => return Some(true),
                    None => result = None,
                    Some(false) => {}
                }
            }
            result
        }
        Expr::Not(inner) => eval(inner, props).map(|b| !b),
        Expr::Cmp(a, op, b) => {
            let ord = compare(value_of(a, props), value_of(b, props))?;
            Some(match op {
                Cmp::Eq => ord == Ordering::Equal,
                Cmp::Ne => ord != Ordering::Equal,
                Cmp::Lt => ord == Ordering::Less,
                Cmp::Le => ord != Ordering::Greater,
                Cmp::Gt => ord == Ordering::Greater,
                Cmp::Ge => ord != Ordering::Less,
            })
        }
        Expr::IsNull(a) => Some(value_of(a, props) == Val::Null),
        Expr::Like(a, pattern, fold) => match value_of(a, props) {
            Val::Null => None,
            Val::Text(s) => Some(like(s, pattern, *fold)),
            Val::Number(n) => Some(like(&number_text(n), pattern, *fold)),
            Val::Bool(b) => Some(like(if b { "true" } else { "false" }, pattern, *fold)),
            Val::Other => None,
        },
        Expr::In(a, items) => {
            let v = value_of(a, props);
            let mut result = Some(false);
            for item in items {
                match compare(v, value_of(item, props)) {
                    Some(Ordering::Equal) => return Some(true),
                    None => result = None,
                    Some(_) => {}
                }
            }
            result
        }
        Expr::Between(a, low, high) => {
            let v = value_of(a, props);
            let above = compare(v, value_of(low, props)).map(|o| o != Ordering::Less);
            let below = compare(v, value_of(high, props)).map(|o| o != Ordering::Greater);
            match (above, below) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            }
        }
        Expr::Truthy(a) => match value_of(a, props) {
            Val::Bool(b) => Some(b),
            Val::Null => None,
            _ => Some(false),
        },
    }
}

/// How two values order, or `None` when they cannot be compared (NULL, mixed kinds).
fn compare(a: Val<'_>, b: Val<'_>) -> Option<Ordering> {
    match (a, b) {
        (Val::Number(x), Val::Number(y)) => x.partial_cmp(&y),
        (Val::Text(x), Val::Text(y)) => Some(x.cmp(y)),
        (Val::Bool(x), Val::Bool(y)) => Some(x.cmp(&y)),
        // Attributes that arrive as text (CSV, some Shapefiles) compare with numbers as numbers.
        (Val::Text(s), Val::Number(y)) => numeric_text(s)?.partial_cmp(&y),
        (Val::Number(x), Val::Text(s)) => x.partial_cmp(&numeric_text(s)?),
        _ => None,
    }
}

/// Text that is a plain decimal number (`42`, `-1.5`, `2e3`), not `inf` or `NaN`.
fn numeric_text(s: &str) -> Option<f64> {
    let t = s.trim();
    let plain = !t.is_empty()
        && t.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '+' | '-' | '.' | 'e' | 'E'))
        && t.chars().any(|c| c.is_ascii_digit());
    if !plain {
        return None;
    }
    t.parse::<f64>().ok().filter(|n| n.is_finite())
}

fn number_text(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

/// SQL LIKE: `%` matches any run of characters, `_` exactly one. Greedy with one backtrack
/// point (the last `%`), so it is O(len × pattern) whatever the pattern.
fn like(text: &str, pattern: &str, fold: bool) -> bool {
    let norm = |s: &str| -> Vec<char> {
        if fold {
            s.chars().flat_map(char::to_lowercase).collect()
        } else {
            s.chars().collect()
        }
    };
    let t = norm(text);
    let p = norm(pattern);
    let (mut ti, mut pi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('%') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '_' || c == t[ti] => {
                ti += 1;
                pi += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '%')
}

#[cfg(test)]
pub(super) fn like_for_tests(text: &str, pattern: &str, fold: bool) -> bool {
    like(text, pattern, fold)
}
