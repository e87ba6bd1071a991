//! The HTTP/JSON edge: every RPC with a `google.api.http` binding, served
//! over plain HTTP with proto3 JSON, with no handler written by hand.
//!
//! A request is matched against the bindings read from the descriptor set,
//! turned into the RPC's input message ([`json`]), and sent as a gRPC call
//! to the same router the gRPC clients reach — in process, through the same
//! tower layers (auth, gRPC-Web translation aside) — so the edge can never
//! be a way around a check. The answer comes back as JSON; an error as a
//! JSON `google.rpc.Status` with the HTTP status of the standard table.
//! Server-streaming RPCs answer as Server-Sent Events, or as NDJSON when
//! asked with `Accept: application/x-ndjson`.

pub mod json;
pub mod openapi;
pub mod rules;
pub mod tus;

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body as AxumBody;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use http_body_util::BodyExt;
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, ReflectMessage};
use serde_json::{Value, json};
use tonic::Code;
use tower::ServiceExt;

use self::json::{Parts, RequestError};
use self::rules::Binding;
use crate::error::AppError;

/// Headers passed on to the RPC as metadata.
const FORWARDED: [&str; 4] = ["authorization", "x-request-id", "user-agent", "grpc-timeout"];

/// The edge's state.
struct Edge {
    bindings: Vec<Binding>,
    grpc: axum::Router,
    max_body: usize,
    /// Longest a call may take to answer.
    timeout: std::time::Duration,
}

/// Why the edge could not be built.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// The descriptor set does not decode.
    #[error("the API descriptors are unusable: {0}")]
    Descriptors(#[from] prost_reflect::DescriptorError),
    /// A path template does not parse.
    #[error(transparent)]
    Template(#[from] rules::TemplateError),
}

/// The API's descriptors, decoded once.
fn pool() -> &'static DescriptorPool {
    static POOL: std::sync::OnceLock<DescriptorPool> = std::sync::OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(crate::pb::FILE_DESCRIPTOR_SET).unwrap_or_default())
}

/// The API's HTTP bindings.
fn api() -> Result<Vec<Binding>, EdgeError> {
    // Decoding first reports a broken descriptor set as such.
    DescriptorPool::decode(crate::pb::FILE_DESCRIPTOR_SET)?;
    Ok(rules::bindings(pool())?)
}

/// The OpenAPI document of the edge (what `/openapi.json` serves).
pub fn openapi_document() -> Result<Value, EdgeError> {
    Ok(openapi::document(pool(), &api()?))
}

/// The page at `/docs`: Redoc, served from the binary, rendering
/// `/openapi.json`.
const DOCS_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>debrief API reference</title>
</head>
<body>
<div id="redoc"></div>
<script src="/docs/redoc.js"></script>
<script src="/docs/init.js"></script>
</body>
</html>
"#;

const DOCS_INIT: &str = "Redoc.init('/openapi.json', { disableSearch: false, hideDownloadButton: false },                          document.getElementById('redoc'));\n";

const REDOC: &[u8] = include_bytes!("../../assets/redoc/redoc.standalone.js");

/// The policy of the `/docs` pages: Redoc's script and inline styles from
/// this server only.
pub const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline';                             img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src blob:";

/// The edge's routes (everything under `/v1/`, the OpenAPI document and
/// the API reference), calling `grpc`.
pub fn router(
    grpc: axum::Router,
    max_body: usize,
    timeout: std::time::Duration,
) -> Result<axum::Router, EdgeError> {
    let bindings = api()?;
    let document = Bytes::from(serde_json::to_vec(&openapi::document(pool(), &bindings)).unwrap_or_default());
    let grpc_for_tus = grpc.clone();
    let edge = Arc::new(Edge {
        bindings,
        grpc,
        max_body,
        timeout,
    });
    let asset = |content_type: &'static str, body: Bytes| {
        move || {
            let body = body.clone();
            async move {
                (
                    [
                        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
                        (
                            header::CACHE_CONTROL,
                            HeaderValue::from_static("public, max-age=300"),
                        ),
                        (
                            header::CONTENT_SECURITY_POLICY,
                            HeaderValue::from_static(DOCS_CSP),
                        ),
                    ],
                    body,
                )
            }
        }
    };
    Ok(axum::Router::new()
        .route("/v1/{*path}", axum::routing::any(handle))
        .with_state(edge)
        .merge(tus::router(grpc_for_tus))
        .route(
            "/openapi.json",
            axum::routing::get(asset("application/json", document)),
        )
        .route(
            "/docs",
            axum::routing::get(asset(
                "text/html; charset=utf-8",
                Bytes::from_static(DOCS_PAGE.as_bytes()),
            )),
        )
        .route(
            "/docs/redoc.js",
            axum::routing::get(asset("text/javascript", Bytes::from_static(REDOC))),
        )
        .route(
            "/docs/init.js",
            axum::routing::get(asset("text/javascript", Bytes::from_static(DOCS_INIT.as_bytes()))),
        ))
}

async fn handle(State(edge): State<Arc<Edge>>, request: http::Request<AxumBody>) -> Response {
    let answered = tokio::time::timeout(edge.timeout, edge.serve(request))
        .await
        .unwrap_or_else(|_| {
            Err(Failure::new(
                StatusCode::GATEWAY_TIMEOUT,
                Code::DeadlineExceeded,
                format!("the call took longer than {:?}", edge.timeout),
            ))
        });
    match answered {
        Ok(response) => response,
        Err(failure) => failure.into_response(),
    }
}

/// An error answered as a JSON `google.rpc.Status`.
struct Failure {
    http: StatusCode,
    code: Code,
    message: String,
    /// `grpc-status-details-bin`, when the RPC sent one.
    details: Option<Bytes>,
    /// The `Allow` header of a 405.
    allow: Option<HeaderValue>,
}

impl Failure {
    fn new(http: StatusCode, code: Code, message: impl Into<String>) -> Self {
        Self {
            http,
            code,
            message: message.into(),
            details: None,
            allow: None,
        }
    }

    fn from_status(status: &tonic::Status) -> Self {
        Self {
            http: http_status(status.code()),
            code: status.code(),
            message: status.message().to_owned(),
            details: (!status.details().is_empty()).then(|| Bytes::copy_from_slice(status.details())),
            allow: None,
        }
    }

    /// The `google.rpc.Status` as JSON.
    fn body(&self) -> Value {
        let decoded = self.details.as_ref().and_then(|bytes| {
            let descriptor = pool().get_message_by_name("google.rpc.Status")?;
            let message = DynamicMessage::decode(descriptor, bytes.clone()).ok()?;
            json::to_json(&message).ok()
        });
        let mut body = decoded.unwrap_or_else(|| json!({}));
        body["code"] = json!(self.code as i32);
        body["message"] = json!(self.message);
        if body.get("details").is_none() {
            body["details"] = json!([]);
        }
        body
    }

    fn into_response(self) -> Response {
        let body = self.body();
        let wait = body["details"]
            .as_array()
            .and_then(|details| retry_after(details));
        let mut response = (self.http, axum::Json(body)).into_response();
        if let Some(allow) = self.allow {
            response.headers_mut().insert(header::ALLOW, allow);
        }
        if let Some(wait) = wait {
            response.headers_mut().insert(header::RETRY_AFTER, wait);
        }
        response
    }
}

/// `Retry-After` (whole seconds, rounded up) from a RetryInfo detail.
fn retry_after(details: &[Value]) -> Option<HeaderValue> {
    details.iter().find_map(|d| {
        let delay = d.get("retryDelay")?.as_str()?.strip_suffix('s')?;
        let seconds: f64 = delay.parse().ok()?;
        HeaderValue::from_str(&(seconds.ceil().max(1.0) as u64).to_string()).ok()
    })
}

/// The HTTP status of a gRPC code (the standard table).
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<AppError> for Failure {
    fn from(error: AppError) -> Self {
        Self::from_status(&tonic::Status::from(error))
    }
}

/// A binding that matched, with its path variables.
type Matched<'a> = (&'a Binding, Vec<(String, String)>);

/// How a streamed answer is framed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    Sse,
    NdJson,
}

impl Edge {
    /// The binding for a request and its path variables.
    fn find(&self, method: &Method, path: &str) -> Result<Matched<'_>, Failure> {
        let mut allowed = Vec::new();
        for binding in &self.bindings {
            if let Some(variables) = binding.template.matches(path) {
                if binding.method == *method {
                    return Ok((binding, variables));
                }
                allowed.push(binding.method.as_str().to_owned());
            }
        }
        if allowed.is_empty() {
            return Err(Failure::new(
                StatusCode::NOT_FOUND,
                Code::NotFound,
                format!("no API method is bound to {path}"),
            ));
        }
        let mut failure = Failure::new(
            StatusCode::METHOD_NOT_ALLOWED,
            Code::Unimplemented,
            format!("{path} takes {}", allowed.join(", ")),
        );
        failure.allow = HeaderValue::from_str(&allowed.join(", ")).ok();
        Err(failure)
    }

    async fn serve(&self, request: http::Request<AxumBody>) -> Result<Response, Failure> {
        let (mut head, body) = request.into_parts();
        let (binding, variables) = self.find(&head.method, head.uri.path())?;
        let streaming = binding.rpc.is_server_streaming();
        // A browser's EventSource authenticates with a stream ticket in the
        // query; it is for the auth layer, not a field of the request.
        let query = match (streaming && head.method == Method::GET, head.uri.query()) {
            (true, Some(query)) => {
                let (ticket, rest) = take_ticket(query);
                if let Some(ticket) = ticket {
                    head.extensions.insert(crate::auth::tickets::StreamTicket(ticket));
                }
                Some(rest)
            }
            (_, query) => query.map(str::to_owned),
        };
        let body = axum::body::to_bytes(body, self.max_body).await.map_err(|_| {
            Failure::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                Code::OutOfRange,
                format!("the body is larger than {} bytes", self.max_body),
            )
        })?;
        let content_type = head
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let mut message = json::request(
            binding,
            &Parts {
                variables,
                query: query.as_deref(),
                content_type,
                body: &body,
            },
        )
        .map_err(|e| match e {
            RequestError::UnsupportedMediaType(message) => {
                Failure::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, Code::InvalidArgument, message)
            }
            RequestError::Invalid(error) => error.into(),
        })?;
        if streaming {
            resume_from_last_event_id(&mut message, &head.headers)?;
        }

        let path = format!(
            "/{}/{}",
            binding.rpc.parent_service().full_name(),
            binding.rpc.name()
        );
        let answer = start(&self.grpc, &path, &head, message.encode_to_vec()).await?;
        if streaming {
            let framing = if accepts_ndjson(&head.headers) {
                Framing::NdJson
            } else {
                Framing::Sse
            };
            return Ok(self.stream(binding, answer.into_body(), framing));
        }
        let reply = finish(answer).await?;
        let output = DynamicMessage::decode(binding.rpc.output(), reply).map_err(AppError::internal)?;
        let body = match &binding.response_body {
            Some(field) => json::to_json(&field_message(&output, field)?)?,
            None => json::to_json(&output)?,
        };
        Ok((StatusCode::OK, axum::Json(body)).into_response())
    }

    /// Sends a server stream's messages as SSE events or NDJSON lines; an
    /// error mid-stream becomes a last `error` event (line).
    fn stream(&self, binding: &Binding, body: AxumBody, framing: Framing) -> Response {
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
                            .and_then(|m| json::to_json(&m))
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

/// Starts a call of the RPC at `path` of `grpc`, in process, with the
/// caller's credentials and request id from `head` and its connection facts
/// (the peer address) in the extensions. An error the RPC answered before
/// any message comes back as a [`Failure`].
async fn start(
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
async fn finish(answer: http::Response<AxumBody>) -> Result<Bytes, Failure> {
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
async fn unary<Req: prost::Message, Res: prost::Message + Default>(
    grpc: &axum::Router,
    path: &str,
    head: &http::request::Parts,
    request: &Req,
) -> Result<Res, Failure> {
    let answer = start(grpc, path, head, request.encode_to_vec()).await?;
    let reply = finish(answer).await?;
    Ok(Res::decode(reply).map_err(AppError::internal)?)
}

/// One message as an SSE event (its id is the event id, when it carries
/// one, so `Last-Event-ID` resumes) or an NDJSON line.
fn render(framing: Framing, json: &Value) -> String {
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

fn error_event(framing: Framing, status: &Value) -> String {
    match framing {
        Framing::NdJson => format!("{}\n", json!({ "error": status })),
        Framing::Sse => format!("event: error\ndata: {status}\n\n"),
    }
}

fn accepts_ndjson(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/x-ndjson"))
}

/// The `ticket` parameter of a query string, and the query without it.
fn take_ticket(query: &str) -> (Option<String>, String) {
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
fn resume_from_last_event_id(message: &mut DynamicMessage, headers: &HeaderMap) -> Result<(), Failure> {
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

/// The message in `field` of `output` (a `response_body`).
fn field_message(output: &DynamicMessage, field: &str) -> Result<DynamicMessage, AppError> {
    match output.get_field_by_name(field).as_deref() {
        Some(prost_reflect::Value::Message(message)) => Ok(message.clone()),
        _ => Err(AppError::internal(format!(
            "the response has no message field {field}"
        ))),
    }
}

/// A gRPC length-prefixed frame holding `message`.
fn frame(message: &[u8]) -> Bytes {
    let mut framed = BytesMut::with_capacity(message.len() + 5);
    framed.extend_from_slice(&[0]);
    framed.extend_from_slice(&u32::try_from(message.len()).unwrap_or(u32::MAX).to_be_bytes());
    framed.extend_from_slice(message);
    framed.freeze()
}

/// Takes the next complete frame's message off `data`, if it holds one.
fn next_message(data: &mut Bytes) -> Option<Bytes> {
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
    use super::*;

    #[test]
    fn every_code_has_its_http_status() {
        let table = [
            (Code::Ok, 200),
            (Code::Cancelled, 499),
            (Code::Unknown, 500),
            (Code::InvalidArgument, 400),
            (Code::DeadlineExceeded, 504),
            (Code::NotFound, 404),
            (Code::AlreadyExists, 409),
            (Code::PermissionDenied, 403),
            (Code::ResourceExhausted, 429),
            (Code::FailedPrecondition, 400),
            (Code::Aborted, 409),
            (Code::OutOfRange, 400),
            (Code::Unimplemented, 501),
            (Code::Internal, 500),
            (Code::Unavailable, 503),
            (Code::DataLoss, 500),
            (Code::Unauthenticated, 401),
        ];
        for (code, status) in table {
            assert_eq!(http_status(code).as_u16(), status, "{code:?}");
            // The body of each is a google.rpc.Status with that code.
            let body = Failure::new(http_status(code), code, "why").body();
            assert_eq!(body["code"], code as i32);
            assert_eq!(body["message"], "why");
            assert!(body["details"].is_array());
        }
    }
}
