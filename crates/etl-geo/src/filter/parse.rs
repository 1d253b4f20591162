//! The attribute filter language of `--where`: the WHERE clause of OGR SQL (what ogr2ogr's
//! `-where` takes), without functions or arithmetic.
//!
//! ```text
//! expr      := and ( OR and )*
//! and       := not ( AND not )*
//! not       := NOT not | predicate
//! predicate := '(' expr ')'
//!            | operand [ cmp operand
//!                      | IS [NOT] NULL
//!                      | [NOT] LIKE 'pattern' | [NOT] ILIKE 'pattern'
//!                      | [NOT] IN ( literal, … )
//!                      | [NOT] BETWEEN operand AND operand ]
//! operand   := name | "quoted name" | 'string' | number | TRUE | FALSE | NULL
//! cmp       := = | == | != | <> | < | <= | > | >=
//! ```
//!
//! Keywords are case-insensitive; a string holds `''` for a quote. A bare operand is true when it
//! is the boolean `true`. Nesting deeper than [`MAX_DEPTH`] and texts longer than
//! [`MAX_TEXT`] are refused, so any input parses in bounded time and stack.

use super::{Cmp, Expr, FilterError, Operand};

/// Deepest nesting of parentheses and NOTs.
pub const MAX_DEPTH: usize = 64;
/// Longest filter text.
pub const MAX_TEXT: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// A property name or keyword; `true` when it was double-quoted (never a keyword then).
    Name(String, bool),
    Str(String),
    Num(f64),
    Op(Cmp),
    LParen,
    RParen,
    Comma,
}

/// A token and the character position (1-based) it starts at.
type Spanned = (Token, usize);

fn tokenize(text: &str) -> Result<Vec<Spanned>, FilterError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let at = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let two: String = chars[i..chars.len().min(i + 2)].iter().collect();
        let op = match two.as_str() {
            "<=" => Some((Cmp::Le, 2)),
            ">=" => Some((Cmp::Ge, 2)),
            "<>" | "!=" => Some((Cmp::Ne, 2)),
            "==" => Some((Cmp::Eq, 2)),
            _ => match c {
                '=' => Some((Cmp::Eq, 1)),
                '<' => Some((Cmp::Lt, 1)),
                '>' => Some((Cmp::Gt, 1)),
                _ => None,
            },
        };
        if let Some((op, len)) = op {
            out.push((Token::Op(op), at));
            i += len;
            continue;
        }
        match c {
            '(' => out.push((Token::LParen, at)),
            ')' => out.push((Token::RParen, at)),
            ',' => out.push((Token::Comma, at)),
            '\'' | '"' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(FilterError::at(at, "unterminated quoted text"));
                        }
                        Some(&q) if q == c => {
                            if chars.get(i + 1) == Some(&c) {
                                s.push(c);
                                i += 2;
                            } else {
                                break;
                            }
                        }
                        Some(&other) => {
                            s.push(other);
                            i += 1;
                        }
                    }
                }
                out.push((
                    if c == '\'' {
                        Token::Str(s)
                    } else {
                        Token::Name(s, true)
                    },
                    at,
                ));
            }
            _ if c.is_ascii_digit() || c == '.' || c == '-' || c == '+' => {
                let start = i;
                i += 1;
                while let Some(&d) = chars.get(i) {
                    let exponent_sign =
                        (d == '-' || d == '+') && matches!(chars.get(i - 1), Some('e' | 'E'));
                    if d.is_ascii_digit() || d == '.' || d == 'e' || d == 'E' || exponent_sign {
                        i += 1;
                    } else {
                        break;
                    }
                }
                let text: String = chars[start..i].iter().collect();
                let n: f64 = text
                    .parse()
                    .map_err(|_| FilterError::at(at, format!("{text:?} is not a number")))?;
                if !n.is_finite() {
                    return Err(FilterError::at(
                        at,
                        format!("{text:?} is not a finite number"),
                    ));
                }
                out.push((Token::Num(n), at));
                continue;
            }
            _ if c.is_alphabetic() || c == '_' => {
                let start = i;
                while chars
                    .get(i)
                    .is_some_and(|d| d.is_alphanumeric() || *d == '_' || *d == ':' || *d == '.')
                {
                    i += 1;
                }
                out.push((Token::Name(chars[start..i].iter().collect(), false), at));
                continue;
            }
            other => return Err(FilterError::at(at, format!("unexpected {other:?}"))),
        }
        i += 1;
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<Spanned>,
    pos: usize,
    /// Where the text ends, for "expected … at the end".
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|(t, _)| t)
    }

    fn here(&self) -> usize {
        self.tokens.get(self.pos).map_or(self.end, |(_, at)| *at)
    }

    fn describe_here(&self) -> String {
        match self.peek() {
            None => "the end".to_owned(),
            Some(Token::Name(n, _)) => format!("{n:?}"),
            Some(Token::Str(s)) => format!("'{s}'"),
            Some(Token::Num(n)) => n.to_string(),
            Some(Token::Op(_)) => "an operator".to_owned(),
            Some(Token::LParen) => "'('".to_owned(),
            Some(Token::RParen) => "')'".to_owned(),
            Some(Token::Comma) => "','".to_owned(),
        }
    }

    fn expected(&self, what: &str) -> FilterError {
        FilterError::at(
            self.here(),
            format!("expected {what}, found {}", self.describe_here()),
        )
    }

    /// Takes the next token when it is the keyword `kw` (a bare, unquoted name).
    fn keyword(&mut self, kw: &str) -> bool {
        match self.peek() {
            Some(Token::Name(n, false)) if n.eq_ignore_ascii_case(kw) => {
                self.pos += 1;
                true
            }
            _ => false,
        }
    }

    fn expr(&mut self, depth: usize) -> Result<Expr, FilterError> {
        if depth > MAX_DEPTH {
            return Err(FilterError::at(
                self.here(),
                format!("nested deeper than {MAX_DEPTH}"),
            ));
        }
        let first = self.and(depth)?;
        if !self.keyword("OR") {
            return Ok(first);
        }
        // Flat, not nested: a long chain costs no stack when evaluated or dropped.
        let mut terms = vec![first, self.and(depth)?];
        while self.keyword("OR") {
            terms.push(self.and(depth)?);
        }
        Ok(Expr::Or(terms))
    }

    fn and(&mut self, depth: usize) -> Result<Expr, FilterError> {
        let first = self.not(depth)?;
        if !self.keyword("AND") {
            return Ok(first);
        }
        let mut terms = vec![first, self.not(depth)?];
        while self.keyword("AND") {
            terms.push(self.not(depth)?);
        }
        Ok(Expr::And(terms))
    }

    fn not(&mut self, depth: usize) -> Result<Expr, FilterError> {
        if self.keyword("NOT") {
            if depth + 1 > MAX_DEPTH {
                return Err(FilterError::at(
                    self.here(),
                    format!("nested deeper than {MAX_DEPTH}"),
                ));
            }
            return Ok(Expr::Not(Box::new(self.not(depth + 1)?)));
        }
        self.predicate(depth)
    }

    fn predicate(&mut self, depth: usize) -> Result<Expr, FilterError> {
        if self.peek() == Some(&Token::LParen) {
            self.pos += 1;
            let inner = self.expr(depth + 1)?;
            if self.peek() != Some(&Token::RParen) {
                return Err(self.expected("')'"));
            }
            self.pos += 1;
            return Ok(inner);
        }
        let left = self.operand()?;
        if let Some(Token::Op(op)) = self.peek() {
            let op = *op;
            self.pos += 1;
            let right = self.operand()?;
            return Ok(Expr::Cmp(left, op, right));
        }
        if self.keyword("IS") {
            let negated = self.keyword("NOT");
            if !self.keyword("NULL") {
                return Err(self.expected("NULL"));
            }
            let test = Expr::IsNull(left);
            return Ok(if negated {
                Expr::Not(Box::new(test))
            } else {
                test
            });
        }
        let negated = self.keyword("NOT");
        let test = if self.keyword("LIKE") {
            Expr::Like(left, self.pattern()?, false)
        } else if self.keyword("ILIKE") {
            Expr::Like(left, self.pattern()?, true)
        } else if self.keyword("IN") {
            Expr::In(left, self.list()?)
        } else if self.keyword("BETWEEN") {
            let low = self.operand()?;
            if !self.keyword("AND") {
                return Err(self.expected("AND"));
            }
            let high = self.operand()?;
            Expr::Between(left, low, high)
        } else if negated {
            return Err(self.expected("LIKE, ILIKE, IN or BETWEEN after NOT"));
        } else {
            return Ok(Expr::Truthy(left));
        };
        Ok(if negated {
            Expr::Not(Box::new(test))
        } else {
            test
        })
    }

    fn pattern(&mut self) -> Result<String, FilterError> {
        match self.peek() {
            Some(Token::Str(s)) => {
                let s = s.clone();
                self.pos += 1;
                Ok(s)
            }
            _ => Err(self.expected("a quoted pattern")),
        }
    }

    fn list(&mut self) -> Result<Vec<Operand>, FilterError> {
        if self.peek() != Some(&Token::LParen) {
            return Err(self.expected("'(' and a list of values"));
        }
        self.pos += 1;
        let mut items = Vec::new();
        loop {
            items.push(self.operand()?);
            match self.peek() {
                Some(Token::Comma) => self.pos += 1,
                Some(Token::RParen) => {
                    self.pos += 1;
                    return Ok(items);
                }
                _ => return Err(self.expected("',' or ')'")),
            }
        }
    }

    fn operand(&mut self) -> Result<Operand, FilterError> {
        let Some((token, _)) = self.tokens.get(self.pos) else {
            return Err(self.expected("a value or a property name"));
        };
        let operand = match token {
            Token::Str(s) => Operand::Text(s.clone()),
            Token::Num(n) => Operand::Number(*n),
            Token::Name(n, false) if n.eq_ignore_ascii_case("NULL") => Operand::Null,
            Token::Name(n, false) if n.eq_ignore_ascii_case("TRUE") => Operand::Bool(true),
            Token::Name(n, false) if n.eq_ignore_ascii_case("FALSE") => Operand::Bool(false),
            Token::Name(n, _) => Operand::Property(n.clone()),
            _ => return Err(self.expected("a value or a property name")),
        };
        self.pos += 1;
        Ok(operand)
    }
}

/// Parses a filter.
pub fn parse(text: &str) -> Result<Expr, FilterError> {
    if text.len() > MAX_TEXT {
        return Err(FilterError(format!(
            "{} bytes long (at most {MAX_TEXT})",
            text.len()
        )));
    }
    let tokens = tokenize(text)?;
    if tokens.is_empty() {
        return Err(FilterError("empty filter".to_owned()));
    }
    let mut parser = Parser {
        tokens,
        pos: 0,
        end: text.chars().count() + 1,
    };
    let expr = parser.expr(0)?;
    if parser.pos < parser.tokens.len() {
        return Err(parser.expected("AND, OR or the end"));
    }
    Ok(expr)
}
