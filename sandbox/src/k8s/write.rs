//! The API server's rules for writes, applied under the store's lock:
//! namespace scoping, apiVersion/kind checks, resourceVersion preconditions,
//! status subresource, generation, and cascading deletes.

use serde_json::{Value, json};

use super::error::{K8sError, ObjectRef, Result};
use super::object;
use super::patch::{self, PatchKind};
use super::resource::{Gvr, ResourceType, split_api_version};
use super::state::{ObjKey, State};
use super::store::Part;
use super::watch::{EventType, WatchFilter};

pub(crate) fn selectors_match(filter: &WatchFilter, obj: &Value) -> bool {
    filter.labels.matches(obj) && filter.fields.matches(obj)
}

pub(crate) fn obj_ref<'a>(rt: &'a ResourceType, name: &'a str) -> ObjectRef<'a> {
    ObjectRef {
        group: &rt.group,
        plural: &rt.plural,
        kind: &rt.kind,
        name,
    }
}

/// The namespace an object of `rt` lives in: required for namespaced types,
/// absent for cluster-scoped ones. A body naming another namespace than the
/// URL is refused, as the real server does.
pub(crate) fn scope_namespace(
    rt: &ResourceType,
    url: Option<&str>,
    body: Option<&str>,
) -> Result<Option<String>> {
    if !rt.namespaced {
        return Ok(None);
    }
    match (url, body) {
        (Some(u), Some(b)) if u != b => Err(K8sError::BadRequest(
            "the namespace of the provided object does not match the namespace sent on the request"
                .into(),
        )),
        (Some(n), _) | (None, Some(n)) => Ok(Some(n.to_string())),
        (None, None) => Err(K8sError::BadRequest(format!(
            "a namespace is required to store a {}",
            rt.kind
        ))),
    }
}

pub(crate) fn object_key(rt: &ResourceType, namespace: Option<&str>, name: &str) -> Result<ObjKey> {
    if rt.namespaced {
        let ns = namespace.ok_or_else(|| {
            K8sError::BadRequest(format!("a namespace is required to address a {}", rt.kind))
        })?;
        Ok((ns.to_string(), name.to_string()))
    } else {
        Ok((String::new(), name.to_string()))
    }
}

/// apiVersion and kind in a body must name the resource addressed.
pub(crate) fn check_type_fields(obj: &Value, gvr: &Gvr, rt: &ResourceType) -> Result<()> {
    if let Some(av) = obj.get("apiVersion").and_then(Value::as_str) {
        let (group, _) = split_api_version(av);
        if group != rt.group || !rt.serves(split_api_version(av).1) {
            return Err(K8sError::BadRequest(format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                gvr.api_version()
            )));
        }
    }
    if let Some(kind) = obj.get("kind").and_then(Value::as_str)
        && kind != rt.kind
    {
        return Err(K8sError::BadRequest(format!(
            "the kind in the data ({kind}) does not match the expected kind ({})",
            rt.kind
        )));
    }
    Ok(())
}

pub(crate) fn set_type_fields(obj: &mut Value, rt: &ResourceType, version: &str) {
    if let Some(map) = obj.as_object_mut() {
        map.insert(
            "apiVersion".into(),
            json!(super::resource::api_version(&rt.group, version)),
        );
        map.insert("kind".into(), json!(rt.kind));
    }
}

/// The object as served at `gvr`'s version.
pub(crate) fn present(mut obj: Value, gvr: &Gvr) -> Value {
    if let Some(map) = obj.as_object_mut() {
        map.insert("apiVersion".into(), json!(gvr.api_version()));
    }
    obj
}

/// The write shared by update, update_status and patch.
pub(crate) fn write(
    state: &mut State,
    rt: &ResourceType,
    gvr: &Gvr,
    namespace: Option<&str>,
    name: &str,
    obj: Value,
    part: Part,
) -> Result<Value> {
    let key = object_key(rt, namespace, name)?;
    if let (true, Some(body_ns)) = (rt.namespaced, object::namespace(&obj))
        && Some(body_ns) != namespace
    {
        return Err(K8sError::BadRequest(
            "the namespace of the provided object does not match the namespace sent on the request"
                .into(),
        ));
    }
    let gr = rt.group_resource();
    let current = state
        .bucket(&gr)
        .and_then(|b| b.get(&key))
        .cloned()
        .ok_or_else(|| obj_ref(rt, name).not_found())?;
    if let Some(rv) = object::resource_version(&obj)
        && Some(rv) != object::resource_version(&current)
    {
        return Err(obj_ref(rt, name).conflict());
    }
    let mut next = match part {
        Part::Status => {
            let mut next = current.clone();
            object::set_status(&mut next, obj.get("status").cloned());
            next
        }
        Part::Main => {
            let mut next = obj;
            object::keep_server_fields(&current, &mut next);
            super::defaults::apply(&rt.kind, &mut next);
            if rt.status_subresource {
                object::set_status(&mut next, current.get("status").cloned());
            }
            if rt.tracks_generation && object::spec_part(&next) != object::spec_part(&current) {
                let generation = object::meta(&current)
                    .and_then(|m| m.get("generation"))
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                object::set_meta(&mut next, "generation", json!(generation + 1));
            }
            next
        }
    };
    set_type_fields(&mut next, rt, rt.storage_version());
    let meta = object::meta_mut(&mut next);
    meta.insert("name".into(), json!(name));
    if rt.namespaced {
        meta.insert("namespace".into(), json!(key.0));
    }
    meta.remove("managedFields");
    // Writing back what is stored changes nothing and bumps no resourceVersion.
    if let Some(rv) = object::resource_version(&current) {
        object::set_meta(&mut next, "resourceVersion", json!(rv));
    }
    if next == current {
        return Ok(present(current, gvr));
    }
    if rt.kind == "CustomResourceDefinition" && part == Part::Main {
        state.register_crd_type(&next)?;
    }
    let stored = state.commit(&gr, key, EventType::Modified, next, Some(current));
    Ok(present(stored, gvr))
}

pub(crate) fn delete_locked(
    state: &mut State,
    rt: &ResourceType,
    gvr: &Gvr,
    key: ObjKey,
    precondition_rv: Option<&str>,
) -> Result<Value> {
    let gr = rt.group_resource();
    let current = state
        .bucket(&gr)
        .and_then(|b| b.get(&key))
        .cloned()
        .ok_or_else(|| obj_ref(rt, &key.1).not_found())?;
    if let Some(rv) = precondition_rv.filter(|rv| !rv.is_empty())
        && Some(rv) != object::resource_version(&current)
    {
        return Err(obj_ref(rt, &key.1).conflict());
    }
    match rt.kind.as_str() {
        "Namespace" => state.delete_namespace_contents(&key.1),
        "CustomResourceDefinition" => state.unregister_crd(&key.1),
        _ => {}
    }
    let deleted = state.commit(&gr, key, EventType::Deleted, current, None);
    Ok(present(deleted, gvr))
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn patch_locked(
    state: &mut State,
    rt: &ResourceType,
    gvr: &Gvr,
    namespace: Option<&str>,
    name: &str,
    kind: PatchKind,
    body: &Value,
    part: Part,
    current: &Value,
) -> Result<Value> {
    let patched = patch::apply(kind, current, body).map_err(|e| match e {
        K8sError::Invalid { message, .. } => obj_ref(rt, name).invalid(message),
        other => other,
    })?;
    // The merged object keeps the stored resourceVersion unless the patch
    // names one, in which case `write` checks it (optimistic concurrency).
    if object::name(&patched) != Some(name) {
        return Err(
            obj_ref(rt, name).invalid("metadata.name: Invalid value: the name may not change")
        );
    }
    write(state, rt, gvr, namespace, name, patched, part)
}
