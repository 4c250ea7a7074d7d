//! Storm, the cortex's query language: the parser, from query text to a typed [`ast`], and
//! the [`runtime`] that runs queries against a view.
//!
//! Storm text is parsed exactly as Synapse 2.256 parses it: the same grammar, the same LALR(1)
//! tables, the same contextual lexing. So the same queries parse, and the same invalid queries
//! fail with the same `BadSyntax` error at the same place (`at`, `line`, `column`, `token`,
//! `highlight`; the message lists the expected terminals the same way).
//!
//! - [`ast`]: the syntax tree the runtime executes; every node has its byte [`ast::Span`].
//! - [`lexer`]: the terminals and the contextual lexer.
//! - [`grammar`]: the grammar rules and their expansion into productions.
//! - [`lalr`]: the LALR(1) tables.
//! - [`parser`]: the table-driven parser, positions, and `BadSyntax` errors.
//! - `convert` / `strings`: from the parse tree to the AST, literal decoding.
//!
//! The parser uses explicit stacks, so deeply nested input cannot overflow the call stack;
//! the tree conversion refuses nesting deeper than [`convert::MAX_NESTING`] with `BadSyntax`.

pub mod ast;
pub mod convert;
pub mod grammar;
pub mod lalr;
pub mod lexer;
pub mod parser;
pub mod runtime;
mod strings;

use crate::error::SynErr;
use convert::Converter;
pub use parser::{Position, highlight, query_hash};

/// Parse a Storm query (Synapse's default `storm` mode).
pub fn parse_query(text: &str) -> Result<ast::Query, SynErr> {
    let cst = parser::parse_cst(text, "query")?;
    Converter::new(text, &cst).query_root()
}

/// Parse `lookup` mode input: words to look up, then optionally `| query`.
pub fn parse_lookup(text: &str) -> Result<ast::Lookup, SynErr> {
    let cst = parser::parse_cst(text, "lookup")?;
    Converter::new(text, &cst).lookup_root()
}

/// Parse `search` mode input: search words, then optionally `| query`.
pub fn parse_search(text: &str) -> Result<ast::Lookup, SynErr> {
    let cst = parser::parse_cst(text, "search")?;
    Converter::new(text, &cst).lookup_root()
}

/// Parse a single Storm value (Synapse's `parseEval`).
pub fn parse_eval(text: &str) -> Result<ast::Value, SynErr> {
    let cst = parser::parse_cst(text, "evalvalu")?;
    Converter::new(text, &cst).value_root()
}
