//! The `scale` subresource: an `autoscaling/v1` Scale view of an object's
//! replica count, for `kubectl scale` and kube-rs `Api::patch_scale`.

use serde_json::{Value, json};

use super::error::{K8sError, Result};
use super::object;
use super::resource::{ResourceType, ScaleSpec};

fn spec_of(rt: &ResourceType) -> Result<&ScaleSpec> {
    rt.scale
        .as_ref()
        .ok_or_else(|| K8sError::UnknownResource(format!("{}/scale", rt.plural)))
}

/// The Scale view of `obj`.
pub fn scale_of(rt: &ResourceType, obj: &Value) -> Result<Value> {
    let spec = spec_of(rt)?;
    let mut metadata = serde_json::Map::new();
    for field in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = object::meta(obj).and_then(|m| m.get(field)) {
            metadata.insert(field.into(), v.clone());
        }
    }
    let replicas = object::get_path(obj, &spec.spec_replicas)
        .cloned()
        .unwrap_or(json!(0));
    let current = object::get_path(obj, &spec.status_replicas)
        .cloned()
        .unwrap_or(json!(0));
    let mut status = json!({"replicas": current});
    if let Some(selector) = spec
        .label_selector
        .as_deref()
        .and_then(|p| object::get_path(obj, p))
        .and_then(Value::as_str)
    {
        object::set_path(&mut status, ".selector", json!(selector));
    }
    Ok(json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": replicas},
        "status": status,
    }))
}

/// A merge patch that writes the Scale's desired replicas into the object,
/// carrying the Scale's resourceVersion as the precondition.
pub fn object_patch(rt: &ResourceType, scale: &Value) -> Result<Value> {
    let spec = spec_of(rt)?;
    // Zero replicas is left out of JSON (`omitempty`), as the real server
    // reads a Scale: absent means 0.
    let replicas = match object::get_path(scale, ".spec.replicas") {
        None | Some(Value::Null) => json!(0),
        Some(v) if v.is_i64() || v.is_u64() => v.clone(),
        Some(v) => {
            return Err(K8sError::BadRequest(format!(
                "a Scale's spec.replicas must be an integer, not {v}"
            )));
        }
    };
    let mut patch = json!({});
    object::set_path(&mut patch, &spec.spec_replicas, replicas);
    if let Some(rv) = object::resource_version(scale) {
        object::set_meta(&mut patch, "resourceVersion", json!(rv));
    }
    Ok(patch)
}
