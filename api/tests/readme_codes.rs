//! The README's error tables are complete and stay so: every code the API can answer with
//! (one example of each `ApiError` variant) and every job failure code (`FailureCode::ALL`)
//! appears in README.md as `` `code` ``.

use mediaq_api::openapi::errors::every_error;
use mediaq_shared::FailureCode;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).expect("README.md")
}

#[test]
fn every_api_error_code_is_in_the_readme() {
    let readme = readme();
    let missing: Vec<&str> =
        every_error().iter().map(|e| e.code()).filter(|c| !readme.contains(&format!("`{c}`"))).collect();
    assert!(missing.is_empty(), "API error codes missing from README.md: {missing:?}");
}

#[test]
fn every_job_failure_code_is_in_the_readme() {
    let readme = readme();
    let missing: Vec<&str> =
        FailureCode::ALL.iter().map(|c| c.as_str()).filter(|c| !readme.contains(&format!("`{c}`"))).collect();
    assert!(missing.is_empty(), "job failure codes missing from README.md: {missing:?}");
}
