//! Bad input and internal failures give clear statuses, reveal nothing
//! internal, and never take the server down.

use debrief::pb::v1::{ListPlansRequest, SignUpRequest, auth_service_client::AuthServiceClient};
use sea_orm::ConnectionTrait;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::helpers::{Backend, TestApp, spawn_app, spawn_app_with, violation_fields};
use crate::on_both_backends;

on_both_backends!(
    an_internal_error_reaches_the_caller_as_internal_without_detail,
    an_unknown_rpc_is_unimplemented,
    malformed_protobuf_is_refused_and_the_server_carries_on,
    a_message_over_the_configured_size_is_refused,
    an_unknown_method_answers_unimplemented,
    every_bad_field_is_reported_at_once_in_words_for_a_person,
);

/// Asserts that the server still answers.
async fn still_serving(app: &TestApp) {
    let response = app
        .health()
        .check(HealthCheckRequest::default())
        .await
        .expect("still serving");
    assert_eq!(response.into_inner().status(), ServingStatus::Serving);
}

async fn an_internal_error_reaches_the_caller_as_internal_without_detail(backend: Backend) {
    let app = spawn_app(backend).await;
    // Break the schema under the running server (as its owner: the server's
    // own role may not).
    app.owner_db()
        .await
        .unscoped()
        .execute_unprepared("DROP TABLE plan_limits")
        .await
        .expect("drop a table");

    let status = app
        .usage()
        .list_plans(ListPlansRequest::default())
        .await
        .expect_err("must fail");
    assert_eq!(status.code(), Code::Internal);
    assert_eq!(status.message(), "internal error");
    assert!(status.details().is_empty(), "no details: {:?}", status.details());
    let everything = format!("{status:?}");
    for secret in ["plan_limits", "SELECT", "relation", "no such table", "sqlx"] {
        assert!(!everything.contains(secret), "leaked {secret:?}: {everything}");
    }
    still_serving(&app).await;
}

async fn an_unknown_rpc_is_unimplemented(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut grpc = tonic::client::Grpc::new(app.channel.clone());
    for path in [
        "/debrief.v1.MeetingService/NoSuchMethod",
        "/debrief.v1.NoSuchService/Get",
    ] {
        grpc.ready().await.expect("ready");
        let status = grpc
            .unary::<_, HealthCheckRequest, _>(
                tonic::Request::new(HealthCheckRequest::default()),
                http::uri::PathAndQuery::from_static(path),
                tonic_prost::ProstCodec::<HealthCheckRequest, HealthCheckRequest>::default(),
            )
            .await
            .expect_err(path);
        // debrief's namespace needs credentials before anything else.
        let expected = if path.starts_with("/debrief.v1.") {
            Code::Unauthenticated
        } else {
            Code::Unimplemented
        };
        assert_eq!(status.code(), expected, "{path}: {status:?}");
    }
    still_serving(&app).await;
}

async fn malformed_protobuf_is_refused_and_the_server_carries_on(backend: Backend) {
    let app = spawn_app(backend).await;
    // A gRPC-Web frame whose payload is not protobuf: a field header with
    // an invalid wire type, then a length running past the end.
    let garbage: &[u8] = &[0x0f, 0xff, 0xff, 0xff];
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(garbage.len() as u32).to_be_bytes());
    frame.extend_from_slice(garbage);
    let response = reqwest::Client::new()
        .post(format!("{}/debrief.v1.UsageService/ListPlans", app.url()))
        .header("content-type", "application/grpc-web+proto")
        .body(frame)
        .send()
        .await
        .expect("a response");
    assert_eq!(response.status(), 200, "gRPC errors travel in grpc-status");
    let code = response.headers()["grpc-status"].to_str().unwrap().to_owned();
    // INTERNAL is what gRPC specifies for a request that does not parse.
    assert_eq!(code, (Code::Internal as i32).to_string());
    let message = response.headers()["grpc-message"].to_str().unwrap();
    assert!(message.contains("decode"), "{message}");
    still_serving(&app).await;
}

async fn a_message_over_the_configured_size_is_refused(backend: Backend) {
    let app = spawn_app_with(backend, |vars| {
        vars.insert("DEBRIEF_MAX_MESSAGE_SIZE".into(), "4KiB".into());
    })
    .await;
    let mut auth = AuthServiceClient::new(app.channel.clone());
    let status = auth
        .sign_up(SignUpRequest {
            email: "big@example.com".into(),
            password: "p".repeat(8 * 1024),
            display_name: String::new(),
        })
        .await
        .expect_err("too big");
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert!(
        status.message().contains("4096"),
        "names the limit: {}",
        status.message()
    );
    still_serving(&app).await;
}

async fn an_unknown_method_answers_unimplemented(backend: Backend) {
    use debrief::pb::v1 as pb;
    let app = spawn_app(backend).await;
    let user = app.sign_up("early").await;
    // What an older or newer client sends for a method this server lacks.
    let mut grpc = tonic::client::Grpc::new(app.channel.clone());
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/debrief.v1.MeetingService/ArchiveMeeting");
    let status = grpc
        .unary::<_, pb::GetMeetingResponse, _>(
            user.request(pb::GetMeetingRequest::default()),
            path,
            tonic_prost::ProstCodec::default(),
        )
        .await
        .expect_err("no such method");
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    still_serving(&app).await;
}

async fn every_bad_field_is_reported_at_once_in_words_for_a_person(backend: Backend) {
    let app = spawn_app(backend).await;
    let status = app
        .auth()
        .sign_up(SignUpRequest {
            email: "nope".into(),
            password: "x".into(),
            display_name: String::new(),
        })
        .await
        .expect_err("two bad fields");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violation_fields(&status), ["email", "password"]);
    assert_eq!(
        status.message(),
        "email is not an email address; password must be at least 8 characters long"
    );

    // Over HTTP: the same violations, and a message that does not repeat
    // the code, which is a field of its own.
    let body: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/v1/auth:signUp", app.url()))
        .json(&serde_json::json!({"email": "nope", "password": "x"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["code"], 3);
    assert!(!body["message"].as_str().unwrap().contains("invalid"), "{body}");
    let fields: Vec<&str> = body["details"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["fieldViolations"].as_array())
        .flatten()
        .map(|v| v["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["email", "password"], "{body}");

    // Elsewhere too: a page request and a meeting with two bad fields each.
    let user = app.sign_up("every").await;
    let meetings = debrief::pb::v1::meeting_service_client::MeetingServiceClient::new(app.channel.clone());
    let status = meetings
        .clone()
        .list_meetings(user.request(debrief::pb::v1::ListMeetingsRequest {
            page_size: -1,
            page_token: "not a token".into(),
            statuses: vec![99],
            ..Default::default()
        }))
        .await
        .expect_err("three bad fields");
    assert_eq!(
        violation_fields(&status),
        ["page_size", "page_token", "statuses[0]"]
    );
    let status = meetings
        .clone()
        .create_meeting(user.request(debrief::pb::v1::CreateMeetingRequest {
            meeting: Some(debrief::pb::v1::Meeting {
                title: " ".into(),
                ..Default::default()
            }),
            request_id: "r".repeat(200),
        }))
        .await
        .expect_err("two bad fields");
    assert_eq!(violation_fields(&status), ["meeting.title", "request_id"]);
}
