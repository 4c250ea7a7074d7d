//! The cortex: Synapse's hypergraph service.
//!
//! - [`edits`]: nodeedits, the unit of change, in Synapse's wire shape.
//! - [`model`]: the data model: types with Synapse's normalization, forms, props.
//! - [`storm`]: the Storm query language: lexer, grammar, LALR tables and parser.
//!
//! Still to come, each in its own module: the layer (LMDB storage, indexes, the edit log),
//! the Storm runtime, and the service with its CoreApi and LayerApi.

pub mod edits;
pub mod model;
pub mod storm;
