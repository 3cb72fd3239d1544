//! How a Velero backup or restore ended, and how far along it is.

use serde::{Deserialize, Serialize};

/// The terminal result of a Backup or Restore. `PartiallyFailed` is kept
/// apart from `Failed` because the operator decides whether a partial result
/// is good enough (Velero's own CLI does the same).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "camelCase")]
pub enum Outcome {
    Completed { warnings: u64 },
    PartiallyFailed { errors: u64, warnings: u64 },
    Failed { reason: String },
}

/// A progress report: Velero's phase and its item counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub phase: String,
    /// Items backed up (Backup) or restored (Restore) so far.
    pub done: u64,
    /// Items Velero expects in total; 0 while it does not know yet.
    pub total: u64,
}

/// Builds the outcome from Velero's phase and counters, or `None` while the
/// object is not finished. Shared by Backup and Restore: both use the same
/// phase names for their terminal states.
pub(crate) fn outcome_of(
    phase: Option<&str>,
    errors: u64,
    warnings: u64,
    failure_reason: Option<&str>,
    validation_errors: &[String],
) -> Option<Outcome> {
    let reason = || {
        failure_reason
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .or_else(|| (!validation_errors.is_empty()).then(|| validation_errors.join("; ")))
    };
    match phase? {
        "Completed" => Some(Outcome::Completed { warnings }),
        "PartiallyFailed" => Some(Outcome::PartiallyFailed { errors, warnings }),
        "Failed" => Some(Outcome::Failed {
            reason: reason().unwrap_or_else(|| "Velero gave no reason; read its logs".into()),
        }),
        "FailedValidation" => Some(Outcome::Failed {
            reason: format!(
                "failed validation: {}",
                reason().unwrap_or_else(|| "Velero gave no reason".into())
            ),
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_phases_are_distinct() {
        assert_eq!(outcome_of(Some("InProgress"), 0, 0, None, &[]), None);
        assert_eq!(outcome_of(None, 0, 0, None, &[]), None);
        assert_eq!(
            outcome_of(Some("Completed"), 0, 2, None, &[]),
            Some(Outcome::Completed { warnings: 2 })
        );
        assert_eq!(
            outcome_of(Some("PartiallyFailed"), 3, 1, None, &[]),
            Some(Outcome::PartiallyFailed {
                errors: 3,
                warnings: 1
            })
        );
        assert_eq!(
            outcome_of(Some("Failed"), 0, 0, Some("bucket gone"), &[]),
            Some(Outcome::Failed {
                reason: "bucket gone".into()
            })
        );
        let invalid = outcome_of(Some("FailedValidation"), 0, 0, None, &["no BSL".into()]);
        assert_eq!(
            invalid,
            Some(Outcome::Failed {
                reason: "failed validation: no BSL".into()
            })
        );
    }
}
