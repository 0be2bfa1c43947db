//! Cross-origin access for browser clients of gRPC-web (`[gateway.cors]`; docs/gateway.md,
//! "CORS"): which origins may call, which request headers they may send, which answer
//! headers their scripts may read, and how long a browser keeps a preflight answer.

use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use http::{Method, request};
use serde::{Deserialize, Serialize};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Request headers a gRPC-web or Connect client of the gateway sends.
pub const DEFAULT_ALLOWED_HEADERS: &[&str] = &[
    "authorization",
    "idempotency-key",
    "content-type",
    "x-grpc-web",
    "x-user-agent",
    "grpc-timeout",
    "traceparent",
    "connect-protocol-version",
    "connect-timeout-ms",
];

/// Answer headers a gRPC-web client reads: the gRPC status and the gateway's replay
/// metadata (docs/idempotency.md).
pub const DEFAULT_EXPOSED_HEADERS: &[&str] = &[
    "grpc-status",
    "grpc-message",
    "grpc-status-details-bin",
    "idempotent-replayed",
    "idempotent-redacted",
    "original-request-id",
    "business-event-id",
    "request-id",
];

/// The local origins `economy up` allows when none is configured: a page served from
/// this machine on any port.
pub const LOCAL_ORIGINS: &[&str] = &["http://localhost:*", "http://127.0.0.1:*", "http://[::1]:*"];

/// `[gateway.cors]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CorsConfig {
    /// Origins allowed to call (`https://app.example.com`); `scheme://host:*` allows any
    /// port of that host; `*` allows every origin (only when written, and never with
    /// `allow_credentials`). Empty (the default): no cross-origin access (`economy up`
    /// fills in [`LOCAL_ORIGINS`]).
    pub allowed_origins: Vec<String>,
    /// How long a browser may keep a preflight answer, seconds (default 600).
    pub max_age_secs: u64,
    /// Whether a browser may send cookies or HTTP authentication (default false; bearer
    /// tokens in `authorization` do not need it).
    pub allow_credentials: bool,
    /// Request headers a caller may send ([`DEFAULT_ALLOWED_HEADERS`]).
    pub allowed_headers: Vec<String>,
    /// Answer headers a caller's script may read ([`DEFAULT_EXPOSED_HEADERS`]).
    pub exposed_headers: Vec<String>,
}

impl Default for CorsConfig {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            max_age_secs: 600,
            allow_credentials: false,
            allowed_headers: DEFAULT_ALLOWED_HEADERS.iter().map(|&header| header.to_owned()).collect(),
            exposed_headers: DEFAULT_EXPOSED_HEADERS.iter().map(|&header| header.to_owned()).collect(),
        }
    }
}

impl CorsConfig {
    /// Whether every origin is allowed (`*`).
    pub fn allows_any_origin(&self) -> bool {
        self.allowed_origins.iter().any(|origin| origin == "*")
    }

    /// The CORS layer of this policy (methods: `POST`, gRPC-web's only one).
    ///
    /// Errors, naming the setting: an origin that is not `*`, `scheme://host[:port]` or
    /// `scheme://host:*`; a header name that is not valid; `*` with `allow_credentials`
    /// (browsers refuse it, and it would let any site act with a user's cookies).
    pub fn layer(&self) -> anyhow::Result<CorsLayer> {
        anyhow::ensure!(
            !(self.allows_any_origin() && self.allow_credentials),
            "gateway.cors.allowed_origins = [\"*\"] with gateway.cors.allow_credentials = true is refused: \
             list the origins that may send credentials"
        );
        let layer = CorsLayer::new()
            .allow_origin(self.allow_origin()?)
            .allow_methods([Method::POST])
            .allow_headers(header_names(&self.allowed_headers, "gateway.cors.allowed_headers")?)
            .expose_headers(header_names(&self.exposed_headers, "gateway.cors.exposed_headers")?)
            .max_age(Duration::from_secs(self.max_age_secs))
            .allow_credentials(self.allow_credentials);
        Ok(layer)
    }

    fn allow_origin(&self) -> anyhow::Result<AllowOrigin> {
        if self.allows_any_origin() {
            return Ok(AllowOrigin::any());
        }
        let patterns =
            self.allowed_origins.iter().map(|origin| OriginPattern::parse(origin)).collect::<Result<Vec<_>, _>>()?;
        Ok(AllowOrigin::predicate(move |origin: &HeaderValue, _: &request::Parts| {
            origin.to_str().is_ok_and(|origin| patterns.iter().any(|pattern| pattern.matches(origin)))
        }))
    }
}

/// One allowed origin: exact, or any port of a host (`http://localhost:*`).
#[derive(Debug, Clone)]
enum OriginPattern {
    Exact(String),
    AnyPort(String),
}

impl OriginPattern {
    fn parse(origin: &str) -> anyhow::Result<Self> {
        let invalid = || {
            anyhow::anyhow!(
                "gateway.cors.allowed_origins: {origin:?} is not an origin (scheme://host[:port], scheme://host:* or *)"
            )
        };
        let (scheme, rest) = origin.split_once("://").ok_or_else(invalid)?;
        let host_ok = |host: &str| !host.is_empty() && !host.contains(['/', '?', '#', '*', ' ']);
        if !matches!(scheme, "http" | "https") {
            return Err(invalid());
        }
        match rest.strip_suffix(":*") {
            Some(host) if host_ok(host) => Ok(Self::AnyPort(format!("{scheme}://{host}").to_ascii_lowercase())),
            None if host_ok(rest) => Ok(Self::Exact(origin.to_ascii_lowercase())),
            _ => Err(invalid()),
        }
    }

    fn matches(&self, origin: &str) -> bool {
        let origin = origin.to_ascii_lowercase();
        match self {
            Self::Exact(allowed) => origin == *allowed,
            Self::AnyPort(host) => {
                origin == *host
                    || origin
                        .strip_prefix(host.as_str())
                        .and_then(|rest| rest.strip_prefix(':'))
                        .is_some_and(|port| !port.is_empty() && port.bytes().all(|byte| byte.is_ascii_digit()))
            }
        }
    }
}

fn header_names(names: &[String], setting: &str) -> anyhow::Result<Vec<HeaderName>> {
    names
        .iter()
        .map(|name| {
            HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| anyhow::anyhow!("{setting}: {name:?} is not a header name"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, origin: &str) -> bool {
        OriginPattern::parse(pattern).expect("a pattern").matches(origin)
    }

    #[test]
    fn exact_origins_and_any_port_patterns_match_only_their_origins() {
        assert!(matches("https://app.example.com", "https://app.example.com"));
        assert!(matches("https://app.example.com", "HTTPS://App.Example.com"));
        assert!(!matches("https://app.example.com", "https://app.example.com.evil.test"));
        assert!(!matches("https://app.example.com", "http://app.example.com"));
        assert!(matches("http://localhost:*", "http://localhost:5173"));
        assert!(matches("http://localhost:*", "http://localhost"));
        assert!(!matches("http://localhost:*", "http://localhost.evil.test:80"));
        assert!(!matches("http://localhost:*", "http://localhost:80x"));
        assert!(matches("http://LocalHost:*", "http://localhost:5173"), "hosts compare without case");
    }

    #[test]
    fn bad_origins_headers_and_credentials_with_any_origin_are_refused() {
        for origin in ["localhost:3000", "ftp://x", "https://x/path", "https://*.example.com", "https://"] {
            let config = CorsConfig { allowed_origins: vec![origin.into()], ..CorsConfig::default() };
            let message = config.layer().expect_err(origin).to_string();
            assert!(message.contains("gateway.cors.allowed_origins"), "{message}");
        }
        let config = CorsConfig { allowed_headers: vec!["bad header".into()], ..CorsConfig::default() };
        assert!(config.layer().expect_err("bad header").to_string().contains("gateway.cors.allowed_headers"));
        let config = CorsConfig { allowed_origins: vec!["*".into()], allow_credentials: true, ..CorsConfig::default() };
        assert!(config.layer().expect_err("credentials with *").to_string().contains("gateway.cors.allow_credentials"));
        let config = CorsConfig {
            allowed_origins: LOCAL_ORIGINS.iter().map(|&o| o.into()).collect(),
            allow_credentials: true,
            ..CorsConfig::default()
        };
        assert!(config.layer().is_ok());
    }
}
