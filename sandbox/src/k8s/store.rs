//! The object store shared by the HTTP server and in-process callers (the
//! sandbox's Velero controller, fixture seeding). Objects are untyped JSON,
//! addressed by (group, version, plural) plus namespace and name, and follow
//! the API server's rules: resourceVersion preconditions, generation, status
//! subresource, namespace existence and cascading namespace deletion.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::error::{K8sError, Result};
use super::fault::{FaultHook, Operation, Verb};
use super::list::{ListParams, ObjectList, Selectors, continue_after, hex};
use super::object;
use super::patch::PatchKind;
use super::resource::{Gvr, ResourceType, split_api_version};
use super::state::{ObjKey, State};
use super::watch::{EventType, WatchEvent, WatchFilter, WatchStream};
use super::write::{
    check_type_fields, delete_locked, obj_ref, object_key, patch_locked, present, scope_namespace,
    selectors_match, set_type_fields, write,
};

/// Which part of an object a write targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The object; status is kept when the type has a status subresource.
    Main,
    /// Only `status` (the `/status` subresource).
    Status,
}

/// A cloneable handle on one cluster's objects.
#[derive(Clone)]
pub struct Store {
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<Arc<super::watch::Change>>,
    fault: Arc<RwLock<Option<FaultHook>>>,
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// A store with the built-in kinds and the default namespaces.
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(4096);
        Store {
            state: Arc::new(Mutex::new(State::new(events.clone()))),
            events,
            fault: Arc::new(RwLock::new(None)),
        }
    }

    /// A throwaway copy for one dry-run request (`dryRun=All`): writes to it
    /// pass every check a real write does and are answered, but nothing
    /// reaches this store or its watchers. Costs a copy of the objects.
    pub fn dry_run(&self) -> Store {
        let (events, _) = broadcast::channel(16);
        let scratch = self.lock().scratch(events.clone());
        Store {
            state: Arc::new(Mutex::new(scratch)),
            events,
            fault: self.fault.clone(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not wedge the cluster: take the state as is.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Installs (or with None removes) the fault hook.
    pub fn set_fault_hook(&self, hook: Option<FaultHook>) {
        *self.fault.write().unwrap_or_else(|p| p.into_inner()) = hook;
    }

    fn check_fault(&self, op: Operation<'_>) -> Result<()> {
        let hook = self.fault.read().unwrap_or_else(|p| p.into_inner()).clone();
        match hook.and_then(|h| h(&op)) {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// All served types (for discovery).
    pub fn resource_types(&self) -> Vec<ResourceType> {
        self.lock().registry.all().cloned().collect()
    }

    /// The type served at `gvr`.
    pub fn resource_type(&self, gvr: &Gvr) -> Result<ResourceType> {
        self.lock().registry.by_gvr(gvr).cloned()
    }

    /// The resource serving `kind` in `api_version` (e.g. "velero.io/v1", "Backup").
    pub fn resolve_kind(&self, api_version: &str, kind: &str) -> Result<Gvr> {
        let state = self.lock();
        let rt = state.registry.by_kind(api_version, kind)?;
        let (_, version) = split_api_version(api_version);
        Ok(Gvr::new(&rt.group, version, &rt.plural))
    }

    /// Resolves the object's apiVersion and kind.
    pub fn gvr_of(&self, obj: &Value) -> Result<Gvr> {
        let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        self.resolve_kind(api_version, kind)
    }

    /// Installs a CRD at start-up, before anyone watches (no await needed).
    pub(crate) fn install_crd(&self, crd: Value) -> Result<()> {
        let mut state = self.lock();
        let rt = state
            .registry
            .by_gvr(&Gvr::new(
                "apiextensions.k8s.io",
                "v1",
                "customresourcedefinitions",
            ))?
            .clone();
        let name = object::name(&crd).unwrap_or_default().to_string();
        let key: ObjKey = (String::new(), name.clone());
        if state
            .bucket(&rt.group_resource())
            .is_some_and(|b| b.contains_key(&key))
        {
            return Err(obj_ref(&rt, &name).already_exists());
        }
        let crd = state.fill_new(crd, &name, None, &rt.kind, true);
        state.register_crd_type(&crd)?;
        state.commit(&rt.group_resource(), key, EventType::Added, crd, None);
        Ok(())
    }

    /// Registers a CustomResourceDefinition object (creating or replacing it).
    pub async fn register_crd(&self, crd: Value) -> Result<Value> {
        let gvr = Gvr::new("apiextensions.k8s.io", "v1", "customresourcedefinitions");
        let name = object::name(&crd).unwrap_or_default().to_string();
        match self.get(&gvr, None, &name).await {
            Ok(current) => {
                let mut crd = crd;
                let rv = object::resource_version(&current).map(str::to_string);
                object::set_meta(&mut crd, "resourceVersion", json!(rv));
                self.update(&gvr, None, crd).await
            }
            Err(e) if e.is_not_found() => self.create(&gvr, None, crd).await,
            Err(e) => Err(e),
        }
    }

    /// Creates an object, resolving its type from apiVersion and kind and its
    /// namespace from metadata.
    pub async fn create_object(&self, obj: Value) -> Result<Value> {
        let gvr = self.gvr_of(&obj)?;
        let ns = object::namespace(&obj).map(str::to_string);
        self.create(&gvr, ns.as_deref(), obj).await
    }

    /// Creates an object. `namespace` overrides metadata.namespace when given;
    /// a namespaced object needs one of the two, in an existing namespace.
    pub async fn create(
        &self,
        gvr: &Gvr,
        namespace: Option<&str>,
        mut obj: Value,
    ) -> Result<Value> {
        let mut state = self.lock();
        let rt = state.registry.by_gvr(gvr)?.clone();
        if !obj.is_object() {
            return Err(K8sError::BadRequest(format!(
                "the body of a {} create is not a JSON object",
                rt.kind
            )));
        }
        check_type_fields(&obj, gvr, &rt)?;
        let ns = scope_namespace(&rt, namespace, object::namespace(&obj))?;
        let name = match (object::name(&obj), object::meta_str(&obj, "generateName")) {
            (Some(n), _) => n.to_string(),
            (None, Some(prefix)) => format!("{prefix}{}", super::clock::name_suffix()),
            (None, None) => {
                return Err(K8sError::Invalid {
                    kind: rt.kind.clone(),
                    group: rt.group.clone(),
                    name: String::new(),
                    message: "metadata.name: Required value: name or generateName is required"
                        .into(),
                });
            }
        };
        if let Some(message) = super::names::check(&rt.kind, &name) {
            return Err(obj_ref(&rt, &name).invalid(message));
        }
        self.check_fault(Operation {
            verb: Verb::Create,
            gvr,
            namespace: ns.as_deref(),
            name: Some(&name),
        })?;
        if let Some(ns) = &ns {
            state.require_namespace(ns)?;
        }
        let gr = rt.group_resource();
        let key: ObjKey = (ns.clone().unwrap_or_default(), name.clone());
        if state.bucket(&gr).is_some_and(|b| b.contains_key(&key)) {
            return Err(obj_ref(&rt, &name).already_exists());
        }
        if rt.status_subresource && rt.kind != "Namespace" {
            // Status is the controllers' to write, through /status.
            object::set_status(&mut obj, None);
        }
        set_type_fields(&mut obj, &rt, rt.storage_version());
        let mut obj = state.fill_new(obj, &name, ns.as_deref(), &rt.kind, rt.tracks_generation);
        super::defaults::apply(&rt.kind, &mut obj);
        if rt.kind == "CustomResourceDefinition" {
            state.register_crd_type(&obj)?;
        }
        let stored = state.commit(&gr, key, EventType::Added, obj, None);
        Ok(present(stored, gvr))
    }

    /// Reads one object.
    pub async fn get(&self, gvr: &Gvr, namespace: Option<&str>, name: &str) -> Result<Value> {
        self.check_fault(Operation {
            verb: Verb::Get,
            gvr,
            namespace,
            name: Some(name),
        })?;
        let state = self.lock();
        let rt = state.registry.by_gvr(gvr)?;
        let key = object_key(rt, namespace, name)?;
        state
            .bucket(&rt.group_resource())
            .and_then(|b| b.get(&key))
            .cloned()
            .map(|o| present(o, gvr))
            .ok_or_else(|| obj_ref(rt, name).not_found())
    }

    /// Lists objects (all namespaces when `namespace` is None) matching a
    /// label selector such as `app=vault,tier in (db)`.
    pub async fn list(
        &self,
        gvr: &Gvr,
        namespace: Option<&str>,
        label_selector: Option<&str>,
    ) -> Result<Vec<Value>> {
        let params = ListParams {
            label_selector: label_selector.map(str::to_string),
            ..ListParams::default()
        };
        Ok(self.list_with(gvr, namespace, &params).await?.items)
    }

    /// Lists with selectors and paging.
    pub async fn list_with(
        &self,
        gvr: &Gvr,
        namespace: Option<&str>,
        params: &ListParams,
    ) -> Result<ObjectList> {
        self.check_fault(Operation {
            verb: Verb::List,
            gvr,
            namespace,
            name: None,
        })?;
        let selectors = Selectors::parse(params)?;
        let after = params
            .continue_token
            .as_deref()
            .filter(|t| !t.is_empty())
            .map(continue_after)
            .transpose()?;
        let state = self.lock();
        let rt = state.registry.by_gvr(gvr)?;
        let ns = if rt.namespaced { namespace } else { None };
        let matching: Vec<(&ObjKey, &Value)> = state
            .bucket(&rt.group_resource())
            .into_iter()
            .flat_map(|b| b.iter())
            .filter(|(k, _)| ns.is_none_or(|ns| k.0 == ns))
            .filter(|(k, _)| after.as_ref().is_none_or(|a| *k > a))
            .filter(|(_, o)| selectors.matches(o))
            .collect();
        let limit = params.limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        let remaining = matching.len().saturating_sub(limit);
        let page: Vec<(&ObjKey, &Value)> = matching.into_iter().take(limit).collect();
        let continue_token = match page.last() {
            Some((k, _)) if remaining > 0 => Some(hex(&format!("{}/{}", k.0, k.1))),
            _ => None,
        };
        Ok(ObjectList {
            items: page
                .into_iter()
                .map(|(_, o)| present(o.clone(), gvr))
                .collect(),
            resource_version: state.rv.to_string(),
            continue_token,
            remaining_item_count: (remaining > 0).then_some(remaining),
        })
    }

    /// Replaces an object (PUT). A non-empty metadata.resourceVersion must
    /// match the stored one, else 409 Conflict.
    pub async fn update(&self, gvr: &Gvr, namespace: Option<&str>, obj: Value) -> Result<Value> {
        self.replace(gvr, namespace, obj, Part::Main).await
    }

    /// Replaces only `status` (PUT on `/status`).
    pub async fn update_status(
        &self,
        gvr: &Gvr,
        namespace: Option<&str>,
        obj: Value,
    ) -> Result<Value> {
        self.replace(gvr, namespace, obj, Part::Status).await
    }

    /// PUT on the object or its status.
    pub async fn replace(
        &self,
        gvr: &Gvr,
        namespace: Option<&str>,
        obj: Value,
        part: Part,
    ) -> Result<Value> {
        let name = object::name(&obj)
            .ok_or_else(|| K8sError::BadRequest("metadata.name is required in an update".into()))?
            .to_string();
        let ns = namespace.or(object::namespace(&obj)).map(str::to_string);
        self.check_fault(Operation {
            verb: if part == Part::Status {
                Verb::UpdateStatus
            } else {
                Verb::Update
            },
            gvr,
            namespace: ns.as_deref(),
            name: Some(&name),
        })?;
        let mut state = self.lock();
        let rt = state.registry.by_gvr(gvr)?.clone();
        check_type_fields(&obj, gvr, &rt)?;
        write(&mut state, &rt, gvr, ns.as_deref(), &name, obj, part)
    }

    /// Applies a patch of `kind` to the object or its status. A server-side
    /// apply patch creates the object when it does not exist.
    pub async fn patch(
        &self,
        gvr: &Gvr,
        namespace: Option<&str>,
        name: &str,
        kind: PatchKind,
        body: &Value,
        part: Part,
    ) -> Result<Value> {
        self.check_fault(Operation {
            verb: if part == Part::Status {
                Verb::PatchStatus
            } else {
                Verb::Patch
            },
            gvr,
            namespace,
            name: Some(name),
        })?;
        let applied_create = {
            let mut state = self.lock();
            let rt = state.registry.by_gvr(gvr)?.clone();
            let key = object_key(&rt, namespace, name)?;
            let current = state
                .bucket(&rt.group_resource())
                .and_then(|b| b.get(&key))
                .cloned();
            match current {
                Some(current) => {
                    return patch_locked(
                        &mut state, &rt, gvr, namespace, name, kind, body, part, &current,
                    );
                }
                None if kind == PatchKind::Apply && part == Part::Main => {
                    let mut obj = body.clone();
                    object::set_meta(&mut obj, "name", json!(name));
                    obj
                }
                None => return Err(obj_ref(&rt, name).not_found()),
            }
        };
        self.create(gvr, namespace, applied_create).await
    }
    /// Merge-patches (RFC 7386) an object.
    pub async fn patch_merge(
        &self,
        gvr: &Gvr,
        namespace: Option<&str>,
        name: &str,
        body: &Value,
    ) -> Result<Value> {
        self.patch(gvr, namespace, name, PatchKind::Merge, body, Part::Main)
            .await
    }

    /// Merge-patches an object's status.
    pub async fn patch_status_merge(
        &self,
        gvr: &Gvr,
        namespace: Option<&str>,
        name: &str,
        body: &Value,
    ) -> Result<Value> {
        self.patch(gvr, namespace, name, PatchKind::Merge, body, Part::Status)
            .await
    }

    /// Deletes an object at once (finalizers are not honoured). Deleting a
    /// namespace deletes what it holds; deleting a CRD deletes its objects.
    /// Returns the object as it was, with the deletion's resourceVersion.
    pub async fn delete(&self, gvr: &Gvr, namespace: Option<&str>, name: &str) -> Result<Value> {
        self.delete_checked(gvr, namespace, name, None).await
    }

    /// Delete with an optional resourceVersion precondition (409 on mismatch).
    pub async fn delete_checked(
        &self,
        gvr: &Gvr,
        namespace: Option<&str>,
        name: &str,
        precondition_rv: Option<&str>,
    ) -> Result<Value> {
        self.check_fault(Operation {
            verb: Verb::Delete,
            gvr,
            namespace,
            name: Some(name),
        })?;
        let mut state = self.lock();
        let rt = state.registry.by_gvr(gvr)?.clone();
        let key = object_key(&rt, namespace, name)?;
        delete_locked(&mut state, &rt, gvr, key, precondition_rv)
    }

    /// Deletes every object matching the params; returns them.
    pub async fn delete_collection(
        &self,
        gvr: &Gvr,
        namespace: Option<&str>,
        params: &ListParams,
    ) -> Result<Vec<Value>> {
        self.check_fault(Operation {
            verb: Verb::DeleteCollection,
            gvr,
            namespace,
            name: None,
        })?;
        let selectors = Selectors::parse(params)?;
        let mut state = self.lock();
        let rt = state.registry.by_gvr(gvr)?.clone();
        let ns = if rt.namespaced { namespace } else { None };
        let keys: Vec<ObjKey> = state
            .bucket(&rt.group_resource())
            .into_iter()
            .flat_map(|b| b.iter())
            .filter(|(k, o)| ns.is_none_or(|ns| k.0 == ns) && selectors.matches(o))
            .map(|(k, _)| k.clone())
            .collect();
        keys.into_iter()
            .map(|key| delete_locked(&mut state, &rt, gvr, key, None))
            .collect()
    }

    /// Watches from `resource_version` (None or "0": synthetic ADDED events
    /// for what exists now, then live changes).
    pub async fn watch(
        &self,
        gvr: &Gvr,
        namespace: Option<&str>,
        resource_version: Option<&str>,
    ) -> Result<WatchStream> {
        self.watch_with(gvr, namespace, resource_version, &ListParams::default())
            .await
    }

    /// Watch with selectors. A resourceVersion older than the change log
    /// answers 410 Gone.
    pub async fn watch_with(
        &self,
        gvr: &Gvr,
        namespace: Option<&str>,
        resource_version: Option<&str>,
        params: &ListParams,
    ) -> Result<WatchStream> {
        self.check_fault(Operation {
            verb: Verb::Watch,
            gvr,
            namespace,
            name: None,
        })?;
        let selectors = Selectors::parse(params)?;
        let from =
            match resource_version.filter(|rv| !rv.is_empty() && *rv != "0") {
                Some(rv) => Some(rv.parse::<u64>().map_err(|_| {
                    K8sError::BadRequest(format!("invalid resourceVersion \"{rv}\""))
                })?),
                None => None,
            };
        let state = self.lock();
        let rt = state.registry.by_gvr(gvr)?;
        let filter = WatchFilter {
            gr: rt.group_resource(),
            group: gvr.group.clone(),
            version: gvr.version.clone(),
            namespace: if rt.namespaced {
                namespace.map(str::to_string)
            } else {
                None
            },
            labels: selectors.labels,
            fields: selectors.fields,
        };
        let backlog: VecDeque<WatchEvent> = match from {
            Some(from) if from < state.compacted => {
                return Err(K8sError::Gone {
                    requested: from,
                    oldest: state.compacted + 1,
                });
            }
            Some(from) => state
                .history
                .iter()
                .filter(|c| c.rv > from)
                .filter_map(|c| filter.event_for(c))
                .collect(),
            None => state
                .bucket(&filter.gr)
                .into_iter()
                .flat_map(|b| b.iter())
                .filter(|(k, _)| filter.namespace.as_ref().is_none_or(|ns| k.0 == *ns))
                .filter(|(_, o)| selectors_match(&filter, o))
                .map(|(_, o)| WatchEvent {
                    event_type: EventType::Added,
                    object: filter.present(o.clone()),
                })
                .collect(),
        };
        // Subscribing under the lock leaves no gap between backlog and live.
        let rx = self.events.subscribe();
        Ok(WatchStream {
            backlog,
            rx,
            filter,
            seen_rv: state.rv,
            state: self.state.clone(),
        })
    }
}
