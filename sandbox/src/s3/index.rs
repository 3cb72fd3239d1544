//! A sorted index of each bucket's keys, so that a listing page costs the
//! page, not the bucket.
//!
//! `s3s-fs` answered every `ListObjects` page by walking the bucket's whole
//! directory tree, statting every file and sorting all keys, then cutting the
//! page out: at 100,000 objects in pages of 1,000 that is 100 walks of
//! 100,000 files for one listing (issue 17). Here a bucket is walked once, on
//! its first listing, into a `BTreeMap`; every write that goes through the
//! endpoint (over HTTP or from the in-process helpers, which share
//! [`SharedFs`](super::backend::SharedFs)) then marks its key, and a page
//! reads only its own entries' size, time and ETag from disk (cached until
//! the key is written again).
//!
//! Files put into a bucket's directory by other means than the endpoint are
//! not seen until the server restarts; a file removed that way drops out of
//! the page that would have listed it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokio::sync::Mutex as AsyncMutex;

/// What a listing shows of one object besides its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Meta {
    pub size: u64,
    pub modified: SystemTime,
    /// Hex MD5, or `<md5>-<parts>` for a multipart object; `None` when the
    /// object has no recorded ETag (a file placed there by hand).
    pub etag: Option<String>,
}

/// A bucket's keys; `None` where the key was written since its entry was read.
pub(crate) type Keys = BTreeMap<String, Option<Meta>>;

#[derive(Default)]
enum State {
    /// Not listed yet: the directory on disk is the truth.
    #[default]
    Unbuilt,
    Built(Keys),
}

/// The index of every bucket under one storage root.
pub(crate) struct ListIndex {
    root: PathBuf,
    buckets: Mutex<HashMap<String, Arc<AsyncMutex<State>>>>,
}

impl ListIndex {
    pub(crate) fn new(root: PathBuf) -> Self {
        Self {
            root,
            buckets: Mutex::default(),
        }
    }

    fn bucket(&self, bucket: &str) -> Arc<AsyncMutex<State>> {
        self.buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(bucket.to_owned())
            .or_default()
            .clone()
    }

    /// `key` was written (or a write to it was tried): its entry is read
    /// again when a page next shows it.
    pub(crate) async fn touched(&self, bucket: &str, key: &str) {
        if let State::Built(keys) = &mut *self.bucket(bucket).lock().await {
            keys.insert(key.to_owned(), None);
        }
    }

    /// `keys` were deleted.
    pub(crate) async fn removed<'a>(&self, bucket: &str, keys: impl IntoIterator<Item = &'a str>) {
        if let State::Built(map) = &mut *self.bucket(bucket).lock().await {
            for key in keys {
                map.remove(key);
            }
        }
    }

    /// The bucket was created or deleted: whatever was known of it is gone.
    pub(crate) async fn reset(&self, bucket: &str) {
        let state = self.bucket(bucket);
        *state.lock().await = State::Unbuilt;
    }

    /// Runs `page` over the bucket's keys on a blocking thread, building the
    /// index first if this is the bucket's first listing. `page` may read
    /// entries ([`BucketFiles::read`]) and drop keys whose file is gone.
    pub(crate) async fn with_keys<T, F>(&self, bucket: &str, page: F) -> std::io::Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&BucketFiles, &mut Keys) -> T + Send + 'static,
    {
        let state = self.bucket(bucket);
        let files = BucketFiles {
            root: self.root.clone(),
            dir: self.root.join(bucket),
            bucket: bucket.to_owned(),
        };
        tokio::task::spawn_blocking(move || {
            let mut state = state.blocking_lock();
            if let State::Unbuilt = &*state {
                *state = State::Built(walk(&files.dir)?);
            }
            match &mut *state {
                State::Built(keys) => Ok(page(&files, keys)),
                State::Unbuilt => Err(std::io::Error::other("the bucket's index was not built")),
            }
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

/// Where one bucket's objects and their recorded ETags live.
pub(crate) struct BucketFiles {
    root: PathBuf,
    dir: PathBuf,
    bucket: String,
}

impl BucketFiles {
    /// `key`'s entry as it is on disk now; `None` when the key is no longer
    /// a file (deleted meanwhile, or a directory).
    pub(crate) fn read(&self, key: &str) -> Option<Meta> {
        let meta = std::fs::metadata(self.dir.join(key)).ok()?;
        if !meta.is_file() {
            return None;
        }
        Some(Meta {
            size: meta.len(),
            modified: meta.modified().ok()?,
            etag: self.recorded_etag(key),
        })
    }

    /// The ETag `s3s-fs` (or our multipart completion) recorded for the
    /// object, in its internal-info file beside the buckets.
    fn recorded_etag(&self, key: &str) -> Option<String> {
        let path = self.root.join(format!(
            ".bucket-{}.object-{}.internal.json",
            URL_SAFE_NO_PAD.encode(&self.bucket),
            URL_SAFE_NO_PAD.encode(key)
        ));
        let body = std::fs::read(path).ok()?;
        let info: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&body).ok()?;
        info.get("e_tag")?.as_str().map(str::to_owned)
    }
}

/// Every file under `dir` as a key (its path relative to `dir`, `/`-joined),
/// entries unread. Names that are not UTF-8 cannot be S3 keys and are skipped.
fn walk(dir: &Path) -> std::io::Result<Keys> {
    let mut keys = Keys::new();
    let mut pending = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, prefix)) = pending.pop() {
        for entry in std::fs::read_dir(&path)? {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let key = format!("{prefix}{name}");
            if entry.file_type()?.is_dir() {
                pending.push((entry.path(), format!("{key}/")));
            } else {
                keys.insert(key, None);
            }
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_index_follows_writes_after_its_first_walk() -> anyhow::Result<()> {
        let root = tempfile::tempdir()?;
        let dir = root.path().join("b");
        std::fs::create_dir_all(dir.join("x/y"))?;
        std::fs::write(dir.join("x/y/z"), b"1")?;
        std::fs::write(dir.join("a"), b"22")?;
        let index = ListIndex::new(root.path().to_path_buf());
        index.touched("b", "ignored-before-the-walk").await;
        async fn keys(index: &ListIndex) -> std::io::Result<Vec<String>> {
            index
                .with_keys("b", |_, keys| keys.keys().cloned().collect())
                .await
        }
        assert_eq!(keys(&index).await?, ["a", "x/y/z"]);
        std::fs::write(dir.join("m"), b"333")?;
        index.touched("b", "m").await;
        index.removed("b", ["a"]).await;
        assert_eq!(keys(&index).await?, ["m", "x/y/z"]);
        let m = index.with_keys("b", |files, _| files.read("m")).await?;
        assert_eq!(m.map(|m| m.size), Some(3));
        // After a reset the disk is the truth again: `a` is still there.
        index.reset("b").await;
        std::fs::remove_file(dir.join("m"))?;
        assert_eq!(keys(&index).await?, ["a", "x/y/z"]);
        Ok(())
    }
}
