//! Pairs the source and sink streams of a transfer and pipes messages between
//! them. Each direction goes through a small bounded channel: when the sink
//! (or its store) is slow, the coordinator stops reading the source, and
//! HTTP/2 flow control stops the source. The hub keeps no state a restart
//! could lose; a re-paired transfer resumes from the sink's durable state.
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ferry_common::Identity;
use ferry_common::pb::{self, relay_server::Relay, sink_down, sink_up, source_down, source_up};
use futures::Stream;
use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status, Streaming};

use crate::auth::peer;
use crate::background::Background;
use crate::changes::Changes;
use crate::store::Store;

/// Messages buffered per direction: chunks cross as frames of at most ~1 MiB,
/// so a few MiB per transfer whatever the chunk and object sizes.
const PIPE_DEPTH: usize = 4;
/// Relay streams one agent may hold open at once (a migration runs a source
/// or a sink per transfer, about a dozen): what bounds the coordinator's
/// memory for an agent's streams, with the message cap.
pub const MAX_STREAMS_PER_AGENT: usize = 32;
/// A stream must say which transfer it is for within this.
const HELLO_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// One open relay stream of an agent; counted until dropped.
struct StreamPermit {
    open: Arc<Mutex<HashMap<String, usize>>>,
    cluster: String,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut open = lock(&self.open);
        if let Some(n) = open.get_mut(&self.cluster) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.cluster);
            }
        }
    }
}

/// Faults for tests: set through the library, never from the command line,
/// and compiled only with the `testing` feature (the tests crate's).
#[cfg(feature = "testing")]
#[derive(Default)]
pub struct RelayFaults {
    /// Flip a byte in each of the next N chunks relayed (in a chunk's final
    /// frame), one chunk per object: after a rejection the sink drops the
    /// object's later chunks still in flight unverified, as stale, so a
    /// second corrupted chunk of the same object might never be seen.
    pub corrupt_chunks: std::sync::atomic::AtomicU32,
    /// The objects one of whose chunks was corrupted.
    corrupted: Mutex<std::collections::HashSet<String>>,
}

struct Peer<T> {
    conn: u64,
    tx: mpsc::Sender<Result<T, Status>>,
}

impl<T> Clone for Peer<T> {
    fn clone(&self) -> Self {
        Self {
            conn: self.conn,
            tx: self.tx.clone(),
        }
    }
}

/// Live figures of one transfer, for progress reports.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub bytes_relayed: u64,
    pub counts: pb::TransferCounts,
    /// Bytes the sink asked for in its latest comparison, and relayed since.
    pub need_bytes: u64,
    pub relayed_since_need: u64,
    pub first_chunk: Option<Instant>,
    pub done: Option<pb::TransferCounts>,
}

impl Progress {
    pub fn rate(&self) -> f64 {
        match self.first_chunk {
            Some(t) if t.elapsed().as_secs_f64() > 0.0 => {
                self.bytes_relayed as f64 / t.elapsed().as_secs_f64()
            }
            _ => 0.0,
        }
    }

    pub fn eta_ms(&self) -> u64 {
        let rate = self.rate();
        let left = self.need_bytes.saturating_sub(self.relayed_since_need);
        if rate <= 0.0 {
            0
        } else {
            (left as f64 / rate * 1000.0) as u64
        }
    }
}

struct Job {
    source: watch::Sender<Option<Peer<pb::SourceDown>>>,
    sink: watch::Sender<Option<Peer<pb::SinkDown>>>,
    /// Whether the connected sink has received anything from the source.
    sink_fed: AtomicBool,
    /// The sink has everything (with its counts): a source that connects
    /// from now on is told so at once, however its reconnects and the
    /// sink's end interleave — a `finished` sent into a connection that was
    /// already dead is not lost with it.
    finished: Mutex<Option<Option<pb::TransferCounts>>>,
    /// Why the transfer was ended (a side's command failed, or it was
    /// cancelled): each side's stream, the one open now and any that
    /// connects later, is told so at once. Held rather than delivered once:
    /// the stream open at the time may be one the agent has already left.
    failed: Mutex<Option<pb::RelayFailure>>,
    progress: Mutex<Progress>,
}

pub struct RelayHub {
    store: Store,
    jobs: Mutex<HashMap<String, Arc<Job>>>,
    /// Open relay streams per cluster.
    open: Arc<Mutex<HashMap<String, usize>>>,
    next_conn: AtomicU64,
    /// Where its stream tasks run (stopped when the drain starts).
    background: Background,
    /// Told as any transfer's live figures move.
    pub changes: Changes,
    #[cfg(feature = "testing")]
    pub faults: RelayFaults,
}

type Pinned<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Side {
    Source,
    Sink,
}

impl RelayHub {
    pub fn new(store: Store, background: Background) -> Self {
        Self {
            store,
            jobs: Mutex::new(HashMap::new()),
            open: Arc::default(),
            next_conn: AtomicU64::new(1),
            background,
            changes: Changes::default(),
            #[cfg(feature = "testing")]
            faults: RelayFaults::default(),
        }
    }

    fn job(&self, id: &str) -> Arc<Job> {
        lock(&self.jobs)
            .entry(id.to_string())
            .or_insert_with(|| {
                Arc::new(Job {
                    source: watch::channel(None).0,
                    sink: watch::channel(None).0,
                    sink_fed: AtomicBool::new(false),
                    finished: Mutex::new(None),
                    failed: Mutex::new(None),
                    progress: Mutex::new(Progress::default()),
                })
            })
            .clone()
    }

    pub fn progress(&self, id: &str) -> Option<Progress> {
        lock(&self.jobs).get(id).map(|j| lock(&j.progress).clone())
    }

    /// Audits and logs a refused stream, and hands the refusal back.
    fn refuse(&self, who: &str, action: &str, object: &str, status: Status) -> Status {
        tracing::warn!(%who, %action, %object, reason = %status.message(), "call refused");
        let entry = pb::AuditEntry {
            actor: who.to_string(),
            action: format!("{action}-denied"),
            object: object.to_string(),
            detail: status.message().to_string(),
            ..Default::default()
        };
        if let Err(e) = self.store.audit(entry) {
            tracing::error!(error = %e, %who, %action, "cannot append a refusal to the audit log");
        }
        status
    }

    /// Counts a stream of `cluster`, refusing one above the bound.
    fn permit(&self, cluster: &str) -> Result<StreamPermit, Status> {
        let mut open = lock(&self.open);
        let n = open.entry(cluster.to_string()).or_default();
        if *n >= MAX_STREAMS_PER_AGENT {
            return Err(Status::resource_exhausted(format!(
                "cluster {cluster} already holds {MAX_STREAMS_PER_AGENT} relay streams, the most one agent may; \
                 let some transfers finish"
            )));
        }
        *n += 1;
        Ok(StreamPermit {
            open: self.open.clone(),
            cluster: cluster.to_string(),
        })
    }

    /// Checks the first message and that the caller is this side's cluster.
    /// The permit counts the stream until its inbound side is done.
    async fn admit<T: prost::Message + Default>(
        &self,
        req: Request<Streaming<T>>,
        side: Side,
        hello: impl Fn(T) -> Option<pb::RelayHello>,
    ) -> Result<(String, Streaming<T>, StreamPermit), Status> {
        let action = if side == Side::Source {
            "relay.source"
        } else {
            "relay.sink"
        };
        let who = crate::auth::actor(&req);
        let cluster = match peer(&req)?.identity {
            Identity::Agent(c) => c,
            other => {
                return Err(self.refuse(
                    &who,
                    action,
                    "",
                    crate::error::denied(format!("{other} may not open a relay stream")),
                ));
            }
        };
        let permit = self
            .permit(&cluster)
            .map_err(|s| self.refuse(&who, action, "", s))?;
        let mut inbound = req.into_inner();
        let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
            .await
            .map_err(|_| {
                Status::deadline_exceeded(format!(
                    "no relay `hello` within {}s",
                    HELLO_TIMEOUT.as_secs()
                ))
            })??
            .and_then(hello)
            .ok_or_else(|| Status::invalid_argument("the first relay message must be `hello`"))?;
        let job_id = ferry_common::limits::shorten(&first.job_id);
        let transfer = self
            .store
            .transfer(&first.job_id)?
            .ok_or_else(|| Status::not_found(format!("no transfer {job_id}")))?;
        let expected = match side {
            Side::Source => transfer.source.map(|s| s.cluster_id),
            Side::Sink => transfer.target.map(|t| t.cluster_id),
        };
        if expected.as_deref() != Some(cluster.as_str()) {
            return Err(self.refuse(
                &who,
                action,
                &job_id,
                crate::error::denied(format!(
                    "cluster {cluster} is not the {} of transfer {job_id}",
                    if side == Side::Source {
                        "source"
                    } else {
                        "target"
                    },
                )),
            ));
        }
        Ok((first.job_id, inbound, permit))
    }
}

/// Sends `msg` to whichever peer is current, waiting for one to connect.
async fn deliver<T>(slot: &watch::Sender<Option<Peer<T>>>, mut msg: T) -> Option<u64> {
    let mut rx = slot.subscribe();
    loop {
        let peer = rx.wait_for(|p| p.is_some()).await.ok()?.clone()?;
        match peer.tx.send(Ok(msg)).await {
            Ok(()) => return Some(peer.conn),
            // The message comes back with the error: no copy per delivery.
            Err(mpsc::error::SendError(back)) => msg = back.ok()?,
        }
        // That peer is gone: forget it (unless already replaced) and wait for the next.
        slot.send_if_modified(|p| {
            if p.as_ref().is_some_and(|x| x.conn == peer.conn) {
                *p = None;
                true
            } else {
                false
            }
        });
    }
}

fn clear<T>(slot: &watch::Sender<Option<Peer<T>>>, conn: u64) {
    slot.send_if_modified(|p| {
        if p.as_ref().is_some_and(|x| x.conn == conn) {
            *p = None;
            true
        } else {
            false
        }
    });
}

/// The gRPC face of the hub.
pub struct RelayService {
    pub hub: Arc<RelayHub>,
}

#[tonic::async_trait]
impl Relay for RelayService {
    type SourceStream = Pinned<pb::SourceDown>;
    type SinkStream = Pinned<pb::SinkDown>;

    async fn source(
        &self,
        req: Request<Streaming<pb::SourceUp>>,
    ) -> Result<Response<Self::SourceStream>, Status> {
        let (job_id, mut inbound, permit) = self
            .hub
            .admit(req, Side::Source, |m: pb::SourceUp| match m.msg {
                Some(source_up::Msg::Hello(h)) => Some(h),
                _ => None,
            })
            .await?;
        let job = self.hub.job(&job_id);
        let (conn, rx) = self.hub.connect_source(&job, &job_id);
        let hub = self.hub.clone();
        self.hub.background.spawn_stream(async move {
            let _permit = permit;
            while let Ok(Some(msg)) = inbound.message().await {
                let down = match msg.msg {
                    Some(source_up::Msg::ManifestBegin(m)) => sink_down::Msg::ManifestBegin(m),
                    Some(source_up::Msg::Manifest(m)) => sink_down::Msg::Manifest(m),
                    Some(source_up::Msg::ManifestEnd(m)) => sink_down::Msg::ManifestEnd(m),
                    Some(source_up::Msg::Chunk(mut c)) => {
                        hub.count_chunk(&job, &mut c);
                        sink_down::Msg::Chunk(c)
                    }
                    Some(source_up::Msg::Failure(f)) => {
                        tracing::warn!(transfer = %job_id, message = %f.message, "relay source failed");
                        sink_down::Msg::Failure(f)
                    }
                    Some(source_up::Msg::Hello(_)) | None => continue,
                };
                // A sink that has everything is gone for good: waiting for
                // it would hold this stream forever.
                if lock(&job.finished).is_some() {
                    continue;
                }
                if deliver(&job.sink, pb::SinkDown { msg: Some(down) })
                    .await
                    .is_some()
                {
                    job.sink_fed.store(true, Ordering::Relaxed);
                }
            }
            clear(&job.source, conn);
            tracing::info!(transfer = %job_id, conn, "relay source disconnected");
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn sink(
        &self,
        req: Request<Streaming<pb::SinkUp>>,
    ) -> Result<Response<Self::SinkStream>, Status> {
        let (job_id, mut inbound, permit) = self
            .hub
            .admit(req, Side::Sink, |m: pb::SinkUp| match m.msg {
                Some(sink_up::Msg::Hello(h)) => Some(h),
                _ => None,
            })
            .await?;
        let job = self.hub.job(&job_id);
        let (conn, rx) = self.hub.connect_sink(&job);
        // A source that already fed an earlier sink must start over for this one.
        if job.sink_fed.swap(false, Ordering::Relaxed) {
            let source = job.source.borrow().clone();
            if let Some(source) = source {
                let restart = pb::SourceDown {
                    msg: Some(source_down::Msg::Restart(pb::RelayRestart {
                        reason: "the sink reconnected".into(),
                    })),
                };
                let _ = source.tx.send(Ok(restart)).await;
            }
        }
        tracing::info!(transfer = %job_id, conn, "relay sink connected");
        let hub = self.hub.clone();
        self.hub.background.spawn_stream(async move {
            let _permit = permit;
            while let Ok(Some(msg)) = inbound.message().await {
                let up = match msg.msg {
                    Some(sink_up::Msg::Need(n)) => source_down::Msg::Send(n),
                    Some(sink_up::Msg::NeedEnd(n)) => {
                        let mut p = lock(&job.progress);
                        p.need_bytes = n.bytes;
                        p.relayed_since_need = 0;
                        p.counts.objects_total = n.objects + n.skipped_objects;
                        p.counts.objects_skipped = n.skipped_objects;
                        p.counts.bytes_skipped = n.skipped_bytes;
                        drop(p);
                        hub.changes.tell();
                        continue;
                    }
                    Some(sink_up::Msg::Committed(c)) => {
                        let mut p = lock(&job.progress);
                        p.counts.objects_moved += 1;
                        p.counts.bytes_moved += c.size;
                        drop(p);
                        hub.changes.tell();
                        continue;
                    }
                    Some(sink_up::Msg::Done(d)) => {
                        tracing::info!(transfer = %job_id, "relay sink has everything");
                        lock(&job.progress).done = d.counts;
                        hub.changes.tell();
                        *lock(&job.finished) = Some(d.counts);
                        let finished =
                            source_down::Msg::Finished(pb::RelayFinished { counts: d.counts });
                        deliver(
                            &job.source,
                            pb::SourceDown {
                                msg: Some(finished),
                            },
                        )
                        .await;
                        // Ending the sink's stream tells it its report arrived.
                        clear(&job.sink, conn);
                        continue;
                    }
                    Some(sink_up::Msg::Failure(f)) => {
                        tracing::warn!(transfer = %job_id, message = %f.message, "relay sink failed");
                        source_down::Msg::Failure(f)
                    }
                    Some(sink_up::Msg::Hello(_)) | None => continue,
                };
                deliver(&job.source, pb::SourceDown { msg: Some(up) }).await;
            }
            clear(&job.sink, conn);
            tracing::info!(transfer = %job_id, conn, "relay sink disconnected");
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

impl RelayHub {
    /// Tells the source that the sink has everything, so its command ends —
    /// also when the sink's report reached an earlier coordinator that died
    /// before passing it on (the source gets it once it reconnects).
    pub fn finish_source(&self, job_id: &str, counts: Option<pb::TransferCounts>) {
        let job = self.job(job_id);
        *lock(&job.finished) = Some(counts);
        self.background.spawn_stream(async move {
            let finished = source_down::Msg::Finished(pb::RelayFinished { counts });
            deliver(
                &job.source,
                pb::SourceDown {
                    msg: Some(finished),
                },
            )
            .await;
        });
    }

    /// Makes a new stream the source's current one, and tells it at once
    /// whether the transfer is already over (the sink has everything, or it
    /// was ended).
    fn connect_source(
        &self,
        job: &Job,
        job_id: &str,
    ) -> (u64, mpsc::Receiver<Result<pb::SourceDown, Status>>) {
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(PIPE_DEPTH);
        job.source.send_replace(Some(Peer {
            conn,
            tx: tx.clone(),
        }));
        tracing::info!(transfer = %job_id, conn, "relay source connected");
        // A fresh channel has room for both.
        let done = *lock(&job.finished);
        if let Some(counts) = done {
            tracing::info!(transfer = %job_id, conn, "the sink already has everything: telling the source");
            let finished = source_down::Msg::Finished(pb::RelayFinished { counts });
            let _ = tx.try_send(Ok(pb::SourceDown {
                msg: Some(finished),
            }));
        }
        // Read after the stream is current: an abort either sees this
        // stream or is seen here (both is harmless).
        if let Some(failure) = lock(&job.failed).clone() {
            let _ = tx.try_send(Ok(pb::SourceDown {
                msg: Some(source_down::Msg::Failure(failure)),
            }));
        }
        (conn, rx)
    }

    /// Makes a new stream the sink's current one; told at once if the
    /// transfer was ended.
    fn connect_sink(&self, job: &Job) -> (u64, mpsc::Receiver<Result<pb::SinkDown, Status>>) {
        let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(PIPE_DEPTH);
        job.sink.send_replace(Some(Peer {
            conn,
            tx: tx.clone(),
        }));
        if let Some(failure) = lock(&job.failed).clone() {
            let _ = tx.try_send(Ok(pb::SinkDown {
                msg: Some(sink_down::Msg::Failure(failure)),
            }));
        }
        (conn, rx)
    }

    /// Ends the transfer on both sides: each side's current stream is told
    /// why, and so is any stream that connects later. A side whose command
    /// has already ended ignores it. Telling both matters: the side that
    /// failed may still look connected here (its stream's end not yet seen),
    /// and the side still running must hear of it whatever it races with.
    pub fn abort(&self, job_id: &str, message: String) {
        let job = self.job(job_id);
        let failure = pb::RelayFailure { message };
        // Recorded before the streams are read: see `connect_source`.
        *lock(&job.failed) = Some(failure.clone());
        let source = job.source.borrow().clone();
        let sink = job.sink.borrow().clone();
        self.background.spawn_stream(async move {
            let to_source = async {
                if let Some(p) = source {
                    let msg = source_down::Msg::Failure(failure.clone());
                    let _ = p.tx.send(Ok(pb::SourceDown { msg: Some(msg) })).await;
                }
            };
            let to_sink = async {
                if let Some(p) = sink {
                    let msg = sink_down::Msg::Failure(failure.clone());
                    let _ = p.tx.send(Ok(pb::SinkDown { msg: Some(msg) })).await;
                }
            };
            tokio::join!(to_source, to_sink);
        });
    }

    fn count_chunk(&self, job: &Job, c: &mut pb::ObjectChunk) {
        let n = c.data.len() as u64;
        let mut p = lock(&job.progress);
        p.bytes_relayed += n;
        p.relayed_since_need += n;
        p.first_chunk.get_or_insert_with(Instant::now);
        drop(p);
        self.changes.tell();
        crate::metrics::get().relayed(n);
        #[cfg(feature = "testing")]
        if !c.data.is_empty()
            && !c.more
            && !lock(&self.faults.corrupted).contains(&c.key)
            && self
                .faults
                .corrupt_chunks
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
        {
            lock(&self.faults.corrupted).insert(c.key.clone());
            let mut data = c.data.to_vec();
            data[0] ^= 0xff;
            c.data = data.into();
            tracing::warn!(key = %c.key, offset = c.offset, "fault injected: chunk corrupted in the relay");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn hub(dir: &std::path::Path) -> RelayHub {
        let store = Store::open(dir).expect("a store in a temporary directory");
        RelayHub::new(store, Background::new())
    }

    fn failure_of_source(m: Option<Result<pb::SourceDown, Status>>) -> Option<String> {
        match m?.ok()?.msg? {
            source_down::Msg::Failure(f) => Some(f.message),
            _ => None,
        }
    }

    /// The side that failed may still look connected when its command's
    /// failure arrives (its stream's end not yet seen): the source must be
    /// told all the same, not only that stale stream.
    #[tokio::test]
    async fn an_abort_reaches_the_source_while_the_failed_sink_still_looks_connected() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let hub = hub(dir.path());
        let job = hub.job("t");
        let (_, mut source) = hub.connect_source(&job, "t");
        // Kept open and never read, as a stream whose agent has left.
        let (_, _sink) = hub.connect_sink(&job);
        hub.abort("t", "the other side failed: refused".into());
        let told = tokio::time::timeout(Duration::from_secs(5), source.recv())
            .await
            .expect("the source is told within 5 s");
        assert_eq!(
            failure_of_source(told).as_deref(),
            Some("the other side failed: refused")
        );
    }

    /// A source that connects (or reconnects) after the transfer was ended
    /// is told at once, not left waiting for requests that never come.
    #[tokio::test]
    async fn a_source_connecting_after_an_abort_is_told_at_once() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let hub = hub(dir.path());
        hub.abort("t", "cancelled".into());
        let job = hub.job("t");
        let (_, mut source) = hub.connect_source(&job, "t");
        assert_eq!(
            failure_of_source(source.try_recv().ok()).as_deref(),
            Some("cancelled")
        );
        let (_, mut sink) = hub.connect_sink(&job);
        let told = sink.try_recv().ok().and_then(|m| m.ok()?.msg);
        assert!(
            matches!(told, Some(sink_down::Msg::Failure(ref f)) if f.message == "cancelled"),
            "{told:?}"
        );
    }
}
