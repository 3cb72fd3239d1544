//! What the agent reports of its cluster. Until the cluster probe (Kubernetes
//! through `kube`) is configured, the facts come from the agent's flags.
use ferry_common::pb;

use crate::AgentConfig;

pub const CAPABILITIES: &[&str] = &["describe", "ping", "relay-source", "relay-sink"];

pub fn facts(config: &AgentConfig) -> pb::ClusterFacts {
    pb::ClusterFacts {
        platform_version: config.platform_version.clone(),
        registries: config.registries.clone(),
    }
}
