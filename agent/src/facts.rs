//! What the agent reports of its cluster: probed through Kubernetes when a
//! kubeconfig or the in-cluster account is configured, otherwise the facts
//! given by flags.
use std::time::Duration;

use ferry_common::pb;

use crate::AgentConfig;
use crate::platform::{self, ClusterProbe, ProbeOptions};

pub const CAPABILITIES: &[&str] = &[
    "describe",
    "ping",
    "relay-source",
    "relay-sink",
    "load",
    "migration-steps",
];

const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

/// The configured facts, for when no probe runs (or it failed).
pub fn configured(config: &AgentConfig) -> pb::ClusterFacts {
    pb::ClusterFacts {
        platform_version: config.platform_version.clone(),
        registries: config.registries.clone(),
    }
}

/// Probes the cluster, if the agent is configured to.
pub async fn probe(config: &AgentConfig) -> Option<Result<ClusterProbe, String>> {
    if config.kubeconfig.is_none() && !config.in_cluster {
        return None;
    }
    let run = async {
        let client = platform::connect(config.kubeconfig.as_deref())
            .await
            .map_err(|e| e.to_string())?;
        let options = ProbeOptions {
            keycloak_url: config.keycloak_url.clone(),
            ..ProbeOptions::default()
        };
        platform::probe(&client, &options)
            .await
            .map_err(|e| e.to_string())
    };
    Some(match tokio::time::timeout(PROBE_TIMEOUT, run).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "the cluster did not answer the probe within {PROBE_TIMEOUT:?}"
        )),
    })
}

/// The facts to report now, with the full probe (JSON) and any probe error.
pub async fn current(config: &AgentConfig) -> (pb::ClusterFacts, String, String) {
    match probe(config).await {
        None => (configured(config), String::new(), String::new()),
        Some(Ok(p)) => (
            p.to_facts(),
            serde_json::to_string(&p).unwrap_or_default(),
            String::new(),
        ),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "cluster probe failed; reporting the configured facts");
            (configured(config), String::new(), e)
        }
    }
}
