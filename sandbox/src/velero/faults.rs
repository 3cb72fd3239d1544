//! Faults on demand: a backup that ends PartiallyFailed, slow phases.

use std::sync::Mutex;
use std::sync::PoisonError;
use std::time::Duration;

/// Switches tests flip to make the controller misbehave the way a real
/// Velero sometimes does. Shared with the running controller.
#[derive(Debug, Default)]
pub struct VeleroFaults {
    partial_failure: Mutex<Option<String>>,
    item_delay: Mutex<Duration>,
    phase_delay: Mutex<Duration>,
}

impl VeleroFaults {
    /// The next backup to run ends `PartiallyFailed`, with `message` as its
    /// error (in its logs and results, `status.errors` = 1).
    pub fn fail_next_backup(&self, message: impl Into<String>) {
        *lock(&self.partial_failure) = Some(message.into());
    }

    pub(crate) fn take_partial_failure(&self) -> Option<String> {
        lock(&self.partial_failure).take()
    }

    /// A pause after each item backed up or restored (zero: none).
    pub fn set_item_delay(&self, delay: Duration) {
        *lock(&self.item_delay) = delay;
    }

    pub fn item_delay(&self) -> Duration {
        *lock(&self.item_delay)
    }

    /// A pause on entering InProgress and before the final phase.
    pub fn set_phase_delay(&self, delay: Duration) {
        *lock(&self.phase_delay) = delay;
    }

    pub fn phase_delay(&self) -> Duration {
        *lock(&self.phase_delay)
    }

    /// Clears every switch.
    pub fn reset(&self) {
        *lock(&self.partial_failure) = None;
        self.set_item_delay(Duration::ZERO);
        self.set_phase_delay(Duration::ZERO);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) async fn pause(delay: Duration) {
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
}
