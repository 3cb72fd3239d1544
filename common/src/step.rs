//! The names of a migration's steps, one vocabulary for the coordinator that
//! plans and journals them and the agent that runs them. The words are the
//! ones journals have always stored (`restore-init`, `unquiesce-source`):
//! `FromStr` reads every name `Display` writes, so old journals load.
use std::fmt;
use std::str::FromStr;

use crate::pb::step_command::Kind;

/// The Platform's restore phases, in the order they run (DESIGN §1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    Init,
    Volumes,
    Vault,
    Nexus,
    Gerrit,
    Jenkins,
    Postgres,
    Kafka,
    Redis,
    Redash,
    GeoServer,
    Rest,
}

impl Phase {
    pub const ALL: [Phase; 12] = [
        Phase::Init,
        Phase::Volumes,
        Phase::Vault,
        Phase::Nexus,
        Phase::Gerrit,
        Phase::Jenkins,
        Phase::Postgres,
        Phase::Kafka,
        Phase::Redis,
        Phase::Redash,
        Phase::GeoServer,
        Phase::Rest,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Phase::Init => "init",
            Phase::Volumes => "volumes",
            Phase::Vault => "vault",
            Phase::Nexus => "nexus",
            Phase::Gerrit => "gerrit",
            Phase::Jenkins => "jenkins",
            Phase::Postgres => "postgres",
            Phase::Kafka => "kafka",
            Phase::Redis => "redis",
            Phase::Redash => "redash",
            Phase::GeoServer => "geo-server",
            Phase::Rest => "rest",
        }
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Declares `StepName` with each step's journal word, so that a step added
/// is in `StepName::all()` (what `FromStr` accepts) by being declared: the
/// list cannot fall behind the enum.
macro_rules! step_names {
    (
        [$($before:ident => $before_word:literal,)*]
        Restore(Phase) => "restore",
        [$($after:ident => $after_word:literal,)*]
    ) => {
        /// A step of a migration's plan or of its rollback.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum StepName {
            $($before,)*
            Restore(Phase),
            $($after,)*
        }

        impl StepName {
            /// Every step, each phase's restore included, in plan order.
            pub fn all() -> impl Iterator<Item = StepName> {
                [$(StepName::$before),*]
                    .into_iter()
                    .chain(Phase::ALL.into_iter().map(StepName::Restore))
                    .chain([$(StepName::$after),*])
            }

            /// The word stored in journals; a restore's is `restore-<phase>`.
            fn word(self) -> &'static str {
                match self {
                    $(StepName::$before => $before_word,)*
                    StepName::Restore(_) => "restore",
                    $(StepName::$after => $after_word,)*
                }
            }
        }
    };
}

step_names! {
    [
        Preflight => "preflight",
        StageBackup => "stage-backup",
        StageTransfer => "stage-transfer",
        AwaitCutover => "await-cutover",
        Quiesce => "quiesce",
        Backup => "backup",
        Inventory => "inventory",
        ExportIdentity => "export-identity",
        Transfer => "transfer",
    ]
    Restore(Phase) => "restore",
    [
        ImportIdentity => "import-identity",
        Reconfigure => "reconfigure",
        Verify => "verify",
        CleanupTarget => "cleanup-target",
        UnquiesceSource => "unquiesce-source",
    ]
}

impl fmt::Display for StepName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StepName::Restore(phase) => write!(f, "restore-{phase}"),
            other => f.write_str(other.word()),
        }
    }
}

/// A step name this build does not know (from a newer coordinator's journal).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no step named {0:?} in this build; upgrade it")]
pub struct UnknownStep(pub String);

impl FromStr for StepName {
    type Err = UnknownStep;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(phase) = s.strip_prefix("restore-") {
            return Phase::ALL
                .into_iter()
                .find(|p| p.name() == phase)
                .map(StepName::Restore)
                .ok_or_else(|| UnknownStep(s.to_string()));
        }
        StepName::all()
            .find(|n| !matches!(n, StepName::Restore(_)) && n.word() == s)
            .ok_or_else(|| UnknownStep(s.to_string()))
    }
}

/// How the agent names the step a command asks for, in the same words: the
/// step that sends this kind of command, or the family word where several
/// steps send it (`backup` for the stage backup too, `restore` for every
/// phase, `inventory` for verify's).
pub fn command_step_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::Preflight(_) => StepName::Preflight.word(),
        Kind::Quiesce(c) if c.undo => StepName::UnquiesceSource.word(),
        Kind::Quiesce(_) => StepName::Quiesce.word(),
        Kind::Backup(_) => StepName::Backup.word(),
        Kind::ExportIdentity(_) => StepName::ExportIdentity.word(),
        Kind::Restore(_) => StepName::Restore(Phase::Init).word(),
        Kind::ImportIdentity(_) => StepName::ImportIdentity.word(),
        Kind::Reconfigure(_) => StepName::Reconfigure.word(),
        Kind::Inventory(_) => StepName::Inventory.word(),
        Kind::Cleanup(_) => StepName::CleanupTarget.word(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The words journals stored before the enum existed.
    #[test]
    fn names_read_back_what_journals_stored() {
        let stored = [
            "preflight",
            "stage-backup",
            "stage-transfer",
            "await-cutover",
            "quiesce",
            "backup",
            "inventory",
            "export-identity",
            "transfer",
            "restore-init",
            "restore-volumes",
            "restore-geo-server",
            "restore-rest",
            "import-identity",
            "reconfigure",
            "verify",
            "cleanup-target",
            "unquiesce-source",
        ];
        for word in stored {
            let name: StepName = word.parse().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(name.to_string(), word);
        }
        for name in StepName::all() {
            assert_eq!(name.to_string().parse::<StepName>(), Ok(name));
        }
        assert_eq!(StepName::all().count(), 14 + 12);
        assert!("restore".parse::<StepName>().is_err());
        assert!("restore-everything".parse::<StepName>().is_err());
        assert!("un-quiesce".parse::<StepName>().is_err());
    }
}
