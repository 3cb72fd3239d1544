//! Why a step failed, said so that an operator knows what to do next.
use ferry_common::pb::ErrorKind;

use crate::keycloak::AdminError;
use crate::objects::ObjectsError;
use crate::velero::VeleroError;

/// Errors of the migration steps.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("this agent has no access to its cluster; start it with --kubeconfig or --in-cluster")]
    NoCluster,

    // Boxed sources keep `Result<_, StepError>` small.
    #[error(transparent)]
    Connect(Box<crate::platform::ProbeError>),

    #[error(
        "could not {action} {what}: {source}; check that the API server answers and that the \
         agent's service account may do this"
    )]
    Kube {
        action: &'static str,
        what: String,
        #[source]
        source: Box<kube::Error>,
    },

    #[error(transparent)]
    Velero(Box<crate::velero::VeleroError>),

    #[error(transparent)]
    Keycloak(Box<crate::keycloak::AdminError>),

    #[error(transparent)]
    Objects(Box<crate::objects::ObjectsError>),

    #[error(
        "could not {action} {what} in store {store}: {source}; check the store's endpoint, \
         bucket and credentials in the agent's store configuration"
    )]
    Store {
        action: &'static str,
        store: String,
        what: String,
        #[source]
        source: Box<object_store::Error>,
    },

    #[error("invalid step: {0}; the coordinator and this agent may be of different versions")]
    Invalid(String),

    /// The cluster is not in a state the step can work from; the message
    /// says which object and what to do.
    #[error("{0}")]
    State(String),
}

pub type Result<T, E = StepError> = std::result::Result<T, E>;

impl StepError {
    /// The kind the coordinator is told (`ErrorKind`), so it can tell a step
    /// to fix from one to try again without reading the message.
    pub fn kind(&self) -> ErrorKind {
        match self {
            StepError::NoCluster | StepError::Connect(_) => ErrorKind::Unavailable,
            StepError::Kube { source, .. } => kube_kind(source),
            StepError::Velero(e) => match e.as_ref() {
                VeleroError::Api { source, .. } => kube_kind(source),
                VeleroError::SpecConflict { .. } | VeleroError::Vanished { .. } => {
                    ErrorKind::Conflict
                }
                VeleroError::Timeout { .. } | VeleroError::WatchEnded { .. } => {
                    ErrorKind::Unavailable
                }
            },
            StepError::Keycloak(e) => match e.as_ref() {
                AdminError::Login { .. } | AdminError::ExportCommand { .. } => {
                    ErrorKind::Precondition
                }
                AdminError::Http { status: 409, .. } => ErrorKind::Conflict,
                AdminError::Http { status, .. } if *status >= 500 => ErrorKind::Unavailable,
                AdminError::Http { .. } => ErrorKind::Precondition,
                AdminError::Transport { .. } => ErrorKind::Unavailable,
                AdminError::Malformed { .. } | AdminError::Setup(_) => ErrorKind::Internal,
            },
            StepError::Objects(e) => match e.as_ref() {
                ObjectsError::UnknownStore(..)
                | ObjectsError::PrefixNotAllowed { .. }
                | ObjectsError::Key(_) => ErrorKind::Invalid,
                ObjectsError::Config { .. } | ObjectsError::CaCert { .. } => {
                    ErrorKind::Precondition
                }
                ObjectsError::Open { .. } => ErrorKind::Unavailable,
            },
            StepError::Store { .. } => ErrorKind::Unavailable,
            StepError::Invalid(_) => ErrorKind::Invalid,
            StepError::State(_) => ErrorKind::Precondition,
        }
    }
}

/// What the API server's answer says about a failed call.
fn kube_kind(e: &kube::Error) -> ErrorKind {
    match e {
        kube::Error::Api(status) => match status.code {
            409 => ErrorKind::Conflict,
            400 | 422 => ErrorKind::Invalid,
            401 | 403 | 404 => ErrorKind::Precondition,
            429 | 500.. => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        },
        kube::Error::HyperError(_) | kube::Error::Service(_) => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    }
}

macro_rules! boxed_from {
    ($($variant:ident($ty:ty)),*) => {$(
        impl From<$ty> for StepError {
            fn from(e: $ty) -> Self {
                StepError::$variant(Box::new(e))
            }
        }
    )*};
}

boxed_from!(
    Connect(crate::platform::ProbeError),
    Velero(crate::velero::VeleroError),
    Keycloak(crate::keycloak::AdminError),
    Objects(crate::objects::ObjectsError)
);

/// `map_err` for a Kubernetes call.
pub(crate) fn kube_err(
    action: &'static str,
    what: impl Into<String>,
) -> impl FnOnce(kube::Error) -> StepError {
    let what = what.into();
    move |source| StepError::Kube {
        action,
        what,
        source: Box::new(source),
    }
}

/// `map_err` for an object-store call.
pub(crate) fn store_err(
    action: &'static str,
    store: &str,
    what: impl Into<String>,
) -> impl FnOnce(object_store::Error) -> StepError {
    let (store, what) = (store.to_owned(), what.into());
    move |source| StepError::Store {
        action,
        store,
        what,
        source: Box::new(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_errors_say_their_kind() {
        assert_eq!(StepError::Invalid("x".into()).kind(), ErrorKind::Invalid);
        assert_eq!(StepError::State("x".into()).kind(), ErrorKind::Precondition);
        assert_eq!(StepError::NoCluster.kind(), ErrorKind::Unavailable);
        let conflict = StepError::from(VeleroError::SpecConflict {
            kind: "Backup",
            namespace: "velero".into(),
            name: "r-2026".into(),
            field: "includedNamespaces",
        });
        assert_eq!(conflict.kind(), ErrorKind::Conflict);
        let api = |code| {
            let status = kube::core::Status {
                code,
                message: "m".into(),
                reason: "r".into(),
                ..Default::default()
            };
            kube_kind(&kube::Error::Api(status.into()))
        };
        assert_eq!(api(409), ErrorKind::Conflict);
        assert_eq!(api(422), ErrorKind::Invalid);
        assert_eq!(api(403), ErrorKind::Precondition);
        assert_eq!(api(503), ErrorKind::Unavailable);
    }
}
