//! Every error the API returns, from [`ApiError`] itself: one example of each variant gives its
//! code, status and sentence. The document has one reusable response per status whose body's
//! `code` is an enum of exactly the codes with that status.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::error::ApiError;

/// One value of every variant. Adding a variant to [`ApiError`] breaks the build here (the match
/// below has no wildcard) until it is listed, so the document always holds every code.
pub fn every_error() -> Vec<ApiError> {
    let all = vec![
        // `BodyTooLarge` (a JSON route's body) shares this code and status.
        ApiError::PayloadTooLarge { limit: 0 },
        ApiError::UnsupportedMediaType("the body is not a WebM video".into()),
        ApiError::NotWebm("the file is not a WebM video".into()),
        ApiError::ExtensionMismatch("the file name does not end in .webm".into()),
        ApiError::EmptyUpload,
        ApiError::MalformedMultipart("the multipart body is malformed".into()),
        ApiError::MissingFile,
        ApiError::TooManyFiles,
        ApiError::UploadIncomplete,
        ApiError::UploadTimeout(0),
        ApiError::UploadTooSlow(0),
        ApiError::TooManyUploads(0),
        ApiError::InvalidJobId("not a job id".into()),
        ApiError::JobNotFound,
        ApiError::JobNotReady("processing"),
        ApiError::OutputGone,
        ApiError::PosterNotAvailable("audio only, or not succeeded yet"),
        ApiError::BadRequest("a parameter or the body is invalid".into()),
        ApiError::RangeNotSatisfiable,
        ApiError::IdempotencyInProgress,
        ApiError::IdempotencyKeyReused,
        ApiError::Unauthorized("the credential is missing, invalid, revoked or expired"),
        ApiError::InsufficientScope("jobs:write"),
        ApiError::CredentialsInUrl,
        ApiError::RateLimited(1),
        ApiError::QuotaExceeded("a per-key quota is used up".into(), 1),
        ApiError::WebhookUrlRefused("the address is private".into()),
        ApiError::WebhookSecretMissing,
        ApiError::WebhookNotFound,
        ApiError::DeliveryNotFound,
        ApiError::JobNotRequeueable,
        ApiError::JobNotFailed("succeeded"),
        ApiError::InputGone("its files were deleted"),
        ApiError::RouteNotFound,
        ApiError::MethodNotAllowed,
        ApiError::DatabaseUnavailable,
        ApiError::ServerBusy(0),
        ApiError::InsufficientStorage,
        ApiError::StorageUnavailable,
        ApiError::TusVersionUnsupported,
        ApiError::UploadNotFound,
        ApiError::UploadOffsetMismatch(0),
        ApiError::UploadLengthExceeded(0),
        ApiError::UploadClosed("the job failed".into()),
        ApiError::UploadBusy,
        ApiError::TooManySegments(0),
        ApiError::LinkInvalid,
        ApiError::LinkExpired,
        ApiError::LinkRevoked,
        ApiError::Internal("internal".into()),
    ];
    for e in &all {
        listed(e);
    }
    all
}

/// The exhaustiveness guard: no wildcard, so a new variant is a compile error until listed above.
fn listed(e: &ApiError) {
    match e {
        ApiError::PayloadTooLarge { .. }
        | ApiError::TusVersionUnsupported
        | ApiError::UploadNotFound
        | ApiError::UploadOffsetMismatch(_)
        | ApiError::UploadLengthExceeded(_)
        | ApiError::UploadClosed(_)
        | ApiError::UploadBusy
        | ApiError::TooManySegments(_)
        | ApiError::LinkInvalid
        | ApiError::LinkExpired
        | ApiError::LinkRevoked
        | ApiError::BodyTooLarge(_)
        | ApiError::UploadTooSlow(_)
        | ApiError::TooManyUploads(_)
        | ApiError::UnsupportedMediaType(_)
        | ApiError::NotWebm(_)
        | ApiError::ExtensionMismatch(_)
        | ApiError::EmptyUpload
        | ApiError::MalformedMultipart(_)
        | ApiError::MissingFile
        | ApiError::TooManyFiles
        | ApiError::UploadIncomplete
        | ApiError::UploadTimeout(_)
        | ApiError::InvalidJobId(_)
        | ApiError::JobNotFound
        | ApiError::JobNotReady(_)
        | ApiError::OutputGone
        | ApiError::PosterNotAvailable(_)
        | ApiError::BadRequest(_)
        | ApiError::RangeNotSatisfiable
        | ApiError::IdempotencyInProgress
        | ApiError::IdempotencyKeyReused
        | ApiError::Unauthorized(_)
        | ApiError::InsufficientScope(_)
        | ApiError::CredentialsInUrl
        | ApiError::RateLimited(_)
        | ApiError::QuotaExceeded(..)
        | ApiError::WebhookUrlRefused(_)
        | ApiError::WebhookSecretMissing
        | ApiError::WebhookNotFound
        | ApiError::DeliveryNotFound
        | ApiError::JobNotRequeueable
        | ApiError::JobNotFailed(_)
        | ApiError::InputGone(_)
        | ApiError::RouteNotFound
        | ApiError::MethodNotAllowed
        | ApiError::DatabaseUnavailable
        | ApiError::ServerBusy(_)
        | ApiError::InsufficientStorage
        | ApiError::StorageUnavailable
        | ApiError::Internal(_) => {}
    }
}

/// The response component name for a status (`Error404`).
pub fn response_name(status: u16) -> String {
    format!("Error{status}")
}

/// `components.responses`: for each error status, the codes it carries (an enum on
/// `error.code`), each with its sentence in the description, and the headers it sets.
pub fn responses() -> BTreeMap<u16, Value> {
    let mut by_status: BTreeMap<u16, Vec<(&'static str, String)>> = BTreeMap::new();
    for e in every_error() {
        by_status.entry(e.status().as_u16()).or_default().push((e.code(), e.to_string()));
    }
    by_status
        .into_iter()
        .map(|(status, mut codes)| {
            codes.sort();
            codes.dedup_by(|a, b| a.0 == b.0);
            let lines: Vec<String> = codes.iter().map(|(c, m)| format!("- `{c}`: {m}")).collect();
            let reason = axum::http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason());
            let description = format!("{}. `error.code` is one of:\n{}", reason.unwrap_or("Error"), lines.join("\n"));
            let enum_codes: Vec<&str> = codes.iter().map(|(c, _)| *c).collect();
            let mut headers = json!({ "X-Request-Id": { "$ref": "#/components/headers/X-Request-Id" } });
            if status == 429 || status == 503 {
                headers["Retry-After"] = json!({
                    "description": "Seconds to wait before retrying.",
                    "required": true,
                    "schema": { "type": "string", "pattern": "^[0-9]+$" }
                });
            }
            if status == 401 {
                headers["WWW-Authenticate"] = json!({
                    "description": "`Bearer realm=\"mediaq\"`",
                    "required": true,
                    "schema": { "type": "string" }
                });
            }
            let schema = json!({
                "allOf": [{ "$ref": "#/components/schemas/ErrorBody" }],
                "properties": {
                    "error": { "properties": { "code": { "type": "string", "enum": enum_codes } } }
                }
            });
            let response = json!({
                "description": description,
                "headers": headers,
                "content": { "application/json": { "schema": schema } }
            });
            (status, response)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_listed_once_with_its_status() {
        let all = every_error();
        let mut codes: Vec<&str> = all.iter().map(ApiError::code).collect();
        let n = codes.len();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), n, "one example per code");
        let responses = responses();
        assert_eq!(
            responses[&404]["content"]["application/json"]["schema"]["properties"]["error"]["properties"]["code"]
                ["enum"],
            json!([
                "delivery_not_found",
                "job_not_found",
                "not_found",
                "poster_not_available",
                "upload_not_found",
                "webhook_not_found"
            ])
        );
        assert!(responses[&429]["headers"]["Retry-After"].is_object());
    }
}
