//! The source side: list, then stream what the sink asks for.
use std::collections::HashMap;
use std::sync::Arc;

use bytes::BytesMut;
use ferry_common::backoff::Backoff;
use ferry_common::pb::{self, source_down::Msg as Down, source_up::Msg as Up};
use futures::StreamExt;
use object_store::{GetOptions, GetRange};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::{
    DEFAULT_PARALLELISM, RelayContext, RelayError, SessionError, check_chunk_size, link_or_fatal,
    sha256,
};
use crate::objects::Scoped;

const MANIFEST_BATCH: usize = 1000;

fn up(msg: Up) -> pb::SourceUp {
    pb::SourceUp { msg: Some(msg) }
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
    // Room for one chunk per sender plus manifest batches: bounded memory.
    let (tx, rx) = mpsc::channel::<pb::SourceUp>(parallelism as usize + 2);
    let _ = tx
        .send(up(Up::Hello(pb::RelayHello {
            job_id: cmd.job_id.clone(),
        })))
        .await;
    let mut down = ctx
        .client(channel, chunk_size)
        .source(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(|s| link_or_fatal(&cmd.job_id, s))?
        .into_inner();
    let permits = Arc::new(Semaphore::new(parallelism as usize));
    let mut round = Round::start(scope, &tx, chunk_size, generation);
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
                    return Err(SessionError::Fatal(RelayError::Invalid(e.to_string())));
                }
                if !req.reason.is_empty() {
                    tracing::warn!(key = %req.key, offset = req.offset, reason = %req.reason, "sink asked for a resend");
                }
                round.send(scope, req, permits.clone(), &tx);
            }
            Some(Down::Send(_)) => {} // for an older manifest
            Some(Down::Restart(r)) => {
                tracing::info!(job = %cmd.job_id, reason = %r.reason, "relay restarting with a new manifest");
                round.stop();
                round = Round::start(scope, &tx, chunk_size, generation);
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
    chunk_size: u64,
    cancel: CancellationToken,
    senders: HashMap<String, CancellationToken>,
}

impl Round {
    fn start(
        scope: &Scoped,
        tx: &mpsc::Sender<pb::SourceUp>,
        chunk_size: u64,
        generation: &mut u64,
    ) -> Self {
        *generation += 1;
        let round = Round {
            generation: *generation,
            chunk_size,
            cancel: CancellationToken::new(),
            senders: HashMap::new(),
        };
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

    /// Starts (or restarts from a new offset) the sender of one object.
    fn send(
        &mut self,
        scope: &Scoped,
        req: pb::SendRequest,
        permits: Arc<Semaphore>,
        tx: &mpsc::Sender<pb::SourceUp>,
    ) {
        if let Some(old) = self.senders.remove(&req.key) {
            old.cancel();
        }
        let token = self.cancel.child_token();
        self.senders.insert(req.key.clone(), token.clone());
        let (scope, tx, chunk_size) = (scope.clone(), tx.clone(), self.chunk_size);
        tokio::spawn(async move {
            let Ok(_permit) = permits.acquire_owned().await else {
                return;
            };
            tokio::select! {
                _ = token.cancelled() => {}
                r = send_with_retries(&scope, &req, chunk_size, &tx) => if let Err(e) = r {
                    let _ = tx.send(up(Up::Failure(pb::RelayFailure { message: e.to_string() }))).await;
                }
            }
        });
    }

    fn stop(&self) {
        self.cancel.cancel();
    }
}

async fn send_manifest(
    scope: &Scoped,
    tx: &mpsc::Sender<pb::SourceUp>,
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
        batch.push(pb::ManifestEntry {
            key,
            size: meta.size,
            version: meta.e_tag.clone().unwrap_or_else(|| {
                format!("{}-{}", meta.size, meta.last_modified.timestamp_millis())
            }),
        });
        if batch.len() == MANIFEST_BATCH {
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

const SEND_ATTEMPTS: u32 = 3;

/// A store that fails now may answer in a moment; after a few tries the
/// transfer fails with the store's own error. A retry starts again at the
/// requested offset: the sink drops what it already has.
async fn send_with_retries(
    scope: &Scoped,
    req: &pb::SendRequest,
    chunk_size: u64,
    tx: &mpsc::Sender<pb::SourceUp>,
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

/// Reads the object from `req.offset` and sends it in chunk-aligned chunks;
/// never more than one chunk of it in memory.
async fn send_object(
    scope: &Scoped,
    req: &pb::SendRequest,
    chunk_size: u64,
    tx: &mpsc::Sender<pb::SourceUp>,
) -> Result<(), RelayError> {
    let path = scope.path(&req.key)?;
    let store_err = |source| RelayError::Store {
        key: req.key.clone(),
        source,
    };
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
    let size = head.meta.size;
    let mut offset = req.offset;
    let chunk = |data: bytes::Bytes, offset: u64, last: bool| {
        up(Up::Chunk(pb::ObjectChunk {
            key: req.key.clone(),
            version: req.version.clone(),
            offset,
            sha256: sha256(&data).into(),
            data,
            last,
        }))
    };
    if offset >= size {
        // Zero-byte objects (and a resend at the very end) are one empty, last chunk.
        let _ = tx.send(chunk(bytes::Bytes::new(), size, true)).await;
        return Ok(());
    }
    let got = scope
        .open
        .store
        .get_opts(
            &path,
            GetOptions {
                range: Some(GetRange::Offset(offset)),
                ..Default::default()
            },
        )
        .await
        .map_err(store_err)?;
    let mut stream = got.into_stream();
    let mut buf = BytesMut::with_capacity(chunk_size as usize);
    while let Some(piece) = stream.next().await {
        let mut piece = piece.map_err(store_err)?;
        while !piece.is_empty() {
            let room = chunk_size as usize - buf.len();
            let take = room.min(piece.len());
            buf.extend_from_slice(&piece.split_to(take));
            if buf.len() == chunk_size as usize {
                let data = buf.split().freeze();
                let len = data.len() as u64;
                let last = offset + len >= size;
                if tx.send(chunk(data, offset, last)).await.is_err() {
                    return Ok(());
                }
                offset += len;
                buf.reserve(chunk_size as usize);
            }
        }
    }
    if !buf.is_empty() || offset < size {
        let data = buf.split().freeze();
        let len = data.len() as u64;
        let _ = tx.send(chunk(data, offset, true)).await;
        offset += len;
    }
    if offset != size {
        tracing::warn!(key = %req.key, expected = size, read = offset, "object changed size while being read");
    }
    Ok(())
}
