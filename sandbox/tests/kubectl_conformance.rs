//! Real kubectl (v1.36, built by `scripts/realstack`) against a sandbox
//! cluster: the conformance scenarios of `ferry_sandbox::conformance`, with
//! what a real kube-apiserver answers asserted for each. The same scenarios
//! run against the real stack; docs/sandbox.md lists what still differs.

use std::path::PathBuf;

use anyhow::{Result, bail};
use serde_json::json;

use ferry_sandbox::cluster::{ClusterOptions, SandboxCluster};
use ferry_sandbox::conformance::{self, ErrorBody, Observations};

/// `$FERRY_KUBECTL`, else `.realstack/bin/kubectl` under the workspace root.
fn kubectl() -> Result<PathBuf> {
    let path = match std::env::var_os("FERRY_KUBECTL") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.realstack/bin/kubectl"),
    };
    if !path.is_file() {
        bail!(
            "no kubectl at {}: run scripts/realstack (it builds kubectl v1.36 from Go modules) or set FERRY_KUBECTL",
            path.display()
        );
    }
    Ok(path)
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

fn status(code: u16, reason: &str, message: &str) -> ErrorBody {
    ErrorBody {
        http_status: code,
        kind: s("Status"),
        api_version: s("v1"),
        status: s("Failure"),
        reason: s(reason),
        code: Some(i64::from(code)),
        message: s(message),
        details_name: None,
        details_kind: None,
        details_group: None,
        causes: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_conformance_scenarios() -> Result<()> {
    let kubectl = kubectl()?;
    let dir = tempfile::tempdir()?;
    let cluster =
        SandboxCluster::start(dir.path().join("cluster"), ClusterOptions::default()).await?;
    let observed = conformance::run_all(&kubectl, cluster.kubeconfig()).await;
    cluster.shutdown().await;
    let o: Observations = observed?;
    println!("{}", serde_json::to_string_pretty(&o)?);

    let ns = &o.create_namespace;
    assert_eq!((ns.exit, ns.output.as_str()), (0, "namespace/$NS created"));
    assert_eq!(ns.phase.as_deref(), Some("Active"));
    assert_eq!(ns.labels, json!({"kubernetes.io/metadata.name": "$NS"}));
    assert_eq!(
        ns.dry_run_output,
        "namespace/$NS-dry created (server dry run)"
    );
    assert!(
        !ns.dry_run_left_object,
        "a dry-run create left the namespace behind"
    );

    let t = &o.typed_creates;
    assert_eq!(
        t.outputs,
        [
            "configmap/literal created",
            "secret/creds created",
            "service/web created",
            "serviceaccount/robot created",
        ]
    );
    assert_eq!(t.configmap_data, json!({"mode": "one"}));
    assert_eq!(t.secret_data, json!({"password": "cHc="}));
    assert_eq!(t.secret_type.as_deref(), Some("Opaque"));
    assert_eq!(
        t.service_ports,
        json!([{"name": "80-8080", "port": 80, "protocol": "TCP", "targetPort": 8080}])
    );
    assert_eq!(t.service_selector, json!({"app": "web"}));
    assert_eq!(
        t.service_spec,
        json!({
            "internalTrafficPolicy": "Cluster",
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "ports": t.service_ports,
            "selector": {"app": "web"},
            "sessionAffinity": "None",
            "type": "ClusterIP",
        })
    );
    assert!(t.serviceaccount_exists);
    assert_eq!(t.generated_name, "configmap/gen-<generated>");

    let d = &o.create_deployment;
    assert_eq!(
        (d.exit, d.output.as_str()),
        (0, "deployment.apps/web created")
    );
    assert_eq!(d.replicas, Some(1));
    assert_eq!(d.selector, json!({"matchLabels": {"app": "web"}}));
    assert_eq!(d.labels, json!({"app": "web"}));
    assert_eq!(
        d.containers,
        json!([{"name": "web", "image": "registry.example/web:1.0", "ports": [{"containerPort": 8080, "protocol": "TCP"}]}])
    );
    assert_eq!(d.generation, Some(1));
    assert_eq!(
        d.spec,
        json!({
            "progressDeadlineSeconds": 600,
            "replicas": 1,
            "revisionHistoryLimit": 10,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}, "type": "RollingUpdate"},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": d.containers.as_array().map(|c| c.iter().map(|c| json!({
                        "image": c["image"],
                        "imagePullPolicy": "IfNotPresent",
                        "name": c["name"],
                        "ports": c["ports"],
                        "resources": {},
                        "terminationMessagePath": "/dev/termination-log",
                        "terminationMessagePolicy": "File",
                    })).collect::<Vec<_>>()),
                    "dnsPolicy": "ClusterFirst",
                    "restartPolicy": "Always",
                    "schedulerName": "default-scheduler",
                    "securityContext": {},
                    "terminationGracePeriodSeconds": 30,
                },
            },
        })
    );

    let sc = &o.scale;
    assert_eq!(
        (sc.exit, sc.output.as_str()),
        (0, "deployment.apps/web scaled")
    );
    assert_eq!((sc.replicas, sc.generation), (Some(3), Some(2)));
    assert_eq!(sc.wrong_precondition_exit, 1);
    assert_eq!(sc.replicas_after_refusal, Some(3));

    let a = &o.server_side_apply;
    assert_eq!(a.create_output, "configmap/settings serverside-applied");
    assert_eq!(a.update_output, "configmap/settings serverside-applied");
    assert_eq!(
        a.data,
        json!({"mode": "two", "url": "https://registry.example"})
    );
    assert_eq!(a.labels, json!({"app": "registry", "suite": "conformance"}));

    let diff = &o.diff;
    assert_eq!(
        diff.same_exit, 0,
        "diff of the live state: {}",
        diff.same_output
    );
    assert_eq!(diff.same_output, "");
    assert_eq!(diff.changed_exit, 1);
    assert_eq!(diff.changed_lines, ["-  mode: two", "+  mode: three"]);
    assert_eq!(diff.client_side_changed_exit, 1);
    assert_eq!(diff.live_after["mode"], "two", "kubectl diff wrote");

    let dry = &o.dry_run;
    assert_eq!(
        dry.apply_output,
        "configmap/settings serverside-applied (server dry run)"
    );
    assert_eq!(
        dry.delete_output,
        "configmap \"settings\" deleted from $NS namespace (server dry run)"
    );
    assert_eq!(
        dry.client_side_apply_output,
        "configmap/settings configured (server dry run)"
    );
    assert_eq!(dry.live_after["mode"], "two", "a dry run wrote");
    // A dry-run create answers what would be stored, minus the
    // resourceVersion that only a real write assigns.
    let meta = |f: &str| dry.created_metadata.get(f).copied();
    assert_eq!(
        (
            meta("uid"),
            meta("creationTimestamp"),
            meta("generation"),
            meta("resourceVersion")
        ),
        (Some(true), Some(true), Some(true), Some(false))
    );
    assert_eq!(dry.created_replicas, Some(1));
    assert!(
        !dry.created_left_object,
        "a dry-run create left the Deployment behind"
    );

    let names = |list: &[&str]| {
        list.iter()
            .map(|n| format!("configmap/{n}"))
            .collect::<Vec<_>>()
    };
    let l = &o.label_selectors.results;
    assert_eq!(l["tier=a"], names(&["cm-a"]));
    assert_eq!(l["tier==b"], names(&["cm-b"]));
    assert_eq!(
        l["suite=conformance,tier!=a"],
        names(&["cm-b", "cm-c", "settings"])
    );
    assert_eq!(l["tier in (a,b)"], names(&["cm-a", "cm-b"]));
    assert_eq!(
        l["suite=conformance,tier notin (a)"],
        names(&["cm-b", "cm-c", "settings"])
    );
    assert_eq!(l["tier"], names(&["cm-a", "cm-b"]));
    assert_eq!(l["suite=conformance,!tier"], names(&["cm-c", "settings"]));
    assert!(l["tier=z"].is_empty());

    let f = &o.field_selectors.results;
    assert_eq!(f["metadata.name=cm-a"], names(&["cm-a"]));
    assert_eq!(f["metadata.name==cm-b"], names(&["cm-b"]));
    assert_eq!(
        f["metadata.name!=cm-a"],
        names(&["cm-b", "cm-c", "settings"])
    );
    assert_eq!(
        f["metadata.namespace=$NS"],
        names(&["cm-a", "cm-b", "cm-c", "settings"])
    );
    assert!(f["metadata.name=absent"].is_empty());

    assert_eq!(
        o.watch_update.events,
        ["ADDED cm-a", "MODIFIED cm-a stage=updated"]
    );

    let e = &o.errors;
    let mut not_found = status(404, "NotFound", "configmaps \"absent\" not found");
    not_found.details_name = s("absent");
    not_found.details_kind = s("configmaps");
    assert_eq!(e.not_found, not_found);
    let mut exists = status(409, "AlreadyExists", "configmaps \"cm-a\" already exists");
    exists.details_name = s("cm-a");
    exists.details_kind = s("configmaps");
    assert_eq!(e.already_exists, exists);
    let mut invalid = status(
        422,
        "Invalid",
        "ConfigMap \"\" is invalid: metadata.name: Required value: name or generateName is required",
    );
    invalid.details_kind = s("ConfigMap");
    invalid.causes = vec!["metadata.name: FieldValueRequired".into()];
    assert_eq!(e.invalid, invalid);
    assert_eq!(
        e.kubectl_not_found,
        "1 Error from server (NotFound): configmaps \"absent\" not found"
    );

    const SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
    let mut bad_name = status(
        422,
        "Invalid",
        &format!(
            "ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": {SUBDOMAIN}"
        ),
    );
    bad_name.details_name = s("Bad_Name");
    bad_name.details_kind = s("ConfigMap");
    bad_name.causes = vec!["metadata.name: FieldValueInvalid".into()];
    assert_eq!(e.invalid_name, bad_name);
    let refused = |args: &str| e.kubectl_invalid_names.get(args).cloned();
    assert_eq!(
        refused("create configmap Bad_Name"),
        Some((
            1,
            format!(
                "error: failed to create configmap: ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": {SUBDOMAIN}"
            )
        ))
    );
    assert_eq!(
        refused("create namespace bad.ns"),
        Some((1, "The Namespace \"bad.ns\" is invalid: metadata.name: Invalid value: \"bad.ns\": must not contain dots".to_string()))
    );
    assert_eq!(
        refused("create service clusterip a.b --tcp=80"),
        Some((1, "error: failed to create ClusterIP service: Service \"a.b\" is invalid: metadata.name: Invalid value: \"a.b\": must not contain dots".to_string()))
    );
    assert_eq!(
        refused("create deployment Web --image=registry.example/web:1.0"),
        Some((
            1,
            format!(
                "error: failed to create deployment: Deployment.apps \"Web\" is invalid: metadata.name: Invalid value: \"Web\": {SUBDOMAIN}"
            )
        ))
    );

    assert_eq!(
        o.watch_resume.events,
        ["MODIFIED cm-b stage=resumed", "DELETED cm-c"]
    );

    let explained = |field: &str| o.explain.results.get(field).cloned();
    let lines = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        explained("deployment.spec.replicas"),
        Some((
            0,
            lines(&[
                "GROUP: apps",
                "KIND: Deployment",
                "VERSION: v1",
                "FIELD: replicas <integer>"
            ])
        ))
    );
    assert_eq!(
        explained("deployment.spec.template.spec.containers.ports"),
        Some((
            0,
            lines(&[
                "GROUP: apps",
                "KIND: Deployment",
                "VERSION: v1",
                "FIELD: ports <[]ContainerPort>"
            ])
        ))
    );
    assert_eq!(
        explained("configmap.data"),
        Some((
            0,
            lines(&[
                "KIND: ConfigMap",
                "VERSION: v1",
                "FIELD: data <map[string]string>"
            ])
        ))
    );

    let headers: Vec<(&str, &str)> = o
        .table_headers
        .results
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        headers,
        [
            ("configmaps", "NAME DATA AGE"),
            ("deployments", "NAME READY UP-TO-DATE AVAILABLE AGE"),
            (
                "deployments -o wide",
                "NAME READY UP-TO-DATE AVAILABLE AGE CONTAINERS IMAGES SELECTOR"
            ),
            ("namespaces $NS", "NAME STATUS AGE"),
            ("secrets", "NAME TYPE DATA AGE"),
            ("serviceaccounts robot", "NAME AGE"),
            ("services", "NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE"),
            (
                "services -o wide",
                "NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE SELECTOR"
            ),
        ]
    );
    Ok(())
}

/// The same scenarios against a real kube-apiserver (the real stack's,
/// started here; or another one's kubeconfig in `FERRY_REAL_KUBECONFIG`) and
/// against a sandbox: the observations must agree except where
/// docs/sandbox.md names a difference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_agrees_with_a_real_apiserver() -> Result<()> {
    let kubectl = kubectl()?;
    let (_started, real_kubeconfig) = match std::env::var_os("FERRY_REAL_KUBECONFIG") {
        Some(path) => (None, PathBuf::from(path)),
        None => {
            let cluster = ferry_testkit::kube::RealCluster::start().await?;
            let path = cluster.kubeconfig().to_path_buf();
            (Some(cluster), path)
        }
    };
    let real = conformance::run_all(&kubectl, &real_kubeconfig).await?;
    let dir = tempfile::tempdir()?;
    let cluster =
        SandboxCluster::start(dir.path().join("cluster"), ClusterOptions::default()).await?;
    let sandbox = conformance::run_all(&kubectl, cluster.kubeconfig()).await;
    cluster.shutdown().await;
    let differences = sandbox?.differences(&real);
    println!("real apiserver:\n{}", serde_json::to_string_pretty(&real)?);
    // Differences docs/sandbox.md names would be listed here; there are none.
    let known: [&str; 0] = [];
    let unexpected: Vec<&String> = differences
        .iter()
        .filter(|d| !known.contains(&d.as_str()))
        .collect();
    assert!(
        unexpected.is_empty(),
        "sandbox != real apiserver:\n{unexpected:#?}"
    );
    Ok(())
}
