use std::sync::Arc;

use clap::{Parser, Subcommand};
use mediaq_shared::{storage::Storage, webhook::WebhookConfig};
use mediaq_worker::{config::WorkerConfig, janitor, metrics::WorkerMetrics, run, state::WorkerState, webhooks};

/// mediaq worker: claims transcode jobs and runs each attempt in a `mediaq-transcode` child.
/// Configuration comes from environment variables (see the README).
#[derive(Parser)]
#[command(name = "mediaq-worker", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Process jobs (the default).
    Run,
    /// Run the janitor once (retention, stale and orphaned files, queue pruning) and print
    /// what it deleted as JSON.
    Janitor,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    mediaq_shared::telemetry::init("info");
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Run => start().await,
        Command::Janitor => janitor_once().await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "mediaq-worker failed");
            eprintln!("mediaq-worker: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn open(config: &WorkerConfig) -> Result<(sqlx::PgPool, Storage), Box<dyn std::error::Error>> {
    let pool = mediaq_shared::db::pool(&config.common)?;
    let storage = Storage::open(&config.common).map_err(|e| format!("cannot open storage: {}", e.reason()))?;
    Ok((pool, storage))
}

async fn start() -> Result<(), Box<dyn std::error::Error>> {
    let config = WorkerConfig::from_env()?;
    if !config.transcode_bin.is_file() {
        let bin = config.transcode_bin.display();
        return Err(format!("transcoder binary not found at {bin} (set MEDIAQ_TRANSCODE_BIN)").into());
    }
    let (pool, storage) = open(&config)?;
    let name = run::unique_name();
    let checked = mediaq_worker::selfcheck::run(&config, storage.work_dir())?;
    let metrics = Arc::new(WorkerMetrics::new());
    metrics.set_sandbox(&checked.report);
    if let Some(bind) = config.metrics_bind {
        mediaq_worker::metrics::listen(bind, metrics.clone(), config.common.metrics_token.clone())
            .await
            .map_err(|e| format!("cannot bind MEDIAQ_METRICS_BIND {bind}: {e}"))?;
    }
    tokio::spawn(janitor::run_forever(pool.clone(), storage.clone(), config.janitor));
    webhooks::spawn(pool.clone(), WebhookConfig::from_env()?, metrics.clone())?;
    let (abandon_tx, abandon) = tokio::sync::watch::channel(false);
    let state = WorkerState {
        cancellations: mediaq_worker::cancellations::Cancellations::listen(pool.clone()),
        upload_progress: mediaq_worker::feed::UploadProgress::listen(pool.clone()),
        pool,
        storage,
        config,
        sandbox: checked.policy,
        abandon,
        metrics,
    };
    run::run(Arc::new(state), name, abandon_tx).await
}

async fn janitor_once() -> Result<(), Box<dyn std::error::Error>> {
    let config = WorkerConfig::from_env()?;
    let (pool, storage) = open(&config)?;
    let sweep = janitor::sweep(&pool, &storage, &config.janitor).await?;
    println!("{}", serde_json::to_string(&sweep)?);
    Ok(())
}
