use std::path::PathBuf;

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
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for tonic::Status {
    fn from(e: Error) -> Self {
        // An error may embed a peer's own input: never echo it in full.
        let message = ferry_common::limits::cap_message(e.to_string());
        match e {
            Error::UnknownAgent(_)
            | Error::UnknownCommand(_)
            | Error::UnknownLoad(_)
            | Error::UnknownMigration(_) => tonic::Status::not_found(message),
            Error::AgentConnected(_) | Error::Precondition(_) => {
                tonic::Status::failed_precondition(message)
            }
            Error::Invalid(_) => tonic::Status::invalid_argument(message),
            // Clients and agents retry UNAVAILABLE: the leader answers them.
            Error::Deposed { .. } => tonic::Status::unavailable(message),
            Error::Store { .. }
            | Error::Corrupt { .. }
            | Error::Common(_)
            | Error::Listen { .. }
            | Error::Database { .. }
            | Error::SchemaTooNew { .. } => tonic::Status::internal(message),
        }
    }
}
