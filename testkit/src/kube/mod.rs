//! A real Kubernetes control plane for tests: etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler and KWOK with fake nodes, built
//! from pinned Go modules by `scripts/realstack` and run as processes on
//! loopback ports with their own certificates, service-account keys and an
//! admin kubeconfig.
//!
//! What is real: the API server (validation, admission, RBAC, CRDs with
//! structural schemas, watch, finalizers, namespace deletion), etcd, and the
//! controllers (Deployments, ReplicaSets, StatefulSets, garbage collection,
//! service accounts and their tokens, persistent-volume binding, the
//! scheduler). What stands in: **KWOK plays the kubelets** — no container
//! runs; a Pod bound to a fake node is reported Running and Ready, and a
//! deleted one goes away (`stages.yaml`); and **a CSI provisioner stand-in**
//! binds a volume to each claim that waits for one (`provisioner.rs`).
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! let cluster = ferry_testkit::kube::RealCluster::start().await?;
//! let client = cluster.client().await?;
//! # drop(client); Ok(()) }
//! ```
//! Dropping the value kills every process and removes its directory, also
//! when the test panics.

mod pki;
pub(crate) mod process;
mod provisioner;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::{Node, ServiceAccount};
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;

use process::Process;

/// Where the KWOK lifecycle stages are kept (written for KWOK at start).
const STAGES: &str = include_str!("stages.yaml");
/// The annotation KWOK manages nodes by.
pub const FAKE_NODE_ANNOTATION: &str = "kwok.x-k8s.io/node";
/// How long the whole control plane may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// The directory holding the real stack's binaries: `$FERRY_REALSTACK_DIR/bin`
/// or the workspace's `.realstack/bin`, where `scripts/realstack` builds them.
pub fn realstack_bin_dir() -> PathBuf {
    let root = std::env::var_os("FERRY_REALSTACK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .unwrap_or(Path::new("."))
                .join(".realstack")
        });
    root.join("bin")
}

/// The path of one real-stack binary; fails, saying how to build it, when
/// it is missing — the real tier never skips silently.
pub fn realstack_binary(name: &str) -> anyhow::Result<PathBuf> {
    let path = realstack_bin_dir().join(name);
    if !path.is_file() {
        bail!(
            "{} is missing: the real tier runs binaries built from pinned Go modules; run scripts/realstack (./scripts/test does) to build them",
            path.display()
        );
    }
    Ok(path)
}

/// How many fake nodes to register, and their names' prefix.
const NODES: usize = 2;

/// A running control plane.
pub struct RealCluster {
    // Declared first so the processes die before their directory goes.
    processes: Vec<Process>,
    /// The CSI provisioner stand-in (`provisioner.rs`).
    provisioner: Option<tokio::task::JoinHandle<()>>,
    dir: Option<tempfile::TempDir>,
    kubeconfig: PathBuf,
    server: String,
    ca_cert: PathBuf,
    started_in: Duration,
}

impl RealCluster {
    /// Starts etcd, the API server, the controller manager, the scheduler
    /// and KWOK, registers fake nodes, and returns once the API server is
    /// ready and the nodes are Ready.
    pub async fn start() -> anyhow::Result<Self> {
        let started = Instant::now();
        let bin = |name| realstack_binary(name);
        let (etcd, apiserver, kcm, scheduler, kwok) = (
            bin("etcd")?,
            bin("kube-apiserver")?,
            bin("kube-controller-manager")?,
            bin("kube-scheduler")?,
            bin("kwok")?,
        );
        let dir = tempfile::Builder::new()
            .prefix("ferry-kube-")
            .tempdir()
            .context("creating a directory for the control plane")?;
        let root = dir.path().to_path_buf();
        let pki = pki::write_all(&root)?;
        let mut cluster = RealCluster {
            processes: Vec::new(),
            provisioner: None,
            kubeconfig: root.join("admin.kubeconfig"),
            server: String::new(),
            ca_cert: pki.ca_cert.clone(),
            dir: Some(dir),
            started_in: Duration::ZERO,
        };

        let etcd_port = crate::free_port()?;
        let peer_port = crate::free_port()?;
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        cluster.processes.push(Process::spawn(
            &root,
            "etcd",
            &etcd,
            &[
                "--name=ferry-test".into(),
                format!("--data-dir={}", root.join("etcd").display()),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=ferry-test={peer_url}"),
                "--unsafe-no-fsync=true".into(),
                "--log-level=warn".into(),
            ],
        )?);

        let port = crate::free_port()?;
        cluster.server = format!("https://127.0.0.1:{port}");
        let path = |p: &Path| p.display().to_string();
        cluster.processes.push(Process::spawn(
            &root,
            "kube-apiserver",
            &apiserver,
            &[
                format!("--etcd-servers={etcd_url}"),
                "--bind-address=127.0.0.1".into(),
                "--advertise-address=127.0.0.1".into(),
                format!("--secure-port={port}"),
                format!("--tls-cert-file={}", path(&pki.serving_cert)),
                format!("--tls-private-key-file={}", path(&pki.serving_key)),
                format!("--client-ca-file={}", path(&pki.ca_cert)),
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
                format!("--service-account-key-file={}", path(&pki.sa_pub)),
                format!("--service-account-signing-key-file={}", path(&pki.sa_key)),
                "--service-cluster-ip-range=10.0.0.0/24".into(),
                "--authorization-mode=RBAC".into(),
                "--endpoint-reconciler-type=none".into(),
                "--allow-privileged=true".into(),
                "--v=0".into(),
            ],
        )?);
        write_admin_kubeconfig(&cluster.kubeconfig, &cluster.server, &root, &pki)?;
        cluster.wait_ready().await?;

        let kubeconfig = format!("--kubeconfig={}", path(&cluster.kubeconfig));
        cluster.processes.push(Process::spawn(
            &root,
            "kube-controller-manager",
            &kcm,
            &[
                kubeconfig.clone(),
                format!("--service-account-private-key-file={}", path(&pki.sa_key)),
                format!("--root-ca-file={}", path(&pki.ca_cert)),
                "--use-service-account-credentials=true".into(),
                "--leader-elect=false".into(),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={}", crate::free_port()?),
                "--controllers=*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller".into(),
            ],
        )?);
        cluster.processes.push(Process::spawn(
            &root,
            "kube-scheduler",
            &scheduler,
            &[
                kubeconfig.clone(),
                "--leader-elect=false".into(),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={}", crate::free_port()?),
            ],
        )?);
        let stages = root.join("kwok-stages.yaml");
        std::fs::write(&stages, STAGES).context("writing KWOK's stages")?;
        cluster.processes.push(Process::spawn(
            &root,
            "kwok",
            &kwok,
            &[
                kubeconfig,
                format!("--config={}", path(&stages)),
                "--manage-all-nodes=false".into(),
                format!("--manage-nodes-with-annotation-selector={FAKE_NODE_ANNOTATION}=fake"),
                "--cidr=10.244.0.0/16".into(),
                "--node-ip=10.244.255.1".into(),
                format!("--server-address=127.0.0.1:{}", crate::free_port()?),
            ],
        )?);

        let client = cluster.client().await?;
        cluster.provisioner = Some(tokio::spawn(provisioner::run(client.clone())));
        register_nodes(&client).await?;
        cluster.wait_nodes_ready(&client).await?;
        // Pods are admitted only once their namespace's `default`
        // ServiceAccount exists, which the controller manager creates.
        cluster
            .wait_for("the default ServiceAccount (controller manager up)", || {
                let api: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
                async move { api.get_opt("default").await.ok().flatten().map(|_| ()) }
            })
            .await?;
        cluster.started_in = started.elapsed();
        eprintln!(
            "real control plane up in {:.1} s at {} ({} fake nodes)",
            cluster.started_in.as_secs_f64(),
            cluster.server,
            NODES
        );
        Ok(cluster)
    }

    /// The admin kubeconfig (`system:masters`).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// `https://127.0.0.1:<port>`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The cluster CA's certificate file.
    pub fn ca_cert(&self) -> &Path {
        &self.ca_cert
    }

    /// This cluster's private directory.
    pub fn dir(&self) -> &Path {
        self.dir
            .as_ref()
            .map(|d| d.path())
            .unwrap_or(Path::new("."))
    }

    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// An admin client.
    pub async fn client(&self) -> anyhow::Result<kube::Client> {
        client_from(&self.kubeconfig).await
    }

    /// Writes a kubeconfig that authenticates with `token` (a
    /// ServiceAccount's) to `path`.
    pub fn write_token_kubeconfig(&self, path: &Path, token: &str) -> anyhow::Result<()> {
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: real\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: token\n  user:\n    token: {}\ncontexts:\n- name: real\n  context:\n    cluster: real\n    user: token\ncurrent-context: real\n",
            self.server,
            self.ca_cert.display(),
            token
        );
        write_private(path, &text)
    }

    /// The last lines each process logged, for a failing test's message.
    pub fn log_tails(&self) -> String {
        self.processes
            .iter()
            .map(Process::tail)
            .collect::<Vec<_>>()
            .join("\n")
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let kubeconfig = self.kubeconfig.clone();
        self.wait_for("kube-apiserver /readyz", || {
            let kubeconfig = kubeconfig.clone();
            async move {
                let client = client_from(&kubeconfig).await.ok()?;
                let req = http::Request::get("/readyz").body(Vec::new()).ok()?;
                client
                    .request_text(req)
                    .await
                    .ok()
                    .filter(|t| t.trim() == "ok")
            }
        })
        .await
        .map(|_| ())
    }

    async fn wait_nodes_ready(&mut self, client: &kube::Client) -> anyhow::Result<()> {
        let nodes: Api<Node> = Api::all(client.clone());
        self.wait_for("the fake nodes to be Ready (KWOK)", || {
            let nodes = nodes.clone();
            async move {
                let list = nodes.list(&Default::default()).await.ok()?;
                let ready = list
                    .items
                    .iter()
                    .filter(|n| {
                        n.status
                            .as_ref()
                            .and_then(|s| s.conditions.as_ref())
                            .is_some_and(|c| {
                                c.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                            })
                    })
                    .count();
                (ready == NODES).then_some(())
            }
        })
        .await
    }

    /// Polls `check` until it yields, failing with every process's log tail
    /// when one died or the start timeout passed.
    async fn wait_for<T, F, Fut>(&mut self, what: &str, mut check: F) -> anyhow::Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(v) = check().await {
                return Ok(v);
            }
            let mut died = None;
            for p in &mut self.processes {
                if let Some(status) = p.exited()? {
                    died = Some(format!("{} exited ({status})", p.name()));
                    break;
                }
            }
            if let Some(died) = died {
                bail!("{died} while waiting for {what}:\n{}", self.log_tails());
            }
            if Instant::now() >= deadline {
                bail!(
                    "timed out after {START_TIMEOUT:?} waiting for {what}:\n{}",
                    self.log_tails()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for RealCluster {
    fn drop(&mut self) {
        if let Some(task) = &self.provisioner {
            task.abort();
        }
    }
}

/// A client from a kubeconfig file.
pub async fn client_from(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: one is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let file = Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("loading {}", kubeconfig.display()))?;
    Ok(kube::Client::try_from(config)?)
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

fn write_admin_kubeconfig(
    path: &Path,
    server: &str,
    dir: &Path,
    pki: &pki::ControlPlanePki,
) -> anyhow::Result<()> {
    let cert = dir.join("admin.crt");
    let key = dir.join("admin.key");
    write_private(&cert, &pki.admin_cert_pem)?;
    write_private(&key, &pki.admin_key_pem)?;
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: real\n  cluster:\n    server: {server}\n    certificate-authority: {}\nusers:\n- name: admin\n  user:\n    client-certificate: {}\n    client-key: {}\ncontexts:\n- name: real\n  context:\n    cluster: real\n    user: admin\ncurrent-context: real\n",
        pki.ca_cert.display(),
        cert.display(),
        key.display()
    );
    write_private(path, &text)
}

async fn register_nodes(client: &kube::Client) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    for i in 0..NODES {
        let name = format!("kwok-node-{i}");
        let node: Node = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {
                "name": name,
                "annotations": {FAKE_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                           "kubernetes.io/arch": "amd64", "type": "kwok"},
            },
            "spec": {},
        }))?;
        nodes
            .create(&PostParams::default(), &node)
            .await
            .with_context(|| format!("registering fake node {name}"))?;
    }
    Ok(())
}
