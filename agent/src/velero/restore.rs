//! Velero `Restore`: the type, idempotent creation, and waiting for it.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::Client;
use kube::api::Api;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::create::create_or_reuse;
use super::error::Result;
use super::outcome::{Outcome, Progress, outcome_of};
use super::resource::{api_version, velero_resource};
use super::wait::{self, Tracked};

const KIND: &str = "Restore";

/// A `velero.io/v1` Restore; untyped fields are kept in `other`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Restore {
    #[serde(default = "api_version")]
    pub api_version: String,
    #[serde(default = "kind")]
    pub kind: String,
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: RestoreSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<RestoreStatus>,
}

fn kind() -> String {
    KIND.into()
}

velero_resource!(Restore, "Restore", "restores");

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreSpec {
    #[serde(default)]
    pub backup_name: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_resources: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_resources: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub namespace_mapping: BTreeMap<String, String>,
    /// `none` (Velero's default: keep what exists, warn) or `update`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing_resource_policy: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "restorePVs"
    )]
    pub restore_pvs: Option<bool>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<RestoreProgress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warnings: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validation_errors: Vec<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreProgress {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_items: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items_restored: Option<u64>,
}

/// One restore phase Ferry asks for (the init phase, then one per
/// workload group by label selector, then the rest).
#[derive(Debug, Clone, PartialEq)]
pub struct RestoreRequest {
    /// The idempotency key, e.g. `<backup>-init`, `<backup>-vault`.
    pub name: String,
    pub velero_namespace: String,
    pub backup_name: String,
    pub included_namespaces: Vec<String>,
    /// Only these resources (Velero's names: `deployments`, `routes.route.openshift.io`);
    /// empty: all.
    pub included_resources: Vec<String>,
    pub excluded_resources: Vec<String>,
    pub label_selector: Option<LabelSelector>,
    pub namespace_mapping: BTreeMap<String, String>,
    /// `none` or `update`; `None` leaves Velero's default (`none`).
    pub existing_resource_policy: Option<String>,
    pub restore_pvs: Option<bool>,
    pub labels: BTreeMap<String, String>,
}

impl RestoreRequest {
    /// A restore of everything in `backup`, in the `velero` namespace.
    pub fn new(name: &str, backup: &str) -> Self {
        RestoreRequest {
            name: name.into(),
            velero_namespace: super::VELERO_NAMESPACE.into(),
            backup_name: backup.into(),
            included_namespaces: Vec::new(),
            included_resources: Vec::new(),
            excluded_resources: Vec::new(),
            label_selector: None,
            namespace_mapping: BTreeMap::new(),
            existing_resource_policy: None,
            restore_pvs: None,
            labels: BTreeMap::new(),
        }
    }

    fn spec(&self) -> RestoreSpec {
        RestoreSpec {
            backup_name: self.backup_name.clone(),
            included_namespaces: self.included_namespaces.clone(),
            included_resources: self.included_resources.clone(),
            excluded_resources: self.excluded_resources.clone(),
            label_selector: self.label_selector.clone(),
            namespace_mapping: self.namespace_mapping.clone(),
            existing_resource_policy: self.existing_resource_policy.clone(),
            restore_pvs: self.restore_pvs,
            other: Map::new(),
        }
    }

    fn to_object(&self) -> Restore {
        Restore {
            api_version: api_version(),
            kind: kind(),
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.velero_namespace.clone()),
                labels: (!self.labels.is_empty()).then(|| self.labels.clone()),
                ..ObjectMeta::default()
            },
            spec: self.spec(),
            status: None,
        }
    }

    /// The first requested field an existing spec disagrees with; Velero's
    /// own additions (in `other`) are ignored.
    fn differs_from(&self, spec: &RestoreSpec) -> Option<&'static str> {
        let want = self.spec();
        if spec.backup_name != want.backup_name {
            Some("backupName")
        } else if spec.included_namespaces != want.included_namespaces {
            Some("includedNamespaces")
        } else if spec.included_resources != want.included_resources {
            Some("includedResources")
        } else if spec.excluded_resources != want.excluded_resources {
            Some("excludedResources")
        } else if spec.label_selector != want.label_selector {
            Some("labelSelector")
        } else if spec.namespace_mapping != want.namespace_mapping {
            Some("namespaceMapping")
        } else if want.existing_resource_policy.is_some()
            && spec.existing_resource_policy != want.existing_resource_policy
        {
            Some("existingResourcePolicy")
        } else if want.restore_pvs.is_some() && spec.restore_pvs != want.restore_pvs {
            Some("restorePVs")
        } else {
            None
        }
    }
}

/// Creates the Restore, or returns the existing one made by the same request.
pub async fn create_restore(client: &Client, request: &RestoreRequest) -> Result<Restore> {
    let ns = request.velero_namespace.as_str();
    let api: Api<Restore> = Api::namespaced(client.clone(), ns);
    create_or_reuse(&api, ns, &request.name, &request.to_object(), |existing| {
        request.differs_from(&existing.spec)
    })
    .await
}

impl Tracked for Restore {
    const KIND: &'static str = KIND;

    fn progress(&self) -> Progress {
        let status = self.status.clone().unwrap_or_default();
        let progress = status.progress.unwrap_or_default();
        Progress {
            phase: status.phase.unwrap_or_else(|| "New".into()),
            done: progress.items_restored.unwrap_or(0),
            total: progress.total_items.unwrap_or(0),
        }
    }

    fn outcome(&self) -> Option<Outcome> {
        let s = self.status.as_ref()?;
        outcome_of(
            s.phase.as_deref(),
            s.errors.unwrap_or(0),
            s.warnings.unwrap_or(0),
            s.failure_reason.as_deref(),
            &s.validation_errors,
        )
    }
}

/// Watches the Restore until Velero finishes it (see [`super::wait_backup`]).
pub async fn wait_restore(
    client: &Client,
    velero_namespace: &str,
    name: &str,
    timeout: Duration,
    on_progress: impl FnMut(&Progress),
) -> Result<Outcome> {
    let api: Api<Restore> = Api::namespaced(client.clone(), velero_namespace);
    wait::until_finished(api, velero_namespace, name, timeout, on_progress).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_uses_velero_field_names() -> serde_json::Result<()> {
        let mut req = RestoreRequest::new("b-init", "b");
        req.namespace_mapping.insert("reg".into(), "reg2".into());
        req.restore_pvs = Some(true);
        req.included_resources = vec!["configmaps".into()];
        req.existing_resource_policy = Some("update".into());
        let json = serde_json::to_value(req.to_object())?;
        assert_eq!(json["spec"]["backupName"], "b");
        assert_eq!(json["spec"]["namespaceMapping"]["reg"], "reg2");
        assert_eq!(json["spec"]["restorePVs"], true);
        assert_eq!(json["spec"]["includedResources"][0], "configmaps");
        assert_eq!(json["spec"]["existingResourcePolicy"], "update");
        let back: Restore = serde_json::from_value(json)?;
        assert_eq!(req.differs_from(&back.spec), None);
        Ok(())
    }
}
