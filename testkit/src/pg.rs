//! A throwaway PostgreSQL cluster for tests.
//!
//! [`TempPostgres::start`] runs `initdb` into a fresh temporary directory
//! (trust authentication, superuser `postgres`, no fsync) and starts the
//! server on a free loopback port with its unix socket inside that directory,
//! so parallel tests never share a cluster. Dropping the value stops the
//! server (immediate shutdown) and removes the directory, also when the test
//! panics.
//!
//! PostgreSQL refuses to run as root, so when the test runs as root the
//! cluster is created and run as the `postgres` OS user (through `runuser`,
//! else `setpriv`), with the directory handed over to that user.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::free_port;

/// The OS user that runs the server when the tests run as root.
const SERVER_OS_USER: &str = "postgres";
/// The database superuser created by `initdb -U`.
pub const SUPERUSER: &str = "postgres";

/// A running, disposable PostgreSQL server.
pub struct TempPostgres {
    dir: Option<tempfile::TempDir>,
    bindir: PathBuf,
    port: u16,
    run_as: Option<String>,
    stopped: bool,
}

impl TempPostgres {
    /// Create and start a new cluster; ready to accept connections on return.
    pub fn start() -> anyhow::Result<Self> {
        let bindir = find_bindir()?;
        let run_as = if is_root()? {
            Some(SERVER_OS_USER.to_owned())
        } else {
            None
        };
        let dir = tempfile::Builder::new()
            .prefix("ferry-pg-")
            .tempdir()
            .context("creating a temporary directory for PostgreSQL")?;
        // Whose it is, for the reaper of a later run (`reap_orphans`).
        std::fs::write(dir.path().join(OWNER_FILE), std::process::id().to_string())
            .context("writing the PostgreSQL directory's owner")?;
        if let Some(user) = &run_as {
            hand_over(dir.path(), user)?;
        }
        reap_orphans(&bindir, run_as.as_deref(), dir.path());
        let mut pg = TempPostgres {
            dir: Some(dir),
            bindir,
            port: 0,
            run_as,
            stopped: true,
        };
        pg.initdb()?;
        // Another test may grab the port between our probe and the server's
        // bind: try a few ports before giving up.
        let mut last_err = None;
        for _ in 0..5 {
            pg.port = free_port()?;
            match pg.pg_ctl_start() {
                Ok(()) => {
                    pg.stopped = false;
                    return Ok(pg);
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("PostgreSQL did not start")))
    }

    /// A cluster shared by the tests of one test binary that run at the same
    /// time: it stops when the last of them drops its handle (a static would
    /// never be dropped and would leak the server). Isolate tests with
    /// [`TempPostgres::fresh_database`].
    pub fn shared() -> anyhow::Result<Arc<Self>> {
        static SHARED: Mutex<Weak<TempPostgres>> = Mutex::new(Weak::new());
        let mut slot = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(pg) = slot.upgrade() {
            return Ok(pg);
        }
        let pg = Arc::new(Self::start()?);
        *slot = Arc::downgrade(&pg);
        Ok(pg)
    }

    /// Create a database with a name unique in this process; returns it.
    pub fn fresh_database(&self, prefix: &str) -> anyhow::Result<String> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let name = format!("{prefix}_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        self.create_database(&name)?;
        Ok(name)
    }

    /// Loopback address the server listens on.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Directory of the server's binaries (`psql` lives there too).
    pub fn bindir(&self) -> &Path {
        &self.bindir
    }

    /// Path of the `psql` client that matches the server.
    pub fn psql_path(&self) -> PathBuf {
        self.bindir.join("psql")
    }

    /// A libpq / tokio-postgres key-value connection string for `database`.
    pub fn connection_string(&self, database: &str) -> String {
        format!(
            "host={} port={} user={} dbname={}",
            self.host(),
            self.port,
            SUPERUSER,
            database
        )
    }

    /// A `postgresql://` URL for `database`.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgresql://{}@{}:{}/{}",
            SUPERUSER,
            self.host(),
            self.port,
            database
        )
    }

    /// Create an empty database (isolation between tests sharing a cluster).
    pub fn create_database(&self, name: &str) -> anyhow::Result<()> {
        let ident = format!("\"{}\"", name.replace('"', "\"\""));
        self.psql("postgres", &format!("CREATE DATABASE {ident}"))
            .with_context(|| format!("creating database {name}"))?;
        Ok(())
    }

    /// Run SQL through `psql` (stops at the first error); returns its stdout.
    pub fn psql(&self, database: &str, sql: &str) -> anyhow::Result<String> {
        let out = Command::new(self.psql_path())
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .arg("-d")
            .arg(self.connection_string(database))
            .arg("-c")
            .arg(sql)
            .output()
            .context("running psql")?;
        check(&out, "psql")?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn data_dir(&self) -> PathBuf {
        self.root().join("data")
    }

    fn root(&self) -> &Path {
        match &self.dir {
            Some(d) => d.path(),
            None => Path::new("/nonexistent"),
        }
    }

    fn initdb(&self) -> anyhow::Result<()> {
        let mut cmd = self.command("initdb");
        cmd.arg("-D")
            .arg(self.data_dir())
            .args([
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ])
            .env("TZ", "UTC");
        let out = cmd.output().context("running initdb")?;
        check(&out, "initdb")
    }

    fn pg_ctl_start(&self) -> anyhow::Result<()> {
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories={} \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
             -c max_connections=50 -c shared_buffers=64MB -c max_wal_size=1GB \
             -c timezone=UTC -c log_min_messages=warning",
            self.port,
            self.root().display()
        );
        let started = Instant::now();
        let mut cmd = self.command("pg_ctl");
        cmd.arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.root().join("server.log"))
            .args(["-w", "-t", "30", "-o", &opts, "start"]);
        let out = cmd.output().context("running pg_ctl start")?;
        if let Err(e) = check(&out, "pg_ctl start") {
            let log = std::fs::read_to_string(self.root().join("server.log")).unwrap_or_default();
            bail!("{e:#}\nserver log:\n{log}");
        }
        // pg_ctl -w already waited for readiness; this only bounds surprises.
        if started.elapsed() > Duration::from_secs(30) {
            bail!("PostgreSQL took more than 30 s to start");
        }
        Ok(())
    }

    /// A command for one of the server binaries, as the server's OS user.
    fn command(&self, program: &str) -> Command {
        server_command(&self.bindir, self.run_as.as_deref(), program)
    }

    fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let mut cmd = self.command("pg_ctl");
        cmd.arg("-D")
            .arg(self.data_dir())
            .args(["-m", "immediate", "-w", "-t", "30", "stop"]);
        // Nothing sensible to do on failure in Drop: the directory goes anyway.
        let _ = cmd.output();
    }
}

impl Drop for TempPostgres {
    fn drop(&mut self) {
        self.stop();
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}

/// A command for one of the server binaries in `bindir`, as `run_as`.
fn server_command(bindir: &Path, run_as: Option<&str>, program: &str) -> Command {
    let path = bindir.join(program);
    match run_as {
        Some(user) if which("runuser").is_some() => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--"]).arg(path);
            c
        }
        Some(user) => {
            let mut c = Command::new("setpriv");
            c.args([
                format!("--reuid={user}"),
                format!("--regid={user}"),
                "--init-groups".to_owned(),
                "--".to_owned(),
            ])
            .arg(path);
            c
        }
        None => Command::new(path),
    }
}

/// Names the process that made a cluster's directory.
const OWNER_FILE: &str = "owner";

/// Stops and removes the clusters of test processes that died without
/// dropping theirs (a test killed by a timeout leaves its server running
/// and its directory behind). Best effort: a failure leaves them as they were.
fn reap_orphans(bindir: &Path, run_as: Option<&str>, ours: &Path) {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let is_cluster = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with("ferry-pg-"));
        if !is_cluster || dir == ours {
            continue;
        }
        // No owner yet: being created right now (or older than owners).
        let Ok(owner) = std::fs::read_to_string(dir.join(OWNER_FILE)) else {
            continue;
        };
        let alive = owner
            .trim()
            .parse::<u32>()
            .map_or(true, |pid| Path::new(&format!("/proc/{pid}")).exists());
        if alive {
            continue;
        }
        let _ = server_command(bindir, run_as, "pg_ctl")
            .arg("-D")
            .arg(dir.join("data"))
            .args(["-m", "immediate", "-w", "-t", "30", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn check(out: &Output, what: &str) -> anyhow::Result<()> {
    if out.status.success() {
        return Ok(());
    }
    bail!(
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    )
}

/// Find the directory holding `initdb`, `pg_ctl` and `psql` (also: is PostgreSQL installed?).
pub fn find_bindir() -> anyhow::Result<PathBuf> {
    let has_all = |d: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| d.join(b).is_file())
    };
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has_all(&d) {
            return Ok(d);
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    // Newest major version first.
    versions.sort_by_key(|p| {
        std::cmp::Reverse(
            p.parent()
                .and_then(|v| v.file_name())
                .and_then(|v| v.to_str())
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(0),
        )
    });
    if let Some(d) = versions.into_iter().find(|d| has_all(d)) {
        return Ok(d);
    }
    if let Some(initdb) = which("initdb") {
        // Follow symlinks such as /usr/local/bin/initdb -> .../15/bin/initdb.
        let real = std::fs::canonicalize(&initdb).unwrap_or(initdb);
        if let Some(d) = real.parent()
            && has_all(d)
        {
            return Ok(d.to_path_buf());
        }
    }
    bail!(
        "no PostgreSQL server binaries (initdb, pg_ctl, postgres) found via pg_config, \
         /usr/lib/postgresql/*/bin or PATH: install the `postgresql` Debian package \
         (apt-get install postgresql)"
    )
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

fn is_root() -> anyhow::Result<bool> {
    let out = Command::new("id")
        .arg("-u")
        .output()
        .context("running `id -u`")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// Give the cluster directory to the server's OS user (running as root).
fn hand_over(dir: &Path, user: &str) -> anyhow::Result<()> {
    let out = Command::new("chown")
        .arg(format!("{user}:"))
        .arg(dir)
        .output()
        .context("running chown")?;
    check(&out, "chown").with_context(|| {
        format!(
            "handing {} to OS user {user} (PostgreSQL refuses to run as root; \
             create the `{user}` user, e.g. by installing the `postgresql` package)",
            dir.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_creates_database_and_cleans_up() -> anyhow::Result<()> {
        let pg = TempPostgres::start()?;
        pg.create_database("t1")?;
        let out = pg.psql("t1", "SELECT 40 + 2")?;
        assert_eq!(out.trim(), "42");
        let root = pg.root().to_path_buf();
        drop(pg);
        assert!(!root.exists(), "cluster directory removed on drop");
        Ok(())
    }

    #[test]
    fn parallel_clusters_do_not_clash() -> anyhow::Result<()> {
        let handles: Vec<_> = (0..3)
            .map(|_| std::thread::spawn(TempPostgres::start))
            .collect();
        let mut ports = Vec::new();
        for h in handles {
            let pg = h
                .join()
                .map_err(|_| anyhow::anyhow!("start thread panicked"))??;
            assert_eq!(pg.psql("postgres", "SELECT 1")?.trim(), "1");
            ports.push(pg.port());
        }
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 3);
        Ok(())
    }

    /// A cluster whose test process died is stopped and removed when the
    /// next one starts; a live process's cluster is left alone.
    #[test]
    fn an_orphaned_cluster_is_reaped_by_the_next_start() -> anyhow::Result<()> {
        let orphan = TempPostgres::start()?;
        let live = TempPostgres::start()?;
        // A process that has exited: its pid names no process now.
        let mut gone = Command::new("true").spawn()?;
        gone.wait()?;
        std::fs::write(orphan.root().join(OWNER_FILE), gone.id().to_string())?;

        let _next = TempPostgres::start()?;
        assert!(
            !orphan.root().exists(),
            "the orphan's directory is still there"
        );
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", orphan.port())).is_err(),
            "the orphan's server still answers"
        );
        assert_eq!(live.psql("postgres", "SELECT 1")?.trim(), "1");
        Ok(())
    }
}
