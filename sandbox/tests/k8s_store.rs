//! The in-process API on the sandbox's object store, as the Velero
//! controller and the fixture seeding code use it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use ferry_sandbox::k8s::{
    EventType, Gvr, K8sError, KubeApi, ListParams, Operation, Verb, WatchStream,
};

async fn next(stream: &mut WatchStream) -> Result<(EventType, Value)> {
    let event = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .context("waiting for a watch event")?
        .context("watch ended")?;
    Ok((event.event_type, event.object))
}

fn cm(name: &str, ns: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": ns, "labels": labels}})
}

#[tokio::test]
async fn create_needs_an_existing_namespace_and_fills_metadata() -> Result<()> {
    let store = KubeApi::new()?.store();
    let err = store
        .create_object(cm("a", "reg", json!({})))
        .await
        .err()
        .context("create in a missing namespace")?;
    assert!(err.is_not_found());
    assert_eq!(err.to_status()["message"], "namespaces \"reg\" not found");

    store
        .create_object(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "reg"}}),
        )
        .await?;
    let created = store
        .create_object(cm("a", "reg", json!({"app": "x"})))
        .await?;
    // ConfigMaps have no generation, as on a real server.
    assert!(created["metadata"].get("generation").is_none());
    assert!(
        created["metadata"]["uid"]
            .as_str()
            .is_some_and(|u| u.len() == 36)
    );
    assert!(created["metadata"]["resourceVersion"].as_str().is_some());

    let generated = store
        .create(
            &Gvr::core("secrets"),
            Some("reg"),
            json!({"metadata": {"generateName": "token-"}, "data": {}}),
        )
        .await?;
    let name = generated["metadata"]["name"].as_str().unwrap_or_default();
    assert!(name.starts_with("token-") && name.len() == 11, "{name}");
    assert_eq!(generated["kind"], "Secret");

    let gvr = store.resolve_kind("velero.io/v1", "Restore")?;
    assert_eq!(gvr, Gvr::new("velero.io", "v1", "restores"));
    Ok(())
}

#[tokio::test]
async fn watch_replays_from_a_resource_version_and_follows_selectors() -> Result<()> {
    let store = KubeApi::new()?.store();
    let cms = Gvr::core("configmaps");
    store
        .create_object(cm("before", "default", json!({"app": "vault"})))
        .await?;
    let rv = store.resource_version().to_string();
    store
        .create_object(cm("a", "default", json!({"app": "vault"})))
        .await?;
    store
        .create_object(cm("b", "default", json!({"app": "nexus"})))
        .await?;

    let params = ListParams {
        label_selector: Some("app=vault".into()),
        ..ListParams::default()
    };
    let mut stream = store
        .watch_with(&cms, Some("default"), Some(&rv), &params)
        .await?;
    let (t, o) = next(&mut stream).await?;
    assert_eq!(
        (t, o["metadata"]["name"].as_str()),
        (EventType::Added, Some("a"))
    );

    // A relabel out of the selector is a DELETED for this watcher, back in an ADDED.
    store
        .patch_merge(
            &cms,
            Some("default"),
            "a",
            &json!({"metadata": {"labels": {"app": "nexus"}}}),
        )
        .await?;
    assert_eq!(next(&mut stream).await?.0, EventType::Deleted);
    store
        .patch_merge(
            &cms,
            Some("default"),
            "b",
            &json!({"metadata": {"labels": {"app": "vault"}}}),
        )
        .await?;
    let (t, o) = next(&mut stream).await?;
    assert_eq!(
        (t, o["metadata"]["name"].as_str()),
        (EventType::Added, Some("b"))
    );
    store.delete(&cms, Some("default"), "b").await?;
    assert_eq!(next(&mut stream).await?.0, EventType::Deleted);

    // Without a resourceVersion the watch starts with what exists.
    let mut fresh = store.watch(&cms, Some("default"), None).await?;
    let (t, o) = next(&mut fresh).await?;
    assert_eq!(t, EventType::Added);
    assert_eq!(o["metadata"]["name"], "a");
    Ok(())
}

#[tokio::test]
async fn a_watch_from_a_compacted_resource_version_is_gone() -> Result<()> {
    let store = KubeApi::bare().store();
    let cms = Gvr::core("configmaps");
    store.create_object(cm("x", "default", json!({}))).await?;
    let old = store.resource_version().to_string();
    for i in 0..10_050 {
        store
            .patch_merge(
                &cms,
                Some("default"),
                "x",
                &json!({"data": {"i": i.to_string()}}),
            )
            .await?;
    }
    let err = store
        .watch(&cms, Some("default"), Some(&old))
        .await
        .err()
        .context("watch from a compacted resourceVersion")?;
    assert_eq!(err.code(), 410);
    assert_eq!(err.reason(), "Expired");
    Ok(())
}

#[tokio::test]
async fn status_updates_and_conflicts_in_process() -> Result<()> {
    let store = KubeApi::new()?.store();
    let bsl = store.resolve_kind("velero.io/v1", "BackupStorageLocation")?;
    store
        .create_object(
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "velero"}}),
        )
        .await?;
    let created = store
        .create_object(json!({
            "apiVersion": "velero.io/v1", "kind": "BackupStorageLocation",
            "metadata": {"name": "default", "namespace": "velero"},
            "spec": {"provider": "aws", "objectStorage": {"bucket": "backups"}}
        }))
        .await?;
    // Velero's BSL CRD declares no status subresource: status is plain data.
    let mut with_status = created.clone();
    with_status["status"] = json!({"phase": "Available"});
    let updated = store
        .update(&bsl, Some("velero"), with_status.clone())
        .await?;
    assert_eq!(updated["status"]["phase"], "Available");
    // Writing through the stale copy conflicts.
    let err = store
        .update(&bsl, Some("velero"), with_status)
        .await
        .err()
        .context("stale update")?;
    assert!(matches!(err, K8sError::Conflict { .. }));

    // Codebase has a status subresource: update_status writes only status.
    let codebases = Gvr::new("v2.edp.epam.com", "v1", "codebases");
    let cb = store
        .create(
            &codebases,
            Some("velero"),
            json!({"metadata": {"name": "reg"}, "spec": {"defaultBranch": "1.9.7"}}),
        )
        .await?;
    let mut cb2 = cb.clone();
    cb2["status"] = json!({"available": true});
    cb2["spec"]["defaultBranch"] = json!("other");
    let out = store.update_status(&codebases, Some("velero"), cb2).await?;
    assert_eq!(out["status"]["available"], true);
    assert_eq!(out["spec"]["defaultBranch"], "1.9.7");
    Ok(())
}

#[tokio::test]
async fn fault_hook_fails_chosen_operations() -> Result<()> {
    let store = KubeApi::new()?.store();
    store.set_fault_hook(Some(Arc::new(|op: &Operation<'_>| {
        (op.verb == Verb::Create && op.gvr.resource == "secrets").then(|| K8sError::Injected {
            code: 503,
            reason: "ServiceUnavailable".into(),
            message: "injected".into(),
        })
    })));
    let err = store
        .create(
            &Gvr::core("secrets"),
            Some("default"),
            json!({"metadata": {"name": "s"}}),
        )
        .await
        .err()
        .context("injected failure")?;
    assert_eq!(err.code(), 503);
    store
        .create_object(cm("fine", "default", json!({})))
        .await?;
    store.set_fault_hook(None);
    store
        .create(
            &Gvr::core("secrets"),
            Some("default"),
            json!({"metadata": {"name": "s"}}),
        )
        .await?;
    Ok(())
}

#[tokio::test]
async fn a_crd_registered_from_rust_is_served() -> Result<()> {
    let store = KubeApi::bare().store();
    assert!(store.resolve_kind("velero.io/v1", "Backup").is_err());
    let crd: Value = serde_json::from_str(
        r#"{"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "gadgets.example.io"},
            "spec": {"group": "example.io", "scope": "Namespaced",
                     "names": {"plural": "gadgets", "kind": "Gadget"},
                     "versions": [{"name": "v1", "served": true, "storage": true,
                                   "subresources": {"status": {}}}]}}"#,
    )?;
    store.register_crd(crd).await?;
    let gvr = store.resolve_kind("example.io/v1", "Gadget")?;
    let g = store
        .create(
            &gvr,
            Some("default"),
            json!({"metadata": {"name": "g"}, "status": {"x": 1}}),
        )
        .await?;
    assert!(g.get("status").is_none());
    assert!(store.resource_type(&gvr)?.status_subresource);
    Ok(())
}

#[tokio::test]
async fn a_slow_watcher_catches_up_from_the_change_log() -> Result<()> {
    let store = KubeApi::bare().store();
    let cms = Gvr::core("configmaps");
    let mut stream = store.watch(&cms, Some("default"), None).await?;
    // More changes than the live channel holds, none consumed yet.
    for i in 0..5_000 {
        store
            .create_object(cm(&format!("cm-{i:04}"), "default", json!({})))
            .await?;
    }
    for i in 0..5_000 {
        let (t, o) = next(&mut stream).await?;
        assert_eq!(t, EventType::Added);
        assert_eq!(o["metadata"]["name"], format!("cm-{i:04}"));
    }
    Ok(())
}
