//! Caps on open long-lived connections (SSE streams; Socket.IO connections once wired):
//! `MAX_CONNECTIONS_PER_IP` per client key (see [`super::client_ip::limit_key`]) and
//! `MAX_CONNECTIONS` in all. A connection holds a [`ConnectionGuard`] from its start; dropping
//! the guard (the connection ending, however it ends) frees its place.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use super::client_ip::limit_key;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionRefused {
    /// This client already holds `MAX_CONNECTIONS_PER_IP` connections (HTTP 429).
    #[error("too many connections from this address")]
    PerIp,
    /// The server holds `MAX_CONNECTIONS` connections (HTTP 503).
    #[error("the server is at its connection limit")]
    Global,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_key: HashMap<IpAddr, usize>,
}

/// The caps and the current counts. 0 means no cap.
#[derive(Debug, Clone)]
pub struct ConnectionLimiter {
    max_total: usize,
    max_per_ip: usize,
    counts: Arc<Mutex<Counts>>,
}

/// One open connection's place; freed on drop.
#[derive(Debug)]
#[must_use = "the connection's place is freed when the guard is dropped"]
pub struct ConnectionGuard {
    key: IpAddr,
    counts: Arc<Mutex<Counts>>,
}

impl ConnectionLimiter {
    pub fn new(max_total: usize, max_per_ip: usize) -> Self {
        ConnectionLimiter {
            max_total,
            max_per_ip,
            counts: Arc::default(),
        }
    }

    /// A place for a connection from `ip` (the client's address, see
    /// [`super::client_ip::TrustedProxies::client_ip`]). The per-address cap is checked
    /// first, so a client at its own cap hears so (429) even when the server is full.
    pub fn try_acquire(&self, ip: IpAddr) -> Result<ConnectionGuard, ConnectionRefused> {
        let key = limit_key(ip);
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        let mine = counts.per_key.get(&key).copied().unwrap_or(0);
        if self.max_per_ip > 0 && mine >= self.max_per_ip {
            return Err(ConnectionRefused::PerIp);
        }
        if self.max_total > 0 && counts.total >= self.max_total {
            return Err(ConnectionRefused::Global);
        }
        counts.total += 1;
        *counts.per_key.entry(key).or_insert(0) += 1;
        Ok(ConnectionGuard {
            key,
            counts: self.counts.clone(),
        })
    }

    #[cfg(test)]
    /// Connections open now.
    pub fn open(&self) -> usize {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).total
    }

    #[cfg(test)]
    /// Connections open now from `ip`'s key.
    pub fn open_from(&self, ip: IpAddr) -> usize {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.per_key.get(&limit_key(ip)).copied().unwrap_or(0)
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_key.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                counts.per_key.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn per_ip_then_global_caps_and_guards_free_their_place() {
        let limiter = ConnectionLimiter::new(3, 2);
        let a1 = limiter.try_acquire(ip("1.1.1.1")).unwrap();
        let _a2 = limiter.try_acquire(ip("1.1.1.1")).unwrap();
        assert_eq!(
            limiter.try_acquire(ip("1.1.1.1")).unwrap_err(),
            ConnectionRefused::PerIp
        );
        let _b1 = limiter.try_acquire(ip("2.2.2.2")).unwrap();
        assert_eq!(
            limiter.try_acquire(ip("3.3.3.3")).unwrap_err(),
            ConnectionRefused::Global
        );
        // At its own cap, a client hears about its cap even when the server is full.
        assert_eq!(
            limiter.try_acquire(ip("1.1.1.1")).unwrap_err(),
            ConnectionRefused::PerIp
        );
        assert_eq!(limiter.open(), 3);
        drop(a1);
        assert_eq!(limiter.open(), 2);
        assert_eq!(limiter.open_from(ip("1.1.1.1")), 1);
        let _c = limiter.try_acquire(ip("3.3.3.3")).unwrap();
    }

    #[test]
    fn ipv6_addresses_of_one_64_share_a_cap() {
        let limiter = ConnectionLimiter::new(0, 1);
        let _a = limiter.try_acquire(ip("2001:db8::1")).unwrap();
        assert!(limiter.try_acquire(ip("2001:db8::2")).is_err());
        assert!(limiter.try_acquire(ip("2001:db8:0:1::1")).is_ok());
    }

    #[test]
    fn zero_means_no_cap_and_empty_keys_are_forgotten() {
        let limiter = ConnectionLimiter::new(0, 0);
        let guards: Vec<_> = (0..1000)
            .map(|_| limiter.try_acquire(ip("1.1.1.1")).unwrap())
            .collect();
        assert_eq!(limiter.open(), 1000);
        drop(guards);
        assert_eq!(limiter.open(), 0);
        assert!(limiter.counts.lock().unwrap().per_key.is_empty());
    }
}
