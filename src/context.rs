//! Facts about the request being served: who sent it from where.

use std::net::IpAddr;

/// The client's address, user agent and the request id, for sessions,
/// throttling and audit entries.
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    /// The peer's IP address.
    pub ip: Option<IpAddr>,
    /// The `user-agent` (or gRPC-Web `x-user-agent`), at most 256 characters.
    pub user_agent: String,
    /// The `x-request-id` the server assigned or accepted.
    pub request_id: Option<String>,
}

impl RequestMeta {
    /// Reads the metadata of a gRPC request.
    pub fn of<T>(request: &tonic::Request<T>) -> Self {
        let header = |name: &str| {
            request
                .metadata()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        let user_agent = header("x-user-agent")
            .or_else(|| header("user-agent"))
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_control())
            .take(256)
            .collect();
        Self {
            ip: request.remote_addr().map(|addr| addr.ip()),
            user_agent,
            request_id: header("x-request-id"),
        }
    }

    /// The IP address as text, empty when unknown.
    pub fn ip_text(&self) -> String {
        self.ip.map(|ip| ip.to_string()).unwrap_or_default()
    }
}
