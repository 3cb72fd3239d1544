//! Watch: the store's change log, and the per-watcher stream that replays the
//! log from a resourceVersion and then follows live changes.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::resource::{GroupResource, api_version};
use super::selector::{FieldSelector, LabelSelector};
use super::state::State;

/// The `type` of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
    Bookmark,
    Error,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
            EventType::Bookmark => "BOOKMARK",
            EventType::Error => "ERROR",
        }
    }
}

/// One event as a watcher sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchEvent {
    pub event_type: EventType,
    pub object: Value,
}

impl WatchEvent {
    /// The wire form: `{"type": "ADDED", "object": {...}}`.
    pub fn to_json(&self) -> Value {
        json!({"type": self.event_type.as_str(), "object": self.object})
    }
}

/// One entry of the store's change log.
#[derive(Debug)]
pub(crate) struct Change {
    pub rv: u64,
    pub gr: GroupResource,
    pub namespace: String,
    pub event_type: EventType,
    /// The object after the change (for Deleted: as it was, with the new rv).
    pub object: Value,
    /// The object before a modification, to turn selector transitions into
    /// ADDED/DELETED as the real watch cache does.
    pub old: Option<Value>,
}

/// What a watcher asked for.
#[derive(Debug, Clone)]
pub(crate) struct WatchFilter {
    pub gr: GroupResource,
    pub group: String,
    pub version: String,
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl WatchFilter {
    fn selects(&self, object: &Value) -> bool {
        self.labels.matches(object) && self.fields.matches(object)
    }

    /// Rewrites the object's apiVersion to the version the watcher asked for.
    pub fn present(&self, mut object: Value) -> Value {
        if let Some(map) = object.as_object_mut() {
            map.insert(
                "apiVersion".into(),
                Value::String(api_version(&self.group, &self.version)),
            );
        }
        object
    }

    /// The event this watcher sees for `change`, if any.
    pub(crate) fn event_for(&self, change: &Change) -> Option<WatchEvent> {
        if change.gr != self.gr {
            return None;
        }
        if let Some(ns) = &self.namespace
            && *ns != change.namespace
        {
            return None;
        }
        let now = self.selects(&change.object);
        let before = change.old.as_ref().map(|o| self.selects(o));
        let event_type = match (change.event_type, before, now) {
            (EventType::Modified, Some(false), true) => EventType::Added,
            (EventType::Modified, Some(true), false) => EventType::Deleted,
            (_, _, false) => return None,
            (t, _, true) => t,
        };
        Some(WatchEvent {
            event_type,
            object: self.present(change.object.clone()),
        })
    }
}

/// A stream of watch events. A watcher that falls behind the live channel
/// catches up from the change log; it ends only when even the log no longer
/// holds what it missed (it must then re-list, as after a 410 Gone).
pub struct WatchStream {
    pub(crate) backlog: VecDeque<WatchEvent>,
    pub(crate) rx: broadcast::Receiver<Arc<Change>>,
    pub(crate) filter: WatchFilter,
    /// Changes at or below this rv were already delivered or skipped.
    pub(crate) seen_rv: u64,
    pub(crate) state: Arc<Mutex<State>>,
}

impl WatchStream {
    /// The next event, or None when the stream has ended.
    pub async fn next(&mut self) -> Option<WatchEvent> {
        if let Some(event) = self.backlog.pop_front() {
            return Some(event);
        }
        loop {
            match self.rx.recv().await {
                Ok(change) => {
                    if change.rv <= self.seen_rv {
                        continue;
                    }
                    self.seen_rv = change.rv;
                    if let Some(event) = self.filter.event_for(&change) {
                        return Some(event);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    if !self.catch_up() {
                        tracing::warn!(
                            missed,
                            "watcher fell behind the change log; closing its watch"
                        );
                        return None;
                    }
                    if let Some(event) = self.backlog.pop_front() {
                        return Some(event);
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// Refills the backlog from the change log after missing live changes,
    /// and resubscribes; false when the log no longer reaches back far enough.
    fn catch_up(&mut self) -> bool {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if self.seen_rv < state.compacted {
            return false;
        }
        let seen = self.seen_rv;
        self.backlog.extend(
            state
                .history
                .iter()
                .filter(|c| c.rv > seen)
                .filter_map(|c| self.filter.event_for(c)),
        );
        self.rx = state.events.subscribe();
        self.seen_rv = state.rv;
        true
    }

    /// The stream as a `futures::Stream`.
    pub fn into_stream(self) -> impl futures::Stream<Item = WatchEvent> + Send + 'static {
        futures::stream::unfold(self, |mut s| async move { s.next().await.map(|e| (e, s)) })
    }
}
