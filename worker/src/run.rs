//! The queue consumer: apalis-postgres workers tuned for minutes-long jobs.
//!
//! pubsub (LISTEN/NOTIFY) wakes an idle worker at once; a 1 s interval poll picks up delayed
//! tasks; batch size 1 keeps one process from hoarding long jobs; a 5 s heartbeat with 3
//! misses lets live workers re-enqueue a dead one's jobs. Each apalis worker has a unique name
//! (host-pid-random-index) and handles one job at a time. Two lanes, each its own queue with
//! slots of its own: MEDIAQ_WORKER_CONCURRENCY consumers of the CPU lane (whole inputs) and
//! MEDIAQ_WORKER_LIVE_SLOTS consumers of the live lane (uploads converted while they arrive),
//! so an upload that pauses never holds a slot that finished uploads need.

use std::sync::Arc;

use apalis::prelude::*;
use apalis_postgres::{Config, PostgresStorage};
use mediaq_shared::queue::{Lane, TranscodeTask};

use crate::{attempt, state::WorkerState};

async fn handle(task: TranscodeTask, state: Data<Arc<WorkerState>>, worker: WorkerContext) -> Result<(), BoxDynError> {
    let state = Arc::clone(&state);
    let name = worker.name().to_owned();
    // Its own task: when apalis drops this handler (its backend failed during a database
    // outage and the worker restarts), the attempt still runs to its end and records it.
    let attempt = tokio::spawn(async move { attempt::run(&state, task.job_id, &name).await });
    match attempt.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::error!(job_id = %task.job_id, error = %e, "attempt failed for a non-media reason; the task will be retried");
            Err(Box::new(e))
        }
        Err(e) => Err(Box::new(e)),
    }
}

/// A name no other worker process, here or on another host, will use.
pub fn unique_name() -> String {
    let mut host = [0u8; 256];
    // SAFETY: gethostname writes at most host.len() bytes into our buffer.
    let host = if unsafe { libc::gethostname(host.as_mut_ptr().cast(), host.len()) } == 0 {
        let end = host.iter().position(|&b| b == 0).unwrap_or(host.len());
        String::from_utf8_lossy(&host[..end]).into_owned()
    } else {
        "host".into()
    };
    let random = &uuid::Uuid::new_v4().simple().to_string()[..8];
    format!("{host}-{}-{random}", std::process::id())
}

/// Hand-backs after the grace period are quick; this is how long the monitor waits for them.
const HAND_BACK_TIME: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs the consumers until SIGTERM/SIGINT: then no new jobs are claimed, attempts in flight
/// get `MEDIAQ_SHUTDOWN_GRACE` to finish, and after it `abandon` tells them to kill their
/// children and hand their jobs back to the queue for immediate re-claim.
pub async fn run(
    state: Arc<WorkerState>,
    name: String,
    abandon: tokio::sync::watch::Sender<bool>,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut monitor =
        Monitor::new().shutdown_timeout(state.config.shutdown_grace + HAND_BACK_TIME).should_restart(|ctx, err| {
            tracing::error!(worker = ctx.name(), error = %err, "worker stopped on an error; restarting");
            true
        });
    let slots = std::iter::repeat_n(Lane::Cpu, state.config.concurrency)
        .chain(std::iter::repeat_n(Lane::Live, state.config.live_slots));
    for (index, lane) in slots.enumerate() {
        let state = state.clone();
        let config = Config::default()
            .queue(lane.queue())
            .batch_size(1)
            .heartbeat_interval(state.config.heartbeat)
            .missed_heartbeats(3);
        let worker_name = match lane {
            Lane::Cpu => format!("{name}-{index}"),
            Lane::Live => format!("{name}-live-{index}"),
        };
        monitor = monitor.register(move |restarts| {
            // A restarted consumer takes a new name: tasks locked by the old one become orphans
            // that live workers re-enqueue (a reused name would keep them locked forever).
            let worker_name = if restarts == 0 { worker_name.clone() } else { format!("{worker_name}-r{restarts}") };
            let backend = PostgresStorage::<TranscodeTask>::new(&state.pool)
                .with_config(config.clone())
                .with_pubsub()
                .poll_with_interval(std::time::Duration::from_secs(1));
            // One task at a time per consumer: apalis otherwise keeps fetching while a task runs,
            // so one process would run as many transcodes as it could claim.
            WorkerBuilder::new(worker_name.as_str())
                .backend(backend)
                .concurrency(1)
                .enable_tracing()
                .data(state.clone())
                .build(handle)
        });
    }
    let shutdown = mediaq_shared::signals::shutdown_signal()?;
    println!("mediaq-worker ready {name}");
    tracing::info!(%name, concurrency = state.config.concurrency, live_slots = state.config.live_slots, "mediaq-worker ready");
    let grace = state.config.shutdown_grace;
    let signal = async move {
        shutdown.await;
        tracing::info!("shutdown requested: no new jobs; in-flight attempts get the grace period");
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            tracing::info!("grace period over: handing unfinished jobs back");
            let _ = abandon.send(true);
        });
        Ok(())
    };
    monitor.run_with_signal(signal).await?;
    tracing::info!("mediaq-worker stopped");
    Ok(())
}
