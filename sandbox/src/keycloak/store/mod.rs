//! The Keycloak sandbox's state: realms with their users, groups, realm
//! roles and clients, held in memory behind one lock. Operations here speak
//! Keycloak's semantics and return [`ApiError`]s shaped as Keycloak answers.

pub(crate) mod credentials;
mod export;
mod groups;
mod import;
mod realms;
mod roles;
mod users;

use std::collections::BTreeMap;

use serde_json::Map;

use super::error::ApiError;
use super::model::{
    Attributes, ClientRepresentation, CredentialRepresentation, RealmRepresentation,
    RoleRepresentation, UserRepresentation,
};

pub(crate) use realms::{ADMIN_ROLE, MASTER};
pub(crate) use users::UserQuery;

#[derive(Debug, Default)]
pub(crate) struct Store {
    /// In creation order, `master` first, as Keycloak lists them.
    realms: Vec<Realm>,
}

#[derive(Debug, Clone)]
pub(crate) struct Realm {
    pub id: String,
    pub name: String,
    /// Top-level settings as last written; users, groups, roles and clients
    /// live in the fields below instead.
    pub settings: RealmRepresentation,
    pub users: Vec<StoredUser>,
    pub groups: Vec<Group>,
    pub roles: Vec<RoleRepresentation>,
    pub clients: Vec<ClientRepresentation>,
    /// Client roles by `clientId`.
    pub client_roles: BTreeMap<String, Vec<RoleRepresentation>>,
}

#[derive(Debug, Clone)]
pub(crate) struct StoredUser {
    /// The representation with `id`, `username` and `createdTimestamp` set;
    /// groups, role mappings and credentials are kept apart.
    pub rep: UserRepresentation,
    pub credentials: Vec<CredentialRepresentation>,
    pub group_ids: Vec<String>,
    pub realm_roles: Vec<String>,
}

impl StoredUser {
    pub fn id(&self) -> &str {
        self.rep.id.as_deref().unwrap_or_default()
    }

    pub fn username(&self) -> &str {
        self.rep.username.as_deref().unwrap_or_default()
    }

    /// Whether `password` matches the user's password hash.
    pub fn password_matches(&self, password: &str) -> bool {
        self.credentials
            .iter()
            .any(|c| credentials::matches(c, password))
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Group {
    pub id: String,
    pub name: String,
    pub attributes: Attributes,
    pub realm_roles: Vec<String>,
    pub client_roles: BTreeMap<String, Vec<String>>,
    pub extra: Map<String, serde_json::Value>,
    pub children: Vec<Group>,
}

pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub(crate) fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Store {
    pub fn realms(&self) -> &[Realm] {
        &self.realms
    }

    pub fn realm(&self, name: &str) -> Result<&Realm, ApiError> {
        self.realms
            .iter()
            .find(|r| r.name == name)
            .ok_or_else(ApiError::realm_not_found)
    }

    pub fn realm_mut(&mut self, name: &str) -> Result<&mut Realm, ApiError> {
        self.realms
            .iter_mut()
            .find(|r| r.name == name)
            .ok_or_else(ApiError::realm_not_found)
    }

    /// Runs `f` on a copy of the realm and keeps the copy only if `f`
    /// succeeds, so a refused multi-resource change leaves nothing behind.
    pub fn with_realm_tx<T>(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut Realm) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let slot = self
            .realms
            .iter_mut()
            .find(|r| r.name == name)
            .ok_or_else(ApiError::realm_not_found)?;
        let mut work = slot.clone();
        let out = f(&mut work)?;
        *slot = work;
        Ok(out)
    }
}
