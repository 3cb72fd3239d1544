//! Velero `Backup`: the type, idempotent creation, and waiting for it.

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

const KIND: &str = "Backup";

/// A `velero.io/v1` Backup. Untyped fields are kept in `other` so that a
/// read-modify-write loses nothing.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Backup {
    #[serde(default = "api_version")]
    pub api_version: String,
    #[serde(default = "kind")]
    pub kind: String,
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: BackupSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<BackupStatus>,
}

fn kind() -> String {
    KIND.into()
}

velero_resource!(Backup, "Backup", "backups");

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_resources: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_volumes_to_fs_backup: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<BackupProgress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warnings: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validation_errors: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_timestamp: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupProgress {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_items: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items_backed_up: Option<u64>,
}

/// What Ferry asks Velero to back up: one registry namespace, its volumes
/// through file-system backup, into one storage location.
#[derive(Debug, Clone, PartialEq)]
pub struct BackupRequest {
    /// `<reg>-<YYYY-MM-DD-HH-MM-SS>` (see [`super::backup_name`]); the name
    /// is the idempotency key.
    pub name: String,
    /// Where Velero runs (the Backup object's namespace).
    pub velero_namespace: String,
    pub included_namespaces: Vec<String>,
    pub storage_location: String,
    pub excluded_resources: Vec<String>,
    pub label_selector: Option<LabelSelector>,
    pub ttl: Option<String>,
    pub labels: BTreeMap<String, String>,
}

impl BackupRequest {
    /// A backup of `namespace` into `storage_location`, in the `velero`
    /// namespace, without filters.
    pub fn new(name: &str, namespace: &str, storage_location: &str) -> Self {
        BackupRequest {
            name: name.into(),
            velero_namespace: super::VELERO_NAMESPACE.into(),
            included_namespaces: vec![namespace.into()],
            storage_location: storage_location.into(),
            excluded_resources: Vec::new(),
            label_selector: None,
            ttl: None,
            labels: BTreeMap::new(),
        }
    }

    fn to_object(&self) -> Backup {
        Backup {
            api_version: api_version(),
            kind: kind(),
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.velero_namespace.clone()),
                labels: (!self.labels.is_empty()).then(|| self.labels.clone()),
                ..ObjectMeta::default()
            },
            spec: BackupSpec {
                included_namespaces: self.included_namespaces.clone(),
                excluded_resources: self.excluded_resources.clone(),
                label_selector: self.label_selector.clone(),
                storage_location: Some(self.storage_location.clone()),
                // Registry volumes (Postgres, Gerrit, Nexus…) must travel as
                // files: the clusters share no snapshot provider.
                default_volumes_to_fs_backup: Some(true),
                ttl: self.ttl.clone(),
                other: Map::new(),
            },
            status: None,
        }
    }

    /// The first requested field an existing spec disagrees with. Only what
    /// the request sets is compared: Velero fills in defaults (ttl, timeouts)
    /// on the objects it processes.
    fn differs_from(&self, spec: &BackupSpec) -> Option<&'static str> {
        if spec.included_namespaces != self.included_namespaces {
            return Some("includedNamespaces");
        }
        if spec.excluded_resources != self.excluded_resources {
            return Some("excludedResources");
        }
        if spec.label_selector != self.label_selector {
            return Some("labelSelector");
        }
        if spec.storage_location.as_deref() != Some(self.storage_location.as_str()) {
            return Some("storageLocation");
        }
        if spec.default_volumes_to_fs_backup != Some(true) {
            return Some("defaultVolumesToFsBackup");
        }
        if self.ttl.is_some() && spec.ttl != self.ttl {
            return Some("ttl");
        }
        None
    }
}

/// Creates the Backup, or returns the existing one of the same name when it
/// was made by the same request (a retried step must never start a second
/// backup). An existing Backup with another spec is a conflict.
pub async fn create_backup(client: &Client, request: &BackupRequest) -> Result<Backup> {
    let ns = request.velero_namespace.as_str();
    let api: Api<Backup> = Api::namespaced(client.clone(), ns);
    create_or_reuse(&api, ns, &request.name, &request.to_object(), |existing| {
        request.differs_from(&existing.spec)
    })
    .await
}

impl Tracked for Backup {
    const KIND: &'static str = KIND;

    fn progress(&self) -> Progress {
        let status = self.status.clone().unwrap_or_default();
        let progress = status.progress.unwrap_or_default();
        Progress {
            phase: status.phase.unwrap_or_else(|| "New".into()),
            done: progress.items_backed_up.unwrap_or(0),
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

/// Watches the Backup until Velero finishes it, calling `on_progress` each
/// time its phase or counters change. Errors only when the Backup cannot be
/// watched, vanishes, or does not finish within `timeout`; a backup that
/// failed is an [`Outcome`], not an error.
pub async fn wait_backup(
    client: &Client,
    velero_namespace: &str,
    name: &str,
    timeout: Duration,
    on_progress: impl FnMut(&Progress),
) -> Result<Outcome> {
    let api: Api<Backup> = Api::namespaced(client.clone(), velero_namespace);
    wait::until_finished(api, velero_namespace, name, timeout, on_progress).await
}

/// Waits until a Backup named `name` exists: on a target cluster it appears
/// when Velero's backup sync finds it in the storage location's bucket.
pub async fn wait_backup_present(
    client: &Client,
    velero_namespace: &str,
    name: &str,
    timeout: Duration,
) -> Result<Backup> {
    let api: Api<Backup> = Api::namespaced(client.clone(), velero_namespace);
    wait::until_present(api, velero_namespace, name, timeout).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_builds_the_spec_velero_expects() -> serde_json::Result<()> {
        let req = BackupRequest::new("reg-2026-01-02-03-04-05", "reg", "default");
        let json = serde_json::to_value(req.to_object())?;
        assert_eq!(json["apiVersion"], "velero.io/v1");
        assert_eq!(json["kind"], "Backup");
        assert_eq!(json["metadata"]["namespace"], "velero");
        assert_eq!(json["spec"]["includedNamespaces"][0], "reg");
        assert_eq!(json["spec"]["storageLocation"], "default");
        assert_eq!(json["spec"]["defaultVolumesToFsBackup"], true);
        assert!(json["spec"].get("labelSelector").is_none());
        Ok(())
    }

    #[test]
    fn velero_defaults_do_not_count_as_a_different_spec() -> serde_json::Result<()> {
        let req = BackupRequest::new("b", "reg", "default");
        let mut spec = req.to_object().spec;
        spec.ttl = Some("720h0m0s".into());
        spec.other
            .insert("itemOperationTimeout".into(), Value::from("4h0m0s"));
        assert_eq!(req.differs_from(&spec), None);
        spec.included_namespaces = vec!["other".into()];
        assert_eq!(req.differs_from(&spec), Some("includedNamespaces"));
        Ok(())
    }
}
