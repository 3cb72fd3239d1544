//! Kubernetes helpers the steps share: the client, the Platform's resource
//! types, paged lists, and "absent is not an error".

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Client;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, ObjectList};
use serde::de::DeserializeOwned;

use super::error::{Result, StepError, kube_err};
use crate::platform::{self, CODEBASE_GROUP, CODEBASE_PLURAL, CODEBASE_VERSION};
use crate::relay::RelayContext;

/// Objects per list request.
const PAGE: u32 = 500;

pub(crate) async fn client(ctx: &RelayContext) -> Result<Client> {
    let config = &ctx.config;
    if config.kubeconfig.is_none() && !config.in_cluster {
        return Err(StepError::NoCluster);
    }
    Ok(platform::connect(config.kubeconfig.as_deref()).await?)
}

/// `None` for 404: an object that does not exist, or a type not served.
pub(crate) fn absent_if_missing<T>(result: kube::Result<T>) -> kube::Result<Option<T>> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
        Err(e) => Err(e),
    }
}

pub(crate) fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

pub(crate) fn codebases() -> ApiResource {
    resource(
        CODEBASE_GROUP,
        CODEBASE_VERSION,
        "Codebase",
        CODEBASE_PLURAL,
    )
}

pub(crate) fn gerrit_projects() -> ApiResource {
    resource(CODEBASE_GROUP, "v1", "GerritProject", "gerritprojects")
}

pub(crate) fn keycloak_realms() -> ApiResource {
    resource("v1.edp.epam.com", "v1", "KeycloakRealm", "keycloakrealms")
}

pub(crate) fn object_bucket_claims() -> ApiResource {
    resource(
        "objectbucket.io",
        "v1alpha1",
        "ObjectBucketClaim",
        "objectbucketclaims",
    )
}

pub(crate) fn routes() -> ApiResource {
    platform::route_resource()
}

/// The registry's workload kinds, with the word used in reports.
pub(crate) fn workload_kinds() -> [(&'static str, ApiResource); 2] {
    [
        ("deployment", ApiResource::erase::<Deployment>(&())),
        ("statefulset", ApiResource::erase::<StatefulSet>(&())),
    ]
}

/// Every object `api` lists, page by page; a type that is not served
/// lists as empty.
pub(crate) async fn list_all<K>(api: &Api<K>, what: &str) -> Result<Vec<K>>
where
    K: Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut out = Vec::new();
    let mut params = ListParams::default().limit(PAGE);
    loop {
        let page: Option<ObjectList<K>> =
            absent_if_missing(api.list(&params).await).map_err(kube_err("list", what))?;
        let Some(page) = page else { return Ok(out) };
        out.extend(page.items);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = ListParams::default().limit(PAGE).continue_token(&token),
            None => return Ok(out),
        }
    }
}

pub(crate) async fn namespace(client: &Client, name: &str) -> Result<Option<Namespace>> {
    let api: Api<Namespace> = Api::all(client.clone());
    absent_if_missing(api.get(name).await).map_err(kube_err("read", format!("namespace {name}")))
}

/// Reads `name` in `namespace` of a dynamic type; `None` when absent.
pub(crate) async fn get_dynamic(
    client: &Client,
    ar: &ApiResource,
    namespace: Option<&str>,
    name: &str,
) -> Result<Option<DynamicObject>> {
    let api: Api<DynamicObject> = match namespace {
        Some(ns) => Api::namespaced_with(client.clone(), ns, ar),
        None => Api::all_with(client.clone(), ar),
    };
    let what = match namespace {
        Some(ns) => format!("{} {ns}/{name}", ar.kind),
        None => format!("{} {name}", ar.kind),
    };
    absent_if_missing(api.get(name).await).map_err(kube_err("read", what))
}

/// Dynamic objects lack `apiVersion`/`kind` when they come from a list;
/// writes need them.
pub(crate) fn typed(mut obj: DynamicObject, ar: &ApiResource) -> DynamicObject {
    obj.types = Some(kube::api::TypeMeta {
        api_version: ar.api_version.clone(),
        kind: ar.kind.clone(),
    });
    obj
}

/// Where the cluster's wildcard DNS (`apps.<domain>`) was found.
pub(crate) struct AppsDomain {
    pub domain: String,
    pub source: String,
}

/// The cluster's `apps.<domain>`: OpenShift's `ingresses.config.openshift.io/cluster`
/// (`spec.domain`) where that API exists, else the Platform's
/// `control-plane/platform-version` ConfigMap (`dnsWildcard`).
pub(crate) async fn apps_domain(client: &Client) -> Result<Option<AppsDomain>> {
    let ingress = resource("config.openshift.io", "v1", "Ingress", "ingresses");
    if let Some(obj) = get_dynamic(client, &ingress, None, "cluster").await?
        && let Some(domain) = obj.data["spec"]["domain"]
            .as_str()
            .filter(|d| !d.is_empty())
    {
        return Ok(Some(AppsDomain {
            domain: domain.to_owned(),
            source: "ingresses.config.openshift.io/cluster spec.domain".into(),
        }));
    }
    let ns = platform::CONTROL_PLANE_NAMESPACE;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let cm = absent_if_missing(api.get(PLATFORM_VERSION_CONFIGMAP).await).map_err(kube_err(
        "read",
        format!("configmap {ns}/{PLATFORM_VERSION_CONFIGMAP}"),
    ))?;
    Ok(cm
        .and_then(|cm| cm.data)
        .and_then(|d| d.get("dnsWildcard").cloned())
        .filter(|d| !d.is_empty())
        .map(|domain| AppsDomain {
            domain,
            source: format!("configmap {ns}/{PLATFORM_VERSION_CONFIGMAP} dnsWildcard"),
        }))
}

/// The Platform's version ConfigMap in the control plane.
pub(crate) const PLATFORM_VERSION_CONFIGMAP: &str = "platform-version";
