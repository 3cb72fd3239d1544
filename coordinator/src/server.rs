//! Builds and runs the coordinator: one mTLS listener serving the agent link,
//! the client API, gRPC health and server reflection; with `--http-listen`,
//! a plain-HTTP endpoint for probes and Prometheus (`ferry_common::http`).
use std::net::SocketAddr;
use std::sync::Arc;

use ferry_common::http::{HttpServer, Readiness};
use ferry_common::pb::{
    agent_link_server::AgentLinkServer, fleet_server::FleetServer,
    load_data_server::LoadDataServer, loads_server::LoadsServer,
    migrations_server::MigrationsServer, relay_server::RelayServer,
    transfers_server::TransfersServer,
};
use ferry_common::tls::{ReloadingServerConfig, incoming};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic::transport::server::Router;
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::server::HealthReporter;

use crate::api::FleetApi;
use crate::auth::Authorizer;
use crate::background::{self, Background};
use crate::fleet::Fleet;
use crate::link::LinkService;
use crate::load::{LoadDataService, LoadHub, LoadsApi};
use crate::migrate::{Engine, MigrationsApi};
use crate::relay::{RelayHub, RelayService, TransfersApi};
use crate::store::Store;
use crate::{CoordinatorConfig, Error, Result};

pub struct RunningCoordinator {
    pub addr: SocketAddr,
    pub fleet: Arc<Fleet>,
    pub relay: Arc<RelayHub>,
    /// Where `/healthz`, `/readyz` and `/metrics` are served, if anywhere.
    pub http_addr: Option<SocketAddr>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
    background: Background,
    grace: std::time::Duration,
    readiness: Readiness,
    http: HttpEndpoint,
}

impl RunningCoordinator {
    /// `https://127.0.0.1:<port>` style URL of the listener.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Ordered shutdown ([`background::shut_down`]): stop accepting, end
    /// agent sessions (they redial elsewhere) and streams, let calls in
    /// progress drain within the grace period, then stop background work
    /// (migration drivers, followers) and wait for every task. `/readyz`
    /// answers 503 from the start of it, and the HTTP endpoint stops last,
    /// so probes see the drain.
    pub async fn shutdown(self) {
        self.readiness.set_not_ready("shutting down");
        background::shut_down(&self.background, &self.shutdown, self.task, self.grace).await;
        self.http.stop().await;
    }
}

/// The plain-HTTP endpoint of `--http-listen` for probes and Prometheus, if
/// configured. It has its own stop, so it outlives the drain and probes see
/// `/readyz` answer 503 through it.
pub(crate) struct HttpEndpoint(Option<(HttpServer, CancellationToken)>);

impl HttpEndpoint {
    pub(crate) async fn start(config: &CoordinatorConfig, readiness: &Readiness) -> Result<Self> {
        let Some(listen) = config.http_listen else {
            return Ok(Self(None));
        };
        let stop = CancellationToken::new();
        let server = ferry_common::http::serve(
            listen,
            readiness.clone(),
            ferry_common::metrics::global(),
            stop.clone(),
        )
        .await?;
        Ok(Self(Some((server, stop))))
    }

    pub(crate) fn addr(&self) -> Option<SocketAddr> {
        self.0.as_ref().map(|(server, _)| server.addr)
    }

    /// Stops the endpoint and waits until it has.
    pub(crate) async fn stop(self) {
        if let Some((server, stop)) = self.0 {
            stop.cancel();
            server.stopped().await;
        }
    }
}

pub async fn start(config: &CoordinatorConfig) -> Result<RunningCoordinator> {
    if config.store.is_some() {
        return Err(Error::Invalid(
            "a coordinator on PostgreSQL runs as a replica (`replica::start`), not `start`".into(),
        ));
    }
    let tls = Arc::new(ReloadingServerConfig::new(config.tls_paths())?);
    let store = Store::open(&config.data_dir)?;
    let shutdown = CancellationToken::new();
    let listener = bind(config).await?;
    let addr = local_addr(config, &listener)?;
    let (health, health_service) = tonic_health::server::health_reporter();
    set_health(&health, true).await;
    let background = Background::new();
    let Services {
        router,
        fleet,
        relay,
    } = services(config, store, &shutdown, &background, health_service)?;
    let readiness = Readiness::not_ready("starting");
    let http = HttpEndpoint::start(config, &readiness).await?;
    let conns = incoming(listener, tls, shutdown.child_token());
    let stop = shutdown.clone();
    let serving = readiness.clone();
    // The listener is bound and about to be served: agents and clients can
    // connect (a failure of the server below takes it back).
    readiness.set_ready();
    let task = tokio::spawn(async move {
        match router
            .serve_with_incoming_shutdown(conns, stop.cancelled_owned())
            .await
        {
            Ok(()) => serving.set_not_ready("stopped"),
            Err(e) => {
                tracing::error!(error = %e, "coordinator server failed");
                serving.set_not_ready(format!("the gRPC server failed: {e}"));
            }
        }
    });
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "coordinator listening");
    Ok(RunningCoordinator {
        addr,
        fleet,
        relay,
        http_addr: http.addr(),
        shutdown,
        task,
        background,
        grace: config.grace,
        readiness,
        http,
    })
}

pub(crate) async fn bind(config: &CoordinatorConfig) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| Error::Listen {
            addr: config.listen.to_string(),
            source,
        })
}

pub(crate) fn local_addr(
    config: &CoordinatorConfig,
    listener: &tokio::net::TcpListener,
) -> Result<SocketAddr> {
    listener.local_addr().map_err(|source| Error::Listen {
        addr: config.listen.to_string(),
        source,
    })
}

/// Every service's gRPC health, and the server's as a whole (`""`).
pub(crate) async fn set_health(health: &HealthReporter, serving: bool) {
    let status = if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    for name in SERVICES {
        health.set_service_status(*name, status).await;
    }
    health.set_service_status("", status).await;
}

/// The gRPC services of the contract this server answers.
pub(crate) const SERVICES: &[&str] = &[
    <AgentLinkServer<LinkService> as NamedService>::NAME,
    <FleetServer<FleetApi> as NamedService>::NAME,
    <RelayServer<RelayService> as NamedService>::NAME,
    <TransfersServer<TransfersApi> as NamedService>::NAME,
    <LoadsServer<LoadsApi> as NamedService>::NAME,
    <MigrationsServer<MigrationsApi> as NamedService>::NAME,
    <LoadDataServer<LoadDataService> as NamedService>::NAME,
];

pub(crate) fn reflection() -> Result<
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(ferry_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| Error::Invalid(format!("reflection descriptors: {e}")))
}

/// What a leading coordinator serves, over its store.
pub(crate) struct Services {
    pub router: Router,
    pub fleet: Arc<Fleet>,
    pub relay: Arc<RelayHub>,
}

/// Builds the fleet, relay, loads and the migration engine (which resumes
/// every migration the store says was in progress) and their router.
/// `shutdown` ends agent sessions; every task they spawn runs in
/// `background`.
pub(crate) fn services<H: Health>(
    config: &CoordinatorConfig,
    store: Store,
    shutdown: &CancellationToken,
    background: &Background,
    health_service: HealthServer<H>,
) -> Result<Services> {
    let relay = Arc::new(RelayHub::new(store.clone(), background.clone()));
    let fleet = Arc::new(Fleet::new(
        store.clone(),
        config.heartbeat,
        config.lost_after,
        shutdown.child_token(),
    ));
    crate::metrics::observe_sessions(Arc::downgrade(&fleet));
    // Every refused call is audited: who, what, why.
    let auth = Arc::new(Authorizer::new(&config.roles).with_audit(store.clone()));
    let transfers = TransfersApi::new(
        fleet.clone(),
        relay.clone(),
        store.clone(),
        auth.clone(),
        background.clone(),
    )?;
    let load_hub = Arc::new(LoadHub::default());
    let loads = LoadsApi::new(
        fleet.clone(),
        load_hub.clone(),
        store.clone(),
        auth.clone(),
        background.clone(),
    )?;
    let engine = Engine::new(store, fleet.clone(), transfers.clone(), background.clone())?;
    let migrations = MigrationsApi::new(engine, auth.clone());

    // What each service accepts from a peer: what it needs, no more
    // (ferry_common::limits). Answers are not capped here (lists grow).
    use ferry_common::limits::{CONTROL_MESSAGE, LINK_MESSAGE, LOAD_MESSAGE, RELAY_MESSAGE};
    let relay_service = RelayServer::new(RelayService { hub: relay.clone() })
        .max_decoding_message_size(RELAY_MESSAGE)
        .max_encoding_message_size(RELAY_MESSAGE);
    let router = tonic::transport::Server::builder()
        // Bulk data: windows large enough to keep a chunk in flight per stream.
        .initial_stream_window_size(Some(4 * 1024 * 1024))
        .initial_connection_window_size(Some(16 * 1024 * 1024))
        .max_frame_size(Some(ferry_common::tls::MAX_H2_FRAME))
        .add_service(health_service)
        .add_service(reflection()?)
        .add_service(
            AgentLinkServer::new(LinkService::new(
                fleet.clone(),
                auth.clone(),
                background.clone(),
            ))
            .max_decoding_message_size(LINK_MESSAGE),
        )
        .add_service(
            FleetServer::new(FleetApi::new(fleet.clone(), auth.clone()))
                .max_decoding_message_size(CONTROL_MESSAGE),
        )
        .add_service(relay_service)
        .add_service(TransfersServer::new(transfers).max_decoding_message_size(CONTROL_MESSAGE))
        .add_service(LoadsServer::new(loads).max_decoding_message_size(LOAD_MESSAGE))
        .add_service(MigrationsServer::new(migrations).max_decoding_message_size(CONTROL_MESSAGE))
        .add_service(
            LoadDataServer::new(LoadDataService {
                hub: load_hub,
                auth: auth.clone(),
                background: background.clone(),
            })
            .max_decoding_message_size(CONTROL_MESSAGE)
            .max_encoding_message_size(LOAD_MESSAGE),
        );
    Ok(Services {
        router,
        fleet,
        relay,
    })
}
