//! The `playsync` binary: parses the command line, sets up logging, binds the listeners and
//! runs the server until SIGINT or SIGTERM.

use clap::Parser;
use playsync::config::Config;
use playsync::server;
use tracing_subscriber::EnvFilter;

/// Real-time playback synchronization server: Socket.IO listening rooms and cross-device
/// positions over Server-Sent Events, drop-in compatible with the Flask/Node music-sync
/// server and the tts-proxy SSE server.
///
/// Every option can also be set by the environment variable shown with it. Logging is tuned
/// with RUST_LOG (default: info), e.g. RUST_LOG=playsync=debug.
#[derive(Parser)]
#[command(name = "playsync", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Run the server (what `playsync` without a command does).
    Serve,
    /// Probe a running server with one HTTP/1.1 GET (default: /health on the main listener):
    /// exit code 0 on 200, 1 otherwise. For container health checks without curl.
    Healthcheck(playsync::healthcheck::HealthcheckArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Healthcheck(args)) => {
            let healthy = playsync::healthcheck::run(&args, &cli.config);
            std::process::exit(if healthy { 0 } else { 1 })
        }
        None | Some(Command::Serve) => {
            let listeners = server::bind(&cli.config.listen_addrs()).await?;
            server::run(cli.config, listeners, server::shutdown_signal()).await
        }
    }
}
