//! The users, groups and role-mapping endpoints behave like Keycloak's:
//! search and paging, count, brief representations, conflicts, updates and
//! deletes. Built with the in-process fixture helpers, read over HTTP.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use ferry_sandbox::keycloak::KeycloakServer;
use ferry_sandbox::keycloak::model::UserRepresentation as SandboxUser;
use keycloak::prelude::reqwest;
use keycloak::types::{RoleRepresentation, UserRepresentation};
use keycloak::{KeycloakAdmin, KeycloakAdminToken, KeycloakError};

const REALM: &str = "reg-citizen-portal";

fn status_of(e: &KeycloakError) -> Option<u16> {
    match e {
        KeycloakError::HttpFailure { status, .. } => Some(*status),
        _ => None,
    }
}

async fn seeded() -> Result<(KeycloakServer, KeycloakAdmin)> {
    let server = KeycloakServer::start("admin", "pw").await?;
    server.create_realm(REALM)?;
    server.add_realm_role(REALM, "citizen")?;
    server.add_group(REALM, "/citizens/verified")?;
    for i in 0..25 {
        server.add_user(
            REALM,
            SandboxUser {
                username: Some(format!("user{i:02}")),
                email: Some(format!("user{i:02}@example.org")),
                enabled: Some(true),
                attributes: Some(BTreeMap::from([(
                    "drfo".to_owned(),
                    vec![format!("{i:010}")],
                )])),
                groups: Some(vec!["/citizens/verified".to_owned()]),
                realm_roles: Some(vec!["citizen".to_owned()]),
                ..Default::default()
            },
        )?;
    }
    let http = reqwest::Client::new();
    let token = KeycloakAdminToken::acquire(server.base_url(), "admin", "pw", &http).await?;
    let admin = KeycloakAdmin::new(server.base_url(), token, http);
    Ok((server, admin))
}

#[tokio::test]
async fn paging_search_count_and_brief() -> Result<()> {
    let (_server, admin) = seeded().await?;
    let page = |first, max| {
        admin.realm_users_get(
            REALM,
            Some(true),
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
            Some(max),
            None,
            None,
            None,
        )
    };
    let p1 = page(0, 10).await?;
    let p3 = page(20, 10).await?;
    assert_eq!(p1.len(), 10);
    assert_eq!(p3.len(), 5);
    assert_eq!(p1[0].username.as_deref(), Some("user00"));
    assert_eq!(p3[4].username.as_deref(), Some("user24"));
    assert!(
        p1[0].attributes.is_none(),
        "brief representation has no attributes"
    );

    let search = |s: &str| {
        admin.realm_users_get(
            REALM,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            Some(s.to_owned()),
            None,
        )
    };
    assert_eq!(search("user1").await?.len(), 10, "prefix search");
    assert_eq!(search("*ser2*").await?.len(), 5, "infix search");
    assert_eq!(search("\"user07\"").await?.len(), 1, "exact search");
    let full = search("\"user07\"").await?;
    assert_eq!(
        full[0]
            .attributes
            .as_ref()
            .and_then(|a| a.get("drfo"))
            .cloned(),
        Some(vec!["0000000007".to_owned()])
    );

    let count = admin
        .realm_users_count_get(
            REALM,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            Some("user2".into()),
            None,
        )
        .await?;
    assert_eq!(count, 5);
    Ok(())
}

#[tokio::test]
async fn conflicts_updates_deletes_groups_and_roles() -> Result<()> {
    let (server, admin) = seeded().await?;
    let dup = admin
        .realm_users_post(
            REALM,
            UserRepresentation {
                username: Some("USER03".into()),
                ..Default::default()
            },
        )
        .await;
    match dup {
        Err(e) if status_of(&e) == Some(409) => {}
        other => bail!(
            "a duplicate username must get 409, got {:?}",
            other.map(|_| ())
        ),
    }

    let users = admin
        .realm_users_get(
            REALM,
            None,
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
            Some("user03".into()),
        )
        .await?;
    let id = users
        .first()
        .and_then(|u| u.id.clone())
        .context("user03 exists")?;

    let groups = admin
        .realm_users_with_user_id_groups_get(REALM, &id, None, None, None, None)
        .await?;
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].path.as_deref(), Some("/citizens/verified"));
    let group_id = groups[0].id.clone().context("group id")?;
    admin
        .realm_users_with_user_id_groups_with_group_id_delete(REALM, &id, &group_id)
        .await?;
    assert!(
        admin
            .realm_users_with_user_id_groups_get(REALM, &id, None, None, None, None)
            .await?
            .is_empty()
    );

    let roles = admin
        .realm_users_with_user_id_role_mappings_realm_get(REALM, &id)
        .await?;
    let mut names: Vec<String> = roles.iter().filter_map(|r| r.name.clone()).collect();
    names.sort();
    assert_eq!(
        names,
        vec!["citizen".to_owned(), format!("default-roles-{REALM}")]
    );
    let citizen: Vec<RoleRepresentation> = roles
        .into_iter()
        .filter(|r| r.name.as_deref() == Some("citizen"))
        .collect();
    admin
        .realm_users_with_user_id_role_mappings_realm_delete(REALM, &id, citizen)
        .await?;
    assert_eq!(
        admin
            .realm_users_with_user_id_role_mappings_realm_get(REALM, &id)
            .await?
            .len(),
        1
    );

    admin
        .realm_users_with_user_id_put(
            REALM,
            &id,
            UserRepresentation {
                attributes: Some(
                    [("drfo".to_owned(), vec!["9".to_owned()])]
                        .into_iter()
                        .collect(),
                ),
                ..Default::default()
            },
        )
        .await?;
    let snapshot = server.users(REALM)?;
    let u3 = snapshot
        .iter()
        .find(|u| u.username == "user03")
        .context("user03 snapshot")?;
    assert_eq!(u3.attributes.get("drfo"), Some(&vec!["9".to_owned()]));
    assert!(u3.groups.is_empty());

    admin.realm_users_with_user_id_delete(REALM, &id).await?;
    match admin.realm_users_with_user_id_get(REALM, &id, None).await {
        Err(e) if status_of(&e) == Some(404) => {}
        other => bail!(
            "a deleted user must answer 404, got {:?}",
            other.map(|_| ())
        ),
    }
    assert_eq!(server.users(REALM)?.len(), 24);
    Ok(())
}
