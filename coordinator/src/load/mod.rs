//! Loads: a client streams CSV files for a cluster's database; the agent of
//! that cluster pulls them through the coordinator and loads them, all or
//! nothing (the contract: `proto/ferry/v1/load.proto`).
//!
//! The coordinator records each load (id → status) and each attempt's
//! command; the database's own ledger, written in the load's transaction,
//! is what makes a load happen once whatever crashes.
mod api;
mod hub;
mod spec;

pub use api::LoadsApi;
pub use hub::{LoadDataService, LoadHub};
