//! mediaq worker library: the job runner (async, in `mediaq-worker`). It runs the transcode
//! engine (`mediaq-engine`, the only crate that links libav) as a child process and speaks to it
//! through `mediaq-protocol`; it never links the engine.

pub mod attempt;
pub mod cancellations;
pub mod child;
pub mod child_spec;
pub mod config;
pub mod feed;
pub mod finish;
pub mod input;
pub mod janitor;
pub mod jobdir;
pub mod metrics;
pub mod output;
pub mod presence;
pub mod retry;
pub mod run;
pub mod segments;
pub mod selfcheck;
pub mod spawn;
pub mod state;
pub mod webhooks;
