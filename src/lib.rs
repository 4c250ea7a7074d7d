//! syn: the Synapse service tier (cortex, axon, cryotank) as a systemd-native appliance.
//!
//! One library crate with a module per concern; the `syn` binary is a thin CLI over it.

pub mod certs;
pub mod error;
pub mod msgpack;
