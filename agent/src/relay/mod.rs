//! The agent's side of the relay. The source lists a prefix and streams the
//! objects the sink asks for, chunk by chunk, each chunk with its BLAKE3 hash;
//! the sink compares the source's manifest with what it holds, asks only for
//! what is missing or changed (from the last verified chunk of a partial
//! object), verifies every chunk, and makes an object visible only when all
//! of it is verified. Both sides redial the coordinator when the link breaks
//! and start again from the sink's durable state.
mod sink;
mod source;
mod state;
mod wire;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferry_common::pb;
use tonic::transport::Channel;

pub use sink::run_sink;
pub use source::run_source;

use crate::AgentConfig;
use crate::objects::{Stores, StoresConfig};
use crate::progress::Progress;

/// Default chunk: the resume unit and the multipart part size (S3 wants ≥ 5 MiB).
pub const DEFAULT_CHUNK_SIZE: u64 = 8 * 1024 * 1024;
pub const DEFAULT_PARALLELISM: u32 = 4;
/// A chunk crosses in frames of at most this much: what each hop holds per message.
pub const FRAME_SIZE: usize = ferry_common::limits::RELAY_FRAME;
/// Frames each object's sender may read ahead of the link.
const FRAMES_AHEAD: usize = 4;
/// S3 refuses multipart parts below 5 MiB (but the last), and a chunk is a part.
pub const MIN_CHUNK_SIZE: u64 = 5 * 1024 * 1024;
/// The largest chunk anyone may ask for: it bounds memory everywhere.
pub const MAX_CHUNK_SIZE: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Objects(#[from] crate::objects::ObjectsError),
    #[error("object {key}: {source}")]
    Store {
        key: String,
        source: object_store::Error,
    },
    #[error("listing {prefix:?} of store {store}: {source}")]
    List {
        store: String,
        prefix: String,
        source: object_store::Error,
    },
    #[error("relay state {path}: {message}")]
    State { path: PathBuf, message: String },
    #[error("the other side of transfer {job} failed: {message}")]
    Peer { job: String, message: String },
    #[error("transfer {job}: object {key} failed {attempts} times; last error: {message}")]
    GaveUp {
        job: String,
        key: String,
        attempts: u32,
        message: String,
    },
    #[error("invalid relay request: {0}")]
    Invalid(String),
}

/// What executors need besides their command.
#[derive(Clone)]
pub struct RelayContext {
    pub config: Arc<AgentConfig>,
    pub stores: Arc<Stores>,
    /// Where the sink keeps what it has verified.
    pub state_dir: PathBuf,
    /// Where executors report progress (sent up the link while it is up).
    pub progress: Progress,
}

impl RelayContext {
    /// A context for `config` with its stores opened lazily.
    pub fn new(
        config: AgentConfig,
        stores: StoresConfig,
        state_dir: PathBuf,
        progress: Progress,
    ) -> Self {
        RelayContext {
            config: Arc::new(config),
            stores: Arc::new(Stores::new(stores)),
            state_dir,
            progress,
        }
    }

    async fn channel(&self) -> Result<Channel, ferry_common::tls::ConnectError> {
        ferry_common::tls::connect_to(
            &self.config.coordinator,
            &self.config.tls_paths(),
            self.config.coordinator_check(),
            Duration::from_secs(10),
        )
        .await
    }

    /// Relay messages are one frame and its header at most, whatever the
    /// chunk size: that is all either side accepts.
    fn client(&self, channel: Channel) -> pb::relay_client::RelayClient<Channel> {
        let limit = ferry_common::limits::RELAY_MESSAGE;
        pb::relay_client::RelayClient::new(channel)
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit)
    }

    /// `Relay.Source`, called as the generated client would, but with frames
    /// encoded from the pieces they were read in (`wire.rs`).
    async fn open_source(
        &self,
        channel: Channel,
        up: impl futures::Stream<Item = wire::Outgoing> + Send + 'static,
    ) -> Result<tonic::Streaming<pb::SourceDown>, tonic::Status> {
        let limit = ferry_common::limits::RELAY_MESSAGE;
        let mut grpc = tonic::client::Grpc::new(channel)
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit);
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("the relay link is not ready: {e}")))?;
        let path = format!("/{}/Source", pb::relay_server::SERVICE_NAME);
        let path = tonic::codegen::http::uri::PathAndQuery::try_from(path)
            .map_err(|e| tonic::Status::internal(format!("the relay's source path: {e}")))?;
        let codec = ferry_proto::codec::Codec::<wire::Outgoing, pb::SourceDown>::default();
        grpc.streaming(tonic::Request::new(up), path, codec)
            .await
            .map(tonic::Response::into_inner)
    }
}

/// How a relay session ended badly.
enum SessionError {
    /// The link broke: redial.
    Link(String),
    /// The transfer cannot succeed: stop.
    Fatal(RelayError),
}

/// How long a side that ends a session itself waits for the coordinator to
/// take what it last sent.
const PARTING: Duration = Duration::from_secs(5);

/// Ends a session's stream so that what was just queued on it (a failure's
/// reason) reaches the coordinator: dropping the response while the request
/// still has messages to send resets the HTTP/2 stream and loses them. Our
/// side is closed, then we wait (at most [`PARTING`]) for the coordinator
/// to close its own, which it does once it has read ours to the end.
async fn part<T, M>(tx: tokio::sync::mpsc::Sender<T>, down: &mut tonic::Streaming<M>) {
    drop(tx);
    let _ = tokio::time::timeout(PARTING, async {
        while let Ok(Some(_)) = down.message().await {}
    })
    .await;
}

/// Refusals by the coordinator are final; anything else is a broken link.
fn link_or_fatal(job: &str, s: tonic::Status) -> SessionError {
    match s.code() {
        tonic::Code::PermissionDenied | tonic::Code::NotFound | tonic::Code::InvalidArgument => {
            SessionError::Fatal(RelayError::Peer {
                job: job.to_string(),
                message: s.message().to_string(),
            })
        }
        _ => SessionError::Link(s.to_string()),
    }
}

/// What checks a chunk in transit: BLAKE3, a fraction of SHA-256's CPU per
/// byte, spent twice for every byte relayed (source and sink). What
/// verification compares between the stores is not this but its own
/// SHA-256 of the stored objects (`migrate/inventory.rs`).
pub(crate) type ChunkHasher = blake3::Hasher;

pub fn sha256(data: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .to_vec()
}

fn check_chunk_size(chunk_size: u64) -> Result<u64, RelayError> {
    match chunk_size {
        0 => Ok(DEFAULT_CHUNK_SIZE),
        n if n > MAX_CHUNK_SIZE => Err(RelayError::Invalid(format!(
            "chunk size {n} is larger than the maximum {MAX_CHUNK_SIZE}"
        ))),
        n if n < MIN_CHUNK_SIZE => Err(RelayError::Invalid(format!(
            "chunk size {n} is smaller than {MIN_CHUNK_SIZE}: S3 refuses multipart parts under 5 MiB"
        ))),
        n => Ok(n),
    }
}
