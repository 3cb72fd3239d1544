//! Word that live figures changed. The relay hub and the load hub say so as
//! bytes and rows move; whoever shows those figures (a migration step's
//! progress, `WatchTransfer`, `WatchLoad`, a load's client) wakes on it —
//! paced, so a busy transfer is shown a few times a second rather than once
//! per frame — and never wakes while nothing moves.
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// Told whenever the figures it covers change.
#[derive(Debug)]
pub struct Changes(watch::Sender<()>);

impl Default for Changes {
    fn default() -> Self {
        Self(watch::channel(()).0)
    }
}

impl Changes {
    /// Something changed: wakes every follower (at its pace).
    pub fn tell(&self) {
        self.0.send_replace(());
    }

    /// A follower woken at most once per `every`.
    pub fn follow(&self, every: Duration) -> Paced {
        Paced {
            rx: self.0.subscribe(),
            every,
            next: None,
        }
    }
}

/// One follower of [`Changes`].
pub struct Paced {
    rx: watch::Receiver<()>,
    every: Duration,
    /// The earliest the next wake may return.
    next: Option<Instant>,
}

impl Paced {
    /// Returns once something changed since the previous return, and no
    /// sooner than `every` after it; what changes meanwhile is covered by
    /// the same wake. Never returns once the teller is gone. Cancel-safe:
    /// dropped mid-wait, it loses at most the pacing of one wake.
    pub async fn changed(&mut self) {
        if self.rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        let now = Instant::now();
        let at = self.next.filter(|t| *t > now).unwrap_or(now);
        self.next = Some(at + self.every);
        tokio::time::sleep_until(at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PACE: Duration = Duration::from_millis(100);
    /// Long enough that a wake due would have come.
    const QUIET: Duration = Duration::from_millis(400);

    #[tokio::test]
    async fn a_follower_wakes_on_change_only_and_at_its_pace() {
        let changes = Changes::default();
        let mut f = changes.follow(PACE);
        let quiet = tokio::time::timeout(QUIET, f.changed()).await;
        assert!(quiet.is_err(), "woke with nothing changed");

        let first = Instant::now();
        changes.tell();
        f.changed().await;
        // A burst of changes right after: one wake, no sooner than a pace later.
        for _ in 0..100 {
            changes.tell();
        }
        f.changed().await;
        assert!(
            first.elapsed() >= PACE,
            "woke {:?} after the last",
            first.elapsed()
        );
        let idle = tokio::time::timeout(QUIET, f.changed()).await;
        assert!(idle.is_err(), "one burst woke the follower twice");
    }
}
