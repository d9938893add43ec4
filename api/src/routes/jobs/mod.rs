//! `/v1/jobs`: upload (create), list, status, cancel or delete, and the MP4.

mod cancel;
mod create;
mod list;
mod output;
mod poster;
mod ranged;
mod retry;
mod status;

pub use cancel::{__path_cancel, cancel_job};
pub use create::__path_create;
pub use list::__path_list;
pub use output::__path_output;
pub use poster::__path_poster;
pub use retry::{__path_retry, retry_job, Retried};
pub use status::{__path_status, job_response};

use axum::{
    routing::{get, post},
    Router,
};

use crate::app::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/jobs", post(create::create).get(list::list))
        .route("/v1/jobs/{id}", get(status::status).delete(cancel::cancel))
        .route("/v1/jobs/{id}/output", get(output::output))
        .route("/v1/jobs/{id}/poster", get(poster::poster))
        .route("/v1/jobs/{id}/retry", post(retry::retry))
}
