//! The client API: what automation clients and the CLI call.
use std::sync::Arc;
use std::time::Duration;

use ferry_common::pb::{self, fleet_server};
use tonic::{Request, Response, Status};

use crate::auth::{Authorizer, Role};
use crate::fleet::Fleet;

/// The longest a single `WaitCommand` call holds; clients loop for longer waits.
const MAX_WAIT: Duration = Duration::from_secs(60);

pub struct FleetApi {
    fleet: Arc<Fleet>,
    auth: Arc<Authorizer>,
}

impl FleetApi {
    pub fn new(fleet: Arc<Fleet>, auth: Arc<Authorizer>) -> Self {
        Self { fleet, auth }
    }
}

#[tonic::async_trait]
impl fleet_server::Fleet for FleetApi {
    #[tracing::instrument(skip_all)]
    async fn list_agents(
        &self,
        req: Request<pb::ListAgentsRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        self.auth.require(&req, Role::Viewer)?;
        Ok(Response::new(pb::ListAgentsResponse {
            agents: self.fleet.agents()?,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_agent(
        &self,
        req: Request<pb::GetAgentRequest>,
    ) -> Result<Response<pb::AgentInfo>, Status> {
        self.auth.require(&req, Role::Viewer)?;
        Ok(Response::new(self.fleet.agent(&req.get_ref().cluster_id)?))
    }

    #[tracing::instrument(skip_all, fields(cluster = %req.get_ref().cluster_id))]
    async fn submit_command(
        &self,
        req: Request<pb::SubmitCommandRequest>,
    ) -> Result<Response<pb::CommandStatus>, Status> {
        let by = self.auth.require(&req, Role::Operator)?;
        let r = req.into_inner();
        let spec = r
            .spec
            .ok_or_else(|| Status::invalid_argument("submit_command: `spec` is required"))?;
        let status = self
            .fleet
            .submit(&r.cluster_id, spec, &r.request_id, &by)
            .await?;
        Ok(Response::new(status))
    }

    #[tracing::instrument(skip_all, fields(command = %req.get_ref().command_id))]
    async fn wait_command(
        &self,
        req: Request<pb::WaitCommandRequest>,
    ) -> Result<Response<pb::CommandStatus>, Status> {
        self.auth.require(&req, Role::Viewer)?;
        let r = req.into_inner();
        let timeout = Duration::from_millis(r.timeout_ms).min(MAX_WAIT);
        Ok(Response::new(
            self.fleet.wait(&r.command_id, timeout).await?,
        ))
    }

    #[tracing::instrument(skip_all, fields(cluster = %req.get_ref().cluster_id))]
    async fn forget_agent(
        &self,
        req: Request<pb::ForgetAgentRequest>,
    ) -> Result<Response<pb::ForgetAgentResponse>, Status> {
        let by = self.auth.require(&req, Role::Admin)?;
        let cluster = &req.get_ref().cluster_id;
        self.fleet.forget(cluster)?;
        tracing::info!(%cluster, %by, "agent forgotten");
        Ok(Response::new(pb::ForgetAgentResponse {}))
    }
}
