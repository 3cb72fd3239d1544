//! Realm roles and the realm-role mappings of users.

use super::super::error::ApiError;
use super::super::model::RoleRepresentation;
use super::{Realm, new_id};

impl Realm {
    pub(crate) fn role(&self, name: &str) -> Option<&RoleRepresentation> {
        self.roles.iter().find(|r| r.name.as_deref() == Some(name))
    }

    /// A role named by a client: Keycloak accepts a name, an id, or both.
    fn resolve_role(&self, wanted: &RoleRepresentation) -> Result<String, ApiError> {
        self.roles
            .iter()
            .find(|r| match (&wanted.id, &wanted.name) {
                (Some(id), _) if r.id.as_ref() == Some(id) => true,
                (_, Some(name)) => r.name.as_ref() == Some(name),
                _ => false,
            })
            .and_then(|r| r.name.clone())
            .ok_or_else(ApiError::role_not_found)
    }

    /// Stores a role with an id (kept if given) and returns the id.
    pub(crate) fn push_role(&mut self, mut rep: RoleRepresentation) -> String {
        let id = rep.id.clone().unwrap_or_else(new_id);
        rep.id = Some(id.clone());
        rep.client_role = None;
        rep.container_id = None;
        self.roles.push(rep);
        id
    }

    /// As Keycloak answers: with `composite`, `clientRole` and `containerId`.
    pub(crate) fn role_rep(&self, role: &RoleRepresentation) -> RoleRepresentation {
        let mut rep = role.clone();
        rep.composite = Some(rep.composite.unwrap_or(false));
        rep.client_role = Some(false);
        rep.container_id = Some(self.id.clone());
        rep
    }

    pub(crate) fn list_roles(
        &self,
        search: Option<&str>,
        first: usize,
        max: usize,
    ) -> Vec<RoleRepresentation> {
        let needle = search.map(str::to_lowercase);
        self.roles
            .iter()
            .filter(|r| match &needle {
                Some(n) => r
                    .name
                    .as_deref()
                    .unwrap_or_default()
                    .to_lowercase()
                    .contains(n),
                None => true,
            })
            .skip(first)
            .take(max)
            .map(|r| self.role_rep(r))
            .collect()
    }

    /// `POST /admin/realms/{realm}/roles`.
    pub(crate) fn create_role(&mut self, rep: RoleRepresentation) -> Result<String, ApiError> {
        let name = rep
            .name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| ApiError::bad_request("Role name cannot be empty"))?;
        if self.role(&name).is_some() {
            return Err(ApiError::conflict(format!(
                "Role with name {name} already exists"
            )));
        }
        self.push_role(rep);
        Ok(name)
    }

    pub(crate) fn user_realm_roles(
        &self,
        user_id: &str,
    ) -> Result<Vec<RoleRepresentation>, ApiError> {
        let user = self.user(user_id)?;
        Ok(user
            .realm_roles
            .iter()
            .filter_map(|name| self.role(name))
            .map(|r| self.role_rep(r))
            .collect())
    }

    pub(crate) fn add_user_realm_roles(
        &mut self,
        user_id: &str,
        roles: &[RoleRepresentation],
    ) -> Result<(), ApiError> {
        let names = roles
            .iter()
            .map(|r| self.resolve_role(r))
            .collect::<Result<Vec<_>, _>>()?;
        let user = self.user_mut(user_id)?;
        for name in names {
            if !user.realm_roles.contains(&name) {
                user.realm_roles.push(name);
            }
        }
        Ok(())
    }

    pub(crate) fn remove_user_realm_roles(
        &mut self,
        user_id: &str,
        roles: &[RoleRepresentation],
    ) -> Result<(), ApiError> {
        let names = roles
            .iter()
            .map(|r| self.resolve_role(r))
            .collect::<Result<Vec<_>, _>>()?;
        let user = self.user_mut(user_id)?;
        user.realm_roles.retain(|r| !names.contains(r));
        Ok(())
    }
}
