//! Errors of the sandbox's Velero controller.

use std::path::PathBuf;

use crate::k8s::K8sError;

/// What failed, on which object.
#[derive(Debug, thiserror::Error)]
pub enum VeleroError {
    #[error("Velero could not {action} {what}: {source}")]
    Kube {
        action: &'static str,
        what: String,
        #[source]
        source: Box<K8sError>,
    },

    #[error("Velero could not {action} s3://{bucket}/{key}: {source}")]
    S3 {
        action: &'static str,
        bucket: String,
        key: String,
        #[source]
        source: Box<crate::s3::Error>,
    },

    #[error("Velero could not {action} volume data at {path}: {source}")]
    Volume {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{what} is malformed: {message}")]
    Malformed { what: String, message: String },

    #[error("the node-agent stand-in could not read {what}: {message}")]
    StandIn { what: String, message: String },

    #[error("backup storage location {namespace}/{name} is not usable: {reason}")]
    Location {
        namespace: String,
        name: String,
        reason: String,
    },
}

impl VeleroError {
    pub(crate) fn kube(
        action: &'static str,
        what: impl Into<String>,
    ) -> impl FnOnce(K8sError) -> Self {
        let what = what.into();
        move |source| VeleroError::Kube {
            action,
            what,
            source: Box::new(source),
        }
    }

    pub(crate) fn s3(
        action: &'static str,
        bucket: &str,
        key: &str,
    ) -> impl FnOnce(crate::s3::Error) -> Self {
        let (bucket, key) = (bucket.to_owned(), key.to_owned());
        move |source| VeleroError::S3 {
            action,
            bucket,
            key,
            source: Box::new(source),
        }
    }

    pub(crate) fn volume(
        action: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| VeleroError::Volume {
            action,
            path,
            source,
        }
    }

    pub(crate) fn malformed(what: impl Into<String>, message: impl std::fmt::Display) -> Self {
        VeleroError::Malformed {
            what: what.into(),
            message: message.to_string(),
        }
    }
}

pub type Result<T, E = VeleroError> = std::result::Result<T, E>;
