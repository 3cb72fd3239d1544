//! Seams where a test stops the coordinator as a crash would, to show that
//! what it journaled there is enough to resume (issue 14). Compiled in only
//! with the `testing` feature (the tests crate's; not the image's), and armed
//! only by the `fail` crate's `FAILPOINTS` environment variable, read at
//! start: `FAILPOINTS=step-command-unsent=return(backup)` exits the process
//! when the `backup` step reaches that seam (`return` alone: any step).
//!
//! The seams:
//! - `step-command-unsent`: the step is journaled running and its command
//!   is about to be sent;
//! - `step-succeeded-unjournaled`: the agent reported the step done and its
//!   success is about to be journaled.

/// The exit code of a process stopped at a seam.
pub const EXIT_CODE: i32 = 86;

/// Exits the process here if a test armed `seam` for `step`.
#[cfg(feature = "testing")]
pub fn crash_point(seam: &str, step: &str) {
    let armed = fail::eval(seam, |arg| arg.is_none_or(|s| s == step));
    if armed == Some(true) {
        // Straight to stderr: a log line could still be in a buffer.
        eprintln!("test seam {seam} reached by step {step}: exiting as a crash would");
        std::process::exit(EXIT_CODE);
    }
}

#[cfg(not(feature = "testing"))]
#[inline(always)]
pub fn crash_point(_seam: &str, _step: &str) {}

/// Reads `FAILPOINTS` (with the `testing` feature; nothing without it).
pub fn arm_from_env() {
    #[cfg(feature = "testing")]
    std::mem::forget(fail::FailScenario::setup());
}
