//! Row filters of features and labels, e.g. `event_type == 'page_view' && path == '/pricing'`.
//!
//! The grammar is small on purpose: comparisons of a column with a literal, joined by `&&` and
//! `||`, grouped with parentheses, negated with `!`. The operator parses filters to reject bad
//! ones at admission time; the trainer turns the same tree into a polars expression.

use std::fmt;

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `column op literal`.
    Compare {
        /// The column name.
        column: String,
        /// The comparison.
        op: CompareOp,
        /// The literal on the right.
        value: Literal,
    },
    /// Both sides hold.
    And(Box<Filter>, Box<Filter>),
    /// Either side holds.
    Or(Box<Filter>, Box<Filter>),
    /// The inner filter does not hold.
    Not(Box<Filter>),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// A literal value.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    /// `'text'`
    Text(String),
    /// `42`, `-1.5`
    Number(f64),
    /// `true`, `false`
    Bool(bool),
}

/// Why a filter does not parse; `position` is a character offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{message} at character {position} (filters look like: event_type == 'page_view' && duration_min > 2)"
)]
pub struct FilterError {
    /// What is wrong.
    pub message: String,
    /// Where (0-based character offset).
    pub position: usize,
}

impl Filter {
    /// Parses a filter.
    pub fn parse(text: &str) -> Result<Self, FilterError> {
        let tokens = tokenize(text)?;
        let mut parser = Parser {
            tokens,
            at: 0,
            len: text.chars().count(),
        };
        let filter = parser.or()?;
        match parser.peek() {
            None => Ok(filter),
            Some((pos, token)) => Err(FilterError {
                message: format!("unexpected {token}"),
                position: *pos,
            }),
        }
    }

    /// Every column the filter reads.
    pub fn columns(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect_columns(&mut out);
        out
    }

    fn collect_columns<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Filter::Compare { column, .. } => {
                if !out.contains(&column.as_str()) {
                    out.push(column);
                }
            }
            Filter::And(a, b) | Filter::Or(a, b) => {
                a.collect_columns(out);
                b.collect_columns(out);
            }
            Filter::Not(inner) => inner.collect_columns(out),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Lit(Literal),
    Op(CompareOp),
    And,
    Or,
    Not,
    Open,
    Close,
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Ident(name) => write!(f, "column {name}"),
            Token::Lit(_) => write!(f, "literal"),
            Token::Op(_) => write!(f, "comparison"),
            Token::And => write!(f, "'&&'"),
            Token::Or => write!(f, "'||'"),
            Token::Not => write!(f, "'!'"),
            Token::Open => write!(f, "'('"),
            Token::Close => write!(f, "')'"),
        }
    }
}

/// The filter language's lexer: one match over the next character, long because the language
/// has that many tokens.
fn tokenize(text: &str) -> Result<Vec<(usize, Token)>, FilterError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let err = |message: &str, position| FilterError {
        message: message.to_string(),
        position,
    };
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        let two = chars.get(i + 1).copied();
        let token = match (c, two) {
            (c, _) if c.is_whitespace() => {
                i += 1;
                continue;
            }
            ('&', Some('&')) => {
                i += 2;
                Token::And
            }
            ('|', Some('|')) => {
                i += 2;
                Token::Or
            }
            ('=', Some('=')) => {
                i += 2;
                Token::Op(CompareOp::Eq)
            }
            ('!', Some('=')) => {
                i += 2;
                Token::Op(CompareOp::Ne)
            }
            ('<', Some('=')) => {
                i += 2;
                Token::Op(CompareOp::Le)
            }
            ('>', Some('=')) => {
                i += 2;
                Token::Op(CompareOp::Ge)
            }
            ('<', _) => {
                i += 1;
                Token::Op(CompareOp::Lt)
            }
            ('>', _) => {
                i += 1;
                Token::Op(CompareOp::Gt)
            }
            ('!', _) => {
                i += 1;
                Token::Not
            }
            ('(', _) => {
                i += 1;
                Token::Open
            }
            (')', _) => {
                i += 1;
                Token::Close
            }
            ('\'', _) => {
                let close = chars[i + 1..]
                    .iter()
                    .position(|&c| c == '\'')
                    .ok_or_else(|| err("unterminated string literal", start))?;
                let s: String = chars[i + 1..i + 1 + close].iter().collect();
                i += close + 2;
                Token::Lit(Literal::Text(s))
            }
            (c, _) if c.is_ascii_digit() || c == '-' || c == '.' => {
                let end = chars[i + 1..]
                    .iter()
                    .position(|c| !(c.is_ascii_digit() || *c == '.' || *c == 'e' || *c == 'E'))
                    .map_or(chars.len(), |p| i + 1 + p);
                let s: String = chars[i..end].iter().collect();
                let n = s
                    .parse::<f64>()
                    .map_err(|_| err(&format!("invalid number {s}"), start))?;
                i = end;
                Token::Lit(Literal::Number(n))
            }
            (c, _) if c.is_alphabetic() || c == '_' => {
                let end = chars[i..]
                    .iter()
                    .position(|c| !(c.is_alphanumeric() || *c == '_' || *c == '.'))
                    .map_or(chars.len(), |p| i + p);
                let s: String = chars[i..end].iter().collect();
                i = end;
                match s.as_str() {
                    "true" => Token::Lit(Literal::Bool(true)),
                    "false" => Token::Lit(Literal::Bool(false)),
                    _ => Token::Ident(s),
                }
            }
            (c, _) => return Err(err(&format!("unexpected character {c:?}"), start)),
        };
        out.push((start, token));
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    at: usize,
    len: usize,
}

impl Parser {
    fn peek(&self) -> Option<&(usize, Token)> {
        self.tokens.get(self.at)
    }

    fn next(&mut self, expected: &str) -> Result<(usize, Token), FilterError> {
        let token = self
            .tokens
            .get(self.at)
            .cloned()
            .ok_or_else(|| FilterError {
                message: format!("expected {expected} but the filter ends"),
                position: self.len,
            })?;
        self.at += 1;
        Ok(token)
    }

    fn or(&mut self) -> Result<Filter, FilterError> {
        let mut left = self.and()?;
        while matches!(self.peek(), Some((_, Token::Or))) {
            self.at += 1;
            left = Filter::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Filter, FilterError> {
        let mut left = self.unary()?;
        while matches!(self.peek(), Some((_, Token::And))) {
            self.at += 1;
            left = Filter::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Filter, FilterError> {
        match self.next("a comparison")? {
            (_, Token::Not) => Ok(Filter::Not(Box::new(self.unary()?))),
            (_, Token::Open) => {
                let inner = self.or()?;
                match self.next("')'")? {
                    (_, Token::Close) => Ok(inner),
                    (pos, t) => Err(FilterError {
                        message: format!("expected ')' but found {t}"),
                        position: pos,
                    }),
                }
            }
            (_, Token::Ident(column)) => {
                let op = match self.next("a comparison such as ==")? {
                    (_, Token::Op(op)) => op,
                    (pos, t) => {
                        return Err(FilterError {
                            message: format!(
                                "expected a comparison (==, !=, <, <=, >, >=) but found {t}"
                            ),
                            position: pos,
                        });
                    }
                };
                match self.next("a literal")? {
                    (_, Token::Lit(value)) => Ok(Filter::Compare { column, op, value }),
                    (pos, t) => Err(FilterError {
                        message: format!(
                            "expected a literal ('text', a number, true or false) but found {t}"
                        ),
                        position: pos,
                    }),
                }
            }
            (pos, t) => Err(FilterError {
                message: format!("expected a column name but found {t}"),
                position: pos,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_examples_filters() {
        let f = Filter::parse("event_type == 'page_view' && path == '/pricing'").unwrap();
        assert_eq!(f.columns(), vec!["event_type", "path"]);
        assert!(matches!(f, Filter::And(..)));
        let f = Filter::parse("!(a < 3 || b >= -1.5) && c != true").unwrap();
        assert_eq!(f.columns(), vec!["a", "b", "c"]);
        match f {
            Filter::And(left, right) => {
                assert!(matches!(*left, Filter::Not(_)));
                assert_eq!(
                    *right,
                    Filter::Compare {
                        column: "c".into(),
                        op: CompareOp::Ne,
                        value: Literal::Bool(true)
                    }
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_position_and_the_problem() {
        let e = Filter::parse("event_type = 'x'").unwrap_err();
        assert!(e.message.contains("unexpected character '='"), "{e}");
        assert_eq!(e.position, 11);
        let e = Filter::parse("event_type == 'x").unwrap_err();
        assert!(e.message.contains("unterminated"), "{e}");
        let e = Filter::parse("a == 1 &&").unwrap_err();
        assert!(e.message.contains("filter ends"), "{e}");
        let e = Filter::parse("a == b").unwrap_err();
        assert!(e.message.contains("expected a literal"), "{e}");
        let e = Filter::parse("(a == 1").unwrap_err();
        assert!(e.message.contains("')'"), "{e}");
    }
}
