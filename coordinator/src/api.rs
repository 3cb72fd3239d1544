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

/// The kind of a command, for the audit log.
fn command_kind(spec: Option<&pb::CommandSpec>) -> String {
    let Some(kind) = spec.and_then(|s| s.kind.as_ref()) else {
        return "unknown".into();
    };
    // `Ping(PingCommand { .. })` → `ping`: the variant's name, lower case.
    let debug = format!("{kind:?}");
    debug
        .split(['(', ' ', '{'])
        .next()
        .unwrap_or("unknown")
        .to_ascii_lowercase()
}

#[tonic::async_trait]
impl fleet_server::Fleet for FleetApi {
    #[tracing::instrument(skip_all)]
    async fn list_agents(
        &self,
        req: Request<pb::ListAgentsRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        self.auth.require(&req, Role::Viewer, "agents.list", "")?;
        Ok(Response::new(pb::ListAgentsResponse {
            agents: self.fleet.agents()?,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_agent(
        &self,
        req: Request<pb::GetAgentRequest>,
    ) -> Result<Response<pb::AgentInfo>, Status> {
        let cluster = &req.get_ref().cluster_id;
        self.auth
            .require(&req, Role::Viewer, "agents.get", cluster)?;
        Ok(Response::new(self.fleet.agent(cluster)?))
    }

    #[tracing::instrument(skip_all, fields(cluster = %req.get_ref().cluster_id))]
    async fn submit_command(
        &self,
        req: Request<pb::SubmitCommandRequest>,
    ) -> Result<Response<pb::CommandStatus>, Status> {
        // What is asked of which cluster: `command.ping` on `a`.
        let action = format!("command.{}", command_kind(req.get_ref().spec.as_ref()));
        let cluster = req.get_ref().cluster_id.clone();
        let by = self.auth.require(&req, Role::Operator, &action, &cluster)?;
        let r = req.get_ref();
        let spec = r
            .spec
            .clone()
            .ok_or_else(|| Status::invalid_argument("submit_command: `spec` is required"))?;
        let submitted = self
            .fleet
            .submit(&cluster, spec, &r.request_id, &by)
            .await
            .map_err(Status::from);
        Ok(Response::new(
            self.auth
                .audit_refusal(&req, &action, &cluster, submitted)?,
        ))
    }

    #[tracing::instrument(skip_all, fields(command = %req.get_ref().command_id))]
    async fn wait_command(
        &self,
        req: Request<pb::WaitCommandRequest>,
    ) -> Result<Response<pb::CommandStatus>, Status> {
        self.auth.require(
            &req,
            Role::Viewer,
            "command.wait",
            &req.get_ref().command_id,
        )?;
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
        let cluster = &req.get_ref().cluster_id;
        let by = self
            .auth
            .require(&req, Role::Admin, "agents.forget", cluster)?;
        let forgotten = self.fleet.forget(cluster).map_err(Status::from);
        self.auth
            .audit_refusal(&req, "agents.forget", cluster, forgotten)?;
        tracing::info!(%cluster, %by, "agent forgotten");
        Ok(Response::new(pb::ForgetAgentResponse {}))
    }
}
