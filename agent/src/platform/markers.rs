//! Where the Platform's facts live in a cluster. The sandbox's Platform
//! fixture creates exactly these objects; a real cluster that differs can be
//! described with another [`Markers`].

/// The Platform's control-plane namespace.
pub const CONTROL_PLANE_NAMESPACE: &str = "control-plane";
/// The control plane's own `Codebase` (the Platform's infrastructure
/// component); its `spec.defaultBranch` is the Platform version, as a
/// registry's Codebase carries the registry version.
pub const PLATFORM_CODEBASE: &str = "cluster-mgmt";
/// Central Gerrit (regulations): a Deployment in the control-plane namespace.
pub const GERRIT_DEPLOYMENT: &str = "gerrit";
/// Central Nexus (image registry): a Deployment in the control-plane namespace.
pub const NEXUS_DEPLOYMENT: &str = "nexus";
/// Namespace of the central Keycloak.
pub const KEYCLOAK_NAMESPACE: &str = "user-management";
/// OpenShift Route of the central Keycloak (its `spec.host` gives the URL
/// when none is configured).
pub const KEYCLOAK_ROUTE: &str = "keycloak";

pub const CODEBASE_GROUP: &str = "v2.edp.epam.com";
pub const CODEBASE_VERSION: &str = "v1";
pub const CODEBASE_PLURAL: &str = "codebases";

/// The names the probe looks for. `Default` is the Platform's layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Markers {
    pub control_plane_namespace: String,
    pub platform_codebase: String,
    pub gerrit_deployment: String,
    pub nexus_deployment: String,
    pub keycloak_namespace: String,
    pub keycloak_route: String,
    pub velero_namespace: String,
}

impl Default for Markers {
    fn default() -> Self {
        Markers {
            control_plane_namespace: CONTROL_PLANE_NAMESPACE.into(),
            platform_codebase: PLATFORM_CODEBASE.into(),
            gerrit_deployment: GERRIT_DEPLOYMENT.into(),
            nexus_deployment: NEXUS_DEPLOYMENT.into(),
            keycloak_namespace: KEYCLOAK_NAMESPACE.into(),
            keycloak_route: KEYCLOAK_ROUTE.into(),
            velero_namespace: crate::velero::VELERO_NAMESPACE.into(),
        }
    }
}
