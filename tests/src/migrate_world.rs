//! Sandbox clusters with the Platform (and maybe a registry), their agents
//! as processes, and what a migration test reads off the clusters directly —
//! not through Ferry — to judge what Ferry did.
use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use ferry_common::pb::{self, migrations_client::MigrationsClient};
use ferry_common::tls::TlsPaths;
use ferry_coordinator::migrate::plan::PHASES;
use ferry_sandbox::cluster::{ClusterOptions, SandboxCluster};
use ferry_sandbox::fixture::{self, OBC_BUCKETS, Platform, Seed, bucket_name};
use ferry_sandbox::k8s::{Gvr, Store};
use serde_json::Value;
use tonic::transport::Channel;

use crate::{Proc, World};

pub const PLATFORM: &str = "1.9.9";
pub const REGISTRY: &str = "reg-one";

/// What to seed on a test cluster.
pub struct Site<'a> {
    /// `None`: a bare OKD.
    pub platform: Option<&'a str>,
    pub domain: &'a str,
    /// `(name, version)` of a registry to seed.
    pub registry: Option<(&'a str, &'a str)>,
    pub sizes: Option<fixture::Sizes>,
    /// The cluster's storage classes, when not the fixture's (`gp3-csi`, default).
    pub storage_classes: Option<Vec<fixture::StorageClassSpec>>,
    /// Velero's change-storage-class mapping on this cluster.
    pub class_mapping: &'a [(&'a str, &'a str)],
}

impl<'a> Site<'a> {
    pub fn source(domain: &'a str) -> Self {
        Site {
            platform: Some(PLATFORM),
            domain,
            registry: Some((REGISTRY, PLATFORM)),
            sizes: None,
            storage_classes: None,
            class_mapping: &[],
        }
    }

    pub fn target(domain: &'a str) -> Self {
        Site {
            platform: Some(PLATFORM),
            domain,
            registry: None,
            sizes: None,
            storage_classes: None,
            class_mapping: &[],
        }
    }
}

/// Starts and seeds a sandbox cluster in the world's directory. The
/// registry's nine buckets exist on every Platform cluster (the bucket
/// provisioner's work), empty where the registry is not.
pub async fn cluster(w: &World, id: &str, site: Site<'_>) -> anyhow::Result<SandboxCluster> {
    let c =
        SandboxCluster::start(w.path(&format!("cluster-{id}")), ClusterOptions::default()).await?;
    let seed = match site.platform {
        None => Seed::bare(),
        Some(v) => {
            let mut platform = Platform::new(v).with_domain(site.domain);
            if let Some(classes) = site.storage_classes.clone() {
                platform = platform.with_storage_classes(classes);
            }
            for (from, to) in site.class_mapping {
                platform = platform.with_storage_class_mapping(from, to);
            }
            let mut seed = Seed {
                platform: Some(platform),
                registries: vec![],
            };
            if let Some((name, version)) = site.registry {
                let mut r = fixture::Registry::new(name, version);
                if let Some(sizes) = site.sizes.clone() {
                    r.sizes = sizes;
                }
                seed = seed.with_registry_sized(r);
            }
            seed
        }
    };
    fixture::seed(&c, &seed).await?;
    if site.platform.is_some() {
        ferry_cli::cmd::sandbox::ensure_buckets(&c, REGISTRY).await?;
    }
    Ok(c)
}

/// Starts the agents of clusters `a` and `b` and waits until both are connected.
pub async fn both_agents(
    w: &World,
    a: &SandboxCluster,
    b: &SandboxCluster,
) -> anyhow::Result<(Proc, Proc)> {
    let agents = (agent(w, "a", a)?, agent(w, "b", b)?);
    w.all_connected(&["a", "b"], Duration::from_secs(30))
        .await?;
    Ok(agents)
}

/// Starts the agent of cluster `id` on `c`: probing through its Kubernetes
/// API, with the stores a migration of `REGISTRY` uses, state on disk.
pub fn agent(w: &World, id: &str, c: &SandboxCluster) -> anyhow::Result<Proc> {
    agent_with(w, id, c, &[], &[])
}

/// `agent`, with more arguments and environment variables.
pub fn agent_with(
    w: &World,
    id: &str,
    c: &SandboxCluster,
    extra: &[&str],
    env: &[(&str, &str)],
) -> anyhow::Result<Proc> {
    let stores = w.path(&format!("stores-{id}.json"));
    std::fs::write(
        &stores,
        ferry_cli::cmd::sandbox::agent_stores(c, REGISTRY).to_string(),
    )?;
    let kube = c.kubeconfig().display().to_string();
    let stores = stores.display().to_string();
    let state = w.path(&format!("agent-{id}-state")).display().to_string();
    let mut args = vec![
        "--kubeconfig",
        kube.as_str(),
        "--stores",
        stores.as_str(),
        "--state-dir",
        state.as_str(),
    ];
    args.extend_from_slice(extra);
    w.agent_with_env(id, &args, env)
}

/// A connection to the world's coordinator as client `client`.
pub async fn channel(w: &World, client: &str) -> anyhow::Result<Channel> {
    Ok(ferry_common::tls::connect(
        &w.url(),
        &TlsPaths::in_dir(&w.pki, &format!("client-{client}")),
        None,
        Duration::from_secs(5),
    )
    .await?)
}

pub async fn migrations(w: &World, client: &str) -> anyhow::Result<MigrationsClient<Channel>> {
    Ok(MigrationsClient::new(channel(w, client).await?))
}

pub fn request(id: &str, from: &str, to: &str) -> pb::MigrationRequest {
    pb::MigrationRequest {
        migration_id: id.into(),
        registry: REGISTRY.into(),
        source_cluster: from.into(),
        target_cluster: to.into(),
        ..Default::default()
    }
}

/// The migration, read again and again (through reconnects) until `done` says so.
pub async fn wait_until(
    w: &World,
    id: &str,
    timeout: Duration,
    what: &str,
    done: impl Fn(&pb::Migration) -> bool,
) -> anyhow::Result<pb::Migration> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = None;
    while tokio::time::Instant::now() < deadline {
        if let Ok(mut c) = migrations(w, "admin").await
            && let Ok(m) = c
                .get_migration(pb::MigrationRef {
                    migration_id: id.into(),
                })
                .await
        {
            let m = m.into_inner();
            if done(&m) {
                return Ok(m);
            }
            last = Some(m);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("{what} did not happen within {timeout:?}; last seen: {last:#?}")
}

/// The step `name` is running and has made progress (items or bytes).
pub fn under_way(name: &str) -> impl Fn(&pb::Migration) -> bool + '_ {
    move |m| {
        m.steps.iter().any(|s| {
            s.name == name
                && s.state == pb::StepState::Running as i32
                && s.progress
                    .as_ref()
                    .is_some_and(|p| p.items_done > 0 || p.bytes_done > 0)
        })
    }
}

pub fn ended(m: &pb::Migration) -> bool {
    ferry_coordinator::migrate::is_terminal(m.state)
}

/// Every namespaced item of `namespace` as `(plural.group, name)`, sorted.
pub async fn items(store: &Store, namespace: &str) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = vec![];
    for t in store.resource_types().into_iter().filter(|t| t.namespaced) {
        let Some(version) = t.versions.first() else {
            continue;
        };
        if t.plural == "pods" || t.plural == "events" {
            continue;
        }
        let gvr = Gvr::new(&t.group, version, &t.plural);
        for item in store.list(&gvr, Some(namespace), None).await? {
            let name = item["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            out.push((format!("{}.{}", t.plural, t.group), name));
        }
    }
    out.sort();
    Ok(out)
}

/// Every item of the namespace as JSON text, for looking for a domain. The
/// `status` is left out: the cluster writes it (OKD's router re-admits a
/// route under its new host), not the migration.
pub async fn namespace_text(store: &Store, namespace: &str) -> anyhow::Result<String> {
    let mut text = String::new();
    for t in store.resource_types().into_iter().filter(|t| t.namespaced) {
        let Some(version) = t.versions.first() else {
            continue;
        };
        let gvr = Gvr::new(&t.group, version, &t.plural);
        for item in store.list(&gvr, Some(namespace), None).await? {
            let mut item = item;
            if let Some(o) = item.as_object_mut() {
                o.remove("status");
            }
            // Secrets are base64: look at their decoded values too.
            if let Some(data) = item.get("data").and_then(Value::as_object).cloned()
                && t.plural == "secrets"
            {
                for v in data.values() {
                    if let Some(s) = v.as_str() {
                        text.push_str(&String::from_utf8_lossy(&base64_decode(s)));
                        text.push('\n');
                    }
                }
                item["data"] = Value::Null;
            }
            text.push_str(&item.to_string());
            text.push('\n');
        }
    }
    Ok(text)
}

fn base64_decode(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = vec![];
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes() {
        let Some(v) = ALPHABET.iter().position(|&a| a == c) else {
            continue;
        };
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// `(name, spec.replicas)` of the namespace's Deployments and StatefulSets.
pub async fn replicas(store: &Store, namespace: &str) -> anyhow::Result<Vec<(String, i64)>> {
    let mut out = vec![];
    for plural in ["deployments", "statefulsets"] {
        for item in store
            .list(&Gvr::new("apps", "v1", plural), Some(namespace), None)
            .await?
        {
            out.push((
                format!(
                    "{plural}/{}",
                    item["metadata"]["name"].as_str().unwrap_or_default()
                ),
                item["spec"]["replicas"].as_i64().unwrap_or(-1),
            ));
        }
    }
    out.sort();
    Ok(out)
}

/// Velero objects of a kind (`backups`, `restores`) on a cluster.
/// Every Deployment and StatefulSet of `namespace` is scaled to zero.
pub async fn quiesced(store: &Store, namespace: &str) -> anyhow::Result<bool> {
    Ok(replicas(store, namespace)
        .await?
        .iter()
        .all(|(_, r)| *r == 0))
}

pub async fn velero_names(store: &Store, plural: &str) -> anyhow::Result<Vec<String>> {
    let mut names: Vec<String> = store
        .list(&Gvr::new("velero.io", "v1", plural), Some("velero"), None)
        .await?
        .iter()
        .map(|o| {
            o["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    names.sort();
    Ok(names)
}

/// `(bucket, key, sha256)` of every object in the registry's nine buckets.
pub async fn bucket_digests(c: &SandboxCluster) -> anyhow::Result<Vec<(String, String, Vec<u8>)>> {
    let mut out = vec![];
    for obc in OBC_BUCKETS {
        let bucket = bucket_name(REGISTRY, obc);
        for o in c.s3().list_objects(&bucket, "").await? {
            let data = c.s3().get_object(&bucket, &o.key).await?;
            out.push((
                obc.to_string(),
                o.key,
                ring::digest::digest(&ring::digest::SHA256, &data)
                    .as_ref()
                    .to_vec(),
            ));
        }
    }
    Ok(out)
}

/// A verified migration made one Velero backup (its own) on A and one
/// restore per phase on B, and B's buckets hold what A's did before.
pub async fn made_once_and_copied(
    a: &SandboxCluster,
    b: &SandboxCluster,
    m: &pb::Migration,
    before_buckets: &[(String, String, Vec<u8>)],
) -> anyhow::Result<()> {
    assert!(m.report.as_ref().is_some_and(|r| r.verified), "{m:#?}");
    assert_eq!(
        velero_names(&a.store(), "backups").await?,
        vec![m.backup_name.clone()]
    );
    let restores = velero_names(&b.store(), "restores").await?;
    let restore_steps = m
        .steps
        .iter()
        .filter(|s| s.name.starts_with("restore-"))
        .count();
    assert_eq!(restore_steps, PHASES.len(), "{m:#?}");
    assert_eq!(restores.len(), PHASES.len(), "{restores:?}");
    assert_eq!(bucket_digests(b).await?, before_buckets);
    Ok(())
}

/// Keys under a prefix of the backup bucket.
pub async fn backup_keys(c: &SandboxCluster, prefix: &str) -> anyhow::Result<Vec<String>> {
    Ok(c.s3()
        .list_objects(c.bsl_bucket(), prefix)
        .await?
        .into_iter()
        .map(|o| o.key)
        .collect())
}

/// `realm → users` of the registry's realms present in a cluster's Keycloak,
/// read through its admin REST API with the sandbox's admin.
pub async fn realm_users(c: &SandboxCluster) -> anyhow::Result<BTreeMap<String, usize>> {
    let base = c.keycloak_url().trim_end_matches('/').to_string();
    let token: Value = http_json(
        "POST",
        &format!("{base}/realms/master/protocol/openid-connect/token"),
        None,
        Some(&format!(
            "grant_type=password&client_id=admin-cli&username={}&password={}",
            c.keycloak_admin_user(),
            c.keycloak_admin_password()
        )),
    )
    .await?;
    let token = token["access_token"]
        .as_str()
        .context("no access_token from the sandbox Keycloak")?
        .to_string();
    let mut out = BTreeMap::new();
    for suffix in [
        "admin",
        "citizen-portal",
        "external-system",
        "officer-portal",
    ] {
        let realm = format!("{REGISTRY}-{suffix}");
        let users = http_json(
            "GET",
            &format!("{base}/admin/realms/{realm}/users?max=100000"),
            Some(&token),
            None,
        )
        .await;
        if let Ok(Value::Array(users)) = users {
            out.insert(realm, users.len());
        }
    }
    Ok(out)
}

/// A tiny HTTP/1.1 client over a TCP stream (the sandbox Keycloak is plain
/// HTTP on loopback), so the tests judge Keycloak without Ferry's client.
async fn http_json(
    method: &str,
    url: &str,
    bearer: Option<&str>,
    form: Option<&str>,
) -> anyhow::Result<Value> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url
        .strip_prefix("http://")
        .context("the sandbox Keycloak speaks plain HTTP")?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut stream = tokio::net::TcpStream::connect(host).await?;
    let body = form.unwrap_or("");
    let mut head = format!(
        "{method} /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAccept: application/json\r\n"
    );
    if let Some(t) = bearer {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if form.is_some() {
        head.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    let mut raw = vec![];
    stream.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    let (headers, payload) = text
        .split_once("\r\n\r\n")
        .context("malformed HTTP response")?;
    anyhow::ensure!(
        headers.starts_with("HTTP/1.1 2"),
        "{method} {url}: {}",
        headers.lines().next().unwrap_or_default()
    );
    let payload = if headers
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(payload)
    } else {
        payload.to_string()
    };
    Ok(serde_json::from_str(&payload)?)
}

fn dechunk(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}
