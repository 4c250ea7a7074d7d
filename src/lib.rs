//! syn: the Synapse service tier (cortex, axon, cryotank) as a systemd-native appliance.
//!
//! One library crate with a module per concern; the `syn` binary is a thin CLI over it.

pub mod axon;
pub mod backup;
pub mod cell;
pub mod certs;
pub mod cli;
pub mod clock;
pub mod cortex;
pub mod cryotank;
pub mod error;
pub mod guid;
pub mod migrate;
pub mod msgpack;
pub mod runbook;
pub mod storage;
pub mod telepath;
