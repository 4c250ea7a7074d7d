//! The cortex: Synapse's hypergraph service.
//!
//! - [`edits`]: nodeedits, the unit of change, in Synapse's wire shape.
//! - [`layer`]: a layer: nodes in LMDB with their indexes, node data, light edges, and the
//!   durable edit log.
//!
//! Still to come, each in its own module: the data model (types, forms, normalization), Storm
//! (parser and runtime), and the service with its CoreApi and LayerApi.

pub mod edits;
pub mod layer;
