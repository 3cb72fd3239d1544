//! Inventory: what the registry holds on this cluster, in a form the engine
//! compares between the source (taken at backup) and the target (at
//! verify): objects counted per resource type, stores listed and hashed,
//! realm users counted, workloads and their readiness, each volume claim's
//! contents (`volumes.rs`) and each registry database's tables
//! (`database.rs`). It first waits (`--ready-timeout`) for the workloads to
//! be ready: on a target just scaled up, measuring at once would find
//! instances still starting.

use std::collections::{BTreeSet, HashMap};

use ferry_common::pb;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::discovery::{Discovery, Scope, verbs};
use kube::{Client, ResourceExt};

use super::Step;
use super::cluster::{absent_if_missing, list_all, workload_kinds};
use super::error::{Result, kube_err};
use super::storage::{self, hex};
use super::{database, identity, volumes};

/// Not counted: API groups whose objects are not the registry's.
/// `metrics.k8s.io` serves live usage, not objects; `velero.io` holds
/// Velero's own records; `events.k8s.io` is events again; OLM's
/// `packages.operators.coreos.com` shows the cluster's operator catalog in
/// every namespace.
const SKIPPED_GROUPS: &[&str] = &[
    "metrics.k8s.io",
    "velero.io",
    "events.k8s.io",
    "packages.operators.coreos.com",
];

/// Not counted: resource types (`<plural>.<group>`, core: `<plural>`) that
/// controllers derive from the registry's objects, with names and numbers
/// of their own on each cluster: pods (from workloads), events, ReplicaSets
/// and ControllerRevisions (from Deployments' and StatefulSets' revisions),
/// Endpoints and EndpointSlices (from Services), and OpenShift's views of
/// image streams' tags.
const SKIPPED_TYPES: &[&str] = &[
    "pods",
    "events",
    "replicasets.apps",
    "controllerrevisions.apps",
    "endpoints",
    "endpointslices.discovery.k8s.io",
    "imagestreamtags.image.openshift.io",
    "imagetags.image.openshift.io",
];

/// Not counted: Secrets the cluster makes for each ServiceAccount (tokens,
/// OpenShift's image-pull `dockercfg`), named at random on each cluster.
const GENERATED_SECRET_TYPES: &[&str] = &[
    "kubernetes.io/service-account-token",
    "kubernetes.io/dockercfg",
];

/// Objects hashed at once per store.
const HASH_PARALLELISM: usize = 8;

/// The ConfigMap and key in which a registry names its wildcard DNS.
const REGISTRY_ENVIRONMENT: &str = "registry-environment";
const DNS_WILDCARD: &str = "dnsWildcard";

pub(super) async fn run(step: &mut Step<'_>, cmd: &pb::InventoryStep) -> Result<pb::Inventory> {
    let (client, ns) = (step.client.clone(), step.registry);
    await_ready(&client, ns, step.ctx.config.ready_timeout).await?;
    let mut inventory = pb::Inventory {
        items: items(&client, ns).await?,
        ..Default::default()
    };
    for store in &cmd.stores {
        inventory.stores.push(store_inventory(step, store).await?);
    }
    if !cmd.realms.is_empty() {
        let keycloak = identity::admin(step.ctx, &client).await?;
        for realm in &cmd.realms {
            // An absent realm is left out: 0 users means the realm exists.
            if let Some(users) = keycloak.user_count(realm).await? {
                inventory.realms.push(pb::RealmCount {
                    realm: realm.clone(),
                    users,
                    ..Default::default()
                });
            }
        }
    }
    workloads(&client, ns, &mut inventory).await?;
    // Boxed: their futures are large, and every step's future is as large
    // as the largest.
    if cmd.volumes {
        inventory.volumes = Box::pin(volumes::inventory(step, &cmd.backup_name)).await?;
    }
    inventory.databases = Box::pin(database::inventory(step, &cmd.databases)).await?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let env = absent_if_missing(api.get(REGISTRY_ENVIRONMENT).await).map_err(kube_err(
        "read",
        format!("ConfigMap {ns}/{REGISTRY_ENVIRONMENT}"),
    ))?;
    inventory.apps_domain_seen = env
        .and_then(|cm| cm.data)
        .and_then(|d| d.get(DNS_WILDCARD).cloned())
        .unwrap_or_default();
    Ok(inventory)
}

/// `<plural>.<group>` (core: `<plural>`) → objects in `ns`, for every
/// namespaced type the API server lists; types with none are left out.
async fn items(client: &Client, ns: &str) -> Result<HashMap<String, u64>> {
    let discovery = Discovery::new(client.clone())
        .exclude(SKIPPED_GROUPS)
        .run()
        .await
        .map_err(kube_err("discover", "the API server's resource types"))?;
    let mut counts = HashMap::new();
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            let key = type_key(&ar);
            if caps.scope != Scope::Namespaced
                || !caps.supports_operation(verbs::LIST)
                || SKIPPED_TYPES.contains(&key.as_str())
            {
                continue;
            }
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
            let objects = list_all(&api, &format!("{key} in namespace {ns}")).await?;
            let count = objects.iter().filter(|o| !generated(&key, o)).count() as u64;
            if count > 0 {
                counts.insert(key, count);
            }
        }
    }
    Ok(counts)
}

fn type_key(ar: &ApiResource) -> String {
    if ar.group.is_empty() {
        ar.plural.clone()
    } else {
        format!("{}.{}", ar.plural, ar.group)
    }
}

fn generated(key: &str, obj: &DynamicObject) -> bool {
    key == "secrets"
        && obj.data["type"]
            .as_str()
            .is_some_and(|t| GENERATED_SECRET_TYPES.contains(&t))
}

/// Objects, bytes and digest of a whole store (SHA-256 over the sorted
/// lines `<key> <hex sha256 of content>\n`).
async fn store_inventory(step: &mut Step<'_>, store: &str) -> Result<pb::StoreInventory> {
    let listing = storage::list_prefix(&step.ctx.stores, store, "").await?;
    let total = listing.objects.len() as u64;
    let scope = listing.scope.clone();
    let paths: Vec<object_store::path::Path> =
        listing.objects.iter().map(|o| o.location.clone()).collect();
    let mut hashes = futures::stream::iter(paths)
        .map(move |path| hash_line(scope.clone(), path))
        .buffered(HASH_PARALLELISM);
    let mut digest = ring::digest::Context::new(&ring::digest::SHA256);
    let mut done = 0;
    while let Some(line) = hashes.try_next().await? {
        digest.update(line.as_bytes());
        done += 1;
        step.progress
            .report(format!("hashing store {store}"), done, total);
    }
    Ok(pb::StoreInventory {
        store: store.to_owned(),
        objects: total,
        bytes: listing.bytes(),
        digest: hex(digest.finish().as_ref()),
    })
}

async fn hash_line(
    scope: crate::objects::Scoped,
    path: object_store::path::Path,
) -> Result<String> {
    let sha = storage::sha256_hex(&scope, &path).await?;
    Ok(format!("{path} {sha}\n"))
}

/// Waits until every workload is ready, or `timeout` passed (then the
/// inventory reports what is not ready), woken by watch events.
async fn await_ready(client: &Client, ns: &str, timeout: std::time::Duration) -> Result<()> {
    use kube::runtime::{WatchStreamExt, watcher};
    let deadline = tokio::time::Instant::now() + timeout;
    let mut events = futures::stream::select_all(workload_kinds().into_iter().map(|(_, ar)| {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
        watcher(api, watcher::Config::default())
            .default_backoff()
            .boxed()
    }));
    loop {
        let mut probe = pb::Inventory::default();
        workloads(client, ns, &mut probe).await?;
        if probe.workloads_ready == probe.workloads {
            return Ok(());
        }
        match tokio::time::timeout_at(deadline, events.next()).await {
            Ok(Some(_)) => {}
            // Timed out, or the watches ended: measure as it is.
            Ok(None) | Err(_) => return Ok(()),
        }
    }
}

/// Deployments and StatefulSets; ready when every desired replica is
/// (a workload scaled to 0 needs nothing).
async fn workloads(client: &Client, ns: &str, inventory: &mut pb::Inventory) -> Result<()> {
    let mut not_ready = BTreeSet::new();
    for (word, ar) in workload_kinds() {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
        for w in list_all(&api, &format!("{}s in namespace {ns}", word)).await? {
            inventory.workloads += 1;
            let desired = w.data["spec"]["replicas"].as_i64().unwrap_or(1);
            let ready = w.data["status"]["readyReplicas"].as_i64().unwrap_or(0);
            if ready >= desired {
                inventory.workloads_ready += 1;
            } else {
                not_ready.insert(format!("{word}/{}", w.name_any()));
            }
        }
    }
    inventory.not_ready = not_ready.into_iter().collect();
    Ok(())
}
