//! Users: create, read, update, delete, and Keycloak's user search.

use serde::Deserialize;
use serde_json::json;

use super::super::error::ApiError;
use super::super::model::UserRepresentation;
use super::{Realm, StoredUser, new_id, now_millis};

/// Keycloak answers at most this many users when `max` is not given.
const DEFAULT_MAX: usize = 100;

/// The query parameters of `GET /users` and `GET /users/count`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UserQuery {
    pub brief_representation: Option<bool>,
    pub email: Option<String>,
    pub email_verified: Option<bool>,
    pub enabled: Option<bool>,
    pub exact: Option<bool>,
    pub first: Option<i64>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub max: Option<i64>,
    pub search: Option<String>,
    pub username: Option<String>,
    /// `key:value` pairs matched against attributes.
    pub q: Option<String>,
}

/// Keycloak's `search`: prefix by default, `*x*` infix, `"x"` exact.
fn search_matches(pattern: &str, user: &StoredUser) -> bool {
    let pattern = pattern.trim().to_lowercase();
    if pattern.is_empty() || pattern == "*" {
        return true;
    }
    let fields = [
        user.rep.username.as_deref(),
        user.rep.email.as_deref(),
        user.rep.first_name.as_deref(),
        user.rep.last_name.as_deref(),
    ];
    let test = |value: &str| -> bool {
        let value = value.to_lowercase();
        if let Some(exact) = pattern.strip_prefix('"').and_then(|p| p.strip_suffix('"')) {
            return value == exact;
        }
        match (pattern.strip_prefix('*'), pattern.strip_suffix('*')) {
            (Some(rest), _) => value.contains(rest.trim_end_matches('*')),
            (None, Some(prefix)) => value.starts_with(prefix),
            (None, None) => value.starts_with(&pattern),
        }
    };
    fields.into_iter().flatten().any(test)
}

fn field_matches(wanted: Option<&str>, value: Option<&str>, exact: bool) -> bool {
    let Some(wanted) = wanted else { return true };
    let value = value.unwrap_or_default().to_lowercase();
    let wanted = wanted.to_lowercase();
    if exact {
        value == wanted
    } else {
        value.contains(&wanted)
    }
}

fn attributes_match(q: Option<&str>, user: &StoredUser) -> bool {
    let Some(q) = q else { return true };
    q.split_whitespace().all(|pair| {
        let Some((k, v)) = pair.split_once(':') else {
            return true;
        };
        user.rep
            .attributes
            .as_ref()
            .and_then(|a| a.get(k))
            .is_some_and(|values| values.iter().any(|x| x == v))
    })
}

impl UserQuery {
    fn matches(&self, user: &StoredUser) -> bool {
        let exact = self.exact.unwrap_or(false);
        // With `search`, Keycloak ignores the per-field criteria.
        let fields = match self.search.as_deref() {
            Some(s) => search_matches(s, user),
            None => {
                let rep = &user.rep;
                field_matches(self.username.as_deref(), rep.username.as_deref(), exact)
                    && field_matches(self.email.as_deref(), rep.email.as_deref(), exact)
                    && field_matches(self.first_name.as_deref(), rep.first_name.as_deref(), exact)
                    && field_matches(self.last_name.as_deref(), rep.last_name.as_deref(), exact)
            }
        };
        fields
            && self
                .enabled
                .is_none_or(|e| user.rep.enabled.unwrap_or(false) == e)
            && self
                .email_verified
                .is_none_or(|e| user.rep.email_verified.unwrap_or(false) == e)
            && attributes_match(self.q.as_deref(), user)
    }
}

impl Realm {
    pub(crate) fn user(&self, id: &str) -> Result<&StoredUser, ApiError> {
        self.users
            .iter()
            .find(|u| u.id() == id)
            .ok_or_else(ApiError::user_not_found)
    }

    pub(crate) fn user_mut(&mut self, id: &str) -> Result<&mut StoredUser, ApiError> {
        self.users
            .iter_mut()
            .find(|u| u.id() == id)
            .ok_or_else(ApiError::user_not_found)
    }

    pub(crate) fn user_by_username(&self, username: &str) -> Option<&StoredUser> {
        let username = username.to_lowercase();
        self.users.iter().find(|u| u.username() == username)
    }

    /// A user as `GET /users/{id}` shows it (no credentials, groups or role
    /// mappings: those have their own endpoints).
    pub(crate) fn user_rep(&self, user: &StoredUser, brief: bool) -> UserRepresentation {
        let mut rep = user.rep.clone();
        rep.groups = None;
        rep.realm_roles = None;
        rep.client_roles = None;
        rep.credentials = None;
        rep.enabled = Some(rep.enabled.unwrap_or(false));
        rep.email_verified = Some(rep.email_verified.unwrap_or(false));
        if brief {
            rep.attributes = None;
            rep.required_actions = None;
            rep.extra = Default::default();
        } else {
            rep.required_actions = Some(rep.required_actions.unwrap_or_default());
            for (k, v) in [
                ("totp", json!(false)),
                ("disableableCredentialTypes", json!([])),
                ("notBefore", json!(0)),
                (
                    "access",
                    json!({"manageGroupMembership": true, "view": true, "mapRoles": true, "impersonate": true, "manage": true}),
                ),
            ] {
                rep.extra.entry(k.to_owned()).or_insert(v);
            }
        }
        rep
    }

    pub(crate) fn query_users(&self, q: &UserQuery) -> Vec<UserRepresentation> {
        let first = usize::try_from(q.first.unwrap_or(0)).unwrap_or(0);
        let max = match q.max {
            Some(m) if m >= 0 => usize::try_from(m).unwrap_or(usize::MAX),
            Some(_) => usize::MAX,
            None => DEFAULT_MAX,
        };
        let mut found: Vec<&StoredUser> = self.users.iter().filter(|u| q.matches(u)).collect();
        found.sort_by(|a, b| a.username().cmp(b.username()));
        let brief = q.brief_representation.unwrap_or(false);
        found
            .into_iter()
            .skip(first)
            .take(max)
            .map(|u| self.user_rep(u, brief))
            .collect()
    }

    pub(crate) fn count_users(&self, q: &UserQuery) -> usize {
        self.users.iter().filter(|u| q.matches(u)).count()
    }

    pub(crate) fn group_members(
        &self,
        group_id: &str,
        first: usize,
        max: usize,
        brief: bool,
    ) -> Result<Vec<UserRepresentation>, ApiError> {
        if self.group_path(group_id).is_none() {
            return Err(ApiError::group_not_found());
        }
        let mut found: Vec<&StoredUser> = self
            .users
            .iter()
            .filter(|u| u.group_ids.iter().any(|g| g == group_id))
            .collect();
        found.sort_by(|a, b| a.username().cmp(b.username()));
        Ok(found
            .into_iter()
            .skip(first)
            .take(max)
            .map(|u| self.user_rep(u, brief))
            .collect())
    }

    /// Checks a new user against the realm: a username, unique, and a unique
    /// email unless the realm allows duplicates.
    fn check_new_user(
        &self,
        rep: &UserRepresentation,
        skip_id: Option<&str>,
    ) -> Result<String, ApiError> {
        let username = rep
            .username
            .as_deref()
            .map(|u| u.trim().to_lowercase())
            .filter(|u| !u.is_empty())
            .ok_or_else(|| ApiError::bad_request("User name is missing"))?;
        let others = || self.users.iter().filter(|u| Some(u.id()) != skip_id);
        if others().any(|u| u.username() == username) {
            return Err(ApiError::conflict("User exists with same username"));
        }
        let duplicates_allowed = self
            .settings
            .extra
            .get("duplicateEmailsAllowed")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);
        if let Some(email) = rep
            .email
            .as_deref()
            .map(str::to_lowercase)
            .filter(|e| !e.is_empty())
            && !duplicates_allowed
            && others().any(|u| u.rep.email.as_deref() == Some(email.as_str()))
        {
            return Err(ApiError::conflict("User exists with same email"));
        }
        Ok(username)
    }

    /// Stores a user from a representation, resolving group paths and realm
    /// role names; used by `POST /users` and by imports.
    pub(crate) fn insert_user(
        &mut self,
        mut rep: UserRepresentation,
        with_roles: bool,
    ) -> Result<String, ApiError> {
        let username = self.check_new_user(&rep, None)?;
        let id = rep
            .id
            .clone()
            .filter(|id| self.users.iter().all(|u| u.id() != id))
            .unwrap_or_else(new_id);
        let mut group_ids = Vec::new();
        for path in rep.groups.take().unwrap_or_default() {
            let gid = self
                .group_id_by_path(&path)
                .ok_or_else(|| ApiError::bad_request(format!("Group {path} not found")))?;
            group_ids.push(gid);
        }
        let mut realm_roles = Vec::new();
        for name in rep.realm_roles.take().unwrap_or_default() {
            if with_roles {
                if self.role(&name).is_none() {
                    return Err(ApiError::bad_request(format!(
                        "Could not find role: {name}"
                    )));
                }
                realm_roles.push(name);
            }
        }
        let credentials = rep
            .credentials
            .take()
            .unwrap_or_default()
            .into_iter()
            .map(super::credentials::stored)
            .collect();
        rep.id = Some(id.clone());
        rep.username = Some(username);
        rep.email = rep.email.map(|e| e.to_lowercase());
        rep.created_timestamp = Some(rep.created_timestamp.unwrap_or_else(now_millis));
        rep.enabled = Some(rep.enabled.unwrap_or(false));
        self.users.push(StoredUser {
            rep,
            credentials,
            group_ids,
            realm_roles,
        });
        Ok(id)
    }

    /// `POST /users`: like Keycloak, grants the realm's default role and
    /// ignores `realmRoles` (role mappings have their own endpoint).
    pub(crate) fn create_user(&mut self, rep: UserRepresentation) -> Result<String, ApiError> {
        let id = self.insert_user(rep, false)?;
        let default_role = self.default_role_name();
        if self.role(&default_role).is_some() {
            self.user_mut(&id)?.realm_roles.push(default_role);
        }
        Ok(id)
    }

    /// `PUT /users/{id}`: fields present in the body replace the stored ones.
    pub(crate) fn update_user(
        &mut self,
        id: &str,
        rep: UserRepresentation,
    ) -> Result<(), ApiError> {
        self.user(id)?;
        if rep.username.is_some() || rep.email.is_some() {
            let mut probe = self.user(id)?.rep.clone();
            if rep.username.is_some() {
                probe.username.clone_from(&rep.username);
            }
            if rep.email.is_some() {
                probe.email.clone_from(&rep.email);
            }
            self.check_new_user(&probe, Some(id))?;
        }
        let user = self.user_mut(id)?;
        let stored = &mut user.rep;
        if let Some(username) = rep.username {
            stored.username = Some(username.trim().to_lowercase());
        }
        if let Some(email) = rep.email {
            stored.email = Some(email.to_lowercase());
        }
        macro_rules! replace_if_given {
            ($($field:ident),*) => {$( if rep.$field.is_some() { stored.$field = rep.$field; } )*};
        }
        replace_if_given!(
            enabled,
            email_verified,
            first_name,
            last_name,
            attributes,
            required_actions
        );
        for (k, v) in rep.extra {
            stored.extra.insert(k, v);
        }
        if let Some(credentials) = rep.credentials {
            user.credentials = credentials
                .into_iter()
                .map(super::credentials::stored)
                .collect();
        }
        Ok(())
    }

    pub(crate) fn delete_user(&mut self, id: &str) -> Result<(), ApiError> {
        let before = self.users.len();
        self.users.retain(|u| u.id() != id);
        if self.users.len() == before {
            return Err(ApiError::user_not_found());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(username: &str, email: &str) -> StoredUser {
        StoredUser {
            rep: UserRepresentation {
                id: Some(username.to_owned()),
                username: Some(username.to_owned()),
                email: Some(email.to_owned()),
                ..Default::default()
            },
            credentials: Vec::new(),
            group_ids: Vec::new(),
            realm_roles: Vec::new(),
        }
    }

    #[test]
    fn search_is_prefix_by_default_infix_with_stars_exact_with_quotes() {
        let u = user("officer-anna", "anna@example.org");
        assert!(search_matches("officer", &u));
        assert!(
            search_matches("ANNA@", &u),
            "case-insensitive, any of the fields"
        );
        assert!(!search_matches("anna-x", &u));
        assert!(!search_matches("fficer", &u), "no infix without stars");
        assert!(search_matches("*fficer*", &u));
        assert!(search_matches("\"officer-anna\"", &u));
        assert!(!search_matches("\"officer\"", &u));
        assert!(search_matches("*", &u));
    }

    #[test]
    fn username_filter_is_infix_unless_exact() {
        let q = UserQuery {
            username: Some("fic".into()),
            ..Default::default()
        };
        assert!(q.matches(&user("officer", "o@x")));
        let exact = UserQuery {
            exact: Some(true),
            ..q
        };
        assert!(!exact.matches(&user("officer", "o@x")));
    }
}
