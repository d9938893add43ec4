//! `/v1/jobs`: upload (create), list, status, cancel or delete, the MP4 and its signed links.

mod cancel;
pub(crate) mod create;
mod line;
mod links;
mod list;
mod output;
mod poster;
mod ranged;
mod retry;
mod status;

pub use cancel::{__path_cancel, cancel_job};
pub use create::__path_create;
pub use links::{__path_links, add_play_links};
pub use list::__path_list;
pub use output::{__path_output, audit_download, ready_output, serve_output, Download};
pub use poster::{__path_poster, serve_poster};
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
        .route("/v1/jobs/{id}/links", get(links::links))
        .route("/v1/jobs/{id}/retry", post(retry::retry))
}
