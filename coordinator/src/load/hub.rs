//! Pairs a client's upload with the agent that loads it. The client's
//! request stream waits here, keyed by load id, until the load's agent opens
//! `LoadData.Pull`; the agent's response stream is then the client's upload
//! itself, so HTTP/2 flow control carries backpressure from the database to
//! the client with nothing buffered here beyond the transport's windows.
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ferry_common::Identity;
use ferry_common::pb::{
    self, load_data_server::LoadData, load_pull_down, load_pull_up, load_upload,
};
use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use crate::auth::peer;
use crate::changes::Changes;

/// Live figures of one load attempt.
#[derive(Debug, Clone, Default)]
pub struct LiveProgress {
    pub file: u32,
    pub rows: u64,
    pub rows_written: u64,
    pub bytes_relayed: u64,
    pub first_chunk: Option<Instant>,
}

/// One attempt whose upload is waiting for, or flowing to, its agent.
pub struct Live {
    cluster: String,
    attempt: u32,
    upload: Mutex<Option<Streaming<pb::LoadUpload>>>,
    pub progress: Mutex<LiveProgress>,
}

#[derive(Default)]
pub struct LoadHub {
    live: Mutex<HashMap<String, Arc<Live>>>,
    /// Told as any load's live figures move, and as a load's end is recorded.
    pub changes: Changes,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl LoadHub {
    /// Parks a client's upload (after its spec) for the load's agent. Refused
    /// while another attempt of the same load is live in this process.
    pub fn offer(
        &self,
        load_id: &str,
        cluster: &str,
        attempt: u32,
        upload: Streaming<pb::LoadUpload>,
    ) -> crate::Result<Arc<Live>> {
        let mut live = lock(&self.live);
        if live.contains_key(load_id) {
            return Err(crate::Error::Precondition(format!(
                "load {load_id} is running; follow it with `ferry load watch {load_id}`"
            )));
        }
        let entry = Arc::new(Live {
            cluster: cluster.to_string(),
            attempt,
            upload: Mutex::new(Some(upload)),
            progress: Mutex::new(LiveProgress::default()),
        });
        live.insert(load_id.to_string(), entry.clone());
        Ok(entry)
    }

    /// Forgets an attempt that ended (only if it is still the current one).
    pub fn remove(&self, load_id: &str, entry: &Arc<Live>) {
        let mut live = lock(&self.live);
        if live.get(load_id).is_some_and(|e| Arc::ptr_eq(e, entry)) {
            live.remove(load_id);
        }
    }

    pub fn progress(&self, load_id: &str) -> Option<LiveProgress> {
        lock(&self.live)
            .get(load_id)
            .map(|e| lock(&e.progress).clone())
    }

    /// Hands the waiting upload to the agent of the load's cluster, once,
    /// and only to the command of the same attempt.
    fn take(
        &self,
        load_id: &str,
        cluster: &str,
        attempt: u32,
    ) -> Result<(Arc<Live>, Streaming<pb::LoadUpload>), Status> {
        let entry = lock(&self.live).get(load_id).cloned();
        // The id is the agent's input here: errors repeat only its start.
        let load_id = &ferry_common::limits::shorten(load_id);
        let entry = entry.ok_or_else(|| {
            Status::failed_precondition(format!(
                "no upload of load {load_id} is waiting at this coordinator (the client's upload ended, or the coordinator restarted); submit the load again"
            ))
        })?;
        if entry.cluster != cluster {
            return Err(crate::error::denied(format!(
                "cluster {cluster} is not the target of load {load_id}"
            )));
        }
        if entry.attempt != attempt {
            return Err(Status::failed_precondition(format!(
                "attempt {attempt} of load {load_id} is over (attempt {} is running); nothing to pull",
                entry.attempt
            )));
        }
        let upload = lock(&entry.upload).take().ok_or_else(|| {
            Status::failed_precondition(format!(
                "the upload of load {load_id} was already pulled by an earlier stream; submit the load again"
            ))
        })?;
        Ok((entry, upload))
    }
}

/// The gRPC face of the hub for agents.
pub struct LoadDataService {
    pub hub: Arc<LoadHub>,
    /// Audits the pulls it refuses.
    pub auth: Arc<crate::auth::Authorizer>,
    /// Where the agents' progress readers run.
    pub background: crate::background::Background,
}

type PullStream = Pin<Box<dyn Stream<Item = Result<pb::LoadPullDown, Status>> + Send>>;

fn chunk_down(
    entry: &Live,
    changes: &Changes,
    item: Result<pb::LoadUpload, Status>,
) -> Result<pb::LoadPullDown, Status> {
    let msg = match item.map(|m| m.msg) {
        Ok(Some(load_upload::Msg::Chunk(c))) => {
            let mut p = lock(&entry.progress);
            p.bytes_relayed += c.data.len() as u64;
            p.first_chunk.get_or_insert_with(Instant::now);
            drop(p);
            changes.tell();
            load_pull_down::Msg::Chunk(c)
        }
        Ok(Some(load_upload::Msg::End(e))) => load_pull_down::Msg::End(e),
        Ok(Some(load_upload::Msg::Spec(_)) | None) => {
            return Err(Status::invalid_argument(
                "the client sent something other than chunks after the spec",
            ));
        }
        // Passed on as an error, never as an end: a broken upload must not load.
        Err(status) => {
            return Err(Status::aborted(format!(
                "the client's upload broke: {}",
                status.message()
            )));
        }
    };
    Ok(pb::LoadPullDown { msg: Some(msg) })
}

#[tonic::async_trait]
impl LoadData for LoadDataService {
    type PullStream = PullStream;

    async fn pull(
        &self,
        req: Request<Streaming<pb::LoadPullUp>>,
    ) -> Result<Response<PullStream>, Status> {
        let who = crate::auth::actor(&req);
        let cluster = match peer(&req)?.identity {
            Identity::Agent(c) => c,
            other => {
                let status = crate::error::denied(format!(
                    "{other} may not pull a load; only the agent of the load's cluster may"
                ));
                self.auth.refused_by(&who, "load.pull", "", &status);
                return Err(status);
            }
        };
        let mut inbound = req.into_inner();
        let hello = match inbound.message().await?.and_then(|m| m.msg) {
            Some(load_pull_up::Msg::Hello(h)) => h,
            _ => {
                return Err(Status::invalid_argument(
                    "the first pull message must be `hello`",
                ));
            }
        };
        let taken = self.hub.take(&hello.load_id, &cluster, hello.attempt);
        let (entry, upload) =
            self.auth
                .audit_refusal_by(&who, "load.pull", &hello.load_id, taken)?;
        tracing::info!(load = %hello.load_id, %cluster, "agent pulling load");
        let progress_of = entry.clone();
        let hub = self.hub.clone();
        self.background.spawn_stream(async move {
            while let Ok(Some(m)) = inbound.message().await {
                if let Some(load_pull_up::Msg::Progress(p)) = m.msg {
                    let mut live = lock(&progress_of.progress);
                    live.file = p.file;
                    live.rows = p.rows;
                    live.rows_written = p.rows_written;
                    drop(live);
                    hub.changes.tell();
                }
            }
        });
        let hub = self.hub.clone();
        let stream = upload.map(move |item| chunk_down(&entry, &hub.changes, item));
        Ok(Response::new(Box::pin(stream)))
    }
}
