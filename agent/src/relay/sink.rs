//! The sink side: decide what is needed, verify every chunk, commit whole objects.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use ferry_common::backoff::Backoff;
use ferry_common::pb::{self, sink_down::Msg as Down, sink_up::Msg as Up};
use futures::StreamExt;
use object_store::multipart::PartId;
use object_store::{
    Attribute, Attributes, GetOptions, PutMultipartOptions, PutOptions, PutPayload,
};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use super::state::{Committed, Partial, TargetState};
use super::{
    ChunkHasher, RelayContext, RelayError, SessionError, check_chunk_size, link_or_fatal, part,
};
use crate::objects::Scoped;

/// User metadata recording which source version an object came from.
const VERSION_ATTRIBUTE: &str = "ferry-source-version";
/// Failures of one object's upload before the transfer gives up.
const OBJECT_ATTEMPTS: u32 = 5;
/// Frames queued for each object's worker.
const FRAMES_QUEUED: usize = 2;
/// Verified parts of one object uploading at once, while the next chunk arrives.
const PARTS_IN_FLIGHT: usize = 2;
/// Objects received whole but still uploading before a new object waits: they
/// hold chunks the link no longer limits (the source has moved on).
const CLOSED_UPLOADS: usize = 4;

fn up(msg: Up) -> pb::SinkUp {
    pb::SinkUp { msg: Some(msg) }
}

/// Runs the sink of `cmd` until every object of the source's manifest is here.
pub async fn run_sink(
    ctx: &RelayContext,
    cmd: &pb::RelaySinkCommand,
) -> Result<pb::TransferCounts, RelayError> {
    let scope = ctx.stores.scoped(&cmd.store, &cmd.prefix)?;
    let mut state = TargetState::open(&ctx.state_dir, &cmd.store, &cmd.prefix)?;
    let mut backoff = Backoff::new(ctx.config.backoff_base, ctx.config.backoff_cap);
    // Kept across reconnects: what crossed the link in all, resends included.
    let mut received = Received::default();
    loop {
        match session(ctx, cmd, &scope, &mut state, &mut received).await {
            Ok(Some(counts)) => return Ok(counts),
            Ok(None) => tracing::info!(job = %cmd.job_id, "relay sink stream ended; redialling"),
            Err(SessionError::Fatal(e)) => return Err(e),
            Err(SessionError::Link(e)) => {
                tracing::warn!(job = %cmd.job_id, error = %e, "relay sink link failed; redialling")
            }
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

#[derive(Default, Clone, Copy)]
struct Received {
    bytes: u64,
    rejected: u64,
}

/// What a worker tells the session loop.
enum Event {
    Committed {
        key: String,
        size: u64,
        version: String,
    },
    /// A chunk failed verification: the worker waits for it again from `offset`.
    Rejected {
        key: String,
        offset: u64,
        reason: String,
    },
    Failed {
        key: String,
        message: String,
    },
}

struct Need {
    version: String,
    size: u64,
    /// The offset of the next frame accepted for this object.
    expected: u64,
    worker: Option<mpsc::Sender<pb::ObjectChunk>>,
    /// Its worker has every frame and is storing the last of them.
    closed: bool,
    attempts: u32,
}

/// The sink's view of one manifest generation.
struct Round {
    generation: u64,
    chunk_size: u64,
    present: HashMap<String, u64>,
    needs: HashMap<String, Need>,
    /// Keys whose need has (or lately had) a worker: the few uploads under
    /// way, so counting the closed ones does not walk every need.
    uploading: HashSet<String>,
    manifest_done: bool,
    counts: pb::TransferCounts,
    workers: Vec<JoinHandle<()>>,
}

async fn session(
    ctx: &RelayContext,
    cmd: &pb::RelaySinkCommand,
    scope: &Scoped,
    state: &mut TargetState,
    received: &mut Received,
) -> Result<Option<pb::TransferCounts>, SessionError> {
    let channel = ctx
        .channel()
        .await
        .map_err(|e| SessionError::Link(e.to_string()))?;
    let (tx, rx) = mpsc::channel::<pb::SinkUp>(64);
    let _ = tx
        .send(up(Up::Hello(pb::RelayHello {
            job_id: cmd.job_id.clone(),
        })))
        .await;
    let mut down = ctx
        .client(channel)
        .sink(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(|s| link_or_fatal(&cmd.job_id, s))?
        .into_inner();
    // Unbounded so a worker never waits on the loop that may be waiting on
    // it; at most a few events per object.
    let (events_tx, mut events_rx) = mpsc::unbounded_channel::<Event>();
    let mut round: Option<Round> = None;
    let result = 'session: loop {
        tokio::select! {
            msg = down.message() => {
                let msg = match msg {
                    Ok(Some(m)) => m,
                    Ok(None) => break Ok(None),
                    Err(s) => break Err(link_or_fatal(&cmd.job_id, s)),
                };
                match msg.msg {
                    Some(Down::ManifestBegin(b)) => {
                        if let Some(old) = round.take() {
                            finish_round(old, state, &mut events_rx).await;
                        }
                        let chunk_size = match check_chunk_size(b.chunk_size) {
                            Ok(c) => c,
                            Err(e) => break Err(SessionError::Fatal(e)),
                        };
                        match list_present(scope).await {
                            Ok(present) => round = Some(Round::new(b.generation, chunk_size, present)),
                            Err(e) => break Err(SessionError::Fatal(e)),
                        }
                    }
                    Some(Down::Manifest(batch)) => {
                        let Some(r) = round.as_mut().filter(|r| r.generation == batch.generation) else { continue };
                        for entry in batch.entries {
                            if let Err(e) = crate::objects::check_key(&entry.key) {
                                // A refused object fails the transfer, on both
                                // sides: it never "succeeds" having moved nothing.
                                let message = format!(
                                    "transfer {}: the target refuses object key {}: {e}",
                                    cmd.job_id,
                                    ferry_common::limits::shorten(&entry.key)
                                );
                                let _ = tx.send(up(Up::Failure(pb::RelayFailure { message: message.clone() }))).await;
                                break 'session Err(SessionError::Fatal(RelayError::Invalid(message)));
                            }
                            if let Some(req) = r.consider(scope, state, entry).await {
                                let _ = tx.send(up(Up::Need(req))).await;
                            }
                        }
                    }
                    Some(Down::ManifestEnd(end)) => {
                        let Some(r) = round.as_mut().filter(|r| r.generation == end.generation) else { continue };
                        r.manifest_done = true;
                        let need_bytes = r.needs.values().map(|n| n.size - n.expected).sum();
                        let _ = tx.send(up(Up::NeedEnd(pb::NeedEnd {
                            generation: r.generation,
                            objects: r.needs.len() as u64,
                            bytes: need_bytes,
                            skipped_objects: r.counts.objects_skipped,
                            skipped_bytes: r.counts.bytes_skipped,
                        }))).await;
                        tracing::info!(job = %cmd.job_id, need = r.needs.len(), need_bytes, skipped = r.counts.objects_skipped, "manifest compared");
                    }
                    Some(Down::Chunk(frame)) => {
                        received.bytes += frame.data.len() as u64;
                        let Some(r) = round.as_mut() else { continue };
                        if r.starts_worker(&frame) {
                            while r.closed_uploads() >= CLOSED_UPLOADS {
                                let Some(event) = events_rx.recv().await else { break };
                                if let Err(e) = apply(r, event, state, received, &tx).await {
                                    break 'session Err(SessionError::Fatal(e));
                                }
                            }
                        }
                        if let Some((worker, frame)) = r.route(scope, state, frame, &events_tx) {
                            // Waiting here is the backpressure: the coordinator
                            // stops reading the source. A worker that has just
                            // failed drops the frame; its event asks again.
                            let _ = worker.send(frame).await;
                        }
                    }
                    Some(Down::Failure(f)) => {
                        break Err(SessionError::Fatal(RelayError::Peer { job: cmd.job_id.clone(), message: f.message }));
                    }
                    None => {}
                }
            }
            Some(event) = events_rx.recv() => {
                let Some(r) = round.as_mut() else { continue };
                if let Err(e) = apply(r, event, state, received, &tx).await {
                    break Err(SessionError::Fatal(e));
                }
            }
        }
        if let Some(r) = round
            .as_ref()
            .filter(|r| r.manifest_done && r.needs.is_empty())
        {
            let mut counts = r.counts;
            counts.bytes_received = received.bytes;
            counts.chunks_rejected = received.rejected;
            let _ = tx
                .send(up(Up::Done(pb::SinkDone {
                    generation: r.generation,
                    counts: Some(counts),
                })))
                .await;
            // Let the coordinator take the report before the stream closes.
            let _ = tokio::time::timeout(Duration::from_secs(5), down.message()).await;
            break Ok(Some(counts));
        }
    };
    if let Err(SessionError::Fatal(_)) = &result {
        // It may have just told the coordinator why.
        part(tx, &mut down).await;
    }
    if let Some(r) = round.take() {
        finish_round(r, state, &mut events_rx).await;
    }
    result
}

/// Applies a worker's event to the round and tells the coordinator; a fatal
/// error is reported to it too.
async fn apply(
    r: &mut Round,
    event: Event,
    state: &mut TargetState,
    received: &mut Received,
    tx: &mpsc::Sender<pb::SinkUp>,
) -> Result<(), RelayError> {
    match r.on_event(event, state, received) {
        Ok(Some(msg)) => {
            let _ = tx.send(msg).await;
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(e) => {
            let _ = tx
                .send(up(Up::Failure(pb::RelayFailure {
                    message: e.to_string(),
                })))
                .await;
            Err(e)
        }
    }
}

/// Stops a round's workers and records what they committed meanwhile, so the
/// next round starts from exactly what is durable.
async fn finish_round(
    mut r: Round,
    state: &mut TargetState,
    events: &mut mpsc::UnboundedReceiver<Event>,
) {
    for need in r.needs.values_mut() {
        need.worker = None;
    }
    for w in r.workers.drain(..) {
        let _ = w.await;
    }
    while let Ok(event) = events.try_recv() {
        if let Event::Committed { key, size, version } = event
            && let Err(e) = state.record_commit(&key, Committed { size, version })
        {
            tracing::error!(%key, error = %e, "cannot record a committed object");
        }
    }
}

async fn list_present(scope: &Scoped) -> Result<HashMap<String, u64>, RelayError> {
    let root = scope.list_root();
    let mut listing = scope.open.store.list(root.as_ref());
    let mut present = HashMap::new();
    while let Some(meta) = listing.next().await {
        let meta = meta.map_err(|source| RelayError::List {
            store: scope.name.clone(),
            prefix: scope.prefix.clone(),
            source,
        })?;
        if let Some(key) = scope.key_of(&meta.location) {
            present.insert(key, meta.size);
        }
    }
    Ok(present)
}

impl Round {
    fn new(generation: u64, chunk_size: u64, present: HashMap<String, u64>) -> Self {
        Self {
            generation,
            chunk_size,
            present,
            needs: HashMap::new(),
            uploading: HashSet::new(),
            manifest_done: false,
            counts: pb::TransferCounts::default(),
            workers: vec![],
        }
    }

    /// Whether the target already holds this version of the object; if not,
    /// the request for it (from its last verified chunk, if any).
    async fn consider(
        &mut self,
        scope: &Scoped,
        state: &mut TargetState,
        e: pb::ManifestEntry,
    ) -> Option<pb::SendRequest> {
        self.counts.objects_total += 1;
        self.counts.bytes_total += e.size;
        if self.present.get(&e.key) == Some(&e.size) {
            let known = match state.committed(&e.key) {
                Some(c) => c.size == e.size && c.version == e.version,
                // No record (the agent's state was lost): ask the object itself.
                None => stored_version(scope, &e.key).await.as_deref() == Some(e.version.as_str()),
            };
            if known {
                if state.committed(&e.key).is_none() {
                    let _ = state.record_commit(
                        &e.key,
                        Committed {
                            size: e.size,
                            version: e.version.clone(),
                        },
                    );
                }
                self.counts.objects_skipped += 1;
                self.counts.bytes_skipped += e.size;
                return None;
            }
        }
        let offset = match state.partial(&e.key) {
            Some(p)
                if p.version == e.version
                    && p.size == e.size
                    && p.chunk_size == self.chunk_size =>
            {
                resume_offset(&p)
            }
            Some(p) => {
                abort_upload(scope, &p).await;
                state.drop_partial(&e.key);
                0
            }
            None => 0,
        };
        self.needs.insert(
            e.key.clone(),
            Need {
                version: e.version.clone(),
                size: e.size,
                expected: offset,
                worker: None,
                closed: false,
                attempts: 0,
            },
        );
        Some(pb::SendRequest {
            generation: self.generation,
            key: e.key,
            offset,
            version: e.version,
            reason: String::new(),
        })
    }

    /// Whether this frame would start a worker (the first of an object, or
    /// the first after its worker failed).
    fn starts_worker(&self, frame: &pb::ObjectChunk) -> bool {
        self.needs.get(&frame.key).is_some_and(|n| {
            n.worker.is_none() && frame.offset == n.expected && frame.version == n.version
        })
    }

    /// Uploads that have every frame and are storing the last of them.
    /// Counted over the keys with a worker alone (dropping those whose worker
    /// is gone): over every need it cost O(objects) per object started, and
    /// at 100,000 objects the sink spent most of its CPU here.
    fn closed_uploads(&mut self) -> usize {
        let needs = &self.needs;
        self.uploading
            .retain(|k| needs.get(k).is_some_and(|n| n.worker.is_some()));
        self.uploading
            .iter()
            .filter(|k| needs.get(*k).is_some_and(|n| n.closed))
            .count()
    }

    /// The worker that takes this frame, started with the object's first
    /// frame; `None` for a frame that is stale (an older request, a resend
    /// racing) or of an object not needed.
    fn route(
        &mut self,
        scope: &Scoped,
        state: &TargetState,
        frame: pb::ObjectChunk,
        events: &mpsc::UnboundedSender<Event>,
    ) -> Option<(mpsc::Sender<pb::ObjectChunk>, pb::ObjectChunk)> {
        let need = self.needs.get_mut(&frame.key)?;
        if frame.offset != need.expected || frame.version != need.version {
            return None;
        }
        need.expected += frame.data.len() as u64;
        need.closed = frame.last && !frame.more;
        if need.worker.is_none() {
            let (wtx, wrx) = mpsc::channel(FRAMES_QUEUED);
            let job = Upload {
                scope: scope.clone(),
                partials: state.dir().to_path_buf(),
                key: frame.key.clone(),
                version: need.version.clone(),
                size: need.size,
                chunk_size: self.chunk_size,
                start: frame.offset,
                resume: state.partial(&frame.key),
            };
            // A finished task's memory is freed only with its handle: keep
            // the handles of running workers alone, or 100,000 small objects
            // would keep 100,000 finished tasks.
            self.workers.retain(|w| !w.is_finished());
            self.workers
                .push(tokio::spawn(job.run(wrx, events.clone())));
            need.worker = Some(wtx);
            self.uploading.insert(frame.key.clone());
        }
        Some((need.worker.clone()?, frame))
    }

    fn on_event(
        &mut self,
        event: Event,
        state: &mut TargetState,
        received: &mut Received,
    ) -> Result<Option<pb::SinkUp>, RelayError> {
        match event {
            Event::Committed { key, size, version } => {
                state.record_commit(&key, Committed { size, version })?;
                self.needs.remove(&key);
                self.counts.objects_moved += 1;
                self.counts.bytes_moved += size;
                Ok(Some(up(Up::Committed(pb::ObjectCommitted { key, size }))))
            }
            Event::Rejected {
                key,
                offset,
                reason,
            } => {
                received.rejected += 1;
                let Some(need) = self.needs.get_mut(&key) else {
                    return Ok(None);
                };
                tracing::warn!(%key, offset, %reason, "chunk failed verification; asking for it again");
                need.expected = offset;
                need.closed = false;
                Ok(Some(up(Up::Need(pb::SendRequest {
                    generation: self.generation,
                    key,
                    offset,
                    version: need.version.clone(),
                    reason,
                }))))
            }
            Event::Failed { key, message } => {
                let Some(need) = self.needs.get_mut(&key) else {
                    return Ok(None);
                };
                need.attempts += 1;
                if need.attempts >= OBJECT_ATTEMPTS {
                    return Err(RelayError::GaveUp {
                        job: String::new(),
                        key,
                        attempts: need.attempts,
                        message,
                    });
                }
                tracing::warn!(%key, attempt = need.attempts, %message, "storing the object failed; asking for it again");
                // The worker has stopped: the next frame starts a new one.
                need.worker = None;
                need.closed = false;
                need.expected = state
                    .partial(&key)
                    .filter(|p| p.version == need.version && p.chunk_size == self.chunk_size)
                    .map_or(0, |p| resume_offset(&p));
                Ok(Some(up(Up::Need(pb::SendRequest {
                    generation: self.generation,
                    key,
                    offset: need.expected,
                    version: need.version.clone(),
                    reason: message,
                }))))
            }
        }
    }
}

/// Where a partial object resumes: the end of its last recorded part (its
/// end, when every part is recorded and only the completion is missing).
fn resume_offset(p: &Partial) -> u64 {
    (p.parts.len() as u64 * p.chunk_size).min(p.size)
}

async fn stored_version(scope: &Scoped, key: &str) -> Option<String> {
    let path = scope.path(key).ok()?;
    let head = scope
        .open
        .store
        .get_opts(
            &path,
            GetOptions {
                head: true,
                ..Default::default()
            },
        )
        .await
        .ok()?;
    head.attributes
        .get(&Attribute::Metadata(VERSION_ATTRIBUTE.into()))
        .map(|v| v.as_ref().to_string())
}

async fn abort_upload(scope: &Scoped, p: &Partial) {
    if let Ok(path) = scope.path(&p.key) {
        let _ = scope
            .open
            .multipart
            .abort_multipart(&path, &p.upload_id)
            .await;
    }
}

fn version_attributes(version: &str) -> Attributes {
    let mut a = Attributes::new();
    a.insert(
        Attribute::Metadata(VERSION_ATTRIBUTE.into()),
        version.to_string().into(),
    );
    a
}

/// Stores one object from its frames: verifies each chunk as its frames
/// arrive, then stores it while the next chunk arrives — a single put for a
/// one-chunk object, otherwise a multipart upload whose parts (a few at once)
/// are recorded in order as they land. The object becomes visible only when
/// the upload completes, after its last chunk verified.
struct Upload {
    scope: Scoped,
    partials: std::path::PathBuf,
    key: String,
    version: String,
    size: u64,
    chunk_size: u64,
    /// The offset of the first frame this worker was given.
    start: u64,
    resume: Option<Partial>,
}

/// The frames of the chunk being received, hashed as they come.
struct Assembly {
    start: u64,
    len: u64,
    frames: Vec<bytes::Bytes>,
    digest: ChunkHasher,
}

impl Assembly {
    fn new(start: u64) -> Self {
        Self {
            start,
            len: 0,
            frames: vec![],
            digest: ChunkHasher::new(),
        }
    }
}

impl Upload {
    async fn run(
        self,
        mut frames: mpsc::Receiver<pb::ObjectChunk>,
        events: mpsc::UnboundedSender<Event>,
    ) {
        let key = self.key.clone();
        let event = match self.store(&mut frames, &events).await {
            Ok(Some(())) => Event::Committed {
                key,
                size: self.size,
                version: self.version.clone(),
            },
            Ok(None) => return, // the round ended first; what landed is recorded
            Err(e) => Event::Failed {
                key,
                message: e.to_string(),
            },
        };
        let _ = events.send(event);
    }

    fn err(&self, source: object_store::Error) -> RelayError {
        RelayError::Store {
            key: self.key.clone(),
            source,
        }
    }

    /// The chunk just completed by `last_frame`, if it verifies; otherwise
    /// why not.
    fn verify(
        &self,
        chunk: Assembly,
        last_frame: &pb::ObjectChunk,
    ) -> Result<Vec<bytes::Bytes>, String> {
        let well_formed = if last_frame.last {
            chunk.start + chunk.len == self.size
        } else {
            chunk.len == self.chunk_size
        };
        if !well_formed {
            return Err(format!(
                "chunk at offset {} has {} bytes, which does not fit an object of {} bytes in chunks of {}",
                chunk.start, chunk.len, self.size, self.chunk_size
            ));
        }
        let (verified, hash) = if !last_frame.blake3.is_empty() {
            let ours = chunk.digest.finalize();
            (ours.as_bytes() == last_frame.blake3.as_ref(), "BLAKE3")
        } else {
            // A source from before BLAKE3 sends the chunk's SHA-256.
            let mut sha = ring::digest::Context::new(&ring::digest::SHA256);
            chunk.frames.iter().for_each(|f| sha.update(f));
            (
                sha.finish().as_ref() == last_frame.sha256.as_ref(),
                "SHA-256",
            )
        };
        if !verified {
            return Err(format!(
                "chunk at offset {} failed {hash} verification",
                chunk.start
            ));
        }
        Ok(chunk.frames)
    }

    async fn store(
        &self,
        frames: &mut mpsc::Receiver<pb::ObjectChunk>,
        events: &mpsc::UnboundedSender<Event>,
    ) -> Result<Option<()>, RelayError> {
        let path = self.scope.path(&self.key)?;
        let single = self.size <= self.chunk_size && self.resume.is_none();
        let mut partial = if single {
            None
        } else {
            Some(self.multipart(&path).await?)
        };
        let state = PartialFile(self.partials.clone());
        let mut expected = self.start;
        if let Some(p) = &partial
            && resume_offset(p) != expected
        {
            return Err(RelayError::Invalid(format!(
                "object {}: frames start at {expected} but its recorded parts end at {}",
                self.key,
                resume_offset(p)
            )));
        }
        let mut chunk = Assembly::new(expected);
        let mut uploads: JoinSet<Result<(usize, PartId), object_store::Error>> = JoinSet::new();
        // Parts landed out of order, waiting for the ones before them.
        let mut landed: BTreeMap<usize, String> = BTreeMap::new();
        let mut all_verified = false;
        // A verified part waiting for an upload slot; frames keep coming meanwhile.
        let mut ready: Option<(usize, PutPayload)> = None;
        loop {
            if let Some(p) = partial.as_ref()
                && uploads.len() < PARTS_IN_FLIGHT
                && let Some((index, payload)) = ready.take()
            {
                let (multipart, upload_id) =
                    (self.scope.open.multipart.clone(), p.upload_id.clone());
                let path = path.clone();
                uploads.spawn(async move {
                    multipart
                        .put_part(&path, &upload_id, index, payload)
                        .await
                        .map(|part| (index, part))
                });
            }
            if all_verified && ready.is_none() && uploads.is_empty() {
                break;
            }
            tokio::select! {
                biased;
                Some(joined) = uploads.join_next(), if !uploads.is_empty() => {
                    let (index, part) = joined
                        .map_err(|e| RelayError::Invalid(format!("object {}: part upload stopped: {e}", self.key)))?
                        .map_err(|e| self.err(e))?;
                    landed.insert(index, part.content_id);
                    if let Some(p) = partial.as_mut() {
                        let before = p.parts.len();
                        while let Some(id) = landed.remove(&p.parts.len()) {
                            p.parts.push(id);
                        }
                        if p.parts.len() > before {
                            state.save(p)?;
                        }
                    }
                }
                frame = frames.recv(), if !all_verified && ready.is_none() => {
                    let Some(frame) = frame else {
                        // The round ended: record what is landing, then stop.
                        while let Some(Ok(Ok((index, part)))) = uploads.join_next().await {
                            landed.insert(index, part.content_id);
                        }
                        if let Some(p) = partial.as_mut() {
                            while let Some(id) = landed.remove(&p.parts.len()) {
                                p.parts.push(id);
                            }
                            state.save(p)?;
                        }
                        return Ok(None);
                    };
                    if frame.offset != expected || frame.version != self.version {
                        continue; // stale: sent before a resend was asked for
                    }
                    expected += frame.data.len() as u64;
                    chunk.len += frame.data.len() as u64;
                    chunk.digest.update(&frame.data);
                    chunk.frames.push(frame.data.clone());
                    let oversized = chunk.len > self.chunk_size;
                    if frame.more && !oversized {
                        continue;
                    }
                    let start = chunk.start;
                    let done = std::mem::replace(&mut chunk, Assembly::new(expected));
                    let verdict = if oversized {
                        Err(format!("chunk at offset {start} is larger than {} bytes", self.chunk_size))
                    } else {
                        self.verify(done, &frame)
                    };
                    let data = match verdict {
                        Ok(data) => data,
                        Err(reason) => {
                            // Wait for the chunk again; the session asks the source.
                            let _ = events.send(Event::Rejected { key: self.key.clone(), offset: start, reason });
                            expected = start;
                            chunk = Assembly::new(start);
                            continue;
                        }
                    };
                    all_verified = frame.last;
                    let payload: PutPayload = data.into_iter().collect();
                    match partial.as_ref() {
                        None => {
                            let opts = PutOptions {
                                attributes: version_attributes(&self.version),
                                ..Default::default()
                            };
                            self.scope
                                .open
                                .store
                                .put_opts(&path, payload, opts)
                                .await
                                .map_err(|e| self.err(e))?;
                        }
                        // Every part is recorded: only the completion was missing.
                        Some(_) if start == self.size => {}
                        Some(_) => ready = Some(((start / self.chunk_size) as usize, payload)),
                    }
                }
            }
        }
        if let Some(p) = partial {
            let parts: Vec<PartId> = p
                .parts
                .iter()
                .map(|c| PartId {
                    content_id: c.clone(),
                })
                .collect();
            self.scope
                .open
                .multipart
                .complete_multipart(&path, &p.upload_id, parts)
                .await
                .map_err(|e| self.err(e))?;
        }
        Ok(Some(()))
    }

    /// The multipart upload this object resumes, or a new one, recorded
    /// before any part goes into it.
    async fn multipart(&self, path: &object_store::path::Path) -> Result<Partial, RelayError> {
        if let Some(p) = &self.resume {
            return Ok(p.clone());
        }
        let opts = PutMultipartOptions {
            attributes: version_attributes(&self.version),
            ..Default::default()
        };
        let upload_id = self
            .scope
            .open
            .multipart
            .create_multipart_opts(path, opts)
            .await
            .map_err(|e| self.err(e))?;
        let p = Partial {
            key: self.key.clone(),
            version: self.version.clone(),
            size: self.size,
            chunk_size: self.chunk_size,
            upload_id,
            parts: vec![],
        };
        PartialFile(self.partials.clone()).save(&p)?;
        Ok(p)
    }
}
/// Workers write only their own object's partial file; the commit log has
/// one writer, the session loop.
struct PartialFile(std::path::PathBuf);

impl PartialFile {
    fn save(&self, p: &Partial) -> Result<(), RelayError> {
        super::state::save_partial_in(&self.0, p)
    }
}
