//! Faults on demand and Velero's failure phases: a backup forced to end
//! PartiallyFailed, slow phases, a BSL whose bucket stops answering, a
//! backup naming a storage location that does not exist.

use std::time::{Duration, Instant};

use anyhow::Result;
use ferry_sandbox::cluster::{ClusterOptions, SandboxCluster};
use ferry_sandbox::fixture::{BSL_PREFIX, Seed, seed};
use ferry_sandbox::k8s::{Gvr, Store};
use ferry_sandbox::velero::VELERO_NAMESPACE;
use ferry_testkit::eventually;
use serde_json::{Value, json};

const REG: &str = "faulty";

fn gvr(resource: &str) -> Gvr {
    Gvr::new("velero.io", "v1", resource)
}

async fn phase_of(store: &Store, resource: &str, name: &str) -> Option<(String, Value)> {
    let obj = store
        .get(&gvr(resource), Some(VELERO_NAMESPACE), name)
        .await
        .ok()?;
    let phase = obj.pointer("/status/phase")?.as_str()?.to_owned();
    Some((phase, obj))
}

async fn wait_phase(store: &Store, resource: &str, name: &str, phases: &[&str]) -> Result<Value> {
    eventually(
        Duration::from_secs(20),
        &format!("{resource} {name} in {phases:?}"),
        || async {
            let (phase, obj) = phase_of(store, resource, name).await?;
            phases.contains(&phase.as_str()).then_some(obj)
        },
    )
    .await
}

async fn backup(store: &Store, name: &str, spec: Value) -> Result<()> {
    store
        .create_object(json!({"apiVersion": "velero.io/v1", "kind": "Backup",
            "metadata": {"name": name, "namespace": VELERO_NAMESPACE}, "spec": spec}))
        .await?;
    Ok(())
}

async fn seeded() -> Result<(tempfile::TempDir, SandboxCluster)> {
    let dir = tempfile::tempdir()?;
    let cluster = SandboxCluster::start(dir.path(), ClusterOptions::default()).await?;
    seed(
        &cluster,
        &Seed::platform("1.9.7").with_registry(REG, "1.9.7"),
    )
    .await?;
    Ok((dir, cluster))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_failure_switch_applies_to_the_next_backup_only() -> Result<()> {
    let (_dir, cluster) = seeded().await?;
    let store = cluster.store();
    cluster
        .velero_faults()
        .fail_next_backup("injected: pod volume backup of vault-data timed out");
    backup(&store, "b-partial", json!({"includedNamespaces": [REG]})).await?;
    let b = wait_phase(
        &store,
        "backups",
        "b-partial",
        &["Completed", "PartiallyFailed", "Failed"],
    )
    .await?;
    assert_eq!(b["status"]["phase"], "PartiallyFailed", "{b:#}");
    assert_eq!(b["status"]["errors"], 1);
    // The error is in the results file, under the registry's namespace.
    let key = format!("{BSL_PREFIX}/backups/b-partial/b-partial-results.gz");
    let gz = cluster.s3().get_object(cluster.bsl_bucket(), &key).await?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut text)?;
    assert!(
        text.contains("injected: pod volume backup") && text.contains(REG),
        "{text}"
    );
    // A PartiallyFailed backup is restorable.
    store
        .create_object(json!({"apiVersion": "velero.io/v1", "kind": "Restore",
            "metadata": {"name": "r-partial", "namespace": VELERO_NAMESPACE},
            "spec": {"backupName": "b-partial", "namespaceMapping": {REG: "copy"}}}))
        .await?;
    wait_phase(&store, "restores", "r-partial", &["Completed"]).await?;

    backup(&store, "b-next", json!({"includedNamespaces": [REG]})).await?;
    let b = wait_phase(
        &store,
        "backups",
        "b-next",
        &["Completed", "PartiallyFailed", "Failed"],
    )
    .await?;
    assert_eq!(b["status"]["phase"], "Completed");
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_phases_show_progress_in_progress() -> Result<()> {
    let (_dir, cluster) = seeded().await?;
    let store = cluster.store();
    cluster
        .velero_faults()
        .set_item_delay(Duration::from_millis(5));
    cluster
        .velero_faults()
        .set_phase_delay(Duration::from_millis(200));
    backup(&store, "b-slow", json!({"includedNamespaces": [REG]})).await?;
    let seen = wait_phase(&store, "backups", "b-slow", &["InProgress"]).await?;
    assert!(seen["status"]["startTimestamp"].is_string());
    let partway = eventually(Duration::from_secs(10), "progress partway", || async {
        let (phase, obj) = phase_of(&store, "backups", "b-slow").await?;
        let done = obj.pointer("/status/progress/itemsBackedUp")?.as_u64()?;
        let total = obj.pointer("/status/progress/totalItems")?.as_u64()?;
        (phase == "InProgress" && done > 0 && done < total).then_some((done, total))
    })
    .await?;
    println!("seen {}/{} items while InProgress", partway.0, partway.1);
    wait_phase(&store, "backups", "b-slow", &["Completed"]).await?;
    cluster.velero_faults().reset();
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bsl_follows_its_bucket_and_backups_fail_while_unavailable() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cluster = SandboxCluster::start(dir.path(), ClusterOptions::default()).await?;
    seed(&cluster, &Seed::platform("1.9.7")).await?;
    let store = cluster.store();
    let bsl = wait_phase(&store, "backupstoragelocations", "default", &["Available"]).await?;
    assert!(bsl["status"]["lastValidationTime"].is_string());

    let started = Instant::now();
    cluster.set_bsl_unavailable(true);
    let bsl = wait_phase(
        &store,
        "backupstoragelocations",
        "default",
        &["Unavailable"],
    )
    .await?;
    println!("BSL Unavailable after {:?}", started.elapsed());
    assert!(
        bsl["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("velero-backups"))
    );
    backup(&store, "b-down", json!({"includedNamespaces": ["default"]})).await?;
    let b = wait_phase(
        &store,
        "backups",
        "b-down",
        &["Completed", "Failed", "PartiallyFailed"],
    )
    .await?;
    assert_eq!(b["status"]["phase"], "Failed");
    assert!(b["status"]["failureReason"].is_string());

    cluster.set_bsl_unavailable(false);
    wait_phase(&store, "backupstoragelocations", "default", &["Available"]).await?;
    backup(&store, "b-up", json!({"includedNamespaces": ["default"]})).await?;
    wait_phase(&store, "backups", "b-up", &["Completed"]).await?;
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_location_or_backup_fails_validation() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cluster = SandboxCluster::start(dir.path(), ClusterOptions::default()).await?;
    seed(&cluster, &Seed::platform("1.9.7")).await?;
    let store = cluster.store();
    backup(&store, "b-nowhere", json!({"storageLocation": "elsewhere"})).await?;
    let b = wait_phase(
        &store,
        "backups",
        "b-nowhere",
        &["FailedValidation", "Completed"],
    )
    .await?;
    assert_eq!(b["status"]["phase"], "FailedValidation");
    assert!(
        b["status"]["validationErrors"][0]
            .as_str()
            .is_some_and(|e| e.contains("elsewhere"))
    );
    store
        .create_object(json!({"apiVersion": "velero.io/v1", "kind": "Restore",
            "metadata": {"name": "r-nothing", "namespace": VELERO_NAMESPACE},
            "spec": {"backupName": "no-such-backup"}}))
        .await?;
    let r = wait_phase(
        &store,
        "restores",
        "r-nothing",
        &["FailedValidation", "Completed"],
    )
    .await?;
    assert_eq!(r["status"]["phase"], "FailedValidation");
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_hit_by_an_api_error_is_retried() -> Result<()> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use ferry_sandbox::k8s::{K8sError, Operation, Verb};

    let dir = tempfile::tempdir()?;
    let cluster = SandboxCluster::start(dir.path(), ClusterOptions::default()).await?;
    seed(&cluster, &Seed::platform("1.9.7")).await?;
    let store = cluster.store();
    // The controller's first read of the Backup fails like a flaky API server.
    let failures = Arc::new(AtomicUsize::new(0));
    let counter = failures.clone();
    store.set_fault_hook(Some(Arc::new(move |op: &Operation<'_>| {
        let hit =
            op.verb == Verb::Get && op.gvr.resource == "backups" && op.name == Some("b-flaky");
        (hit && counter.fetch_add(1, Ordering::SeqCst) == 0).then(|| K8sError::Injected {
            code: 500,
            reason: "InternalError".into(),
            message: "injected: etcd leader changed".into(),
        })
    })));
    backup(
        &store,
        "b-flaky",
        json!({"includedNamespaces": ["default"]}),
    )
    .await?;
    // The test's own reads count too; only the first one of all fails.
    let b = wait_phase(&store, "backups", "b-flaky", &["Completed"]).await;
    store.set_fault_hook(None);
    b?;
    assert!(failures.load(Ordering::SeqCst) >= 2);
    cluster.shutdown().await;
    Ok(())
}
