//! What a client asks for, validated once at the API edge: the logic below
//! it sees a `Mode`, not two booleans, and names that were already checked.
use ferry_common::identity::valid_name;
use ferry_common::pb;

use crate::{Error, Result};

/// How a migration reaches its cutover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Quiesce, back up and move everything in one go.
    Direct,
    /// Copy once while the source serves, then cut over and move the delta.
    Staged,
    /// Staged, then hold (STAGED) until the operator asks for the cutover.
    Held,
}

impl Mode {
    /// Whether the plan starts with a stage copy.
    pub fn stages(self) -> bool {
        matches!(self, Mode::Staged | Mode::Held)
    }

    fn describe(self) -> &'static str {
        match self {
            Mode::Direct => "direct",
            Mode::Staged => "staged",
            Mode::Held => "staged, held for cutover",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationRequest {
    /// Empty until the coordinator picks one (`with_id`).
    pub migration_id: String,
    pub registry: String,
    pub source_cluster: String,
    pub target_cluster: String,
    pub mode: Mode,
    pub allow_warnings: bool,
    /// The agents' store holding the backup storage location's bucket.
    pub backup_store: String,
    /// Velero's backup storage location.
    pub backup_location: String,
}

pub const DEFAULT_BACKUP_STORE: &str = "backups";
pub const DEFAULT_BACKUP_LOCATION: &str = "default";

impl TryFrom<pb::MigrationRequest> for MigrationRequest {
    type Error = Error;

    fn try_from(r: pb::MigrationRequest) -> Result<Self> {
        if !valid_name(&r.registry) {
            return Err(Error::Invalid(format!(
                "registry {:?} must be a namespace name: lowercase letters, digits and '-'",
                r.registry
            )));
        }
        for (what, v) in [
            ("source cluster", &r.source_cluster),
            ("target cluster", &r.target_cluster),
        ] {
            if v.is_empty() {
                return Err(Error::Invalid(format!("the {what} is required")));
            }
        }
        if !r.migration_id.is_empty() && !valid_name(&r.migration_id) {
            return Err(Error::Invalid(format!(
                "migration id {:?} must be lowercase letters, digits and '-'",
                r.migration_id
            )));
        }
        // Holding after a stage copy needs the stage copy: hold implies stage.
        let mode = match (r.stage, r.hold) {
            (_, true) => Mode::Held,
            (true, false) => Mode::Staged,
            (false, false) => Mode::Direct,
        };
        let or = |v: String, default: &str| {
            if v.is_empty() { default.to_string() } else { v }
        };
        Ok(Self {
            migration_id: r.migration_id,
            registry: r.registry,
            source_cluster: r.source_cluster,
            target_cluster: r.target_cluster,
            mode,
            allow_warnings: r.allow_warnings,
            backup_store: or(r.backup_store, DEFAULT_BACKUP_STORE),
            backup_location: or(r.backup_location, DEFAULT_BACKUP_LOCATION),
        })
    }
}

impl From<&MigrationRequest> for pb::MigrationRequest {
    fn from(r: &MigrationRequest) -> Self {
        pb::MigrationRequest {
            migration_id: r.migration_id.clone(),
            registry: r.registry.clone(),
            source_cluster: r.source_cluster.clone(),
            target_cluster: r.target_cluster.clone(),
            stage: r.mode.stages(),
            allow_warnings: r.allow_warnings,
            backup_store: r.backup_store.clone(),
            backup_location: r.backup_location.clone(),
            hold: r.mode == Mode::Held,
        }
    }
}

impl MigrationRequest {
    /// The request a stored migration was started with. It was validated when
    /// it was stored; a record that fails now was written by something else.
    pub fn of(m: &pb::Migration) -> Result<Self> {
        let stored = m.request.clone().ok_or_else(|| Error::Corrupt {
            key: format!("migration/{}", m.migration_id),
            message: "the record holds no request".into(),
        })?;
        Self::try_from(stored).map_err(|e| Error::Corrupt {
            key: format!("migration/{}", m.migration_id),
            message: format!("its stored request is invalid: {e}"),
        })
    }

    /// One line for the audit log.
    pub fn describe(&self) -> String {
        format!(
            "registry {} from {} to {} ({}, allow warnings: {})",
            self.registry,
            self.source_cluster,
            self.target_cluster,
            self.mode.describe(),
            self.allow_warnings
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> pb::MigrationRequest {
        pb::MigrationRequest {
            registry: "abc-01".into(),
            source_cluster: "a".into(),
            target_cluster: "b".into(),
            ..Default::default()
        }
    }

    #[test]
    fn the_edge_refuses_what_the_logic_must_not_see() {
        let bad_registry = pb::MigrationRequest {
            registry: "ABC".into(),
            ..request()
        };
        assert!(matches!(
            MigrationRequest::try_from(bad_registry),
            Err(Error::Invalid(_))
        ));
        let no_target = pb::MigrationRequest {
            target_cluster: String::new(),
            ..request()
        };
        assert!(MigrationRequest::try_from(no_target).is_err());
        let bad_id = pb::MigrationRequest {
            migration_id: "x/y".into(),
            ..request()
        };
        assert!(MigrationRequest::try_from(bad_id).is_err());
    }

    #[test]
    fn hold_implies_stage_and_defaults_are_filled_in() -> Result<()> {
        let r = MigrationRequest::try_from(pb::MigrationRequest {
            hold: true,
            ..request()
        })?;
        assert_eq!(r.mode, Mode::Held);
        assert_eq!(r.backup_store, "backups");
        assert_eq!(r.backup_location, "default");
        let back = pb::MigrationRequest::from(&r);
        assert!(back.stage && back.hold);
        let direct = MigrationRequest::try_from(request())?;
        assert_eq!(direct.mode, Mode::Direct);
        Ok(())
    }
}
