//! The composition root: builds rooms, positions and the Redis backplane from the
//! [`Config`], wires their state into the axum router as substates ([`FromRef`]), registers
//! rooms and positions with the backplane, serves the listeners, owns every background task,
//! and shuts down gracefully. Also serves `/health`, which reports on all of them.
//!
//! [`run`] takes already-bound listeners and a shutdown future, so tests bind port 0 and stop
//! the server when they like; `main` binds the configured addresses and passes the signals.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::{FromRef, State};
use axum::http::{HeaderValue, Method, header};
use axum::routing::{any, get};
use axum::serve::ListenerExt;
use axum::{Json, Router};
use serde_json::json;
use socketio::Engine;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::cors::{AllowHeaders, AllowOrigin, Any, CorsLayer};
use tower_http::trace::TraceLayer;

use crate::auth::{self, Auth, AuthSettings};
use crate::clock::now_ms;
use crate::cluster::{self, Backplane, Participant};
use crate::config::Config;
use crate::limits::{AbuseLimits, Rate};
use crate::positions::{self, Positions};
use crate::rooms::{self, Rooms, RoomsHandler};

/// How long shutdown waits for open connections to finish before giving up on them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The router's state: each handler takes the part it needs ([`FromRef`] substates).
#[derive(Clone)]
struct AppState {
    rooms: Arc<Rooms>,
    positions: Arc<Positions>,
    /// The Redis backplane, when Redis is configured.
    backplane: Option<Backplane>,
    /// Authentication (disabled unless configured).
    auth: Auth,
    /// PUT rates, connection caps, trusted proxies.
    abuse: Arc<AbuseLimits>,
}

impl FromRef<AppState> for Auth {
    fn from_ref(state: &AppState) -> Self {
        state.auth.clone()
    }
}

impl FromRef<AppState> for Arc<AbuseLimits> {
    fn from_ref(state: &AppState) -> Self {
        state.abuse.clone()
    }
}

impl FromRef<AppState> for Arc<Rooms> {
    fn from_ref(state: &AppState) -> Self {
        state.rooms.clone()
    }
}

impl FromRef<AppState> for Arc<Positions> {
    fn from_ref(state: &AppState) -> Self {
        state.positions.clone()
    }
}

impl FromRef<AppState> for Option<Backplane> {
    fn from_ref(state: &AppState) -> Self {
        state.backplane.clone()
    }
}

/// A built server: its parts and its router, not yet listening.
pub struct App {
    config: Arc<Config>,
    state: AppState,
    router: Router,
    /// The Socket.IO engine serving the rooms.
    engine: Engine<RoomsHandler>,
    /// Cancelled when the server begins to shut down; every long-lived task ends on it.
    shutdown: CancellationToken,
    /// Background tasks, awaited on shutdown.
    tasks: TaskTracker,
}

/// Builds the application from its configuration.
pub async fn build(config: Config) -> anyhow::Result<App> {
    let config = Arc::new(config);
    let backplane = config
        .redis
        .target()
        .map(|url| Backplane::new(&url))
        .transpose()?;
    let auth = Auth::new(AuthSettings::from(&config.auth))?;
    let abuse = AbuseLimits::from_config(&config.limits)?;
    let rooms = Rooms::new(
        rooms::RoomsConfig {
            limits: rooms::Limits {
                max_track_bytes: config.max_track_bytes,
            },
            max_rooms: usize::try_from(config.max_rooms).unwrap_or(usize::MAX),
            max_members: usize::try_from(config.max_members_per_room).unwrap_or(usize::MAX),
            resume_grace: config.resume_grace(),
            ready_timeout: config.ready_timeout(),
        },
        backplane.clone(),
    );
    let engine = Engine::new(
        socketio::Config {
            ping_interval: config.ping_interval(),
            ping_timeout: config.ping_timeout(),
            max_payload: config.max_message_bytes,
            outbox_bytes: usize::try_from(config.max_queue_bytes).unwrap_or(usize::MAX),
            ..socketio::Config::default()
        },
        RoomsHandler::new(
            rooms.clone(),
            auth.clone(),
            abuse.clone(),
            Rate::new(config.limits.event_rate, config.limits.event_burst),
        ),
    );

    let shutdown = CancellationToken::new();
    let positions = Positions::open(
        &config.data_dir,
        positions::Limits {
            max_body_bytes: config.max_body_bytes,
            max_string_bytes: config.max_string_bytes,
        },
        config.sse_keepalive(),
        backplane.clone(),
        shutdown.clone(),
        auth.is_enabled(),
    )
    .with_context(|| {
        format!(
            "cannot use the data directory {}",
            config.data_dir.display()
        )
    })?;

    let state = AppState {
        rooms,
        positions,
        backplane,
        auth,
        abuse,
    };
    let io = engine.clone();
    let socket_io = any(move |req: axum::extract::Request| {
        let io = io.clone();
        async move { io.handle(req).await }
    });
    let router = Router::new()
        .merge(rooms::router())
        .merge(positions::router())
        .route("/health", get(health))
        .route("/socket.io", socket_io.clone())
        .route("/socket.io/", socket_io)
        .merge(crate::web::router())
        .with_state(state.clone())
        // Layers wrap what is above them: CORS (outermost) also covers the Socket.IO
        // long-polling responses. Request spans show `?token=` as `[redacted]`.
        .layer(TraceLayer::new_for_http().make_span_with(auth::request_span))
        .layer(cors_layer(&config));
    Ok(App {
        config,
        state,
        router,
        engine,
        shutdown,
        tasks: TaskTracker::new(),
    })
}

/// `GET /health`: the positions seed's liveness answer, plus the rooms and Redis.
async fn health(
    State(positions): State<Arc<Positions>>,
    State(rooms): State<Arc<Rooms>>,
    State(backplane): State<Option<Backplane>>,
) -> Json<serde_json::Value> {
    let mut health = json!({
        "status": "healthy",
        "timestamp": now_ms(),
        "sse_clients": positions.sse_clients(),
        "redis_enabled": backplane.is_some(),
        "rooms": rooms.count().await,
        "version": env!("CARGO_PKG_VERSION"),
    });
    if let Some(bp) = &backplane {
        health["redis_connected"] = json!(bp.is_up());
        health["instance"] = json!(bp.instance());
    }
    Json(health)
}

fn cors_layer(config: &Config) -> CorsLayer {
    let origin = match config.allowed_origins() {
        None => AllowOrigin::from(Any),
        Some(origins) => AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect::<Vec<_>>(),
        ),
    };
    CorsLayer::new()
        .allow_origin(origin)
        .allow_methods([Method::GET, Method::PUT, Method::POST, Method::OPTIONS])
        // Mirrored rather than `*`: browsers never let `*` cover `Authorization`.
        .allow_headers(AllowHeaders::mirror_request())
        // So cross-origin scripts can read why they were refused and when to retry.
        .expose_headers([header::WWW_AUTHENTICATE, header::RETRY_AFTER])
        .max_age(Duration::from_secs(3600))
}

/// Binds every address, failing with a clear message on the first that cannot be bound
/// (the seed silently moved to another port; a replacement must not).
pub async fn bind(addrs: &[SocketAddr]) -> anyhow::Result<Vec<TcpListener>> {
    let mut listeners = Vec::with_capacity(addrs.len());
    for addr in addrs {
        let listener = TcpListener::bind(addr).await.with_context(|| {
            format!("cannot listen on {addr} (is another server already using that port?)")
        })?;
        listeners.push(listener);
    }
    Ok(listeners)
}

impl App {
    /// Serves on `listeners` until `shutdown` completes, then shuts down gracefully:
    /// stops accepting, ends SSE streams, disconnects sockets (Socket.IO DISCONNECT first),
    /// waits for connections to close.
    pub async fn serve(
        self,
        listeners: Vec<TcpListener>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let App {
            config,
            state,
            router,
            engine,
            shutdown: token,
            tasks,
        } = self;

        tasks.spawn(rooms::housekeeping(
            state.rooms.clone(),
            config.room_sweep_interval(),
            token.clone(),
        ));
        if let Some(reloader) = state.auth.reloader(token.clone()) {
            tasks.spawn(reloader);
        }
        if let Some(bp) = &state.backplane {
            let participants: Vec<Arc<dyn Participant>> =
                vec![state.rooms.clone(), state.positions.clone()];
            tasks.spawn(cluster::supervisor(bp.clone(), participants, token.clone()));
        }

        let mut servers = Vec::new();
        for listener in listeners {
            let addr = listener.local_addr()?;
            tracing::info!(%addr, "listening");
            // Small real-time messages must not wait for Nagle's algorithm (with delayed
            // ACKs that costs tens of milliseconds).
            let listener = listener.tap_io(|tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "cannot set TCP_NODELAY");
                }
            });
            // Connect info: the peer address, for per-address limits.
            let serve = axum::serve(
                listener,
                router
                    .clone()
                    .into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(token.clone().cancelled_owned());
            servers.push(tokio::spawn(async move {
                if let Err(e) = serve.await {
                    tracing::error!(%addr, error = %e, "listener failed");
                }
            }));
        }

        shutdown.await;
        tracing::info!("shutting down");
        token.cancel();
        tasks.close();
        let drain = async {
            engine.shutdown().await;
            for server in servers {
                let _ = server.await;
            }
            tasks.wait().await;
        };
        if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
            tracing::warn!("connections still open after the shutdown grace period; closing");
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Builds and serves: the whole server in one call.
pub async fn run(
    config: Config,
    listeners: Vec<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    build(config).await?.serve(listeners, shutdown).await
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
