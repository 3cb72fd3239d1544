//! The store's state under its lock: served types, objects, the global
//! resourceVersion counter and the change log. Every mutation goes through
//! `commit`, which bumps the counter and records the change for watchers.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::builtin::{DEFAULT_NAMESPACES, builtin_types};
use super::clock;
use super::crd;
use super::error::{K8sError, ObjectRef, Result};
use super::object;
use super::resource::{GroupResource, Registry, ResourceType};
use super::watch::{Change, EventType};

/// How many changes stay replayable for watches that resume from an older
/// resourceVersion; older ones answer 410 Gone.
pub(crate) const HISTORY: usize = 10_000;

/// (namespace or "" for cluster-scoped, name).
pub(crate) type ObjKey = (String, String);

pub(crate) struct State {
    pub registry: Registry,
    pub objects: HashMap<GroupResource, BTreeMap<ObjKey, Value>>,
    pub rv: u64,
    pub history: VecDeque<Arc<Change>>,
    /// Highest rv no longer in `history`.
    pub compacted: u64,
    pub events: broadcast::Sender<Arc<Change>>,
    /// A scratch copy serving one dry-run request: commits assign no
    /// resourceVersion and publish nothing.
    pub dry_run: bool,
}

impl State {
    pub fn new(events: broadcast::Sender<Arc<Change>>) -> Self {
        let mut registry = Registry::default();
        for rt in builtin_types() {
            registry.insert(rt);
        }
        let mut state = State {
            registry,
            objects: HashMap::new(),
            rv: 0,
            history: VecDeque::new(),
            compacted: 0,
            events,
            dry_run: false,
        };
        let ns = GroupResource {
            group: String::new(),
            resource: "namespaces".into(),
        };
        for name in DEFAULT_NAMESPACES {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
            let mut obj = state.fill_new(obj, name, None, "Namespace", false);
            super::defaults::apply("Namespace", &mut obj);
            state.commit(
                &ns,
                (String::new(), (*name).into()),
                EventType::Added,
                obj,
                None,
            );
        }
        state
    }

    /// A copy of the objects and types for a dry run, with its own (unwatched)
    /// change feed.
    pub fn scratch(&self, events: broadcast::Sender<Arc<Change>>) -> State {
        State {
            registry: self.registry.clone(),
            objects: self.objects.clone(),
            rv: self.rv,
            history: VecDeque::new(),
            compacted: self.rv,
            events,
            dry_run: true,
        }
    }

    pub fn bucket(&self, gr: &GroupResource) -> Option<&BTreeMap<ObjKey, Value>> {
        self.objects.get(gr)
    }

    /// Server-set metadata of a newly created object (rv is set by commit).
    pub fn fill_new(
        &mut self,
        mut obj: Value,
        name: &str,
        namespace: Option<&str>,
        kind: &str,
        tracks_generation: bool,
    ) -> Value {
        let now = clock::now_rfc3339();
        let meta = object::meta_mut(&mut obj);
        meta.insert("name".into(), json!(name));
        match namespace {
            Some(ns) => meta.insert("namespace".into(), json!(ns)),
            None => meta.remove("namespace"),
        };
        meta.insert("uid".into(), json!(clock::new_uid()));
        meta.insert("creationTimestamp".into(), json!(now));
        if tracks_generation {
            meta.insert("generation".into(), json!(1));
        } else {
            meta.remove("generation");
        }
        meta.remove("deletionTimestamp");
        meta.remove("managedFields");
        match kind {
            "Namespace" => {
                object::set_path(&mut obj, ".spec.finalizers", json!(["kubernetes"]));
                object::set_status(&mut obj, Some(json!({"phase": "Active"})));
            }
            "CustomResourceDefinition" => {
                let status = crd::established_status(&obj, &now);
                object::set_status(&mut obj, Some(status));
            }
            _ => {}
        }
        obj
    }

    /// Stores (or, for Deleted, removes) the object under a new resourceVersion
    /// and publishes the change. Returns the object as stored.
    pub fn commit(
        &mut self,
        gr: &GroupResource,
        key: ObjKey,
        event_type: EventType,
        mut obj: Value,
        old: Option<Value>,
    ) -> Value {
        if self.dry_run {
            // As the real server's dry run: nothing is persisted, so a new
            // object has no resourceVersion and a changed one keeps its own.
            if event_type == EventType::Added {
                object::meta_mut(&mut obj).remove("resourceVersion");
            }
            let bucket = self.objects.entry(gr.clone()).or_default();
            if event_type == EventType::Deleted {
                bucket.remove(&key);
            } else {
                bucket.insert(key, obj.clone());
            }
            return obj;
        }
        self.rv += 1;
        object::set_meta(&mut obj, "resourceVersion", json!(self.rv.to_string()));
        let bucket = self.objects.entry(gr.clone()).or_default();
        if event_type == EventType::Deleted {
            bucket.remove(&key);
        } else {
            bucket.insert(key.clone(), obj.clone());
        }
        let change = Arc::new(Change {
            rv: self.rv,
            gr: gr.clone(),
            namespace: key.0,
            event_type,
            object: obj.clone(),
            old,
        });
        if self.history.len() >= HISTORY
            && let Some(dropped) = self.history.pop_front()
        {
            self.compacted = dropped.rv;
        }
        self.history.push_back(change.clone());
        // No receiver is not an error: nobody is watching.
        let _ = self.events.send(change);
        obj
    }

    /// Checks that the namespace exists before something is created in it.
    pub fn require_namespace(&self, ns: &str) -> Result<()> {
        let gr = GroupResource {
            group: String::new(),
            resource: "namespaces".into(),
        };
        let exists = self
            .bucket(&gr)
            .is_some_and(|b| b.contains_key(&(String::new(), ns.to_string())));
        if exists {
            Ok(())
        } else {
            Err(ObjectRef {
                group: "",
                plural: "namespaces",
                kind: "Namespace",
                name: ns,
            }
            .not_found())
        }
    }

    /// Deletes every object of every namespaced type in `ns`.
    pub fn delete_namespace_contents(&mut self, ns: &str) {
        let namespaced: Vec<GroupResource> = self
            .registry
            .all()
            .filter(|rt| rt.namespaced)
            .map(ResourceType::group_resource)
            .collect();
        for gr in namespaced {
            let keys: Vec<ObjKey> = self
                .bucket(&gr)
                .map(|b| b.keys().filter(|(n, _)| n == ns).cloned().collect())
                .unwrap_or_default();
            for key in keys {
                if let Some(obj) = self.objects.get(&gr).and_then(|b| b.get(&key)).cloned() {
                    self.commit(&gr, key, EventType::Deleted, obj, None);
                }
            }
        }
    }

    /// Removes a CRD's type and all its objects (as the real server does).
    pub fn unregister_crd(&mut self, crd_name: &str) {
        let Some(gr) = self
            .registry
            .all()
            .find(|rt| rt.crd.as_deref() == Some(crd_name))
            .map(ResourceType::group_resource)
        else {
            return;
        };
        let keys: Vec<ObjKey> = self
            .bucket(&gr)
            .map(|b| b.keys().cloned().collect())
            .unwrap_or_default();
        for key in keys {
            if let Some(obj) = self.objects.get(&gr).and_then(|b| b.get(&key)).cloned() {
                self.commit(&gr, key, EventType::Deleted, obj, None);
            }
        }
        self.registry.remove(&gr);
        self.objects.remove(&gr);
    }

    /// Registers (or re-registers) the type a CRD object defines. A CRD may
    /// not take over a built-in type or another CRD's group and plural.
    pub fn register_crd_type(&mut self, crd_obj: &Value) -> Result<()> {
        let rt = crd::resource_type_of(crd_obj)?;
        let taken = self
            .registry
            .all()
            .find(|t| t.group == rt.group && t.plural == rt.plural)
            .is_some_and(|t| t.crd != rt.crd);
        if taken {
            return Err(K8sError::Invalid {
                kind: "CustomResourceDefinition".into(),
                group: "apiextensions.k8s.io".into(),
                name: rt.crd.clone().unwrap_or_default(),
                message: format!("{}.{} is already served", rt.plural, rt.group),
            });
        }
        self.registry.insert(rt);
        Ok(())
    }
}
