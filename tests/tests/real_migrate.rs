//! A whole migration on two real stacks (`ferry_tests::real_stacks`): the
//! coordinator, both agents and the CLI as processes; on each side a real
//! control plane, Velero's real server and a real Keycloak. The coordinator
//! is SIGKILLed inside a restore phase and restarted; the migration still
//! ends VERIFIED with one Velero Restore per phase, the registry's users log
//! in on B with the passwords they had on A, and a rollback leaves B without
//! the registry and A serving again.
use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Context;
use ferry_common::pb;
use ferry_coordinator::migrate::plan::PHASES;
use ferry_testkit::realms::{self, Admin, REALMS, USERS};
use ferry_tests::World;
use ferry_tests::migrate_world::{REGISTRY, ended, migrations, request, wait_until};
use ferry_tests::real_stacks::{READY, RealStack, seed};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;

const MIGRATION_TIMEOUT: Duration = Duration::from_secs(600);

/// `(kind/name, replicas, ready)` of the registry's workloads.
async fn workloads(client: &kube::Client) -> anyhow::Result<Vec<(String, i32, i32)>> {
    let mut out = Vec::new();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), REGISTRY);
    for d in deployments.list(&Default::default()).await? {
        let name = d.metadata.name.clone().unwrap_or_default();
        let want = d.spec.replicas.unwrap_or(1);
        let ready = d.status.and_then(|s| s.ready_replicas).unwrap_or(0);
        out.push((format!("deployment/{name}"), want, ready));
    }
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), REGISTRY);
    for s in sets.list(&Default::default()).await? {
        let name = s.metadata.name.clone().unwrap_or_default();
        let want = s.spec.replicas.unwrap_or(1);
        let ready = s.status.and_then(|s| s.ready_replicas).unwrap_or(0);
        out.push((format!("statefulset/{name}"), want, ready));
    }
    out.sort();
    Ok(out)
}

/// Waits until every workload of the registry runs as many ready replicas
/// as it asks for (and some ask for more than none).
async fn serving(stack: &RealStack) -> anyhow::Result<Vec<(String, i32, i32)>> {
    let deadline = tokio::time::Instant::now() + READY;
    loop {
        let now = workloads(&stack.client).await?;
        if now.iter().any(|w| w.1 > 0) && now.iter().all(|w| w.1 == w.2) {
            return Ok(now);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the registry on {} is not serving within {READY:?}: {now:?}",
            stack.id
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn step_running(m: &pb::Migration) -> Option<String> {
    m.steps
        .iter()
        .find(|s| s.state() == pb::StepState::Running)
        .map(|s| s.name.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_registry_migrates_between_two_real_stacks() -> anyhow::Result<()> {
    ferry_tests::init_logs();
    let w = World::new(&["a", "b"], &["admin"])?;
    let (a, b) = tokio::try_join!(
        RealStack::start(&w, "a", seed("a.example.com", true)),
        RealStack::start(&w, "b", seed("b.example.com", false)),
    )?;
    let logs = || format!("{}\n{}", a.log_tails(), b.log_tails());
    let (kc_a, kc_b) = (a.keycloak.access(), b.keycloak.access());
    let admin_a = Admin::login(&kc_a).await?;
    admin_a.seed(REGISTRY, true).await.with_context(logs)?;
    let before = serving(&a).await?;

    let mut coordinator = w.coordinator(&["admin=operator"], &[])?;
    let _agent_a = a.agent(&w, true)?;
    let _agent_b = b.agent(&w, false)?;
    w.all_connected(&["a", "b"], Duration::from_secs(30))
        .await?;
    migrations(&w, "admin")
        .await?
        .start_migration(request("m1", "a", "b"))
        .await?;

    // SIGKILLed once, inside a restore phase after the first; restarted.
    let mut killed_in = None;
    let deadline = tokio::time::Instant::now() + MIGRATION_TIMEOUT;
    let m = loop {
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the migration did not end within {MIGRATION_TIMEOUT:?}\n{}",
            logs()
        );
        let m = wait_until(&w, "m1", MIGRATION_TIMEOUT, "a readable migration", |_| {
            true
        })
        .await?;
        if ended(&m) {
            break m;
        }
        if killed_in.is_none()
            && let Some(step) = step_running(&m).filter(|s| {
                s.starts_with("restore-") && s != "restore-init" && s != "restore-volumes"
            })
        {
            coordinator.kill9()?;
            coordinator = w.coordinator(&["admin=operator"], &[])?;
            eprintln!("coordinator SIGKILLed inside {step} and restarted");
            killed_in = Some(step);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let report = m.report.clone().unwrap_or_default();
    for line in &report.lines {
        eprintln!(
            "{:<5} {:<48} {} | {}",
            if line.ok { "ok" } else { "FAIL" },
            line.what,
            line.expected,
            line.actual
        );
    }
    assert_eq!(
        m.state(),
        pb::MigrationState::Succeeded,
        "{m:#?}\n{}",
        logs()
    );
    if !report.verified {
        let pvbs = a
            .velero_api("PodVolumeBackup", "podvolumebackups")
            .list(&Default::default())
            .await?;
        let pvrs = b
            .velero_api("PodVolumeRestore", "podvolumerestores")
            .list(&Default::default())
            .await?;
        let brief = |o: &kube::api::DynamicObject| {
            format!(
                "{:?} {:?} pod {} volume {} {}",
                o.metadata.name,
                o.metadata.labels,
                o.data["spec"]["pod"]["name"],
                o.data["spec"]["volume"],
                o.data["status"]
            )
        };
        panic!(
            "not verified; A's PodVolumeBackups:\n{}\nB's PodVolumeRestores:\n{}",
            pvbs.items.iter().map(brief).collect::<Vec<_>>().join("\n"),
            pvrs.items.iter().map(brief).collect::<Vec<_>>().join("\n")
        );
    }
    assert!(
        killed_in.is_some(),
        "the coordinator was never killed inside a restore phase"
    );
    for kind in ["volume ", "table ", "bucket ", "items "] {
        assert!(
            report.lines.iter().any(|l| l.what.starts_with(kind)),
            "no {kind}lines in {report:#?}"
        );
    }

    // Velero's own work: A's backup by A's real server, one Restore per
    // phase by B's — none made twice across the coordinator's restart.
    let backups = a
        .velero_api("Backup", "backups")
        .list(&Default::default())
        .await?;
    let backup = backups.items.first().context("a Backup on A")?;
    assert_eq!(backups.items.len(), 1, "{backups:?}");
    assert_eq!(backup.data["status"]["phase"], "Completed");
    assert_eq!(backup.data["status"]["formatVersion"], "1.1.0");
    let log_a = std::fs::read_to_string(a.velero.log_path())?;
    assert!(log_a.contains("Starting Velero server v1.18.3"));
    let restores = b
        .velero_api("Restore", "restores")
        .list(&Default::default())
        .await?;
    let names: BTreeSet<String> = restores
        .items
        .iter()
        .filter_map(|r| r.metadata.name.clone())
        .collect();
    assert_eq!(restores.items.len(), PHASES.len(), "{names:?}");
    assert!(
        restores
            .items
            .iter()
            .all(|r| r.data["status"]["phase"] == "Completed"),
        "{restores:?}"
    );
    // The volumes' data came back through Velero's file-system restore.
    let pvrs = b
        .velero_api("PodVolumeRestore", "podvolumerestores")
        .list(&Default::default())
        .await?;
    assert!(
        !pvrs.items.is_empty()
            && pvrs
                .items
                .iter()
                .all(|p| p.data["status"]["phase"] == "Completed"),
        "{pvrs:?}"
    );
    let after = serving(&b).await?;
    assert_eq!(after, before, "B runs what A ran");

    // Officers log in on B with the passwords they had on A.
    let http = reqwest::Client::new();
    for (suffix, _, _) in REALMS {
        let realm = format!("{REGISTRY}-{suffix}");
        for i in 0..USERS {
            let Some(pw) = realms::password(suffix, i) else {
                continue;
            };
            let name = realms::username(suffix, i);
            let token = realms::token(&http, &kc_b.url, &realm, &name, &pw).await?;
            assert!(token.is_some(), "{name} cannot log in on B");
        }
    }

    // Rollback: B without the registry, its realms or Velero's objects of
    // the migration; A serving again as before.
    let out = w.ferry("admin", &["migrate", "rollback", "m1"])?;
    let m = wait_until(&w, "m1", MIGRATION_TIMEOUT, "the rollback", ended).await?;
    assert_eq!(m.state(), pb::MigrationState::RolledBack, "{out:?}\n{m:#?}");
    let namespaces: Api<Namespace> = Api::all(b.client.clone());
    assert!(namespaces.get_opt(REGISTRY).await?.is_none());
    let admin_b = Admin::login(&kc_b).await?;
    for (suffix, _, _) in REALMS {
        let realm = format!("{REGISTRY}-{suffix}");
        assert!(
            admin_b.get(&format!("/{realm}")).await.is_err(),
            "realm {realm} left on B"
        );
    }
    let left = b
        .velero_api("Restore", "restores")
        .list(&Default::default())
        .await?;
    assert!(left.items.is_empty(), "{left:?}");
    assert_eq!(serving(&a).await?, before, "A serves again");
    Ok(())
}
