//! The real tier: the agent's cluster code against a real control plane
//! (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, built from
//! pinned Go modules by `scripts/realstack`), with KWOK standing in for the
//! kubelets. The same fixture the sandbox seeds is applied through the real
//! API; every step runs through the agent's command entry point. Object
//! storage and Keycloak are still the sandbox's here (the real Velero and
//! Keycloak tier builds on this one).

#[macro_use]
mod steps;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Patch, PatchParams};
use steps::*;

/// Real controllers and KWOK need a little longer than the sandbox.
const READY: Duration = Duration::from_secs(90);

/// Waits until the inventory counts every one of the registry's workloads
/// ready, as the real controllers report them.
async fn all_ready(side: &Side, what: &str) -> Result<pb::Inventory> {
    let deadline = tokio::time::Instant::now() + READY;
    loop {
        let inv = inventory(side).await?;
        if inv.workloads == 24 && inv.workloads_ready == 24 {
            return Ok(inv);
        }
        if tokio::time::Instant::now() >= deadline {
            let tails = side
                .real
                .as_ref()
                .map(|r| r.log_tails())
                .unwrap_or_default();
            bail!(
                "{what}: {} of {} workloads ready after {READY:?}, not ready: {:?}\n{tails}",
                inv.workloads_ready,
                inv.workloads,
                inv.not_ready
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn pods(side: &Side) -> Result<usize> {
    let api: Api<Pod> = Api::namespaced(client(side).await?, REG);
    Ok(api.list(&Default::default()).await?.items.len())
}

#[tokio::test]
async fn the_probe_reads_a_real_platform_cluster_and_a_bare_one() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (a, bare) = tokio::try_join!(
        real_side(dir.path(), "a", source_seed()),
        real_side(dir.path(), "bare", Seed::bare()),
    )?;
    let options = ferry_agent::platform::ProbeOptions::default();
    let facts = ferry_agent::platform::probe(&client(&a).await?, &options).await?;
    assert_eq!(facts.platform_version.as_deref(), Some(VERSION));
    assert_eq!(
        facts
            .registries
            .iter()
            .map(|r| (r.name.as_str(), r.version.as_deref()))
            .collect::<Vec<_>>(),
        [(REG, Some(VERSION))]
    );
    assert!(facts.keycloak.present(), "{facts:?}");
    assert!(
        facts.velero.namespace && facts.velero.crds && !facts.velero.locations.is_empty(),
        "{facts:?}"
    );
    // Gerrit and Nexus are ready because the real controllers and KWOK say so.
    let deadline = tokio::time::Instant::now() + READY;
    let mut facts = facts;
    while !(facts.gerrit.healthy() && facts.nexus.healthy()) {
        if tokio::time::Instant::now() >= deadline {
            bail!("gerrit and nexus never became ready on the real cluster: {facts:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        facts = ferry_agent::platform::probe(&client(&a).await?, &options).await?;
    }

    let none = ferry_agent::platform::probe(&client(&bare).await?, &options).await?;
    assert_eq!(none.platform_version, None);
    assert!(none.registries.is_empty());
    assert!(!none.keycloak.present() && !none.gerrit.present && !none.velero.namespace);
    Ok(())
}

#[tokio::test]
async fn preflight_refuses_bare_and_occupied_real_targets() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (a, bare) = tokio::try_join!(
        real_side(dir.path(), "a", source_seed()),
        real_side(dir.path(), "bare", Seed::bare()),
    )?;
    all_ready(&a, "the source's workloads").await?;
    let src = preflight(&a, ClusterRole::Source).await?;
    assert_eq!(failed(&src), BTreeSet::new(), "{src:#?}");
    assert_eq!(
        (
            src.platform_version.as_str(),
            src.registry_version.as_str(),
            src.apps_domain.as_str()
        ),
        (VERSION, VERSION, A_DOMAIN)
    );

    let on_bare = preflight(&bare, ClusterRole::Target).await?;
    let expected: BTreeSet<&str> = BARE_TARGET_FAILURES.into();
    assert_eq!(failed(&on_bare), expected, "{on_bare:#?}");

    // A cluster that already holds the registry is no target for it.
    let occupied = preflight(&a, ClusterRole::Target).await?;
    assert_eq!(
        failed(&occupied),
        ["no-gerrit-project", "no-namespace"].into(),
        "{occupied:#?}"
    );
    // Leftovers under the registry's backup prefixes.
    let leftover = format!("{BSL_PREFIX}/backups/{REG}-2026-01-01-00-00-00/velero-backup.json");
    a.cluster
        .s3()
        .put_object(a.cluster.bsl_bucket(), &leftover, b"{}".to_vec())
        .await?;
    let with_leftovers = preflight(&a, ClusterRole::Target).await?;
    assert!(
        failed(&with_leftovers).contains("no-backup-objects"),
        "{with_leftovers:#?}"
    );
    Ok(())
}

#[tokio::test]
async fn quiesce_reconfigure_and_cleanup_on_a_real_cluster() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let a = real_side(dir.path(), "a", source_seed()).await?;
    all_ready(&a, "the seeded registry").await?;
    assert_eq!(pods(&a).await?, 24, "one pod per workload (KWOK)");

    // Quiesce: the real controllers take every pod away.
    let q = quiesce(&a, false).await?;
    assert_eq!((q.workloads, q.changed), (24, 24));
    let quiet = workloads(&a).await?;
    assert!(
        quiet
            .iter()
            .all(|(_, r, rec)| *r == 0 && rec.as_deref() == Some("1")),
        "{quiet:?}"
    );
    assert_eq!(quiesce(&a, false).await?.changed, 0);
    let deadline = tokio::time::Instant::now() + READY;
    while pods(&a).await? > 0 {
        if tokio::time::Instant::now() >= deadline {
            bail!("pods of the quiesced registry never went away");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Back up, from the recorded replicas; ready as the controllers report.
    let undo = quiesce(&a, true).await?;
    assert_eq!((undo.workloads, undo.changed), (24, 24));
    assert!(
        workloads(&a)
            .await?
            .iter()
            .all(|(_, r, rec)| *r == 1 && rec.is_none())
    );
    all_ready(&a, "the un-quiesced registry").await?;

    // Reconfigure as a target would be: the real server accepts every
    // rewritten object.
    assert!(!mentions(&a, A_DOMAIN).await?.is_empty());
    let r = expect!(
        step(
            &a,
            Kind::Reconfigure(pb::ReconfigureStep {
                from_apps_domain: A_DOMAIN.into(),
                to_apps_domain: B_DOMAIN.into(),
            })
        )
        .await?,
        Reconfigure
    );
    assert!(
        r.rewritten > 20 && r.changed.len() == r.rewritten as usize,
        "{r:?}"
    );
    assert_eq!(r.allowlists, 1);
    assert_eq!(r.passwords_reset, 4);
    assert!(r.keycloak_operator_restarted);
    assert_eq!(mentions(&a, A_DOMAIN).await?, Vec::<String>::new());
    all_ready(&a, "the reconfigured registry (rolled out again)").await?;

    // Cleanup refuses a namespace no restore made...
    let restores = vec![format!("{BACKUP}-rest")];
    let refused = step(&a, Kind::Cleanup(cleanup_step(&restores))).await;
    assert!(
        refused
            .as_ref()
            .err()
            .is_some_and(|e| e.to_string().contains("refuses")),
        "{refused:?}"
    );
    // ...and removes one that carries the label a Velero restore of this
    // migration's backup leaves (set here by hand: no Velero server on
    // this tier), waiting through Terminating until it is really gone.
    let namespaces: Api<Namespace> = Api::all(client(&a).await?);
    namespaces
        .patch(
            REG,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"velero.io/backup-name": BACKUP}}})),
        )
        .await?;
    let c = expect!(
        step(&a, Kind::Cleanup(cleanup_step(&restores))).await?,
        Cleanup
    );
    assert!(c.namespace_deleted, "{c:?}");
    assert_eq!(c.realms_deleted, 4);
    assert!(namespaces.get_opt(REG).await?.is_none());
    assert_eq!(
        step(&a, Kind::Cleanup(cleanup_step(&restores))).await?,
        Out::Cleanup(pb::CleanupReport::default())
    );
    Ok(())
}
