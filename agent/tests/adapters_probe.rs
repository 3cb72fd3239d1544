//! The cluster probe against sandbox clusters: one with the Platform and a
//! registry (markers seeded through the sandbox's in-process store), a bare
//! one (no CRDs at all), and one with CRDs but no Platform.

use std::time::Duration;

use anyhow::Result;
use ferry_agent::platform::{self, ClusterProbe, ProbeOptions};
use ferry_sandbox::k8s::{Gvr, KubeApi, ServerHandle, Store};
use ferry_sandbox::keycloak::KeycloakServer;
use serde_json::{Value, json};

struct Cluster {
    _server: ServerHandle,
    client: kube::Client,
    store: Store,
    _dir: tempfile::TempDir,
}

/// Serves `api` and connects to it the way the agent does: a kubeconfig file.
async fn connect(api: KubeApi) -> Result<Cluster> {
    let server = api.serve("127.0.0.1:0".parse()?).await?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("kubeconfig");
    server.write_kubeconfig(&path)?;
    let client = platform::connect(Some(&path)).await?;
    Ok(Cluster {
        _server: server,
        client,
        store: api.store(),
        _dir: dir,
    })
}

async fn create(store: &Store, obj: Value) -> Result<()> {
    store.create_object(obj).await?;
    Ok(())
}

async fn namespace(store: &Store, name: &str) -> Result<()> {
    create(
        store,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
    )
    .await
}

fn codebase(namespace: &str, name: &str, branch: &str) -> Value {
    json!({
        "apiVersion": "v2.edp.epam.com/v1", "kind": "Codebase",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"defaultBranch": branch, "type": "application"}
    })
}

async fn deployment(store: &Store, name: &str, replicas: i32, ready: i32) -> Result<()> {
    create(
        store,
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": platform::CONTROL_PLANE_NAMESPACE},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}},
                             "spec": {"containers": [{"name": name, "image": name}]}}
            }
        }),
    )
    .await?;
    store
        .patch_status_merge(
            &Gvr::new("apps", "v1", "deployments"),
            Some(platform::CONTROL_PLANE_NAMESPACE),
            name,
            &json!({"status": {"replicas": replicas, "readyReplicas": ready}}),
        )
        .await?;
    Ok(())
}

/// The Platform at 1.9.7 with registry `reg` at 1.9.7, as the fixture will
/// build it.
async fn seed_platform(store: &Store) -> Result<()> {
    for ns in ["control-plane", "user-management", "velero", "reg", "reg2"] {
        namespace(store, ns).await?;
    }
    create(
        store,
        codebase("control-plane", platform::PLATFORM_CODEBASE, "1.9.7"),
    )
    .await?;
    create(store, codebase("control-plane", "reg", "1.9.7")).await?;
    // A registry whose Codebase lives in its own namespace.
    create(store, codebase("reg2", "reg2", "1.9.6")).await?;
    // Not registries: no namespace of that name.
    create(store, codebase("reg", "registry-regulations", "master")).await?;
    deployment(store, platform::GERRIT_DEPLOYMENT, 1, 1).await?;
    deployment(store, platform::NEXUS_DEPLOYMENT, 2, 1).await?;
    create(
        store,
        json!({
            "apiVersion": "route.openshift.io/v1", "kind": "Route",
            "metadata": {"name": platform::KEYCLOAK_ROUTE, "namespace": "user-management"},
            "spec": {"host": "keycloak.apps.cluster-a.example.com", "tls": {"termination": "edge"},
                     "to": {"kind": "Service", "name": "keycloak"}}
        }),
    )
    .await?;
    create(
        store,
        json!({
            "apiVersion": "velero.io/v1", "kind": "BackupStorageLocation",
            "metadata": {"name": "default", "namespace": "velero"},
            "spec": {"provider": "aws", "default": true,
                     "objectStorage": {"bucket": "velero-backups", "prefix": "openshift-backups"},
                     "config": {"region": "us-east-1", "s3ForcePathStyle": "true"}}
        }),
    )
    .await?;
    store
        .patch_status_merge(
            &Gvr::new("velero.io", "v1", "backupstoragelocations"),
            Some("velero"),
            "default",
            &json!({"status": {"phase": "Available"}}),
        )
        .await?;
    Ok(())
}

#[tokio::test]
async fn platform_cluster_facts() -> Result<()> {
    let cluster = connect(KubeApi::new()?).await?;
    seed_platform(&cluster.store).await?;
    let keycloak = KeycloakServer::start("admin", "admin-pw").await?;

    let options = ProbeOptions {
        keycloak_url: Some(keycloak.base_url().to_owned()),
        ..ProbeOptions::default()
    };
    let probe = platform::probe(&cluster.client, &options).await?;

    assert_eq!(probe.platform_version.as_deref(), Some("1.9.7"));
    let registries: Vec<(&str, Option<&str>, &str)> = probe
        .registries
        .iter()
        .map(|r| {
            (
                r.name.as_str(),
                r.version.as_deref(),
                r.codebase_namespace.as_str(),
            )
        })
        .collect();
    assert_eq!(
        registries,
        vec![
            ("reg", Some("1.9.7"), "control-plane"),
            ("reg2", Some("1.9.6"), "reg2")
        ]
    );
    assert!(probe.keycloak.present(), "{:?}", probe.keycloak);
    assert_eq!(probe.keycloak.reachable, Some(true));
    assert!(probe.gerrit.healthy());
    assert!(
        probe.nexus.present && !probe.nexus.healthy(),
        "1 of 2 replicas ready"
    );
    assert!(probe.velero.present());
    assert_eq!(probe.velero.locations.len(), 1);
    let bsl = &probe.velero.locations[0];
    assert_eq!(
        (bsl.name.as_str(), bsl.phase.as_deref()),
        ("default", Some("Available"))
    );
    assert_eq!(bsl.bucket, "velero-backups");
    assert_eq!(
        probe.target_problems(),
        vec!["central Nexus is not ready (1/2 replicas)"]
    );

    let facts = probe.to_facts();
    assert_eq!(facts.platform_version, "1.9.7");
    assert_eq!(facts.registries.len(), 2);
    assert_eq!(
        (
            facts.registries[0].name.as_str(),
            facts.registries[0].version.as_str()
        ),
        ("reg", "1.9.7")
    );

    // The facts survive serialisation (describe reports them as JSON).
    let json = serde_json::to_string(&probe)?;
    assert_eq!(serde_json::from_str::<ClusterProbe>(&json)?, probe);

    // Keycloak down: present no more.
    keycloak.set_unavailable(true);
    let down = platform::probe(&cluster.client, &options).await?;
    assert_eq!(down.keycloak.reachable, Some(false));
    assert!(!down.keycloak.present());
    Ok(())
}

#[tokio::test]
async fn keycloak_url_comes_from_its_route_when_not_configured() -> Result<()> {
    let cluster = connect(KubeApi::new()?).await?;
    seed_platform(&cluster.store).await?;
    let options = ProbeOptions {
        check_keycloak: false,
        keycloak_timeout: Duration::from_millis(200),
        ..ProbeOptions::default()
    };
    let probe = platform::probe(&cluster.client, &options).await?;
    assert_eq!(
        probe.keycloak.url.as_deref(),
        Some("https://keycloak.apps.cluster-a.example.com")
    );
    assert_eq!(probe.keycloak.reachable, None);
    assert!(probe.keycloak.present());
    Ok(())
}

#[tokio::test]
async fn bare_cluster_probes_cleanly_with_facts_absent() -> Result<()> {
    for api in [KubeApi::bare(), KubeApi::new()?] {
        let cluster = connect(api).await?;
        let probe = platform::probe(&cluster.client, &ProbeOptions::default()).await?;
        assert_eq!(probe.platform_version, None);
        assert!(probe.registries.is_empty());
        assert!(!probe.keycloak.present());
        assert_eq!(probe.keycloak.url, None);
        assert!(!probe.gerrit.present && !probe.nexus.present);
        assert!(!probe.velero.present());
        assert!(probe.velero.locations.is_empty());
        assert!(!probe.has_platform());
        assert!(!probe.target_problems().is_empty());
        let facts = probe.to_facts();
        assert_eq!(facts.platform_version, "");
        assert!(facts.registries.is_empty());
    }
    Ok(())
}
