//! What can go wrong talking to Velero, said so that an operator knows what
//! to do next.

use std::time::Duration;

/// Errors of the Velero adapter.
#[derive(Debug, thiserror::Error)]
pub enum VeleroError {
    #[error(
        "could not {action} Velero {kind} {namespace}/{name}: {source}; check that Velero's \
         CRDs are installed and that the agent's service account may do this in {namespace}"
    )]
    Api {
        action: &'static str,
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },

    #[error(
        "Velero {kind} {namespace}/{name} already exists with a different {field}; \
         it was not made by this request: choose another name or delete the old object"
    )]
    SpecConflict {
        kind: &'static str,
        namespace: String,
        name: String,
        field: &'static str,
    },

    #[error(
        "Velero {kind} {namespace}/{name} disappeared while Ferry was waiting for it \
         (someone deleted it); create it again"
    )]
    Vanished {
        kind: &'static str,
        namespace: String,
        name: String,
    },

    #[error(
        "Velero {kind} {namespace}/{name} did not {what} within {timeout:?} (last phase: \
         {last_phase}); check that the Velero server pod runs and read its logs"
    )]
    Timeout {
        kind: &'static str,
        namespace: String,
        name: String,
        what: &'static str,
        timeout: Duration,
        last_phase: String,
    },

    #[error("watching Velero {kind} {namespace}/{name} ended unexpectedly; retry the step")]
    WatchEnded {
        kind: &'static str,
        namespace: String,
        name: String,
    },
}

pub type Result<T, E = VeleroError> = std::result::Result<T, E>;
