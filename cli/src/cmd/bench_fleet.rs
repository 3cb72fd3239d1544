//! `ferry bench fleet`: how many agents one coordinator holds.
//!
//! N simulated agents run in this process, each its own mTLS connection with
//! its own certificate (`spiffe://ferry/cluster/sim-…`), speaking the agent
//! link contract as the real agent does (`agent/src/session.rs`): register,
//! heartbeat at the interval the coordinator names, accept and answer `ping`
//! commands, and redial with the agent's own capped, jittered backoff. One
//! coordinator process is started by the bench; the figures are its RSS and
//! CPU at steady heartbeat, the time for all N to register again after it is
//! SIGKILLed and started again on the same data directory, and the round trip
//! of a `ping` submitted through the client API under that load.
//!
//! The agent's own session loop is not reused: it is private to the agent
//! and carries per-agent state (ledger, relay context, probes) that costs the
//! bench process, not the coordinator being measured.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ferry_common::backoff::Backoff;
use ferry_common::pb::{
    self, agent_link_client::AgentLinkClient, agent_message::Msg as Up,
    coordinator_message::Msg as Down, fleet_client::FleetClient,
};
use ferry_common::pki::{self, PkiPlan};
use ferry_common::tls::{self, ServerCheck, TlsPaths};
use ferry_common::{Identity, time::parse_duration};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use super::bench::{Proc, cpu_seconds, spawn_with};

/// The real agent's defaults (`agent/src/config.rs`): the redial storm after
/// a coordinator restart is shaped by them.
const BACKOFF_BASE: Duration = Duration::from_millis(200);
const BACKOFF_CAP: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, clap::Args)]
pub struct FleetBench {
    /// Simulated agents, each with its own certificate and connection.
    #[arg(long, default_value_t = 1000)]
    pub agents: usize,
    /// Heartbeat interval the coordinator tells the agents (its `--heartbeat`).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub heartbeat: Duration,
    /// How long CPU is sampled at steady heartbeat.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub window: Duration,
    /// Ping commands whose round trip is measured, spread over the fleet.
    #[arg(long, default_value_t = 300)]
    pub pings: usize,
    /// Give up when the fleet has not (re)registered within this time.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// The coordinator binary; by default `ferry-coordinator` next to `ferry`.
    #[arg(long)]
    pub coordinator_bin: Option<PathBuf>,
    /// Keep the work directory (PKI, data, log) here instead of a temporary
    /// one; agent certificates already there are reused.
    #[arg(long)]
    pub workdir: Option<PathBuf>,
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct FleetReport {
    pub agents: usize,
    pub issue_time: Duration,
    /// Agents with a live session, as each counted its `registered`.
    pub registered: usize,
    /// Agents connected as the coordinator's `ListAgents` reports them.
    pub connected_per_coordinator: usize,
    pub first_registration: Duration,
    pub rss_bytes: u64,
    pub peak_rss_bytes: u64,
    /// Coordinator CPU at steady heartbeat, in cores (1.0 = one core busy).
    pub cpu_cores: f64,
    /// The bench process's own CPU over the same window (it shares the machine).
    pub bench_cpu_cores: f64,
    pub re_registered: usize,
    pub re_connected_per_coordinator: usize,
    /// From the SIGKILL to the last agent registered again.
    pub re_registration: Duration,
    /// Coordinator CPU seconds spent while the fleet re-registered.
    pub re_registration_cpu: f64,
    pub rss_after_restart_bytes: u64,
    pub pings_ok: usize,
    pub ping_p50: Duration,
    pub ping_p99: Duration,
    pub ping_max: Duration,
}

pub async fn run(b: FleetBench) -> anyhow::Result<u8> {
    let report = measure(&b).await?;
    print(&report, &b);
    if report.registered != report.agents
        || report.re_registered != report.agents
        || report.pings_ok != b.pings
    {
        return Ok(crate::exit::FAILED);
    }
    Ok(crate::exit::OK)
}

fn print(r: &FleetReport, b: &FleetBench) {
    let mib = |n: u64| n as f64 / f64::from(1 << 20);
    let ratio = |x: f64, target: f64| x / target;
    println!();
    println!(
        "fleet: {} simulated agents, heartbeat {:?}; machine load average at the end: {}",
        r.agents,
        b.heartbeat,
        loadavg()
    );
    println!(
        "certificates: {} issued or reused in {:.1} s",
        r.agents,
        r.issue_time.as_secs_f64()
    );
    println!(
        "registered: {}/{} (coordinator says {} connected) in {:.1} s from a cold start",
        r.registered,
        r.agents,
        r.connected_per_coordinator,
        r.first_registration.as_secs_f64()
    );
    println!(
        "coordinator at steady heartbeat: RSS {:.1} MiB (peak {:.1} MiB; target ≤ 1024 MiB: {:.2} of it), CPU {:.3} cores over {:?} (bench process {:.3} cores)",
        mib(r.rss_bytes),
        mib(r.peak_rss_bytes),
        ratio(mib(r.rss_bytes), 1024.0),
        r.cpu_cores,
        b.window,
        r.bench_cpu_cores
    );
    println!(
        "re-registration after SIGKILL and restart: {}/{} (coordinator says {} connected) in {:.1} s (target ≤ 60 s: {:.2} of it); coordinator CPU {:.1} s meanwhile; RSS after {:.1} MiB",
        r.re_registered,
        r.agents,
        r.re_connected_per_coordinator,
        r.re_registration.as_secs_f64(),
        ratio(r.re_registration.as_secs_f64(), 60.0),
        r.re_registration_cpu,
        mib(r.rss_after_restart_bytes)
    );
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "ping round trip (submit + wait, {}/{} ok): p50 {:.1} ms, p99 {:.1} ms (target ≤ 50 ms: {:.2} of it), max {:.1} ms",
        r.pings_ok,
        b.pings,
        ms(r.ping_p50),
        ms(r.ping_p99),
        ratio(ms(r.ping_p99), 50.0),
        ms(r.ping_max)
    );
}

/// Runs the whole benchmark and returns its figures.
pub async fn measure(b: &FleetBench) -> anyhow::Result<FleetReport> {
    if b.agents == 0 {
        bail!("--agents must be at least 1");
    }
    check_fd_limit(b.agents)?;
    let tmp = tempfile::tempdir()?;
    let dir = b
        .workdir
        .clone()
        .unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let pki_dir = dir.join("pki");
    let ids: Vec<String> = (0..b.agents).map(|i| format!("sim-{i:05}")).collect();
    let started = Instant::now();
    issue_certificates(&pki_dir, &ids)?;
    let issue_time = started.elapsed();
    println!(
        "certificates for {} agents ready in {:.1} s",
        ids.len(),
        issue_time.as_secs_f64()
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let coordinator = CoordinatorProc {
        program: match &b.coordinator_bin {
            Some(p) => p.clone(),
            None => super::bench::sibling("ferry-coordinator")?,
        },
        args: vec![
            format!("--listen=127.0.0.1:{port}"),
            format!("--pki-dir={}", pki_dir.display()),
            format!("--data-dir={}", dir.join("coordinator").display()),
            format!("--heartbeat={}ms", b.heartbeat.as_millis()),
            "--role=admin=operator".into(),
        ],
        log: dir.join("coordinator.log"),
    };
    let url = format!("https://127.0.0.1:{port}");
    let mut proc = coordinator.start()?;
    let admin = TlsPaths::in_dir(&pki_dir, "client-admin");
    let channel = client(&url, &admin, Duration::from_secs(30)).await?;

    let fleet = Arc::new(Tally::new(ids.len()));
    let stop = CancellationToken::new();
    let sim_started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, id) in ids.iter().enumerate() {
        let sim = SimAgent {
            index: i,
            cluster: id.clone(),
            url: url.clone(),
            paths: TlsPaths::in_dir(&pki_dir, &pki::file_name(&Identity::Agent(id.clone()))),
            tally: fleet.clone(),
            epoch: sim_started,
        };
        tasks.spawn(sim.run(stop.child_token()));
    }
    let outcome = async {
        println!("waiting for {} agents to register…", ids.len());
        let done = fleet.wait_all_since(0, b.timeout).await;
        if done < ids.len() {
            bail!(
                "only {done}/{} agents registered within {:?}",
                ids.len(),
                b.timeout
            );
        }
        let first_registration = sim_started.elapsed();
        println!(
            "all {done} registered in {:.1} s",
            first_registration.as_secs_f64()
        );
        let connected_per_coordinator = connected(&channel).await?;

        // Steady heartbeat: let every agent beat at least twice, then sample.
        tokio::time::sleep(b.heartbeat * 2).await;
        println!("sampling the coordinator for {:?}…", b.window);
        let (cpu0, own0) = (cpu_of(&proc)?, own_cpu()?);
        let t0 = Instant::now();
        tokio::time::sleep(b.window).await;
        let (cpu1, own1) = (cpu_of(&proc)?, own_cpu()?);
        let secs = t0.elapsed().as_secs_f64();
        let (rss_bytes, peak_rss_bytes) = proc.rss()?;
        let registered = fleet.live.load(Ordering::Relaxed);
        // Said now: a later phase that fails must not lose these figures.
        println!(
            "steady heartbeat: coordinator RSS {:.1} MiB (peak {:.1} MiB), CPU {:.3} cores",
            rss_bytes as f64 / f64::from(1 << 20),
            peak_rss_bytes as f64 / f64::from(1 << 20),
            (cpu1 - cpu0) / secs
        );

        println!("SIGKILL to the coordinator, then starting it again on the same data…");
        let killed_at = sim_started.elapsed();
        proc.kill();
        proc = coordinator.start()?;
        let cpu_restart = proc.cpu().unwrap_or(0.0);
        let since = epoch_ms(killed_at);
        let done = fleet.wait_all_since(since, b.timeout).await;
        let re_registration = sim_started.elapsed() - killed_at;
        println!(
            "{done}/{} registered again {:.1} s after the SIGKILL",
            ids.len(),
            re_registration.as_secs_f64()
        );
        let re_registration_cpu = cpu_of(&proc)? - cpu_restart;
        let channel = client(&url, &admin, Duration::from_secs(30)).await?;
        let re_connected_per_coordinator = connected(&channel).await?;
        let re_registered = done;

        println!("measuring {} ping round trips…", b.pings);
        // Only to agents with a session now: a ping to one still redialling
        // would measure the backoff, not the round trip.
        let targets = fleet.registered_ids(since, &ids);
        let mut rtts = pings(&channel, &targets, b.pings).await?;
        let pings_ok = rtts.len();
        rtts.sort();
        let (rss_after_restart_bytes, _) = proc.rss()?;
        anyhow::Ok(FleetReport {
            agents: ids.len(),
            issue_time,
            registered,
            connected_per_coordinator,
            first_registration,
            rss_bytes,
            peak_rss_bytes,
            cpu_cores: (cpu1 - cpu0) / secs,
            bench_cpu_cores: (own1 - own0) / secs,
            re_registered,
            re_connected_per_coordinator,
            re_registration,
            re_registration_cpu,
            rss_after_restart_bytes,
            pings_ok,
            ping_p50: percentile(&rtts, 0.50),
            ping_p99: percentile(&rtts, 0.99),
            ping_max: rtts.last().copied().unwrap_or_default(),
        })
    }
    .await;
    stop.cancel();
    while tasks.join_next().await.is_some() {}
    drop(proc);
    outcome.with_context(|| format!("coordinator log: {}", dir.join("coordinator.log").display()))
}

/// Each simulated agent needs a socket here and one in the coordinator,
/// which inherits this process's limit.
fn check_fd_limit(agents: usize) -> anyhow::Result<()> {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|s| s.parse::<usize>().ok());
    if let Some(soft) = soft
        && soft < agents + 256
    {
        bail!(
            "{agents} agents need {} open files in this process and in the coordinator; the limit is {soft}: raise it first (`ulimit -n {}`)",
            agents + 256,
            agents + 1024
        );
    }
    Ok(())
}

/// The CA, the coordinator's and the admin client's certificates, then one
/// per agent, issued in parallel (each writes and syncs two files); those
/// already in `dir` are reused.
fn issue_certificates(dir: &Path, ids: &[String]) -> anyhow::Result<()> {
    if !dir.join("ca-key.pem").exists() {
        pki::init(
            dir,
            &PkiPlan {
                clients: vec!["admin".into()],
                ..PkiPlan::default()
            },
        )?;
    }
    let missing: Vec<&String> = ids
        .iter()
        .filter(|id| !dir.join(format!("agent-{id}.pem")).exists())
        .collect();
    let threads = 8;
    std::thread::scope(|s| {
        let handles: Vec<_> = missing
            .chunks(missing.len().div_ceil(threads).max(1))
            .map(|chunk| {
                s.spawn(move || -> anyhow::Result<()> {
                    for id in chunk {
                        pki::issue(dir, &Identity::Agent((*id).clone()), &[])?;
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("a certificate thread panicked"))??;
        }
        anyhow::Ok(())
    })
}

/// Registration state of the whole simulated fleet.
struct Tally {
    /// Agents whose session is registered now.
    live: AtomicUsize,
    /// Per agent: ms since the bench's epoch of its last `registered` (+1, so
    /// 0 means never).
    last_registered: Vec<AtomicU64>,
    changed: tokio::sync::Notify,
}

impl Tally {
    fn new(n: usize) -> Self {
        Self {
            live: AtomicUsize::new(0),
            last_registered: (0..n).map(|_| AtomicU64::new(0)).collect(),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// Agents registered (again) after `since_ms` and live now.
    fn registered_since(&self, since_ms: u64) -> usize {
        self.last_registered
            .iter()
            .filter(|t| t.load(Ordering::Relaxed) > since_ms)
            .count()
    }

    /// The ids of the agents registered after `since_ms`.
    fn registered_ids(&self, since_ms: u64, ids: &[String]) -> Vec<String> {
        self.last_registered
            .iter()
            .zip(ids)
            .filter(|(t, _)| t.load(Ordering::Relaxed) > since_ms)
            .map(|(_, id)| id.clone())
            .collect()
    }

    /// Waits until every agent registered after `since_ms`, or `timeout`;
    /// returns how many did.
    async fn wait_all_since(&self, since_ms: u64, timeout: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut said = Instant::now();
        loop {
            let done = self.registered_since(since_ms);
            if done == self.last_registered.len() {
                return done;
            }
            if said.elapsed() > Duration::from_secs(5) {
                println!("  {done}/{} registered", self.last_registered.len());
                said = Instant::now();
            }
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return self.registered_since(since_ms),
                _ = self.changed.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }
}

fn epoch_ms(d: Duration) -> u64 {
    d.as_millis() as u64 + 1
}

struct SimAgent {
    index: usize,
    cluster: String,
    url: String,
    paths: TlsPaths,
    tally: Arc<Tally>,
    epoch: Instant,
}

impl SimAgent {
    /// Sessions, redialled with the agent's backoff, until `stop`.
    async fn run(self, stop: CancellationToken) {
        let mut backoff = Backoff::new(BACKOFF_BASE, BACKOFF_CAP);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                ended = self.session(&mut backoff) => {
                    if let Err(e) = ended {
                        tracing::debug!(cluster = %self.cluster, error = %e, "simulated session ended");
                    }
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff.next_delay()) => {}
            }
        }
    }

    async fn session(&self, backoff: &mut Backoff) -> anyhow::Result<()> {
        let channel = tls::connect_to(
            &self.url,
            &self.paths,
            ServerCheck::coordinator(None),
            CONNECT_TIMEOUT,
        )
        .await?;
        let (up_tx, up_rx) = mpsc::channel::<pb::AgentMessage>(16);
        up_tx
            .send(up(Up::Register(pb::Register {
                cluster_id: self.cluster.clone(),
                agent_version: env!("CARGO_PKG_VERSION").into(),
                facts: Some(pb::ClusterFacts {
                    platform_version: "1.9.9".into(),
                    registries: vec![pb::RegistryFacts {
                        name: "bench-registry".into(),
                        version: "1.9.9".into(),
                    }],
                }),
                capabilities: vec!["ping".into()],
                in_flight: vec![],
                unacked_results: vec![],
            })))
            .await?;
        let upstream =
            futures::stream::unfold(
                up_rx,
                |mut rx| async move { rx.recv().await.map(|m| (m, rx)) },
            );
        let mut down = AgentLinkClient::new(channel)
            .session(upstream)
            .await?
            .into_inner();
        let registered = match down.message().await? {
            Some(pb::CoordinatorMessage {
                msg: Some(Down::Registered(r)),
            }) => r,
            Some(_) => bail!("expected `registered` first"),
            None => bail!("the coordinator closed the session before `registered`"),
        };
        backoff.reset();
        let _live = Live::new(&self.tally);
        self.tally.last_registered[self.index]
            .store(epoch_ms(self.epoch.elapsed()), Ordering::Relaxed);
        self.tally.changed.notify_waiters();
        let mut heartbeat = tokio::time::interval(Duration::from_millis(u64::from(
            registered.heartbeat_interval_ms.max(100),
        )));
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = heartbeat.tick() => {
                    up_tx.send(up(Up::Heartbeat(pb::Heartbeat {
                        sent_at_unix_ms: ferry_common::time::unix_ms(),
                    }))).await?;
                }
                msg = down.message() => match msg? {
                    Some(pb::CoordinatorMessage { msg: Some(Down::Command(c)) }) => {
                        for reply in answer(c) {
                            up_tx.send(reply).await?;
                        }
                    }
                    Some(_) => {}
                    None => bail!("the coordinator ended the session"),
                },
            }
        }
    }
}

/// Counts a live session for as long as it lives.
struct Live<'a>(&'a Tally);

impl<'a> Live<'a> {
    fn new(tally: &'a Tally) -> Self {
        tally.live.fetch_add(1, Ordering::Relaxed);
        Self(tally)
    }
}

impl Drop for Live<'_> {
    fn drop(&mut self) {
        self.0.live.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the simulated agent sends for a command: accepted, then the result
/// (a ping echoes its payload at once; other kinds are not simulated).
fn answer(c: pb::Command) -> [pb::AgentMessage; 2] {
    let outcome = match c.spec.and_then(|s| s.kind) {
        Some(pb::command_spec::Kind::Ping(p)) => {
            pb::command_result::Outcome::Output(pb::CommandOutput {
                kind: Some(pb::command_output::Kind::Ping(pb::PingOutput {
                    payload: p.payload,
                })),
            })
        }
        _ => pb::command_result::Outcome::Error(pb::CommandError {
            message: "a simulated agent answers ping only".into(),
            kind: pb::ErrorKind::Invalid.into(),
        }),
    };
    [
        up(Up::Accepted(pb::CommandAccepted { id: c.id.clone() })),
        up(Up::Result(pb::CommandResult {
            id: c.id,
            outcome: Some(outcome),
        })),
    ]
}

fn up(msg: Up) -> pb::AgentMessage {
    pb::AgentMessage { msg: Some(msg) }
}

/// Sequential pings through the client API to agents spread over the fleet;
/// returns the round trips of those that succeeded.
async fn pings(channel: &Channel, ids: &[String], n: usize) -> anyhow::Result<Vec<Duration>> {
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let mut fleet = FleetClient::new(channel.clone());
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let cluster = &ids[(i * ids.len() / n.max(1) + i) % ids.len()];
        let started = Instant::now();
        let submitted = fleet
            .submit_command(pb::SubmitCommandRequest {
                cluster_id: cluster.clone(),
                spec: Some(pb::CommandSpec {
                    kind: Some(pb::command_spec::Kind::Ping(pb::PingCommand {
                        delay_ms: 0,
                        payload: format!("bench-{i}"),
                    })),
                    trace_context: Default::default(),
                }),
                request_id: format!("bench-fleet-{}-{i}", ferry_common::time::unix_ms()),
            })
            .await?
            .into_inner();
        let status = fleet
            .wait_command(pb::WaitCommandRequest {
                command_id: submitted.command_id,
                timeout_ms: 10_000,
            })
            .await?
            .into_inner();
        if status.state == pb::CommandState::Succeeded as i32 {
            out.push(started.elapsed());
        } else {
            println!(
                "  ping to {cluster} ended {:?}: {:?}",
                pb::CommandState::try_from(status.state),
                status.result.and_then(|r| r.outcome)
            );
        }
    }
    Ok(out)
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let at = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[at]
}

/// Agents the coordinator itself reports connected.
async fn connected(channel: &Channel) -> anyhow::Result<usize> {
    let agents = FleetClient::new(channel.clone())
        .max_decoding_message_size(64 << 20)
        .list_agents(pb::ListAgentsRequest {})
        .await?
        .into_inner()
        .agents;
    Ok(agents
        .iter()
        .filter(|a| a.state == pb::AgentState::Connected as i32)
        .count())
}

async fn client(url: &str, paths: &TlsPaths, wait: Duration) -> anyhow::Result<Channel> {
    let deadline = Instant::now() + wait;
    loop {
        match tls::connect(url, paths, None, Duration::from_secs(2)).await {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() > deadline => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// How to start the coordinator, the same way each time.
struct CoordinatorProc {
    program: PathBuf,
    args: Vec<String>,
    log: PathBuf,
}

impl CoordinatorProc {
    fn start(&self) -> anyhow::Result<Proc> {
        spawn_with(&self.program, &self.args, &self.log, &[])
    }
}

/// CPU seconds (user + system) of a process, from `/proc/<pid>/stat`.
fn cpu_of(proc: &Proc) -> anyhow::Result<f64> {
    proc.cpu()
        .with_context(|| format!("reading the CPU time of process {}", proc.pid()))
}

fn own_cpu() -> anyhow::Result<f64> {
    cpu_seconds("self", false).context("reading this process's CPU time")
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| {
            let parts: Vec<&str> = l.split_whitespace().take(3).collect();
            (parts.len() == 3).then(|| parts.join(" "))
        })
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_sorted_sample() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 0.50), Duration::from_millis(50));
        assert_eq!(percentile(&v, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&v[..1], 0.99), Duration::from_millis(1));
        assert_eq!(percentile(&[], 0.99), Duration::ZERO);
    }

    #[test]
    fn a_simulated_agent_echoes_a_ping() {
        let [accepted, result] = answer(pb::Command {
            id: "c1".into(),
            spec: Some(pb::CommandSpec {
                kind: Some(pb::command_spec::Kind::Ping(pb::PingCommand {
                    delay_ms: 0,
                    payload: "p".into(),
                })),
                trace_context: Default::default(),
            }),
        });
        assert!(matches!(accepted.msg, Some(Up::Accepted(a)) if a.id == "c1"));
        let Some(Up::Result(r)) = result.msg else {
            panic!("expected a result");
        };
        assert_eq!(r.id, "c1");
        assert!(matches!(
            r.outcome,
            Some(pb::command_result::Outcome::Output(pb::CommandOutput {
                kind: Some(pb::command_output::Kind::Ping(p))
            })) if p.payload == "p"
        ));
    }
}
