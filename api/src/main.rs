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
    /// Operate on jobs.
    #[command(subcommand)]
    Jobs(JobsCommand),
}

#[derive(Subcommand)]
enum JobsCommand {
    /// Requeue a failed job (a dead letter) with a fresh retry budget.
    Requeue {
        /// The job's id.
        id: mediaq_shared::JobId,
    },
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
        Command::Jobs(JobsCommand::Requeue { id }) => requeue(id).await,
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

async fn requeue(id: mediaq_shared::JobId) -> Result<(), Box<dyn std::error::Error>> {
    use mediaq_shared::{
        db::{audit, jobs},
        queue,
    };
    let config = CommonConfig::from_env()?;
    let pool = mediaq_shared::db::pool(&config)?;
    let mut tx = pool.begin().await?;
    if !jobs::requeue_failed(&mut *tx, id).await? {
        return Err(format!("job {id} is not failed (or does not exist); only failed jobs can be requeued").into());
    }
    queue::enqueue(&mut tx, queue::TranscodeTask { job_id: id }, None).await?;
    audit::record(&mut *tx, &audit::AuditEvent::new("admin-cli", "job.requeued").job(id)).await?;
    tx.commit().await?;
    println!("requeued {id}");
    Ok(())
}
