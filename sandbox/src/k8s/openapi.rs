//! The OpenAPI documents kubectl fetches. kubectl refuses to validate (and
//! so to apply) when either endpoint fails, but needs nothing in them: with
//! no v2 schemas it skips client-side validation of a kind and falls back to
//! its compiled-in types for strategic merge patches (JSON merge patches for
//! custom resources).
//!
//! The v3 documents exist for `kubectl explain`: one per group-version with
//! the schemas of its kinds — a custom resource's from its CRD, a built-in
//! kind's from the sandbox's protobuf field tables (names and types, no
//! descriptions) — and one GET path per resource, which is how explain finds
//! a resource's kind. No PATCH paths are published on purpose: kubectl reads
//! them as "this server validates fields (`fieldValidation`) and merges by
//! OpenAPI", neither of which the sandbox does, and without them it keeps
//! to client-side behaviour, as before.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::protobuf;
use super::resource::{ResourceType, api_version};

/// Media type of the v2 document; client-go decodes only protobuf here.
pub const V2_CONTENT_TYPE: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// `/openapi/v2`: a gnostic `openapi_v2.Document` holding only `swagger`
/// (field 1) and `info` (field 2: title, version), protobuf-encoded.
pub fn v2_document() -> Vec<u8> {
    fn field(tag: u8, bytes: &[u8], out: &mut Vec<u8>) {
        // Wire type 2 (length-delimited); every length here is below 128.
        out.push((tag << 3) | 2);
        out.push(bytes.len() as u8);
        out.extend_from_slice(bytes);
    }
    let mut info = Vec::new();
    field(1, b"ferry-sandbox", &mut info);
    field(2, b"v1.36.0", &mut info);
    let mut doc = Vec::new();
    field(1, b"2.0", &mut doc);
    field(2, &info, &mut doc);
    doc
}

/// `api/v1` or `apis/<group>/<version>`: a v3 document's key in the root.
fn gv_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: every group-version that has a document, each with a URL
/// carrying the hash of its content (clients cache by URL).
pub fn v3_root(types: &[ResourceType], crds: &BTreeMap<String, Value>) -> Value {
    let mut gvs: Vec<(String, String)> = types
        .iter()
        .flat_map(|rt| rt.versions.iter().map(|v| (rt.group.clone(), v.clone())))
        .collect();
    gvs.sort();
    gvs.dedup();
    let mut paths = Map::new();
    for (group, version) in gvs {
        if let Some(doc) = v3_group_version(types, crds, &group, &version) {
            let digest = Sha256::digest(doc.to_string().as_bytes());
            let hash: String = digest.iter().map(|b| format!("{b:02X}")).collect();
            let key = gv_key(&group, &version);
            paths.insert(
                key.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={hash}")}),
            );
        }
    }
    json!({"paths": paths})
}

/// The component name the real server gives a custom resource's schema
/// (`io.velero.v1.Backup` for velero.io/v1 Backup).
fn crd_component(group: &str, version: &str, kind: &str) -> String {
    let reversed: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", reversed.join("."))
}

/// A CRD's schema for `version`, or None when it publishes none.
fn crd_schema(crd: &Value, version: &str) -> Option<Value> {
    crd.pointer("/spec/versions")?
        .as_array()?
        .iter()
        .find(|v| v.get("name").and_then(Value::as_str) == Some(version))?
        .pointer("/schema/openAPIV3Schema")
        .cloned()
}

/// The v3 document of one group-version (the path after `/openapi/v3/`),
/// or None when none of its kinds has a schema. `crds` holds the CRD
/// objects by name.
pub fn v3_document(
    types: &[ResourceType],
    crds: &BTreeMap<String, Value>,
    path: &str,
) -> Option<Value> {
    let (group, version) = match path.trim_matches('/').split('/').collect::<Vec<_>>()[..] {
        ["api", version] => ("", version),
        ["apis", group, version] => (group, version),
        _ => return None,
    };
    v3_group_version(types, crds, group, version)
}

fn v3_group_version(
    types: &[ResourceType],
    crds: &BTreeMap<String, Value>,
    group: &str,
    version: &str,
) -> Option<Value> {
    let mut schemas: BTreeMap<String, Value> = BTreeMap::new();
    let mut paths = Map::new();
    let av = api_version(group, version);
    for rt in types
        .iter()
        .filter(|rt| rt.group == group && rt.serves(version))
    {
        let root = match &rt.crd {
            Some(crd_name) => {
                let Some(mut schema) = crds.get(crd_name).and_then(|c| crd_schema(c, version))
                else {
                    continue;
                };
                if let Some(map) = schema.as_object_mut() {
                    map.insert(
                        "x-kubernetes-group-version-kind".into(),
                        json!([{"group": group, "version": version, "kind": rt.kind}]),
                    );
                }
                let name = crd_component(group, version, &rt.kind);
                schemas.insert(name.clone(), schema);
                name
            }
            None => {
                let Some((root, kind_schemas)) = protobuf::kind_schemas(&av, &rt.kind) else {
                    continue;
                };
                schemas.extend(kind_schemas);
                root
            }
        };
        let prefix = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        let path = if rt.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", rt.plural)
        } else {
            format!("{prefix}/{}", rt.plural)
        };
        paths.insert(
            path,
            json!({"get": {
                "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": rt.kind},
                "responses": {"200": {
                    "description": "OK",
                    "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{root}")}}},
                }},
            }}),
        );
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": super::discovery::version()["gitVersion"]},
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::k8s::builtin::builtin_types;

    #[test]
    fn v3_documents_describe_deployments() {
        let types = builtin_types();
        let crds = BTreeMap::new();
        let root = super::v3_root(&types, &crds);
        let url = root["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap_or_default();
        assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="), "{root}");
        // Kinds the sandbox has no field table for publish no document.
        assert!(root["paths"].get("apis/storage.k8s.io/v1").is_none());
        let doc = super::v3_document(&types, &crds, "apis/apps/v1");
        let doc = doc.unwrap_or_default();
        let get = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments"]["get"];
        assert_eq!(get["x-kubernetes-group-version-kind"]["kind"], "Deployment");
        assert!(doc["components"]["schemas"]["io.k8s.api.core.v1.Container"].is_object());
        assert!(
            doc["paths"]
                .as_object()
                .is_some_and(|p| p.values().all(|p| p.get("patch").is_none()))
        );
        assert!(super::v3_document(&types, &crds, "apis/nope/v1").is_none());
    }

    #[test]
    fn crd_schemas_are_published() -> crate::k8s::Result<()> {
        let mut types = builtin_types();
        let mut crds = BTreeMap::new();
        for crd in crate::k8s::crd::shipped_crds()? {
            types.push(crate::k8s::crd::resource_type_of(&crd)?);
            let name = crd["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            crds.insert(name, crd);
        }
        let doc = super::v3_document(&types, &crds, "apis/velero.io/v1").unwrap_or_default();
        let backup = &doc["components"]["schemas"]["io.velero.v1.Backup"];
        assert_eq!(
            backup["x-kubernetes-group-version-kind"][0]["kind"],
            "Backup"
        );
        assert!(
            backup["properties"]["spec"]["properties"]["ttl"].is_object(),
            "{backup}"
        );
        Ok(())
    }

    #[test]
    fn v2_document_is_well_formed() {
        let doc = super::v2_document();
        assert_eq!(&doc[..5], &[0x0a, 3, b'2', b'.', b'0']);
        assert_eq!(doc[5], 0x12);
        assert_eq!(doc.len(), 7 + doc[6] as usize);
    }
}
