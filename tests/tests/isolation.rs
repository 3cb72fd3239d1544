//! Isolation: cluster A (a `ferry sandbox` process and its agent) and
//! cluster B live in two network namespaces that reach only the
//! coordinator's namespace, which does not forward. The test first shows A
//! cannot open a connection to B, then migrates A's registry to B through the
//! coordinator and verifies it.
//!
//! Safety: every address used is in 10.231.0.0/16, blackholed in the root
//! namespace before any namespace exists; only processes inside the
//! namespaces send to those addresses; the namespaces are deleted when the
//! test ends, failed or not. Needs root and `ip`; skips with a reason otherwise.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use ferry_tests::{Proc, World, bin, eventually};

const RANGE: &str = "10.231.0.0/16";
const C_TO_A: &str = "10.231.1.1";
const A_ADDR: &str = "10.231.1.2";
const C_TO_B: &str = "10.231.2.1";
const B_ADDR: &str = "10.231.2.2";

fn run(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {}", args.join(" ")))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The three namespaces, deleted on drop.
struct Namespaces {
    names: Vec<String>,
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "delete", n]).output();
        }
    }
}

fn skip_reason() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not root: network namespaces need root".into());
    }
    if Command::new("ip").arg("-V").output().is_err() {
        return Some("`ip` (iproute2) is not installed".into());
    }
    None
}

/// `ip netns exec <ns> <program> <args>` as a logged child process.
fn spawn_in(
    ns: &str,
    name: &str,
    program: &Path,
    args: &[String],
    log: PathBuf,
) -> anyhow::Result<Proc> {
    let mut all = vec![
        "netns".to_string(),
        "exec".into(),
        ns.into(),
        program.display().to_string(),
    ];
    all.extend(args.iter().cloned());
    Proc::spawn(name, Path::new("ip"), &all, log)
}

/// Can a TCP connection be opened from inside `ns` to `addr:port`?
fn connects_from(ns: &str, addr: &str, port: u16) -> bool {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "timeout",
            "3",
            "bash",
            "-c",
            &format!("exec 3<>/dev/tcp/{addr}/{port}"),
        ])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolated_clusters_migrate_through_the_coordinator_only() -> anyhow::Result<()> {
    if let Some(why) = skip_reason() {
        eprintln!("SKIPPED isolated_clusters_migrate_through_the_coordinator_only: {why}");
        return Ok(());
    }
    let w = World::new(&["a", "b"], &["admin"])?;
    // First: nothing for this range may leave the machine from the root namespace.
    run(&["ip", "route", "replace", "blackhole", RANGE])?;
    let tag = std::process::id();
    let (ns_a, ns_b, ns_c) = (
        format!("ferry-a-{tag}"),
        format!("ferry-b-{tag}"),
        format!("ferry-c-{tag}"),
    );
    let _guard = Namespaces {
        names: vec![ns_a.clone(), ns_b.clone(), ns_c.clone()],
    };
    for ns in [&ns_a, &ns_b, &ns_c] {
        run(&["ip", "netns", "add", ns])?;
        run(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
    }
    // The coordinator's namespace does not forward between its two links.
    run(&[
        "ip",
        "netns",
        "exec",
        &ns_c,
        "sysctl",
        "-qw",
        "net.ipv4.ip_forward=0",
    ])?;
    let (va, vca) = (format!("fa{tag}"), format!("fca{tag}"));
    let (vb, vcb) = (format!("fb{tag}"), format!("fcb{tag}"));
    for (end, peer, ns, addr, c_addr) in [
        (&va, &vca, &ns_a, A_ADDR, C_TO_A),
        (&vb, &vcb, &ns_b, B_ADDR, C_TO_B),
    ] {
        // Created inside C, so no interface ever exists in the root namespace.
        run(&[
            "ip", "-n", &ns_c, "link", "add", peer, "type", "veth", "peer", "name", end,
        ])?;
        run(&["ip", "-n", &ns_c, "link", "set", end, "netns", ns])?;
        run(&[
            "ip",
            "-n",
            &ns_c,
            "addr",
            "add",
            &format!("{c_addr}/24"),
            "dev",
            peer,
        ])?;
        run(&["ip", "-n", &ns_c, "link", "set", peer, "up"])?;
        run(&[
            "ip",
            "-n",
            ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            end,
        ])?;
        run(&["ip", "-n", ns, "link", "set", end, "up"])?;
        // A route to the other side exists: only the coordinator's refusal to forward stops it.
        run(&["ip", "-n", ns, "route", "add", RANGE, "via", c_addr])?;
    }

    // The coordinator, in its namespace, on every address.
    let port = w.port;
    let coordinator = spawn_in(
        &ns_c,
        "coordinator",
        &bin("ferry-coordinator")?,
        &[
            "--listen".into(),
            format!("0.0.0.0:{port}"),
            "--pki-dir".into(),
            w.pki.display().to_string(),
            "--data-dir".into(),
            w.path("coordinator-data").display().to_string(),
            "--heartbeat".into(),
            "300ms".into(),
            "--role".into(),
            "admin=operator".into(),
        ],
        w.path("coordinator.log"),
    )?;

    // Each cluster: a `ferry sandbox` process and its agent, in its namespace.
    let mut procs = LogsOnFailure {
        procs: vec![coordinator],
        ok: false,
    };
    for (id, ns, c_addr, seed) in [
        (
            "a",
            &ns_a,
            C_TO_A,
            vec!["--registry", "reg-one=1.9.9", "--domain", "a.example.com"],
        ),
        ("b", &ns_b, C_TO_B, vec!["--domain", "b.example.com"]),
    ] {
        let dir = w.path(&format!("sandbox-{id}"));
        let stores = w.path(&format!("stores-{id}.json"));
        let mut args: Vec<String> = vec![
            "sandbox".into(),
            "--dir".into(),
            dir.display().to_string(),
            "--platform".into(),
            "1.9.9".into(),
            "--stores-out".into(),
            stores.display().to_string(),
        ];
        if id == "b" {
            // Its buckets are named after the registry it will receive.
            args.extend(["--bucket-registry".into(), "reg-one".into()]);
        }
        args.extend(seed.iter().map(|s| s.to_string()));
        procs.procs.push(spawn_in(
            ns,
            &format!("sandbox-{id}"),
            &bin("ferry")?,
            &args,
            w.path(&format!("sandbox-{id}.log")),
        )?);
        eventually(
            Duration::from_secs(30),
            &format!("sandbox {id} seeded"),
            || async { stores.exists().then_some(()) },
        )
        .await?;
        procs.procs.push(spawn_in(
            ns,
            &format!("agent-{id}"),
            &bin("ferry-agent")?,
            &[
                "--cluster-id".into(),
                id.into(),
                "--coordinator".into(),
                format!("https://{c_addr}:{port}"),
                "--coordinator-name".into(),
                "localhost".into(),
                "--pki-dir".into(),
                w.pki.display().to_string(),
                "--kubeconfig".into(),
                dir.join("kubeconfig").display().to_string(),
                "--stores".into(),
                stores.display().to_string(),
                "--state-dir".into(),
                w.path(&format!("agent-{id}-state")).display().to_string(),
                "--backoff-base".into(),
                "100ms".into(),
                "--backoff-cap".into(),
                "1s".into(),
            ],
            w.path(&format!("agent-{id}.log")),
        )?);
    }

    // The coordinator's port answers from A and from B (the path they use)
    // once it listens; on a loaded machine that may take a moment...
    eventually(
        Duration::from_secs(30),
        "A reaches the coordinator",
        || async { connects_from(&ns_a, C_TO_A, port).then_some(()) },
    )
    .await?;
    eventually(
        Duration::from_secs(30),
        "B reaches the coordinator",
        || async { connects_from(&ns_b, C_TO_B, port).then_some(()) },
    )
    .await?;
    // ...and a Ferry listener on B's own address is reachable from C but not from A.
    let b_port = ferry_tests::free_port()?;
    procs.procs.push(spawn_in(
        &ns_b,
        "listener-b",
        &bin("ferry-coordinator")?,
        &[
            "--listen".into(),
            format!("{B_ADDR}:{b_port}"),
            "--pki-dir".into(),
            w.pki.display().to_string(),
            "--data-dir".into(),
            w.path("listener-b").display().to_string(),
        ],
        w.path("listener-b.log"),
    )?);
    eventually(Duration::from_secs(10), "B's listener up", || async {
        connects_from(&ns_c, B_ADDR, b_port).then_some(())
    })
    .await?;
    assert!(
        !connects_from(&ns_a, B_ADDR, b_port),
        "A opened a connection to B: the clusters are not isolated"
    );

    // The client too runs in the coordinator's namespace.
    let ferry = |args: &[&str]| -> anyhow::Result<std::process::Output> {
        let url = format!("https://127.0.0.1:{port}");
        let pki = w.pki.display().to_string();
        let mut all = vec!["netns", "exec", &ns_c];
        let program = bin("ferry")?.display().to_string();
        all.push(&program);
        all.extend(["--coordinator", &url, "--pki-dir", &pki, "--as", "admin"]);
        all.extend(args);
        Ok(Command::new("ip").args(&all).output()?)
    };
    eventually(Duration::from_secs(30), "both agents connected", || async {
        let out = ferry(&["agents", "-o", "json"]).ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let connected = v["agents"]
            .as_array()?
            .iter()
            .filter(|a| a["state"] == "connected")
            .count();
        (connected == 2).then_some(())
    })
    .await?;
    let out = ferry(&[
        "migrate",
        "start",
        "--registry",
        "reg-one",
        "--from",
        "a",
        "--to",
        "b",
        "--id",
        "iso",
    ])?;
    assert!(
        out.status.success(),
        "migration failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ferry(&["migrate", "get", "iso", "-o", "json"])?;
    let m: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(m["state"], "succeeded", "{m:#}");
    assert_eq!(m["report"]["verified"], true, "{m:#}");
    procs.ok = true;
    drop(procs);
    Ok(())
}

/// The test's processes; when the test fails (an error or a panic), the
/// tail of each one's log is printed so the failure can be read from CI.
struct LogsOnFailure {
    procs: Vec<Proc>,
    ok: bool,
}

impl Drop for LogsOnFailure {
    fn drop(&mut self) {
        if self.ok {
            return;
        }
        for p in &self.procs {
            let text = std::fs::read_to_string(&p.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!(
                "--- {} ({}) ---\n{}",
                p.name,
                p.log.display(),
                tail.join("\n")
            );
        }
    }
}
