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
//! asked with `Accept: application/x-ndjson`; one that streams
//! `google.api.HttpBody` (a file) answers as that file, ranges included.
//!
//! This module routes a request to its binding and builds the call;
//! `calls.rs` makes it in process, `streams.rs` frames a streamed answer,
//! `failure.rs` turns errors into HTTP answers and `docs.rs` serves the API
//! reference.

mod calls;
mod docs;
mod failure;
pub mod json;
pub mod openapi;
pub mod rules;
mod streams;
pub mod tus;

pub use docs::DOCS_CSP;
pub use failure::http_status;

use std::sync::Arc;

use axum::body::Body as AxumBody;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, header};
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage};
use serde_json::Value;
use tonic::Code;

use self::calls::{field_message, finish, start};
use self::failure::Failure;
use self::json::{Parts, RequestError};
use self::rules::Binding;
use self::streams::{Framing, accepts_ndjson, resume_from_last_event_id, take_ticket};
use crate::error::AppError;

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

/// The budget of the edge's property tests: `default_cases` cases, or
/// `PROPTEST_CASES` for a longer run.
#[cfg(test)]
fn proptest_config(default_cases: u32) -> proptest::test_runner::Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    proptest::test_runner::Config {
        cases,
        failure_persistence: None,
        ..Default::default()
    }
}

/// The API's HTTP bindings, parsed once, for the property tests.
#[cfg(test)]
fn bindings_for_tests() -> &'static [Binding] {
    static API: std::sync::OnceLock<Vec<Binding>> = std::sync::OnceLock::new();
    API.get_or_init(|| api().unwrap())
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
    Ok(axum::Router::new()
        .route("/v1/{*path}", axum::routing::any(handle))
        .with_state(edge)
        .merge(tus::router(grpc_for_tus))
        .merge(docs::routes(document)))
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

/// A binding that matched, with its path variables.
type Matched<'a> = (&'a Binding, Vec<(String, String)>);

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
        if streaming && binding.rpc.output().full_name() == "google.api.HttpBody" {
            return streams::raw(answer).await;
        }
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
}
