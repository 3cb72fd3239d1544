//! A Keycloak-admin-API-compatible server on loopback, in process: the
//! subset Ferry uses (admin token from `master`, realms, `partial-export`,
//! `partialImport` with FAIL/SKIP/OVERWRITE, users with attributes, groups and
//! realm-role mappings), with Keycloak's paths, JSON shapes and status codes,
//! so that an admin client (the `keycloak` crate, `kcadm`-style scripts, curl)
//! can be pointed at [`KeycloakServer::base_url`].

mod api;
mod error;
mod fixtures;
pub mod model;
mod server;
mod shared;
mod store;
mod tokens;

pub use error::{Error, Result};
pub use fixtures::UserSnapshot;
pub use server::{KeycloakConfig, KeycloakServer};
pub use tokens::DEFAULT_ACCESS_LIFESPAN;
