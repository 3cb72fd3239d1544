//! The source side: list, then stream what the sink asks for.
use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use ferry_common::backoff::Backoff;
use ferry_common::pb::{self, source_down::Msg as Down, source_up::Msg as Up};
use futures::StreamExt;
use object_store::{GetOptions, GetRange};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::wire::{Frame, Outgoing};
use super::{
    ChunkHasher, DEFAULT_PARALLELISM, FRAME_SIZE, FRAMES_AHEAD, RelayContext, RelayError,
    SessionError, check_chunk_size, link_or_fatal, part,
};
use crate::objects::Scoped;

const MANIFEST_BATCH: usize = 1000;
/// ...and at most this many bytes of keys and versions, so a batch of long
/// keys still fits a relay message (ferry_common::limits::RELAY_MESSAGE).
const MANIFEST_BATCH_BYTES: usize = 512 * 1024;

fn up(msg: Up) -> Outgoing {
    Outgoing::from(msg)
}

/// Runs the source of `cmd` until the sink reports the transfer done.
pub async fn run_source(
    ctx: &RelayContext,
    cmd: &pb::RelaySourceCommand,
) -> Result<pb::TransferCounts, RelayError> {
    let chunk_size = check_chunk_size(cmd.chunk_size)?;
    let parallelism = if cmd.parallelism == 0 {
        DEFAULT_PARALLELISM
    } else {
        cmd.parallelism.min(64)
    };
    let scope = ctx.stores.scoped(&cmd.store, &cmd.prefix)?;
    let mut backoff = Backoff::new(ctx.config.backoff_base, ctx.config.backoff_cap);
    // Generations only grow, so a sink never mistakes an old manifest for a new one.
    let mut generation = ferry_common::time::unix_ms();
    loop {
        match session(ctx, cmd, &scope, chunk_size, parallelism, &mut generation).await {
            Ok(Some(counts)) => return Ok(counts),
            Ok(None) => tracing::info!(job = %cmd.job_id, "relay source stream ended; redialling"),
            Err(SessionError::Fatal(e)) => return Err(e),
            Err(SessionError::Link(e)) => {
                tracing::warn!(job = %cmd.job_id, error = %e, "relay source link failed; redialling")
            }
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

async fn session(
    ctx: &RelayContext,
    cmd: &pb::RelaySourceCommand,
    scope: &Scoped,
    chunk_size: u64,
    parallelism: u32,
    generation: &mut u64,
) -> Result<Option<pb::TransferCounts>, SessionError> {
    let channel = ctx
        .channel()
        .await
        .map_err(|e| SessionError::Link(e.to_string()))?;
    // A few frames read ahead per sender plus manifest batches: bounded memory.
    let (tx, rx) = mpsc::channel::<Outgoing>(parallelism as usize * FRAMES_AHEAD + 2);
    let _ = tx
        .send(up(Up::Hello(pb::RelayHello {
            job_id: cmd.job_id.clone(),
        })))
        .await;
    let mut down = ctx
        .open_source(channel, tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(|s| link_or_fatal(&cmd.job_id, s))?;
    let permits = Arc::new(Semaphore::new(parallelism as usize));
    let mut round = Round::start(scope, &tx, chunk_size, generation, &permits, parallelism);
    loop {
        let msg = match down.message().await {
            Ok(Some(m)) => m,
            Ok(None) => {
                round.stop();
                return Ok(None);
            }
            Err(s) => {
                round.stop();
                return Err(link_or_fatal(&cmd.job_id, s));
            }
        };
        match msg.msg {
            Some(Down::Send(req)) if req.generation == round.generation => {
                if let Err(e) = crate::objects::check_key(&req.key) {
                    let _ = tx
                        .send(up(Up::Failure(pb::RelayFailure {
                            message: e.to_string(),
                        })))
                        .await;
                    round.stop();
                    part(tx, &mut down).await;
                    return Err(SessionError::Fatal(RelayError::Invalid(e.to_string())));
                }
                if !req.reason.is_empty() {
                    tracing::warn!(key = %req.key, offset = req.offset, reason = %req.reason, "sink asked for a resend");
                }
                round.send(req);
            }
            Some(Down::Send(_)) => {} // for an older manifest
            Some(Down::Restart(r)) => {
                tracing::info!(job = %cmd.job_id, reason = %r.reason, "relay restarting with a new manifest");
                round.stop();
                round = Round::start(scope, &tx, chunk_size, generation, &permits, parallelism);
            }
            Some(Down::Finished(f)) => {
                round.stop();
                return Ok(Some(f.counts.unwrap_or_default()));
            }
            Some(Down::Failure(f)) => {
                round.stop();
                return Err(SessionError::Fatal(RelayError::Peer {
                    job: cmd.job_id.clone(),
                    message: f.message,
                }));
            }
            None => {}
        }
    }
}

/// One manifest and the senders it started.
struct Round {
    generation: u64,
    cancel: CancellationToken,
    senders: HashMap<String, CancellationToken>,
    /// Requests not yet taken by a sender. A queue and a few senders rather
    /// than a task per request: the sink asks for every object at once, and
    /// 100,000 waiting tasks held 175 MiB here (a queued request is its key,
    /// version and token).
    queue: mpsc::UnboundedSender<(pb::SendRequest, CancellationToken)>,
}

type Queue = Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<(pb::SendRequest, CancellationToken)>>>;

impl Round {
    /// Lists the source into a new manifest, with one sender per permit
    /// taking the requests that come for it.
    fn start(
        scope: &Scoped,
        tx: &mpsc::Sender<Outgoing>,
        chunk_size: u64,
        generation: &mut u64,
        permits: &Arc<Semaphore>,
        parallelism: u32,
    ) -> Self {
        *generation += 1;
        let (queue, requests) = mpsc::unbounded_channel();
        let round = Round {
            generation: *generation,
            cancel: CancellationToken::new(),
            senders: HashMap::new(),
            queue,
        };
        let requests: Queue = Arc::new(tokio::sync::Mutex::new(requests));
        for _ in 0..parallelism.max(1) {
            tokio::spawn(sender(
                scope.clone(),
                tx.clone(),
                chunk_size,
                requests.clone(),
                permits.clone(),
                round.cancel.clone(),
            ));
        }
        let (scope, tx, cancel, generation) = (
            scope.clone(),
            tx.clone(),
            round.cancel.clone(),
            round.generation,
        );
        tokio::spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                r = send_manifest(&scope, &tx, generation, chunk_size) => if let Err(e) = r {
                    tracing::error!(error = %e, "cannot list the source");
                    let _ = tx.send(up(Up::Failure(pb::RelayFailure { message: e.to_string() }))).await;
                }
            }
        });
        round
    }

    /// Queues (or requeues from a new offset) the sending of one object,
    /// cancelling what was sent of it before.
    fn send(&mut self, req: pb::SendRequest) {
        if let Some(old) = self.senders.remove(&req.key) {
            old.cancel();
        }
        let token = self.cancel.child_token();
        self.senders.insert(req.key.clone(), token.clone());
        // The senders hold the receiver until the round stops.
        let _ = self.queue.send((req, token));
    }

    fn stop(&self) {
        self.cancel.cancel();
    }
}

async fn send_manifest(
    scope: &Scoped,
    tx: &mpsc::Sender<Outgoing>,
    generation: u64,
    chunk_size: u64,
) -> Result<(), RelayError> {
    let _ = tx
        .send(up(Up::ManifestBegin(pb::ManifestBegin {
            generation,
            chunk_size,
        })))
        .await;
    let root = scope.list_root();
    let mut listing = scope.open.store.list(root.as_ref());
    let mut batch = Vec::with_capacity(MANIFEST_BATCH);
    let mut batch_bytes = 0usize;
    let (mut objects, mut bytes) = (0u64, 0u64);
    while let Some(meta) = listing.next().await {
        let meta = meta.map_err(|source| RelayError::List {
            store: scope.name.clone(),
            prefix: scope.prefix.clone(),
            source,
        })?;
        let Some(key) = scope.key_of(&meta.location) else {
            continue;
        };
        objects += 1;
        bytes += meta.size;
        // Key and version, plus what protobuf adds around them.
        batch_bytes += key.len() + meta.e_tag.as_ref().map_or(32, String::len) + 32;
        batch.push(pb::ManifestEntry {
            key,
            size: meta.size,
            version: meta.e_tag.clone().unwrap_or_else(|| {
                format!("{}-{}", meta.size, meta.last_modified.timestamp_millis())
            }),
        });
        if batch.len() == MANIFEST_BATCH || batch_bytes >= MANIFEST_BATCH_BYTES {
            batch_bytes = 0;
            let entries = std::mem::replace(&mut batch, Vec::with_capacity(MANIFEST_BATCH));
            if tx
                .send(up(Up::Manifest(pb::ManifestBatch {
                    generation,
                    entries,
                })))
                .await
                .is_err()
            {
                return Ok(());
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx
            .send(up(Up::Manifest(pb::ManifestBatch {
                generation,
                entries: batch,
            })))
            .await;
    }
    let _ = tx
        .send(up(Up::ManifestEnd(pb::ManifestEnd {
            generation,
            objects,
            bytes,
        })))
        .await;
    tracing::info!(store = %scope.name, prefix = %scope.prefix, objects, bytes, "manifest sent");
    Ok(())
}

/// Takes queued requests one at a time and sends each object while holding
/// a permit (shared with the senders of a round being replaced), until the
/// round stops.
async fn sender(
    scope: Scoped,
    tx: mpsc::Sender<Outgoing>,
    chunk_size: u64,
    requests: Queue,
    permits: Arc<Semaphore>,
    round: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            _ = round.cancelled() => return,
            next = async { requests.lock().await.recv().await } => next,
        };
        let Some((req, token)) = next else { return };
        let send = async {
            let Ok(_permit) = permits.acquire().await else {
                return Ok(());
            };
            send_with_retries(&scope, &req, chunk_size, &tx).await
        };
        tokio::select! {
            _ = token.cancelled() => {}
            r = send => if let Err(e) = r {
                let _ = tx.send(up(Up::Failure(pb::RelayFailure { message: e.to_string() }))).await;
            }
        }
    }
}

const SEND_ATTEMPTS: u32 = 3;

/// A store that fails now may answer in a moment; after a few tries the
/// transfer fails with the store's own error. A retry starts again at the
/// requested offset: the sink drops what it already has.
async fn send_with_retries(
    scope: &Scoped,
    req: &pb::SendRequest,
    chunk_size: u64,
    tx: &mpsc::Sender<Outgoing>,
) -> Result<(), RelayError> {
    let mut attempt = 1;
    loop {
        match send_object(scope, req, chunk_size, tx).await {
            Ok(()) => return Ok(()),
            Err(e) if attempt < SEND_ATTEMPTS => {
                tracing::warn!(key = %req.key, attempt, error = %e, "reading the object failed; retrying");
                tokio::time::sleep(std::time::Duration::from_millis(500 * u64::from(attempt)))
                    .await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Reads the object from `req.offset` and sends it in chunk-aligned chunks,
/// each as frames of at most [`FRAME_SIZE`] hashed as they are read: never
/// more than one frame of it in memory here, and the next frame is read
/// while the previous ones are on their way.
async fn send_object(
    scope: &Scoped,
    req: &pb::SendRequest,
    chunk_size: u64,
    tx: &mpsc::Sender<Outgoing>,
) -> Result<(), RelayError> {
    let path = scope.path(&req.key)?;
    let store_err = |source| RelayError::Store {
        key: req.key.clone(),
        source,
    };
    // A first request reads the whole object (its size comes with it); a
    // resend asks where the object ends first, as a range past it is an error.
    let size = if req.offset == 0 {
        None
    } else {
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
            .map_err(store_err)?;
        Some(head.meta.size)
    };
    let mut frames = Frames::new(req, chunk_size);
    if let Some(size) = size
        && req.offset >= size
    {
        // A resend at the very end is one empty, last chunk.
        frames.size = size;
        frames.offset = size;
        frames.frame_start = size;
        let _ = tx.send(frames.finish_chunk(true)).await;
        return Ok(());
    }
    let got = scope
        .open
        .store
        .get_opts(
            &path,
            GetOptions {
                range: (req.offset > 0).then_some(GetRange::Offset(req.offset)),
                ..Default::default()
            },
        )
        .await
        .map_err(store_err)?;
    frames.size = size.unwrap_or(got.meta.size);
    if frames.size == 0 {
        // Zero-byte objects are one empty, last chunk.
        let _ = tx.send(frames.finish_chunk(true)).await;
        return Ok(());
    }
    let mut stream = got.into_stream();
    while let Some(piece) = stream.next().await {
        let mut piece = piece.map_err(store_err)?;
        while !piece.is_empty() {
            let take = frames.room().min(piece.len());
            frames.push(piece.split_to(take));
            if let Some(frame) = frames.take_full()
                && tx.send(frame).await.is_err()
            {
                return Ok(());
            }
        }
    }
    if frames.pending() || frames.offset < frames.size {
        tracing::warn!(key = %req.key, expected = frames.size, read = frames.offset, "object changed size while being read");
        // What was read ends the object; the sink refuses it and asks again.
        let _ = tx.send(frames.finish_chunk(true)).await;
    }
    Ok(())
}

/// Cuts what is read into frames and chunks, hashing each read as it comes.
/// A frame keeps the reads themselves (slices of the S3 client's buffers):
/// its data is copied once, by the encoder, into the gRPC message.
struct Frames<'a> {
    req: &'a pb::SendRequest,
    chunk_size: u64,
    size: u64,
    /// Where the next byte read belongs in the object.
    offset: u64,
    /// Where the frame being filled starts.
    frame_start: u64,
    pieces: Vec<Bytes>,
    /// Bytes in `pieces`.
    len: usize,
    digest: ChunkHasher,
}

impl<'a> Frames<'a> {
    fn new(req: &'a pb::SendRequest, chunk_size: u64) -> Self {
        Self {
            req,
            chunk_size,
            size: 0,
            offset: req.offset,
            frame_start: req.offset,
            pieces: vec![],
            len: 0,
            digest: ChunkHasher::new(),
        }
    }

    /// Bytes that still fit in the current frame without crossing a chunk.
    fn room(&self) -> usize {
        let to_chunk_end = self.chunk_size - self.offset % self.chunk_size;
        (FRAME_SIZE - self.len).min(to_chunk_end.min(usize::MAX as u64) as usize)
    }

    fn push(&mut self, data: Bytes) {
        self.digest.update(&data);
        self.offset += data.len() as u64;
        self.len += data.len();
        self.pieces.push(data);
    }

    fn pending(&self) -> bool {
        self.len > 0
    }

    /// The current frame if it is full or ends a chunk or the object.
    fn take_full(&mut self) -> Option<Outgoing> {
        let chunk_end = self.offset.is_multiple_of(self.chunk_size);
        if self.offset >= self.size || chunk_end {
            return Some(self.finish_chunk(self.offset >= self.size));
        }
        if self.len < FRAME_SIZE {
            return None;
        }
        Some(self.frame(false, vec![], true))
    }

    /// The final frame of the current chunk, with the chunk's hash.
    fn finish_chunk(&mut self, last: bool) -> Outgoing {
        let digest = std::mem::take(&mut self.digest).finalize();
        self.frame(last, digest.as_bytes().to_vec(), false)
    }

    fn frame(&mut self, last: bool, blake3: Vec<u8>, more: bool) -> Outgoing {
        let offset = std::mem::replace(&mut self.frame_start, self.offset);
        Outgoing::Frame(Frame {
            head: pb::ObjectChunk {
                key: self.req.key.clone(),
                version: self.req.version.clone(),
                offset,
                data: Bytes::new(),
                blake3: blake3.into(),
                sha256: Default::default(),
                last,
                more,
            },
            pieces: std::mem::take(&mut self.pieces),
            len: std::mem::take(&mut self.len),
        })
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    #[test]
    fn frames_stay_within_chunks_and_end_each_with_its_digest() {
        let chunk = 5 * 1024 * 1024u64;
        let size = 2 * chunk + 12_345;
        let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let req = pb::SendRequest {
            key: "k".into(),
            ..Default::default()
        };
        let mut frames = Frames::new(&req, chunk);
        frames.size = size;
        let mut out = vec![];
        // Reads of an awkward size, as a store returns them.
        let whole = Bytes::from(data.clone());
        for at in (0..whole.len()).step_by(300_001) {
            let mut piece = whole.slice(at..(at + 300_001).min(whole.len()));
            while !piece.is_empty() {
                let take = frames.room().min(piece.len());
                frames.push(piece.split_to(take));
                out.extend(frames.take_full());
            }
        }
        assert!(!frames.pending());
        // As the coordinator reads them.
        let out: Vec<pb::SourceUp> = out
            .iter()
            .map(|m| pb::SourceUp::decode(m.encode_to_vec().as_slice()).expect("decodes"))
            .collect();
        let (mut offset, mut chunk_start) = (0u64, 0u64);
        for (i, m) in out.iter().enumerate() {
            let Some(Up::Chunk(c)) = &m.msg else {
                panic!("not a chunk")
            };
            assert_eq!(c.offset, offset);
            assert!(c.data.len() <= FRAME_SIZE && !c.data.is_empty());
            assert_eq!(&c.data[..], &data[offset as usize..][..c.data.len()]);
            offset += c.data.len() as u64;
            assert_eq!(c.last, i == out.len() - 1);
            if c.more {
                assert!(c.blake3.is_empty() && c.sha256.is_empty());
                assert!(!offset.is_multiple_of(chunk));
            } else {
                assert!(offset.is_multiple_of(chunk) || offset == size);
                assert_eq!(
                    c.blake3.as_ref(),
                    blake3::hash(&data[chunk_start as usize..offset as usize]).as_bytes()
                );
                chunk_start = offset;
            }
        }
        assert_eq!(offset, size);
    }
}
