//! Operations endpoints and the headers every response carries.

use debrief::pb::v1 as pb;
use reqwest::StatusCode;

use crate::helpers::{ALLOWED_ORIGIN, Backend, spawn_app, spawn_app_with};
use crate::on_both_backends;

on_both_backends!(
    health_readiness_and_metrics_answer,
    metrics_can_have_an_address_of_their_own,
    every_response_carries_the_security_headers,
);

async fn get(url: String) -> (StatusCode, String) {
    let response = reqwest::get(url).await.unwrap();
    let status = response.status();
    (status, response.text().await.unwrap())
}

/// The value of a metric line starting with `prefix`, if present.
fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn health_readiness_and_metrics_answer(backend: Backend) {
    let app = spawn_app(backend).await;
    let base = app.url();
    assert_eq!(get(format!("{base}/healthz")).await.0, StatusCode::OK);
    assert_eq!(get(format!("{base}/readyz")).await.0, StatusCode::OK);

    // One RPC over gRPC and over HTTP, and a refused one.
    app.usage()
        .list_plans(pb::ListPlansRequest::default())
        .await
        .unwrap();
    assert_eq!(get(format!("{base}/v1/plans")).await.0, StatusCode::OK);
    app.profiles()
        .get_profile(pb::GetProfileRequest {})
        .await
        .unwrap_err();
    let (status, text) = get(format!("{base}/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    let plans = metric(
        &text,
        "debrief_rpc_requests_total{rpc=\"/debrief.v1.UsageService/ListPlans\",code=\"OK\"}",
    )
    .unwrap_or_else(|| panic!("{text}"));
    assert!(plans >= 2.0, "{text}");
    assert!(
        metric(
            &text,
            "debrief_rpc_requests_total{rpc=\"/debrief.v1.ProfileService/GetProfile\",code=\"UNAUTHENTICATED\"}"
        )
        .is_some(),
        "{text}"
    );
    assert!(text.contains("debrief_rpc_duration_seconds_bucket{rpc=\"/debrief.v1.UsageService/ListPlans\",code=\"OK\",le=\"+Inf\"}"));
    for gauge in [
        "debrief_jobs_pending ",
        "debrief_jobs_running ",
        "debrief_jobs_dead ",
        "debrief_event_streams_open ",
        "debrief_upload_bytes_total ",
    ] {
        assert!(metric(&text, gauge).is_some(), "{gauge}: {text}");
    }

    // A schema that is not current makes the instance unready.
    let owner = app.owner_db().await;
    owner.migrate_down(1).await.unwrap();
    let (status, text) = get(format!("{base}/readyz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    assert!(text.contains("migrations are pending"), "{text}");
    owner.migrate().await.unwrap();
    assert_eq!(get(format!("{base}/readyz")).await.0, StatusCode::OK);
}

async fn metrics_can_have_an_address_of_their_own(backend: Backend) {
    let app = spawn_app_with(backend, |vars| {
        vars.insert("DEBRIEF_METRICS_ADDR".into(), "127.0.0.1:0".into());
    })
    .await;
    let own = app.metrics_addr.expect("a metrics address");
    let (status, text) = get(format!("http://{own}/metrics")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.contains("debrief_jobs_pending"));
    assert_eq!(
        get(format!("{}/metrics", app.url())).await.0,
        StatusCode::NOT_FOUND
    );
}

async fn every_response_carries_the_security_headers(backend: Backend) {
    let app = spawn_app(backend).await;
    let base = app.url();
    let http = reqwest::Client::new();
    for path in ["/v1/meetings", "/v1/plans", "/healthz", "/v1/nothing"] {
        let response = http.get(format!("{base}{path}")).send().await.unwrap();
        let headers = response.headers();
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{path}");
        assert!(
            headers["content-security-policy"]
                .to_str()
                .unwrap()
                .starts_with("default-src 'none'"),
            "{path}"
        );
        assert_eq!(headers["cache-control"], "no-store", "{path}");
        assert!(headers.get("set-cookie").is_none(), "{path}");
    }
    // CORS: the configured origin only.
    let preflight = |origin: &'static str| {
        http.request(reqwest::Method::OPTIONS, format!("{base}/v1/meetings"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization,content-type")
            .send()
    };
    let allowed = preflight(ALLOWED_ORIGIN).await.unwrap();
    assert_eq!(allowed.headers()["access-control-allow-origin"], ALLOWED_ORIGIN);
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
}
