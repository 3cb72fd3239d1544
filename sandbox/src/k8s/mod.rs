//! A Kubernetes-API-compatible server for the sandbox: discovery, CRUD,
//! list/watch with resourceVersion and selectors, status and scale
//! subresources, CRDs (Velero's and the Platform's ship built in), and
//! Kubernetes `Status` errors. Real `kubectl` and kube-rs talk to it over
//! HTTP; in-process code (the Velero controller, fixtures) uses [`Store`].
//!
//! ```no_run
//! # async fn demo() -> ferry_sandbox::k8s::Result<()> {
//! use ferry_sandbox::k8s::{Gvr, KubeApi};
//! let api = KubeApi::new()?;
//! let server = api.serve("127.0.0.1:0".parse().expect("literal address")).await?;
//! server.write_kubeconfig(std::path::Path::new("/tmp/kubeconfig"))?;
//! let cms = api.store().list(&Gvr::core("configmaps"), Some("default"), None).await?;
//! # drop(cms); server.shutdown().await; Ok(()) }
//! ```

mod builtin;
mod clock;
mod crd;
mod defaults;
mod discovery;
mod error;
mod fault;
mod http;
mod kubeconfig;
mod list;
mod names;
mod object;
mod openapi;
mod patch;
mod printers;
mod protobuf;
mod resource;
mod route;
mod scale;
mod selector;
mod server;
mod state;
mod store;
mod table;
mod watch;
mod write;

use std::net::SocketAddr;

pub use crd::shipped_crds;
pub use error::{K8sError, Result};
pub use fault::{FaultHook, Operation, Verb};
pub use list::{ListParams, ObjectList};
pub use patch::PatchKind;
pub use protobuf::ProtobufError;
pub use resource::{Gvr, ResourceType, ScaleSpec, split_api_version};
pub use selector::{FieldSelector, LabelSelector};
pub use server::ServerHandle;
pub use store::{Part, Store};
pub use watch::{EventType, WatchEvent, WatchStream};

/// One sandbox cluster's API: a store with the core kinds, Velero's CRDs and
/// the Platform's CRDs registered, and the means to serve it over HTTP.
#[derive(Debug, Clone)]
pub struct KubeApi {
    store: Store,
}

impl KubeApi {
    /// Core kinds + Velero + Platform CRDs, default namespaces.
    pub fn new() -> Result<Self> {
        let api = KubeApi::bare();
        api.install_shipped_crds()?;
        Ok(api)
    }

    /// Only the built-in kinds (no CRDs), as on a bare cluster.
    pub fn bare() -> Self {
        KubeApi {
            store: Store::new(),
        }
    }

    /// Registers the shipped Velero and Platform CRDs (on a `bare()` API;
    /// AlreadyExists when they are registered already).
    pub fn install_shipped_crds(&self) -> Result<()> {
        for crd in crd::shipped_crds()? {
            self.store.install_crd(crd)?;
        }
        Ok(())
    }

    /// The in-process handle on the objects (cheap to clone).
    pub fn store(&self) -> Store {
        self.store.clone()
    }

    /// Serves the API over HTTP on `addr` (use port 0 for any free port).
    pub async fn serve(&self, addr: SocketAddr) -> Result<ServerHandle> {
        server::serve(self.store.clone(), addr).await
    }
}
