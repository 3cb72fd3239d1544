//! The columns kube-apiserver prints for built-in kinds in the Tables
//! `kubectl get` asks for (its `printers` package, v1.36): names, order,
//! wide-only columns (priority 1) and how each cell is computed. Kinds not
//! listed print NAME and AGE.

use serde_json::{Value, json};

/// One computed column.
pub(crate) struct Printer {
    pub name: &'static str,
    pub column_type: &'static str,
    pub priority: i64,
    pub cell: fn(&Value) -> Value,
}

const fn p(name: &'static str, column_type: &'static str, cell: fn(&Value) -> Value) -> Printer {
    Printer {
        name,
        column_type,
        priority: 0,
        cell,
    }
}

const fn wide(name: &'static str, cell: fn(&Value) -> Value) -> Printer {
    Printer {
        name,
        column_type: "string",
        priority: 1,
        cell,
    }
}

/// Marks the column the table renders as an age.
pub(crate) const AGE: &str = "Age";

fn age(_: &Value) -> Value {
    // Rendered by the table from creationTimestamp.
    Value::Null
}

fn int(v: Option<&Value>) -> i64 {
    v.and_then(Value::as_i64).unwrap_or(0)
}

fn at<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |v, k| v.get(*k))
}

fn none_if_empty(s: String) -> Value {
    if s.is_empty() {
        json!("<none>")
    } else {
        json!(s)
    }
}

fn joined_labels(labels: Option<&Value>) -> String {
    labels
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn containers_field(obj: &Value, field: &str) -> Value {
    let containers = at(obj, &["spec", "template", "spec", "containers"]).and_then(Value::as_array);
    none_if_empty(
        containers
            .into_iter()
            .flatten()
            .filter_map(|c| c.get(field).and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(","),
    )
}

fn count(v: Option<&Value>) -> usize {
    v.and_then(Value::as_object).map_or(0, |m| m.len())
}

static DEPLOYMENT: &[Printer] = &[
    p("Ready", "string", |o| {
        json!(format!(
            "{}/{}",
            int(at(o, &["status", "readyReplicas"])),
            int(at(o, &["spec", "replicas"]))
        ))
    }),
    p("Up-to-date", "integer", |o| {
        json!(int(at(o, &["status", "updatedReplicas"])))
    }),
    p("Available", "integer", |o| {
        json!(int(at(o, &["status", "availableReplicas"])))
    }),
    p(AGE, "string", age),
    wide("Containers", |o| containers_field(o, "name")),
    wide("Images", |o| containers_field(o, "image")),
    wide("Selector", |o| {
        none_if_empty(joined_labels(at(o, &["spec", "selector", "matchLabels"])))
    }),
];

fn service_ports(o: &Value) -> Value {
    let ports = at(o, &["spec", "ports"]).and_then(Value::as_array);
    none_if_empty(
        ports
            .into_iter()
            .flatten()
            .map(|port| {
                let protocol = port
                    .get("protocol")
                    .and_then(Value::as_str)
                    .unwrap_or("TCP");
                match port.get("nodePort").and_then(Value::as_i64) {
                    Some(node) => format!("{}:{node}/{protocol}", int(port.get("port"))),
                    None => format!("{}/{protocol}", int(port.get("port"))),
                }
            })
            .collect::<Vec<_>>()
            .join(","),
    )
}

fn external_ip(o: &Value) -> Value {
    let spec_type = at(o, &["spec", "type"])
        .and_then(Value::as_str)
        .unwrap_or("");
    if spec_type == "ExternalName" {
        return json!(
            at(o, &["spec", "externalName"])
                .and_then(Value::as_str)
                .unwrap_or("")
        );
    }
    let mut ips: Vec<String> = at(o, &["spec", "externalIPs"])
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    if spec_type == "LoadBalancer" {
        let ingress = at(o, &["status", "loadBalancer", "ingress"]).and_then(Value::as_array);
        ips.extend(ingress.into_iter().flatten().filter_map(|i| {
            i.get("ip")
                .or_else(|| i.get("hostname"))
                .and_then(Value::as_str)
                .map(str::to_string)
        }));
        if ips.is_empty() {
            return json!("<pending>");
        }
    }
    none_if_empty(ips.join(","))
}

static SERVICE: &[Printer] = &[
    p("Type", "string", |o| {
        json!(
            at(o, &["spec", "type"])
                .and_then(Value::as_str)
                .unwrap_or("")
        )
    }),
    p("Cluster-IP", "string", |o| {
        none_if_empty(
            at(o, &["spec", "clusterIP"])
                .and_then(Value::as_str)
                .unwrap_or("")
                .into(),
        )
    }),
    p("External-IP", "string", external_ip),
    p("Port(s)", "string", service_ports),
    p(AGE, "string", age),
    wide("Selector", |o| {
        none_if_empty(joined_labels(at(o, &["spec", "selector"])))
    }),
];

static CONFIG_MAP: &[Printer] = &[
    p("Data", "integer", |o| {
        json!(count(o.get("data")) + count(o.get("binaryData")))
    }),
    p(AGE, "string", age),
];

static SECRET: &[Printer] = &[
    p("Type", "string", |o| {
        json!(o.get("type").and_then(Value::as_str).unwrap_or(""))
    }),
    p("Data", "integer", |o| json!(count(o.get("data")))),
    p(AGE, "string", age),
];

static NAMESPACE: &[Printer] = &[
    p("Status", "string", |o| {
        json!(
            at(o, &["status", "phase"])
                .and_then(Value::as_str)
                .unwrap_or("")
        )
    }),
    p(AGE, "string", age),
];

static DEFAULT: &[Printer] = &[p(AGE, "string", age)];

/// The columns after NAME for a built-in `kind`.
pub(crate) fn builtin_columns(kind: &str) -> &'static [Printer] {
    match kind {
        "Deployment" => DEPLOYMENT,
        "Service" => SERVICE,
        "ConfigMap" => CONFIG_MAP,
        "Secret" => SECRET,
        "Namespace" => NAMESPACE,
        _ => DEFAULT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: &str, obj: &Value) -> Vec<(String, Value)> {
        builtin_columns(kind)
            .iter()
            .filter(|c| c.name != AGE)
            .map(|c| (c.name.to_string(), (c.cell)(obj)))
            .collect()
    }

    #[test]
    fn cells_as_kubectl_prints_them() {
        let deploy = json!({
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"spec": {"containers": [{"name": "web", "image": "web:1"}]}}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3},
        });
        let cells: Vec<Value> = row("Deployment", &deploy)
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        assert_eq!(
            cells,
            [
                json!("2/3"),
                json!(3),
                json!(0),
                json!("web"),
                json!("web:1"),
                json!("app=web")
            ]
        );
        let svc = json!({"spec": {"type": "NodePort", "clusterIP": "10.0.0.1",
            "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}});
        let cells: Vec<Value> = row("Service", &svc).into_iter().map(|(_, v)| v).collect();
        assert_eq!(
            cells,
            [
                json!("NodePort"),
                json!("10.0.0.1"),
                json!("<none>"),
                json!("80:30080/TCP,53/UDP"),
                json!("<none>")
            ]
        );
        let lb = json!({"spec": {"type": "LoadBalancer"}});
        assert_eq!(external_ip(&lb), json!("<pending>"));
        let cm = json!({"data": {"a": "1"}, "binaryData": {"b": "AA=="}});
        assert_eq!(row("ConfigMap", &cm), [("Data".to_string(), json!(2))]);
    }
}
