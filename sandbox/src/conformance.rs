//! The kubectl conformance scenarios: what a person does with real kubectl
//! against a cluster, run against any kubeconfig and recorded as structured,
//! normalised observations. The sandbox's tests assert them; the same
//! scenarios run against a real kube-apiserver give observations to compare
//! with [`Observations::differences`].
//!
//! Normalised means: the run's namespace is `$NS`, server-generated name
//! suffixes are `<generated>`, and nothing that differs between two correct
//! servers (uids, timestamps, resourceVersions, allocated cluster IPs) is recorded.
//! Every object a scenario makes carries the label `suite=conformance`, so
//! selectors skip what a real cluster adds on its own (`kube-root-ca.crt`).
//!
//! Unlike the rest of the crate this module returns `anyhow` errors: it is a
//! test harness whose failures are read by a person (which scenario, which
//! kubectl call, what it printed), never matched by a caller.

mod kubectl;
mod scenarios;

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use kubectl::{Kubectl, Run};

/// Everything the scenarios saw, one field per scenario.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observations {
    pub create_namespace: CreateNamespace,
    pub typed_creates: TypedCreates,
    pub create_deployment: CreateDeployment,
    pub scale: Scale,
    pub server_side_apply: ServerSideApply,
    pub diff: Diff,
    pub dry_run: DryRun,
    pub label_selectors: Selections,
    pub field_selectors: Selections,
    pub watch_update: WatchUpdate,
    pub errors: Errors,
    pub watch_resume: WatchResume,
    pub explain: Explain,
    pub table_headers: TableHeaders,
}

/// The header line `kubectl get` prints per kind (and with `-o wide`): the
/// columns the server's Table names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableHeaders {
    pub results: BTreeMap<String, String>,
}

/// `kubectl create namespace`, with and without `--dry-run=server`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateNamespace {
    pub exit: i32,
    pub output: String,
    pub phase: Option<String>,
    pub labels: Value,
    pub dry_run_output: String,
    /// Whether the dry-run namespace exists afterwards (it must not).
    pub dry_run_left_object: bool,
}

/// `kubectl create configmap|secret|service|serviceaccount`: typed clients,
/// protobuf bodies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypedCreates {
    pub outputs: Vec<String>,
    pub configmap_data: Value,
    pub secret_data: Value,
    pub secret_type: Option<String>,
    pub service_ports: Value,
    pub service_selector: Value,
    /// The Service's spec without its allocated `clusterIP(s)`.
    pub service_spec: Value,
    pub serviceaccount_exists: bool,
    /// `kubectl create -f` of an object with only `generateName`.
    pub generated_name: String,
}

/// `kubectl create deployment`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateDeployment {
    pub exit: i32,
    pub output: String,
    pub replicas: Option<i64>,
    pub selector: Value,
    pub labels: Value,
    pub containers: Value,
    pub generation: Option<i64>,
    /// The whole spec, with the server's defaults.
    pub spec: Value,
}

/// `kubectl scale deployment --replicas=3`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scale {
    pub exit: i32,
    pub output: String,
    pub replicas: Option<i64>,
    pub generation: Option<i64>,
    /// `--current-replicas` naming the wrong count refuses to scale.
    pub wrong_precondition_exit: i32,
    pub replicas_after_refusal: Option<i64>,
}

/// `kubectl apply --server-side` creating, then changing, a ConfigMap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerSideApply {
    pub create_output: String,
    pub update_output: String,
    pub data: Value,
    pub labels: Value,
}

/// `kubectl diff` against the applied ConfigMap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diff {
    pub same_exit: i32,
    pub same_output: String,
    pub changed_exit: i32,
    /// The `-`/`+` lines of the diff, headers left out.
    pub changed_lines: Vec<String>,
    /// Client-side diff (a dry-run strategic merge patch).
    pub client_side_changed_exit: i32,
    /// The live value after both diffs (diff must not write).
    pub live_after: Value,
}

/// `--dry-run=server` on apply and delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DryRun {
    pub apply_output: String,
    /// Client-side `apply --dry-run=server` (a dry-run strategic merge patch).
    pub client_side_apply_output: String,
    pub delete_output: String,
    pub live_after: Value,
    /// `create deployment --dry-run=server -o json`: which server-set
    /// metadata the answer carries (`uid`, `resourceVersion`, …: present or
    /// not) and its replicas.
    pub created_metadata: BTreeMap<String, bool>,
    pub created_replicas: Option<i64>,
    /// Whether the dry-run Deployment exists afterwards (it must not).
    pub created_left_object: bool,
}

/// Selector → the `-o name` lines kubectl printed, sorted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selections {
    pub results: BTreeMap<String, Vec<String>>,
}

/// `kubectl get -w` seeing a change made while it watches.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchUpdate {
    /// `TYPE name [stage=…]`, up to the first event showing the change.
    pub events: Vec<String>,
}

/// The bodies of failed requests, as sent on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Errors {
    pub not_found: ErrorBody,
    pub already_exists: ErrorBody,
    pub invalid: ErrorBody,
    /// kubectl's own rendering of a 404.
    pub kubectl_not_found: String,
    /// A ConfigMap named `Bad_Name`, POSTed.
    pub invalid_name: ErrorBody,
    /// `kubectl create` with names a real server refuses: exit code and
    /// what kubectl printed.
    pub kubectl_invalid_names: BTreeMap<String, (i32, String)>,
}

/// A `Status` body, normalised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub http_status: u16,
    pub kind: Option<String>,
    pub api_version: Option<String>,
    pub status: Option<String>,
    pub reason: Option<String>,
    pub code: Option<i64>,
    pub message: Option<String>,
    pub details_name: Option<String>,
    pub details_kind: Option<String>,
    pub details_group: Option<String>,
    /// `field: reason` of each cause.
    pub causes: Vec<String>,
}

/// A watch started from a list's resourceVersion replays what changed since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchResume {
    /// `TYPE name`, in order.
    pub events: Vec<String>,
}

/// `kubectl explain` of built-in fields: exit code and the lines naming the
/// group, kind, version and field with its type (descriptions differ).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explain {
    pub results: BTreeMap<String, (i32, Vec<String>)>,
}

impl Observations {
    /// Where `self` and `other` differ, as `path: left != right` lines.
    pub fn differences(&self, other: &Observations) -> Vec<String> {
        let (a, b) = match (serde_json::to_value(self), serde_json::to_value(other)) {
            (Ok(a), Ok(b)) => (a, b),
            (Err(e), _) | (_, Err(e)) => return vec![format!("cannot compare: {e}")],
        };
        let mut out = Vec::new();
        diff_values("", &a, &b, &mut out);
        out
    }
}

fn diff_values(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                diff_values(
                    &p,
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        _ if a != b => out.push(format!("{path}: {a} != {b}")),
        _ => {}
    }
}

/// Runs every scenario with `kubectl` against the cluster of `kubeconfig`,
/// in a namespace of its own (deleted at the end).
pub async fn run_all(kubectl: &Path, kubeconfig: &Path) -> anyhow::Result<Observations> {
    scenarios::run_all(kubectl, kubeconfig).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_the_path() {
        let mut a = BTreeMap::new();
        a.insert("tier=a".to_string(), vec!["configmap/cm-a".to_string()]);
        let left = Selections { results: a };
        let mut right = left.clone();
        right.results.insert("tier".into(), vec![]);
        let (l, r) = (
            serde_json::to_value(&left).unwrap_or_default(),
            serde_json::to_value(&right).unwrap_or_default(),
        );
        let mut out = Vec::new();
        diff_values("", &l, &r, &mut out);
        assert_eq!(out, vec!["results.tier: null != []".to_string()]);
    }
}
