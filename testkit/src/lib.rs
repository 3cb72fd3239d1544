//! Harness shared by Ferry's tests: a throwaway PostgreSQL, a real
//! Kubernetes control plane, bounded waits.
#![forbid(unsafe_code)]

pub mod keycloak;
pub mod kube;
pub mod netns;
pub mod pg;
pub mod port;
pub mod realms;
pub mod registry;
pub mod velero;
pub mod versitygw;
pub mod wait;

pub use port::free_port;
pub use wait::{eventually, log_tail};
