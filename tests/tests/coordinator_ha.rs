//! Coordinator replicas on one throwaway PostgreSQL (docs/ha.md): the
//! leader SIGKILLed mid-migration and the standby finishing it; a paused old
//! leader that wakes after a takeover and cannot write.
//!
//! Agents and the CLI dial one address, as they would a Kubernetes Service:
//! a forwarder in this test that, like the Service's endpoints, sends each
//! new connection to a replica whose `/readyz` answers 200 — the leader.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ferry_common::pb::{self, fleet_client::FleetClient};
use ferry_common::tls::TlsPaths;
use ferry_coordinator::store::{RECORD_TABLES, Store};
use ferry_sandbox::fixture::Sizes;
use ferry_testkit::pg::TempPostgres;
use ferry_tests::migrate_world::{
    Site, both_agents, bucket_digests, cluster, ended, made_once_and_copied, migrations, request,
    wait_until,
};
use ferry_tests::{Proc, World, bin, eventually, free_port};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const LEASE: Duration = Duration::from_secs(2);
/// A standby takes over at most a lease plus a renewal period after the
/// leader's last renewal; the rest is slack for a loaded machine.
const TAKEOVER_BOUND: Duration = Duration::from_secs(LEASE.as_secs() * 2 + 10);
const MIGRATION_TIMEOUT: Duration = Duration::from_secs(180);

/// One coordinator replica: its process and where it answers.
struct Replica {
    proc: Proc,
    grpc: SocketAddr,
    http: SocketAddr,
}

impl Replica {
    fn start(w: &World, pg: &TempPostgres, db: &str, name: &str) -> anyhow::Result<Self> {
        let grpc: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
        let lease = format!("{}s", LEASE.as_secs());
        let args: Vec<String> = [
            "--listen",
            &grpc.to_string(),
            "--http-listen",
            &http.to_string(),
            "--pki-dir",
            &w.pki.display().to_string(),
            "--data-dir",
            &w.path(&format!("{name}-data")).display().to_string(),
            "--store",
            &pg.url(db),
            "--lease",
            &lease,
            "--heartbeat",
            "300ms",
            "--lost-after",
            "3s",
            "--log-format",
            "json",
            "--role",
            "admin=operator",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let proc = Proc::spawn_with_env(
            name,
            &bin("ferry-coordinator")?,
            &args,
            w.path(&format!("{name}.log")),
            &[("HOSTNAME", name)],
        )?;
        Ok(Self { proc, grpc, http })
    }

    fn url(&self) -> String {
        format!("https://{}", self.grpc)
    }

    /// `/readyz`: `Some((status, body))` when it answers.
    async fn readyz(&self) -> Option<(u16, String)> {
        readyz(self.http).await
    }

    async fn leads(&self) -> bool {
        self.readyz().await.is_some_and(|(code, _)| code == 200)
    }

    fn pid(&self) -> anyhow::Result<u32> {
        self.proc.pid().context("the replica is not running")
    }

    fn signal(&self, sig: &str) -> anyhow::Result<()> {
        let status = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid()?.to_string())
            .status()?;
        anyhow::ensure!(status.success(), "kill -{sig} failed");
        Ok(())
    }

    /// Exited (a zombie until its `Proc` reaps it) or gone.
    fn exited(&self) -> bool {
        let Ok(pid) = self.pid() else { return true };
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z')),
            Err(_) => true,
        }
    }
}

async fn readyz(addr: SocketAddr) -> Option<(u16, String)> {
    let ask = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(b"GET /readyz HTTP/1.0\r\nHost: replica\r\n\r\n")
            .await
            .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).await.ok()?;
        let code = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
        Some((code, body))
    };
    tokio::time::timeout(Duration::from_secs(2), ask)
        .await
        .ok()
        .flatten()
}

/// The one address agents and clients dial, sending each connection to a
/// replica that is ready (leads), as a Service routes on readiness.
struct LeaderAddress {
    stop: CancellationToken,
}

impl LeaderAddress {
    async fn start(
        port: u16,
        replicas: Arc<std::sync::Mutex<Vec<(SocketAddr, SocketAddr)>>>,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let stop = CancellationToken::new();
        let stopped = stop.clone();
        tokio::spawn(async move {
            loop {
                let (mut client, _) = tokio::select! {
                    _ = stopped.cancelled() => return,
                    a = listener.accept() => match a { Ok(a) => a, Err(_) => continue },
                };
                let replicas = replicas.lock().map(|r| r.clone()).unwrap_or_default();
                let conn_stop = stopped.clone();
                tokio::spawn(async move {
                    for (grpc, http) in replicas {
                        if readyz(http).await.is_some_and(|(code, _)| code == 200)
                            && let Ok(mut server) = TcpStream::connect(grpc).await
                        {
                            tokio::select! {
                                _ = conn_stop.cancelled() => {}
                                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                            }
                            return;
                        }
                    }
                    // No leader now: the connection is refused, the caller redials.
                });
            }
        });
        Ok(Self { stop })
    }
}

impl Drop for LeaderAddress {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// `(generation, holder)` of the lease.
fn lease(pg: &TempPostgres, db: &str) -> anyhow::Result<(i64, String)> {
    let row = pg.psql(db, "SELECT generation || '|' || holder FROM ferry_leader")?;
    let (g, holder) = row
        .trim()
        .split_once('|')
        .with_context(|| format!("no lease row: {row:?}"))?;
    Ok((g.parse()?, holder.to_string()))
}

/// Rows in every record table written by `generation` at or after the time
/// the lease was taken from it.
fn rows_written_after_takeover(
    pg: &TempPostgres,
    db: &str,
    generation: i64,
) -> anyhow::Result<i64> {
    let mut total = 0;
    for table in RECORD_TABLES {
        let n = pg.psql(
            db,
            &format!(
                "SELECT count(*) FROM {table} WHERE written_by = {generation} \
                 AND written_at >= (SELECT acquired_at FROM ferry_leader)"
            ),
        )?;
        total += n.trim().parse::<i64>()?;
    }
    Ok(total)
}

/// A standby's answer to any call: UNAVAILABLE, naming that it does not lead.
async fn assert_refuses_as_standby(w: &World, r: &Replica) -> anyhow::Result<()> {
    let (code, body) = r.readyz().await.context("the standby's /readyz")?;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("standby"), "{body}");
    let channel = ferry_common::tls::connect(
        &r.url(),
        &TlsPaths::in_dir(&w.pki, "client-admin"),
        None,
        Duration::from_secs(5),
    )
    .await?;
    let refused = FleetClient::new(channel.clone())
        .list_agents(pb::ListAgentsRequest::default())
        .await
        .err()
        .context("a standby answered a call")?;
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("not the leader"), "{refused:?}");
    let health = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: "ferry.v1.Migrations".into(),
        })
        .await?
        .into_inner();
    assert_eq!(
        health.status,
        tonic_health::pb::health_check_response::ServingStatus::NotServing as i32
    );
    Ok(())
}

async fn wait_leads(r: &Replica, what: &str) -> anyhow::Result<()> {
    eventually(TAKEOVER_BOUND, what, || async {
        r.leads().await.then_some(())
    })
    .await
}

/// The leader is SIGKILLed inside the migration's backup or transfer; the
/// standby takes the lease within the bound, resumes the migration, which
/// finishes and verifies, and no Velero backup or restore was made twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_standby_finishes_a_migration_whose_leader_was_killed() -> anyhow::Result<()> {
    ferry_tests::init_logs();
    let pg = TempPostgres::start()?;
    let db = pg.fresh_database("ferry_ha")?;
    let w = World::new(&["a", "b"], &["admin"])?;
    let mut site = Site::source("a.example.com");
    site.sizes = Some(Sizes {
        objects_per_bucket: 4,
        bytes_per_object: 3 * 1024 * 1024,
        ..Sizes::default()
    });
    let a = cluster(&w, "a", site).await?;
    let b = cluster(&w, "b", Site::target("b.example.com")).await?;
    a.velero_faults().set_item_delay(Duration::from_millis(15));
    b.velero_faults().set_item_delay(Duration::from_millis(20));
    let before_buckets = bucket_digests(&a).await?;

    let mut one = Replica::start(&w, &pg, &db, "coordinator-1")?;
    wait_leads(&one, "replica 1 leading").await?;
    let two = Replica::start(&w, &pg, &db, "coordinator-2")?;
    eventually(Duration::from_secs(20), "replica 2 standing by", || async {
        two.readyz().await.filter(|(code, _)| *code == 503)
    })
    .await?;
    assert_refuses_as_standby(&w, &two).await?;
    let replicas = Arc::new(std::sync::Mutex::new(vec![
        (one.grpc, one.http),
        (two.grpc, two.http),
    ]));
    let _address = LeaderAddress::start(w.port, replicas).await?;

    let (_agent_a, _agent_b) = both_agents(&w, &a, &b).await?;
    migrations(&w, "admin")
        .await?
        .start_migration(request("m1", "a", "b"))
        .await?;
    let mid = wait_until(
        &w,
        "m1",
        MIGRATION_TIMEOUT,
        "the backup or transfer moving",
        |m| {
            m.steps.iter().any(|s| {
                ["backup", "transfer"].contains(&s.name.as_str())
                    && s.state == pb::StepState::Running as i32
                    && s.progress
                        .as_ref()
                        .is_some_and(|p| p.items_done > 0 || p.bytes_done > 0)
            })
        },
    )
    .await?;
    let (first_generation, _) = lease(&pg, &db)?;
    one.proc.kill9()?;
    wait_leads(&two, "replica 2 taking over").await?;
    let (generation, holder) = lease(&pg, &db)?;
    assert_eq!(holder.split('/').next(), Some("coordinator-2"));
    assert!(generation > first_generation);
    assert!(
        two.proc.log_count(&["took the lease"]) == 1,
        "{}",
        two.proc.log_text()
    );

    let m = wait_until(&w, "m1", MIGRATION_TIMEOUT, "the end", ended).await?;
    assert_eq!(
        m.state,
        pb::MigrationState::Succeeded as i32,
        "killed while {:?}: {m:#?}",
        mid.steps
            .iter()
            .find(|s| s.state == pb::StepState::Running as i32)
            .map(|s| &s.name)
    );
    made_once_and_copied(&a, &b, &m, &before_buckets).await
}

/// The leader is paused (SIGSTOP) until the standby has taken the lease,
/// then woken with a call waiting for it that would be audited: nothing it
/// writes lands, and it steps down (exits), while the new leader goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_old_leader_cannot_write_and_steps_down() -> anyhow::Result<()> {
    ferry_tests::init_logs();
    let pg = TempPostgres::start()?;
    let db = pg.fresh_database("ferry_ha")?;
    let w = World::new(&[], &["admin", "intruder"])?;
    let one = Replica::start(&w, &pg, &db, "coordinator-1")?;
    wait_leads(&one, "replica 1 leading").await?;
    let two = Replica::start(&w, &pg, &db, "coordinator-2")?;
    eventually(Duration::from_secs(20), "replica 2 standing by", || async {
        two.readyz().await.filter(|(code, _)| *code == 503)
    })
    .await?;
    let (old, _) = lease(&pg, &db)?;

    one.signal("STOP")?;
    wait_leads(&two, "replica 2 taking over from the paused leader").await?;
    let (new, holder) = lease(&pg, &db)?;
    assert!(
        new > old && holder.starts_with("coordinator-2/"),
        "{new} {holder}"
    );

    // A call to the old leader, waiting in its socket while it is paused: a
    // refused call is audited, a write it must not make.
    let pki = w.pki.clone();
    let url = one.url();
    let call = tokio::spawn(async move {
        let channel = ferry_common::tls::connect(
            &url,
            &TlsPaths::in_dir(&pki, "client-intruder"),
            None,
            Duration::from_secs(20),
        )
        .await?;
        let answer = FleetClient::new(channel)
            .list_agents(pb::ListAgentsRequest::default())
            .await;
        anyhow::Ok(answer.map(|_| ()))
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    one.signal("CONT")?;
    eventually(
        Duration::from_secs(20),
        "the old leader exiting",
        || async { one.exited().then_some(()) },
    )
    .await?;
    let answered = tokio::time::timeout(Duration::from_secs(30), call).await??;
    assert!(
        !matches!(answered, Ok(Ok(()))),
        "the old leader answered a call after the takeover"
    );
    let log = one.proc.log_text();
    assert!(log.contains("deposed"), "{log}");

    // Nothing of the old leader's landed after the takeover, and its
    // refused call left no audit entry.
    assert_eq!(rows_written_after_takeover(&pg, &db, old)?, 0);
    let store = Store::postgres(pg.url(&db).parse()?)?;
    let audit = store.audit_log(None)?;
    assert!(
        audit.iter().all(|e| !e.actor.contains("intruder")),
        "{audit:#?}"
    );
    // The new leader still leads and writes: its own refusal is audited.
    assert!(two.leads().await);
    assert_eq!(lease(&pg, &db)?.0, new);
    let channel = ferry_common::tls::connect(
        &two.url(),
        &TlsPaths::in_dir(&w.pki, "client-intruder"),
        None,
        Duration::from_secs(5),
    )
    .await?;
    let refused = FleetClient::new(channel)
        .list_agents(pb::ListAgentsRequest::default())
        .await
        .err()
        .context("a client without a role was answered")?;
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    let audit = store.audit_log(None)?;
    assert!(
        audit.iter().any(|e| e.actor.contains("intruder")),
        "{audit:#?}"
    );
    Ok(())
}
