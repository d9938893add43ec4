use std::sync::Arc;

use clap::{Parser, Subcommand};
use mediaq_shared::{
    config::{self, ConfigError},
    storage::Storage,
    telemetry::LogConfig,
};
use mediaq_worker::{config::WorkerConfig, janitor, metrics::WorkerMetrics, run, state::WorkerState, webhooks};

/// mediaq worker: claims transcode jobs and runs each attempt in a `mediaq-transcode` child.
/// Configuration comes from environment variables (see the README; each is also a flag of the
/// subcommand). All of it is parsed before the worker starts: an invalid value stops it, naming
/// the variable.
#[derive(Parser)]
#[command(name = "mediaq-worker", version)]
struct Cli {
    #[command(flatten)]
    log: LogConfig,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once
enum Command {
    /// Process jobs (the default).
    Run(WorkerConfig),
    /// Run the janitor once (retention, stale and orphaned files, queue pruning) and print
    /// what it deleted as JSON.
    Janitor(WorkerConfig),
}

/// The command line and the configuration of the command it names (`run` when none is named).
fn parse() -> Result<Cli, ConfigError> {
    let cli: Cli = config::parse()?;
    if cli.command.is_some() {
        return Ok(cli);
    }
    config::parse_from(std::env::args_os().chain(["run".into()]))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("mediaq-worker: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    mediaq_shared::telemetry::init("info", cli.log);
    let result = match cli.command.expect("parse names a command") {
        Command::Run(config) => start(config).await,
        Command::Janitor(config) => janitor_once(config).await,
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

async fn start(config: WorkerConfig) -> Result<(), Box<dyn std::error::Error>> {
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
    tokio::spawn(janitor::run_forever(pool.clone(), storage.clone(), config.janitor, config.work_max_age()));
    webhooks::spawn(pool.clone(), config.webhooks.clone(), metrics.clone())?;
    mediaq_worker::presence::spawn(pool.clone(), name.clone(), config.concurrency, config.heartbeat, &checked.report);
    let (abandon_tx, abandon) = tokio::sync::watch::channel(false);
    let state = WorkerState {
        cancellations: mediaq_worker::cancellations::Cancellations::listen(pool.clone()),
        upload_progress: mediaq_worker::cancellations::UploadProgress::listen(pool.clone()),
        pool,
        storage,
        config,
        sandbox: checked.policy,
        abandon,
        metrics,
    };
    let pool = state.pool.clone();
    let result = run::run(Arc::new(state), name.clone(), abandon_tx).await;
    mediaq_worker::presence::stopped(&pool, &name).await;
    result
}

async fn janitor_once(config: WorkerConfig) -> Result<(), Box<dyn std::error::Error>> {
    let (pool, storage) = open(&config)?;
    let sweep = janitor::sweep(&pool, &storage, &config.janitor, config.work_max_age()).await?;
    println!("{}", serde_json::to_string(&sweep)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every setting has its own id, flag and variable (clap checks them all).
    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
