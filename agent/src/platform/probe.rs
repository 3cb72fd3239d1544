//! Gathering the facts: a handful of reads, each of which may find nothing.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams};
use kube::{Client, ResourceExt};

use super::error::{ProbeError, Result};
use super::markers::{CODEBASE_GROUP, CODEBASE_PLURAL, CODEBASE_VERSION, Markers};
use super::model::{
    ClusterProbe, KeycloakFacts, RegistryInfo, StorageLocationInfo, VeleroFacts, WorkloadFacts,
};
use crate::velero;

/// How to probe.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    pub markers: Markers,
    /// The Keycloak base URL the agent was configured with; when `None`, it
    /// is taken from the Keycloak route.
    pub keycloak_url: Option<String>,
    /// Ask Keycloak whether it answers (`GET <url>/realms/master`).
    pub check_keycloak: bool,
    /// Bound on that check.
    pub keycloak_timeout: Duration,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            markers: Markers::default(),
            keycloak_url: None,
            check_keycloak: true,
            keycloak_timeout: Duration::from_secs(5),
        }
    }
}

/// Probes the cluster behind `client`. Fails only when the cluster cannot be
/// read at all or refuses a read; a missing Platform yields absent facts.
pub async fn probe(client: &Client, options: &ProbeOptions) -> Result<ClusterProbe> {
    let m = &options.markers;
    let namespaces = namespaces(client).await?;
    let (platform_version, registries) = codebases(client, m, &namespaces).await?;
    let gerrit = workload(client, &m.control_plane_namespace, &m.gerrit_deployment).await?;
    let nexus = workload(client, &m.control_plane_namespace, &m.nexus_deployment).await?;
    let keycloak = keycloak(client, options, &namespaces).await?;
    let velero = velero_facts(client, m, &namespaces).await?;
    let probe = ClusterProbe {
        platform_version,
        registries,
        keycloak,
        gerrit,
        nexus,
        velero,
    };
    tracing::debug!(?probe, "cluster probed");
    Ok(probe)
}

fn api_err(
    action: &'static str,
    what: impl Into<String>,
) -> impl FnOnce(kube::Error) -> ProbeError {
    let what = what.into();
    move |source| ProbeError::Api {
        action,
        what,
        source,
    }
}

/// `None` for "not found": an API group that is not served, or an object
/// that does not exist, means the fact is absent.
fn absent_if_missing<T>(result: kube::Result<T>) -> kube::Result<Option<T>> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(e) => Err(e),
    }
}

async fn namespaces(client: &Client) -> Result<BTreeSet<String>> {
    let api: Api<Namespace> = Api::all(client.clone());
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(api_err("list", "namespaces"))?;
    Ok(list.items.iter().map(|ns| ns.name_any()).collect())
}

fn codebase_resource() -> ApiResource {
    let gvk = GroupVersionKind::gvk(CODEBASE_GROUP, CODEBASE_VERSION, "Codebase");
    ApiResource::from_gvk_with_plural(&gvk, CODEBASE_PLURAL)
}

fn default_branch(codebase: &DynamicObject) -> Option<String> {
    codebase.data["spec"]["defaultBranch"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The Platform version and the registries, both from `Codebase`s. A
/// registry is a Codebase named like an existing namespace (the registry's
/// own namespace), whether the Codebase sits in that namespace or in the
/// control plane's.
async fn codebases(
    client: &Client,
    m: &Markers,
    namespaces: &BTreeSet<String>,
) -> Result<(Option<String>, Vec<RegistryInfo>)> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &codebase_resource());
    let Some(list) = absent_if_missing(api.list(&ListParams::default()).await)
        .map_err(api_err("list", "codebases.v2.edp.epam.com"))?
    else {
        return Ok((None, Vec::new()));
    };
    let mut platform_version = None;
    let mut registries: Vec<RegistryInfo> = Vec::new();
    for cb in &list.items {
        let name = cb.name_any();
        let namespace = cb.namespace().unwrap_or_default();
        if name == m.platform_codebase {
            if namespace == m.control_plane_namespace {
                platform_version = default_branch(cb);
            }
            continue;
        }
        let is_registry = namespaces.contains(&name)
            && name != m.control_plane_namespace
            && !registries.iter().any(|r| r.name == name);
        if is_registry {
            registries.push(RegistryInfo {
                name,
                version: default_branch(cb),
                codebase_namespace: namespace,
            });
        }
    }
    registries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((platform_version, registries))
}

async fn workload(client: &Client, namespace: &str, name: &str) -> Result<WorkloadFacts> {
    let api: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let found = absent_if_missing(api.get(name).await)
        .map_err(api_err("read", format!("deployment {namespace}/{name}")))?;
    Ok(match found {
        None => WorkloadFacts::default(),
        Some(d) => WorkloadFacts {
            present: true,
            replicas: d.spec.replicas.unwrap_or(1),
            ready_replicas: d
                .status
                .as_ref()
                .and_then(|s| s.ready_replicas)
                .unwrap_or(0),
        },
    })
}

pub(crate) fn route_resource() -> ApiResource {
    let gvk = GroupVersionKind::gvk("route.openshift.io", "v1", "Route");
    ApiResource::from_gvk_with_plural(&gvk, "routes")
}

async fn keycloak(
    client: &Client,
    options: &ProbeOptions,
    namespaces: &BTreeSet<String>,
) -> Result<KeycloakFacts> {
    let m = &options.markers;
    let namespace = namespaces.contains(&m.keycloak_namespace);
    let mut url = options.keycloak_url.clone();
    if url.is_none() && namespace {
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &m.keycloak_namespace, &route_resource());
        let route = absent_if_missing(api.get(&m.keycloak_route).await).map_err(api_err(
            "read",
            format!("route {}/{}", m.keycloak_namespace, m.keycloak_route),
        ))?;
        url = route.as_ref().and_then(route_url);
    }
    let reachable = match (&url, options.check_keycloak) {
        (Some(url), true) => Some(crate::keycloak::ping(url, options.keycloak_timeout).await),
        _ => None,
    };
    Ok(KeycloakFacts {
        namespace,
        url,
        reachable,
    })
}

/// `https://<host>` for a route with TLS, `http://<host>` without.
pub(crate) fn route_url(route: &DynamicObject) -> Option<String> {
    let spec = &route.data["spec"];
    let host = spec["host"].as_str().filter(|h| !h.is_empty())?;
    let scheme = if spec["tls"].is_object() {
        "https"
    } else {
        "http"
    };
    Some(format!("{scheme}://{host}"))
}

async fn velero_facts(
    client: &Client,
    m: &Markers,
    namespaces: &BTreeSet<String>,
) -> Result<VeleroFacts> {
    let namespace = namespaces.contains(&m.velero_namespace);
    let group = format!("{}/{}", velero::GROUP, velero::VERSION);
    let served = absent_if_missing(client.list_api_group_resources(&group).await)
        .map_err(api_err("discover", group.clone()))?;
    let crds = served.is_some_and(|list| {
        list.resources
            .iter()
            .any(|r| r.name == "backupstoragelocations")
    });
    let mut locations = Vec::new();
    if namespace && crds {
        let found = velero::list_locations(client, &m.velero_namespace).await?;
        locations = found
            .iter()
            .map(|bsl| StorageLocationInfo {
                name: bsl.name_any(),
                phase: bsl.phase().map(str::to_owned),
                bucket: bsl.spec.object_storage.bucket.clone(),
                prefix: bsl.spec.object_storage.prefix.clone(),
                default: bsl.spec.default.unwrap_or(false),
            })
            .collect();
        locations.sort_by(|a, b| a.name.cmp(&b.name));
    }
    Ok(VeleroFacts {
        namespace,
        crds,
        locations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn route_url_follows_tls() -> serde_json::Result<()> {
        let mut route: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "route.openshift.io/v1", "kind": "Route",
            "metadata": {"name": "keycloak"},
            "spec": {"host": "keycloak.apps.example.com", "tls": {"termination": "edge"}}
        }))?;
        assert_eq!(
            route_url(&route).as_deref(),
            Some("https://keycloak.apps.example.com")
        );
        route.data["spec"]["tls"] = serde_json::Value::Null;
        assert_eq!(
            route_url(&route).as_deref(),
            Some("http://keycloak.apps.example.com")
        );
        Ok(())
    }
}
