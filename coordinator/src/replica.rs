//! A coordinator replica on PostgreSQL (docs/ha.md): a standby until it
//! takes the lease, then the leader until it stops or is deposed.
//!
//! A standby listens, answers gRPC health with NOT_SERVING and `/readyz`
//! with 503 "standby", and refuses every call and agent session with
//! UNAVAILABLE "not the leader; retry", which agents' redial loops and
//! clients retry. On taking the lease it fences the store at its generation
//! and starts the same services a single coordinator runs — the migration
//! engine resumes every unfinished migration — on the same listener.
//! A leader whose lease was taken over (a renewal finds another generation,
//! or a write is refused by the store's fence) is *deposed*: it stops its
//! services at once and [`Replica::deposed`] fires, so the process exits and
//! its supervisor starts it again, as a standby.
use std::convert::Infallible;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use ferry_common::http::Readiness;
use ferry_common::pb::{
    agent_link_server::AgentLinkServer, fleet_server::FleetServer,
    load_data_server::LoadDataServer, loads_server::LoadsServer,
    migrations_server::MigrationsServer, relay_server::RelayServer,
    transfers_server::TransfersServer,
};
use ferry_common::tls::{ReloadingServerConfig, TlsConn, incoming};
use futures::{Stream, StreamExt};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::codegen::{Service, http};
use tonic::server::NamedService;

use crate::api::FleetApi;
use crate::background::{self, Background};
use crate::lease::Lease;
use crate::link::LinkService;
use crate::load::{LoadDataService, LoadsApi};
use crate::migrate::MigrationsApi;
use crate::relay::{RelayService, TransfersApi};
use crate::server::{HttpEndpoint, Services, bind, local_addr, reflection, services, set_health};
use crate::store::Store;
use crate::{CoordinatorConfig, Error, Result};

/// What a standby answers every call of the contract.
pub const NOT_LEADER: &str = "not the leader; retry: this coordinator is a standby replica \
     (another one holds the lease); a Service in front of the replicas routes to the leader";

pub struct Replica {
    pub addr: SocketAddr,
    /// Where `/healthz`, `/readyz` and `/metrics` are served, if anywhere.
    pub http_addr: Option<SocketAddr>,
    deposed: CancellationToken,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
    /// What a leader runs besides calls (empty on a standby).
    background: Background,
    grace: Duration,
    readiness: Readiness,
    http: HttpEndpoint,
}

impl Replica {
    /// Resolves when this replica led and was deposed.
    pub async fn deposed(&self) {
        self.deposed.cancelled().await
    }

    /// Ordered shutdown as `RunningCoordinator::shutdown`; a leader lets
    /// its lease go at the end, so a standby takes over without waiting.
    pub async fn shutdown(self) {
        self.readiness.set_not_ready("shutting down");
        background::shut_down(&self.background, &self.shutdown, self.task, self.grace).await;
        self.http.stop().await;
    }
}

pub async fn start(config: &CoordinatorConfig) -> Result<Replica> {
    let pg = config.postgres()?.ok_or_else(|| {
        Error::Invalid("a replica keeps its state in PostgreSQL: set --store".into())
    })?;
    let tls = Arc::new(ReloadingServerConfig::new(config.tls_paths())?);
    let target = crate::store::redacted(&pg);
    let store = {
        let pg = pg.clone();
        tokio::task::spawn_blocking(move || Store::postgres(pg))
            .await
            .map_err(|e| Error::Database {
                target: target.clone(),
                message: format!("opening the store: {e}"),
            })??
    };
    let deposed = store
        .deposed()
        .ok_or_else(|| Error::Invalid("the PostgreSQL store has no fence; this is a bug".into()))?;
    let holder = format!(
        "{}/{}",
        std::env::var("HOSTNAME").unwrap_or_else(|_| "coordinator".into()),
        std::process::id()
    );
    let lease = Lease::new(pg, holder, config.lease);
    let shutdown = CancellationToken::new();
    let listener = bind(config).await?;
    let addr = local_addr(config, &listener)?;
    let (health, health_service) = tonic_health::server::health_reporter();
    set_health(&health, false).await;
    let readiness = Readiness::not_ready("standby: another coordinator replica leads");
    let http = HttpEndpoint::start(config, &readiness).await?;
    let conns = incoming(listener, tls, shutdown.child_token());
    let background = Background::new();
    let run = Run {
        config: config.clone(),
        store,
        lease,
        health,
        background: background.clone(),
        shutdown: shutdown.clone(),
        deposed: deposed.clone(),
        readiness: readiness.clone(),
    };
    let task = tokio::spawn(async move {
        if let Err(e) = run.run(conns, health_service).await {
            tracing::error!(error = %e, "the coordinator replica failed");
        }
    });
    tracing::info!(%addr, store = %target, lease = ?config.lease, "coordinator replica listening, standing by");
    Ok(Replica {
        addr,
        http_addr: http.addr(),
        deposed,
        shutdown,
        task,
        background,
        grace: config.grace,
        readiness,
        http,
    })
}

struct Run {
    config: CoordinatorConfig,
    store: Store,
    lease: Lease,
    health: tonic_health::server::HealthReporter,
    background: Background,
    shutdown: CancellationToken,
    deposed: CancellationToken,
    readiness: Readiness,
}

impl Run {
    async fn run<H: tonic_health::pb::health_server::Health>(
        mut self,
        conns: impl Stream<Item = std::io::Result<TlsConn>>,
        health_service: tonic_health::pb::health_server::HealthServer<H>,
    ) -> Result<()> {
        let mut conns = Box::pin(conns);
        let Some(generation) = self
            .stand_by(conns.as_mut(), health_service.clone())
            .await?
        else {
            return Ok(());
        };
        let failed = |e: Error| {
            self.deposed.cancel();
            self.shutdown.cancel();
            e
        };
        // Every write from here on proves it still holds this generation.
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.fence(generation))
            .await
            .map_err(|e| Error::Invalid(format!("fencing the store: {e}")))
            .and_then(|r| r)
            .map_err(failed)?;
        tracing::info!(
            generation,
            holder = self.lease.holder(),
            "took the lease: this coordinator replica leads"
        );
        self.readiness
            .set_not_ready("taking over: resuming migrations");
        let Services { router, .. } = {
            let (config, store, shutdown, background) = (
                self.config.clone(),
                self.store.clone(),
                self.shutdown.clone(),
                self.background.clone(),
            );
            // Resuming reads the store (blocking calls): off the runtime's workers.
            tokio::task::spawn_blocking(move || {
                services(&config, store, &shutdown, &background, health_service)
            })
            .await
            .map_err(|e| Error::Invalid(format!("starting the services: {e}")))
            .and_then(|r| r)
            .map_err(failed)?
        };
        let (health, readiness) = (self.health.clone(), self.readiness.clone());
        set_health(&health, true).await;
        readiness.set_ready();
        let (shutdown, deposed) = (self.shutdown.clone(), self.deposed.clone());
        let stop = async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = deposed.cancelled() => {}
            }
        };
        let serve = router.serve_with_incoming_shutdown(conns, stop);
        tokio::pin!(serve);
        tokio::select! {
            served = &mut serve => {
                if let Err(e) = served {
                    tracing::error!(error = %e, "coordinator server failed");
                    readiness.set_not_ready(format!("the gRPC server failed: {e}"));
                }
            }
            () = self.keep(generation) => {
                // Deposed: stop everything this replica runs, at once.
                readiness.set_not_ready("deposed: another coordinator replica leads");
                set_health(&health, false).await;
                self.shutdown.cancel();
                self.background.stop_streams();
                self.background.work_stopped().cancel();
                return Ok(());
            }
        }
        if !self.deposed.is_cancelled()
            && let Err(e) = self.lease.release(generation).await
        {
            tracing::warn!(error = %e, "could not release the lease; a standby takes over when it expires");
        }
        Ok(())
    }

    /// Serves as a standby until this replica takes the lease (its
    /// generation) or shuts down (`None`).
    async fn stand_by<H: tonic_health::pb::health_server::Health>(
        &mut self,
        conns: std::pin::Pin<&mut (impl Stream<Item = std::io::Result<TlsConn>> + ?Sized)>,
        health_service: tonic_health::pb::health_server::HealthServer<H>,
    ) -> Result<Option<i64>> {
        let router = tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(reflection()?)
            .add_service(Refuse::<AgentLinkServer<LinkService>>::new())
            .add_service(Refuse::<FleetServer<FleetApi>>::new())
            .add_service(Refuse::<RelayServer<RelayService>>::new())
            .add_service(Refuse::<TransfersServer<TransfersApi>>::new())
            .add_service(Refuse::<LoadsServer<LoadsApi>>::new())
            .add_service(Refuse::<MigrationsServer<MigrationsApi>>::new())
            .add_service(Refuse::<LoadDataServer<LoadDataService>>::new());
        let took = CancellationToken::new();
        // The standby's server ends when the lease is taken; the listener's
        // stream goes on to the leader's.
        let serve = router.serve_with_incoming_shutdown(
            conns.take_until(took.clone().cancelled_owned()),
            took.clone().cancelled_owned(),
        );
        tokio::pin!(serve);
        let every = self.lease.renew_every();
        let lease = &mut self.lease;
        let shutdown = self.shutdown.clone();
        let acquire = async move {
            loop {
                match lease.try_acquire().await {
                    Ok(Some(generation)) => return Some(generation),
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot try to take the lease; retrying"),
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(every) => {}
                }
            }
        };
        let generation = tokio::select! {
            g = acquire => g,
            served = &mut serve => {
                return match served {
                    Ok(()) => Ok(None),
                    Err(e) => Err(Error::Invalid(format!("the standby's server failed: {e}"))),
                };
            }
        };
        took.cancel();
        // Calls refused a moment ago may still be closing: bounded.
        if tokio::time::timeout(Duration::from_secs(2), serve)
            .await
            .is_err()
        {
            tracing::debug!("standby connections still open after takeover; dropped");
        }
        Ok(generation)
    }

    /// Renews the lease every third of it; returns when this replica is
    /// deposed — the lease taken over, a write refused, or no renewal
    /// possible for as long as the lease lasts.
    async fn keep(&mut self, generation: i64) {
        let every = self.lease.renew_every();
        let mut renewed = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = self.deposed.cancelled() => {
                    tracing::error!(generation, "a write was refused: another coordinator replica took the lease over; stepping down");
                    return;
                }
                _ = tokio::time::sleep(every) => {}
            }
            match self.lease.renew(generation).await {
                Ok(true) => renewed = tokio::time::Instant::now(),
                Ok(false) => {
                    tracing::error!(
                        generation,
                        "the lease was taken over by another coordinator replica; stepping down"
                    );
                    self.deposed.cancel();
                    return;
                }
                Err(e) if renewed.elapsed() >= self.lease.duration() => {
                    tracing::error!(error = %e, generation, "the lease could not be renewed for as long as it lasts; stepping down");
                    self.deposed.cancel();
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, generation, "cannot renew the lease; retrying")
                }
            }
        }
    }
}

/// Stands in for service `S` on a standby: every call is refused.
struct Refuse<S>(PhantomData<fn() -> S>);

impl<S> Refuse<S> {
    fn new() -> Self {
        Self(PhantomData)
    }
}

impl<S> Clone for Refuse<S> {
    fn clone(&self) -> Self {
        Self::new()
    }
}

impl<S: NamedService> NamedService for Refuse<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for Refuse<S> {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = std::future::Ready<std::result::Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::result::Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Request<B>) -> Self::Future {
        std::future::ready(Ok(tonic::Status::unavailable(NOT_LEADER).into_http()))
    }
}
