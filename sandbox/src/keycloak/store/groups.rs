//! The group tree and users' memberships. Paths are `/parent/child`, as
//! Keycloak names groups in user representations and exports.

use super::super::error::ApiError;
use super::super::model::GroupRepresentation;
use super::{Group, Realm, new_id};

/// Every group with its path, depth first, parents before children.
fn walk<'a>(
    groups: &'a [Group],
    parent: &str,
    out: &mut Vec<(String, Option<&'a str>, &'a Group)>,
    parent_id: Option<&'a str>,
) {
    for g in groups {
        let path = format!("{parent}/{}", g.name);
        out.push((path.clone(), parent_id, g));
        walk(&g.children, &path, out, Some(&g.id));
    }
}

fn find_mut<'a>(groups: &'a mut [Group], id: &str) -> Option<&'a mut Group> {
    for g in groups {
        if g.id == id {
            return Some(g);
        }
        if let Some(found) = find_mut(&mut g.children, id) {
            return Some(found);
        }
    }
    None
}

/// Removes the group `id` wherever it is; returns the ids of it and its
/// descendants.
fn remove(groups: &mut Vec<Group>, id: &str) -> Option<Vec<String>> {
    if let Some(pos) = groups.iter().position(|g| g.id == id) {
        let g = groups.remove(pos);
        let mut ids = Vec::new();
        let mut flat = Vec::new();
        walk(std::slice::from_ref(&g), "", &mut flat, None);
        ids.extend(flat.into_iter().map(|(_, _, g)| g.id.clone()));
        return Some(ids);
    }
    groups.iter_mut().find_map(|g| remove(&mut g.children, id))
}

impl Realm {
    pub(crate) fn flat_groups(&self) -> Vec<(String, Option<&str>, &Group)> {
        let mut out = Vec::new();
        walk(&self.groups, "", &mut out, None);
        out
    }

    pub(crate) fn group_path(&self, id: &str) -> Option<String> {
        self.flat_groups()
            .into_iter()
            .find(|(_, _, g)| g.id == id)
            .map(|(p, _, _)| p)
    }

    pub(crate) fn group_id_by_path(&self, path: &str) -> Option<String> {
        let wanted = if path.starts_with('/') {
            path.to_owned()
        } else {
            format!("/{path}")
        };
        self.flat_groups()
            .into_iter()
            .find(|(p, _, _)| *p == wanted)
            .map(|(_, _, g)| g.id.clone())
    }

    /// A group as Keycloak shows it; `full` adds attributes and role mappings,
    /// `children` nests the subtree (as in exports).
    pub(crate) fn group_rep(
        &self,
        g: &Group,
        path: &str,
        parent_id: Option<&str>,
        full: bool,
        children: bool,
    ) -> GroupRepresentation {
        let sub_groups = if children {
            g.children
                .iter()
                .map(|c| self.group_rep(c, &format!("{path}/{}", c.name), Some(&g.id), full, true))
                .collect()
        } else {
            Vec::new()
        };
        GroupRepresentation {
            id: Some(g.id.clone()),
            name: Some(g.name.clone()),
            path: Some(path.to_owned()),
            parent_id: parent_id.map(str::to_owned),
            sub_group_count: Some(i64::try_from(g.children.len()).unwrap_or(i64::MAX)),
            sub_groups: Some(sub_groups),
            attributes: full.then(|| g.attributes.clone()),
            realm_roles: full.then(|| g.realm_roles.clone()),
            client_roles: full.then(|| g.client_roles.clone()),
            extra: if full {
                g.extra.clone()
            } else {
                Default::default()
            },
        }
    }

    pub(crate) fn group_rep_by_id(
        &self,
        id: &str,
        full: bool,
    ) -> Result<GroupRepresentation, ApiError> {
        self.flat_groups()
            .into_iter()
            .find(|(_, _, g)| g.id == id)
            .map(|(path, parent, g)| self.group_rep(g, &path, parent, full, true))
            .ok_or_else(ApiError::group_not_found)
    }

    /// `GET /groups`: top-level groups, filtered by a name substring found
    /// anywhere in their subtree.
    pub(crate) fn list_groups(
        &self,
        search: Option<&str>,
        first: usize,
        max: usize,
        full: bool,
    ) -> Vec<GroupRepresentation> {
        let needle = search.map(str::to_lowercase);
        let matches = |g: &Group| -> bool {
            let Some(n) = &needle else { return true };
            let mut flat = Vec::new();
            walk(std::slice::from_ref(g), "", &mut flat, None);
            flat.iter()
                .any(|(_, _, g)| g.name.to_lowercase().contains(n))
        };
        self.groups
            .iter()
            .filter(|g| matches(g))
            .skip(first)
            .take(max)
            .map(|g| self.group_rep(g, &format!("/{}", g.name), None, full, true))
            .collect()
    }

    pub(crate) fn group_from_rep(rep: &GroupRepresentation) -> Result<Group, ApiError> {
        let name = rep
            .name
            .clone()
            .filter(|n| !n.trim().is_empty())
            .ok_or_else(|| ApiError::bad_request("Group name is missing"))?;
        let children = rep
            .sub_groups
            .iter()
            .flatten()
            .map(Self::group_from_rep)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Group {
            id: rep.id.clone().unwrap_or_else(new_id),
            name,
            attributes: rep.attributes.clone().unwrap_or_default(),
            realm_roles: rep.realm_roles.clone().unwrap_or_default(),
            client_roles: rep.client_roles.clone().unwrap_or_default(),
            extra: rep.extra.clone(),
            children,
        })
    }

    /// Group ids must be unique in the realm: an imported id already in use
    /// is replaced by a fresh one.
    pub(crate) fn fresh_ids(&self, g: &mut Group) {
        if self
            .flat_groups()
            .iter()
            .any(|(_, _, existing)| existing.id == g.id)
        {
            g.id = new_id();
        }
        for c in &mut g.children {
            self.fresh_ids(c);
        }
    }

    /// `POST /groups` (parent `None`) or `POST /groups/{id}/children`.
    pub(crate) fn create_group(
        &mut self,
        parent: Option<&str>,
        rep: &GroupRepresentation,
    ) -> Result<String, ApiError> {
        let mut group = Self::group_from_rep(rep)?;
        self.fresh_ids(&mut group);
        let id = group.id.clone();
        let siblings = match parent {
            None => &mut self.groups,
            Some(pid) => {
                &mut find_mut(&mut self.groups, pid)
                    .ok_or_else(ApiError::group_not_found)?
                    .children
            }
        };
        if siblings.iter().any(|g| g.name == group.name) {
            return Err(ApiError::conflict(match parent {
                None => format!("Top level group named '{}' already exists.", group.name),
                Some(_) => format!("Sibling group named '{}' already exists.", group.name),
            }));
        }
        siblings.push(group);
        Ok(id)
    }

    pub(crate) fn update_group(
        &mut self,
        id: &str,
        rep: &GroupRepresentation,
    ) -> Result<(), ApiError> {
        let g = find_mut(&mut self.groups, id).ok_or_else(ApiError::group_not_found)?;
        if let Some(name) = &rep.name {
            g.name = name.clone();
        }
        if let Some(attributes) = &rep.attributes {
            g.attributes = attributes.clone();
        }
        Ok(())
    }

    /// Deletes a group with its subtree and drops the memberships in them.
    pub(crate) fn delete_group(&mut self, id: &str) -> Result<(), ApiError> {
        let removed = remove(&mut self.groups, id).ok_or_else(ApiError::group_not_found)?;
        for u in &mut self.users {
            u.group_ids.retain(|g| !removed.contains(g));
        }
        Ok(())
    }

    pub(crate) fn user_groups(&self, user_id: &str) -> Result<Vec<GroupRepresentation>, ApiError> {
        let user = self.user(user_id)?;
        let flat = self.flat_groups();
        Ok(user
            .group_ids
            .iter()
            .filter_map(|gid| flat.iter().find(|(_, _, g)| g.id == *gid))
            .map(|(path, parent, g)| self.group_rep(g, path, *parent, false, false))
            .collect())
    }

    pub(crate) fn join_group(&mut self, user_id: &str, group_id: &str) -> Result<(), ApiError> {
        if self.group_path(group_id).is_none() {
            return Err(ApiError::group_not_found());
        }
        let user = self.user_mut(user_id)?;
        if !user.group_ids.iter().any(|g| g == group_id) {
            user.group_ids.push(group_id.to_owned());
        }
        Ok(())
    }

    pub(crate) fn leave_group(&mut self, user_id: &str, group_id: &str) -> Result<(), ApiError> {
        if self.group_path(group_id).is_none() {
            return Err(ApiError::group_not_found());
        }
        self.user_mut(user_id)?.group_ids.retain(|g| g != group_id);
        Ok(())
    }
}
