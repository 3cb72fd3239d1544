//! The migration steps against sandbox clusters, each run through the
//! agent's command entry point (`exec::execute`), as the coordinator would
//! have it run: preflight on good and bad pairs; then a whole migration of
//! `reg-one` from cluster A (apps.a.example.com) to cluster B
//! (apps.b.example.com), with the test standing in for the relay (copying
//! the BSL, OBC and identity objects A → B); then rollback on B.

#[macro_use]
mod steps;

use std::collections::BTreeSet;

use anyhow::{Context, Result};
use ferry_agent::config::VolumeReader;
use ferry_common::pb::volume_inventory::Measure;
use ferry_sandbox::k8s::Gvr;
use ferry_testkit::eventually;
use steps::*;

#[tokio::test]
async fn preflight_names_what_is_wrong() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (a, b, bare) = tokio::try_join!(
        side(dir.path(), "a", source_seed()),
        side(dir.path(), "b", target_seed()),
        side(dir.path(), "c", Seed::bare()),
    )?;

    let src = preflight(&a, ClusterRole::Source).await?;
    assert_eq!(failed(&src), BTreeSet::new(), "{src:#?}");
    for name in [
        "platform-present",
        "velero-present",
        "bsl-available",
        "apps-domain",
        "registry-present",
    ] {
        assert!(names(&src).contains(name), "{name} missing: {src:#?}");
    }
    assert!(src.checks.iter().all(|c| c.cluster_id == "a"));
    assert_eq!(src.platform_version, VERSION);
    assert_eq!(src.registry_version, VERSION);
    assert_eq!(src.apps_domain, A_DOMAIN);
    // Nine 1Gi claims and nine buckets of three 1 KiB objects.
    assert_eq!(src.required_bytes, 9 * (1 << 30) + 9 * 3 * 1024);

    let tgt = preflight(&b, ClusterRole::Target).await?;
    assert_eq!(failed(&tgt), BTreeSet::new(), "{tgt:#?}");
    for name in [
        "keycloak-answering",
        "gerrit-present",
        "nexus-present",
        "no-namespace",
        "no-gerrit-project",
        "no-backup-objects",
    ] {
        assert!(names(&tgt).contains(name), "{name} missing: {tgt:#?}");
    }
    assert_eq!(tgt.apps_domain, B_DOMAIN);
    assert_eq!(tgt.capacity_bytes, CAPACITY);
    assert_eq!(tgt.registry_version, "");

    let on_bare = preflight(&bare, ClusterRole::Target).await?;
    let expected: BTreeSet<&str> = BARE_TARGET_FAILURES.into();
    assert_eq!(failed(&on_bare), expected, "{on_bare:#?}");
    assert!(on_bare.checks.iter().all(|c| !c.reason.is_empty()));

    let has_registry = preflight(&a, ClusterRole::Target).await?;
    assert_eq!(
        failed(&has_registry),
        ["no-gerrit-project", "no-namespace"].into(),
        "{has_registry:#?}"
    );

    let leftover = format!("{BSL_PREFIX}/kopia/{REG}/repo/config");
    b.cluster
        .s3()
        .put_object(b.cluster.bsl_bucket(), &leftover, b"x".to_vec())
        .await?;
    let with_leftovers = preflight(&b, ClusterRole::Target).await?;
    assert_eq!(failed(&with_leftovers), ["no-backup-objects"].into());
    let reason = with_leftovers
        .checks
        .iter()
        .find(|c| c.name == "no-backup-objects")
        .map(|c| c.reason.clone())
        .unwrap_or_default();
    assert!(reason.contains(&leftover), "{reason}");

    for s in [a, b, bare] {
        s.cluster.shutdown().await;
    }
    Ok(())
}

#[tokio::test]
async fn a_registry_moves_step_by_step_and_rolls_back() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (mut a, mut b) = tokio::try_join!(
        side(dir.path(), "a", source_seed()),
        side(dir.path(), "b", target_seed()),
    )?;

    // Quiesce records the replicas, then zero; a repeat changes nothing.
    let q = quiesce(&a, false).await?;
    assert_eq!((q.workloads, q.changed), (24, 24));
    let quiet = workloads(&a).await?;
    assert!(
        quiet
            .iter()
            .all(|(_, r, rec)| *r == 0 && rec.as_deref() == Some("1")),
        "{quiet:?}"
    );
    let again = quiesce(&a, false).await?;
    assert_eq!((again.workloads, again.changed), (24, 0));
    assert_eq!(workloads(&a).await?, quiet);
    let source = inventory(&a).await?;
    assert_eq!(source.workloads, 24);
    assert!(
        source.items.len() > 10 && source.items.get("configmaps").is_some_and(|n| *n > 0),
        "{:?}",
        source.items
    );
    assert!(!source.items.contains_key("pods"));
    assert_eq!(source.stores.len(), 9);
    assert!(
        source
            .stores
            .iter()
            .all(|s| s.objects == 3 && s.digest.len() == 64)
    );
    assert_eq!(source.realms.len(), 4);
    assert!(source.realms.iter().all(|r| r.users == 4));
    assert_eq!(source.apps_domain_seen, A_DOMAIN);

    // Backup, with progress.
    drain(&mut a.progress);
    let backup = expect!(
        step(
            &a,
            Kind::Backup(pb::BackupStep {
                backup_name: BACKUP.into(),
                backup_location: DEFAULT_BSL.into(),
                allow_warnings: false,
            })
        )
        .await?,
        Backup
    );
    assert_eq!(backup.phase, "Completed");
    assert!(backup.items > 50, "{backup:?}");
    let progress = drain(&mut a.progress);
    let last = progress.last().context("backup progress reported")?;
    assert!(
        last.message.contains(BACKUP) && last.total > 0 && last.done == last.total,
        "{progress:?}"
    );
    // A repeat finds the same backup.
    let repeat = expect!(
        step(
            &a,
            Kind::Backup(pb::BackupStep {
                backup_name: BACKUP.into(),
                backup_location: DEFAULT_BSL.into(),
                allow_warnings: false,
            })
        )
        .await?,
        Backup
    );
    assert_eq!(repeat.phase, "Completed");

    // Boxed: keeps the test's own future (polled on its thread's stack) small.
    Box::pin(volumes_measured_both_ways(&mut a)).await?;

    let exported = expect!(
        step(
            &a,
            Kind::ExportIdentity(pb::ExportIdentityStep {
                store: "backups".into(),
                prefix: IDENTITY_PREFIX.into(),
            })
        )
        .await?,
        Identity
    );
    assert_eq!(exported.realms.len(), 4);

    // The relay's part: the backup, the identity export and the buckets.
    let (sa, sb) = (a.cluster.s3(), b.cluster.s3());
    assert!(
        copy(
            sa,
            a.cluster.bsl_bucket(),
            sb,
            b.cluster.bsl_bucket(),
            &format!("{BSL_PREFIX}/")
        )
        .await?
            > 0
    );
    assert_eq!(
        copy(
            sa,
            a.cluster.bsl_bucket(),
            sb,
            b.cluster.bsl_bucket(),
            "ferry/"
        )
        .await?,
        4
    );
    for obc in OBC_BUCKETS {
        let bucket = bucket_name(REG, obc);
        sb.create_bucket(&bucket).await?;
        copy(sa, &bucket, sb, &bucket, "").await?;
    }

    // Restore in phases: everything but workloads, then by label, then the rest.
    let init = restore(&b, "init", |r| {
        r.excluded_resources = [
            "pods",
            "deployments",
            "statefulsets",
            "objectbucketclaims",
            "kafkas",
            "postgresclusters",
        ]
        .map(String::from)
        .to_vec();
    })
    .await?;
    assert_eq!(init.phase, "Completed");
    assert!(init.items > 0);
    let vault = restore(&b, "vault", |r| {
        r.label_key = "app.kubernetes.io/name".into();
        r.label_values = vec!["vault".into()];
    })
    .await?;
    assert_eq!(vault.phase, "Completed");
    let rest = restore(&b, "rest", |r| {
        r.excluded_resources = vec!["pods".into(), "routes".into()];
    })
    .await?;
    assert_eq!(rest.phase, "Completed");
    assert!(
        drain(&mut b.progress)
            .iter()
            .any(|p| p.message.contains("restore"))
    );

    let imported = expect!(
        step(
            &b,
            Kind::ImportIdentity(pb::ImportIdentityStep {
                store: "backups".into(),
                prefix: IDENTITY_PREFIX.into(),
            })
        )
        .await?,
        Identity
    );
    assert!(
        imported
            .realms
            .iter()
            .all(|r| r.created == 4 && r.skipped == 0),
        "{imported:?}"
    );
    let reimported = expect!(
        step(
            &b,
            Kind::ImportIdentity(pb::ImportIdentityStep {
                store: "backups".into(),
                prefix: IDENTITY_PREFIX.into(),
            })
        )
        .await?,
        Identity
    );
    assert!(
        reimported
            .realms
            .iter()
            .all(|r| r.created == 0 && r.skipped == 4),
        "{reimported:?}"
    );

    // Reconfigure: B's domain everywhere, passwords reset, workloads up.
    assert!(!mentions(&b, A_DOMAIN).await?.is_empty());
    let reconfigure = pb::ReconfigureStep {
        from_apps_domain: A_DOMAIN.into(),
        to_apps_domain: B_DOMAIN.into(),
    };
    let r = expect!(
        step(&b, Kind::Reconfigure(reconfigure.clone())).await?,
        Reconfigure
    );
    assert!(
        r.rewritten > 20 && r.changed.len() == r.rewritten as usize,
        "{r:?}"
    );
    assert!(
        r.changed
            .contains(&"configmap/registry-environment".to_string()),
        "{r:?}"
    );
    assert!(
        r.changed
            .contains(&"keycloakrealm/reg-one-admin".to_string()),
        "{r:?}"
    );
    assert_eq!(r.allowlists, 1);
    assert_eq!(r.passwords_reset, 4);
    assert!(r.keycloak_operator_restarted);
    assert_eq!(r.workloads_scaled, 24);
    assert_eq!(mentions(&b, A_DOMAIN).await?, Vec::<String>::new());
    assert!(mentions(&b, B_DOMAIN).await?.len() >= r.rewritten as usize);
    let secrets: Api<Secret> = Api::namespaced(client(&b).await?, REG);
    for s in secrets.list(&Default::default()).await? {
        if s.name_any().contains("-pguser-") {
            assert!(
                !s.data.as_ref().is_some_and(|d| d.contains_key("verifier")),
                "{}",
                s.name_any()
            );
            assert_eq!(
                s.annotations()
                    .get(PASSWORD_RESET_ANNOTATION)
                    .map(String::as_str),
                Some(MIGRATION)
            );
        }
    }
    let r2 = expect!(step(&b, Kind::Reconfigure(reconfigure)).await?, Reconfigure);
    assert_eq!(
        (r2.rewritten, r2.workloads_scaled, r2.passwords_reset),
        (0, 0, 4),
        "{r2:?}"
    );
    assert!(
        workloads(&b)
            .await?
            .iter()
            .all(|(_, r, rec)| *r == 1 && rec.is_none())
    );

    eventually(WAIT, "every workload on B ready", || async {
        let inv = inventory(&b).await?;
        anyhow::Ok(inv.workloads == 24 && inv.workloads_ready == 24 && inv.not_ready.is_empty())
    })
    .await?;
    let target = inventory(&b).await?;
    assert_eq!(target.items, source.items);
    assert_eq!(target.stores, source.stores);
    assert_eq!(target.realms, source.realms);
    assert_eq!(target.apps_domain_seen, B_DOMAIN);

    // Rollback. Cleanup refuses the source's namespace: no restore made it.
    let restores: Vec<String> = ["init", "vault", "rest"]
        .map(|p| format!("{BACKUP}-{p}"))
        .to_vec();
    let refused = step(&a, Kind::Cleanup(cleanup_step(&restores))).await;
    assert!(
        refused
            .as_ref()
            .err()
            .is_some_and(|e| e.to_string().contains("refuses")),
        "{refused:?}"
    );
    assert_eq!(
        a.cluster
            .keycloak()
            .realm_names()
            .iter()
            .filter(|r| r.starts_with(REG))
            .count(),
        4
    );

    let c = expect!(
        step(&b, Kind::Cleanup(cleanup_step(&restores))).await?,
        Cleanup
    );
    assert!(c.namespace_deleted, "{c:?}");
    assert_eq!(c.realms_deleted, 4);
    assert!(c.objects_deleted > 27, "{c:?}");
    assert_eq!(c.velero_deleted, 4);
    let store = b.cluster.store();
    assert!(
        store
            .get(&ferry_sandbox::k8s::Gvr::core("namespaces"), None, REG)
            .await
            .is_err()
    );
    for t in store.resource_types().into_iter().filter(|t| t.namespaced) {
        let Some(version) = t.versions.first() else {
            continue;
        };
        let gvr = ferry_sandbox::k8s::Gvr::new(&t.group, version, &t.plural);
        assert!(
            store.list(&gvr, Some(REG), None).await?.is_empty(),
            "{} left",
            t.plural
        );
    }
    assert!(
        !b.cluster
            .keycloak()
            .realm_names()
            .iter()
            .any(|r| r.starts_with(REG))
    );
    let left: Vec<String> = sb
        .list_objects(b.cluster.bsl_bucket(), "")
        .await?
        .into_iter()
        .map(|o| o.key)
        .filter(|k| k.contains(REG) || k.starts_with("ferry/"))
        .collect();
    assert_eq!(left, Vec::<String>::new());
    for obc in OBC_BUCKETS {
        assert!(
            sb.list_objects(&bucket_name(REG, obc), "")
                .await?
                .is_empty()
        );
    }
    let again = expect!(
        step(&b, Kind::Cleanup(cleanup_step(&restores))).await?,
        Cleanup
    );
    assert_eq!(again, pb::CleanupReport::default());

    // The source comes back up.
    let undo = quiesce(&a, true).await?;
    assert_eq!((undo.workloads, undo.changed), (24, 24));
    assert!(
        workloads(&a)
            .await?
            .iter()
            .all(|(_, r, rec)| *r == 1 && rec.is_none())
    );
    assert_eq!(quiesce(&a, true).await?.changed, 0);
    eventually(WAIT, "every workload on A ready", || async {
        let inv = inventory(&a).await?;
        anyhow::Ok(inv.workloads_ready == 24)
    })
    .await?;

    b.cluster.shutdown().await;
    a.cluster.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn backups_pass_partial_failures_only_when_allowed() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let a = side(dir.path(), "a", source_seed()).await?;

    a.cluster
        .velero_faults()
        .fail_next_backup("volume gerrit-data could not be read");
    let refused = backup(&a, "reg-one-2026-01-01-00-00-01", DEFAULT_BSL, false).await;
    let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("partially failed with 1 errors")
            && message.contains("velero backup describe reg-one-2026-01-01-00-00-01 --details"),
        "{message}"
    );
    // The same name finds the same (partial) backup: still refused.
    assert!(
        backup(&a, "reg-one-2026-01-01-00-00-01", DEFAULT_BSL, false)
            .await
            .is_err()
    );

    a.cluster
        .velero_faults()
        .fail_next_backup("volume gerrit-data could not be read");
    let accepted = backup(&a, "reg-one-2026-01-01-00-00-02", DEFAULT_BSL, true).await?;
    assert_eq!(
        (accepted.phase.as_str(), accepted.errors),
        ("PartiallyFailed", 1)
    );
    assert!(!accepted.messages.is_empty());

    let failed = backup(&a, "reg-one-2026-01-01-00-00-03", "no-such-location", true).await;
    let message = failed.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        message.contains("failed") && message.contains("no-such-location"),
        "{message}"
    );

    a.cluster.shutdown().await;
    Ok(())
}

/// Each claim measured both ways verification can: by reader pods (the
/// sandbox's kubelet stand-in runs them), and by Velero's records of the
/// backup; both agree with the volumes themselves.
async fn volumes_measured_both_ways(a: &mut Side) -> Result<()> {
    for reader in [VolumeReader::Pod, VolumeReader::Velero] {
        let mut config = (*a.ctx.config).clone();
        config.volume_reader = reader;
        a.ctx.config = std::sync::Arc::new(config);
        let inv = expect!(
            step(
                a,
                Kind::Inventory(pb::InventoryStep {
                    volumes: true,
                    backup_name: BACKUP.into(),
                    ..Default::default()
                })
            )
            .await?,
            Inventory
        );
        let volumes = a.cluster.volumes();
        assert_eq!(inv.volumes.len(), 9, "{reader:?}: {:?}", inv.volumes);
        for v in &inv.volumes {
            let on_disk = ferry_common::volume::summarize(&volumes.dir(REG, &v.pvc))?;
            match &v.measure {
                Some(Measure::Contents(c)) => assert_eq!(
                    (c.files, c.bytes, c.digest.as_str()),
                    (on_disk.files, on_disk.bytes, on_disk.digest.as_str()),
                    "{}",
                    v.pvc
                ),
                Some(Measure::Velero(t)) => assert_eq!(
                    (t.phase.as_str(), t.total_bytes, t.bytes_done),
                    ("Completed", on_disk.bytes, on_disk.bytes),
                    "{}",
                    v.pvc
                ),
                // PGO's data volumes are proved by their tables.
                Some(Measure::Database(c)) => assert!(v.pvc.starts_with(c.as_str()), "{v:?}"),
                None => anyhow::bail!("{} not measured", v.pvc),
            }
        }
        let pods = a
            .cluster
            .store()
            .list(&Gvr::core("pods"), Some(REG), None)
            .await?;
        assert!(
            pods.iter()
                .all(|p| p["metadata"]["labels"]["ferry.io/volume-reader"].is_null()),
            "reader pods left behind: {pods:?}"
        );
    }
    Ok(())
}
