//! The field tables as OpenAPI v3 schemas, so `kubectl explain` can walk a
//! built-in kind's fields. They carry names and types only — the real
//! server's descriptions, formats and defaults are not in the tables — and
//! cover exactly the fields the sandbox reads from protobuf.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::schema::{Card, KINDS, Msg, Ty};

/// The component name the real server gives a message's schema.
fn component(msg: &Msg) -> String {
    if msg.name.starts_with("meta.") {
        format!("io.k8s.apimachinery.pkg.apis.{}", msg.name)
    } else {
        format!("io.k8s.api.{}", msg.name)
    }
}

fn reference(name: &str) -> Value {
    json!({"allOf": [{"$ref": format!("#/components/schemas/{name}")}]})
}

/// The schemas of `kind` in `api_version` and of every message it holds,
/// by component name, and the name of the kind's own schema; None for a
/// kind without a table.
pub(crate) fn kind_schemas(
    api_version: &str,
    kind: &str,
) -> Option<(String, BTreeMap<String, Value>)> {
    let msg = KINDS
        .iter()
        .find(|(av, k, _)| *av == api_version && *k == kind)
        .map(|(_, _, msg)| *msg)?;
    let mut schemas = BTreeMap::new();
    walk(msg, &mut schemas);
    let root = component(msg);
    let (group, version) = super::super::resource::split_api_version(api_version);
    if let Some(Value::Object(schema)) = schemas.get_mut(&root) {
        if let Some(Value::Object(props)) = schema.get_mut("properties") {
            props.insert("apiVersion".into(), json!({"type": "string"}));
            props.insert("kind".into(), json!({"type": "string"}));
        }
        schema.insert(
            "x-kubernetes-group-version-kind".into(),
            json!([{"group": group, "version": version, "kind": kind}]),
        );
    }
    Some((root, schemas))
}

fn walk(msg: &'static Msg, schemas: &mut BTreeMap<String, Value>) {
    let name = component(msg);
    if schemas.contains_key(&name) {
        return;
    }
    // Claim the name first: messages refer to each other in cycles.
    schemas.insert(name.clone(), Value::Null);
    let mut props = Map::new();
    properties(msg, &mut props, schemas);
    schemas.insert(name, json!({"type": "object", "properties": props}));
}

fn properties(
    msg: &'static Msg,
    props: &mut Map<String, Value>,
    schemas: &mut BTreeMap<String, Value>,
) {
    for f in msg.fields {
        if let Ty::Inline(inner) = f.ty {
            properties(inner, props, schemas);
            continue;
        }
        let item = type_schema(f.ty, schemas);
        let schema = if f.card == Card::Repeated {
            json!({"type": "array", "items": item})
        } else {
            item
        };
        props.insert(f.name.into(), schema);
    }
}

fn type_schema(ty: Ty, schemas: &mut BTreeMap<String, Value>) -> Value {
    match ty {
        Ty::Str => json!({"type": "string"}),
        Ty::Bytes => json!({"type": "string", "format": "byte"}),
        Ty::Int => json!({"type": "integer"}),
        Ty::Bool => json!({"type": "boolean"}),
        Ty::Msg(m) if m.fields.is_empty() => json!({"type": "object"}),
        Ty::Msg(m) | Ty::Inline(m) => {
            walk(m, schemas);
            reference(&component(m))
        }
        Ty::Quantity => json!({"type": "string"}),
        Ty::Time => json!({"type": "string", "format": "date-time"}),
        Ty::IntOrString => json!({"x-kubernetes-int-or-string": true}),
        Ty::FieldsV1 => json!({"type": "object"}),
        Ty::StrMap | Ty::QuantityMap => {
            json!({"type": "object", "additionalProperties": {"type": "string"}})
        }
        Ty::BytesMap => {
            json!({"type": "object", "additionalProperties": {"type": "string", "format": "byte"}})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_schema_reaches_containers() {
        let Some((root, schemas)) = kind_schemas("apps/v1", "Deployment") else {
            panic!("no schema for Deployment");
        };
        assert_eq!(root, "io.k8s.api.apps.v1.Deployment");
        let deploy = &schemas[&root];
        assert_eq!(
            deploy["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "version": "v1", "kind": "Deployment"}])
        );
        let spec = &schemas["io.k8s.api.apps.v1.DeploymentSpec"];
        assert_eq!(spec["properties"]["replicas"], json!({"type": "integer"}));
        let pod = &schemas["io.k8s.api.core.v1.PodSpec"];
        assert_eq!(
            pod["properties"]["containers"]["items"],
            reference("io.k8s.api.core.v1.Container")
        );
        // Inline structs (Volume's source) land in the parent.
        let volume = &schemas["io.k8s.api.core.v1.Volume"];
        assert!(volume["properties"].get("configMap").is_some());
        assert!(
            schemas.values().all(Value::is_object),
            "a schema was left unfilled"
        );
        assert!(kind_schemas("v1", "Pod").is_none());
    }
}
