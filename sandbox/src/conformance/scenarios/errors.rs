//! Error scenarios: the `Status` bodies of failed requests, read raw
//! through `kubectl proxy`, and what kubectl prints for them.

use std::collections::BTreeMap;

use anyhow::Result;
use serde_json::json;

use super::super::kubectl::RawAnswer;
use super::super::{ErrorBody, Errors};
use super::{Ctx, at, int_at};

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

pub(super) async fn errors(cx: &Ctx) -> Result<Errors> {
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
