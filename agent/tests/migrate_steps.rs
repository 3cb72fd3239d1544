//! The migration steps against sandbox clusters, each run through the
//! agent's command entry point (`exec::execute`), as the coordinator would
//! have it run: preflight on good and bad pairs; then a whole migration of
//! `reg-one` from cluster A (apps.a.example.com) to cluster B
//! (apps.b.example.com), with the test standing in for the relay (copying
//! the BSL, OBC and identity objects A → B); then rollback on B.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ferry_agent::AgentConfig;
use ferry_agent::exec;
use ferry_agent::migrate::{PASSWORD_RESET_ANNOTATION, REPLICAS_ANNOTATION};
use ferry_agent::progress::Progress;
use ferry_agent::relay::RelayContext;
use ferry_common::pb::{
    self, ClusterRole, command_output, command_result, command_spec, step_command::Kind,
    step_output::Kind as Out,
};
use ferry_sandbox::cluster::{ClusterOptions, SandboxCluster};
use ferry_sandbox::fixture::{
    self, BSL_PREFIX, DEFAULT_BSL, OBC_BUCKETS, Platform, Registry, Seed, bucket_name,
};
use ferry_sandbox::s3::S3Server;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use serde_json::json;
use tokio::sync::mpsc;

const REG: &str = "reg-one";
const VERSION: &str = "1.9.9";
const MIGRATION: &str = "m-1";
const BACKUP: &str = "reg-one-2026-01-02-03-04-05";
const IDENTITY_PREFIX: &str = "ferry/identity/m-1/";
const CAPACITY: u64 = 1 << 40;
const WAIT: Duration = Duration::from_secs(20);
const A_DOMAIN: &str = "apps.a.example.com";
const B_DOMAIN: &str = "apps.b.example.com";

/// A sandbox cluster and the executor context of its agent.
struct Side {
    cluster: SandboxCluster,
    ctx: RelayContext,
    progress: mpsc::Receiver<pb::CommandProgress>,
}

fn platform(domain: &str) -> Platform {
    Platform::new(VERSION).with_domain(domain)
}

fn source_seed() -> Seed {
    Seed {
        platform: Some(platform("a.example.com")),
        registries: vec![Registry::new(REG, VERSION)],
    }
}

fn target_seed() -> Seed {
    Seed {
        platform: Some(platform("b.example.com")),
        registries: vec![],
    }
}

fn obc_stores() -> Vec<String> {
    OBC_BUCKETS.iter().map(|o| format!("obc-{o}")).collect()
}

fn realms() -> Vec<String> {
    ferry_agent::keycloak::registry_realms(REG).to_vec()
}

/// Stores as an operator would configure them: the BSL bucket as `backups`,
/// each OBC bucket of the registry as `obc-<claim>`.
fn stores_json(cluster: &SandboxCluster) -> serde_json::Value {
    let s3 = |bucket: &str| {
        json!({
            "s3": {"endpoint": cluster.s3_endpoint(), "bucket": bucket, "region": cluster.s3_region(),
                   "access_key_id": cluster.s3_access_key(), "secret_access_key": cluster.s3_secret_key(),
                   "allow_http": true},
            "prefixes": [""],
        })
    };
    let mut stores = serde_json::Map::new();
    stores.insert("backups".into(), s3(cluster.bsl_bucket()));
    for obc in OBC_BUCKETS {
        stores.insert(format!("obc-{obc}"), s3(&bucket_name(REG, obc)));
    }
    json!({ "stores": stores })
}

async fn side(dir: &Path, id: &str, seed: Seed) -> Result<Side> {
    let cluster = SandboxCluster::start(dir.join(id), ClusterOptions::default()).await?;
    fixture::seed(&cluster, &seed).await?;
    let mut config = AgentConfig::new(id, "https://127.0.0.1:9", dir.join("pki"));
    config.kubeconfig = Some(cluster.kubeconfig().to_path_buf());
    config.capacity_bytes = Some(CAPACITY);
    let stores = serde_json::from_value(stores_json(&cluster))?;
    let (progress, rx) = Progress::channel();
    let ctx = RelayContext::new(config, stores, dir.join(format!("state-{id}")), progress);
    Ok(Side {
        cluster,
        ctx,
        progress: rx,
    })
}

static IDS: AtomicU64 = AtomicU64::new(1);

/// Runs a step through the agent's command entry point.
async fn step(side: &Side, kind: Kind) -> Result<Out> {
    let command = pb::Command {
        id: format!("c-{}", IDS.fetch_add(1, Ordering::Relaxed)),
        spec: Some(pb::CommandSpec {
            kind: Some(command_spec::Kind::Step(pb::StepCommand {
                migration_id: MIGRATION.into(),
                registry: REG.into(),
                kind: Some(kind),
            })),
            ..Default::default()
        }),
    };
    match exec::execute(&side.ctx, command).await.outcome {
        Some(command_result::Outcome::Output(pb::CommandOutput {
            kind: Some(command_output::Kind::Step(pb::StepOutput { kind: Some(out) })),
        })) => Ok(out),
        Some(command_result::Outcome::Error(e)) => bail!("{}", e.message),
        other => bail!("unexpected result {other:?}"),
    }
}

macro_rules! expect {
    ($out:expr, $variant:ident) => {
        match $out {
            Out::$variant(report) => report,
            other => bail!("expected {}, got {other:?}", stringify!($variant)),
        }
    };
}

async fn preflight(side: &Side, role: ClusterRole) -> Result<pb::PreflightReport> {
    let out = step(
        side,
        Kind::Preflight(pb::PreflightStep {
            role: role as i32,
            backup_store: "backups".into(),
            leftover_prefixes: vec![
                format!("{BSL_PREFIX}/backups/{REG}-"),
                format!("{BSL_PREFIX}/kopia/{REG}/"),
            ],
            backup_location: DEFAULT_BSL.into(),
        }),
    )
    .await?;
    Ok(expect!(out, Preflight))
}

async fn quiesce(side: &Side, undo: bool) -> Result<pb::QuiesceReport> {
    Ok(expect!(
        step(side, Kind::Quiesce(pb::QuiesceStep { undo })).await?,
        Quiesce
    ))
}

async fn inventory(side: &Side) -> Result<pb::Inventory> {
    let out = step(
        side,
        Kind::Inventory(pb::InventoryStep {
            stores: obc_stores(),
            realms: realms(),
        }),
    )
    .await?;
    Ok(expect!(out, Inventory))
}

async fn restore(
    side: &Side,
    phase: &str,
    f: impl FnOnce(&mut pb::RestoreStep),
) -> Result<pb::RestoreReport> {
    let mut cmd = pb::RestoreStep {
        backup_name: BACKUP.into(),
        restore_name: format!("{BACKUP}-{phase}"),
        ..Default::default()
    };
    f(&mut cmd);
    Ok(expect!(step(side, Kind::Restore(cmd)).await?, Restore))
}

fn cleanup_step(restores: &[String]) -> pb::CleanupStep {
    pb::CleanupStep {
        backup_store: "backups".into(),
        prefixes: vec![
            format!("{BSL_PREFIX}/backups/{REG}-"),
            format!("{BSL_PREFIX}/kopia/{REG}/"),
            format!("{BSL_PREFIX}/restores/{BACKUP}-"),
            IDENTITY_PREFIX.into(),
        ],
        stores: obc_stores(),
        realms: realms(),
        backups: vec![BACKUP.into()],
        restores: restores.to_vec(),
    }
}

fn failed(report: &pb::PreflightReport) -> BTreeSet<&str> {
    report
        .checks
        .iter()
        .filter(|c| !c.passed)
        .map(|c| c.name.as_str())
        .collect()
}

fn names(report: &pb::PreflightReport) -> BTreeSet<&str> {
    report.checks.iter().map(|c| c.name.as_str()).collect()
}

/// Copies every object under `prefix` from one bucket to another, as the relay does.
async fn copy(
    from: &S3Server,
    from_bucket: &str,
    to: &S3Server,
    to_bucket: &str,
    prefix: &str,
) -> Result<usize> {
    let objects = from.list_objects(from_bucket, prefix).await?;
    for o in &objects {
        let data = from.get_object(from_bucket, &o.key).await?;
        to.put_object(to_bucket, &o.key, data).await?;
    }
    Ok(objects.len())
}

async fn eventually<F, Fut>(what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if check().await? {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("{what} did not happen within {WAIT:?}")
}

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
    let expected: BTreeSet<&str> = [
        "platform-present",
        "velero-present",
        "bsl-available",
        "apps-domain",
        "keycloak-answering",
        "gerrit-present",
        "nexus-present",
    ]
    .into();
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

/// Workloads of the registry: name → (spec.replicas, recorded annotation).
async fn workloads(side: &Side) -> Result<Vec<(String, i64, Option<String>)>> {
    let client = client(side).await?;
    let mut out = Vec::new();
    for (kind, plural) in [
        ("Deployment", "deployments"),
        ("StatefulSet", "statefulsets"),
    ] {
        let ar =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("apps", "v1", kind), plural);
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), REG, &ar);
        for w in api.list(&Default::default()).await? {
            out.push((
                w.name_any(),
                w.data["spec"]["replicas"].as_i64().unwrap_or(1),
                w.annotations().get(REPLICAS_ANNOTATION).cloned(),
            ));
        }
    }
    out.sort();
    Ok(out)
}

async fn client(side: &Side) -> Result<kube::Client> {
    Ok(ferry_agent::platform::connect(Some(side.cluster.kubeconfig())).await?)
}

/// `kind/name` of every object in the registry's namespace whose content
/// (ConfigMap and Secret data, the spec of the rest) contains `needle`.
async fn mentions(side: &Side, needle: &str) -> Result<Vec<String>> {
    let client = client(side).await?;
    let mut found = Vec::new();
    let kinds = [
        ("", "v1", "ConfigMap", "configmaps", "data"),
        ("route.openshift.io", "v1", "Route", "routes", "spec"),
        ("apps", "v1", "Deployment", "deployments", "spec"),
        ("apps", "v1", "StatefulSet", "statefulsets", "spec"),
        (
            "v1.edp.epam.com",
            "v1",
            "KeycloakRealm",
            "keycloakrealms",
            "spec",
        ),
    ];
    for (group, version, kind, plural, field) in kinds {
        let ar =
            ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), REG, &ar);
        for o in api.list(&Default::default()).await? {
            if o.data[field].to_string().contains(needle) {
                found.push(format!("{plural}/{}", o.name_any()));
            }
        }
    }
    let secrets: Api<Secret> = Api::namespaced(client, REG);
    for s in secrets.list(&Default::default()).await? {
        let hit = s
            .data
            .iter()
            .flatten()
            .any(|(_, v)| String::from_utf8_lossy(&v.0).contains(needle));
        if hit {
            found.push(format!("secrets/{}", s.name_any()));
        }
    }
    Ok(found)
}

fn drain(rx: &mut mpsc::Receiver<pb::CommandProgress>) -> Vec<pb::CommandProgress> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
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

    eventually("every workload on B ready", || async {
        let inv = inventory(&b).await?;
        Ok(inv.workloads == 24 && inv.workloads_ready == 24 && inv.not_ready.is_empty())
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
    eventually("every workload on A ready", || async {
        let inv = inventory(&a).await?;
        Ok(inv.workloads_ready == 24)
    })
    .await?;

    b.cluster.shutdown().await;
    a.cluster.shutdown().await;
    Ok(())
}

async fn backup(
    side: &Side,
    name: &str,
    location: &str,
    allow_warnings: bool,
) -> Result<pb::BackupReport> {
    let out = step(
        side,
        Kind::Backup(pb::BackupStep {
            backup_name: name.into(),
            backup_location: location.into(),
            allow_warnings,
        }),
    )
    .await?;
    Ok(expect!(out, Backup))
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
