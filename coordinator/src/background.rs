//! Every task the coordinator spawns outside a call's own future, tracked,
//! so that shutdown can stop them in order and wait for each one: no
//! process exits while a task is between two journal writes, and none is
//! left detached.
//!
//! Two kinds of task, stopped at two moments of shutdown:
//! - **streams** feed a call's response stream (a watch, a relay or load
//!   stream, an agent's session). They stop when the drain starts, with
//!   the listener: a stream never ends by itself, so the drain would
//!   otherwise last the whole grace period. Their clients reconnect (to the
//!   next leader, behind a Service).
//! - **work** runs on its own (migration drivers, transfer and load
//!   followers, resumed starts). It stops once calls have drained.
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone, Default)]
pub struct Background {
    tasks: TaskTracker,
    streams: CancellationToken,
    work: CancellationToken,
}

impl Background {
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `task` until it ends or the drain starts.
    pub fn spawn_stream<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.spawn_until(self.streams.clone(), task);
    }

    /// Runs `task` until it ends or background work is stopped.
    pub fn spawn_work<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.spawn_until(self.work.clone(), task);
    }

    fn spawn_until<F>(&self, stop: CancellationToken, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(async move {
            tokio::select! {
                () = task => {}
                () = stop.cancelled() => {}
            }
        });
    }

    /// Cancelled when background work is stopped: for work that must
    /// notice it itself (a driver that must not start its next step).
    pub fn work_stopped(&self) -> &CancellationToken {
        &self.work
    }

    /// The drain starts: streams stop.
    pub fn stop_streams(&self) {
        self.streams.cancel();
    }

    /// Stops streams and work and waits, until `deadline`, for every task.
    /// Returns how many were still running at the deadline.
    pub async fn stop_and_join(&self, deadline: Instant) -> usize {
        self.streams.cancel();
        self.work.cancel();
        self.tasks.close();
        let started = Instant::now();
        if tokio::time::timeout_at(deadline, self.tasks.wait())
            .await
            .is_ok()
        {
            tracing::info!(
                waited = ?started.elapsed(),
                "every background task joined"
            );
            return 0;
        }
        let left = self.tasks.len();
        tracing::warn!(
            tasks = left,
            "background tasks still running at the end of the grace period; exiting anyway"
        );
        left
    }

    /// Tasks running now.
    pub fn running(&self) -> usize {
        self.tasks.len()
    }
}

/// Ordered shutdown, as both the single coordinator and a replica do it:
/// stop accepting and end streams (`stop_serving` and the drain start),
/// let calls drain within `grace`, then stop background work and wait for
/// every task within what is left of it (at least `MIN_JOIN`).
pub async fn shut_down(
    background: &Background,
    stop_serving: &CancellationToken,
    server: tokio::task::JoinHandle<()>,
    grace: Duration,
) {
    let deadline = Instant::now() + grace;
    background.stop_streams();
    stop_serving.cancel();
    if tokio::time::timeout_at(deadline, server).await.is_err() {
        tracing::warn!(
            ?grace,
            "calls still running at the end of the grace period; stopping them"
        );
    }
    background
        .stop_and_join(deadline.max(Instant::now() + MIN_JOIN))
        .await;
}

/// Time left to join background tasks even when the drain took the whole
/// grace period: cancelled tasks end at their next await.
const MIN_JOIN: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn streams_stop_first_and_work_after_and_every_task_is_joined() {
        let bg = Background::new();
        let (stream_ended, work_ended) = (CancellationToken::new(), CancellationToken::new());
        // Each task holds a guard that marks its end when the task is dropped.
        let mark = stream_ended.clone().drop_guard();
        bg.spawn_stream(async move {
            let _mark = mark;
            std::future::pending::<()>().await
        });
        let mark = work_ended.clone().drop_guard();
        bg.spawn_work(async move {
            let _mark = mark;
            std::future::pending::<()>().await
        });
        assert_eq!(bg.running(), 2);
        bg.stop_streams();
        tokio::time::timeout(Duration::from_secs(5), stream_ended.cancelled())
            .await
            .expect("the stream task ends when the drain starts");
        assert!(!work_ended.is_cancelled(), "work goes on through the drain");
        let left = bg
            .stop_and_join(Instant::now() + Duration::from_secs(5))
            .await;
        assert_eq!(left, 0);
        assert!(work_ended.is_cancelled());
        assert_eq!(bg.running(), 0);
    }
}
