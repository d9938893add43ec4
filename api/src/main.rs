use clap::{Parser, Subcommand};
use mediaq_shared::config::{ApiConfig, CommonConfig};

/// mediaq HTTP API. Configuration comes from environment variables (see the README).
#[derive(Parser)]
#[command(name = "mediaq-api", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply database migrations (mediaq's and the queue's), then exit.
    Migrate,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    mediaq_shared::telemetry::init("info");
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => match ApiConfig::from_env() {
            Ok(config) => mediaq_api::serve(config).await,
            Err(e) => Err(e.into()),
        },
        Command::Migrate => migrate().await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "mediaq-api failed");
            eprintln!("mediaq-api: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn migrate() -> Result<(), Box<dyn std::error::Error>> {
    let config = CommonConfig::from_env()?;
    let pool = mediaq_shared::db::pool(&config)?;
    mediaq_shared::db::migrate(&pool).await?;
    tracing::info!("migrations applied");
    Ok(())
}
