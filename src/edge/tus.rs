//! tus 1.0 resumable uploads at `/v1/tus/`, for the many tus clients
//! (tus-js-client, Uppy, tus-py-client...). Each request becomes calls of
//! the same UploadService RPCs a gRPC client makes, in process and through
//! the same layers, so quotas, validation, scanning, storage and the start
//! of processing are exactly those of `CompleteUpload`.
//!
//! Supported: core (HEAD, PATCH with offset checks), OPTIONS discovery,
//! creation, creation-with-upload, termination, expiration and checksum
//! (`sha1`, `sha256`). `Upload-Metadata` takes `filename`, `filetype` and
//! `meeting` (the meeting's resource name, required).

use std::sync::Arc;

use axum::body::Body as AxumBody;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::BodyExt;
use sha1::Digest as _;
use tonic::Code;

use super::calls::unary;
use super::failure::Failure;
use crate::pb::google::api::HttpBody;
use crate::pb::v1 as pb;

const VERSION: &str = "1.0.0";
const EXTENSIONS: &str = "creation,creation-with-upload,termination,expiration,checksum";
const CHECKSUMS: &str = "sha1,sha256";
const OFFSET_STREAM: &str = "application/offset+octet-stream";
const SERVICE: &str = "/debrief.v1.UploadService/";

/// tus's routes, calling the UploadService of `grpc`.
pub fn router(grpc: axum::Router) -> axum::Router {
    let tus = Arc::new(grpc);
    axum::Router::new()
        .route("/v1/tus/", axum::routing::options(discover).post(create))
        .route(
            "/v1/tus/{id}",
            axum::routing::options(discover)
                .head(status)
                .patch(append)
                .delete(terminate),
        )
        .with_state(tus)
}

type Grpc = Arc<axum::Router>;

/// A tus answer: status and headers (every one carries `Tus-Resumable`).
fn answer(status: StatusCode, headers: &[(&'static str, String)]) -> Response {
    let mut response = status.into_response();
    let map = response.headers_mut();
    map.insert("tus-resumable", HeaderValue::from_static(VERSION));
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(value) {
            map.insert(*name, value);
        }
    }
    response
}

/// An error as the edge's JSON status, with `Tus-Resumable` and the
/// version this server speaks.
fn refuse(failure: Failure) -> Response {
    let mut response = failure.into_response();
    let headers = response.headers_mut();
    headers.insert("tus-resumable", HeaderValue::from_static(VERSION));
    headers.insert("tus-version", HeaderValue::from_static(VERSION));
    response
}

fn plain(status: StatusCode, code: Code, message: impl Into<String>) -> Failure {
    Failure::new(status, code, message)
}

async fn discover() -> Response {
    answer(
        StatusCode::NO_CONTENT,
        &[
            ("tus-version", VERSION.into()),
            ("tus-extension", EXTENSIONS.into()),
            ("tus-checksum-algorithm", CHECKSUMS.into()),
        ],
    )
}

/// Refuses a request of another protocol version (412, as tus asks).
fn check_version(headers: &HeaderMap) -> Result<(), Failure> {
    match headers.get("tus-resumable").and_then(|v| v.to_str().ok()) {
        Some(VERSION) => Ok(()),
        _ => Err(plain(
            StatusCode::PRECONDITION_FAILED,
            Code::FailedPrecondition,
            "send `Tus-Resumable: 1.0.0`",
        )),
    }
}

fn header_i64(headers: &HeaderMap, name: &str) -> Option<i64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

fn http_date(time: &prost_types::Timestamp) -> String {
    DateTime::<Utc>::from_timestamp(time.seconds, 0)
        .unwrap_or_default()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

/// `Upload-Metadata`: comma-separated `key base64(value)` pairs.
fn metadata(headers: &HeaderMap) -> Result<Vec<(String, String)>, Failure> {
    let Some(raw) = headers.get("upload-metadata").and_then(|v| v.to_str().ok()) else {
        return Ok(Vec::new());
    };
    raw.split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| {
            let mut parts = pair.trim().splitn(2, ' ');
            let key = parts.next().unwrap_or_default().to_owned();
            let value = parts.next().unwrap_or_default();
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(value)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| {
                    plain(
                        StatusCode::BAD_REQUEST,
                        Code::InvalidArgument,
                        format!("Upload-Metadata: the value of `{key}` is not base64 text"),
                    )
                })?;
            Ok((key, decoded))
        })
        .collect()
}

async fn create(State(grpc): State<Grpc>, request: http::Request<AxumBody>) -> Response {
    let (head, body) = request.into_parts();
    if let Err(refused) = check_version(&head.headers) {
        return refuse(refused);
    }
    let Some(length) = header_i64(&head.headers, "upload-length") else {
        return refuse(plain(
            StatusCode::BAD_REQUEST,
            Code::InvalidArgument,
            "send the size as Upload-Length (deferred lengths are not supported)",
        ));
    };
    let metadata = match metadata(&head.headers) {
        Ok(metadata) => metadata,
        Err(refused) => return refuse(refused),
    };
    let value = |key: &str| {
        metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let created: Result<pb::CreateUploadResponse, Failure> = unary(
        &grpc,
        &format!("{SERVICE}CreateUpload"),
        &head,
        &pb::CreateUploadRequest {
            upload: Some(pb::Upload {
                meeting: value("meeting"),
                file_name: value("filename"),
                content_type: value("filetype"),
                size_bytes: length,
                ..Default::default()
            }),
            request_id: String::new(),
        },
    )
    .await;
    let upload = match created.map(|r| r.upload.unwrap_or_default()) {
        Ok(upload) => upload,
        Err(failure) => return refuse(failure),
    };
    let id = upload.name.trim_start_matches("uploads/").to_owned();
    let mut headers = vec![("location", format!("/v1/tus/{id}"))];
    if let Some(expires) = &upload.expire_time {
        headers.push(("upload-expires", http_date(expires)));
    }
    // creation-with-upload: the body is the first bytes.
    let has_body = head
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| ct.as_bytes() == OFFSET_STREAM.as_bytes());
    if has_body {
        match write(&grpc, &head, &upload, 0, body).await {
            Ok(offset) => headers.push(("upload-offset", offset.to_string())),
            Err(failure) => return refuse(failure),
        }
    }
    answer(StatusCode::CREATED, &headers)
}

async fn get_upload(grpc: &Grpc, head: &http::request::Parts, id: &str) -> Result<pb::Upload, Failure> {
    let found: pb::GetUploadResponse = unary(
        grpc,
        &format!("{SERVICE}GetUpload"),
        head,
        &pb::GetUploadRequest {
            name: format!("uploads/{id}"),
        },
    )
    .await?;
    let upload = found.upload.unwrap_or_default();
    match upload.state() {
        pb::UploadState::Active | pb::UploadState::Completed => Ok(upload),
        // Cancelled, rejected or expired: gone for good.
        _ => Err(Failure::new(
            StatusCode::GONE,
            Code::NotFound,
            format!(
                "the upload is {}",
                upload.state().as_str_name().to_ascii_lowercase()
            ),
        )),
    }
}

async fn status(
    State(grpc): State<Grpc>,
    Path(id): Path<String>,
    request: http::Request<AxumBody>,
) -> Response {
    let (head, _) = request.into_parts();
    if let Err(refused) = check_version(&head.headers) {
        return refuse(refused);
    }
    match get_upload(&grpc, &head, &id).await {
        Ok(upload) => {
            let mut headers = vec![
                ("upload-offset", upload.committed_bytes.to_string()),
                ("upload-length", upload.size_bytes.to_string()),
                ("cache-control", "no-store".into()),
            ];
            if let Some(expires) = &upload.expire_time
                && upload.state() == pb::UploadState::Active
            {
                headers.push(("upload-expires", http_date(expires)));
            }
            answer(StatusCode::OK, &headers)
        }
        // HEAD answers carry no body.
        Err(failure) => answer(failure.http, &[]),
    }
}

/// A checksum the client declared for a PATCH body.
#[cfg_attr(test, derive(Debug, PartialEq))]
enum Checksum {
    Sha1(Vec<u8>),
    Sha256(Vec<u8>),
}

fn checksum(headers: &HeaderMap) -> Result<Option<Checksum>, Failure> {
    let Some(raw) = headers.get("upload-checksum").and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let bad = |message: &str| plain(StatusCode::BAD_REQUEST, Code::InvalidArgument, message.to_owned());
    let (algorithm, value) = raw
        .trim()
        .split_once(' ')
        .ok_or_else(|| bad("Upload-Checksum: expected `<algorithm> <base64>`"))?;
    let digest = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .map_err(|_| bad("Upload-Checksum: the checksum is not base64"))?;
    match algorithm {
        "sha1" => Ok(Some(Checksum::Sha1(digest))),
        "sha256" => Ok(Some(Checksum::Sha256(digest))),
        _ => Err(bad("Upload-Checksum: the algorithm must be sha1 or sha256")),
    }
}

async fn append(
    State(grpc): State<Grpc>,
    Path(id): Path<String>,
    request: http::Request<AxumBody>,
) -> Response {
    let (head, body) = request.into_parts();
    let (offset, checksum, upload) = match prepare(&grpc, &id, &head).await {
        Ok(prepared) => prepared,
        Err(refusal) => {
            // Read (a bounded part of) what the client is sending, so it
            // gets the answer rather than a reset connection.
            discard(body).await;
            return *refusal;
        }
    };
    let written = match checksum {
        // The checksum covers the whole body: it is read (up to one chunk)
        // and checked before any of it is kept.
        Some(expected) => {
            let limit = usize::try_from(upload.max_chunk_bytes).unwrap_or(8 << 20);
            let bytes = match axum::body::to_bytes(body, limit).await {
                Ok(bytes) => bytes,
                Err(_) => {
                    return refuse(plain(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        Code::OutOfRange,
                        format!("with Upload-Checksum, send at most {limit} bytes per request"),
                    ));
                }
            };
            let matches = match &expected {
                Checksum::Sha1(digest) => sha1::Sha1::digest(&bytes)[..] == digest[..],
                Checksum::Sha256(digest) => sha2::Sha256::digest(&bytes)[..] == digest[..],
            };
            if !matches {
                return refuse(plain(
                    StatusCode::from_u16(460).unwrap_or(StatusCode::BAD_REQUEST),
                    Code::DataLoss,
                    "the body does not match Upload-Checksum; nothing was kept",
                ));
            }
            write(&grpc, &head, &upload, offset, AxumBody::from(bytes)).await
        }
        None => write(&grpc, &head, &upload, offset, body).await,
    };
    match written {
        Ok(offset) => {
            let mut headers = vec![("upload-offset", offset.to_string())];
            if let Some(expires) = &upload.expire_time {
                headers.push(("upload-expires", http_date(expires)));
            }
            answer(StatusCode::NO_CONTENT, &headers)
        }
        Err(failure) => refuse(failure),
    }
}

/// The checks of a PATCH before its body is read: version, content type,
/// offset (409 when it is not the upload's), checksum header.
async fn prepare(
    grpc: &Grpc,
    id: &str,
    head: &http::request::Parts,
) -> Result<(i64, Option<Checksum>, pb::Upload), Box<Response>> {
    check_version(&head.headers).map_err(|f| Box::new(refuse(f)))?;
    if head
        .headers
        .get(header::CONTENT_TYPE)
        .is_none_or(|ct| ct.as_bytes() != OFFSET_STREAM.as_bytes())
    {
        return Err(Box::new(refuse(plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Code::InvalidArgument,
            format!("send the bytes as {OFFSET_STREAM}"),
        ))));
    }
    let offset = header_i64(&head.headers, "upload-offset").ok_or_else(|| {
        Box::new(refuse(plain(
            StatusCode::BAD_REQUEST,
            Code::InvalidArgument,
            "send Upload-Offset",
        )))
    })?;
    let checksum = checksum(&head.headers).map_err(|f| Box::new(refuse(f)))?;
    let upload = get_upload(grpc, head, id)
        .await
        .map_err(|f| Box::new(refuse(f)))?;
    if offset != upload.committed_bytes {
        return Err(Box::new(answer(
            StatusCode::CONFLICT,
            &[("upload-offset", upload.committed_bytes.to_string())],
        )));
    }
    Ok((offset, checksum, upload))
}

/// Reads and drops up to 8 MiB of a body that will not be used.
async fn discard(mut body: AxumBody) {
    let mut read = 0usize;
    while read < 8 << 20 {
        match body.frame().await {
            Some(Ok(frame)) => read += frame.data_ref().map_or(0, Bytes::len),
            _ => return,
        }
    }
}

/// Appends `body` from `offset` in chunks the upload takes (each committed
/// as soon as it is whole, so a cut connection keeps what arrived), then
/// completes the upload once every byte is there. Returns the new offset.
async fn write(
    grpc: &Grpc,
    head: &http::request::Parts,
    upload: &pb::Upload,
    mut offset: i64,
    mut body: AxumBody,
) -> Result<i64, Failure> {
    let max = usize::try_from(upload.max_chunk_bytes).unwrap_or(8 << 20).max(1);
    let min = usize::try_from(upload.min_chunk_bytes).unwrap_or(0);
    let mut buffer = BytesMut::new();
    let mut ended = false;
    while !ended {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    buffer.extend_from_slice(&data);
                }
            }
            Some(Err(_)) => {
                // The client went away: keep the whole chunks it sent.
                tracing::info!(upload = %upload.name, offset, "a tus PATCH was cut short");
                return Ok(offset);
            }
            None => ended = true,
        }
        while buffer.len() >= max || (ended && !buffer.is_empty()) {
            let take = buffer.len().min(max);
            let last = offset + take as i64 == upload.size_bytes;
            if take < min && !last {
                if offset == upload.committed_bytes {
                    return Err(Failure::new(
                        StatusCode::BAD_REQUEST,
                        Code::InvalidArgument,
                        format!("send at least {min} bytes per request until the last"),
                    ));
                }
                // What is left is kept by the client, which resumes from
                // the offset answered.
                buffer.clear();
                break;
            }
            let chunk: Bytes = buffer.split_to(take).freeze();
            let appended: pb::AppendChunkResponse = unary(
                grpc,
                &format!("{SERVICE}AppendChunk"),
                head,
                &pb::AppendChunkRequest {
                    name: upload.name.clone(),
                    offset,
                    crc32c: Some(crc32c::crc32c(&chunk)),
                    chunk: Some(HttpBody {
                        content_type: OFFSET_STREAM.into(),
                        data: chunk.clone(),
                        extensions: Vec::new(),
                    }),
                },
            )
            .await?;
            offset = appended.committed_bytes;
        }
    }
    if offset == upload.size_bytes && upload.state() == pb::UploadState::Active {
        let _: pb::CompleteUploadResponse = unary(
            grpc,
            &format!("{SERVICE}CompleteUpload"),
            head,
            &pb::CompleteUploadRequest {
                name: upload.name.clone(),
            },
        )
        .await?;
    }
    Ok(offset)
}

async fn terminate(
    State(grpc): State<Grpc>,
    Path(id): Path<String>,
    request: http::Request<AxumBody>,
) -> Response {
    let (head, _) = request.into_parts();
    if let Err(refused) = check_version(&head.headers) {
        return refuse(refused);
    }
    let cancelled: Result<pb::CancelUploadResponse, Failure> = unary(
        &grpc,
        &format!("{SERVICE}CancelUpload"),
        &head,
        &pb::CancelUploadRequest {
            name: format!("uploads/{id}"),
        },
    )
    .await;
    match cancelled {
        Ok(_) => answer(StatusCode::NO_CONTENT, &[]),
        Err(failure) => refuse(failure),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn headers(name: &'static str, value: &str) -> Option<HeaderMap> {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(value).ok()?);
        Some(headers)
    }

    proptest! {
        #![proptest_config(crate::edge::proptest_config(256))]

        /// `Upload-Metadata` as a client encodes it decodes to the same
        /// pairs.
        #[test]
        fn metadata_round_trips(pairs in proptest::collection::vec(("[a-zA-Z0-9_-]{1,12}", "\\PC{0,20}"), 0..5)) {
            let encoded = pairs
                .iter()
                .map(|(k, v)| format!("{k} {}", base64::engine::general_purpose::STANDARD.encode(v)))
                .collect::<Vec<_>>()
                .join(",");
            let decoded = metadata(&headers("upload-metadata", &encoded).unwrap()).map_err(|f| f.body().to_string());
            prop_assert_eq!(decoded, Ok(pairs));
        }

        /// Any header text is parsed or refused with 400 and a message,
        /// never a panic: metadata, checksums and numbers.
        #[test]
        fn any_header_text_is_parsed_or_refused(value in "[ -~]{0,40}") {
            for name in ["upload-metadata", "upload-checksum", "upload-offset"] {
                let Some(headers) = headers(name, &value) else { continue };
                if let Err(failure) = metadata(&headers) {
                    prop_assert_eq!(failure.http, StatusCode::BAD_REQUEST);
                }
                if let Err(failure) = checksum(&headers) {
                    prop_assert_eq!(failure.http, StatusCode::BAD_REQUEST);
                }
                let _ = header_i64(&headers, name);
            }
        }

        /// A checksum as a client sends it is read back as sent.
        #[test]
        fn checksums_round_trip(digest in proptest::collection::vec(any::<u8>(), 20..33), sha256 in any::<bool>()) {
            let algorithm = if sha256 { "sha256" } else { "sha1" };
            let value = format!("{algorithm} {}", base64::engine::general_purpose::STANDARD.encode(&digest));
            let parsed = checksum(&headers("upload-checksum", &value).unwrap()).map_err(|f| f.body().to_string());
            let expected = if sha256 { Checksum::Sha256(digest) } else { Checksum::Sha1(digest) };
            prop_assert_eq!(parsed, Ok(Some(expected)));
        }
    }
}
