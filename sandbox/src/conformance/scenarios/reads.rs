//! Scenarios that read: label and field selectors, explain, table headers.

use std::collections::BTreeMap;

use anyhow::Result;

use super::super::{Explain, Selections, TableHeaders};
use super::{Ctx, SUITE};

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

pub(super) async fn names(cx: &Ctx, extra: &[&str]) -> Result<Vec<String>> {
    let mut args = vec!["get", "configmaps", "-o", "name"];
    args.extend_from_slice(extra);
    let out = cx.k.ok(&cx.n(&args)).await?;
    let mut names: Vec<String> = out.lines().map(|l| cx.norm(l)).collect();
    names.sort();
    Ok(names)
}

pub(super) async fn label_selectors(cx: &Ctx) -> Result<Selections> {
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

pub(super) async fn field_selectors(cx: &Ctx) -> Result<Selections> {
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

pub(super) async fn explain(cx: &Ctx) -> Result<Explain> {
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

pub(super) async fn table_headers(cx: &Ctx) -> Result<TableHeaders> {
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
