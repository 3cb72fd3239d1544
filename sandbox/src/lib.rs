//! The sandbox: a single-process stand-in for an OKD cluster with the Platform,
//! speaking the real protocols (Kubernetes API, S3, Keycloak admin API) so
//! that the agent's production code is what runs against it.
#![forbid(unsafe_code)]

pub mod cluster;
pub mod conformance;
pub mod fixture;
pub mod k8s;
pub mod keycloak;
pub mod s3;
pub mod velero;
pub mod workloads;
