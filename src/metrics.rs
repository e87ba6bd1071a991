//! Prometheus metrics of this process, recorded through the `metrics`
//! facade and rendered by `metrics-exporter-prometheus`: per-RPC request
//! counts and latency histograms by status code (gRPC, gRPC-Web and the
//! HTTP edge alike, since the edge calls the same services), open event
//! streams, upload bytes, the processing queue and how jobs end.

use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio_util::sync::CancellationToken;
use tonic::Code;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

const RPC_REQUESTS: &str = "debrief_rpc_requests_total";
const RPC_DURATION: &str = "debrief_rpc_duration_seconds";
const UPLOAD_BYTES: &str = "debrief_upload_bytes_total";
const JOB_OUTCOMES: &str = "debrief_job_outcomes_total";
const STREAMS_OPEN: &str = "debrief_event_streams_open";
const JOBS_PENDING: &str = "debrief_jobs_pending";
const JOBS_RUNNING: &str = "debrief_jobs_running";
const JOBS_DEAD: &str = "debrief_jobs_dead";

/// Installs this process's recorder (once; every server in the process
/// shares it) and returns the handle that renders it.
pub fn install() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full(RPC_DURATION.to_owned()), &BUCKETS)
            .expect("the latency buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics will show nothing");
        }
        metrics::describe_counter!(RPC_REQUESTS, "Calls by RPC and status code.");
        metrics::describe_histogram!(
            RPC_DURATION,
            metrics::Unit::Seconds,
            "Call latency by RPC and status code (a stream: its life)."
        );
        metrics::describe_counter!(UPLOAD_BYTES, "Upload bytes committed by this instance.");
        metrics::describe_counter!(JOB_OUTCOMES, "Processing job attempts by how they ended.");
        metrics::describe_gauge!(STREAMS_OPEN, "Event streams open on this instance.");
        metrics::describe_gauge!(JOBS_PENDING, "Processing jobs waiting to run (all instances).");
        metrics::describe_gauge!(JOBS_RUNNING, "Processing jobs held by a worker (all instances).");
        metrics::describe_gauge!(
            JOBS_DEAD,
            "Dead processing jobs waiting for a retry (all instances)."
        );
        // Shown from the start, before the first upload.
        metrics::counter!(UPLOAD_BYTES).increment(0);
        handle
    })
}

/// Folds recorded latencies into their buckets every few seconds, so they
/// do not pile up between scrapes, until `shutdown`.
pub async fn upkeep(shutdown: CancellationToken) {
    let handle = install();
    let mut every = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = every.tick() => handle.run_upkeep(),
            () = shutdown.cancelled() => return,
        }
    }
}

/// The RPC label of a request path: its own name for the API, health and
/// reflection; `other` for anything else (so labels stay few).
fn rpc_label(path: &str) -> &'static str {
    static KNOWN: OnceLock<std::collections::HashSet<&'static str>> = OnceLock::new();
    let known = KNOWN.get_or_init(|| {
        let mut names = std::collections::HashSet::new();
        if let Ok(pool) = prost_reflect::DescriptorPool::decode(crate::pb::FILE_DESCRIPTOR_SET) {
            for service in pool.services() {
                for method in service.methods() {
                    names.insert(&*Box::leak(
                        format!("/{}/{}", service.full_name(), method.name()).into_boxed_str(),
                    ));
                }
            }
        }
        names.extend([
            "/grpc.health.v1.Health/Check",
            "/grpc.health.v1.Health/Watch",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ]);
        names
    });
    known.get(path).copied().unwrap_or("other")
}

fn record_call(rpc: &'static str, code: Code, seconds: f64) {
    let code = code_name(code);
    metrics::counter!(RPC_REQUESTS, "rpc" => rpc, "code" => code).increment(1);
    metrics::histogram!(RPC_DURATION, "rpc" => rpc, "code" => code).record(seconds);
}

/// Counts bytes of uploads committed.
pub fn upload_bytes(bytes: u64) {
    metrics::counter!(UPLOAD_BYTES).increment(bytes);
}

/// Counts a processing job's attempt ending with `outcome`.
pub fn job_outcome(outcome: &'static str) {
    metrics::counter!(JOB_OUTCOMES, "outcome" => outcome).increment(1);
}

/// The Prometheus text exposition, with the gauges read now.
pub fn render(gauges: &Gauges) -> String {
    let handle = install();
    for (name, value) in [
        (STREAMS_OPEN, gauges.streams_open),
        (JOBS_PENDING, gauges.jobs_pending),
        (JOBS_RUNNING, gauges.jobs_running),
        (JOBS_DEAD, gauges.jobs_dead),
    ] {
        metrics::gauge!(name).set(value as f64);
    }
    handle.render()
}

/// Values read at scrape time.
#[derive(Debug, Default)]
pub struct Gauges {
    /// Open event streams here.
    pub streams_open: i64,
    /// Pending jobs.
    pub jobs_pending: i64,
    /// Running jobs.
    pub jobs_running: i64,
    /// Dead jobs.
    pub jobs_dead: i64,
}

fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Records every call through the services it wraps.
#[derive(Debug, Clone, Copy, Default)]
pub struct MetricsLayer;

impl<S> tower::Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MetricsService { inner }
    }
}

/// See [`MetricsLayer`].
#[derive(Debug, Clone)]
pub struct MetricsService<S> {
    inner: S,
}

impl<S, B, ResBody> tower::Service<Request<B>> for MetricsService<S>
where
    S: tower::Service<Request<B>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body<Data = Bytes>,
{
    type Response = Response<Observed<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let rpc = rpc_label(request.uri().path());
        let started = Instant::now();
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            // A trailers-only answer (an error before any message) has its
            // status in the headers.
            let early = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
                .map(Code::from);
            Ok(response.map(|body| Observed {
                body,
                rpc,
                started,
                code: early,
                recorded: false,
            }))
        })
    }
}

pin_project_lite::pin_project! {
    /// A response body that records its call when it ends.
    pub struct Observed<B> {
        #[pin]
        body: B,
        rpc: &'static str,
        started: Instant,
        code: Option<Code>,
        recorded: bool,
    }

    impl<B> PinnedDrop for Observed<B> {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if !*this.recorded {
                // Dropped before its end: the client went away.
                let code = this.code.unwrap_or(Code::Cancelled);
                record_call(this.rpc, code, this.started.elapsed().as_secs_f64());
            }
        }
    }
}

impl<B: Body<Data = Bytes>> Body for Observed<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let polled = this.body.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    *this.code = trailers
                        .get("grpc-status")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<i32>().ok())
                        .map(Code::from);
                }
            }
            Poll::Ready(end) => {
                if !*this.recorded {
                    *this.recorded = true;
                    let fallback = if end.is_none() { Code::Ok } else { Code::Unknown };
                    let code = this.code.unwrap_or(fallback);
                    record_call(this.rpc, code, this.started.elapsed().as_secs_f64());
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
