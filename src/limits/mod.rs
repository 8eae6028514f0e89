//! Abuse limits: what one client may cost the server.
//!
//! - [`bucket`]: token buckets (pure), per key for `PUT_RATE`/`PUT_BURST`, and one per
//!   connection for the Socket.IO layer's `EVENT_RATE`/`EVENT_BURST`.
//! - [`connections`]: `MAX_CONNECTIONS_PER_IP` and `MAX_CONNECTIONS`, held by RAII guards.
//! - [`client_ip`]: the client's address behind `TRUSTED_PROXIES` (pure).
//!
//! [`AbuseLimits`] bundles them for the router ([`ClientIp`] is the extractor); refusals are
//! [`ApiError`]s: 429 with `Retry-After` for rates, 429 (per address) or 503 (server full)
//! for connections.

pub(crate) mod bucket;
pub(crate) mod client_ip;
pub(crate) mod connections;

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, StatusCode};

pub(crate) use bucket::{KeyedLimiter, Rate};
pub(crate) use client_ip::TrustedProxies;
pub(crate) use connections::{ConnectionGuard, ConnectionLimiter, ConnectionRefused};

use crate::auth::UserName;
use crate::error::ApiError;

/// Whose PUTs share a bucket: a user's (authentication on) or an address's (off).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum RateKey {
    User(UserName),
    Ip(IpAddr),
}

impl RateKey {
    /// The key for a request by `user` (if authenticated) from `ip`.
    pub(crate) fn for_request(user: Option<&UserName>, ip: IpAddr) -> Self {
        match user {
            Some(user) => RateKey::User(user.clone()),
            None => RateKey::Ip(client_ip::limit_key(ip)),
        }
    }
}

/// The configured limits, shared by every request.
#[derive(Debug)]
pub(crate) struct AbuseLimits {
    pub(crate) puts: KeyedLimiter<RateKey>,
    pub(crate) connections: ConnectionLimiter,
    pub(crate) proxies: TrustedProxies,
}

impl AbuseLimits {
    pub(crate) fn new(
        put_rate: Option<Rate>,
        connections: ConnectionLimiter,
        proxies: TrustedProxies,
    ) -> Arc<Self> {
        Arc::new(AbuseLimits {
            puts: KeyedLimiter::new(put_rate),
            connections,
            proxies,
        })
    }

    /// The limits as configured; a malformed `TRUSTED_PROXIES` stops the start.
    pub(crate) fn from_config(config: &crate::config::LimitsConfig) -> anyhow::Result<Arc<Self>> {
        let proxies = config
            .trusted_proxies
            .iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| {
                s.parse()
                    .map_err(|e: String| anyhow::anyhow!("TRUSTED_PROXIES: {e}"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        tracing::info!(
            put_rate = config.put_rate,
            put_burst = config.put_burst,
            max_connections = config.max_connections,
            max_connections_per_ip = config.max_connections_per_ip,
            trusted_proxies = ?config.trusted_proxies,
            "abuse limits"
        );
        Ok(Self::new(
            Rate::new(config.put_rate, config.put_burst),
            ConnectionLimiter::new(config.max_connections, config.max_connections_per_ip),
            TrustedProxies::new(proxies),
        ))
    }

    /// No limits at all.
    #[cfg(test)]
    pub(crate) fn none() -> Arc<Self> {
        Self::new(
            None,
            ConnectionLimiter::new(0, 0),
            TrustedProxies::default(),
        )
    }

    /// Takes a PUT token for `key`, or refuses with 429 and `Retry-After`.
    pub(crate) fn check_put(&self, key: RateKey) -> Result<(), ApiError> {
        self.puts.check(key, Instant::now()).map_err(too_many)
    }

    /// A place for a long-lived connection from `ip`, or 429/503.
    pub(crate) fn connect(&self, ip: IpAddr) -> Result<ConnectionGuard, ApiError> {
        self.connections
            .try_acquire(ip)
            .map_err(|why| connection_refused(why, ip))
    }
}

/// 429 with `Retry-After` (whole seconds, rounded up).
pub(crate) fn too_many(wait: Duration) -> ApiError {
    let secs = bucket::retry_after_secs(wait);
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!("too many requests; retry in {secs} s"),
    )
    .with_header(
        HeaderName::from_static("retry-after"),
        HeaderValue::from(secs),
    )
}

fn connection_refused(why: ConnectionRefused, ip: IpAddr) -> ApiError {
    tracing::debug!(%ip, reason = %why, "connection refused");
    match why {
        ConnectionRefused::PerIp => ApiError::new(StatusCode::TOO_MANY_REQUESTS, why.to_string()),
        ConnectionRefused::Global => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, why.to_string())
        }
    }
}

/// The client's address: the TCP peer, or behind a trusted proxy the address it forwards.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientIp(pub(crate) IpAddr);

impl<S> FromRequestParts<S> for ClientIp
where
    Arc<AbuseLimits>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let limits = Arc::<AbuseLimits>::from_ref(state);
        let peer = match parts.extensions.get::<ConnectInfo<SocketAddr>>() {
            Some(ConnectInfo(addr)) => addr.ip(),
            None => {
                // Only a router served without connect info gets here (a wiring mistake):
                // every client then shares one key, which limits but never lets through.
                tracing::warn!("no peer address on a request; limits count it as 0.0.0.0");
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            }
        };
        Ok(ClientIp(limits.proxies.client_ip(peer, &parts.headers)))
    }
}

#[cfg(test)]
mod tests {
    use axum::response::IntoResponse;

    use super::*;

    #[test]
    fn refusals_are_shaped_for_clients() {
        let r = too_many(Duration::from_millis(1500)).into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()["retry-after"], "2");
        let ip: IpAddr = "1.2.3.4".parse().unwrap();
        let r = connection_refused(ConnectionRefused::PerIp, ip).into_response();
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        let r = connection_refused(ConnectionRefused::Global, ip).into_response();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn put_keys() {
        let ip: IpAddr = "2001:db8::7".parse().unwrap();
        assert_eq!(
            RateKey::for_request(None, ip),
            RateKey::Ip("2001:db8::".parse().unwrap())
        );
        let alice = UserName::new("alice").unwrap();
        assert_eq!(
            RateKey::for_request(Some(&alice), ip),
            RateKey::User(alice.clone())
        );
        let limits = AbuseLimits::none();
        for _ in 0..100 {
            assert!(limits.check_put(RateKey::User(alice.clone())).is_ok());
        }
    }
}
