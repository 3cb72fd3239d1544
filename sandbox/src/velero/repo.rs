//! The file-system backup repository: where `defaultVolumesToFsBackup`
//! puts PVC contents, as plain objects in the BSL's bucket so that a relay
//! can copy them like any others. Not kopia's format, but kopia's shape:
//!
//! ```text
//! <prefix>/kopia/<namespace>/kopia.repository      marker (JSON)
//! <prefix>/kopia/<namespace>/data/<sha256>         content-addressed chunks (≤ 4 MiB)
//! <prefix>/kopia/<namespace>/snapshots/<id>.json   one manifest per volume snapshot
//! ```
//!
//! A manifest lists the volume's files and, per file, its chunks in order.
//! Chunks are shared across snapshots (a second backup uploads only what
//! changed). The `PodVolumeBackup` record's `status.snapshotID` names the
//! manifest.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::error::{Result, VeleroError};
use super::layout::repo_dir;
use super::location::Location;
use super::volumes::{Volumes, hex};
use crate::s3::S3Server;

/// Largest chunk: bounds memory per volume file being moved.
pub const CHUNK: usize = 4 << 20;
/// What the marker object says.
pub const REPOSITORY_FORMAT: &str = "ferry-sandbox-fs-repository/v1";

/// One volume snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub id: String,
    pub backup: String,
    pub namespace: String,
    pub pvc: String,
    pub total_bytes: u64,
    pub files: Vec<SnapshotFile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotFile {
    pub path: String,
    pub size: u64,
    /// SHA-256 (hex) of each chunk, in order.
    pub chunks: Vec<String>,
}

/// An open repository of one namespace.
pub(crate) struct Repo<'a> {
    s3: &'a S3Server,
    bucket: String,
    dir: String,
    /// Chunks already stored (listed once on open).
    known: HashSet<String>,
}

impl<'a> Repo<'a> {
    /// Opens (creating when missing) the repository of `namespace`.
    pub async fn open(s3: &'a S3Server, location: &Location, namespace: &str) -> Result<Repo<'a>> {
        let dir = repo_dir(&location.prefix, namespace);
        let bucket = location.bucket.clone();
        let marker = format!("{dir}kopia.repository");
        let data_dir = format!("{dir}data/");
        let listed = s3
            .list_objects(&bucket, &dir)
            .await
            .map_err(VeleroError::s3("list", &bucket, &dir))?;
        if !listed.iter().any(|o| o.key == marker) {
            let body = serde_json::json!({"format": REPOSITORY_FORMAT, "namespace": namespace, "chunkSize": CHUNK});
            s3.put_object(&bucket, &marker, body.to_string())
                .await
                .map_err(VeleroError::s3("write", &bucket, &marker))?;
        }
        let known = listed
            .iter()
            .filter_map(|o| o.key.strip_prefix(&data_dir).map(str::to_owned))
            .collect();
        Ok(Repo {
            s3,
            bucket,
            dir,
            known,
        })
    }

    /// The repository's key prefix, for a PodVolumeBackup's repoIdentifier.
    pub fn identifier(&self, s3_url: Option<&str>) -> String {
        format!(
            "s3:{}/{}/{}",
            s3_url.unwrap_or("s3.amazonaws.com").trim_end_matches('/'),
            self.bucket,
            self.dir.trim_end_matches('/')
        )
    }

    /// Uploads the volume of `namespace/pvc` (only chunks not yet stored)
    /// and its manifest.
    pub async fn snapshot(
        &mut self,
        volumes: &Volumes,
        backup: &str,
        namespace: &str,
        pvc: &str,
    ) -> Result<Snapshot> {
        let mut files = Vec::new();
        let mut block = vec![0u8; CHUNK];
        for f in volumes.files(namespace, pvc).await? {
            let path = volumes.file_path(namespace, pvc, &f.path)?;
            let mut file = tokio::fs::File::open(&path)
                .await
                .map_err(VeleroError::volume("open", &path))?;
            let mut chunks = Vec::new();
            let mut size = 0u64;
            loop {
                let n = read_full(&mut file, &mut block)
                    .await
                    .map_err(VeleroError::volume("read", &path))?;
                if n == 0 {
                    break;
                }
                size += n as u64;
                let hash = hex(&Sha256::digest(&block[..n]));
                if !self.known.contains(&hash) {
                    let key = format!("{}data/{hash}", self.dir);
                    self.s3
                        .put_object(
                            &self.bucket,
                            &key,
                            bytes::Bytes::copy_from_slice(&block[..n]),
                        )
                        .await
                        .map_err(VeleroError::s3("write", &self.bucket, &key))?;
                    self.known.insert(hash.clone());
                }
                chunks.push(hash);
            }
            files.push(SnapshotFile {
                path: f.path,
                size,
                chunks,
            });
        }
        let total_bytes = files.iter().map(|f| f.size).sum();
        let mut snapshot = Snapshot {
            id: String::new(),
            backup: backup.to_owned(),
            namespace: namespace.to_owned(),
            pvc: pvc.to_owned(),
            total_bytes,
            files,
        };
        let canonical = serde_json::to_vec(&snapshot)
            .map_err(|e| VeleroError::malformed(format!("snapshot of {namespace}/{pvc}"), e))?;
        snapshot.id = hex(&Sha256::digest(&canonical))[..32].to_owned();
        let key = format!("{}snapshots/{}.json", self.dir, snapshot.id);
        let body = serde_json::to_vec(&snapshot)
            .map_err(|e| VeleroError::malformed(format!("snapshot of {namespace}/{pvc}"), e))?;
        self.s3
            .put_object(&self.bucket, &key, body)
            .await
            .map_err(VeleroError::s3("write", &self.bucket, &key))?;
        Ok(snapshot)
    }
}

/// Reads the manifest `id` from the repository of `namespace`.
pub(crate) async fn load(
    s3: &S3Server,
    location: &Location,
    namespace: &str,
    id: &str,
) -> Result<Snapshot> {
    let key = format!(
        "{}snapshots/{id}.json",
        repo_dir(&location.prefix, namespace)
    );
    let data = s3
        .get_object(&location.bucket, &key)
        .await
        .map_err(VeleroError::s3("read", &location.bucket, &key))?;
    serde_json::from_slice(&data)
        .map_err(|e| VeleroError::malformed(format!("snapshot manifest {key}"), e))
}

/// Writes a snapshot's files into the volume `target_ns/target_pvc`
/// (replacing what is there), checking every chunk's hash. Returns bytes
/// written.
pub(crate) async fn restore(
    s3: &S3Server,
    location: &Location,
    snapshot: &Snapshot,
    volumes: &Volumes,
    target_ns: &str,
    target_pvc: &str,
) -> Result<u64> {
    let dir = repo_dir(&location.prefix, &snapshot.namespace);
    volumes.remove(target_ns, target_pvc).await?;
    tokio::fs::create_dir_all(volumes.dir(target_ns, target_pvc))
        .await
        .map_err(VeleroError::volume(
            "create directory",
            &volumes.dir(target_ns, target_pvc),
        ))?;
    let mut written = 0u64;
    for f in &snapshot.files {
        let (mut file, path) = volumes.create_file(target_ns, target_pvc, &f.path).await?;
        for hash in &f.chunks {
            let key = format!("{dir}data/{hash}");
            let data = s3
                .get_object(&location.bucket, &key)
                .await
                .map_err(VeleroError::s3("read", &location.bucket, &key))?;
            if hex(&Sha256::digest(&data)) != *hash {
                return Err(VeleroError::malformed(
                    format!("repository chunk s3://{}/{key}", location.bucket),
                    "its contents do not match its hash",
                ));
            }
            file.write_all(&data)
                .await
                .map_err(VeleroError::volume("write", &path))?;
            written += data.len() as u64;
        }
        file.flush()
            .await
            .map_err(VeleroError::volume("flush", &path))?;
    }
    Ok(written)
}

/// Fills `buf` unless the file ends first; returns the bytes read.
async fn read_full(file: &mut tokio::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = file.read(&mut buf[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}
