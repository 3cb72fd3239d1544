//! The central Keycloak through its Admin REST API: export a registry's
//! realm with its users on the source, import it with the SKIP strategy on
//! the target (realm first, then users).
//!
//! Password hashes come from Keycloak's own export, which the agent runs
//! through an operator-given command (`credentials.rs`): the Admin API
//! never returns them.
//!
//! Built on the `keycloak` crate (typed representations and calls, generated
//! from Keycloak's own OpenAPI) over `reqwest` with rustls. Two calls go
//! around it: `partialImport`, whose typed body in the crate has no
//! `ifResourceExists` field, and the reachability ping.

mod client;
mod credentials;
mod error;
mod export;
mod import;
mod ping;
mod token;

pub use client::{AdminClient, AdminCredentials};
pub use credentials::{ExportCommand, RealmCredentials};
pub use error::{AdminError, Result};
pub use export::RealmExport;
pub use import::ImportSummary;
pub use ping::ping;

/// The realms a registry `<reg>` owns on the central Keycloak.
pub fn registry_realms(registry: &str) -> [String; 4] {
    [
        "admin",
        "citizen-portal",
        "external-system",
        "officer-portal",
    ]
    .map(|suffix| format!("{registry}-{suffix}"))
}
