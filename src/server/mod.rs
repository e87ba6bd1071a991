//! Assembly of the server: every transport on one port.
//!
//! [`Application::build`] connects the database, runs migrations and binds
//! the listener, so a caller (the CLI, a test, the benchmark) knows the port
//! before serving starts. [`Application::run_until_stopped`] serves gRPC
//! (HTTP/2), gRPC-Web (HTTP/1.1 and HTTP/2), reflection and health until the
//! shutdown token is cancelled, then drains calls in flight for the
//! configured grace period.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, Request};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tower::{ServiceBuilder, ServiceExt};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use tracing::Level;

mod layers;

use layers::{PreflightLayer, RequestLog, cors, drop_unusable_request_id, request_span};

use crate::auth::Auth;
use crate::auth::keys::KeyError;
use crate::auth::layer::AuthLayer;
use crate::auth::mailer::{Mailer, MailerError};
use crate::config::Config;
use crate::db::{ConnectError, Db};
use crate::events::stream::Streams;
use crate::pb::v1::{
    admin_service_server::AdminServiceServer, auth_service_server::AuthServiceServer,
    event_service_server::EventServiceServer, meeting_service_server::MeetingServiceServer,
    practice_service_server::PracticeServiceServer, processing_service_server::ProcessingServiceServer,
    profile_service_server::ProfileServiceServer, progress_service_server::ProgressServiceServer,
    upload_service_server::UploadServiceServer, usage_service_server::UsageServiceServer,
};
use crate::pb::{FILE_DESCRIPTOR_SET, SERVICE_NAMES};
use crate::shared::Shared;
use crate::storage::{Storage, StorageError};

/// Everything the server wires together: the infrastructure every domain
/// may hold, and the parts of domains that others are handed.
#[derive(Clone, Debug)]
pub struct AppState {
    /// Configuration, database, storage and the shutdown signal.
    pub shared: Shared,
    /// Keys, the authenticator, throttling and the mailer.
    pub auth: Arc<Auth>,
    /// The open event streams.
    pub streams: Arc<Streams>,
    /// The transcription provider.
    pub transcriber: Arc<dyn crate::processing::transcribe::Transcriber>,
}

impl AppState {
    /// The processing pipeline over this state.
    pub fn pipeline(&self) -> crate::processing::pipeline::Pipeline {
        pipeline(&self.shared, self.transcriber.clone())
    }

    fn ops(&self) -> crate::ops::Ops {
        crate::ops::Ops {
            state: self.shared.clone(),
            streams: self.streams.clone(),
        }
    }
}

/// The processing pipeline, with the tasks of other domains its workers
/// run: the same for the workers inside `serve` and for `debrief worker`.
pub fn pipeline(
    shared: &Shared,
    transcriber: Arc<dyn crate::processing::transcribe::Transcriber>,
) -> crate::processing::pipeline::Pipeline {
    use crate::practice::jobs::{FeedbackTask, Practice, Recordings, ScenarioTask};
    let practice = Practice::new(
        shared,
        crate::practice::ai::from_config(&shared.config.practice.ai),
    );
    crate::processing::pipeline::Pipeline {
        config: shared.config.clone(),
        db: shared.db.clone(),
        storage: shared.storage.clone(),
        transcriber,
        tasks: crate::processing::tasks::Tasks::default()
            .with_task(Arc::new(FeedbackTask(practice.clone())))
            .with_task(Arc::new(ScenarioTask(practice.clone())))
            .with_task(Arc::new(crate::erasure::EraseAccount(shared.clone())))
            .with_listener(Arc::new(Recordings(practice))),
    }
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The database could not be opened or migrated.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The address could not be bound.
    #[error("cannot listen on {addr} (DEBRIEF_ADDR): {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// The failure.
        source: std::io::Error,
    },
    /// Object storage could not be opened.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Email delivery could not be set up.
    #[error(transparent)]
    Mailer(#[from] MailerError),
    /// The token keys could not be loaded.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// Reflection could not read the descriptor set.
    #[error("cannot build server reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The practice modules debrief ships with could not be loaded.
    #[error("cannot load the seed practice modules: {0}")]
    Seed(crate::error::AppError),
    /// The analyses stored before the scoring model could not be scored.
    #[error("cannot score the stored analyses: {0}")]
    Backfill(crate::error::AppError),
    /// The HTTP edge could not read the API's bindings.
    #[error(transparent)]
    Edge(#[from] crate::edge::EdgeError),
    /// Serving failed.
    #[error("server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// A server that is bound and ready to serve.
pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    /// `/metrics` on its own address, when configured.
    metrics: Option<(TcpListener, SocketAddr)>,
    state: AppState,
    health: HealthReporter,
    routes: Routes,
    shutdown: CancellationToken,
}

impl Application {
    /// Opens and migrates the database, binds `config.addr` and builds every
    /// service. Nothing is served until [`Self::run_until_stopped`].
    pub async fn build(config: Config) -> Result<Self, ServerError> {
        let mailer = crate::auth::mailer::from_config(&config.auth.mail)?;
        Self::build_with_mailer(config, mailer).await
    }

    /// [`Self::build`] with another way to deliver email.
    pub async fn build_with_mailer(config: Config, mailer: Arc<dyn Mailer>) -> Result<Self, ServerError> {
        crate::metrics::install();
        let db = Db::open(&config).await?;
        let listener = TcpListener::bind(config.addr)
            .await
            .map_err(|source| ServerError::Bind {
                addr: config.addr,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: config.addr,
            source,
        })?;

        let metrics = match config.metrics_addr {
            Some(wanted) => {
                let bind_error = |source| ServerError::Bind { addr: wanted, source };
                let listener = TcpListener::bind(wanted).await.map_err(bind_error)?;
                let bound = listener.local_addr().map_err(bind_error)?;
                Some((listener, bound))
            }
            None => None,
        };
        crate::practice::seed::load(&db)
            .await
            .map_err(ServerError::Seed)?;
        let scored = crate::processing::scores::backfill(&db)
            .await
            .map_err(ServerError::Backfill)?;
        if scored > 0 {
            tracing::info!(scored, "scored the analyses stored before the scoring model");
        }
        let auth = Arc::new(Auth::new(
            &config,
            db.clone(),
            mailer,
            Arc::new(crate::erasure::Closing),
        )?);
        let storage = Storage::open(&config)?;
        let shutdown = CancellationToken::new();
        let streams = Streams::new(db.clone(), config.events.clone(), shutdown.clone());
        let transcriber = crate::processing::transcribe::from_config(&config.processing.transcriber);
        let state = AppState {
            shared: Shared {
                config: Arc::new(config),
                db,
                storage,
                shutdown: shutdown.clone(),
                clock: Default::default(),
            },
            auth,
            streams,
            transcriber,
        };
        let (health, health_service) = tonic_health::server::health_reporter();
        set_health(&health, ServingStatus::Serving).await;
        let routes = grpc_routes(&state, health_service)?;
        Ok(Self {
            listener,
            addr,
            metrics,
            state,
            health,
            routes,
            shutdown,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where `/metrics` is served when it has its own address.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(_, addr)| *addr)
    }

    /// The state shared by the handlers.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Cancelling this token starts a graceful shutdown.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until the shutdown token is cancelled, then stops accepting
    /// connections, reports NOT_SERVING, and waits up to the configured grace
    /// period for calls in flight before closing what is left.
    pub async fn run_until_stopped(self) -> Result<(), ServerError> {
        let Self {
            listener,
            addr,
            metrics,
            state,
            health,
            routes,
            shutdown,
        } = self;
        let config = state.shared.config.clone();
        let grace = config.shutdown_grace;
        let trusted = config.trusted_proxies.clone();
        let layers = ServiceBuilder::new()
            .map_request(move |request| crate::context::resolve_client_ip(&trusted, request))
            .map_request(drop_unusable_request_id)
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(
                TraceLayer::new_for_grpc()
                    .make_span_with(request_span)
                    .on_response(RequestLog::new(config.log_sample))
                    .on_failure(DefaultOnFailure::new().level(Level::WARN)),
            )
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(SetResponseHeaderLayer::if_not_present(
                http::header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ))
            // Nothing here is a page to render or a document to cache; the
            // API reference sets its own policy and caching.
            .layer(SetResponseHeaderLayer::if_not_present(
                http::header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
            ))
            .layer(SetResponseHeaderLayer::if_not_present(
                http::header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ))
            .layer(SetResponseHeaderLayer::if_not_present(
                http::header::CACHE_CONTROL,
                HeaderValue::from_static("no-store"),
            ))
            .layer(PreflightLayer(cors(&config)))
            .into_inner();

        crate::events::listener::start(state.shared.db.clone(), state.streams.clone(), shutdown.clone())
            .await;
        let signal = {
            let shutdown = shutdown.clone();
            async move {
                shutdown.cancelled().await;
                set_health(&health, ServingStatus::NotServing).await;
                tracing::info!("shutting down: no new connections, draining calls in flight");
            }
        };
        // The edge answers its own timeouts with 504 first; this one is
        // for gRPC and gRPC-Web calls.
        let server = Server::builder()
            .timeout(config.request_timeout + Duration::from_secs(1))
            .concurrency_limit_per_connection(config.max_concurrent_per_connection)
            .accept_http1(true)
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            // Chunks of up to 4 MiB arrive in 16 frames rather than 256 of
            // HTTP/2's default 16 KiB: a fifth more upload throughput, for
            // a read buffer of up to 256 KiB per connection.
            .max_frame_size(Some(256 << 10))
            .layer(layers)
            .add_routes(routes)
            .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), signal);
        tracing::info!(%addr, backend = ?state.shared.db.backend(), "debrief is serving gRPC, gRPC-Web and HTTP");

        if let Some((listener, metrics_addr)) = metrics {
            let routes = crate::ops::metrics_routes(state.ops());
            let stop = shutdown.clone();
            tracing::info!(%metrics_addr, "serving /metrics");
            tokio::spawn(async move {
                let served = axum::serve(listener, routes)
                    .with_graceful_shutdown(async move { stop.cancelled().await })
                    .await;
                if let Err(error) = served {
                    tracing::warn!(%error, "the metrics listener stopped");
                }
            });
        }
        tokio::spawn(crate::housekeeping::run(state.shared.clone(), shutdown.clone()));
        tokio::spawn(crate::metrics::upkeep(shutdown.clone()));

        let workers = tokio::spawn(crate::processing::worker::run(
            state.pipeline(),
            config.processing.workers,
            shutdown.clone(),
        ));
        tokio::pin!(server);
        tokio::select! {
            result = &mut server => result?,
            () = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
                tracing::warn!(?grace, "calls still in flight after the grace period; closing them");
            }
        }
        // Workers hand their jobs back at shutdown; give them the grace too.
        if tokio::time::timeout(grace, workers).await.is_err() {
            tracing::warn!("workers still busy after the grace period");
        }
        tracing::info!("stopped");
        Ok(())
    }
}

fn grpc_routes(
    state: &AppState,
    health: tonic_health::pb::health_server::HealthServer<impl tonic_health::pb::health_server::Health>,
) -> Result<Routes, ServerError> {
    let shared = &state.shared;
    let max = shared.config.max_message_bytes;
    // Every debrief service gets the configured message size limit.
    macro_rules! limited {
        ($server:ident, $api:expr) => {
            $server::new($api)
                .max_decoding_message_size(max)
                .max_encoding_message_size(max)
        };
    }
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let mut routes = Routes::builder();
    routes
        .add_service(limited!(
            AuthServiceServer,
            crate::auth::AuthApi::new(shared.clone(), state.auth.clone())
        ))
        .add_service(limited!(
            ProfileServiceServer,
            crate::profiles::ProfileApi::new(shared.clone())
        ))
        .add_service(limited!(
            MeetingServiceServer,
            crate::meetings::MeetingApi::new(
                shared.clone(),
                state.streams.clone(),
                Arc::new(crate::uploads::lifecycle::EndWithMeeting(shared.clone())),
            )
        ))
        .add_service(limited!(
            UploadServiceServer,
            crate::uploads::UploadApi::new(shared.clone())
        ))
        .add_service(limited!(
            ProcessingServiceServer,
            crate::processing::ProcessingApi::new(shared.clone())
        ))
        .add_service(limited!(
            PracticeServiceServer,
            crate::practice::PracticeApi::new(shared.clone())
        ))
        .add_service(limited!(
            ProgressServiceServer,
            crate::progress::ProgressApi::new(
                shared.clone(),
                Arc::new(crate::profiles::ProfileZones),
                export_parts()
            )
        ))
        .add_service(limited!(
            UsageServiceServer,
            crate::usage::UsageApi::new(shared.clone())
        ))
        .add_service(limited!(
            EventServiceServer,
            crate::events::EventApi::new(shared.clone(), state.streams.clone())
        ))
        .add_service(limited!(
            AdminServiceServer,
            crate::admin::AdminApi::new(shared.clone(), state.auth.clone())
        ))
        .add_service(health)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?);
    let keys = state.auth.keys.clone();
    // gRPC-Web translation and the auth layer wrap the gRPC services only
    // (tonic-web refuses plain HTTP/1.1). Auth is inside, so gRPC-Web
    // requests arrive translated and its refusals are translated back.
    // Metrics sit inside gRPC-Web translation, where statuses are trailers.
    let grpc_layers = ServiceBuilder::new()
        .layer(tonic_web::GrpcWebLayer::new())
        .layer(crate::metrics::MetricsLayer)
        .layer(AuthLayer::new(state.auth.authenticator.clone()));
    let grpc = routes.routes().into_axum_router().layer(grpc_layers);
    let edge = crate::edge::router(grpc.clone(), max, shared.config.request_timeout)?;
    let router = grpc
        .clone()
        .merge(edge)
        .merge(crate::ops::routes(state.ops()))
        .route(
            "/.well-known/jwks.json",
            axum::routing::get(move || {
                let jwks = keys.jwks();
                async move {
                    (
                        [(http::header::CACHE_CONTROL, "public, max-age=300")],
                        axum::Json(jwks),
                    )
                }
            }),
        );
    // Anything no route took: gRPC (and gRPC-Web) calls go on to the gRPC
    // router, whose own fallback answers UNIMPLEMENTED behind the same
    // layers; anyone else gets a JSON 404.
    let router = router.fallback(move |request: Request<axum::body::Body>| async move {
        use axum::response::IntoResponse;
        let is_grpc = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc"));
        if is_grpc {
            return match grpc.oneshot(request).await {
                Ok(response) => response.into_response(),
                Err(never) => match never {},
            };
        }
        let message = format!("nothing is served at {}", request.uri().path());
        (
            http::StatusCode::NOT_FOUND,
            axum::Json(serde_json::json!({"code": 5, "message": message, "details": []})),
        )
            .into_response()
    });
    Ok(Routes::from(router))
}

async fn set_health(health: &HealthReporter, status: ServingStatus) {
    health.set_service_status("", status).await;
    for name in SERVICE_NAMES {
        health.set_service_status(name, status).await;
    }
}

/// What a person's data export holds, in the order it streams it.
fn export_parts() -> Arc<[Arc<dyn crate::export::Part>]> {
    Arc::new([
        Arc::new(crate::profiles::export::Exported) as Arc<dyn crate::export::Part>,
        Arc::new(crate::meetings::export::Exported),
        Arc::new(crate::practice::export::Exported),
        Arc::new(crate::progress::export::Exported),
        Arc::new(crate::usage::export::Exported),
        Arc::new(crate::auth::export::Exported),
        Arc::new(crate::audit::Exported),
    ])
}
