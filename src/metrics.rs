//! Prometheus metrics of this process: per-RPC request counts and latency
//! histograms by status code (gRPC, gRPC-Web and the HTTP edge alike, since
//! the edge calls the same services), open event streams, upload bytes,
//! the processing queue and how jobs end.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use tonic::Code;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// The process's metrics.
#[derive(Default)]
pub struct Metrics {
    rpcs: Mutex<HashMap<(&'static str, Code), Histogram>>,
    upload_bytes: AtomicU64,
    job_outcomes: Mutex<HashMap<&'static str, u64>>,
}

/// The metrics of this process.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::default)
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

impl Metrics {
    fn record(&self, rpc: &'static str, code: Code, seconds: f64) {
        let mut rpcs = self.rpcs.lock().unwrap_or_else(|e| e.into_inner());
        let histogram = rpcs.entry((rpc, code)).or_default();
        histogram.count += 1;
        histogram.sum += seconds;
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            histogram.counts[i] += 1;
        }
    }

    /// Counts bytes of uploads committed.
    pub fn upload_bytes(&self, bytes: u64) {
        self.upload_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Counts a processing job's attempt ending with `outcome`.
    pub fn job_outcome(&self, outcome: &'static str) {
        *self
            .job_outcomes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(outcome)
            .or_default() += 1;
    }

    /// The Prometheus text exposition, with the gauges read now.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::new();
        out.push_str("# HELP debrief_rpc_requests_total Calls by RPC and status code.\n");
        out.push_str("# TYPE debrief_rpc_requests_total counter\n");
        let rpcs = self.rpcs.lock().unwrap_or_else(|e| e.into_inner());
        let mut keys: Vec<&(&str, Code)> = rpcs.keys().collect();
        keys.sort_by_key(|(rpc, code)| (*rpc, *code as i32));
        for key @ (rpc, code) in &keys {
            let h = &rpcs[*key];
            let _ = writeln!(
                out,
                "debrief_rpc_requests_total{{rpc=\"{rpc}\",code=\"{}\"}} {}",
                code_name(*code),
                h.count
            );
        }
        out.push_str(
            "# HELP debrief_rpc_duration_seconds Call latency by RPC and status code (a stream: its life).\n",
        );
        out.push_str("# TYPE debrief_rpc_duration_seconds histogram\n");
        for key @ (rpc, code) in &keys {
            let h = &rpcs[*key];
            let labels = format!("rpc=\"{rpc}\",code=\"{}\"", code_name(*code));
            let mut cumulative = 0;
            for (bound, count) in BUCKETS.iter().zip(h.counts) {
                cumulative += count;
                let _ = writeln!(
                    out,
                    "debrief_rpc_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "debrief_rpc_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(out, "debrief_rpc_duration_seconds_sum{{{labels}}} {}", h.sum);
            let _ = writeln!(out, "debrief_rpc_duration_seconds_count{{{labels}}} {}", h.count);
        }
        drop(rpcs);
        let gauge = |out: &mut String, name: &str, help: &str, value: i64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        };
        gauge(
            &mut out,
            "debrief_event_streams_open",
            "Event streams open on this instance.",
            gauges.streams_open,
        );
        gauge(
            &mut out,
            "debrief_jobs_pending",
            "Processing jobs waiting to run (all instances).",
            gauges.jobs_pending,
        );
        gauge(
            &mut out,
            "debrief_jobs_running",
            "Processing jobs held by a worker (all instances).",
            gauges.jobs_running,
        );
        gauge(
            &mut out,
            "debrief_jobs_dead",
            "Dead processing jobs waiting for a retry (all instances).",
            gauges.jobs_dead,
        );
        let _ = writeln!(
            out,
            "# HELP debrief_upload_bytes_total Upload bytes committed by this instance.\n\
             # TYPE debrief_upload_bytes_total counter\ndebrief_upload_bytes_total {}",
            self.upload_bytes.load(Ordering::Relaxed)
        );
        out.push_str("# HELP debrief_job_outcomes_total Processing job attempts by how they ended.\n");
        out.push_str("# TYPE debrief_job_outcomes_total counter\n");
        let outcomes = self.job_outcomes.lock().unwrap_or_else(|e| e.into_inner());
        let mut outcomes: Vec<_> = outcomes.iter().collect();
        outcomes.sort();
        for (outcome, count) in outcomes {
            let _ = writeln!(out, "debrief_job_outcomes_total{{outcome=\"{outcome}\"}} {count}");
        }
        out
    }
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
                global().record(this.rpc, code, this.started.elapsed().as_secs_f64());
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
                    global().record(this.rpc, code, this.started.elapsed().as_secs_f64());
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
