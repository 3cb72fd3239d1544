//! The facts a probe found, serialisable for `describe` and preflight.

use ferry_common::pb;
use serde::{Deserialize, Serialize};

/// What the probe saw of the Platform in one cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterProbe {
    /// The Platform version; `None` on a cluster without the Platform.
    pub platform_version: Option<String>,
    /// Registries found, sorted by name.
    pub registries: Vec<RegistryInfo>,
    pub keycloak: KeycloakFacts,
    pub gerrit: WorkloadFacts,
    pub nexus: WorkloadFacts,
    pub velero: VeleroFacts,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryInfo {
    pub name: String,
    /// The registry's version (`spec.defaultBranch` of its Codebase).
    pub version: Option<String>,
    /// Namespace the registry's Codebase was found in.
    pub codebase_namespace: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeycloakFacts {
    /// The `user-management` namespace exists.
    pub namespace: bool,
    /// The admin API base URL: configured, or from the Keycloak route.
    pub url: Option<String>,
    /// Whether `<url>/realms/master` answered; `None` when not checked.
    pub reachable: Option<bool>,
}

impl KeycloakFacts {
    /// Present: its namespace exists and its URL is known and, if checked,
    /// answers.
    pub fn present(&self) -> bool {
        self.namespace && self.url.is_some() && self.reachable != Some(false)
    }
}

/// A central workload (Gerrit, Nexus) as a Deployment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadFacts {
    pub present: bool,
    /// Desired replicas (`spec.replicas`, Kubernetes' default 1).
    pub replicas: i32,
    pub ready_replicas: i32,
}

impl WorkloadFacts {
    /// Present with every desired replica ready (and at least one).
    pub fn healthy(&self) -> bool {
        self.present && self.ready_replicas >= 1 && self.ready_replicas >= self.replicas
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VeleroFacts {
    /// The `velero` namespace exists.
    pub namespace: bool,
    /// The API server serves `backupstoragelocations.velero.io`.
    pub crds: bool,
    pub locations: Vec<StorageLocationInfo>,
}

impl VeleroFacts {
    pub fn present(&self) -> bool {
        self.namespace && self.crds
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageLocationInfo {
    pub name: String,
    /// `status.phase`: `Available`, `Unavailable`, or `None` before Velero
    /// validated it.
    pub phase: Option<String>,
    pub bucket: String,
    pub prefix: Option<String>,
    pub default: bool,
}

impl ClusterProbe {
    /// The Platform is installed (its version marker was found).
    pub fn has_platform(&self) -> bool {
        self.platform_version.is_some()
    }

    /// The facts the agent registers with (absent values as empty strings,
    /// the contract's "unknown").
    pub fn to_facts(&self) -> pb::ClusterFacts {
        pb::ClusterFacts {
            platform_version: self.platform_version.clone().unwrap_or_default(),
            registries: self
                .registries
                .iter()
                .map(|r| pb::RegistryFacts {
                    name: r.name.clone(),
                    version: r.version.clone().unwrap_or_default(),
                })
                .collect(),
        }
    }

    /// What keeps this cluster from being a migration target, in words an
    /// operator can act on; empty when nothing does.
    pub fn target_problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.has_platform() {
            out.push("the Platform is not installed (no control-plane version marker)".into());
        }
        if !self.keycloak.present() {
            out.push(match (&self.keycloak.url, self.keycloak.reachable) {
                (_, Some(false)) => "Keycloak does not answer at its URL".to_owned(),
                (None, _) => "Keycloak (user-management) is not present or has no URL".to_owned(),
                _ => "the user-management namespace is missing".to_owned(),
            });
        }
        for (name, w) in [("Gerrit", &self.gerrit), ("Nexus", &self.nexus)] {
            if !w.present {
                out.push(format!("central {name} is not installed"));
            } else if !w.healthy() {
                out.push(format!(
                    "central {name} is not ready ({}/{} replicas)",
                    w.ready_replicas, w.replicas
                ));
            }
        }
        if !self.velero.present() {
            out.push("Velero is not installed (namespace velero or its CRDs missing)".into());
        } else if self.velero.locations.is_empty() {
            out.push("Velero has no backup storage location".into());
        }
        for l in &self.velero.locations {
            if l.phase.as_deref() != Some("Available") {
                out.push(format!(
                    "backup storage location {} is {}",
                    l.name,
                    l.phase.as_deref().unwrap_or("not validated yet")
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_cluster_gives_empty_facts_and_reasons() {
        let probe = ClusterProbe::default();
        let facts = probe.to_facts();
        assert_eq!(facts.platform_version, "");
        assert!(facts.registries.is_empty());
        assert_eq!(probe.target_problems().len(), 5);
    }

    #[test]
    fn workload_health_needs_every_replica() {
        let w = |replicas, ready_replicas| WorkloadFacts {
            present: true,
            replicas,
            ready_replicas,
        };
        assert!(w(1, 1).healthy());
        assert!(!w(2, 1).healthy());
        assert!(!w(0, 0).healthy());
    }
}
