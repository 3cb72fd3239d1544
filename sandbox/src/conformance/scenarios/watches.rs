//! Watch scenarios: `kubectl get -w` seeing a change, and a raw watch
//! resumed from a list's resourceVersion.

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tokio::io::AsyncReadExt;

use super::super::{WatchResume, WatchUpdate};
use super::{Ctx, WATCH_TIMEOUT, at};

/// Collects JSON documents from a stream of concatenated (pretty) JSON.
#[derive(Default)]
struct JsonDocs {
    buf: Vec<u8>,
}

impl JsonDocs {
    fn push(&mut self, bytes: &[u8]) -> Result<Vec<Value>> {
        self.buf.extend_from_slice(bytes);
        let mut docs = Vec::new();
        let mut stream = serde_json::Deserializer::from_slice(&self.buf).into_iter::<Value>();
        let mut used = 0;
        loop {
            match stream.next() {
                Some(Ok(v)) => {
                    docs.push(v);
                    used = stream.byte_offset();
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(e)) => bail!("kubectl printed something that is not JSON: {e}"),
                None => break,
            }
        }
        self.buf.drain(..used);
        Ok(docs)
    }
}

fn event_line(event: &Value) -> String {
    let kind = event["type"].as_str().unwrap_or("?");
    let name = at(event, &["object", "metadata", "name"]);
    let stage = at(event, &["object", "metadata", "labels", "stage"]);
    match stage.as_str() {
        Some(stage) => format!("{kind} {} stage={stage}", name.as_str().unwrap_or("?")),
        None => format!("{kind} {}", name.as_str().unwrap_or("?")),
    }
}

pub(super) async fn watch_update(cx: &Ctx) -> Result<WatchUpdate> {
    let mut child = cx.k.spawn(&cx.n(&[
        "get",
        "configmap",
        "cm-a",
        "-w",
        "--output-watch-events",
        "-o",
        "json",
    ]))?;
    let mut stdout = child
        .stdout
        .take()
        .context("kubectl get -w has no stdout")?;
    let mut docs = JsonDocs::default();
    let mut events = Vec::new();
    let mut changed = false;
    let mut chunk = vec![0u8; 16 * 1024];
    let watching = async {
        loop {
            let n = stdout
                .read(&mut chunk)
                .await
                .context("reading kubectl get -w")?;
            if n == 0 {
                bail!("kubectl get -w ended before showing the change; saw {events:?}");
            }
            for doc in docs.push(&chunk[..n])? {
                let line = event_line(&doc);
                let done = line.ends_with("stage=updated");
                events.push(line);
                if done {
                    return Ok(());
                }
            }
            if !changed && !events.is_empty() {
                changed = true;
                cx.k.ok(&cx.n(&["label", "configmap", "cm-a", "stage=updated"]))
                    .await?;
            }
        }
    };
    let outcome = tokio::time::timeout(WATCH_TIMEOUT, watching).await;
    let _ = child.kill().await;
    match outcome {
        Ok(result) => result?,
        Err(_) => bail!("kubectl get -w showed no change within {WATCH_TIMEOUT:?}"),
    }
    Ok(WatchUpdate { events })
}

pub(super) async fn watch_resume(cx: &Ctx) -> Result<WatchResume> {
    // `kubectl get -o json` prints a List of its own, without the server's
    // resourceVersion: ask for the server's list as it is.
    let collection = format!("/api/v1/namespaces/{}/configmaps", cx.ns);
    let selected = format!("{collection}?labelSelector=suite%3Dconformance");
    let list = cx.k.json(&["get", "--raw", &selected]).await?;
    let rv = at(&list, &["metadata", "resourceVersion"]);
    let rv = rv
        .as_str()
        .filter(|rv| !rv.is_empty())
        .with_context(|| format!("the list {selected} has no resourceVersion"))?;
    cx.k.ok(&cx.n(&["label", "configmap", "cm-b", "stage=resumed"]))
        .await?;
    cx.k.ok(&cx.n(&["delete", "configmap", "cm-c"])).await?;
    let watch = format!("{selected}&watch=1&resourceVersion={rv}&timeoutSeconds=2");
    let out = cx.k.ok(&["get", "--raw", &watch]).await?;
    let mut docs = JsonDocs::default();
    let events = docs.push(out.as_bytes())?.iter().map(event_line).collect();
    Ok(WatchResume { events })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_docs_split_across_reads() -> Result<()> {
        let mut docs = JsonDocs::default();
        assert!(docs.push(b"{\"type\": \"ADDED\", \"obj")?.is_empty());
        let got = docs.push(b"ect\": {}}\n{\"type\": \"MODIFIED\"}\n{\"ty")?;
        assert_eq!(got.len(), 2);
        assert_eq!(got[1]["type"], "MODIFIED");
        assert!(docs.push(b"pe\": 1").is_ok_and(|d| d.is_empty()));
        assert!(docs.push(b"} oops").is_err());
        Ok(())
    }
}
