//! Kubeconfig files that point kubectl and kube-rs at a sandbox API server.

/// Renders a kubeconfig with one cluster, user and context, all named
/// `ferry-sandbox`. Plain HTTP on loopback; a bearer token so that clients
/// that insist on credentials have some (the server does not check it).
pub fn render(server: &str, token: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: ferry-sandbox
  cluster:
    server: {server}
users:
- name: ferry-sandbox
  user:
    token: {token}
contexts:
- name: ferry-sandbox
  context:
    cluster: ferry-sandbox
    user: ferry-sandbox
    namespace: default
current-context: ferry-sandbox
preferences: {{}}
"
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_parseable_yaml() -> Result<(), serde_yaml_ng::Error> {
        let y: serde_json::Value =
            serde_yaml_ng::from_str(&super::render("http://127.0.0.1:1", "t"))?;
        assert_eq!(y["clusters"][0]["cluster"]["server"], "http://127.0.0.1:1");
        assert_eq!(y["current-context"], "ferry-sandbox");
        Ok(())
    }
}
