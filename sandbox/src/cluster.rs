//! One sandbox cluster: the Kubernetes API (with a kubeconfig on disk), an
//! S3 endpoint holding the backup bucket, a Keycloak, the Velero controller
//! and a workload controller, wired together and stopped together.
//!
//! Seeding it with the Platform and registries is [`crate::fixture`]'s job.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::k8s::{KubeApi, ServerHandle, Store};
use crate::keycloak::KeycloakServer;
use crate::s3::{S3Config, S3Server};
use crate::velero::{VeleroConfig, VeleroController, VeleroFaults, Volumes};
use crate::workloads::WorkloadController;

/// The bucket of the `default` backup storage location.
pub const DEFAULT_BSL_BUCKET: &str = "velero-backups";

/// Why a cluster could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cannot prepare the sandbox cluster directory {path}: {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("sandbox Kubernetes API: {0}")]
    Kube(#[from] crate::k8s::K8sError),
    #[error("sandbox S3: {0}")]
    S3(#[from] crate::s3::Error),
    #[error("sandbox Keycloak: {0}")]
    Keycloak(#[from] crate::keycloak::Error),
}

pub type Result<T, E = ClusterError> = std::result::Result<T, E>;

/// How to start a [`SandboxCluster`]. `Default` works for tests and demos.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub s3_access_key: String,
    pub s3_secret_key: String,
    pub keycloak_admin_user: String,
    pub keycloak_admin_password: String,
    /// Created at start-up (empty); the fixture points a BSL at it.
    pub bsl_bucket: String,
    /// Only the built-in kinds: no Velero or Platform CRDs (a bare OKD).
    pub without_crds: bool,
    /// Where the Kubernetes API listens (port 0: any free one).
    pub api_bind: SocketAddr,
    /// See [`VeleroConfig`].
    pub bsl_validation_interval: Duration,
    pub backup_sync_interval: Duration,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            s3_access_key: "ferry-sandbox".into(),
            s3_secret_key: "ferry-sandbox-secret".into(),
            keycloak_admin_user: "admin".into(),
            keycloak_admin_password: "admin".into(),
            bsl_bucket: DEFAULT_BSL_BUCKET.into(),
            without_crds: false,
            api_bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            bsl_validation_interval: Duration::from_millis(500),
            backup_sync_interval: Duration::from_secs(1),
        }
    }
}

/// A running sandbox cluster.
pub struct SandboxCluster {
    dir: PathBuf,
    kubeconfig: PathBuf,
    api: KubeApi,
    server: ServerHandle,
    s3: Arc<S3Server>,
    keycloak: KeycloakServer,
    velero: VeleroController,
    workloads: WorkloadController,
    volumes: Volumes,
    bsl_bucket: String,
}

impl SandboxCluster {
    /// Starts every part under `dir` (created if missing): `dir/kubeconfig`,
    /// `dir/s3/` (buckets), `dir/volumes/` (PVC contents).
    pub async fn start(dir: impl AsRef<Path>, options: ClusterOptions) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|source| ClusterError::Dir {
                path: dir.clone(),
                source,
            })?;
        let api = if options.without_crds {
            KubeApi::bare()
        } else {
            KubeApi::new()?
        };
        let (server, s3, keycloak) = tokio::try_join!(
            async {
                api.serve(options.api_bind)
                    .await
                    .map_err(ClusterError::from)
            },
            async {
                S3Server::start_with(S3Config::new(
                    dir.join("s3"),
                    options.s3_access_key.clone(),
                    options.s3_secret_key.clone(),
                ))
                .await
                .map_err(ClusterError::from)
            },
            async {
                KeycloakServer::start(
                    &options.keycloak_admin_user,
                    &options.keycloak_admin_password,
                )
                .await
                .map_err(ClusterError::from)
            },
        )?;
        let kubeconfig = dir.join("kubeconfig");
        server.write_kubeconfig(&kubeconfig)?;
        s3.create_bucket(&options.bsl_bucket).await?;
        let s3 = Arc::new(s3);
        let volumes = Volumes::new(dir.join("volumes"));
        let mut config = VeleroConfig::new(volumes.clone());
        config.validation_interval = options.bsl_validation_interval;
        config.sync_interval = options.backup_sync_interval;
        let velero = VeleroController::start(api.store(), s3.clone(), config);
        let workloads = WorkloadController::start(api.store(), volumes.clone());
        tracing::info!(dir = %dir.display(), api = %server.base_url(), s3 = %s3.endpoint(), keycloak = %keycloak.base_url(), "sandbox cluster started");
        Ok(SandboxCluster {
            dir,
            kubeconfig,
            api,
            server,
            s3,
            keycloak,
            velero,
            workloads,
            volumes,
            bsl_bucket: options.bsl_bucket,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The kubeconfig for `kubectl` and `kube::Client`.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    pub fn api_url(&self) -> &str {
        self.server.base_url()
    }

    /// In-process access to the cluster's objects.
    pub fn store(&self) -> Store {
        self.api.store()
    }

    pub fn s3(&self) -> &S3Server {
        &self.s3
    }

    /// Starts the node-agent stand-in for the real cluster behind `client`,
    /// over this cluster's object store and volumes (the real tier: Velero's
    /// server there, this cluster's S3 as its BSL).
    pub fn serve_node_agent(&self, client: kube::Client) -> crate::velero::NodeAgentStandIn {
        crate::velero::NodeAgentStandIn::start(client, self.s3.clone(), self.volumes().clone())
    }

    /// Starts the PGO stand-in for the real cluster behind `client`, over
    /// this cluster's volumes (the real tier: its instance StatefulSets run
    /// real PostgreSQL servers here, their databases kept on the claims).
    pub fn serve_pgo(&self, client: kube::Client) -> crate::workloads::PgoStandIn {
        crate::workloads::PgoStandIn::start(client, self.volumes().clone())
    }

    pub fn s3_endpoint(&self) -> &str {
        self.s3.endpoint()
    }

    pub fn s3_access_key(&self) -> &str {
        self.s3.access_key()
    }

    pub fn s3_secret_key(&self) -> &str {
        self.s3.secret_key()
    }

    pub fn s3_region(&self) -> &str {
        self.s3.region()
    }

    pub fn keycloak(&self) -> &KeycloakServer {
        &self.keycloak
    }

    pub fn keycloak_url(&self) -> &str {
        self.keycloak.base_url()
    }

    pub fn keycloak_admin_user(&self) -> &str {
        self.keycloak.admin_user()
    }

    pub fn keycloak_admin_password(&self) -> &str {
        self.keycloak.admin_password()
    }

    /// PVC contents.
    pub fn volumes(&self) -> &Volumes {
        &self.volumes
    }

    /// The bucket of the `default` backup storage location.
    pub fn bsl_bucket(&self) -> &str {
        &self.bsl_bucket
    }

    /// Velero's fault switches (PartiallyFailed backups, slow phases).
    pub fn velero_faults(&self) -> &Arc<VeleroFaults> {
        self.velero.faults()
    }

    /// Makes the BSL bucket answer 503 (the BSL goes Unavailable) or heals it.
    pub fn set_bsl_unavailable(&self, on: bool) {
        self.s3.set_bucket_unavailable(&self.bsl_bucket, on);
    }

    /// Makes the whole S3 endpoint answer 503, or heals it.
    pub fn set_s3_unavailable(&self, on: bool) {
        self.s3.set_unavailable(on);
    }

    /// Makes Keycloak answer 503, or heals it.
    pub fn set_keycloak_unavailable(&self, on: bool) {
        self.keycloak.set_unavailable(on);
    }

    /// Stops the controllers first (they write to the others), then the endpoints.
    pub async fn shutdown(self) {
        let SandboxCluster {
            server,
            s3,
            keycloak,
            velero,
            workloads,
            ..
        } = self;
        workloads.shutdown().await;
        velero.shutdown().await;
        server.shutdown().await;
        keycloak.shutdown().await;
        match Arc::try_unwrap(s3) {
            Ok(s3) => s3.shutdown().await,
            // Someone still holds the endpoint; dropping our handle is all
            // that is left to do (the last drop stops it).
            Err(s3) => drop(s3),
        }
    }
}

impl std::fmt::Debug for SandboxCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxCluster")
            .field("dir", &self.dir)
            .field("api", &self.server.base_url())
            .field("s3", &self.s3.endpoint())
            .field("keycloak", &self.keycloak.base_url())
            .finish_non_exhaustive()
    }
}
