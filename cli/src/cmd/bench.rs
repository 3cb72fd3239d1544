//! `ferry bench`: figures measured by hand, never asserted by tests.
//!
//! `ferry bench relay` relays a generated data set between two sandbox S3
//! endpoints (HTTPS from the bench's own CA, as a cluster's S3 route)
//! through a coordinator and two agents (separate processes, mTLS), then, in
//! the same run, copies the same data directly between the same two endpoints
//! with `rclone` when it is installed (TLS on both legs, as on a jumpbox), and
//! prints both rates, their ratio, each process's CPU per GiB, the processes'
//! peak RSS, and what a re-run over unchanged data moves.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ferry_common::pb::{self, transfers_client::TransfersClient};
use ferry_common::pki::{self, PkiPlan};
use ferry_common::tls::TlsPaths;
use ferry_sandbox::s3::{S3Config, S3Server, S3Tls};
use serde_json::json;

use crate::output::bytes;

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Relay throughput and memory against rclone's direct copy.
    Relay(RelayBench),
    /// Load throughput through Ferry against `psql \copy`.
    Load(crate::cmd::bench_load::LoadBench),
    /// One coordinator under N simulated agents: memory, CPU, re-registration, command round trip.
    Fleet(crate::cmd::bench_fleet::FleetBench),
}

#[derive(Debug, clap::Args)]
pub struct RelayBench {
    /// Total bytes to move, e.g. 2GiB, 512MiB.
    #[arg(long, default_value = "2GiB", value_parser = parse_size)]
    pub bytes: u64,
    /// Number of objects the bytes are spread over.
    #[arg(long, default_value_t = 64)]
    pub objects: u64,
    /// Relay chunk size (0: the default).
    #[arg(long, default_value_t = 0)]
    pub chunk_size: u64,
    /// Objects in flight (0: the default); rclone gets the same `--transfers`.
    #[arg(long, default_value_t = 0)]
    pub parallelism: u32,
    /// Run the coordinator and agents with glibc's `MALLOC_MMAP_THRESHOLD_`
    /// fixed at this many bytes (as the charts once did); by default they run
    /// with glibc's own settings, as deployed.
    #[arg(long)]
    pub mmap_threshold: Option<u64>,
    /// Rounds of relay-then-rclone, each into buckets of its own (kept until
    /// the end: the disk must hold the data once per round and copy); the figures
    /// printed are medians (this machine's rates drift by ±15 % between runs).
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
    /// Tokio worker threads for the coordinator and each agent (tokio's
    /// default is the CPUs the process may use: a pod with a 1-CPU limit
    /// gets 1).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Serve the S3 endpoints over plain HTTP, for the relay and rclone (the
    /// bench's setup before issue 17: unlike a jumpbox, no TLS to S3).
    #[arg(long)]
    pub s3_http: bool,
    /// Also copy with rclone over plain HTTP each round (a second pair of
    /// endpoints over the same directories) and print that ratio too.
    #[arg(long, conflicts_with = "s3_http")]
    pub http_baseline: bool,
    /// Keep the work directory here instead of a temporary one.
    #[arg(long)]
    pub workdir: Option<PathBuf>,
}

pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let n: u64 = s[..split]
        .parse()
        .map_err(|_| format!("bad size {s:?}: use e.g. 512MiB, 2GiB"))?;
    let unit = match s[split..].trim() {
        "" | "B" => 1,
        "KiB" | "K" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        other => return Err(format!("bad size unit {other:?}: use B, KiB, MiB or GiB")),
    };
    Ok(n * unit)
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<u8> {
    match cmd {
        BenchCommand::Relay(b) => relay(b).await,
        BenchCommand::Load(b) => crate::cmd::bench_load::run(b).await,
        BenchCommand::Fleet(b) => crate::cmd::bench_fleet::run(b).await,
    }
}

/// A child process killed on drop.
pub(crate) struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// CPU seconds (user + system) that `/proc/<pid>/stat` reports: the
/// process's own, and (`children`) that of the children it waited for.
pub(crate) fn cpu_seconds(pid: &str, children: bool) -> Option<f64> {
    let [user, system] = user_system(pid, children)?;
    Some(user + system)
}

/// The part of [`cpu_seconds`] spent in the kernel (system time).
fn kernel_seconds(pid: &str, children: bool) -> Option<f64> {
    Some(user_system(pid, children)?[1])
}

fn user_system(pid: &str, children: bool) -> Option<[f64; 2]> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name; utime is field 14,
    // stime 15, and the children's 16 and 17.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let at = |i: usize| fields.get(i - 3)?.parse::<f64>().ok();
    let user = if children { 16 } else { 14 };
    // USER_HZ is 100 on every Linux this runs on.
    Some([at(user)? / 100.0, at(user + 1)? / 100.0])
}

impl Proc {
    pub(crate) fn pid(&self) -> String {
        self.0.id().to_string()
    }

    /// SIGKILL (what `Child::kill` sends), then reap it.
    pub(crate) fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    pub(crate) fn cpu(&self) -> Option<f64> {
        cpu_seconds(&self.pid(), false)
    }

    fn kernel(&self) -> Option<f64> {
        kernel_seconds(&self.pid(), false)
    }

    /// Resident set size now (VmRSS) and at its peak (VmHWM), in bytes.
    pub(crate) fn rss(&self) -> anyhow::Result<(u64, u64)> {
        let path = format!("/proc/{}/status", self.pid());
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let field = |name: &str| -> anyhow::Result<u64> {
            let kib: u64 = status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("no {name} in {path}"))?;
            Ok(kib * 1024)
        };
        Ok((field("VmRSS:")?, field("VmHWM:")?))
    }

    /// Peak resident set size (VmHWM), in bytes.
    fn peak_rss(&self) -> Option<u64> {
        self.rss().ok().map(|(_, peak)| peak)
    }
}

pub(crate) fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the ferry binary")?;
    let path = exe.with_file_name(name);
    if !path.exists() {
        bail!(
            "{} not found next to ferry; build all binaries (cargo build --release --bins) \
             or, where the bench has one, name it with a flag (e.g. --coordinator-bin)",
            path.display()
        );
    }
    Ok(path)
}

/// Starts the binary `name` that sits next to this `ferry`.
pub(crate) fn spawn_sibling(name: &str, args: &[String], log: &Path) -> anyhow::Result<Proc> {
    spawn(&sibling(name)?, args, log)
}

/// The same with more environment variables (they win over `RUST_LOG=warn`).
pub(crate) fn spawn_sibling_env(
    name: &str,
    args: &[String],
    log: &Path,
    env: &[(&str, String)],
) -> anyhow::Result<Proc> {
    spawn_with(&sibling(name)?, args, log, env)
}

fn spawn(program: &Path, args: &[String], log: &Path) -> anyhow::Result<Proc> {
    spawn_with(program, args, log, &[])
}

/// Starts `program` with its standard error appended to `log` (a process
/// started again keeps one log).
pub(crate) fn spawn_with(
    program: &Path,
    args: &[String],
    log: &Path,
    env: &[(&str, String)],
) -> anyhow::Result<Proc> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let child = Command::new(program)
        .args(args)
        .env("RUST_LOG", "warn")
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    Ok(Proc(child))
}

/// An agent's stores file: each `(store, bucket)` names one bucket of `s3`.
fn stores_file(
    dir: &Path,
    name: &str,
    s3: &S3Server,
    buckets: &[(String, String)],
    ca: Option<&Path>,
) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("stores-{name}.json"));
    let stores: serde_json::Map<String, serde_json::Value> = buckets
        .iter()
        .map(|(store, bucket)| {
            let store_json = json!({
                "s3": {"endpoint": s3.endpoint(), "bucket": bucket, "region": s3.region(),
                       "access_key_id": s3.access_key(), "secret_access_key": s3.secret_key(),
                       "allow_http": ca.is_none(), "ca_cert": ca},
                "prefixes": ["data"]
            });
            (store.clone(), store_json)
        })
        .collect();
    std::fs::write(&path, json!({ "stores": stores }).to_string())?;
    Ok(path)
}

/// Fills `bucket/data/` with `objects` objects totalling `total` bytes, streamed.
async fn generate(s3: &S3Server, bucket: &str, total: u64, objects: u64) -> anyhow::Result<()> {
    let objects = objects.max(1);
    let each = total / objects;
    for i in 0..objects {
        let size = if i + 1 == objects {
            total - each * (objects - 1)
        } else {
            each
        };
        let mut x = (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let pieces = futures::stream::iter((0..size.div_ceil(1 << 20)).map(move |p| {
            let len = (size - p * (1 << 20)).min(1 << 20) as usize;
            let mut v = Vec::with_capacity(len);
            while v.len() < len {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                v.extend_from_slice(&x.to_le_bytes());
            }
            v.truncate(len);
            Ok::<_, std::io::Error>(bytes::Bytes::from(v))
        }));
        s3.put_object_stream(bucket, &format!("data/obj-{i:05}"), pieces)
            .await?;
    }
    Ok(())
}

/// Relays agent a's `src` into agent b's store `target` (one bucket per round).
async fn relay_once(
    transfers: &mut TransfersClient<tonic::transport::Channel>,
    id: &str,
    target: &str,
    b: &RelayBench,
) -> anyhow::Result<(pb::TransferStatus, Duration)> {
    let set = |cluster: &str, store: &str| pb::ObjectSet {
        cluster_id: cluster.into(),
        store: store.into(),
        prefix: "data".into(),
    };
    let started = Instant::now();
    transfers
        .start_transfer(pb::StartTransferRequest {
            transfer_id: id.into(),
            source: Some(set("a", "src")),
            target: Some(set("b", target)),
            chunk_size: b.chunk_size,
            parallelism: b.parallelism,
        })
        .await?;
    loop {
        let s = transfers
            .get_transfer(pb::GetTransferRequest {
                transfer_id: id.into(),
            })
            .await?
            .into_inner();
        if s.state != pb::TransferState::Running as i32 {
            if s.state != pb::TransferState::Succeeded as i32 {
                bail!("transfer {id} failed: {}", s.error);
            }
            return Ok((s, started.elapsed()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn rate(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / d.as_secs_f64()
}

async fn relay(b: RelayBench) -> anyhow::Result<u8> {
    let tmp = tempfile::tempdir()?;
    let dir = b
        .workdir
        .clone()
        .unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let pki_dir = dir.join("pki");
    pki::init(
        &pki_dir,
        &PkiPlan {
            clusters: vec!["a".into(), "b".into()],
            clients: vec!["admin".into()],
            ..PkiPlan::default()
        },
    )?;
    // The endpoints' certificate comes from the bench's CA, which the agents
    // and rclone are told to trust.
    let ca = pki_dir.join("ca.pem");
    let tls = if b.s3_http {
        None
    } else {
        Some(S3Tls::issued_by(&ca, &pki_dir.join("ca-key.pem"))?)
    };
    let ca = tls.is_some().then_some(ca.as_path());
    let endpoint = |name: &str, tls: Option<S3Tls>| {
        let mut c = S3Config::new(
            dir.join(format!("s3-{name}")),
            format!("bench-{name}"),
            format!("bench-secret-{name}"),
        );
        c.tls = tls;
        S3Server::start_with(c)
    };
    let a = endpoint("a", tls.clone()).await?;
    let bs3 = endpoint("b", tls.clone()).await?;
    // Every round writes into buckets of its own and nothing is deleted
    // until the end. Emptying a target between rounds made every round's
    // file creations slower than the last, for both contenders alike: ext4
    // without a journal (this machine's) will not reuse an inode freed in
    // the last minute, five while its inode table is unwritten, and checks
    // each such inode one by one for every file it creates
    // (`recently_deleted()`, `fs/ext4/ialloc.c`).
    let rounds_n = b.rounds.max(1);
    a.create_bucket("src").await?;
    for round in 1..=rounds_n {
        bs3.create_bucket(&format!("dst-{round}")).await?;
        bs3.create_bucket(&format!("dst-rclone-{round}")).await?;
    }
    println!("generating {} in {} objects…", bytes(b.bytes), b.objects);
    generate(&a, "src", b.bytes, b.objects).await?;
    // Plain-HTTP endpoints over the same directories, started after the data
    // exists so their listing indexes see it; rclone writes only a bucket of
    // its own through them.
    let plain = if b.http_baseline {
        let pa = endpoint("a", None).await?;
        let pb = endpoint("b", None).await?;
        for round in 1..=rounds_n {
            pb.create_bucket(&format!("dst-plain-{round}")).await?;
        }
        Some((pa, pb))
    } else {
        None
    };

    // Only to measure these settings (docs/benchmarks.md). With a fixed mmap
    // threshold every relay frame is a fresh mmap faulted in page by page.
    let env: Vec<(&str, String)> = [
        b.mmap_threshold
            .map(|t| ("MALLOC_MMAP_THRESHOLD_", t.to_string())),
        b.workers.map(|w| ("TOKIO_WORKER_THREADS", w.to_string())),
    ]
    .into_iter()
    .flatten()
    .collect();
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let url = format!("https://127.0.0.1:{port}");
    let pki_arg = pki_dir.display().to_string();
    let coordinator = spawn_with(
        &sibling("ferry-coordinator")?,
        &[
            format!("--listen=127.0.0.1:{port}"),
            format!("--pki-dir={pki_arg}"),
            format!("--data-dir={}", dir.join("coordinator").display()),
            "--role=admin=admin".into(),
        ],
        &dir.join("coordinator.log"),
        &env,
    )?;
    let mut agents = vec![];
    let source_buckets = [("src".to_string(), "src".to_string())];
    let target_buckets: Vec<(String, String)> = (1..=rounds_n)
        .map(|r| (format!("dst-{r}"), format!("dst-{r}")))
        .collect();
    for (name, s3, buckets) in [
        ("a", &a, &source_buckets[..]),
        ("b", &bs3, &target_buckets[..]),
    ] {
        let stores = stores_file(&dir, name, s3, buckets, ca)?;
        agents.push(spawn_with(
            &sibling("ferry-agent")?,
            &[
                format!("--cluster-id={name}"),
                format!("--coordinator={url}"),
                format!("--pki-dir={pki_arg}"),
                format!("--stores={}", stores.display()),
                format!(
                    "--state-dir={}",
                    dir.join(format!("agent-{name}")).display()
                ),
                "--backoff-cap=1s".into(),
            ],
            &dir.join(format!("agent-{name}.log")),
            &env,
        )?);
    }
    let paths = TlsPaths::in_dir(&pki_dir, "client-admin");
    let deadline = Instant::now() + Duration::from_secs(20);
    let channel = loop {
        match ferry_common::tls::connect(&url, &paths, None, Duration::from_secs(2)).await {
            Ok(c) => break c,
            Err(e) if Instant::now() > deadline => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let mut fleet = pb::fleet_client::FleetClient::new(channel.clone());
    loop {
        let agents = fleet
            .list_agents(pb::ListAgentsRequest {})
            .await?
            .into_inner()
            .agents;
        if agents
            .iter()
            .filter(|x| x.state == pb::AgentState::Connected as i32)
            .count()
            == 2
        {
            break;
        }
        if Instant::now() > deadline {
            bail!("agents did not connect; see logs in {}", dir.display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut transfers = TransfersClient::new(channel);
    let parallelism = if b.parallelism == 0 { 4 } else { b.parallelism };
    let rclone_bin = which("rclone");
    if rclone_bin.is_none() {
        println!("rclone: not installed (apt-get install rclone); no baseline this run");
    }
    let relay_procs = [&coordinator, &agents[0], &agents[1]];
    // Rounds alternate the relay and rclone, each into fresh buckets, so
    // both see the same machine at about the same time; medians are reported.
    let mut rounds: Vec<Round> = vec![];
    let mut first = None;
    for round in 1..=rounds_n {
        println!("round {round}: relaying through the coordinator…");
        // CPU time of the processes, to see where it goes: the two S3
        // endpoints run in this process.
        let relay_cpu = || -> Vec<Option<f64>> {
            std::iter::once(cpu_seconds("self", false))
                .chain(relay_procs.iter().map(|p| p.cpu()))
                .collect()
        };
        let relay_kernel =
            || -> Vec<Option<f64>> { relay_procs.iter().map(|p| p.kernel()).collect() };
        let cpu_before = relay_cpu();
        let kernel_before = relay_kernel();
        let (status, relay_time) = relay_once(
            &mut transfers,
            &format!("bench-{round}"),
            &format!("dst-{round}"),
            &b,
        )
        .await?;
        let cpu_relay: Vec<Option<f64>> = relay_cpu()
            .iter()
            .zip(&cpu_before)
            .map(|(after, before)| Some((*after)? - (*before)?))
            .collect();
        let kernel_relay: Vec<Option<f64>> = relay_kernel()
            .iter()
            .zip(&kernel_before)
            .map(|(after, before)| Some((*after)? - (*before)?))
            .collect();
        first.get_or_insert(status);
        let mut rclone = None;
        let mut rclone_plain = None;
        if let Some(bin) = &rclone_bin {
            let over = if ca.is_some() { "TLS" } else { "plain HTTP" };
            println!("round {round}: copying directly with rclone over {over}…");
            let bucket = format!("dst-rclone-{round}");
            let to = (bucket.as_str(), ca);
            rclone = Some(rclone_once(bin, &a, &bs3, to, parallelism, b.bytes)?);
            if let Some((pa, pb)) = &plain {
                println!("round {round}: copying directly with rclone over plain HTTP…");
                let bucket = format!("dst-plain-{round}");
                let to = (bucket.as_str(), None);
                rclone_plain = Some(rclone_once(bin, pa, pb, to, parallelism, b.bytes)?);
            }
        }
        let r = Round {
            relay: rate(b.bytes, relay_time),
            cpu_relay,
            kernel_relay,
            rclone,
            rclone_plain,
        };
        println!("round {round}: {}", r.line(b.bytes));
        rounds.push(r);
    }
    // Over the last round's copy, unchanged since.
    let last = format!("dst-{rounds_n}");
    let (again, _) = relay_once(&mut transfers, "bench-again", &last, &b).await?;
    let peaks: Vec<Option<u64>> = std::iter::once(&coordinator)
        .chain(&agents)
        .map(Proc::peak_rss)
        .collect();

    println!();
    println!(
        "data: {} in {} objects; chunk {}; parallelism {parallelism}; {} round(s){}",
        bytes(b.bytes),
        b.objects,
        if b.chunk_size == 0 {
            "8 MiB".to_string()
        } else {
            bytes(b.chunk_size)
        },
        rounds.len(),
        b.workers
            .map(|w| format!("; {w} worker thread(s) per relay process"))
            .unwrap_or_default()
    );
    let s3 = if ca.is_some() {
        "HTTPS (the bench's CA)"
    } else {
        "plain HTTP"
    };
    println!("S3 endpoints: {s3}; relay and rclone use the same ones");
    let gib = b.bytes as f64 / (1u64 << 30) as f64;
    let relay_rate = median(rounds.iter().map(|r| r.relay));
    println!("relay:  {:.1} MiB/s (median)", mib(relay_rate));
    let all = |f: fn(&Round) -> Option<Rclone>| rounds.iter().all(|r| f(r).is_some());
    let tls_word = if ca.is_some() {
        "through TLS"
    } else {
        "over plain HTTP"
    };
    if all(|r| r.rclone) {
        let rclone_rate = median(rounds.iter().filter_map(|r| Some(r.rclone?.rate)));
        println!(
            "rclone: {:.1} MiB/s (median; direct copy {tls_word} between the same endpoints)",
            mib(rclone_rate)
        );
        // The median of each round's ratio: both sides of a ratio ran back to back.
        let ratio = median(rounds.iter().filter_map(|r| Some(r.relay / r.rclone?.rate)));
        println!("ratio: {ratio:.2} (relay / rclone {tls_word})");
    }
    if all(|r| r.rclone_plain) {
        let plain_rate = median(rounds.iter().filter_map(|r| Some(r.rclone_plain?.rate)));
        println!(
            "rclone over plain HTTP: {:.1} MiB/s (median)",
            mib(plain_rate)
        );
        let ratio = median(
            rounds
                .iter()
                .filter_map(|r| Some(r.relay / r.rclone_plain?.rate)),
        );
        println!("ratio against plain-HTTP rclone: {ratio:.2}");
    }
    let m = |i: usize| median(rounds.iter().filter_map(|r| r.cpu_relay[i]));
    println!(
        "cpu relay, s per GiB (median):  S3 endpoints {:.2}, coordinator {:.2}, agent a {:.2}, agent b {:.2}; all {:.2}",
        m(0) / gib,
        m(1) / gib,
        m(2) / gib,
        m(3) / gib,
        median(
            rounds
                .iter()
                .filter_map(|r| r.cpu_relay.iter().copied().sum::<Option<f64>>())
        ) / gib
    );
    // How much of each process's CPU the kernel spent (sockets, copies in
    // and out of them, page faults): a floor no change in user space lowers.
    let share = |i: usize| {
        median(
            rounds
                .iter()
                .filter_map(|r| Some(r.kernel_relay[i]? / r.cpu_relay[i + 1]?)),
        ) * 100.0
    };
    let mut kernel = format!(
        "kernel's share of the cpu (median): coordinator {:.0} %, agent a {:.0} %, agent b {:.0} %",
        share(0),
        share(1),
        share(2)
    );
    if all(|r| r.rclone) {
        let rclone = median(
            rounds
                .iter()
                .filter_map(|r| Some(r.rclone?.kernel_own? / r.rclone?.cpu_own?)),
        );
        kernel.push_str(&format!("; rclone {:.0} %", rclone * 100.0));
    }
    println!("{kernel}");
    let (busiest, per_cpu) = median_busiest(&rounds, gib);
    println!("busiest relay process: {busiest}, {per_cpu:.2} GiB per CPU-second (median)");
    for (name, pick) in [
        (
            "rclone",
            (|r: &Round| r.rclone) as fn(&Round) -> Option<Rclone>,
        ),
        ("rclone over plain HTTP", |r: &Round| r.rclone_plain),
    ] {
        if all(pick) {
            let cpu_s3 = median(rounds.iter().filter_map(|r| pick(r)?.cpu_s3));
            let cpu_own = median(rounds.iter().filter_map(|r| pick(r)?.cpu_own));
            println!(
                "cpu {name}, s per GiB (median): S3 endpoints {:.2}, rclone {:.2}; all {:.2}",
                cpu_s3 / gib,
                cpu_own / gib,
                (cpu_s3 + cpu_own) / gib
            );
        }
    }
    let names = RELAY_PROCS;
    for (name, peak) in names.iter().zip(&peaks) {
        println!("peak RSS {name}: {}", peak.map_or("unknown".into(), bytes));
    }
    println!(
        "re-run over unchanged data: {} relayed ({:.3} % of the data), {} objects skipped",
        bytes(again.bytes_relayed),
        again.bytes_relayed as f64 * 100.0 / b.bytes as f64,
        again.counts.unwrap_or_default().objects_skipped
    );
    let moved = first.and_then(|f| f.counts).unwrap_or_default();
    println!(
        "first run: {} objects, {} moved, {} chunks rejected",
        moved.objects_moved,
        bytes(moved.bytes_moved),
        moved.chunks_rejected
    );
    drop(agents);
    drop(coordinator);
    Ok(crate::exit::OK)
}

/// The relay processes, in the order of `Round::cpu_relay` after the endpoints.
const RELAY_PROCS: [&str; 3] = ["coordinator", "agent a", "agent b"];

/// One round's figures: relay rate, CPU seconds (S3 endpoints, coordinator,
/// agents), and rclone's (through the same endpoints, and over plain HTTP).
struct Round {
    relay: f64,
    cpu_relay: Vec<Option<f64>>,
    /// The kernel's part of the coordinator's and agents' (no endpoints).
    kernel_relay: Vec<Option<f64>>,
    rclone: Option<Rclone>,
    rclone_plain: Option<Rclone>,
}

/// rclone's rate and the CPU seconds of the S3 endpoints and of rclone.
#[derive(Clone, Copy)]
struct Rclone {
    rate: f64,
    cpu_s3: Option<f64>,
    cpu_own: Option<f64>,
    kernel_own: Option<f64>,
}

impl Round {
    /// The relay process that spent the most CPU, and the GiB it moved per
    /// CPU-second.
    fn busiest(&self, gib: f64) -> Option<(&'static str, f64)> {
        let (name, cpu) = RELAY_PROCS
            .iter()
            .zip(&self.cpu_relay[1..])
            .filter_map(|(n, c)| Some((*n, (*c)?)))
            .max_by(|x, y| x.1.total_cmp(&y.1))?;
        Some((name, gib / cpu))
    }

    fn line(&self, total: u64) -> String {
        let gib = total as f64 / (1u64 << 30) as f64;
        let per_gib = |c: &Option<f64>| c.map_or("?".into(), |c| format!("{:.2}", c / gib));
        let mut line = format!(
            "relay {:.1} MiB/s (cpu s/GiB: S3 {}, coordinator {}, agents {} + {}",
            mib(self.relay),
            per_gib(&self.cpu_relay[0]),
            per_gib(&self.cpu_relay[1]),
            per_gib(&self.cpu_relay[2]),
            per_gib(&self.cpu_relay[3])
        );
        if let Some((name, per_cpu)) = self.busiest(gib) {
            line.push_str(&format!("; busiest {name} {per_cpu:.2} GiB/cpu-s"));
        }
        line.push(')');
        for (what, r) in [
            ("rclone", &self.rclone),
            ("plain-HTTP rclone", &self.rclone_plain),
        ] {
            if let Some(r) = r {
                line.push_str(&format!(
                    "; {what} {:.1} MiB/s (cpu s/GiB: S3 {}, rclone {}); ratio {:.2}",
                    mib(r.rate),
                    per_gib(&r.cpu_s3),
                    per_gib(&r.cpu_own),
                    self.relay / r.rate
                ));
            }
        }
        line
    }
}

/// The process busiest in most rounds, and the median of the rounds' GiB
/// per CPU-second of their busiest process.
fn median_busiest(rounds: &[Round], gib: f64) -> (&'static str, f64) {
    let busiest: Vec<(&str, f64)> = rounds.iter().filter_map(|r| r.busiest(gib)).collect();
    let name = RELAY_PROCS
        .iter()
        .max_by_key(|n| busiest.iter().filter(|(b, _)| b == *n).count())
        .copied()
        .unwrap_or("?");
    (name, median(busiest.iter().map(|(_, v)| *v)))
}

fn mib(rate: f64) -> f64 {
    rate / (1 << 20) as f64
}

fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    }
}

/// rclone's direct copy between the endpoints (the S3 endpoints run in this
/// process).
/// `to` is the target bucket and the CA to trust (`None`: plain HTTP).
fn rclone_once(
    rclone: &Path,
    a: &S3Server,
    b: &S3Server,
    to: (&str, Option<&Path>),
    parallelism: u32,
    total: u64,
) -> anyhow::Result<Rclone> {
    let (bucket, ca) = to;
    let remote = |p: &str, s3: &S3Server| {
        vec![
            (format!("RCLONE_CONFIG_{p}_TYPE"), "s3".to_string()),
            (format!("RCLONE_CONFIG_{p}_PROVIDER"), "Other".into()),
            (
                format!("RCLONE_CONFIG_{p}_ENDPOINT"),
                s3.endpoint().to_string(),
            ),
            (
                format!("RCLONE_CONFIG_{p}_ACCESS_KEY_ID"),
                s3.access_key().to_string(),
            ),
            (
                format!("RCLONE_CONFIG_{p}_SECRET_ACCESS_KEY"),
                s3.secret_key().to_string(),
            ),
            (format!("RCLONE_CONFIG_{p}_REGION"), s3.region().to_string()),
            (format!("RCLONE_CONFIG_{p}_FORCE_PATH_STYLE"), "true".into()),
        ]
    };
    let started = Instant::now();
    let cpu_before = (cpu_seconds("self", false), cpu_seconds("self", true));
    let kernel_before = kernel_seconds("self", true);
    let mut cmd = Command::new(rclone);
    cmd.args(["copy", "SRC:src/data"])
        .arg(format!("DST:{bucket}/data"))
        .arg("--transfers")
        .arg(parallelism.to_string());
    if let Some(ca) = ca {
        cmd.arg("--ca-cert").arg(ca);
    }
    let status = cmd
        .args([
            "--s3-upload-concurrency",
            "4",
            "--no-check-dest",
            "--retries",
            "1",
        ])
        .envs(remote("SRC", a).into_iter().chain(remote("DST", b)))
        // rclone 1.60 refuses to start with it set; `--ca-cert` says what to trust.
        .env_remove("AWS_CA_BUNDLE")
        .stdout(Stdio::null())
        .status()
        .context("running rclone")?;
    if !status.success() {
        bail!("rclone copy failed ({status})");
    }
    let elapsed = started.elapsed();
    let cpu = |now: Option<f64>, before: Option<f64>| Some(now? - before?);
    Ok(Rclone {
        rate: rate(total, elapsed),
        cpu_s3: cpu(cpu_seconds("self", false), cpu_before.0),
        cpu_own: cpu(cpu_seconds("self", true), cpu_before.1),
        kernel_own: cpu(kernel_seconds("self", true), kernel_before),
    })
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}
