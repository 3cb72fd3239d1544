//! The client API for loads. Each start of a load id that has not loaded
//! yet is an *attempt*: recorded, then sent to the agent as a command whose
//! request id is derived from the load id and attempt, so a retried call
//! never makes two commands for one attempt. A load id recorded as loaded
//! answers from the record without reading the upload.
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ferry_common::pb::{
    self, LoadState, command_spec::Kind, load_event, load_upload, loads_server::Loads,
};
use ferry_common::time::unix_ms;
use futures::Stream;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

use super::hub::{Live, LoadHub};
use super::spec::{self, final_event, is_loaded, is_running, record_result};
use crate::auth::{Authorizer, Role};
use crate::background::Background;
use crate::call;
use crate::fleet::Fleet;
use crate::store::Store;

/// Who the fleet records as submitting a load's commands.
const SUBMITTER: &str = "ferry-loads";
/// How often, at most, progress goes to a client as the load's figures move.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);

pub struct LoadsApi {
    inner: Arc<Inner>,
}

struct Inner {
    fleet: Arc<Fleet>,
    hub: Arc<LoadHub>,
    store: Store,
    auth: Arc<Authorizer>,
    /// Where its followers run.
    background: Background,
}

impl LoadsApi {
    /// Also follows every attempt the store says is running, so its outcome
    /// is recorded when the agent reports it after a coordinator restart.
    pub fn new(
        fleet: Arc<Fleet>,
        hub: Arc<LoadHub>,
        store: Store,
        auth: Arc<Authorizer>,
        background: Background,
    ) -> crate::Result<Self> {
        let inner = Arc::new(Inner {
            fleet,
            hub,
            store,
            auth,
            background,
        });
        for l in inner.store.loads()? {
            if is_running(l.state) {
                inner
                    .background
                    .spawn_work(follow(inner.clone(), l, None, None));
            }
        }
        Ok(Self { inner })
    }
}

impl Inner {
    /// Records a new attempt and sends its command. `Ok(Err(status))`: the
    /// load is already in the database; here is its record.
    async fn begin(
        &self,
        spec: pb::LoadSpec,
        by: &str,
        upload: Streaming<pb::LoadUpload>,
    ) -> crate::Result<Result<(pb::LoadStatus, Arc<Live>), pb::LoadStatus>> {
        let id = spec.load_id.clone();
        let prior = self.store.load(&id)?;
        if let Some(done) = prior.as_ref().filter(|p| is_loaded(p.state)) {
            spec::check_same_content(done, &spec)?;
            let mut done = done.clone();
            done.state = LoadState::AlreadyLoaded as i32;
            return Ok(Err(done));
        }
        self.fleet.agent(&spec.cluster_id)?;
        let attempt = prior.map_or(0, |p| p.attempt) + 1;
        let live = self.hub.offer(&id, &spec.cluster_id, attempt, upload)?;
        let mut status = pb::LoadStatus {
            load_id: id.clone(),
            spec: Some(spec.clone()),
            state: LoadState::Running as i32,
            attempt,
            submitted_by: by.to_string(),
            started_at_unix_ms: unix_ms(),
            ..Default::default()
        };
        let submitted = async {
            self.store.put_load(&status)?;
            let command = self
                .fleet
                .submit(
                    &spec.cluster_id,
                    pb::CommandSpec {
                        kind: Some(Kind::Load(pb::LoadCommand {
                            spec: Some(spec.clone()),
                            attempt,
                        })),
                        trace_context: ferry_common::telemetry::current_trace_context(),
                    },
                    &format!("load-{id}-{attempt}"),
                    SUBMITTER,
                )
                .await?;
            status.command_id = command.command_id;
            self.store.put_load(&status)?;
            crate::Result::Ok(())
        }
        .await;
        if let Err(e) = submitted {
            self.hub.remove(&id, &live);
            return Err(e);
        }
        tracing::info!(load = %id, cluster = %spec.cluster_id, attempt, %by, "load started");
        Ok(Ok((status, live)))
    }

    /// The stored status with the live figures of a running attempt.
    fn status(&self, id: &str) -> crate::Result<pb::LoadStatus> {
        let mut l = self
            .store
            .load(id)?
            .ok_or_else(|| crate::Error::UnknownLoad(id.to_string()))?;
        if is_running(l.state) {
            l.progress = Some(self.progress(&l));
        }
        Ok(l)
    }

    fn progress(&self, l: &pb::LoadStatus) -> pb::LoadProgress {
        let total: u64 = l
            .spec
            .as_ref()
            .map_or(0, |s| s.files.iter().map(|f| f.size).sum());
        let live = self.hub.progress(&l.load_id).unwrap_or_default();
        let secs = live.first_chunk.map_or(0.0, |t| t.elapsed().as_secs_f64());
        let rate = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        let bytes_rate = rate(live.bytes_relayed);
        // By rows when the client counted them: the relayed bytes run ahead
        // of what the agent has loaded (its pipe holds the difference).
        let rows_total: u64 = l
            .spec
            .as_ref()
            .map_or(0, |s| s.files.iter().map(|f| f.rows).sum());
        // Each row is read, then written: a plain file's both at once, a
        // mapped file's written after the whole file is read.
        let work_done = live.rows + live.rows_written;
        let rows_rate = rate(live.rows);
        let work_rate = rate(work_done);
        let eta_ms = if rows_total > 0 && work_rate > 0.0 {
            ((2 * rows_total).saturating_sub(work_done) as f64 / work_rate * 1000.0) as u64
        } else if bytes_rate > 0.0 {
            (total.saturating_sub(live.bytes_relayed) as f64 / bytes_rate * 1000.0) as u64
        } else {
            0
        };
        pb::LoadProgress {
            file: live.file,
            rows: live.rows,
            rows_written: live.rows_written,
            bytes_done: live.bytes_relayed,
            bytes_total: total,
            rate_bytes_per_sec: bytes_rate,
            rate_rows_per_sec: rows_rate,
            eta_ms,
            rows_total,
        }
    }
}

/// Waits for an attempt's command, sending progress to `events` if a client
/// is listening (as the load's figures move), and records how it ended —
/// unless a later attempt of the same load has been recorded meanwhile.
async fn follow(
    inner: Arc<Inner>,
    mut status: pb::LoadStatus,
    live: Option<Arc<Live>>,
    events: Option<mpsc::Sender<Result<pb::LoadEvent, Status>>>,
) {
    let id = status.load_id.clone();
    let cluster = status
        .spec
        .as_ref()
        .map(|s| s.cluster_id.clone())
        .unwrap_or_default();
    // Shared by the progress reports and the lost-agent report, which takes it.
    let events = std::sync::Mutex::new(events);
    let ended = if status.command_id.is_empty() {
        // The coordinator stopped between recording the attempt and sending it.
        None
    } else {
        let what = format!("load {id}");
        let sent = call::awaiting(&inner.fleet, &status.command_id, &cluster, &what);
        let output = tokio::select! {
            r = sent.output(&inner.fleet, None, |_| {}) => r,
            never = tell_progress(&inner, &status, &events) => match never {},
            never = watch_lost(&inner, &status, &cluster, &events) => match never {},
        };
        match output {
            // Recorded by the fleet as it ended: the outcome to record here.
            Ok(_) | Err(crate::Error::Command { .. } | crate::Error::Protocol(_)) => {
                match inner.fleet.command(&status.command_id) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        tracing::error!(load = %id, error = %e, "cannot read the load's command");
                        return;
                    }
                }
            }
            // Not ended: a restarted coordinator follows it again.
            Err(e) => {
                tracing::info!(load = %id, error = %e, "stopped following load");
                return;
            }
        }
    };
    match &ended {
        Some(c) => record_result(&mut status, c),
        None => {
            status.state = LoadState::Failed as i32;
            status.error = "the coordinator restarted before the load reached its agent; nothing was loaded, submit it again".into();
            status.finished_at_unix_ms = unix_ms();
        }
    }
    if let Some(live) = &live {
        inner.hub.remove(&id, live);
    }
    match inner.store.load(&id) {
        Ok(Some(current)) if current.attempt == status.attempt => {
            if let Err(e) = inner.store.put_load(&status) {
                tracing::error!(load = %id, error = %e, "cannot record the end of a load");
            }
        }
        Ok(_) => {
            tracing::info!(load = %id, attempt = status.attempt, "a later attempt superseded this one")
        }
        Err(e) => tracing::error!(load = %id, error = %e, "cannot read the load record"),
    }
    inner.hub.changes.tell();
    tracing::info!(load = %id, state = ?status.state(), rows = status.rows, "load attempt ended");
    if let Some(tx) = take_events(&events, true) {
        let _ = tx.send(Ok(final_event(status))).await;
    }
}

type Events = std::sync::Mutex<Option<mpsc::Sender<Result<pb::LoadEvent, Status>>>>;

/// Tells the client the load's figures as they move.
async fn tell_progress(inner: &Inner, status: &pb::LoadStatus, events: &Events) -> Infallible {
    let mut moved = inner.hub.changes.follow(PROGRESS_EVERY);
    loop {
        moved.changed().await;
        if let Some(tx) = take_events(events, false) {
            let event = pb::LoadEvent {
                event: Some(load_event::Event::Progress(inner.progress(status))),
            };
            // A client that went away does not stop the load; it can watch.
            let _ = tx.try_send(Ok(event));
        }
    }
}

/// Reports the load failed once its agent has been away too long (once).
async fn watch_lost(
    inner: &Inner,
    status: &pb::LoadStatus,
    cluster: &str,
    events: &Events,
) -> Infallible {
    if let Some(lost) = inner.fleet.lost(&[cluster.to_string()]).await {
        report_lost(inner, status, &lost, take_events(events, true)).await;
    }
    std::future::pending().await
}

/// The client's event channel, if it is still told anything: `take` ends
/// the telling (the final event goes out through what is returned).
fn take_events(events: &Events, take: bool) -> Option<mpsc::Sender<Result<pb::LoadEvent, Status>>> {
    let mut guard = match events.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    if take { guard.take() } else { guard.clone() }
}

/// Records the attempt failed because its agent has been away longer than
/// `--lost-after`, and tells the client so, rather than have both wait for
/// an agent that may never come back. Following goes on: if it comes back
/// and finishes, its outcome is recorded over this.
async fn report_lost(
    inner: &Inner,
    status: &pb::LoadStatus,
    cluster: &str,
    events: Option<mpsc::Sender<Result<pb::LoadEvent, Status>>>,
) {
    let id = &status.load_id;
    let mut failed = status.clone();
    failed.state = LoadState::Failed as i32;
    failed.error = format!(
        "the agent of cluster {cluster} has been unreachable for more than {}s: the load \
         cannot finish without it and nothing is committed unless it comes back and \
         finishes; see `ferry load get {id}`, and start it again with `--id {id}` once \
         the agent is back",
        inner.fleet.lost_after().as_secs()
    );
    failed.finished_at_unix_ms = unix_ms();
    tracing::warn!(load = %id, %cluster, "load's agent lost; the load is reported failed");
    if let Ok(Some(current)) = inner.store.load(id)
        && current.attempt == failed.attempt
        && let Err(e) = inner.store.put_load(&failed)
    {
        tracing::error!(load = %id, error = %e, "cannot record the lost load");
    }
    inner.hub.changes.tell();
    if let Some(tx) = events {
        let _ = tx.send(Ok(final_event(failed))).await;
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::LoadEvent, Status>> + Send>>;
type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::LoadStatus, Status>> + Send>>;

#[tonic::async_trait]
impl Loads for LoadsApi {
    type StartLoadStream = EventStream;

    #[tracing::instrument(skip_all)]
    async fn start_load(
        &self,
        req: Request<Streaming<pb::LoadUpload>>,
    ) -> Result<Response<EventStream>, Status> {
        // The load's id is in the upload's first message, not read yet.
        let by = self
            .inner
            .auth
            .require(&req, Role::Operator, "load.start", "")?;
        let who = crate::auth::actor(&req);
        let mut upload = req.into_inner();
        let spec = match upload.message().await?.and_then(|m| m.msg) {
            Some(load_upload::Msg::Spec(s)) => spec::check(s)?,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message of a load must be its `spec`",
                ));
            }
        };
        let (tx, rx) = mpsc::channel(16);
        let load_id = spec.load_id.clone();
        let begun = self
            .inner
            .begin(spec, &by, upload)
            .await
            .map_err(Status::from);
        let begun = self
            .inner
            .auth
            .audit_refusal_by(&who, "load.start", &load_id, begun)?;
        match begun {
            Err(done) => {
                tracing::info!(load = %done.load_id, "load already loaded; answering from the record");
                let _ = tx.send(Ok(final_event(done))).await;
            }
            Ok((status, live)) => {
                let accepted = pb::LoadEvent {
                    event: Some(load_event::Event::Accepted(pb::LoadAccepted {
                        load_id: status.load_id.clone(),
                        command_id: status.command_id.clone(),
                        attempt: status.attempt,
                    })),
                };
                let _ = tx.send(Ok(accepted)).await;
                self.inner.background.spawn_work(follow(
                    self.inner.clone(),
                    status,
                    Some(live),
                    Some(tx),
                ));
            }
        }
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn get_load(
        &self,
        req: Request<pb::GetLoadRequest>,
    ) -> Result<Response<pb::LoadStatus>, Status> {
        self.inner
            .auth
            .require(&req, Role::Viewer, "load.get", &req.get_ref().load_id)?;
        Ok(Response::new(self.inner.status(&req.get_ref().load_id)?))
    }

    async fn list_loads(
        &self,
        req: Request<pb::ListLoadsRequest>,
    ) -> Result<Response<pb::ListLoadsResponse>, Status> {
        self.inner
            .auth
            .require(&req, Role::Viewer, "load.list", "")?;
        let mut loads = self.inner.store.loads()?;
        loads.sort_by_key(|l| l.started_at_unix_ms);
        Ok(Response::new(pb::ListLoadsResponse { loads }))
    }

    type WatchLoadStream = WatchStream;

    async fn watch_load(
        &self,
        req: Request<pb::GetLoadRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        self.inner
            .auth
            .require(&req, Role::Viewer, "load.watch", &req.get_ref().load_id)?;
        let id = req.into_inner().load_id;
        // Followed before the first read, so no change or end is missed.
        let moved = self.inner.hub.changes.follow(PROGRESS_EVERY);
        let first = self.inner.status(&id)?;
        let inner = self.inner.clone();
        let stream = futures::stream::unfold(Some((first, moved)), move |next| {
            let inner = inner.clone();
            let id = id.clone();
            async move {
                let (current, mut moved) = next?;
                let following = if is_running(current.state) {
                    moved.changed().await;
                    inner.status(&id).ok().map(|s| (s, moved))
                } else {
                    None
                };
                Some((Ok(current), following))
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
