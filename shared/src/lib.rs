//! mediaq-shared: what the API and the worker both need.
//!
//! Domain types ([`JobId`], [`JobStatus`], [`OriginalFilename`]), database access ([`db`]),
//! the queue contract ([`queue`]), storage on local disk or S3 ([`storage`]), configuration
//! ([`config`]) and telemetry set-up ([`telemetry`]).

pub mod apikey;
pub mod config;
pub mod db;
pub mod eta;
pub mod failure;
pub mod filename;
pub mod job;
pub mod job_view;
pub mod metrics;
pub mod queue;
pub mod signals;
pub mod storage;
pub mod telemetry;
pub mod webhook;

pub use failure::{ChildFailureCode, FailureCode};
pub use filename::OriginalFilename;
pub use job::{ErrorInfo, InputFacts, Job, JobId, JobStatus, OutputFacts, PosterFacts, Priority};
