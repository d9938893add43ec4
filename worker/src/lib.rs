//! mediaq worker library: the job runner (async, in `mediaq-worker`) and the transcode engine
//! (synchronous, only in the `mediaq-transcode` child).

pub mod attempt;
pub mod cancellations;
pub mod child;
pub mod child_spec;
pub mod config;
pub mod finish;
pub mod janitor;
pub mod jobdir;
pub mod metrics;
pub mod output_file;
pub mod poster;
pub mod protocol;
pub mod retry;
pub mod run;
pub mod sandbox;
pub mod selfcheck;
pub mod spawn;
pub mod spec;
pub mod state;
pub mod transcode;
pub mod webhooks;
