//! Reading `BackupStorageLocation`s: which bucket and prefix a backup uses,
//! and whether that bucket answers.

use serde_json::Value;

use super::error::{Result, VeleroError};
use super::locations_gvr;
use super::meta::{name, namespace, str_at};
use crate::k8s::Store;
use crate::s3::S3Server;

/// Velero's name for the location used when a backup names none.
pub(crate) const DEFAULT_LOCATION: &str = "default";

/// A BSL as the controller uses it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Location {
    pub namespace: String,
    pub name: String,
    pub bucket: String,
    pub prefix: String,
    pub read_only: bool,
    pub s3_url: Option<String>,
}

impl Location {
    pub fn from_object(bsl: &Value) -> Result<Location> {
        let ns = namespace(bsl).unwrap_or_default().to_owned();
        let nm = name(bsl).to_owned();
        let bucket = str_at(bsl, &["spec", "objectStorage", "bucket"])
            .ok_or_else(|| VeleroError::Location {
                namespace: ns.clone(),
                name: nm.clone(),
                reason: "spec.objectStorage.bucket is empty".into(),
            })?
            .to_owned();
        Ok(Location {
            prefix: str_at(bsl, &["spec", "objectStorage", "prefix"])
                .unwrap_or_default()
                .to_owned(),
            read_only: str_at(bsl, &["spec", "accessMode"]) == Some("ReadOnly"),
            s3_url: str_at(bsl, &["spec", "config", "s3Url"]).map(str::to_owned),
            namespace: ns,
            name: nm,
            bucket,
        })
    }

    /// The named location in `namespace`, or with `None` the one marked
    /// `spec.default`, else the one named `default`. `Ok(None)` when absent.
    pub async fn find(store: &Store, ns: &str, wanted: Option<&str>) -> Result<Option<Location>> {
        let all = store
            .list(&locations_gvr(), Some(ns), None)
            .await
            .map_err(VeleroError::kube(
                "list",
                format!("backup storage locations in {ns}"),
            ))?;
        let found = match wanted.filter(|w| !w.is_empty()) {
            Some(w) => all.iter().find(|b| name(b) == w),
            None => all
                .iter()
                .find(|b| b.pointer("/spec/default").and_then(Value::as_bool) == Some(true))
                .or_else(|| all.iter().find(|b| name(b) == DEFAULT_LOCATION)),
        };
        found.map(Location::from_object).transpose()
    }

    /// Whether the bucket exists and answers (the S3 fault switches count).
    pub async fn check(&self, s3: &S3Server) -> std::result::Result<(), String> {
        if s3.is_bucket_unavailable(&self.bucket) {
            return Err(format!(
                "bucket {:?} does not answer (ServiceUnavailable)",
                self.bucket
            ));
        }
        match s3.bucket_exists(&self.bucket).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(format!("bucket {:?} does not exist", self.bucket)),
            Err(e) => Err(format!(
                "bucket {:?} could not be checked: {e}",
                self.bucket
            )),
        }
    }

    pub fn describe(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}
