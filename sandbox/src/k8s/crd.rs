//! CustomResourceDefinitions: turning a CRD object into a served resource
//! type, and the CRDs the sandbox ships (Velero's own and the Platform's).

use serde_json::{Value, json};

use super::error::{K8sError, Result};
use super::resource::{PrinterColumn, ResourceType, ScaleSpec};

/// Velero's published CRDs, verbatim.
const VELERO_CRDS: &[(&str, &str)] = &[
    (
        "velero.io_backups.yaml",
        include_str!("../../crds/velero/velero.io_backups.yaml"),
    ),
    (
        "velero.io_backupstoragelocations.yaml",
        include_str!("../../crds/velero/velero.io_backupstoragelocations.yaml"),
    ),
    (
        "velero.io_deletebackuprequests.yaml",
        include_str!("../../crds/velero/velero.io_deletebackuprequests.yaml"),
    ),
    (
        "velero.io_downloadrequests.yaml",
        include_str!("../../crds/velero/velero.io_downloadrequests.yaml"),
    ),
    (
        "velero.io_podvolumebackups.yaml",
        include_str!("../../crds/velero/velero.io_podvolumebackups.yaml"),
    ),
    (
        "velero.io_podvolumerestores.yaml",
        include_str!("../../crds/velero/velero.io_podvolumerestores.yaml"),
    ),
    (
        "velero.io_restores.yaml",
        include_str!("../../crds/velero/velero.io_restores.yaml"),
    ),
    (
        "velero.io_schedules.yaml",
        include_str!("../../crds/velero/velero.io_schedules.yaml"),
    ),
];

/// The Platform's CRDs as the sandbox defines them (open schemas).
const PLATFORM_CRDS: &[(&str, &str)] = &[
    (
        "codebases.yaml",
        include_str!("../../crds/platform/codebases.yaml"),
    ),
    (
        "keycloakrealms.yaml",
        include_str!("../../crds/platform/keycloakrealms.yaml"),
    ),
    (
        "gerritprojects.yaml",
        include_str!("../../crds/platform/gerritprojects.yaml"),
    ),
    (
        "objectbucketclaims.yaml",
        include_str!("../../crds/platform/objectbucketclaims.yaml"),
    ),
    (
        "postgresclusters.yaml",
        include_str!("../../crds/platform/postgresclusters.yaml"),
    ),
    (
        "kafkas.yaml",
        include_str!("../../crds/platform/kafkas.yaml"),
    ),
];

/// Parses the shipped CRDs (Velero's, then the Platform's) into objects.
pub fn shipped_crds() -> Result<Vec<Value>> {
    VELERO_CRDS
        .iter()
        .chain(PLATFORM_CRDS)
        .map(|(file, text)| {
            serde_yaml_ng::from_str::<Value>(text).map_err(|e| K8sError::Crd {
                file: (*file).into(),
                message: e.to_string(),
            })
        })
        .collect()
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_str()
}

fn strings_at(v: &Value, path: &[&str]) -> Vec<String> {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Reads the served resource type out of a CRD object, checking what the real
/// API server checks for: names, group, scope, at least one served version,
/// and a name equal to `<plural>.<group>`.
pub fn resource_type_of(crd: &Value) -> Result<ResourceType> {
    let name = str_at(crd, &["metadata", "name"]).unwrap_or_default();
    let invalid = |message: String| K8sError::Invalid {
        kind: "CustomResourceDefinition".into(),
        group: "apiextensions.k8s.io".into(),
        name: name.into(),
        message,
    };
    let spec = crd
        .get("spec")
        .ok_or_else(|| invalid("spec: Required value".into()))?;
    let group =
        str_at(spec, &["group"]).ok_or_else(|| invalid("spec.group: Required value".into()))?;
    let plural = str_at(spec, &["names", "plural"])
        .ok_or_else(|| invalid("spec.names.plural: Required value".into()))?;
    let kind = str_at(spec, &["names", "kind"])
        .ok_or_else(|| invalid("spec.names.kind: Required value".into()))?;
    if name != format!("{plural}.{group}") {
        return Err(invalid(format!(
            "metadata.name: Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"
        )));
    }
    let namespaced = match str_at(spec, &["scope"]) {
        Some("Namespaced") => true,
        Some("Cluster") => false,
        other => {
            return Err(invalid(format!(
                "spec.scope: Unsupported value: {other:?}: supported values: \"Cluster\", \"Namespaced\""
            )));
        }
    };
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("spec.versions: Required value".into()))?;
    // The storage version goes first: it is the one discovery prefers.
    let mut served: Vec<(bool, &Value)> = versions
        .iter()
        .filter(|v| v.get("served").and_then(Value::as_bool).unwrap_or(false))
        .map(|v| {
            (
                v.get("storage").and_then(Value::as_bool).unwrap_or(false),
                v,
            )
        })
        .collect();
    served.sort_by_key(|(storage, _)| !storage);
    let storage = served
        .first()
        .map(|(_, v)| *v)
        .ok_or_else(|| invalid("spec.versions: must have at least one served version".into()))?;
    let version_names: Vec<String> = served
        .iter()
        .filter_map(|(_, v)| str_at(v, &["name"]).map(str::to_string))
        .collect();
    let subresources = storage.get("subresources");
    let status_subresource = subresources.and_then(|s| s.get("status")).is_some();
    let scale = subresources
        .and_then(|s| s.get("scale"))
        .map(|s| ScaleSpec {
            spec_replicas: str_at(s, &["specReplicasPath"])
                .unwrap_or(".spec.replicas")
                .into(),
            status_replicas: str_at(s, &["statusReplicasPath"])
                .unwrap_or(".status.replicas")
                .into(),
            label_selector: str_at(s, &["labelSelectorPath"]).map(str::to_string),
        });
    Ok(ResourceType {
        group: group.into(),
        versions: version_names,
        plural: plural.into(),
        singular: str_at(spec, &["names", "singular"])
            .map(str::to_string)
            .unwrap_or_else(|| kind.to_ascii_lowercase()),
        kind: kind.into(),
        list_kind: str_at(spec, &["names", "listKind"])
            .map(str::to_string)
            .unwrap_or_else(|| format!("{kind}List")),
        namespaced,
        short_names: strings_at(spec, &["names", "shortNames"]),
        categories: strings_at(spec, &["names", "categories"]),
        status_subresource,
        scale,
        crd: Some(name.into()),
        tracks_generation: true,
        printer_columns: printer_columns(storage),
    })
}

fn printer_columns(version: &Value) -> Vec<PrinterColumn> {
    version
        .get("additionalPrinterColumns")
        .and_then(Value::as_array)
        .map(|cols| {
            cols.iter()
                .filter_map(|c| {
                    Some(PrinterColumn {
                        name: str_at(c, &["name"])?.into(),
                        column_type: str_at(c, &["type"]).unwrap_or("string").into(),
                        json_path: str_at(c, &["jsonPath"])?.into(),
                        priority: c.get("priority").and_then(Value::as_i64).unwrap_or(0),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The status a real API server gives an accepted CRD: Established and
/// NamesAccepted, with the accepted names echoed back. Clients that wait for
/// `Established` (kubectl wait, kube-rs `conditions::is_crd_established`)
/// therefore proceed at once.
pub fn established_status(crd: &Value, now: &str) -> Value {
    let names = crd
        .get("spec")
        .and_then(|s| s.get("names"))
        .cloned()
        .unwrap_or_else(|| json!({}));
    let stored: Vec<Value> = crd
        .get("spec")
        .and_then(|s| s.get("versions"))
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter(|v| v.get("storage").and_then(Value::as_bool).unwrap_or(false))
                .filter_map(|v| v.get("name").cloned())
                .collect()
        })
        .unwrap_or_default();
    json!({
        "acceptedNames": names,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found", "lastTransitionTime": now},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted", "lastTransitionTime": now},
        ],
        "storedVersions": stored,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_crds_parse_into_types() -> Result<()> {
        let crds = shipped_crds()?;
        assert_eq!(crds.len(), VELERO_CRDS.len() + PLATFORM_CRDS.len());
        let types: Vec<ResourceType> = crds.iter().map(resource_type_of).collect::<Result<_>>()?;
        let backup = types
            .iter()
            .find(|t| t.kind == "Backup")
            .ok_or_else(|| K8sError::BadRequest("no Backup".into()))?;
        assert_eq!(backup.group, "velero.io");
        assert_eq!(backup.versions, vec!["v1".to_string()]);
        assert!(backup.namespaced);
        // Velero's published CRDs declare no status subresource.
        assert!(!backup.status_subresource);
        let bsl = types
            .iter()
            .find(|t| t.kind == "BackupStorageLocation")
            .ok_or_else(|| K8sError::BadRequest("no BSL".into()))?;
        assert_eq!(bsl.short_names, vec!["bsl".to_string()]);
        let codebase = types
            .iter()
            .find(|t| t.kind == "Codebase")
            .ok_or_else(|| K8sError::BadRequest("no Codebase".into()))?;
        assert!(codebase.status_subresource);
        assert_eq!(codebase.group, "v2.edp.epam.com");
        Ok(())
    }

    #[test]
    fn rejects_a_name_that_does_not_match() {
        let crd = json!({
            "metadata": {"name": "wrong"},
            "spec": {"group": "g.io", "scope": "Namespaced",
                     "names": {"plural": "things", "kind": "Thing"},
                     "versions": [{"name": "v1", "served": true, "storage": true}]}
        });
        assert!(matches!(
            resource_type_of(&crd),
            Err(K8sError::Invalid { .. })
        ));
    }
}
