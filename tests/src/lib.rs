//! Harness for end-to-end tests: Ferry's real binaries as separate processes
//! on loopback, with their logs kept in files the tests can read.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use ferry_common::pki::{self, PkiPlan};
use serde_json::Value;

pub mod migrate_world;
pub mod proxy;
pub mod real_stacks;
pub mod relay_world;
pub mod tls_probe;

pub use ferry_testkit::eventually;
pub use ferry_testkit::free_port;
use ferry_testkit::log_tail;

/// The directory holding the workspace's built binaries (target/debug).
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the test binary")?;
    // target/debug/deps/<test> → target/debug
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test binary is not under target/<profile>/deps")?
        .to_path_buf();
    Ok(dir)
}

pub fn bin(name: &str) -> anyhow::Result<PathBuf> {
    let path = bin_dir()?.join(name);
    if !path.exists() {
        bail!(
            "{} is not built; build the binaries first with `cargo build --workspace --bins` (the test script does)",
            path.display()
        );
    }
    Ok(path)
}

/// A fresh PKI in `dir`.
pub fn make_pki(dir: &Path, clusters: &[&str], clients: &[&str]) -> anyhow::Result<PathBuf> {
    pki::init(
        dir,
        &PkiPlan {
            clusters: clusters.iter().map(|s| s.to_string()).collect(),
            clients: clients.iter().map(|s| s.to_string()).collect(),
            ..PkiPlan::default()
        },
    )?;
    Ok(dir.to_path_buf())
}

/// A child process killed when dropped, its stderr in a log file.
pub struct Proc {
    pub name: String,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[String],
        log: PathBuf,
    ) -> anyhow::Result<Self> {
        Self::spawn_with_env(name, program, args, log, &[])
    }

    /// Like `spawn`, with more environment variables for the child.
    pub fn spawn_with_env(
        name: &str,
        program: &Path,
        args: &[String],
        log: PathBuf,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("opening log {}", log.display()))?;
        let child = Command::new(program)
            .args(args)
            .env("RUST_LOG", "info,ferry=debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        Ok(Self {
            name: name.into(),
            child: Some(child),
            log,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.child.take() {
            c.kill().with_context(|| format!("killing {}", self.name))?;
            c.wait()?;
        }
        Ok(())
    }

    /// SIGTERM, then wait up to `grace` for a clean exit; returns whether it exited successfully.
    pub fn terminate(&mut self, grace: Duration) -> anyhow::Result<bool> {
        let Some(mut c) = self.child.take() else {
            bail!("{} is not running", self.name)
        };
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status()?;
        if !status.success() {
            bail!("kill -TERM {} failed", c.id());
        }
        let deadline = std::time::Instant::now() + grace;
        loop {
            if let Some(s) = c.try_wait()? {
                return Ok(s.success());
            }
            if std::time::Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `within` for the process to exit by itself; its status,
    /// or `None` if it is still running (it is left running).
    pub fn wait_exit(
        &mut self,
        within: Duration,
    ) -> anyhow::Result<Option<std::process::ExitStatus>> {
        let Some(c) = self.child.as_mut() else {
            bail!("{} is not running", self.name)
        };
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(s) = c.try_wait()? {
                self.child = None;
                return Ok(Some(s));
            }
            if std::time::Instant::now() > deadline {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Lines of the log that contain every one of `needles`.
    pub fn log_count(&self, needles: &[&str]) -> usize {
        self.log_text()
            .lines()
            .filter(|l| needles.iter().all(|n| l.contains(n)))
            .count()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One test's world: a work directory, a PKI, a coordinator address.
pub struct World {
    pub dir: tempfile::TempDir,
    pub pki: PathBuf,
    pub port: u16,
}

impl World {
    pub fn new(clusters: &[&str], clients: &[&str]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let pki = make_pki(&dir.path().join("pki"), clusters, clients)?;
        Ok(Self {
            pki,
            port: free_port()?,
            dir,
        })
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Starts the coordinator; `roles` like `["admin=admin", "viewer=viewer"]`.
    pub fn coordinator(&self, roles: &[&str], extra: &[&str]) -> anyhow::Result<Proc> {
        self.coordinator_with_env(roles, extra, &[])
    }

    /// Starts the coordinator with more environment variables.
    pub fn coordinator_with_env(
        &self,
        roles: &[&str],
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Proc> {
        let mut args: Vec<String> = vec![
            "--listen".into(),
            format!("127.0.0.1:{}", self.port),
            "--pki-dir".into(),
            self.pki.display().to_string(),
            "--data-dir".into(),
            self.path("coordinator-data").display().to_string(),
            "--heartbeat".into(),
            "300ms".into(),
            "--lost-after".into(),
            "3s".into(),
            "--log-format".into(),
            "json".into(),
        ];
        for r in roles {
            args.push("--role".into());
            args.push(r.to_string());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        Proc::spawn_with_env(
            "coordinator",
            &bin("ferry-coordinator")?,
            &args,
            self.path("coordinator.log"),
            env,
        )
    }

    /// Starts the agent of `cluster`, reporting Platform `1.9.9`.
    pub fn agent(&self, cluster: &str, extra: &[&str]) -> anyhow::Result<Proc> {
        self.agent_with_env(cluster, extra, &[])
    }

    /// Starts the agent of `cluster` with more environment variables.
    pub fn agent_with_env(
        &self,
        cluster: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Proc> {
        let mut args: Vec<String> = vec![
            "--cluster-id".into(),
            cluster.into(),
            "--coordinator".into(),
            self.url(),
            "--pki-dir".into(),
            self.pki.display().to_string(),
            "--backoff-base".into(),
            "100ms".into(),
            "--backoff-cap".into(),
            "2s".into(),
            "--platform-version".into(),
            "1.9.9".into(),
            "--log-format".into(),
            "json".into(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        Proc::spawn_with_env(
            &format!("agent-{cluster}"),
            &bin("ferry-agent")?,
            &args,
            self.path(&format!("agent-{cluster}.log")),
            env,
        )
    }

    /// Runs the CLI as client `client` against this world's coordinator.
    pub fn ferry(&self, client: &str, args: &[&str]) -> anyhow::Result<Output> {
        let out = Command::new(bin("ferry")?)
            .arg("--coordinator")
            .arg(self.url())
            .arg("--pki-dir")
            .arg(&self.pki)
            .arg("--as")
            .arg(client)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("running ferry")?;
        Ok(out)
    }

    /// `ferry … -o json`, parsed; fails with the CLI's stderr if it exits non-zero.
    pub fn ferry_json(&self, client: &str, args: &[&str]) -> anyhow::Result<Value> {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["-o", "json"]);
        let out = self.ferry(client, &all)?;
        if !out.status.success() {
            bail!(
                "ferry {} exited {:?}: {}",
                all.join(" "),
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "ferry {} printed no JSON: {}",
                all.join(" "),
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// The states of agents as `ferry agents -o json` lists them.
    pub fn agent_states(&self) -> anyhow::Result<Vec<(String, String)>> {
        let v = self.ferry_json("admin", &["agents"])?;
        let agents = v["agents"].as_array().context("no `agents` array")?;
        Ok(agents
            .iter()
            .map(|a| {
                (
                    a["cluster_id"].as_str().unwrap_or_default().to_string(),
                    a["state"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect())
    }

    /// Waits until every cluster in `clusters` is listed connected. If
    /// some are not in time, the error names them with what the
    /// coordinator last said of each, and ends with their logs' tails and
    /// the coordinator's.
    pub async fn all_connected(&self, clusters: &[&str], timeout: Duration) -> anyhow::Result<()> {
        let missing = |states: &[(String, String)]| -> Vec<String> {
            clusters
                .iter()
                .filter(|c| !states.iter().any(|(id, s)| id == *c && s == "connected"))
                .map(|c| c.to_string())
                .collect()
        };
        let waited = eventually(
            timeout,
            &format!("agents {clusters:?} connected"),
            || async {
                let states = self.agent_states().ok()?;
                missing(&states).is_empty().then_some(())
            },
        )
        .await;
        let Err(e) = waited else { return Ok(()) };
        let states = self.agent_states().unwrap_or_default();
        let (mut report, mut logs) = (vec![], vec![]);
        for c in missing(&states) {
            let state = states
                .iter()
                .find(|(id, _)| *id == c)
                .map_or("not listed", |(_, s)| s.as_str());
            report.push(format!("{c} ({state})"));
            let name = format!("agent-{c}");
            logs.push(log_tail(&name, &self.path(&format!("{name}.log")), 2000));
        }
        logs.push(log_tail("coordinator", &self.path("coordinator.log"), 3000));
        Err(e.context(format!(
            "not connected: {}\n{}",
            report.join(", "),
            logs.join("\n")
        )))
    }
}

impl Drop for World {
    /// With `FERRY_KEEP_TEST_DIR` set, the work directory (logs, state) is
    /// kept for a look after the test.
    fn drop(&mut self) {
        if std::env::var_os("FERRY_KEEP_TEST_DIR").is_some()
            && let Ok(spare) = tempfile::tempdir()
        {
            let kept = std::mem::replace(&mut self.dir, spare);
            eprintln!("kept test directory {}", kept.path().display());
            std::mem::forget(kept);
        }
    }
}

/// Logs of in-process parts into the test's output (`RUST_LOG` filters; off by default).
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}
