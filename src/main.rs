//! The `debrief` command line.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use debrief::db::Db;
use debrief::{Application, Config, telemetry};

/// debrief: meeting intelligence backend (gRPC, gRPC-Web, HTTP/JSON).
///
/// Configuration comes from environment variables; see the README.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server on DEBRIEF_ADDR (migrates the database first).
    Serve,
    /// Manage the database schema.
    Migrate {
        #[command(subcommand)]
        action: MigrateAction,
    },
}

#[derive(Subcommand)]
enum MigrateAction {
    /// Apply every pending migration.
    Up,
    /// Revert the newest migrations.
    Down {
        /// How many to revert.
        #[arg(long, default_value_t = 1)]
        steps: u32,
    },
    /// List migrations and whether each is applied.
    Status,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::from_env()?;
    telemetry::init(&config);
    match cli.command {
        Command::Serve => serve(config).await,
        Command::Migrate { action } => migrate(config, action).await,
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let app = Application::build(config).await?;
    let shutdown = app.shutdown_token();
    tokio::spawn(async move {
        stop_signal().await;
        shutdown.cancel();
    });
    app.run_until_stopped().await?;
    Ok(())
}

async fn migrate(config: Config, action: MigrateAction) -> anyhow::Result<()> {
    let db = Db::connect(&config).await?;
    match action {
        MigrateAction::Up => db.migrate().await.context("migrating up")?,
        MigrateAction::Down { steps } => db.migrate_down(steps).await.context("migrating down")?,
        MigrateAction::Status => {
            for (name, applied) in db.migration_status().await? {
                println!("{}  {name}", if applied { "applied" } else { "pending" });
            }
        }
    }
    Ok(())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn stop_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
