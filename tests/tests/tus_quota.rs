//! Quotas hold for resumable uploads as for classic ones (issue 26, item 1): a declared
//! `Upload-Length` is reserved at creation, an upload still arriving counts as an unfinished job,
//! and a deferred upload's bytes count against the daily quota as its PATCHes arrive. An upload
//! declared empty ends at once (item 7) instead of waiting for ever.

use mediaq_e2e::{error_code, fixtures, live::TusUpload, Api, TestEnv};

async fn create(api: &Api, length: Option<u64>) -> reqwest::Response {
    let mut req = api
        .client
        .post(api.url("/v1/uploads"))
        .header("tus-resumable", "1.0.0")
        .header("upload-metadata", "filename cmVjb3JkaW5nLndlYm0=");
    req = match length {
        Some(length) => req.header("upload-length", length),
        None => req.header("upload-defer-length", "1"),
    };
    req.send().await.unwrap()
}

#[tokio::test]
async fn declared_lengths_are_reserved_against_the_daily_quota() {
    let env = TestEnv::new().await;
    let api = env.api_with(&[("MEDIAQ_QUOTA_DAILY_BYTES", "4MiB")]).await;
    // Twelve 512 KiB uploads declared at once: only eight fit in 4 MiB, none of them sent yet.
    let mut created = 0;
    let mut refused = 0;
    for _ in 0..12 {
        let resp = create(&api, Some(512 << 10)).await;
        match resp.status().as_u16() {
            201 => created += 1,
            _ => {
                let (status, code, _) = error_code(resp).await;
                assert_eq!((status, code.as_str()), (429, "quota_exceeded"));
                refused += 1;
            }
        }
    }
    assert_eq!((created, refused), (8, 4));
}

#[tokio::test]
async fn uploads_still_arriving_count_as_unfinished_jobs() {
    let env = TestEnv::new().await;
    let api = env.api_with(&[("MEDIAQ_QUOTA_ACTIVE_JOBS", "3")]).await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(create(&api, None).await.status().as_u16());
    }
    assert_eq!(statuses, [201, 201, 201, 429, 429, 429]);
}

#[tokio::test]
async fn a_deferred_uploads_bytes_count_as_they_arrive() {
    let env = TestEnv::new().await;
    let api = env.api_with(&[("MEDIAQ_QUOTA_DAILY_BYTES", "44KiB")]).await;
    let bytes = fixtures::bytes(&fixtures::VP8_VORBIS);
    assert!(bytes.len() > 40 << 10, "the fixture is {} bytes", bytes.len());
    let mut upload = TusUpload::create(&api, None).await;
    upload.append(&bytes[..40 << 10]).await;
    // The rest (about 5 KiB) would pass the key's 44 KiB: refused, and nothing of it is kept.
    let resp = upload.send(&bytes[40 << 10..], None).await;
    let (status, code, _) = error_code(resp).await;
    assert_eq!((status, code.as_str()), (429, "quota_exceeded"));
    let head = api
        .client
        .head(api.url(&format!("/v1/uploads/{}", upload.id)))
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(head.headers()["upload-offset"], (40 << 10).to_string().as_str());
}

#[tokio::test]
async fn an_upload_declared_empty_ends_at_once() {
    let env = TestEnv::new().await;
    let api = env.api().await;
    let upload = TusUpload::create(&api, None).await;
    let resp = upload.send(&[], Some(0)).await;
    let (status, code, _) = error_code(resp).await;
    assert_eq!((status, code.as_str()), (415, "not_webm"));
    let job = api.job(&upload.id).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["code"], "invalid_media", "{job}");
}
