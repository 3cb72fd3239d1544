//! Errors of the sandbox's S3 endpoint and of its in-process helpers.

use std::path::PathBuf;

/// What went wrong in the S3 sandbox, and on which object.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot use {path} as the S3 sandbox's storage root: {source}")]
    Root {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot open the s3s filesystem backend at {path}: {message}")]
    Backend { path: PathBuf, message: String },

    #[error("cannot listen on {addr} for the S3 sandbox: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot make {what} for the S3 sandbox's HTTPS: {message}")]
    Tls { what: String, message: String },

    #[error("bucket {bucket:?} does not exist in the S3 sandbox; create it first")]
    NoSuchBucket { bucket: String },

    #[error("object {key:?} does not exist in bucket {bucket:?}")]
    NoSuchKey { bucket: String, key: String },

    #[error("S3 operation {operation} on {target} failed: {message}")]
    Operation {
        operation: &'static str,
        target: String,
        message: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
