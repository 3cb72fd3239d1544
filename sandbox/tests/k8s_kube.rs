//! The sandbox's Kubernetes API driven by the real kube-rs client, as the
//! agent will drive a real cluster.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use kube::{Client, Config};
use serde_json::json;

use ferry_sandbox::k8s::{KubeApi, ServerHandle};

struct Cluster {
    api: KubeApi,
    server: ServerHandle,
    client: Client,
    _dir: tempfile::TempDir,
}

/// Starts a sandbox API and a kube client configured from its kubeconfig file.
async fn cluster() -> Result<Cluster> {
    let api = KubeApi::new()?;
    let server = api.serve("127.0.0.1:0".parse()?).await?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("kubeconfig");
    server.write_kubeconfig(&path)?;
    let kubeconfig = Kubeconfig::read_from(&path)?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    // kube's rustls connector needs a process-wide crypto provider when the
    // workspace compiles in more than one (ring and aws-lc-rs).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = Client::try_from(config)?;
    Ok(Cluster {
        api,
        server,
        client,
        _dir: dir,
    })
}

fn backup_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("velero.io", "v1", "Backup"),
        "backups",
    )
}

fn code_of(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

async fn create_namespace(client: &Client, name: &str) -> Result<()> {
    let nss: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    nss.create(&PostParams::default(), &ns).await?;
    Ok(())
}

#[tokio::test]
async fn configmap_crud_selectors_patch_conflict_delete() -> Result<()> {
    let c = cluster().await?;
    create_namespace(&c.client, "reg").await?;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "reg");
    for (name, app) in [("a", "vault"), ("b", "nexus"), ("c", "vault")] {
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"app": app}},
            "data": {"host": format!("{name}.apps.example.com")}
        }))?;
        let created = cms.create(&PostParams::default(), &cm).await?;
        assert!(created.metadata.uid.is_some());
        assert!(created.metadata.creation_timestamp.is_some());
    }

    // Creating an existing name: 409 AlreadyExists.
    let dup: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "a"}}))?;
    let err = cms
        .create(&PostParams::default(), &dup)
        .await
        .err()
        .context("duplicate create")?;
    assert_eq!(code_of(&err), Some(409));
    assert!(matches!(&err, kube::Error::Api(s) if s.reason == "AlreadyExists"));

    let got = cms.get("a").await?;
    assert_eq!(
        got.data
            .as_ref()
            .and_then(|d| d.get("host"))
            .map(String::as_str),
        Some("a.apps.example.com")
    );

    let vault = cms.list(&ListParams::default().labels("app=vault")).await?;
    let mut names: Vec<String> = vault
        .items
        .iter()
        .filter_map(|o| o.metadata.name.clone())
        .collect();
    names.sort();
    assert_eq!(names, ["a", "c"]);
    let set = cms
        .list(&ListParams::default().labels("app in (nexus),app notin (vault)"))
        .await?;
    assert_eq!(set.items.len(), 1);
    let by_field = cms
        .list(&ListParams::default().fields("metadata.name=b"))
        .await?;
    assert_eq!(by_field.items.len(), 1);
    let paged = cms.list(&ListParams::default().limit(2)).await?;
    assert_eq!(paged.items.len(), 2);
    let rest = cms
        .list(
            &ListParams::default()
                .limit(2)
                .continue_token(paged.metadata.continue_.as_deref().unwrap_or("")),
        )
        .await?;
    assert_eq!(rest.items.len(), 1);

    // Merge patch, then JSON patch.
    let patched = cms
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"extra": "1"}})),
        )
        .await?;
    assert_eq!(patched.data.as_ref().map(|d| d.len()), Some(2));
    let json_patch: json_patch::Patch = serde_json::from_value(json!([
        {"op": "replace", "path": "/data/extra", "value": "2"}
    ]))?;
    let patched = cms
        .patch("a", &PatchParams::default(), &Patch::<()>::Json(json_patch))
        .await?;
    assert_eq!(
        patched
            .data
            .as_ref()
            .and_then(|d| d.get("extra"))
            .map(String::as_str),
        Some("2")
    );

    // Update with a stale resourceVersion: 409 Conflict.
    let mut stale = got.clone();
    stale.data = Some([("host".to_string(), "x".to_string())].into());
    let err = cms
        .replace("a", &PostParams::default(), &stale)
        .await
        .err()
        .context("stale update")?;
    assert_eq!(code_of(&err), Some(409));
    assert!(matches!(&err, kube::Error::Api(s) if s.reason == "Conflict"));
    // A merge patch naming a stale resourceVersion is refused too.
    let stale_rv = got.metadata.resource_version.clone();
    let err = cms
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"resourceVersion": stale_rv}})),
        )
        .await
        .err()
        .context("stale patch")?;
    assert_eq!(code_of(&err), Some(409));
    // With the current resourceVersion the update goes through.
    let mut fresh = cms.get("a").await?;
    fresh.data = Some([("host".to_string(), "y".to_string())].into());
    let replaced = cms.replace("a", &PostParams::default(), &fresh).await?;
    assert_ne!(
        replaced.metadata.resource_version,
        fresh.metadata.resource_version
    );

    cms.delete("a", &DeleteParams::default()).await?;
    let err = cms.get("a").await.err().context("get after delete")?;
    assert_eq!(code_of(&err), Some(404));
    assert!(
        matches!(&err, kube::Error::Api(s) if s.reason == "NotFound" && s.message.contains("configmaps \"a\" not found"))
    );

    // deletecollection with a label selector.
    cms.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("app=nexus"),
    )
    .await?;
    let left = cms.list(&ListParams::default()).await?;
    assert_eq!(left.items.len(), 1);

    // Deleting the namespace deletes what it holds.
    Api::<Namespace>::all(c.client.clone())
        .delete("reg", &DeleteParams::default())
        .await?;
    let all: Api<ConfigMap> = Api::all(c.client.clone());
    assert!(all.list(&ListParams::default()).await?.items.is_empty());
    c.server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn velero_backup_through_kube_with_watch() -> Result<()> {
    let c = cluster().await?;
    create_namespace(&c.client, "velero").await?;
    let backups: Api<DynamicObject> =
        Api::namespaced_with(c.client.clone(), "velero", &backup_resource());

    let start = backups.list(&ListParams::default()).await?;
    let rv = start.metadata.resource_version.clone().unwrap_or_default();
    let mut events = backups
        .watch(&WatchParams::default().timeout(10), &rv)
        .await?
        .boxed();

    let backup: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "velero.io/v1", "kind": "Backup",
        "metadata": {"name": "reg-2026-11-24-05-00-00", "labels": {"velero.io/storage-location": "default"}},
        "spec": {"includedNamespaces": ["reg"], "storageLocation": "default"}
    }))?;
    backups.create(&PostParams::default(), &backup).await?;
    // Velero's Backup CRD has no status subresource: status is written by update.
    backups
        .patch(
            "reg-2026-11-24-05-00-00",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "InProgress"}})),
        )
        .await?;
    backups
        .delete("reg-2026-11-24-05-00-00", &DeleteParams::default())
        .await?;

    let mut seen = Vec::new();
    while seen.len() < 3 {
        let event = tokio::time::timeout(Duration::from_secs(5), events.try_next())
            .await
            .context("waiting for a watch event")??
            .context("watch ended early")?;
        match event {
            WatchEvent::Added(o) => seen.push(("ADDED", o)),
            WatchEvent::Modified(o) => seen.push(("MODIFIED", o)),
            WatchEvent::Deleted(o) => seen.push(("DELETED", o)),
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(e) => bail!("watch error: {e:?}"),
        }
    }
    let kinds: Vec<&str> = seen.iter().map(|(k, _)| *k).collect();
    assert_eq!(kinds, ["ADDED", "MODIFIED", "DELETED"]);
    assert_eq!(seen[1].1.data["status"]["phase"], "InProgress");

    let listed = backups
        .list(&ListParams::default().labels("velero.io/storage-location=default"))
        .await?;
    assert!(listed.items.is_empty());
    c.server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn runtime_watcher_sees_changes() -> Result<()> {
    let c = cluster().await?;
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let seeded: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "before"}}))?;
    cms.create(&PostParams::default(), &seeded).await?;

    let stream = watcher(cms.clone(), watcher::Config::default()).boxed();
    let store = c.api.store();
    let writer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        store
            .create_object(json!({"apiVersion": "v1", "kind": "ConfigMap",
                                  "metadata": {"name": "after", "namespace": "default"}}))
            .await
    });
    let mut names = Vec::new();
    let mut stream = stream;
    while !names.contains(&"after".to_string()) {
        let event = tokio::time::timeout(Duration::from_secs(5), stream.try_next())
            .await
            .context("waiting for the watcher")??
            .context("watcher ended")?;
        match event {
            watcher::Event::InitApply(o) | watcher::Event::Apply(o) => {
                names.extend(o.metadata.name);
            }
            _ => {}
        }
    }
    assert!(names.contains(&"before".to_string()));
    writer.await??;
    c.server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn status_subresource_on_codebase_and_deployment() -> Result<()> {
    let c = cluster().await?;
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("v2.edp.epam.com", "v1", "Codebase"),
        "codebases",
    );
    let codebases: Api<DynamicObject> = Api::namespaced_with(c.client.clone(), "default", &ar);
    let cb: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "v2.edp.epam.com/v1", "kind": "Codebase",
        "metadata": {"name": "registry"},
        "spec": {"defaultBranch": "1.9.7"},
        "status": {"available": true}
    }))?;
    let created = codebases.create(&PostParams::default(), &cb).await?;
    // Status given at create is dropped: the type has a status subresource.
    assert!(created.data.get("status").is_none());
    let with_status = codebases
        .patch_status(
            "registry",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"available": true}, "spec": {"defaultBranch": "x"}})),
        )
        .await?;
    assert_eq!(with_status.data["status"]["available"], true);
    // /status changes only status.
    assert_eq!(with_status.data["spec"]["defaultBranch"], "1.9.7");
    // A plain update cannot change status, but bumps generation for spec.
    let mut obj = codebases.get("registry").await?;
    obj.data["status"] = json!({"available": false});
    obj.data["spec"]["defaultBranch"] = json!("1.9.8");
    let updated = codebases
        .replace("registry", &PostParams::default(), &obj)
        .await?;
    assert_eq!(updated.data["status"]["available"], true);
    assert_eq!(updated.data["spec"]["defaultBranch"], "1.9.8");
    assert_eq!(updated.metadata.generation, Some(2));

    let deployments: Api<Deployment> = Api::namespaced(c.client.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "bpms", "labels": {"app": "bpms"}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "bpms"}},
                 "template": {"metadata": {"labels": {"app": "bpms"}},
                              "spec": {"containers": [{"name": "bpms", "image": "bpms:1"}]}}}
    }))?;
    deployments.create(&PostParams::default(), &d).await?;
    let mut current = deployments.get_status("bpms").await?;
    current.status = Some(serde_json::from_value(
        json!({"replicas": 2, "readyReplicas": 2}),
    )?);
    let replaced = deployments
        .replace_status("bpms", &PostParams::default(), &current)
        .await?;
    assert_eq!(
        replaced.status.as_ref().and_then(|s| s.ready_replicas),
        Some(2)
    );
    // The scale subresource reads and writes spec.replicas.
    let scale = deployments.get_scale("bpms").await?;
    assert_eq!(scale.spec.as_ref().and_then(|s| s.replicas), Some(2));
    deployments
        .patch_scale(
            "bpms",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 0}})),
        )
        .await?;
    let after = deployments.get("bpms").await?;
    assert_eq!(after.spec.replicas, Some(0));
    c.server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn discovery_finds_velero_and_platform_kinds() -> Result<()> {
    let c = cluster().await?;
    let version = c.client.apiserver_version().await?;
    assert_eq!(version.major, "1");
    let discovery = kube::discovery::Discovery::new(c.client.clone())
        .run()
        .await?;
    let (ar, caps) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("velero.io", "v1", "Backup"))
        .context("Backup not discovered")?;
    assert_eq!(ar.plural, "backups");
    assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
    for (group, kind) in [
        ("v2.edp.epam.com", "Codebase"),
        ("objectbucket.io", "ObjectBucketClaim"),
        ("route.openshift.io", "Route"),
        ("apps", "StatefulSet"),
    ] {
        let found = discovery
            .groups()
            .filter(|g| g.name() == group)
            .flat_map(|g| g.recommended_resources())
            .any(|(ar, _)| ar.kind == kind);
        assert!(found, "{group} {kind} not discovered");
    }
    c.server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_crd_created_through_the_api_becomes_servable() -> Result<()> {
    let c = cluster().await?;
    let crds: Api<DynamicObject> = Api::all_with(
        c.client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        ),
    );
    let crd: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.io"},
        "spec": {"group": "example.io", "scope": "Cluster",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                               "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}
    }))?;
    let created = crds.create(&PostParams::default(), &crd).await?;
    assert_eq!(
        created.data["status"]["conditions"][1]["type"],
        "Established"
    );
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.io", "v1", "Widget"),
        "widgets",
    );
    let widgets: Api<DynamicObject> = Api::all_with(c.client.clone(), &ar);
    let w: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "example.io/v1", "kind": "Widget", "metadata": {"name": "w1"}, "spec": {"size": 3}
    }))?;
    widgets.create(&PostParams::default(), &w).await?;
    assert_eq!(widgets.get("w1").await?.data["spec"]["size"], 3);
    crds.delete("widgets.example.io", &DeleteParams::default())
        .await?;
    let err = widgets
        .get("w1")
        .await
        .err()
        .context("widget after CRD deletion")?;
    assert_eq!(code_of(&err), Some(404));
    c.server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn starts_well_under_a_second() -> Result<()> {
    let started = std::time::Instant::now();
    let api = KubeApi::new()?;
    let server = api.serve("127.0.0.1:0".parse()?).await?;
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(500),
        "start took {elapsed:?}"
    );
    server.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_watch_from_a_compacted_resource_version_gets_410() -> Result<()> {
    let c = cluster().await?;
    let store = c.api.store();
    let gvr = ferry_sandbox::k8s::Gvr::core("configmaps");
    store
        .create_object(json!({"apiVersion": "v1", "kind": "ConfigMap",
                              "metadata": {"name": "x", "namespace": "default"}}))
        .await?;
    let old = store.resource_version().to_string();
    for i in 0..10_050 {
        store
            .patch_merge(
                &gvr,
                Some("default"),
                "x",
                &json!({"data": {"i": i.to_string()}}),
            )
            .await?;
    }
    let cms: Api<ConfigMap> = Api::namespaced(c.client.clone(), "default");
    let mut events = cms
        .watch(&WatchParams::default().timeout(5), &old)
        .await?
        .boxed();
    let first = tokio::time::timeout(Duration::from_secs(5), events.try_next())
        .await
        .context("waiting for the watch answer")??
        .context("watch ended without an event")?;
    match first {
        WatchEvent::Error(e) => assert_eq!(e.code, 410),
        other => bail!("expected a 410 ERROR event, got {other:?}"),
    }
    c.server.shutdown().await;
    Ok(())
}
