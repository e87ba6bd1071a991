//! Server-streaming answers: Server-Sent Events (or NDJSON when asked),
//! one event per message, an error as a last `error` event; browsers resume
//! with `Last-Event-ID` and authenticate with a stream ticket.

use std::convert::Infallible;

use axum::body::Body as AxumBody;
use axum::response::{IntoResponse, Response};
use bytes::{Buf, BytesMut};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::BodyExt;
use prost_reflect::{DynamicMessage, ReflectMessage};
use serde_json::{Value, json};
use tonic::Code;

use super::Edge;
use super::calls::next_message;
use super::failure::Failure;
use super::rules::Binding;
use crate::error::AppError;

/// How a streamed answer is framed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    /// Server-Sent Events.
    Sse,
    /// One JSON object per line.
    NdJson,
}

impl Edge {
    /// Sends a server stream's messages as SSE events or NDJSON lines; an
    /// error mid-stream becomes a last `error` event (line).
    pub(super) fn stream(&self, binding: &Binding, body: AxumBody, framing: Framing) -> Response {
        let output = binding.rpc.output();
        let state = (body, BytesMut::new(), false);
        let events = futures::stream::unfold(state, move |(mut body, mut buffer, done)| {
            let output = output.clone();
            async move {
                if done {
                    return None;
                }
                loop {
                    let mut view = buffer.clone().freeze();
                    if let Some(message) = next_message(&mut view) {
                        let used = buffer.len() - view.len();
                        buffer.advance(used);
                        let text = DynamicMessage::decode(output.clone(), message)
                            .map_err(AppError::internal)
                            .and_then(|m| super::json::to_json(&m))
                            .map(|json| render(framing, &json))
                            .unwrap_or_else(|e| error_event(framing, &Failure::from(e).body()));
                        return Some((Ok::<_, Infallible>(text), (body, buffer, false)));
                    }
                    match body.frame().await {
                        Some(Ok(frame)) => {
                            if let Some(trailers) = frame.trailers_ref() {
                                let status = tonic::Status::from_header_map(trailers);
                                return match status {
                                    Some(status) if status.code() != Code::Ok => {
                                        let text =
                                            error_event(framing, &Failure::from_status(&status).body());
                                        Some((Ok(text), (body, buffer, true)))
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
                            return Some((Ok(error_event(framing, &failure.body())), (body, buffer, true)));
                        }
                        None => return None,
                    }
                }
            }
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
