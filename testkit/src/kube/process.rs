//! Child processes of a test's control plane: output to a log file, killed
//! on drop.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

use anyhow::Context;

/// Bytes of a log shown when something fails.
const TAIL: u64 = 3000;

pub(crate) struct Process {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Process {
    pub fn spawn(dir: &Path, name: &str, program: &Path, args: &[String]) -> anyhow::Result<Self> {
        Self::spawn_with_env(dir, name, program, args, &[])
    }

    pub fn spawn_with_env(
        dir: &Path,
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let mut command = Command::new(program);
        command.args(args).envs(env.iter().copied());
        Self::spawn_command(dir, name, command)
    }

    /// Starts a prepared `command` (e.g. one entering a network namespace
    /// first), its output to `<dir>/<name>.log`.
    pub fn spawn_command(dir: &Path, name: &str, mut command: Command) -> anyhow::Result<Self> {
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone().context("duplicating a log handle")?;
        let child = command
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {}", command.get_program().to_string_lossy()))?;
        Ok(Process {
            name: name.to_owned(),
            child,
            log,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `Some(status)` once the process has ended.
    pub fn exited(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        self.child
            .try_wait()
            .with_context(|| format!("checking on {}", self.name))
    }

    /// The end of its log, headed by its name.
    pub fn tail(&self) -> String {
        crate::log_tail(&self.name, &self.log, TAIL)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        // Nothing sensible to do on failure in Drop: the process may be gone.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
