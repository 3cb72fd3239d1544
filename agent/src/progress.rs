//! Progress of running commands, sent up the link as `CommandProgress`.
//! Progress is advisory: it is dropped when the link is down or slow (the
//! result is what counts), so reporting never blocks an executor.
use std::time::{Duration, Instant};

use ferry_common::pb;
use tokio::sync::mpsc;

/// Reports queued for the link; beyond this they are dropped.
const CAPACITY: usize = 256;
/// A command reports at most this often, besides changes of its message and
/// its last item.
const EVERY: Duration = Duration::from_millis(250);

/// The executors' side of the progress channel (cheap to clone).
#[derive(Debug, Clone)]
pub struct Progress {
    tx: Option<mpsc::Sender<pb::CommandProgress>>,
}

impl Progress {
    /// A handle and the receiver the session loop drains into the link.
    pub fn channel() -> (Self, mpsc::Receiver<pb::CommandProgress>) {
        let (tx, rx) = mpsc::channel(CAPACITY);
        (Progress { tx: Some(tx) }, rx)
    }

    /// Reports go nowhere.
    pub fn disabled() -> Self {
        Progress { tx: None }
    }

    /// The reporter of command `id`.
    pub fn reporter(&self, id: &str) -> Reporter {
        Reporter {
            tx: self.tx.clone(),
            id: id.to_owned(),
            last: None,
        }
    }
}

/// Reports the progress of one command.
#[derive(Debug)]
pub struct Reporter {
    tx: Option<mpsc::Sender<pb::CommandProgress>>,
    id: String,
    last: Option<(String, Instant)>,
}

impl Reporter {
    /// `done` of `total` items (0 of 0 when unknown), with what is happening.
    pub fn report(&mut self, message: impl Into<String>, done: u64, total: u64) {
        let Some(tx) = &self.tx else { return };
        let message = message.into();
        let due = match &self.last {
            None => true,
            Some((last, at)) => *last != message || done >= total || at.elapsed() >= EVERY,
        };
        if !due {
            return;
        }
        let sent = tx.try_send(pb::CommandProgress {
            id: self.id.clone(),
            message: message.clone(),
            done,
            total,
        });
        if sent.is_ok() {
            self.last = Some((message, Instant::now()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_throttled_but_changes_and_ends_pass() {
        let (progress, mut rx) = Progress::channel();
        let mut r = progress.reporter("c1");
        r.report("InProgress", 1, 10);
        r.report("InProgress", 2, 10);
        r.report("InProgress", 10, 10);
        r.report("Completed", 10, 10);
        let got: Vec<(String, u64)> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|p| (p.message, p.done))
            .collect();
        assert_eq!(
            got,
            vec![
                ("InProgress".to_owned(), 1),
                ("InProgress".to_owned(), 10),
                ("Completed".to_owned(), 10)
            ]
        );
        Progress::disabled().reporter("c2").report("x", 0, 0);
    }
}
