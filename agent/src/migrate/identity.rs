//! Identity: the registry's four realms with their users, exported from the
//! source's Keycloak into a store (`<prefix><realm>.json`, one document per
//! realm, overwritten on a repeat) and imported on the target with the SKIP
//! strategy (realm first, then users), so a repeat adds nothing twice.
//!
//! Users' password hashes come from Keycloak's own export, run through the
//! configured export command after the Admin API export (so every user the
//! API listed is in it); they travel inside the realm's document and are
//! created with the user on the target, so a user logs in there with the
//! same password. Without the command users arrive without credentials.

use ferry_common::pb;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;

use super::Step;
use super::cluster::{absent_if_missing, get_dynamic, routes};
use super::error::{Result, StepError, kube_err};
use super::storage;
use crate::keycloak::{AdminClient, AdminCredentials, ExportCommand, RealmExport, registry_realms};
use crate::platform::{KEYCLOAK_NAMESPACE, KEYCLOAK_ROUTE, route_url};
use crate::relay::RelayContext;

/// The master-realm admin when the configuration names none.
const DEFAULT_ADMIN_USER: &str = "admin";

pub(super) async fn export(
    step: &Step<'_>,
    cmd: &pb::ExportIdentityStep,
) -> Result<pb::IdentityReport> {
    let scope = step.ctx.stores.scoped(&cmd.store, &cmd.prefix)?;
    let keycloak = admin(step.ctx, &step.client).await?;
    let realms = registry_realms(step.registry);
    let mut exports = Vec::new();
    for realm in &realms {
        if !keycloak.realm_exists(realm).await? {
            return Err(StepError::State(format!(
                "realm {realm} does not exist in Keycloak at {}; the registry's realms are \
                 {}; create it (or restore it) on the source and retry",
                keycloak.base_url(),
                registry_realms(step.registry).join(", ")
            )));
        }
        exports.push(keycloak.export_realm(realm).await?);
    }
    let credentials = match &step.ctx.config.keycloak_export_command {
        Some(program) => Some(ExportCommand::new(program).credentials(&realms).await?),
        None => {
            tracing::warn!(
                "no --keycloak-export-command: users are exported without their passwords and \
                 will have to reset them on the target"
            );
            None
        }
    };
    let mut report = pb::IdentityReport::default();
    for mut exported in exports {
        let realm = exported.realm.clone();
        if let Some(credentials) = &credentials {
            let with = credentials.attach(&realm, &mut exported.users);
            tracing::info!(
                realm,
                users = exported.users.len(),
                with_credentials = with,
                "attached users' credentials"
            );
        }
        let json = exported.to_json().map_err(|e| {
            StepError::State(format!("could not encode the export of realm {realm}: {e}"))
        })?;
        storage::put(&scope, &document(&realm), json).await?;
        report.realms.push(pb::RealmCount {
            realm,
            users: exported.users.len() as u64,
            ..Default::default()
        });
    }
    Ok(report)
}

pub(super) async fn import(
    step: &Step<'_>,
    cmd: &pb::ImportIdentityStep,
) -> Result<pb::IdentityReport> {
    let scope = step.ctx.stores.scoped(&cmd.store, &cmd.prefix)?;
    // Every document is read and checked before anything is imported.
    let mut exports = Vec::new();
    for realm in registry_realms(step.registry) {
        let key = document(&realm);
        let bytes = storage::get(&scope, &key).await?;
        let export = RealmExport::from_json(&bytes).map_err(|e| {
            StepError::State(format!(
                "{key} in store {} under {:?} is not a realm export ({e}); export identity \
                 again on the source and transfer it",
                cmd.store, cmd.prefix
            ))
        })?;
        if export.realm != realm {
            return Err(StepError::State(format!(
                "{key} in store {} holds realm {:?}, not {realm}; export identity again on \
                 the source and transfer it",
                cmd.store, export.realm
            )));
        }
        exports.push(export);
    }
    let keycloak = admin(step.ctx, &step.client).await?;
    let mut report = pb::IdentityReport::default();
    for export in &exports {
        let summary = keycloak.import_realm(export).await?;
        report.realms.push(pb::RealmCount {
            realm: export.realm.clone(),
            users: export.users.len() as u64,
            created: summary.users_added,
            skipped: summary.users_skipped,
        });
    }
    Ok(report)
}

/// The key of a realm's document under the step's prefix.
fn document(realm: &str) -> String {
    format!("{realm}.json")
}

/// A logged-in admin client for this cluster's Keycloak: its URL from the
/// configuration or its route, its credentials from the configuration or
/// the admin Secret in Keycloak's namespace.
pub(crate) async fn admin(ctx: &RelayContext, client: &Client) -> Result<AdminClient> {
    let config = &ctx.config;
    let url = match &config.keycloak_url {
        Some(url) => url.clone(),
        None => get_dynamic(client, &routes(), Some(KEYCLOAK_NAMESPACE), KEYCLOAK_ROUTE)
            .await?
            .as_ref()
            .and_then(route_url)
            .ok_or_else(|| {
                StepError::State(format!(
                    "Keycloak's URL is unknown: no route {KEYCLOAK_NAMESPACE}/{KEYCLOAK_ROUTE} \
                     with a host; start the agent with --keycloak-url"
                ))
            })?,
    };
    let credentials = match &config.keycloak_admin_password {
        Some(password) => AdminCredentials {
            user: config
                .keycloak_admin_user
                .clone()
                .unwrap_or_else(|| DEFAULT_ADMIN_USER.into()),
            password: password.0.clone(),
        },
        None => secret_credentials(client, &config.keycloak_admin_secret).await?,
    };
    Ok(AdminClient::connect(&url, &credentials).await?)
}

async fn secret_credentials(client: &Client, name: &str) -> Result<AdminCredentials> {
    let ns = KEYCLOAK_NAMESPACE;
    let what = format!("secret {ns}/{name}");
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let secret = absent_if_missing(api.get(name).await).map_err(kube_err("read", &what))?;
    let missing = || {
        StepError::State(format!(
            "no Keycloak admin credentials: {what} with keys `username` and `password` is \
             missing or incomplete; create it, or start the agent with \
             --keycloak-admin-password"
        ))
    };
    let data = secret.and_then(|s| s.data).ok_or_else(missing)?;
    let field = |key: &str| {
        data.get(key)
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
            .filter(|v| !v.is_empty())
    };
    Ok(AdminCredentials {
        user: field("username").unwrap_or_else(|| DEFAULT_ADMIN_USER.into()),
        password: field("password").ok_or_else(missing)?,
    })
}
