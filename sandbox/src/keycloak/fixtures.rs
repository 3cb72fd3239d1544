//! In-process helpers for fixture code (build realms with users) and for
//! tests (snapshot what a realm holds). They take the same paths through the
//! store as the HTTP API, so the same rules apply.

use serde_json::json;

use super::error::Result;
use super::model::{
    Attributes, ClientRepresentation, GroupRepresentation, RealmRepresentation, RoleRepresentation,
    UserRepresentation,
};
use super::server::KeycloakServer;
use super::store::MASTER;

/// A user as a migration must carry it, comparable across servers (ids and
/// timestamps left out: they differ between two Keycloaks).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct UserSnapshot {
    pub username: String,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub enabled: bool,
    pub attributes: Attributes,
    /// Group paths, sorted.
    pub groups: Vec<String>,
    /// Realm role names, sorted.
    pub realm_roles: Vec<String>,
}

impl KeycloakServer {
    /// Creates an empty realm (with Keycloak's built-in roles and clients).
    pub fn create_realm(&self, name: &str) -> Result<()> {
        self.import_realm(RealmRepresentation {
            realm: Some(name.to_owned()),
            enabled: Some(true),
            ..Default::default()
        })
    }

    /// Creates a realm from a full representation, as `POST /admin/realms`.
    pub fn import_realm(&self, rep: RealmRepresentation) -> Result<()> {
        let name = rep.realm.clone().unwrap_or_default();
        self.shared
            .store()
            .create_realm(rep)
            .map(|_| ())
            .map_err(|e| e.into_error("create the realm", &name))
    }

    pub fn realm_names(&self) -> Vec<String> {
        self.shared
            .store()
            .realms()
            .iter()
            .map(|r| r.name.clone())
            .collect()
    }

    /// Adds a realm role if missing; returns its id.
    pub fn add_realm_role(&self, realm: &str, name: &str) -> Result<String> {
        let mut store = self.shared.store();
        let r = store
            .realm_mut(realm)
            .map_err(|e| e.into_error(format!("add role {name:?}"), realm))?;
        if let Some(id) = r.role(name).and_then(|role| role.id.clone()) {
            return Ok(id);
        }
        Ok(r.push_role(RoleRepresentation {
            name: Some(name.to_owned()),
            ..Default::default()
        }))
    }

    /// Adds the group at `path` (`/a/b`), with any missing parents; returns
    /// its id.
    pub fn add_group(&self, realm: &str, path: &str) -> Result<String> {
        let mut store = self.shared.store();
        let action = || format!("add group {path:?}");
        let r = store
            .realm_mut(realm)
            .map_err(|e| e.into_error(action(), realm))?;
        let mut parent: Option<String> = None;
        let mut so_far = String::new();
        for name in path.split('/').filter(|s| !s.is_empty()) {
            so_far = format!("{so_far}/{name}");
            let id = match r.group_id_by_path(&so_far) {
                Some(id) => id,
                None => {
                    let rep = GroupRepresentation {
                        name: Some(name.to_owned()),
                        ..Default::default()
                    };
                    r.create_group(parent.as_deref(), &rep)
                        .map_err(|e| e.into_error(action(), realm))?
                }
            };
            parent = Some(id);
        }
        parent.ok_or_else(|| {
            super::error::ApiError::bad_request("Group path is empty").into_error(action(), realm)
        })
    }

    /// Adds a user; `groups` (paths) and `realm_roles` in the representation
    /// are honoured and must exist. The realm's default role is granted too,
    /// as for a user created through the console. Returns the user's id.
    pub fn add_user(&self, realm: &str, rep: UserRepresentation) -> Result<String> {
        let username = rep.username.clone().unwrap_or_default();
        let action = format!("add user {username:?}");
        self.shared
            .store()
            .with_realm_tx(realm, |r| {
                let id = r.insert_user(rep, true)?;
                let default_role = r.default_role_name();
                if r.role(&default_role).is_some() {
                    let user = r.user_mut(&id)?;
                    if !user.realm_roles.contains(&default_role) {
                        user.realm_roles.push(default_role);
                    }
                }
                Ok(id)
            })
            .map_err(|e| e.into_error(action, realm))
    }

    /// Registers a confidential master-realm client with a service account
    /// that may use the admin API (the `client_credentials` grant).
    pub fn register_service_account(&self, client_id: &str, secret: &str) -> Result<()> {
        let client = ClientRepresentation {
            client_id: Some(client_id.to_owned()),
            secret: Some(secret.to_owned()),
            public_client: Some(false),
            service_accounts_enabled: Some(true),
            extra: json!({"enabled": true, "protocol": "openid-connect"})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            ..Default::default()
        };
        self.shared
            .store()
            .with_realm_tx(MASTER, |r| {
                let mut results = Default::default();
                r.import_clients(vec![client], super::model::Policy::Overwrite, &mut results)
            })
            .map_err(|e| e.into_error(format!("register service account {client_id:?}"), MASTER))
    }

    /// Every user of `realm` with groups and realm roles, sorted by username.
    pub fn users(&self, realm: &str) -> Result<Vec<UserSnapshot>> {
        let store = self.shared.store();
        let r = store
            .realm(realm)
            .map_err(|e| e.into_error("list users", realm))?;
        let mut out: Vec<UserSnapshot> = r
            .users
            .iter()
            .map(|u| {
                let mut groups: Vec<String> =
                    u.group_ids.iter().filter_map(|g| r.group_path(g)).collect();
                groups.sort();
                let mut realm_roles = u.realm_roles.clone();
                realm_roles.sort();
                UserSnapshot {
                    username: u.username().to_owned(),
                    email: u.rep.email.clone(),
                    first_name: u.rep.first_name.clone(),
                    last_name: u.rep.last_name.clone(),
                    enabled: u.rep.enabled.unwrap_or(false),
                    attributes: u.rep.attributes.clone().unwrap_or_default(),
                    groups,
                    realm_roles,
                }
            })
            .collect();
        out.sort();
        Ok(out)
    }
}
