//! `partial-export`: the realm's settings with, on request, its groups and
//! roles and its clients. Like Keycloak, never its users, and client secrets
//! masked.

use std::collections::BTreeMap;

use super::super::model::{RealmRepresentation, RolesRepresentation};
use super::Realm;

/// What Keycloak puts in place of a client secret in an export.
const MASKED_SECRET: &str = "**********";

impl Realm {
    pub(crate) fn partial_export(
        &self,
        clients: bool,
        groups_and_roles: bool,
    ) -> RealmRepresentation {
        let mut rep = self.settings_rep();
        if groups_and_roles {
            rep.groups = Some(
                self.groups
                    .iter()
                    .map(|g| self.group_rep(g, &format!("/{}", g.name), None, true, true))
                    .collect(),
            );
            let client_roles: BTreeMap<_, _> = self
                .clients
                .iter()
                .filter_map(|c| c.client_id.clone())
                .map(|cid| {
                    let roles = self.client_roles.get(&cid).cloned().unwrap_or_default();
                    (cid, roles)
                })
                .collect();
            rep.roles = Some(RolesRepresentation {
                realm: Some(self.roles.iter().map(|r| self.role_rep(r)).collect()),
                client: Some(client_roles),
                ..Default::default()
            });
        }
        if clients {
            rep.clients = Some(
                self.clients
                    .iter()
                    .cloned()
                    .map(|mut c| {
                        if c.secret.is_some() {
                            c.secret = Some(MASKED_SECRET.to_owned());
                        }
                        c
                    })
                    .collect(),
            );
        }
        rep
    }
}

impl Realm {
    /// What Keycloak's own export (`kc.sh export --users realm_file`, run
    /// against its database) writes for the realm: the realm with every
    /// user, each with group paths, realm roles and stored credentials —
    /// password hashes included, which the Admin API never shows.
    pub(crate) fn full_export(&self) -> RealmRepresentation {
        let mut rep = self.partial_export(true, true);
        let users = self
            .users
            .iter()
            .map(|u| {
                let mut user = self.user_rep(u, false);
                user.extra.remove("access");
                user.credentials = Some(u.credentials.clone());
                user.groups = Some(
                    u.group_ids
                        .iter()
                        .filter_map(|g| self.group_path(g))
                        .collect(),
                );
                user.realm_roles = Some(u.realm_roles.clone());
                user
            })
            .collect();
        rep.users = Some(users);
        rep
    }
}
