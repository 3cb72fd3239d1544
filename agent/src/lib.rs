//! The Ferry agent: runs inside one cluster, dials out to the coordinator,
//! executes the commands it receives, once each, and reports results.
#![forbid(unsafe_code)]

pub mod config;
pub mod error;
pub mod exec;
pub mod facts;
pub mod keycloak;
pub mod ledger;
pub mod load;
pub mod load_exec;
pub mod metrics;
pub mod migrate;
pub mod objects;
pub mod platform;
pub mod progress;
pub mod relay;
pub mod session;
pub mod velero;
pub mod volume_digest;

pub use config::AgentConfig;
pub use error::{Error, Result};
pub use session::run;
