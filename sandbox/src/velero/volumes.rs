//! Where the sandbox keeps the contents of persistent volumes: one directory
//! per PVC, `<root>/<namespace>/<pvc>/`. There is no kubelet; a PVC's volume
//! "is" that directory, written by the fixture (or a test) and read by the
//! file-system backup, and filled again by a restore.

use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::error::{Result, VeleroError};

/// How much is written or hashed at once: bounds memory whatever the size.
const BLOCK: usize = 1 << 20;

/// One file of a volume.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct VolumeFile {
    /// Relative to the volume's root, `/`-separated.
    pub path: String,
    pub size: u64,
}

/// The volume directories of one sandbox cluster (cheap to clone).
#[derive(Debug, Clone)]
pub struct Volumes {
    root: PathBuf,
}

impl Volumes {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Volumes { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory holding the volume of PVC `namespace/pvc`.
    pub fn dir(&self, namespace: &str, pvc: &str) -> PathBuf {
        self.root.join(namespace).join(pvc)
    }

    /// The path of `rel` inside a volume; refuses paths leaving the volume.
    pub fn file_path(&self, namespace: &str, pvc: &str, rel: &str) -> Result<PathBuf> {
        let rel_path = Path::new(rel);
        let escapes = rel.is_empty()
            || rel_path
                .components()
                .any(|c| !matches!(c, Component::Normal(_)));
        if escapes || namespace.contains(['/', '\\']) || pvc.contains(['/', '\\']) {
            return Err(VeleroError::malformed(
                format!("volume path {rel:?} of PVC {namespace}/{pvc}"),
                "must be a relative path inside the volume",
            ));
        }
        Ok(self.dir(namespace, pvc).join(rel_path))
    }

    /// Writes a whole file into a volume (creating directories).
    pub async fn write_file(
        &self,
        namespace: &str,
        pvc: &str,
        rel: &str,
        data: &[u8],
    ) -> Result<()> {
        let path = self.file_path(namespace, pvc, rel)?;
        create_parent(&path).await?;
        tokio::fs::write(&path, data)
            .await
            .map_err(VeleroError::volume("write", &path))
    }

    /// Writes `len` bytes of deterministic filler (from `seed`) in blocks, so
    /// benchmarks can make GiB-sized volumes without holding them in memory.
    pub async fn write_filler(
        &self,
        namespace: &str,
        pvc: &str,
        rel: &str,
        len: u64,
        seed: u64,
    ) -> Result<()> {
        let path = self.file_path(namespace, pvc, rel)?;
        create_parent(&path).await?;
        let mut file = tokio::fs::File::create(&path)
            .await
            .map_err(VeleroError::volume("create", &path))?;
        let mut filler = Filler::new(seed);
        let mut block = vec![0u8; BLOCK];
        let mut left = len;
        while left > 0 {
            let n = usize::try_from(left.min(BLOCK as u64)).unwrap_or(BLOCK);
            filler.fill(&mut block[..n]);
            file.write_all(&block[..n])
                .await
                .map_err(VeleroError::volume("write", &path))?;
            left -= n as u64;
        }
        file.flush()
            .await
            .map_err(VeleroError::volume("flush", &path))
    }

    /// Creates an empty file to be written by the caller (restore).
    pub(crate) async fn create_file(
        &self,
        namespace: &str,
        pvc: &str,
        rel: &str,
    ) -> Result<(tokio::fs::File, PathBuf)> {
        let path = self.file_path(namespace, pvc, rel)?;
        create_parent(&path).await?;
        let file = tokio::fs::File::create(&path)
            .await
            .map_err(VeleroError::volume("create", &path))?;
        Ok((file, path))
    }

    /// Reads a whole file of a volume.
    pub async fn read_file(&self, namespace: &str, pvc: &str, rel: &str) -> Result<Vec<u8>> {
        let path = self.file_path(namespace, pvc, rel)?;
        tokio::fs::read(&path)
            .await
            .map_err(VeleroError::volume("read", &path))
    }

    /// Every regular file of a volume, sorted by path; empty when the volume
    /// has never been written.
    pub async fn files(&self, namespace: &str, pvc: &str) -> Result<Vec<VolumeFile>> {
        let root = self.dir(namespace, pvc);
        let mut out = Vec::new();
        let mut pending = vec![root.clone()];
        while let Some(dir) = pending.pop() {
            let mut entries = match tokio::fs::read_dir(&dir).await {
                Ok(entries) => entries,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(VeleroError::volume("list", &dir)(e)),
            };
            while let Some(entry) = entries
                .next_entry()
                .await
                .map_err(VeleroError::volume("list", &dir))?
            {
                let path = entry.path();
                let kind = entry
                    .file_type()
                    .await
                    .map_err(VeleroError::volume("inspect", &path))?;
                if kind.is_dir() {
                    pending.push(path);
                } else if kind.is_file() {
                    let size = entry
                        .metadata()
                        .await
                        .map_err(VeleroError::volume("inspect", &path))?
                        .len();
                    out.push(VolumeFile {
                        path: relative(&root, &path),
                        size,
                    });
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Total bytes of a volume.
    pub async fn size(&self, namespace: &str, pvc: &str) -> Result<u64> {
        Ok(self
            .files(namespace, pvc)
            .await?
            .iter()
            .map(|f| f.size)
            .sum())
    }

    /// A SHA-256 over every file's path and contents: equal digests mean
    /// equal volumes (tests compare a source's volume with its restore).
    pub async fn digest(&self, namespace: &str, pvc: &str) -> Result<String> {
        let mut hasher = Sha256::new();
        let mut block = vec![0u8; BLOCK];
        for f in self.files(namespace, pvc).await? {
            hasher.update(f.path.as_bytes());
            hasher.update([0u8]);
            hasher.update(f.size.to_le_bytes());
            let path = self.file_path(namespace, pvc, &f.path)?;
            let mut file = tokio::fs::File::open(&path)
                .await
                .map_err(VeleroError::volume("open", &path))?;
            loop {
                let n = file
                    .read(&mut block)
                    .await
                    .map_err(VeleroError::volume("read", &path))?;
                if n == 0 {
                    break;
                }
                hasher.update(&block[..n]);
            }
        }
        Ok(hex(&hasher.finalize()))
    }

    /// Removes a volume's contents.
    pub async fn remove(&self, namespace: &str, pvc: &str) -> Result<()> {
        let dir = self.dir(namespace, pvc);
        match tokio::fs::remove_dir_all(&dir).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(VeleroError::volume("remove", &dir)(e))
            }
            _ => Ok(()),
        }
    }
}

async fn create_parent(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(VeleroError::volume("create directory", parent))?;
    }
    Ok(())
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// xorshift64*: cheap, deterministic, and not compressible to nothing (so
/// sizes on disk and over the wire are what the knobs say).
struct Filler(u64);

impl Filler {
    fn new(seed: u64) -> Self {
        Filler(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// `len` bytes of the same filler as [`Volumes::write_filler`], in blocks,
/// for object fixtures streamed into S3.
pub fn filler_stream(
    len: u64,
    seed: u64,
) -> impl futures::Stream<Item = std::result::Result<bytes::Bytes, std::io::Error>> + Send + Sync + 'static
{
    let state = (Filler::new(seed), len);
    futures::stream::unfold(state, |(mut filler, left)| async move {
        if left == 0 {
            return None;
        }
        let n = usize::try_from(left.min(BLOCK as u64)).unwrap_or(BLOCK);
        let mut block = vec![0u8; n];
        filler.fill(&mut block);
        Some((Ok(bytes::Bytes::from(block)), (filler, left - n as u64)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn files_digest_and_escape() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("ferry-volumes-{}", std::process::id()));
        let v = Volumes::new(&dir);
        v.write_file("ns", "data", "a/b.txt", b"hello").await?;
        v.write_filler("ns", "data", "big.bin", 3 * BLOCK as u64 + 5, 7)
            .await?;
        let files = v.files("ns", "data").await?;
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].path, "a/b.txt");
        assert_eq!(files[1].size, 3 * BLOCK as u64 + 5);
        let d1 = v.digest("ns", "data").await?;
        v.write_file("ns", "data", "a/b.txt", b"hellO").await?;
        assert_ne!(d1, v.digest("ns", "data").await?);
        assert!(v.file_path("ns", "data", "../x").is_err());
        let _ = tokio::fs::remove_dir_all(&dir).await;
        Ok(())
    }
}
