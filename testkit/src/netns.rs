//! A network namespace holding only a loopback interface, for a server
//! that insists on a fixed port: Velero's controller manager always serves
//! its metrics on `:8080`, so two `velero server`s (one per cluster, as in
//! production) cannot share the machine's network stack. Each runs in a
//! namespace of its own; the loopback ports it must reach (its cluster's
//! API server, its object store) are forwarded into the namespace from the
//! test process.
//!
//! No interface but `lo` exists in the namespace, so nothing sent from it
//! can leave the machine: a forwarded port is a listening socket made
//! inside the namespace (by a thread that entered it) whose connections
//! the test process carries to the same port on the root namespace's
//! loopback.

use std::fs::File;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, bail};
use nix::sched::{CloneFlags, setns};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

static NEXT: AtomicU64 = AtomicU64::new(1);

/// A network namespace with `lo` up; deleted on drop, with its forwards.
pub struct Netns {
    name: String,
    forwards: Vec<JoinHandle<()>>,
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("running ip {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Netns {
    /// Creates `ferry-<what>-<pid>-<n>` and brings its loopback up. Needs
    /// root (CAP_SYS_ADMIN), as `ip netns add` does.
    pub fn create(what: &str) -> anyhow::Result<Self> {
        let name = format!(
            "ferry-{what}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name]).context("creating a network namespace (needs root)")?;
        let ns = Netns {
            name,
            forwards: Vec::new(),
        };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `program` to be started inside the namespace (`ip netns exec`,
    /// which enters it and then executes `program` in its own place: the
    /// child's pid is the program's).
    pub fn command(&self, program: &Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Makes `127.0.0.1:port` inside the namespace reach `127.0.0.1:port`
    /// outside it, until the namespace is dropped. Call from a Tokio
    /// runtime, which carries the connections.
    pub fn forward(&mut self, port: u16) -> anyhow::Result<()> {
        let path = format!("/var/run/netns/{}", self.name);
        // setns moves only the calling thread: a thread of its own enters
        // the namespace, makes the socket there and ends.
        let listener = std::thread::scope(|s| {
            s.spawn(|| -> anyhow::Result<std::net::TcpListener> {
                let ns = File::open(&path).with_context(|| format!("opening {path}"))?;
                setns(&ns, CloneFlags::CLONE_NEWNET)
                    .with_context(|| format!("entering network namespace {path}"))?;
                let l = std::net::TcpListener::bind(("127.0.0.1", port))
                    .with_context(|| format!("listening on 127.0.0.1:{port} in {path}"))?;
                l.set_nonblocking(true)?;
                Ok(l)
            })
            .join()
            .map_err(|_| anyhow::anyhow!("the thread entering {path} panicked"))?
        })?;
        let listener = TcpListener::from_std(listener)?;
        self.forwards.push(tokio::spawn(async move {
            while let Ok((mut inside, _)) = listener.accept().await {
                tokio::spawn(async move {
                    if let Ok(mut outside) = TcpStream::connect(("127.0.0.1", port)).await {
                        let _ = tokio::io::copy_bidirectional(&mut inside, &mut outside).await;
                    }
                });
            }
        }));
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for f in &self.forwards {
            f.abort();
        }
        // Nothing sensible to do on failure in Drop; a leftover namespace
        // holds only a loopback interface.
        let _ = ip(&["netns", "delete", &self.name]);
    }
}
