//! The cortex: Synapse's hypergraph service.
//!
//! - [`edits`]: nodeedits, the unit of change, in Synapse's wire shape.
//! - [`model`]: the data model: types with Synapse's normalization, forms, props.
//! - [`layer`]: a layer: nodes in LMDB with their indexes, node data, light edges, and the
//!   durable edit log.
//! - [`storm`]: the Storm query language: lexer, grammar, LALR tables and parser.
//!
//! Still to come, each in its own module: the Storm runtime, and the service with its CoreApi
//! and LayerApi.

pub mod edits;
pub mod layer;
pub mod model;
pub mod storm;
