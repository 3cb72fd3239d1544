//! Velero's object-storage layout inside a BSL bucket, under its prefix.

/// `prefix/rest`, or `rest` without a prefix.
pub(crate) fn join(prefix: &str, rest: &str) -> String {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        rest.to_owned()
    } else {
        format!("{prefix}/{rest}")
    }
}

/// `<prefix>/backups/`
pub(crate) fn backups_dir(prefix: &str) -> String {
    join(prefix, "backups/")
}

/// `<prefix>/backups/<name>/`
pub(crate) fn backup_dir(prefix: &str, backup: &str) -> String {
    join(prefix, &format!("backups/{backup}/"))
}

/// The key of one of a backup's files: `<prefix>/backups/<backup>/<file>`.
pub(crate) fn backup_file(prefix: &str, backup: &str, file: &str) -> String {
    format!("{}{file}", backup_dir(prefix, backup))
}

/// `<prefix>/restores/<name>/<file>`
pub(crate) fn restore_file(prefix: &str, restore: &str, file: &str) -> String {
    join(prefix, &format!("restores/{restore}/{file}"))
}

/// The file-system backup repository of one namespace: `<prefix>/kopia/<ns>/`.
pub(crate) fn repo_dir(prefix: &str, namespace: &str) -> String {
    join(prefix, &format!("kopia/{namespace}/"))
}

/// The file names Velero writes for backup `name`, in the order this
/// controller writes them (`velero-backup.json` last: its presence means the
/// backup is complete, which is what backup sync relies on).
pub fn backup_keys(name: &str) -> Vec<String> {
    vec![
        format!("{name}.tar.gz"),
        format!("{name}-logs.gz"),
        format!("{name}-resource-list.json.gz"),
        format!("{name}-podvolumebackups.json.gz"),
        format!("{name}-volumesnapshots.json.gz"),
        format!("{name}-itemoperations.json.gz"),
        format!("{name}-results.gz"),
        format!("{name}-volumeinfo.json.gz"),
        "velero-backup.json".to_owned(),
    ]
}

/// The file names Velero writes for restore `name`.
pub fn restore_keys(name: &str) -> Vec<String> {
    vec![
        format!("restore-{name}-logs.gz"),
        format!("restore-{name}-results.gz"),
    ]
}

/// gzip of `data`.
pub(crate) fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data)?;
    enc.finish()
}

/// gunzip of `data`.
pub(crate) fn gunzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data).read_to_end(&mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_velero() -> std::io::Result<()> {
        assert_eq!(
            backup_file("openshift-backups", "b1", "velero-backup.json"),
            "openshift-backups/backups/b1/velero-backup.json"
        );
        assert_eq!(backup_file("", "b1", "b1.tar.gz"), "backups/b1/b1.tar.gz");
        assert_eq!(restore_file("p/", "r", "x"), "p/restores/r/x");
        assert_eq!(repo_dir("p", "reg"), "p/kopia/reg/");
        assert_eq!(gunzip(&gzip(b"abc")?)?, b"abc");
        Ok(())
    }
}
