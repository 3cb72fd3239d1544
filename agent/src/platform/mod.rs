//! The cluster probe: what this cluster holds of the Platform, read through
//! the Kubernetes API (`kube`) from a kubeconfig or the in-cluster config.
//!
//! A bare cluster probes cleanly: every fact of the Platform is then absent
//! (`None`, `false`, empty), never an error. Errors are kept for a cluster
//! the agent cannot talk to or may not read.

mod connect;
mod error;
mod markers;
mod model;
mod probe;

pub use connect::connect;
pub use error::{ProbeError, Result};
pub use markers::{
    CODEBASE_GROUP, CODEBASE_PLURAL, CODEBASE_VERSION, CONTROL_PLANE_NAMESPACE, GERRIT_DEPLOYMENT,
    KEYCLOAK_NAMESPACE, KEYCLOAK_ROUTE, Markers, NEXUS_DEPLOYMENT, PLATFORM_CODEBASE,
};
pub use model::{
    ClusterProbe, KeycloakFacts, RegistryInfo, StorageLocationInfo, VeleroFacts, WorkloadFacts,
};
pub use probe::{ProbeOptions, probe};
pub(crate) use probe::{route_resource, route_url};
