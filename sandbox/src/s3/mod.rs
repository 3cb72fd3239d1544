//! An S3-compatible endpoint on loopback, in process: `s3s` checks AWS
//! Signature V4 and routes requests, `s3s-fs` keeps buckets as directories.
//!
//! Standard clients (`object_store`, rclone, `curl --aws-sigv4`, Velero's AWS
//! plugin with `s3ForcePathStyle`) can be pointed at [`S3Server::endpoint`]
//! with its access key, secret key and region.

mod backend;
mod error;
mod fault;
mod index;
mod list;
mod multipart;
mod objects;
mod read;
mod server;

pub use error::{Error, Result};
pub use objects::ObjectInfo;
pub use server::{DEFAULT_REGION, S3Config, S3Server, S3Tls};
