//! The API server's defaults that clients read back and compare: a
//! Secret's type, the protocol of container and service ports, a service
//! port's target port. The real server defaults far more (a Deployment's
//! strategy, a pod's DNS policy, …); those are listed as differences in
//! docs/sandbox.md rather than imitated field by field.

use serde_json::{Value, json};

/// Fills the defaults of `kind` into `obj` (created or replaced), leaving
/// whatever the client set.
pub(crate) fn apply(kind: &str, obj: &mut Value) {
    match kind {
        "Secret" => {
            if obj
                .get("type")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
                && let Some(map) = obj.as_object_mut()
            {
                map.insert("type".into(), json!("Opaque"));
            }
        }
        "Service" => service_ports(obj),
        "Pod" => pod_spec(obj.get_mut("spec")),
        "Deployment" | "StatefulSet" | "ReplicaSet" | "Job" => {
            pod_spec(template_spec(obj.get_mut("spec")));
        }
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

fn template_spec(spec: Option<&mut Value>) -> Option<&mut Value> {
    spec.and_then(|s| s.get_mut("template"))
        .and_then(|t| t.get_mut("spec"))
}

fn pod_spec(spec: Option<&mut Value>) {
    let Some(spec) = spec else { return };
    for list in ["initContainers", "containers"] {
        let containers = spec.get_mut(list).and_then(Value::as_array_mut);
        for container in containers.into_iter().flatten() {
            let ports = container.get_mut("ports").and_then(Value::as_array_mut);
            for port in ports.into_iter().flatten() {
                default_protocol(port);
            }
        }
    }
}

fn service_ports(obj: &mut Value) {
    let ports = obj
        .get_mut("spec")
        .and_then(|s| s.get_mut("ports"))
        .and_then(Value::as_array_mut);
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

        let mut deploy = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "a", "ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}]}
        ]}}}});
        apply("Deployment", &mut deploy);
        let ports = &deploy["spec"]["template"]["spec"]["containers"][0]["ports"];
        assert_eq!(ports[0]["protocol"], "TCP");
        assert_eq!(ports[1]["protocol"], "UDP");

        let mut svc =
            json!({"spec": {"ports": [{"port": 80}, {"port": 443, "targetPort": "https"}]}});
        apply("Service", &mut svc);
        assert_eq!(
            svc["spec"]["ports"][0],
            json!({"port": 80, "protocol": "TCP", "targetPort": 80})
        );
        assert_eq!(svc["spec"]["ports"][1]["targetPort"], "https");
    }
}
