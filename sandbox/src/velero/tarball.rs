//! The backup tarball, `<backup>.tar.gz`, in Velero's layout:
//! `metadata/version`, then `resources/<resource>[.<group>]/namespaces/<ns>/<name>.json`
//! or `…/cluster/<name>.json`, each item again under
//! `resources/<resource>[.<group>]/<version>-preferredversion/…`.

use std::io::Read;

use serde_json::Value;

use super::BACKUP_FORMAT_VERSION;
use super::error::{Result, VeleroError};

/// One item of a backup.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TarItem {
    /// `plural` for the core group, `plural.group` otherwise.
    pub dir: String,
    /// The version the item is stored in (its group's preferred version).
    pub version: String,
    /// None for cluster-scoped items.
    pub namespace: Option<String>,
    pub name: String,
    pub object: Value,
}

pub(crate) fn resource_dir(group: &str, plural: &str) -> String {
    if group.is_empty() {
        plural.to_owned()
    } else {
        format!("{plural}.{group}")
    }
}

fn scope_path(item: &TarItem) -> String {
    match &item.namespace {
        Some(ns) => format!("namespaces/{ns}/{}.json", item.name),
        None => format!("cluster/{}.json", item.name),
    }
}

/// Builds the gzip tarball. Items are small; the archive is made in memory.
pub(crate) fn build(items: &[TarItem], mtime: u64) -> std::io::Result<Vec<u8>> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut append = |path: &str, data: &[u8]| -> std::io::Result<()> {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(0o755);
        header.set_mtime(mtime);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, path, data)
    };
    append("metadata/version", BACKUP_FORMAT_VERSION.as_bytes())?;
    for item in items {
        let data = serde_json::to_vec(&item.object).map_err(std::io::Error::other)?;
        let scope = scope_path(item);
        append(&format!("resources/{}/{scope}", item.dir), &data)?;
        append(
            &format!(
                "resources/{}/{}-preferredversion/{scope}",
                item.dir, item.version
            ),
            &data,
        )?;
    }
    tar.into_inner()?.finish()
}

/// Every entry path of a tarball (tests check the layout with it).
pub fn entry_paths(data: &[u8]) -> Result<Vec<String>> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(data));
    let entries = archive.entries().map_err(bad_archive)?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(bad_archive)?;
        out.push(
            entry
                .path()
                .map_err(bad_archive)?
                .to_string_lossy()
                .into_owned(),
        );
    }
    Ok(out)
}

/// The items of a tarball (from the main copies; the preferred-version
/// copies are the same objects).
pub(crate) fn parse(data: &[u8]) -> Result<Vec<TarItem>> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(data));
    let mut items = Vec::new();
    for entry in archive.entries().map_err(bad_archive)? {
        let mut entry = entry.map_err(bad_archive)?;
        let path = entry
            .path()
            .map_err(bad_archive)?
            .to_string_lossy()
            .into_owned();
        let segs: Vec<&str> = path.split('/').collect();
        let (dir, namespace, file) = match segs.as_slice() {
            ["resources", dir, "namespaces", ns, file] => (*dir, Some((*ns).to_owned()), *file),
            ["resources", dir, "cluster", file] => (*dir, None, *file),
            _ => continue,
        };
        let Some(name) = file.strip_suffix(".json") else {
            continue;
        };
        let mut buf = Vec::new();
        entry.read_to_end(&mut buf).map_err(bad_archive)?;
        let object: Value = serde_json::from_slice(&buf)
            .map_err(|e| VeleroError::malformed(format!("backup item {path}"), e))?;
        let version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .map(|av| av.rsplit('/').next().unwrap_or(av).to_owned())
            .unwrap_or_default();
        items.push(TarItem {
            dir: dir.to_owned(),
            version,
            namespace,
            name: name.to_owned(),
            object,
        });
    }
    Ok(items)
}

fn bad_archive(e: std::io::Error) -> VeleroError {
    VeleroError::malformed("backup tarball", e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trip() -> Result<()> {
        let items = vec![
            TarItem {
                dir: resource_dir("apps", "deployments"),
                version: "v1".into(),
                namespace: Some("reg".into()),
                name: "bpms".into(),
                object: json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bpms"}}),
            },
            TarItem {
                dir: resource_dir("", "namespaces"),
                version: "v1".into(),
                namespace: None,
                name: "reg".into(),
                object: json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "reg"}}),
            },
        ];
        let data = build(&items, 0).map_err(bad_archive)?;
        let paths = entry_paths(&data)?;
        assert!(paths.contains(&"metadata/version".to_owned()));
        assert!(paths.contains(&"resources/deployments.apps/namespaces/reg/bpms.json".to_owned()));
        assert!(paths.contains(
            &"resources/deployments.apps/v1-preferredversion/namespaces/reg/bpms.json".to_owned()
        ));
        assert!(paths.contains(&"resources/namespaces/cluster/reg.json".to_owned()));
        assert_eq!(parse(&data)?, items);
        Ok(())
    }
}
