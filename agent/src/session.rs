//! The agent's session loop: dial out, register, heartbeat, execute, and
//! redial with capped, jittered backoff whenever the link breaks.
use std::sync::Arc;
use std::time::Duration;

use ferry_common::backoff::Backoff;
use ferry_common::http::Readiness;
use ferry_common::pb::{
    self, agent_link_client::AgentLinkClient, agent_message::Msg as Up,
    coordinator_message::Msg as Down,
};
use ferry_common::tls;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::facts::{CAPABILITIES, current};
use crate::ledger::{Admission, Ledger};
use crate::progress::Progress;
use crate::relay::RelayContext;
use crate::{AgentConfig, Error, Result, exec};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the agent until `shutdown` is cancelled, serving `/healthz`,
/// `/readyz` and `/metrics` with `--http-listen`. Ready means registered:
/// an agent without a session can run nothing, and a rollout whose new
/// agent cannot reach the coordinator should stop rather than go on.
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> Result<()> {
    let readiness = Readiness::not_ready("not registered with the coordinator yet");
    let Some(listen) = config.http_listen else {
        return run_sessions(config, shutdown, readiness).await;
    };
    // Its own token: the endpoint stops after the sessions, however they end.
    let stop = CancellationToken::new();
    let http = ferry_common::http::serve(
        listen,
        readiness.clone(),
        ferry_common::metrics::global(),
        stop.clone(),
    )
    .await
    .map_err(|e| Error::Config(format!("--http-listen: {e}")))?;
    let ended = run_sessions(config, shutdown, readiness).await;
    stop.cancel();
    http.stopped().await;
    ended
}

async fn run_sessions(
    config: AgentConfig,
    shutdown: CancellationToken,
    readiness: Readiness,
) -> Result<()> {
    if !ferry_common::identity::valid_name(&config.cluster_id) {
        return Err(Error::Config(format!(
            "cluster id {:?} must be lowercase letters, digits and '-'",
            config.cluster_id
        )));
    }
    let stores = match &config.stores {
        Some(path) => {
            crate::objects::StoresConfig::load(path).map_err(|e| Error::Config(e.to_string()))?
        }
        None => crate::objects::StoresConfig::default(),
    };
    crate::load::check_schemas(&config.load_schemas).map_err(Error::Config)?;
    for db in &config.databases {
        tokio::spawn(crate::load_exec::warn_if_superuser(db.clone()));
    }
    let state_dir = config.state_dir_or_temp();
    let (progress, mut progress_rx) = Progress::channel();
    let ctx = RelayContext::new(config, stores, state_dir, progress);
    let config = ctx.config.clone();
    let ledger = Arc::new(match &config.state_dir {
        Some(dir) => Ledger::open(dir)?,
        None => Ledger::in_memory(),
    });
    let (results_tx, mut results_rx) = mpsc::channel(256);
    let mut backoff = Backoff::new(config.backoff_base, config.backoff_cap);
    loop {
        let ended = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            ended = session(&ctx, &ledger, &results_tx, &mut results_rx, &mut progress_rx, &mut backoff, &readiness) => ended,
        };
        match ended {
            Ok(()) => {
                tracing::info!("session ended");
                readiness.set_not_ready("the session with the coordinator ended; redialling");
            }
            Err(e) if e.is_permanent() => {
                tracing::error!(
                    error = %e,
                    "the session is refused for who this agent or the server is: redialling will not \
                     succeed until this agent's certificate or --cluster-id, the coordinator's \
                     certificate, or its configuration changes; retrying with backoff meanwhile"
                );
                readiness.set_not_ready(format!("refused by the coordinator: {e}"));
            }
            Err(e) => {
                tracing::warn!(error = %e, "session failed");
                readiness.set_not_ready(format!("no session with the coordinator: {e}"));
            }
        }
        let delay = backoff.next_delay();
        tracing::info!(delay_ms = delay.as_millis() as u64, "reconnecting");
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

fn up(msg: Up) -> pb::AgentMessage {
    pb::AgentMessage { msg: Some(msg) }
}

async fn session(
    ctx: &RelayContext,
    ledger: &Arc<Ledger>,
    results_tx: &mpsc::Sender<pb::CommandResult>,
    results_rx: &mut mpsc::Receiver<pb::CommandResult>,
    progress_rx: &mut mpsc::Receiver<pb::CommandProgress>,
    backoff: &mut Backoff,
    readiness: &Readiness,
) -> Result<()> {
    let config = &ctx.config;
    let channel = tls::connect_to(
        &config.coordinator,
        &config.tls_paths(),
        config.coordinator_check(),
        CONNECT_TIMEOUT,
    )
    .await?;
    let (up_tx, up_rx) = mpsc::channel(256);
    let (facts, _, _) = current(config).await;
    let register = pb::Register {
        cluster_id: config.cluster_id.clone(),
        agent_version: env!("CARGO_PKG_VERSION").into(),
        facts: Some(facts),
        capabilities: CAPABILITIES.iter().map(|c| c.to_string()).collect(),
        in_flight: ledger.in_flight(),
        unacked_results: ledger.unacked(),
    };
    up_tx
        .send(up(Up::Register(register)))
        .await
        .map_err(|_| Error::Closed)?;
    let mut down = AgentLinkClient::new(channel)
        .session(tokio_stream::wrappers::ReceiverStream::new(up_rx))
        .await
        .map_err(Error::Refused)?
        .into_inner();
    let registered = match down.message().await.map_err(Error::Refused)? {
        Some(pb::CoordinatorMessage {
            msg: Some(Down::Registered(r)),
        }) => r,
        Some(_) => {
            return Err(Error::Refused(tonic::Status::internal(
                "expected `registered` first",
            )));
        }
        None => return Err(Error::Closed),
    };
    backoff.reset();
    let _connected = crate::metrics::get().registered();
    readiness.set_ready();
    // What was reported while the link was down is stale: drop it.
    while progress_rx.try_recv().is_ok() {}
    tracing::info!(session_id = %registered.session_id, coordinator = %config.coordinator, "registered");
    let mut heartbeat = tokio::time::interval(Duration::from_millis(u64::from(
        registered.heartbeat_interval_ms.max(100),
    )));
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let outgoing = tokio::select! {
            _ = heartbeat.tick() => up(Up::Heartbeat(pb::Heartbeat { sent_at_unix_ms: ferry_common::time::unix_ms() })),
            Some(result) = results_rx.recv() => up(Up::Result(result)),
            Some(progress) = progress_rx.recv() => up(Up::Progress(progress)),
            msg = down.message() => match msg {
                Ok(Some(m)) => match on_message(ctx, ledger, results_tx, m) {
                    Some(reply) => reply,
                    None => continue,
                },
                Ok(None) => return Err(Error::Closed),
                Err(status) => return Err(Error::Stream(status)),
            },
        };
        up_tx.send(outgoing).await.map_err(|_| Error::Closed)?;
    }
}

/// Handles one message from the coordinator; returns the immediate reply, if any.
fn on_message(
    ctx: &RelayContext,
    ledger: &Arc<Ledger>,
    results_tx: &mpsc::Sender<pb::CommandResult>,
    msg: pb::CoordinatorMessage,
) -> Option<pb::AgentMessage> {
    match msg.msg? {
        Down::Command(command) => {
            let id = command.id.clone();
            match ledger.admit(&id) {
                Admission::Execute => {
                    tracing::info!(command_id = %id, "executing command");
                    let (ctx, ledger, results_tx) =
                        (ctx.clone(), ledger.clone(), results_tx.clone());
                    tokio::spawn(async move {
                        let result = exec::execute(&ctx, command).await;
                        if let Err(e) = ledger.finish(&result) {
                            tracing::error!(command_id = %result.id, error = %e, "cannot store result; it is kept in memory only");
                        }
                        tracing::info!(command_id = %result.id, "command finished");
                        let _ = results_tx.send(result).await;
                    });
                    Some(up(Up::Accepted(pb::CommandAccepted { id })))
                }
                Admission::AlreadyRunning => {
                    tracing::info!(command_id = %id, "repeated delivery of a running command; not executed again");
                    Some(up(Up::Accepted(pb::CommandAccepted { id })))
                }
                Admission::AlreadyDone(result) => {
                    tracing::info!(command_id = %id, "repeated delivery of a finished command; answering with its result");
                    Some(up(Up::Result(*result)))
                }
            }
        }
        Down::ResultAck(ack) => {
            ledger.ack(&ack.id);
            None
        }
        Down::Registered(_) => None,
    }
}
