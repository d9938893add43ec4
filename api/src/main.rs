use clap::{Args, Parser, Subcommand};
use mediaq_api::config::ApiConfig;
use mediaq_shared::{
    config::{self, CommonConfig, ConfigError},
    telemetry::LogConfig,
    webhook::sealed::Sealer,
};

/// mediaq HTTP API. Configuration comes from environment variables (see the README; each is
/// also a flag of the subcommand that reads it). All of a subcommand's configuration is parsed
/// before it starts: an invalid value stops it, naming the variable.
#[derive(Parser)]
#[command(name = "mediaq-api", version)]
struct Cli {
    #[command(flatten)]
    log: LogConfig,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once
enum Command {
    /// Serve the API (the default).
    Serve(ApiConfig),
    /// Apply database migrations (mediaq's and the queue's), then exit.
    Migrate(CommonConfig),
    /// Operate on jobs.
    Jobs(WithDatabase<JobsCommand>),
    /// Manage API keys.
    Keys(WithDatabase<KeysCommand>),
    /// Webhook signing secrets at rest.
    Secrets(SecretsArgs),
    /// Print the OpenAPI document (as served at /openapi.json; committed as docs/openapi.json).
    Openapi,
}

/// An administrative command and the database settings it needs.
#[derive(Args)]
struct WithDatabase<C: Subcommand> {
    #[command(flatten)]
    common: CommonConfig,
    #[command(subcommand)]
    command: C,
}

#[derive(Args)]
struct SecretsArgs {
    #[command(flatten)]
    common: CommonConfig,
    #[command(flatten)]
    sealer: Sealer,
    #[command(subcommand)]
    command: SecretsCommand,
}

/// The command line and the configuration of the command it names (`serve` when none is named).
fn parse() -> Result<Cli, ConfigError> {
    let cli: Cli = config::parse()?;
    if cli.command.is_some() {
        return Ok(cli);
    }
    config::parse_from(std::env::args_os().chain(["serve".into()]))
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// Seal every stored webhook signing secret with MEDIAQ_SECRETS_KEY: after setting it, or
    /// after changing it (the old key in MEDIAQ_SECRETS_KEY_PREVIOUS).
    Reseal,
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key; it is printed once, alone on the last line of stdout.
    Create {
        #[arg(long)]
        name: String,
        /// Comma-separated: jobs:write, jobs:read, admin.
        #[arg(long, value_delimiter = ',', value_parser = mediaq_shared::apikey::Scope::parse)]
        scopes: Vec<mediaq_shared::apikey::Scope>,
        /// Whose jobs the key creates and sees (default: the name).
        #[arg(long)]
        owner: Option<String>,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by its id (the 16 hex characters after `mq_`).
    Revoke { id: String },
}

#[derive(Subcommand)]
enum JobsCommand {
    /// Requeue a failed job (a dead letter) with a fresh retry budget.
    Requeue {
        /// The job's id.
        id: mediaq_shared::JobId,
    },
}

/// Upload bodies arrive as buffers of up to about 400 KB that live only until they are written.
/// glibc's default raises its mmap threshold each time such a buffer is freed, after which they
/// come from heap arenas that keep freed memory: peak RSS during 50 concurrent uploads measured
/// 70 to 92 MiB with the default, about 40 MiB with a fixed 128 KiB threshold (same CPU time;
/// docs/BENCHMARKS.md). A fixed threshold maps and unmaps such buffers instead.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; it is called before any upload.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tune_allocator();
    let cli = match parse() {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("mediaq-api: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    mediaq_shared::telemetry::init("info", cli.log);
    let result = match cli.command.expect("parse names a command") {
        Command::Serve(config) => mediaq_api::serve(config).await,
        Command::Migrate(common) => migrate(&common).await,
        Command::Jobs(WithDatabase { common, command: JobsCommand::Requeue { id } }) => requeue(&common, id).await,
        Command::Keys(WithDatabase { common, command }) => keys(&common, command).await,
        Command::Secrets(SecretsArgs { common, sealer, command: SecretsCommand::Reseal }) => {
            reseal(&common, &sealer).await
        }
        Command::Openapi => {
            print!("{}", mediaq_api::openapi::pretty());
            Ok(())
        }
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

async fn migrate(config: &CommonConfig) -> Result<(), Box<dyn std::error::Error>> {
    let pool = mediaq_shared::db::pool(config)?;
    mediaq_shared::db::migrate(&pool).await?;
    tracing::info!("migrations applied");
    Ok(())
}

async fn requeue(config: &CommonConfig, id: mediaq_shared::JobId) -> Result<(), Box<dyn std::error::Error>> {
    use mediaq_shared::{
        db::{audit, jobs},
        queue,
    };
    let pool = mediaq_shared::db::pool(config)?;
    let mut tx = pool.begin().await?;
    let Some(status) = jobs::requeue_failed(&mut *tx, id).await? else {
        return Err(format!("job {id} is not failed (or does not exist); only failed jobs can be requeued").into());
    };
    queue::enqueue_placed(&mut tx, id, queue::Lane::for_status(status), None, false).await?;
    audit::record(&mut *tx, &audit::AuditEvent::new("admin-cli", "job.requeued").job(id)).await?;
    tx.commit().await?;
    println!("requeued {id}");
    Ok(())
}

async fn reseal(config: &CommonConfig, sealer: &Sealer) -> Result<(), Box<dyn std::error::Error>> {
    use mediaq_shared::db::{audit, webhooks};
    if !sealer.is_on() {
        return Err("MEDIAQ_SECRETS_KEY is not set: there is no key to seal with".into());
    }
    let pool = mediaq_shared::db::pool(config)?;
    let (resealed, unreadable) = webhooks::reseal_all(&pool, sealer).await?;
    let details = serde_json::json!({ "owners_resealed": resealed, "owners_unreadable": unreadable });
    audit::record(&pool, &audit::AuditEvent::new("admin-cli", "webhook.secrets_resealed").details(details)).await?;
    println!("resealed the signing secrets of {resealed} owner(s)");
    if !unreadable.is_empty() {
        return Err(format!(
            "no key opens the secrets of {} owner(s): {} (set the key that sealed them in MEDIAQ_SECRETS_KEY_PREVIOUS)",
            unreadable.len(),
            unreadable.join(", ")
        )
        .into());
    }
    Ok(())
}

async fn keys(config: &CommonConfig, command: KeysCommand) -> Result<(), Box<dyn std::error::Error>> {
    use mediaq_shared::{
        apikey::{Credential, Kind},
        db::{audit, keys},
    };
    let pool = mediaq_shared::db::pool(config)?;
    match command {
        KeysCommand::Create { name, scopes, owner } => {
            if scopes.is_empty() {
                return Err("give at least one scope with --scopes".into());
            }
            let owner = owner.unwrap_or_else(|| name.clone());
            let credential = Credential::generate(Kind::ApiKey);
            let mut tx = pool.begin().await?;
            keys::create(&mut *tx, &credential, &name, &owner, &scopes).await?;
            let scope_names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
            let details =
                serde_json::json!({ "key_id": credential.id, "name": name, "owner": owner, "scopes": scope_names });
            audit::record(&mut *tx, &audit::AuditEvent::new("admin-cli", "key.created").details(details)).await?;
            tx.commit().await?;
            println!(
                "created key {} (owner {owner}, scopes {}); it is shown only once:",
                credential.id,
                scope_names.join(",")
            );
            println!("{}", credential.reveal());
        }
        KeysCommand::List => {
            for key in keys::list(&pool).await? {
                println!("{}", serde_json::to_string(&key)?);
            }
        }
        KeysCommand::Revoke { id } => {
            let mut tx = pool.begin().await?;
            if !keys::revoke(&mut *tx, &id).await? {
                return Err(format!("no active key {id}").into());
            }
            let details = serde_json::json!({ "key_id": id });
            audit::record(&mut *tx, &audit::AuditEvent::new("admin-cli", "key.revoked").details(details)).await?;
            tx.commit().await?;
            println!("revoked key {id}");
        }
    }
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
