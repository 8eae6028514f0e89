//! `playsync-bench`: a load generator that drives a server (playsync or a peer speaking the
//! same protocols) from one process with thousands of real connections, and prints one JSON
//! result line (stdout) plus a human summary (stderr) per run.
//!
//! It shares no code with the server it measures: it speaks the wire protocols itself
//! (`client`), so a server-side mistake cannot hide behind a matching client-side one.

mod client;
mod clock;
mod scenarios;
mod stats;

use clap::Parser;

/// Load generator for playsync and the servers it replaces: drives a server with many real
/// connections and prints the results (one JSON line per run on stdout, a summary on
/// stderr). Runs are bounded (at most 20,000 connections and 600 s); targets are meant to
/// be loopback.
#[derive(Parser)]
#[command(name = "playsync-bench", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    scenario: scenarios::Scenario,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    scenarios::run(cli.scenario).await.map(|_| ())
}
