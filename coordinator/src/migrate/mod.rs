//! Migrations: a registry moved from one cluster to another as a plan of
//! steps, run by [`Engine`] and served by [`MigrationsApi`].
mod api;
mod engine;
pub mod plan;
mod preflight;
pub mod verify;

pub use api::MigrationsApi;
pub use engine::{Engine, is_terminal};
