//! Errors of the Kubernetes API stand-in, and their rendering as Kubernetes
//! `Status` objects so that kubectl and kube-rs see the reasons they expect.

use serde_json::{Value, json};

/// Result alias of the `k8s` module.
pub type Result<T, E = K8sError> = std::result::Result<T, E>;

/// What went wrong, on which object. Each variant maps to one HTTP status
/// code and one Kubernetes `reason`.
#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    #[error("{resource} \"{name}\" not found")]
    NotFound {
        /// `plural` or `plural.group`, as the real API server words it.
        resource: String,
        group: String,
        kind: String,
        name: String,
    },
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists {
        resource: String,
        group: String,
        kind: String,
        name: String,
    },
    #[error(
        "Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
    )]
    Conflict {
        resource: String,
        group: String,
        kind: String,
        name: String,
    },
    /// Worded as the real server words it: `Deployment.apps "web" is invalid: …`.
    #[error("{kind}{}{group} \"{name}\" is invalid: {message}", if group.is_empty() { "" } else { "." })]
    Invalid {
        kind: String,
        group: String,
        name: String,
        message: String,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("the server could not find the requested resource ({0})")]
    UnknownResource(String),
    #[error("the server does not allow this method on the requested resource ({0})")]
    MethodNotAllowed(String),
    #[error("the body of the request was in an unknown format - accepted media types include: {0}")]
    UnsupportedMediaType(String),
    /// A protobuf request body that could not be read.
    #[error("{0}")]
    Protobuf(#[from] super::protobuf::ProtobufError),
    #[error("too old resource version: {requested} ({oldest})")]
    Gone { requested: u64, oldest: u64 },
    /// A failure injected by a test through the store's fault hook.
    #[error("{message}")]
    Injected {
        code: u16,
        reason: String,
        message: String,
    },
    #[error("loading CustomResourceDefinition {file}: {message}")]
    Crd { file: String, message: String },
    #[error("binding the Kubernetes API listener on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("writing kubeconfig {path}: {source}")]
    Kubeconfig {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

impl K8sError {
    /// The HTTP status code the real API server answers with.
    pub fn code(&self) -> u16 {
        match self {
            K8sError::NotFound { .. } | K8sError::UnknownResource(_) => 404,
            K8sError::AlreadyExists { .. } | K8sError::Conflict { .. } => 409,
            K8sError::Invalid { .. } => 422,
            K8sError::BadRequest(_) => 400,
            K8sError::MethodNotAllowed(_) => 405,
            K8sError::UnsupportedMediaType(_) => 415,
            K8sError::Protobuf(e) => e.code(),
            K8sError::Gone { .. } => 410,
            K8sError::Injected { code, .. } => *code,
            K8sError::Crd { .. } | K8sError::Bind { .. } | K8sError::Kubeconfig { .. } => 500,
        }
    }

    /// The `reason` field of the `Status` (a `metav1.StatusReason`).
    pub fn reason(&self) -> &str {
        match self {
            K8sError::NotFound { .. } | K8sError::UnknownResource(_) => "NotFound",
            K8sError::AlreadyExists { .. } => "AlreadyExists",
            K8sError::Conflict { .. } => "Conflict",
            K8sError::Invalid { .. } => "Invalid",
            K8sError::BadRequest(_) => "BadRequest",
            K8sError::MethodNotAllowed(_) => "MethodNotAllowed",
            K8sError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            K8sError::Protobuf(e) if e.code() == 415 => "UnsupportedMediaType",
            K8sError::Protobuf(_) => "BadRequest",
            K8sError::Gone { .. } => "Expired",
            K8sError::Injected { reason, .. } => reason,
            K8sError::Crd { .. } | K8sError::Bind { .. } | K8sError::Kubeconfig { .. } => {
                "InternalError"
            }
        }
    }

    /// True when the error says the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, K8sError::NotFound { .. })
    }

    /// True for 409 answers (stale resourceVersion or existing name).
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            K8sError::Conflict { .. } | K8sError::AlreadyExists { .. }
        )
    }

    /// The error as a Kubernetes `Status` object (kind Status, status Failure).
    pub fn to_status(&self) -> Value {
        let details = match self {
            K8sError::NotFound {
                group, kind, name, ..
            }
            | K8sError::AlreadyExists {
                group, kind, name, ..
            }
            | K8sError::Conflict {
                group, kind, name, ..
            }
            | K8sError::Invalid {
                group, kind, name, ..
            } => {
                // Empty fields are left out, as the real server's omitempty does.
                let mut details = serde_json::Map::new();
                for (key, value) in [("name", name), ("group", group), ("kind", kind)] {
                    if !value.is_empty() {
                        details.insert(key.into(), json!(value));
                    }
                }
                if let K8sError::Invalid { message, .. } = self {
                    let causes = invalid_causes(message);
                    if !causes.is_empty() {
                        details.insert("causes".into(), Value::Array(causes));
                    }
                }
                Some(Value::Object(details))
            }
            _ => None,
        };
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code(),
        });
        if let (Some(details), Some(map)) = (details, status.as_object_mut()) {
            map.insert("details".into(), details);
        }
        status
    }
}

/// The `causes` of an Invalid status, read back from a message worded as
/// the real server words field errors (`<field>: <Reason>: <detail>`); none
/// when the message is not one of those.
fn invalid_causes(message: &str) -> Vec<Value> {
    const REASONS: &[(&str, &str)] = &[
        ("Required value", "FieldValueRequired"),
        ("Invalid value", "FieldValueInvalid"),
        ("Unsupported value", "FieldValueNotSupported"),
        ("Forbidden", "FieldValueForbidden"),
        ("Duplicate value", "FieldValueDuplicate"),
        ("Too long", "FieldValueTooLong"),
        ("Not found", "FieldValueNotFound"),
    ];
    let Some((field, rest)) = message.split_once(": ") else {
        return Vec::new();
    };
    REASONS
        .iter()
        .find(|(text, _)| rest.starts_with(text))
        .map(|(_, reason)| vec![json!({"reason": reason, "message": rest, "field": field})])
        .unwrap_or_default()
}

/// Describes the object an error is about, so call sites stay short.
#[derive(Debug, Clone)]
pub(crate) struct ObjectRef<'a> {
    pub group: &'a str,
    pub plural: &'a str,
    pub kind: &'a str,
    pub name: &'a str,
}

impl ObjectRef<'_> {
    fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn not_found(&self) -> K8sError {
        K8sError::NotFound {
            resource: self.qualified(),
            group: self.group.into(),
            kind: self.plural.into(),
            name: self.name.into(),
        }
    }

    pub fn already_exists(&self) -> K8sError {
        K8sError::AlreadyExists {
            resource: self.qualified(),
            group: self.group.into(),
            kind: self.plural.into(),
            name: self.name.into(),
        }
    }

    pub fn conflict(&self) -> K8sError {
        K8sError::Conflict {
            resource: self.qualified(),
            group: self.group.into(),
            kind: self.plural.into(),
            name: self.name.into(),
        }
    }

    pub fn invalid(&self, message: impl Into<String>) -> K8sError {
        K8sError::Invalid {
            kind: self.kind.into(),
            group: self.group.into(),
            name: self.name.into(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_renders_like_the_api_server() {
        let err = ObjectRef {
            group: "velero.io",
            plural: "backups",
            kind: "Backup",
            name: "b1",
        }
        .not_found();
        let status = err.to_status();
        assert_eq!(status["code"], 404);
        assert_eq!(status["reason"], "NotFound");
        assert_eq!(status["message"], "backups.velero.io \"b1\" not found");
        assert_eq!(status["details"]["kind"], "backups");
    }

    #[test]
    fn invalid_carries_its_field_cause() {
        let err = ObjectRef {
            group: "",
            plural: "configmaps",
            kind: "ConfigMap",
            name: "",
        }
        .invalid("metadata.name: Required value: name or generateName is required");
        let status = err.to_status();
        assert_eq!(status["code"], 422);
        assert_eq!(
            status["details"],
            json!({"kind": "ConfigMap", "causes": [{
                "reason": "FieldValueRequired",
                "message": "Required value: name or generateName is required",
                "field": "metadata.name",
            }]})
        );
        let free_text = ObjectRef {
            group: "",
            plural: "x",
            kind: "X",
            name: "n",
        }
        .invalid("the JSON patch could not be applied");
        assert!(free_text.to_status()["details"].get("causes").is_none());
    }
}
