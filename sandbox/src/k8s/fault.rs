//! The fault hook: tests decide, per operation, that the API fails the way
//! a real cluster sometimes does (5xx, conflicts, timeouts turned errors).

use std::sync::Arc;

use super::error::K8sError;
use super::resource::Gvr;

/// Verbs, as the fault hook sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Create,
    Get,
    List,
    Update,
    UpdateStatus,
    Patch,
    PatchStatus,
    Delete,
    DeleteCollection,
    Watch,
}

/// One operation about to run, offered to the fault hook.
#[derive(Debug, Clone, Copy)]
pub struct Operation<'a> {
    pub verb: Verb,
    pub gvr: &'a Gvr,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
}

/// Decides whether an operation fails (tests inject faults with it).
pub type FaultHook = Arc<dyn Fn(&Operation<'_>) -> Option<K8sError> + Send + Sync>;
