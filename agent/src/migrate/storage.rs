//! Object-store helpers of the steps: listing under a plain string prefix
//! (`openshift-backups/backups/<reg>-` is not a "directory"), deleting,
//! and hashing objects as streams.

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStoreExt};

use super::error::{Result, store_err};
use crate::objects::{Scoped, Stores};

/// Objects under a prefix, sorted by key.
pub(crate) struct Listing {
    pub scope: Scoped,
    pub objects: Vec<ObjectMeta>,
}

impl Listing {
    pub fn bytes(&self) -> u64 {
        self.objects.iter().map(|o| o.size).sum()
    }
}

/// Every object of `store` whose key starts with `prefix` (any string; the
/// agent's configuration must allow the part up to its last `/`).
pub(crate) async fn list_prefix(stores: &Stores, store: &str, prefix: &str) -> Result<Listing> {
    let dir = prefix.rfind('/').map_or("", |i| &prefix[..=i]);
    let scope = stores.scoped(store, dir)?;
    let root = scope.list_root();
    let mut objects: Vec<ObjectMeta> = scope
        .open
        .store
        .list(root.as_ref())
        .try_filter(|o| std::future::ready(o.location.as_ref().starts_with(prefix)))
        .try_collect()
        .await
        .map_err(store_err(
            "list",
            store,
            format!("objects under {prefix:?}"),
        ))?;
    objects.sort_by(|a, b| a.location.cmp(&b.location));
    Ok(Listing { scope, objects })
}

/// Deletes the listed objects (in batches where the store can); returns how
/// many. Objects already gone count as deleted by someone else: not counted.
pub(crate) async fn delete_listed(listing: &Listing) -> Result<u64> {
    if listing.objects.is_empty() {
        return Ok(0);
    }
    let store = &listing.scope.open.store;
    let paths = futures::stream::iter(
        listing
            .objects
            .iter()
            .map(|o| Ok(o.location.clone()))
            .collect::<Vec<_>>(),
    )
    .boxed();
    let mut deleted = 0;
    let mut results = store.delete_stream(paths);
    while let Some(result) = results.next().await {
        match result {
            Ok(_) => deleted += 1,
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => {
                return Err(store_err("delete", &listing.scope.name, "objects")(e));
            }
        }
    }
    Ok(deleted)
}

/// Hex SHA-256 of the object's content, read as a stream.
pub(crate) async fn sha256_hex(scope: &Scoped, path: &Path) -> Result<String> {
    let what = || format!("object {path}");
    let got = scope
        .open
        .store
        .get(path)
        .await
        .map_err(store_err("read", &scope.name, what()))?;
    let mut hash = ring::digest::Context::new(&ring::digest::SHA256);
    let mut chunks = got.into_stream();
    while let Some(chunk) = chunks.next().await {
        hash.update(&chunk.map_err(store_err("read", &scope.name, what()))?);
    }
    Ok(hex(hash.finish().as_ref()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Writes `data` to `key` under the scope's prefix (replacing what is there).
pub(crate) async fn put(scope: &Scoped, key: &str, data: Vec<u8>) -> Result<()> {
    let path = scope.path(key)?;
    scope
        .open
        .store
        .put(&path, data.into())
        .await
        .map_err(store_err("write", &scope.name, format!("object {path}")))?;
    Ok(())
}

/// Reads `key` under the scope's prefix whole (small documents only).
pub(crate) async fn get(scope: &Scoped, key: &str) -> Result<Vec<u8>> {
    let path = scope.path(key)?;
    let what = format!("object {path}");
    let got =
        scope
            .open
            .store
            .get(&path)
            .await
            .map_err(store_err("read", &scope.name, what.clone()))?;
    Ok(got
        .bytes()
        .await
        .map_err(store_err("read", &scope.name, what))?
        .to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objects::StoresConfig;

    #[tokio::test]
    async fn prefixes_need_not_end_at_a_slash() -> anyhow::Result<()> {
        let config: StoresConfig = serde_json::from_value(serde_json::json!({
            "stores": {"b": {"memory": null, "prefixes": [""]}}
        }))?;
        let stores = Stores::new(config);
        let all = stores.scoped("b", "")?;
        for key in [
            "backups/reg-1/a",
            "backups/reg-1/b",
            "backups/reg-10/c",
            "backups/other/d",
        ] {
            put(&all, key, key.as_bytes().to_vec()).await?;
        }
        let listing = list_prefix(&stores, "b", "backups/reg-1").await?;
        assert_eq!(listing.objects.len(), 3);
        let listing = list_prefix(&stores, "b", "backups/reg-1/").await?;
        assert_eq!(listing.objects.len(), 2);
        assert_eq!(delete_listed(&listing).await?, 2);
        assert_eq!(list_prefix(&stores, "b", "").await?.objects.len(), 2);
        let digest = sha256_hex(&all, &Path::from("backups/other/d")).await?;
        assert_eq!(digest, hex(&crate::relay::sha256(b"backups/other/d")));
        Ok(())
    }
}
