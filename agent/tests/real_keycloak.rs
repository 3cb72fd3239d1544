//! The identity steps against two real Keycloak servers (26.x, each over its
//! own PostgreSQL): the registry's four realms, seeded on A with roles,
//! groups and users (attributes, group memberships, realm-role mappings,
//! passwords), exported by the agent on A into A's bucket, copied to B's
//! bucket as the relay would, imported by the agent on B with SKIP — and a
//! user logs in on B with the password they had on A. The same scenario
//! runs against two sandbox Keycloaks, which must behave the same.

#[macro_use]
mod steps;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use ferry_agent::config::Password;
use ferry_testkit::keycloak::RealKeycloak;
use ferry_testkit::realms::{Admin, Keycloak, REALMS, USERS, password, refusal, token, username};
use serde_json::Value;
use steps::*;

/// One Keycloak under test, real or the sandbox's, and its export command.
struct Kc {
    access: Keycloak,
    export_command: PathBuf,
}

impl Kc {
    fn real(kc: &RealKeycloak) -> Self {
        Kc {
            access: kc.access(),
            export_command: kc.export_command().to_path_buf(),
        }
    }

    fn sandbox(cluster: &SandboxCluster, dir: &Path, id: &str) -> Result<Self> {
        let export_command = dir.join(format!("keycloak-export-{id}"));
        cluster.keycloak().write_export_command(&export_command)?;
        Ok(Kc {
            access: Keycloak {
                url: cluster.keycloak_url().to_owned(),
                admin_user: cluster.keycloak_admin_user().to_owned(),
                admin_password: cluster.keycloak_admin_password().to_owned(),
                real: false,
            },
            export_command,
        })
    }
}

/// The side's agent talking to `kc`, with Keycloak's export command when given.
fn with_keycloak(mut side: Side, kc: &Kc, export: bool) -> Side {
    let mut config = (*side.ctx.config).clone();
    config.keycloak_url = Some(kc.access.url.clone());
    config.keycloak_admin_user = Some(kc.access.admin_user.clone());
    config.keycloak_admin_password = Some(Password(kc.access.admin_password.clone()));
    config.keycloak_export_command = export.then(|| kc.export_command.clone());
    side.ctx.config = Arc::new(config);
    side
}

async fn identity(side: &Side, export: bool) -> Result<pb::IdentityReport> {
    let (store, prefix) = ("backups".to_owned(), IDENTITY_PREFIX.to_owned());
    let kind = if export {
        Kind::ExportIdentity(pb::ExportIdentityStep { store, prefix })
    } else {
        Kind::ImportIdentity(pb::ImportIdentityStep { store, prefix })
    };
    Ok(expect!(step(side, kind).await?, Identity))
}

#[tokio::test(flavor = "multi_thread")]
async fn realms_users_and_passwords_reach_a_real_keycloak() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (kc_a, kc_b, a, b) = tokio::try_join!(
        RealKeycloak::start(),
        RealKeycloak::start(),
        side(dir.path(), "a", target_seed()),
        side(dir.path(), "b", target_seed()),
    )?;
    let logs = || format!("{}\n{}", kc_a.log_tail(), kc_b.log_tail());
    carry(a, &Kc::real(&kc_a), b, &Kc::real(&kc_b), &logs).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sandbox_keycloak_carries_passwords_the_same_way() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (a, b) = tokio::try_join!(
        side(dir.path(), "a", target_seed()),
        side(dir.path(), "b", target_seed()),
    )?;
    let kc_a = Kc::sandbox(&a.cluster, dir.path(), "a")?;
    let kc_b = Kc::sandbox(&b.cluster, dir.path(), "b")?;
    carry(a, &kc_a, b, &kc_b, &String::new).await
}

/// Seeds A, exports on A (with Keycloak's export), copies the documents to
/// B's bucket, imports on B twice, and checks B user by user.
async fn carry(a: Side, kc_a: &Kc, b: Side, kc_b: &Kc, logs: &dyn Fn() -> String) -> Result<()> {
    let (a, b) = (with_keycloak(a, kc_a, true), with_keycloak(b, kc_b, false));
    let (admin_a, admin_b) = (
        Admin::login(&kc_a.access).await?,
        Admin::login(&kc_b.access).await?,
    );
    admin_a
        .seed(REG, kc_a.access.real)
        .await
        .with_context(logs)?;

    let exported = identity(&a, true).await.with_context(logs)?;
    assert_eq!(exported.realms.len(), 4, "{exported:?}");
    assert!(
        exported.realms.iter().all(|r| r.users == USERS as u64),
        "{exported:?}"
    );
    // The hashes travel inside the realm's document, as Keycloak stores them.
    let (sa, sb) = (a.cluster.s3(), b.cluster.s3());
    let officers = format!("{IDENTITY_PREFIX}{REG}-officer-portal.json");
    let doc: Value =
        serde_json::from_slice(&sa.get_object(a.cluster.bsl_bucket(), &officers).await?)?;
    let first = &doc["users"][0];
    assert_eq!(first["username"], username("officer-portal", 0));
    let secret = first["credentials"][0]["secretData"].as_str().unwrap_or("");
    assert!(secret.contains("salt"), "no hash carried: {first}");
    let copied = copy(
        sa,
        a.cluster.bsl_bucket(),
        sb,
        b.cluster.bsl_bucket(),
        IDENTITY_PREFIX,
    )
    .await?;
    assert_eq!(copied, 4);

    let imported = identity(&b, false).await.with_context(logs)?;
    assert!(
        imported
            .realms
            .iter()
            .all(|r| r.created == USERS as u64 && r.skipped == 0),
        "{imported:?}"
    );
    let again = identity(&b, false).await.with_context(logs)?;
    assert!(
        again
            .realms
            .iter()
            .all(|r| r.created == 0 && r.skipped == USERS as u64),
        "{again:?}"
    );

    let http = reqwest::Client::new();
    // RFC 6749 §5.2: invalid_grant is a 400, which Keycloak 26 answers, in
    // the master realm and in a registry's alike.
    let officer = username("officer-portal", 0);
    let officers = format!("{REG}-officer-portal");
    assert_eq!(
        refusal(&http, &kc_b.access.url, "master", &kc_b.access.admin_user).await?,
        400
    );
    assert_eq!(
        refusal(&http, &kc_b.access.url, &officers, &officer).await?,
        400
    );
    for (suffix, roles, groups) in REALMS {
        let realm = format!("{REG}-{suffix}");
        for i in 0..USERS {
            let name = username(suffix, i);
            let (on_a, on_b) = (
                admin_a.user(&realm, &name).await?,
                admin_b.user(&realm, &name).await?,
            );
            for field in [
                "id",
                "email",
                "firstName",
                "lastName",
                "enabled",
                "attributes",
            ] {
                assert_eq!(on_b[field], on_a[field], "{field} of {name} in {realm}");
            }
            assert_eq!(
                on_b["attributes"]["drfo"][0],
                format!("{:010}", 1_000_000 + i)
            );
            let id = on_b["id"].as_str().context("user id")?;
            let member_of = admin_b.get(&format!("/{realm}/users/{id}/groups")).await?;
            let paths: Vec<&str> = member_of
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|g| g["path"].as_str())
                .collect();
            assert_eq!(paths, [groups[i % groups.len()]], "groups of {name}");
            let mapped = admin_b
                .get(&format!("/{realm}/users/{id}/role-mappings/realm"))
                .await?;
            let role = roles[i % roles.len()];
            assert!(
                mapped
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|r| r["name"] == role),
                "{name} lost role {role}: {mapped}"
            );
            match password(suffix, i) {
                Some(pw) => {
                    let on_a = token(&http, &kc_a.access.url, &realm, &name, &pw).await?;
                    assert!(on_a.is_some(), "{name} cannot log in on A");
                    let on_b = token(&http, &kc_b.access.url, &realm, &name, &pw).await?;
                    assert!(
                        on_b.is_some(),
                        "{name} cannot log in on B with their password"
                    );
                    let wrong = token(&http, &kc_b.access.url, &realm, &name, "not-it").await?;
                    assert!(wrong.is_none(), "B let {name} in with a wrong password");
                }
                None => {
                    let none = token(&http, &kc_b.access.url, &realm, &name, "").await?;
                    assert!(none.is_none(), "{name} had no password on A");
                }
            }
        }
    }
    Ok(())
}
