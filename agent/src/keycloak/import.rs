//! Import with the SKIP strategy: the realm first (created when missing,
//! else its groups, roles and clients added where absent), then its users.
//! Nothing already on the target is changed, so a re-run is harmless.

use keycloak::KeycloakError;
use keycloak::types::{
    ClientRepresentation, GroupRepresentation, RealmRepresentation, RolesRepresentation,
    UserRepresentation,
};
use serde::{Deserialize, Serialize};

use super::client::AdminClient;
use super::error::{AdminError, Result};
use super::export::RealmExport;

/// Users sent per `partialImport` request, to bound request size.
const USERS_PER_REQUEST: usize = 500;

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportSummary {
    pub realm: String,
    /// The realm did not exist and was created from the export.
    pub realm_created: bool,
    /// Groups, roles and clients added to an existing realm / skipped.
    pub realm_resources_added: u64,
    pub realm_resources_skipped: u64,
    pub users_added: u64,
    pub users_skipped: u64,
}

impl ImportSummary {
    pub fn added(&self) -> u64 {
        self.realm_resources_added + self.users_added
    }

    pub fn skipped(&self) -> u64 {
        self.realm_resources_skipped + self.users_skipped
    }
}

/// Keycloak's `PartialImportRepresentation`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PartialImport<'a> {
    if_resource_exists: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    users: Option<&'a [UserRepresentation]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    groups: Option<&'a [GroupRepresentation]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    clients: Option<&'a [ClientRepresentation]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    roles: Option<&'a RolesRepresentation>,
}

/// Keycloak's `PartialImportResults` (the counts are all Ferry needs).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PartialImportResults {
    #[serde(default)]
    added: u64,
    #[serde(default)]
    skipped: u64,
    #[serde(default)]
    overwritten: u64,
}

impl AdminClient {
    /// Imports the export: realm first, then users, both with SKIP.
    pub async fn import_realm(&self, export: &RealmExport) -> Result<ImportSummary> {
        let realm = export.realm.as_str();
        let mut summary = ImportSummary {
            realm: realm.into(),
            ..ImportSummary::default()
        };
        if !self.realm_exists(realm).await? {
            summary.realm_created = self.create_realm(realm, &export.representation).await?;
        }
        if !summary.realm_created {
            let rep = &export.representation;
            let body = PartialImport {
                if_resource_exists: "SKIP",
                users: None,
                groups: rep.groups.as_deref(),
                clients: rep.clients.as_deref(),
                roles: rep.roles.as_ref(),
            };
            let r = self
                .partial_import(realm, "import groups, roles and clients", &body)
                .await?;
            summary.realm_resources_added = r.added + r.overwritten;
            summary.realm_resources_skipped = r.skipped;
        }
        for chunk in export.users.chunks(USERS_PER_REQUEST) {
            let names = |u: Option<&UserRepresentation>| {
                u.and_then(|u| u.username.clone()).unwrap_or_default()
            };
            let action = format!(
                "import {} users ({} … {})",
                chunk.len(),
                names(chunk.first()),
                names(chunk.last())
            );
            let body = PartialImport {
                if_resource_exists: "SKIP",
                users: Some(chunk),
                groups: None,
                clients: None,
                roles: None,
            };
            let r = self.partial_import(realm, &action, &body).await?;
            summary.users_added += r.added + r.overwritten;
            summary.users_skipped += r.skipped;
        }
        tracing::info!(?summary, "imported realm");
        Ok(summary)
    }

    /// Creates the realm from its partial export; `false` when someone
    /// created it meanwhile (409), in which case the caller imports into it.
    async fn create_realm(&self, realm: &str, rep: &RealmRepresentation) -> Result<bool> {
        let mut rep = rep.clone();
        rep.users = None;
        rep.realm = Some(realm.into());
        match self.api().post(rep).await {
            Ok(_) => Ok(true),
            Err(KeycloakError::HttpFailure { status: 409, .. }) => Ok(false),
            Err(e) => Err(AdminError::from_keycloak("create the realm", realm, e)),
        }
    }

    /// `POST /admin/realms/{realm}/partialImport`, sent by hand: the crate
    /// types the body as a `RealmRepresentation`, which cannot carry
    /// `ifResourceExists`.
    async fn partial_import(
        &self,
        realm: &str,
        action: &str,
        body: &PartialImport<'_>,
    ) -> Result<PartialImportResults> {
        let token = self.token(action, realm).await?;
        let url = format!(
            "{}/admin/realms/{}/partialImport",
            self.base_url(),
            percent_encode_segment(realm)
        );
        let transport = |source| AdminError::Transport {
            action: action.into(),
            realm: realm.into(),
            source,
        };
        let resp = self
            .http()
            .post(url)
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status();
        let text = resp.text().await.map_err(transport)?;
        if !status.is_success() {
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["errorMessage"].as_str().map(str::to_owned))
                .unwrap_or(text);
            return Err(AdminError::Http {
                action: action.into(),
                realm: realm.into(),
                status: status.as_u16(),
                message,
            });
        }
        serde_json::from_str(&text).map_err(|e| AdminError::Malformed {
            realm: realm.into(),
            what: format!("an unreadable partialImport result ({e})"),
        })
    }
}

/// Realm names are path segments; escape what would break the URL.
fn percent_encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_uses_keycloak_names() -> serde_json::Result<()> {
        let users = [UserRepresentation {
            username: Some("alice".into()),
            ..Default::default()
        }];
        let body = PartialImport {
            if_resource_exists: "SKIP",
            users: Some(&users),
            groups: None,
            clients: None,
            roles: None,
        };
        let json = serde_json::to_value(&body)?;
        assert_eq!(json["ifResourceExists"], "SKIP");
        assert_eq!(json["users"][0]["username"], "alice");
        assert!(json.get("groups").is_none());
        Ok(())
    }

    #[test]
    fn realm_names_are_escaped() {
        assert_eq!(percent_encode_segment("reg-admin"), "reg-admin");
        assert_eq!(percent_encode_segment("a b/c"), "a%20b%2Fc");
    }
}
