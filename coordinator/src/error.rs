use std::path::PathBuf;

use ferry_common::pb::ErrorKind;

/// Errors of the coordinator library. Each maps to one gRPC status in `From`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "state store {path}: {message}; if the coordinator crashed, restart it; if the file is corrupt, restore it from backup"
    )]
    Store { path: PathBuf, message: String },
    #[error("stored record {key} is unreadable: {message}")]
    Corrupt { key: String, message: String },
    #[error(transparent)]
    Common(#[from] ferry_common::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("no agent of cluster {0} is known; check `ferry agents`")]
    UnknownAgent(String),
    #[error("agent of cluster {0} is connected; only a disconnected agent can be forgotten")]
    AgentConnected(String),
    #[error("no command {0}")]
    UnknownCommand(String),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("no load {0}; list loads with `ferry load list`")]
    UnknownLoad(String),
    #[error("{0}")]
    Precondition(String),
    #[error("no migration {0}; list them with `ferry migrate list`")]
    UnknownMigration(String),
    #[error(
        "state database {target}: {message}; check that PostgreSQL is up and reachable and the credentials are right"
    )]
    Database { target: String, message: String },
    #[error(
        "state database {target} is at schema version {found}, newer than this coordinator knows ({known}); run a coordinator at least as new as the one that upgraded it"
    )]
    SchemaTooNew {
        target: String,
        found: i64,
        known: i64,
    },
    #[error(
        "not the leader; retry: this coordinator's lease (generation {generation}) was taken over (now {}), so its write was refused and it steps down",
        current.map_or("none".to_string(), |g| format!("generation {g}"))
    )]
    Deposed {
        generation: i64,
        current: Option<i64>,
    },
    #[error("no transfer {0}; list them with `ferry transfer list`")]
    UnknownTransfer(String),
    #[error("the coordinator is shutting down; {0} is picked up again when it restarts")]
    ShuttingDown(String),
    /// The caller is known but may not do this (its role, or its kind of
    /// identity); the message says what would be allowed.
    #[error("{0}")]
    Denied(String),
    /// A peer answered with something this build does not expect.
    #[error("{0}; agent and coordinator versions may differ")]
    Protocol(String),
    #[error("the agent of {cluster} did not answer {what} within {within:?}")]
    NoAnswer {
        cluster: String,
        what: String,
        within: std::time::Duration,
    },
    /// An agent ran a command and reported why it failed, and of what kind.
    #[error("{message} (agent of {cluster})")]
    Command {
        cluster: String,
        kind: ferry_common::pb::ErrorKind,
        message: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The status of a refused caller: [`Error::Denied`]'s, as handlers that
/// answer with a `Status` directly need it.
pub fn denied(message: impl Into<String>) -> tonic::Status {
    Error::Denied(message.into()).into()
}

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        // An error may embed a peer's own input: never echo it in full.
        let message = ferry_common::limits::cap_message(e.to_string());
        match e {
            Error::UnknownAgent(_)
            | Error::UnknownCommand(_)
            | Error::UnknownLoad(_)
            | Error::UnknownMigration(_)
            | Error::UnknownTransfer(_) => tonic::Status::not_found(message),
            Error::AgentConnected(_) | Error::Precondition(_) => {
                tonic::Status::failed_precondition(message)
            }
            Error::Invalid(_) => tonic::Status::invalid_argument(message),
            Error::Denied(_) => tonic::Status::permission_denied(message),
            // Clients and agents retry UNAVAILABLE: the leader answers them.
            Error::Deposed { .. } | Error::ShuttingDown(_) | Error::NoAnswer { .. } => {
                tonic::Status::unavailable(message)
            }
            Error::Command { kind, .. } => match kind {
                ErrorKind::Invalid => tonic::Status::invalid_argument(message),
                ErrorKind::Precondition => tonic::Status::failed_precondition(message),
                ErrorKind::Conflict => tonic::Status::aborted(message),
                ErrorKind::Unavailable => tonic::Status::unavailable(message),
                ErrorKind::Internal | ErrorKind::Unspecified => tonic::Status::internal(message),
            },
            Error::Store { .. }
            | Error::Corrupt { .. }
            | Error::Common(_)
            | Error::Listen { .. }
            | Error::Database { .. }
            | Error::SchemaTooNew { .. }
            | Error::Protocol(_) => tonic::Status::internal(message),
        }
    }
}

impl Error {
    /// The kind of failure, in the agents' words: what a failed step's
    /// metric and journal say.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Command { kind, .. } => match kind {
                ErrorKind::Unspecified => ErrorKind::Internal,
                k => *k,
            },
            Error::Invalid(_) => ErrorKind::Invalid,
            Error::UnknownAgent(_)
            | Error::UnknownCommand(_)
            | Error::UnknownLoad(_)
            | Error::UnknownMigration(_)
            | Error::UnknownTransfer(_)
            | Error::AgentConnected(_)
            | Error::Denied(_)
            | Error::Precondition(_) => ErrorKind::Precondition,
            Error::Deposed { .. }
            | Error::ShuttingDown(_)
            | Error::NoAnswer { .. }
            | Error::Database { .. } => ErrorKind::Unavailable,
            Error::Store { .. }
            | Error::Corrupt { .. }
            | Error::Common(_)
            | Error::Listen { .. }
            | Error::SchemaTooNew { .. }
            | Error::Protocol(_) => ErrorKind::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent_failed(kind: ErrorKind) -> Error {
        Error::Command {
            cluster: "a".into(),
            kind,
            message: "backup of registry \"r\" on cluster a: failed".into(),
        }
    }

    /// An agent's failure keeps its kind up to the client's status.
    #[test]
    fn a_command_error_reaches_its_status_by_kind() {
        let code = |kind| tonic::Status::from(agent_failed(kind)).code();
        assert_eq!(code(ErrorKind::Invalid), tonic::Code::InvalidArgument);
        assert_eq!(
            code(ErrorKind::Precondition),
            tonic::Code::FailedPrecondition
        );
        assert_eq!(code(ErrorKind::Conflict), tonic::Code::Aborted);
        assert_eq!(code(ErrorKind::Unavailable), tonic::Code::Unavailable);
        assert_eq!(code(ErrorKind::Internal), tonic::Code::Internal);
        // An older agent sends no kind: internal.
        assert_eq!(code(ErrorKind::Unspecified), tonic::Code::Internal);
        assert_eq!(
            agent_failed(ErrorKind::Unspecified).kind(),
            ErrorKind::Internal
        );
        assert_eq!(
            agent_failed(ErrorKind::Conflict).kind(),
            ErrorKind::Conflict
        );
        assert_eq!(
            tonic::Status::from(Error::UnknownTransfer("t".into())).code(),
            tonic::Code::NotFound
        );
        assert_eq!(
            tonic::Status::from(Error::ShuttingDown("backup".into())).code(),
            tonic::Code::Unavailable
        );
        assert_eq!(
            tonic::Status::from(Error::Denied("client c has role viewer".into())).code(),
            tonic::Code::PermissionDenied
        );
    }
}
