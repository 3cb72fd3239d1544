//! The scenarios, in the order they build on each other: a namespace, a
//! deployment in it, ConfigMaps applied, diffed, selected and watched, then
//! errors, explain and tables. One file per kind of scenario.

mod errors;
mod objects;
mod reads;
mod watches;

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;

use super::Observations;
use super::kubectl::Kubectl;

/// How long a watch may take to show a change.
pub(super) const WATCH_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) const SUITE: &str = "suite=conformance";

pub(super) struct Ctx {
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

pub(super) fn at(v: &Value, path: &[&str]) -> Value {
    path.iter()
        .try_fold(v, |v, key| v.get(*key))
        .cloned()
        .unwrap_or(Value::Null)
}

pub(super) fn int_at(v: &Value, path: &[&str]) -> Option<i64> {
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
        create_namespace: objects::create_namespace(cx)
            .await
            .context("scenario create_namespace")?,
        typed_creates: objects::typed_creates(cx)
            .await
            .context("scenario typed_creates")?,
        create_deployment: objects::create_deployment(cx)
            .await
            .context("scenario create_deployment")?,
        scale: objects::scale(cx).await.context("scenario scale")?,
        server_side_apply: objects::server_side_apply(cx)
            .await
            .context("scenario server_side_apply")?,
        diff: objects::diff(cx).await.context("scenario diff")?,
        dry_run: objects::dry_run(cx).await.context("scenario dry_run")?,
        label_selectors: reads::label_selectors(cx)
            .await
            .context("scenario label_selectors")?,
        field_selectors: reads::field_selectors(cx)
            .await
            .context("scenario field_selectors")?,
        watch_update: watches::watch_update(cx)
            .await
            .context("scenario watch_update")?,
        errors: errors::errors(cx).await.context("scenario errors")?,
        watch_resume: watches::watch_resume(cx)
            .await
            .context("scenario watch_resume")?,
        explain: reads::explain(cx).await.context("scenario explain")?,
        table_headers: reads::table_headers(cx)
            .await
            .context("scenario table_headers")?,
    })
}
