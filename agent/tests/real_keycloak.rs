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

use anyhow::{Context, Result, ensure};
use ferry_agent::config::Password;
use ferry_testkit::keycloak::RealKeycloak;
use serde_json::Value;
use steps::*;

/// The registry's realms as the sandbox fixture seeds them: suffix, realm
/// roles, group paths.
const REALMS: &[(&str, &[&str], &[&str])] = &[
    (
        "admin",
        &["cp-registry-admin", "gerrit-administrators"],
        &["/administrators"],
    ),
    (
        "citizen-portal",
        &["citizen", "individual", "legal"],
        &["/citizens"],
    ),
    (
        "external-system",
        &["external-system", "trembita-invoker"],
        &["/systems"],
    ),
    (
        "officer-portal",
        &["officer", "head-officer"],
        &["/officers", "/officers/kyiv", "/officers/lviv"],
    ),
];
/// Users per realm; the last one has no password.
const USERS: usize = 3;

fn username(suffix: &str, i: usize) -> String {
    format!("{suffix}-user-{i:03}")
}

fn password(suffix: &str, i: usize) -> Option<String> {
    (i + 1 < USERS).then(|| format!("Pw-{suffix}-{i}!"))
}

/// One Keycloak under test, real or the sandbox's.
struct Kc {
    url: String,
    admin_user: String,
    admin_password: String,
    export_command: PathBuf,
    /// The real server has a user profile to open for unmanaged attributes;
    /// the sandbox keeps every attribute.
    real: bool,
}

impl Kc {
    fn real(kc: &RealKeycloak) -> Self {
        Kc {
            url: kc.url().to_owned(),
            admin_user: kc.admin_user().to_owned(),
            admin_password: kc.admin_password().to_owned(),
            export_command: kc.export_command().to_path_buf(),
            real: true,
        }
    }

    fn sandbox(cluster: &SandboxCluster, dir: &Path, id: &str) -> Result<Self> {
        let export_command = dir.join(format!("keycloak-export-{id}"));
        cluster.keycloak().write_export_command(&export_command)?;
        Ok(Kc {
            url: cluster.keycloak_url().to_owned(),
            admin_user: cluster.keycloak_admin_user().to_owned(),
            admin_password: cluster.keycloak_admin_password().to_owned(),
            export_command,
            real: false,
        })
    }
}

/// The Admin REST API of one Keycloak, as the test's own client.
struct Admin {
    url: String,
    token: String,
    http: reqwest::Client,
}

impl Admin {
    async fn login(kc: &Kc) -> Result<Self> {
        let http = reqwest::Client::new();
        let token = token(&http, &kc.url, "master", &kc.admin_user, &kc.admin_password)
            .await?
            .context("the bootstrap admin could not log in")?;
        Ok(Admin {
            url: kc.url.clone(),
            token,
            http,
        })
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}/admin/realms{path}", self.url))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let text = resp.text().await?;
        ensure!(
            status.is_success(),
            "{method} {path}: HTTP {status}: {text}"
        );
        Ok(if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)?
        })
    }

    async fn get(&self, path: &str) -> Result<Value> {
        self.send(reqwest::Method::GET, path, None).await
    }

    async fn user(&self, realm: &str, name: &str) -> Result<Value> {
        let found = self
            .get(&format!("/{realm}/users?username={name}&exact=true"))
            .await?;
        found
            .get(0)
            .cloned()
            .with_context(|| format!("no user {name} in {realm}"))
    }
}

/// A password grant through the realm's `admin-cli` client (public, direct
/// access grants on): `Some(access token)`, `None` when refused.
async fn token(
    http: &reqwest::Client,
    url: &str,
    realm: &str,
    user: &str,
    password: &str,
) -> Result<Option<String>> {
    let resp = http
        .post(format!(
            "{url}/realms/{realm}/protocol/openid-connect/token"
        ))
        .form(&[
            ("grant_type", "password"),
            ("client_id", "admin-cli"),
            ("username", user),
            ("password", password),
        ])
        .send()
        .await?;
    let status = resp.status();
    let body: Value = resp.json().await?;
    // Keycloak 26 answers a wrong password with 400 `invalid_grant`.
    if status == reqwest::StatusCode::UNAUTHORIZED || body["error"] == "invalid_grant" {
        return Ok(None);
    }
    ensure!(
        status.is_success(),
        "token for {user}@{realm}: HTTP {status}: {body}"
    );
    Ok(body["access_token"].as_str().map(str::to_owned))
}

/// The status a wrong password gets from the token endpoint.
async fn refusal(http: &reqwest::Client, url: &str, realm: &str, user: &str) -> Result<u16> {
    let resp = http
        .post(format!(
            "{url}/realms/{realm}/protocol/openid-connect/token"
        ))
        .form(&[
            ("grant_type", "password"),
            ("client_id", "admin-cli"),
            ("username", user),
            ("password", "certainly-not-it"),
        ])
        .send()
        .await?;
    Ok(resp.status().as_u16())
}

/// The four realms on A: roles, groups, a user profile keeping the
/// Platform's unmanaged attributes, users with passwords.
async fn seed(a: &Admin, real: bool) -> Result<()> {
    for (suffix, roles, groups) in REALMS {
        let realm = format!("{REG}-{suffix}");
        let mut top: Vec<Value> = Vec::new();
        for path in *groups {
            let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
            match parts.as_slice() {
                [name] => top.push(json!({"name": name, "subGroups": []})),
                [parent, name] => {
                    let parent = top
                        .iter_mut()
                        .find(|g| g["name"] == *parent)
                        .context("parent group first")?;
                    if let Some(subs) = parent["subGroups"].as_array_mut() {
                        subs.push(json!({"name": name}));
                    }
                }
                _ => anyhow::bail!("unexpected group path {path}"),
            }
        }
        let roles: Vec<Value> = roles.iter().map(|r| json!({"name": r})).collect();
        a.send(
            reqwest::Method::POST,
            "",
            Some(
                json!({"realm": realm, "enabled": true, "roles": {"realm": roles}, "groups": top}),
            ),
        )
        .await?;
        if real {
            let mut profile = a.get(&format!("/{realm}/users/profile")).await?;
            profile["unmanagedAttributePolicy"] = json!("ENABLED");
            a.send(
                reqwest::Method::PUT,
                &format!("/{realm}/users/profile"),
                Some(profile),
            )
            .await?;
        }
        let users: Vec<Value> = (0..USERS)
            .map(|i| {
                let name = username(suffix, i);
                let mut user = json!({
                    "username": name,
                    "enabled": true,
                    "emailVerified": true,
                    "firstName": format!("Name{i}"),
                    "lastName": suffix.replace('-', ""),
                    "email": format!("{name}@{REG}.example.com"),
                    "attributes": {
                        "fullName": [format!("User {i} of {realm}")],
                        "drfo": [format!("{:010}", 1_000_000 + i)],
                    },
                    "groups": [groups[i % groups.len()]],
                    "realmRoles": [roles[i % roles.len()]["name"]],
                });
                if let Some(pw) = password(suffix, i) {
                    user["credentials"] =
                        json!([{"type": "password", "value": pw, "temporary": false}]);
                }
                user
            })
            .collect();
        let r = a
            .send(
                reqwest::Method::POST,
                &format!("/{realm}/partialImport"),
                Some(json!({"ifResourceExists": "FAIL", "users": users})),
            )
            .await?;
        ensure!(r["added"] == USERS, "seeding {realm}: {r}");
    }
    Ok(())
}

/// The side's agent talking to `kc`, with Keycloak's export command when given.
fn with_keycloak(mut side: Side, kc: &Kc, export: bool) -> Side {
    let mut config = (*side.ctx.config).clone();
    config.keycloak_url = Some(kc.url.clone());
    config.keycloak_admin_user = Some(kc.admin_user.clone());
    config.keycloak_admin_password = Some(Password(kc.admin_password.clone()));
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
    let (admin_a, admin_b) = (Admin::login(kc_a).await?, Admin::login(kc_b).await?);
    seed(&admin_a, kc_a.real).await.with_context(logs)?;

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
        refusal(&http, &kc_b.url, "master", &kc_b.admin_user).await?,
        400
    );
    assert_eq!(refusal(&http, &kc_b.url, &officers, &officer).await?, 400);
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
                    let on_a = token(&http, &kc_a.url, &realm, &name, &pw).await?;
                    assert!(on_a.is_some(), "{name} cannot log in on A");
                    let on_b = token(&http, &kc_b.url, &realm, &name, &pw).await?;
                    assert!(
                        on_b.is_some(),
                        "{name} cannot log in on B with their password"
                    );
                    let wrong = token(&http, &kc_b.url, &realm, &name, "not-it").await?;
                    assert!(wrong.is_none(), "B let {name} in with a wrong password");
                }
                None => {
                    let none = token(&http, &kc_b.url, &realm, &name, "").await?;
                    assert!(none.is_none(), "{name} had no password on A");
                }
            }
        }
    }
    Ok(())
}
