//! The item filters of Backup and Restore specs: namespaces, resources and
//! the label selector, with Velero's matching rules.

use serde_json::Value;

use super::error::{Result, VeleroError};
use super::meta::strings_at;
use crate::k8s::{LabelSelector, ResourceType};

/// `includedNamespaces` / `excludedNamespaces`.
#[derive(Debug, Clone)]
pub(crate) struct NamespaceFilter {
    included: Vec<String>,
    excluded: Vec<String>,
}

impl NamespaceFilter {
    pub fn from_spec(spec: &Value) -> Self {
        NamespaceFilter {
            included: strings_at(spec, &["includedNamespaces"]),
            excluded: strings_at(spec, &["excludedNamespaces"]),
        }
    }

    pub fn allows(&self, namespace: &str) -> bool {
        let included =
            self.included.is_empty() || self.included.iter().any(|n| n == "*" || n == namespace);
        included && !self.excluded.iter().any(|n| n == namespace)
    }
}

/// `includedResources` / `excludedResources`: names as `kubectl` takes them
/// (plural, singular, kind, short name, optionally `.group`), `*` for all.
#[derive(Debug, Clone)]
pub(crate) struct ResourceFilter {
    included: Vec<String>,
    excluded: Vec<String>,
}

impl ResourceFilter {
    pub fn from_spec(spec: &Value, always_excluded: &[&str]) -> Self {
        let mut excluded = strings_at(spec, &["excludedResources"]);
        excluded.extend(always_excluded.iter().map(|s| (*s).to_owned()));
        ResourceFilter {
            included: strings_at(spec, &["includedResources"]),
            excluded,
        }
    }

    pub fn allows(&self, rt: &ResourceType) -> bool {
        let included = self.included.is_empty() || self.included.iter().any(|r| names_type(r, rt));
        included && !self.excluded.iter().any(|r| r != "*" && names_type(r, rt))
    }
}

/// Whether `name` designates the resource type `rt`.
fn names_type(name: &str, rt: &ResourceType) -> bool {
    if name == "*" {
        return true;
    }
    let name = name.to_ascii_lowercase();
    let (base, group) = match name.split_once('.') {
        Some((base, group)) => (base, Some(group)),
        None => (name.as_str(), None),
    };
    if group.is_some_and(|g| g != rt.group) {
        return false;
    }
    base == rt.plural
        || base == rt.singular
        || base == rt.kind.to_ascii_lowercase()
        || rt.short_names.iter().any(|s| s == base)
}

/// A `metav1.LabelSelector` (matchLabels, matchExpressions) as the store's
/// selector; an absent one selects everything.
pub(crate) fn label_selector(selector: Option<&Value>) -> Result<LabelSelector> {
    let Some(selector) = selector.filter(|s| !s.is_null()) else {
        return LabelSelector::parse("").map_err(bad_selector);
    };
    let mut parts = Vec::new();
    if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in labels {
            parts.push(format!("{k}={}", v.as_str().unwrap_or_default()));
        }
    }
    for expr in selector
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = expr.get("key").and_then(Value::as_str).unwrap_or_default();
        let values = strings_at(expr, &["values"]).join(",");
        let op = expr
            .get("operator")
            .and_then(Value::as_str)
            .unwrap_or_default();
        parts.push(match op {
            "In" => format!("{key} in ({values})"),
            "NotIn" => format!("{key} notin ({values})"),
            "Exists" => key.to_owned(),
            "DoesNotExist" => format!("!{key}"),
            other => {
                return Err(VeleroError::malformed(
                    "labelSelector",
                    format!("unknown operator {other:?} for key {key:?}"),
                ));
            }
        });
    }
    LabelSelector::parse(&parts.join(",")).map_err(bad_selector)
}

fn bad_selector(e: crate::k8s::K8sError) -> VeleroError {
    VeleroError::malformed("labelSelector", e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selector_and_namespaces() -> Result<()> {
        let sel = label_selector(Some(&json!({
            "matchLabels": {"app.kubernetes.io/name": "vault"},
            "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["x"]}]
        })))?;
        let obj = json!({"metadata": {"labels": {"app.kubernetes.io/name": "vault"}}});
        assert!(sel.matches(&obj));
        assert!(!sel.matches(&json!({"metadata": {"labels": {"app": "vault"}}})));
        assert!(label_selector(None)?.matches(&obj));
        let ns = NamespaceFilter::from_spec(
            &json!({"includedNamespaces": ["a"], "excludedNamespaces": ["b"]}),
        );
        assert!(ns.allows("a") && !ns.allows("b") && !ns.allows("c"));
        Ok(())
    }
}
