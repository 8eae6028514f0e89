//! Command-line flags and environment variables.
//!
//! Owns the single [`Config`] struct. Every option is a flag with an environment fallback, and
//! the environment names are the seeds' own (`PORT`, `TTS_PROXY_PORT`, `TTS_DATA_DIR`, ...)
//! so an existing deployment keeps its settings when it swaps in playsync.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Server options, set by flags or the environment (flags win).
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Port of the main listener (the rooms seed's `PORT`).
    #[arg(long, env = "PORT", default_value_t = 3000)]
    pub port: u16,

    /// Address the port listeners bind to.
    #[arg(long, env = "HOST", default_value = "0.0.0.0")]
    pub host: IpAddr,

    /// Second port serving the same full API (the positions seed's `TTS_PROXY_PORT`, so its
    /// clients keep their URL). Unset: no second listener.
    #[arg(long, env = "TTS_PROXY_PORT")]
    pub tts_proxy_port: Option<u16>,

    /// Listen address `IP:PORT`; repeatable. When given, these replace `HOST:PORT`
    /// (`TTS_PROXY_PORT` still adds its listener).
    #[arg(long = "listen", value_name = "ADDR")]
    pub listen: Vec<SocketAddr>,

    /// Allowed CORS origins, comma-separated. Unset or `*`: any origin.
    #[arg(long, env = "CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// Seconds between sweeps that delete empty rooms left behind (rooms are normally deleted
    /// the moment their last member leaves).
    #[arg(long, env = "ROOM_SWEEP_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub room_sweep_secs: u64,

    /// Largest `track` object accepted, in bytes of JSON.
    #[arg(long, env = "MAX_TRACK_BYTES", default_value_t = 16 * 1024)]
    pub max_track_bytes: usize,

    /// Largest Socket.IO message accepted, in bytes, on WebSocket and long-polling alike.
    #[arg(long, env = "MAX_MESSAGE_BYTES", default_value_t = 64 * 1024)]
    pub max_message_bytes: usize,

    /// Largest backlog of messages one Socket.IO client may have queued, in bytes: a client
    /// that reads slower than its room talks misses messages beyond it (the others are not
    /// slowed down), so a client that never reads costs at most this.
    #[arg(long, env = "MAX_QUEUE_BYTES", default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(1024..))]
    pub max_queue_bytes: u64,

    /// Seconds a member whose connection dropped without leaving stays in its room, away,
    /// so its client can resume it with the same `client_id` (members without a `client_id`
    /// leave at once).
    #[arg(long, env = "RESUME_GRACE_SECS", default_value_t = 15)]
    pub resume_grace_secs: u64,

    /// Milliseconds a start in a wait-for-ready room waits for members to be ready before it
    /// goes ahead without them.
    #[arg(long, env = "READY_TIMEOUT_MS", default_value_t = 8000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub ready_timeout_ms: u64,

    /// Most rooms at once (counted across instances with Redis): more get `too_many_rooms`.
    #[arg(long, env = "MAX_ROOMS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_rooms: u64,

    /// Most members in one room: more get `room_full`.
    #[arg(long, env = "MAX_MEMBERS_PER_ROOM", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_members_per_room: u64,

    /// Milliseconds between the server's Socket.IO (Engine.IO) pings.
    #[arg(long, env = "PING_INTERVAL_MS", default_value_t = 25_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub ping_interval_ms: u64,

    /// Milliseconds a client has to answer a ping before it is disconnected (and leaves its
    /// room).
    #[arg(long, env = "PING_TIMEOUT_MS", default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub ping_timeout_ms: u64,

    /// Directory of the durable position records (the positions seed's `TTS_DATA_DIR`);
    /// created if missing.
    #[arg(long, env = "TTS_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Seconds of silence after which an SSE stream gets a `: keep-alive` comment.
    #[arg(long, env = "SSE_KEEPALIVE_SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub sse_keepalive_secs: u64,

    /// Largest PUT body accepted on the positions API, in bytes (larger: 413).
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 64 * 1024)]
    pub max_body_bytes: usize,

    /// Largest string field accepted in a position record, in bytes.
    #[arg(long, env = "MAX_STRING_BYTES", default_value_t = 4 * 1024)]
    pub max_string_bytes: usize,

    #[command(flatten)]
    pub redis: RedisConfig,

    #[command(flatten)]
    pub auth: AuthConfig,

    #[command(flatten)]
    pub limits: LimitsConfig,
}

/// Redis settings (the positions seed's names, plus `REDIS_URL`, `REDIS_PASSWORD` and the
/// Sentinel settings).
#[derive(Debug, Clone, clap::Args)]
pub struct RedisConfig {
    /// Share rooms and positions with other playsync instances through Redis.
    #[arg(
        long,
        env = "REDIS_ENABLED",
        default_value_t = false,
        action = clap::ArgAction::Set,
        num_args = 0..=1,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new(),
        value_name = "BOOL"
    )]
    pub redis_enabled: bool,

    /// Redis host (used when REDIS_URL is not set).
    #[arg(long, env = "REDIS_HOST", default_value = "localhost")]
    pub redis_host: String,

    /// Redis port (used when REDIS_URL is not set).
    #[arg(long, env = "REDIS_PORT", default_value_t = 6379)]
    pub redis_port: u16,

    /// Redis URL, `redis://[user:password@]host:port[/db]` or `rediss://` for TLS. Takes
    /// precedence over host and port, and enables Redis by itself.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// Password of the Redis server: with REDIS_HOST/REDIS_PORT, with a REDIS_URL that names
    /// none, and for the master (and replicas) that Sentinel names.
    #[arg(
        long,
        env = "REDIS_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub redis_password: Option<Secret>,

    /// Redis Sentinel addresses, `host:port` comma-separated (port 26379 if left out).
    /// Enables Redis by itself, with the master these sentinels name (and follow on
    /// failover); takes precedence over REDIS_URL, REDIS_HOST and REDIS_PORT. Needs
    /// REDIS_SENTINEL_MASTER.
    #[arg(
        long,
        env = "REDIS_SENTINELS",
        value_delimiter = ',',
        value_name = "HOST:PORT",
        value_parser = SentinelAddr::parse,
        requires = "redis_sentinel_master"
    )]
    pub redis_sentinels: Vec<SentinelAddr>,

    /// The master's name, as the sentinels monitor it (`sentinel monitor NAME ...`).
    #[arg(
        long,
        env = "REDIS_SENTINEL_MASTER",
        value_name = "NAME",
        value_parser = clap::builder::NonEmptyStringValueParser::new()
    )]
    pub redis_sentinel_master: Option<String>,

    /// Password of the sentinels themselves (their `requirepass`), if they have one. The
    /// master's password is REDIS_PASSWORD.
    #[arg(
        long,
        env = "REDIS_SENTINEL_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub redis_sentinel_password: Option<Secret>,
}

/// A password, key or token: never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(s)
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// One sentinel's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelAddr {
    pub host: String,
    pub port: u16,
}

impl SentinelAddr {
    /// Sentinel's own default port.
    pub const DEFAULT_PORT: u16 = 26379;

    /// `host:port`, `host`, `[v6]:port` or `[v6]`.
    fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| format!("`{s}`: unclosed `[`"))?;
            match after {
                "" => (host, None),
                _ => (
                    host,
                    Some(
                        after
                            .strip_prefix(':')
                            .ok_or_else(|| format!("`{s}`: expected `:port` after `]`"))?,
                    ),
                ),
            }
        } else {
            match s.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (s, None),
            }
        };
        if host.is_empty() {
            return Err(format!("`{s}`: no host (expected host:port)"));
        }
        let port = match port {
            None => Self::DEFAULT_PORT,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("`{s}`: `{p}` is not a port"))?,
        };
        Ok(SentinelAddr {
            host: host.to_owned(),
            port,
        })
    }
}

impl std::fmt::Display for SentinelAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Where Redis is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    /// One server. `password` applies when the URL names none.
    Url {
        url: String,
        password: Option<Secret>,
    },
    /// Whichever server the sentinels name as `master`, found again on every reconnection.
    Sentinel {
        sentinels: Vec<SentinelAddr>,
        master: String,
        /// The master's (and replicas') password.
        password: Option<Secret>,
        /// The sentinels' own password.
        sentinel_password: Option<Secret>,
    },
}

impl RedisConfig {
    /// Where Redis is, or `None` when Redis is off. Sentinels win over a URL, a URL over
    /// host and port.
    pub fn target(&self) -> Option<RedisTarget> {
        let password = non_empty(&self.redis_password);
        if let (false, Some(master)) = (
            self.redis_sentinels.is_empty(),
            self.redis_sentinel_master.as_deref().map(str::trim),
        ) {
            return Some(RedisTarget::Sentinel {
                sentinels: self.redis_sentinels.clone(),
                master: master.to_owned(),
                password,
                sentinel_password: non_empty(&self.redis_sentinel_password),
            });
        }
        match &self.redis_url {
            Some(url) if !url.trim().is_empty() => Some(RedisTarget::Url {
                url: url.trim().to_owned(),
                password,
            }),
            _ if self.redis_enabled => Some(RedisTarget::Url {
                url: format!("redis://{}:{}", self.redis_host, self.redis_port),
                password,
            }),
            _ => None,
        }
    }
}

fn non_empty(secret: &Option<Secret>) -> Option<Secret> {
    secret.clone().filter(|s| !s.0.is_empty())
}

/// Authentication (off unless a tokens file, a JWT secret or a JWT public key is set).
#[derive(Debug, Clone, clap::Args)]
pub struct AuthConfig {
    /// File of `user:token` lines (`#` comments and blank lines allowed), re-read when it
    /// changes. Turns authentication on.
    #[arg(long, env = "AUTH_TOKENS_FILE", value_name = "PATH")]
    pub auth_tokens_file: Option<PathBuf>,

    /// Shared secret (at least 32 bytes) for HS256 JWTs; `sub` is the user. Turns
    /// authentication on. Prefer the environment variable: arguments are visible to `ps`.
    #[arg(
        long,
        env = "AUTH_JWT_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub auth_jwt_secret: Option<Secret>,

    /// PEM file of an RSA (RS256) or P-256 EC (ES256) public key for JWTs. Turns
    /// authentication on.
    #[arg(long, env = "AUTH_JWT_PUBLIC_KEY", value_name = "PATH")]
    pub auth_jwt_public_key: Option<PathBuf>,

    /// Required `iss` of JWTs (unset: not checked).
    #[arg(long, env = "AUTH_JWT_ISSUER")]
    pub auth_jwt_issuer: Option<String>,

    /// Required `aud` of JWTs (unset: tokens carrying an `aud` are refused).
    #[arg(long, env = "AUTH_JWT_AUDIENCE")]
    pub auth_jwt_audience: Option<String>,

    /// Clock-skew leeway for JWT `exp` and `nbf`, in seconds (0 to 5).
    #[arg(long, env = "AUTH_JWT_LEEWAY_SECS", default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=5))]
    pub auth_jwt_leeway_secs: u64,
}

/// Abuse limits. Each 0 turns its limit off.
#[derive(Debug, Clone, clap::Args)]
pub struct LimitsConfig {
    /// Position PUTs per second per user (per client address without authentication),
    /// sustained; beyond it and the burst: 429 with Retry-After. 0: no limit.
    #[arg(long, env = "PUT_RATE", default_value_t = 10.0, value_parser = non_negative_f64)]
    pub put_rate: f64,

    /// Position PUTs a user (or address) may send at once before PUT_RATE applies.
    #[arg(long, env = "PUT_BURST", default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub put_burst: u32,

    /// Socket.IO events per second one connection may send, sustained; beyond it and the
    /// burst an event gets `error {code: "rate_limited"}` and is dropped, and a connection
    /// that keeps on is disconnected. 0: no limit.
    #[arg(long, env = "EVENT_RATE", default_value_t = 100.0, value_parser = non_negative_f64)]
    pub event_rate: f64,

    /// Socket.IO events one connection may send at once before EVENT_RATE applies.
    #[arg(long, env = "EVENT_BURST", default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..))]
    pub event_burst: u32,

    /// Open SSE streams (and Socket.IO connections) per client address (IPv6: per /64);
    /// beyond: 429. 0: no cap.
    #[arg(long, env = "MAX_CONNECTIONS_PER_IP", default_value_t = 256)]
    pub max_connections_per_ip: usize,

    /// Open SSE streams (and Socket.IO connections) in all; beyond: 503. 0: no cap.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 20_000)]
    pub max_connections: usize,

    /// Proxies whose X-Forwarded-For is believed: comma-separated IPs or CIDR ranges
    /// (e.g. `10.0.0.0/8,::1`). Unset: the TCP peer is the client.
    #[arg(
        long,
        env = "TRUSTED_PROXIES",
        value_delimiter = ',',
        value_name = "CIDRS"
    )]
    pub trusted_proxies: Vec<String>,
}

fn non_negative_f64(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a number ≥ 0")),
    }
}

impl Config {
    pub fn ping_interval(&self) -> Duration {
        Duration::from_millis(self.ping_interval_ms)
    }

    pub fn ping_timeout(&self) -> Duration {
        Duration::from_millis(self.ping_timeout_ms)
    }

    /// A configuration from command-line style arguments (environment fallbacks apply), for
    /// tests and tools that build a server in-process.
    pub fn from_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            config: Config,
        }
        let argv = std::iter::once(std::ffi::OsString::from("playsync"))
            .chain(args.into_iter().map(Into::into));
        <Cli as clap::Parser>::try_parse_from(argv).map(|cli| cli.config)
    }

    /// The addresses to listen on, in order: `--listen` (or `HOST:PORT`), then
    /// `HOST:TTS_PROXY_PORT`.
    pub fn listen_addrs(&self) -> Vec<SocketAddr> {
        let mut addrs = if self.listen.is_empty() {
            vec![SocketAddr::new(self.host, self.port)]
        } else {
            self.listen.clone()
        };
        if let Some(port) = self.tts_proxy_port {
            let addr = SocketAddr::new(self.host, port);
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
        addrs
    }

    pub fn resume_grace(&self) -> Duration {
        Duration::from_secs(self.resume_grace_secs)
    }

    pub fn ready_timeout(&self) -> Duration {
        Duration::from_millis(self.ready_timeout_ms)
    }

    pub fn room_sweep_interval(&self) -> Duration {
        Duration::from_secs(self.room_sweep_secs)
    }

    pub fn sse_keepalive(&self) -> Duration {
        Duration::from_secs(self.sse_keepalive_secs)
    }

    /// The CORS origins to allow; `None` means any origin.
    pub fn allowed_origins(&self) -> Option<Vec<String>> {
        let origins: Vec<String> = self
            .cors_origins
            .iter()
            .map(|o| o.trim().to_owned())
            .filter(|o| !o.is_empty())
            .collect();
        if origins.is_empty() || origins.iter().any(|o| o == "*") {
            None
        } else {
            Some(origins)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        Config::from_args(args).unwrap()
    }

    #[test]
    fn defaults_match_the_seeds() {
        let c = parse(&[]);
        assert_eq!(c.listen_addrs(), vec!["0.0.0.0:3000".parse().unwrap()]);
        assert_eq!(c.room_sweep_interval(), Duration::from_secs(60));
        assert_eq!(c.sse_keepalive(), Duration::from_secs(30));
        assert_eq!(c.max_track_bytes, 16 * 1024);
        assert_eq!(c.max_message_bytes, 64 * 1024);
        assert_eq!(c.allowed_origins(), None);
    }

    #[test]
    fn tts_proxy_port_adds_a_listener_and_listen_replaces_host_port() {
        let c = parse(&["--port", "4000", "--tts-proxy-port", "5051"]);
        assert_eq!(
            c.listen_addrs(),
            vec![
                "0.0.0.0:4000".parse().unwrap(),
                "0.0.0.0:5051".parse().unwrap()
            ]
        );
        let c = parse(&["--listen", "127.0.0.1:1", "--listen", "[::1]:2"]);
        assert_eq!(
            c.listen_addrs(),
            vec!["127.0.0.1:1".parse().unwrap(), "[::1]:2".parse().unwrap()]
        );
    }

    fn url(url: &str) -> Option<RedisTarget> {
        Some(RedisTarget::Url {
            url: url.to_owned(),
            password: None,
        })
    }

    #[test]
    fn redis_is_off_unless_enabled_or_given_a_url() {
        assert_eq!(parse(&[]).redis.target(), None);
        assert_eq!(
            parse(&[
                "--redis-enabled",
                "true",
                "--redis-host",
                "r.example",
                "--redis-port",
                "7000"
            ])
            .redis
            .target(),
            url("redis://r.example:7000")
        );
        assert_eq!(
            parse(&["--redis-enabled"]).redis.target(),
            url("redis://localhost:6379")
        );
        assert_eq!(parse(&["--redis-enabled", "no"]).redis.target(), None);
        assert_eq!(
            parse(&["--redis-url", "rediss://:pw@r.example:6380/2"])
                .redis
                .target(),
            url("rediss://:pw@r.example:6380/2")
        );
        assert_eq!(
            parse(&["--redis-enabled", "--redis-password", "pw"])
                .redis
                .target(),
            Some(RedisTarget::Url {
                url: "redis://localhost:6379".to_owned(),
                password: Some(Secret("pw".to_owned())),
            })
        );
    }

    #[test]
    fn sentinels_enable_redis_and_win_over_a_url() {
        let c = parse(&[
            "--redis-url",
            "redis://ignored:1",
            "--redis-enabled",
            "--redis-sentinels",
            "s1:26380, s2 ,[::1]:5000",
            "--redis-sentinel-master",
            "mymaster",
            "--redis-password",
            "master-pw",
            "--redis-sentinel-password",
            "sentinel-pw",
        ]);
        assert_eq!(
            c.redis.target(),
            Some(RedisTarget::Sentinel {
                sentinels: vec![
                    SentinelAddr {
                        host: "s1".to_owned(),
                        port: 26380
                    },
                    SentinelAddr {
                        host: "s2".to_owned(),
                        port: 26379
                    },
                    SentinelAddr {
                        host: "::1".to_owned(),
                        port: 5000
                    },
                ],
                master: "mymaster".to_owned(),
                password: Some(Secret("master-pw".to_owned())),
                sentinel_password: Some(Secret("sentinel-pw".to_owned())),
            })
        );
        assert_eq!(c.redis.redis_sentinels[2].to_string(), "[::1]:5000");
        // Passwords never show in Debug output.
        assert!(!format!("{c:?}").contains("-pw"));
    }

    #[test]
    fn sentinel_settings_are_checked() {
        let refused = |args: &[&str]| Config::from_args(args).is_err();
        assert!(
            refused(&["--redis-sentinels", "s1:26379"]),
            "needs a master name"
        );
        assert!(refused(&[
            "--redis-sentinels",
            "s1:26379",
            "--redis-sentinel-master",
            ""
        ]));
        for bad in [
            "s1:", ":26379", "s1:port", "s1:0", "s1:70000", "[::1", "[::1]x",
        ] {
            assert!(
                refused(&["--redis-sentinels", bad, "--redis-sentinel-master", "m"]),
                "{bad} was accepted"
            );
        }
        // A master name alone changes nothing.
        assert_eq!(
            parse(&["--redis-sentinel-master", "m"]).redis.target(),
            None
        );
    }

    #[test]
    fn cors_origins_list_or_any() {
        let c = parse(&["--cors-origins", "https://a.example, https://b.example"]);
        assert_eq!(
            c.allowed_origins(),
            Some(vec![
                "https://a.example".to_owned(),
                "https://b.example".to_owned()
            ])
        );
        let c = parse(&["--cors-origins", "*"]);
        assert_eq!(c.allowed_origins(), None);
    }

    #[test]
    fn auth_is_off_and_limits_are_on_by_default() {
        let c = parse(&[]);
        assert!(c.auth.auth_tokens_file.is_none());
        assert!(c.auth.auth_jwt_secret.is_none());
        assert!(c.auth.auth_jwt_public_key.is_none());
        assert_eq!(c.auth.auth_jwt_leeway_secs, 5);
        assert_eq!(c.limits.put_rate, 10.0);
        assert_eq!(c.limits.put_burst, 50);
        assert_eq!(c.limits.max_connections_per_ip, 256);
        assert_eq!(c.limits.max_connections, 20_000);
        assert!(c.limits.trusted_proxies.is_empty());
        assert!(Config::from_args(["--put-rate", "-1"]).is_err());
        assert!(Config::from_args(["--auth-jwt-leeway-secs", "6"]).is_err());
        let c = parse(&["--auth-jwt-secret", "s3cret-s3cret-s3cret-s3cret-s3cret"]);
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
