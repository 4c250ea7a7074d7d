//! The cortex: Synapse's hypergraph service.
//!
//! - [`edits`]: nodeedits, the unit of change, in Synapse's wire shape.
//! - [`model`]: the data model: types with Synapse's normalization, forms, props.
//! - [`layer`]: a layer: nodes in LMDB with their indexes, node data, light edges, and the
//!   durable edit log.
//! - [`storm`]: the Storm query language: lexer, grammar, LALR tables and parser.
//! - [`service`]: the `syn cortex` service, its CoreApi and LayerApi.
//!
//! Still to come: the Storm runtime and the node editor behind `storm`, `callStorm`, `count`
//! and `addFeedData`.

pub mod edits;
pub mod layer;
pub mod model;
pub mod service;
pub mod storm;
