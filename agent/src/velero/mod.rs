//! Velero (`velero.io/v1`) through the Kubernetes API: typed `Backup`,
//! `Restore` and `BackupStorageLocation`, idempotent creation of backups and
//! restores, and watching them to a terminal phase with progress.
//!
//! The types are written by hand against Velero's published CRDs (see
//! `shared/reference/velero-crds/`): only the fields Ferry reads or sets are
//! typed, everything else is kept verbatim so that nothing is lost when an
//! object is read and written back.

mod backup;
mod bsl;
mod create;
mod error;
mod name;
mod outcome;
mod resource;
mod restore;
mod wait;

pub use backup::{
    Backup, BackupProgress, BackupRequest, BackupSpec, BackupStatus, create_backup, wait_backup,
    wait_backup_present,
};
pub use bsl::{BackupStorageLocation, BslObjectStorage, BslSpec, BslStatus, list_locations};
pub use error::{Result, VeleroError};
pub use name::backup_name;
pub use outcome::{Outcome, Progress};
pub use restore::{
    Restore, RestoreProgress, RestoreRequest, RestoreSpec, RestoreStatus, create_restore,
    wait_restore,
};

/// The namespace Velero and its objects live in on the Platform.
pub const VELERO_NAMESPACE: &str = "velero";
/// Velero's API group.
pub const GROUP: &str = "velero.io";
/// Velero's API version.
pub const VERSION: &str = "v1";
/// Label the backup-sync controller puts on a Backup it found in storage.
pub const STORAGE_LOCATION_LABEL: &str = "velero.io/storage-location";
