//! The `Migrations` gRPC service: roles enforced, every call audited
//! (refused calls too), the engine does the work.
use std::pin::Pin;
use std::sync::Arc;

use ferry_common::pb::{self, migrations_server::Migrations};
use ferry_common::telemetry;
use futures::Stream;
use tokio::sync::broadcast::error::RecvError;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::engine::Engine;
use super::lifecycle::is_resting;
use super::refs::Actor;
use super::request::MigrationRequest;
use crate::auth::{Authorizer, Role, actor};

pub struct MigrationsApi {
    engine: Engine,
    auth: Arc<Authorizer>,
}

impl MigrationsApi {
    pub fn new(engine: Engine, auth: Arc<Authorizer>) -> Self {
        Self { engine, auth }
    }

    /// The caller, if allowed; a refusal is audited with who tried.
    fn allow<T>(
        &self,
        req: &Request<T>,
        needed: Role,
        action: &str,
        migration: &str,
    ) -> Result<Actor, Status> {
        match self.auth.check(req, needed) {
            Ok(name) => Ok(Actor::Client(format!("client/{name}"))),
            Err(status) => {
                let who = Actor::Client(actor(req));
                tracing::warn!(%who, %action, %migration, reason = %status.message(), "call refused");
                self.engine.audit(
                    &who,
                    &format!("{action}-denied"),
                    migration,
                    status.message().to_string(),
                );
                Err(status)
            }
        }
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::MigrationEvent, Status>> + Send>>;

/// The span of a call, in the trace the caller sent (if any): the preflight
/// commands it sends to agents continue it.
fn call_span(name: &'static str, req: &Request<pb::MigrationRequest>) -> tracing::Span {
    let r = req.get_ref();
    let span = tracing::info_span!(
        "call",
        otel.name = name,
        registry = %r.registry,
        from = %r.source_cluster,
        to = %r.target_cluster,
    );
    telemetry::continue_call(&span, req.metadata());
    span
}

/// A watch ends with the migration's end, or when it holds after a stage copy.
fn ends_watch(e: &pb::MigrationEvent) -> bool {
    e.kind() == pb::EventKind::Finished
        || (e.kind() == pb::EventKind::State && e.state() == pb::MigrationState::Staged)
}

#[tonic::async_trait]
impl Migrations for MigrationsApi {
    async fn plan_migration(
        &self,
        req: Request<pb::MigrationRequest>,
    ) -> Result<Response<pb::MigrationPlan>, Status> {
        let who = self.allow(&req, Role::Viewer, "plan", &req.get_ref().migration_id)?;
        let span = call_span("migration.plan", &req);
        let r = MigrationRequest::try_from(req.into_inner())?;
        let plan = self.engine.plan(&r).instrument(span).await?;
        self.engine.audit(
            &who,
            "plan",
            &r.migration_id,
            format!(
                "registry {} from {} to {}: {}",
                r.registry,
                r.source_cluster,
                r.target_cluster,
                if plan.ready { "ready" } else { "not ready" }
            ),
        );
        Ok(Response::new(plan))
    }

    async fn start_migration(
        &self,
        req: Request<pb::MigrationRequest>,
    ) -> Result<Response<pb::Migration>, Status> {
        let who = self.allow(&req, Role::Operator, "start", &req.get_ref().migration_id)?;
        let trace = telemetry::trace_context_of(req.metadata());
        let span = call_span("migration.start", &req);
        let r = MigrationRequest::try_from(req.into_inner())?;
        Ok(Response::new(
            self.engine.start(r, &who, trace).instrument(span).await?,
        ))
    }

    async fn get_migration(
        &self,
        req: Request<pb::MigrationRef>,
    ) -> Result<Response<pb::Migration>, Status> {
        let id = req.get_ref().migration_id.clone();
        let who = self.allow(&req, Role::Viewer, "get", &id)?;
        self.engine.audit(&who, "get", &id, "");
        Ok(Response::new(self.engine.get(&id)?))
    }

    async fn list_migrations(
        &self,
        req: Request<pb::ListMigrationsRequest>,
    ) -> Result<Response<pb::ListMigrationsResponse>, Status> {
        let who = self.allow(&req, Role::Viewer, "list", "")?;
        self.engine.audit(&who, "list", "", "");
        Ok(Response::new(pb::ListMigrationsResponse {
            migrations: self.engine.list()?,
        }))
    }

    type WatchMigrationStream = EventStream;

    async fn watch_migration(
        &self,
        req: Request<pb::WatchMigrationRequest>,
    ) -> Result<Response<EventStream>, Status> {
        let r = req.get_ref().clone();
        let who = self.allow(&req, Role::Viewer, "watch", &r.migration_id)?;
        self.engine.audit(&who, "watch", &r.migration_id, "");
        // Subscribed before reading the log, so nothing falls in between.
        let mut live = self.engine.subscribe();
        let m = self.engine.get(&r.migration_id)?;
        let logged = self.engine.events(&r.migration_id, r.after_seq)?;
        let engine = self.engine.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        self.engine.background().spawn_stream(async move {
            let mut seen = r.after_seq;
            for e in logged {
                seen = seen.max(e.seq);
                if tx.send(Ok(e)).await.is_err() {
                    return;
                }
            }
            // Ended or held before we looked, and everything logged is sent.
            if is_resting(m.state()) && m.last_seq <= seen {
                return;
            }
            loop {
                let e = match live.recv().await {
                    Ok(e) => e,
                    Err(RecvError::Lagged(_)) => {
                        // Catch up from the log; progress in between is lost, not events.
                        let Ok(missed) = engine.events(&r.migration_id, seen) else {
                            return;
                        };
                        for e in missed {
                            seen = seen.max(e.seq);
                            let end = ends_watch(&e);
                            if tx.send(Ok(e)).await.is_err() || end {
                                return;
                            }
                        }
                        continue;
                    }
                    Err(RecvError::Closed) => return,
                };
                if e.migration_id != r.migration_id || (e.seq != 0 && e.seq <= seen) {
                    continue;
                }
                seen = seen.max(e.seq);
                let end = ends_watch(&e);
                if tx.send(Ok(e)).await.is_err() || end {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn cancel_migration(
        &self,
        req: Request<pb::MigrationRef>,
    ) -> Result<Response<pb::Migration>, Status> {
        let id = req.get_ref().migration_id.clone();
        let who = self.allow(&req, Role::Operator, "cancel", &id)?;
        Ok(Response::new(self.engine.cancel(&id, &who)?))
    }

    async fn rollback_migration(
        &self,
        req: Request<pb::MigrationRef>,
    ) -> Result<Response<pb::Migration>, Status> {
        let id = req.get_ref().migration_id.clone();
        let who = self.allow(&req, Role::Operator, "rollback", &id)?;
        Ok(Response::new(self.engine.rollback(&id, &who)?))
    }

    async fn retry_migration(
        &self,
        req: Request<pb::MigrationRef>,
    ) -> Result<Response<pb::Migration>, Status> {
        let id = req.get_ref().migration_id.clone();
        let who = self.allow(&req, Role::Operator, "retry", &id)?;
        Ok(Response::new(self.engine.retry(&id, &who)?))
    }

    async fn stage_migration(
        &self,
        req: Request<pb::MigrationRef>,
    ) -> Result<Response<pb::Migration>, Status> {
        let id = req.get_ref().migration_id.clone();
        let who = self.allow(&req, Role::Operator, "stage", &id)?;
        Ok(Response::new(self.engine.stage(&id, &who)?))
    }

    async fn cutover_migration(
        &self,
        req: Request<pb::MigrationRef>,
    ) -> Result<Response<pb::Migration>, Status> {
        let id = req.get_ref().migration_id.clone();
        let who = self.allow(&req, Role::Operator, "cutover", &id)?;
        Ok(Response::new(self.engine.cutover(&id, &who)?))
    }

    async fn list_audit(
        &self,
        req: Request<pb::MigrationRef>,
    ) -> Result<Response<pb::ListAuditResponse>, Status> {
        let id = req.get_ref().migration_id.clone();
        let who = self.allow(&req, Role::Viewer, "audit", &id)?;
        self.engine.audit(&who, "audit", &id, "");
        Ok(Response::new(pb::ListAuditResponse {
            entries: self
                .engine
                .audit_log((!id.is_empty()).then_some(id.as_str()))?,
        }))
    }
}
