//! The scenarios, in the order they build on each other: a namespace, a
//! deployment in it, ConfigMaps applied, diffed, selected and watched.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

use super::kubectl::{Kubectl, RawAnswer};
use super::{
    CreateDeployment, CreateNamespace, Diff, DryRun, ErrorBody, Errors, Explain, Observations,
    Scale, Selections, ServerSideApply, TableHeaders, TypedCreates, WatchResume, WatchUpdate,
};

/// How long a watch may take to show a change.
const WATCH_TIMEOUT: Duration = Duration::from_secs(30);

const SUITE: &str = "suite=conformance";

struct Ctx {
    k: Kubectl,
    ns: String,
}

impl Ctx {
    /// Replaces the run's namespace by `$NS` and trims trailing whitespace.
    fn norm(&self, s: &str) -> String {
        s.replace(&self.ns, "$NS").trim_end().to_string()
    }

    /// [`Ctx::norm`] applied to every string in a JSON value.
    fn norm_value(&self, v: &Value) -> Result<Value> {
        serde_json::from_str(&self.norm(&v.to_string()))
            .context("a normalised value is no longer JSON")
    }

    fn n<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut v = args.to_vec();
        v.extend(["-n", self.ns.as_str()]);
        v
    }

    async fn get(&self, kind: &str, name: &str) -> Result<Value> {
        self.k
            .json(&self.n(&["get", kind, name, "-o", "json"]))
            .await
    }
}

fn at(v: &Value, path: &[&str]) -> Value {
    path.iter()
        .try_fold(v, |v, key| v.get(*key))
        .cloned()
        .unwrap_or(Value::Null)
}

fn int_at(v: &Value, path: &[&str]) -> Option<i64> {
    at(v, path).as_i64()
}

pub(super) async fn run_all(kubectl: &Path, kubeconfig: &Path) -> Result<Observations> {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let ns = format!("conformance-{}", &suffix[..8]);
    let dir = std::env::temp_dir().join(format!("ferry-{ns}"));
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating the scenario directory {}", dir.display()))?;
    let cx = Ctx {
        k: Kubectl::new(kubectl, kubeconfig, dir.clone()),
        ns,
    };
    let observed = run_scenarios(&cx).await;
    // Best effort: a failed scenario's error matters more than cleanup's.
    let _ =
        cx.k.run(&["delete", "namespace", &cx.ns, "--wait=false"])
            .await;
    let _ = std::fs::remove_dir_all(&dir);
    observed
}

async fn run_scenarios(cx: &Ctx) -> Result<Observations> {
    Ok(Observations {
        create_namespace: create_namespace(cx)
            .await
            .context("scenario create_namespace")?,
        typed_creates: typed_creates(cx).await.context("scenario typed_creates")?,
        create_deployment: create_deployment(cx)
            .await
            .context("scenario create_deployment")?,
        scale: scale(cx).await.context("scenario scale")?,
        server_side_apply: server_side_apply(cx)
            .await
            .context("scenario server_side_apply")?,
        diff: diff(cx).await.context("scenario diff")?,
        dry_run: dry_run(cx).await.context("scenario dry_run")?,
        label_selectors: label_selectors(cx)
            .await
            .context("scenario label_selectors")?,
        field_selectors: field_selectors(cx)
            .await
            .context("scenario field_selectors")?,
        watch_update: watch_update(cx).await.context("scenario watch_update")?,
        errors: errors(cx).await.context("scenario errors")?,
        watch_resume: watch_resume(cx).await.context("scenario watch_resume")?,
        explain: explain(cx).await.context("scenario explain")?,
        table_headers: table_headers(cx).await.context("scenario table_headers")?,
    })
}

async fn create_namespace(cx: &Ctx) -> Result<CreateNamespace> {
    let dry_name = format!("{}-dry", cx.ns);
    let dry =
        cx.k.ok(&["create", "namespace", &dry_name, "--dry-run=server"])
            .await?;
    let dry_left = cx.k.run(&["get", "namespace", &dry_name]).await?.ok();
    let created = cx.k.run(&["create", "namespace", &cx.ns]).await?;
    let ns =
        cx.k.json(&["get", "namespace", &cx.ns, "-o", "json"])
            .await?;
    Ok(CreateNamespace {
        exit: created.code,
        output: cx.norm(&created.stdout),
        phase: at(&ns, &["status", "phase"]).as_str().map(str::to_string),
        labels: cx.norm_value(&at(&ns, &["metadata", "labels"]))?,
        dry_run_output: cx.norm(&dry),
        dry_run_left_object: dry_left,
    })
}

async fn typed_creates(cx: &Ctx) -> Result<TypedCreates> {
    let mut outputs = Vec::new();
    for args in [
        &["create", "configmap", "literal", "--from-literal=mode=one"][..],
        &[
            "create",
            "secret",
            "generic",
            "creds",
            "--from-literal=password=pw",
        ],
        &["create", "service", "clusterip", "web", "--tcp=80:8080"],
        &["create", "serviceaccount", "robot"],
    ] {
        outputs.push(cx.norm(&cx.k.ok(&cx.n(args)).await?));
    }
    let cm = cx.get("configmap", "literal").await?;
    let secret = cx.get("secret", "creds").await?;
    let svc = cx.get("service", "web").await?;
    let sa = cx.k.run(&cx.n(&["get", "serviceaccount", "robot"])).await?;
    let generated = cx.k.manifest(
        "generated.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  generateName: gen-\n  labels: {suite: conformance}\ndata: {k: v}\n",
    )?;
    let name =
        cx.k.ok(&cx.n(&["create", "-f", &generated, "-o", "name"]))
            .await?;
    let name = name.trim();
    let generated_name = match name.strip_prefix("configmap/gen-") {
        Some(suffix) if suffix.len() == 5 && suffix.chars().all(|c| c.is_ascii_alphanumeric()) => {
            "configmap/gen-<generated>".to_string()
        }
        _ => cx.norm(name),
    };
    // Leave only the labelled ConfigMaps for the selector scenarios.
    cx.k.ok(&cx.n(&["delete", name])).await?;
    Ok(TypedCreates {
        outputs,
        configmap_data: at(&cm, &["data"]),
        secret_data: at(&secret, &["data"]),
        secret_type: at(&secret, &["type"]).as_str().map(str::to_string),
        service_ports: at(&svc, &["spec", "ports"]),
        service_selector: at(&svc, &["spec", "selector"]),
        service_spec: {
            let mut spec = at(&svc, &["spec"]);
            if let Some(map) = spec.as_object_mut() {
                map.remove("clusterIP");
                map.remove("clusterIPs");
            }
            spec
        },
        serviceaccount_exists: sa.ok(),
        generated_name,
    })
}

async fn create_deployment(cx: &Ctx) -> Result<CreateDeployment> {
    let created =
        cx.k.run(&cx.n(&[
            "create",
            "deployment",
            "web",
            "--image=registry.example/web:1.0",
            "--port=8080",
        ]))
        .await?;
    let d = cx.get("deployment", "web").await?;
    let containers: Vec<Value> = at(&d, &["spec", "template", "spec", "containers"])
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| json!({"name": c["name"], "image": c["image"], "ports": c["ports"]}))
        .collect();
    Ok(CreateDeployment {
        exit: created.code,
        output: cx.norm(&created.stdout),
        replicas: int_at(&d, &["spec", "replicas"]),
        selector: at(&d, &["spec", "selector"]),
        labels: at(&d, &["metadata", "labels"]),
        containers: Value::Array(containers),
        generation: int_at(&d, &["metadata", "generation"]),
        spec: at(&d, &["spec"]),
    })
}

async fn scale(cx: &Ctx) -> Result<Scale> {
    let scaled =
        cx.k.run(&cx.n(&["scale", "deployment", "web", "--replicas=3"]))
            .await?;
    let d = cx.get("deployment", "web").await?;
    let refused =
        cx.k.run(&cx.n(&[
            "scale",
            "deployment",
            "web",
            "--replicas=5",
            "--current-replicas=7",
        ]))
        .await?;
    let after = cx.get("deployment", "web").await?;
    Ok(Scale {
        exit: scaled.code,
        output: cx.norm(&scaled.stdout),
        replicas: int_at(&d, &["spec", "replicas"]),
        generation: int_at(&d, &["metadata", "generation"]),
        wrong_precondition_exit: refused.code,
        replicas_after_refusal: int_at(&after, &["spec", "replicas"]),
    })
}

fn settings(mode: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  labels:\n    suite: conformance\n    app: registry\ndata:\n  mode: {mode}\n  url: https://registry.example\n"
    )
}

async fn server_side_apply(cx: &Ctx) -> Result<ServerSideApply> {
    let one = cx.k.manifest("settings-one.yaml", &settings("one"))?;
    let two = cx.k.manifest("settings-two.yaml", &settings("two"))?;
    let created =
        cx.k.ok(&cx.n(&["apply", "--server-side", "-f", &one]))
            .await?;
    let updated =
        cx.k.ok(&cx.n(&["apply", "--server-side", "-f", &two]))
            .await?;
    let cm = cx.get("configmap", "settings").await?;
    Ok(ServerSideApply {
        create_output: cx.norm(&created),
        update_output: cx.norm(&updated),
        data: at(&cm, &["data"]),
        labels: at(&cm, &["metadata", "labels"]),
    })
}

async fn diff(cx: &Ctx) -> Result<Diff> {
    let two = cx.k.manifest("settings-two.yaml", &settings("two"))?;
    let three = cx.k.manifest("settings-three.yaml", &settings("three"))?;
    let same =
        cx.k.run(&cx.n(&["diff", "--server-side", "-f", &two]))
            .await?;
    let changed =
        cx.k.run(&cx.n(&["diff", "--server-side", "-f", &three]))
            .await?;
    ensure!(
        changed.code <= 1,
        "kubectl diff failed ({}): {}",
        changed.code,
        changed.stderr
    );
    let client_side = cx.k.run(&cx.n(&["diff", "-f", &three])).await?;
    let changed_lines = changed
        .stdout
        .lines()
        .filter(|l| {
            (l.starts_with('+') || l.starts_with('-'))
                && !l.starts_with("+++")
                && !l.starts_with("---")
        })
        .map(|l| cx.norm(l))
        .collect();
    let cm = cx.get("configmap", "settings").await?;
    Ok(Diff {
        same_exit: same.code,
        same_output: cx.norm(&format!("{}{}", same.stdout, same.stderr)),
        changed_exit: changed.code,
        changed_lines,
        client_side_changed_exit: client_side.code,
        live_after: at(&cm, &["data"]),
    })
}

async fn dry_run(cx: &Ctx) -> Result<DryRun> {
    let three = cx.k.manifest("settings-three.yaml", &settings("three"))?;
    let applied =
        cx.k.ok(&cx.n(&["apply", "--server-side", "--dry-run=server", "-f", &three]))
            .await?;
    let client_side =
        cx.k.ok(&cx.n(&["apply", "--dry-run=server", "-f", &three]))
            .await?;
    let deleted =
        cx.k.ok(&cx.n(&["delete", "configmap", "settings", "--dry-run=server"]))
            .await?;
    let cm = cx.get("configmap", "settings").await?;
    let created =
        cx.k.json(&cx.n(&[
            "create",
            "deployment",
            "dry",
            "--image=registry.example/web:1.0",
            "--dry-run=server",
            "-o",
            "json",
        ]))
        .await?;
    let created_metadata = ["uid", "resourceVersion", "creationTimestamp", "generation"]
        .into_iter()
        .map(|f| (f.to_string(), !at(&created, &["metadata", f]).is_null()))
        .collect();
    let left = cx.k.run(&cx.n(&["get", "deployment", "dry"])).await?;
    Ok(DryRun {
        apply_output: cx.norm(&applied),
        client_side_apply_output: cx.norm(&client_side),
        delete_output: cx.norm(&deleted),
        live_after: at(&cm, &["data"]),
        created_metadata,
        created_replicas: int_at(&created, &["spec", "replicas"]),
        created_left_object: left.ok(),
    })
}

const SELECTABLE: &str = "apiVersion: v1
kind: ConfigMap
metadata:
  name: cm-a
  labels: {suite: conformance, tier: a}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: cm-b
  labels: {suite: conformance, tier: b}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: cm-c
  labels: {suite: conformance}
";

async fn names(cx: &Ctx, extra: &[&str]) -> Result<Vec<String>> {
    let mut args = vec!["get", "configmaps", "-o", "name"];
    args.extend_from_slice(extra);
    let out = cx.k.ok(&cx.n(&args)).await?;
    let mut names: Vec<String> = out.lines().map(|l| cx.norm(l)).collect();
    names.sort();
    Ok(names)
}

async fn label_selectors(cx: &Ctx) -> Result<Selections> {
    let path = cx.k.manifest("selectable.yaml", SELECTABLE)?;
    cx.k.ok(&cx.n(&["create", "-f", &path])).await?;
    let mut results = BTreeMap::new();
    for selector in [
        "tier=a",
        "tier==b",
        "suite=conformance,tier!=a",
        "tier in (a,b)",
        "suite=conformance,tier notin (a)",
        "tier",
        "suite=conformance,!tier",
        "tier=z",
    ] {
        results.insert(selector.to_string(), names(cx, &["-l", selector]).await?);
    }
    Ok(Selections { results })
}

async fn field_selectors(cx: &Ctx) -> Result<Selections> {
    let mut results = BTreeMap::new();
    let in_ns = format!("metadata.namespace={}", cx.ns);
    for selector in [
        "metadata.name=cm-a",
        "metadata.name==cm-b",
        "metadata.name!=cm-a",
        in_ns.as_str(),
        "metadata.name=absent",
    ] {
        results.insert(
            cx.norm(selector),
            names(cx, &["-l", SUITE, "--field-selector", selector]).await?,
        );
    }
    Ok(Selections { results })
}

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

async fn watch_update(cx: &Ctx) -> Result<WatchUpdate> {
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

fn error_body(answer: &RawAnswer, cx: &Ctx) -> ErrorBody {
    let b = &answer.body;
    let s = |path: &[&str]| {
        at(b, path)
            .as_str()
            .filter(|s| !s.is_empty())
            .map(|s| cx.norm(s))
    };
    let causes = at(b, &["details", "causes"])
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            format!(
                "{}: {}",
                c["field"].as_str().unwrap_or(""),
                c["reason"].as_str().unwrap_or("")
            )
        })
        .collect();
    ErrorBody {
        http_status: answer.status,
        kind: s(&["kind"]),
        api_version: s(&["apiVersion"]),
        status: s(&["status"]),
        reason: s(&["reason"]),
        code: int_at(b, &["code"]),
        message: s(&["message"]),
        details_name: s(&["details", "name"]),
        details_kind: s(&["details", "kind"]),
        details_group: s(&["details", "group"]),
        causes,
    }
}

async fn errors(cx: &Ctx) -> Result<Errors> {
    let proxy = cx.k.proxy().await?;
    let base = format!("/api/v1/namespaces/{}/configmaps", cx.ns);
    let not_found = proxy
        .request("GET", &format!("{base}/absent"), None)
        .await?;
    let exists = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm-a"}});
    let already = proxy.request("POST", &base, Some(&exists)).await?;
    let nameless = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"labels": {"suite": "conformance"}}});
    let invalid = proxy.request("POST", &base, Some(&nameless)).await?;
    let kubectl_404 = cx.k.run(&cx.n(&["get", "configmap", "absent"])).await?;
    let badly_named =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name"}});
    let invalid_name = proxy.request("POST", &base, Some(&badly_named)).await?;
    let mut kubectl_invalid_names = BTreeMap::new();
    for args in [
        &["create", "configmap", "Bad_Name"][..],
        &["create", "namespace", "bad.ns"],
        &["create", "service", "clusterip", "a.b", "--tcp=80"],
        &[
            "create",
            "deployment",
            "Web",
            "--image=registry.example/web:1.0",
        ],
    ] {
        let run = cx.k.run(&cx.n(args)).await?;
        kubectl_invalid_names.insert(args.join(" "), (run.code, cx.norm(&run.stderr)));
    }
    Ok(Errors {
        not_found: error_body(&not_found, cx),
        already_exists: error_body(&already, cx),
        invalid: error_body(&invalid, cx),
        kubectl_not_found: format!("{} {}", kubectl_404.code, cx.norm(&kubectl_404.stderr)),
        invalid_name: error_body(&invalid_name, cx),
        kubectl_invalid_names,
    })
}

async fn watch_resume(cx: &Ctx) -> Result<WatchResume> {
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

async fn explain(cx: &Ctx) -> Result<Explain> {
    let mut results = BTreeMap::new();
    for field in [
        "deployment.spec.replicas",
        "deployment.spec.template.spec.containers.ports",
        "configmap.data",
    ] {
        let run = cx.k.run(&["explain", field]).await?;
        let header = run
            .stdout
            .lines()
            .filter(|l| {
                ["GROUP:", "KIND:", "VERSION:", "FIELD:"]
                    .iter()
                    .any(|p| l.starts_with(p))
            })
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        results.insert(field.to_string(), (run.code, header));
    }
    Ok(Explain { results })
}

async fn table_headers(cx: &Ctx) -> Result<TableHeaders> {
    let mut results = BTreeMap::new();
    for args in [
        &["deployments"][..],
        &["deployments", "-o", "wide"],
        &["services"],
        &["services", "-o", "wide"],
        &["configmaps"],
        &["secrets"],
        &["serviceaccounts", "robot"],
        &["namespaces", cx.ns.as_str()],
    ] {
        let mut get = vec!["get"];
        get.extend_from_slice(args);
        let out = cx.k.ok(&cx.n(&get)).await?;
        let header = out.lines().next().unwrap_or_default();
        results.insert(
            cx.norm(&args.join(" ")),
            header.split_whitespace().collect::<Vec<_>>().join(" "),
        );
    }
    Ok(TableHeaders { results })
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
