//! One port serves gRPC, gRPC-Web (with CORS), reflection and health.

use std::collections::BTreeSet;

use debrief::pb::SERVICE_NAMES;
use debrief::pb::v1::GetMeetingRequest;
use debrief::pb::v1::meeting_service_client::MeetingServiceClient;
use futures::StreamExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::{ALLOWED_ORIGIN, Backend, spawn_app};

type GrpcWebBody = tonic_web::GrpcWebCall<tonic::body::Body>;
use crate::on_both_backends;

on_both_backends!(
    health_reports_serving_over_grpc,
    health_reports_serving_over_grpc_web,
    cors_preflight_allows_only_configured_origins,
    reflection_lists_every_service_in_v1_and_v1alpha,
    request_id_is_echoed_or_generated,
    progress_download_analytics_and_deletion_work_over_grpc_web,
);

async fn health_reports_serving_over_grpc(backend: Backend) {
    let app = spawn_app(backend).await;
    for service in std::iter::once("").chain(SERVICE_NAMES) {
        let response = app
            .health()
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("health check of {service:?}: {e}"));
        assert_eq!(
            response.into_inner().status(),
            ServingStatus::Serving,
            "{service:?}"
        );
    }
}

/// A tonic client speaking gRPC-Web (tonic-web's client layer) over HTTP/1.1,
/// as browsers do, or over HTTP/2.
pub fn grpc_web_channel(http2: bool) -> tonic_web::GrpcWebClientService<Client<HttpConnector, GrpcWebBody>> {
    let mut builder = Client::builder(TokioExecutor::new());
    builder.http2_only(http2);
    tower::ServiceBuilder::new()
        .layer(tonic_web::GrpcWebClientLayer::new())
        .service(builder.build_http())
}

async fn health_reports_serving_over_grpc_web(backend: Backend) {
    let app = spawn_app(backend).await;
    for http2 in [false, true] {
        let mut health = HealthClient::with_origin(grpc_web_channel(http2), app.url().parse().unwrap());
        let response = health
            .check(HealthCheckRequest {
                service: "debrief.v1.MeetingService".into(),
            })
            .await
            .unwrap_or_else(|e| panic!("health check over gRPC-Web (http2: {http2}): {e}"));
        assert_eq!(response.into_inner().status(), ServingStatus::Serving);

        // Errors travel too: the auth layer refuses a call without credentials.
        let mut meetings =
            MeetingServiceClient::with_origin(grpc_web_channel(http2), app.url().parse().unwrap());
        let status = meetings
            .get_meeting(GetMeetingRequest {
                name: "meetings/x".into(),
            })
            .await
            .expect_err("no credentials");
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
    }
}

async fn cors_preflight_allows_only_configured_origins(backend: Backend) {
    let app = spawn_app(backend).await;
    let http = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        http.request(
            reqwest::Method::OPTIONS,
            format!("{}/grpc.health.v1.Health/Check", app.url()),
        )
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "content-type,x-grpc-web,x-user-agent,authorization",
        )
        .send()
    };

    let allowed = preflight(ALLOWED_ORIGIN).await.expect("preflight");
    assert!(allowed.status().is_success());
    let headers = allowed.headers();
    assert_eq!(headers["access-control-allow-origin"], ALLOWED_ORIGIN);
    let allow_headers = headers["access-control-allow-headers"].to_str().unwrap();
    for header in ["content-type", "x-grpc-web", "authorization"] {
        assert!(allow_headers.contains(header), "{allow_headers}");
    }
    assert!(
        headers["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );

    let refused = preflight("http://evil.example").await.expect("preflight");
    assert!(refused.headers().get("access-control-allow-origin").is_none());

    // An actual gRPC-Web call from the allowed origin exposes the status headers.
    let call = http
        .post(format!("{}/grpc.health.v1.Health/Check", app.url()))
        .header("origin", ALLOWED_ORIGIN)
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(vec![0u8, 0, 0, 0, 0])
        .send()
        .await
        .expect("gRPC-Web call");
    assert_eq!(call.headers()["access-control-allow-origin"], ALLOWED_ORIGIN);
    let exposed = call.headers()["access-control-expose-headers"].to_str().unwrap();
    for header in [
        "grpc-status",
        "grpc-message",
        "grpc-status-details-bin",
        "x-request-id",
    ] {
        assert!(exposed.contains(header), "{exposed}");
    }
    assert_eq!(call.headers()["x-content-type-options"], "nosniff");
}

async fn reflection_lists_every_service_in_v1_and_v1alpha(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut expected: BTreeSet<String> = SERVICE_NAMES.iter().map(|s| s.to_string()).collect();
    expected.insert("grpc.health.v1.Health".into());

    {
        use tonic_reflection::pb::v1::ServerReflectionRequest;
        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut stream = ServerReflectionClient::new(app.channel.clone())
            .server_reflection_info(futures::stream::iter([request]))
            .await
            .expect("reflection v1")
            .into_inner();
        let response = stream.next().await.expect("a response").expect("ok");
        let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
            panic!("unexpected reflection response {response:?}");
        };
        let names: BTreeSet<String> = list.service.into_iter().map(|s| s.name).collect();
        assert!(names.is_superset(&expected), "v1 listed {names:?}");
        assert!(names.contains("grpc.reflection.v1.ServerReflection"), "{names:?}");
    }
    {
        use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
        let requests = [
            ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            },
            // Old clients resolve the schema too: ask for a service's file.
            ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::FileContainingSymbol(
                    "debrief.v1.MeetingService".into(),
                )),
            },
        ];
        let mut stream = ServerReflectionClient::new(app.channel.clone())
            .server_reflection_info(futures::stream::iter(requests))
            .await
            .expect("reflection v1alpha")
            .into_inner();
        let response = stream.next().await.expect("a response").expect("ok");
        let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
            panic!("unexpected reflection response {response:?}");
        };
        let names: BTreeSet<String> = list.service.into_iter().map(|s| s.name).collect();
        assert!(names.is_superset(&expected), "v1alpha listed {names:?}");
        let response = stream.next().await.expect("a response").expect("ok");
        let Some(MessageResponse::FileDescriptorResponse(files)) = response.message_response else {
            panic!("unexpected reflection response {response:?}");
        };
        assert!(!files.file_descriptor_proto.is_empty());
    }
}

async fn request_id_is_echoed_or_generated(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut request = tonic::Request::new(HealthCheckRequest::default());
    request
        .metadata_mut()
        .insert("x-request-id", "trace-me-42".parse().unwrap());
    let response = app.health().check(request).await.expect("health");
    assert_eq!(response.metadata().get("x-request-id").unwrap(), "trace-me-42");

    let response = app
        .health()
        .check(HealthCheckRequest::default())
        .await
        .expect("health");
    let generated = response
        .metadata()
        .get("x-request-id")
        .expect("a generated id")
        .to_str()
        .unwrap();
    assert!(uuid::Uuid::parse_str(generated).is_ok(), "{generated}");

    // An id that could pollute the logs is replaced, not echoed.
    let mut request = tonic::Request::new(HealthCheckRequest::default());
    request
        .metadata_mut()
        .insert("x-request-id", "x".repeat(500).parse().unwrap());
    let response = app.health().check(request).await.expect("health");
    let replaced = response.metadata().get("x-request-id").unwrap().to_str().unwrap();
    assert!(uuid::Uuid::parse_str(replaced).is_ok(), "{replaced}");
}

/// What a browser does with the learning half: its progress and history, a
/// recording played back, an admin's analytics and deletions, and the
/// person deleting their own account, all over gRPC-Web.
async fn progress_download_analytics_and_deletion_work_over_grpc_web(backend: Backend) {
    use debrief::pb::v1 as pb;
    use debrief::pb::v1::admin_service_client::AdminServiceClient;
    use debrief::pb::v1::auth_service_client::AuthServiceClient;
    use debrief::pb::v1::progress_service_client::ProgressServiceClient;
    let app = spawn_app(backend).await;
    let origin: http::Uri = app.url().parse().unwrap();
    let web = || grpc_web_channel(false);
    let eve = app.sign_up("eve").await;
    let fay = app.sign_up("fay").await;
    let admin = crate::usage::admin(&app).await;
    let recording = crate::processing::short();
    let meeting = crate::processing::upload(&app, &eve, &recording).await;

    let mut progress = ProgressServiceClient::with_origin(web(), origin.clone());
    let standing = progress
        .get_progress(eve.request(pb::GetProgressRequest {}))
        .await
        .expect("GetProgress over gRPC-Web")
        .into_inner();
    assert!(standing.progress.is_some());
    let history = progress
        .list_skill_history(eve.request(pb::ListSkillHistoryRequest {
            skill: pb::Skill::Pacing.into(),
            ..Default::default()
        }))
        .await
        .expect("ListSkillHistory over gRPC-Web")
        .into_inner();
    assert!(history.points.is_empty());

    let mut meetings = MeetingServiceClient::with_origin(web(), origin.clone());
    let mut pieces = meetings
        .download_recording(eve.request(pb::DownloadRecordingRequest {
            name: format!("{meeting}/recording"),
            offset: 0,
            length: 0,
        }))
        .await
        .expect("DownloadRecording over gRPC-Web")
        .into_inner();
    let mut downloaded = Vec::new();
    while let Some(piece) = pieces.next().await {
        downloaded.extend_from_slice(&piece.unwrap().data);
    }
    assert!(downloaded == recording, "byte for byte over gRPC-Web");

    let mut operators = AdminServiceClient::with_origin(web(), origin.clone());
    let analytics = operators
        .get_analytics(crate::helpers::bearer(&admin, pb::GetAnalyticsRequest::default()))
        .await
        .expect("GetAnalytics over gRPC-Web")
        .into_inner();
    assert!(analytics.analytics.is_some());
    operators
        .delete_user(crate::helpers::bearer(
            &admin,
            pb::DeleteUserRequest {
                name: format!("users/{}", fay.id),
                reason: "duplicate account, merged into ticket 1170".into(),
            },
        ))
        .await
        .expect("DeleteUser over gRPC-Web");
    AuthServiceClient::with_origin(web(), origin)
        .delete_account(eve.request(pb::DeleteAccountRequest::default()))
        .await
        .expect("DeleteAccount over gRPC-Web, just after signing in");
    for user in [&eve, &fay] {
        let refused = app
            .profiles()
            .get_profile(user.request(pb::GetProfileRequest {}))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    }
}
