//! Storm, the cortex's query language: the parser (text → [`ast`]).
//!
//! - [`lexer`]: the terminals and the contextual lexer.
//! - [`grammar`]: the grammar rules and their expansion.
//! - [`lalr`]: the LALR(1) tables.

pub mod grammar;
pub mod lalr;
pub mod lexer;
pub mod parser;
