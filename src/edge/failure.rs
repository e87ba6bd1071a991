//! Errors answered as a JSON `google.rpc.Status`, with the HTTP status of
//! the standard table and `Retry-After` when the error says when to retry.

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use prost_reflect::DynamicMessage;
use serde_json::{Value, json};
use tonic::Code;

use super::pool;
use crate::error::AppError;

/// An error answered as a JSON `google.rpc.Status`.
pub(super) struct Failure {
    pub(super) http: StatusCode,
    code: Code,
    message: String,
    /// `grpc-status-details-bin`, when the RPC sent one.
    details: Option<Bytes>,
    /// The `Allow` header of a 405.
    pub(super) allow: Option<HeaderValue>,
}

impl Failure {
    pub(super) fn new(http: StatusCode, code: Code, message: impl Into<String>) -> Self {
        Self {
            http,
            code,
            message: message.into(),
            details: None,
            allow: None,
        }
    }

    pub(super) fn from_status(status: &tonic::Status) -> Self {
        Self {
            http: http_status(status.code()),
            code: status.code(),
            message: status.message().to_owned(),
            details: (!status.details().is_empty()).then(|| Bytes::copy_from_slice(status.details())),
            allow: None,
        }
    }

    /// The `google.rpc.Status` as JSON.
    pub(super) fn body(&self) -> Value {
        let decoded = self.details.as_ref().and_then(|bytes| {
            let descriptor = pool().get_message_by_name("google.rpc.Status")?;
            let message = DynamicMessage::decode(descriptor, bytes.clone()).ok()?;
            super::json::to_json(&message).ok()
        });
        let mut body = decoded.unwrap_or_else(|| json!({}));
        body["code"] = json!(self.code as i32);
        body["message"] = json!(self.message);
        if body.get("details").is_none() {
            body["details"] = json!([]);
        }
        body
    }

    pub(super) fn into_response(self) -> Response {
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
