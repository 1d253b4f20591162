//! Attribute filters (`--where`, ogr2ogr's `-where`): which features of an input are kept,
//! decided from their properties with the WHERE syntax of OGR SQL (see [`parse`] for the
//! grammar).
//!
//! Property names match exactly, else regardless of ASCII case (as OGR's field names do).
//! Semantics are SQL's: a missing property is NULL, a comparison with NULL is unknown, and only
//! features for which the whole filter is true are kept. Numbers compare as numbers (a string
//! property that holds a number compares with a number literal numerically, since CSV and
//! Shapefile attributes often arrive as text); strings compare by code point; LIKE is
//! case-sensitive (`%` any run, `_` one character) and ILIKE is not.

mod eval;
mod parse;

use serde_json::Value;

use crate::feature::Feature;

/// A filter that cannot be parsed: one line naming the character position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FilterError(pub String);

impl FilterError {
    fn at(position: usize, message: impl std::fmt::Display) -> Self {
        FilterError(format!("at character {position}: {message}"))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Operand {
    Property(String),
    Text(String),
    Number(f64),
    Bool(bool),
    Null,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Cmp(Operand, Cmp, Operand),
    IsNull(Operand),
    /// Operand, pattern, case-insensitive.
    Like(Operand, String, bool),
    In(Operand, Vec<Operand>),
    Between(Operand, Operand, Operand),
    /// A bare operand: true when it is the boolean `true`.
    Truthy(Operand),
}

/// A parsed `--where` filter.
#[derive(Debug, Clone)]
pub struct Filter {
    text: String,
    expr: Expr,
}

impl Filter {
    /// Parses `text`; the error says where and what is wrong.
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        Ok(Filter {
            text: text.to_owned(),
            expr: parse::parse(text)?,
        })
    }

    /// The filter as it was written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether `feature` is kept: the filter is true for its properties.
    pub fn matches(&self, feature: &Feature) -> bool {
        eval::eval(&self.expr, &feature.properties) == Some(true)
    }
}

/// What an operand stands for in one feature.
fn value_of<'a>(operand: &'a Operand, props: &'a serde_json::Map<String, Value>) -> Val<'a> {
    match operand {
        Operand::Property(name) => match property(props, name) {
            None | Some(Value::Null) => Val::Null,
            Some(Value::Bool(b)) => Val::Bool(*b),
            Some(Value::Number(n)) => n.as_f64().map_or(Val::Other, Val::Number),
            Some(Value::String(s)) => Val::Text(s),
            Some(_) => Val::Other,
        },
        Operand::Text(s) => Val::Text(s),
        Operand::Number(n) => Val::Number(*n),
        Operand::Bool(b) => Val::Bool(*b),
        Operand::Null => Val::Null,
    }
}

/// The property `name`, or else the one whose name differs only in ASCII case (OGR matches field
/// names that way, so an ogr2ogr `-where` keeps working).
fn property<'a>(props: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a Value> {
    props.get(name).or_else(|| {
        props
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// A value as the filter sees it; arrays and objects are `Other` (only IS NULL tests them).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Val<'a> {
    Null,
    Bool(bool),
    Number(f64),
    Text(&'a str),
    Other,
}

#[cfg(test)]
mod tests;
