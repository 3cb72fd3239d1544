//! `partialImport` (and the import half of realm creation) with Keycloak's
//! `ifResourceExists` policies. Callers run it inside
//! [`Store::with_realm_tx`](super::Store::with_realm_tx), so a refused import
//! (FAIL on an existing resource, a dangling reference) leaves nothing behind.

use super::super::error::ApiError;
use super::super::model::{
    ClientRepresentation, GroupRepresentation, ImportAction, PartialImportRepresentation,
    PartialImportResults, Policy, ResourceType, RolesRepresentation, UserRepresentation,
};
use super::{Realm, new_id};

/// What to do with one incoming resource, given the id of an existing one.
fn decide(
    policy: Policy,
    existing: Option<String>,
    exists_message: impl FnOnce() -> String,
) -> Result<Option<(ImportAction, String)>, ApiError> {
    match (existing, policy) {
        (None, _) => Ok(None),
        (Some(_), Policy::Fail) => Err(ApiError::conflict(exists_message())),
        (Some(id), Policy::Skip) => Ok(Some((ImportAction::Skipped, id))),
        (Some(id), Policy::Overwrite) => Ok(Some((ImportAction::Overwritten, id))),
    }
}

impl Realm {
    pub(crate) fn partial_import(
        &mut self,
        rep: PartialImportRepresentation,
    ) -> Result<PartialImportResults, ApiError> {
        let policy = rep.if_resource_exists.or(rep.policy).unwrap_or_default();
        let mut results = PartialImportResults::default();
        self.import_clients(rep.clients.unwrap_or_default(), policy, &mut results)?;
        self.import_roles(rep.roles.unwrap_or_default(), policy, &mut results)?;
        self.import_groups(rep.groups.unwrap_or_default(), policy, &mut results)?;
        self.import_users(rep.users.unwrap_or_default(), policy, &mut results)?;
        Ok(results)
    }

    pub(crate) fn import_clients(
        &mut self,
        clients: Vec<ClientRepresentation>,
        policy: Policy,
        results: &mut PartialImportResults,
    ) -> Result<(), ApiError> {
        for mut client in clients {
            let client_id = client
                .client_id
                .clone()
                .ok_or_else(|| ApiError::bad_request("Client is missing its clientId"))?;
            let existing = self.client(&client_id).and_then(|c| c.id.clone());
            match decide(policy, existing, || {
                format!("Client '{client_id}' already exists")
            })? {
                Some((ImportAction::Skipped, id)) => {
                    results.push(ImportAction::Skipped, ResourceType::Client, &client_id, &id)
                }
                Some((action, id)) => {
                    client.id = Some(id.clone());
                    self.clients
                        .retain(|c| c.client_id.as_deref() != Some(client_id.as_str()));
                    self.clients.push(client);
                    results.push(action, ResourceType::Client, &client_id, &id);
                }
                None => {
                    let id = client
                        .id
                        .clone()
                        .filter(|id| self.clients.iter().all(|c| c.id.as_ref() != Some(id)))
                        .unwrap_or_else(new_id);
                    client.id = Some(id.clone());
                    self.clients.push(client);
                    results.push(ImportAction::Added, ResourceType::Client, &client_id, &id);
                }
            }
        }
        Ok(())
    }

    pub(crate) fn import_roles(
        &mut self,
        roles: RolesRepresentation,
        policy: Policy,
        results: &mut PartialImportResults,
    ) -> Result<(), ApiError> {
        for mut role in roles.realm.unwrap_or_default() {
            let name = role
                .name
                .clone()
                .ok_or_else(|| ApiError::bad_request("Realm role is missing its name"))?;
            let existing = self.role(&name).and_then(|r| r.id.clone());
            match decide(policy, existing, || {
                format!("Realm role '{name}' already exists.")
            })? {
                Some((ImportAction::Skipped, id)) => {
                    results.push(ImportAction::Skipped, ResourceType::RealmRole, &name, &id)
                }
                Some((action, id)) => {
                    role.id = Some(id.clone());
                    if let Some(slot) = self
                        .roles
                        .iter_mut()
                        .find(|r| r.name.as_deref() == Some(name.as_str()))
                    {
                        *slot = role;
                    }
                    results.push(action, ResourceType::RealmRole, &name, &id);
                }
                None => {
                    if role
                        .id
                        .as_ref()
                        .is_some_and(|id| self.roles.iter().any(|r| r.id.as_ref() == Some(id)))
                    {
                        role.id = None;
                    }
                    let id = self.push_role(role);
                    results.push(ImportAction::Added, ResourceType::RealmRole, &name, &id);
                }
            }
        }
        for (client_id, client_roles) in roles.client.unwrap_or_default() {
            if self.client(&client_id).is_none() {
                return Err(ApiError::bad_request(format!(
                    "Client '{client_id}' does not exist"
                )));
            }
            for mut role in client_roles {
                let name = role
                    .name
                    .clone()
                    .ok_or_else(|| ApiError::bad_request("Client role is missing its name"))?;
                let list = self.client_roles.entry(client_id.clone()).or_default();
                let existing = list
                    .iter()
                    .find(|r| r.name.as_deref() == Some(name.as_str()))
                    .and_then(|r| r.id.clone());
                match decide(policy, existing, || {
                    format!("Client role '{name}' for client '{client_id}' already exists.")
                })? {
                    Some((ImportAction::Skipped, id)) => {
                        results.push(ImportAction::Skipped, ResourceType::ClientRole, &name, &id)
                    }
                    Some((action, id)) => {
                        role.id = Some(id.clone());
                        list.retain(|r| r.name.as_deref() != Some(name.as_str()));
                        list.push(role);
                        results.push(action, ResourceType::ClientRole, &name, &id);
                    }
                    None => {
                        let id = new_id();
                        role.id = Some(id.clone());
                        list.push(role);
                        results.push(ImportAction::Added, ResourceType::ClientRole, &name, &id);
                    }
                }
            }
        }
        Ok(())
    }

    pub(crate) fn import_groups(
        &mut self,
        groups: Vec<GroupRepresentation>,
        policy: Policy,
        results: &mut PartialImportResults,
    ) -> Result<(), ApiError> {
        for rep in groups {
            let mut group = Self::group_from_rep(&rep)?;
            let name = group.name.clone();
            let existing = self
                .groups
                .iter()
                .find(|g| g.name == name)
                .map(|g| g.id.clone());
            match decide(policy, existing, || {
                format!("Group '{name}' already exists")
            })? {
                Some((ImportAction::Skipped, id)) => {
                    results.push(ImportAction::Skipped, ResourceType::Group, &name, &id)
                }
                Some((action, id)) => {
                    self.delete_group(&id)?;
                    self.fresh_ids(&mut group);
                    let new = group.id.clone();
                    self.groups.push(group);
                    results.push(action, ResourceType::Group, &name, &new);
                }
                None => {
                    self.fresh_ids(&mut group);
                    let id = group.id.clone();
                    self.groups.push(group);
                    results.push(ImportAction::Added, ResourceType::Group, &name, &id);
                }
            }
        }
        Ok(())
    }

    pub(crate) fn import_users(
        &mut self,
        users: Vec<UserRepresentation>,
        policy: Policy,
        results: &mut PartialImportResults,
    ) -> Result<(), ApiError> {
        for rep in users {
            let username = rep
                .username
                .as_deref()
                .map(str::to_lowercase)
                .ok_or_else(|| ApiError::bad_request("User is missing its username"))?;
            let existing = rep
                .id
                .as_deref()
                .and_then(|id| self.user(id).ok())
                .or_else(|| self.user_by_username(&username))
                .map(|u| u.id().to_owned());
            match decide(policy, existing, || {
                format!("User '{username}' already exists")
            })? {
                Some((ImportAction::Skipped, id)) => {
                    results.push(ImportAction::Skipped, ResourceType::User, &username, &id)
                }
                Some((action, id)) => {
                    self.delete_user(&id)?;
                    let new = self.insert_user(rep, true)?;
                    results.push(action, ResourceType::User, &username, &new);
                }
                None => {
                    let id = self.insert_user(rep, true)?;
                    results.push(ImportAction::Added, ResourceType::User, &username, &id);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::Store;
    use super::*;

    fn user(name: &str, groups: &[&str]) -> UserRepresentation {
        UserRepresentation {
            username: Some(name.to_owned()),
            groups: Some(groups.iter().map(|g| (*g).to_owned()).collect()),
            ..Default::default()
        }
    }

    fn store_with_realm() -> Result<Store, ApiError> {
        let mut store = Store::bootstrap("admin", "pw")?;
        store.create_realm(super::super::super::model::RealmRepresentation {
            realm: Some("r".into()),
            groups: Some(vec![GroupRepresentation {
                name: Some("g".into()),
                ..Default::default()
            }]),
            users: Some(vec![user("old", &["/g"])]),
            ..Default::default()
        })?;
        Ok(store)
    }

    #[test]
    fn a_refused_import_leaves_nothing_behind() -> Result<(), ApiError> {
        let mut store = store_with_realm()?;
        // `new` would be added before `dangling` fails on its missing group.
        let rep = PartialImportRepresentation {
            if_resource_exists: Some(Policy::Skip),
            users: Some(vec![user("new", &[]), user("dangling", &["/missing"])]),
            ..Default::default()
        };
        let err = store.with_realm_tx("r", |r| r.partial_import(rep)).err();
        assert_eq!(err.map(|e| e.status.as_u16()), Some(400));
        assert_eq!(store.realm("r")?.users.len(), 1);
        Ok(())
    }

    #[test]
    fn overwriting_a_group_drops_memberships_of_the_old_one() -> Result<(), ApiError> {
        let mut store = store_with_realm()?;
        let rep = PartialImportRepresentation {
            if_resource_exists: Some(Policy::Overwrite),
            groups: Some(vec![GroupRepresentation {
                name: Some("g".into()),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let results = store.with_realm_tx("r", |r| r.partial_import(rep))?;
        assert_eq!(results.overwritten, 1);
        let realm = store.realm("r")?;
        assert!(realm.users[0].group_ids.is_empty());
        Ok(())
    }
}
