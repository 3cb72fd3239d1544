//! PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902), and the
//! Kubernetes-specific strategic-merge and server-side-apply patches, which
//! the sandbox approximates with a merge patch (see `PatchKind`).

use serde_json::Value;

use super::error::{K8sError, Result};

/// The patch flavours, told apart by the request's Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/merge-patch+json`.
    Merge,
    /// `application/json-patch+json`.
    Json,
    /// `application/strategic-merge-patch+json`: applied as a merge patch.
    /// Lists are replaced rather than merged by key, which is what kubectl
    /// apply needs for the objects the sandbox holds.
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply): merged into the
    /// live object, or creates it. Field ownership is not tracked.
    Apply,
}

pub const ACCEPTED_PATCH_TYPES: &str = "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml";

impl PatchKind {
    pub fn from_content_type(content_type: &str) -> Result<Self> {
        let media = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match media.as_str() {
            "application/merge-patch+json" => Ok(PatchKind::Merge),
            "application/json-patch+json" => Ok(PatchKind::Json),
            "application/strategic-merge-patch+json" => Ok(PatchKind::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Ok(PatchKind::Apply),
            _ => Err(K8sError::UnsupportedMediaType(ACCEPTED_PATCH_TYPES.into())),
        }
    }

    /// Parses the body: apply patches may be YAML (JSON is YAML too).
    pub fn parse_body(self, body: &[u8]) -> Result<Value> {
        match self {
            PatchKind::Apply => serde_yaml_ng::from_slice(body)
                .map_err(|e| K8sError::BadRequest(format!("the apply patch is not YAML: {e}"))),
            _ => serde_json::from_slice(body)
                .map_err(|e| K8sError::BadRequest(format!("the patch is not JSON: {e}"))),
        }
    }
}

/// RFC 7386: objects merge recursively, `null` deletes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    if let Value::Object(target_map) = target {
        for (key, value) in patch_map {
            if value.is_null() {
                target_map.remove(key);
            } else {
                merge_patch(target_map.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// Applies `patch` of `kind` to a copy of `current` and returns the result.
pub fn apply(kind: PatchKind, current: &Value, patch: &Value) -> Result<Value> {
    let mut out = current.clone();
    match kind {
        PatchKind::Merge | PatchKind::Strategic | PatchKind::Apply => {
            // Strategic-merge directives (`$patch`, `$retainKeys`, …) have no
            // meaning for a merge patch: drop them instead of storing them.
            let mut patch = patch.clone();
            strip_directives(&mut patch);
            merge_patch(&mut out, &patch);
        }
        PatchKind::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| K8sError::BadRequest(format!("the JSON patch is malformed: {e}")))?;
            json_patch::patch(&mut out, &ops).map_err(|e| K8sError::Invalid {
                kind: String::new(),
                group: String::new(),
                name: String::new(),
                message: format!("the JSON patch could not be applied: {e}"),
            })?;
        }
    }
    Ok(out)
}

fn strip_directives(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.retain(|k, _| !k.starts_with("$setElementOrder/") && !k.starts_with('$'));
            map.values_mut().for_each(strip_directives);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_directives),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}}));
        let mut t = json!({"a": [1, 2]});
        merge_patch(&mut t, &json!({"a": [3]}));
        assert_eq!(t, json!({"a": [3]}));
    }

    #[test]
    fn json_patch_ops_and_failed_test() -> Result<()> {
        let cur = json!({"metadata": {"labels": {"a": "1"}}, "data": {"k": "v"}});
        let out = apply(
            PatchKind::Json,
            &cur,
            &json!([{"op": "add", "path": "/metadata/labels/b", "value": "2"},
                    {"op": "remove", "path": "/data/k"}]),
        )?;
        assert_eq!(out["metadata"]["labels"]["b"], "2");
        assert_eq!(out["data"], json!({}));
        let failed = apply(
            PatchKind::Json,
            &cur,
            &json!([{"op": "test", "path": "/data/k", "value": "other"}]),
        );
        assert!(matches!(failed, Err(K8sError::Invalid { .. })));
        Ok(())
    }

    #[test]
    fn content_types() {
        assert_eq!(
            PatchKind::from_content_type("application/merge-patch+json; charset=utf-8").ok(),
            Some(PatchKind::Merge)
        );
        assert!(PatchKind::from_content_type("text/plain").is_err());
    }
}
