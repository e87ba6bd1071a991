//! tus 1.0 uploads at /v1/tus/: the protocol's rules with raw requests, and
//! the stock tus-js-client (Node) uploading with a resume.

use base64::Engine as _;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sha1::Digest as _;

use crate::helpers::{Backend, spawn_app};
use crate::on_both_backends;
use crate::uploads::{new_meeting, sha256_hex, wav};

on_both_backends!(tus_follows_the_protocol, tus_js_client_uploads_and_resumes);

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn tus(client: &reqwest::Client, method: Method, url: String, token: &str) -> reqwest::RequestBuilder {
    client
        .request(method, url)
        .bearer_auth(token)
        .header("tus-resumable", "1.0.0")
}

fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

async fn meeting_status(app: &crate::helpers::TestApp, token: &str, meeting: &str) -> String {
    let meeting: Value = reqwest::Client::new()
        .get(format!("{}/v1/{meeting}", app.url()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    meeting["status"].as_str().unwrap_or_default().to_owned()
}

async fn tus_follows_the_protocol(backend: Backend) {
    let app = spawn_app(backend).await;
    let http = reqwest::Client::new();
    let base = app.url();
    let ada = app.sign_up("ada").await;
    let token = ada.tokens.access_token.clone();

    // Discovery.
    let options = http
        .request(Method::OPTIONS, format!("{base}/v1/tus/"))
        .send()
        .await
        .unwrap();
    assert_eq!(options.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&options, "tus-version"), "1.0.0");
    let extensions = header(&options, "tus-extension");
    for extension in [
        "creation",
        "creation-with-upload",
        "termination",
        "expiration",
        "checksum",
    ] {
        assert!(extensions.split(',').any(|e| e == extension), "{extensions}");
    }
    assert!(header(&options, "tus-checksum-algorithm").contains("sha1"));

    let file = wav(600_000);
    let meeting = new_meeting(&app, &ada).await;
    let metadata = format!(
        "filename {},filetype {},meeting {}",
        b64("standup.wav"),
        b64("audio/wav"),
        b64(&meeting)
    );
    // Another version, or no credentials, are refused.
    let old = http
        .post(format!("{base}/v1/tus/"))
        .bearer_auth(&token)
        .header("tus-resumable", "0.2.2")
        .header("upload-length", file.len().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), StatusCode::PRECONDITION_FAILED);
    let anonymous = http
        .post(format!("{base}/v1/tus/"))
        .header("tus-resumable", "1.0.0")
        .header("upload-length", "10")
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    // Creation.
    let created = tus(&http, Method::POST, format!("{base}/v1/tus/"), &token)
        .header("upload-length", file.len().to_string())
        .header("upload-metadata", &metadata)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let location = header(&created, "location");
    assert!(location.starts_with("/v1/tus/"), "{location}");
    assert!(header(&created, "upload-expires").ends_with("GMT"));
    let url = format!("{base}{location}");
    let head = tus(&http, Method::HEAD, url.clone(), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(header(&head, "upload-offset"), "0");
    assert_eq!(header(&head, "upload-length"), file.len().to_string());
    assert_eq!(header(&head, "cache-control"), "no-store");

    let patch = |offset: usize, bytes: &[u8]| {
        tus(&http, Method::PATCH, url.clone(), &token)
            .header("content-type", "application/offset+octet-stream")
            .header("upload-offset", offset.to_string())
            .body(bytes.to_vec())
    };
    // A wrong offset: 409 with the real one.
    let conflict = patch(5, &file[5..300_000]).send().await.unwrap();
    assert_eq!(conflict.status(), StatusCode::CONFLICT);
    assert_eq!(header(&conflict, "upload-offset"), "0");
    // A checksum mismatch: 460, and nothing kept.
    let wrong = patch(0, &file[..300_000])
        .header(
            "upload-checksum",
            format!(
                "sha1 {}",
                base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(b"other"))
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 460);
    let head = tus(&http, Method::HEAD, url.clone(), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(header(&head, "upload-offset"), "0");
    // The right checksum: kept.
    let first = patch(0, &file[..300_000])
        .header(
            "upload-checksum",
            format!(
                "sha1 {}",
                base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(&file[..300_000]))
            ),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::NO_CONTENT);
    assert_eq!(header(&first, "upload-offset"), "300000");
    // Someone else's upload does not exist for them.
    let bea = app.sign_up("bea").await;
    let foreign = tus(&http, Method::HEAD, url.clone(), &bea.tokens.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), StatusCode::NOT_FOUND);
    // The rest completes the upload, which queues the meeting.
    let rest = patch(300_000, &file[300_000..]).send().await.unwrap();
    assert_eq!(rest.status(), StatusCode::NO_CONTENT, "{:?}", rest.text().await);
    assert_eq!(
        meeting_status(&app, &token, &meeting).await,
        "MEETING_STATUS_QUEUED"
    );

    // creation-with-upload: the whole file in the POST.
    let second = new_meeting(&app, &ada).await;
    let small = wav(200_000);
    let created = tus(&http, Method::POST, format!("{base}/v1/tus/"), &token)
        .header("upload-length", small.len().to_string())
        .header(
            "upload-metadata",
            format!(
                "filename {},filetype {},meeting {}",
                b64("b.wav"),
                b64("audio/wav"),
                b64(&second)
            ),
        )
        .header("content-type", "application/offset+octet-stream")
        .body(small.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(header(&created, "upload-offset"), small.len().to_string());
    assert_eq!(
        meeting_status(&app, &token, &second).await,
        "MEETING_STATUS_QUEUED"
    );

    // Termination.
    let third = new_meeting(&app, &ada).await;
    let created = tus(&http, Method::POST, format!("{base}/v1/tus/"), &token)
        .header("upload-length", "400000")
        .header(
            "upload-metadata",
            format!(
                "filename {},filetype {},meeting {}",
                b64("c.wav"),
                b64("audio/wav"),
                b64(&third)
            ),
        )
        .send()
        .await
        .unwrap();
    let url = format!("{base}{}", header(&created, "location"));
    let deleted = tus(&http, Method::DELETE, url.clone(), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let gone = tus(&http, Method::HEAD, url, &token).send().await.unwrap();
    assert_eq!(gone.status(), StatusCode::GONE);
    assert_eq!(
        meeting_status(&app, &token, &third).await,
        "MEETING_STATUS_AWAITING_UPLOAD"
    );
}

async fn tus_js_client_uploads_and_resumes(backend: Backend) {
    // A worker, to see the meeting process like any other.
    let app = crate::helpers::spawn_app_with(backend, |vars| {
        vars.insert("DEBRIEF_WORKERS".into(), "1".into());
    })
    .await;
    let cyd = app.sign_up("cyd").await;
    let meeting = new_meeting(&app, &cyd).await;
    let file = wav(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("standup.wav");
    std::fs::write(&path, &file).unwrap();
    let script = crate::helpers::js_script("tus-upload.mjs", "tus-js-client");
    let output = tokio::process::Command::new("node")
        .arg(&script)
        .arg(format!("{}/v1/tus/", app.url()))
        .arg(&cyd.tokens.access_token)
        .arg(&meeting)
        .arg(&path)
        .output()
        .await
        .expect("node runs (tests/run installs Node.js)");
    assert!(
        output.status.success(),
        "tus-js-client failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    let resumed_at = report["resumedAt"].as_u64().unwrap();
    assert!(resumed_at >= 300 * 1024, "the second run started over: {report}");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let status = meeting_status(&app, &cyd.tokens.access_token, &meeting).await;
        if status == "MEETING_STATUS_AWAITING_TRANSCRIPTION" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the meeting stayed {status}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The stored original is the file, byte for byte.
    let stored = app
        .state
        .shared
        .storage
        .get(&crate::uploads::original_key_of(&app, &cyd, &meeting).await)
        .await
        .unwrap();
    assert_eq!(sha256_hex(&stored), sha256_hex(&file));
}
