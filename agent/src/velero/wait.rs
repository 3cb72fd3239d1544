//! Watching one Velero object by name: until it finishes, or until it
//! exists. Built on kube's `watcher`, which re-lists and resumes after a
//! dropped connection, so a long backup survives API-server hiccups.

use std::fmt::Debug;
use std::time::Duration;

use futures::{StreamExt, pin_mut};
use k8s_openapi::NamespaceResourceScope;
use kube::Resource;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde::de::DeserializeOwned;

use super::error::{Result, VeleroError};
use super::outcome::{Outcome, Progress};

/// A Velero object with a phase and item counters.
pub(crate) trait Tracked:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Debug
    + Send
    + Sync
    + 'static
{
    const KIND: &'static str;
    fn progress(&self) -> Progress;
    fn outcome(&self) -> Option<Outcome>;
}

fn by_name(name: &str) -> watcher::Config {
    watcher::Config::default().fields(&format!("metadata.name={name}"))
}

/// Reports progress until the object reaches a terminal phase.
pub(crate) async fn until_finished<K: Tracked>(
    api: Api<K>,
    namespace: &str,
    name: &str,
    timeout: Duration,
    mut on_progress: impl FnMut(&Progress),
) -> Result<Outcome> {
    let mut last: Option<Progress> = None;
    let mut observe = |obj: &K| -> Option<Outcome> {
        let now = obj.progress();
        if last.as_ref() != Some(&now) {
            on_progress(&now);
            last = Some(now);
        }
        obj.outcome()
    };
    let vanished = || VeleroError::Vanished {
        kind: K::KIND,
        namespace: namespace.into(),
        name: name.into(),
    };
    let watch = async {
        // A get first: a missing object or a missing permission is reported
        // now instead of after the whole timeout.
        let current = api.get(name).await.map_err(|source| VeleroError::Api {
            action: "read",
            kind: K::KIND,
            namespace: namespace.into(),
            name: name.into(),
            source,
        })?;
        if let Some(done) = observe(&current) {
            return Ok(done);
        }
        let stream = watcher::watcher(api.clone(), by_name(name)).default_backoff();
        pin_mut!(stream);
        // Whether the object showed up in the current (re-)list.
        let mut listed = true;
        while let Some(event) = stream.next().await {
            match event {
                Ok(Event::Apply(obj) | Event::InitApply(obj)) => {
                    listed = true;
                    if let Some(done) = observe(&obj) {
                        return Ok(done);
                    }
                }
                Ok(Event::Init) => listed = false,
                Ok(Event::InitDone) if !listed => return Err(vanished()),
                Ok(Event::InitDone) => {}
                Ok(Event::Delete(_)) => return Err(vanished()),
                // The backoff wrapper retries; the timeout bounds the wait.
                Err(error) => {
                    tracing::warn!(%error, kind = K::KIND, name, "watching Velero object failed; retrying")
                }
            }
        }
        Err(VeleroError::WatchEnded {
            kind: K::KIND,
            namespace: namespace.into(),
            name: name.into(),
        })
    };
    let result = tokio::time::timeout(timeout, watch).await;
    match result {
        Ok(done) => done,
        Err(_) => Err(VeleroError::Timeout {
            kind: K::KIND,
            namespace: namespace.into(),
            name: name.into(),
            what: "finish",
            timeout,
            last_phase: last.map(|p| p.phase).unwrap_or_else(|| "unknown".into()),
        }),
    }
}

/// Returns the object as soon as it exists.
pub(crate) async fn until_present<K: Tracked>(
    api: Api<K>,
    namespace: &str,
    name: &str,
    timeout: Duration,
) -> Result<K> {
    let watch = async {
        let stream = watcher::watcher(api.clone(), by_name(name)).default_backoff();
        pin_mut!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(Event::Apply(obj) | Event::InitApply(obj)) => return Ok(obj),
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(%error, kind = K::KIND, name, "watching for Velero object failed; retrying")
                }
            }
        }
        Err(VeleroError::WatchEnded {
            kind: K::KIND,
            namespace: namespace.into(),
            name: name.into(),
        })
    };
    match tokio::time::timeout(timeout, watch).await {
        Ok(found) => found,
        Err(_) => Err(VeleroError::Timeout {
            kind: K::KIND,
            namespace: namespace.into(),
            name: name.into(),
            what: "appear",
            timeout,
            last_phase: "absent".into(),
        }),
    }
}
