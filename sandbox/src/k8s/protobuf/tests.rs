//! Bodies written the way client-go writes them (field by field, with the
//! zero values it always emits) decode to the JSON kubectl would have sent.

use serde_json::json;

use super::*;

fn varint(mut v: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn bytes_field(num: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    varint(u64::from(num) << 3 | 2, &mut out);
    varint(bytes.len() as u64, &mut out);
    out.extend_from_slice(bytes);
    out
}

fn int_field(num: u32, v: i64) -> Vec<u8> {
    let mut out = Vec::new();
    varint(u64::from(num) << 3, &mut out);
    varint(v as u64, &mut out);
    out
}

fn s(num: u32, v: &str) -> Vec<u8> {
    bytes_field(num, v.as_bytes())
}

fn msg(num: u32, parts: &[Vec<u8>]) -> Vec<u8> {
    bytes_field(num, &parts.concat())
}

fn map_entry(num: u32, key: &str, value: &str) -> Vec<u8> {
    msg(num, &[s(1, key), s(2, value)])
}

fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let mut body = b"k8s\0".to_vec();
    body.extend(msg(1, &[s(1, api_version), s(2, kind)]));
    body.extend(bytes_field(2, raw));
    body.extend(s(3, ""));
    body.extend(s(4, ""));
    body
}

/// ObjectMeta as gogo-protobuf writes it: every non-pointer field, even empty.
fn meta(name: &str, labels: &[(&str, &str)]) -> Vec<u8> {
    let mut parts = vec![
        s(1, name),
        s(2, ""),
        s(3, ""),
        s(4, ""),
        s(5, ""),
        s(6, ""),
        int_field(7, 0),
        msg(8, &[]),
    ];
    parts.extend(labels.iter().map(|(k, v)| map_entry(11, k, v)));
    msg(1, &parts)
}

#[test]
fn namespace_from_kubectl_create() -> Result<(), ProtobufError> {
    let raw = [meta("x", &[]), msg(2, &[]), msg(3, &[s(1, "")])].concat();
    let obj = decode(&envelope("v1", "Namespace", &raw))?;
    assert_eq!(
        obj,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}, "spec": {}, "status": {}})
    );
    Ok(())
}

#[test]
fn deployment_from_kubectl_create() -> Result<(), ProtobufError> {
    let container = msg(
        2,
        &[
            s(1, "nginx"),
            s(2, "nginx:1.27"),
            s(5, ""),
            msg(
                6,
                &[
                    s(1, ""),
                    int_field(2, 0),
                    int_field(3, 80),
                    s(4, "TCP"),
                    s(5, ""),
                ],
            ),
            msg(8, &[]),
            s(13, ""),
            s(14, ""),
            int_field(16, 0),
        ],
    );
    let pod_spec = msg(2, &[container, s(3, ""), s(6, ""), int_field(11, 0)]);
    let template = msg(3, &[meta("", &[("app", "web")]), pod_spec]);
    let selector = msg(2, &[map_entry(1, "app", "web")]);
    let strategy = msg(
        4,
        &[msg(
            2,
            &[
                msg(1, &[int_field(1, 1), int_field(2, 0), s(3, "25%")]),
                msg(2, &[int_field(1, 0), int_field(2, 2), s(3, "")]),
            ],
        )],
    );
    let spec = msg(
        2,
        &[
            int_field(1, 0),
            selector,
            template,
            strategy,
            int_field(5, 0),
            int_field(7, 0),
        ],
    );
    let raw = [
        meta("web", &[("app", "web")]),
        spec,
        msg(3, &[int_field(1, 0)]),
    ]
    .concat();
    let obj = decode(&envelope("apps/v1", "Deployment", &raw))?;
    assert_eq!(
        obj,
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                // A pointer: zero replicas is kept, not dropped.
                "replicas": 0,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{
                        "name": "nginx",
                        "image": "nginx:1.27",
                        "ports": [{"containerPort": 80, "protocol": "TCP"}],
                        "resources": {},
                    }]},
                },
                "strategy": {"rollingUpdate": {"maxUnavailable": "25%", "maxSurge": 2}},
            },
            "status": {},
        })
    );
    Ok(())
}

#[test]
fn secret_bytes_and_creation_time() -> Result<(), ProtobufError> {
    let meta = msg(1, &[s(1, "creds"), msg(8, &[int_field(1, 86_400)])]);
    let raw = [meta, map_entry(2, "password", "pw"), s(3, "Opaque")].concat();
    let obj = decode(&envelope("v1", "Secret", &raw))?;
    assert_eq!(obj["data"], json!({"password": "cHc="}));
    assert_eq!(obj["type"], "Opaque");
    assert_eq!(obj["metadata"]["creationTimestamp"], "1970-01-02T00:00:00Z");
    Ok(())
}

#[test]
fn delete_options_under_any_group() -> Result<(), ProtobufError> {
    let raw = [msg(2, &[s(2, "42")]), s(4, "Foreground"), s(5, "All")].concat();
    let obj = decode(&envelope("apps/v1", "DeleteOptions", &raw))?;
    assert_eq!(obj["preconditions"]["resourceVersion"], "42");
    assert_eq!(obj["dryRun"], json!(["All"]));
    Ok(())
}

#[test]
fn refuses_what_it_cannot_read() {
    assert!(matches!(
        decode(b"{\"kind\":\"Namespace\"}"),
        Err(ProtobufError::NoEnvelope)
    ));
    let unknown_kind = decode(&envelope("velero.io/v1", "Backup", &[]));
    assert!(
        matches!(&unknown_kind, Err(e @ ProtobufError::UnsupportedKind { .. }) if e.code() == 415),
        "{unknown_kind:?}"
    );
    // PodSpec field 18 (affinity) is not in the tables: refused with its path.
    let raw = msg(2, &[msg(3, &[msg(2, &[msg(18, &[])])])]);
    let err = decode(&envelope("apps/v1", "Deployment", &raw)).err();
    let text = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(text.contains("spec.template.spec"), "{text}");
    assert!(text.contains("field 18 of core.v1.PodSpec"), "{text}");
    let truncated = [envelope("v1", "ConfigMap", &[]), vec![0x12, 9]].concat();
    assert!(decode(&truncated).is_err());
}
