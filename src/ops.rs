//! Operations endpoints: `/healthz` (the process answers), `/readyz` (the
//! database answers and its schema is current) and `/metrics` (Prometheus
//! text), which `DEBRIEF_METRICS_ADDR` can move to an address of its own.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use std::time::Duration;

use http::{HeaderValue, StatusCode, header};

use std::sync::Arc;

use crate::events::stream::Streams;
use crate::metrics::Gauges;
use crate::shared::Shared;

/// What the operations endpoints read.
#[derive(Clone)]
pub struct Ops {
    /// The database and configuration.
    pub state: Shared,
    /// The open event streams, counted in `/metrics`.
    pub streams: Arc<Streams>,
}

/// `/healthz` and `/readyz`, and `/metrics` unless it has its own address.
pub fn routes(ops: Ops) -> axum::Router {
    let mut router = axum::Router::new()
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .route("/readyz", axum::routing::get(ready));
    if ops.state.config.metrics_addr.is_none() {
        router = router.route("/metrics", axum::routing::get(metrics));
    }
    router.with_state(ops)
}

/// `/metrics` alone, for its own address.
pub fn metrics_routes(ops: Ops) -> axum::Router {
    axum::Router::new()
        .route("/metrics", axum::routing::get(metrics))
        .with_state(ops)
}

/// How long `/readyz` and `/metrics` wait for the database: a load
/// balancer's check gets its answer in time whatever the database does.
const DATABASE_CHECK: Duration = Duration::from_secs(1);

async fn ready(State(Ops { state, .. }): State<Ops>) -> Response {
    let verdict = match tokio::time::timeout(DATABASE_CHECK, state.db.migration_status()).await {
        Err(_) => Err(format!(
            "the database did not answer within {} s",
            DATABASE_CHECK.as_secs()
        )),
        Ok(Err(error)) => {
            tracing::warn!(%error, "the database does not answer");
            Err("the database does not answer".to_owned())
        }
        Ok(Ok(status)) if status.iter().any(|(_, applied)| !applied) => {
            Err("the database schema is not current: migrations are pending".to_owned())
        }
        Ok(Ok(_)) => Ok(()),
    };
    match verdict {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(reason) => {
            tracing::warn!(%reason, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {reason}\n")).into_response()
        }
    }
}

async fn metrics(State(Ops { state, streams }): State<Ops>) -> Response {
    let mut gauges = Gauges {
        streams_open: i64::try_from(streams.open_count()).unwrap_or(i64::MAX),
        ..Gauges::default()
    };
    let depths = tokio::time::timeout(DATABASE_CHECK, async {
        let scoped = state.db.as_service().await?;
        crate::processing::jobs::depths(&scoped).await
    })
    .await
    .unwrap_or_else(|_| {
        Err(crate::error::AppError::internal(
            "the database did not answer in time",
        ))
    });
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
        crate::metrics::render(&gauges),
    )
        .into_response()
}
