//! The sink side: decide what is needed, verify every chunk, commit whole objects.
use std::collections::HashMap;
use std::time::Duration;

use ferry_common::backoff::Backoff;
use ferry_common::pb::{self, sink_down::Msg as Down, sink_up::Msg as Up};
use futures::StreamExt;
use object_store::multipart::PartId;
use object_store::{
    Attribute, Attributes, GetOptions, PutMultipartOptions, PutOptions, PutPayload,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::state::{Committed, Partial, TargetState};
use super::{RelayContext, RelayError, SessionError, check_chunk_size, link_or_fatal, sha256};
use crate::objects::Scoped;

/// User metadata recording which source version an object came from.
const VERSION_ATTRIBUTE: &str = "ferry-source-version";
/// Failures of one object's upload before the transfer gives up.
const OBJECT_ATTEMPTS: u32 = 5;

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
    Failed {
        key: String,
        message: String,
    },
}

struct Need {
    version: String,
    size: u64,
    /// The next offset accepted for this object.
    expected: u64,
    worker: Option<mpsc::Sender<pb::ObjectChunk>>,
    attempts: u32,
}

/// The sink's view of one manifest generation.
struct Round {
    generation: u64,
    chunk_size: u64,
    present: HashMap<String, u64>,
    needs: HashMap<String, Need>,
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
        .client(channel, super::MAX_CHUNK_SIZE)
        .sink(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(|s| link_or_fatal(&cmd.job_id, s))?
        .into_inner();
    let (events_tx, mut events_rx) = mpsc::channel::<Event>(64);
    let mut round: Option<Round> = None;
    let result = loop {
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
                                let _ = tx.send(up(Up::Failure(pb::RelayFailure { message: e.to_string() }))).await;
                                break;
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
                    Some(Down::Chunk(chunk)) => {
                        received.bytes += chunk.data.len() as u64;
                        let Some(r) = round.as_mut() else { continue };
                        if let Some(resend) = r.on_chunk(scope, state, chunk, &events_tx, received) {
                            let _ = tx.send(up(Up::Need(resend))).await;
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
                match r.on_event(event, state) {
                    Ok(Some(up_msg)) => { let _ = tx.send(up_msg).await; }
                    Ok(None) => {}
                    Err(e) => {
                        let _ = tx.send(up(Up::Failure(pb::RelayFailure { message: e.to_string() }))).await;
                        break Err(SessionError::Fatal(e));
                    }
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
    if let Some(r) = round.take() {
        finish_round(r, state, &mut events_rx).await;
    }
    result
}

/// Stops a round's workers and records what they committed meanwhile, so the
/// next round starts from exactly what is durable.
async fn finish_round(mut r: Round, state: &mut TargetState, events: &mut mpsc::Receiver<Event>) {
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
                p.parts.len() as u64 * self.chunk_size
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

    /// Accepts a verified chunk into its object's worker; answers a resend
    /// request for a chunk that fails verification.
    fn on_chunk(
        &mut self,
        scope: &Scoped,
        state: &TargetState,
        chunk: pb::ObjectChunk,
        events: &mpsc::Sender<Event>,
        received: &mut Received,
    ) -> Option<pb::SendRequest> {
        let generation = self.generation;
        let chunk_size = self.chunk_size;
        let need = self.needs.get_mut(&chunk.key)?;
        // Stale or repeated chunks (an older request, a resend racing) are dropped.
        if chunk.offset != need.expected || chunk.version != need.version {
            return None;
        }
        let len = chunk.data.len() as u64;
        let well_formed =
            (chunk.last && chunk.offset + len == need.size) || (!chunk.last && len == chunk_size);
        if !well_formed || sha256(&chunk.data) != chunk.sha256 {
            received.rejected += 1;
            tracing::warn!(key = %chunk.key, offset = chunk.offset, "chunk failed verification; asking for it again");
            return Some(pb::SendRequest {
                generation,
                key: chunk.key,
                offset: need.expected,
                version: need.version.clone(),
                reason: format!(
                    "chunk at offset {} failed SHA-256 verification",
                    chunk.offset
                ),
            });
        }
        need.expected += len;
        if need.worker.is_none() {
            // One chunk queued behind the one being stored: what a crash of
            // this process can lose is at most two chunks per object.
            let (wtx, wrx) = mpsc::channel(1);
            let job = Upload {
                scope: scope.clone(),
                partials: state.dir().to_path_buf(),
                key: chunk.key.clone(),
                version: need.version.clone(),
                size: need.size,
                chunk_size,
                resume: state.partial(&chunk.key),
            };
            self.workers
                .push(tokio::spawn(job.run(wrx, events.clone())));
            need.worker = Some(wtx);
        }
        let worker = need.worker.as_ref()?;
        if let Err(e) = worker.try_send(chunk) {
            // Full: wait for room (backpressure) without blocking other work for long.
            let chunk = e.into_inner();
            let worker = worker.clone();
            tokio::spawn(async move {
                let _ = worker.send(chunk).await;
            });
        }
        None
    }

    fn on_event(
        &mut self,
        event: Event,
        state: &mut TargetState,
    ) -> Result<Option<pb::SinkUp>, RelayError> {
        match event {
            Event::Committed { key, size, version } => {
                state.record_commit(&key, Committed { size, version })?;
                self.needs.remove(&key);
                self.counts.objects_moved += 1;
                self.counts.bytes_moved += size;
                Ok(Some(up(Up::Committed(pb::ObjectCommitted { key, size }))))
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
                need.worker = None;
                need.expected = state
                    .partial(&key)
                    .filter(|p| p.version == need.version)
                    .map_or(0, |p| p.parts.len() as u64 * self.chunk_size);
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

/// Stores one object from its verified chunks: a single put for a one-chunk
/// object, otherwise a multipart upload whose parts are recorded as they land.
struct Upload {
    scope: Scoped,
    partials: std::path::PathBuf,
    key: String,
    version: String,
    size: u64,
    chunk_size: u64,
    resume: Option<Partial>,
}

impl Upload {
    async fn run(self, mut chunks: mpsc::Receiver<pb::ObjectChunk>, events: mpsc::Sender<Event>) {
        let key = self.key.clone();
        let event = match self.store(&mut chunks).await {
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
        let _ = events.send(event).await;
    }

    fn err(&self, source: object_store::Error) -> RelayError {
        RelayError::Store {
            key: self.key.clone(),
            source,
        }
    }

    async fn store(
        &self,
        chunks: &mut mpsc::Receiver<pb::ObjectChunk>,
    ) -> Result<Option<()>, RelayError> {
        let path = self.scope.path(&self.key)?;
        if self.size <= self.chunk_size && self.resume.is_none() {
            let Some(chunk) = chunks.recv().await else {
                return Ok(None);
            };
            let opts = PutOptions {
                attributes: version_attributes(&self.version),
                ..Default::default()
            };
            self.scope
                .open
                .store
                .put_opts(&path, PutPayload::from_bytes(chunk.data), opts)
                .await
                .map_err(|e| self.err(e))?;
            return Ok(Some(()));
        }
        let state = PartialFile(self.partials.clone());
        let mut partial = match &self.resume {
            Some(p) => p.clone(),
            None => {
                let opts = PutMultipartOptions {
                    attributes: version_attributes(&self.version),
                    ..Default::default()
                };
                let upload_id = self
                    .scope
                    .open
                    .multipart
                    .create_multipart_opts(&path, opts)
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
                state.save(&p)?;
                p
            }
        };
        while let Some(chunk) = chunks.recv().await {
            let index = (chunk.offset / self.chunk_size) as usize;
            if index != partial.parts.len() {
                continue;
            }
            let last = chunk.last;
            let part = self
                .scope
                .open
                .multipart
                .put_part(
                    &path,
                    &partial.upload_id,
                    index,
                    PutPayload::from_bytes(chunk.data),
                )
                .await
                .map_err(|e| self.err(e))?;
            partial.parts.push(part.content_id);
            state.save(&partial)?;
            if last {
                let parts: Vec<PartId> = partial
                    .parts
                    .iter()
                    .map(|c| PartId {
                        content_id: c.clone(),
                    })
                    .collect();
                self.scope
                    .open
                    .multipart
                    .complete_multipart(&path, &partial.upload_id, parts)
                    .await
                    .map_err(|e| self.err(e))?;
                return Ok(Some(()));
            }
        }
        Ok(None)
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
