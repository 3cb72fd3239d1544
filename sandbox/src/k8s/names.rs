//! Object names as the API server checks them on create: a DNS-1123 label
//! for namespaces and services, a DNS-1123 subdomain for everything else,
//! with the real server's wording so clients and people see the same
//! message (`metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123
//! subdomain must consist of …`).

const LABEL_MAX: usize = 63;
const SUBDOMAIN_MAX: usize = 253;
const LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";

fn is_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    let edge = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    bytes.first().is_some_and(edge)
        && bytes.last().is_some_and(edge)
        && bytes.iter().all(|b| edge(b) || *b == b'-')
}

fn is_subdomain(s: &str) -> bool {
    s.split('.').all(is_label)
}

fn too_long(max: usize) -> String {
    format!("must be no more than {max} characters")
}

/// The problems with `name` as a DNS-1123 label (empty when none).
fn label_errors(name: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if name.len() > LABEL_MAX {
        errs.push(too_long(LABEL_MAX));
    }
    if !is_label(name) {
        if is_subdomain(name) {
            errs.push("must not contain dots".into());
        } else {
            errs.push(format!(
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '{LABEL_FMT}')"
            ));
        }
    }
    errs
}

/// The problems with `name` as a DNS-1123 subdomain (empty when none).
fn subdomain_errors(name: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if name.len() > SUBDOMAIN_MAX {
        errs.push(too_long(SUBDOMAIN_MAX));
    }
    if !is_subdomain(name) {
        errs.push(format!(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '{LABEL_FMT}(\\.{LABEL_FMT})*')"
        ));
    }
    errs
}

/// The Invalid message for a new object of `kind` named `name`, or None when
/// the name is acceptable. Several problems are listed as the real server
/// aggregates them: `[first, second]`.
pub(crate) fn check(kind: &str, name: &str) -> Option<String> {
    let errs = match kind {
        "Namespace" | "Service" => label_errors(name),
        _ => subdomain_errors(name),
    };
    let quoted = serde_json::Value::from(name).to_string();
    let mut fields: Vec<String> = errs
        .into_iter()
        .map(|e| format!("metadata.name: Invalid value: {quoted}: {e}"))
        .collect();
    match fields.len() {
        0 => None,
        1 => fields.pop(),
        _ => Some(format!("[{}]", fields.join(", "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_problems_as_the_real_server() {
        assert_eq!(check("ConfigMap", "registry-hosts.v1"), None);
        assert_eq!(check("Namespace", "reg-1"), None);
        assert_eq!(
            check("Namespace", "bad.ns").as_deref(),
            Some("metadata.name: Invalid value: \"bad.ns\": must not contain dots")
        );
        let bad = check("ConfigMap", "Bad_Name").unwrap_or_default();
        assert!(
            bad.starts_with(
                "metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"
            ),
            "{bad}"
        );
        assert!(bad.ends_with("regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"), "{bad}");
        assert!(check("Deployment", "a..b").is_some());
        assert!(check("Deployment", "-a").is_some());
        let long = "a".repeat(64);
        assert_eq!(
            check("Service", &long),
            Some(format!(
                "metadata.name: Invalid value: \"{long}\": must be no more than 63 characters"
            ))
        );
        let both = check("Namespace", &"A".repeat(64)).unwrap_or_default();
        assert!(
            both.starts_with('[') && both.contains("63 characters, metadata.name"),
            "{both}"
        );
    }
}
