//! The Velero adapter against the sandbox's own Velero controller (not a
//! stand-in): a backup of a registry namespace runs to Completed and leaves
//! Velero's layout in the bucket; a restore of it into another namespace
//! completes; the probe sees the storage location Available.

use std::time::Duration;

use anyhow::{Context, Result};
use ferry_agent::platform::{self, ProbeOptions};
use ferry_agent::velero::{self, BackupRequest, Outcome, RestoreRequest};
use ferry_sandbox::cluster::{ClusterOptions, SandboxCluster};
use ferry_sandbox::k8s::Store;
use ferry_testkit::eventually;
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);
const PREFIX: &str = "openshift-backups";

async fn seed(store: &Store, bucket: &str, s3_url: &str) -> Result<()> {
    for ns in [velero::VELERO_NAMESPACE, "reg"] {
        store
            .create_object(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
            )
            .await?;
    }
    for i in 0..3 {
        store
            .create_object(json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("cm-{i}"), "namespace": "reg", "labels": {"app": "bpms"}},
                "data": {"host": format!("bpms-{i}.apps.cluster-a.example.com")}
            }))
            .await?;
    }
    store
        .create_object(json!({
            "apiVersion": "velero.io/v1", "kind": "BackupStorageLocation",
            "metadata": {"name": "default", "namespace": velero::VELERO_NAMESPACE},
            "spec": {"provider": "aws", "default": true,
                     "objectStorage": {"bucket": bucket, "prefix": PREFIX},
                     "config": {"s3Url": s3_url, "region": "us-east-1", "s3ForcePathStyle": "true"}}
        }))
        .await?;
    Ok(())
}

#[tokio::test]
async fn backup_and_restore_run_by_the_sandbox_velero() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cluster = SandboxCluster::start(dir.path().join("a"), ClusterOptions::default()).await?;
    seed(
        &cluster.store(),
        cluster.bsl_bucket(),
        cluster.s3_endpoint(),
    )
    .await?;
    let client = platform::connect(Some(cluster.kubeconfig())).await?;

    // The controller validates the location against its bucket.
    let options = ProbeOptions {
        check_keycloak: false,
        ..ProbeOptions::default()
    };
    eventually(WAIT, "the BSL becoming Available", || async {
        let probe = platform::probe(&client, &options).await?;
        anyhow::Ok(
            probe
                .velero
                .locations
                .iter()
                .any(|l| l.phase.as_deref() == Some("Available")),
        )
    })
    .await?;

    let name = velero::backup_name("reg", "2026-11-24T06:00:00Z".parse()?);
    velero::create_backup(&client, &BackupRequest::new(&name, "reg", "default")).await?;
    let mut progress = Vec::new();
    let outcome = velero::wait_backup(&client, velero::VELERO_NAMESPACE, &name, WAIT, |p| {
        progress.push(p.clone())
    })
    .await?;
    assert!(matches!(outcome, Outcome::Completed { .. }), "{outcome:?}");
    let last = progress.last().context("progress reported")?;
    assert!(last.total > 0 && last.done == last.total, "{progress:?}");

    let keys: Vec<String> = cluster
        .s3()
        .list_objects(cluster.bsl_bucket(), &format!("{PREFIX}/backups/{name}/"))
        .await?
        .into_iter()
        .map(|o| o.key)
        .collect();
    for file in ["velero-backup.json".to_owned(), format!("{name}.tar.gz")] {
        let key = format!("{PREFIX}/backups/{name}/{file}");
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }

    let mut restore = RestoreRequest::new(&format!("{name}-copy"), &name);
    restore
        .namespace_mapping
        .insert("reg".into(), "reg-copy".into());
    velero::create_restore(&client, &restore).await?;
    let outcome = velero::wait_restore(
        &client,
        velero::VELERO_NAMESPACE,
        &restore.name,
        WAIT,
        |_| {},
    )
    .await?;
    assert!(matches!(outcome, Outcome::Completed { .. }), "{outcome:?}");
    let restored = cluster
        .store()
        .list(
            &ferry_sandbox::k8s::Gvr::core("configmaps"),
            Some("reg-copy"),
            Some("app=bpms"),
        )
        .await?;
    assert_eq!(restored.len(), 3);

    // A second, empty cluster: the backup copied into its bucket (as the
    // relay does) shows up through backup sync and restores the same items.
    let target = SandboxCluster::start(dir.path().join("b"), ClusterOptions::default()).await?;
    seed_target(&target).await?;
    for object in cluster
        .s3()
        .list_objects(cluster.bsl_bucket(), PREFIX)
        .await?
    {
        let data = cluster
            .s3()
            .get_object(cluster.bsl_bucket(), &object.key)
            .await?;
        target
            .s3()
            .put_object(target.bsl_bucket(), &object.key, data)
            .await?;
    }
    let b = platform::connect(Some(target.kubeconfig())).await?;
    let synced = velero::wait_backup_present(&b, velero::VELERO_NAMESPACE, &name, WAIT).await?;
    assert_eq!(synced.spec.included_namespaces, vec!["reg"]);
    let restore = RestoreRequest::new(&format!("{name}-all"), &name);
    velero::create_restore(&b, &restore).await?;
    let outcome =
        velero::wait_restore(&b, velero::VELERO_NAMESPACE, &restore.name, WAIT, |_| {}).await?;
    assert!(matches!(outcome, Outcome::Completed { .. }), "{outcome:?}");
    let on_target = target
        .store()
        .list(
            &ferry_sandbox::k8s::Gvr::core("configmaps"),
            Some("reg"),
            Some("app=bpms"),
        )
        .await?;
    assert_eq!(on_target.len(), 3);

    target.shutdown().await;
    cluster.shutdown().await;
    Ok(())
}

/// Only Velero's namespace and location: no registry yet.
async fn seed_target(target: &SandboxCluster) -> Result<()> {
    let store = target.store();
    store
        .create_object(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": velero::VELERO_NAMESPACE}}))
        .await?;
    store
        .create_object(json!({
            "apiVersion": "velero.io/v1", "kind": "BackupStorageLocation",
            "metadata": {"name": "default", "namespace": velero::VELERO_NAMESPACE},
            "spec": {"provider": "aws", "default": true,
                     "objectStorage": {"bucket": target.bsl_bucket(), "prefix": PREFIX},
                     "config": {"s3Url": target.s3_endpoint(), "region": "us-east-1"}}
        }))
        .await?;
    Ok(())
}

/// Every item of a namespace, as `(resource, name)`, sorted.
async fn items(store: &Store, namespace: &str) -> Result<Vec<(String, String)>> {
    let mut out = vec![];
    for t in store.resource_types().into_iter().filter(|t| t.namespaced) {
        // Velero's own records (PodVolumeBackups, …) live in `velero`, not here.
        let Some(version) = t.versions.first() else {
            continue;
        };
        let gvr = ferry_sandbox::k8s::Gvr::new(&t.group, version, &t.plural);
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

/// The sample registry the fixture seeds: backed up through the agent's
/// adapter, its objects copied to an empty Platform cluster's bucket (as the
/// relay does), restored there through the adapter: the same items, the same
/// volume contents.
#[tokio::test]
async fn the_sample_registry_backs_up_and_restores_into_an_empty_cluster() -> Result<()> {
    use ferry_sandbox::fixture::{self, BSL_PREFIX, DEFAULT_BSL, Seed};
    let dir = tempfile::tempdir()?;
    let a = SandboxCluster::start(dir.path().join("a"), ClusterOptions::default()).await?;
    let seeded = fixture::seed(
        &a,
        &Seed::platform("1.9.9").with_registry("reg-one", "1.9.9"),
    )
    .await?;
    let b = SandboxCluster::start(dir.path().join("b"), ClusterOptions::default()).await?;
    fixture::seed(&b, &Seed::platform("1.9.9")).await?;
    let (ka, kb) = (
        platform::connect(Some(a.kubeconfig())).await?,
        platform::connect(Some(b.kubeconfig())).await?,
    );

    let name = velero::backup_name("reg-one", "2026-11-24T06:30:00Z".parse()?);
    velero::create_backup(&ka, &BackupRequest::new(&name, "reg-one", DEFAULT_BSL)).await?;
    let outcome = velero::wait_backup(&ka, velero::VELERO_NAMESPACE, &name, WAIT, |_| {}).await?;
    assert!(matches!(outcome, Outcome::Completed { .. }), "{outcome:?}");

    // Velero's layout, and the file-system backup repository beside it.
    let keys: Vec<String> = a
        .s3()
        .list_objects(a.bsl_bucket(), BSL_PREFIX)
        .await?
        .into_iter()
        .map(|o| o.key)
        .collect();
    for file in [
        "velero-backup.json".to_string(),
        format!("{name}.tar.gz"),
        format!("{name}-logs.gz"),
        format!("{name}-resource-list.json.gz"),
        format!("{name}-podvolumebackups.json.gz"),
        format!("{name}-volumesnapshots.json.gz"),
        format!("{name}-results.gz"),
    ] {
        let key = format!("{BSL_PREFIX}/backups/{name}/{file}");
        assert!(keys.contains(&key), "{key} missing");
    }
    assert!(
        keys.iter()
            .any(|k| k.starts_with(&format!("{BSL_PREFIX}/kopia/reg-one/"))),
        "no volume data: {keys:?}"
    );

    for key in &keys {
        let data = a.s3().get_object(a.bsl_bucket(), key).await?;
        b.s3().put_object(b.bsl_bucket(), key, data).await?;
    }
    velero::wait_backup_present(&kb, velero::VELERO_NAMESPACE, &name, WAIT).await?;
    let restore = RestoreRequest::new(&format!("{name}-restore"), &name);
    velero::create_restore(&kb, &restore).await?;
    let outcome =
        velero::wait_restore(&kb, velero::VELERO_NAMESPACE, &restore.name, WAIT, |_| {}).await?;
    assert!(matches!(outcome, Outcome::Completed { .. }), "{outcome:?}");

    let (on_a, on_b) = (
        items(&a.store(), "reg-one").await?,
        items(&b.store(), "reg-one").await?,
    );
    assert!(
        on_a.len() >= 50,
        "the sample registry is ~50+ items: {}",
        on_a.len()
    );
    assert_eq!(on_a, on_b);
    let summary = seeded.registries.first().context("a registry was seeded")?;
    for pvc in &summary.pvcs {
        assert_eq!(
            a.volumes().digest("reg-one", pvc).await?,
            b.volumes().digest("reg-one", pvc).await?,
            "volume {pvc}"
        );
    }
    b.shutdown().await;
    a.shutdown().await;
    Ok(())
}
