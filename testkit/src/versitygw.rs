//! An independent S3 server for tests: versitygw (Apache-2.0), built from its
//! Go module by `scripts/realstack`, serving `versitygw posix <dir>` on a free
//! loopback port with its own root access and secret keys.
//!
//! The sandbox's S3 is measured against it (`sandbox/tests/s3_conformance.rs`):
//! it is a separate implementation, so where the two answer differently one
//! of them departs from S3, and the suite says which request showed it.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::free_port;
use crate::kube::process::Process;
use crate::kube::realstack_binary;

/// How long the server may take to listen (a cold binary on 2 busy cores).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The root account's credentials and the region it signs for.
pub const ACCESS_KEY: &str = "ferry-versitygw";
pub const SECRET_KEY: &str = "ferry-versitygw-secret";
pub const REGION: &str = "us-east-1";

/// A running `versitygw posix`; killed on drop, its directory removed.
pub struct RealVersityGw {
    // Declared first so the process dies before its directory goes.
    process: Process,
    dir: tempfile::TempDir,
    endpoint: String,
}

impl RealVersityGw {
    /// Starts the server over a fresh temporary directory and returns once it
    /// accepts connections; fails with its log's tail if it exits or does
    /// not listen in time.
    pub async fn start() -> anyhow::Result<Self> {
        let binary = realstack_binary("versitygw")?;
        let dir = tempfile::Builder::new()
            .prefix("ferry-versitygw-")
            .tempdir()
            .context("creating versitygw's directory")?;
        let data = dir.path().join("data");
        std::fs::create_dir(&data)
            .with_context(|| format!("creating versitygw's data directory {}", data.display()))?;
        let port = free_port()?;
        let address = format!("127.0.0.1:{port}");
        let args = vec![
            "--access".to_string(),
            ACCESS_KEY.into(),
            "--secret".into(),
            SECRET_KEY.into(),
            "--region".into(),
            REGION.into(),
            "--port".into(),
            address.clone(),
            "--quiet".into(),
            "posix".into(),
            data.display().to_string(),
        ];
        let started = Instant::now();
        let process = Process::spawn(dir.path(), "versitygw", &binary, &args)?;
        let mut server = RealVersityGw {
            process,
            dir,
            endpoint: format!("http://{address}"),
        };
        loop {
            if let Some(status) = server.process.exited()? {
                bail!(
                    "versitygw exited at start ({status}):\n{}",
                    server.log_tail()
                );
            }
            if TcpStream::connect(&address).is_ok() {
                break;
            }
            if started.elapsed() > START_TIMEOUT {
                bail!(
                    "versitygw did not listen on {address} within {START_TIMEOUT:?}:\n{}",
                    server.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        eprintln!(
            "versitygw listening on {} in {} ms",
            server.endpoint,
            started.elapsed().as_millis()
        );
        Ok(server)
    }

    /// Base URL, e.g. `http://127.0.0.1:41234`; buckets are addressed path-style.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn access_key(&self) -> &str {
        ACCESS_KEY
    }

    pub fn secret_key(&self) -> &str {
        SECRET_KEY
    }

    pub fn region(&self) -> &str {
        REGION
    }

    /// The directory holding the server's buckets.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The server's own directory (its log is `versitygw.log` there).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The end of the server's log, for a failing test's message.
    pub fn log_tail(&self) -> String {
        self.process.tail()
    }
}
