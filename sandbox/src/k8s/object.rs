//! Small accessors for the metadata of untyped objects, and the server-side
//! rules for fields a client may not set (uid, creationTimestamp, …).

use serde_json::{Map, Value};

pub fn meta(object: &Value) -> Option<&Map<String, Value>> {
    object.get("metadata").and_then(Value::as_object)
}

pub fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    meta(object)
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

pub fn name(object: &Value) -> Option<&str> {
    meta_str(object, "name")
}

pub fn namespace(object: &Value) -> Option<&str> {
    meta_str(object, "namespace")
}

pub fn resource_version(object: &Value) -> Option<&str> {
    meta_str(object, "resourceVersion")
}

/// `metadata`, created when absent (and replacing a non-object).
pub fn meta_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.is_object() {
        *object = Value::Object(Map::new());
    }
    let map = match object {
        Value::Object(map) => map,
        _ => unreachable!("made an object just above"),
    };
    let entry = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    match entry {
        Value::Object(m) => m,
        _ => unreachable!("made an object just above"),
    }
}

pub fn set_meta(object: &mut Value, field: &str, value: Value) {
    meta_mut(object).insert(field.into(), value);
}

/// Everything but metadata and status: a change here bumps `generation`.
pub fn spec_part(object: &Value) -> Map<String, Value> {
    object
        .as_object()
        .map(|m| {
            m.iter()
                .filter(|(k, _)| {
                    !matches!(k.as_str(), "metadata" | "status" | "apiVersion" | "kind")
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// Sets `status` (or removes it when `status` is None).
pub fn set_status(object: &mut Value, status: Option<Value>) {
    if let Some(map) = object.as_object_mut() {
        match status {
            Some(s) => {
                map.insert("status".into(), s);
            }
            None => {
                map.remove("status");
            }
        }
    }
}

/// Copies the fields only the server owns from `from` into `to`.
pub fn keep_server_fields(from: &Value, to: &mut Value) {
    for field in [
        "uid",
        "creationTimestamp",
        "generation",
        "deletionTimestamp",
    ] {
        let old = meta(from).and_then(|m| m.get(field)).cloned();
        let new = meta_mut(to);
        match old {
            Some(v) => {
                new.insert(field.into(), v);
            }
            None => {
                new.remove(field);
            }
        }
    }
}

/// Reads a `.a.b.c` JSON path (as CRD scale paths are written).
pub fn get_path<'a>(object: &'a Value, path: &str) -> Option<&'a Value> {
    path.trim_start_matches('.')
        .split('.')
        .try_fold(object, |v, k| v.get(k))
}

/// Writes a `.a.b.c` JSON path, creating intermediate objects.
pub fn set_path(object: &mut Value, path: &str, value: Value) {
    let mut cur = object;
    let parts: Vec<&str> = path.trim_start_matches('.').split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        let Value::Object(map) = cur else { return };
        if i + 1 == parts.len() {
            map.insert((*part).into(), value);
            return;
        }
        cur = map
            .entry((*part).to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths() {
        let mut o = json!({});
        set_path(&mut o, ".spec.replicas", json!(3));
        assert_eq!(get_path(&o, ".spec.replicas"), Some(&json!(3)));
        set_meta(&mut o, "name", json!("x"));
        assert_eq!(name(&o), Some("x"));
        assert_eq!(spec_part(&o).len(), 1);
    }
}
