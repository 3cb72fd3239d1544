//! Velero `BackupStorageLocation`: where backups go, and whether Velero can
//! reach it (`status.phase` Available / Unavailable).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Client;
use kube::api::{Api, ListParams};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::{Result, VeleroError};
use super::resource::{api_version, velero_resource};

/// A `velero.io/v1` BackupStorageLocation; untyped fields kept in `other`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupStorageLocation {
    #[serde(default = "api_version")]
    pub api_version: String,
    #[serde(default = "kind")]
    pub kind: String,
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: BslSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<BslStatus>,
}

fn kind() -> String {
    "BackupStorageLocation".into()
}

velero_resource!(
    BackupStorageLocation,
    "BackupStorageLocation",
    "backupstoragelocations"
);

impl BackupStorageLocation {
    /// `status.phase`, when Velero has validated the location at least once.
    pub fn phase(&self) -> Option<&str> {
        self.status.as_ref()?.phase.as_deref()
    }

    pub fn is_available(&self) -> bool {
        self.phase() == Some("Available")
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BslSpec {
    #[serde(default)]
    pub provider: String,
    #[serde(default)]
    pub object_storage: BslObjectStorage,
    /// Provider settings, e.g. `s3Url`, `region`, `s3ForcePathStyle`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<bool>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BslObjectStorage {
    #[serde(default)]
    pub bucket: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BslStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_validation_time: Option<String>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// Every BackupStorageLocation in `velero_namespace`.
pub async fn list_locations(
    client: &Client,
    velero_namespace: &str,
) -> Result<Vec<BackupStorageLocation>> {
    let api: Api<BackupStorageLocation> = Api::namespaced(client.clone(), velero_namespace);
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|source| VeleroError::Api {
            action: "list",
            kind: "BackupStorageLocation",
            namespace: velero_namespace.into(),
            name: "*".into(),
            source,
        })?;
    Ok(list.items)
}
