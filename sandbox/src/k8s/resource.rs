//! Resource types the API serves (built-in kinds and those registered by
//! CRDs) and the registry that resolves paths and apiVersion+kind to them.

use std::collections::BTreeMap;

use super::error::{K8sError, Result};

/// Identifies a served resource the way URLs do: group, version, plural.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Gvr {
    pub group: String,
    pub version: String,
    pub resource: String,
}

impl Gvr {
    pub fn new(group: &str, version: &str, resource: &str) -> Self {
        Gvr {
            group: group.into(),
            version: version.into(),
            resource: resource.into(),
        }
    }

    /// A resource of the core (legacy, empty-named) group, version v1.
    pub fn core(resource: &str) -> Self {
        Gvr::new("", "v1", resource)
    }

    /// `v1` for the core group, `group/version` otherwise.
    pub fn api_version(&self) -> String {
        api_version(&self.group, &self.version)
    }
}

pub(crate) fn api_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

/// Splits `apiVersion` into (group, version).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", api_version),
    }
}

/// Everything the server needs to know about one resource type.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceType {
    pub group: String,
    /// Versions served, the first one being the storage (preferred) version.
    pub versions: Vec<String>,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub list_kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// `/status` is a separate subresource: plain updates keep the old status.
    pub status_subresource: bool,
    /// `/scale` subresource: (path of spec replicas, path of status replicas).
    pub scale: Option<ScaleSpec>,
    /// Name of the CRD that registered the type; None for built-in kinds.
    pub crd: Option<String>,
    /// Whether spec changes bump `metadata.generation` (workloads and custom
    /// resources do; ConfigMaps, Secrets and the like do not).
    pub tracks_generation: bool,
    /// `additionalPrinterColumns` of a CRD, for `kubectl get`.
    pub printer_columns: Vec<PrinterColumn>,
}

/// One `additionalPrinterColumns` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct PrinterColumn {
    pub name: String,
    /// OpenAPI type: string, integer, number, boolean or date.
    pub column_type: String,
    /// A simple `.a.b.c` path (the sandbox evaluates no other JSONPath).
    pub json_path: String,
    pub priority: i64,
}

/// Where the `scale` subresource reads and writes replicas.
#[derive(Debug, Clone, PartialEq)]
pub struct ScaleSpec {
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

impl ResourceType {
    pub fn storage_version(&self) -> &str {
        self.versions.first().map(String::as_str).unwrap_or("v1")
    }

    pub fn serves(&self, version: &str) -> bool {
        self.versions.iter().any(|v| v == version)
    }

    /// Key under which objects of this type are stored, whatever the version.
    pub fn group_resource(&self) -> GroupResource {
        GroupResource {
            group: self.group.clone(),
            resource: self.plural.clone(),
        }
    }
}

/// A resource independent of version: objects are stored once per this key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupResource {
    pub group: String,
    pub resource: String,
}

/// The set of served types. Kept in a BTreeMap so discovery output is stable.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    types: BTreeMap<GroupResource, ResourceType>,
}

impl Registry {
    pub fn insert(&mut self, rt: ResourceType) {
        self.types.insert(rt.group_resource(), rt);
    }

    pub fn remove(&mut self, gr: &GroupResource) -> Option<ResourceType> {
        self.types.remove(gr)
    }

    pub fn all(&self) -> impl Iterator<Item = &ResourceType> {
        self.types.values()
    }

    /// The type served at group/version/plural, or UnknownResource.
    pub fn by_gvr(&self, gvr: &Gvr) -> Result<&ResourceType> {
        self.types
            .get(&GroupResource {
                group: gvr.group.clone(),
                resource: gvr.resource.clone(),
            })
            .filter(|rt| rt.serves(&gvr.version))
            .ok_or_else(|| {
                K8sError::UnknownResource(format!("{} in {}", gvr.resource, gvr.api_version()))
            })
    }

    /// The type whose kind is `kind` in `apiVersion`.
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Result<&ResourceType> {
        let (group, version) = split_api_version(api_version);
        self.types
            .values()
            .find(|rt| rt.group == group && rt.kind == kind && rt.serves(version))
            .ok_or_else(|| {
                K8sError::UnknownResource(format!("no kind \"{kind}\" in {api_version}"))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_api_versions() {
        assert_eq!(split_api_version("v1"), ("", "v1"));
        assert_eq!(split_api_version("apps/v1"), ("apps", "v1"));
        assert_eq!(Gvr::core("pods").api_version(), "v1");
        assert_eq!(
            Gvr::new("velero.io", "v1", "backups").api_version(),
            "velero.io/v1"
        );
    }
}
