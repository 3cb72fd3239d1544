//! Bounded waiting for a condition, instead of sleeps.
use std::time::Duration;

/// What a check answers: `Option<T>` (`None`: not yet), `bool` (`false`: not
/// yet), or either inside an `anyhow::Result`, whose error ends the wait at
/// once (a check that cannot look is a failure, not a "not yet").
pub trait Check {
    type Value;
    fn into_poll(self) -> anyhow::Result<Option<Self::Value>>;
}

impl<T> Check for Option<T> {
    type Value = T;
    fn into_poll(self) -> anyhow::Result<Option<T>> {
        Ok(self)
    }
}

impl Check for bool {
    type Value = ();
    fn into_poll(self) -> anyhow::Result<Option<()>> {
        Ok(self.then_some(()))
    }
}

impl<C: Check> Check for anyhow::Result<C> {
    type Value = C::Value;
    fn into_poll(self) -> anyhow::Result<Option<C::Value>> {
        self?.into_poll()
    }
}

/// Polls `check` every 50 ms until it answers yes (see [`Check`]), or fails
/// after `timeout` naming `what` was awaited.
pub async fn eventually<C, F, Fut>(
    timeout: Duration,
    what: &str,
    mut check: F,
) -> anyhow::Result<C::Value>
where
    C: Check,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = C>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await.into_poll()? {
            return Ok(v);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The last `bytes` of a process's log, headed by its name and path: what
/// a failing test shows of a process it started. Empty if the log cannot
/// be read (the process may never have started).
pub fn log_tail(name: &str, log: &std::path::Path, bytes: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(log) {
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = f.seek(SeekFrom::Start(len.saturating_sub(bytes)));
        let mut read = Vec::new();
        let _ = f.read_to_end(&mut read);
        text = String::from_utf8_lossy(&read).into_owned();
    }
    format!("--- {name} ({}):\n{text}", log.display())
}
