//! Operations endpoints: `/healthz` (the process answers), `/readyz` (the
//! database answers and its schema is current) and `/metrics` (Prometheus
//! text), which `DEBRIEF_METRICS_ADDR` can move to an address of its own.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use crate::metrics::Gauges;
use crate::server::AppState;

/// `/healthz` and `/readyz`, and `/metrics` unless it has its own address.
pub fn routes(state: AppState) -> axum::Router {
    let mut router = axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .route("/readyz", axum::routing::get(ready));
    if state.config.metrics_addr.is_none() {
        router = router.route("/metrics", axum::routing::get(metrics));
    }
    router.with_state(state)
}

/// `/metrics` alone, for its own address.
pub fn metrics_routes(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/metrics", axum::routing::get(metrics))
        .with_state(state)
}

async fn ready(State(state): State<AppState>) -> Response {
    let verdict = match state.db.migration_status().await {
        Err(error) => Err(format!("the database does not answer: {error}")),
        Ok(status) if status.iter().any(|(_, applied)| !applied) => {
            Err("the database schema is not current: migrations are pending".to_owned())
        }
        Ok(_) => Ok(()),
    };
    match verdict {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(reason) => {
            tracing::warn!(%reason, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}\n")).into_response()
        }
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let mut gauges = Gauges {
        streams_open: i64::try_from(state.streams.open_count()).unwrap_or(i64::MAX),
        ..Gauges::default()
    };
    let depths = match state.db.as_service().await {
        Ok(scoped) => crate::processing::jobs::depths(&scoped).await,
        Err(error) => Err(error),
    };
    match depths {
        Ok(depths) => {
            gauges.jobs_pending = depths.pending;
            gauges.jobs_running = depths.running;
            gauges.jobs_dead = depths.dead;
        }
        Err(error) => tracing::warn!(%error, "could not read the queue for /metrics"),
    }
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        crate::metrics::global().render(&gauges),
    )
        .into_response()
}
