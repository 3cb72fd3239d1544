use std::path::PathBuf;

/// Errors of the agent library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Connect(#[from] ferry_common::tls::ConnectError),
    #[error("the coordinator refused the session: {0}")]
    Refused(tonic::Status),
    #[error("session with the coordinator ended: {0}")]
    Stream(tonic::Status),
    #[error("the coordinator closed the session")]
    Closed,
    #[error("agent state in {path}: {message}")]
    State { path: PathBuf, message: String },
    #[error("invalid agent configuration: {0}")]
    Config(String),
}

impl Error {
    /// The coordinator (or this agent, checking the coordinator) refuses
    /// who this agent or the server is: redialling changes nothing until a
    /// certificate or a configuration does.
    pub fn is_permanent(&self) -> bool {
        match self {
            Error::Refused(s) | Error::Stream(s) => matches!(
                s.code(),
                tonic::Code::PermissionDenied | tonic::Code::Unauthenticated
            ),
            Error::Connect(ferry_common::tls::ConnectError::Refused { .. }) => true,
            _ => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
