//! A Velero-compatible controller running in process against the sandbox's
//! [`Store`](crate::k8s::Store) and [`S3Server`](crate::s3::S3Server).
//!
//! It executes `Backup` and `Restore` objects (watch-driven), writes and reads
//! Velero's storage layout in the backup storage location's bucket, keeps
//! each `BackupStorageLocation`'s phase, and syncs backups found in a bucket
//! into `Backup` objects, so that a backup copied from one sandbox into
//! another's bucket can be restored there, as with a real Velero.
//!
//! Volume data: each PVC's contents is a directory under [`Volumes`]; with
//! `defaultVolumesToFsBackup` a backup writes it to a file-system backup
//! repository under `<prefix>/kopia/<namespace>/` (see [`repo`]).

mod backup;
mod bsl;
mod clock;
mod controller;
mod error;
mod faults;
mod filter;
mod layout;
mod location;
mod meta;
mod node_agent;
pub mod repo;
mod restore;
mod restore_item;
mod results;
mod sync;
mod tarball;
pub(crate) mod volumes;
mod volumes_backup;

pub use controller::{VeleroConfig, VeleroController};
pub use error::{Result, VeleroError};
pub use faults::VeleroFaults;
pub use layout::{backup_keys, restore_keys};
pub use node_agent::NodeAgentStandIn;
pub use tarball::entry_paths as tarball_entry_paths;
pub use volumes::{VolumeFile, Volumes, filler_stream};

/// Velero's API group and version.
pub const GROUP: &str = "velero.io";
pub const VERSION: &str = "v1";
/// The namespace Velero runs in on the Platform.
pub const VELERO_NAMESPACE: &str = "velero";
/// Label the backup sync puts on the `Backup` objects it creates.
pub const STORAGE_LOCATION_LABEL: &str = "velero.io/storage-location";
/// Labels a restore puts on what it creates, as Velero does.
pub const BACKUP_NAME_LABEL: &str = "velero.io/backup-name";
pub const RESTORE_NAME_LABEL: &str = "velero.io/restore-name";
/// What `metadata/version` of a backup tarball says (Velero's format).
pub const BACKUP_FORMAT_VERSION: &str = "1.1.0";

use crate::k8s::Gvr;

pub(crate) fn backups_gvr() -> Gvr {
    Gvr::new(GROUP, VERSION, "backups")
}

pub(crate) fn restores_gvr() -> Gvr {
    Gvr::new(GROUP, VERSION, "restores")
}

pub(crate) fn locations_gvr() -> Gvr {
    Gvr::new(GROUP, VERSION, "backupstoragelocations")
}
