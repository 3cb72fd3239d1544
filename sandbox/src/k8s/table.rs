//! `meta.k8s.io/v1` Table answers, which `kubectl get` asks for to print its
//! columns: a built-in kind's columns as kube-apiserver prints them (see
//! `printers`), or a CRD's `additionalPrinterColumns`.

use serde_json::{Value, json};

use super::clock;
use super::object;
use super::printers::{self, AGE};
use super::resource::{PrinterColumn, ResourceType};

/// True when the Accept header asks for a Table.
pub fn wants_table(accept: &str) -> bool {
    accept.split(',').any(|part| part.contains("as=Table"))
}

/// Where a column's cells come from.
enum Source {
    /// A CRD column's simple `.a.b` path.
    Path(String),
    /// A built-in kind's printer.
    Computed(fn(&Value) -> Value),
    /// The object's age, from creationTimestamp.
    Age,
}

struct Column {
    name: String,
    column_type: String,
    priority: i64,
    source: Source,
}

fn columns_of(rt: &ResourceType) -> Vec<Column> {
    if !rt.printer_columns.is_empty() {
        return rt
            .printer_columns
            .iter()
            .map(|c: &PrinterColumn| Column {
                name: c.name.clone(),
                column_type: c.column_type.clone(),
                priority: c.priority,
                source: Source::Path(c.json_path.clone()),
            })
            .collect();
    }
    printers::builtin_columns(&rt.kind)
        .iter()
        .map(|p| Column {
            name: p.name.into(),
            column_type: p.column_type.into(),
            priority: p.priority,
            source: if p.name == AGE {
                Source::Age
            } else {
                Source::Computed(p.cell)
            },
        })
        .collect()
}

fn cell(column: &Column, obj: &Value) -> Value {
    match &column.source {
        Source::Computed(f) => f(obj),
        Source::Age => match object::get_path(obj, ".metadata.creationTimestamp") {
            Some(Value::String(s)) => json!(clock::human_age(s)),
            _ => json!("<unknown>"),
        },
        Source::Path(path) => match (column.column_type.as_str(), object::get_path(obj, path)) {
            (_, None | Some(Value::Null)) => json!("<none>"),
            ("date", Some(Value::String(s))) => json!(clock::human_age(s)),
            (_, Some(v)) => v.clone(),
        },
    }
}

/// Renders the objects as a Table; the full objects ride along in `rows[].object`.
pub fn table(rt: &ResourceType, items: &[Value], resource_version: &str) -> Value {
    let columns = columns_of(rt);
    let mut definitions = vec![json!({
        "name": "Name", "type": "string", "format": "name", "priority": 0,
        "description": "Name must be unique within a namespace."
    })];
    definitions.extend(columns.iter().map(|c| {
        // Dates are sent already rendered as ages, hence type string.
        let shown_type = if c.column_type == "date" {
            "string"
        } else {
            c.column_type.as_str()
        };
        json!({"name": c.name, "type": shown_type, "format": "", "priority": c.priority,
               "description": format!("{} of the object", c.name)})
    }));
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let mut cells = vec![json!(object::name(o).unwrap_or_default())];
            cells.extend(columns.iter().map(|c| cell(c, o)));
            json!({"cells": cells, "object": o})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::builtin::builtin_types;
    use crate::k8s::crd::{resource_type_of, shipped_crds};

    #[test]
    fn recognises_kubectl_accept_header() {
        assert!(wants_table(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
        ));
        assert!(!wants_table("application/json"));
    }

    #[test]
    fn namespace_and_crd_columns() -> crate::k8s::Result<()> {
        let types = builtin_types();
        let ns = types.iter().find(|t| t.kind == "Namespace");
        let ns = ns.ok_or_else(|| crate::k8s::K8sError::BadRequest("no Namespace".into()))?;
        let t = table(
            ns,
            &[json!({"metadata": {"name": "a"}, "status": {"phase": "Active"}})],
            "5",
        );
        assert_eq!(t["rows"][0]["cells"][1], "Active");

        let crds = shipped_crds()?;
        let bsl = crds
            .iter()
            .map(resource_type_of)
            .collect::<crate::k8s::Result<Vec<_>>>()?
            .into_iter()
            .find(|t| t.kind == "BackupStorageLocation")
            .ok_or_else(|| crate::k8s::K8sError::BadRequest("no BSL".into()))?;
        let t = table(
            &bsl,
            &[json!({"metadata": {"name": "default"}, "status": {"phase": "Available"}})],
            "5",
        );
        assert_eq!(t["columnDefinitions"][1]["name"], "Phase");
        assert_eq!(t["rows"][0]["cells"][1], "Available");
        Ok(())
    }
}
