//! Realm lifecycle: creation (a full import, as `POST /admin/realms` is),
//! top-level settings, deletion, and the defaults Keycloak gives every realm.

use std::collections::BTreeMap;

use serde_json::json;

use super::super::error::ApiError;
use super::super::model::{
    ClientRepresentation, CredentialRepresentation, Policy, RealmRepresentation,
    RoleRepresentation, UserRepresentation,
};
use super::{Realm, Store, new_id};

/// Realm roles every new realm gets; `default-roles-<realm>` joins them.
const DEFAULT_REALM_ROLES: [&str; 2] = ["offline_access", "uma_authorization"];

/// Clients every new realm gets (a subset of Keycloak's built-ins).
const DEFAULT_CLIENTS: [(&str, bool); 6] = [
    ("account", true),
    ("account-console", true),
    ("admin-cli", true),
    ("broker", false),
    ("realm-management", false),
    ("security-admin-console", true),
];

pub(crate) const MASTER: &str = "master";

/// The master realm's role that grants the admin API.
pub(crate) const ADMIN_ROLE: &str = "admin";

impl Store {
    /// The state Keycloak starts with: a master realm whose admin user holds
    /// the given password.
    pub fn bootstrap(admin_user: &str, admin_password: &str) -> Result<Self, ApiError> {
        let mut store = Store::default();
        let roles = RoleRepresentation {
            name: Some(ADMIN_ROLE.to_owned()),
            description: Some("${role_admin}".to_owned()),
            ..Default::default()
        };
        let admin = UserRepresentation {
            username: Some(admin_user.to_owned()),
            enabled: Some(true),
            realm_roles: Some(vec![
                ADMIN_ROLE.to_owned(),
                format!("default-roles-{MASTER}"),
            ]),
            credentials: Some(vec![CredentialRepresentation {
                type_: Some("password".to_owned()),
                value: Some(admin_password.to_owned()),
                ..Default::default()
            }]),
            ..Default::default()
        };
        store.create_realm(RealmRepresentation {
            realm: Some(MASTER.to_owned()),
            enabled: Some(true),
            roles: Some(super::super::model::RolesRepresentation {
                realm: Some(vec![roles]),
                ..Default::default()
            }),
            users: Some(vec![admin]),
            ..Default::default()
        })?;
        Ok(store)
    }

    /// `POST /admin/realms`: creates the realm with everything its
    /// representation carries (roles, clients, groups, users).
    pub fn create_realm(&mut self, mut rep: RealmRepresentation) -> Result<String, ApiError> {
        let name = rep
            .realm
            .clone()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| ApiError::bad_request("Realm name cannot be empty"))?;
        let id = rep.id.clone().unwrap_or_else(new_id);
        if self.realms.iter().any(|r| r.name == name || r.id == id) {
            return Err(ApiError::conflict(
                "Conflict detected. See logs for details",
            ));
        }
        let users = rep.users.take().unwrap_or_default();
        let groups = rep.groups.take().unwrap_or_default();
        let roles = rep.roles.take().unwrap_or_default();
        let clients = rep.clients.take().unwrap_or_default();
        rep.id = Some(id.clone());
        rep.enabled = rep.enabled.or(Some(true));
        let mut realm = Realm {
            id: id.clone(),
            name: name.clone(),
            settings: rep,
            users: Vec::new(),
            groups: Vec::new(),
            roles: Vec::new(),
            clients: Vec::new(),
            client_roles: BTreeMap::new(),
        };
        let mut results = Default::default();
        realm.import_clients(clients, Policy::Fail, &mut results)?;
        realm.import_roles(roles, Policy::Fail, &mut results)?;
        realm.add_defaults();
        realm.import_groups(groups, Policy::Fail, &mut results)?;
        realm.import_users(users, Policy::Fail, &mut results)?;
        self.realms.push(realm);
        Ok(id)
    }

    pub fn delete_realm(&mut self, name: &str) -> Result<(), ApiError> {
        if name == MASTER {
            return Err(ApiError::bad_request("Can't delete master realm"));
        }
        let before = self.realms.len();
        self.realms.retain(|r| r.name != name);
        if self.realms.len() == before {
            return Err(ApiError::realm_not_found());
        }
        Ok(())
    }

    /// `PUT /admin/realms/{realm}`: top-level settings only; users, roles,
    /// groups and clients in the body are ignored, as Keycloak does.
    pub fn update_realm(
        &mut self,
        name: &str,
        mut rep: RealmRepresentation,
    ) -> Result<(), ApiError> {
        let new_name = rep.realm.clone().unwrap_or_else(|| name.to_owned());
        if new_name != name && self.realms.iter().any(|r| r.name == new_name) {
            return Err(ApiError::conflict("Realm with same name exists"));
        }
        let realm = self.realm_mut(name)?;
        rep.users = None;
        rep.groups = None;
        rep.roles = None;
        rep.clients = None;
        let settings = &mut realm.settings;
        settings.realm = Some(new_name.clone());
        if rep.enabled.is_some() {
            settings.enabled = rep.enabled;
        }
        if rep.default_role.is_some() {
            settings.default_role = rep.default_role;
        }
        for (k, v) in rep.extra {
            settings.extra.insert(k, v);
        }
        realm.name = new_name;
        Ok(())
    }
}

impl Realm {
    /// Adds Keycloak's built-in roles and clients that the realm lacks.
    pub(crate) fn add_defaults(&mut self) {
        let default_role = format!("default-roles-{}", self.name);
        for name in DEFAULT_REALM_ROLES {
            if self.role(name).is_none() {
                self.push_role(RoleRepresentation {
                    name: Some(name.to_owned()),
                    description: Some(format!("${{role_{name}}}")),
                    ..Default::default()
                });
            }
        }
        if self.role(&default_role).is_none() {
            self.push_role(RoleRepresentation {
                name: Some(default_role.clone()),
                description: Some("${role_default-roles}".to_owned()),
                composite: Some(true),
                extra: json!({"composites": {"realm": DEFAULT_REALM_ROLES}})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
                ..Default::default()
            });
        }
        if self.settings.default_role.is_none() {
            self.settings.default_role = self.role(&default_role).map(|r| self.role_rep(r));
        }
        for (client_id, public) in DEFAULT_CLIENTS {
            if self.client(client_id).is_none() {
                self.clients.push(ClientRepresentation {
                    id: Some(new_id()),
                    client_id: Some(client_id.to_owned()),
                    public_client: Some(public),
                    extra: json!({"enabled": true, "protocol": "openid-connect"})
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                    ..Default::default()
                });
            }
        }
    }

    /// The realm's name of its default composite role.
    pub(crate) fn default_role_name(&self) -> String {
        self.settings
            .default_role
            .as_ref()
            .and_then(|r| r.name.clone())
            .unwrap_or_else(|| format!("default-roles-{}", self.name))
    }

    pub(crate) fn client(&self, client_id: &str) -> Option<&ClientRepresentation> {
        self.clients
            .iter()
            .find(|c| c.client_id.as_deref() == Some(client_id))
    }

    /// `GET /admin/realms/{realm}`: settings without the nested resources.
    pub(crate) fn settings_rep(&self) -> RealmRepresentation {
        let mut rep = self.settings.clone();
        rep.id = Some(self.id.clone());
        rep.realm = Some(self.name.clone());
        rep
    }

    pub(crate) fn brief_rep(&self) -> RealmRepresentation {
        RealmRepresentation {
            id: Some(self.id.clone()),
            realm: Some(self.name.clone()),
            enabled: self.settings.enabled,
            ..Default::default()
        }
    }
}
