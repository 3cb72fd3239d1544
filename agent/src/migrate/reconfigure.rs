//! Reconfigure: the Platform's fixes after a restore, in the registry's
//! namespace: the source's wildcard DNS rewritten to the target's, the
//! database role passwords reset, keycloak-operator restarted, and the
//! workloads scaled back up.
//!
//! Report fields `rewritten`, `changed` and `workloads_scaled` count what
//! this run changed (a repeat reports 0); `allowlists`, `passwords_reset`
//! and `keycloak_operator_restarted` describe the state reached, whether by
//! this run or an earlier one of the same migration.

use ferry_common::pb;
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

use super::cluster::{absent_if_missing, keycloak_realms, list_all, routes, typed, workload_kinds};
use super::error::{Result, StepError, kube_err};
use super::rewrite::{replace_domain, rewrite_json};
use super::{Step, quiesce, require};

/// Set on a PGO role Secret once its password reset was asked for.
pub const PASSWORD_RESET_ANNOTATION: &str = "ferry.io/password-reset";
/// Set on keycloak-operator once it was restarted for a migration.
const RESTARTED_FOR_ANNOTATION: &str = "ferry.io/restarted-for";
const RESTARTED_AT_ANNOTATION: &str = "kubectl.kubernetes.io/restartedAt";
/// The registry's allow-list of Nexus route hosts.
const NEXUS_ALLOWLIST: &str = "nexus-allowlist";
const KEYCLOAK_OPERATOR: &str = "keycloak-operator";
/// Writes lost to a concurrent change are retried this many times.
const ATTEMPTS: usize = 5;

pub(super) async fn run(
    step: &Step<'_>,
    cmd: &pb::ReconfigureStep,
) -> Result<pb::ReconfigureReport> {
    require(&cmd.from_apps_domain, "from_apps_domain")?;
    require(&cmd.to_apps_domain, "to_apps_domain")?;
    require(step.migration_id, "migration_id")?;
    let (client, ns) = (&step.client, step.registry);
    if super::cluster::namespace(client, ns).await?.is_none() {
        return Err(StepError::State(format!(
            "namespace {ns} does not exist on this cluster; restore the registry first"
        )));
    }
    let (from, to) = (cmd.from_apps_domain.as_str(), cmd.to_apps_domain.as_str());
    let mut report = pb::ReconfigureReport::default();
    for (word, ar, field) in rewritten_kinds() {
        for name in rewrite_dynamic(client, ns, &ar, field, from, to).await? {
            report.changed.push(format!("{word}/{name}"));
        }
    }
    for name in rewrite_secrets(client, ns, from, to).await? {
        report.changed.push(format!("secret/{name}"));
    }
    report.rewritten = report.changed.len() as u32;
    report.allowlists = allowlists(client, ns, to).await?;
    report.passwords_reset = reset_passwords(client, ns, step.migration_id).await?;
    report.keycloak_operator_restarted =
        restart_keycloak_operator(client, ns, step.migration_id).await?;
    report.workloads_scaled = quiesce::scale(client, ns, true).await?.changed;
    tracing::info!(namespace = ns, ?report, "registry reconfigured");
    Ok(report)
}

/// The kinds whose content is rewritten, the word reports use, and the
/// field walked (`data` of ConfigMaps, `spec` of the rest). Status is left
/// to the controllers that own it.
fn rewritten_kinds() -> Vec<(&'static str, ApiResource, &'static str)> {
    let [(d, deployments), (s, statefulsets)] = workload_kinds();
    vec![
        ("configmap", ApiResource::erase::<ConfigMap>(&()), "data"),
        ("route", routes(), "spec"),
        (d, deployments, "spec"),
        (s, statefulsets, "spec"),
        ("keycloakrealm", keycloak_realms(), "spec"),
    ]
}

/// Rewrites `field` of every object of `ar` in `ns`; returns the names changed.
async fn rewrite_dynamic(
    client: &Client,
    ns: &str,
    ar: &ApiResource,
    field: &str,
    from: &str,
    to: &str,
) -> Result<Vec<String>> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, ar);
    let plural = &ar.plural;
    let mut changed = Vec::new();
    for obj in list_all(&api, &format!("{plural} in namespace {ns}")).await? {
        let name = obj.name_any();
        let what = format!("{} {ns}/{name}", ar.kind);
        let mut current = obj;
        for attempt in 1..=ATTEMPTS {
            let mut new = typed(current.clone(), ar);
            let rewritten = new
                .data
                .get_mut(field)
                .is_some_and(|v| rewrite_json(v, from, to));
            if !rewritten {
                break;
            }
            match api.replace(&name, &PostParams::default(), &new).await {
                Ok(_) => {
                    changed.push(name.clone());
                    break;
                }
                Err(kube::Error::Api(s)) if s.code == 409 && attempt < ATTEMPTS => {
                    current = api.get(&name).await.map_err(kube_err("read", &what))?;
                }
                Err(kube::Error::Api(s)) if s.code == 404 => break,
                Err(e) => return Err(kube_err("rewrite", what)(e)),
            }
        }
    }
    Ok(changed)
}

/// Rewrites the decoded text values of every Secret in `ns`.
async fn rewrite_secrets(client: &Client, ns: &str, from: &str, to: &str) -> Result<Vec<String>> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let mut changed = Vec::new();
    for secret in list_all(&api, &format!("secrets in namespace {ns}")).await? {
        let name = secret.name_any();
        let what = format!("Secret {ns}/{name}");
        let mut current = secret;
        for attempt in 1..=ATTEMPTS {
            let Some(new) = rewritten_secret(&current, from, to) else {
                break;
            };
            match api.replace(&name, &PostParams::default(), &new).await {
                Ok(_) => {
                    changed.push(name.clone());
                    break;
                }
                Err(kube::Error::Api(s)) if s.code == 409 && attempt < ATTEMPTS => {
                    current = api.get(&name).await.map_err(kube_err("read", &what))?;
                }
                Err(kube::Error::Api(s)) if s.code == 404 => break,
                Err(e) => return Err(kube_err("rewrite", what)(e)),
            }
        }
    }
    Ok(changed)
}

/// The Secret with its UTF-8 values rewritten; binary values are left alone.
fn rewritten_secret(secret: &Secret, from: &str, to: &str) -> Option<Secret> {
    let mut new = secret.clone();
    let mut changed = false;
    for value in new.data.iter_mut().flat_map(|d| d.values_mut()) {
        let Ok(text) = std::str::from_utf8(&value.0) else {
            continue;
        };
        if let Some(rewritten) = replace_domain(text, from, to) {
            *value = ByteString(rewritten.into_bytes());
            changed = true;
        }
    }
    changed.then_some(new)
}

/// Allow-lists (the `nexus-allowlist` ConfigMap) that name the target.
async fn allowlists(client: &Client, ns: &str, to: &str) -> Result<u32> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let cm = absent_if_missing(api.get(NEXUS_ALLOWLIST).await).map_err(kube_err(
        "read",
        format!("ConfigMap {ns}/{NEXUS_ALLOWLIST}"),
    ))?;
    let names_target = cm
        .and_then(|cm| cm.data)
        .is_some_and(|d| d.values().any(|v| v.contains(to)));
    Ok(u32::from(names_target))
}

/// Crunchy PGO v5 role Secrets (`<cluster>-pguser-<user>`): without their
/// `verifier` PGO derives a new one from `password` and sets the role's
/// password with ALTER ROLE, so the restored database takes the Secret's
/// password. Returns how many carry this migration's reset mark.
async fn reset_passwords(client: &Client, ns: &str, migration_id: &str) -> Result<u32> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let mut reset = 0;
    for secret in list_all(&api, &format!("secrets in namespace {ns}")).await? {
        let name = secret.name_any();
        if !name.contains("-pguser-") {
            continue;
        }
        let done =
            secret.annotations().get(PASSWORD_RESET_ANNOTATION) == Some(&migration_id.to_owned());
        if !done {
            let patch = json!({
                "metadata": {"annotations": {PASSWORD_RESET_ANNOTATION: migration_id}},
                "data": {"verifier": null},
            });
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(kube_err(
                    "reset the password of",
                    format!("Secret {ns}/{name}"),
                ))?;
        }
        reset += 1;
    }
    Ok(reset)
}

/// Restarts keycloak-operator once per migration (a pod-template annotation,
/// as `kubectl rollout restart` does); `false` when the registry has none.
async fn restart_keycloak_operator(client: &Client, ns: &str, migration_id: &str) -> Result<bool> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let what = format!("deployments of {KEYCLOAK_OPERATOR} in namespace {ns}");
    let by_label =
        ListParams::default().labels(&format!("app.kubernetes.io/name={KEYCLOAK_OPERATOR}"));
    let mut found = api
        .list(&by_label)
        .await
        .map_err(kube_err("list", &what))?
        .items;
    if found.is_empty() {
        let by_name =
            absent_if_missing(api.get(KEYCLOAK_OPERATOR).await).map_err(kube_err("read", &what))?;
        found.extend(by_name);
    }
    for d in &found {
        let name = d.name_any();
        if d.annotations().get(RESTARTED_FOR_ANNOTATION) == Some(&migration_id.to_owned()) {
            continue;
        }
        let patch = json!({
            "metadata": {"annotations": {RESTARTED_FOR_ANNOTATION: migration_id}},
            "spec": {"template": {"metadata": {"annotations": {
                RESTARTED_AT_ANNOTATION: jiff::Timestamp::now().to_string(),
            }}}},
        });
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(kube_err("restart", format!("Deployment {ns}/{name}")))?;
    }
    Ok(!found.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn secrets_rewrite_text_values_only() {
        let mut data = BTreeMap::new();
        data.insert(
            "url".to_owned(),
            ByteString(b"https://kc.apps.a.example.com".to_vec()),
        );
        data.insert("bin".to_owned(), ByteString(vec![0xff, 0xfe]));
        let secret = Secret {
            data: Some(data),
            ..Default::default()
        };
        let new = rewritten_secret(&secret, "apps.a.example.com", "apps.b.example.com");
        let url = new
            .as_ref()
            .and_then(|s| s.data.as_ref())
            .and_then(|d| d.get("url"))
            .map(|v| v.0.clone());
        assert_eq!(url, Some(b"https://kc.apps.b.example.com".to_vec()));
        let again =
            new.and_then(|s| rewritten_secret(&s, "apps.a.example.com", "apps.b.example.com"));
        assert!(again.is_none());
    }
}
