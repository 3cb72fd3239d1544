//! The real `kubectl` against the sandbox's Kubernetes API: what a person
//! pointing standard tools at a sandbox cluster does.

use std::path::Path;
use std::process::Output;

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use ferry_sandbox::k8s::{Gvr, KubeApi};

fn kubectl_present() -> bool {
    std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Runs kubectl with the sandbox kubeconfig and a private discovery cache.
async fn kubectl(dir: &Path, args: &[&str]) -> Result<Output> {
    let kubeconfig = dir.join("kubeconfig");
    let cache = dir.join("cache");
    let out = tokio::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--cache-dir")
        .arg(&cache)
        .args(args)
        .output()
        .await
        .context("running kubectl")?;
    Ok(out)
}

async fn kubectl_ok(dir: &Path, args: &[&str]) -> Result<String> {
    let out = kubectl(dir, args).await?;
    ensure!(
        out.status.success(),
        "kubectl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

const CONFIGMAP: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: registry-hosts
  namespace: reg
  labels:
    app: registry
data:
  officer: officer-portal-reg.apps.cluster-a.example.com
";

#[tokio::test]
async fn kubectl_gets_applies_and_deletes() -> Result<()> {
    if !kubectl_present() {
        eprintln!("skipping: kubectl is not on PATH");
        return Ok(());
    }
    let api = KubeApi::new()?;
    let server = api.serve("127.0.0.1:0".parse()?).await?;
    let dir = tempfile::tempdir()?;
    server.write_kubeconfig(&dir.path().join("kubeconfig"))?;
    let store = api.store();
    store
        .create_object(serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "reg"}}))
        .await?;

    let namespaces = kubectl_ok(dir.path(), &["get", "namespaces"]).await?;
    assert!(namespaces.contains("NAME"), "{namespaces}");
    assert!(namespaces.contains("default"), "{namespaces}");
    assert!(namespaces.contains("reg"), "{namespaces}");

    let manifest = dir.path().join("cm.yaml");
    std::fs::write(&manifest, CONFIGMAP)?;
    let manifest = manifest.to_string_lossy().into_owned();
    let applied = kubectl_ok(dir.path(), &["apply", "-f", &manifest]).await?;
    assert!(
        applied.contains("configmap/registry-hosts created"),
        "{applied}"
    );

    let json = kubectl_ok(dir.path(), &["get", "configmap", "-n", "reg", "-o", "json"]).await?;
    let list: Value = serde_json::from_str(&json)?;
    let items = list["items"].as_array().context("items")?;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["metadata"]["name"], "registry-hosts");
    assert_eq!(
        items[0]["data"]["officer"],
        "officer-portal-reg.apps.cluster-a.example.com"
    );

    // A second apply with a change goes through kubectl's patch path.
    std::fs::write(&manifest, CONFIGMAP.replace("cluster-a", "cluster-b"))?;
    let reapplied = kubectl_ok(dir.path(), &["apply", "-f", &manifest]).await?;
    assert!(reapplied.contains("configured"), "{reapplied}");
    let cm = store
        .get(&Gvr::core("configmaps"), Some("reg"), "registry-hosts")
        .await?;
    assert_eq!(
        cm["data"]["officer"],
        "officer-portal-reg.apps.cluster-b.example.com"
    );

    let deleted = kubectl_ok(dir.path(), &["delete", "-f", &manifest]).await?;
    assert!(deleted.contains("deleted"), "{deleted}");
    let err = store
        .get(&Gvr::core("configmaps"), Some("reg"), "registry-hosts")
        .await
        .err()
        .context("configmap still there after kubectl delete")?;
    assert!(err.is_not_found());

    let missing = kubectl(
        dir.path(),
        &["get", "configmap", "-n", "reg", "registry-hosts"],
    )
    .await?;
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("NotFound"));

    // Custom resources print their CRD's columns (here Velero's BSL phase).
    store
        .create_object(serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "velero"}}))
        .await?;
    store
        .create_object(serde_json::json!({
            "apiVersion": "velero.io/v1", "kind": "BackupStorageLocation",
            "metadata": {"name": "default", "namespace": "velero"},
            "spec": {"provider": "aws", "objectStorage": {"bucket": "backups"}},
            "status": {"phase": "Available"}
        }))
        .await?;
    let bsls = kubectl_ok(dir.path(), &["get", "bsl", "-n", "velero"]).await?;
    assert!(
        bsls.contains("PHASE") && bsls.contains("Available"),
        "{bsls}"
    );
    server.shutdown().await;
    Ok(())
}
