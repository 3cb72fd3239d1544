//! Migrations end to end: the real coordinator, agents and CLI as processes,
//! sandbox clusters in this process. What Ferry did is judged by reading the
//! clusters directly (Kubernetes store, S3, Keycloak's admin API).
use std::time::Duration;

use anyhow::Context;
use ferry_common::pb;
use ferry_coordinator::migrate::plan::PHASES;
use ferry_sandbox::fixture::{
    BSL_PREFIX, DEFAULT_BSL, DEFAULT_STORAGE_CLASS, Sizes, StorageClassSpec,
};
use ferry_sandbox::k8s::Gvr;
use ferry_sandbox::velero::VELERO_NAMESPACE;
use ferry_tests::migrate_world::{
    REGISTRY, Site, agent, backup_keys, both_agents, bucket_digests, channel, cluster, ended,
    items, made_once_and_copied, migrations, namespace_text, quiesced, realm_users, replicas,
    request, under_way, velero_names, wait_until,
};
use ferry_tests::{World, eventually};

const MIGRATION_TIMEOUT: Duration = Duration::from_secs(180);

fn ferry_code(out: &std::process::Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// `ferry migrate <verb>` of the registry from one cluster to another, then `more`.
fn migrate_args<'a>(verb: &'a str, from: &'a str, to: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "migrate",
        verb,
        "--registry",
        REGISTRY,
        "--from",
        from,
        "--to",
        to,
    ];
    args.extend_from_slice(more);
    args
}

/// The migration's audit log, read by a viewer, holds each `(actor, action)`.
fn audited(w: &World, id: &str, wanted: &[(&str, &str)]) -> anyhow::Result<()> {
    let audit = w.ferry_json("viewer", &["migrate", "audit", id])?;
    let entries = audit["entries"].as_array().context("entries")?;
    for (actor, action) in wanted {
        anyhow::ensure!(
            entries
                .iter()
                .any(|e| e["actor"] == *actor && e["action"] == *action),
            "no {actor} {action} in the audit log of {id}: {audit:#}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_registry_moves_verifies_and_rolls_back() -> anyhow::Result<()> {
    ferry_tests::init_logs();
    let w = World::new(&["a", "b"], &["admin", "viewer"])?;
    let a = cluster(&w, "a", Site::source("a.example.com")).await?;
    // B is another cloud: its storage class is another, which Velero there
    // maps the source's to; its CSI driver publishes free capacity.
    let mut on_b = Site::target("b.example.com");
    on_b.storage_classes = Some(vec![StorageClassSpec::new("thin-csi", true, Some(1 << 40))]);
    on_b.class_mapping = &[(DEFAULT_STORAGE_CLASS, "thin-csi")];
    let b = cluster(&w, "b", on_b).await?;
    let (store_a, store_b) = (a.store(), b.store());
    let before_items = items(&store_a, REGISTRY).await?;
    let before_replicas = replicas(&store_a, REGISTRY).await?;
    let before_buckets = bucket_digests(&a).await?;
    let before_users = realm_users(&a).await?;
    assert!(before_items.len() >= 50, "{}", before_items.len());
    assert_eq!(before_users.len(), 4, "{before_users:?}");

    let _c = w.coordinator(&["admin=operator", "viewer=viewer"], &[])?;
    let (_agent_a, _agent_b) = both_agents(&w, &a, &b).await?;

    // A viewer may plan but not start; the refusal is audited.
    let plan = w.ferry_json("viewer", &migrate_args("plan", "a", "b", &[]))?;
    assert_eq!(plan["ready"], true, "{plan}");
    let verdict = |name: &str| {
        plan["checks"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == name))
            .map(|c| {
                (
                    c["passed"].clone(),
                    c["reason"].as_str().unwrap_or_default().to_string(),
                )
            })
    };
    let (passed, reason) = verdict("storage-classes").context("storage-classes")?;
    assert!(
        passed == true && reason.contains("gp3-csi → thin-csi"),
        "{reason}"
    );
    let (passed, reason) = verdict("target-room").context("target-room")?;
    assert!(
        passed == true && reason.contains("thin-csi: needs"),
        "{reason}"
    );
    let start = migrate_args("start", "a", "b", &["--id", "m1"]);
    let denied = w.ferry("viewer", &start)?;
    assert_eq!(ferry_code(&denied), 3, "{denied:?}");
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("needs operator"),
        "{denied:?}"
    );

    // The operator's start follows the migration to its end (exit 0).
    let out = w.ferry("admin", &start)?;
    assert_eq!(
        ferry_code(&out),
        0,
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let m = w.ferry_json("admin", &["migrate", "get", "m1"])?;
    assert_eq!(m["state"], "succeeded", "{m:#}");
    assert_eq!(m["report"]["verified"], true, "{m:#}");
    // The data itself compared: a line per volume claim (contents read by
    // reader pods; PGO's data volumes by their tables) and per table of the
    // registry's databases, every one ok.
    let lines = m["report"]["lines"].as_array().context("report lines")?;
    let ok_lines = |prefix: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|l| {
                l["what"].as_str().is_some_and(|w| w.starts_with(prefix)) && l["ok"] == true
            })
            .filter_map(|l| l["what"].as_str().map(str::to_owned))
            .collect()
    };
    let claims: Vec<String> = store_a
        .list(&Gvr::core("persistentvolumeclaims"), Some(REGISTRY), None)
        .await?
        .iter()
        .filter_map(|c| {
            c["metadata"]["name"]
                .as_str()
                .map(|n| format!("volume {n}"))
        })
        .collect();
    let mut volumes = ok_lines("volume ");
    volumes.sort();
    let mut wanted = claims.clone();
    wanted.sort();
    assert!(
        wanted.len() >= 9 && volumes == wanted,
        "{volumes:?} vs {wanted:?}"
    );
    let contents = lines
        .iter()
        .filter(|l| l["what"] == "volume gerrit-data")
        .filter_map(|l| l["actual"].as_str())
        .collect::<Vec<_>>();
    assert!(
        contents.len() == 1 && contents[0].contains("files") && contents[0].contains("sha256"),
        "{contents:?}"
    );
    assert!(
        ferry_sandbox::fixture::databases_available(),
        "PostgreSQL is not installed: the sandbox runs the registry's databases with it"
    );
    let tables = ok_lines("table ");
    for t in [
        "table operational/registry.registry.subject",
        "table operational/registry.registry.subject_settings",
        "table operational/registry.registry.ddm_audit",
        "table analytical/registry.public.report_subject_count",
    ] {
        assert!(tables.iter().any(|l| l == t), "{t} not ok in {tables:?}");
    }
    let backup = m["backup_name"]
        .as_str()
        .context("backup name")?
        .to_string();
    assert!(
        backup.starts_with(&format!("{REGISTRY}-20")) && backup.len() == REGISTRY.len() + 20,
        "backup named <reg>-YYYY-MM-DD-HH-MM-SS: {backup}"
    );

    // Judged on the clusters themselves: every item, object, realm and user.
    assert_eq!(items(&store_b, REGISTRY).await?, before_items);
    assert_eq!(bucket_digests(&b).await?, before_buckets);
    assert_eq!(realm_users(&b).await?, before_users);
    // B's domain everywhere in the registry, A's nowhere.
    let text_b = namespace_text(&store_b, REGISTRY).await?;
    let left: Vec<&str> = text_b
        .lines()
        .filter(|l| l.contains("apps.a.example.com"))
        .collect();
    assert!(left.is_empty(), "A's domain left on B in: {left:#?}");
    assert!(text_b.contains("apps.b.example.com"));
    // B's claims are of B's class.
    let classes: Vec<String> = store_b
        .list(&Gvr::core("persistentvolumeclaims"), Some(REGISTRY), None)
        .await?
        .iter()
        .map(|pvc| {
            pvc["spec"]["storageClassName"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert!(
        !classes.is_empty() && classes.iter().all(|c| c == "thin-csi"),
        "{classes:?}"
    );
    // B runs what A ran; A is quiesced.
    assert_eq!(replicas(&store_b, REGISTRY).await?, before_replicas);
    assert!(quiesced(&store_a, REGISTRY).await?, "A quiesced");
    // One backup, one restore per phase: nothing done twice.
    assert_eq!(
        velero_names(&store_a, "backups").await?,
        vec![backup.clone()]
    );
    assert_eq!(
        velero_names(&store_b, "restores").await?.len(),
        PHASES.len()
    );

    // The audit log: who asked, and every step each agent did.
    let audit = w.ferry_json("viewer", &["migrate", "audit", "m1"])?;
    let entries = audit["entries"].as_array().context("entries")?;
    let has = |actor: &str, action: &str, detail: &str| {
        entries.iter().any(|e| {
            e["actor"] == actor
                && e["action"] == action
                && e["detail"].as_str().unwrap_or_default().contains(detail)
        })
    };
    assert!(has("client/admin", "start", REGISTRY), "{audit:#}");
    assert!(
        has("client/viewer", "start-denied", "needs operator"),
        "{audit:#}"
    );
    for s in m["steps"].as_array().context("steps")? {
        let name = s["name"].as_str().unwrap_or_default();
        if name == "preflight" {
            continue;
        }
        let actor = match s["cluster_id"].as_str().unwrap_or_default() {
            "" => "coordinator".to_string(),
            c => format!("cluster/{c}"),
        };
        assert!(
            has(&actor, "step-finished", name),
            "{name} by {actor}: {audit:#}"
        );
        assert!(
            has("coordinator", "step-started", name),
            "{name}: {audit:#}"
        );
    }

    // Rollback after the restore: B without the registry, A serving again.
    let out = w.ferry("admin", &["migrate", "rollback", "m1"])?;
    assert_eq!(ferry_code(&out), 5, "{out:?}");
    let m = w.ferry_json("admin", &["migrate", "get", "m1"])?;
    assert_eq!(m["state"], "rolled_back", "{m:#}");
    assert!(items(&store_b, REGISTRY).await?.is_empty());
    assert!(realm_users(&b).await?.is_empty());
    assert!(bucket_digests(&b).await?.is_empty());
    assert!(
        backup_keys(&b, &format!("{BSL_PREFIX}/backups/"))
            .await?
            .is_empty()
    );
    assert!(backup_keys(&b, "ferry/").await?.is_empty());
    assert_eq!(replicas(&store_a, REGISTRY).await?, before_replicas);
    audited(
        &w,
        "m1",
        &[
            ("client/admin", "rollback"),
            ("cluster/b", "step-finished"),
            ("cluster/a", "step-finished"),
            ("coordinator", "finished"),
        ],
    )?;
    Ok(())
}

/// SIGTERM in the middle of the backup: the coordinator stops accepting,
/// drains, stops its migration driver and waits for every task it spawned,
/// all within its grace period, and exits cleanly; started again, it
/// resumes the migration, which verifies, with no Velero object made twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_coordinator_terminated_mid_migration_joins_its_tasks_and_resumes() -> anyhow::Result<()>
{
    ferry_tests::init_logs();
    let w = World::new(&["a", "b"], &["admin"])?;
    let a = cluster(&w, "a", Site::source("a.example.com")).await?;
    let b = cluster(&w, "b", Site::target("b.example.com")).await?;
    // The backup takes a while, so the signal lands inside it.
    a.velero_faults().set_item_delay(Duration::from_millis(40));
    let before_buckets = bucket_digests(&a).await?;
    let grace = ["--grace", "4s"];
    let mut coordinator = w.coordinator(&["admin=operator"], &grace)?;
    let (_agent_a, _agent_b) = both_agents(&w, &a, &b).await?;
    migrations(&w, "admin")
        .await?
        .start_migration(request("m12", "a", "b"))
        .await?;
    let backing_up = under_way("backup");
    wait_until(&w, "m12", MIGRATION_TIMEOUT, "a backup", backing_up).await?;

    // The grace period, and a margin for the process to start exiting.
    let clean = coordinator.terminate(Duration::from_secs(4 + 3))?;
    let log = coordinator.log_text();
    assert!(clean, "no clean exit within the grace period:\n{log}");
    assert_eq!(
        coordinator.log_count(&["every background task joined"]),
        1,
        "{log}"
    );
    assert_eq!(
        coordinator.log_count(&["still running at the end of the grace period"]),
        0,
        "{log}"
    );

    let _coordinator = w.coordinator(&["admin=operator"], &grace)?;
    let m = wait_until(&w, "m12", MIGRATION_TIMEOUT, "the end", ended).await?;
    assert_eq!(m.state, pb::MigrationState::Succeeded as i32, "{m:#?}");
    made_once_and_copied(&a, &b, &m, &before_buckets).await
}

/// The coordinator is SIGKILLed at every step boundary (as soon as the test
/// sees a step finish, before or while the next one starts) and in the
/// middle of the backup, the transfer and a restore; restarted each time, it
/// finishes the migration, which verifies, and no Velero backup or restore
/// was made twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_coordinator_killed_at_any_step_finishes_the_migration() -> anyhow::Result<()> {
    ferry_tests::init_logs();
    let w = World::new(&["a", "b"], &["admin"])?;
    let mut site = Site::source("a.example.com");
    // Buckets big enough that the transfer takes a moment.
    site.sizes = Some(Sizes {
        objects_per_bucket: 4,
        bytes_per_object: 3 * 1024 * 1024,
        ..Sizes::default()
    });
    let a = cluster(&w, "a", site).await?;
    let b = cluster(&w, "b", Site::target("b.example.com")).await?;
    // Velero takes its time per item, so kills land inside backup and restores.
    a.velero_faults().set_item_delay(Duration::from_millis(15));
    b.velero_faults().set_item_delay(Duration::from_millis(20));
    let before_buckets = bucket_digests(&a).await?;

    let mut coordinator = w.coordinator(&["admin=operator"], &[])?;
    let (_agent_a, _agent_b) = both_agents(&w, &a, &b).await?;
    migrations(&w, "admin")
        .await?
        .start_migration(request("m2", "a", "b"))
        .await?;

    let mut kills = vec![];
    let mut seen_done = 0;
    let mut killed_inside: Vec<String> = vec![];
    let deadline = tokio::time::Instant::now() + MIGRATION_TIMEOUT;
    loop {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "kills: {kills:?}");
        let m = wait_until(&w, "m2", MIGRATION_TIMEOUT, "a readable migration", |_| {
            true
        })
        .await?;
        if ended(&m) {
            break;
        }
        let done = m
            .steps
            .iter()
            .filter(|s| s.state == pb::StepState::Succeeded as i32)
            .count();
        let running = m
            .steps
            .iter()
            .find(|s| s.state == pb::StepState::Running as i32)
            .map(|s| s.name.clone());
        // Inside a step: once in backup, transfer and a restore, after it made progress.
        let inside = running.as_ref().filter(|name| {
            let step = m.steps.iter().find(|s| &&s.name == name);
            let moving = step
                .and_then(|s| s.progress.as_ref())
                .is_some_and(|p| p.items_done > 0 || p.bytes_done > 0);
            ["backup", "transfer", "restore-init"].contains(&name.as_str())
                && moving
                && !killed_inside.contains(name)
        });
        if done > seen_done || inside.is_some() {
            let why = match inside {
                Some(name) => {
                    killed_inside.push(name.clone());
                    format!("inside {name}")
                }
                None => format!("after {done} steps"),
            };
            seen_done = done;
            coordinator.kill9()?;
            kills.push(why);
            // Watched again as soon as it answers: no step can finish
            // before it is up, so none finishes unseen while agents redial.
            coordinator = w.coordinator(&["admin=operator"], &[])?;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let m = wait_until(&w, "m2", MIGRATION_TIMEOUT, "the end", ended).await?;
    assert_eq!(
        m.state,
        pb::MigrationState::Succeeded as i32,
        "kills {kills:?}: {m:#?}"
    );
    assert!(m.report.as_ref().is_some_and(|r| r.verified), "{m:#?}");
    // At every boundary between two steps (the first, preflight, is done
    // when the migration is recorded) …
    for boundary in 1..m.steps.len() {
        let after = format!("after {boundary} steps");
        assert!(
            kills.contains(&after),
            "never killed {after} of {}: {kills:?}",
            m.steps.len()
        );
    }
    // … and inside the long steps.
    for name in ["backup", "transfer", "restore-init"] {
        assert!(
            killed_inside.iter().any(|k| k == name),
            "never killed inside {name}: {kills:?}"
        );
    }
    eprintln!("coordinator killed {} times: {kills:?}", kills.len());
    made_once_and_copied(&a, &b, &m, &before_buckets).await
}

/// Every precondition that fails is refused by name, and nothing changes
/// anywhere: no migration recorded, nothing quiesced, no backup, nothing on
/// the target.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_preconditions_refuse_by_name_and_change_nothing() -> anyhow::Result<()> {
    ferry_tests::init_logs();
    let ids = [
        "a", "old", "b", "olderb", "bare", "taken", "stale", "nobsl", "vsphere", "small",
    ];
    let w = World::new(&ids, &["admin"])?;
    let a = cluster(&w, "a", Site::source("a.example.com")).await?;
    // A source whose registry is older than the targets' Platform.
    let mut old = Site::source("old.example.com");
    old.registry = Some((REGISTRY, "1.9.8"));
    let old = cluster(&w, "old", old).await?;
    let b = cluster(&w, "b", Site::target("b.example.com")).await?;
    let mut older = Site::target("olderb.example.com");
    older.platform = Some("1.9.8");
    let olderb = cluster(&w, "olderb", older).await?;
    let mut bare = Site::target("bare.example.com");
    bare.platform = None;
    let bare = cluster(&w, "bare", bare).await?;
    // Leftovers: the registry's namespace, or objects under its backup prefix.
    let taken = cluster(&w, "taken", Site::source("taken.example.com")).await?;
    let stale = cluster(&w, "stale", Site::target("stale.example.com")).await?;
    stale
        .s3()
        .put_object(
            stale.bsl_bucket(),
            &format!("{BSL_PREFIX}/backups/{REGISTRY}-2026-01-01-00-00-00/velero-backup.json"),
            "{}",
        )
        .await?;
    let nobsl = cluster(&w, "nobsl", Site::target("nobsl.example.com")).await?;
    nobsl.set_bsl_unavailable(true);
    // Another cloud's storage class, and no Velero mapping to it.
    let mut site = Site::target("vsphere.example.com");
    site.storage_classes = Some(vec![StorageClassSpec::new("thin-csi", true, None)]);
    let vsphere = cluster(&w, "vsphere", site).await?;
    // The right class, with 1 MiB free.
    let mut site = Site::target("small.example.com");
    site.storage_classes = Some(vec![StorageClassSpec::new(
        DEFAULT_STORAGE_CLASS,
        true,
        Some(1 << 20),
    )]);
    let small = cluster(&w, "small", site).await?;

    let _c = w.coordinator(&["admin=operator"], &[])?;
    let mut agents = vec![];
    for (id, c) in [
        ("a", &a),
        ("old", &old),
        ("b", &b),
        ("olderb", &olderb),
        ("bare", &bare),
        ("taken", &taken),
        ("stale", &stale),
        ("nobsl", &nobsl),
        ("vsphere", &vsphere),
        ("small", &small),
    ] {
        agents.push(agent(&w, id, c)?);
    }
    w.all_connected(&ids, Duration::from_secs(30)).await?;
    // The BSL's validation notices the bucket is gone.
    let locations = Gvr::new("velero.io", "v1", "backupstoragelocations");
    eventually(
        Duration::from_secs(20),
        "nobsl's BSL Unavailable",
        || async {
            let bsl = nobsl
                .store()
                .get(&locations, Some(VELERO_NAMESPACE), DEFAULT_BSL)
                .await
                .ok()?;
            (bsl.pointer("/status/phase")?.as_str()? == "Unavailable").then_some(())
        },
    )
    .await?;

    let replicas_a = replicas(&a.store(), REGISTRY).await?;
    for (from, to, check) in [
        ("a", "olderb", "platform-version-identical"),
        ("old", "b", "registry-version-supported"),
        ("a", "bare", "platform-present"),
        ("a", "bare", "keycloak-answering"),
        ("a", "taken", "no-namespace"),
        ("a", "taken", "no-gerrit-project"),
        ("a", "stale", "no-backup-objects"),
        ("a", "nobsl", "bsl-available"),
        ("a", "vsphere", "storage-classes"),
        ("a", "small", "target-room"),
    ] {
        let out = w.ferry("admin", &migrate_args("start", from, to, &[]))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(ferry_code(&out), 3, "{from} → {to}: {stderr}");
        assert!(
            stderr.contains(check) && stderr.contains("nothing was changed"),
            "{from} → {to} should fail {check}: {stderr}"
        );
        // The plan names the same failed check, with a reason.
        let plan = w.ferry("admin", &migrate_args("plan", from, to, &["-o", "json"]))?;
        assert_eq!(ferry_code(&plan), 3);
        let plan: serde_json::Value = serde_json::from_slice(&plan.stdout)?;
        let failed = plan["checks"]
            .as_array()
            .context("checks")?
            .iter()
            .find(|c| {
                // Checks that compare the two sides name no cluster.
                let on = if check.ends_with("-identical") || check.ends_with("-supported") {
                    ""
                } else {
                    to
                };
                c["name"] == check && c["cluster_id"] == on
            })
            .with_context(|| format!("no check {check} in {plan:#}"))?;
        assert_eq!(failed["passed"], false, "{failed}");
        assert!(!failed["reason"].as_str().unwrap_or_default().is_empty());
    }
    let list = w.ferry_json("admin", &["migrate", "list"])?;
    assert_eq!(
        list["migrations"].as_array().map(Vec::len),
        Some(0),
        "{list}"
    );
    assert_eq!(replicas(&a.store(), REGISTRY).await?, replicas_a);
    assert!(velero_names(&a.store(), "backups").await?.is_empty());
    for target in [&olderb, &bare, &stale, &nobsl, &vsphere, &small] {
        assert!(items(&target.store(), REGISTRY).await?.is_empty());
    }
    let stale_keys = backup_keys(&stale, &format!("{BSL_PREFIX}/backups/")).await?;
    assert!(
        stale_keys.iter().all(|k| k.contains("2026-01-01-00-00-00")),
        "only the stale backup's objects: {stale_keys:?}"
    );
    assert!(
        stale_keys
            .iter()
            .any(|k| k.ends_with("2026-01-01-00-00-00/velero-backup.json")),
        "the leftover is still there: {stale_keys:?}"
    );
    Ok(())
}

/// Cancelled while the transfer moves: the target is left without the
/// registry, the source serves again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_mid_transfer_cleans_the_target_and_restores_the_source() -> anyhow::Result<()> {
    ferry_tests::init_logs();
    let w = World::new(&["a", "b"], &["admin"])?;
    let mut site = Site::source("a.example.com");
    site.sizes = Some(Sizes {
        objects_per_bucket: 6,
        bytes_per_object: 4 * 1024 * 1024,
        ..Sizes::default()
    });
    let a = cluster(&w, "a", site).await?;
    let b = cluster(&w, "b", Site::target("b.example.com")).await?;
    let replicas_a = replicas(&a.store(), REGISTRY).await?;
    let _c = w.coordinator(&["admin=operator"], &[])?;
    let (_agent_a, _agent_b) = both_agents(&w, &a, &b).await?;
    migrations(&w, "admin")
        .await?
        .start_migration(request("m3", "a", "b"))
        .await?;
    wait_until(
        &w,
        "m3",
        MIGRATION_TIMEOUT,
        "the transfer moving",
        under_way("transfer"),
    )
    .await?;
    let out = w.ferry("admin", &["migrate", "cancel", "m3"])?;
    assert_eq!(
        ferry_code(&out),
        5,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m = wait_until(&w, "m3", MIGRATION_TIMEOUT, "the end", ended).await?;
    assert_eq!(m.state, pb::MigrationState::Cancelled as i32, "{m:#?}");
    assert!(items(&b.store(), REGISTRY).await?.is_empty());
    assert!(bucket_digests(&b).await?.is_empty(), "buckets emptied on B");
    assert!(backup_keys(&b, &format!("{BSL_PREFIX}/")).await?.is_empty());
    assert!(realm_users(&b).await?.is_empty());
    assert_eq!(replicas(&a.store(), REGISTRY).await?, replicas_a);
    Ok(())
}

/// `ferry demo` runs the whole migration on its embedded sandbox and exits 0
/// only when verified; `-o json` prints the report as one object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_migrates_and_verifies() -> anyhow::Result<()> {
    let out = std::process::Command::new(ferry_tests::bin("ferry")?)
        .args(["demo", "-o", "json"])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(v["ok"], true, "{v:#}");
    assert_eq!(v["state"], "succeeded");
    assert_eq!(v["report"]["verified"], true);
    assert!(
        v["report"]["lines"].as_array().map_or(0, Vec::len) > 20,
        "{v:#}"
    );
    // Volume and table lines are in the report.
    for prefix in ["volume ", "table "] {
        assert!(
            v["report"]["lines"].as_array().is_some_and(|l| l
                .iter()
                .any(|l| l["what"].as_str().is_some_and(|w| w.starts_with(prefix)))),
            "no {prefix:?} line: {v:#}"
        );
    }
    Ok(())
}

/// A staged migration: the stage copy moves the data while the source
/// serves, the cutover moves only what changed. Agents killed in the middle
/// of their steps (A during the stage backup, B during a restore) continue
/// or safely repeat them when restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_staged_migration_moves_the_delta_and_survives_agent_kills() -> anyhow::Result<()> {
    ferry_tests::init_logs();
    let w = World::new(&["a", "b"], &["admin"])?;
    let a = cluster(&w, "a", Site::source("a.example.com")).await?;
    let b = cluster(&w, "b", Site::target("b.example.com")).await?;
    a.velero_faults().set_item_delay(Duration::from_millis(15));
    b.velero_faults().set_item_delay(Duration::from_millis(20));
    let _c = w.coordinator(&["admin=operator"], &[])?;
    let (mut agent_a, mut agent_b) = both_agents(&w, &a, &b).await?;
    let mut staged = request("m4", "a", "b");
    staged.stage = true;
    migrations(&w, "admin")
        .await?
        .start_migration(staged)
        .await?;

    let moving = |step: &'static str| {
        move |m: &pb::Migration| {
            m.steps.iter().any(|s| {
                s.name == step
                    && s.state == pb::StepState::Running as i32
                    && s.progress.as_ref().is_some_and(|p| p.items_done > 0)
            })
        }
    };
    wait_until(
        &w,
        "m4",
        MIGRATION_TIMEOUT,
        "the stage backup moving",
        moving("stage-backup"),
    )
    .await?;
    agent_a.kill9()?;
    agent_a = agent(&w, "a", &a)?;
    wait_until(
        &w,
        "m4",
        MIGRATION_TIMEOUT,
        "restore-init moving",
        moving("restore-init"),
    )
    .await?;
    agent_b.kill9()?;
    agent_b = agent(&w, "b", &b)?;
    let m = wait_until(&w, "m4", MIGRATION_TIMEOUT, "the end", ended).await?;
    assert_eq!(m.state, pb::MigrationState::Succeeded as i32, "{m:#?}");
    assert!(m.report.as_ref().is_some_and(|r| r.verified), "{m:#?}");
    // Two backups (stage and cutover), one restore per phase.
    assert_eq!(velero_names(&a.store(), "backups").await?.len(), 2);
    assert_eq!(
        velero_names(&b.store(), "restores").await?.len(),
        PHASES.len()
    );

    // The cutover moved none of the buckets' bytes: the stage had them.
    for bucket in ferry_sandbox::fixture::OBC_BUCKETS {
        let s = transfer_counts(&w, &format!("m4-stage-transfer-a1-{bucket}")).await?;
        let c = transfer_counts(&w, &format!("m4-transfer-a1-{bucket}")).await?;
        assert!(
            s.bytes_moved > 0,
            "{bucket}: the stage moved nothing: {s:?}"
        );
        assert_eq!(c.bytes_moved, 0, "{bucket}: the cutover moved again: {c:?}");
        assert_eq!(c.objects_skipped, c.objects_total, "{bucket}: {c:?}");
    }
    drop((agent_a, agent_b));
    Ok(())
}

/// A step that fails stops the migration with its reason (exit 1); after
/// the cause is gone, `retry` runs it again — with a new Velero backup, since
/// the failed one keeps its verdict — and the migration verifies.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_backup_stops_the_migration_and_retry_finishes_it() -> anyhow::Result<()> {
    ferry_tests::init_logs();
    let w = World::new(&["a", "b"], &["admin"])?;
    let a = cluster(&w, "a", Site::source("a.example.com")).await?;
    let b = cluster(&w, "b", Site::target("b.example.com")).await?;
    a.velero_faults()
        .fail_next_backup("node-agent lost the volume of pvc gerrit-data");
    let _c = w.coordinator(&["admin=operator"], &[])?;
    let (_agent_a, _agent_b) = both_agents(&w, &a, &b).await?;

    let out = w.ferry("admin", &migrate_args("start", "a", "b", &["--id", "m5"]))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(ferry_code(&out), 1, "{stdout}");
    assert!(stdout.contains("partially failed"), "{stdout}");
    let m = w.ferry_json("admin", &["migrate", "get", "m5"])?;
    assert_eq!(m["state"], "failed", "{m:#}");
    let failed_backup = m["backup_name"]
        .as_str()
        .context("backup name")?
        .to_string();
    // The failed step left B untouched.
    assert!(items(&b.store(), REGISTRY).await?.is_empty());

    let out = w.ferry("admin", &["migrate", "retry", "m5"])?;
    assert_eq!(
        ferry_code(&out),
        0,
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let m = w.ferry_json("admin", &["migrate", "get", "m5"])?;
    assert_eq!(m["report"]["verified"], true, "{m:#}");
    let backup = m["backup_name"].as_str().context("backup name")?;
    assert_ne!(backup, failed_backup, "a new backup after the failed one");
    let backups = velero_names(&a.store(), "backups").await?;
    assert_eq!(backups.len(), 2, "{backups:?}");
    assert!(backups.contains(&failed_backup) && backups.iter().any(|b| b == backup));
    let step = m["steps"]
        .as_array()
        .and_then(|s| s.iter().find(|s| s["name"] == "backup"))
        .context("backup step")?;
    assert_eq!(step["attempt"], 2, "{step}");
    Ok(())
}

/// Counts of one relay transfer the coordinator ran, by its id.
async fn transfer_counts(w: &World, id: &str) -> anyhow::Result<pb::TransferCounts> {
    let t = pb::transfers_client::TransfersClient::new(channel(w, "admin").await?)
        .get_transfer(pb::GetTransferRequest {
            transfer_id: id.to_string(),
        })
        .await
        .with_context(|| format!("transfer {id}"))?
        .into_inner();
    Ok(t.counts.unwrap_or_default())
}

/// `--hold`: the migration copies while the source serves, then holds
/// (`staged`) through a coordinator restart until asked. Cancelled there, it
/// cleans the target. Asked to `stage` again, it copies only what changed on
/// the source since; asked to `cutover`, it finishes and verifies, moving no
/// bucket byte again. A viewer may do neither.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_held_migration_stages_again_and_cuts_over_when_asked() -> anyhow::Result<()> {
    ferry_tests::init_logs();
    let w = World::new(&["a", "b"], &["admin", "viewer"])?;
    let a = cluster(&w, "a", Site::source("a.example.com")).await?;
    let b = cluster(&w, "b", Site::target("b.example.com")).await?;
    let (store_a, store_b) = (a.store(), b.store());
    let replicas_a = replicas(&store_a, REGISTRY).await?;
    let items_a = items(&store_a, REGISTRY).await?;
    let roles = ["admin=operator", "viewer=viewer"];
    let mut coordinator = w.coordinator(&roles, &[])?;
    let (_agent_a, _agent_b) = both_agents(&w, &a, &b).await?;
    let held = |id: &'static str| migrate_args("start", "a", "b", &["--hold", "--id", id]);
    // Runs the CLI; its stdout when it exits with `want`.
    let run = |who: &str, args: &[&str], want: i32| -> anyhow::Result<String> {
        let out = w.ferry(who, args)?;
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        anyhow::ensure!(
            ferry_code(&out) == want,
            "{args:?} by {who}: exit {} (wanted {want})\nstdout: {stdout}\nstderr: {}",
            ferry_code(&out),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(stdout)
    };

    // Held, then cancelled: the target is cleaned; the source never stopped.
    let shown = run("admin", &held("m6"), 0)?;
    assert!(
        shown.contains("staged") && shown.contains("`ferry migrate cutover m6`"),
        "{shown}"
    );
    let m = w.ferry_json("admin", &["migrate", "get", "m6"])?;
    assert_eq!(m["state"], "staged", "{m:#}");
    assert_eq!(replicas(&store_a, REGISTRY).await?, replicas_a, "A serves");
    assert_eq!(bucket_digests(&b).await?, bucket_digests(&a).await?);
    assert!(
        items(&store_b, REGISTRY).await?.is_empty(),
        "nothing restored"
    );
    run("admin", &["migrate", "cancel", "m6"], 5)?;
    let m = w.ferry_json("admin", &["migrate", "get", "m6"])?;
    assert_eq!(m["state"], "cancelled", "{m:#}");
    assert!(bucket_digests(&b).await?.is_empty(), "buckets emptied on B");
    assert!(backup_keys(&b, &format!("{BSL_PREFIX}/")).await?.is_empty());
    assert_eq!(replicas(&store_a, REGISTRY).await?, replicas_a);

    // Held again, through a coordinator SIGKILL: still held, nothing runs.
    run("admin", &held("m7"), 0)?;
    coordinator.kill9()?;
    coordinator = w.coordinator(&roles, &[])?;
    w.all_connected(&["a", "b"], Duration::from_secs(30))
        .await?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let m = w.ferry_json("admin", &["migrate", "get", "m7"])?;
    assert_eq!(m["state"], "staged", "{m:#}");
    let step = |m: &serde_json::Value, name: &str| -> anyhow::Result<serde_json::Value> {
        m["steps"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["name"] == name))
            .cloned()
            .with_context(|| format!("no step {name} in {m:#}"))
    };
    assert_eq!(step(&m, "quiesce")?["state"], "pending", "{m:#}");
    assert_eq!(replicas(&store_a, REGISTRY).await?, replicas_a);

    // The source changes while it serves: one object rewritten, one added.
    let bucket = ferry_sandbox::fixture::bucket_name(REGISTRY, "user-import");
    let key = a
        .s3()
        .list_objects(&bucket, "")
        .await?
        .into_iter()
        .next()
        .context("an object in user-import")?
        .key;
    a.s3()
        .put_object(&bucket, &key, vec![7u8; 300 * 1024])
        .await?;
    a.s3()
        .put_object(&bucket, "added-while-staged.csv", vec![9u8; 100 * 1024])
        .await?;

    // A viewer may not stage or cut over.
    run("viewer", &["migrate", "stage", "m7"], 3)?;
    run("viewer", &["migrate", "cutover", "m7"], 3)?;
    // Another stage copy moves only what changed, and holds again.
    run("admin", &["migrate", "stage", "m7"], 0)?;
    let m = w.ferry_json("admin", &["migrate", "get", "m7"])?;
    assert_eq!(m["state"], "staged", "{m:#}");
    assert_eq!(step(&m, "stage-transfer")?["attempt"], 2, "{m:#}");
    for obc in ferry_sandbox::fixture::OBC_BUCKETS {
        let c = transfer_counts(&w, &format!("m7-stage-transfer-a2-{obc}")).await?;
        if *obc == "user-import" {
            assert_eq!(c.objects_moved, 2, "{obc}: {c:?}");
            assert_eq!(c.bytes_moved, 400 * 1024, "{obc}: {c:?}");
        } else {
            assert_eq!(c.bytes_moved, 0, "{obc} moved again: {c:?}");
        }
    }
    assert_eq!(bucket_digests(&b).await?, bucket_digests(&a).await?);
    assert_eq!(replicas(&store_a, REGISTRY).await?, replicas_a);

    // The cutover finishes, verified, and moves no bucket byte again.
    run("admin", &["migrate", "cutover", "m7"], 0)?;
    let m = w.ferry_json("admin", &["migrate", "get", "m7"])?;
    assert_eq!(m["state"], "succeeded", "{m:#}");
    assert_eq!(m["report"]["verified"], true, "{m:#}");
    assert!(
        step(&m, "await-cutover")?["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("client/admin"),
        "{m:#}"
    );
    for obc in ferry_sandbox::fixture::OBC_BUCKETS {
        let c = transfer_counts(&w, &format!("m7-transfer-a1-{obc}")).await?;
        assert_eq!(c.bytes_moved, 0, "{obc}: the cutover moved again: {c:?}");
    }
    assert_eq!(bucket_digests(&b).await?, bucket_digests(&a).await?);
    assert_eq!(items(&store_b, REGISTRY).await?, items_a);
    assert!(quiesced(&store_a, REGISTRY).await?, "A quiesced");
    assert_eq!(
        velero_names(&store_b, "restores").await?.len(),
        PHASES.len()
    );

    audited(
        &w,
        "m7",
        &[
            ("client/admin", "stage"),
            ("client/admin", "cutover"),
            ("client/viewer", "stage-denied"),
            ("client/viewer", "cutover-denied"),
            ("coordinator", "staged"),
        ],
    )?;
    drop(coordinator);
    Ok(())
}

/// `ferry migrate start` rides out a coordinator restart: it reconnects and
/// follows the migration, which went on there, to its verified end (exit
/// 0), instead of printing a raw transport error.
#[tokio::test(flavor = "multi_thread")]
async fn migrate_start_follows_through_a_coordinator_restart() -> anyhow::Result<()> {
    ferry_tests::init_logs();
    let w = World::new(&["a", "b"], &["admin"])?;
    let a = cluster(&w, "a", Site::source("a.example.com")).await?;
    let b = cluster(&w, "b", Site::target("b.example.com")).await?;
    a.velero_faults().set_item_delay(Duration::from_millis(15));
    b.velero_faults().set_item_delay(Duration::from_millis(20));
    let mut coordinator = w.coordinator(&["admin=operator"], &[])?;
    let (_agent_a, _agent_b) = both_agents(&w, &a, &b).await?;
    let stderr = w.path("migrate-start.err");
    let mut cli = std::process::Command::new(ferry_tests::bin("ferry")?)
        .arg("--coordinator")
        .arg(w.url())
        .arg("--pki-dir")
        .arg(&w.pki)
        .args(["--as", "admin"])
        .args(migrate_args("start", "a", "b", &["--id", "m9"]))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr)?)
        .spawn()?;
    wait_until(&w, "m9", MIGRATION_TIMEOUT, "a step done", |m| {
        m.steps
            .iter()
            .filter(|s| s.state == pb::StepState::Succeeded as i32)
            .count()
            >= 2
    })
    .await?;
    coordinator.kill9()?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _coordinator = w.coordinator(&["admin=operator"], &[])?;
    let deadline = std::time::Instant::now() + MIGRATION_TIMEOUT;
    let status = loop {
        if let Some(s) = cli.try_wait()? {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = cli.kill();
            anyhow::bail!("ferry migrate start did not end");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let err = std::fs::read_to_string(&stderr)?;
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.contains("reconnecting"), "{err}");
    let m = w.ferry_json("admin", &["migrate", "get", "m9"])?;
    assert_eq!(m["state"], "succeeded", "{m:#}");
    Ok(())
}
