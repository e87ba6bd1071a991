//! The `debrief` binary: start-up, configuration errors, signals, draining
//! and the migrate commands.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use debrief::pb::v1::ListPlansRequest;
use debrief::pb::v1::usage_service_client::UsageServiceClient;
use futures::StreamExt;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::helpers::{Backend, PASSWORD, bearer, debrief_command, spawn_app, test_env};
use crate::on_both_backends;

on_both_backends!(
    a_bad_configuration_value_stops_start_up_naming_it,
    serve_starts_answers_and_stops_cleanly_on_sigterm,
    shutdown_drains_calls_in_flight,
    migrate_commands_apply_revert_and_report,
    admin_create_user_bootstraps_an_admin_and_no_log_line_holds_a_secret,
    an_upload_survives_kill_9_and_resumes_where_it_stopped,
    email_goes_through_smtp_with_starttls_and_no_log_line_holds_a_link,
);

async fn run(vars: &HashMap<String, String>, args: &[&str]) -> std::process::Output {
    let mut command = Command::from(debrief_command(vars));
    let run = command.args(args).kill_on_drop(true).output();
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("debrief finishes")
        .expect("debrief runs")
}

async fn a_bad_configuration_value_stops_start_up_naming_it(backend: Backend) {
    let (base, _data_dir) = test_env(backend).await;
    for (var, value) in [
        ("DEBRIEF_ADDR", "not-an-address"),
        ("DEBRIEF_MAX_MESSAGE_SIZE", "lots"),
        ("DEBRIEF_LOG_FORMAT", "xml"),
        ("DEBRIEF_LOG_SAMPLE", "0"),
        ("DATABASE_URL", "mysql://root:hunter2@db/debrief"),
    ] {
        let mut vars = base.clone();
        vars.insert(var.into(), value.into());
        let output = run(&vars, &["serve"]).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{var}={value} started anyway");
        assert!(stderr.contains(var), "{var} not named in: {stderr}");
        assert!(!stderr.contains("hunter2"), "secret shown: {stderr}");
    }
}

/// Starts `debrief serve` on a free port and returns it with its address,
/// read from its first JSON log line that announces serving.
pub(crate) async fn serve(
    vars: &HashMap<String, String>,
) -> (
    tokio::process::Child,
    String,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    let mut child = Command::from(debrief_command(vars))
        .arg("serve")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn debrief serve");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let addr = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.expect("read log") {
            let json: serde_json::Value =
                serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
            let _ = tx.send(line);
            if let Some(addr) = json["fields"]["addr"].as_str() {
                return addr.to_owned();
            }
        }
        panic!("debrief exited before serving");
    })
    .await
    .expect("debrief starts serving");
    // Keep reading the log so the process never blocks on a full pipe.
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = tx.send(line);
        }
    });
    (child, addr, rx)
}

async fn serve_starts_answers_and_stops_cleanly_on_sigterm(backend: Backend) {
    let (mut vars, _data_dir) = test_env(backend).await;
    vars.insert("DEBRIEF_LOG_FORMAT".into(), "json".into());
    vars.insert("DEBRIEF_LOG_SAMPLE".into(), "2".into());
    let (mut child, addr, mut log) = serve(&vars).await;
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connect");

    let health = tonic_health::pb::health_client::HealthClient::new(channel.clone())
        .check(HealthCheckRequest::default())
        .await
        .expect("health");
    assert_eq!(health.into_inner().status(), ServingStatus::Serving);
    // One successful call in two is logged at info (DEBRIEF_LOG_SAMPLE=2):
    // the health check (the first) and the second of two ListPlans.
    for id in ["cli-test-unsampled", "cli-test-request"] {
        let mut request = tonic::Request::new(ListPlansRequest::default());
        request.metadata_mut().insert("x-request-id", id.parse().unwrap());
        let plans = UsageServiceClient::new(channel.clone())
            .list_plans(request)
            .await
            .expect("plans");
        assert_eq!(plans.into_inner().plans.len(), 3);
    }
    // A failure is always logged.
    let mut refused = tonic::Request::new(debrief::pb::v1::GetProfileRequest::default());
    refused
        .metadata_mut()
        .insert("x-request-id", "cli-test-refused".parse().unwrap());
    debrief::pb::v1::profile_service_client::ProfileServiceClient::new(channel)
        .get_profile(refused)
        .await
        .expect_err("no credentials");

    send_signal(&child, "-TERM").await;
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("stops within the grace period")
        .expect("exit status");
    assert!(status.success(), "exit status {status:?}");

    // The request's log lines carry its request id.
    let mut lines = Vec::new();
    while let Ok(line) = log.try_recv() {
        lines.push(line);
    }
    let request_lines: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("/debrief.v1.UsageService/ListPlans"))
        .collect();
    assert_eq!(request_lines.len(), 1, "{lines:#?}");
    assert!(
        request_lines[0].contains("cli-test-request"),
        "{request_lines:#?}"
    );
    assert!(request_lines[0].contains(r#""one_in":2"#), "{request_lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("cli-test-refused") && l.contains("WARN")),
        "the failure was not logged: {lines:#?}"
    );
    assert!(lines.iter().any(|l| l.contains("shutting down")), "{lines:#?}");
}

async fn shutdown_drains_calls_in_flight(backend: Backend) {
    let app = spawn_app(backend).await;

    // A health watcher learns that the server is going away.
    let mut watch = app
        .health()
        .watch(HealthCheckRequest::default())
        .await
        .expect("watch")
        .into_inner();
    assert_eq!(
        watch.next().await.unwrap().unwrap().status(),
        ServingStatus::Serving
    );

    // A gRPC-Web call whose request body is still arriving when shutdown
    // begins: a 5-byte frame header for an empty ListPlansRequest, sent in
    // two parts. One complete call first opens the keep-alive connection
    // that the slow call then reuses, so the server is already serving it.
    let http = reqwest::Client::new();
    let list_plans = format!("{}/debrief.v1.UsageService/ListPlans", app.url());
    let warm = http
        .post(&list_plans)
        .header("content-type", "application/grpc-web+proto")
        .body(vec![0u8; 5])
        .send()
        .await
        .expect("a first call");
    warm.bytes().await.expect("first body");
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(2);
    let call = tokio::spawn(
        http.post(&list_plans)
            .header("content-type", "application/grpc-web+proto")
            .body(reqwest::Body::wrap_stream(
                tokio_stream::wrappers::ReceiverStream::new(rx),
            ))
            .send(),
    );
    tx.send(Ok(vec![0, 0])).await.unwrap();
    // Nothing on the server signals that it has parsed the headers; give
    // them a moment on the open connection before shutdown starts.
    tokio::time::sleep(Duration::from_millis(200)).await;
    app.begin_shutdown();

    let status = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("update");
    assert_eq!(status.unwrap().unwrap().status(), ServingStatus::NotServing);

    tx.send(Ok(vec![0, 0, 0])).await.unwrap();
    drop(tx);
    let response = call.await.unwrap().expect("the call in flight completes");
    let body = response.bytes().await.expect("body");
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("plans/free"), "{text}");
    assert!(text.contains("grpc-status:0"), "{text}");

    // Once drained, the server stops and refuses new connections.
    let addr = app.addr;
    app.stop().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

async fn migrate_commands_apply_revert_and_report(backend: Backend) {
    let (vars, _data_dir) = test_env(backend).await;
    let status = |output: std::process::Output| {
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    use migration::MigratorTrait;
    let migrations = migration::Migrator::migrations().len();
    let before = status(run(&vars, &["migrate", "status"]).await);
    assert_eq!(before.lines().count(), migrations, "{before}");
    assert!(before.lines().all(|l| l.starts_with("pending")), "{before}");

    status(run(&vars, &["migrate", "up"]).await);
    let applied = status(run(&vars, &["migrate", "status"]).await);
    assert!(applied.lines().all(|l| l.starts_with("applied")), "{applied}");

    let steps = migrations.to_string();
    status(run(&vars, &["migrate", "down", "--steps", &steps]).await);
    let reverted = status(run(&vars, &["migrate", "status"]).await);
    assert!(reverted.lines().all(|l| l.starts_with("pending")), "{reverted}");

    status(run(&vars, &["migrate", "up"]).await);
}

/// Sends `signal` (e.g. `-TERM`) to a running child.
async fn send_signal(child: &tokio::process::Child, signal: &str) {
    let pid = child.id().expect("running").to_string();
    assert!(
        Command::new("kill")
            .args([signal, &pid])
            .status()
            .await
            .unwrap()
            .success()
    );
}

/// Kills a served child with SIGKILL, as a crash would, and reaps it.
pub(crate) async fn kill9(child: &mut tokio::process::Child) {
    send_signal(child, "-KILL").await;
    let _ = child.wait().await;
}

/// Stops a served child with SIGTERM and returns every log line it wrote.
async fn stop(
    mut child: tokio::process::Child,
    mut log: tokio::sync::mpsc::UnboundedReceiver<String>,
) -> Vec<String> {
    send_signal(&child, "-TERM").await;
    tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("stops")
        .expect("exit status");
    let mut lines = Vec::new();
    while let Some(line) = log.recv().await {
        lines.push(line);
    }
    lines
}

async fn admin_create_user_bootstraps_an_admin_and_no_log_line_holds_a_secret(backend: Backend) {
    use debrief::pb::v1 as pb;
    use debrief::pb::v1::admin_service_client::AdminServiceClient;
    use debrief::pb::v1::auth_service_client::AuthServiceClient;

    let (mut vars, _data_dir) = test_env(backend).await;
    let admin_password = "granite-Meadow-lantern-58";
    let mut create = Command::from(debrief_command(&vars));
    let mut child = create
        .args([
            "admin",
            "create-user",
            "--email",
            "Ops@Example.com",
            "--role",
            "admin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The password comes on stdin when DEBRIEF_ADMIN_PASSWORD is unset.
    tokio::io::AsyncWriteExt::write_all(
        child.stdin.as_mut().unwrap(),
        format!("{admin_password}\n").as_bytes(),
    )
    .await
    .unwrap();
    let output = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("ops@example.com") && stdout.contains("role admin"),
        "{stdout}"
    );
    // A weak password is refused with the reason.
    vars.insert("DEBRIEF_ADMIN_PASSWORD".into(), "admin".into());
    let weak = run(
        &vars,
        &[
            "admin",
            "create-user",
            "--email",
            "weak@example.com",
            "--role",
            "admin",
        ],
    )
    .await;
    assert!(!weak.status.success());
    assert!(String::from_utf8_lossy(&weak.stderr).contains("password"));
    vars.remove("DEBRIEF_ADMIN_PASSWORD");

    vars.insert("DEBRIEF_LOG_FORMAT".into(), "json".into());
    vars.insert("DEBRIEF_LOG".into(), "debug".into());
    let (child, addr, log) = serve(&vars).await;
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut auth = AuthServiceClient::new(channel.clone());
    let admin = auth
        .sign_in(pb::SignInRequest {
            email: "ops@example.com".into(),
            password: admin_password.into(),
        })
        .await
        .expect("the admin signs in")
        .into_inner()
        .tokens
        .unwrap();
    AdminServiceClient::new(channel.clone())
        .list_users(bearer(&admin.access_token, pb::ListUsersRequest::default()))
        .await
        .expect("the admin may list users");

    // Exercise every path that handles a secret.
    let signed_up = auth
        .sign_up(pb::SignUpRequest {
            email: "logs@example.com".into(),
            password: PASSWORD.into(),
            display_name: "Logs".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    let wrong = auth
        .sign_in(pb::SignInRequest {
            email: "logs@example.com".into(),
            password: "a-wrong-Password-123".into(),
        })
        .await;
    assert!(wrong.is_err());
    let refreshed = auth
        .refresh_session(pb::RefreshSessionRequest {
            refresh_token: signed_up.refresh_token.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .tokens
        .unwrap();
    let key = auth
        .create_api_key(bearer(
            &refreshed.access_token,
            pb::CreateApiKeyRequest {
                api_key: Some(pb::ApiKey {
                    display_name: "logs".into(),
                    scopes: vec!["profile:read".into()],
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .key;
    debrief::pb::v1::profile_service_client::ProfileServiceClient::new(channel.clone())
        .get_profile(bearer(&key, pb::GetProfileRequest {}))
        .await
        .unwrap();
    let new_password = "copper-Willow-signal-31";
    auth.change_password(bearer(
        &refreshed.access_token,
        pb::ChangePasswordRequest {
            current_password: PASSWORD.into(),
            new_password: new_password.into(),
        },
    ))
    .await
    .unwrap();
    auth.request_password_reset(pb::RequestPasswordResetRequest {
        email: "logs@example.com".into(),
    })
    .await
    .unwrap();

    let lines = stop(child, log).await;
    assert!(
        lines.iter().any(|l| l.contains("/debrief.v1.AuthService/SignUp")),
        "requests were logged"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("debrief::mail") && l.contains("det_")),
        "the development mailer logged its links"
    );
    let secrets = [
        PASSWORD,
        admin_password,
        new_password,
        "a-wrong-Password-123",
        &signed_up.access_token,
        &signed_up.refresh_token,
        &refreshed.access_token,
        &refreshed.refresh_token,
        &admin.access_token,
        &admin.refresh_token,
        &key,
    ];
    for line in &lines {
        for secret in secrets {
            assert!(!line.contains(secret), "a secret in the log: {line}");
        }
        // Email links carry one-time tokens: only the development mailer's
        // own lines may hold them (that is its purpose).
        if line.contains("det_") {
            let json: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(
                json["target"], "debrief::mail",
                "a token outside the mailer: {line}"
            );
        }
    }
}

async fn an_upload_survives_kill_9_and_resumes_where_it_stopped(backend: Backend) {
    use debrief::pb::v1 as pb;
    use debrief::pb::v1::upload_service_client::UploadServiceClient;

    use crate::uploads::{MIB, new_meeting_via, sha256_hex, wav};

    let (mut vars, _data_dir) = test_env(backend).await;
    vars.insert("DEBRIEF_LOG_FORMAT".into(), "json".into());
    let (mut child, addr, _log) = serve(&vars).await;
    let channel = crate::helpers::connect(&addr).await;
    let token = crate::helpers::sign_up_via(&channel, "kill9")
        .await
        .tokens
        .access_token;
    let file = wav(10 * MIB);
    let meeting = new_meeting_via(&channel, &token).await;
    let mut uploads = UploadServiceClient::new(channel.clone());
    let upload = uploads
        .create_upload(bearer(
            &token,
            pb::CreateUploadRequest {
                upload: Some(pb::Upload {
                    meeting,
                    file_name: "long.wav".into(),
                    content_type: "audio/wav".into(),
                    size_bytes: file.len() as i64,
                    sha256: sha256_hex(&file),
                    ..Default::default()
                }),
                request_id: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .upload
        .unwrap();
    let chunk = |i: usize| crate::uploads::append(&upload.name, i * MIB, &file[i * MIB..(i + 1) * MIB]);
    for i in 0..5 {
        uploads.append_chunk(bearer(&token, chunk(i))).await.unwrap();
    }
    // The sixth chunk is in flight when the server dies.
    let mut in_flight = uploads.clone();
    let sixth = bearer(&token, chunk(5));
    let pending = tokio::spawn(async move { in_flight.append_chunk(sixth).await });
    tokio::time::sleep(Duration::from_millis(5)).await;
    kill9(&mut child).await;
    let _ = pending.await;

    // A new process on the same database and storage.
    let (child, addr, _log) = serve(&vars).await;
    let channel = crate::helpers::connect(&addr).await;
    let mut uploads = UploadServiceClient::new(channel);
    let resumed = uploads
        .get_upload(bearer(
            &token,
            pb::GetUploadRequest {
                name: upload.name.clone(),
            },
        ))
        .await
        .expect("the upload survived")
        .into_inner()
        .upload
        .unwrap();
    let committed = resumed.committed_bytes as usize;
    assert!(
        committed == 5 * MIB || committed == 6 * MIB,
        "committed {committed}"
    );
    for i in committed / MIB..10 {
        uploads.append_chunk(bearer(&token, chunk(i))).await.unwrap();
    }
    let done = uploads
        .complete_upload(bearer(&token, pb::CompleteUploadRequest { name: upload.name }))
        .await
        .expect("completes after the restart")
        .into_inner();
    let meeting = done.meeting.unwrap();
    let stored = std::fs::read(
        _data_dir
            .path()
            .join("objects")
            .join(crate::uploads::original_key(&meeting)),
    )
    .unwrap();
    assert_eq!(
        sha256_hex(&stored),
        sha256_hex(&file),
        "no committed byte was lost"
    );
    stop(child, _log).await;
}

#[tokio::test]
async fn openapi_prints_the_document_the_server_serves() {
    let output = run(&HashMap::new(), &["openapi"]).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    assert_eq!(printed, debrief::edge::openapi_document().unwrap());
}

async fn email_goes_through_smtp_with_starttls_and_no_log_line_holds_a_link(backend: Backend) {
    use debrief::pb::v1 as pb;
    use debrief::pb::v1::auth_service_client::AuthServiceClient;

    let smtp = crate::helpers::smtp::start().await;
    let (mut vars, data_dir) = test_env(backend).await;
    let ca = data_dir.path().join("mail-ca.pem");
    std::fs::write(&ca, &smtp.ca_pem).unwrap();
    let app_password = "app-specific-Password-77";
    vars.extend(
        [
            ("DEBRIEF_LOG_FORMAT", "json".to_owned()),
            ("DEBRIEF_LOG", "debug".to_owned()),
            (
                "DEBRIEF_SMTP_URL",
                format!("smtp://mailer%40debrief.test:{app_password}@{}", smtp.addr),
            ),
            ("DEBRIEF_MAIL_FROM", "debrief <no-reply@debrief.test>".to_owned()),
            ("DEBRIEF_SMTP_CA_FILE", ca.display().to_string()),
            ("DEBRIEF_APP_URL", "https://app.debrief.test".to_owned()),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    let (child, addr, log) = serve(&vars).await;
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut auth = AuthServiceClient::new(channel);
    auth.sign_up(pb::SignUpRequest {
        email: "mia@example.com".into(),
        password: PASSWORD.into(),
        display_name: "Mia".into(),
    })
    .await
    .unwrap();
    auth.request_password_reset(pb::RequestPasswordResetRequest {
        email: "mia@example.com".into(),
    })
    .await
    .unwrap();
    // Delivery happens after the call commits: wait for both messages.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while smtp.received.lock().unwrap().len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "the mail did not arrive");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let received = smtp.received.lock().unwrap().clone();
    let token_in = |data: &str, path: &str| {
        // Long lines travel quoted-printable: undo soft breaks and `=3D`.
        let data = data.replace("=\r\n", "").replace("=3D", "=");
        let start = data
            .find(&format!("https://app.debrief.test/{path}?token="))
            .expect(path);
        data[start..]
            .split_whitespace()
            .next()
            .unwrap()
            .split("token=")
            .nth(1)
            .unwrap()
            .to_owned()
    };
    for message in &received {
        assert!(message.encrypted_before_auth, "credentials only after STARTTLS");
        assert_eq!(
            message.login,
            Some(("mailer@debrief.test".to_owned(), app_password.to_owned()))
        );
        assert!(
            message.to.iter().any(|r| r.contains("mia@example.com")),
            "{message:?}"
        );
        assert!(message.from.contains("no-reply@debrief.test"), "{message:?}");
    }
    let verify = token_in(&received[0].data, "verify-email");
    let reset = token_in(&received[1].data, "reset-password");
    // The links work.
    auth.verify_email(pb::VerifyEmailRequest {
        token: verify.clone(),
    })
    .await
    .expect("the emailed verification link works");
    auth.reset_password(pb::ResetPasswordRequest {
        token: reset.clone(),
        new_password: "copper-Violin-harbour-93".into(),
    })
    .await
    .expect("the emailed reset link works");

    let lines = stop(child, log).await;
    assert!(!lines.is_empty());
    for secret in [verify.as_str(), reset.as_str(), app_password] {
        assert!(
            !lines.iter().any(|line| line.contains(secret)),
            "a log line holds a secret"
        );
    }
    assert!(
        !lines.iter().any(|line| line.contains("NOT delivered")),
        "no development warning with a real mailer"
    );

    // Without SMTP, the log mailer says loudly what it does.
    let (mut dev, _dev_dir) = test_env(backend).await;
    dev.insert("DEBRIEF_LOG_FORMAT".into(), "json".into());
    let (child, _, log) = serve(&dev).await;
    let lines = stop(child, log).await;
    assert!(
        lines
            .iter()
            .any(|line| line.contains("\"WARN\"") && line.contains("NOT delivered")),
        "{lines:?}"
    );
}
