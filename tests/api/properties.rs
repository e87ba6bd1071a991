//! Property tests through the real server: random sequences of chunks
//! (offsets, sizes, CRCs, bytes) never change a committed byte, and any
//! gRPC-Web body is answered with a status while the server keeps serving.
//! `PROPTEST_CASES` sets the number of cases for a longer run.

use debrief::pb::v1 as pb;
use debrief::pb::v1::upload_service_client::UploadServiceClient;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use crate::helpers::{Backend, TestApp, TestUser, spawn_app};
use crate::uploads::{create_request, new_meeting};

crate::on_both_backends!(
    random_chunks_never_change_a_committed_byte,
    any_grpc_web_body_is_answered_with_a_status,
);

const MIN_CHUNK: usize = 256 * 1024;

fn runner(default_cases: u32) -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    })
}

/// Runs an async property on the test's runtime.
fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(future))
}

/// What a client sends next.
#[derive(Debug, Clone)]
enum Op {
    /// The next bytes of the file at the committed offset: `size` of them
    /// (clipped at the end), with the right CRC, a wrong one, or none.
    Next { size: usize, crc: Crc },
    /// Bytes at an offset already committed (`at` a fraction of it): the
    /// file's own (a retry) or others, with the CRC of what is sent.
    Rewrite { at: f64, size: usize, garbage: bool },
    /// Bytes past the committed offset.
    Ahead { gap: usize, size: usize },
}

#[derive(Debug, Clone, Copy)]
enum Crc {
    Right,
    Wrong,
    Absent,
}

fn op() -> impl Strategy<Value = Op> {
    let size = prop_oneof![
        Just(MIN_CHUNK),
        Just(2 * MIN_CHUNK),
        1..MIN_CHUNK,
        MIN_CHUNK..3 * MIN_CHUNK,
    ];
    let crc = prop_oneof![Just(Crc::Right), Just(Crc::Wrong), Just(Crc::Absent)];
    prop_oneof![
        3 => (size.clone(), crc).prop_map(|(size, crc)| Op::Next { size, crc }),
        1 => (0.0..1.0, size.clone(), any::<bool>()).prop_map(|(at, size, garbage)| Op::Rewrite { at, size, garbage }),
        1 => (1..MIN_CHUNK, size).prop_map(|(gap, size)| Op::Ahead { gap, size }),
    ]
}

fn chunk(name: &str, offset: usize, data: &[u8], crc: Option<u32>) -> pb::AppendChunkRequest {
    pb::AppendChunkRequest {
        name: name.into(),
        offset: offset as i64,
        crc32c: crc,
        chunk: Some(debrief::pb::google::api::HttpBody {
            content_type: "application/octet-stream".into(),
            data: data.to_vec().into(),
            extensions: vec![],
        }),
    }
}

async fn committed(
    uploads: &mut UploadServiceClient<tonic::transport::Channel>,
    user: &TestUser,
    name: &str,
) -> usize {
    uploads
        .get_upload(user.request(pb::GetUploadRequest { name: name.into() }))
        .await
        .unwrap()
        .into_inner()
        .upload
        .unwrap()
        .committed_bytes as usize
}

/// One case: a fresh upload of `file`, the ops, then the rest sent
/// properly; the committed size follows the model after every op, and the
/// stored recording is the file.
async fn chunk_case(app: &TestApp, user: &TestUser, file: &[u8], ops: &[Op]) -> Result<(), TestCaseError> {
    let mut uploads = UploadServiceClient::new(app.channel.clone());
    let meeting = new_meeting(app, user).await;
    let upload = uploads
        .create_upload(user.request(create_request(&meeting, file, "audio/wav", "properties.wav")))
        .await
        .unwrap()
        .into_inner()
        .upload
        .unwrap();
    let name = upload.name;
    let mut model = 0;
    for op in ops {
        let (request, valid) = match *op {
            Op::Next { size, crc } => {
                let end = (model + size).min(file.len());
                let data = &file[model..end];
                let crc_value = match crc {
                    Crc::Right => Some(crc32c::crc32c(data)),
                    Crc::Wrong => Some(crc32c::crc32c(data) ^ 1),
                    Crc::Absent => None,
                };
                let valid = !data.is_empty()
                    && !matches!(crc, Crc::Wrong)
                    && (data.len() >= MIN_CHUNK || end == file.len());
                (chunk(&name, model, data, crc_value), valid)
            }
            Op::Rewrite { at, size, garbage } => {
                if model == 0 {
                    continue;
                }
                let offset = ((model as f64 * at) as usize).min(model - 1);
                let end = (offset + size).min(file.len());
                let data: Vec<u8> = if garbage {
                    file[offset..end].iter().map(|b| b ^ 0x5a).collect()
                } else {
                    file[offset..end].to_vec()
                };
                (chunk(&name, offset, &data, Some(crc32c::crc32c(&data))), false)
            }
            Op::Ahead { gap, size } => {
                let offset = model + gap;
                if offset >= file.len() {
                    continue;
                }
                let end = (offset + size).min(file.len());
                let data = &file[offset..end];
                (chunk(&name, offset, data, Some(crc32c::crc32c(data))), false)
            }
        };
        let answer = uploads.append_chunk(user.request(request)).await;
        if valid {
            prop_assert!(answer.is_ok(), "{op:?} at {model} was refused: {answer:?}");
            model = (model
                + match *op {
                    Op::Next { size, .. } => size,
                    _ => 0,
                })
            .min(file.len());
        }
        prop_assert_eq!(
            committed(&mut uploads, user, &name).await,
            model,
            "after {:?}",
            op
        );
    }
    // The rest, properly; then the stored recording is the file.
    while model < file.len() {
        let end = (model + MIN_CHUNK).min(file.len());
        uploads
            .append_chunk(user.request(chunk(&name, model, &file[model..end], None)))
            .await
            .unwrap();
        model = end;
    }
    let done = uploads
        .complete_upload(user.request(pb::CompleteUploadRequest { name }))
        .await
        .map_err(|e| TestCaseError::fail(format!("completion: {e:?}")))?
        .into_inner();
    let key = crate::uploads::original_key(&done.meeting.unwrap());
    let stored = app.state.shared.storage.get(&key).await.unwrap();
    prop_assert!(
        stored.as_ref() == file,
        "the stored recording differs from the file"
    );
    Ok(())
}

async fn random_chunks_never_change_a_committed_byte(backend: Backend) {
    let app = spawn_app(backend).await;
    // A WAV file of just over four minimum chunks, its samples varied.
    let file = crate::uploads::wav(4 * MIN_CHUNK + 1234);
    let strategy = proptest::collection::vec(op(), 1..12);
    // A new account per case, so a long run stays within the free plan.
    let cases = std::sync::atomic::AtomicUsize::new(0);
    runner(12)
        .run(&strategy, |ops| {
            block_on(async {
                let n = cases.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let user = app.sign_up(&format!("pip{n}")).await;
                chunk_case(&app, &user, &file, &ops).await
            })
        })
        .unwrap();
}

/// A gRPC-Web body: random bytes, a frame around random bytes, a frame
/// whose length lies, or any of them as base64 text.
fn grpc_web_body() -> impl Strategy<Value = (Vec<u8>, bool)> {
    let bytes = proptest::collection::vec(any::<u8>(), 0..64);
    let body = prop_oneof![
        bytes.clone(),
        bytes.clone().prop_map(|m| {
            let mut framed = vec![0];
            framed.extend_from_slice(&(m.len() as u32).to_be_bytes());
            framed.extend_from_slice(&m);
            framed
        }),
        (bytes, any::<u32>(), any::<u8>()).prop_map(|(m, length, flag)| {
            let mut framed = vec![flag];
            framed.extend_from_slice(&length.to_be_bytes());
            framed.extend_from_slice(&m);
            framed
        }),
    ];
    (body, any::<bool>())
}

async fn any_grpc_web_body_is_answered_with_a_status(backend: Backend) {
    use base64::Engine as _;
    let app = spawn_app(backend).await;
    let user = app.sign_up("gus").await;
    let http = reqwest::Client::new();
    let call = |body: Vec<u8>, text: bool, method: &'static str| {
        let (content_type, body) = if text {
            (
                "application/grpc-web-text",
                base64::engine::general_purpose::STANDARD
                    .encode(&body)
                    .into_bytes(),
            )
        } else {
            ("application/grpc-web+proto", body)
        };
        http.post(format!("{}/{method}", app.url()))
            .header("content-type", content_type)
            .header("x-grpc-web", "1")
            .bearer_auth(&user.tokens.access_token)
            .body(body)
            .send()
    };
    runner(64)
        .run(&(grpc_web_body(), 0..3usize), |((body, text), which)| {
            let method = [
                "debrief.v1.ProfileService/GetProfile",
                "debrief.v1.MeetingService/CreateMeeting",
                "debrief.v1.UploadService/AppendChunk",
            ][which];
            block_on(async {
                let answer = call(body, text, method).await.unwrap();
                let status = answer.status();
                prop_assert!(!status.is_server_error(), "{method}: HTTP {status}");
                let headers = answer.headers().clone();
                let bytes = answer.bytes().await.unwrap();
                // The gRPC status is in the headers, or in the trailer frame
                // at the end of the body.
                let in_body = String::from_utf8_lossy(&bytes).contains("grpc-status:")
                    || base64::engine::general_purpose::STANDARD
                        .decode(&bytes)
                        .is_ok_and(|b| String::from_utf8_lossy(&b).contains("grpc-status:"));
                prop_assert!(
                    headers.contains_key("grpc-status") || in_body || status.is_client_error(),
                    "{method}: no status in {headers:?}"
                );
                Ok(())
            })
        })
        .unwrap();
    // And it still serves.
    app.profiles()
        .get_profile(user.request(pb::GetProfileRequest::default()))
        .await
        .expect("the server still serves");
}
