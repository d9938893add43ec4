//! `mediaq`: the command-line client of a mediaq server. Configuration: `MEDIAQ_URL` (or
//! `--url`) and the key from `MEDIAQ_API_KEY` or `--api-key-file` (`--api-key` works, with a
//! warning: other users of the machine see a command line in `ps`).
//!
//! Exit codes: 0 success, 1 a local problem (a file), 2 bad arguments, 3 a job failed (or was
//! canceled or expired), 4 the server refused the request (its code is printed), 5 the server
//! could not be reached or failed.

mod client;
mod commands;
mod credentials;
mod line;
mod link;
mod text;
mod transfer;
mod ui;
mod wait;

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "mediaq", version, about = "Convert WebM videos to MP4 with a mediaq server")]
struct Cli {
    /// The server's base URL.
    #[arg(long, env = "MEDIAQ_URL", default_value = "http://127.0.0.1:8080", global = true)]
    url: String,
    /// An API key (`mq_...`) or upload token (`mqt_...`). Visible to every user in `ps`: prefer
    /// the environment variable MEDIAQ_API_KEY or --api-key-file.
    #[arg(long, global = true)]
    api_key: Option<String>,
    /// A file holding the API key or upload token (its first line).
    #[arg(long, global = true, conflicts_with = "api_key")]
    api_key_file: Option<PathBuf>,
    /// Machine-readable output on stdout (errors too), no progress bars.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Upload WebM files (one job each); with --wait, -o or --output-dir, wait for the MP4s.
    Upload {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Wait until each job is finished.
        #[arg(long)]
        wait: bool,
        /// Where to write the MP4 (one file), or a directory (several files). Implies --wait.
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
        /// Write each MP4 into this directory, named after its input. Implies --wait.
        #[arg(long, conflicts_with = "output")]
        output_dir: Option<PathBuf>,
        /// Attempts after a dropped connection or a busy server (same Idempotency-Key each time).
        #[arg(long, default_value_t = 3)]
        retries: u32,
        /// Replace MP4s that exist already.
        #[arg(long)]
        force: bool,
    },
    /// Show a job.
    Status { id: String },
    /// Wait until a job is finished (exit 3 when it failed).
    Wait { id: String },
    /// Download a job's MP4 (default: the name the server gives it).
    Download {
        id: String,
        #[arg(short = 'o', long)]
        output: Option<PathBuf>,
        /// Replace the file if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Print a signed link that plays the job's MP4 without any credential (a browser, a player).
    Url {
        id: String,
        /// Seconds the link stays valid (default: the server's, 1 hour).
        #[arg(long)]
        expires_in: Option<u64>,
        /// Link to the poster (JPEG) instead of the MP4.
        #[arg(long)]
        poster: bool,
    },
    /// Cancel a job (or delete a finished job's files).
    Cancel { id: String },
    /// Send a failed job through again (a new attempt budget; its input must still be stored).
    Retry {
        id: String,
        /// Then wait until it is finished (exit 3 when it fails again).
        #[arg(long)]
        wait: bool,
    },
    /// List jobs, newest first.
    List {
        /// Only jobs with this status.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        /// `next_cursor` of the previous page.
        #[arg(long)]
        cursor: Option<String>,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let ui = ui::Ui::new(cli.json);
    let key = credentials::api_key(cli.api_key, cli.api_key_file.as_deref());
    let result = match key.and_then(|key| {
        credentials::warn_if_sent_in_clear(&cli.url, key.is_some());
        client::Client::new(&cli.url, key.as_deref())
    }) {
        Ok(client) => commands::run(&client, &ui, cli.command).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if cli.json {
                println!("{}", text::json_line(&failure.to_json()));
            }
            eprintln!("mediaq: {failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}
