//! Migrations: a registry moved from one cluster to another as a plan of
//! steps, run by [`Engine`] and served by [`MigrationsApi`].
//!
//! Layers, each knowing only those below it: `request` (what a client asks,
//! validated) and `plan` (the steps, as data); `journal` (the record, its
//! events, the audit log); `lifecycle` (transitions as pure functions over
//! the record); `steps` (an executor per step); `driver` (the loop per
//! migration); `engine` (the face the API calls).
mod api;
mod driver;
mod engine;
mod journal;
mod lifecycle;
pub mod plan;
mod preflight;
mod refs;
mod request;
mod steps;
pub mod verify;

pub use api::MigrationsApi;
pub use engine::Engine;
pub use refs::{Actor, StepRef, parse_refs};
pub use request::{MigrationRequest, Mode};

/// Who the fleet records as submitting a migration's commands.
pub const SUBMITTER: &str = "ferry-migrations";

/// Whether a migration in this state (as it travels) has ended.
pub fn is_terminal(state: i32) -> bool {
    ferry_common::pb::MigrationState::try_from(state).is_ok_and(lifecycle::is_terminal)
}
