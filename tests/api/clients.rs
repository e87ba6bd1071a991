//! Clients generated in other languages, run as child processes against
//! the real server: a Python client made by `grpcio-tools` from `proto/`,
//! and a page in headless Chromium using `@connectrpc/connect-web` with code
//! from `@bufbuild/protoc-gen-es`, both generated at test time (nothing
//! generated is committed).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use debrief::pb::v1 as pb;
use debrief::pb::v1::meeting_service_client::MeetingServiceClient;
use serde_json::Value;

use crate::helpers::{Backend, spawn_app_with};
use crate::processing::{RATE, recording};

crate::on_both_backends!(
    a_generated_python_client_runs_the_core_loop,
    a_page_in_a_real_browser_calls_streams_and_is_refused_from_another_origin,
);

/// The Python modules `grpc_tools.protoc` generates from `proto/` (debrief
/// and the google/api and google/rpc files it imports), made once per test
/// process.
fn python_client() -> &'static Path {
    static GENERATED: OnceLock<PathBuf> = OnceLock::new();
    GENERATED.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = tempfile::Builder::new()
            .prefix("debrief-python-client-")
            .tempdir()
            .expect("a directory for the generated client")
            .keep();
        crate::helpers::when_this_process_exits(&format!("rm -rf {}", out.display()));
        let mut protos = Vec::new();
        for dir in ["proto/debrief", "proto/google"] {
            collect_protos(&root.join(dir), &mut protos);
        }
        let output = std::process::Command::new("python3")
            .args(["-m", "grpc_tools.protoc", "-Iproto"])
            .arg(format!("--python_out={}", out.display()))
            .arg(format!("--grpc_python_out={}", out.display()))
            .args(protos.iter().map(|p| p.strip_prefix(root).unwrap()))
            .current_dir(root)
            .output()
            .expect("python3 runs (tests/run installs it)");
        assert!(
            output.status.success(),
            "grpc_tools.protoc failed (tests/run installs grpcio-tools): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        out
    })
}

fn collect_protos(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("proto directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            collect_protos(&path, into);
        } else if path.extension().is_some_and(|e| e == "proto") {
            into.push(path);
        }
    }
}

async fn a_generated_python_client_runs_the_core_loop(backend: Backend) {
    // One in-process worker and no transcriber: meetings are analysed from
    // their audio and then wait for transcription.
    let app = spawn_app_with(backend, |vars| {
        vars.insert("DEBRIEF_WORKERS".into(), "1".into());
    })
    .await;
    let admin = crate::usage::admin(&app).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("quarterly-planning.wav");
    let bytes = recording(30_000, &[(1000, 9000), (11_000, 20_000), (22_000, 29_000)], RATE);
    std::fs::write(&file, &bytes).unwrap();
    let generated = python_client();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/core_loop.py");
    let output = tokio::process::Command::new("python3")
        .arg(&script)
        .arg(app.addr.to_string())
        .arg(&file)
        .arg(&admin)
        .env("PYTHONPATH", generated)
        .kill_on_drop(true)
        .output()
        .await
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "the Python client failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("a JSON report");
    println!("{report:#}");

    assert_eq!(
        report["sign_up_violations"],
        serde_json::json!(["email", "password"])
    );
    let message = report["sign_up_message"].as_str().unwrap();
    assert!(!message.contains("INVALID_ARGUMENT"), "{message}");
    assert_eq!(report["time_zone"], "Europe/Berlin");
    // Stopped after the whole chunks of the first half; a chunk that skips
    // ahead is ABORTED (the offset is not the committed length).
    let chunk = 256 * 1024;
    assert_eq!(report["resumed_at"], bytes.len() / 2 / chunk * chunk);
    assert_eq!(report["wrong_offset"], "ABORTED");
    let mut meetings: Vec<&str> = report["meetings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    meetings.sort_unstable();
    assert_eq!(report["upload_completed_events"], serde_json::json!(meetings));
    let statuses = report["statuses"].as_array().unwrap();
    assert_eq!(
        statuses.first().unwrap(),
        "MEETING_STATUS_AWAITING_UPLOAD",
        "{statuses:?}"
    );
    assert_eq!(
        statuses.last().unwrap(),
        "MEETING_STATUS_AWAITING_TRANSCRIPTION",
        "{statuses:?}"
    );
    assert!(statuses.len() >= 4, "{statuses:?}");
    let total = report["analysis"]["total_seconds"].as_f64().unwrap();
    assert!((total - 30.0).abs() < 0.1, "{report}");
    assert!(
        report["analysis"]["pause_count"].as_i64().unwrap() >= 2,
        "{report}"
    );
    assert_eq!(report["practice"]["state"], "SESSION_STATE_COMPLETED");
    assert!(report["practice"]["feedback_items"].as_i64().unwrap() > 0);
    assert_eq!(report["quota"]["reason"], "QUOTA_EXCEEDED");
    let quota = report["quota"]["description"].as_str().unwrap();
    assert!(quota.contains("1 practice session"), "{quota}");

    // Another account sees none of it.
    let other = app.sign_up("oz").await;
    let meeting = report["meetings"][0].as_str().unwrap();
    let hidden = MeetingServiceClient::new(app.channel.clone())
        .get_meeting(other.request(pb::GetMeetingRequest { name: meeting.into() }))
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), tonic::Code::NotFound);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

async fn a_page_in_a_real_browser_calls_streams_and_is_refused_from_another_origin(backend: Backend) {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "no Chromium at {chromium}: run tests/run (it installs Debian's chromium) or set CHROMIUM"
    );
    // The page is served from two origins of its own; only one is allowed.
    let (allowed, refused) = (free_port(), free_port());
    let app = spawn_app_with(backend, |vars| {
        vars.insert(
            "DEBRIEF_CORS_ORIGINS".into(),
            format!("http://127.0.0.1:{allowed}"),
        );
    })
    .await;
    let script = crate::helpers::js_script("browser.mjs", "playwright-core");
    let output = tokio::process::Command::new("node")
        .arg(&script)
        .arg(app.url())
        .arg(allowed.to_string())
        .arg(refused.to_string())
        .env("CHROMIUM", &chromium)
        .kill_on_drop(true)
        .output()
        .await
        .expect("node runs (tests/run installs Node.js)");
    assert!(
        output.status.success(),
        "the browser run failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).expect("a JSON report");
    println!("{report:#}");
    let page = &report["allowed"];

    // An error's code, message and BadRequest details reach the page.
    assert_eq!(page["badSignUp"]["code"], "InvalidArgument", "{page}");
    assert!(
        page["badSignUp"]["message"]
            .as_str()
            .unwrap()
            .contains("at least 8 characters"),
        "{page}"
    );
    assert_eq!(
        page["badSignUp"]["fields"],
        serde_json::json!(["email", "password"])
    );
    // Signed up, then an authenticated call.
    assert_eq!(page["profileName"], "Bea");
    // The gRPC-Web server stream received the events the upload caused.
    assert_eq!(page["uploadState"], "COMPLETED");
    let streamed: Vec<&str> = page["streamed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().expect("an event, not an error"))
        .collect();
    assert_eq!(streamed.last(), Some(&"UPLOAD_COMPLETED"), "{page}");
    assert!(
        streamed[..streamed.len() - 1]
            .iter()
            .all(|t| *t == "UPLOAD_PROGRESS"),
        "{page}"
    );
    // SSE through fetch sees the same events, and resumes after the first
    // with Last-Event-ID; the EventSource too, with a new ticket.
    let ids = &page["expectedIds"];
    assert_eq!(page["fetchIds"], *ids, "{page}");
    assert_eq!(page["fetchResumedIds"][0], ids[1], "{page}");
    assert_eq!(
        page["eventSourceIds"],
        serde_json::json!([ids[0], ids[1]]),
        "{page}"
    );
    assert_eq!(
        page["eventSourceResumedIds"],
        serde_json::json!([ids[2]]),
        "{page}"
    );

    // From an origin not in DEBRIEF_CORS_ORIGINS the browser lets the page
    // read nothing: the call fails as a network error, with no status.
    let other = &report["refused"];
    assert_eq!(other["refused"], true, "{report}");
    assert_eq!(other["message"], "Failed to fetch", "{report}");
}
