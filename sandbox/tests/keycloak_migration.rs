//! A realm with users moved from one sandbox Keycloak to another the way
//! Ferry does it, through the `keycloak` admin client crate: partial export of
//! the realm, realm created on the target, then users imported with
//! `partialImport` SKIP; FAIL and OVERWRITE behave as in Keycloak.

use std::collections::HashMap;

use anyhow::{Context, Result, bail};
use ferry_sandbox::keycloak::KeycloakServer;
use keycloak::prelude::reqwest;
use keycloak::types::{
    GroupRepresentation, RealmRepresentation, RoleRepresentation, UserRepresentation,
};
use keycloak::{KeycloakAdmin, KeycloakAdminToken, KeycloakError};
use serde_json::{Value, json};

const REALM: &str = "reg-officer-portal";

struct Admin {
    api: KeycloakAdmin,
    http: reqwest::Client,
    url: String,
    token: String,
}

async fn admin(server: &KeycloakServer) -> Result<Admin> {
    let http = reqwest::Client::new();
    let token = KeycloakAdminToken::acquire(
        server.base_url(),
        server.admin_user(),
        server.admin_password(),
        &http,
    )
    .await?;
    assert_eq!(token.token_type(), "Bearer");
    assert!(token.expires_in() > 0);
    let raw = token.access_token().to_owned();
    Ok(Admin {
        api: KeycloakAdmin::new(server.base_url(), token, http.clone()),
        http,
        url: server.base_url().to_owned(),
        token: raw,
    })
}

impl Admin {
    /// `partialImport` with an `ifResourceExists` policy. The crate's
    /// `realm_partial_import_post` takes a `RealmRepresentation`, which has no
    /// field for the policy (Keycloak then defaults to FAIL), so the body is
    /// sent with the crate's own HTTP client.
    async fn partial_import(
        &self,
        realm: &str,
        policy: &str,
        users: &[UserRepresentation],
    ) -> Result<(u16, Value)> {
        let resp = self
            .http
            .post(format!("{}/admin/realms/{realm}/partialImport", self.url))
            .bearer_auth(&self.token)
            .json(&json!({ "ifResourceExists": policy, "users": users }))
            .send()
            .await?;
        let status = resp.status().as_u16();
        let body: Value = resp.json().await?;
        Ok((status, body))
    }

    /// Users with their group paths and realm roles, as Ferry's exporter
    /// gathers them (partial export leaves users out).
    async fn users_for_import(&self, realm: &str) -> Result<Vec<UserRepresentation>> {
        let mut users = self
            .api
            .realm_users_get(
                realm,
                Some(false),
                None,
                None,
                None,
                None,
                None,
                None,
                Some(0),
                None,
                None,
                None,
                None,
                Some(1000),
                None,
                None,
                None,
            )
            .await?;
        for user in &mut users {
            let id = user.id.clone().context("user without id")?;
            let groups = self
                .api
                .realm_users_with_user_id_groups_get(realm, &id, None, None, None, None)
                .await?;
            user.groups = Some(groups.into_iter().filter_map(|g| g.path).collect());
            let roles = self
                .api
                .realm_users_with_user_id_role_mappings_realm_get(realm, &id)
                .await?;
            user.realm_roles = Some(roles.into_iter().filter_map(|r| r.name).collect());
            user.id = None;
        }
        Ok(users)
    }
}

fn attrs(pairs: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), vec![(*v).to_owned()]))
        .collect()
}

fn status_of(e: &KeycloakError) -> Option<u16> {
    match e {
        KeycloakError::HttpFailure { status, .. } => Some(*status),
        _ => None,
    }
}

/// Builds the source realm over the admin API.
async fn seed_source(a: &Admin) -> Result<()> {
    a.api
        .post(RealmRepresentation {
            realm: Some(REALM.into()),
            enabled: Some(true),
            ..Default::default()
        })
        .await?;
    for role in ["officer", "head-officer"] {
        a.api
            .realm_roles_post(
                REALM,
                RoleRepresentation {
                    name: Some(role.into()),
                    description: Some(format!("{role} of the registry")),
                    ..Default::default()
                },
            )
            .await?;
    }
    let officers = a
        .api
        .realm_groups_post(
            REALM,
            GroupRepresentation {
                name: Some("officers".into()),
                ..Default::default()
            },
        )
        .await?
        .to_id()
        .context("group Location")?
        .to_owned();

    let people = [
        ("alice", "Alice", "1111111111", true),
        ("bob", "Bob", "2222222222", false),
        ("carol", "Carol", "3333333333", false),
    ];
    for (username, first, drfo, head) in people {
        let created = a
            .api
            .realm_users_post(
                REALM,
                UserRepresentation {
                    username: Some(username.into()),
                    first_name: Some(first.into()),
                    last_name: Some("Officer".into()),
                    email: Some(format!("{username}@example.org")),
                    enabled: Some(true),
                    attributes: Some(attrs(&[
                        ("drfo", drfo),
                        ("edrpou", "12345678"),
                        ("fullName", first),
                    ])),
                    ..Default::default()
                },
            )
            .await?;
        let id = created.to_id().context("user Location")?.to_owned();
        a.api
            .realm_users_with_user_id_groups_with_group_id_put(REALM, &id, &officers)
            .await?;
        let mut roles = vec!["officer"];
        if head {
            roles.push("head-officer");
        }
        let roles = a
            .api
            .realm_roles_get(REALM, None, None, None, None)
            .await?
            .into_iter()
            .filter(|r| r.name.as_deref().is_some_and(|n| roles.contains(&n)))
            .collect();
        a.api
            .realm_users_with_user_id_role_mappings_realm_post(REALM, &id, roles)
            .await?;
    }
    Ok(())
}

#[tokio::test]
async fn realm_and_users_move_with_skip() -> Result<()> {
    let source = KeycloakServer::start("admin", "source-admin-pw").await?;
    let target = KeycloakServer::start("admin", "target-admin-pw").await?;
    let a = admin(&source).await?;
    let b = admin(&target).await?;
    seed_source(&a).await?;

    // Export: realm settings, groups, roles, clients, and no users.
    let export = a
        .api
        .realm_partial_export_post(REALM, Some(true), Some(true))
        .await?;
    assert!(
        export.users.is_none(),
        "partial export must not carry users"
    );
    let groups = export.groups.clone().context("groups exported")?;
    assert_eq!(
        groups
            .iter()
            .filter_map(|g| g.path.clone())
            .collect::<Vec<_>>(),
        vec!["/officers"]
    );
    let realm_roles = export
        .roles
        .clone()
        .and_then(|r| r.realm)
        .context("roles exported")?;
    assert!(
        realm_roles
            .iter()
            .any(|r| r.name.as_deref() == Some("head-officer"))
    );
    assert!(export.clients.as_ref().is_some_and(|c| {
        c.iter()
            .any(|c| c.client_id.as_deref() == Some("admin-cli"))
    }));

    let listed = a
        .api
        .realm_users_get(
            REALM, None, None, None, None, None, None, None, None, None, None, None, None, None,
            None, None, None,
        )
        .await?;
    assert_eq!(listed.len(), 3);
    let users = a.users_for_import(REALM).await?;

    // Target: realm first, then users with SKIP.
    b.api.post(export).await?;
    let (status, results) = b.partial_import(REALM, "SKIP", &users).await?;
    assert_eq!(status, 200, "{results}");
    assert_eq!(results["added"], 3, "{results}");
    assert_eq!(results["skipped"], 0, "{results}");
    assert!(results["results"].as_array().is_some_and(|r| {
        r.iter()
            .all(|x| x["resourceType"] == "USER" && x["action"] == "ADDED")
    }));

    let moved = target.users(REALM)?;
    assert_eq!(source.users(REALM)?, moved);
    let alice = moved
        .iter()
        .find(|u| u.username == "alice")
        .context("alice moved")?;
    assert_eq!(alice.groups, vec!["/officers"]);
    assert!(alice.realm_roles.contains(&"head-officer".to_owned()));
    assert_eq!(
        alice.attributes.get("drfo"),
        Some(&vec!["1111111111".to_owned()])
    );

    // Over the API on the target too.
    let found = b
        .api
        .realm_users_get(
            REALM,
            Some(false),
            None,
            None,
            None,
            None,
            None,
            Some(true),
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            Some("bob".into()),
        )
        .await?;
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0]
            .attributes
            .as_ref()
            .and_then(|a| a.get("drfo"))
            .cloned(),
        Some(vec!["2222222222".to_owned()])
    );

    // A re-run skips everything and leaves the target's users untouched.
    let bob_id = found[0].id.clone().context("bob id")?;
    b.api
        .realm_users_with_user_id_put(
            REALM,
            &bob_id,
            UserRepresentation {
                first_name: Some("Robert".into()),
                ..Default::default()
            },
        )
        .await?;
    let (status, results) = b.partial_import(REALM, "SKIP", &users).await?;
    assert_eq!(status, 200);
    assert_eq!(
        (results["added"].as_u64(), results["skipped"].as_u64()),
        (Some(0), Some(3)),
        "{results}"
    );
    let bob = b
        .api
        .realm_users_with_user_id_get(REALM, &bob_id, None)
        .await?;
    assert_eq!(bob.first_name.as_deref(), Some("Robert"));
    Ok(())
}

#[tokio::test]
async fn fail_policy_refuses_with_409_and_imports_nothing() -> Result<()> {
    let source = KeycloakServer::start("admin", "pw-a").await?;
    let target = KeycloakServer::start("admin", "pw-b").await?;
    let a = admin(&source).await?;
    let b = admin(&target).await?;
    seed_source(&a).await?;
    b.api
        .post(
            a.api
                .realm_partial_export_post(REALM, Some(true), Some(true))
                .await?,
        )
        .await?;
    let users = a.users_for_import(REALM).await?;

    // Only alice is on the target; FAIL must refuse and not add bob or carol.
    let (status, _) = b.partial_import(REALM, "SKIP", &users[..1]).await?;
    assert_eq!(status, 200);
    let (status, body) = b.partial_import(REALM, "FAIL", &users).await?;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("alice")),
        "{body}"
    );
    let count = b
        .api
        .realm_users_count_get(
            REALM, None, None, None, None, None, None, None, None, None, None, None, None, None,
        )
        .await?;
    assert_eq!(count, 1);

    // OVERWRITE replaces the existing one and adds the others.
    let (status, body) = b.partial_import(REALM, "OVERWRITE", &users).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["overwritten"].as_u64(), body["added"].as_u64()),
        (Some(1), Some(2)),
        "{body}"
    );
    assert_eq!(source.users(REALM)?, target.users(REALM)?);
    Ok(())
}

#[tokio::test]
async fn realm_create_conflicts_and_crud() -> Result<()> {
    let server = KeycloakServer::start("root", "root-pw").await?;
    let a = admin(&server).await?;
    let rep = RealmRepresentation {
        realm: Some("reg-admin".into()),
        enabled: Some(true),
        ..Default::default()
    };
    a.api.post(rep.clone()).await?;
    match a.api.post(rep).await {
        Err(e) if status_of(&e) == Some(409) => {}
        other => bail!(
            "creating an existing realm must answer 409, got {:?}",
            other.map(|_| ())
        ),
    }
    let names: Vec<String> = a
        .api
        .get(None)
        .await?
        .into_iter()
        .filter_map(|r| r.realm)
        .collect();
    assert_eq!(names, vec!["master", "reg-admin"]);
    let got = a.api.realm_get("reg-admin").await?;
    assert_eq!(got.enabled, Some(true));
    a.api
        .realm_put(
            "reg-admin",
            RealmRepresentation {
                display_name: Some("Registry admins".into()),
                ..Default::default()
            },
        )
        .await?;
    assert_eq!(
        a.api.realm_get("reg-admin").await?.display_name.as_deref(),
        Some("Registry admins")
    );
    a.api.realm_delete("reg-admin").await?;
    match a.api.realm_get("reg-admin").await {
        Err(e) if status_of(&e) == Some(404) => {}
        other => bail!(
            "a deleted realm must answer 404, got {:?}",
            other.map(|_| ())
        ),
    }
    Ok(())
}
