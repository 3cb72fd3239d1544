//! The agent's memory of commands: which ids it is executing, which it has
//! finished and with what result, and which results the coordinator has
//! acknowledged. A command id is executed at most once; a repeated delivery
//! is answered from here. With a state directory, finished results survive
//! a restart of the agent until they are acknowledged.
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ferry_common::pb;
use prost::Message;

use crate::{Error, Result};

/// How many finished, acknowledged ids are remembered for deduplication.
const REMEMBER: usize = 10_000;

#[derive(Debug, Clone)]
enum Entry {
    Running,
    Done {
        result: Box<pb::CommandResult>,
        acked: bool,
    },
}

/// What to do with a delivered command.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// First delivery: execute it.
    Execute,
    /// Already executing: do nothing more.
    AlreadyRunning,
    /// Already finished: answer with this result again.
    AlreadyDone(Box<pb::CommandResult>),
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    order: VecDeque<String>,
}

pub struct Ledger {
    inner: Mutex<Inner>,
    dir: Option<PathBuf>,
}

impl Ledger {
    pub fn in_memory() -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            dir: None,
        }
    }

    /// Opens (and reloads) the ledger kept under `state_dir/commands`.
    pub fn open(state_dir: &Path) -> Result<Self> {
        let dir = state_dir.join("commands");
        let state_err = |message: String| Error::State {
            path: dir.clone(),
            message,
        };
        std::fs::create_dir_all(&dir).map_err(|e| state_err(format!("cannot create: {e}")))?;
        let mut inner = Inner::default();
        let listing =
            std::fs::read_dir(&dir).map_err(|e| state_err(format!("cannot list: {e}")))?;
        for entry in listing {
            let path = entry
                .map_err(|e| state_err(format!("cannot list: {e}")))?
                .path();
            if path.extension().and_then(|e| e.to_str()) != Some("result") {
                continue;
            }
            let bytes = std::fs::read(&path)
                .map_err(|e| state_err(format!("cannot read {}: {e}", path.display())))?;
            match pb::CommandResult::decode(bytes.as_slice()) {
                Ok(result) => {
                    inner.order.push_back(result.id.clone());
                    inner.entries.insert(
                        result.id.clone(),
                        Entry::Done {
                            result: Box::new(result),
                            acked: false,
                        },
                    );
                }
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "unreadable stored result skipped")
                }
            }
        }
        Ok(Self {
            inner: Mutex::new(inner),
            dir: Some(dir),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Decides, atomically, whether a delivered command runs now.
    pub fn admit(&self, id: &str) -> Admission {
        let mut inner = self.lock();
        match inner.entries.get(id) {
            Some(Entry::Running) => Admission::AlreadyRunning,
            Some(Entry::Done { result, .. }) => Admission::AlreadyDone(result.clone()),
            None => {
                inner.entries.insert(id.to_string(), Entry::Running);
                inner.order.push_back(id.to_string());
                Admission::Execute
            }
        }
    }

    /// Records a finished command; its result is kept until acknowledged.
    pub fn finish(&self, result: &pb::CommandResult) -> Result<()> {
        if let Some(path) = self.result_path(&result.id) {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, result.encode_to_vec())
                .and_then(|_| std::fs::rename(&tmp, &path))
                .map_err(|e| Error::State {
                    path: path.clone(),
                    message: format!("cannot store result: {e}"),
                })?;
        }
        self.lock().entries.insert(
            result.id.clone(),
            Entry::Done {
                result: Box::new(result.clone()),
                acked: false,
            },
        );
        Ok(())
    }

    pub fn ack(&self, id: &str) {
        let mut inner = self.lock();
        if let Some(Entry::Done { acked, .. }) = inner.entries.get_mut(id) {
            *acked = true;
            if let Some(path) = self.result_path(id) {
                let _ = std::fs::remove_file(path);
            }
        }
        // Forget the oldest acknowledged ids beyond the memory bound.
        while inner.order.len() > REMEMBER {
            let Some(oldest) = inner.order.front().cloned() else {
                break;
            };
            match inner.entries.get(&oldest) {
                Some(Entry::Done { acked: true, .. }) | None => {
                    inner.entries.remove(&oldest);
                    inner.order.pop_front();
                }
                _ => break,
            }
        }
    }

    pub fn in_flight(&self) -> Vec<String> {
        let inner = self.lock();
        inner
            .order
            .iter()
            .filter(|id| matches!(inner.entries.get(*id), Some(Entry::Running)))
            .cloned()
            .collect()
    }

    pub fn unacked(&self) -> Vec<pb::CommandResult> {
        let inner = self.lock();
        inner
            .order
            .iter()
            .filter_map(|id| match inner.entries.get(id) {
                Some(Entry::Done {
                    result,
                    acked: false,
                }) => Some((**result).clone()),
                _ => None,
            })
            .collect()
    }

    /// Ids come from the coordinator: only safe characters reach the file system.
    fn result_path(&self, id: &str) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        let safe = !id.is_empty()
            && id.len() <= 128
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        safe.then(|| dir.join(format!("{id}.result")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(id: &str) -> pb::CommandResult {
        pb::CommandResult {
            id: id.into(),
            outcome: Some(pb::command_result::Outcome::Error(pb::CommandError {
                message: "x".into(),
                ..Default::default()
            })),
        }
    }

    #[test]
    fn a_command_is_admitted_once() -> anyhow::Result<()> {
        let ledger = Ledger::in_memory();
        assert_eq!(ledger.admit("c1"), Admission::Execute);
        assert_eq!(ledger.admit("c1"), Admission::AlreadyRunning);
        assert_eq!(ledger.in_flight(), ["c1"]);
        ledger.finish(&result("c1"))?;
        assert_eq!(
            ledger.admit("c1"),
            Admission::AlreadyDone(Box::new(result("c1")))
        );
        assert_eq!(ledger.unacked(), [result("c1")]);
        ledger.ack("c1");
        assert!(ledger.unacked().is_empty());
        assert_eq!(
            ledger.admit("c1"),
            Admission::AlreadyDone(Box::new(result("c1")))
        );
        Ok(())
    }

    #[test]
    fn unacknowledged_results_survive_a_restart() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        {
            let ledger = Ledger::open(dir.path())?;
            ledger.admit("c1");
            ledger.finish(&result("c1"))?;
            ledger.admit("c2");
            ledger.finish(&result("c2"))?;
            ledger.ack("c2");
            ledger.admit("../evil");
            ledger.finish(&result("../evil"))?;
        }
        let ledger = Ledger::open(dir.path())?;
        assert_eq!(ledger.unacked(), [result("c1")]);
        assert_eq!(
            ledger.admit("c1"),
            Admission::AlreadyDone(Box::new(result("c1")))
        );
        assert!(!dir.path().join("evil.result").exists());
        Ok(())
    }
}
