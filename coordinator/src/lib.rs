//! The Ferry coordinator: holds the agents' sessions, serves the client API,
//! keeps durable state, and (later) orchestrates migrations and relays data.
#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod background;
pub mod call;
pub mod changes;
pub mod config;
pub mod error;
pub mod fleet;
pub mod lease;
pub mod link;
pub mod load;
pub mod metrics;
pub mod migrate;
pub mod relay;
pub mod replica;
pub mod seam;
pub mod server;
pub mod store;

pub use config::CoordinatorConfig;
pub use error::{Error, Result};
pub use server::{RunningCoordinator, start};
