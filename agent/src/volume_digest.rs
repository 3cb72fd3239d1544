//! `ferry-agent volume-digest <dir>`: the command of the reader pod the
//! inventory starts per volume claim (the claim mounted read-only at
//! `<dir>`). It prints the volume's summary and leaves it as the pod's
//! termination message, which the agent reads from the pod's status — no
//! `pods/log` needed. On failure the message is the error, exit code 1.

use std::path::PathBuf;

use ferry_common::volume;

/// Sums up a mounted volume: files, bytes, SHA-256 of its contents.
#[derive(Debug, clap::Parser)]
#[command(name = "volume-digest")]
pub struct Args {
    /// The volume's mount point.
    pub dir: PathBuf,
    /// Where the kubelet reads the termination message from (the
    /// container's `terminationMessagePath`).
    #[arg(long, default_value = "/dev/termination-log")]
    pub termination_log: PathBuf,
}

/// Runs the command; its exit code.
pub fn run(args: &Args) -> i32 {
    let (message, code) = match volume::summarize(&args.dir) {
        Ok(summary) => (summary.to_string(), 0),
        Err(e) => (format!("error: {e}"), 1),
    };
    if code == 0 {
        println!("{message}");
    } else {
        eprintln!("{message}");
    }
    // Without a termination log (run by hand) stdout is the answer.
    if let Err(e) = std::fs::write(&args.termination_log, &message) {
        eprintln!(
            "could not write the termination message to {}: {e}",
            args.termination_log.display()
        );
    }
    code
}
