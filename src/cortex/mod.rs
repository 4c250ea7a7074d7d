//! The cortex: Synapse's hypergraph service.
//!
//! - [`edits`]: nodeedits, the unit of change, in Synapse's wire shape.
//! - [`model`]: the data model: types with Synapse's normalization, forms, props.
//! - [`layer`]: a layer: nodes in LMDB with their indexes, node data, light edges, and the
//!   durable edit log.
//! - [`storm`]: the Storm query language: lexer, grammar, LALR tables and parser, and the
//!   runtime that runs queries against a view.
//! - [`topology`]: which views and layers the cortex has, and which view is the default.
//! - [`view`]: the layers read as one graph: nodes, packed nodes, lifts merged across layers.
//! - [`catalog`]: the running cortex's views over their layers, and forks.
//! - [`editor`]: node edits with Synapse's consequences (subs, auto-added nodes, tag
//!   parents, model hooks), applied to the write layer.
//! - [`service`]: the `syn cortex` service, its CoreApi and LayerApi.

/// A map keyed by names (forms, props, variables, tags) on the storm and edit paths: aHash,
/// keyed per process like the standard map's SipHash, costs a fraction of it per lookup.
pub type NameMap<V> = std::collections::HashMap<String, V, ahash::RandomState>;

pub mod catalog;
pub mod editor;
pub mod edits;
pub mod layer;
pub mod mirror;
pub mod model;
pub mod service;
pub mod storm;
pub mod topology;
pub mod view;
