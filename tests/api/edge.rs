//! The HTTP/JSON edge through the real server: bindings from the protos,
//! proto3 JSON, the error table, and server streams as SSE and NDJSON.

use std::time::Duration;

use debrief::edge::rules::{self, Part, Segment};
use prost_reflect::DescriptorPool;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Backend, PASSWORD, TestApp, spawn_app, spawn_app_with};
use crate::on_both_backends;

on_both_backends!(
    every_http_binding_reaches_its_rpc,
    a_meeting_is_created_uploaded_and_read_over_http,
    errors_are_json_statuses_with_the_http_status_of_their_code,
    server_streams_are_server_sent_events_or_ndjson_and_resume,
    the_openapi_document_describes_every_binding_and_docs_render_it,
    per_user_limits_answer_429_over_http_and_resource_exhausted_over_grpc,
    a_call_over_the_request_timeout_is_a_504,
    an_event_source_opens_a_stream_with_a_single_use_ticket,
);

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Signs up over HTTP; returns the access token.
async fn sign_up(app: &TestApp, name: &str) -> String {
    let response = client()
        .post(format!("{}/v1/auth:signUp", app.url()))
        .json(&json!({"email": format!("{name}@example.com"), "password": PASSWORD, "displayName": name}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["tokens"]["accessToken"].as_str().unwrap().to_owned()
}

/// A concrete path for a template: each variable gets a made-up value.
fn sample_path(template: &rules::Template) -> String {
    let mut path = String::new();
    let segment = |s: &Segment| match s {
        Segment::Literal(text) => text.clone(),
        Segment::Any | Segment::Rest => "x".to_owned(),
    };
    for part in &template.parts {
        match part {
            Part::Segment(s) => path.push_str(&format!("/{}", segment(s))),
            Part::Variable(v) => {
                let value: Vec<String> = v.pattern.iter().map(segment).collect();
                path.push_str(&format!("/{}", value.join("/")));
            }
        }
    }
    if let Some(verb) = &template.verb {
        path.push_str(&format!(":{verb}"));
    }
    path
}

async fn every_http_binding_reaches_its_rpc(backend: Backend) {
    let app = spawn_app(backend).await;
    let token = sign_up(&app, "walker").await;
    let pool = DescriptorPool::decode(debrief::pb::FILE_DESCRIPTOR_SET).unwrap();
    let bindings = rules::bindings(&pool).unwrap();
    // Every RPC but the client stream has a binding.
    let bound: std::collections::BTreeSet<String> =
        bindings.iter().map(|b| b.rpc.full_name().to_owned()).collect();
    let unbound: Vec<String> = pool
        .services()
        .filter(|s| s.package_name() == "debrief.v1")
        .flat_map(|s| s.methods().collect::<Vec<_>>())
        .filter(|m| !m.is_client_streaming() && !bound.contains(m.full_name()))
        .map(|m| m.full_name().to_owned())
        .collect();
    assert!(unbound.is_empty(), "RPCs without an HTTP binding: {unbound:?}");

    for binding in &bindings {
        let path = sample_path(&binding.template);
        let mut request = client()
            .request(binding.method.clone(), format!("{}{path}", app.url()))
            .bearer_auth(&token)
            .timeout(Duration::from_secs(5));
        if binding.body != rules::Body::None {
            request = request.json(&json!({}));
        }
        let response = match request.send().await {
            Ok(response) => response,
            // A stream that stays open answered; reaching it is the point.
            Err(e) if e.is_timeout() => continue,
            Err(e) => panic!("{} {path}: {e}", binding.method),
        };
        let status = response.status();
        let text = if binding.rpc.is_server_streaming() && status == StatusCode::OK {
            String::new()
        } else {
            response.text().await.unwrap_or_default()
        };
        assert!(
            !text.contains("no API method is bound") && status != StatusCode::METHOD_NOT_ALLOWED,
            "{} {path} has no route: {status} {text}",
            binding.method
        );
        assert!(
            !status.is_server_error() || status == StatusCode::NOT_IMPLEMENTED,
            "{} {path} ({}): {status} {text}",
            binding.method,
            binding.rpc.full_name()
        );
    }
}

async fn a_meeting_is_created_uploaded_and_read_over_http(backend: Backend) {
    let app = spawn_app(backend).await;
    let http = client();
    let base = app.url();
    let token = sign_up(&app, "hana").await;
    let signed_in: Value = http
        .post(format!("{base}/v1/auth:signIn"))
        .json(&json!({"email": "hana@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        signed_in["tokens"]["refreshToken"]
            .as_str()
            .unwrap()
            .starts_with("drt_")
    );

    // body: "meeting" — the body is the meeting itself; int64 are strings
    // and enums names on the way out.
    let meeting: Value = http
        .post(format!("{base}/v1/meetings"))
        .bearer_auth(&token)
        .json(&json!({"title": "Standup", "participant_count": 4}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meeting["status"], "MEETING_STATUS_AWAITING_UPLOAD");
    assert_eq!(meeting["participantCount"], 4);
    let name = meeting["name"].as_str().unwrap().to_owned();

    // PATCH with the mask in the query string, the rest in the body.
    let updated: Value = http
        .patch(format!("{base}/v1/{name}?updateMask=title"))
        .bearer_auth(&token)
        .json(&json!({"title": "Weekly standup", "description": "ignored: not in the mask"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(updated["title"], "Weekly standup");
    assert!(updated.get("description").is_none(), "{updated}");

    // Query parameters: scalars, repeated enums by name.
    let listed: Value = http
        .get(format!(
            "{base}/v1/meetings?pageSize=5&statuses=MEETING_STATUS_AWAITING_UPLOAD&statuses=MEETING_STATUS_READY"
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["meetings"].as_array().unwrap().len(), 1);

    // Upload: JSON to create, raw bytes (google.api.HttpBody) to append.
    let file = crate::uploads::wav(300_000);
    let upload: Value = http
        .post(format!("{base}/v1/uploads"))
        .bearer_auth(&token)
        .json(&json!({"upload": {"meeting": name, "fileName": "standup.wav",
            "contentType": "audio/wav", "sizeBytes": file.len().to_string()}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let upload = upload["name"].as_str().unwrap().to_owned();
    let appended: Value = http
        .post(format!("{base}/v1/{upload}:append?offset=0"))
        .bearer_auth(&token)
        .header("content-type", "application/octet-stream")
        .body(file.clone())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(appended["committedBytes"], file.len().to_string());
    let completed: Value = http
        .post(format!("{base}/v1/{upload}:complete"))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(completed["meeting"]["status"], "MEETING_STATUS_QUEUED");

    // Another user: the same JSON NOT_FOUND as any missing meeting.
    let other = sign_up(&app, "ivo").await;
    let response = http
        .get(format!("{base}/v1/{name}"))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], 5);

    // An API key goes through the same checks: read-only cannot write.
    let key: Value = http
        .post(format!("{base}/v1/apiKeys"))
        .bearer_auth(&token)
        .json(&json!({"apiKey": {"displayName": "reports", "scopes": ["meetings:read"]}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = key["key"].as_str().unwrap();
    let read = http
        .get(format!("{base}/v1/{name}"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    let write = http
        .post(format!("{base}/v1/meetings"))
        .bearer_auth(key)
        .json(&json!({"title": "Sneaky"}))
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), StatusCode::FORBIDDEN);
}

/// Sends a request and returns its status, `Retry-After` and JSON body.
async fn call(request: reqwest::RequestBuilder) -> (StatusCode, Option<String>, Value) {
    let response = request.send().await.unwrap();
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = response.json().await.unwrap_or(Value::Null);
    (status, retry_after, body)
}

async fn errors_are_json_statuses_with_the_http_status_of_their_code(backend: Backend) {
    let app = spawn_app_with(backend, |vars| {
        vars.insert("DEBRIEF_AUTH_RATE_LIMIT".into(), "4".into());
        vars.insert("DEBRIEF_MAX_MESSAGE_SIZE".into(), "64KiB".into());
    })
    .await;
    let http = client();
    let base = app.url();
    let token = sign_up(&app, "jo").await;
    let authed = |request: reqwest::RequestBuilder| request.bearer_auth(&token);
    let waiting: Value = authed(http.post(format!("{base}/v1/meetings")))
        .json(&json!({"title": "Waiting"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let waiting = waiting["name"].as_str().unwrap().to_owned();

    let cases: Vec<(&str, reqwest::RequestBuilder, StatusCode, i64)> = vec![
        (
            "invalid argument",
            authed(http.post(format!("{base}/v1/meetings"))).json(&json!({"title": " "})),
            StatusCode::BAD_REQUEST,
            3,
        ),
        (
            "unknown field",
            authed(http.post(format!("{base}/v1/meetings"))).json(&json!({"title": "x", "colour": "red"})),
            StatusCode::BAD_REQUEST,
            3,
        ),
        (
            "malformed JSON",
            authed(http.post(format!("{base}/v1/meetings")))
                .header("content-type", "application/json")
                .body("{\"title\": "),
            StatusCode::BAD_REQUEST,
            3,
        ),
        (
            "unknown query parameter",
            authed(http.get(format!("{base}/v1/meetings?colour=red"))),
            StatusCode::BAD_REQUEST,
            3,
        ),
        (
            "wrong content type",
            authed(http.post(format!("{base}/v1/meetings")))
                .header("content-type", "text/plain")
                .body("title=x"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            3,
        ),
        (
            "body over the limit",
            authed(http.post(format!("{base}/v1/meetings")))
                .header("content-type", "application/json")
                .body(format!("{{\"title\": \"{}\"}}", "x".repeat(100_000))),
            StatusCode::PAYLOAD_TOO_LARGE,
            11,
        ),
        (
            "unauthenticated",
            http.get(format!("{base}/v1/meetings")),
            StatusCode::UNAUTHORIZED,
            16,
        ),
        (
            "permission denied",
            authed(http.get(format!("{base}/v1/jobs"))),
            StatusCode::FORBIDDEN,
            7,
        ),
        (
            "not found",
            authed(http.get(format!("{base}/v1/meetings/01a21bb3-0a28-7270-afd1-3c015abb5754"))),
            StatusCode::NOT_FOUND,
            5,
        ),
        (
            "already exists",
            http.post(format!("{base}/v1/auth:signUp"))
                .json(&json!({"email": "jo@example.com", "password": PASSWORD})),
            StatusCode::CONFLICT,
            6,
        ),
        (
            "failed precondition",
            authed(http.post(format!("{base}/v1/{waiting}:retryProcessing"))).json(&json!({})),
            StatusCode::BAD_REQUEST,
            9,
        ),
        (
            "no such path",
            authed(http.get(format!("{base}/v1/nothing/here"))),
            StatusCode::NOT_FOUND,
            5,
        ),
    ];
    for (what, request, http_status, code) in cases {
        let (status, _, body) = call(request).await;
        assert_eq!(status, http_status, "{what}: {body}");
        assert_eq!(body["code"], code, "{what}: {body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{what}: {body}"
        );
        for detail in body["details"].as_array().unwrap() {
            assert!(
                detail["@type"]
                    .as_str()
                    .unwrap()
                    .starts_with("type.googleapis.com/"),
                "{what}: {body}"
            );
        }
    }
    // Field violations name the field.
    let (_, _, body) =
        call(authed(http.post(format!("{base}/v1/meetings"))).json(&json!({"title": " "}))).await;
    let violations = body["details"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["@type"] == "type.googleapis.com/google.rpc.BadRequest")
        .unwrap();
    assert_eq!(
        violations["fieldViolations"][0]["field"], "meeting.title",
        "{body}"
    );
    // An unknown field is named.
    let (_, _, body) =
        call(authed(http.post(format!("{base}/v1/meetings"))).json(&json!({"title": "x", "colour": "red"})))
            .await;
    assert_eq!(
        body["details"][1]["fieldViolations"][0]["field"], "colour",
        "{body}"
    );
    // A wrong verb on a known path is 405 with Allow.
    let response = authed(http.delete(format!("{base}/v1/meetings")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(response.headers()["allow"].to_str().unwrap().contains("GET"));

    // Rate limits: 429 with Retry-After.
    let mut limited = None;
    for _ in 0..10 {
        let (status, retry_after, body) = call(
            http.post(format!("{base}/v1/auth:signIn"))
                .json(&json!({"email": "jo@example.com", "password": "wrong-password-1"})),
        )
        .await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some((retry_after, body));
            break;
        }
    }
    let (retry_after, body) = limited.expect("the sign-in limit answers 429");
    assert_eq!(body["code"], 8);
    let seconds: u64 = retry_after.expect("Retry-After").parse().unwrap();
    assert!(seconds >= 1, "{seconds}");
}

/// Reads from a streaming response until `until` holds for the text so far.
async fn read_until(response: &mut reqwest::Response, until: impl Fn(&str) -> bool) -> String {
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !until(&text) {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .unwrap_or_else(|_| panic!("stream stalled; so far: {text}"))
            .unwrap();
        match chunk {
            Some(bytes) => text.push_str(&String::from_utf8_lossy(&bytes)),
            None => break,
        }
    }
    text
}

/// The ids of the SSE events in `text`.
fn event_ids(text: &str) -> Vec<i64> {
    text.lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .map(|id| id.parse().unwrap())
        .collect()
}

async fn server_streams_are_server_sent_events_or_ndjson_and_resume(backend: Backend) {
    let app = spawn_app(backend).await;
    let http = client();
    let base = app.url();
    let token = sign_up(&app, "kai").await;
    let new_meeting = || async {
        http.post(format!("{base}/v1/meetings"))
            .bearer_auth(&token)
            .json(&json!({"title": "Standup"}))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()["name"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let meeting = new_meeting().await;
    let upload = |size: usize| {
        let (http, base, token, meeting) = (http.clone(), base.clone(), token.clone(), meeting.clone());
        async move {
            let created: Value = http
                .post(format!("{base}/v1/uploads"))
                .bearer_auth(&token)
                .json(&json!({"upload": {"meeting": meeting, "fileName": "a.wav",
                    "contentType": "audio/wav", "sizeBytes": size.to_string()}}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            created["name"].as_str().unwrap().to_owned()
        }
    };

    // Live: the meeting's state first, then its events as they happen.
    let mut live = http
        .get(format!("{base}/v1/{meeting}:watch"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(live.status(), StatusCode::OK);
    assert_eq!(live.headers()["content-type"], "text/event-stream");
    let first = read_until(&mut live, |t| t.contains("\n\n")).await;
    assert!(first.starts_with("data: {\"meeting\""), "{first}");
    // Two chunks (the smallest allowed is 256 KiB), then completion: three
    // events.
    let file = crate::uploads::wav(600_000);
    let name = upload(file.len()).await;
    for (i, chunk) in file.chunks(300_000).enumerate() {
        let response = http
            .post(format!("{base}/v1/{name}:append?offset={}", i * 300_000))
            .bearer_auth(&token)
            .header("content-type", "application/octet-stream")
            .body(chunk.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    let response = http
        .post(format!("{base}/v1/{name}:complete"))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let text = read_until(&mut live, |t| event_ids(t).len() >= 3).await;
    let ids = event_ids(&text);
    assert_eq!(ids[..3], [1, 2, 3], "{text}");
    drop(live);

    // Reconnecting with Last-Event-ID resumes after it, without gaps.
    let mut resumed = http
        .get(format!("{base}/v1/events:subscribe"))
        .bearer_auth(&token)
        .header("last-event-id", "1")
        .send()
        .await
        .unwrap();
    let text = read_until(&mut resumed, |t| event_ids(t).len() >= 2).await;
    assert_eq!(event_ids(&text)[..2], [2, 3], "{text}");
    drop(resumed);

    // NDJSON when asked; a stream the server ends with an error ends with
    // an error line, not a silent close.
    let mut lines = http
        .get(format!("{base}/v1/events:subscribe?afterEventId=2"))
        .bearer_auth(&token)
        .header("accept", "application/x-ndjson")
        .send()
        .await
        .unwrap();
    assert_eq!(lines.headers()["content-type"], "application/x-ndjson");
    let text = read_until(&mut lines, |t| t.lines().count() >= 1).await;
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["event"]["id"], "3", "{text}");
    app.begin_shutdown();
    let text = read_until(&mut lines, |t| t.contains("\"error\"")).await;
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], 14, "{text}");
}

async fn the_openapi_document_describes_every_binding_and_docs_render_it(backend: Backend) {
    let app = spawn_app(backend).await;
    let http = client();
    let base = app.url();
    let document: Value = http
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(document["openapi"], "3.1.0");
    let pool = DescriptorPool::decode(debrief::pb::FILE_DESCRIPTOR_SET).unwrap();
    let bindings = rules::bindings(&pool).unwrap();
    let operations: usize = document["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p.as_object().unwrap().len())
        .sum();
    assert_eq!(operations, bindings.len());
    // The same document as `debrief openapi` prints.
    assert_eq!(document, debrief::edge::openapi_document().unwrap());

    let list_plans = &document["paths"]["/v1/plans"]["get"];
    assert_eq!(list_plans["summary"], "Lists the plans and their limits");
    assert_eq!(list_plans["security"], json!([]), "ListPlans is public");
    let get_meeting = &document["paths"]["/v1/meetings/{meeting}"]["get"];
    assert!(
        get_meeting.get("security").is_none(),
        "GetMeeting needs the bearer scheme"
    );
    assert_eq!(get_meeting["parameters"][0]["in"], "path");
    assert_eq!(
        get_meeting["responses"]["default"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/google.rpc.Status"
    );
    let append = &document["paths"]["/v1/uploads/{upload}:append"]["post"];
    assert!(append["requestBody"]["content"]["application/octet-stream"].is_object());
    let meeting = &document["components"]["schemas"]["debrief.v1.Meeting"];
    assert_eq!(meeting["properties"]["createTime"]["format"], "date-time");
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );

    // The reference page and its renderer come from the server itself.
    let page = http.get(format!("{base}/docs")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("http"),
        "{csp}"
    );
    assert!(page.text().await.unwrap().contains("/docs/redoc.js"));
    let script = http.get(format!("{base}/docs/redoc.js")).send().await.unwrap();
    assert_eq!(script.status(), StatusCode::OK);
    assert!(script.bytes().await.unwrap().len() > 500_000);
}

async fn per_user_limits_answer_429_over_http_and_resource_exhausted_over_grpc(backend: Backend) {
    let app = spawn_app_with(backend, |vars| {
        vars.insert("DEBRIEF_RATE_LIMIT_WRITES".into(), "3".into());
    })
    .await;
    let http = client();
    let base = app.url();
    let token = sign_up(&app, "lou").await;
    let create = || {
        http.post(format!("{base}/v1/meetings"))
            .bearer_auth(&token)
            .json(&json!({"title": "Standup"}))
    };
    for _ in 0..3 {
        assert_eq!(create().send().await.unwrap().status(), StatusCode::OK);
    }
    let (status, retry_after, body) = call(create()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["code"], 8);
    assert!(retry_after.expect("Retry-After").parse::<u64>().unwrap() >= 1);
    // Reads have a limit of their own.
    let (status, _, _) = call(http.get(format!("{base}/v1/meetings")).bearer_auth(&token)).await;
    assert_eq!(status, StatusCode::OK);
    // The same limit over gRPC: RESOURCE_EXHAUSTED with RetryInfo.
    let refused = debrief::pb::v1::meeting_service_client::MeetingServiceClient::new(app.channel.clone())
        .create_meeting(crate::helpers::bearer(
            &token,
            debrief::pb::v1::CreateMeetingRequest {
                meeting: Some(debrief::pb::v1::Meeting {
                    title: "Standup".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert!(crate::helpers::details(&refused).retry_info().is_some());
}

async fn a_call_over_the_request_timeout_is_a_504(backend: Backend) {
    // Signing in checks a password hash: far longer than a millisecond.
    let app = spawn_app_with(backend, |vars| {
        vars.insert("DEBRIEF_REQUEST_TIMEOUT".into(), "1ms".into());
    })
    .await;
    let (status, _, body) = call(
        client()
            .post(format!("{}/v1/auth:signIn", app.url()))
            .json(&json!({"email": "nobody@example.com", "password": PASSWORD})),
    )
    .await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(body["code"], 4);
}

async fn an_event_source_opens_a_stream_with_a_single_use_ticket(backend: Backend) {
    let app = spawn_app(backend).await;
    let http = client();
    let base = app.url();
    let token = sign_up(&app, "eva").await;
    let mint = || async {
        let minted: Value = http
            .post(format!("{base}/v1/streamTickets"))
            .bearer_auth(&token)
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(minted["expireTime"].is_string(), "{minted}");
        minted["ticket"].as_str().unwrap().to_owned()
    };
    let user_id = app.state.auth.keys.verify(&token).unwrap().sub;
    let notice = |title: &str| {
        let app = &app;
        let title = title.to_owned();
        async move {
            let scoped = app.db.as_user(user_id).await.unwrap();
            let payload = debrief::events::model::Payload::SystemNotice {
                title,
                message: "The quarterly review recording is ready.".into(),
            };
            debrief::events::publish(&scoped, user_id, None, payload)
                .await
                .unwrap();
            scoped.commit().await.unwrap();
        }
    };
    // What a browser's EventSource does: a plain GET, no headers of ours.
    let ticket = mint().await;
    let mut stream = http
        .get(format!(
            "{base}/v1/events:subscribe?ticket={ticket}&afterEventId=0"
        ))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    notice("first").await;
    notice("second").await;
    let text = read_until(&mut stream, |t| event_ids(t).len() >= 2).await;
    assert_eq!(event_ids(&text)[..2], [1, 2], "{text}");
    drop(stream);

    // Single-use: the same ticket does not open a second stream.
    let reused = http
        .get(format!("{base}/v1/events:subscribe?ticket={ticket}"))
        .send()
        .await
        .unwrap();
    assert_eq!(reused.status(), StatusCode::UNAUTHORIZED);
    let body: Value = reused.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("mint a new one"),
        "{body}"
    );
    // Reconnecting means a new ticket and the last id seen.
    let mut resumed = http
        .get(format!(
            "{base}/v1/events:subscribe?ticket={}&afterEventId=1",
            mint().await
        ))
        .send()
        .await
        .unwrap();
    let text = read_until(&mut resumed, |t| !event_ids(t).is_empty()).await;
    assert_eq!(event_ids(&text)[0], 2, "{text}");
    drop(resumed);

    // Only on streaming GETs: not on other calls, not over gRPC.
    let unary = http
        .get(format!("{base}/v1/meetings?ticket={}", mint().await))
        .send()
        .await
        .unwrap();
    assert_ne!(unary.status(), StatusCode::OK);
    let status = app
        .profiles()
        .get_profile(crate::helpers::bearer(
            &mint().await,
            debrief::pb::v1::GetProfileRequest {},
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    let forged = http
        .get(format!("{base}/v1/events:subscribe?ticket=dst_made-up"))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);

    // A ticket works only while its session does.
    let unused = mint().await;
    let signed_out = http
        .post(format!("{base}/v1/auth:signOut"))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(signed_out.status(), StatusCode::OK);
    let after = http
        .get(format!("{base}/v1/events:subscribe?ticket={unused}"))
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED);
}
