//! Why a probe could not be completed.

use std::path::PathBuf;

/// Errors of the cluster probe. A missing Platform is not one of them.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(
        "could not read the kubeconfig {path}: {source}; pass a valid file with --kubeconfig \
         or run the agent inside the cluster"
    )]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: kube::config::KubeconfigError,
    },

    #[error(
        "no Kubernetes configuration found (not in a cluster, no KUBECONFIG): {source}; \
         pass --kubeconfig"
    )]
    Infer {
        #[source]
        source: kube::config::InferConfigError,
    },

    #[error("could not build a Kubernetes client for {server}: {source}")]
    Client {
        server: String,
        #[source]
        source: kube::Error,
    },

    #[error(
        "could not {action} {what} while probing the cluster: {source}; check that the API \
         server is reachable and the agent's service account may read it"
    )]
    Api {
        action: &'static str,
        what: String,
        #[source]
        source: kube::Error,
    },

    #[error(transparent)]
    Velero(#[from] crate::velero::VeleroError),
}

pub type Result<T, E = ProbeError> = std::result::Result<T, E>;
