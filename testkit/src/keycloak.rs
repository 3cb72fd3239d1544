//! A real Keycloak server per test: the Quarkus distribution that
//! `scripts/realstack` unpacks into `.realstack/keycloak`, run as a process
//! on a free loopback port over its own throwaway PostgreSQL (as the
//! Platform's Keycloak runs over PostgreSQL), with a bootstrap admin.
//!
//! The distribution is built once per machine for this configuration
//! (`kc.sh build`: PostgreSQL, a local cache) into a cache directory; each
//! server runs from a hard-linked copy of it, so its data directory and
//! transaction logs are its own and it starts `--optimized`, without
//! Quarkus' 30–40 s augmentation.
//!
//! [`RealKeycloak::export_command`] is a script that runs Keycloak's own
//! export (`kc.sh export --users realm_file`) against the server's database
//! while the server runs, and writes the requested realms' documents —
//! users with their credential hashes — to stdout: what the agent's
//! `--keycloak-export-command` expects.

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::free_port;
use crate::kube::realstack_bin_dir;
use crate::pg::{SUPERUSER, TempPostgres};

/// How long a server may take to answer (a cold JVM on 2 busy cores).
const START_TIMEOUT: Duration = Duration::from_secs(300);
/// How long building the distribution may take.
const BUILD_TIMEOUT: Duration = Duration::from_secs(600);
/// Bytes of the log shown when something fails.
const TAIL: u64 = 4000;
/// The database Keycloak keeps its state in.
const DATABASE: &str = "keycloak";
/// Keycloak 26 runs on Java 21 or later; this JDK when the machine has it.
const DEFAULT_JAVA_HOME: &str = "/usr/lib/jvm/temurin-25-jdk-amd64";
/// Starts tried when Keycloak finds a chosen port taken.
const START_ATTEMPTS: u32 = 3;
/// Build-time options every server here shares (the cached build's).
const BUILD_OPTIONS: &[&str] = &["--db=postgres", "--cache=local", "--health-enabled=false"];

/// The unpacked Keycloak distribution: `$FERRY_KEYCLOAK_HOME`, else
/// `keycloak` beside the real stack's `bin`.
pub fn keycloak_dist_dir() -> PathBuf {
    match std::env::var_os("FERRY_KEYCLOAK_HOME") {
        Some(dir) => PathBuf::from(dir),
        None => realstack_bin_dir()
            .parent()
            .unwrap_or(Path::new("."))
            .join("keycloak"),
    }
}

/// `$FERRY_KEYCLOAK_JAVA_HOME`, else the Temurin 25 JDK, else `$JAVA_HOME`.
fn java_home() -> anyhow::Result<PathBuf> {
    let candidates = [
        std::env::var_os("FERRY_KEYCLOAK_JAVA_HOME").map(PathBuf::from),
        Some(PathBuf::from(DEFAULT_JAVA_HOME)),
        std::env::var_os("JAVA_HOME").map(PathBuf::from),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|home| home.join("bin/java").is_file())
        .context(
            "no Java 21+ for Keycloak: install a JDK (e.g. temurin-25-jdk) or set \
             FERRY_KEYCLOAK_JAVA_HOME",
        )
}

/// A running Keycloak, killed (with its database) on drop.
pub struct RealKeycloak {
    child: Option<Child>,
    url: String,
    admin_user: String,
    admin_password: String,
    log: PathBuf,
    export_command: PathBuf,
    started_in: Duration,
    // Dropped after the server: the server's files, then its database.
    _dir: tempfile::TempDir,
    _pg: TempPostgres,
}

impl RealKeycloak {
    /// Starts a server and returns once `GET /realms/master` answers.
    pub async fn start() -> anyhow::Result<Self> {
        tokio::task::spawn_blocking(Self::start_blocking)
            .await
            .context("the Keycloak start task failed")?
    }

    fn start_blocking() -> anyhow::Result<Self> {
        let started = Instant::now();
        let java = java_home()?;
        let built = built_dist(&java)?;
        let pg = TempPostgres::start().context("starting Keycloak's PostgreSQL")?;
        pg.create_database(DATABASE)?;
        let dir = tempfile::Builder::new()
            .prefix("ferry-keycloak-")
            .tempdir()
            .context("creating a directory for Keycloak")?;
        let home = dir.path().join("server");
        let export_home = dir.path().join("export");
        link_copy(&built, &home)?;
        link_copy(&built, &export_home)?;
        let db_options = [
            format!(
                "--db-url=jdbc:postgresql://{}:{}/{DATABASE}",
                pg.host(),
                pg.port()
            ),
            format!("--db-username={SUPERUSER}"),
            // Trust authentication: the password is not checked.
            "--db-password=unused".to_owned(),
        ];
        let admin_user = "admin".to_owned();
        let admin_password = format!("admin-{}", std::process::id());
        let log = dir.path().join("keycloak.log");
        let workdir = dir.path().to_path_buf();
        // Starts the server on a fresh pair of ports, its log begun anew.
        let launch = || -> anyhow::Result<(Child, u16)> {
            let (port, management) = (free_port()?, free_port()?);
            let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
            let err = out.try_clone()?;
            let mut args = vec![
                "start".to_owned(),
                "--optimized".to_owned(),
                "--http-enabled=true".to_owned(),
                "--http-host=127.0.0.1".to_owned(),
                format!("--http-port={port}"),
                format!("--http-management-port={management}"),
                "--hostname-strict=false".to_owned(),
                // One node, no cluster: nothing listens beyond loopback
                // (Keycloak 26 reads this at start, not only at build).
                "--cache=local".to_owned(),
            ];
            args.extend(db_options.iter().cloned());
            let child = Command::new(home.join("bin/kc.sh"))
                .args(&args)
                .env("JAVA_HOME", &java)
                .env("KC_BOOTSTRAP_ADMIN_USERNAME", &admin_user)
                .env("KC_BOOTSTRAP_ADMIN_PASSWORD", &admin_password)
                .current_dir(&workdir)
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err)
                // Its own process group: kc.sh runs java as a child, and both go.
                .process_group(0)
                .spawn()
                .context("starting kc.sh")?;
            Ok((child, port))
        };
        let (child, mut port) = launch()?;
        let export_command = write_export_script(dir.path(), &export_home, &java, &db_options)?;
        let mut kc = RealKeycloak {
            child: Some(child),
            url: format!("http://127.0.0.1:{port}"),
            admin_user: admin_user.clone(),
            admin_password: admin_password.clone(),
            log: log.clone(),
            export_command,
            started_in: Duration::ZERO,
            _dir: dir,
            _pg: pg,
        };
        // The ports were free when chosen, but Keycloak binds them half a
        // minute later, and another process (or an outgoing connection's
        // source port) may have taken one meanwhile: start again on others.
        let mut attempt = 1;
        while let Err(e) = kc.wait_ready(port) {
            if attempt == START_ATTEMPTS || !kc.log_tail().contains("Port already bound") {
                return Err(e);
            }
            attempt += 1;
            eprintln!(
                "Keycloak lost a port to another process before binding it; starting it on others"
            );
            // Whatever is left of the failed start goes first.
            kc.stop();
            let (child, next) = launch()?;
            kc.child = Some(child);
            port = next;
            kc.url = format!("http://127.0.0.1:{port}");
        }
        kc.started_in = started.elapsed();
        eprintln!(
            "real Keycloak up in {:.1} s at {}",
            kc.started_in.as_secs_f64(),
            kc.url
        );
        Ok(kc)
    }

    fn wait_ready(&mut self, port: u16) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "Keycloak exited ({status}) while starting:\n{}",
                    self.log_tail()
                );
            }
            if http_status(port, "/realms/master") == Some(200) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "Keycloak did not answer within {START_TIMEOUT:?}:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Its address and bootstrap admin, for `crate::realms`.
    pub fn access(&self) -> crate::realms::Keycloak {
        crate::realms::Keycloak {
            url: self.url().to_owned(),
            admin_user: self.admin_user().to_owned(),
            admin_password: self.admin_password().to_owned(),
            real: true,
        }
    }

    /// Its base URL (no `/auth`).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn admin_user(&self) -> &str {
        &self.admin_user
    }

    pub fn admin_password(&self) -> &str {
        &self.admin_password
    }

    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// The export script: `<script> <realm>…` prints each realm's document
    /// of `kc.sh export --users realm_file`, Keycloak's own logs on stderr.
    pub fn export_command(&self) -> &Path {
        &self.export_command
    }

    /// The end of the server's log, for a failing test.
    pub fn log_tail(&self) -> String {
        crate::log_tail("keycloak", &self.log, TAIL)
    }

    /// Stops the server (kc.sh and its java), if it runs.
    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // kc.sh forwards TERM to java; KILL the group if it lingers.
        let group = format!("-{}", child.id());
        let kill = |signal: &str| {
            let _ = Command::new("kill")
                .args([signal, "--", &group])
                .stderr(Stdio::null())
                .status();
        };
        kill("-TERM");
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        kill("-KILL");
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for RealKeycloak {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The distribution built for [`BUILD_OPTIONS`], cached per version in the
/// temporary directory; built into a private directory and renamed into
/// place, so concurrent tests never see half a build.
fn built_dist(java: &Path) -> anyhow::Result<PathBuf> {
    // One build per test process: the servers of one test start together.
    static BUILDING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = BUILDING.lock().unwrap_or_else(|p| p.into_inner());
    let dist = keycloak_dist_dir();
    let version = std::fs::read_to_string(dist.join("version.txt")).with_context(|| {
        format!(
            "{} holds no Keycloak distribution: run scripts/realstack (./scripts/test does) \
             to unpack it",
            dist.display()
        )
    })?;
    let version: String = version
        .rsplit(' ')
        .next()
        .unwrap_or("unknown")
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
        .collect();
    let cache = std::env::temp_dir().join(format!("ferry-keycloak-{version}-postgres"));
    if cache.join("lib/quarkus/build-system.properties").is_file() {
        return Ok(cache);
    }
    let started = Instant::now();
    let scratch = tempfile::Builder::new()
        .prefix("ferry-keycloak-build-")
        .tempdir()
        .context("creating a directory to build Keycloak in")?;
    let home = scratch.path().join("keycloak");
    let status = Command::new("cp")
        .arg("-a")
        .arg(&dist)
        .arg(&home)
        .status()
        .context("copying the Keycloak distribution")?;
    if !status.success() {
        bail!("copying {} failed ({status})", dist.display());
    }
    let log = scratch.path().join("build.log");
    let out = File::create(&log)?;
    let mut child = Command::new(home.join("bin/kc.sh"))
        .arg("build")
        .args(BUILD_OPTIONS)
        .env("JAVA_HOME", java)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .context("running kc.sh build")?;
    let deadline = Instant::now() + BUILD_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("kc.sh build took longer than {BUILD_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    if !status.success() {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        bail!("kc.sh build failed ({status}):\n{text}");
    }
    // Another test may have won the race; its build is as good as ours.
    if std::fs::rename(&home, &cache).is_err() && !cache.is_dir() {
        bail!("could not move the built Keycloak to {}", cache.display());
    }
    eprintln!(
        "Keycloak {version} built for PostgreSQL in {:.1} s into {}",
        started.elapsed().as_secs_f64(),
        cache.display()
    );
    Ok(cache)
}

/// A copy of `from` at `to` whose files are hard links: the servers only
/// read the distribution, and write under their own `data/`.
fn link_copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    let status = Command::new("cp")
        .arg("-al")
        .arg(from)
        .arg(to)
        .status()
        .context("linking a Keycloak copy")?;
    if !status.success() {
        bail!(
            "cp -al {} {} failed ({status})",
            from.display(),
            to.display()
        );
    }
    Ok(())
}

/// Writes the export script (owner-only: it names the database).
fn write_export_script(
    dir: &Path,
    home: &Path,
    java: &Path,
    db_options: &[String],
) -> anyhow::Result<PathBuf> {
    let path = dir.join("keycloak-export");
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let db = db_options
        .iter()
        .map(|o| quote(o))
        .collect::<Vec<_>>()
        .join(" ");
    let script = format!(
        "#!/bin/sh
# Keycloak's own export of every realm with its users (credential hashes
# included) into a private directory removed on exit; the requested
# realms' documents go to stdout, Keycloak's logs to stderr.
set -eu
umask 077
out=$(mktemp -d {tmp})
trap 'rm -rf \"$out\"' EXIT
JAVA_HOME={java} {kc} export --optimized --dir \"$out\" --users realm_file {db} >&2
for realm in \"$@\"; do
  cat \"$out/$realm-realm.json\"
done
",
        tmp = quote(&dir.join("export.XXXXXX").to_string_lossy()),
        java = quote(&java.to_string_lossy()),
        kc = quote(&home.join("bin/kc.sh").to_string_lossy()),
    );
    let mut f = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(script.as_bytes())?;
    drop(f);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))?;
    Ok(path)
}

/// The status of a plain HTTP GET on loopback; `None` when nothing answers.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut stream =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut head = [0u8; 16];
    let n = stream.read(&mut head).ok()?;
    let line = std::str::from_utf8(&head[..n]).ok()?;
    line.split(' ').nth(1)?.parse().ok()
}
