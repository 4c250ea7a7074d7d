//! The cortex: Synapse's hypergraph service.
//!
//! - [`edits`]: nodeedits, the unit of change, in Synapse's wire shape.
//!
//! Still to come, each in its own module: the data model (types, forms, normalization), the
//! layer (LMDB storage, indexes, the edit log), Storm (parser and runtime), and the service
//! with its CoreApi and LayerApi.

pub mod edits;
