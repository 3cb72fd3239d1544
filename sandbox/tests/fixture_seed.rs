//! Seeding: a Platform cluster carries the markers the agent's probe reads,
//! a registry its resources, volumes, buckets and realms, a bare cluster
//! nothing; a seeded registry takes a few seconds at most.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ferry_sandbox::cluster::{ClusterOptions, SandboxCluster};
use ferry_sandbox::fixture::{OBC_BUCKETS, Registry, Seed, Sizes, bucket_name, seed};
use ferry_sandbox::k8s::Gvr;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_and_registry_are_seeded_quickly() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cluster = SandboxCluster::start(dir.path(), ClusterOptions::default()).await?;
    let started = Instant::now();
    let report = seed(
        &cluster,
        &Seed::platform("1.9.7").with_registry("abc-01", "1.9.6"),
    )
    .await?;
    let elapsed = started.elapsed();
    println!(
        "Platform + registry seeded in {elapsed:?} ({} + {} objects)",
        report.platform_objects, report.registries[0].objects
    );
    assert!(
        elapsed < Duration::from_secs(10),
        "seeding took {elapsed:?}"
    );
    let store = cluster.store();

    // The probe's markers.
    let codebases = Gvr::new("v2.edp.epam.com", "v1", "codebases");
    let platform = store
        .get(&codebases, Some("control-plane"), "cluster-mgmt")
        .await?;
    assert_eq!(platform["spec"]["defaultBranch"], "1.9.7");
    let registry = store.get(&codebases, Some("abc-01"), "abc-01").await?;
    assert_eq!(registry["spec"]["defaultBranch"], "1.9.6");
    let deployments = Gvr::new("apps", "v1", "deployments");
    for name in ["gerrit", "nexus"] {
        let d = store.get(&deployments, Some("control-plane"), name).await?;
        assert_eq!(d["status"]["readyReplicas"], 1);
    }
    let route = store
        .get(
            &Gvr::new("route.openshift.io", "v1", "routes"),
            Some("user-management"),
            "keycloak",
        )
        .await?;
    let host = route["spec"]["host"]
        .as_str()
        .context("keycloak route host")?;
    assert_eq!(format!("http://{host}"), cluster.keycloak_url());
    assert!(
        cluster
            .keycloak()
            .realm_names()
            .contains(&"master".to_owned())
    );
    let bsl = store
        .get(
            &Gvr::new("velero.io", "v1", "backupstoragelocations"),
            Some("velero"),
            "default",
        )
        .await?;
    assert_eq!(bsl["status"]["phase"], "Available");
    assert_eq!(bsl["spec"]["objectStorage"]["prefix"], "openshift-backups");

    // The registry.
    let summary = &report.registries[0];
    assert!(summary.objects >= 50, "{} objects", summary.objects);
    let sts = store
        .get(
            &Gvr::new("apps", "v1", "statefulsets"),
            Some("abc-01"),
            "vault",
        )
        .await?;
    assert_eq!(sts["status"]["readyReplicas"], 1);
    assert_eq!(sts["metadata"]["labels"]["app.kubernetes.io/name"], "vault");
    let postgres = store
        .list(
            &Gvr::new("", "v1", "secrets"),
            Some("abc-01"),
            Some("app.kubernetes.io/name=postgres"),
        )
        .await?;
    assert_eq!(postgres.len(), 4);
    let env = store
        .get(
            &Gvr::core("configmaps"),
            Some("abc-01"),
            "registry-environment",
        )
        .await?;
    assert!(
        env["data"]["OFFICER_PORTAL_URL"]
            .as_str()
            .is_some_and(|u| u.ends_with(".apps.sandbox.example.com"))
    );
    for pvc in &summary.pvcs {
        assert!(cluster.volumes().size("abc-01", pvc).await? >= Sizes::default().pvc_bytes);
    }
    assert_eq!(summary.buckets.len(), 9);
    for obc in OBC_BUCKETS {
        let objects = cluster
            .s3()
            .list_objects(&bucket_name("abc-01", obc), "")
            .await?;
        assert_eq!(objects.len(), Sizes::default().objects_per_bucket);
        assert!(
            objects
                .iter()
                .all(|o| o.size == Sizes::default().bytes_per_object)
        );
    }
    assert_eq!(summary.realms.len(), 4);
    let users = cluster.keycloak().users("abc-01-officer-portal")?;
    assert_eq!(users.len(), Sizes::default().users_per_realm);
    assert!(users.iter().all(|u| {
        !u.groups.is_empty()
            && u.realm_roles
                .iter()
                .any(|r| r.contains("officer") || r == "task-dispatcher")
    }));
    assert!(users[0].attributes.contains_key("drfo"));
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_cluster_has_nothing_of_the_platform() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cluster = SandboxCluster::start(dir.path(), ClusterOptions::default()).await?;
    let report = seed(&cluster, &Seed::bare()).await?;
    assert_eq!(report.platform_objects, 0);
    let store = cluster.store();
    let namespaces: Vec<String> = store
        .list(&Gvr::core("namespaces"), None, None)
        .await?
        .iter()
        .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_owned))
        .collect();
    for ns in ["control-plane", "user-management", "velero"] {
        assert!(
            !namespaces.contains(&ns.to_owned()),
            "{ns} exists on a bare cluster"
        );
    }
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_knobs_scale_volumes_and_buckets() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cluster = SandboxCluster::start(dir.path(), ClusterOptions::default()).await?;
    let sizes = Sizes {
        objects_per_bucket: 2,
        bytes_per_object: 3 << 20,
        pvc_bytes: 5 << 20,
        users_per_realm: 1,
    };
    let registry = Registry {
        sizes: sizes.clone(),
        ..Registry::new("big", "1.9.7")
    };
    let started = Instant::now();
    let report = seed(
        &cluster,
        &Seed::platform("1.9.7").with_registry_sized(registry),
    )
    .await?;
    println!("sized registry seeded in {:?}", started.elapsed());
    let pvc = &report.registries[0].pvcs[0];
    assert!(cluster.volumes().size("big", pvc).await? >= 5 << 20);
    let objects = cluster
        .s3()
        .list_objects(&bucket_name("big", "user-import"), "")
        .await?;
    assert_eq!(objects.len(), 2);
    assert_eq!(objects[0].size, 3 << 20);
    cluster.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_without_crds_runs_quietly() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let options = ClusterOptions {
        without_crds: true,
        ..ClusterOptions::default()
    };
    let cluster = SandboxCluster::start(dir.path(), options).await?;
    seed(&cluster, &Seed::bare()).await?;
    let store = cluster.store();
    assert!(
        store
            .resource_type(&Gvr::new("velero.io", "v1", "backups"))
            .is_err()
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    cluster.shutdown().await;
    Ok(())
}
