//! Velero backups and restores through the sandbox's Kubernetes API.
//!
//! The sandbox has no Velero controller yet, so each test plays the
//! controller itself: a spawned task advances the object's `status` through
//! the API server (the status subresource), as Velero would.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, bail};
use ferry_agent::velero::{
    self, Backup, BackupRequest, Outcome, Progress, RestoreRequest, VeleroError,
};
use ferry_sandbox::k8s::{KubeApi, ServerHandle};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

struct Cluster {
    _server: ServerHandle,
    client: Client,
    _dir: tempfile::TempDir,
}

async fn cluster() -> Result<Cluster> {
    let api = KubeApi::new()?;
    let server = api.serve("127.0.0.1:0".parse()?).await?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("kubeconfig");
    server.write_kubeconfig(&path)?;
    let client = ferry_agent::platform::connect(Some(&path)).await?;
    let nss: Api<Namespace> = Api::all(client.clone());
    for ns in [velero::VELERO_NAMESPACE, "reg"] {
        let obj: Namespace = serde_json::from_value(json!({"metadata": {"name": ns}}))?;
        nss.create(&PostParams::default(), &obj).await?;
    }
    Ok(Cluster {
        _server: server,
        client,
        _dir: dir,
    })
}

fn velero_api(client: &Client, kind: &str, plural: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk(velero::GROUP, velero::VERSION, kind);
    Api::namespaced_with(
        client.clone(),
        velero::VELERO_NAMESPACE,
        &ApiResource::from_gvk_with_plural(&gvk, plural),
    )
}

/// Plays Velero: sets each status in turn on the object, through the API.
fn play_controller(
    api: Api<DynamicObject>,
    name: &str,
    steps: Vec<Value>,
) -> tokio::task::JoinHandle<Result<()>> {
    let name = name.to_owned();
    tokio::spawn(async move {
        for status in steps {
            tokio::time::sleep(Duration::from_millis(50)).await;
            api.patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": status})),
            )
            .await?;
        }
        Ok(())
    })
}

fn recorder() -> (Arc<Mutex<Vec<Progress>>>, impl FnMut(&Progress)) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    (seen, move |p: &Progress| {
        if let Ok(mut v) = sink.lock() {
            v.push(p.clone());
        }
    })
}

#[tokio::test]
async fn backup_is_created_once_and_watched_to_completed() -> Result<()> {
    let c = cluster().await?;
    let at: jiff::Timestamp = "2026-11-24T05:30:00Z".parse()?;
    let name = velero::backup_name("reg", at);
    assert_eq!(name, "reg-2026-11-24-05-30-00");
    let request = BackupRequest::new(&name, "reg", "default");

    let first = velero::create_backup(&c.client, &request).await?;
    // A retried step reuses the backup instead of making a second one.
    let again = velero::create_backup(&c.client, &request).await?;
    assert_eq!(first.uid(), again.uid());
    let backups: Api<Backup> = Api::namespaced(c.client.clone(), velero::VELERO_NAMESPACE);
    assert_eq!(backups.list(&Default::default()).await?.items.len(), 1);
    let stored = backups.get(&name).await?;
    assert_eq!(stored.spec.included_namespaces, vec!["reg"]);
    assert_eq!(stored.spec.default_volumes_to_fs_backup, Some(true));
    assert_eq!(stored.spec.storage_location.as_deref(), Some("default"));

    // The same name with another spec is somebody else's backup.
    let other = BackupRequest::new(&name, "other-reg", "default");
    match velero::create_backup(&c.client, &other).await {
        Err(VeleroError::SpecConflict { field, .. }) => assert_eq!(field, "includedNamespaces"),
        other => bail!("expected a spec conflict, got {other:?}"),
    }

    let controller = play_controller(
        velero_api(&c.client, "Backup", "backups"),
        &name,
        vec![
            json!({"phase": "InProgress", "progress": {"totalItems": 10, "itemsBackedUp": 0}}),
            json!({"phase": "InProgress", "progress": {"totalItems": 10, "itemsBackedUp": 5}}),
            json!({"phase": "Completed", "progress": {"totalItems": 10, "itemsBackedUp": 10}, "warnings": 1}),
        ],
    );
    let (seen, on_progress) = recorder();
    let outcome = velero::wait_backup(
        &c.client,
        velero::VELERO_NAMESPACE,
        &name,
        WAIT,
        on_progress,
    )
    .await?;
    controller.await??;
    assert_eq!(outcome, Outcome::Completed { warnings: 1 });
    let seen = seen
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    assert_eq!(seen.first().map(|p| p.phase.as_str()), Some("New"));
    let last = seen.last().cloned().unwrap_or_default();
    assert_eq!(
        (last.phase.as_str(), last.done, last.total),
        ("Completed", 10, 10)
    );
    // Every reported step is distinct; counters never go backwards.
    assert!(
        seen.windows(2)
            .all(|w| w[0] != w[1] && w[0].done <= w[1].done),
        "{seen:?}"
    );
    Ok(())
}

#[tokio::test]
async fn partially_failed_and_failed_are_distinct_outcomes() -> Result<()> {
    let c = cluster().await?;
    let api = velero_api(&c.client, "Backup", "backups");
    let cases = [
        (
            "reg-2026-01-01-00-00-01",
            json!({"phase": "PartiallyFailed", "errors": 2, "warnings": 3}),
            Outcome::PartiallyFailed {
                errors: 2,
                warnings: 3,
            },
        ),
        (
            "reg-2026-01-01-00-00-02",
            json!({"phase": "Failed", "failureReason": "bucket velero-backups not found"}),
            Outcome::Failed {
                reason: "bucket velero-backups not found".into(),
            },
        ),
        (
            "reg-2026-01-01-00-00-03",
            json!({"phase": "FailedValidation", "validationErrors": ["backup storage location 'nope' not found"]}),
            Outcome::Failed {
                reason: "failed validation: backup storage location 'nope' not found".into(),
            },
        ),
    ];
    for (name, status, want) in cases {
        velero::create_backup(&c.client, &BackupRequest::new(name, "reg", "default")).await?;
        let controller = play_controller(
            api.clone(),
            name,
            vec![json!({"phase": "InProgress"}), status],
        );
        let got =
            velero::wait_backup(&c.client, velero::VELERO_NAMESPACE, name, WAIT, |_| {}).await?;
        controller.await??;
        assert_eq!(got, want);
    }
    Ok(())
}

#[tokio::test]
async fn waiting_ends_with_a_clear_error_on_timeout_or_deletion() -> Result<()> {
    let c = cluster().await?;
    let name = "reg-2026-01-01-00-00-04";
    velero::create_backup(&c.client, &BackupRequest::new(name, "reg", "default")).await?;
    match velero::wait_backup(
        &c.client,
        velero::VELERO_NAMESPACE,
        name,
        Duration::from_millis(300),
        |_| {},
    )
    .await
    {
        Err(VeleroError::Timeout { last_phase, .. }) => assert_eq!(last_phase, "New"),
        other => bail!("expected a timeout, got {other:?}"),
    }

    let api = velero_api(&c.client, "Backup", "backups");
    let deleter = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        api.delete(name, &DeleteParams::default()).await.map(|_| ())
    });
    match velero::wait_backup(&c.client, velero::VELERO_NAMESPACE, name, WAIT, |_| {}).await {
        Err(VeleroError::Vanished { .. }) => {}
        other => bail!("expected the backup to vanish, got {other:?}"),
    }
    deleter.await??;

    match velero::wait_backup(
        &c.client,
        velero::VELERO_NAMESPACE,
        "never-made",
        WAIT,
        |_| {},
    )
    .await
    {
        Err(e @ VeleroError::Api { .. }) => assert!(e.to_string().contains("never-made"), "{e}"),
        other => bail!("expected not found, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn synced_backup_is_restored_in_phases() -> Result<()> {
    let c = cluster().await?;
    let name = "reg-2026-02-03-04-05-06";

    // Backup sync: the Backup appears some time after Ferry starts waiting.
    let backups = velero_api(&c.client, "Backup", "backups");
    let sync = tokio::spawn({
        let backups = backups.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let synced: DynamicObject = serde_json::from_value(json!({
                "apiVersion": "velero.io/v1", "kind": "Backup",
                "metadata": {"name": name, "namespace": "velero",
                             "labels": {velero::STORAGE_LOCATION_LABEL: "default"}},
                "spec": {"includedNamespaces": ["reg"], "storageLocation": "default"}
            }))?;
            backups.create(&PostParams::default(), &synced).await?;
            backups
                .patch_status(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": {"phase": "Completed"}})),
                )
                .await?;
            anyhow::Ok(())
        }
    });
    let found =
        velero::wait_backup_present(&c.client, velero::VELERO_NAMESPACE, name, WAIT).await?;
    sync.await??;
    assert_eq!(
        found
            .labels()
            .get(velero::STORAGE_LOCATION_LABEL)
            .map(String::as_str),
        Some("default")
    );

    // Missing backups time out with a clear error.
    match velero::wait_backup_present(
        &c.client,
        velero::VELERO_NAMESPACE,
        "absent",
        Duration::from_millis(300),
    )
    .await
    {
        Err(VeleroError::Timeout { what, .. }) => assert_eq!(what, "appear"),
        other => bail!("expected a timeout, got {other:?}"),
    }

    // The init phase: everything but workloads, into a renamed namespace.
    let mut init = RestoreRequest::new(&format!("{name}-init"), name);
    init.included_namespaces = vec!["reg".into()];
    init.excluded_resources = ["pods", "deployments", "statefulsets"]
        .map(String::from)
        .to_vec();
    init.namespace_mapping
        .insert("reg".into(), "reg-copy".into());
    init.existing_resource_policy = Some("none".into());
    init.restore_pvs = Some(true);
    let created = velero::create_restore(&c.client, &init).await?;
    let again = velero::create_restore(&c.client, &init).await?;
    assert_eq!(created.uid(), again.uid());
    let mut conflicting = init.clone();
    conflicting.backup_name = "another".into();
    assert!(matches!(
        velero::create_restore(&c.client, &conflicting).await,
        Err(VeleroError::SpecConflict {
            field: "backupName",
            ..
        })
    ));

    let controller = play_controller(
        velero_api(&c.client, "Restore", "restores"),
        &init.name,
        vec![
            json!({"phase": "InProgress", "progress": {"totalItems": 4, "itemsRestored": 1}}),
            json!({"phase": "PartiallyFailed", "progress": {"totalItems": 4, "itemsRestored": 4}, "errors": 1, "warnings": 2}),
        ],
    );
    let (seen, on_progress) = recorder();
    let outcome = velero::wait_restore(
        &c.client,
        velero::VELERO_NAMESPACE,
        &init.name,
        WAIT,
        on_progress,
    )
    .await?;
    controller.await??;
    assert_eq!(
        outcome,
        Outcome::PartiallyFailed {
            errors: 1,
            warnings: 2
        }
    );
    let seen = seen
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    assert!(
        seen.iter()
            .any(|p| p.phase == "InProgress" && p.done == 1 && p.total == 4),
        "{seen:?}"
    );
    Ok(())
}
