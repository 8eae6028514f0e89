//! Redis Sentinel: which server is the master now.
//!
//! redis-rs's `SentinelClient` answers one question: which server is the master named X,
//! now? It asks the sentinels (`SENTINEL MASTERS`, up to three at once, skipping a master
//! they flag as down) and confirms with `ROLE` on that server. It does not follow a failover
//! by itself, and a `ConnectionManager` reconnects to one fixed address, so the backplane
//! asks again: [`watch_master`] runs beside the supervisor and asks every 250 ms while Redis
//! is down (the master died, or answered READONLY because it was demoted) and every 2 s while
//! it is up (a master replaced while it stayed reachable to us), and reports each new answer.
//! The supervisor then moves the connection there, resubscribes and reconciles, as after any
//! outage.

use std::time::Duration;

use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{ConnectionAddr, ProtocolVersion};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{Secret, SentinelAddr};

/// How often the sentinels are asked while Redis is down.
const ASK_WHILE_DOWN: Duration = Duration::from_millis(250);
/// How often they are asked while Redis works.
const ASK_WHILE_UP: Duration = Duration::from_secs(2);
/// Longest one lookup may take (sentinels and the master's `ROLE` together).
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the sentinels are, and how to reach them and the master they name.
pub(super) struct Sentinels {
    addrs: Vec<SentinelAddr>,
    master: String,
    password: Option<Secret>,
    sentinel_password: Option<Secret>,
}

impl Sentinels {
    /// Checks the settings (nothing is connected yet).
    pub(super) fn new(
        addrs: &[SentinelAddr],
        master: &str,
        password: Option<&Secret>,
        sentinel_password: Option<&Secret>,
    ) -> anyhow::Result<Self> {
        let sentinels = Sentinels {
            addrs: addrs.to_vec(),
            master: master.to_owned(),
            password: password.cloned(),
            sentinel_password: sentinel_password.cloned(),
        };
        sentinels
            .client()
            .map_err(|e| anyhow::anyhow!("invalid Redis Sentinel settings: {e}"))?;
        Ok(sentinels)
    }

    /// A lookup client: plain TCP to the sentinels, RESP3 to the master (pub/sub on the
    /// command connection needs push messages), each with its own password.
    fn client(&self) -> redis::RedisResult<SentinelClient> {
        let addrs = self
            .addrs
            .iter()
            .map(|a| ConnectionAddr::Tcp(a.host.clone(), a.port));
        let mut builder =
            SentinelClientBuilder::new(addrs, &self.master, SentinelServerType::Master)?
                .set_client_to_redis_protocol(ProtocolVersion::RESP3);
        if let Some(password) = &self.password {
            builder = builder.set_client_to_redis_password(password.expose());
        }
        if let Some(password) = &self.sentinel_password {
            builder = builder.set_client_to_sentinel_password(password.expose());
        }
        builder.build()
    }
}

impl std::fmt::Display for Sentinels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "master `{}` of sentinels ", self.master)?;
        for (i, addr) in self.addrs.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            write!(f, "{sep}{addr}")?;
        }
        Ok(())
    }
}

/// Asks the sentinels for the master until `shutdown`, often while `up` is false and rarely
/// while it is true, and sets `found` to each master that differs from the last one.
pub(super) async fn watch_master(
    sentinels: &Sentinels,
    mut up: watch::Receiver<bool>,
    found: watch::Sender<Option<redis::Client>>,
    shutdown: CancellationToken,
) {
    let mut lookup = match sentinels.client() {
        Ok(client) => client,
        Err(e) => {
            // Checked when the backplane was built; cannot happen.
            tracing::error!(error = %e, "cannot ask the redis sentinels");
            return;
        }
    };
    let mut failing = false;
    loop {
        let answer = match tokio::time::timeout(ASK_TIMEOUT, lookup.async_get_client()).await {
            Ok(Ok(master)) => Ok(master),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {ASK_TIMEOUT:?}")),
        };
        match answer {
            Ok(master) => {
                failing = false;
                let addr = master.get_connection_info().addr().clone();
                let new = found.send_if_modified(|current| {
                    let same = current
                        .as_ref()
                        .is_some_and(|c| *c.get_connection_info().addr() == addr);
                    if !same {
                        *current = Some(master);
                    }
                    !same
                });
                if new {
                    tracing::info!(master = %addr, sentinels = %sentinels, "the sentinels name the redis master");
                }
            }
            // Expected for a few seconds during a failover: the sentinels flag the old
            // master as down before they promote a replica.
            Err(e) if failing => {
                tracing::debug!(error = %e, "no redis master from the sentinels yet")
            }
            Err(e) => {
                failing = true;
                tracing::warn!(error = %e, sentinels = %sentinels, "the sentinels name no usable redis master; asking again");
            }
        }
        let wait = if *up.borrow_and_update() {
            ASK_WHILE_UP
        } else {
            ASK_WHILE_DOWN
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
            // Redis just failed (or came back): ask now.
            Ok(()) = up.changed() => {}
        }
    }
}
