//! Facts about the request being served: who sent it from where.
//!
//! The client's address is the TCP peer, unless the peer is a proxy listed
//! in `DEBRIEF_TRUSTED_PROXIES`: then it is the rightmost address of the
//! `Forwarded` (or else `X-Forwarded-For`) chain that is not itself a
//! trusted proxy, since each proxy appends the address it saw and only the
//! hops of trusted proxies can be believed. [`resolve_client_ip`] runs once
//! per request, before everything else, and leaves a [`ClientIp`] in the
//! request's extensions for limits, lockouts, sessions and audit.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// The address a request came from, after trusted proxies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// Networks whose forwarding headers are believed; empty: none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(pub Vec<IpNet>);

impl TrustedProxies {
    fn trusts(&self, ip: &IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(ip))
    }

    /// The client behind `peer`, given the request's `headers`.
    pub fn client(&self, peer: IpAddr, headers: &http::HeaderMap) -> IpAddr {
        if !self.trusts(&peer) {
            return peer;
        }
        let forwarded = headers.get_all(http::header::FORWARDED);
        let chain: Vec<IpAddr> = if forwarded.iter().next().is_some() {
            forwarded
                .iter()
                .flat_map(|v| forwarded_for(v.to_str().unwrap_or("")))
                .collect()
        } else {
            headers
                .get_all("x-forwarded-for")
                .iter()
                .flat_map(|v| v.to_str().unwrap_or("").split(','))
                .filter_map(|hop| parse_hop(hop.trim()))
                .collect()
        };
        // From the nearest hop back: the first that is not a trusted proxy.
        let mut client = peer;
        for hop in chain.into_iter().rev() {
            client = hop;
            if !self.trusts(&hop) {
                break;
            }
        }
        client
    }
}

/// The `for=` addresses of a `Forwarded` header value (RFC 7239), in order.
fn forwarded_for(value: &str) -> Vec<IpAddr> {
    value
        .split(',')
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (key, value) = pair.split_once('=')?;
                key.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| parse_hop(value.trim().trim_matches('"')))
                    .flatten()
            })
        })
        .collect()
}

/// An address as proxies write it: `192.0.2.1`, `192.0.2.1:4711`,
/// `2001:db8::1` or `[2001:db8::1]:4711`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| hop.strip_prefix('[')?.strip_suffix(']')?.parse().ok())
}

/// Puts the request's [`ClientIp`] in its extensions.
pub fn resolve_client_ip<B>(trusted: &TrustedProxies, mut request: http::Request<B>) -> http::Request<B> {
    let peer = request
        .extensions()
        .get::<tonic::transport::server::TcpConnectInfo>()
        .and_then(|info| info.remote_addr())
        .map(|addr| addr.ip());
    if let Some(peer) = peer {
        let client = trusted.client(peer, request.headers());
        request.extensions_mut().insert(ClientIp(client));
    }
    request
}

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
            ip: request
                .extensions()
                .get::<ClientIp>()
                .map(|client| client.0)
                .or_else(|| request.remote_addr().map(|addr| addr.ip())),
            user_agent,
            request_id: header("x-request-id"),
        }
    }

    /// The IP address as text, empty when unknown.
    pub fn ip_text(&self) -> String {
        self.ip.map(|ip| ip.to_string()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let trusted = TrustedProxies(vec!["10.0.0.0/8".parse().unwrap()]);
        let proxy = ip("10.0.0.5");
        // The client may send any X-Forwarded-For; only what the trusted
        // proxies appended counts.
        let spoofed = headers(&[("x-forwarded-for", "198.51.100.1, 203.0.113.7, 10.0.0.9")]);
        assert_eq!(trusted.client(proxy, &spoofed), ip("203.0.113.7"));
        let forwarded = headers(&[(
            "forwarded",
            r#"for=192.0.2.60;proto=https, for="[2001:db8::1]:4711""#,
        )]);
        assert_eq!(trusted.client(proxy, &forwarded), ip("2001:db8::1"));
        // Headers from an untrusted peer are ignored.
        assert_eq!(trusted.client(ip("203.0.113.9"), &spoofed), ip("203.0.113.9"));
        assert_eq!(TrustedProxies::default().client(proxy, &spoofed), proxy);
        // Only trusted hops: the farthest one.
        let internal = headers(&[("x-forwarded-for", "10.1.1.1, 10.2.2.2")]);
        assert_eq!(trusted.client(proxy, &internal), ip("10.1.1.1"));
        assert_eq!(trusted.client(proxy, &headers(&[])), proxy);
    }
}
