//! Small helpers for untyped objects.

use serde_json::{Map, Value, json};

pub(crate) fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(v, |v, k| v.get(k))?
        .as_str()
        .filter(|s| !s.is_empty())
}

pub(crate) fn name(v: &Value) -> &str {
    str_at(v, &["metadata", "name"]).unwrap_or_default()
}

pub(crate) fn namespace(v: &Value) -> Option<&str> {
    str_at(v, &["metadata", "namespace"])
}

pub(crate) fn phase(v: &Value) -> &str {
    str_at(v, &["status", "phase"]).unwrap_or_default()
}

/// The strings of an array at `path` (empty when absent).
pub(crate) fn strings_at(v: &Value, path: &[&str]) -> Vec<String> {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn metadata_mut(v: &mut Value) -> Option<&mut Map<String, Value>> {
    let obj = v.as_object_mut()?;
    let meta = obj.entry("metadata").or_insert_with(|| json!({}));
    meta.as_object_mut()
}

/// Sets a label, creating `metadata.labels` when missing.
pub(crate) fn set_label(v: &mut Value, key: &str, value: &str) {
    if let Some(meta) = metadata_mut(v) {
        let labels = meta.entry("labels").or_insert_with(|| json!({}));
        if let Some(labels) = labels.as_object_mut() {
            labels.insert(key.into(), json!(value));
        }
    }
}

/// Drops what the API server owns, as Velero does before storing an item:
/// uid, resourceVersion, creationTimestamp, managedFields, generation,
/// selfLink and deletion fields.
pub(crate) fn strip_server_fields(v: &mut Value) {
    if let Some(meta) = metadata_mut(v) {
        for field in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "managedFields",
            "generation",
            "selfLink",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            meta.remove(field);
        }
    }
}
