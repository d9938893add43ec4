use std::sync::Arc;

use clap::Parser;
use mediaq_shared::storage::Storage;
use mediaq_worker::{attempt::WorkerState, config::WorkerConfig, run};

/// mediaq worker: claims transcode jobs and runs each attempt in a `mediaq-transcode` child.
/// Configuration comes from environment variables (see the README).
#[derive(Parser)]
#[command(name = "mediaq-worker", version)]
struct Cli {}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    mediaq_shared::telemetry::init("info");
    Cli::parse();
    match start().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "mediaq-worker failed");
            eprintln!("mediaq-worker: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn start() -> Result<(), Box<dyn std::error::Error>> {
    let config = WorkerConfig::from_env()?;
    if !config.transcode_bin.is_file() {
        return Err(format!(
            "transcoder binary not found at {} (set MEDIAQ_TRANSCODE_BIN)",
            config.transcode_bin.display()
        )
        .into());
    }
    let pool = mediaq_shared::db::pool(&config.common)?;
    let storage = Storage::open(&config.common.storage_dir)
        .map_err(|e| format!("cannot open storage at {}: {e}", config.common.storage_dir.display()))?;
    let name = run::unique_name();
    let layers = mediaq_worker::selfcheck::run(&config, &storage.work_dir())?;
    let (abandon_tx, abandon) = tokio::sync::watch::channel(false);
    let state = WorkerState {
        pool,
        storage,
        config,
        namespaces: layers.namespaces,
        abandon,
    };
    run::run(Arc::new(state), name, abandon_tx).await
}
