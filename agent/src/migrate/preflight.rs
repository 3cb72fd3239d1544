//! Preflight: the local checks of one side, each with a stable name and a
//! reason an operator can act on. The coordinator adds the checks that
//! compare the two sides. Preflight only reads.

use std::collections::BTreeMap;

use ferry_common::pb::{self, ClusterRole};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::{CSIStorageCapacity, StorageClass};
use kube::api::{Api, DynamicObject, ListParams};
use kube::{Client, ResourceExt};

use super::cluster::{
    apps_domain, codebases, gerrit_projects, get_dynamic, list_all, namespace, object_bucket_claims,
};
use super::error::{Result, StepError};
use super::{Step, quantity, storage};
use crate::platform::{
    self, CONTROL_PLANE_NAMESPACE, ClusterProbe, PLATFORM_CODEBASE, ProbeOptions, WorkloadFacts,
};
use crate::velero::VELERO_NAMESPACE;

pub(super) async fn run(
    step: &mut Step<'_>,
    cmd: &pb::PreflightStep,
) -> Result<pb::PreflightReport> {
    let role = ClusterRole::try_from(cmd.role).unwrap_or(ClusterRole::Unspecified);
    if role == ClusterRole::Unspecified {
        return Err(StepError::Invalid(format!(
            "preflight needs the role of this cluster (source or target), got {}",
            cmd.role
        )));
    }
    let target = role == ClusterRole::Target;
    let options = ProbeOptions {
        keycloak_url: step.ctx.config.keycloak_url.clone(),
        check_keycloak: target,
        ..ProbeOptions::default()
    };
    let probe = platform::probe(&step.client, &options).await?;
    let mut checks = Checks::new(&step.ctx.config.cluster_id);
    let mut report = pb::PreflightReport {
        platform_version: probe.platform_version.clone().unwrap_or_default(),
        ..Default::default()
    };
    common_checks(&mut checks, &probe, &cmd.backup_location);
    let domain = apps_domain(&step.client).await?;
    checks.add(
        "apps-domain",
        domain.is_some(),
        match &domain {
            Some(d) => format!("the cluster's wildcard DNS is {} (from {})", d.domain, d.source),
            None => format!(
                "the cluster's wildcard DNS is unknown: neither ingresses.config.openshift.io/cluster \
                 nor configmap {CONTROL_PLANE_NAMESPACE}/{} (dnsWildcard) names it; set \
                 dnsWildcard to apps.<cluster domain> there",
                super::cluster::PLATFORM_VERSION_CONFIGMAP
            ),
        },
    );
    report.apps_domain = domain.map(|d| d.domain).unwrap_or_default();
    if target {
        target_checks(step, cmd, &probe, &mut checks).await?;
        report.capacity_bytes = step.ctx.config.capacity_bytes.unwrap_or(0);
        report.storage_classes = storage_classes(&step.client).await?;
        report.storage_class_mapping = storage_class_mapping(&step.client).await?;
    } else {
        report.registry_version = source_checks(step, &mut checks).await?;
        report.volume_bytes = volume_bytes(step).await?;
        report.bucket_bytes = bucket_bytes(step).await?;
        report.required_bytes = report
            .volume_bytes
            .iter()
            .fold(report.bucket_bytes, |sum, c| sum.saturating_add(c.bytes));
    }
    report.checks = checks.list;
    Ok(report)
}

struct Checks {
    cluster_id: String,
    list: Vec<pb::Check>,
}

impl Checks {
    fn new(cluster_id: &str) -> Self {
        Checks {
            cluster_id: cluster_id.to_owned(),
            list: Vec::new(),
        }
    }

    fn add(&mut self, name: &str, passed: bool, reason: String) {
        self.list.push(pb::Check {
            name: name.to_owned(),
            cluster_id: self.cluster_id.clone(),
            passed,
            reason,
        });
    }
}

fn common_checks(checks: &mut Checks, probe: &ClusterProbe, location: &str) {
    checks.add(
        "platform-present",
        probe.has_platform(),
        match &probe.platform_version {
            Some(v) => format!("the Platform {v} is installed"),
            None => format!(
                "the Platform is not installed: no Codebase {PLATFORM_CODEBASE} with a \
                 defaultBranch in namespace {CONTROL_PLANE_NAMESPACE}; install the Platform first"
            ),
        },
    );
    let velero = &probe.velero;
    checks.add(
        "velero-present",
        velero.present(),
        if velero.present() {
            "Velero is installed".into()
        } else {
            format!(
                "Velero is not installed (namespace {VELERO_NAMESPACE}: {}, CRDs: {}); install it",
                present(velero.namespace),
                present(velero.crds)
            )
        },
    );
    let found = velero.locations.iter().find(|l| l.name == location);
    let (passed, reason) = match found {
        _ if location.is_empty() => (
            false,
            "no backup storage location was named; the coordinator must name one".to_owned(),
        ),
        None => (
            false,
            format!(
                "Velero has no backup storage location {location:?} in namespace \
                 {VELERO_NAMESPACE}; create it, pointing at the backup bucket"
            ),
        ),
        Some(l) if l.phase.as_deref() == Some("Available") => (
            true,
            format!(
                "backup storage location {location} (bucket {}) is Available",
                l.bucket
            ),
        ),
        Some(l) => (
            false,
            format!(
                "backup storage location {location} is {}; check its bucket {} and credentials \
                 and Velero's logs",
                l.phase.as_deref().unwrap_or("not validated yet"),
                l.bucket
            ),
        ),
    };
    checks.add("bsl-available", passed, reason);
}

fn present(yes: bool) -> &'static str {
    if yes { "present" } else { "missing" }
}

/// Checks the registry; returns its version.
async fn source_checks(step: &Step<'_>, checks: &mut Checks) -> Result<String> {
    let (client, reg) = (&step.client, step.registry);
    let ns = namespace(client, reg).await?;
    let mut codebase = get_dynamic(client, &codebases(), Some(reg), reg).await?;
    if codebase.is_none() {
        codebase = get_dynamic(client, &codebases(), Some(CONTROL_PLANE_NAMESPACE), reg).await?;
    }
    let version = codebase
        .as_ref()
        .and_then(|c| c.data["spec"]["defaultBranch"].as_str())
        .unwrap_or_default()
        .to_owned();
    let (passed, reason) = match (&ns, &codebase) {
        (None, _) => (
            false,
            format!("namespace {reg} does not exist on this cluster; is this the source?"),
        ),
        (Some(_), None) => (
            false,
            format!("namespace {reg} exists but no Codebase {reg} describes a registry there"),
        ),
        (Some(_), Some(_)) if version.is_empty() => (
            false,
            format!("Codebase {reg} has no spec.defaultBranch (the registry version); set it"),
        ),
        (Some(_), Some(_)) => (true, format!("registry {reg} {version} is present")),
    };
    checks.add("registry-present", passed, reason);
    Ok(version)
}

async fn target_checks(
    step: &Step<'_>,
    cmd: &pb::PreflightStep,
    probe: &ClusterProbe,
    checks: &mut Checks,
) -> Result<()> {
    let (client, reg) = (&step.client, step.registry);
    let keycloak = &probe.keycloak;
    checks.add(
        "keycloak-answering",
        keycloak.present(),
        match (&keycloak.url, keycloak.reachable) {
            (Some(url), Some(true)) => format!("Keycloak answers at {url}"),
            (Some(url), Some(false)) => {
                format!("Keycloak does not answer at {url}; check its pods in user-management")
            }
            (Some(url), None) if keycloak.namespace => format!("Keycloak is at {url} (not asked)"),
            _ => "Keycloak (namespace user-management and its route) is not present; install \
                  the Platform's Keycloak"
                .to_owned(),
        },
    );
    central("gerrit-present", "Gerrit", &probe.gerrit, checks);
    central("nexus-present", "Nexus", &probe.nexus, checks);
    let ns = namespace(client, reg).await?;
    checks.add(
        "no-namespace",
        ns.is_none(),
        match ns {
            None => format!("namespace {reg} does not exist yet"),
            Some(_) => format!(
                "namespace {reg} already exists: a registry of that name (or the leftovers of \
                 an earlier attempt) is here; roll the earlier migration back or remove it"
            ),
        },
    );
    let projects = gerrit_projects_of(client, reg).await?;
    checks.add(
        "no-gerrit-project",
        projects.is_empty(),
        if projects.is_empty() {
            format!("no GerritProject of registry {reg}")
        } else {
            format!(
                "GerritProject {} already exists (registry {reg} or its regulations); remove \
                 it and its Gerrit repository first",
                projects.join(", ")
            )
        },
    );
    leftover_objects(step, cmd, checks).await
}

fn central(name: &str, what: &str, w: &WorkloadFacts, checks: &mut Checks) {
    let reason = if !w.present {
        format!("central {what} is not installed (Deployment in {CONTROL_PLANE_NAMESPACE})")
    } else if !w.healthy() {
        format!(
            "central {what} is not ready ({}/{} replicas); check its pods",
            w.ready_replicas, w.replicas
        )
    } else {
        format!("central {what} is ready")
    };
    checks.add(name, w.healthy(), reason);
}

/// GerritProjects named `<reg>` or for `<reg>-regulations`, anywhere.
async fn gerrit_projects_of(client: &Client, reg: &str) -> Result<Vec<String>> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &gerrit_projects());
    let regulations = format!("{reg}-regulations");
    Ok(list_all(&api, "gerritprojects in all namespaces")
        .await?
        .iter()
        .filter(|p| p.name_any() == reg || p.data["spec"]["name"].as_str() == Some(&regulations))
        .map(|p| format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any()))
        .collect())
}

async fn leftover_objects(
    step: &Step<'_>,
    cmd: &pb::PreflightStep,
    checks: &mut Checks,
) -> Result<()> {
    let store = cmd.backup_store.as_str();
    if cmd.leftover_prefixes.is_empty() {
        checks.add(
            "no-backup-objects",
            true,
            "no backup prefixes were named, so none were checked".into(),
        );
        return Ok(());
    }
    if !step.ctx.stores.names().iter().any(|n| n == store) {
        checks.add(
            "no-backup-objects",
            false,
            format!(
                "store {store:?} is not configured on this agent, so leftovers cannot be \
                 checked; add the backup bucket to the agent's store configuration"
            ),
        );
        return Ok(());
    }
    let mut found = Vec::new();
    for prefix in &cmd.leftover_prefixes {
        let listing = match storage::list_prefix(&step.ctx.stores, store, prefix).await {
            Ok(l) => l,
            Err(e) => {
                // Unknown is not empty: refuse, saying why.
                checks.add(
                    "no-backup-objects",
                    false,
                    format!("cannot tell whether {prefix:?} is empty: {e}"),
                );
                return Ok(());
            }
        };
        if let Some(first) = listing.objects.first() {
            found.push(format!(
                "{} objects under {prefix:?} (e.g. {})",
                listing.objects.len(),
                first.location
            ));
        }
    }
    checks.add(
        "no-backup-objects",
        found.is_empty(),
        if found.is_empty() {
            format!(
                "no objects under {} in store {store}",
                cmd.leftover_prefixes.join(", ")
            )
        } else {
            format!(
                "store {store} holds leftovers of an earlier attempt: {}; roll that migration \
                 back or delete them",
                found.join("; ")
            )
        },
    );
    Ok(())
}

/// The storage the registry's volume claims request, per storage class.
async fn volume_bytes(step: &mut Step<'_>) -> Result<Vec<pb::ClassBytes>> {
    let (client, ns) = (&step.client, step.registry);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let mut per_class: BTreeMap<String, pb::ClassBytes> = BTreeMap::new();
    for pvc in list_all(&pvcs, &format!("persistentvolumeclaims in namespace {ns}")).await? {
        let spec = pvc.spec.as_ref();
        let request = spec
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"));
        let Some(request) = request else { continue };
        let bytes = quantity::bytes(&request.0).ok_or_else(|| {
            StepError::State(format!(
                "PersistentVolumeClaim {ns}/{} requests storage {:?}, which is not a Kubernetes \
                 quantity; fix the claim",
                pvc.name_any(),
                request.0
            ))
        })?;
        let class = spec
            .and_then(|s| s.storage_class_name.clone())
            .unwrap_or_default();
        let entry = per_class
            .entry(class.clone())
            .or_insert_with(|| pb::ClassBytes {
                storage_class: class,
                ..Default::default()
            });
        entry.bytes = entry.bytes.saturating_add(bytes);
        entry.claims += 1;
    }
    Ok(per_class.into_values().collect())
}

/// The bytes in the registry's OBC buckets (those this agent has a store
/// `obc-<claim>` for).
async fn bucket_bytes(step: &mut Step<'_>) -> Result<u64> {
    let (client, ns) = (&step.client, step.registry);
    let obcs: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), ns, &object_bucket_claims());
    let configured = step.ctx.stores.names();
    let mut total: u64 = 0;
    for obc in list_all(&obcs, &format!("objectbucketclaims in namespace {ns}")).await? {
        let store = format!("obc-{}", obc.name_any());
        if !configured.contains(&store) {
            continue;
        }
        step.progress.report(format!("sizing store {store}"), 0, 0);
        let listing = storage::list_prefix(&step.ctx.stores, &store, "").await?;
        total = total.saturating_add(listing.bytes());
    }
    Ok(total)
}

/// Kubernetes marks the default storage class with this annotation.
const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";

/// The cluster's storage classes, with the free capacity their CSI drivers
/// publish (CSIStorageCapacity, summed over topology segments) where they do.
async fn storage_classes(client: &Client) -> Result<Vec<pb::StorageClassRoom>> {
    let classes: Api<StorageClass> = Api::all(client.clone());
    let capacities: Api<CSIStorageCapacity> = Api::all(client.clone());
    let published = list_all(&capacities, "csistoragecapacities (all namespaces)").await?;
    let mut out = vec![];
    for class in list_all(&classes, "storageclasses").await? {
        let name = class.name_any();
        let is_default = class
            .annotations()
            .get(DEFAULT_CLASS_ANNOTATION)
            .is_some_and(|v| v == "true");
        let mut room = pb::StorageClassRoom {
            name: name.clone(),
            is_default,
            ..Default::default()
        };
        for c in published.iter().filter(|c| c.storage_class_name == name) {
            let Some(q) = c.capacity.as_ref() else {
                continue;
            };
            let bytes = quantity::bytes(&q.0).ok_or_else(|| {
                StepError::State(format!(
                    "CSIStorageCapacity {}/{} of storage class {name} has capacity {:?}, which is \
                     not a Kubernetes quantity",
                    c.namespace().unwrap_or_default(),
                    c.name_any(),
                    q.0
                ))
            })?;
            room.capacity_bytes = room.capacity_bytes.saturating_add(bytes);
            room.capacity_known = true;
        }
        out.push(room);
    }
    Ok(out)
}

/// Labels of the ConfigMap that configures Velero's change-storage-class
/// restore item action (its data: old class → new class).
const CHANGE_STORAGE_CLASS_SELECTOR: &str = "velero.io/change-storage-class=RestoreItemAction";

/// Velero's storage class mapping on restore, from its plugin ConfigMaps.
async fn storage_class_mapping(
    client: &Client,
) -> Result<std::collections::HashMap<String, String>> {
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), VELERO_NAMESPACE);
    let what =
        format!("configmaps {CHANGE_STORAGE_CLASS_SELECTOR} in namespace {VELERO_NAMESPACE}");
    let found = maps
        .list(&ListParams::default().labels(CHANGE_STORAGE_CLASS_SELECTOR))
        .await;
    let found =
        super::cluster::absent_if_missing(found).map_err(super::error::kube_err("list", what))?;
    Ok(found
        .into_iter()
        .flat_map(|list| list.items)
        .flat_map(|cm| cm.data.unwrap_or_default())
        .collect())
}
