//! The HTTP layers every request passes before its route: CORS that leaves
//! tus discovery alone, request ids fit for log lines, and the line each
//! finished call writes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{HeaderName, Method, Request};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::Config;

/// CORS for browser requests only: tower-http answers every OPTIONS as a
/// preflight, but an OPTIONS without `Origin` is a tus client discovering
/// the server, and goes to the routes.
#[derive(Clone)]
pub(super) struct PreflightLayer(pub(super) CorsLayer);

impl<S: Clone> tower::Layer<S> for PreflightLayer {
    type Service = Preflight<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Preflight {
            cors: self.0.layer(inner.clone()),
            plain: inner,
        }
    }
}

/// See [`PreflightLayer`].
#[derive(Clone)]
pub(super) struct Preflight<S> {
    cors: tower_http::cors::Cors<S>,
    plain: S,
}

impl<S, B, R> tower::Service<Request<B>> for Preflight<S>
where
    S: tower::Service<Request<B>, Response = http::Response<R>> + Clone,
    R: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::Either<tower_http::cors::ResponseFuture<S::Future>, S::Future>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        match self.cors.poll_ready(cx) {
            std::task::Poll::Ready(Ok(())) => self.plain.poll_ready(cx),
            other => other,
        }
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if request.method() == Method::OPTIONS && !request.headers().contains_key(http::header::ORIGIN) {
            futures::future::Either::Right(self.plain.call(request))
        } else {
            futures::future::Either::Left(self.cors.call(request))
        }
    }
}

/// Browsers may call from the configured origins only, and may read the
/// gRPC status headers and the request id.
pub(super) fn cors(config: &Config) -> CorsLayer {
    const ALLOW: [&str; 13] = [
        "authorization",
        "content-type",
        "x-grpc-web",
        "x-user-agent",
        "grpc-timeout",
        "x-request-id",
        "last-event-id",
        // tus
        "tus-resumable",
        "upload-length",
        "upload-offset",
        "upload-metadata",
        "upload-checksum",
        "x-http-method-override",
    ];
    const EXPOSE: [&str; 11] = [
        "grpc-status",
        "grpc-message",
        "grpc-status-details-bin",
        "x-request-id",
        "retry-after",
        // tus
        "location",
        "tus-resumable",
        "tus-version",
        "tus-extension",
        "upload-offset",
        "upload-expires",
    ];
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(config.cors_origins.iter().cloned()))
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::DELETE,
            Method::HEAD,
            Method::OPTIONS,
        ])
        .allow_headers(ALLOW.map(HeaderName::from_static))
        .expose_headers(EXPOSE.map(HeaderName::from_static))
        .max_age(Duration::from_secs(3600))
}

/// A client-supplied `x-request-id` is kept only if it is short and plain,
/// so it cannot flood or forge log lines; otherwise one is generated.
pub(super) fn drop_unusable_request_id<B>(mut request: Request<B>) -> Request<B> {
    let usable = request.headers().get("x-request-id").is_none_or(|id| {
        (1..=128).contains(&id.len())
            && id
                .as_bytes()
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
    });
    if !usable {
        request.headers_mut().remove("x-request-id");
    }
    request
}

pub(super) fn request_span<B>(request: &Request<B>) -> tracing::Span {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|id| id.to_str().ok())
        .unwrap_or_default();
    tracing::info_span!("request", request_id, method = %request.method(), path = %request.uri().path())
}

/// A successful call at least this slow is always logged at `info`.
const SLOW_CALL: Duration = Duration::from_secs(1);

/// The line each finished call writes, in its request span (request id,
/// method, path): at `info` for one successful call in `every`
/// (`DEBRIEF_LOG_SAMPLE`) and for any call slower than [`SLOW_CALL`], at
/// `debug` for the others. A line per call at `info` cost a busy server a
/// fifth of its throughput (and wrote 300 MB in minutes) while telling
/// little that a sample and the metrics do not; failures are each logged
/// at `warn` by the failure hook.
#[derive(Clone)]
pub(super) struct RequestLog {
    every: u64,
    finished: Arc<AtomicU64>,
}

impl RequestLog {
    pub(super) fn new(every: u64) -> Self {
        Self {
            every: every.max(1),
            finished: Arc::default(),
        }
    }
}

impl<B> tower_http::trace::OnResponse<B> for RequestLog {
    fn on_response(self, response: &http::Response<B>, latency: Duration, _span: &tracing::Span) {
        let n = self.finished.fetch_add(1, Ordering::Relaxed);
        let latency_ms = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        let status = response.status().as_u16();
        if n.is_multiple_of(self.every) || latency >= SLOW_CALL {
            tracing::info!(
                latency_ms,
                status,
                one_in = self.every,
                "finished processing request"
            );
        } else {
            tracing::debug!(latency_ms, status, "finished processing request");
        }
    }
}
