//! A registry realm with its users exported from one sandbox Keycloak and
//! imported (SKIP) into another, through the agent's admin client.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use ferry_agent::keycloak::{
    AdminClient, AdminCredentials, AdminError, RealmExport, registry_realms,
};
use ferry_sandbox::keycloak::KeycloakServer;
use ferry_sandbox::keycloak::model::UserRepresentation;

const REALM: &str = "reg-officer-portal";
/// More than one page of `GET users` (200).
const USERS: usize = 230;

fn credentials(server: &KeycloakServer) -> AdminCredentials {
    AdminCredentials {
        user: server.admin_user().to_owned(),
        password: server.admin_password().to_owned(),
    }
}

fn seed(source: &KeycloakServer) -> Result<()> {
    source.create_realm(REALM)?;
    for role in ["officer", "head-officer"] {
        source.add_realm_role(REALM, role)?;
    }
    source.add_group(REALM, "/officers/kyiv")?;
    source.add_group(REALM, "/auditors")?;
    for i in 0..USERS {
        let mut groups = vec!["/officers/kyiv".to_owned()];
        let mut roles = vec!["officer".to_owned()];
        if i % 10 == 0 {
            groups.push("/auditors".into());
            roles.push("head-officer".into());
        }
        let attributes = BTreeMap::from([
            ("drfo".to_owned(), vec![format!("{:010}", i)]),
            ("edrpou".to_owned(), vec!["12345678".to_owned()]),
            (
                "subjectTypes".to_owned(),
                vec!["INDIVIDUAL".to_owned(), "LEGAL".to_owned()],
            ),
        ]);
        source.add_user(
            REALM,
            UserRepresentation {
                username: Some(format!("officer-{i:03}")),
                email: Some(format!("officer-{i:03}@example.org")),
                first_name: Some(format!("Officer {i}")),
                last_name: Some("Registry".into()),
                enabled: Some(i % 7 != 0),
                attributes: Some(attributes),
                groups: Some(groups),
                realm_roles: Some(roles),
                ..Default::default()
            },
        )?;
    }
    Ok(())
}

#[tokio::test]
async fn realm_with_users_moves_and_a_rerun_skips_everything() -> Result<()> {
    let source = KeycloakServer::start("admin", "source-pw").await?;
    let target = KeycloakServer::start("admin", "target-pw").await?;
    seed(&source)?;

    let a = AdminClient::connect(source.base_url(), &credentials(&source)).await?;
    let export = a.export_realm(REALM).await?;
    assert_eq!(export.realm, REALM);
    assert_eq!(export.users.len(), USERS);
    let first = export.users.first().context("a user")?;
    assert_eq!(first.username.as_deref(), Some("officer-000"));
    assert_eq!(
        first.groups.clone().unwrap_or_default(),
        vec!["/auditors", "/officers/kyiv"]
    );
    assert!(
        first
            .realm_roles
            .clone()
            .unwrap_or_default()
            .contains(&"head-officer".to_owned())
    );
    let groups = export.representation.groups.clone().unwrap_or_default();
    assert_eq!(
        groups.len(),
        2,
        "top-level groups exported with their subgroups"
    );

    // The export travels as JSON.
    let export = RealmExport::from_json(&export.to_json()?)?;

    let b = AdminClient::connect(target.base_url(), &credentials(&target)).await?;
    assert!(!b.realm_exists(REALM).await?);
    let summary = b.import_realm(&export).await?;
    assert!(summary.realm_created);
    assert_eq!(
        (summary.users_added, summary.users_skipped),
        (USERS as u64, 0)
    );
    assert!(b.realm_names().await?.contains(&REALM.to_owned()));

    // Users, attributes, groups and role mappings all match.
    let moved = target.users(REALM)?;
    assert_eq!(moved.len(), USERS);
    assert_eq!(source.users(REALM)?, moved);

    // A second import changes nothing and says so.
    let again = b.import_realm(&export).await?;
    assert!(!again.realm_created);
    assert_eq!((again.users_added, again.users_skipped), (0, USERS as u64));
    assert_eq!(again.realm_resources_added, 0);
    assert!(again.realm_resources_skipped > 0, "{again:?}");
    assert_eq!(again.added(), 0);
    assert_eq!(source.users(REALM)?, target.users(REALM)?);
    Ok(())
}

#[tokio::test]
async fn errors_name_the_realm_and_the_status() -> Result<()> {
    let server = KeycloakServer::start("admin", "right").await?;
    let wrong = AdminCredentials {
        user: "admin".into(),
        password: "wrong".into(),
    };
    match AdminClient::connect(server.base_url(), &wrong).await {
        // Keycloak 26 answers a wrong password with 400 invalid_grant.
        Err(e @ AdminError::Login { .. }) => assert_eq!(e.status(), Some(400), "{e}"),
        other => bail!("expected a login failure, got {other:?}"),
    }

    let admin = AdminClient::connect(server.base_url(), &credentials(&server)).await?;
    match admin.export_realm("reg-admin").await {
        Err(e) => {
            assert_eq!(e.status(), Some(404), "{e}");
            assert!(e.to_string().contains("reg-admin"), "{e}");
        }
        Ok(_) => bail!("exporting a missing realm must fail"),
    }

    server.set_unavailable(true);
    match admin.realm_exists("reg-admin").await {
        Err(e) => assert_eq!(e.status(), Some(503), "{e}"),
        Ok(found) => bail!("an unavailable Keycloak answered {found}"),
    }
    Ok(())
}

#[test]
fn a_registry_owns_four_realms() {
    assert_eq!(
        registry_realms("reg"),
        [
            "reg-admin",
            "reg-citizen-portal",
            "reg-external-system",
            "reg-officer-portal"
        ]
    );
}
