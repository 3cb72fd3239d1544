//! Starting and following transfers. A transfer is two commands — the sink's
//! and the source's — sent through the fleet with request ids derived from
//! the transfer id, so starting the same transfer twice starts nothing new,
//! and a restarted coordinator picks up the transfers it was following.
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ferry_common::pb::{self, command_spec::Kind, transfers_server::Transfers};
use ferry_common::time::unix_ms;
use futures::Stream;
use tokio::sync::broadcast::{self, error::RecvError};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::RelayHub;
use crate::Error;
use crate::auth::{Authorizer, Role};
use crate::background::Background;
use crate::call;
use crate::changes::Paced;
use crate::fleet::{Fleet, new_id};
use crate::store::Store;

/// Who the fleet records as submitting a transfer's commands.
const SUBMITTER: &str = "ferry-transfers";
const MAX_CHUNK: u64 = 64 * 1024 * 1024;
const MIN_CHUNK: u64 = 5 * 1024 * 1024;

#[derive(Clone)]
pub struct TransfersApi {
    inner: Arc<Inner>,
}

struct Inner {
    fleet: Arc<Fleet>,
    hub: Arc<RelayHub>,
    store: Store,
    auth: Arc<Authorizer>,
    /// The id of each transfer whose end was just recorded.
    ended: broadcast::Sender<String>,
    /// Where its followers run.
    background: Background,
}

impl TransfersApi {
    /// Also resumes following every transfer the store says is running.
    pub fn new(
        fleet: Arc<Fleet>,
        hub: Arc<RelayHub>,
        store: Store,
        auth: Arc<Authorizer>,
        background: Background,
    ) -> crate::Result<Self> {
        let inner = Arc::new(Inner {
            fleet,
            hub,
            store,
            auth,
            ended: broadcast::channel(1024).0,
            background,
        });
        for t in inner.store.transfers()? {
            if t.state != pb::TransferState::Running as i32 {
                continue;
            }
            let task = inner.clone();
            inner.background.spawn_work(async move {
                let inner = task;
                // A start cut short between recording the transfer and
                // sending both commands is completed first.
                if t.source_command_id.is_empty() || t.target_command_id.is_empty() {
                    let again = pb::StartTransferRequest {
                        transfer_id: t.transfer_id.clone(),
                        source: t.source.clone(),
                        target: t.target.clone(),
                        chunk_size: 0,
                        parallelism: 0,
                    };
                    if let Err(e) = inner.start(again).await {
                        tracing::error!(transfer = %t.transfer_id, error = %e, "cannot complete an interrupted transfer start");
                        return;
                    }
                }
                follow(inner, t.transfer_id).await;
            });
        }
        Ok(Self { inner })
    }

    /// Starts a transfer (or finds the one with this id) and follows it to
    /// its end; what the API's `StartTransfer` does, for in-process callers.
    pub async fn begin(&self, r: pb::StartTransferRequest) -> crate::Result<pb::TransferStatus> {
        let (status, created) = self.inner.start(r).await?;
        if created {
            self.inner
                .background
                .spawn_work(follow(self.inner.clone(), status.transfer_id.clone()));
        }
        Ok(status)
    }

    /// The stored status with the relay's live figures.
    pub fn status(&self, id: &str) -> crate::Result<pb::TransferStatus> {
        self.inner.status(id)
    }

    /// The ids of transfers as their ends are recorded.
    pub fn subscribe_ended(&self) -> broadcast::Receiver<String> {
        self.inner.ended.subscribe()
    }

    /// Wakes as running transfers' live figures move, at most once per `every`.
    pub fn follow_changes(&self, every: Duration) -> Paced {
        self.inner.hub.changes.follow(every)
    }

    /// Ends a running transfer: both sides are told and stop.
    pub fn abort(&self, id: &str, why: &str) {
        self.inner.hub.abort(id, why.to_string());
    }
}

fn check_set(what: &str, set: &Option<pb::ObjectSet>) -> Result<pb::ObjectSet, Status> {
    let set = set
        .clone()
        .ok_or_else(|| Status::invalid_argument(format!("`{what}` is required")))?;
    if set.cluster_id.is_empty() || set.store.is_empty() {
        return Err(Status::invalid_argument(format!(
            "`{what}` needs a cluster id and a store name"
        )));
    }
    Ok(set)
}

impl Inner {
    /// The transfer with this id, and whether this call created it.
    async fn start(
        &self,
        r: pb::StartTransferRequest,
    ) -> crate::Result<(pb::TransferStatus, bool)> {
        let id = if r.transfer_id.is_empty() {
            new_id()
        } else {
            r.transfer_id.clone()
        };
        if !ferry_common::identity::valid_name(&id) {
            return Err(crate::Error::Invalid(format!(
                "transfer id {id:?} must be lowercase letters, digits and '-'"
            )));
        }
        let existing = self.store.transfer(&id)?;
        let complete = existing
            .as_ref()
            .is_some_and(|t| !t.source_command_id.is_empty() && !t.target_command_id.is_empty());
        if let Some(t) = existing.clone().filter(|_| complete) {
            return Ok((t, false));
        }
        // New, or recorded by a start that a crash cut short before both
        // commands were sent: (re)send them; the fleet answers a request id
        // it has seen with the command it already made.
        let (source, target) = match &existing {
            Some(t) => (
                check_set("source", &t.source)
                    .map_err(|s| crate::Error::Invalid(s.message().into()))?,
                check_set("target", &t.target)
                    .map_err(|s| crate::Error::Invalid(s.message().into()))?,
            ),
            None => (
                check_set("source", &r.source)
                    .map_err(|s| crate::Error::Invalid(s.message().into()))?,
                check_set("target", &r.target)
                    .map_err(|s| crate::Error::Invalid(s.message().into()))?,
            ),
        };
        if r.chunk_size != 0 && !(MIN_CHUNK..=MAX_CHUNK).contains(&r.chunk_size) {
            return Err(crate::Error::Invalid(format!(
                "chunk size {} is outside {MIN_CHUNK}..={MAX_CHUNK} (S3 parts are at least 5 MiB)",
                r.chunk_size
            )));
        }
        // Recorded first: the agents' relay streams are admitted against this record.
        let mut status = match existing {
            Some(t) => t,
            None => {
                let t = pb::TransferStatus {
                    transfer_id: id.clone(),
                    source: Some(source.clone()),
                    target: Some(target.clone()),
                    state: pb::TransferState::Running as i32,
                    started_at_unix_ms: unix_ms(),
                    ..Default::default()
                };
                self.store.put_transfer(&t)?;
                t
            }
        };
        let sink = self
            .fleet
            .submit(
                &target.cluster_id,
                pb::CommandSpec {
                    kind: Some(Kind::RelaySink(pb::RelaySinkCommand {
                        job_id: id.clone(),
                        store: target.store.clone(),
                        prefix: target.prefix.clone(),
                    })),
                    trace_context: ferry_common::telemetry::current_trace_context(),
                },
                &format!("transfer-{id}-sink"),
                SUBMITTER,
            )
            .await?;
        let src = self
            .fleet
            .submit(
                &source.cluster_id,
                pb::CommandSpec {
                    kind: Some(Kind::RelaySource(pb::RelaySourceCommand {
                        job_id: id.clone(),
                        store: source.store.clone(),
                        prefix: source.prefix.clone(),
                        chunk_size: r.chunk_size,
                        parallelism: r.parallelism,
                    })),
                    trace_context: ferry_common::telemetry::current_trace_context(),
                },
                &format!("transfer-{id}-source"),
                SUBMITTER,
            )
            .await?;
        status.target_command_id = sink.command_id;
        status.source_command_id = src.command_id;
        self.store.put_transfer(&status)?;
        tracing::info!(transfer = %id, from = %source.cluster_id, to = %target.cluster_id, "transfer started");
        Ok((status, true))
    }

    /// The stored status with the live figures of the relay.
    fn status(&self, id: &str) -> crate::Result<pb::TransferStatus> {
        let mut t = self
            .store
            .transfer(id)?
            .ok_or_else(|| Error::UnknownTransfer(id.to_string()))?;
        if let Some(p) = self.hub.progress(id) {
            t.bytes_relayed = p.bytes_relayed;
            t.rate_bytes_per_sec = p.rate();
            if t.state == pb::TransferState::Running as i32 {
                t.eta_ms = p.eta_ms();
                let mut counts = p.counts;
                counts.bytes_total = t
                    .counts
                    .map_or(0, |c| c.bytes_total)
                    .max(counts.bytes_total);
                t.counts = Some(p.done.unwrap_or(counts));
            }
        }
        Ok(t)
    }
}

/// Waits for one side's report; a failure is passed on to the other side.
async fn finish(
    inner: &Inner,
    transfer: &str,
    side: Side,
    set: Option<&pb::ObjectSet>,
    command: &str,
) -> crate::Result<pb::RelayOutput> {
    let cluster = set.map(|s| s.cluster_id.as_str()).unwrap_or_default();
    let what = format!("the {} of transfer {transfer}", side.name());
    let sent = call::awaiting(&inner.fleet, command, cluster, &what);
    match sent.output(&inner.fleet, None, |_| {}).await {
        Ok(pb::command_output::Kind::Relay(out)) => {
            // The sink verified and committed everything: the source may
            // end too, even if the sink's report reached a coordinator that
            // died.
            if side == Side::Sink {
                inner.hub.finish_source(transfer, out.counts);
            }
            Ok(out)
        }
        Ok(_) => Err(Error::Protocol(format!(
            "the agent of {cluster} answered {what} with no relay report"
        ))),
        Err(e) => {
            if let Error::Command { message, .. } = &e {
                inner
                    .hub
                    .abort(transfer, format!("the other side failed: {message}"));
            }
            Err(e)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Source,
    Sink,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Source => "source",
            Side::Sink => "target",
        }
    }
}

/// Records a running transfer as failed, saying why, once one of its agents
/// has been away longer than the coordinator's `--lost-after`, so a client
/// following it is not left waiting on an agent that may never return. The
/// transfer's own end, if its agents come back and finish, is recorded over
/// this. Woken by the fleet's session changes, not by looking again.
async fn report_lost_agent(inner: Arc<Inner>, t: pb::TransferStatus) {
    let clusters: Vec<String> = [&t.source, &t.target]
        .into_iter()
        .flatten()
        .map(|s| s.cluster_id.clone())
        .collect();
    let Some(cluster) = inner.fleet.lost(&clusters).await else {
        return;
    };
    let lost_after = inner.fleet.lost_after();
    let Ok(Some(mut current)) = inner.store.transfer(&t.transfer_id) else {
        return;
    };
    if current.state() != pb::TransferState::Running {
        return;
    }
    current.set_state(pb::TransferState::Failed);
    current.error = format!(
        "the agent of cluster {cluster} has been unreachable for more than {}s: the \
         transfer cannot go on without it; what was verified is kept, and the transfer \
         resumes from there if it comes back (see `ferry transfer get {}`)",
        lost_after.as_secs(),
        t.transfer_id
    );
    current.finished_at_unix_ms = unix_ms();
    tracing::warn!(transfer = %t.transfer_id, %cluster, "transfer's agent lost; reported failed");
    if let Err(e) = inner.store.put_transfer(&current) {
        tracing::error!(transfer = %t.transfer_id, error = %e, "cannot record the lost transfer");
    }
    let _ = inner.ended.send(t.transfer_id.clone());
}

/// Waits for both commands of a transfer and records how it ended.
async fn follow(inner: Arc<Inner>, id: String) {
    let t = match inner.store.transfer(&id) {
        Ok(Some(t)) => t,
        Ok(None) => {
            tracing::error!(transfer = %id, "cannot follow transfer: it is not recorded");
            return;
        }
        Err(e) => {
            tracing::error!(transfer = %id, error = %e, "cannot follow transfer");
            return;
        }
    };
    // Both sides run at once; when one fails the other is told, so it ends too.
    // The watchdog runs beside them in this task: it ends once it has told
    // the hub an agent is lost (both sides then end too), or with them.
    let (target, source) = {
        let watchdog = report_lost_agent(inner.clone(), t.clone());
        tokio::pin!(watchdog);
        let both = async {
            tokio::join!(
                finish(
                    &inner,
                    &id,
                    Side::Sink,
                    t.target.as_ref(),
                    &t.target_command_id
                ),
                finish(
                    &inner,
                    &id,
                    Side::Source,
                    t.source.as_ref(),
                    &t.source_command_id
                ),
            )
        };
        tokio::pin!(both);
        let mut watching = true;
        loop {
            tokio::select! {
                r = &mut both => break r,
                () = &mut watchdog, if watching => watching = false,
            }
        }
    };
    let mut t = t;
    let mut errors = vec![];
    for (side, result) in [(Side::Sink, target), (Side::Source, source)] {
        match result {
            Ok(out) => {
                if side == Side::Sink {
                    t.counts = out.counts;
                }
            }
            Err(Error::Command { message, .. }) => {
                errors.push(format!("{}: {message}", side.name()))
            }
            Err(Error::Protocol(_)) => errors.push(format!("{}: unexpected result", side.name())),
            // Not ended: a restarted coordinator follows it again.
            Err(e) => {
                tracing::error!(transfer = %id, error = %e, "cannot follow transfer");
                return;
            }
        }
    }
    if let Some(p) = inner.hub.progress(&id) {
        t.bytes_relayed = p.bytes_relayed;
    }
    t.set_state(if errors.is_empty() {
        pb::TransferState::Succeeded
    } else {
        pb::TransferState::Failed
    });
    t.error = errors.join("; ");
    t.finished_at_unix_ms = unix_ms();
    if let Err(e) = inner.store.put_transfer(&t) {
        tracing::error!(transfer = %id, error = %e, "cannot record the end of a transfer");
    }
    let _ = inner.ended.send(id.clone());
    tracing::info!(transfer = %id, state = ?t.state(), "transfer ended");
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::TransferStatus, Status>> + Send>>;

/// How often, at most, `WatchTransfer` sends a running transfer's figures.
const WATCH_EVERY: Duration = Duration::from_millis(500);

/// One `WatchTransfer` call: woken by the relay's figures moving and by
/// transfers ending.
struct Watch {
    ended: broadcast::Receiver<String>,
    moved: Paced,
    inner: Arc<Inner>,
    id: String,
}

impl Watch {
    /// The transfer's status once it changed or ended; `None` when the
    /// coordinator stops or the record cannot be read.
    async fn next(&mut self) -> Option<pb::TransferStatus> {
        loop {
            tokio::select! {
                () = self.moved.changed() => {}
                e = self.ended.recv() => match e {
                    Ok(id) if id != self.id => continue,
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return None,
                },
            }
            return self.inner.status(&self.id).ok();
        }
    }
}

#[tonic::async_trait]
impl Transfers for TransfersApi {
    #[tracing::instrument(skip_all, fields(transfer = %req.get_ref().transfer_id))]
    async fn start_transfer(
        &self,
        req: Request<pb::StartTransferRequest>,
    ) -> Result<Response<pb::TransferStatus>, Status> {
        let id = req.get_ref().transfer_id.clone();
        self.inner
            .auth
            .require(&req, Role::Operator, "transfer.start", &id)?;
        // The agents' source and sink commands continue the caller's trace.
        let span = tracing::info_span!(
            "call",
            otel.name = "transfer.start",
            transfer = %req.get_ref().transfer_id,
        );
        ferry_common::telemetry::continue_call(&span, req.metadata());
        Ok(Response::new(
            self.begin(req.into_inner()).instrument(span).await?,
        ))
    }

    async fn get_transfer(
        &self,
        req: Request<pb::GetTransferRequest>,
    ) -> Result<Response<pb::TransferStatus>, Status> {
        self.inner.auth.require(
            &req,
            Role::Viewer,
            "transfer.get",
            &req.get_ref().transfer_id,
        )?;
        Ok(Response::new(
            self.inner.status(&req.get_ref().transfer_id)?,
        ))
    }

    type WatchTransferStream = WatchStream;

    async fn watch_transfer(
        &self,
        req: Request<pb::GetTransferRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        self.inner.auth.require(
            &req,
            Role::Viewer,
            "transfer.watch",
            &req.get_ref().transfer_id,
        )?;
        let id = req.into_inner().transfer_id;
        // Subscribed before the first read, so no change or end is missed.
        let watch = Watch {
            ended: self.inner.ended.subscribe(),
            moved: self.inner.hub.changes.follow(WATCH_EVERY),
            inner: self.inner.clone(),
            id,
        };
        let first = watch.inner.status(&watch.id)?;
        let stream = futures::stream::unfold(Some((first, watch)), |next| async move {
            let (current, mut watch) = next?;
            let following = if current.state() == pb::TransferState::Running {
                watch.next().await.map(|s| (s, watch))
            } else {
                None
            };
            Some((Ok(current), following))
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
