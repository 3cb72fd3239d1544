//! Two clusters' object stores (sandbox S3 endpoints) and their agents, in
//! this process, around a coordinator in-process or as a separate process.
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use ferry_common::pb::{self, transfers_client::TransfersClient};
use ferry_common::tls::TlsPaths;
use ferry_coordinator::auth::{Role, RoleBinding};
use ferry_sandbox::s3::S3Server;
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub const SOURCE_BUCKET: &str = "src";
pub const TARGET_BUCKET: &str = "dst";

pub struct Clusters {
    pub a: S3Server,
    pub b: S3Server,
    stop: CancellationToken,
    agents: Vec<JoinHandle<Result<(), ferry_agent::Error>>>,
}

pub fn stores_json(s3: &S3Server, bucket: &str, prefixes: &[&str]) -> serde_json::Value {
    json!({"stores": {"obc": {
        "s3": {
            "endpoint": s3.endpoint(),
            "bucket": bucket,
            "region": s3.region(),
            "access_key_id": s3.access_key(),
            "secret_access_key": s3.secret_key(),
            "allow_http": true
        },
        "prefixes": prefixes
    }}})
}

impl Clusters {
    /// Sandbox S3 for clusters `a` and `b`, and their agents dialling `url`.
    pub async fn start(dir: &Path, pki: &Path, url: &str) -> anyhow::Result<Self> {
        let a = S3Server::start(dir.join("s3-a"), "akey-a", "secret-a").await?;
        let b = S3Server::start(dir.join("s3-b"), "akey-b", "secret-b").await?;
        a.create_bucket(SOURCE_BUCKET).await?;
        b.create_bucket(TARGET_BUCKET).await?;
        let stop = CancellationToken::new();
        let mut agents = vec![];
        for (cluster, s3, bucket) in [("a", &a, SOURCE_BUCKET), ("b", &b, TARGET_BUCKET)] {
            let stores = dir.join(format!("stores-{cluster}.json"));
            std::fs::write(&stores, stores_json(s3, bucket, &["data"]).to_string())?;
            let mut config = ferry_agent::AgentConfig::new(cluster, url, pki.to_path_buf());
            config.stores = Some(stores);
            config.state_dir = Some(dir.join(format!("agent-{cluster}-state")));
            config.backoff_base = Duration::from_millis(50);
            config.backoff_cap = Duration::from_millis(500);
            agents.push(tokio::spawn(ferry_agent::run(config, stop.clone())));
        }
        let clusters = Self { a, b, stop, agents };
        wait_connected(url, pki, &["a", "b"]).await?;
        Ok(clusters)
    }

    pub async fn stop(self) {
        self.stop.cancel();
        for a in self.agents {
            let _ = a.await;
        }
    }
}

/// Waits until the coordinator at `url` lists every one of `clusters` connected.
pub async fn wait_connected(url: &str, pki: &Path, clusters: &[&str]) -> anyhow::Result<()> {
    crate::eventually(Duration::from_secs(20), "agents connected", || async {
        let channel = ferry_common::tls::connect(
            url,
            &TlsPaths::in_dir(pki, "client-admin"),
            None,
            Duration::from_secs(2),
        )
        .await
        .ok()?;
        let agents = pb::fleet_client::FleetClient::new(channel)
            .list_agents(pb::ListAgentsRequest {})
            .await
            .ok()?
            .into_inner()
            .agents;
        clusters
            .iter()
            .all(|c| {
                agents
                    .iter()
                    .any(|a| a.cluster_id == *c && a.state == pb::AgentState::Connected as i32)
            })
            .then_some(())
    })
    .await
}

/// An in-process coordinator for `pki` with an `admin` client.
pub async fn coordinator(
    pki: &Path,
    data: PathBuf,
) -> anyhow::Result<ferry_coordinator::RunningCoordinator> {
    let mut config = ferry_coordinator::CoordinatorConfig::for_dirs(
        pki.to_path_buf(),
        data,
        vec![RoleBinding {
            client: "admin".into(),
            role: Role::Admin,
        }],
    );
    config.heartbeat = Duration::from_millis(300);
    Ok(ferry_coordinator::start(&config).await?)
}

pub async fn transfers(url: &str, pki: &Path) -> anyhow::Result<TransfersClient<Channel>> {
    let channel = ferry_common::tls::connect(
        url,
        &TlsPaths::in_dir(pki, "client-admin"),
        None,
        Duration::from_secs(5),
    )
    .await?;
    Ok(TransfersClient::new(channel))
}

pub fn request(id: &str, chunk_size: u64, parallelism: u32) -> pb::StartTransferRequest {
    pb::StartTransferRequest {
        transfer_id: id.into(),
        source: Some(pb::ObjectSet {
            cluster_id: "a".into(),
            store: "obc".into(),
            prefix: "data".into(),
        }),
        target: Some(pb::ObjectSet {
            cluster_id: "b".into(),
            store: "obc".into(),
            prefix: "data".into(),
        }),
        chunk_size,
        parallelism,
    }
}

/// Polls a transfer until it leaves `running`, riding out coordinator restarts.
pub async fn wait_transfer(
    url: &str,
    pki: &Path,
    id: &str,
    timeout: Duration,
) -> anyhow::Result<pb::TransferStatus> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok(mut client) = transfers(url, pki).await
            && let Ok(s) = client
                .get_transfer(pb::GetTransferRequest {
                    transfer_id: id.into(),
                })
                .await
        {
            let s = s.into_inner();
            if s.state != pb::TransferState::Running as i32 {
                return Ok(s);
            }
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "transfer {id} still running after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Deterministic content for object `i` of `size` bytes.
pub fn content(i: usize, size: usize) -> bytes::Bytes {
    let mut v = Vec::with_capacity(size);
    let mut x = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while v.len() < size {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(size);
    v.into()
}

/// `(key, sha256)` of every object under `prefix` in `bucket`.
pub async fn digests(
    s3: &S3Server,
    bucket: &str,
    prefix: &str,
) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut out = vec![];
    for o in s3.list_objects(bucket, prefix).await? {
        let data = s3
            .get_object(bucket, &o.key)
            .await
            .with_context(|| format!("reading {}", o.key))?;
        out.push((
            o.key.clone(),
            ring::digest::digest(&ring::digest::SHA256, &data)
                .as_ref()
                .to_vec(),
        ));
    }
    out.sort();
    Ok(out)
}
