//! **Kubelet stand-in for volume reader pods.** The agent's verification
//! starts a pod per volume claim running `ferry-agent volume-digest <mount>`
//! with the claim mounted; a kubelet would run it and keep its termination
//! message. Here no kubelet runs containers, so this runs that command's
//! work itself — the same function, `ferry_common::volume::summarize`, over
//! the claim's sandbox directory (`velero::Volumes`) — and writes what the
//! kubelet would into the pod's status: phase, exit code and the message.
//! It does not pull or run the pod's image; any other command fails the pod.

use serde_json::{Value, json};

use crate::k8s::{Gvr, Store};
use crate::velero::Volumes;

/// The label the agent marks its reader pods with.
pub(super) const READER_LABEL: &str = "ferry.io/volume-reader";
const COMMAND: &str = "volume-digest";

/// Runs one reader pod if it has not ended yet.
pub(super) async fn serve(store: &Store, volumes: &Volumes, pod: &Value) {
    let labels = pod.pointer("/metadata/labels").and_then(Value::as_object);
    if !labels.is_some_and(|l| l.contains_key(READER_LABEL)) {
        return;
    }
    let phase = pod.pointer("/status/phase").and_then(Value::as_str);
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return;
    }
    let ns = str_at(pod, "/metadata/namespace");
    let name = str_at(pod, "/metadata/name");
    let started = jiff::Timestamp::now().to_string();
    let (code, message) = match claim_dir(pod, volumes) {
        Ok(dir) => {
            let summary = tokio::task::spawn_blocking(move || {
                std::fs::create_dir_all(&dir)
                    .map_err(|e| format!("error: cannot create {}: {e}", dir.display()))?;
                ferry_common::volume::summarize(&dir).map_err(|e| format!("error: {e}"))
            })
            .await;
            match summary {
                Ok(Ok(s)) => (0, s.to_string()),
                Ok(Err(e)) => (1, e),
                Err(e) => (1, format!("error: the reader stopped: {e}")),
            }
        }
        Err(e) => (1, format!("error: {e}")),
    };
    let container = pod
        .pointer("/spec/containers/0")
        .cloned()
        .unwrap_or_default();
    let status = json!({"status": {
        "phase": if code == 0 { "Succeeded" } else { "Failed" },
        "containerStatuses": [{
            "name": container["name"].as_str().unwrap_or("volume-digest"),
            "image": container["image"].as_str().unwrap_or_default(),
            "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {
                "exitCode": code, "reason": if code == 0 { "Completed" } else { "Error" },
                "message": message, "startedAt": started,
                "finishedAt": jiff::Timestamp::now().to_string(),
            }},
        }],
    }});
    let pods = Gvr::core("pods");
    match store
        .patch_status_merge(&pods, Some(ns), name, &status)
        .await
    {
        Ok(_) => {}
        Err(e) if e.is_not_found() => {}
        Err(error) => {
            tracing::warn!(%error, pod = name, "reader pod stand-in could not set status")
        }
    }
}

/// The sandbox directory of the claim mounted where the command reads.
fn claim_dir(pod: &Value, volumes: &Volumes) -> Result<std::path::PathBuf, String> {
    let ns = str_at(pod, "/metadata/namespace");
    let container = pod
        .pointer("/spec/containers/0")
        .ok_or("the pod has no container")?;
    let words: Vec<&str> = ["command", "args"]
        .iter()
        .filter_map(|k| container.get(*k).and_then(Value::as_array))
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let at = words.iter().position(|w| *w == COMMAND).ok_or_else(|| {
        format!("the sandbox runs only `ferry-agent {COMMAND} <dir>`, not {words:?}")
    })?;
    let dir = words
        .get(at + 1)
        .ok_or_else(|| format!("`{COMMAND}` without a directory"))?;
    let mount = container
        .get("volumeMounts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|m| m["mountPath"].as_str() == Some(dir))
        .and_then(|m| m["name"].as_str())
        .ok_or_else(|| format!("nothing is mounted at {dir}"))?;
    let claim = pod
        .pointer("/spec/volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|v| v["name"].as_str() == Some(mount))
        .and_then(|v| v.pointer("/persistentVolumeClaim/claimName"))
        .and_then(Value::as_str)
        .ok_or_else(|| format!("volume {mount} is not a claim"))?;
    if [ns, claim]
        .iter()
        .any(|n| n.is_empty() || n.contains(['/', '\\']) || n.starts_with('.'))
    {
        return Err(format!("claim {ns}/{claim} is not a name"));
    }
    Ok(volumes.dir(ns, claim))
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}
