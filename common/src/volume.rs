//! A volume's contents in three figures: files, bytes and a digest. One
//! definition for whoever reads a volume — the agent's `volume-digest`
//! command inside a reader pod, and the sandbox's kubelet stand-in that
//! runs that pod's command over a claim's directory — so both sides of a
//! migration measure alike.
//!
//! The digest is a SHA-256 over the volume's entries, depth first, each
//! directory's entries sorted by name (as bytes), a directory's contents
//! where its name sorts; paths are relative and `/`-separated. For a
//! regular file `f`, the path, a NUL, its size (u64 little-endian) and its
//! contents; for a symbolic link `l`, the path, a NUL and its target.
//! Directories count by what they hold (an empty one is not seen); links
//! are not followed; sockets, FIFOs and devices are left out. Files are read
//! in blocks and one directory listing per level is held, so memory follows
//! the widest directory, whatever the files' sizes.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Bytes read at once.
const BLOCK: usize = 1 << 20;

/// What a volume holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSummary {
    pub files: u64,
    pub bytes: u64,
    /// Lowercase hex SHA-256.
    pub digest: String,
}

/// Why a volume could not be read: the path and what to do.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error(
        "cannot {action} {path}: {source}; the reader needs read access to every file of \
         the volume (run it with the user or group that owns the claim's files)"
    )]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0:?} is not a volume summary (`files=<n> bytes=<n> sha256=<hex>`)")]
    Malformed(String),
}

/// Reads every entry under `root` and sums it up.
pub fn summarize(root: &Path) -> Result<VolumeSummary, VolumeError> {
    let mut sha = ring::digest::Context::new(&ring::digest::SHA256);
    let mut block = vec![0u8; BLOCK];
    let (mut files, mut bytes) = (0u64, 0u64);
    // Depth first, one sorted directory listing per level held at a time:
    // memory follows the widest directory, not the whole tree.
    let mut levels = vec![listing(root, "")?.into_iter()];
    while let Some(level) = levels.last_mut() {
        let Some((rel, path, kind)) = level.next() else {
            levels.pop();
            continue;
        };
        match kind {
            Kind::Dir => levels.push(listing(&path, &rel)?.into_iter()),
            Kind::File => {
                let mut file = std::fs::File::open(&path).map_err(io("open", &path))?;
                let size = file.metadata().map_err(io("inspect", &path))?.len();
                sha.update(b"f");
                sha.update(rel.as_bytes());
                sha.update(&[0]);
                sha.update(&size.to_le_bytes());
                let mut read = 0u64;
                loop {
                    let n = file.read(&mut block).map_err(io("read", &path))?;
                    if n == 0 {
                        break;
                    }
                    read += n as u64;
                    sha.update(&block[..n]);
                }
                if read != size {
                    return Err(VolumeError::Io {
                        action: "read",
                        path,
                        source: std::io::Error::other(format!(
                            "{read} bytes read of {size}: it changed while read (stop what writes the volume)"
                        )),
                    });
                }
                files += 1;
                bytes += size;
            }
            Kind::Link => {
                let target = std::fs::read_link(&path).map_err(io("read link", &path))?;
                sha.update(b"l");
                sha.update(rel.as_bytes());
                sha.update(&[0]);
                sha.update(target.to_string_lossy().as_bytes());
                sha.update(&[0]);
            }
        }
    }
    Ok(VolumeSummary {
        files,
        bytes,
        digest: hex(sha.finish().as_ref()),
    })
}

/// `map_err` for an I/O call on `path`.
fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> VolumeError {
    let path = path.to_path_buf();
    move |source| VolumeError::Io {
        action,
        path,
        source,
    }
}

/// The directories, files and links of `dir`, sorted by name (as bytes),
/// with their paths relative to the volume (`rel` is `dir`'s).
fn listing(dir: &Path, rel: &str) -> Result<Vec<(String, PathBuf, Kind)>, VolumeError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io("list", dir))? {
        let entry = entry.map_err(io("list", dir))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(io("inspect", &path))?;
        let kind = if kind.is_dir() {
            Kind::Dir
        } else if kind.is_file() {
            Kind::File
        } else if kind.is_symlink() {
            Kind::Link
        } else {
            continue;
        };
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        out.push((rel, path, kind));
    }
    out.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Ok(out)
}

#[derive(Clone, Copy)]
enum Kind {
    Dir,
    File,
    Link,
}

/// The one-line form a reader pod leaves as its termination message
/// (well below the kubelet's 4096 bytes).
impl fmt::Display for VolumeSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "files={} bytes={} sha256={}",
            self.files, self.bytes, self.digest
        )
    }
}

impl std::str::FromStr for VolumeSummary {
    type Err = VolumeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || VolumeError::Malformed(s.chars().take(200).collect());
        let mut words = s.split_whitespace();
        let mut field = |key: &str| {
            words
                .next()
                .and_then(|w| w.strip_prefix(key))
                .and_then(|w| w.strip_prefix('='))
                .map(str::to_owned)
                .ok_or_else(bad)
        };
        let files = field("files")?.parse().map_err(|_| bad())?;
        let bytes = field("bytes")?.parse().map_err(|_| bad())?;
        let digest = field("sha256")?;
        if digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        Ok(VolumeSummary {
            files,
            bytes,
            digest,
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_trees_equal_summaries_and_any_change_shows() -> anyhow::Result<()> {
        let make = |root: &Path| -> std::io::Result<()> {
            std::fs::create_dir_all(root.join("data/deep"))?;
            std::fs::write(root.join("README"), b"volume\n")?;
            std::fs::write(root.join("data/deep/base.bin"), vec![7u8; 3 * BLOCK + 5])?;
            std::fs::create_dir_all(root.join("empty"))?;
            Ok(())
        };
        let (a, b) = (tempfile::tempdir()?, tempfile::tempdir()?);
        make(a.path())?;
        make(b.path())?;
        let sa = summarize(a.path())?;
        assert_eq!(sa, summarize(b.path())?);
        assert_eq!((sa.files, sa.bytes), (2, 7 + 3 * BLOCK as u64 + 5));
        assert_eq!(sa.to_string().parse::<VolumeSummary>()?, sa);

        // One byte changed, same size: another digest.
        let mut data = vec![7u8; 3 * BLOCK + 5];
        data[BLOCK + 1] = 8;
        std::fs::write(b.path().join("data/deep/base.bin"), &data)?;
        let sb = summarize(b.path())?;
        assert_eq!((sb.files, sb.bytes), (sa.files, sa.bytes));
        assert_ne!(sb.digest, sa.digest);
        // A file moved: another digest too.
        std::fs::write(
            b.path().join("data/deep/base.bin"),
            vec![7u8; 3 * BLOCK + 5],
        )?;
        std::fs::rename(b.path().join("README"), b.path().join("README2"))?;
        assert_ne!(summarize(b.path())?.digest, sa.digest);
        Ok(())
    }

    #[test]
    fn a_missing_volume_names_its_path_and_bad_messages_are_refused() {
        let err = summarize(Path::new("/nonexistent/ferry-volume"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("/nonexistent/ferry-volume"), "{err}");
        for bad in [
            "",
            "files=1",
            "files=x bytes=1 sha256=ab",
            "files=1 bytes=2 sha256=zz",
        ] {
            assert!(bad.parse::<VolumeSummary>().is_err(), "{bad}");
        }
    }
}
