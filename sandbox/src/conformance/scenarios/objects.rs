//! Scenarios that make and change objects: namespaces, typed creates,
//! deployments and their scale, server-side apply, diff and dry runs.

use anyhow::{Result, ensure};
use serde_json::{Value, json};

use super::super::{
    CreateDeployment, CreateNamespace, Diff, DryRun, Scale, ServerSideApply, TypedCreates,
};
use super::{Ctx, at, int_at};

pub(super) async fn create_namespace(cx: &Ctx) -> Result<CreateNamespace> {
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

pub(super) async fn typed_creates(cx: &Ctx) -> Result<TypedCreates> {
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

pub(super) async fn create_deployment(cx: &Ctx) -> Result<CreateDeployment> {
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

pub(super) async fn scale(cx: &Ctx) -> Result<Scale> {
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

pub(super) async fn server_side_apply(cx: &Ctx) -> Result<ServerSideApply> {
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

pub(super) async fn diff(cx: &Ctx) -> Result<Diff> {
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

pub(super) async fn dry_run(cx: &Ctx) -> Result<DryRun> {
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
