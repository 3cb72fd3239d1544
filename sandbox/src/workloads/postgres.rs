//! **Stand-in for Crunchy PGO's instances**: a real PostgreSQL server per
//! PostgresCluster of a sandbox cluster, when PostgreSQL is installed.
//!
//! On a Platform cluster a PostgresCluster's data directory lives on its
//! instance's volume claim and travels in Velero's file-system backup. Here
//! no pod runs, so the volume holds the database as a *logical dump*
//! (`pgdata/registry.sql` in the claim's sandbox directory), kept in step
//! with a throwaway server (`ferry_testkit::pg`) the way an instance keeps
//! its data directory:
//! - an instance StatefulSet (labelled `postgres-operator.crunchydata.com/cluster`)
//!   starting (replicas > 0) starts the cluster's server and, when it has no
//!   database `registry` yet, loads the volume's dump into it (in one
//!   transaction into another name, then renamed: it appears whole); then,
//!   as PGO reconciles them, the `<cluster>-pguser-*` Secrets get the
//!   server's address (loopback here; `<cluster>-primary.<ns>.svc` on a
//!   real cluster);
//! - the StatefulSet scaled to 0 writes the database back to the volume
//!   (`pg_dump`, then renamed into place). The server keeps answering, as
//!   PGO, which the registry's quiesce does not stop, keeps a real
//!   instance up;
//! - the StatefulSet deleted (its namespace removed) stops the server and
//!   removes its files.
//!
//! The server trusts loopback connections: the Secret's password is sent by
//! the agent but not checked here.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use base64::Engine;
use ferry_testkit::pg::TempPostgres;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::k8s::{EventType, Gvr, Store};
use crate::velero::Volumes;

/// PGO's label naming an instance's PostgresCluster.
pub const CLUSTER_LABEL: &str = "postgres-operator.crunchydata.com/cluster";
/// The database every registry cluster holds.
pub const DATABASE: &str = "registry";
/// Where, in the instance's volume, the database is kept.
pub const DUMP: &str = "pgdata/registry.sql";

/// Whether the sandbox can run its databases (PostgreSQL's server
/// binaries are installed).
pub fn installed() -> bool {
    ferry_testkit::pg::find_bindir().is_ok()
}

/// Where the stand-in keeps PGO's Secrets: the sandbox's own store, or a
/// real API server (the real tier, `PgoStandIn`).
pub(super) enum Secrets {
    Store(Store),
    Kube(kube::Client),
}

/// The address Secrets name while their cluster's instance is not running
/// on this cluster: nothing listens there (the discard port).
pub(super) const NOT_RUNNING: (&str, u16) = ("127.0.0.1", 9);

pub(super) struct Instances {
    secrets: Secrets,
    volumes: Volumes,
    /// `(namespace, cluster)` → its server.
    servers: Mutex<HashMap<(String, String), Arc<TempPostgres>>>,
    /// `(namespace, statefulset)` started and not stopped since.
    running: Mutex<HashSet<(String, String)>>,
}

impl Instances {
    pub(super) fn new(secrets: Secrets, volumes: Volumes) -> Self {
        Instances {
            secrets,
            volumes,
            servers: Mutex::new(HashMap::new()),
            running: Mutex::new(HashSet::new()),
        }
    }

    /// Follows one StatefulSet event; done before its status is set, so
    /// the instance is ready only once its database is.
    pub(super) async fn on_event(&self, event_type: &EventType, sts: &Value) {
        let Some(cluster) = sts
            .pointer("/metadata/labels")
            .and_then(|l| l.get(CLUSTER_LABEL))
            .and_then(Value::as_str)
        else {
            return;
        };
        let ns = str_at(sts, "/metadata/namespace").to_owned();
        let key = (ns.clone(), str_at(sts, "/metadata/name").to_owned());
        if matches!(event_type, EventType::Deleted) {
            self.running.lock().await.remove(&key);
            let server = self
                .servers
                .lock()
                .await
                .remove(&(ns.clone(), cluster.to_owned()));
            if let Some(server) = server {
                // Stopping waits for pg_ctl: off the async threads.
                let _ = tokio::task::spawn_blocking(move || drop(server)).await;
            }
            return;
        }
        let replicas = sts
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let Some(claim) = claim_of(sts) else {
            tracing::warn!(statefulset = %key.1, "PGO stand-in: the instance mounts no claim");
            return;
        };
        let dump = self.volumes.dir(&ns, &claim).join(DUMP);
        let running = self.running.lock().await.contains(&key);
        let result = if replicas > 0 && !running {
            self.start(&ns, cluster, &dump).await.map(|()| true)
        } else if replicas == 0 && running {
            self.stop(&ns, cluster, &dump).await.map(|()| false)
        } else {
            return;
        };
        match result {
            Ok(true) => {
                self.running.lock().await.insert(key);
            }
            Ok(false) => {
                self.running.lock().await.remove(&key);
            }
            Err(error) => {
                tracing::warn!(%error, namespace = %ns, cluster, "PGO stand-in failed");
            }
        }
    }

    async fn server(&self, ns: &str, cluster: &str) -> Result<Arc<TempPostgres>, String> {
        let mut servers = self.servers.lock().await;
        let key = (ns.to_owned(), cluster.to_owned());
        if let Some(s) = servers.get(&key) {
            return Ok(s.clone());
        }
        let server = tokio::task::spawn_blocking(TempPostgres::start)
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("starting PostgreSQL for {ns}/{cluster}: {e:#}"))?;
        let server = Arc::new(server);
        servers.insert(key, server.clone());
        Ok(server)
    }

    async fn start(&self, ns: &str, cluster: &str, dump: &Path) -> Result<(), String> {
        let server = self.server(ns, cluster).await?;
        let dump = dump.to_path_buf();
        let pg = server.clone();
        tokio::task::spawn_blocking(move || load(&pg, &dump))
            .await
            .map_err(|e| e.to_string())??;
        self.point_secrets(ns, cluster, &server).await;
        tracing::info!(
            namespace = ns,
            cluster,
            port = server.port(),
            "PGO stand-in: instance started"
        );
        Ok(())
    }

    async fn stop(&self, ns: &str, cluster: &str, dump: &Path) -> Result<(), String> {
        let server = self
            .servers
            .lock()
            .await
            .get(&(ns.to_owned(), cluster.to_owned()))
            .cloned();
        let Some(server) = server else {
            return Ok(());
        };
        let dump = dump.to_path_buf();
        tokio::task::spawn_blocking(move || save(&server, &dump))
            .await
            .map_err(|e| e.to_string())?
    }

    /// The `<cluster>-pguser-*` Secrets name this server, as PGO keeps them.
    async fn point_secrets(&self, ns: &str, cluster: &str, server: &TempPostgres) {
        let listed = match self.list_secrets(ns).await {
            Ok(l) => l,
            Err(error) => {
                tracing::warn!(%error, "PGO stand-in cannot list secrets");
                return;
            }
        };
        let prefix = format!("{cluster}-pguser-");
        for s in listed {
            if str_at(&s, "/metadata/name").starts_with(&prefix) {
                self.point(ns, &s, server.host(), server.port()).await;
            }
        }
    }

    /// Points one `<cluster>-pguser-*` Secret at what serves its cluster on
    /// this cluster — as PGO rewrites a restored Secret to the local
    /// primary — or at [`NOT_RUNNING`] while nothing does. The real tier's
    /// watcher calls this for every such Secret it sees.
    pub(super) async fn repoint(&self, secret: &Value) {
        let Some(cluster) = secret
            .pointer("/metadata/labels")
            .and_then(|l| l.get(CLUSTER_LABEL))
            .and_then(Value::as_str)
        else {
            return;
        };
        if !str_at(secret, "/metadata/name").starts_with(&format!("{cluster}-pguser-")) {
            return;
        }
        let ns = str_at(secret, "/metadata/namespace").to_owned();
        let server = self
            .servers
            .lock()
            .await
            .get(&(ns.clone(), cluster.to_owned()))
            .cloned();
        match server {
            Some(s) => self.point(&ns, secret, s.host(), s.port()).await,
            None => self.point(&ns, secret, NOT_RUNNING.0, NOT_RUNNING.1).await,
        }
    }

    /// Writes `host`/`port`/`uri` into one Secret unless it has them.
    async fn point(&self, ns: &str, secret: &Value, host: &str, port: u16) {
        let name = str_at(secret, "/metadata/name");
        let b64 = base64::engine::general_purpose::STANDARD;
        let decoded = |k: &str| {
            secret
                .pointer(&format!("/data/{k}"))
                .and_then(Value::as_str)
                .and_then(|v| b64.decode(v).ok())
                .map(|v| String::from_utf8_lossy(&v).into_owned())
                .unwrap_or_default()
        };
        let port = port.to_string();
        if decoded("host") == host && decoded("port") == port {
            return;
        }
        let uri = format!(
            "postgresql://{}:{}@{host}:{port}/{}",
            decoded("user"),
            decoded("password"),
            decoded("dbname")
        );
        let patch = json!({"data": {
            "host": b64.encode(host), "port": b64.encode(&port), "uri": b64.encode(uri),
        }});
        let written = match &self.secrets {
            Secrets::Store(store) => store
                .patch_merge(&Gvr::core("secrets"), Some(ns), name, &patch)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string()),
            Secrets::Kube(client) => {
                kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), ns)
                    .patch(
                        name,
                        &kube::api::PatchParams::default(),
                        &kube::api::Patch::Merge(&patch),
                    )
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            }
        };
        if let Err(error) = written {
            tracing::warn!(%error, secret = name, "PGO stand-in cannot update the secret");
        }
    }

    async fn list_secrets(&self, ns: &str) -> Result<Vec<Value>, String> {
        match &self.secrets {
            Secrets::Store(store) => store
                .list(&Gvr::core("secrets"), Some(ns), None)
                .await
                .map_err(|e| e.to_string()),
            Secrets::Kube(client) => {
                let api =
                    kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), ns);
                let list = api
                    .list(&Default::default())
                    .await
                    .map_err(|e| e.to_string())?;
                list.items
                    .into_iter()
                    .map(|s| serde_json::to_value(s).map_err(|e| e.to_string()))
                    .collect()
            }
        }
    }
}

/// The claim the instance's pods mount.
fn claim_of(sts: &Value) -> Option<String> {
    sts.pointer("/spec/template/spec/volumes")?
        .as_array()?
        .iter()
        .find_map(|v| v.pointer("/persistentVolumeClaim/claimName"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Gives the server its database: from the volume's dump when it has one,
/// else empty (a new cluster). Nothing when the database is there.
fn load(pg: &TempPostgres, dump: &Path) -> Result<(), String> {
    let exists = pg
        .psql(
            "postgres",
            &format!("SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'"),
        )
        .map_err(|e| format!("{e:#}"))?;
    if exists.trim() == "1" {
        return Ok(());
    }
    if !dump.is_file() {
        return pg.create_database(DATABASE).map_err(|e| format!("{e:#}"));
    }
    let loading = format!("{DATABASE}_loading");
    pg.psql("postgres", &format!("DROP DATABASE IF EXISTS {loading}"))
        .and_then(|_| pg.create_database(&loading))
        .map_err(|e| format!("{e:#}"))?;
    run(Command::new(pg.psql_path())
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "--single-transaction",
            "-d",
        ])
        .arg(pg.connection_string(&loading))
        .arg("-f")
        .arg(dump))
    .map_err(|e| format!("loading {}: {e}", dump.display()))?;
    pg.psql(
        "postgres",
        &format!("ALTER DATABASE {loading} RENAME TO {DATABASE}"),
    )
    .map(|_| ())
    .map_err(|e| format!("{e:#}"))
}

/// Writes the database into the volume (a whole file or none). The dump is
/// written beside the claim's directory, not in it, and renamed in: a
/// file-system backup reading the claim meanwhile sees the old dump or the
/// new one, never a partial file that vanishes between its listing and its
/// reading (which Velero counts as an error of the backup).
fn save(pg: &TempPostgres, dump: &Path) -> Result<(), String> {
    let dir = dump.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    // `<namespace>/<claim>/pgdata/registry.sql`: the namespace's directory,
    // on the same file system, so the rename is atomic.
    let outside = dir.parent().and_then(Path::parent).unwrap_or(dir);
    let claim = dir
        .parent()
        .and_then(Path::file_name)
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let partial: PathBuf = outside.join(format!(".{claim}.registry.sql.partial"));
    run(Command::new(pg.bindir().join("pg_dump"))
        .args(["--no-owner", "--no-privileges", "-d"])
        .arg(pg.connection_string(DATABASE))
        .arg("-f")
        .arg(&partial))
    .map_err(|e| format!("dumping into {}: {e}", partial.display()))?;
    std::fs::rename(&partial, dump).map_err(|e| format!("renaming into {}: {e}", dump.display()))
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}
