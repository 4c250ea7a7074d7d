//! The LALR driver: lexes with each state's contextual lexer, builds a concrete syntax tree,
//! and turns failures into Synapse's `BadSyntax` errors.

use super::lalr::{Action, Tables};
use super::lexer::{NoMatch, Term, TermSet, Token, root_lexer};
use crate::error::SynErr;
use crate::msgpack::Value;

/// A half-open byte range of the query text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    /// Start byte offset.
    pub start: usize,
    /// End byte offset (exclusive).
    pub end: usize,
}

impl Span {
    /// The span from `start` to `end`.
    pub fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }

    /// The spanned text.
    pub fn text(self, text: &str) -> &str {
        &text[self.start..self.end]
    }
}

/// A child of a tree node: a token or another node (by index into [`Cst::nodes`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kid {
    /// A token.
    Tok(Token),
    /// A node.
    Node(u32),
}

/// One node of the concrete syntax tree.
#[derive(Clone, Debug)]
pub struct CstNode {
    /// The production's name (its alias, else its rule's name).
    pub name: &'static str,
    /// The children, in order.
    pub kids: Vec<Kid>,
    /// From the first to the last token under it; `None` when it has no tokens.
    pub span: Option<Span>,
}

/// A concrete syntax tree, stored flat so that no input can make dropping it recurse.
#[derive(Debug)]
pub struct Cst {
    /// All nodes; the root is the last one.
    pub nodes: Vec<CstNode>,
}

impl Cst {
    /// The root node's index.
    pub fn root(&self) -> u32 {
        (self.nodes.len() - 1) as u32
    }

    /// The node at `index`.
    pub fn node(&self, index: u32) -> &CstNode {
        &self.nodes[index as usize]
    }
}

/// Parse `text` from start symbol `start` (`query`, `lookup`, `search`, `cmdrargs`,
/// `evalvalu`) into a concrete syntax tree.
pub fn parse_cst(text: &str, start: &str) -> Result<Cst, SynErr> {
    let tables = Tables::get();
    let (start_state, end_state) = tables.start(start);
    let mut states = vec![start_state];
    let mut values: Vec<Kid> = Vec::new();
    let mut nodes: Vec<CstNode> = Vec::new();
    let mut pos = 0;
    let mut last: Option<Token> = None;
    loop {
        let state = *states.last().unwrap_or(&start_state);
        let token = match tables.lexer(state).next(text, pos) {
            Ok(Some(token)) => token,
            Ok(None) => break,
            Err(NoMatch { pos }) => {
                return Err(lex_error(text, pos, tables.lexer(state).allowed()));
            }
        };
        feed(tables, &mut states, &mut values, &mut nodes, token, None)
            .map_err(|expected| unexpected_token(text, token, expected))?;
        pos = token.end;
        last = Some(token);
    }
    let end = match last {
        Some(t) => Token {
            term: Term::End,
            start: t.start,
            end: t.start,
        },
        None => Token {
            term: Term::End,
            start: 0,
            end: 0,
        },
    };
    feed(
        tables,
        &mut states,
        &mut values,
        &mut nodes,
        end,
        Some(end_state),
    )
    .map_err(|expected| unexpected_token(text, end, expected))?;
    Ok(Cst { nodes })
}

/// Feed one token: reduce while the state says so, then shift it (or, at the end, stop in
/// `end_state`). `Err` carries the terminals the failing state expected.
fn feed(
    tables: &'static Tables,
    states: &mut Vec<u32>,
    values: &mut Vec<Kid>,
    nodes: &mut Vec<CstNode>,
    token: Token,
    end_state: Option<u32>,
) -> Result<(), TermSet> {
    loop {
        let state = *states.last().ok_or(TermSet::EMPTY)?;
        match tables.action(state, token.term) {
            None => return Err(tables.expected(state)),
            Some(Action::Shift(next)) => {
                states.push(next);
                values.push(Kid::Tok(token));
                return Ok(());
            }
            Some(Action::Reduce(prod)) => {
                let prod = &tables.prods[prod as usize];
                let at = values.len() - prod.len;
                let kids: Vec<Kid> = values.split_off(at);
                states.truncate(states.len() - prod.len);
                let span = span_of(&kids, nodes);
                nodes.push(CstNode {
                    name: prod.name.as_str(),
                    kids,
                    span,
                });
                values.push(Kid::Node((nodes.len() - 1) as u32));
                let top = *states.last().ok_or(TermSet::EMPTY)?;
                let next = tables.goto(top, prod.lhs).ok_or(TermSet::EMPTY)?;
                states.push(next);
                if end_state == Some(next) {
                    return Ok(());
                }
            }
        }
    }
}

fn span_of(kids: &[Kid], nodes: &[CstNode]) -> Option<Span> {
    let spans = kids.iter().filter_map(|k| match k {
        Kid::Tok(t) => Some(Span::new(t.start, t.end)),
        Kid::Node(n) => nodes[*n as usize].span,
    });
    let mut first: Option<Span> = None;
    let mut last: Option<Span> = None;
    for s in spans {
        first.get_or_insert(s);
        last = Some(s);
    }
    Some(Span::new(first?.start, last?.end))
}

// ---------------------------------------------------------------------------------------------
// Positions and BadSyntax

/// Where a byte offset is, the way Synapse counts: character offset, 1-based line (only `\n`
/// starts a line) and 1-based column in characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// 0-based offset in characters.
    pub offset: usize,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl Position {
    /// The position of byte offset `at` in `text`.
    pub fn of(text: &str, at: usize) -> Position {
        let before = &text[..at];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Position {
            offset: before.chars().count(),
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

/// Synapse's `highlight` for the byte range `span` of `text`: `{hash, lines, columns,
/// offsets}`, ends exclusive, as Storm runtime errors carry it.
pub fn highlight(text: &str, span: Span) -> Value {
    let s = Position::of(text, span.start);
    let e = Position::of(text, span.end);
    highlight_value(
        text,
        (s.line, e.line),
        (s.column, e.column),
        (s.offset, e.offset),
    )
}

fn highlight_value(
    text: &str,
    lines: (usize, usize),
    columns: (usize, usize),
    offsets: (usize, usize),
) -> Value {
    let pair =
        |(a, b): (usize, usize)| Value::Array(vec![Value::Int(a as i128), Value::Int(b as i128)]);
    Value::map([
        ("hash", Value::Str(query_hash(text))),
        ("lines", pair(lines)),
        ("columns", pair(columns)),
        ("offsets", pair(offsets)),
    ])
}

/// Synapse's query hash: the md5 hex digest of the text.
pub fn query_hash(text: &str) -> String {
    use md5::{Digest, Md5};
    hex::encode(Md5::digest(text.as_bytes()))
}

/// Python's `str.splitlines()`.
fn split_lines(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        match rest.find(|c: char| "\n\r\x0b\x0c\x1c\x1d\x1e\u{85}\u{2028}\u{2029}".contains(c)) {
            Some(i) => {
                out.push(&rest[..i]);
                let skip = if rest[i..].starts_with("\r\n") {
                    2
                } else {
                    rest[i..].chars().next().map_or(1, char::len_utf8)
                };
                rest = &rest[i + skip..];
            }
            None => {
                out.push(rest);
                rest = "";
            }
        }
    }
    out
}

fn english_list(set: TermSet) -> String {
    let mut names: Vec<&str> = set.iter().map(Term::english).collect();
    names.sort_unstable();
    names.dedup();
    names.join(", ")
}

/// `BadSyntax` for a token the parser cannot take, with Synapse's fields.
fn unexpected_token(text: &str, token: Token, expected: TermSet) -> SynErr {
    let value = &text[token.start..token.end];
    let start = Position::of(text, token.start);
    let chars = value.chars().count();
    let lines = split_lines(value);
    let eline = (start.line + lines.len()).saturating_sub(1);
    let ecol = if lines.len() > 1 {
        lines.last().map_or(0, |l| l.chars().count())
    } else {
        start.column + chars
    };
    let shown = if token.term == Term::End {
        Term::End.english()
    } else {
        token.term.english()
    };
    let mesg = format!(
        "Unexpected token '{shown}' at line {}, column {}, expecting one of: {}",
        start.line,
        start.column,
        english_list(expected)
    );
    SynErr::new("BadSyntax", mesg)
        .with("at", start.offset as i64)
        .with("text", text)
        .with("line", start.line as i64)
        .with("column", start.column as i64)
        .with("token", value)
        .with(
            "highlight",
            highlight_value(
                text,
                (start.line, eline),
                (start.column, ecol),
                (start.offset, start.offset + chars),
            ),
        )
        .reorder_mesg_after(&["at", "text"])
}

/// `BadSyntax` when no terminal of the state matches at `pos`: like lark, name the token the
/// full lexer finds there, or report the characters if none.
fn lex_error(text: &str, pos: usize, allowed: TermSet) -> SynErr {
    match root_lexer().next(text, pos) {
        Ok(Some(token)) => unexpected_token(text, token, allowed),
        _ => {
            let at = Position::of(text, pos);
            let ch: String = text[pos..].chars().take(1).collect();
            let mesg = format!(
                "No terminal matches '{ch}' in the current parser context, at line {} col {}.  Expecting one of: {}",
                at.line,
                at.column,
                english_list(allowed)
            );
            SynErr::new("BadSyntax", mesg)
                .with("at", at.offset as i64)
                .with("text", text)
                .with("line", at.line as i64)
                .with("column", at.column as i64)
                .with("token", Value::Nil)
                .with(
                    "highlight",
                    highlight_value(
                        text,
                        (at.line, at.line),
                        (at.column, at.column),
                        (at.offset, at.offset),
                    ),
                )
                .reorder_mesg_after(&["at", "text"])
        }
    }
}

/// `BadSyntax` for a well-formed query that breaks a rule checked after parsing (a duplicate
/// parameter, ...), located at `span`: Synapse's keys `mesg, at, line, column, highlight, text`.
pub fn semantic_error(text: &str, span: Span, mesg: impl Into<String>) -> SynErr {
    let s = Position::of(text, span.start);
    SynErr::new("BadSyntax", mesg)
        .with("at", s.offset as i64)
        .with("line", s.line as i64)
        .with("column", s.column as i64)
        .with("highlight", highlight(text, span))
        .with("text", text)
}

trait Reorder {
    fn reorder_mesg_after(self, keys: &[&str]) -> Self;
}

impl Reorder for SynErr {
    /// Move `mesg` after `keys`, giving Synapse's key order for parse errors.
    fn reorder_mesg_after(mut self, keys: &[&str]) -> SynErr {
        if let Some(i) = self.info.iter().position(|(k, _)| k == "mesg") {
            let mesg = self.info.remove(i);
            let at = self
                .info
                .iter()
                .rposition(|(k, _)| keys.contains(&k.as_str()))
                .map_or(0, |i| i + 1);
            self.info.insert(at, mesg);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> SynErr {
        parse_cst(text, "query").expect_err(text)
    }

    fn int(e: &SynErr, key: &str) -> i64 {
        e.field(key).and_then(Value::as_i64).unwrap_or(-1)
    }

    /// `highlight[key]` as a pair.
    fn hl(e: &SynErr, key: &str) -> (i64, i64) {
        let Some(Value::Map(map)) = e.field("highlight") else {
            panic!("no highlight in {e}");
        };
        let pair = map
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .and_then(|(_, v)| v.as_array())
            .expect(key);
        (pair[0].as_i64().unwrap(), pair[1].as_i64().unwrap())
    }

    #[test]
    fn errors_at_the_offending_token() {
        let e = err("inet:ipv4 +:asn=10 or");
        assert_eq!(
            (int(&e, "at"), int(&e, "line"), int(&e, "column")),
            (19, 1, 20)
        );
        assert_eq!(e.field("token").and_then(Value::as_str), Some("or"));
        assert!(e.mesg().starts_with("Unexpected token 'or' at line 1, column 20, expecting one of: #, $, (, *, +, +(, -, -(, -+>"));
        let keys: Vec<&str> = e.info.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            ["at", "text", "mesg", "line", "column", "token", "highlight"]
        );
    }

    #[test]
    fn end_of_input_borrows_the_last_token() {
        let e = err("inet:ipv4=(");
        assert_eq!((int(&e, "at"), int(&e, "column")), (10, 11));
        assert_eq!(e.field("token").and_then(Value::as_str), Some(""));
        assert_eq!(hl(&e, "lines"), (1, 0));
        assert_eq!(hl(&e, "offsets"), (10, 10));
        assert_eq!(
            e.mesg(),
            "Unexpected token 'end of input' at line 1, column 11, expecting one of: #, $, ${, (, ), -, ., :$, [, `, boolean, double-quoted string, not, null, number, relative property name, single-quoted string, triple-quoted string, universal property, unquoted list value, {"
        );
        let e = err("inet:ipv4\n  | limit (");
        assert_eq!(
            (int(&e, "at"), int(&e, "line"), int(&e, "column")),
            (20, 2, 11)
        );
    }

    #[test]
    fn lexer_failures_name_the_root_token() {
        let e = err("#foo.*");
        assert_eq!((int(&e, "at"), int(&e, "column")), (5, 6));
        assert_eq!(
            e.mesg(),
            "Unexpected token 'default case' at line 1, column 6, expecting one of: $, non-variable tag segment"
        );
        // A bare `break` needs whitespace or `}` after it.
        let e = err("break");
        assert!(
            e.mesg()
                .starts_with("Unexpected token 'unquoted list value' at line 1, column 1")
        );
        assert!(parse_cst("break ", "query").is_ok());
    }

    #[test]
    fn positions_count_characters() {
        let e = err("éé inet:ipv4=(");
        assert_eq!(int(&e, "at"), 0);
        assert_eq!(hl(&e, "offsets"), (0, 14));
        assert_eq!(split_lines("a\r\nb\x0bc"), ["a", "b", "c"]);
    }
}
