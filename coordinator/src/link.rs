//! The agents' side of the coordinator: one bidirectional stream per agent.
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use ferry_common::Identity;
use ferry_common::pb::{self, agent_link_server::AgentLink, agent_message::Msg as Up};
use futures::Stream;
use futures::StreamExt;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{Authorizer, peer};
use crate::background::Background;
use crate::fleet::Fleet;

const REGISTER_TIMEOUT: Duration = Duration::from_secs(15);

pub struct LinkService {
    fleet: Arc<Fleet>,
    /// Audits the sessions it refuses.
    auth: Arc<Authorizer>,
    /// Where each session's reader runs: it ends with its session (the
    /// fleet ends sessions when the drain starts) and records the close.
    background: Background,
}

impl LinkService {
    pub fn new(fleet: Arc<Fleet>, auth: Arc<Authorizer>, background: Background) -> Self {
        Self {
            fleet,
            auth,
            background,
        }
    }
}

type DownStream = Pin<Box<dyn Stream<Item = Result<pb::CoordinatorMessage, Status>> + Send>>;

#[tonic::async_trait]
impl AgentLink for LinkService {
    type SessionStream = DownStream;

    #[tracing::instrument(skip_all, fields(cluster))]
    async fn session(
        &self,
        req: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<DownStream>, Status> {
        let peer = peer(&req)?;
        let who = crate::auth::actor(&req);
        let refuse = |object: &str, status: Status| {
            self.auth.refused_by(&who, "agent.session", object, &status);
            status
        };
        let cluster = match &peer.identity {
            Identity::Agent(c) => c.clone(),
            other => {
                return Err(refuse(
                    "",
                    crate::error::denied(format!(
                        "{other} may not open an agent session; agents use a spiffe://ferry/cluster/<id> certificate"
                    )),
                ));
            }
        };
        tracing::Span::current().record("cluster", cluster.as_str());
        let mut inbound = req.into_inner();
        let first = tokio::time::timeout(REGISTER_TIMEOUT, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no register message within 15s"))??;
        let register = match first.and_then(|m| m.msg) {
            Some(Up::Register(r)) => r,
            _ => {
                return Err(Status::invalid_argument(
                    "the first message of a session must be `register`",
                ));
            }
        };
        if register.cluster_id != cluster {
            tracing::warn!(%cluster, claimed = %register.cluster_id, "agent registered as another cluster; refused");
            return Err(refuse(
                &register.cluster_id,
                crate::error::denied(format!(
                    "this certificate belongs to cluster {cluster}; it cannot register as cluster {:?}",
                    ferry_common::limits::shorten(&register.cluster_id)
                )),
            ));
        }
        let opened = self.fleet.open_session(register, peer.remote).await?;
        let fleet = self.fleet.clone();
        let (session_id, cancel, ack_tx) = (opened.session_id, opened.cancel.clone(), opened.tx);
        self.background.spawn_work(async move {
            loop {
                let msg = tokio::select! {
                    _ = cancel.cancelled() => break,
                    m = inbound.message() => m,
                };
                match msg {
                    Ok(Some(m)) => {
                        fleet.touch(&cluster, &session_id);
                        if let Err(e) = handle(&fleet, &cluster, m, &ack_tx).await {
                            tracing::error!(cluster = %cluster, error = %e, "cannot record agent message; closing session");
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(status) => {
                        tracing::info!(cluster = %cluster, %status, "agent stream ended");
                        break;
                    }
                }
            }
            fleet.close_session(&cluster, &session_id);
        });
        let stream = tokio_stream::wrappers::ReceiverStream::new(opened.rx)
            .take_until(opened.cancel.cancelled_owned());
        Ok(Response::new(Box::pin(stream)))
    }
}

async fn handle(
    fleet: &Fleet,
    cluster: &str,
    msg: pb::AgentMessage,
    ack_tx: &crate::fleet::Outbound,
) -> crate::Result<()> {
    match msg.msg {
        Some(Up::Heartbeat(_)) => {}
        Some(Up::Accepted(a)) => fleet.accepted(cluster, &a.id)?,
        Some(Up::Result(r)) => {
            let id = r.id.clone();
            fleet.complete(cluster, r)?;
            let ack = pb::CoordinatorMessage {
                msg: Some(pb::coordinator_message::Msg::ResultAck(pb::ResultAck {
                    id,
                })),
            };
            let _ = ack_tx.send(Ok(ack)).await;
        }
        Some(Up::Progress(p)) => {
            tracing::debug!(%cluster, command_id = %p.id, done = p.done, total = p.total, "{}", p.message);
            fleet.record_progress(cluster, p)?;
        }
        Some(Up::Register(_)) => tracing::warn!(%cluster, "second register on one session ignored"),
        None => {}
    }
    Ok(())
}
