//! The real tier with Velero's real server: two real control planes, each
//! with `velero server` (built from its Go module, with the AWS plugin)
//! whose backup storage location is that side's S3 endpoint. The agent's
//! backup step makes a real Backup of the registry on A; its bucket is
//! copied to B as the relay would; B's Velero syncs it, and the agent's
//! restore steps run the Platform's phases there. Volume data is backed up
//! through the node-agent stand-in (KWOK runs no kubelet; docs/realstack.md).

#[macro_use]
mod steps;

use ferry_coordinator::migrate::plan::{PHASE_LABEL, PHASES};
use steps::*;

/// Real controllers, KWOK and Velero's periodic loops need time.
const READY: Duration = Duration::from_secs(120);

async fn wait_until<F, Fut>(what: &str, side: &Side, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + READY;
    loop {
        if check().await? {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            let velero = side
                .velero
                .as_ref()
                .map(|(v, n)| format!("{}\nnode-agent stand-in: {:?}", v.log_tail(), n.problems()))
                .unwrap_or_default();
            bail!("{what} did not happen within {READY:?}\n{velero}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn velero_api(client: &kube::Client, kind: &str, plural: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        "velero",
        &ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("velero.io", "v1", kind), plural),
    )
}

/// Waits until Velero's server has validated the side's location against
/// its S3 endpoint.
async fn bsl_validated(side: &Side, client: &kube::Client, since: jiff::Timestamp) -> Result<()> {
    let velero = &side.velero.as_ref().context("the side's Velero")?.0;
    ferry_testkit::velero::wait_validated(velero, client, DEFAULT_BSL, since, READY).await
}

/// Per claim of the registry (as its cluster lists them): (claim, bytes,
/// digest) of its volume data.
async fn volumes(side: &Side) -> Result<Vec<(String, u64, String)>> {
    let claims = Api::<k8s_openapi::api::core::v1::PersistentVolumeClaim>::namespaced(
        client(side).await?,
        REG,
    )
    .list(&Default::default())
    .await?;
    let v = side.cluster.volumes();
    let mut out = Vec::new();
    for claim in claims.items.iter().map(|c| c.name_any()) {
        out.push((
            claim.clone(),
            v.size(REG, &claim).await?,
            v.digest(REG, &claim).await?,
        ));
    }
    out.sort();
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_velero_backs_up_on_a_and_restores_on_b_in_the_platform_phases() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (a, b) = tokio::join!(
        real_side_with(dir.path(), "a", source_seed(), true),
        real_side_with(dir.path(), "b", target_seed(), true),
    );
    let (mut a, mut b) = (a?, b?);
    let (ca, cb) = (client(&a).await?, client(&b).await?);
    // Both clusters' Velero servers at once, as in production.
    let since = jiff::Timestamp::now();
    start_velero(&mut a).await?;
    start_velero(&mut b).await?;
    bsl_validated(&a, &ca, since).await?;
    bsl_validated(&b, &cb, since).await?;
    wait_until("every workload on A ready", &a, || async {
        Ok(inventory(&a).await?.workloads_ready == 24)
    })
    .await?;
    let source = inventory(&a).await?;
    let source_volumes = volumes(&a).await?;
    assert!(source_volumes.iter().all(|(_, bytes, _)| *bytes > 0));

    // As a migration does: quiesced first (no pod writes the volumes any
    // more), then backed up through the volume holders.
    quiesce(&a, false).await?;
    let pods = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(ca.clone(), REG)
        .list(&Default::default())
        .await?;
    assert!(
        pods.items.iter().all(|p| p.spec.as_ref().is_none_or(|s| s
            .volumes
            .iter()
            .flatten()
            .all(|v| v.persistent_volume_claim.is_none()))),
        "quiesced, yet pods mount claims: {:?}",
        pods.items.iter().map(|p| p.name_any()).collect::<Vec<_>>()
    );

    // The backup, by the real Velero server on A.
    let backup = backup(&a, BACKUP, DEFAULT_BSL, false).await?;
    assert_eq!(backup.phase, "Completed", "{backup:?}");
    assert!(backup.items > 50, "{backup:?}");
    let made = velero_api(&ca, "Backup", "backups").get(BACKUP).await?;
    let pvbs = velero_api(&ca, "PodVolumeBackup", "podvolumebackups")
        .list(&Default::default())
        .await?;
    assert!(
        pvbs.items.len() == source_volumes.len()
            && pvbs.items.iter().all(|p| {
                p.data["status"]["phase"] == "Completed"
                    && p.data["spec"]["pod"]["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("ferry-hold-"))
            }),
        "one PodVolumeBackup per claim, through its holder: {pvbs:?}"
    );
    // The holders are gone once the backup has ended.
    let left = Api::<k8s_openapi::api::core::v1::Pod>::namespaced(ca.clone(), REG)
        .list(&Default::default())
        .await?;
    assert!(
        left.items
            .iter()
            .all(|p| !p.name_any().starts_with("ferry-hold-")),
        "{:?}",
        left.items.iter().map(|p| p.name_any()).collect::<Vec<_>>()
    );
    eprintln!(
        "backup {BACKUP}: {} items, {} pod volume backups, status {}",
        backup.items,
        pvbs.items.len(),
        made.data["status"]
    );
    // Velero's own layout in A's bucket.
    let keys: Vec<String> = a
        .cluster
        .s3()
        .list_objects(a.cluster.bsl_bucket(), &format!("{BSL_PREFIX}/"))
        .await?
        .into_iter()
        .map(|o| o.key)
        .collect();
    for file in [
        "velero-backup.json".to_owned(),
        format!("{BACKUP}.tar.gz"),
        format!("{BACKUP}-podvolumebackups.json.gz"),
    ] {
        let key = format!("{BSL_PREFIX}/backups/{BACKUP}/{file}");
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }

    // Made by the real server: its own log names its version.
    let log = std::fs::read_to_string(a.velero.as_ref().context("A's Velero")?.0.log_path())?;
    assert!(
        log.contains("Starting Velero server v1.18.3"),
        "{}",
        &log[..log.len().min(2000)]
    );
    assert_eq!(made.data["status"]["formatVersion"], "1.1.0");

    // The relay's part: the whole prefix, A's bucket to B's.
    let (sa, sb) = (a.cluster.s3(), b.cluster.s3());
    for o in sa
        .list_objects(a.cluster.bsl_bucket(), &format!("{BSL_PREFIX}/"))
        .await?
    {
        let data = sa.get_object(a.cluster.bsl_bucket(), &o.key).await?;
        sb.put_object(b.cluster.bsl_bucket(), &o.key, data).await?;
    }
    for obc in OBC_BUCKETS {
        let bucket = bucket_name(REG, obc);
        sb.create_bucket(&bucket).await?;
        copy(sa, &bucket, sb, &bucket, "").await?;
    }
    let synced = velero_api(&cb, "Backup", "backups");
    wait_until(
        "B's Velero to sync the backup from its bucket",
        &b,
        || async {
            Ok(synced
                .get_opt(BACKUP)
                .await?
                .is_some_and(|b| b.data["status"]["phase"] == "Completed"))
        },
    )
    .await?;

    // The Platform's restore phases, by the real Velero server on B.
    for phase in PHASES {
        let report = restore(&b, phase.name, |r| {
            r.excluded_resources = phase.excluded.iter().map(|s| s.to_string()).collect();
            if !phase.labels.is_empty() {
                r.label_key = PHASE_LABEL.into();
                r.label_values = phase.labels.iter().map(|s| s.to_string()).collect();
            }
        })
        .await?;
        assert_eq!(
            report.phase, "Completed",
            "phase {}: {report:?}",
            phase.name
        );
    }
    wait_until("every workload on B ready", &b, || async {
        Ok(inventory(&b).await?.workloads_ready == 24)
    })
    .await?;
    let target = inventory(&b).await?;
    assert_eq!(target.items, source.items);

    // Volume data: real Velero restores a file-system backup only through
    // the pods it restores (an init container waits for each
    // PodVolumeRestore); the phase `volumes` restores the holders, and the
    // data arrives before any workload of the later phases starts.
    let pvrs = velero_api(&cb, "PodVolumeRestore", "podvolumerestores")
        .list(&Default::default())
        .await?;
    assert!(
        pvrs.items.len() == source_volumes.len()
            && pvrs
                .items
                .iter()
                .all(|p| p.data["status"]["phase"] == "Completed"),
        "{pvrs:?}"
    );
    assert_eq!(volumes(&b).await?, source_volumes);
    Ok(())
}
