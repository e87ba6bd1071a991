//! Calling an RPC in process, as a gRPC request to the router the gRPC
//! clients reach, so the edge passes through the same layers.

use std::convert::Infallible;

use axum::body::Body as AxumBody;
use bytes::{Buf, Bytes, BytesMut};
use http::{Method, StatusCode, header};
use http_body_util::BodyExt;
use prost_reflect::DynamicMessage;
use tonic::Code;
use tower::ServiceExt;

use super::failure::Failure;
use crate::error::AppError;

/// Headers passed on to the RPC as metadata.
const FORWARDED: [&str; 5] = [
    "authorization",
    "x-request-id",
    "user-agent",
    "grpc-timeout",
    "range",
];

/// Starts a call of the RPC at `path` of `grpc`, in process, with the
/// caller's credentials and request id from `head` and its connection facts
/// (the peer address) in the extensions. An error the RPC answered before
/// any message comes back as a [`Failure`].
pub(super) async fn start(
    grpc: &axum::Router,
    path: &str,
    head: &http::request::Parts,
    message: Vec<u8>,
) -> Result<http::Response<AxumBody>, Failure> {
    let mut call = http::Request::builder()
        .method(Method::POST)
        .uri(path)
        .version(http::Version::HTTP_2)
        .header(header::CONTENT_TYPE, "application/grpc")
        .header("te", "trailers")
        .body(AxumBody::from(frame(&message)))
        .map_err(AppError::internal)?;
    for name in FORWARDED {
        if let Some(value) = head.headers.get(name) {
            call.headers_mut().insert(name, value.clone());
        }
    }
    *call.extensions_mut() = head.extensions.clone();
    let answer = grpc
        .clone()
        .oneshot(call)
        .await
        .unwrap_or_else(|e: Infallible| match e {});
    if let Some(status) = tonic::Status::from_header_map(answer.headers())
        && status.code() != Code::Ok
    {
        return Err(Failure::from_status(&status));
    }
    Ok(answer)
}

/// Reads a unary call's one message (or its error).
pub(super) async fn finish(answer: http::Response<AxumBody>) -> Result<Bytes, Failure> {
    let collected = answer.into_body().collect().await.map_err(|e| {
        Failure::new(
            StatusCode::BAD_GATEWAY,
            Code::Unavailable,
            format!("the call broke off: {e}"),
        )
    })?;
    let trailers = collected.trailers().cloned().unwrap_or_default();
    if let Some(status) = tonic::Status::from_header_map(&trailers)
        && status.code() != Code::Ok
    {
        return Err(Failure::from_status(&status));
    }
    let mut data = collected.to_bytes();
    Ok(next_message(&mut data).ok_or_else(|| AppError::internal("the RPC answered without a message"))?)
}

/// Calls a unary RPC in process (see [`start`]).
pub(super) async fn unary<Req: prost::Message, Res: prost::Message + Default>(
    grpc: &axum::Router,
    path: &str,
    head: &http::request::Parts,
    request: &Req,
) -> Result<Res, Failure> {
    let answer = start(grpc, path, head, request.encode_to_vec()).await?;
    let reply = finish(answer).await?;
    Ok(Res::decode(reply).map_err(AppError::internal)?)
}

/// The message in `field` of `output` (a `response_body`).
pub(super) fn field_message(output: &DynamicMessage, field: &str) -> Result<DynamicMessage, AppError> {
    match output.get_field_by_name(field).as_deref() {
        Some(prost_reflect::Value::Message(message)) => Ok(message.clone()),
        _ => Err(AppError::internal(format!(
            "the response has no message field {field}"
        ))),
    }
}

/// A gRPC length-prefixed frame holding `message`.
pub(super) fn frame(message: &[u8]) -> Bytes {
    let mut framed = BytesMut::with_capacity(message.len() + 5);
    framed.extend_from_slice(&[0]);
    framed.extend_from_slice(&u32::try_from(message.len()).unwrap_or(u32::MAX).to_be_bytes());
    framed.extend_from_slice(message);
    framed.freeze()
}

/// Takes the next complete frame's message off `data`, if it holds one.
pub(super) fn next_message(data: &mut Bytes) -> Option<Bytes> {
    if data.len() < 5 {
        return None;
    }
    let length = u32::from_be_bytes([data[1], data[2], data[3], data[4]]) as usize;
    if data.len() < 5 + length {
        return None;
    }
    data.advance(5);
    Some(data.split_to(length))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(crate::edge::proptest_config(256))]

        /// Frames cut anywhere, as a network delivers them, read back as
        /// the same messages in the same order, and nothing is left over.
        #[test]
        fn frames_cut_anywhere_read_back_whole(
            messages in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..8),
            cuts in proptest::collection::vec(1..200usize, 0..20),
        ) {
            let wire: Vec<u8> = messages.iter().flat_map(|m| frame(m).to_vec()).collect();
            let mut buffer = BytesMut::new();
            let mut read = Vec::new();
            let mut at = 0;
            for cut in cuts.iter().copied().chain(std::iter::once(wire.len())) {
                let end = (at + cut).min(wire.len());
                buffer.extend_from_slice(&wire[at..end]);
                at = end;
                let mut view = buffer.clone().freeze();
                while let Some(message) = next_message(&mut view) {
                    read.push(message.to_vec());
                }
                buffer.advance(buffer.len() - view.len());
            }
            prop_assert_eq!(read, messages);
            prop_assert!(buffer.is_empty());
        }

        /// Any bytes, a frame's header included, are read without a panic,
        /// and a message read is exactly the length its header says.
        #[test]
        fn any_bytes_are_read_safely(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut data = Bytes::from(bytes.clone());
            if let Some(message) = next_message(&mut data) {
                let length = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
                prop_assert_eq!(message.len(), length);
                prop_assert_eq!(data.len(), bytes.len() - 5 - length);
            } else {
                prop_assert_eq!(data.len(), bytes.len(), "nothing is consumed without a whole frame");
            }
        }
    }
}
