//! The names of the contract's enum values: the words the CLI prints (tables
//! and `-o json`), and the coordinator uses in its messages and metric
//! labels. Defined once, here, so the CLI needs no server crate to print a
//! state; each is an exhaustive `match`, so a value added to a `.proto` file
//! does not build until it has a name.
use std::fmt;

use crate::v1::{
    AgentState, CommandState, ErrorKind, EventKind, LoadState, MigrationState, StepState,
    TransferState,
};

/// An enum of the contract whose values have names.
pub trait Named: Copy + TryFrom<i32> {
    fn name(self) -> &'static str;

    /// The name of a value as it travels (an `i32`); `unknown` for a value
    /// this build does not know (one from a newer peer).
    fn name_of(value: i32) -> &'static str {
        Self::try_from(value).map_or("unknown", Self::name)
    }
}

macro_rules! names {
    ($($enum:ident { $($value:ident => $name:literal,)+ })+) => {$(
        impl Named for $enum {
            fn name(self) -> &'static str {
                match self {
                    $(Self::$value => $name,)+
                }
            }
        }

        impl fmt::Display for $enum {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    )+};
}

names! {
    MigrationState {
        Unspecified => "unspecified",
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
        Cancelling => "cancelling",
        Cancelled => "cancelled",
        RollingBack => "rolling_back",
        RolledBack => "rolled_back",
        Staged => "staged",
    }
    StepState {
        Unspecified => "unspecified",
        Pending => "pending",
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
        Skipped => "skipped",
    }
    EventKind {
        Unspecified => "unspecified",
        Created => "created",
        StepStarted => "step_started",
        StepProgress => "step_progress",
        StepFinished => "step_finished",
        StepFailed => "step_failed",
        Warning => "warning",
        Finished => "finished",
        State => "state",
    }
    AgentState {
        Unspecified => "unspecified",
        Connected => "connected",
        Disconnected => "disconnected",
        Lost => "lost",
    }
    CommandState {
        Unspecified => "unspecified",
        Pending => "pending",
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
    }
    TransferState {
        Unspecified => "unspecified",
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
    }
    ErrorKind {
        Unspecified => "internal",
        Invalid => "invalid",
        Precondition => "precondition",
        Conflict => "conflict",
        Unavailable => "unavailable",
        Internal => "internal",
    }
    LoadState {
        Unspecified => "unspecified",
        Running => "running",
        Loaded => "loaded",
        AlreadyLoaded => "already-loaded",
        DryRunPassed => "dry-run-passed",
        Rejected => "rejected",
        Failed => "failed",
        Conflict => "conflict",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names printed before they were defined here: the proto name
    /// without its prefix, in lower case (loads' with dashes).
    #[test]
    fn names_keep_the_printed_words() {
        for s in [MigrationState::RollingBack, MigrationState::Staged] {
            let proto = s.as_str_name().trim_start_matches("MIGRATION_STATE_");
            assert_eq!(s.to_string(), proto.to_ascii_lowercase());
        }
        assert_eq!(EventKind::StepStarted.to_string(), "step_started");
        assert_eq!(LoadState::AlreadyLoaded.to_string(), "already-loaded");
        assert_eq!(
            MigrationState::name_of(MigrationState::Failed as i32),
            "failed"
        );
        assert_eq!(TransferState::name_of(99), "unknown");
    }
}
