//! **Kubelet stand-in for volume holder pods.** Before a backup the agent
//! starts a pod per idle volume claim (`ferry-agent hold`, the claim
//! mounted) so that Velero's file-system backup has a running pod to read
//! the volume through, and waits until it runs. Here no kubelet runs
//! containers: this reports such a pod Running at once, its container
//! started, as a kubelet would once the image ran. Nothing runs; the
//! sandbox's Velero reads the claim's directory itself.

use ferry_common::labels::{APP_NAME, VOLUME_HOLDER_APP};
use serde_json::{Value, json};

use crate::k8s::{Gvr, Store};

/// Reports one holder pod Running if it is not yet.
pub(super) async fn serve(store: &Store, pod: &Value) {
    let app = pod
        .pointer("/metadata/labels")
        .and_then(|l| l.get(APP_NAME))
        .and_then(Value::as_str);
    if app != Some(VOLUME_HOLDER_APP)
        || pod.pointer("/status/phase").is_some_and(|p| p == "Running")
    {
        return;
    }
    let (ns, name) = (
        pod.pointer("/metadata/namespace").and_then(Value::as_str),
        pod.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default(),
    );
    let container = pod
        .pointer("/spec/containers/0")
        .cloned()
        .unwrap_or_default();
    let now = jiff::Timestamp::now().to_string();
    let status = json!({"status": {
        "phase": "Running",
        "startTime": now,
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}],
        "containerStatuses": [{
            "name": container["name"].as_str().unwrap_or("hold"),
            "image": container["image"].as_str().unwrap_or_default(),
            "imageID": "", "ready": true, "started": true, "restartCount": 0,
            "state": {"running": {"startedAt": now}},
        }],
    }});
    match store
        .patch_status_merge(&Gvr::core("pods"), ns, name, &status)
        .await
    {
        Ok(_) => {}
        Err(e) if e.is_not_found() => {}
        Err(error) => {
            tracing::warn!(%error, pod = name, "holder pod stand-in could not set status")
        }
    }
}
