//! A Velero backup of a seeded registry produces Velero's layout in the
//! bucket; copied into a second sandbox's bucket it is synced into a Backup
//! object there and restores the same items, volume data included.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ferry_sandbox::cluster::{ClusterOptions, SandboxCluster};
use ferry_sandbox::fixture::{BSL_PREFIX, Seed, seed};
use ferry_sandbox::k8s::{Gvr, Store};
use ferry_sandbox::velero::{VELERO_NAMESPACE, backup_keys, restore_keys, tarball_entry_paths};
use ferry_testkit::eventually;
use serde_json::{Value, json};

const REG: &str = "abc-01";

fn backups() -> Gvr {
    Gvr::new("velero.io", "v1", "backups")
}

fn restores() -> Gvr {
    Gvr::new("velero.io", "v1", "restores")
}

/// Waits for the object to reach one of `phases`; returns it.
async fn wait_phase(store: &Store, gvr: &Gvr, name: &str, phases: &[&str]) -> Result<Value> {
    eventually(
        Duration::from_secs(20),
        &format!("{} {name} to reach {phases:?}", gvr.resource),
        || async {
            let obj = store.get(gvr, Some(VELERO_NAMESPACE), name).await.ok()?;
            let phase = obj.pointer("/status/phase")?.as_str()?.to_owned();
            phases.contains(&phase.as_str()).then_some(obj)
        },
    )
    .await
}

pub async fn create_backup(store: &Store, name: &str, spec: Value) -> Result<()> {
    store
        .create_object(json!({
            "apiVersion": "velero.io/v1", "kind": "Backup",
            "metadata": {"name": name, "namespace": VELERO_NAMESPACE},
            "spec": spec,
        }))
        .await?;
    Ok(())
}

async fn create_restore(store: &Store, name: &str, spec: Value) -> Result<()> {
    store
        .create_object(json!({
            "apiVersion": "velero.io/v1", "kind": "Restore",
            "metadata": {"name": name, "namespace": VELERO_NAMESPACE},
            "spec": spec,
        }))
        .await?;
    Ok(())
}

/// Resource plural → names, for every namespaced kind in `ns`.
async fn inventory(store: &Store, ns: &str) -> Result<BTreeMap<String, BTreeSet<String>>> {
    let mut out = BTreeMap::new();
    for rt in store
        .resource_types()
        .into_iter()
        .filter(|rt| rt.namespaced)
    {
        let gvr = Gvr::new(&rt.group, &rt.versions[0], &rt.plural);
        let names: BTreeSet<String> = store
            .list(&gvr, Some(ns), None)
            .await?
            .iter()
            .filter_map(|o| o.pointer("/metadata/name")?.as_str().map(str::to_owned))
            .collect();
        if !names.is_empty() {
            out.insert(format!("{}.{}", rt.plural, rt.group), names);
        }
    }
    Ok(out)
}

async fn copy_prefix(from: &SandboxCluster, to: &SandboxCluster, prefix: &str) -> Result<usize> {
    let objects = from.s3().list_objects(from.bsl_bucket(), prefix).await?;
    for o in &objects {
        let data = from.s3().get_object(from.bsl_bucket(), &o.key).await?;
        to.s3().put_object(to.bsl_bucket(), &o.key, data).await?;
    }
    Ok(objects.len())
}

fn gunzip(data: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data).read_to_end(&mut out)?;
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_layout_then_restore_into_second_sandbox() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let source = SandboxCluster::start(dir.path().join("a"), ClusterOptions::default()).await?;
    let target = SandboxCluster::start(dir.path().join("b"), ClusterOptions::default()).await?;
    seed(
        &source,
        &Seed::platform("1.9.7").with_registry(REG, "1.9.7"),
    )
    .await?;
    seed(&target, &Seed::platform("1.9.7")).await?;
    let src = source.store();

    let name = format!("{REG}-2026-11-24-06-00-00");
    let started = Instant::now();
    create_backup(
        &src,
        &name,
        json!({
            "includedNamespaces": [REG], "storageLocation": "default",
            "defaultVolumesToFsBackup": true, "ttl": "720h0m0s",
        }),
    )
    .await?;
    let backup = wait_phase(
        &src,
        &backups(),
        &name,
        &["Completed", "PartiallyFailed", "Failed", "FailedValidation"],
    )
    .await?;
    println!("backup finished in {:?}", started.elapsed());
    assert_eq!(backup["status"]["phase"], "Completed", "{backup:#}");
    let total = backup["status"]["progress"]["totalItems"]
        .as_u64()
        .context("totalItems")?;
    assert_eq!(
        backup["status"]["progress"]["itemsBackedUp"].as_u64(),
        Some(total)
    );
    assert!(total > 50, "only {total} items backed up");
    assert!(
        backup["status"]["startTimestamp"].is_string()
            && backup["status"]["completionTimestamp"].is_string()
    );
    assert_eq!(
        backup["metadata"]["labels"]["velero.io/storage-location"],
        "default"
    );

    // The layout.
    let dir_prefix = format!("{BSL_PREFIX}/backups/{name}/");
    let keys: BTreeSet<String> = source
        .s3()
        .list_objects(source.bsl_bucket(), &dir_prefix)
        .await?
        .into_iter()
        .map(|o| o.key)
        .collect();
    for file in backup_keys(&name) {
        assert!(
            keys.contains(&format!("{dir_prefix}{file}")),
            "missing {file} in {keys:?}"
        );
    }
    let tar = source
        .s3()
        .get_object(source.bsl_bucket(), &format!("{dir_prefix}{name}.tar.gz"))
        .await?;
    let entries: BTreeSet<String> = tarball_entry_paths(&tar)?.into_iter().collect();
    for entry in [
        "metadata/version".to_owned(),
        format!("resources/configmaps/namespaces/{REG}/registry-environment.json"),
        format!(
            "resources/configmaps/v1-preferredversion/namespaces/{REG}/registry-environment.json"
        ),
        format!("resources/deployments.apps/namespaces/{REG}/bpms.json"),
        format!("resources/statefulsets.apps/v1-preferredversion/namespaces/{REG}/vault.json"),
        format!(
            "resources/postgresclusters.postgres-operator.crunchydata.com/namespaces/{REG}/operational.json"
        ),
        format!("resources/codebases.v2.edp.epam.com/namespaces/{REG}/{REG}.json"),
        format!("resources/namespaces/cluster/{REG}.json"),
    ] {
        assert!(entries.contains(&entry), "tarball lacks {entry}");
    }
    assert!(
        !entries
            .iter()
            .any(|e| e.contains("/namespaces/control-plane/")),
        "other namespaces leaked in"
    );
    let stored: Value = serde_json::from_slice(
        &source
            .s3()
            .get_object(
                source.bsl_bucket(),
                &format!("{dir_prefix}velero-backup.json"),
            )
            .await?,
    )?;
    assert_eq!(stored["status"]["phase"], "Completed");
    let pvbs: Vec<Value> = serde_json::from_slice(&gunzip(
        &source
            .s3()
            .get_object(
                source.bsl_bucket(),
                &format!("{dir_prefix}{name}-podvolumebackups.json.gz"),
            )
            .await?,
    )?)?;
    let source_inventory = inventory(&src, REG).await?;
    let pvc_count = source_inventory["persistentvolumeclaims."].len();
    assert_eq!(pvbs.len(), pvc_count);
    assert!(
        pvbs.iter()
            .all(|p| p["status"]["phase"] == "Completed" && p["spec"]["uploaderType"] == "kopia")
    );
    let repo = source
        .s3()
        .list_objects(source.bsl_bucket(), &format!("{BSL_PREFIX}/kopia/{REG}/"))
        .await?;
    assert!(repo.iter().any(|o| o.key.ends_with("kopia.repository")));
    assert!(repo.iter().any(|o| o.key.contains("/snapshots/")));
    // Items are stored without what the server owns.
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&tar[..]));
    for entry in archive.entries()? {
        let mut entry = entry?;
        if entry.path()?.to_string_lossy().ends_with("/bpms.json") {
            let mut text = String::new();
            entry.read_to_string(&mut text)?;
            let item: Value = serde_json::from_str(&text)?;
            for field in [
                "uid",
                "resourceVersion",
                "creationTimestamp",
                "managedFields",
            ] {
                assert!(
                    item["metadata"].get(field).is_none(),
                    "{field} kept: {item}"
                );
            }
        }
    }

    // Relay by hand into the second sandbox; backup sync makes the Backup.
    let copied = copy_prefix(&source, &target, &dir_prefix).await?
        + copy_prefix(&source, &target, &format!("{BSL_PREFIX}/kopia/")).await?;
    println!("copied {copied} objects");
    let tgt = target.store();
    let synced = wait_phase(&tgt, &backups(), &name, &["Completed"]).await?;
    assert_eq!(
        synced["metadata"]["labels"]["velero.io/storage-location"],
        "default"
    );

    let started = Instant::now();
    create_restore(
        &tgt,
        &format!("{name}-all"),
        json!({"backupName": name, "includedNamespaces": [REG]}),
    )
    .await?;
    let restore = wait_phase(
        &tgt,
        &restores(),
        &format!("{name}-all"),
        &["Completed", "PartiallyFailed", "Failed", "FailedValidation"],
    )
    .await?;
    println!("restore finished in {:?}", started.elapsed());
    assert_eq!(restore["status"]["phase"], "Completed", "{restore:#}");
    assert_eq!(
        restore["status"]["progress"]["itemsRestored"],
        restore["status"]["progress"]["totalItems"]
    );
    assert_eq!(inventory(&tgt, REG).await?, source_inventory);
    for pvc in &source_inventory["persistentvolumeclaims."] {
        assert_eq!(
            target.volumes().digest(REG, pvc).await?,
            source.volumes().digest(REG, pvc).await?,
            "volume of {pvc} differs"
        );
        assert!(target.volumes().size(REG, pvc).await? > 0);
    }
    // Restored workloads report ready, and carry Velero's labels.
    let bpms = tgt
        .get(&Gvr::new("apps", "v1", "deployments"), Some(REG), "bpms")
        .await?;
    assert_eq!(bpms["status"]["readyReplicas"], 1);
    assert_eq!(
        bpms["metadata"]["labels"]["velero.io/restore-name"],
        format!("{name}-all")
    );
    for file in restore_keys(&format!("{name}-all")) {
        let key = format!("{BSL_PREFIX}/restores/{name}-all/{file}");
        target
            .s3()
            .get_object(target.bsl_bucket(), &key)
            .await
            .with_context(|| key.clone())?;
    }

    // Restoring again warns for what exists, and creates nothing new.
    create_restore(
        &tgt,
        &format!("{name}-again"),
        json!({"backupName": name, "includedNamespaces": [REG],
        "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "vault"}}}),
    )
    .await?;
    let again = wait_phase(
        &tgt,
        &restores(),
        &format!("{name}-again"),
        &["Completed", "PartiallyFailed"],
    )
    .await?;
    assert_eq!(again["status"]["phase"], "Completed");
    let vault_items = again["status"]["progress"]["totalItems"]
        .as_u64()
        .context("totalItems")?;
    // vault: its statefulset, service, PVC and root-token secret.
    assert_eq!(vault_items, 4, "{again:#}");
    assert_eq!(again["status"]["warnings"].as_u64(), Some(vault_items));

    source.shutdown().await;
    target.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_with_namespace_mapping_and_phases() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cluster = SandboxCluster::start(dir.path(), ClusterOptions::default()).await?;
    seed(
        &cluster,
        &Seed::platform("1.9.7").with_registry(REG, "1.9.7"),
    )
    .await?;
    let store = cluster.store();
    create_backup(
        &store,
        "b1",
        json!({"includedNamespaces": [REG], "defaultVolumesToFsBackup": true}),
    )
    .await?;
    wait_phase(&store, &backups(), "b1", &["Completed"]).await?;

    // The Platform's order: init without workloads, then by label.
    let mapping = json!({REG: "abc-02"});
    create_restore(&store, "r-init", json!({"backupName": "b1", "namespaceMapping": mapping,
        "excludedResources": ["pods", "deployments", "statefulsets", "objectbucketclaims", "kafkas", "postgresclusters"]})).await?;
    let init = wait_phase(
        &store,
        &restores(),
        "r-init",
        &["Completed", "PartiallyFailed", "Failed"],
    )
    .await?;
    assert_eq!(init["status"]["phase"], "Completed", "{init:#}");
    let deployments = Gvr::new("apps", "v1", "deployments");
    assert!(
        store
            .list(&deployments, Some("abc-02"), None)
            .await?
            .is_empty()
    );
    assert!(
        !store
            .list(&Gvr::core("configmaps"), Some("abc-02"), None)
            .await?
            .is_empty()
    );
    let sel = |app: &str| json!({"matchLabels": {"app.kubernetes.io/name": app}});
    create_restore(
        &store,
        "r-vault",
        json!({"backupName": "b1", "namespaceMapping": mapping,
        "labelSelector": sel("vault"), "excludedResources": ["pods"]}),
    )
    .await?;
    wait_phase(&store, &restores(), "r-vault", &["Completed"]).await?;
    store
        .get(
            &Gvr::new("apps", "v1", "statefulsets"),
            Some("abc-02"),
            "vault",
        )
        .await?;
    assert!(
        store
            .get(&deployments, Some("abc-02"), "bpms")
            .await
            .is_err()
    );
    create_restore(&store, "r-rest", json!({"backupName": "b1", "namespaceMapping": mapping, "excludedResources": ["pods", "routes"]})).await?;
    wait_phase(&store, &restores(), "r-rest", &["Completed"]).await?;
    store.get(&deployments, Some("abc-02"), "bpms").await?;
    // Routes came with the init phase (only workloads wait for theirs).
    assert_eq!(
        inventory(&store, "abc-02").await?,
        inventory(&store, REG).await?
    );
    assert_eq!(
        cluster.volumes().digest("abc-02", "vault-data").await?,
        cluster.volumes().digest(REG, "vault-data").await?
    );
    // The source namespace is untouched.
    let original = store.get(&deployments, Some(REG), "bpms").await?;
    assert!(
        original["metadata"]["labels"]
            .get("velero.io/restore-name")
            .is_none()
    );
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_filters_and_existing_resource_policy() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cluster = SandboxCluster::start(dir.path(), ClusterOptions::default()).await?;
    seed(
        &cluster,
        &Seed::platform("1.9.7").with_registry(REG, "1.9.7"),
    )
    .await?;
    let store = cluster.store();
    // Only configmaps and secrets of the registry's postgres, not the
    // control plane's.
    create_backup(&store, "b-filtered", json!({
        "includedNamespaces": ["*"], "excludedNamespaces": ["control-plane", "velero", "user-management"],
        "includedResources": ["configmaps", "secret"],
        "labelSelector": {"matchExpressions": [{"key": "app.kubernetes.io/name", "operator": "In", "values": ["postgres", "bpms"]}]},
    }))
    .await?;
    let b = wait_phase(
        &store,
        &backups(),
        "b-filtered",
        &["Completed", "PartiallyFailed", "Failed"],
    )
    .await?;
    assert_eq!(b["status"]["phase"], "Completed");
    let tar = cluster
        .s3()
        .get_object(
            cluster.bsl_bucket(),
            &format!("{BSL_PREFIX}/backups/b-filtered/b-filtered.tar.gz"),
        )
        .await?;
    let items: BTreeSet<String> = tarball_entry_paths(&tar)?
        .into_iter()
        .filter(|p| p.starts_with("resources/") && !p.contains("preferredversion"))
        .collect();
    let want: BTreeSet<String> = [
        "configmaps/namespaces/abc-01/bpms-config",
        "secrets/namespaces/abc-01/analytical-pguser-postgres",
        "secrets/namespaces/abc-01/analytical-pguser-registry",
        "secrets/namespaces/abc-01/operational-pguser-postgres",
        "secrets/namespaces/abc-01/operational-pguser-registry",
    ]
    .iter()
    .map(|p| format!("resources/{p}.json"))
    .collect();
    assert_eq!(items, want);
    assert_eq!(b["status"]["progress"]["totalItems"], 5);

    // existingResourcePolicy update overwrites what differs; none warns.
    let cms = Gvr::core("configmaps");
    store
        .patch_merge(
            &cms,
            Some(REG),
            "bpms-config",
            &json!({"data": {"application.yml": "changed"}}),
        )
        .await?;
    create_restore(
        &store,
        "r-keep",
        json!({"backupName": "b-filtered", "includedResources": ["configmaps"]}),
    )
    .await?;
    let keep = wait_phase(
        &store,
        &restores(),
        "r-keep",
        &["Completed", "PartiallyFailed"],
    )
    .await?;
    assert_eq!(keep["status"]["warnings"], 1);
    let cm = store.get(&cms, Some(REG), "bpms-config").await?;
    assert_eq!(cm["data"]["application.yml"], "changed");
    create_restore(
        &store,
        "r-update",
        json!({"backupName": "b-filtered", "includedResources": ["configmaps"],
        "existingResourcePolicy": "update"}),
    )
    .await?;
    wait_phase(&store, &restores(), "r-update", &["Completed"]).await?;
    let cm = store.get(&cms, Some(REG), "bpms-config").await?;
    assert_ne!(cm["data"]["application.yml"], "changed");
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_chunk_volumes_round_trip_and_dedupe() -> Result<()> {
    use ferry_sandbox::fixture::{Registry, Sizes};
    let dir = tempfile::tempdir()?;
    let cluster = SandboxCluster::start(dir.path(), ClusterOptions::default()).await?;
    let sizes = Sizes {
        objects_per_bucket: 1,
        bytes_per_object: 16,
        pvc_bytes: (4 << 20) + 123,
        users_per_realm: 1,
    };
    let registry = Registry {
        sizes,
        ..Registry::new(REG, "1.9.7")
    };
    seed(
        &cluster,
        &Seed::platform("1.9.7").with_registry_sized(registry),
    )
    .await?;
    let store = cluster.store();
    let started = Instant::now();
    create_backup(
        &store,
        "big-1",
        json!({"includedNamespaces": [REG], "defaultVolumesToFsBackup": true}),
    )
    .await?;
    wait_phase(&store, &backups(), "big-1", &["Completed"]).await?;
    println!("backup of 9 volumes x 4 MiB in {:?}", started.elapsed());
    let repo = format!("{BSL_PREFIX}/kopia/{REG}/data/");
    let chunks = cluster
        .s3()
        .list_objects(cluster.bsl_bucket(), &repo)
        .await?
        .len();
    // A second backup of unchanged volumes stores no new chunk.
    create_backup(
        &store,
        "big-2",
        json!({"includedNamespaces": [REG], "defaultVolumesToFsBackup": true}),
    )
    .await?;
    wait_phase(&store, &backups(), "big-2", &["Completed"]).await?;
    assert_eq!(
        cluster
            .s3()
            .list_objects(cluster.bsl_bucket(), &repo)
            .await?
            .len(),
        chunks
    );

    let started = Instant::now();
    create_restore(
        &store,
        "big-r",
        json!({"backupName": "big-2", "namespaceMapping": {REG: "big-copy"}}),
    )
    .await?;
    wait_phase(&store, &restores(), "big-r", &["Completed"]).await?;
    println!("restore of 9 volumes x 4 MiB in {:?}", started.elapsed());
    for pvc in ["vault-data", "operational-instance1-pgdata"] {
        assert_eq!(
            cluster.volumes().digest("big-copy", pvc).await?,
            cluster.volumes().digest(REG, pvc).await?
        );
        assert_eq!(
            cluster.volumes().size("big-copy", pvc).await?,
            cluster.volumes().size(REG, pvc).await?
        );
    }
    cluster.shutdown().await;
    Ok(())
}
