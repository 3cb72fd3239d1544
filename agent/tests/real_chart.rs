//! The Helm charts on a real control plane: both install (real Helm, built
//! by `scripts/realstack`) into a namespace that enforces Kubernetes'
//! `restricted` Pod Security level — the upstream counterpart of OKD's
//! restricted SCC — and the agent, holding nothing but the chart's
//! ServiceAccount token, runs its cluster steps: the RBAC is enough. The
//! same token is refused what the agent must not do: least privilege.

#[macro_use]
mod steps;

use std::process::Command;

use ferry_testkit::kube::realstack_binary;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Patch, PatchParams, PostParams};
use steps::*;

const RELEASE: &str = "ferry-agent";
const FERRY_NS: &str = "ferry";

fn chart(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/charts")
        .join(name)
}

/// Runs helm against the real cluster; fails with helm's own words.
fn helm(side: &Side, args: &[&str]) -> Result<String> {
    let out = Command::new(realstack_binary("helm")?)
        .args(args)
        .arg("--kubeconfig")
        .arg(&side.kubeconfig)
        .env("HELM_CACHE_HOME", side.cluster.dir().join("helm-cache"))
        .env("HELM_CONFIG_HOME", side.cluster.dir().join("helm-config"))
        .env("HELM_DATA_HOME", side.cluster.dir().join("helm-data"))
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "helm {args:?} failed: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(text)
}

/// A token of the chart's ServiceAccount, as the pod would mount it.
async fn service_account_token(admin: &kube::Client) -> Result<String> {
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), FERRY_NS);
    let request: TokenRequest = serde_json::from_value(json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "spec": {"expirationSeconds": 3600},
    }))?;
    let issued = accounts
        .create_token_request(RELEASE, &PostParams::default(), &request)
        .await?;
    issued
        .status
        .and_then(|s| s.token)
        .context("the TokenRequest came back without a token")
}

/// `Some(code)` of the API's refusal, `None` when it was allowed.
fn refusal<T>(result: kube::Result<T>) -> Option<u16> {
    match result {
        Ok(_) => None,
        Err(kube::Error::Api(s)) => Some(s.code),
        Err(_) => Some(0),
    }
}

#[tokio::test]
async fn the_charts_install_and_the_agent_account_is_enough_and_no_more() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let admin_side = real_side(dir.path(), "a", source_seed()).await?;
    let admin = client(&admin_side).await?;

    // Both charts, into a namespace enforcing the restricted profile.
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": FERRY_NS, "labels": {
                    "pod-security.kubernetes.io/enforce": "restricted",
                    "pod-security.kubernetes.io/enforce-version": "latest"}},
            }))?,
        )
        .await?;
    for (release, name, extra) in [
        (
            RELEASE,
            "ferry-agent",
            vec!["--set", "clusterId=a", "--set", "registries={reg-one}"],
        ),
        ("ferry", "ferry-coordinator", vec![]),
    ] {
        let chart = chart(name);
        let chart = chart.display().to_string();
        let mut args = vec!["install", release, chart.as_str(), "--namespace", FERRY_NS];
        args.extend(extra);
        helm(&admin_side, &args)?;
    }
    // The restricted profile admits both pods (a violation would leave the
    // ReplicaSets without pods and an event saying why).
    let pods: Api<Pod> = Api::namespaced(admin.clone(), FERRY_NS);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let names: Vec<String> = pods
            .list(&Default::default())
            .await?
            .items
            .iter()
            .map(|p| p.name_any())
            .collect();
        if names.iter().any(|n| n.starts_with("ferry-agent-"))
            && names.iter().any(|n| n.starts_with("ferry-coordinator-"))
        {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            let events = Command::new(realstack_binary("kubectl")?)
                .args(["get", "events", "-n", FERRY_NS, "--kubeconfig"])
                .arg(&admin_side.kubeconfig)
                .output()?;
            bail!(
                "the charts' pods were not admitted under the restricted profile: {names:?}\n{}",
                String::from_utf8_lossy(&events.stdout)
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // The agent as the chart runs it: nothing but its ServiceAccount.
    let token = service_account_token(&admin).await?;
    let kubeconfig = dir.path().join("agent-sa.kubeconfig");
    admin_side
        .real
        .as_ref()
        .context("a real side")?
        .write_token_kubeconfig(&kubeconfig, &token)?;
    let agent = with_kubeconfig(admin_side, dir.path(), &kubeconfig)?;
    let sa = client(&agent).await?;

    let src = preflight(&agent, ClusterRole::Source).await?;
    assert_eq!(failed(&src), BTreeSet::new(), "{src:#?}");
    let q = quiesce(&agent, false).await?;
    assert_eq!((q.workloads, q.changed), (24, 24));
    let inv = inventory(&agent).await?;
    assert_eq!(inv.workloads, 24);
    assert!(inv.items.contains_key("secrets"), "{:?}", inv.items);
    assert_eq!(quiesce(&agent, true).await?.changed, 24);
    let r = expect!(
        step(
            &agent,
            Kind::Reconfigure(pb::ReconfigureStep {
                from_apps_domain: A_DOMAIN.into(),
                to_apps_domain: B_DOMAIN.into(),
            })
        )
        .await?,
        Reconfigure
    );
    assert!(r.rewritten > 20 && r.passwords_reset == 4, "{r:?}");

    // Least privilege: no Secret outside the registry (and Keycloak's one
    // admin Secret), nothing cluster-scoped it does not need.
    let secrets = |ns: &str| -> Api<Secret> { Api::namespaced(sa.clone(), ns) };
    assert_eq!(
        refusal(secrets("default").list(&Default::default()).await),
        Some(403)
    );
    assert_eq!(
        refusal(secrets(FERRY_NS).list(&Default::default()).await),
        Some(403)
    );
    assert_eq!(
        refusal(secrets("velero").get("cloud-credentials").await),
        Some(403)
    );
    assert_eq!(
        refusal(secrets("control-plane").list(&Default::default()).await),
        Some(403)
    );
    assert_eq!(
        refusal(
            Api::<Secret>::all(sa.clone())
                .list(&Default::default())
                .await
        ),
        Some(403)
    );
    assert_eq!(refusal(secrets(REG).list(&Default::default()).await), None);
    assert_eq!(
        refusal(secrets("user-management").get("keycloak-admin").await),
        None
    );
    assert_eq!(
        refusal(secrets("user-management").list(&Default::default()).await),
        Some(403)
    );
    let classes: Api<StorageClass> = Api::all(sa.clone());
    assert_eq!(
        refusal(
            classes
                .patch(
                    "gp3-csi",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}}))
                )
                .await
        ),
        Some(403)
    );
    let sa_namespaces: Api<Namespace> = Api::all(sa.clone());
    assert_eq!(
        refusal(
            sa_namespaces
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(
                        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "intruder"}})
                    )?,
                )
                .await
        ),
        Some(403)
    );
    // Another namespace's workloads are read, never changed.
    let gerrit: Api<DynamicObject> = Api::namespaced_with(
        sa.clone(),
        "control-plane",
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apps", "v1", "Deployment"),
            "deployments",
        ),
    );
    assert_eq!(
        refusal(
            gerrit
                .patch(
                    "gerrit",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"replicas": 0}}))
                )
                .await
        ),
        Some(403)
    );

    // Cleanup with the same account, once the namespace carries the label a
    // Velero restore of this migration's backup leaves.
    namespaces
        .patch(
            REG,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"velero.io/backup-name": BACKUP}}})),
        )
        .await?;
    let c = expect!(
        step(
            &agent,
            Kind::Cleanup(cleanup_step(&[format!("{BACKUP}-rest")]))
        )
        .await?,
        Cleanup
    );
    assert!(c.namespace_deleted, "{c:?}");
    assert!(namespaces.get_opt(REG).await?.is_none());
    Ok(())
}
