//! The API server's defaults that clients read back and compare: a
//! Secret's type; a namespace's name label; a Service's type, session
//! affinity, traffic policy, port protocols and target ports; a Deployment's
//! replicas, strategy, history limit and progress deadline; and every
//! workload's pod template defaults (restart and DNS policy, scheduler,
//! grace period, security context, a container's pull policy and
//! termination message). The values are those kube-apiserver v1.36 fills
//! in. What it fills beyond these (cluster IPs, StatefulSet and Job
//! specifics, a bare Pod's admission-added fields) is listed in
//! docs/sandbox.md.

use serde_json::{Map, Value, json};

use super::object;

/// Fills the defaults of `kind` into `obj` (created or replaced), leaving
/// whatever the client set.
pub(crate) fn apply(kind: &str, obj: &mut Value) {
    match kind {
        "Namespace" => {
            if let Some(name) = object::name(obj).map(str::to_string) {
                let labels = object::meta_mut(obj)
                    .entry("labels")
                    .or_insert_with(|| json!({}));
                if let Some(labels) = labels.as_object_mut() {
                    labels.insert("kubernetes.io/metadata.name".into(), json!(name));
                }
            }
        }
        "Secret" => {
            if let Some(map) = obj.as_object_mut()
                && map
                    .get("type")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
            {
                map.insert("type".into(), json!("Opaque"));
            }
        }
        "Service" => service(obj),
        "Pod" => pod_spec(obj.get_mut("spec")),
        "Deployment" => {
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                deployment_spec(spec);
            }
            pod_spec(template_spec(obj.get_mut("spec")));
        }
        "ReplicaSet" => {
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                or_insert(spec, "replicas", json!(1));
            }
            pod_spec(template_spec(obj.get_mut("spec")));
        }
        "StatefulSet" | "Job" => pod_spec(template_spec(obj.get_mut("spec"))),
        "CronJob" => {
            let job = obj
                .get_mut("spec")
                .and_then(|s| s.get_mut("jobTemplate"))
                .and_then(|t| t.get_mut("spec"));
            pod_spec(template_spec(job));
        }
        _ => {}
    }
}

fn or_insert(map: &mut Map<String, Value>, key: &str, value: Value) {
    if map.get(key).is_none_or(Value::is_null) {
        map.insert(key.into(), value);
    }
}

fn deployment_spec(spec: &mut Map<String, Value>) {
    or_insert(spec, "replicas", json!(1));
    or_insert(spec, "revisionHistoryLimit", json!(10));
    or_insert(spec, "progressDeadlineSeconds", json!(600));
    let strategy = spec.entry("strategy").or_insert_with(|| json!({}));
    let Some(strategy) = strategy.as_object_mut() else {
        return;
    };
    or_insert(strategy, "type", json!("RollingUpdate"));
    if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
        let rolling = strategy.entry("rollingUpdate").or_insert_with(|| json!({}));
        if let Some(rolling) = rolling.as_object_mut() {
            or_insert(rolling, "maxUnavailable", json!("25%"));
            or_insert(rolling, "maxSurge", json!("25%"));
        }
    }
}

fn template_spec(spec: Option<&mut Value>) -> Option<&mut Value> {
    spec.and_then(|s| s.get_mut("template"))
        .and_then(|t| t.get_mut("spec"))
}

fn pod_spec(spec: Option<&mut Value>) {
    let Some(spec) = spec.and_then(Value::as_object_mut) else {
        return;
    };
    or_insert(spec, "restartPolicy", json!("Always"));
    or_insert(spec, "dnsPolicy", json!("ClusterFirst"));
    or_insert(spec, "schedulerName", json!("default-scheduler"));
    or_insert(spec, "terminationGracePeriodSeconds", json!(30));
    or_insert(spec, "securityContext", json!({}));
    for list in ["initContainers", "containers"] {
        let containers = spec.get_mut(list).and_then(Value::as_array_mut);
        for container in containers.into_iter().flatten() {
            let ports = container.get_mut("ports").and_then(Value::as_array_mut);
            for port in ports.into_iter().flatten() {
                default_protocol(port);
            }
            let Some(c) = container.as_object_mut() else {
                continue;
            };
            let policy = pull_policy(c.get("image").and_then(Value::as_str).unwrap_or(""));
            or_insert(c, "imagePullPolicy", json!(policy));
            or_insert(c, "terminationMessagePath", json!("/dev/termination-log"));
            or_insert(c, "terminationMessagePolicy", json!("File"));
        }
    }
}

/// `Always` for an image without a tag or tagged `latest`, else `IfNotPresent`.
fn pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, tag)) if tag != "latest" => "IfNotPresent",
        _ => "Always",
    }
}

fn service(obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    or_insert(spec, "type", json!("ClusterIP"));
    or_insert(spec, "sessionAffinity", json!("None"));
    if spec.get("type").and_then(Value::as_str) != Some("ExternalName") {
        or_insert(spec, "internalTrafficPolicy", json!("Cluster"));
        // A single-stack IPv4 cluster's; the cluster IP itself is not allocated.
        or_insert(spec, "ipFamilyPolicy", json!("SingleStack"));
        or_insert(spec, "ipFamilies", json!(["IPv4"]));
    }
    let ports = spec.get_mut("ports").and_then(Value::as_array_mut);
    for port in ports.into_iter().flatten() {
        default_protocol(port);
        if let Some(map) = port.as_object_mut()
            && !map.contains_key("targetPort")
            && let Some(p) = map.get("port").cloned()
        {
            map.insert("targetPort".into(), p);
        }
    }
}

fn default_protocol(port: &mut Value) {
    if let Some(map) = port.as_object_mut()
        && map
            .get("protocol")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        map.insert("protocol".into(), json!("TCP"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_only_what_is_missing() {
        let mut secret = json!({"kind": "Secret"});
        apply("Secret", &mut secret);
        assert_eq!(secret["type"], "Opaque");
        let mut tls = json!({"type": "kubernetes.io/tls"});
        apply("Secret", &mut tls);
        assert_eq!(tls["type"], "kubernetes.io/tls");

        let mut svc =
            json!({"spec": {"ports": [{"port": 80}, {"port": 443, "targetPort": "https"}]}});
        apply("Service", &mut svc);
        assert_eq!(
            svc["spec"]["ports"][0],
            json!({"port": 80, "protocol": "TCP", "targetPort": 80})
        );
        assert_eq!(svc["spec"]["ports"][1]["targetPort"], "https");
        assert_eq!(svc["spec"]["type"], "ClusterIP");
        let mut external = json!({"spec": {"type": "ExternalName", "externalName": "x.example"}});
        apply("Service", &mut external);
        assert!(external["spec"].get("internalTrafficPolicy").is_none());

        let mut ns = json!({"metadata": {"name": "reg", "labels": {"team": "a"}}});
        apply("Namespace", &mut ns);
        assert_eq!(
            ns["metadata"]["labels"],
            json!({"team": "a", "kubernetes.io/metadata.name": "reg"})
        );
    }

    #[test]
    fn deployment_defaults_match_the_real_server() {
        let mut d = json!({"spec": {
            "strategy": {},
            "template": {"spec": {"containers": [
                {"name": "a", "image": "nginx:1", "ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}]},
                {"name": "b", "image": "registry:5000/team/app"},
                {"name": "c", "image": "app:latest", "imagePullPolicy": "Never"},
            ]}},
        }});
        apply("Deployment", &mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(
            d["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(pod["dnsPolicy"], "ClusterFirst");
        assert_eq!(pod["terminationGracePeriodSeconds"], 30);
        let ports = &pod["containers"][0]["ports"];
        assert_eq!(
            (&ports[0]["protocol"], &ports[1]["protocol"]),
            (&json!("TCP"), &json!("UDP"))
        );
        let pulls: Vec<&Value> = (0..3)
            .map(|i| &pod["containers"][i]["imagePullPolicy"])
            .collect();
        assert_eq!(
            pulls,
            [&json!("IfNotPresent"), &json!("Always"), &json!("Never")]
        );
        let mut recreate = json!({"spec": {"replicas": 0, "strategy": {"type": "Recreate"}}});
        apply("Deployment", &mut recreate);
        assert_eq!(recreate["spec"]["strategy"], json!({"type": "Recreate"}));
        assert_eq!(recreate["spec"]["replicas"], 0);
    }
}
