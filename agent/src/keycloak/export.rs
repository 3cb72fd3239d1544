//! Export: the realm's partial export (settings, groups, roles, clients)
//! plus every user with attributes, group paths and role mappings, which
//! partial export leaves out.

use std::collections::HashMap;

use keycloak::types::{RealmRepresentation, UserRepresentation};
use serde::{Deserialize, Serialize};

use super::client::AdminClient;
use super::error::{AdminError, Result};

/// Users fetched per request.
const PAGE: i32 = 200;

/// One realm with its users, as carried from source to target. Its users
/// may hold password hashes: `Debug` shows counts, never them.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RealmExport {
    pub realm: String,
    /// Keycloak's partial export. Client secrets in it are masked by
    /// Keycloak; the registry's keycloak-operator sets them again.
    pub representation: RealmRepresentation,
    /// Sorted by username; each with `groups` (paths), `realmRoles` and
    /// `clientRoles` filled in, ready for `partialImport`.
    pub users: Vec<UserRepresentation>,
}

impl std::fmt::Debug for RealmExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let with_credentials = self
            .users
            .iter()
            .filter(|u| u.credentials.as_ref().is_some_and(|c| !c.is_empty()))
            .count();
        f.debug_struct("RealmExport")
            .field("realm", &self.realm)
            .field("users", &self.users.len())
            .field("users_with_credentials", &with_credentials)
            .finish_non_exhaustive()
    }
}

impl AdminClient {
    /// Exports `realm` and all its users.
    pub async fn export_realm(&self, realm: &str) -> Result<RealmExport> {
        let mut representation = self
            .api()
            .realm_partial_export_post(realm, Some(true), Some(true))
            .await
            .map_err(|e| AdminError::from_keycloak("export the realm", realm, e))?;
        // Users travel separately, always complete.
        representation.users = None;
        let mut users = self.all_users(realm).await?;
        for user in &mut users {
            self.complete_user(realm, user).await?;
        }
        users.sort_by(|a, b| a.username.cmp(&b.username));
        tracing::info!(realm, users = users.len(), "exported realm");
        Ok(RealmExport {
            realm: realm.into(),
            representation,
            users,
        })
    }

    async fn all_users(&self, realm: &str) -> Result<Vec<UserRepresentation>> {
        let mut users = Vec::new();
        let mut first = 0;
        loop {
            let page = self
                .api()
                .realm_users_get(
                    realm,
                    Some(false),
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    Some(first),
                    None,
                    None,
                    None,
                    None,
                    Some(PAGE),
                    None,
                    None,
                    None,
                )
                .await
                .map_err(|e| {
                    AdminError::from_keycloak(format!("list users from {first}"), realm, e)
                })?;
            let len = page.len();
            users.extend(page);
            if len < PAGE as usize {
                return Ok(users);
            }
            first += PAGE;
        }
    }

    /// Adds group paths and role mappings, which `GET users` does not give.
    async fn complete_user(&self, realm: &str, user: &mut UserRepresentation) -> Result<()> {
        let username = user.username.clone().unwrap_or_default();
        let Some(id) = user.id.clone() else {
            return Err(AdminError::Malformed {
                realm: realm.into(),
                what: format!("user {username:?} without an id"),
            });
        };
        let mut groups = Vec::new();
        let mut first = 0;
        loop {
            let page = self
                .api()
                .realm_users_with_user_id_groups_get(
                    realm,
                    &id,
                    Some(false),
                    Some(first),
                    Some(PAGE),
                    None,
                )
                .await
                .map_err(|e| {
                    AdminError::from_keycloak(
                        format!("read the groups of user {username}"),
                        realm,
                        e,
                    )
                })?;
            let len = page.len();
            groups.extend(page.into_iter().filter_map(|g| g.path));
            if len < PAGE as usize {
                break;
            }
            first += PAGE;
        }
        groups.sort();
        let mappings = self
            .api()
            .realm_users_with_user_id_role_mappings_get(realm, &id)
            .await
            .map_err(|e| {
                AdminError::from_keycloak(
                    format!("read the role mappings of user {username}"),
                    realm,
                    e,
                )
            })?;
        let mut realm_roles: Vec<String> = mappings
            .realm_mappings
            .unwrap_or_default()
            .into_iter()
            .filter_map(|r| r.name)
            .collect();
        realm_roles.sort();
        let client_roles: HashMap<String, Vec<String>> = mappings
            .client_mappings
            .unwrap_or_default()
            .into_iter()
            .map(|(client, m)| {
                let mut names: Vec<String> = m
                    .mappings
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|r| r.name)
                    .collect();
                names.sort();
                (client, names)
            })
            .filter(|(_, names)| !names.is_empty())
            .collect();
        user.groups = Some(groups);
        user.realm_roles = Some(realm_roles);
        user.client_roles = (!client_roles.is_empty()).then_some(client_roles);
        // Admin-console permissions of the exporting admin, not the user's.
        user.access = None;
        Ok(())
    }
}

impl RealmExport {
    /// JSON bytes, the form the export travels in (relay, object storage).
    pub fn to_json(&self) -> serde_json::Result<Vec<u8>> {
        serde_json::to_vec(self)
    }

    pub fn from_json(bytes: &[u8]) -> serde_json::Result<Self> {
        serde_json::from_slice(bytes)
    }
}
