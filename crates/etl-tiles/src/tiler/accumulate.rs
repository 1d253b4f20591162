//! `--accumulate-attribute`: how the attributes of the points a cluster absorbs are folded into
//! the one feature that stands for them (tippecanoe's `-E NAME:OP`).
//!
//! A cluster's members are folded in input order (their sort order), so the result does not
//! depend on how the sort split its runs or on the memory budget.

use crate::mvt::{PropValue, value_text};

/// How a cluster folds one attribute of its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccumOp {
    /// The sum of the numeric values (integers stay exact integers while they fit).
    Sum,
    /// The product of the numeric values.
    Product,
    /// The mean of the numeric values.
    Mean,
    /// The largest numeric value, as it was (type included).
    Max,
    /// The smallest numeric value, as it was.
    Min,
    /// The values as text, joined with nothing between them.
    Concat,
    /// The values as text, joined with commas.
    Comma,
    /// How many members carry the attribute.
    Count,
}

/// The longest text `concat` / `comma` build, in bytes: a cluster of a million points must not
/// make a megabyte attribute (and a tile over the byte limit). Longer text is cut at a character
/// boundary and the cut counted.
pub const MAX_ACCUMULATED_TEXT: usize = 4096;

impl AccumOp {
    pub fn parse(s: &str) -> Option<AccumOp> {
        Some(match s {
            "sum" => AccumOp::Sum,
            "product" => AccumOp::Product,
            "mean" => AccumOp::Mean,
            "max" => AccumOp::Max,
            "min" => AccumOp::Min,
            "concat" => AccumOp::Concat,
            "comma" => AccumOp::Comma,
            "count" => AccumOp::Count,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            AccumOp::Sum => "sum",
            AccumOp::Product => "product",
            AccumOp::Mean => "mean",
            AccumOp::Max => "max",
            AccumOp::Min => "min",
            AccumOp::Concat => "concat",
            AccumOp::Comma => "comma",
            AccumOp::Count => "count",
        }
    }
}

/// Parses one `--accumulate-attribute` value: `NAME:OP` (split at the last colon, so names such
/// as `name:en` work) or a JSON object `{"NAME": "OP", ...}`.
pub fn parse_accumulate(arg: &str) -> Result<Vec<(String, AccumOp)>, String> {
    const OPS: &str = "sum, product, mean, max, min, concat, comma or count";
    let op = |name: &str, op: &str| {
        AccumOp::parse(op)
            .map(|o| (name.to_owned(), o))
            .ok_or_else(|| format!("{name:?}: unknown operation {op:?} (expected {OPS})"))
    };
    if arg.trim_start().starts_with('{') {
        let v: serde_json::Value =
            serde_json::from_str(arg).map_err(|e| format!("not a JSON object: {e}"))?;
        let obj = v.as_object().ok_or("not a JSON object")?;
        return obj
            .iter()
            .map(|(k, v)| match v.as_str() {
                Some(s) => op(k, s),
                None => Err(format!("{k:?}: the operation must be a string ({OPS})")),
            })
            .collect();
    }
    match arg.rsplit_once(':') {
        Some((name, o)) if !name.is_empty() => op(name, o).map(|p| vec![p]),
        _ => Err(format!("{arg:?}: expected NAME:OPERATION ({OPS})")),
    }
}

/// A number read from a value: integers exactly, strings that are numbers as numbers.
#[derive(Debug, Clone, Copy)]
enum Num {
    Int(i128),
    Float(f64),
}

fn number(v: &PropValue) -> Option<Num> {
    match v {
        PropValue::UInt(u) => Some(Num::Int(i128::from(*u))),
        PropValue::SInt(i) | PropValue::Int(i) => Some(Num::Int(i128::from(*i))),
        PropValue::Double(d) => d.is_finite().then_some(Num::Float(*d)),
        PropValue::Float(f) => f.is_finite().then_some(Num::Float(f64::from(*f))),
        PropValue::String(s) => {
            let t = s.trim();
            if let Ok(i) = t.parse::<i64>() {
                Some(Num::Int(i128::from(i)))
            } else if let Ok(u) = t.parse::<u64>() {
                Some(Num::Int(i128::from(u)))
            } else {
                t.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(Num::Float)
            }
        }
        PropValue::Bool(_) => None,
    }
}

/// Integers compare exactly (also beyond 2^53), anything with a float as f64.
fn compare(a: Num, b: Num) -> std::cmp::Ordering {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => x.cmp(&y),
        _ => as_f64(a).total_cmp(&as_f64(b)),
    }
}

fn as_f64(n: Num) -> f64 {
    match n {
        Num::Int(i) => i as f64,
        Num::Float(f) => f,
    }
}

fn int_value(i: i128) -> PropValue {
    if let Ok(u) = u64::try_from(i) {
        PropValue::UInt(u)
    } else if let Ok(s) = i64::try_from(i) {
        PropValue::SInt(s)
    } else {
        PropValue::Double(i as f64)
    }
}

/// The fold of one attribute over a cluster's members so far.
#[derive(Debug, Clone)]
pub(crate) struct Acc {
    op: AccumOp,
    /// Members that carried the attribute (any value) / a numeric value.
    carried: u64,
    numeric: u64,
    /// Exact integer total (sum) or product, while every value is an integer and it fits.
    int: Option<i128>,
    /// Floating total or product of every numeric value.
    float: f64,
    /// max / min: the value kept and its number.
    best: Option<(Num, PropValue)>,
    text: String,
    /// Whether `text` was cut at [`MAX_ACCUMULATED_TEXT`].
    pub(crate) truncated: bool,
}

impl Acc {
    pub(crate) fn new(op: AccumOp) -> Acc {
        Acc {
            op,
            carried: 0,
            numeric: 0,
            int: Some(if op == AccumOp::Product { 1 } else { 0 }),
            float: if op == AccumOp::Product { 1.0 } else { 0.0 },
            best: None,
            text: String::new(),
            truncated: false,
        }
    }

    /// Folds in one member's value of the attribute.
    pub(crate) fn add(&mut self, v: &PropValue) {
        self.carried += 1;
        match self.op {
            AccumOp::Concat | AccumOp::Comma => {
                if self.truncated {
                    return;
                }
                if self.op == AccumOp::Comma && self.carried > 1 {
                    self.text.push(',');
                }
                self.text.push_str(&value_text(v));
                if self.text.len() > MAX_ACCUMULATED_TEXT {
                    let mut end = MAX_ACCUMULATED_TEXT;
                    while !self.text.is_char_boundary(end) {
                        end -= 1;
                    }
                    self.text.truncate(end);
                    self.truncated = true;
                }
            }
            AccumOp::Count => {}
            op => {
                let Some(n) = number(v) else { return };
                self.numeric += 1;
                let f = as_f64(n);
                match op {
                    AccumOp::Sum | AccumOp::Mean => {
                        self.float += f;
                        self.int = match (self.int, n) {
                            (Some(t), Num::Int(i)) => t.checked_add(i),
                            _ => None,
                        };
                    }
                    AccumOp::Product => {
                        self.float *= f;
                        self.int = match (self.int, n) {
                            (Some(t), Num::Int(i)) => t.checked_mul(i),
                            _ => None,
                        };
                    }
                    AccumOp::Max | AccumOp::Min => {
                        let better = match &self.best {
                            None => true,
                            Some((b, _)) => {
                                let ord = compare(n, *b);
                                if op == AccumOp::Max {
                                    ord == std::cmp::Ordering::Greater
                                } else {
                                    ord == std::cmp::Ordering::Less
                                }
                            }
                        };
                        if better {
                            self.best = Some((n, v.clone()));
                        }
                    }
                    AccumOp::Concat | AccumOp::Comma | AccumOp::Count => {}
                }
            }
        }
    }

    /// The folded value; `None` when no member carried a value the operation reads, or when a
    /// sum, product or mean of finite values overflowed (the feature keeps what it had).
    pub(crate) fn finish(&self) -> Option<PropValue> {
        match self.op {
            AccumOp::Count => (self.carried > 0).then_some(PropValue::UInt(self.carried)),
            AccumOp::Concat | AccumOp::Comma => {
                (self.carried > 0).then(|| PropValue::String(self.text.clone()))
            }
            _ if self.numeric == 0 => None,
            AccumOp::Sum | AccumOp::Product => match self.int {
                Some(i) => Some(int_value(i)),
                None => self
                    .float
                    .is_finite()
                    .then_some(PropValue::Double(self.float)),
            },
            AccumOp::Mean => {
                let m = self.float / self.numeric as f64;
                m.is_finite().then_some(PropValue::Double(m))
            }
            AccumOp::Max | AccumOp::Min => self.best.as_ref().map(|(_, v)| v.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fold(op: AccumOp, vals: &[PropValue]) -> Option<PropValue> {
        let mut a = Acc::new(op);
        vals.iter().for_each(|v| a.add(v));
        a.finish()
    }

    #[test]
    fn operations() {
        use PropValue::*;
        let v = [UInt(3), SInt(-5), String("10".into()), Bool(true)];
        assert_eq!(fold(AccumOp::Sum, &v), Some(UInt(8)));
        assert_eq!(fold(AccumOp::Product, &v), Some(SInt(-150)));
        assert_eq!(fold(AccumOp::Mean, &v), Some(Double(8.0 / 3.0)));
        assert_eq!(fold(AccumOp::Max, &v), Some(String("10".into())));
        assert_eq!(fold(AccumOp::Min, &v), Some(SInt(-5)));
        assert_eq!(fold(AccumOp::Count, &v), Some(UInt(4)));
        assert_eq!(
            fold(AccumOp::Comma, &v),
            Some(String("3,-5,10,true".into()))
        );
        assert_eq!(fold(AccumOp::Concat, &v), Some(String("3-510true".into())));
        // A float makes the sum a double; nothing numeric leaves the feature's value alone.
        assert_eq!(
            fold(AccumOp::Sum, &[UInt(1), Double(0.5)]),
            Some(Double(1.5))
        );
        assert_eq!(fold(AccumOp::Sum, &[String("x".into())]), None);
        assert_eq!(fold(AccumOp::Sum, &[]), None);
        // Integers beyond f64's exact range stay exact.
        let big = UInt(u64::MAX / 2);
        assert_eq!(
            fold(AccumOp::Sum, &[big.clone(), UInt(1)]),
            Some(UInt(u64::MAX / 2 + 1))
        );
        // Integers beyond 2^53 compare exactly; strings beyond i64 parse as u64.
        assert_eq!(
            fold(AccumOp::Max, &[UInt(u64::MAX), UInt(u64::MAX - 1)]),
            Some(UInt(u64::MAX))
        );
        assert_eq!(
            fold(
                AccumOp::Min,
                &[UInt(u64::MAX - 1), String(u64::MAX.to_string())]
            ),
            Some(UInt(u64::MAX - 1))
        );
        assert_eq!(
            fold(AccumOp::Sum, &[String(u64::MAX.to_string()), UInt(1)]),
            Some(Double(2f64.powi(64)))
        );
        // Finite values whose sum overflows f64: no value rather than infinity.
        assert_eq!(
            fold(AccumOp::Sum, &[Double(f64::MAX), Double(f64::MAX)]),
            None
        );
        assert_eq!(
            fold(AccumOp::Mean, &[Double(f64::MAX), Double(f64::MAX)]),
            None
        );
        // An integer overflow falls back to the double total.
        assert_eq!(
            fold(
                AccumOp::Product,
                &[UInt(u64::MAX), UInt(u64::MAX), UInt(u64::MAX)]
            ),
            Some(Double((u64::MAX as f64).powi(3)))
        );
    }

    #[test]
    fn text_is_capped_at_a_character_boundary() {
        let mut a = Acc::new(AccumOp::Concat);
        for _ in 0..3000 {
            a.add(&PropValue::String("é".into()));
        }
        let Some(PropValue::String(s)) = a.finish() else {
            panic!("a string")
        };
        assert!(a.truncated);
        assert!(s.len() <= MAX_ACCUMULATED_TEXT && s.len() >= MAX_ACCUMULATED_TEXT - 1);
        assert!(s.chars().all(|c| c == 'é'));
    }

    #[test]
    fn parsing() {
        assert_eq!(
            parse_accumulate("name:en:concat").unwrap(),
            vec![("name:en".to_owned(), AccumOp::Concat)]
        );
        let mut j = parse_accumulate(r#"{"pop": "sum", "n": "count"}"#).unwrap();
        j.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            j,
            vec![
                ("n".to_owned(), AccumOp::Count),
                ("pop".to_owned(), AccumOp::Sum)
            ]
        );
        for bad in ["pop", ":sum", "pop:avg", r#"{"pop": 1}"#, "{", "[]"] {
            assert!(parse_accumulate(bad).is_err(), "{bad}");
        }
    }
}
