//! The sink's durable memory of a transfer target: which objects it committed
//! (with the source version they came from) and, for objects still being
//! received, the multipart upload and the parts verified so far. This is what
//! lets a transfer resume from the last verified chunk after any crash.
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::RelayError;

/// One directory per (store, prefix) target.
pub struct TargetState {
    dir: PathBuf,
    committed: HashMap<String, Committed>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Committed {
    pub size: u64,
    pub version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Partial {
    pub key: String,
    pub version: String,
    pub size: u64,
    pub chunk_size: u64,
    pub upload_id: String,
    /// Content ids of the parts verified and uploaded, in order.
    pub parts: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct CommitLine {
    key: String,
    #[serde(flatten)]
    c: Committed,
}

fn state_err(path: &Path, e: impl std::fmt::Display) -> RelayError {
    RelayError::State {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// A file name for any key, without trusting the key's characters.
fn digest_name(s: &str) -> String {
    super::sha256(s.as_bytes())[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl TargetState {
    pub fn open(root: &Path, store: &str, prefix: &str) -> Result<Self, RelayError> {
        let dir = root
            .join("relay")
            .join(digest_name(&format!("{store}\0{prefix}")));
        std::fs::create_dir_all(dir.join("partial")).map_err(|e| state_err(&dir, e))?;
        let mut committed = HashMap::new();
        let log = dir.join("committed.jsonl");
        if let Ok(text) = std::fs::read_to_string(&log) {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                // A torn last line (crash mid-append) is skipped, not fatal.
                if let Ok(c) = serde_json::from_str::<CommitLine>(line) {
                    committed.insert(c.key, c.c);
                }
            }
        }
        Ok(Self { dir, committed })
    }

    pub fn committed(&self, key: &str) -> Option<&Committed> {
        self.committed.get(key)
    }

    pub fn record_commit(&mut self, key: &str, c: Committed) -> Result<(), RelayError> {
        let log = self.dir.join("committed.jsonl");
        let mut line = serde_json::to_string(&CommitLine {
            key: key.to_string(),
            c: c.clone(),
        })
        .map_err(|e| state_err(&log, e))?;
        line.push('\n');
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .map_err(|e| state_err(&log, e))?;
        self.committed.insert(key.to_string(), c);
        let _ = std::fs::remove_file(self.partial_path(key));
        Ok(())
    }

    fn partial_path(&self, key: &str) -> PathBuf {
        partial_path_in(&self.dir, key)
    }

    pub fn partial(&self, key: &str) -> Option<Partial> {
        let text = std::fs::read_to_string(self.partial_path(key)).ok()?;
        serde_json::from_str::<Partial>(&text)
            .ok()
            .filter(|p| p.key == key)
    }

    pub fn drop_partial(&self, key: &str) {
        let _ = std::fs::remove_file(self.partial_path(key));
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn partial_path_in(dir: &Path, key: &str) -> PathBuf {
    dir.join("partial")
        .join(format!("{}.json", digest_name(key)))
}

/// Writes a partial record atomically (temporary file, then rename).
pub fn save_partial_in(dir: &Path, p: &Partial) -> Result<(), RelayError> {
    let path = partial_path_in(dir, &p.key);
    let tmp = path.with_extension("tmp");
    let text = serde_json::to_vec(p).map_err(|e| state_err(&path, e))?;
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|e| state_err(&path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_and_partials_survive_reopen() -> anyhow::Result<()> {
        let root = tempfile::tempdir()?;
        {
            let mut s = TargetState::open(root.path(), "bsl", "backups/")?;
            save_partial_in(
                s.dir(),
                &Partial {
                    key: "big".into(),
                    version: "v1".into(),
                    size: 100,
                    chunk_size: 10,
                    upload_id: "u".into(),
                    parts: vec!["p0".into(), "p1".into()],
                },
            )?;
            s.record_commit(
                "small",
                Committed {
                    size: 3,
                    version: "e1".into(),
                },
            )?;
        }
        let s = TargetState::open(root.path(), "bsl", "backups/")?;
        assert_eq!(
            s.committed("small"),
            Some(&Committed {
                size: 3,
                version: "e1".into()
            })
        );
        assert_eq!(s.partial("big").map(|p| p.parts.len()), Some(2));
        assert!(
            TargetState::open(root.path(), "bsl", "other/")?
                .committed("small")
                .is_none()
        );
        Ok(())
    }
}
