//! Server-streaming answers: Server-Sent Events (or NDJSON when asked),
//! one event per message, an error as a last `error` event; browsers resume
//! with `Last-Event-ID` and authenticate with a stream ticket.

use std::convert::Infallible;

use axum::body::Body as AxumBody;
use axum::response::{IntoResponse, Response};
use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::BodyExt;
use prost::Message as _;
use prost_reflect::{DynamicMessage, ReflectMessage};
use serde_json::{Value, json};
use tonic::Code;

use super::Edge;
use super::calls::next_message;
use super::failure::Failure;
use super::rules::Binding;
use crate::error::AppError;
use crate::pb::google::api::HttpBody;

/// How a streamed answer is framed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// Server-Sent Events.
    Sse,
    /// One JSON object per line.
    NdJson,
}

/// The messages of a streamed gRPC answer, in order; a failure (an error
/// status in the trailers, or a broken stream) ends it.
fn messages(body: AxumBody) -> impl Stream<Item = Result<Bytes, Failure>> + Send {
    let state = Some((body, BytesMut::new()));
    futures::stream::unfold(state, |state| async move {
        let (mut body, mut buffer) = state?;
        loop {
            let mut view = buffer.clone().freeze();
            if let Some(message) = next_message(&mut view) {
                buffer.advance(buffer.len() - view.len());
                return Some((Ok(message), Some((body, buffer))));
            }
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(trailers) = frame.trailers_ref() {
                        return match tonic::Status::from_header_map(trailers) {
                            Some(status) if status.code() != Code::Ok => {
                                Some((Err(Failure::from_status(&status)), None))
                            }
                            _ => None,
                        };
                    }
                    if let Ok(data) = frame.into_data() {
                        buffer.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => {
                    let failure = Failure::new(
                        StatusCode::BAD_GATEWAY,
                        Code::Unavailable,
                        format!("the stream broke off: {e}"),
                    );
                    return Some((Err(failure), None));
                }
                None => return None,
            }
        }
    })
}

impl Edge {
    /// Sends a server stream's messages as SSE events or NDJSON lines; an
    /// error mid-stream becomes a last `error` event (line).
    pub(super) fn stream(&self, binding: &Binding, body: AxumBody, framing: Framing) -> Response {
        let output = binding.rpc.output();
        let events = messages(body).map(move |message| {
            let text = message
                .and_then(|message| {
                    let json = DynamicMessage::decode(output.clone(), message)
                        .map_err(AppError::internal)
                        .and_then(|m| super::json::to_json(&m))?;
                    Ok(render(framing, &json))
                })
                .unwrap_or_else(|failure| error_event(framing, &failure.body()));
            Ok::<_, Infallible>(text)
        });
        let content_type = match framing {
            Framing::Sse => "text/event-stream",
            Framing::NdJson => "application/x-ndjson",
        };
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
            AxumBody::from_stream(events),
        )
            .into_response()
    }
}

/// A stream of `google.api.HttpBody` messages as one plain HTTP body: the
/// first message's content type is the response's, and the answer's
/// metadata `x-content-length`, `x-accept-ranges` and `x-content-range`
/// become those headers (the last one making it a 206). An error before
/// the first byte is an HTTP error; one after it cuts the body short, so a
/// client sees a download that did not finish rather than a corrupt file.
pub(super) async fn raw(answer: http::Response<AxumBody>) -> Result<Response, Failure> {
    let (head, body) = answer.into_parts();
    let mut pieces = Box::pin(messages(body).map(|message| {
        let message = message?;
        Ok::<_, Failure>(HttpBody::decode(message).map_err(AppError::internal)?)
    }));
    let first = pieces.next().await.transpose()?;
    let content_type = first
        .as_ref()
        .map(|piece| piece.content_type.as_str())
        .filter(|t| !t.is_empty())
        .unwrap_or("application/octet-stream");
    let mut response = Response::builder().header(header::CONTENT_TYPE, content_type);
    for (from, to) in [
        ("x-content-length", header::CONTENT_LENGTH),
        ("x-accept-ranges", header::ACCEPT_RANGES),
        ("x-content-range", header::CONTENT_RANGE),
    ] {
        if let Some(value) = head.headers.get(from) {
            response = response.header(to, value.clone());
        }
    }
    if head.headers.contains_key("x-content-range") {
        response = response.status(StatusCode::PARTIAL_CONTENT);
    }
    let data = futures::stream::iter(first.map(Ok)).chain(pieces).map(|piece| {
        piece
            .map(|p| p.data)
            .map_err(|f| std::io::Error::other(f.body().to_string()))
    });
    Ok(response
        .body(AxumBody::from_stream(data))
        .map_err(AppError::internal)?)
}

/// One message as an SSE event (its id is the event id, when it carries
/// one, so `Last-Event-ID` resumes) or an NDJSON line.
pub(super) fn render(framing: Framing, json: &Value) -> String {
    match framing {
        Framing::NdJson => format!("{json}\n"),
        Framing::Sse => {
            let id = json.get("event").and_then(|e| e.get("id")).and_then(|id| {
                id.as_str()
                    .map(str::to_owned)
                    .or_else(|| id.as_i64().map(|i| i.to_string()))
            });
            match id {
                Some(id) => format!("id: {id}\ndata: {json}\n\n"),
                None => format!("data: {json}\n\n"),
            }
        }
    }
}

pub(super) fn error_event(framing: Framing, status: &Value) -> String {
    match framing {
        Framing::NdJson => format!("{}\n", json!({ "error": status })),
        Framing::Sse => format!("event: error\ndata: {status}\n\n"),
    }
}

pub(super) fn accepts_ndjson(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/x-ndjson"))
}

/// The `ticket` parameter of a query string, and the query without it.
pub(super) fn take_ticket(query: &str) -> (Option<String>, String) {
    let mut ticket = None;
    let mut rest = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if key == "ticket" {
            ticket = Some(value.into_owned());
        } else {
            rest.append_pair(&key, &value);
        }
    }
    (ticket, rest.finish())
}

/// `Last-Event-ID` (sent by browsers when an EventSource reconnects) sets
/// `after_event_id` unless the request set it.
pub(super) fn resume_from_last_event_id(
    message: &mut DynamicMessage,
    headers: &HeaderMap,
) -> Result<(), Failure> {
    let Some(last) = headers.get("last-event-id").and_then(|v| v.to_str().ok()) else {
        return Ok(());
    };
    let Some(field) = message.descriptor().get_field_by_name("after_event_id") else {
        return Ok(());
    };
    let id: i64 = last
        .trim()
        .parse()
        .map_err(|_| Failure::from(AppError::invalid("Last-Event-ID", "must be an event id")))?;
    if !message.has_field(&field) {
        message.set_field(&field, prost_reflect::Value::I64(id));
    }
    Ok(())
}
