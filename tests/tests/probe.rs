//! `describe` reports what the agent's probe finds in its cluster, through
//! the real kube client against sandbox clusters.
use std::time::Duration;

use ferry_sandbox::cluster::{ClusterOptions, SandboxCluster};
use ferry_sandbox::fixture::{self, Seed};
use ferry_tests::World;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn describe_reports_the_probed_platform_and_a_bare_cluster() -> anyhow::Result<()> {
    ferry_tests::init_logs();
    let w = World::new(&["a", "b"], &["admin"])?;
    let a = SandboxCluster::start(w.path("cluster-a"), ClusterOptions::default()).await?;
    fixture::seed(
        &a,
        &Seed::platform("1.9.9").with_registry("reg-one", "1.9.9"),
    )
    .await?;
    let b = SandboxCluster::start(w.path("cluster-b"), ClusterOptions::default()).await?;
    fixture::seed(&b, &Seed::bare()).await?;

    let _c = w.coordinator(&["admin=admin"], &[])?;
    let kube_a = a.kubeconfig().display().to_string();
    let kube_b = b.kubeconfig().display().to_string();
    let _agent_a = w.agent("a", &["--kubeconfig", &kube_a])?;
    let _agent_b = w.agent("b", &["--kubeconfig", &kube_b])?;
    w.all_connected(&["a", "b"], Duration::from_secs(60))
        .await?;

    let d = w.ferry_json("admin", &["describe", "a"])?;
    let describe = &d["result"]["describe"];
    assert_eq!(describe["probe_error"], "", "{d}");
    assert_eq!(describe["facts"]["platform_version"], "1.9.9", "{d}");
    assert_eq!(describe["facts"]["registries"][0]["name"], "reg-one");
    assert_eq!(describe["facts"]["registries"][0]["version"], "1.9.9");
    let probe = &describe["probe"];
    assert_eq!(
        probe["velero"]["locations"][0]["phase"], "Available",
        "{probe}"
    );
    assert_eq!(probe["gerrit"]["present"], true, "{probe}");
    assert_eq!(probe["nexus"]["present"], true, "{probe}");
    assert_eq!(probe["keycloak"]["reachable"], true, "{probe}");

    // The registration carried the probed facts too.
    let listed = w.ferry_json("admin", &["agents"])?;
    let agent_a = listed["agents"]
        .as_array()
        .and_then(|v| v.iter().find(|x| x["cluster_id"] == "a"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(agent_a["facts"]["platform_version"], "1.9.9", "{listed}");

    let d = w.ferry_json("admin", &["describe", "b"])?;
    let describe = &d["result"]["describe"];
    assert_eq!(describe["probe_error"], "", "{d}");
    assert_eq!(
        describe["facts"]["platform_version"], "",
        "a bare cluster has no Platform: {d}"
    );
    assert_eq!(describe["facts"]["registries"], serde_json::json!([]));
    assert_eq!(describe["probe"]["gerrit"]["present"], false);

    a.shutdown().await;
    b.shutdown().await;
    Ok(())
}

#[test]
fn ferry_sandbox_prints_what_tools_need() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let out = std::process::Command::new(ferry_tests::bin("ferry")?)
        .args([
            "sandbox",
            "--platform",
            "1.9.9",
            "--registry",
            "reg-x=1.9.9",
            "--no-wait",
            "-o",
            "json",
            "--dir",
        ])
        .arg(dir.path().join("c"))
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let kubeconfig = v["kubeconfig"].as_str().unwrap_or_default();
    assert!(std::path::Path::new(kubeconfig).exists(), "{v}");
    assert!(
        v["s3"]["endpoint"]
            .as_str()
            .unwrap_or_default()
            .starts_with("http://127.0.0.1:")
    );
    assert!(
        v["keycloak"]["url"]
            .as_str()
            .unwrap_or_default()
            .starts_with("http://127.0.0.1:")
    );
    Ok(())
}
