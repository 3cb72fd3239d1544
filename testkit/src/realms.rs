//! A registry's four realms as tests seed them into any Keycloak (a real
//! server or the sandbox's), through Keycloak's Admin REST API, and what a
//! test checks with them: users as the admin API shows them, and password
//! grants at the token endpoint.

use anyhow::{Context, ensure};
use serde_json::{Value, json};

/// Suffix, realm roles and group paths of each realm, as the sandbox
/// fixture has them.
pub const REALMS: &[(&str, &[&str], &[&str])] = &[
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
pub const USERS: usize = 3;

pub fn username(suffix: &str, i: usize) -> String {
    format!("{suffix}-user-{i:03}")
}

/// The password of user `i` of a realm, `None` for the last.
pub fn password(suffix: &str, i: usize) -> Option<String> {
    (i + 1 < USERS).then(|| format!("Pw-{suffix}-{i}!"))
}

/// One Keycloak's address and bootstrap admin.
#[derive(Debug, Clone)]
pub struct Keycloak {
    pub url: String,
    pub admin_user: String,
    pub admin_password: String,
    /// The real server has a user profile to open for unmanaged
    /// attributes; the sandbox keeps every attribute.
    pub real: bool,
}

/// The Admin REST API of one Keycloak, as a test's own client.
pub struct Admin {
    url: String,
    token: String,
    http: reqwest::Client,
}

impl Admin {
    pub async fn login(kc: &Keycloak) -> anyhow::Result<Self> {
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

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
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

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(reqwest::Method::GET, path, None).await
    }

    pub async fn user(&self, realm: &str, name: &str) -> anyhow::Result<Value> {
        let found = self
            .get(&format!("/{realm}/users?username={name}&exact=true"))
            .await?;
        found
            .get(0)
            .cloned()
            .with_context(|| format!("no user {name} in {realm}"))
    }

    /// The four realms of `registry`: roles, groups, a user profile keeping
    /// the Platform's unmanaged attributes (real Keycloak), users with
    /// attributes, a group and a realm role each, and passwords.
    pub async fn seed(&self, registry: &str, real: bool) -> anyhow::Result<()> {
        for (suffix, roles, groups) in REALMS {
            let realm = format!("{registry}-{suffix}");
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
            self.send(
                reqwest::Method::POST,
                "",
                Some(
                    json!({"realm": realm, "enabled": true, "roles": {"realm": roles}, "groups": top}),
                ),
            )
            .await?;
            if real {
                let mut profile = self.get(&format!("/{realm}/users/profile")).await?;
                profile["unmanagedAttributePolicy"] = json!("ENABLED");
                self.send(
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
                        "email": format!("{name}@{registry}.example.com"),
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
            let r = self
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
}

/// A password grant through the realm's `admin-cli` client (public, direct
/// access grants on): `Some(access token)`, `None` when refused.
pub async fn token(
    http: &reqwest::Client,
    url: &str,
    realm: &str,
    user: &str,
    password: &str,
) -> anyhow::Result<Option<String>> {
    let resp = grant(http, url, realm, user, password).await?;
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
pub async fn refusal(
    http: &reqwest::Client,
    url: &str,
    realm: &str,
    user: &str,
) -> anyhow::Result<u16> {
    Ok(grant(http, url, realm, user, "certainly-not-it")
        .await?
        .status()
        .as_u16())
}

async fn grant(
    http: &reqwest::Client,
    url: &str,
    realm: &str,
    user: &str,
    password: &str,
) -> anyhow::Result<reqwest::Response> {
    http.post(format!(
        "{url}/realms/{realm}/protocol/openid-connect/token"
    ))
    .form(&[
        ("grant_type", "password"),
        ("client_id", "admin-cli"),
        ("username", user),
        ("password", password),
    ])
    .send()
    .await
    .with_context(|| format!("asking {url} for a token of {user}@{realm}"))
}
