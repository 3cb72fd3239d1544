//! What a step made or used, and who did something: typed here, stored as
//! the prefixed strings journals have always held (`backup/<name>`).
use std::fmt;
use std::str::FromStr;

/// One entry of a step's `refs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepRef {
    /// The agent command the step sent.
    Command(String),
    /// The Velero backup the step made (or is making).
    Backup(String),
    /// A backup that failed, renamed before a retry so the retry makes a new
    /// one (Velero names are the idempotency keys).
    FailedBackup(String),
    /// An earlier stage copy's backup, kept for cleanup.
    StagedBackup(String),
    Restore(String),
    Transfer(String),
}

impl StepRef {
    fn parts(&self) -> (&'static str, &str) {
        match self {
            StepRef::Command(v) => ("command", v),
            StepRef::Backup(v) => ("backup", v),
            StepRef::FailedBackup(v) => ("failed-backup", v),
            StepRef::StagedBackup(v) => ("staged-backup", v),
            StepRef::Restore(v) => ("restore", v),
            StepRef::Transfer(v) => ("transfer", v),
        }
    }

    /// The name of any backup this names, failed and staged ones too.
    pub fn any_backup(&self) -> Option<&str> {
        match self {
            StepRef::Backup(n) | StepRef::FailedBackup(n) | StepRef::StagedBackup(n) => Some(n),
            _ => None,
        }
    }
}

impl fmt::Display for StepRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, value) = self.parts();
        write!(f, "{kind}/{value}")
    }
}

impl FromStr for StepRef {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, value) = s
            .split_once('/')
            .ok_or_else(|| format!("step reference {s:?} has no kind"))?;
        let value = value.to_string();
        Ok(match kind {
            "command" => StepRef::Command(value),
            "backup" => StepRef::Backup(value),
            "failed-backup" => StepRef::FailedBackup(value),
            "staged-backup" => StepRef::StagedBackup(value),
            "restore" => StepRef::Restore(value),
            "transfer" => StepRef::Transfer(value),
            other => return Err(format!("step reference of unknown kind {other:?}")),
        })
    }
}

/// A step's refs as they are read: entries this build does not know are
/// skipped (a newer coordinator's), never an error.
pub fn parse_refs(refs: &[String]) -> impl Iterator<Item = StepRef> + '_ {
    refs.iter().filter_map(|r| r.parse().ok())
}

/// Adds `r` to a step's refs unless it is there.
pub fn add_ref(refs: &mut Vec<String>, r: &StepRef) {
    let s = r.to_string();
    if !refs.contains(&s) {
        refs.push(s);
    }
}

/// Who did something, as the audit log names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    Coordinator,
    /// A cluster's agent acted.
    Cluster(String),
    /// A client, as authorization named it (`client/<name>`).
    Client(String),
}

impl Actor {
    /// The agent of `cluster`, or the coordinator when no cluster runs it.
    pub fn of_step(cluster: &str) -> Self {
        if cluster.is_empty() {
            Actor::Coordinator
        } else {
            Actor::Cluster(cluster.to_string())
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Coordinator => f.write_str("coordinator"),
            Actor::Cluster(c) => write!(f, "cluster/{c}"),
            Actor::Client(who) => f.write_str(who),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_keep_their_stored_form() {
        for stored in [
            "command/0f1e",
            "backup/r-2026-11-24-06-30-05",
            "failed-backup/r-2026-11-24-06-30-05",
            "staged-backup/r-2026-11-24-06-30-05",
            "restore/r-2026-11-24-06-30-05-init",
            "transfer/m1-transfer-a1-backup",
        ] {
            let r: StepRef = stored.parse().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(r.to_string(), stored);
        }
        assert!("widget/x".parse::<StepRef>().is_err());
        let refs = vec!["widget/x".to_string(), "backup/b".to_string()];
        assert_eq!(
            parse_refs(&refs).collect::<Vec<_>>(),
            [StepRef::Backup("b".into())]
        );
        assert_eq!(Actor::of_step("").to_string(), "coordinator");
        assert_eq!(Actor::of_step("a").to_string(), "cluster/a");
    }
}
