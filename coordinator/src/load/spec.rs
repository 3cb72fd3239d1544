//! Checking a client's load spec, and turning an agent's result into the
//! load's recorded status.
use ferry_common::pb::{self, LoadState};

use crate::{Error, Result};

/// The most errors a load may ask to have listed.
const MAX_ERRORS_CAP: u32 = 10_000;

pub fn check(spec: pb::LoadSpec) -> Result<pb::LoadSpec> {
    if !ferry_common::identity::valid_name(&spec.load_id) {
        return Err(Error::Invalid(format!(
            "load id {:?} must be lowercase letters, digits and '-'",
            spec.load_id
        )));
    }
    if spec.cluster_id.is_empty() || spec.database.is_empty() {
        return Err(Error::Invalid(format!(
            "load {}: a cluster id and a database name are required",
            spec.load_id
        )));
    }
    if spec.files.is_empty() {
        return Err(Error::Invalid(format!(
            "load {}: name at least one file and its table",
            spec.load_id
        )));
    }
    if let Some(f) = spec
        .files
        .iter()
        .find(|f| f.name.is_empty() || f.table.is_empty())
    {
        return Err(Error::Invalid(format!(
            "load {}: file {:?} needs a name and a target table",
            spec.load_id, f.name
        )));
    }
    if let Some(f) = spec.files.iter().find(|f| {
        !f.sha256.is_empty()
            && (f.sha256.len() != 64 || !f.sha256.bytes().all(|b| b.is_ascii_hexdigit()))
    }) {
        return Err(Error::Invalid(format!(
            "load {}: file {:?}: its sha256 must be 64 hex digits",
            spec.load_id, f.name
        )));
    }
    if !matches!(spec.delimiter.as_str(), "" | "," | ";") {
        return Err(Error::Invalid(format!(
            "load {}: delimiter {:?} is not `,` or `;`",
            spec.load_id, spec.delimiter
        )));
    }
    if spec.max_errors > MAX_ERRORS_CAP {
        return Err(Error::Invalid(format!(
            "load {}: max errors {} is above {MAX_ERRORS_CAP}",
            spec.load_id, spec.max_errors
        )));
    }
    Ok(spec)
}

/// Refuses a repeat of a loaded id whose files differ from the recorded
/// ones (by table and SHA-256, in order), naming the files the id belongs
/// to. Either side without digests (an older client) is taken as the same.
pub fn check_same_content(recorded: &pb::LoadStatus, spec: &pb::LoadSpec) -> Result<()> {
    let Some(before) = recorded.spec.as_ref() else {
        return Ok(());
    };
    let declared = |s: &pb::LoadSpec| s.files.iter().all(|f| !f.sha256.is_empty());
    if !declared(before) || !declared(spec) {
        return Ok(());
    }
    // A file's mapping is part of its content (the same file mapped
    // otherwise is other data).
    let content = |s: &pb::LoadSpec| {
        s.files
            .iter()
            .map(|f| {
                (
                    f.table.clone(),
                    f.sha256.to_ascii_lowercase(),
                    f.csv_columns.clone(),
                    f.target_columns.clone(),
                )
            })
            .collect::<Vec<_>>()
    };
    if content(before) == content(spec) {
        return Ok(());
    }
    let files = before
        .files
        .iter()
        .map(|f| format!("{} -> {}", f.name, f.table))
        .collect::<Vec<_>>()
        .join(", ");
    Err(Error::Precondition(format!(
        "load {} was already loaded (at {}) from {files}, and these files differ from those \
         (SHA-256): nothing was loaded; give new data a new load id (--id)",
        recorded.load_id,
        if recorded.loaded_at.is_empty() {
            "an earlier time"
        } else {
            &recorded.loaded_at
        }
    )))
}

/// A recorded state that means the data is in the database.
pub fn is_loaded(state: i32) -> bool {
    matches!(
        LoadState::try_from(state),
        Ok(LoadState::Loaded | LoadState::AlreadyLoaded)
    )
}

pub fn is_running(state: i32) -> bool {
    state == LoadState::Running as i32
}

/// Copies a finished command's result into the load's status.
pub fn record_result(status: &mut pb::LoadStatus, command: &pb::CommandStatus) {
    use pb::command_result::Outcome;
    match command.result.as_ref().and_then(|r| r.outcome.as_ref()) {
        Some(Outcome::Output(pb::CommandOutput {
            kind: Some(pb::command_output::Kind::Load(o)),
        })) => {
            status.state = o.state;
            status.rows = o.rows;
            status.bytes = o.bytes;
            status.files = o.files.clone();
            status.errors = o.errors.clone();
            status.errors_truncated = o.errors_truncated;
            status.loaded_at = o.loaded_at.clone();
            status.error = o.error.clone();
        }
        Some(Outcome::Error(e)) => {
            status.state = LoadState::Failed as i32;
            status.error = e.message.clone();
        }
        _ => {
            status.state = LoadState::Failed as i32;
            status.error = format!(
                "command {} ended without a load result; is the agent older than the coordinator?",
                command.command_id
            );
        }
    }
    status.finished_at_unix_ms = ferry_common::time::unix_ms();
}

/// The event that ends a `StartLoad` stream.
pub fn final_event(status: pb::LoadStatus) -> pb::LoadEvent {
    use pb::load_event::Event;
    let event = match LoadState::try_from(status.state) {
        Ok(LoadState::Loaded | LoadState::AlreadyLoaded | LoadState::DryRunPassed) => {
            Event::Finished(status)
        }
        Ok(LoadState::Rejected) => Event::Rejected(status),
        _ => Event::Failed(status),
    };
    pb::LoadEvent { event: Some(event) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> pb::LoadSpec {
        pb::LoadSpec {
            load_id: "l-1".into(),
            cluster_id: "a".into(),
            database: "registry".into(),
            files: vec![pb::LoadFile {
                name: "cats.csv".into(),
                table: "category".into(),
                size: 10,
                sha256: String::new(),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn specs_are_checked_at_the_edge() {
        assert!(check(spec()).is_ok());
        let bad = [
            pb::LoadSpec {
                load_id: "Bad Id".into(),
                ..spec()
            },
            pb::LoadSpec {
                database: String::new(),
                ..spec()
            },
            pb::LoadSpec {
                files: vec![],
                ..spec()
            },
            pb::LoadSpec {
                delimiter: "|".into(),
                ..spec()
            },
        ];
        for s in bad {
            assert!(
                matches!(check(s.clone()), Err(Error::Invalid(_))),
                "{s:?} accepted"
            );
        }
    }

    #[test]
    fn a_loaded_id_with_other_files_is_refused_naming_them() {
        let with = |sha: &str| pb::LoadSpec {
            files: vec![pb::LoadFile {
                sha256: sha.into(),
                ..spec().files[0].clone()
            }],
            ..spec()
        };
        let recorded = pb::LoadStatus {
            load_id: "l-1".into(),
            spec: Some(with(&"a".repeat(64))),
            state: LoadState::Loaded as i32,
            ..Default::default()
        };
        assert!(check_same_content(&recorded, &with(&"A".repeat(64))).is_ok());
        assert!(
            check_same_content(&recorded, &with("")).is_ok(),
            "undeclared"
        );
        match check_same_content(&recorded, &with(&"b".repeat(64))) {
            Err(Error::Precondition(m)) => assert!(m.contains("cats.csv -> category"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(check(with("not-hex")), Err(Error::Invalid(_))));
    }

    /// The same file under the same id with another mapping is other data.
    #[test]
    fn a_loaded_id_with_another_mapping_is_refused() {
        let with = |targets: &[&str]| pb::LoadSpec {
            files: vec![pb::LoadFile {
                sha256: "a".repeat(64),
                csv_columns: vec!["code".into(), "name".into()],
                target_columns: targets.iter().map(|t| t.to_string()).collect(),
                ..spec().files[0].clone()
            }],
            ..spec()
        };
        let recorded = pb::LoadStatus {
            load_id: "l-1".into(),
            spec: Some(with(&["code", "name"])),
            state: LoadState::Loaded as i32,
            ..Default::default()
        };
        assert!(check_same_content(&recorded, &with(&["code", "name"])).is_ok());
        assert!(matches!(
            check_same_content(&recorded, &with(&["code", "name::upper(name)"])),
            Err(Error::Precondition(_))
        ));
    }

    #[test]
    fn a_load_error_becomes_a_failed_status() {
        let mut status = pb::LoadStatus::default();
        let command = pb::CommandStatus {
            result: Some(pb::CommandResult {
                id: "c".into(),
                outcome: Some(pb::command_result::Outcome::Error(pb::CommandError {
                    message: "database down".into(),
                    kind: pb::ErrorKind::Unavailable.into(),
                })),
            }),
            ..Default::default()
        };
        record_result(&mut status, &command);
        assert_eq!(status.state, LoadState::Failed as i32);
        assert_eq!(status.error, "database down");
        assert!(matches!(
            final_event(status).event,
            Some(pb::load_event::Event::Failed(_))
        ));
    }
}
